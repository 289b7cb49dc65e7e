"""Batch rings: DataLoader workers write groups of batches into reused shared-memory slots; the result pipe carries descriptors.

Through the DataLoader's one result pipe (64 KB of buffer), a packed batch (`trainer.packing`:
tens to hundreds of KB) is pickled, written in pieces by the worker's feeder thread and read
back piece by piece by the main process, while the other worker's feeder waits for the pipe's
lock. A `Ring` gives each worker `slots` fixed slots of one shared mapping instead: the worker
copies the arrays of a group of consecutive batches (`trainer.groups`: one DataLoader message per
group) as built (the sequences stay padded: a memcpy, no gather), one batch after the other, into
a free slot and sends a `RingGroup` (worker, slot, each batch's layout and event ids: a few
hundred bytes per batch).

Handing the group over (`Ring.take`, in the main process). While fewer than `hold` of the
worker's slots are held, the group's tensors are views of the slot itself, no copy: the slot
stays held while any tensor of its batches is alive, and is released (marked free for the
worker) by a finalizer when the last one dies, in whichever thread drops it (a training loop
drops a batch when it takes the next; the pin thread drops the unpinned views once it has
copied them). A caller that keeps batches (`list(loader)`) holds slots; once `hold` are held the
main process copies groups out of their slots in one memcpy into reused buffers (one is reused
only once no tensor of its batches is alive: a fresh buffer of a megabyte or more is fresh
pages, and faulting them in costs more than the rest of the work per batch) and releases the
slot at once. So a batch stays valid however long the caller keeps it, either way; copying out
cost the main process about a fifth of its time per event (BENCHMARKS.md, trainer), which is
what the views save in a loop that drops its batches.

Flow control. Everything below counts groups (what the DataLoader calls items). Each slot has a
state word in the mapping's header: the worker marks a free slot taken before it writes, the main
process marks it free again (after the copy, or when its views die). A worker waits only when
none of its slots is free. Progress: the main process never holds more than `hold <= slots - 1`
of a worker's slots, so a waiting worker has at least one slot that it has written and the main
process has not taken; the group the DataLoader needs first is therefore one that has been sent
(the worker that would build it has sent its earlier groups, which come first), and taking it
either copies and frees its slot or holds it while fewer than `hold` are held, which frees no
slot but leaves the copy path for the next. With `slots = P + 1 + HOLD` (`slots_for`; P the
prefetch factor) a worker never waits in steady state: at most P + 1 of its groups are written
and not yet taken (its outstanding indices plus the one being handed over), and at most `HOLD`
are held. When a worker of a finite stream runs out, the others take its share of indices and
may wait for a slot near the stream's end, which the argument above resolves. The states make
the ring correct for any `slots` (a test uses 1: every group copied out).

Memory and start methods. The mapping is anonymous (`mmap(-1, ...)`, MAP_SHARED), made by the
main process before the workers fork and inherited by them: nothing is named, so nothing can be
left in /dev/shm however the processes end, and the pages are freed when the last process
unmaps them (the main process once its iteration has ended and no tensor views a slot, a worker
when it exits). Slots are address space (64 MB each, at most 512 MB per worker); only the pages
the groups touch are backed: about `slots` groups' worth per worker, what the prefetch holds
anyway. A `Ring` pickles to nothing, so under `spawn`/`forkserver` the workers find no ring and
send `PackedBatch`es through the pipe as before (correct, slower); so does a group larger than a
slot.
"""

from __future__ import annotations

import ctypes
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

SLOT_BYTES = 64 << 20  # address space per slot (at most); a group that does not fit goes through the pipe
RING_BYTES = 512 << 20  # address space per worker (at most): many slots get smaller ones
HOLD = 4  # slots per worker the main process lets live tensors hold before it copies groups out
_FREE = 3  # sys.getrefcount of a spare buffer no view refers to: the list, the loop variable, the call
_WAIT_S = 0.0002  # poll interval of a worker waiting for a slot (with `slots_for` slots: only near a finite end)

_rings: weakref.WeakValueDictionary[tuple[int, int], Ring] = weakref.WeakValueDictionary()
_ids = itertools.count()


def slots_for(prefetch_factor: int) -> int:
    """Slots per worker with which no worker waits for one in steady state (module docstring)."""
    return prefetch_factor + 1 + HOLD


@dataclass
class RingGroup:
    """What travels through the pipe for a group of batches in a ring slot: where it is, each
    batch's layout (offsets from the slot's start) and event ids."""

    ring: tuple[int, int]  # (creating pid, ring number): the main process's registry key
    worker: int
    slot: int
    layouts: tuple[Layout, ...]
    event_ids: list[list[str]]

    def unpack(self) -> list[dict[str, Any]]:
        ring = _rings.get(self.ring)
        if ring is None:
            raise RuntimeError("a ring batch arrived after its loader's ring was closed")
        return ring.take(self)


def _no_ring() -> None:
    return None


def _release(states: np.ndarray, held: set[int], slot: int) -> None:
    """The last tensor viewing `slot` died: the worker may write it again."""
    held.discard(slot)
    states[slot] = 0


