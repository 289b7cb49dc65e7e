"""Reading shard versions back: `<root>/shards/vNNN/part-XXXXX.parquet` through the typed manifest.

`ShardReader` / `iter_shards` stream a manifest version shard by shard (optionally verifying
each file's sha256 and row count against the manifest, `ShardIntegrityError` naming the file)
and validate the schema version of every file. Cutting and writing shards is the shard
package's (`carve.shard.write`); a weighted epoch of a version is `carve.shard.sampling.iter_weighted`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from carve.storage.fs import join, read_bytes
from carve.storage.manifest import ShardManifest, load_manifest
from carve.storage.schema import check_schema, event_schema


class ShardIntegrityError(ValueError):
    """A shard whose bytes do not match the manifest (sha256 or row count); names the file."""


class ShardReader:
    """Reads one shard version via its manifest.

    `ShardReader(root_or_manifest, version=None, verify=False)`; iterate for one pa.Table per
    shard, or use `iter_batches(batch_size)` / `read_all()`. With `verify`, each shard's sha256
    and row count are checked against the manifest before it is used."""

    def __init__(self, path_or_root: str, version: int | None = None, verify: bool = False,
                 columns: list[str] | None = None):
        self.manifest: ShardManifest = load_manifest(path_or_root, version)
        self.dir: str = self.manifest.dir
        self.verify = verify
        self.columns = columns

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def paths(self) -> list[str]:
        return [join(self.dir, s.path) for s in self.manifest.shards]

    def __len__(self) -> int:
        return len(self.manifest.shards)

    def read_shard(self, i: int) -> pa.Table:
        entry = self.manifest.shards[i]
        path = join(self.dir, entry.path)
        try:
            data = read_bytes(path)
        except FileNotFoundError as e:
            raise ShardIntegrityError(f"{path}: listed in the manifest but missing") from e
        if self.verify:
            digest = hashlib.sha256(data).hexdigest()
            if digest != entry.sha256:
                raise ShardIntegrityError(
                    f"{path}: sha256 {digest[:12]}… does not match the manifest's {entry.sha256[:12]}… "
                    "(file changed or corrupted)"
                )
        pf = pq.ParquetFile(pa.BufferReader(data))
        check_schema(pf.schema_arrow, path)
        if self.verify and pf.metadata.num_rows != entry.rows:
            raise ShardIntegrityError(f"{path}: {pf.metadata.num_rows} rows, the manifest says {entry.rows}")
        return pf.read(columns=self.columns)

    def __iter__(self) -> Iterator[pa.Table]:
        for i in range(len(self)):
            yield self.read_shard(i)

    def iter_batches(self, batch_size: int = 256) -> Iterator[pa.RecordBatch]:
        for t in self:
            yield from t.to_batches(max_chunksize=batch_size)

    def read_all(self) -> pa.Table:
        tables = list(self)
        if not tables:
            return event_schema().empty_table()
        return pa.concat_tables(tables)


def iter_shards(path_or_root: str, version: int | None = None, verify: bool = False,
                columns: list[str] | None = None) -> Iterator[pa.Table]:
    """One pa.Table per shard of a manifest version, in manifest order."""
    yield from ShardReader(path_or_root, version=version, verify=verify, columns=columns)
