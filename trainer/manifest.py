"""The trainer's view of a shard manifest: its shards and their row groups.

`open_manifest(path)` accepts a `manifest.json`, the `shards/vNNN/` folder holding one, or a
Carve root (the newest complete `shards/vNNN/` is used). Finding, reading and validating the
manifest is `storage.manifest.read_manifest` (the one reader of the format, whose
`ManifestError` this module re-exports); on top of it this view requires at least one shard
with rows, checks the Parquet schema of every shard (`storage.schema.check_schema` with the
columns the trainer needs) and lists the shards' row groups: the units the data loader deals
out to DDP ranks and DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from carve.storage.manifest import ManifestError, manifest_path, read_manifest
from carve.storage.schema import REQUIRED_COLUMNS, SchemaError, check_schema

__all__ = ["TRAIN_COLUMNS", "Manifest", "ManifestError", "Unit", "open_manifest"]

TRAIN_COLUMNS: tuple[str, ...] = (
    *REQUIRED_COLUMNS,
    "caption",
    "emb_visual",
    "emb_text",
    "end_emb_visual",
)


@dataclass(frozen=True)
class Unit:
    """One row group of one shard: the smallest piece of data dealt to a loader stream."""

    shard: str  # absolute path
    row_group: int
    rows: int


@dataclass(frozen=True)
class Manifest:
    """A validated manifest as the trainer uses it: shard paths, row-group units, embedding sizes, the raw JSON."""

    path: str
    version: int
    emb_dims: dict[str, int]
    shards: list[str]
    units: list[Unit]
    total_rows: int
    raw: dict[str, Any]


def open_manifest(path: str | Path, required: tuple[str, ...] = TRAIN_COLUMNS) -> Manifest:
    """The trainer's view of the manifest at `path` (a file, a `shards/vNNN/` folder or a root)."""
    mpath = Path(manifest_path(path))
    raw = read_manifest(str(mpath))
    raw.pop("_dir", None)
    mdir = mpath.parent
    entries = raw["shards"]
    if not entries or not any(int(e.get("rows", 0)) > 0 for e in entries):
        raise ManifestError(f"{mpath}: the manifest lists no shards with rows; nothing to train on")
    shards: list[str] = []
    units: list[Unit] = []
    for e in entries:
        spath = (mdir / e["path"]).resolve()
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
