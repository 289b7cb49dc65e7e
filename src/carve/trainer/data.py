"""The trainer's shard loader: `EventStream` (a torch IterableDataset of batches), `make_loader`, `probe`.

One loader, bulk all the way: a stream reads whole row groups with only its view's columns
(`samples.VIEW_COLUMNS`), decodes them to numpy in whole columns (`rowgroups`), builds padded
samples for all rows of a shuffle window at once (`samples.build`) and yields ready batches of
`cfg.batch_size` tensors; the DataLoader only moves them (`batch_size=None`).

Splitting and order are the index plan of `trainer.plan`: row groups dealt round-robin to
`world_size * num_workers` streams (no overlap, no gaps), weighted epochs drawn as index arrays
(`sampling_weight`, floor/ceil per row), shuffling by a buffer of whole row groups holding at
least `shuffle_buffer` rows. Each stream runs epochs forever (training) or exactly one
(evaluation); batches run on across epoch boundaries.

Resuming. The index plan is computed without reading data, so resuming at global batch `b`
skips exactly the samples a stream already delivered, without reading them: with W workers the
DataLoader takes batch k from worker k % W, so worker w skips ceil((b - w) / W) of its batches
(and, since a new DataLoader starts its round robin at worker 0, loader worker i of the resumed
run plays worker (i + b) % W). Streams are infinite, so the round robin never shifts.

Held-out episodes. Normalisation statistics (`probe`) come from training rows only.
`split="train"` drops rows whose episode hashes into the held-out fraction (`holdout_frac`),
`split="eval"` keeps only those, `split="all"` keeps every row.

Feeding a GPU. `make_loader(ds, num_workers, pin_memory=True, prefetch_factor=k)`: each worker
keeps `k` batches ready (DataLoader `prefetch_factor`; default `default_prefetch`, two shuffle
windows' worth, since a worker builds a window's batches in one go and the DataLoader takes
batches from the workers in turn). A worker sends its batches in groups of `group_batches`
consecutive ones (default `default_group`, a shuffle window's worth, at most 8: `trainer.groups`),
one DataLoader message each, since the main process's cost is per message (torch's per-item
bookkeeping, the index sent back, the unpickling); `BatchLoader` cuts the groups back into batches in
the order the DataLoader gives batches sent one per message, so the stream (and resuming, and
the rank and worker splits) does not depend on the group size. A group goes into a slot of a
shared-memory ring (`trainer.shmring`: the worker writes the group's batches into a reused slot,
the pipe carries a descriptor, the main process hands the batches over as views of the slot,
which the worker may reuse once no tensor of them is alive (a caller that keeps many batches gets
copies); with a start
method other than fork, each batch of a group travels through the pipe as one buffer,
`trainer.packing`); the next row groups are read on
a background thread while the current window's batches are built (`read_ahead` windows: by
default in the main process and for `s3://` shards, which are also fetched with coalesced ranged
reads, pyarrow's `pre_buffer`; a worker reading local shards stays one thread, one core);
`pin_memory=True` copies each batch into page-locked memory in the main process (the
DataLoader's pin thread pins each batch of a group there, straight from the slot) so
`batch[k].to("cuda", non_blocking=True)` overlaps the copy with compute. Workers use one torch
and one Arrow thread each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from carve.storage.fs import is_uri
from carve.trainer.config import DataConfig
from carve.trainer.groups import BatchGroup, cut, interleave
from carve.trainer.manifest import Manifest
from carve.trainer.packing import pack
from carve.trainer.plan import (
    epoch_draws,
    in_holdout,
    split_rows,
    stream_units,
    unit_order,
    window_order,
    windows,
)
from carve.trainer.rowgroups import DataError, ReadAhead, ShardFiles, read_units
from carve.trainer.samples import VIEW_COLUMNS, build, task_embedding
from carve.trainer.shmring import Ring, slots_for

__all__ = [
    "BatchLoader",
    "DataDims",
    "DataError",
    "EventStream",
    "NormStats",
    "default_group",
    "default_prefetch",
    "in_holdout",
    "make_loader",
    "probe",
    "task_embedding",
    "to_tensors",
]


# ---------------------------------------------------------------- normalisation statistics
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


def probe(manifest: Manifest, cfg: DataConfig) -> tuple[DataDims, NormStats]:
    """Feature sizes and state/action normalisation statistics from the first `norm_rows`
    training rows (rows of held-out episodes, `holdout_frac`, never enter the statistics)."""
    cols = ("episode_id", "state", "action", "emb_visual", "emb_text")
    files = ShardFiles()
    states, actions, first = [], [], None
    seen = 0
    for u in range(len(manifest.units)):
        blk = read_units(manifest.units, [u], cols, files)
        first = first or blk
        keep = np.array([not in_holdout(e, cfg.holdout_frac) for e in blk.strings["episode_id"]], bool)
        for name, out in (("state", states), ("action", actions)):
            out.append(blk.frames[name][np.repeat(keep, np.diff(blk.offsets[name]))])
        seen += int(keep.sum())
        if seen >= cfg.norm_rows:
            break
    assert first is not None
    s, a = np.concatenate(states), np.concatenate(actions)
    if len(s) == 0:  # every probed row is held out (a tiny manifest): fall back to the first row group
        s, a = first.frames["state"], first.frames["action"]
    dims = DataDims(s.shape[1], a.shape[1], first.vectors["emb_visual"].shape[1],
                    first.vectors["emb_text"].shape[1], cfg.task_dim)
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


# ---------------------------------------------------------------- batches
def to_tensors(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """numpy fields -> torch tensors (sharing memory); `event_id` becomes a list of strings."""
    return {k: v.tolist() if k == "event_id" else torch.from_numpy(np.ascontiguousarray(v))
            for k, v in arrays.items()}


class _Batcher:
    """Cuts a stream of sample arrays (one dict per window) into batches of exactly `size` rows."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rest: dict[str, np.ndarray] | None = None

    def add(self, part: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        n, i = len(part["length"]), 0
        if self.rest is not None:
            need = self.size - len(self.rest["length"])
            if n < need:
                self.rest = {k: np.concatenate([v, part[k]]) for k, v in self.rest.items()}
                return
            yield {k: np.concatenate([v, part[k][:need]]) for k, v in self.rest.items()}
            self.rest, i = None, need
        while n - i >= self.size:
            yield {k: v[i : i + self.size] for k, v in part.items()}
            i += self.size
        if i < n:
            self.rest = {k: v[i:] for k, v in part.items()}

    def flush(self) -> Iterator[dict[str, np.ndarray]]:
        if self.rest is not None:
            yield self.rest
            self.rest = None


# ---------------------------------------------------------------- the stream
class EventStream(IterableDataset):
    """Batches of samples from a manifest, split over ranks/workers without overlap (module docstring).

    Iterating yields dicts of tensors of `cfg.batch_size` rows (`samples.build` names the fields;
    `event_id` is a list of strings); the last batch of a finite stream may be smaller. `task`
    adds the hashed task embedding to the event view (the chunk view always has it);
    `read_ahead` is how many shuffle windows are read ahead on a background thread (0: none;
    default: 1, except in a DataLoader worker reading local shards, where the workers are the
    parallelism and a second thread per worker would only contend for the same cores)."""

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
        read_ahead: int | None = None,
        task: bool | None = None,
    ) -> None:
        super().__init__()
        if view not in VIEW_COLUMNS:
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
        self.read_ahead = read_ahead
        self.task = view == "chunk" if task is None else task  # the hashed task embedding (reads `task`)
        self.columns = tuple(VIEW_COLUMNS[view]) + (("task",) if self.task and view != "chunk" else ())
        self.pack_batches = False  # set by make_loader: workers send groups of batches (`trainer.groups`)
        self.group_batches = 1  # set by make_loader: batches per group
        self.ring: Ring | None = None  # set by BatchLoader while its workers start: batches go into its slots
        self._unit_order = unit_order(len(manifest.units), cfg.seed)

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
        return stream_units(self._unit_order, g, total, self.manifest.path)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        if not (self.pack_batches and info is not None):
            for arrays in self.arrays():
                yield to_tensors(arrays)
            return
        ring = self.ring  # None under spawn (a Ring pickles to None) or when not asked for
        for group, last in cut(self.arrays(), self.group_batches):
            sent = ring.put(info.id, group) if ring is not None else [pack(a) for a in group]
            yield BatchGroup(info.id, last, sent)

    def arrays(self) -> Iterator[dict[str, np.ndarray]]:
        """The stream's batches as numpy arrays (what `__iter__` turns into tensors)."""
        cfg = self.cfg
        g, total, w, nw = self.stream_id()
        depth = self.read_ahead
        if depth is None:
            remote = any(is_uri(s) for s in self.manifest.shards)
            depth = 1 if remote or get_worker_info() is None else 0
        reader = ReadAhead(self.manifest.units, self.columns, depth=depth, use_threads=False)
        sr = split_rows(self.manifest, self.units_for(g, total), self.split, cfg.holdout_frac,
                        cfg.sampling_weights, reader.files)
        if not sr.units:
            if not self.infinite:
                return
            raise DataError(
                f"{self.manifest.path}: loader stream {g} of {total} has no {self.split} rows "
                f"(too few episodes for holdout_frac={cfg.holdout_frac} and this many streams)"
            )
        b = self.start_batch
        skip = max(0, math.ceil((b - w) / nw)) * cfg.batch_size if b > 0 else 0
        window_rows = cfg.shuffle_buffer if cfg.shuffle else cfg.batch_size
        batcher = _Batcher(cfg.batch_size)
        epoch = 0
        while True:
            todo = []  # (window index, its units and draws, draws to drop)
            for wi, win in enumerate(windows(epoch_draws(sr, cfg.seed, epoch, g, cfg.shuffle), window_rows)):
                n = sum(len(d) for _, d in win)
                if skip >= n:  # delivered before the resume: not even read
                    skip -= n
                    continue
                todo.append((wi, win, skip))
                skip = 0
            blocks = reader.blocks([u for u, _ in win] for _, win, _ in todo)
            for blk, (wi, win, drop) in zip(blocks, todo, strict=True):
                base = np.cumsum([0] + [self.manifest.units[u].rows for u, _ in win[:-1]])
                sel = np.concatenate([b0 + d for b0, (_, d) in zip(base.tolist(), win, strict=True)])
                sel = sel[window_order(len(sel), cfg.seed, epoch, g, wi, cfg.shuffle)][drop:]
                part = build(blk, sel, self.view, max_len=cfg.max_len, chunk_len=cfg.chunk_len,
                             task_dim=cfg.task_dim, seed=cfg.seed, epoch=epoch)
                yield from batcher.add(part)
            epoch += 1
            if not self.infinite:
                yield from batcher.flush()
                return


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    pa.set_cpu_count(1)


