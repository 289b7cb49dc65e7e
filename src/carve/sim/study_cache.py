"""Cache keys of the closed-loop study: a cached result is reused only when the code, the
configuration, the data and the weights that made it are the same.

* `code_hash()`: sha256 over the source of every package the study's results depend on (the
  simulator, the trainer, ingest, captioners, clustering, embedding, core), path and bytes;
* `file_hash(paths)`: sha256 over files (a policy's weights, normalisation and config);
* `key(*parts)`: sha256 of the JSON of its parts, for a cache entry to store and compare.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

PACKAGES = ("sim", "trainer", "ingest", "captioners", "clustering", "embedding", "core")


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    import carve

    root = Path(carve.__file__).resolve().parent
    h = hashlib.sha256()
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def file_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
