"""The trainer's view of a shard manifest: its shards and their row groups.

`open_manifest(path)` accepts a `manifest.json`, the `shards/vNNN/` folder holding one, or a
Carve root (the newest complete `shards/vNNN/` is used). Finding, reading and validating the
manifest is `storage.manifest.load_manifest` (the one reader of the format and its one typed
model, `ShardManifest`, which this view carries as `meta`; its `ManifestError` this module
re-exports); on top of it this view requires at least one shard
with rows, checks the Parquet schema of every shard (`storage.schema.check_schema` with the
columns the trainer needs) and lists the shards' row groups: the units the data loader deals
out to DDP ranks and DataLoader workers.

A manifest may be local or on an object store (`s3://bucket/root`, endpoint from the URI's
query or from `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`): shards are named by URI (a local
path, or `s3://...` with the manifest's query) and opened through pyarrow.fs (`open_shard`),
in every rank and loader worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.storage.fs import is_uri, join, resolve
from carve.storage.manifest import ManifestError, ShardManifest, load_manifest, manifest_path
from carve.storage.schema import REQUIRED_COLUMNS, SchemaError, check_schema

__all__ = ["TRAIN_COLUMNS", "Manifest", "ManifestError", "Unit", "open_manifest", "open_shard"]

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

    shard: str  # absolute path, or an object-store URI
    row_group: int
    rows: int


@dataclass(frozen=True)
class Manifest:
    """A validated manifest as the trainer uses it: shard paths, row-group units, embedding sizes, and
    the typed manifest itself (`meta`)."""

    path: str
    version: int
    emb_dims: dict[str, int]
    shards: list[str]
    units: list[Unit]
    total_rows: int
    meta: ShardManifest


def open_shard(shard: str) -> pq.ParquetFile:
    """A shard (a local path or a `s3://` URI) opened through its pyarrow filesystem."""
    fs, path = resolve(shard)
    return pq.ParquetFile(path, filesystem=fs)


def _shard_uri(mdir: str, rel: str) -> str:
    return join(mdir, rel) if is_uri(mdir) else str((Path(mdir) / rel).resolve())


def open_manifest(path: str | Path, required: tuple[str, ...] = TRAIN_COLUMNS) -> Manifest:
    """The trainer's view of the manifest at `path` (a file, a `shards/vNNN/` folder or a root;
    local or a URI)."""
    mpath = manifest_path(path)
    meta = load_manifest(mpath)
    mdir = meta.dir
    entries = meta.shards
    if not entries or not any(e.rows > 0 for e in entries):
        raise ManifestError(f"{mpath}: the manifest lists no shards with rows; nothing to train on")
    shards: list[str] = []
    units: list[Unit] = []
    for e in entries:
        spath = _shard_uri(mdir, e.path)
        fs, fpath = resolve(spath)
        if fs.get_file_info(fpath).type != pafs.FileType.File:
            raise ManifestError(f"{mpath}: shard {e.path} is missing ({spath})")
        try:
            pf = pq.ParquetFile(fpath, filesystem=fs)
            check_schema(pf.schema_arrow, spath, required=required)
        except SchemaError as err:
            raise ManifestError(str(err)) from err
        except OSError as err:
            raise ManifestError(f"{spath}: cannot read Parquet footer: {err}") from err
        shards.append(spath)
        md = pf.metadata
        for rg in range(md.num_row_groups):
            n = md.row_group(rg).num_rows
            if n > 0:
                units.append(Unit(spath, rg, n))
    total = sum(u.rows for u in units)
    if total == 0:
        raise ManifestError(f"{mpath}: all shards are empty; nothing to train on")
    return Manifest(str(mpath), meta.version, dict(meta.emb_dims), shards, units, total, meta)
