"""The weighted-epoch draw over shard rows (`sampling_weight`), torch-free and deterministic by seed.

A shards version cut in mode "weights" holds every eligible event once, with the balancing
policy's `sampling_weight` (`carve.shard.balance.weigh`): the rows per event the policy would
have written. Every reader that honours the weights draws its epochs here, by one rule: row i
is drawn floor(e_i) or ceil(e_i) times, where e_i is its expected count, and which rows get the
ceil is decided by uniforms (`round_counts(expected, uniforms)`); the drawn rows are then shuffled.
Two sources of uniforms serve the two kinds of reader:

    epoch_indices(weights, epoch, seed, num_samples=None) -> np.ndarray of row indices

sees the whole version: it draws exactly `num_samples` rows (default `round(sum(weights))`, the
size of the resampled epoch) with e_i = `num_samples * w_i / sum(w)`, the ceils decided by
systematic sampling over a seeded permutation of the rows (stratified, so no row is over- or
under-drawn by chance and the epoch size is exact), then shuffles them. The result depends only
on (weights, epoch, seed, num_samples). With equal weights and the default size it is a
permutation of all rows.

    draw_rows(rows, weights, rng) -> the rows, each repeated by its draw (an index array)

is what the trainer's streaming loader (`carve.trainer.plan.epoch_draws`) calls for the rows of
each row group a loader stream owns: e_i = w_i (a weights-mode version's weights sum to its
epoch size), one uniform per row from the stream's own `numpy.random.Generator` (seeded by data
seed, epoch and stream), so streams need no coordination; the loader's unit order and shuffle
buffer then shuffle them.

`WeightedEpochSampler` wraps `epoch_indices` as an iterable of indices with `set_epoch` and an
optional `rank`/`world_size` split (rank r takes every world_size-th draw), usable as a torch
DataLoader `sampler=` without importing torch here. `read_sampling_weights(reader)` and
`iter_weighted(reader, epoch, seed)` read a shards version's weights (a
`carve.storage.shards.ShardReader`) and iterate its rows in `epoch_indices` order.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from carve.storage.fs import join, resolve
from carve.storage.shards import ShardReader

_SALT = 0x5EED_BA1


def check_weights(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """The weights as float64; refuses NaN/inf, negative values and an all-zero vector."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if not np.isfinite(w).all():
        raise ValueError("sampling weights must be finite")
    if (w < 0).any():
        raise ValueError("sampling weights must be >= 0")
    if len(w) and w.sum() <= 0:
        raise ValueError("sampling weights are all zero")
    return w


def default_num_samples(weights: Sequence[float] | np.ndarray) -> int:
    """The epoch size the weights stand for: round(sum(weights)), at least 1 (0 for no rows)."""
    w = check_weights(weights)
    return max(1, round(float(w.sum()))) if len(w) else 0


def expected_counts(weights: Sequence[float] | np.ndarray, num_samples: int | None = None) -> np.ndarray:
    """How often each row is drawn per epoch in expectation."""
    w = check_weights(weights)
    n = default_num_samples(w) if num_samples is None else int(num_samples)
    return n * w / w.sum() if len(w) else w


def round_counts(expected: Sequence[float] | np.ndarray, uniforms: Sequence[float] | np.ndarray) -> np.ndarray:
    """The draw rule: row i is drawn trunc(e_i) + (u_i < e_i - trunc(e_i)) times (floor or ceil of
    its expected count e_i, never below 0), given one uniform u_i in [0, 1) per row."""
    e = np.asarray(expected, dtype=np.float64).reshape(-1)
    whole = np.trunc(e)
    return np.maximum(whole.astype(np.int64) + (np.asarray(uniforms, dtype=np.float64) < e - whole), 0)


