"""The loader's index plan: which rows each loader stream reads and in what order, as index arrays.

Nothing here reads training columns; only `episode_id` (held-out split) and `sampling_weight`
(weighted epochs), once per stream. Torch-free.

Splitting. The manifest's row groups ("units") are permuted once by the data seed and dealt
round-robin to `G = world_size * num_workers` streams; stream `g = rank * num_workers + worker`
owns units `g, g + G, g + 2G, ...` (`stream_units`). Every unit belongs to exactly one stream,
so ranks and workers never read the same row and together read every row.

Rows. `split_rows` keeps a unit's rows of the split (`train` drops rows of episodes that hash
into the held-out fraction, `eval` keeps only those, `all` keeps every row) and, for the train
split, their `sampling_weight` (null or absent: 1.0).

Epochs. `epoch_draws(rows, seed, epoch, g, shuffle)` draws one epoch for a stream with a
`numpy.random.Generator` seeded by (seed, epoch, stream): each weighted row floor(w) or ceil(w)
times by the shard package's rule (`carve.shard.sampling.draw_rows`, one uniform per row,
drawn for all of a unit's rows at once), then the units in a permuted order (`shuffle`).
`windows(draws, rows)` groups consecutive units until a group holds at least `rows` draws: the
shuffle buffer is a buffer of whole row groups, read together and emitted in the order of
`window_order` (a permutation seeded by (seed, epoch, stream, window), so a window's order does
not depend on whether earlier windows were read: resuming skips whole windows unread).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from carve.shard.sampling import draw_rows
from carve.trainer.manifest import Manifest
from carve.trainer.rowgroups import DataError, ShardFiles

_M32 = 0xFFFFFFFF
_SALT_EPOCH = 0xE90C
_SALT_WINDOW = 0x5B0F


def in_holdout(episode_id: str, frac: float) -> bool:
    """Whether an episode is held out for evaluation (stable hash of its id)."""
    if frac <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(episode_id.encode(), digest_size=8).digest(), "little")
    return (h % 1_000_000) < frac * 1_000_000


def unit_order(n_units: int, seed: int) -> list[int]:
    """The run's fixed permutation of unit indices (dealt to streams by `stream_units`)."""
    units = list(range(n_units))
    random.Random(f"units-{seed}").shuffle(units)
    return units


def stream_units(order: Sequence[int], g: int, total: int, where: str) -> list[int]:
    """Stream g of `total`: units order[g], order[g + total], ..."""
    if len(order) < total:
        raise DataError(
            f"{where}: {len(order)} row groups cannot feed {total} loader streams "
            f"(world_size x num_workers); write smaller row groups or use fewer workers"
        )
    return list(order[g::total])


@dataclass
class StreamRows:
    """A stream's units (those with rows in the split, in dealt order), their rows and weights."""

    units: list[int]
    rows: list[np.ndarray]  # per unit: row indices of the split (int64, ascending)
    weights: list[np.ndarray | None]  # per unit: sampling weight of each of `rows`, or None (each row once)

    @property
    def total(self) -> int:
        return int(sum(len(r) for r in self.rows))


def split_rows(manifest: Manifest, units: Sequence[int], split: str, holdout_frac: float, weighted: bool,
               files: ShardFiles | None = None) -> StreamRows:
    """Each unit's rows of `split` (and their sampling weights when `weighted` and the split is train)."""
    files = files or ShardFiles()
    held: dict[str, bool] = {}
    out = StreamRows([], [], [])
    for u in units:
        unit = manifest.units[u]
        filter_eps = split != "all" and holdout_frac > 0
        want_w = weighted and split == "train" and "sampling_weight" in files.get(unit.shard).schema_arrow.names
        cols = (["episode_id"] if filter_eps else []) + (["sampling_weight"] if want_w else [])
        t = files.read(unit, cols) if cols else None
        if not filter_eps:
            rows = np.arange(unit.rows, dtype=np.int64) if split != "eval" else np.zeros(0, np.int64)
        else:
            assert t is not None
            enc = pc.dictionary_encode(t.column("episode_id")).combine_chunks()
            names = enc.dictionary.to_pylist()
            for e in names:
                if e not in held:
                    held[e] = in_holdout(e, holdout_frac)
            flags = np.array([held[e] for e in names], bool)[enc.indices.to_numpy()]
            rows = np.flatnonzero(flags if split == "eval" else ~flags).astype(np.int64)
        if not len(rows):
            continue
        w = None
        if want_w:
            assert t is not None
            w = t.column("sampling_weight").to_numpy(zero_copy_only=False).astype(np.float64)[rows]
            w = np.where(np.isnan(w), 1.0, w)  # a null weight counts once
        out.units.append(u)
        out.rows.append(rows)
        out.weights.append(w)
    return out


def epoch_rng(seed: int, epoch: int, g: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed & _M32, epoch & _M32, g & _M32, *more])


def epoch_draws(sr: StreamRows, seed: int, epoch: int, g: int, shuffle: bool) -> list[tuple[int, np.ndarray]]:
    """(unit, drawn rows) of one epoch of a stream, in visiting order; units drawing nothing are left out."""
    rng = epoch_rng(seed, epoch, g, _SALT_EPOCH)
    drawn = [rows if w is None else draw_rows(rows, w, rng) for rows, w in zip(sr.rows, sr.weights, strict=True)]
    order = rng.permutation(len(sr.units)) if shuffle else np.arange(len(sr.units))
    return [(sr.units[i], drawn[i]) for i in order.tolist() if len(drawn[i])]


def windows(draws: Sequence[tuple[int, np.ndarray]], rows: int) -> list[list[tuple[int, np.ndarray]]]:
    """Consecutive units grouped until each group holds at least `rows` draws (the last may hold fewer)."""
    out: list[list[tuple[int, np.ndarray]]] = []
    cur: list[tuple[int, np.ndarray]] = []
    n = 0
    for item in draws:
        cur.append(item)
        n += len(item[1])
        if n >= rows:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out.append(cur)
    return out


def window_order(n: int, seed: int, epoch: int, g: int, w: int, shuffle: bool) -> np.ndarray:
    """The emission order of a window's n draws."""
    return epoch_rng(seed, epoch, g, w, _SALT_WINDOW).permutation(n) if shuffle else np.arange(n)
