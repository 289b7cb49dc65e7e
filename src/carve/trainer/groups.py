"""Batch groups: several consecutive batches of one DataLoader worker per message; `cut` in the worker, `interleave` in the main process.

The main process pays per DataLoader message, not per byte: torch's `__next__` (its profiler
`record_function`, the index sent back to the worker, the thread hand-offs), unpickling the
descriptor, the handover of a ring slot. A worker therefore sends `k` consecutive batches of its
stream as one `BatchGroup` (one message, one index, one ring slot), and the main
process cuts the groups back into the user's batches.

Order. Without groups the DataLoader hands out batches from its workers strictly in turn
(worker 0, 1, ..., W-1, 0, ...), skipping a worker whose finite stream has ended. `interleave`
hands out the batches of the groups in exactly that order: worker `w`'s next batch comes from
its oldest group not yet used up, and a worker whose last group (`last=True`, sent when its
stream ends, empty if the stream ended on a group boundary) is used up drops out of the turn.
So each worker's stream, resuming (`start_batch`), rank and worker splits are what they were
with one batch per message, and the batches are identical, in the same order, for any `k`. All
workers' groups hold `k` batches (but the last), so the main process holds at most about one
group per worker beyond the one it is handing out: the DataLoader delivers groups in the same
turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from carve.trainer.packing import PackedBatch
from carve.trainer.shmring import RingGroup


@dataclass
class BatchGroup:
    """Up to `k` consecutive batches of worker `worker`'s stream (`last`: its stream ends here)."""

    worker: int
    last: bool
    batches: RingGroup | list[PackedBatch] | list[dict[str, Any]]  # unpacked once pinned

    def unpack(self) -> list[dict[str, Any]]:
        b = self.batches
        if isinstance(b, RingGroup):
            return b.unpack()
        return [x.unpack() if isinstance(x, PackedBatch) else x for x in b]

    def pin_memory(self, device: Any = None) -> BatchGroup:
        """The group unpacked, its tensors page-locked (the DataLoader's pin thread calls this)."""
        pinned = [{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in x.items()}
                  for x in self.unpack()]
        return BatchGroup(self.worker, self.last, pinned)


def cut(batches: Iterable[Any], k: int) -> Iterator[tuple[list[Any], bool]]:
    """`(group, last)`: `batches` in lists of `k`; when `batches` ends, the rest (maybe none) with
    `last=True` (an infinite stream never sends one)."""
    if k < 1:
        raise ValueError(f"a group holds at least one batch, got {k}")
    group: list[Any] = []
    for b in batches:
        group.append(b)
        if len(group) == k:
            yield group, False
            group = []
    yield group, True


def interleave(groups: Iterator[Any], num_workers: int) -> Iterator[dict[str, Any]]:
    """The batches of the workers' `BatchGroup`s in the DataLoader's order without groups (module
    docstring); anything else the DataLoader yields is passed through as it comes."""
    pending: list[deque[dict[str, Any]]] = [deque() for _ in range(num_workers)]
    ended = [False] * num_workers
    turn = deque(range(num_workers))
    while turn:
        w = turn[0]
        while not pending[w] and not ended[w]:
            g = next(groups, None)
            if g is None:  # the DataLoader is done: so is every worker
                ended = [True] * num_workers
            elif isinstance(g, BatchGroup):
                pending[g.worker].extend(g.unpack())
                ended[g.worker] = ended[g.worker] or g.last
            else:
                yield g
        if pending[w]:
            yield pending[w].popleft()
            turn.rotate(-1)
        else:
            turn.popleft()
