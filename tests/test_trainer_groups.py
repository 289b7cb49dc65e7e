"""Batch groups (several batches per DataLoader message): the same batches in the same order as one per message."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

# the ring's tests' loader config and batch comparison
from test_trainer_shmring import _cfg, _same

from carve.sim.toydata import write_toy_shards
from carve.trainer import data as data_mod
from carve.trainer.data import EventStream, default_group, make_loader, to_tensors
from carve.trainer.groups import BatchGroup, cut, interleave
from carve.trainer.manifest import open_manifest


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_shards(tmp_path_factory.mktemp("toy") / "shards" / "v001", n_episodes=24)


def _per_worker(toy: Path, workers: int, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> list[list[dict[str, Any]]]:
    """Each DataLoader worker's batch stream, computed in this process (worker i of `workers`)."""
    out = []
    for i in range(workers):
        monkeypatch.setattr(data_mod, "get_worker_info", lambda i=i: SimpleNamespace(id=i, num_workers=workers))
        ds = EventStream(open_manifest(toy), _cfg(num_workers=workers), split="all", infinite=False, **kw)
        out.append([to_tensors(a) for a in ds.arrays()])
    monkeypatch.undo()
    return out


def _round_robin(streams: list[list[Any]]) -> list[Any]:
    """Batches in turn from each stream, a stream that ended dropping out: the DataLoader's order."""
    return [b for row in zip_longest(*streams) for b in row if b is not None]


def test_cut_sends_a_last_group_when_the_stream_ends() -> None:
    assert list(cut(range(7), 3)) == [([0, 1, 2], False), ([3, 4, 5], False), ([6], True)]
    assert list(cut(range(6), 3)) == [([0, 1, 2], False), ([3, 4, 5], False), ([], True)]  # ends on a boundary
    assert list(cut([], 4)) == [([], True)]
    with pytest.raises(ValueError):
        list(cut(range(3), 0))


def test_interleave_takes_batches_in_turn_and_drops_a_worker_that_ended() -> None:
    def g(w: int, xs: list[int], last: bool = False) -> BatchGroup:
        return BatchGroup(w, last, [{"x": x} for x in xs])

    # the DataLoader's group order: in turn, worker 0 drops out after its (partial) last group
    groups = [g(0, [0, 2]), g(1, [1, 3]), g(0, [4], last=True), g(1, [5, 7]), g(1, [9], last=True)]
    assert [b["x"] for b in interleave(iter(groups), 2)] == [0, 1, 2, 3, 4, 5, 7, 9]
    # an empty last group (the stream ended on a group boundary); the DataLoader ending ends every worker
    groups = [g(0, [0]), g(1, [1]), g(2, [2]), g(0, [], last=True), g(1, [4]), g(2, [5])]
    assert [b["x"] for b in interleave(iter(groups), 3)] == [0, 1, 2, 4, 5]
    assert list(interleave(iter(["not a group"]), 1)) == ["not a group"]  # anything else passes through


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize(("workers", "group", "ring"), [(2, 1, True), (2, 2, True), (2, 3, True), (2, 4, False),
                                                        (3, 2, True), (3, 3, False)])
def test_grouped_loader_gives_the_dataloader_order_of_the_workers_streams(
    toy: Path, monkeypatch: pytest.MonkeyPatch, workers: int, group: int, ring: bool
) -> None:
    """Rank 1 of 2 (its workers' share of the row groups), a finite epoch: the workers' streams end
    at different lengths and mostly not on a group boundary."""
    streams = _per_worker(toy, workers, monkeypatch, rank=1, world_size=2)
    lengths = [len(s) for s in streams]
    assert all(lengths) and sum(lengths) > group * workers
    ds = EventStream(open_manifest(toy), _cfg(num_workers=workers), split="all", rank=1, world_size=2, infinite=False)
    got = list(make_loader(ds, workers, group_batches=group, ring=ring))
    _same(got, _round_robin(streams))


def test_the_test_covers_partial_and_empty_last_groups(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lengths = [len(s) for n in (2, 3) for s in _per_worker(toy, n, monkeypatch, rank=1, world_size=2)]
    rests = {(n % k) for n in lengths for k in (2, 3, 4)}
    assert 0 in rests and rests - {0}  # some streams end on a group boundary, some inside a group


@pytest.mark.parametrize("group", [3, 8])
def test_grouped_loader_equals_one_batch_per_message_and_resumes_exactly(toy: Path, group: int) -> None:
    m = open_manifest(toy)

    def batches(start: int, n: int, group: int) -> list[dict[str, Any]]:
        ds = EventStream(m, _cfg(num_workers=2), split="all", start_batch=start)
        it = iter(make_loader(ds, 2, group_batches=group, prefetch_factor=4))
        return [next(it) for _ in range(n)]

    full = batches(0, 40, 1)  # crosses the epoch boundary (128 rows / 5)
    _same(batches(0, 40, group), full)
    _same(batches(29, 11, group), full[29:])


def test_default_group_is_a_window_of_batches() -> None:
    assert default_group(_cfg(shuffle_buffer=512, batch_size=64)) == 8
    assert default_group(_cfg(shuffle_buffer=8, batch_size=5)) == 2
    assert default_group(_cfg(shuffle_buffer=4096, batch_size=8)) == 8  # at most 8
    assert default_group(_cfg(shuffle=False)) == 1


def test_kept_batches_of_a_group_stay_valid(toy: Path) -> None:
    """Batches share their group's copy out of the slot: keeping them all (the slots long reused) is safe."""
    m = open_manifest(toy)
    ref = list(make_loader(EventStream(m, _cfg(), split="all", infinite=False), 0))
    got = list(make_loader(EventStream(m, _cfg(num_workers=1), split="all", infinite=False), 1,
                           group_batches=4, ring_slots=1))
    _same(got, ref)
    assert np.unique(np.concatenate([b["event_id"] for b in got])).size == m.total_rows
