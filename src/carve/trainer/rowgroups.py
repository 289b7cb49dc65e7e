"""Reading shard row groups for training: column projection, read-ahead, and bulk decoding to numpy.

A `Block` is the decoded columns of one or more row groups ("units", `trainer.manifest.Unit`)
read together: the nested per-frame columns (`state`, `action`) as one `[frames, D]` float32
array plus row offsets, the fixed-size embeddings as `[rows, D]` arrays, and the string columns
as numpy object arrays, integer columns as int64. Only the columns asked for are read (`read_units(..., columns=...)`);
decoding is whole-column pyarrow -> numpy, never per row. Every check (nulls, ragged frame
sizes, events without actions) names the shard, row group and event it fails on.

`ShardFiles` opens each shard once per process (local or `s3://` through pyarrow.fs, with
`pre_buffer` so a row group's column chunks arrive in a few coalesced reads) and `ReadAhead`
reads the next group of units on a background thread while the caller decodes and batches the
current one; the pyarrow reads release the GIL, so I/O (and Parquet decompression) overlap the
Python side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from carve.core.errors import CarveError
from carve.storage.fs import is_uri, resolve
from carve.trainer.manifest import Unit

NESTED = ("state", "action")  # list<list<float32>>: frames per event
FIXED = ("emb_visual", "emb_text", "end_emb_visual")  # list<float32>: one vector per event
STRINGS = ("event_id", "episode_id", "task", "caption", "next_caption")
INTS = ("episode_index", "event_index", "num_events", "start_frame", "end_frame")


class DataError(CarveError):
    """Rows the trainer cannot use; the message names the shard / event and the reason."""


class ShardFiles:
    """Open `pq.ParquetFile` handles by shard URI, one per shard and process."""

    def __init__(self) -> None:
        self._files: dict[str, pq.ParquetFile] = {}

    def get(self, shard: str) -> pq.ParquetFile:
        pf = self._files.get(shard)
        if pf is None:
            fs, path = resolve(shard)
            # object stores: fetch a row group's column chunks in coalesced ranged reads, ahead of decoding
            pf = pq.ParquetFile(path, filesystem=fs, pre_buffer=is_uri(shard))
            self._files[shard] = pf
        return pf

    def read(self, unit: Unit, columns: Sequence[str], use_threads: bool = True) -> pa.Table:
        """One unit's projected columns; unreadable data is a DataError naming the unit."""
        try:
            return self.get(unit.shard).read_row_group(unit.row_group, columns=list(columns),
                                                       use_threads=use_threads)
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{_where(unit)}: cannot read: {e}") from e


def _where(unit: Unit) -> str:
    return f"{unit.shard} (row group {unit.row_group})"


@dataclass
class Block:
    """Decoded columns of consecutive units; row i of the block is row `row[i]` of unit `unit[i]`."""

    rows: int
    unit: np.ndarray  # [rows] manifest unit index of each row
    row: np.ndarray  # [rows] row inside its unit
    strings: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [rows] object array of str
    offsets: dict[str, np.ndarray] = field(default_factory=dict)  # nested name -> [rows + 1] int64
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # nested name -> [frames, D] float32
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # fixed name -> [rows, D] float32
    ints: dict[str, np.ndarray] = field(default_factory=dict)  # integer name -> [rows] int64
    floats: dict[str, np.ndarray] = field(default_factory=dict)  # other scalar name -> [rows] float64 (null: nan)


class _Locate:
    """Maps a block row back to its unit for error messages."""

    def __init__(self, units: Sequence[Unit], counts: Sequence[int], ids: np.ndarray | None) -> None:
        self.units, self.ends, self.ids = units, np.cumsum(counts), ids

    def where(self, i: int) -> str:
        return _where(self.units[int(np.searchsorted(self.ends, i, side="right"))])

    def __call__(self, i: int) -> str:
        ev = f": event {self.ids[i]}" if self.ids is not None else f": row {i}"
        return f"{self.where(i)}{ev}"


def _first_null(arr: pa.Array) -> int:
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


