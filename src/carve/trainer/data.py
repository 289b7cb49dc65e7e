"""Streaming training samples from a shard manifest: `EventStream` (a torch IterableDataset) + collation.

Splitting. The manifest's row groups ("units") are permuted once by `seed` and dealt
round-robin to `world_size * num_workers` streams; stream `g = rank * num_workers + worker`
owns units `g, g + G, g + 2G, ...` for the whole run, so DDP ranks and DataLoader workers
never see the same row (shards that repeat an event, from balancing, still repeat it).

Order. Each stream runs epochs forever (training) or exactly one (evaluation). Epoch `e`
visits its units in an order drawn from `Random("{seed}-{e}-{g}")` and passes the
(unit, row) indices through a shuffle buffer of `shuffle_buffer` items driven by the same
generator; rows are read lazily, one row group at a time, and dropped once all their
indices have been emitted. The index stream is computed without reading data, so
resuming at global batch `b` skips exactly the samples a stream already delivered:
with W workers the DataLoader takes batch k from worker k % W, so worker w skips
ceil((b - w) / W) of its batches (and, since a new DataLoader starts its round robin at
worker 0, loader worker i of the resumed run plays worker (i + b) % W). Streams are
infinite, so the round robin never shifts.

Held-out episodes. Normalisation statistics (`probe`) come from training rows only.
`split="train"` drops rows whose episode hashes into the held-out
fraction (`holdout_frac`), `split="eval"` keeps only those, `split="all"` keeps every row.

Views. `view="event"`: one sample per event: the event's start visual embedding, end
visual embedding, caption text embedding, hashed task embedding, start state, and the
action (and state) sequence padded to `max_len` with a mask. `view="chunk"`: one chunk of
H = `chunk_len` actions per event per epoch, at an offset inside the event's first `max_len`
steps drawn from a stateless hash of (seed, epoch, unit, row); the observation is the
event's start visual embedding (the only visual embedding stored per event) plus the state
at the chunk's first frame.

Task text. The chunk baseline and the unified model condition on the episode's task. We use a
hashed bag-of-words embedding of the `task` string (signed feature hashing of unigrams and
bigrams into `task_dim` slots, L2-normalised), computed on the fly from the row itself: it
needs no model and no lookup of the episode's first event, which may live in another shard.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from carve.core.errors import CarveError
from carve.shard.sampling import draw_rows
from carve.trainer.config import DataConfig
from carve.trainer.manifest import Manifest, Unit, open_shard

READ_COLUMNS = [
    "event_id",
    "episode_id",
    "task",
    "state",
    "action",
    "emb_visual",
    "emb_text",
    "end_emb_visual",
]


class DataError(CarveError):
    """Rows the trainer cannot use; the message names the shard / event and the reason."""


@lru_cache(maxsize=4096)
def task_embedding(task: str, dim: int) -> np.ndarray:
    """Signed hashed bag of unigrams + bigrams of `task`, L2-normalised (zeros for an empty task)."""
    words = [w for w in "".join(c.lower() if c.isalnum() else " " for c in task or "").split() if w]
    feats = words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    v = np.zeros(dim, np.float32)
    for f in feats:
        h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def in_holdout(episode_id: str, frac: float) -> bool:
    """Whether an episode is held out for evaluation (stable hash of its id)."""
    if frac <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(episode_id.encode(), digest_size=8).digest(), "little")
    return (h % 1_000_000) < frac * 1_000_000


def _mix(*xs: int) -> int:
    """A small stateless integer hash (splitmix64 over the inputs)."""
    z = 0x9E3779B97F4A7C15
    for x in xs:
        z = (z ^ (x & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z


# ---------------------------------------------------------------- columns of one row group
def _nested(col: pa.ChunkedArray, where: str, name: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """list<list<float32>> -> (row offsets [n+1], frames [N, D])."""
    arr = col.combine_chunks()
    if arr.null_count:
        bad = ids[int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])]
        raise DataError(f"{where}: event {bad} has a null {name}")
    offsets = arr.offsets.to_numpy()
    inner = arr.flatten()
    lens = np.diff(inner.offsets.to_numpy())
    if len(lens) == 0:
        return offsets - offsets[0], np.zeros((0, 0), np.float32)
    if (lens != lens[0]).any():
        raise DataError(f"{where}: {name} frames have different sizes ({sorted(set(lens.tolist()))[:5]})")
    flat = inner.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return offsets - offsets[0], flat.reshape(len(lens), int(lens[0]))


def _fixed(col: pa.ChunkedArray, where: str, name: str, ids: list[str]) -> np.ndarray:
    arr = col.combine_chunks()
    if arr.null_count:
        bad = ids[int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])]
        raise DataError(f"{where}: event {bad} has no {name} (null); embed the catalog before sharding")
    lens = np.diff(arr.offsets.to_numpy())
    if len(lens) and (lens != lens[0]).any():
        raise DataError(f"{where}: {name} has rows of different sizes ({sorted(set(lens.tolist()))[:5]})")
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(lens), int(lens[0]) if len(lens) else 0)


@dataclass
class RowGroup:
    """Decoded columns of one unit."""

    event_id: list[str]
    episode_id: list[str]
    task: list[str]
    state_off: np.ndarray
    state: np.ndarray
    action_off: np.ndarray
    action: np.ndarray
    visual: np.ndarray
    text: np.ndarray
    end_visual: np.ndarray

    @classmethod
    def read(cls, unit: Unit, files: dict[str, pq.ParquetFile] | None = None) -> RowGroup:
        """Read and decode one unit; `files` caches open ParquetFile handles by path."""
        where = f"{unit.shard} (row group {unit.row_group})"
        try:
            pf = files.get(unit.shard) if files is not None else None
            if pf is None:
                pf = open_shard(unit.shard)
                if files is not None:
                    files[unit.shard] = pf
            t = pf.read_row_group(unit.row_group, columns=READ_COLUMNS)
        except (OSError, pa.ArrowInvalid) as e:
            raise DataError(f"{where}: cannot read: {e}") from e
        ids = t.column("event_id").to_pylist()
        so, s = _nested(t.column("state"), where, "state", ids)
        ao, a = _nested(t.column("action"), where, "action", ids)
        bad = np.flatnonzero(np.diff(ao) == 0)
        if len(bad):
            raise DataError(f"{where}: event {ids[int(bad[0])]} has no actions")
        return cls(
            ids,
            t.column("episode_id").to_pylist(),
            [x or "" for x in t.column("task").to_pylist()],
            so,
            s,
            ao,
            a,
            _fixed(t.column("emb_visual"), where, "emb_visual", ids),
            _fixed(t.column("emb_text"), where, "emb_text", ids),
            _fixed(t.column("end_emb_visual"), where, "end_emb_visual", ids),
        )


# ---------------------------------------------------------------- dataset
@dataclass(frozen=True)
class DataDims:
    state: int
    action: int
    visual: int
    text: int
    task: int


@dataclass
class NormStats:
    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray


def _train_frames(off: np.ndarray, frames: np.ndarray, keep: np.ndarray) -> np.ndarray:
    idx = [np.arange(off[i], off[i + 1]) for i in np.flatnonzero(keep)]
    return frames[np.concatenate(idx)] if idx else frames[:0]


def probe(manifest: Manifest, cfg: DataConfig) -> tuple[DataDims, NormStats]:
    """Feature sizes and state/action normalisation statistics from the first `norm_rows`
    training rows (rows of held-out episodes, `holdout_frac`, never enter the statistics)."""
    states, actions, first = [], [], None
    seen = 0
    for unit in manifest.units:
        rg = RowGroup.read(unit)
        first = first or rg
        keep = np.array([not in_holdout(e, cfg.holdout_frac) for e in rg.episode_id], bool)
        states.append(_train_frames(rg.state_off, rg.state, keep))
        actions.append(_train_frames(rg.action_off, rg.action, keep))
        seen += int(keep.sum())
        if seen >= cfg.norm_rows:
            break
    assert first is not None
    s, a = np.concatenate(states), np.concatenate(actions)
    if len(s) == 0:  # every probed row is held out (a tiny manifest): fall back to the first row group
        s, a = first.state, first.action
    dims = DataDims(s.shape[1], a.shape[1], first.visual.shape[1], first.text.shape[1], cfg.task_dim)
    s = s[np.isfinite(s).all(1)]  # non-finite frames are left to the loss check, not the statistics
    a = a[np.isfinite(a).all(1)]
    if len(s) == 0 or len(a) == 0:
        raise DataError(f"{manifest.path}: no finite state/action frames in the first {seen} rows")
    stats = NormStats(
        s.mean(0).astype(np.float32),
        np.maximum(s.std(0), 1e-3).astype(np.float32),
        a.mean(0).astype(np.float32),
        np.maximum(a.std(0), 1e-3).astype(np.float32),
    )
    return dims, stats


class EventStream(IterableDataset):
    """Samples from a manifest, split over ranks/workers without overlap (see module docstring)."""

    def __init__(
        self,
        manifest: Manifest,
        cfg: DataConfig,
        view: str = "event",
        split: str = "train",
        rank: int = 0,
        world_size: int = 1,
        infinite: bool = True,
        start_batch: int = 0,
    ) -> None:
        super().__init__()
        if view not in ("event", "chunk"):
            raise ValueError(f"view must be 'event' or 'chunk', got {view!r}")
        if split not in ("train", "eval", "all"):
            raise ValueError(f"split must be train/eval/all, got {split!r}")
        self.manifest = manifest
        self.cfg = cfg
        self.view = view
        self.split = split
        self.rank = rank
        self.world_size = world_size
        self.infinite = infinite
        self.start_batch = start_batch
        units = list(range(len(manifest.units)))
        random.Random(f"units-{cfg.seed}").shuffle(units)
        self._unit_order = units

    # -- which rows each stream owns
    def stream_id(self) -> tuple[int, int, int, int]:
        """(g, G, worker, num_workers) for the calling process.

        A DataLoader always starts its round robin at worker 0, so after resuming at batch b,
        worker i plays the part of the original worker (i + b) % num_workers.
        """
        info = get_worker_info()
        i, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        w = (i + self.start_batch) % nw
        return self.rank * nw + w, self.world_size * nw, w, nw

    def units_for(self, g: int, total: int) -> list[int]:
        if len(self._unit_order) < total:
            raise DataError(
                f"{self.manifest.path}: {len(self._unit_order)} row groups cannot feed {total} loader streams "
                f"(world_size x num_workers); write smaller row groups or use fewer workers"
            )
        return self._unit_order[g::total]

    def _valid_rows(self, units: list[int]) -> tuple[dict[int, list[int]], dict[int, list[float]]]:
        """(this split's rows per unit, the train split's `sampling_weight` per unit that has one)."""
        frac = self.cfg.holdout_frac
        out: dict[int, list[int]] = {}
        weights: dict[int, list[float]] = {}
        for u in units:
            unit = self.manifest.units[u]
            weighted = self.split == "train" and self.cfg.sampling_weights
            pf = open_shard(unit.shard) if weighted or (self.split != "all" and frac > 0) else None
            if weighted and pf is not None and "sampling_weight" in pf.schema_arrow.names:
                w = pf.read_row_group(unit.row_group, columns=["sampling_weight"]).column(0).to_pylist()
                weights[u] = [1.0 if x is None else float(x) for x in w]
            if self.split == "all" or frac <= 0:
                rows = list(range(unit.rows)) if self.split != "eval" else []
            else:
                assert pf is not None
                eps = pf.read_row_group(unit.row_group, columns=["episode_id"])
                keep_eval = self.split == "eval"
                rows = [
                    i for i, e in enumerate(eps.column(0).to_pylist()) if in_holdout(e, frac) == keep_eval
                ]
            if rows:
                out[u] = rows
        return out, weights

    @staticmethod
    def _draws(valid: dict[int, list[int]], weights: dict[int, list[float]],
               rng: random.Random) -> dict[int, list[int]]:
        """This epoch's rows per unit: a row of sampling weight w is drawn floor(w) or ceil(w)
        times (expected w: a weights-mode version's weights sum to its epoch size) by the shard
        package's draw (`carve.shard.sampling.draw_rows`, one `rng.random()` per row), rows of
        units without weights once; deterministic by (data seed, epoch, stream)."""
        if not weights:
            return valid
        out: dict[int, list[int]] = {}
        for u, rows in valid.items():
            w = weights.get(u)
            if w is None:
                out[u] = rows
                continue
            drawn = draw_rows(rows, [w[r] for r in rows], rng)
            if drawn:
                out[u] = drawn
        return out

    def _epoch_indices(
        self, valid: dict[int, list[int]], epoch: int, g: int, rng: random.Random
    ) -> Iterator[tuple[int, int]]:
        units = list(valid)  # in this stream's dealt order
        if self.cfg.shuffle:
            rng.shuffle(units)
        stream = ((u, r) for u in units for r in valid[u])
        if not self.cfg.shuffle or self.cfg.shuffle_buffer <= 1:
            yield from stream
            return
        size = self.cfg.shuffle_buffer
        buf: list[tuple[int, int]] = []
        for item in stream:
            if len(buf) < size:
                buf.append(item)
                continue
            j = rng.randrange(size)
            yield buf[j]
            buf[j] = item
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[dict[str, Any]]:
        g, total, w, nw = self.stream_id()
        valid, weights = self._valid_rows(self.units_for(g, total))
        if not valid:
            if not self.infinite:
                return
            raise DataError(
                f"{self.manifest.path}: loader stream {g} of {total} has no {self.split} rows "
                f"(too few episodes for holdout_frac={self.cfg.holdout_frac} and this many streams)"
            )
        b = self.start_batch
        skip = max(0, math.ceil((b - w) / nw)) * self.cfg.batch_size if b > 0 else 0
        epoch = 0
        while True:
            rng = random.Random(f"{self.cfg.seed}-{epoch}-{g}")
            drawn = self._draws(valid, weights, rng)
            remaining = {u: len(rows) for u, rows in drawn.items()}
            cache: dict[int, RowGroup] = {}
            files: dict[str, pq.ParquetFile] = {}
            for u, r in self._epoch_indices(drawn, epoch, g, rng):
                remaining[u] -= 1
                if skip > 0:
                    skip -= 1
                    continue
                rg = cache.get(u)
                if rg is None:
                    rg = cache[u] = RowGroup.read(self.manifest.units[u], files)
                yield self._sample(rg, r, epoch, u)
                if remaining[u] == 0:
                    cache.pop(u, None)
            epoch += 1
            if not self.infinite:
                return

    # -- one sample
    def _sample(self, rg: RowGroup, r: int, epoch: int, u: int) -> dict[str, Any]:
        cfg = self.cfg
        a0, a1 = int(rg.action_off[r]), int(rg.action_off[r + 1])
        s0, s1 = int(rg.state_off[r]), int(rg.state_off[r + 1])
        actions, states = rg.action[a0:a1], rg.state[s0:s1]
        if len(states) == 0:
            raise DataError(f"{self.manifest.units[u].shard}: event {rg.event_id[r]} has no state frames")
        if len(states) < len(actions):  # pad states by repeating the last frame
            states = np.concatenate([states, np.repeat(states[-1:], len(actions) - len(states), 0)])
        L = len(actions)
        if self.view == "event":
            T, off = cfg.max_len, 0
        else:
            T = cfg.chunk_len
            span = min(L, cfg.max_len)
            off = _mix(cfg.seed, epoch, u, r) % max(1, span - T + 1) if span > T else 0
        n = min(L - off, T)
        act = np.zeros((T, actions.shape[1]), np.float32)
        act[:n] = actions[off : off + n]
        mask = np.zeros(T, bool)
        mask[:n] = True
        out: dict[str, Any] = {
            "event_id": rg.event_id[r],
            "visual": rg.visual[r],
            "end_visual": rg.end_visual[r],
            "text": rg.text[r],
            "task": task_embedding(rg.task[r], cfg.task_dim),
            "state": states[off],
            "actions": act,
            "mask": mask,
            "length": n,
            "offset": off,
        }
        if self.view == "event":
            st = np.zeros((T, states.shape[1]), np.float32)
            st[:n] = states[:n]
            out["states"] = st
        return out


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples into a batch; `event_id` stays a list of strings."""
    out: dict[str, Any] = {"event_id": [s["event_id"] for s in samples]}
    for k in samples[0]:
        if k == "event_id":
            continue
        out[k] = torch.from_numpy(np.stack([np.asarray(s[k]) for s in samples]))
    return out


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(ds: EventStream, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