def _as_is(batch: Any) -> Any:
    return batch


class BatchLoader:
    """Iterates a DataLoader over an EventStream, cutting the workers' `BatchGroup`s back into
    batches in the order of one batch per message (`groups.interleave`; each iteration's workers
    get a fresh `Ring` of `ring_slots` slots when they fork; `ring_slots=0`: every group through
    the pipe)."""

    def __init__(self, loader: DataLoader, ring_slots: int = 0) -> None:
        self.loader = loader
        self.ring_slots = ring_slots

    def _forks(self) -> bool:
        ctx = self.loader.multiprocessing_context
        method = ctx.get_start_method() if ctx is not None else torch.multiprocessing.get_start_method()
        return method == "fork"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds = self.loader.dataset
        ring = None
        if self.ring_slots and self.loader.num_workers and isinstance(ds, EventStream) and self._forks():
            ring = Ring(self.loader.num_workers, self.ring_slots)
            ds.ring = ring
        try:
            # the DataLoader iterator is made now (it draws its worker seeds from torch's RNG and forks
            # the workers, which inherit the ring), not at the first batch
            it = iter(self.loader)
        finally:
            if ring is not None:
                ds.ring = None  # the workers have their copy; later iterations get their own ring
        return self._unpacked(it, ring)

    def _unpacked(self, it: Iterator[Any], ring: Ring | None) -> Iterator[dict[str, Any]]:
        try:
            if self.loader.num_workers:
                yield from interleave(it, self.loader.num_workers)
            else:
                yield from it
        finally:
            del it  # the workers are shut down (when nothing else holds the iterator), then the ring unmapped
            if ring is not None:
                ring.close()


