"""Shard files: `<root>/shards/vNNN/part-XXXXX.parquet` writing, and reading back a version.

`write_shards` cuts an ordered, already balanced table of schema-v1 event rows into parts of
`rows_per_shard` rows; `write_shard_parts` writes parts handed over one table at a time, for
callers that stream them. Parts are zstd Parquet with `row_group_size` row groups and the
schema version and `emb_dims` in the Arrow metadata. Each part is serialised in memory, hashed (sha256) and written atomically
(temp name + rename), so a crash leaves whole parts only; the caller writes the manifest last
(`storage.manifest.write_manifest`), so a version without a manifest is an interrupted one.

`ShardReader` / `iter_shards` stream a manifest version shard by shard (optionally verifying
each file's sha256 against the manifest) and validate the schema version of every file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.storage.fs import join, read_bytes
from carve.storage.manifest import read_manifest
from carve.storage.root import Root
from carve.storage.schema import check_schema, conform, event_schema


class ShardIntegrityError(ValueError):
    """A shard whose bytes do not match the manifest (sha256 or row count); names the file."""


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


class ShardReader:
    """Reads one shard version via its manifest.

    `ShardReader(root_or_manifest, version=None, verify=False)`; iterate for one pa.Table per
    shard, or use `iter_batches(batch_size)` / `read_all()`. With `verify`, each shard's sha256
    and row count are checked against the manifest before it is used."""

    def __init__(self, path_or_root: str, version: int | None = None, verify: bool = False,
                 columns: list[str] | None = None):
        self.manifest = read_manifest(path_or_root, version)
        self.dir: str = self.manifest["_dir"]
        self.verify = verify
        self.columns = columns

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def paths(self) -> list[str]:
        return [join(self.dir, s["path"]) for s in self.manifest["shards"]]

    def __len__(self) -> int:
        return len(self.manifest["shards"])

    def read_shard(self, i: int) -> pa.Table:
        entry = self.manifest["shards"][i]
        path = join(self.dir, entry["path"])
        try:
            data = read_bytes(path)
        except FileNotFoundError as e:
            raise ShardIntegrityError(f"{path}: listed in the manifest but missing") from e
        if self.verify:
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry["sha256"]:
                raise ShardIntegrityError(
                    f"{path}: sha256 {digest[:12]}… does not match the manifest's {entry['sha256'][:12]}… "
                    "(file changed or corrupted)"
                )
        pf = pq.ParquetFile(pa.BufferReader(data))
        check_schema(pf.schema_arrow, path)
        if self.verify and pf.metadata.num_rows != int(entry["rows"]):
            raise ShardIntegrityError(f"{path}: {pf.metadata.num_rows} rows, the manifest says {entry['rows']}")
        return pf.read(columns=self.columns)

    def __iter__(self) -> Iterator[pa.Table]:
        for i in range(len(self)):
            yield self.read_shard(i)

    def iter_batches(self, batch_size: int = 256) -> Iterator[pa.RecordBatch]:
        for t in self:
            yield from t.to_batches(max_chunksize=batch_size)

    def sampling_weights(self) -> Any:
        """Every row's `sampling_weight` as a float64 array (storage.sampling.read_sampling_weights)."""
        from carve.storage.sampling import read_sampling_weights

        return read_sampling_weights(self)

    def iter_weighted(self, epoch: int, seed: int, batch_size: int = 256, num_samples: int | None = None,
                      ) -> Iterator[pa.Table]:
        """One weighted epoch of the rows, in draw order (storage.sampling.iter_weighted): how a
        version cut in shard mode "weights" is read balanced."""
        from carve.storage.sampling import iter_weighted

        return iter_weighted(self, epoch, seed, batch_size, num_samples)

    def read_all(self) -> pa.Table:
        tables = list(self)
        if not tables:
            return event_schema().empty_table()
        return pa.concat_tables(tables)


def iter_shards(path_or_root: str, version: int | None = None, verify: bool = False,
                columns: list[str] | None = None) -> Iterator[pa.Table]:
    """One pa.Table per shard of a manifest version, in manifest order."""
    yield from ShardReader(path_or_root, version=version, verify=verify, columns=columns)
