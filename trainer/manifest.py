"""Reading a shard manifest for training (the trainer's own reader of the agreed format).

`open_manifest(path)` accepts a `manifest.json`, the `shards/vNNN/` folder holding one, or a
Carve root (the newest `shards/vNNN/` is used). It validates the manifest
(`format == "carve.manifest"`, `manifest_version` and `schema_version` not newer than this
reader knows, at least one shard with rows) and the Parquet schema of every shard
(`storage.schema.check_schema` with the columns the trainer needs), and lists the shards'
row groups: the units the data loader deals out to DDP ranks and DataLoader workers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from carve.core.errors import CarveError
from carve.storage.schema import REQUIRED_COLUMNS, SchemaError, check_schema

MANIFEST_FORMAT = "carve.manifest"
MANIFEST_VERSION = 1
KNOWN_SCHEMA_VERSION = 1
TRAIN_COLUMNS: tuple[str, ...] = (
    *REQUIRED_COLUMNS,
    "caption",
    "emb_visual",
    "emb_text",
    "end_emb_visual",
)


class ManifestError(CarveError):
    """A manifest or shard the trainer cannot use; the message names the file and the reason."""


@dataclass(frozen=True)
class Unit:
    """One row group of one shard: the smallest piece of data dealt to a loader stream."""

    shard: str  # absolute path
    row_group: int
    rows: int


@dataclass(frozen=True)
class Manifest:
    path: str
    version: int
    emb_dims: dict[str, int]
    shards: list[str]
    units: list[Unit]
    total_rows: int
    raw: dict[str, Any]


def find_manifest(path: str | Path) -> Path:
    """The manifest.json for a file, a shard-version folder or a Carve root."""
    p = Path(path)
    if p.is_file():
        return p
    if (p / "manifest.json").is_file():
        return p / "manifest.json"
    shards = p / "shards"
    if shards.is_dir():
        versions = sorted(
            (
                d
                for d in shards.iterdir()
                if re.fullmatch(r"v\d+", d.name) and (d / "manifest.json").is_file()
            ),
            key=lambda d: int(d.name[1:]),
        )
        if versions:
            return versions[-1] / "manifest.json"
    raise ManifestError(
        f"{p}: no manifest.json (looked for the file, <dir>/manifest.json and <root>/shards/vNNN/)"
    )


def open_manifest(path: str | Path, required: tuple[str, ...] = TRAIN_COLUMNS) -> Manifest:
    mpath = find_manifest(path)
    try:
        raw = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{mpath}: not valid JSON: {e}") from e
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{mpath}: not a Carve manifest (format != {MANIFEST_FORMAT!r})")
    mv = raw.get("manifest_version")
    if not isinstance(mv, int) or mv > MANIFEST_VERSION:
        raise ManifestError(
            f"{mpath}: manifest_version {mv!r} is newer than this trainer reads (up to {MANIFEST_VERSION}); upgrade Carve"
        )
    sv = raw.get("schema_version")
    if not isinstance(sv, int) or sv > KNOWN_SCHEMA_VERSION:
        raise ManifestError(
            f"{mpath}: event schema_version {sv!r} is newer than this trainer reads (up to v{KNOWN_SCHEMA_VERSION})"
        )
    entries = raw.get("shards") or []
    if not entries or not any(int(e.get("rows", 0)) > 0 for e in entries):
        raise ManifestError(f"{mpath}: the manifest lists no shards with rows; nothing to train on")
    shards: list[str] = []
    units: list[Unit] = []
    for e in entries:
        spath = (mpath.parent / e["path"]).resolve()
        if not spath.is_file():
            raise ManifestError(f"{mpath}: shard {e['path']} is missing ({spath})")
        try:
            pf = pq.ParquetFile(spath)
            check_schema(pf.schema_arrow, str(spath), required=required)
        except SchemaError as err:
            raise ManifestError(str(err)) from err
        except OSError as err:
            raise ManifestError(f"{spath}: cannot read Parquet footer: {err}") from err
        shards.append(str(spath))
        md = pf.metadata
        for rg in range(md.num_row_groups):
            n = md.row_group(rg).num_rows
            if n > 0:
                units.append(Unit(str(spath), rg, n))
    total = sum(u.rows for u in units)
    if total == 0:
        raise ManifestError(f"{mpath}: all shards are empty; nothing to train on")
    dims = {str(k): int(v) for k, v in (raw.get("emb_dims") or {}).items()}
    return Manifest(str(mpath), int(raw.get("version", 0)), dims, shards, units, total, raw)