def draw_rows(rows: Sequence[int] | np.ndarray, weights: Sequence[float] | np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """One epoch's draws of `rows` whose sampling weights are `weights` (aligned): each row
    repeated `round_counts(weights, u)` times, in row order, with `u = rng.random(len(rows))`
    (one uniform per row, drawn in one call). The trainer's loader calls it per row group of a
    stream (module docstring)."""
    r = np.asarray(rows, dtype=np.int64).reshape(-1)
    counts = round_counts(weights, rng.random(len(r)))
    return np.repeat(r, counts)


def epoch_indices(weights: Sequence[float] | np.ndarray, epoch: int, seed: int,
                  num_samples: int | None = None) -> np.ndarray:
    """Row indices (int64) of one weighted epoch, shuffled; see the module docstring."""
    w = check_weights(weights)
    n = default_num_samples(w) if num_samples is None else int(num_samples)
    if n < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if n == 0 or len(w) == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, _SALT])
    perm = rng.permutation(len(w))
    cum = np.cumsum(n * w[perm] / w.sum())
    pos = rng.random() + np.arange(n, dtype=np.float64)
    picks = np.minimum(np.searchsorted(cum, pos, side="right"), len(w) - 1)
    out = perm[picks]
    rng.shuffle(out)
    return out.astype(np.int64, copy=False)


class WeightedEpochSampler:
    """Iterable of row indices for one epoch at a time (call `set_epoch` between epochs).

    With `world_size > 1`, rank r gets draws r, r + world_size, ... of the epoch (the epoch is
    first padded by wrapping around so every rank gets the same count)."""

    def __init__(self, weights: Sequence[float] | np.ndarray, seed: int = 0, num_samples: int | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} / world_size {world_size} is not a valid split")
        self.weights = check_weights(weights)
        self.seed = int(seed)
        self.num_samples = default_num_samples(self.weights) if num_samples is None else int(num_samples)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)

    def indices(self) -> np.ndarray:
        idx = epoch_indices(self.weights, self.epoch, self.seed, self.num_samples)
        if self.world_size > 1:
            per = len(self)
            if len(idx):
                idx = np.resize(idx, per * self.world_size)
            idx = idx[self.rank :: self.world_size]
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


def read_sampling_weights(reader: ShardReader) -> np.ndarray:
    """Every row's `sampling_weight` of a `storage.shards.ShardReader` (float64, manifest order),
    reading only that column. Shards without it (versions written before the column existed, or
    by a writer that does not weigh: their rows already repeat as the balance wants) weigh 1.0
    per row; a shard with some rows null is refused."""
    out = []
    for entry in reader.manifest.shards:
        path = join(reader.dir, entry.path)
        fs, p = resolve(path)
        with fs.open_input_file(p) as f:
            pf = pq.ParquetFile(f)
            if "sampling_weight" not in pf.schema_arrow.names:
                out.append(np.ones(pf.metadata.num_rows))
                continue
            col = pf.read(columns=["sampling_weight"]).column(0)
        if col.null_count == len(col):
            out.append(np.ones(len(col)))
            continue
        if col.null_count:
            raise ValueError(f"{path}: {col.null_count} rows without a sampling_weight")
        out.append(col.to_numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def iter_weighted(reader: ShardReader, epoch: int, seed: int, batch_size: int = 256, num_samples: int | None = None,
                  max_cached: int = 4) -> Iterator[pa.Table]:
    """One weighted epoch of a `ShardReader`'s rows (`epoch_indices` over its sampling weights)
    as tables of up to `batch_size` rows in draw order; at most `max_cached` shards held."""
    idx = epoch_indices(read_sampling_weights(reader), epoch, seed, num_samples)
    starts = np.cumsum([0] + [s.rows for s in reader.manifest.shards])
    cache: OrderedDict[int, pa.Table] = OrderedDict()
    for b in range(0, len(idx), batch_size):
        rows = idx[b : b + batch_size]
        shard = np.searchsorted(starts, rows, side="right") - 1
        pieces = []
        for s_i, r in zip(shard.tolist(), (rows - starts[shard]).tolist(), strict=True):
            t = cache.get(s_i)
            if t is None:
                t = cache[s_i] = reader.read_shard(s_i)
                while len(cache) > max_cached:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(s_i)
            pieces.append(t.slice(r, 1))
        yield pa.concat_tables(pieces).combine_chunks()
