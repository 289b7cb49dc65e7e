"""The loader's shared-memory batch ring: same batches as without it, flow control, no leaks, crashes surface."""

from __future__ import annotations

import gc
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from carve.sim.toydata import write_toy_shards
from carve.trainer import shmring
from carve.trainer.config import DataConfig
from carve.trainer.data import EventStream, make_loader
from carve.trainer.manifest import open_manifest


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_shards(tmp_path_factory.mktemp("toy") / "shards" / "v001", n_episodes=24)


def _cfg(**kw: Any) -> DataConfig:
    return DataConfig(**{"holdout_frac": 0.0, "shuffle_buffer": 8, "batch_size": 5, "seed": 7, **kw})


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if k == "event_id":
                assert x[k] == y[k]
            else:
                assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k


def _ring_maps(pid: int | str = "self") -> int:
    """Anonymous shared mappings (what a ring is) in a process."""
    return sum("/dev/zero (deleted)" in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


@pytest.mark.parametrize("view", ["event", "chunk"])
def test_one_worker_ring_gives_the_main_process_batches(toy: Path, view: str) -> None:
    m = open_manifest(toy)
    ref = list(make_loader(EventStream(m, _cfg(), view=view, split="all", infinite=False), 0))
    got = list(make_loader(EventStream(m, _cfg(num_workers=1), view=view, split="all", infinite=False), 1))
    _same(got, ref)  # kept batches stay valid: the first few view their slots, which stay held; the rest are copies


@pytest.mark.parametrize("slots", [None, 1])
def test_two_worker_ring_gives_the_pipe_batches(toy: Path, slots: int | None) -> None:
    """slots=1: every batch waits for the previous one's release (a missing wait corrupts batches)."""
    m = open_manifest(toy)

    def run(**kw: Any) -> list[dict[str, Any]]:
        ds = EventStream(m, _cfg(num_workers=2), split="all", rank=1, world_size=2, infinite=False)
        return list(make_loader(ds, 2, prefetch_factor=4, **kw))

    _same(run(ring_slots=slots), run(ring=False))


def _shared_ranges() -> list[tuple[int, int]]:
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if "/dev/zero (deleted)" in line:
            lo, hi = line.split()[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def test_a_loop_that_drops_its_batches_gets_views_of_the_slots(toy: Path) -> None:
    """A training loop keeps one batch at a time: every batch is a view of a ring slot (no copy out),
    and the stream is the pipe's."""
    m = open_manifest(toy)
    ref = list(make_loader(EventStream(m, _cfg(num_workers=2), split="all", infinite=False), 2, ring=False))
    got, in_slots = [], []
    for b in make_loader(EventStream(m, _cfg(num_workers=2), split="all", infinite=False), 2):
        ranges = _shared_ranges()
        in_slots.append(all(any(lo <= v.data_ptr() < hi for lo, hi in ranges)
                            for k, v in b.items() if k != "event_id"))
        got.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in b.items()})
        del b
    assert len(in_slots) > 4 and all(in_slots)
    _same(got, ref)


def test_ring_batches_are_pinned_by_the_pin_thread(toy: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("pinning needs CUDA")
    m = open_manifest(toy)
    got = list(make_loader(EventStream(m, _cfg(num_workers=1), split="all", infinite=False), 1, pin_memory=True))
    ref = list(make_loader(EventStream(m, _cfg(), split="all", infinite=False), 0))
    assert all(v.is_pinned() for b in got for k, v in b.items() if k != "event_id")
    _same(got, ref)


def test_ring_is_unmapped_and_workers_gone_after_the_epoch_and_after_a_break(toy: Path) -> None:
    m = open_manifest(toy)
    gc.collect()
    base, shm0 = _ring_maps(), set(os.listdir("/dev/shm"))
    loader = make_loader(EventStream(m, _cfg(num_workers=2), split="all", infinite=True), 2)
    it = iter(loader)
    next(it)
    assert _ring_maps() == base + 2  # one mapping per worker ...
    workers = [w.pid for w in it.gi_frame.f_locals["it"]._workers]
    for pid in workers:  # ... shared with it, and no named segment (multiprocessing's semaphores are unlinked)
        named = [x for x in Path(f"/proc/{pid}/maps").read_text().splitlines()
                 if "/dev/shm/" in x and not x.endswith("(deleted)")]
        assert _ring_maps(pid) >= 1 and named == []
    for _ in range(30):
        next(it)
    del it  # an early break out of an infinite stream
    gc.collect()
    assert _ring_maps() == base and not shmring._rings
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert sum(len(b["event_id"]) for b in make_loader(EventStream(m, _cfg(), split="all", infinite=False), 2))
    gc.collect()
    assert _ring_maps() == base and not shmring._rings
    assert {f for f in set(os.listdir("/dev/shm")) - shm0 if str(os.getpid()) in f} == set()


class _Crashing(EventStream):
    """Worker 1 dies (`exit`) or raises after two batches."""

    how = "exit"

    def arrays(self) -> Any:
        info = torch.utils.data.get_worker_info()
        for i, a in enumerate(super().arrays()):
            if info is not None and info.id == 1 and i == 2:
                if self.how == "exit":
                    os._exit(3)
                raise ValueError("bad row group")
            yield a


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["exit", "raise"])
def test_a_worker_crash_is_an_error_not_a_hang(toy: Path, how: str) -> None:
    ds = _Crashing(open_manifest(toy), _cfg(num_workers=2), split="all", infinite=True)
    ds.how = how
    with pytest.raises((RuntimeError, ValueError), match=r"exited unexpectedly|bad row group"):
        for _ in make_loader(ds, 2):
            pass
    gc.collect()
    assert not shmring._rings


