"""Cutting shard files: `<root>/shards/vNNN/part-XXXXX.parquet`.

`write_shards` cuts an ordered, already balanced table of event rows into parts of
`rows_per_shard` rows; `write_shard_parts` writes parts handed over one table at a time, for
callers that stream them. Parts are zstd Parquet with `row_group_size` row groups and the
schema version and `emb_dims` in the Arrow metadata. Each part is serialised in memory, hashed
(sha256) and written atomically (temp name + rename), so a crash leaves whole parts only; the
caller writes the manifest last (`carve.shard.manifest.write_manifest`), so a version without a
manifest is an interrupted one. Reading a version back is `carve.storage.shards`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.storage.root import Root
from carve.storage.schema import conform, event_schema


@dataclass
class ShardInfo:
    path: str  # relative to the version folder
    rows: int
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def encode_shard(table: pa.Table, row_group_size: int, compression: str = "zstd") -> pa.Buffer:
    """The Parquet bytes of one shard (an Arrow buffer; supports the buffer protocol)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression=compression, write_statistics=True)
    return sink.getvalue()


def _write_one(root: Root, data: bytes | pa.Buffer, path: str) -> None:
    root.write_bytes(path, data)


def _hash_and_write(root: Root, data: pa.Buffer, path: str) -> str:
    digest = hashlib.sha256(memoryview(data)).hexdigest()
    _write_one(root, data, path)
    return digest


def write_shards(
    table: pa.Table,
    root: Root,
    version_dir: str,
    *,
    rows_per_shard: int,
    row_group_size: int,
    compression: str = "zstd",
    emb_dims: dict[str, int] | None = None,
    progress: bool = False,
) -> list[ShardInfo]:
    """Write `table` (in order) as shard parts of `rows_per_shard` rows under `version_dir`."""
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard ({rows_per_shard}) must be >= 1")
    parts = (table.slice(s, rows_per_shard) for s in range(0, table.num_rows, rows_per_shard))
    n = -(-table.num_rows // rows_per_shard)
    return write_shard_parts(parts, root, version_dir, row_group_size=min(row_group_size, rows_per_shard),
                             compression=compression, emb_dims=emb_dims, progress=progress, total=n)


def write_shard_parts(
    parts: Iterable[pa.Table],
    root: Root,
    version_dir: str,
    *,
    row_group_size: int,
    compression: str = "zstd",
    emb_dims: dict[str, int] | None = None,
    progress: bool = False,
    total: int | None = None,
) -> list[ShardInfo]:
    """Write each table of `parts` (in order) as shard part i under `version_dir` (a path on `root.fs`).

    Shard i is hashed and written on a helper thread while shard i+1 is encoded (both release
    the GIL). The first failure stops the loop and is re-raised (a failed write as `StorageError`
    naming the shard, `NoSpaceError` for a full disk); the parts this call already wrote are
    then removed (best effort: a version without a manifest is never read), and no manifest is
    written by this function."""
    if row_group_size < 1:
        raise ValueError(f"row_group_size ({row_group_size}) must be >= 1")
    schema = event_schema(emb_dims or None)
    if progress:
        from tqdm import tqdm

        parts = tqdm(parts, desc="shards", unit="shard", total=total)
    out: list[ShardInfo] = []
    pending: tuple[Future[str], ShardInfo] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as pool:
        try:
            for i, raw in enumerate(parts):
                part = conform(raw, schema)
                data = encode_shard(part, row_group_size, compression)
                if pending is not None:
                    fut, info = pending
                    info.sha256 = fut.result()
                    out.append(info)
                name = shard_name(i)
                pending = (pool.submit(_hash_and_write, root, data, f"{version_dir}/{name}"),
                           ShardInfo(path=name, rows=part.num_rows, bytes=data.size, sha256=""))
            if pending is not None:
                fut, info = pending
                info.sha256 = fut.result()
                out.append(info)
                pending = None
        except BaseException:
            if pending is not None:  # an error while encoding: let the in-flight write finish first
                pending[0].exception()
            _remove_parts(root, version_dir, len(out) + (pending is not None))
            raise
    return out


def _remove_parts(root: Root, version_dir: str, n: int) -> None:
    """Remove parts 0..n-1 of an unfinished version (those that exist); never raises."""
    for i in range(n):
        path = f"{version_dir}/{shard_name(i)}"
        try:
            if root.fs.get_file_info(path).type != pafs.FileType.NotFound:
                root.fs.delete_file(path)
        except OSError:
            pass