def _nested(arr: pa.Array, name: str, at: _Locate) -> tuple[np.ndarray, np.ndarray]:
    """list<list<float32>> -> (row offsets [n+1] from 0, frames [N, D])."""
    if arr.null_count:
        raise DataError(f"{at(_first_null(arr))} has a null {name}")
    offsets = arr.offsets.to_numpy().astype(np.int64)
    inner = arr.flatten()
    lens = np.diff(inner.offsets.to_numpy())
    if len(lens) == 0:
        return offsets - offsets[0], np.zeros((0, 0), np.float32)
    if (lens != lens[0]).any():
        raise DataError(f"{at.where(0)}: {name} frames have different sizes ({sorted(set(lens.tolist()))[:5]})")
    flat = inner.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return offsets - offsets[0], flat.reshape(len(lens), int(lens[0]))


def _fixed(arr: pa.Array, name: str, at: _Locate) -> np.ndarray:
    if arr.null_count:
        raise DataError(f"{at(_first_null(arr))} has no {name} (null); embed the catalog before sharding")
    lens = np.diff(arr.offsets.to_numpy())
    if len(lens) and (lens != lens[0]).any():
        raise DataError(f"{at.where(0)}: {name} has rows of different sizes ({sorted(set(lens.tolist()))[:5]})")
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(lens), int(lens[0]) if len(lens) else 0)


def decode(units: Sequence[Unit], unit_ids: Sequence[int], tables: Sequence[pa.Table]) -> Block:
    """One Block from the tables read for `units` (manifest indices `unit_ids`), in that order."""
    counts = [t.num_rows for t in tables]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    n = table.num_rows
    blk = Block(
        n,
        np.repeat(np.asarray(unit_ids, np.int64), counts),
        np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if counts else np.zeros(0, np.int64),
    )
    names = table.column_names
    for name in names:
        if name in STRINGS:
            blk.strings[name] = table.column(name).combine_chunks().to_numpy(zero_copy_only=False)
    at = _Locate(units, counts, blk.strings.get("event_id"))
    for name in names:
        col = table.column(name).combine_chunks()
        if name in NESTED:
            blk.offsets[name], blk.frames[name] = _nested(col, name, at)
        elif name in FIXED:
            blk.vectors[name] = _fixed(col, name, at)
        elif name in INTS:
            blk.ints[name] = col.to_numpy(zero_copy_only=False).astype(np.int64)
        elif name not in STRINGS:
            blk.floats[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
    if "action" in blk.offsets:
        bad = np.flatnonzero(np.diff(blk.offsets["action"]) == 0)
        if len(bad):
            raise DataError(f"{at(int(bad[0]))} has no actions")
    if "state" in blk.offsets:
        bad = np.flatnonzero(np.diff(blk.offsets["state"]) == 0)
        if len(bad):
            raise DataError(f"{at(int(bad[0]))} has no state frames")
    return blk


def read_units(manifest_units: Sequence[Unit], unit_ids: Sequence[int], columns: Sequence[str],
               files: ShardFiles | None = None, use_threads: bool = True) -> Block:
    """Read and decode the units `unit_ids` (indices into `manifest_units`) as one Block."""
    files = files or ShardFiles()
    units = [manifest_units[u] for u in unit_ids]
    return decode(units, unit_ids, [files.read(u, columns, use_threads) for u in units])


class ReadAhead:
    """Blocks for a sequence of unit groups, each read (and decoded) on a background thread while
    the previous one is consumed; `depth` groups are in flight at most."""

    def __init__(self, manifest_units: Sequence[Unit], columns: Sequence[str], depth: int = 1,
                 use_threads: bool = True) -> None:
        self.units, self.columns, self.depth, self.use_threads = manifest_units, list(columns), depth, use_threads
        self.files = ShardFiles()

    def _read(self, ids: Sequence[int]) -> Block:
        return read_units(self.units, ids, self.columns, self.files, self.use_threads)

    def blocks(self, groups: Iterable[Sequence[int]]) -> Iterator[Block]:
        if self.depth <= 0:
            for ids in groups:
                yield self._read(ids)
            return
        pending: list[Future[Block]] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="carve-read-ahead") as pool:
            try:
                for ids in groups:
                    pending.append(pool.submit(self._read, list(ids)))
                    if len(pending) > self.depth:
                        yield pending.pop(0).result()
                while pending:
                    yield pending.pop(0).result()
            finally:
                for f in pending:
                    f.cancel()
