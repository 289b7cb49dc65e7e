"""Batch rings: DataLoader workers write groups of batches into reused shared-memory slots; the result pipe carries descriptors.

Through the DataLoader's one result pipe (64 KB of buffer), a packed batch (`trainer.packing`:
tens to hundreds of KB) is pickled, written in pieces by the worker's feeder thread and read
back piece by piece by the main process, while the other worker's feeder waits for the pipe's
lock. A `Ring` gives each worker `slots` fixed slots of one shared mapping instead: the worker
copies the arrays of a group of consecutive batches (`trainer.groups`: one DataLoader message per
group) as built (the sequences stay padded: a memcpy, no gather), one batch after the other, into
its next slot and sends a `RingGroup` (worker, sequence number, each batch's layout and event
ids: a few hundred bytes per batch), and the main process copies the group out of the slot in one
memcpy (`Ring.take`; the batches' tensors are views of that copy, so a batch stays valid however
long the caller keeps it, and keeps its group's copy alive) and releases the slot. The copies go
into a few reused buffers (one is reused only once no tensor of its batches is alive: a fresh
buffer of a megabyte or more is fresh pages, and faulting them in cost the main process more than
the rest of its work per batch). With
`pin_memory=True` the DataLoader's pin thread does the copying out.

Flow control. Everything below counts groups (what the DataLoader calls items; "batch" here
means one group). Worker `w` writes its `j`-th batch into slot `j % slots` only after the main
process has released its batch `j - slots` (a counter per worker in the mapping's header,
written by the main process after each copy, polled by the worker). With `slots = P + 1`
(`slots_for`; P the prefetch factor) a worker never waits while all W workers are running: it
builds batch `j` only once it holds the index for it; the DataLoader keeps the indices
`[r, r + P * W)` outstanding (r the next batch to hand over), dealt round robin, so P per
worker, sends the next one as it hands batch `r` over, and batches are handed over and copied
out in order. So at most P + 1 of a worker's batches are not yet copied (its outstanding ones
plus the one being handed over); if slot `j % slots` still held batch `j - slots`, batches
`j - slots .. j`, P + 2 of them, would all be. When a worker of a finite stream runs out, the
others take its share of indices and may wait for a slot near the stream's end; that cannot
deadlock: a worker waits only for one of its own batches that it has already sent, which the
main process reaches before anything the waiting worker has not sent (`groups.interleave` copies
a group out as soon as the DataLoader yields it, whichever batch it hands the caller next, so
cutting groups back into batches changes none of this). The counter makes the
ring correct for any `slots` (a test uses 1); the arithmetic makes it free in steady state.

Memory and start methods. The mapping is anonymous (`mmap(-1, ...)`, MAP_SHARED), made by the
main process before the workers fork and inherited by them: nothing is named, so nothing can be
left in /dev/shm however the processes end, and the pages are freed when the last process
unmaps them (the main process when its iteration ends or is dropped, a worker when it exits).
Slots are address space (64 MB each, at most 512 MB per worker); only the pages the groups
touch are backed: about `slots` groups' worth per worker, what the prefetch holds anyway. A
`Ring` pickles to nothing, so under `spawn`/`forkserver` the workers find no ring and send
`PackedBatch`es through the pipe as before (correct, slower); so does a group larger than a slot.
"""

from __future__ import annotations

import itertools
import mmap
import os
import sys
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from carve.trainer.packing import Layout, PackedBatch, pack, plan, unpack_buffer, write

_HEADER = 64  # per worker mapping: the released-batch counter (int64), cache-line padded
SLOT_BYTES = 64 << 20  # address space per slot (at most); a group that does not fit goes through the pipe
RING_BYTES = 512 << 20  # address space per worker (at most): many slots get smaller ones
_FREE = 3  # sys.getrefcount of a spare buffer no view refers to: the list, the loop variable, the call
_WAIT_S = 0.0002  # poll interval of a worker waiting for a slot (with `slots_for` slots: only near a finite end)

_rings: weakref.WeakValueDictionary[tuple[int, int], Ring] = weakref.WeakValueDictionary()
_ids = itertools.count()


def slots_for(prefetch_factor: int) -> int:
    """Slots per worker with which no worker waits for one while all are running (module docstring)."""
    return prefetch_factor + 1


@dataclass
class RingGroup:
    """What travels through the pipe for a group of batches in a ring slot: where it is, each
    batch's layout (offsets from the slot's start) and event ids."""

    ring: tuple[int, int]  # (creating pid, ring number): the main process's registry key
    worker: int
    seq: int  # the worker's group number: slot `seq % slots`
    layouts: tuple[Layout, ...]
    event_ids: list[list[str]]

    def unpack(self) -> list[dict[str, Any]]:
        ring = _rings.get(self.ring)
        if ring is None:
            raise RuntimeError("a ring batch arrived after its loader's ring was closed")
        return ring.take(self)