class Ring:
    """`slots` slots of `slot_bytes` per worker in one anonymous shared mapping each (module docstring).

    Made in the main process before the workers start (`put` runs in a worker, `take` in the main
    process); `close` unmaps the main process's view (once no tensor views a slot)."""

    def __init__(self, num_workers: int, slots: int, slot_bytes: int | None = None) -> None:
        if slots < 1 or num_workers < 1:
            raise ValueError("a ring needs at least one worker and one slot")
        if slot_bytes is None:
            slot_bytes = min(SLOT_BYTES, RING_BYTES // slots // mmap.PAGESIZE * mmap.PAGESIZE)
        self.key = (os.getpid(), next(_ids))
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.hold = min(HOLD, slots - 1)  # < slots: a waiting worker always has a sent, untaken slot
        self._header = -(-8 * slots // 64) * 64  # a state word per slot, cache-line padded
        self._maps = [mmap.mmap(-1, self._header + slots * slot_bytes) for _ in range(num_workers)]
        self._bufs = [np.frombuffer(m, np.uint8) for m in self._maps]
        self._states = [b[: 8 * slots].view(np.int64) for b in self._bufs]  # 0 free, 1 written or held
        self._slot_type = ctypes.c_uint8 * slot_bytes
        self._held: list[set[int]] = [set() for _ in range(num_workers)]  # in the main process: slots views hold
        self._cursor = 0  # in a worker: where its search for a free slot starts
        self._spare: list[np.ndarray] = []  # in the main process: copy-out buffers, reused once free
        self._spare_max = 2 * num_workers + 4  # the groups `interleave` holds, the one handed out, the caller's
        self.waits = 0  # in a worker: how often it waited for a slot
        self.copies = 0  # in the main process: groups copied out (the rest were handed over as views)
        self._registry = _rings  # kept: `close` may run while the interpreter tears the module down
        _rings[self.key] = self

    def __reduce__(self) -> tuple[Any, tuple[()]]:  # a spawned worker gets no ring: the pipe it is
        return (_no_ring, ())

    def _offset(self, slot: int) -> int:
        return self._header + slot * self.slot_bytes

    # -- in a worker
    def _free_slot(self, worker: int) -> int:
        """A slot the main process has released (waiting for one if none is)."""
        states = self._states[worker]
        parent = None
        while True:
            for i in range(self.slots):
                s = (self._cursor + i) % self.slots
                if states[s] == 0:
                    self._cursor = (s + 1) % self.slots
                    return s
            if parent is None:
                parent = os.getppid()
                self.waits += 1
            elif os.getppid() != parent:  # the main process is gone
                raise RuntimeError("the DataLoader's main process exited")
            time.sleep(_WAIT_S)

    def put(self, worker: int, batches: list[dict[str, np.ndarray]]) -> RingGroup | list[PackedBatch]:
        """Write a group of batches, one after the other, into a free slot of the worker's (waiting
        until the main process released one); a group larger than a slot comes back as
        `PackedBatch`es for the pipe, an empty one as an empty list."""
        plans = [plan(arrays, ragged=False) for arrays in batches]  # memcpy in, memcpy out: no gather
        size = sum(p[2] for p in plans)
        if size > self.slot_bytes or not batches:
            return [pack(arrays) for arrays in batches]
        s = self._free_slot(worker)
        self._states[worker][s] = 1
        o = self._offset(s)
        slot = self._bufs[worker][o : o + self.slot_bytes]
        layouts, base = [], 0
        for fields, layout, nbytes in plans:  # each batch's plan is 64-byte aligned: so is the next base
            write(fields, layout, slot[base : base + nbytes])
            layouts.append(tuple((n, d, sh, base + off, b) for n, d, sh, off, b in layout))
            base += nbytes
        return RingGroup(self.key, worker, s, tuple(layouts), [a["event_id"].tolist() for a in batches])

    # -- in the main process
    def take(self, group: RingGroup) -> list[dict[str, Any]]:
        """The group's batches as tensors: views of its slot while fewer than `hold` of the worker's
        slots are held (the slot is released when the last of them dies), else views of one copy of
        it, the slot released at once (module docstring)."""
        w, s = group.worker, group.slot
        held = self._held[w]
        if len(held) < self.hold:
            buffer: Any = self._slot_type.from_buffer(self._maps[w], self._offset(s))
            held.add(s)
            weakref.finalize(buffer, _release, self._states[w], held, s)
        else:
            end = max((off + nbytes for layout in group.layouts for _, _, _, off, nbytes in layout), default=0)
            buffer = self._buffer(end)
            o = self._offset(s)
            buffer[:] = self._bufs[w][o : o + end]
            self._states[w][s] = 0
            self.copies += 1
        return [unpack_buffer(buffer, layout, ids) for layout, ids in zip(group.layouts, group.event_ids, strict=True)]

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
        """Unmap the main process's view (left to the garbage collector while a tensor still views a slot)."""
        self._registry.pop(self.key, None)
        self._bufs, self._states, self._spare = [], [], []
        for m in self._maps:
            try:
                m.close()
            except BufferError:  # an exported view still lives: unmapped when it is collected
                pass
        self._maps = []