@pytest.mark.timeout(300)
def test_spawned_workers_fall_back_to_the_pipe(toy: Path) -> None:
    m = open_manifest(toy)
    loader = make_loader(EventStream(m, _cfg(num_workers=1), split="all", infinite=False), 1)
    loader.loader.multiprocessing_context = "spawn"
    ref = list(make_loader(EventStream(m, _cfg(), split="all", infinite=False), 0))
    _same(list(loader), ref)


def _group(ring: shmring.Ring, v: float, n: int = 1) -> Any:
    return ring.put(0, [{"event_id": np.array(["a", "b"], object), "x": np.full((2, 64), v + i, np.float32),
                         "mask": np.ones((2, 4), bool)} for i in range(n)])


def _in_ring(ring: shmring.Ring, t: torch.Tensor) -> bool:
    """Whether a tensor's memory lies in the ring's mapping (a view of a slot, not a copy)."""
    base = ring._bufs[0].ctypes.data
    return base <= t.data_ptr() < base + ring._bufs[0].nbytes


def test_ring_hands_views_of_slots_while_few_are_held_then_copies() -> None:
    """The worker and main sides in one process: a slot stays taken while a tensor views it, a
    copied group frees its slot at once, and a dropped batch frees its slot for the worker."""
    ring = shmring.Ring(num_workers=1, slots=3, slot_bytes=1 << 16)
    try:
        assert ring.hold == 2
        d0, d1 = _group(ring, 0.0), _group(ring, 10.0)
        assert isinstance(d0, shmring.RingGroup) and isinstance(d1, shmring.RingGroup)
        assert (d0.slot, d1.slot) == (0, 1)
        [out0] = d0.unpack()
        assert _in_ring(ring, out0["x"]) and ring.copies == 0  # a view of slot 0: no copy
        d2 = _group(ring, 20.0, n=2)
        assert d2.slot == 2  # slot 0 is held by out0, slot 1 is not taken yet
        [out1] = d1.unpack()
        two = d2.unpack()  # two slots held already: copied, and slot 2 released at once
        assert ring.copies == 1 and not _in_ring(ring, two[0]["x"])
        assert [float(b["x"][0, 0]) for b in two] == [20.0, 21.0] and [b["event_id"] for b in two] == [["a", "b"]] * 2
        d3 = _group(ring, 30.0)
        assert d3.slot == 2 and float(two[0]["x"][0, 0]) == 20.0  # the copy is the caller's
        x0 = out0["x"]
        del out0
        assert float(x0[1, 63]) == 0.0 and d3.unpack()  # still held: a tensor of the batch lives
        del x0  # the last view of slot 0 dies: released
        d4 = _group(ring, 40.0)
        assert d4.slot == 0 and ring.waits == 0
        assert float(out1["x"][0, 0]) == 10.0 and torch.equal(out1["mask"], torch.ones(2, 4, dtype=torch.bool))
        assert ring.put(0, []) == []  # an empty group takes no slot
        big = {"event_id": np.array(["a"], object), "x": np.zeros((1, 1 << 15), np.float32)}
        assert not isinstance(ring.put(0, [big]), shmring.RingGroup)  # larger than a slot: through the pipe
        half = {"event_id": np.array(["a"], object), "x": np.zeros((1, 1 << 13), np.float32)}
        sent = ring.put(0, [half] * 3)  # each batch fits, the group does not: the pipe, as PackedBatches
        assert isinstance(sent, list) and len(sent) == 3 and sent[2].unpack()["x"].shape == (1, 1 << 13)
        assert pickle.loads(pickle.dumps(ring)) is None  # a spawned worker gets no ring: it uses the pipe
    finally:
        ring.close()
    assert not shmring._rings


@pytest.mark.timeout(60)
def test_a_worker_waits_until_a_view_dies_in_another_thread() -> None:
    """No free slot: `put` waits, and the release comes from the thread that drops the last view
    (as the DataLoader's pin thread does)."""
    ring = shmring.Ring(num_workers=1, slots=2, slot_bytes=1 << 16)
    try:
        [out] = _group(ring, 1.0).unpack()  # slot 0 held (hold = 1)
        d1 = _group(ring, 2.0)  # slot 1: written, not taken
        box = [out]
        del out
        timer = threading.Timer(0.3, box.clear)
        timer.start()
        d2 = _group(ring, 3.0)  # waits until the timer's thread drops the batch
        timer.join()
        assert ring.waits == 1 and d2.slot == 0
        assert float(d1.unpack()[0]["x"][0, 0]) == 2.0 and float(d2.unpack()[0]["x"][0, 0]) == 3.0
    finally:
        ring.close()


def test_copy_out_buffers_are_reused_only_when_no_batch_of_theirs_is_alive() -> None:
    ring = shmring.Ring(num_workers=1, slots=1, slot_bytes=1 << 16)  # one slot: none may be held, every group copied
    try:
        def group(v: float) -> Any:
            return ring.put(0, [{"event_id": np.array(["a"], object), "x": np.full((1, 64), v, np.float32)}])

        kept = group(1.0).unpack()[0]["x"]
        second = group(2.0).unpack()[0]["x"]  # the first group's buffer is still in use: a new one
        assert kept.data_ptr() != second.data_ptr() and float(kept[0, 0]) == 1.0
        ptr = second.data_ptr()
        del second
        third = group(3.0).unpack()[0]["x"][:, :8]  # the second's buffer is free again: reused
        assert third.data_ptr() == ptr and float(kept[0, 0]) == 1.0 and float(third[0, 0]) == 3.0
        fourth = group(4.0).unpack()[0]["x"]  # `third` is a view of a view of its buffer: still in use
        assert float(third[0, 0]) == 3.0 and float(fourth[0, 0]) == 4.0 and float(kept[0, 0]) == 1.0
    finally:
        ring.close()