def _no_ring() -> None:
    return None


class Ring:
    """`slots` slots of `slot_bytes` per worker in one anonymous shared mapping each (module docstring).

    Made in the main process before the workers start (`put` runs in a worker, `take` in the main
    process); `close` unmaps the main process's view."""

    def __init__(self, num_workers: int, slots: int, slot_bytes: int | None = None) -> None:
        if slots < 1 or num_workers < 1:
            raise ValueError("a ring needs at least one worker and one slot")
        if slot_bytes is None:
            slot_bytes = min(SLOT_BYTES, RING_BYTES // slots // mmap.PAGESIZE * mmap.PAGESIZE)
        self.key = (os.getpid(), next(_ids))
        self.slots = slots
        self.slot_bytes = slot_bytes
        self._maps = [mmap.mmap(-1, _HEADER + slots * slot_bytes) for _ in range(num_workers)]
        self._bufs = [np.frombuffer(m, np.uint8) for m in self._maps]
        self._released = [b[:8].view(np.int64) for b in self._bufs]
        self._next = 0  # in a worker: its next batch number
        self._spare: list[np.ndarray] = []  # in the main process: copy-out buffers, reused once free
        self._spare_max = 2 * num_workers + 4  # the groups `interleave` holds, the one handed out, the caller's
        self.waits = 0  # in a worker: how often it waited for a slot
        _rings[self.key] = self

    def __reduce__(self) -> tuple[Any, tuple[()]]:  # a spawned worker gets no ring: the pipe it is
        return (_no_ring, ())

    def _slot(self, worker: int, seq: int) -> np.ndarray:
        o = _HEADER + (seq % self.slots) * self.slot_bytes
        return self._bufs[worker][o : o + self.slot_bytes]

    # -- in a worker
    def put(self, worker: int, batches: list[dict[str, np.ndarray]]) -> RingGroup | list[PackedBatch]:
        """Write a group of batches, one after the other, into the worker's next slot (waiting until
        the main process released it); a group larger than a slot comes back as `PackedBatch`es for
        the pipe, an empty one as an empty list."""
        plans = [plan(arrays, ragged=False) for arrays in batches]  # memcpy in, memcpy out: no gather
        size = sum(p[2] for p in plans)
        if size > self.slot_bytes or not batches:
            return [pack(arrays) for arrays in batches]
        seq = self._next
        released = self._released[worker]
        if int(released[0]) < seq - self.slots + 1:
            parent = os.getppid()
            self.waits += 1
            while int(released[0]) < seq - self.slots + 1:
                if os.getppid() != parent:  # the main process is gone
                    raise RuntimeError("the DataLoader's main process exited")
                time.sleep(_WAIT_S)
        slot = self._slot(worker, seq)
        layouts, base = [], 0
        for fields, layout, nbytes in plans:  # each batch's plan is 64-byte aligned: so is the next base
            write(fields, layout, slot[base : base + nbytes])
            layouts.append(tuple((n, d, sh, base + o, b) for n, d, sh, o, b in layout))
            base += nbytes
        self._next = seq + 1
        return RingGroup(self.key, worker, seq, tuple(layouts), [a["event_id"].tolist() for a in batches])

    # -- in the main process
    def take(self, group: RingGroup) -> list[dict[str, Any]]:
        """The group's batches as tensors, copied out of its slot in one copy (the tensors are views of
        it), and the slot released to the worker."""
        end = max((off + nbytes for layout in group.layouts for _, _, _, off, nbytes in layout), default=0)
        own = self._buffer(end)
        own[:] = self._slot(group.worker, group.seq)[:end]
        self._released[group.worker][0] = group.seq + 1
        return [unpack_buffer(own, layout, ids) for layout, ids in zip(group.layouts, group.event_ids, strict=True)]

    def _buffer(self, nbytes: int) -> np.ndarray:
        """`nbytes` of a buffer no live batch uses, reused when one is free: a fresh one each time
        would be fresh pages (above malloc's mmap threshold), a page fault per 4 KB copied out."""
        for i in range(len(self._spare)):
            b = self._spare[i]
            if sys.getrefcount(b) == _FREE:  # no view of it is alive: no tensor of its batches
                if b.nbytes < nbytes:
                    b = self._spare[i] = np.empty(nbytes, np.uint8)
                return b[:nbytes]
        b = np.empty(nbytes, np.uint8)
        if len(self._spare) < self._spare_max:
            self._spare.append(b)
        return b[:nbytes]

    def close(self) -> None:
        """Unmap the main process's view (left to the garbage collector if a view of it is still alive)."""
        _rings.pop(self.key, None)
        self._bufs, self._released, self._spare = [], [], []
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # an exported view still lives: unmapped when it is collected
                pass
        self._maps = []