def default_prefetch(cfg: DataConfig) -> int:
    """Batches each worker keeps ready by default: two shuffle windows' worth (at least 2, at most
    64: memory holds about that many batches per worker).

    A worker reads and builds a whole window in one step and then hands out its batches at once,
    while the DataLoader takes batches from the workers strictly in turn: with fewer batches in
    hand than a window holds, the other worker runs dry and waits whenever this one builds a
    window, and 2 workers deliver little more than 1 (BENCHMARKS.md, trainer)."""
    window_rows = cfg.shuffle_buffer if cfg.shuffle else cfg.batch_size
    return min(64, max(2, 2 * math.ceil(window_rows / cfg.batch_size)))


def default_group(cfg: DataConfig) -> int:
    """Batches per DataLoader message by default: a shuffle window's worth (at least 1, at most 8).

    The main process's cost is per message (`trainer.groups`), so more batches per message leave it
    more time; a worker builds a whole window at once anyway, so a window's batches are ready
    together, and a larger group would only hold them back."""
    window_rows = cfg.shuffle_buffer if cfg.shuffle else cfg.batch_size
    return min(8, max(1, math.ceil(window_rows / cfg.batch_size)))


def make_loader(ds: EventStream, num_workers: int = 0, pin_memory: bool = False,
                prefetch_factor: int | None = None, ring: bool = True,
                ring_slots: int | None = None, group_batches: int | None = None) -> BatchLoader:
    """Batches of `ds` through a torch DataLoader with `num_workers` processes (see the module
    docstring for pinning and prefetch); each worker sends `group_batches` consecutive batches
    (default `default_group`) as one message, which the main process cuts back into batches in the
    order of one batch per message (`trainer.groups`), writing a group into one slot of a
    shared-memory ring and sending its descriptor (`trainer.shmring`; `ring=False`, or a start
    method other than fork: the batches themselves, each as one buffer, `trainer.packing`); workers
    use one torch and one Arrow thread each. `prefetch_factor` is the batches each worker keeps
    ready (default `default_prefetch`; the DataLoader's own prefetch factor is that many groups,
    rounded up, at least 2). `ring_slots` defaults to the count with which no worker waits for a
    slot (`shmring.slots_for`)."""
    ds.pack_batches = num_workers > 0
    slots = 0
    if num_workers:
        group = group_batches or default_group(ds.cfg)
        ds.group_batches = group
        prefetch_factor = max(2, math.ceil((prefetch_factor or default_prefetch(ds.cfg)) / group))
        if ring:
            slots = ring_slots if ring_slots is not None else slots_for(prefetch_factor)
    return BatchLoader(DataLoader(
        ds,
        batch_size=None,
        collate_fn=_as_is,  # batches arrive as tensors already
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers else None,
    ), slots)
