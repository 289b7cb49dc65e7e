"""sha256 of every shard file and of the event rows of a Carve root: a behaviour fingerprint.

Used to show that a refactor changes nothing: run the same source through two versions of
Carve into two roots and compare the printed lines (shard files byte for byte; event rows
sorted by event_id, every column).

    python -m bench.fingerprint_root ROOT
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def fingerprint(root: Path) -> list[str]:
    lines = []
    for f in sorted(root.glob("shards/v*/*.parquet")):
        lines.append(f"{f.relative_to(root)} {hashlib.sha256(f.read_bytes()).hexdigest()[:16]}")
    parts = sorted(root.glob("events/**/*.parquet"))
    if parts:
        t = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default").sort_by("event_id")
        h = hashlib.sha256()
        for name in t.column_names:
            h.update(name.encode())
            h.update(repr(t.column(name).to_pylist()).encode())
        lines.append(f"event rows {t.num_rows} cols {len(t.column_names)} {h.hexdigest()[:16]}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    print("\n".join(fingerprint(ap.parse_args().root)))


if __name__ == "__main__":
    main()
