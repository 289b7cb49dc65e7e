"""`LocalExecutor`'s first step on the next block in a forked child (pipeline/ahead.py) or a thread.

Both ways must hand the later steps the same blocks in the same order; the child must really be
another process; an error of the first step must reach the caller (as itself, or as a
`CarveError` naming it when it cannot be pickled back); readers the forking thread kept open
must not be used by the child.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.core.config import CarveConfig, RayConfig
from carve.core.errors import CarveError
from carve.ingest import video
from carve.pipeline.ahead import can_fork
from carve.pipeline.executor import LocalExecutor, StepSpec
from carve.pipeline.step import PipelineStep

pytestmark = pytest.mark.skipif(not can_fork(), reason="no fork on this platform")


class Toy(PipelineStep):
    """A step over plain rows (not event rows): `process` on the whole block, no schema."""

    name = "toy"

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.process(batch)

    def process(self, rows: pa.Table) -> pa.Table:
        return rows


class WherePid(Toy):
    """Notes the process that ran it, per row."""

    name = "where"

    def process(self, rows: pa.Table) -> pa.Table:
        return rows.append_column("_pid", pa.array([os.getpid()] * rows.num_rows, pa.int64()))


class DecoderThreads(Toy):
    """Notes the decoder threads of the process it runs in (`video.set_decoder_threads`)."""

    name = "decoder_threads"

    def process(self, rows: pa.Table) -> pa.Table:
        return rows.append_column("_threads", pa.array([video.decoder_threads()] * rows.num_rows, pa.int64()))


class SlowPid(WherePid):
    """Notes its process after a pause (long enough for the other children to take the next blocks)."""

    name = "slow"

    def process(self, rows: pa.Table) -> pa.Table:
        time.sleep(0.3)
        return super().process(rows)


class Passes(Toy):
    name = "passes"


class Odd(Exception):
    """An exception that cannot be unpickled (its constructor takes two arguments)."""

    def __init__(self, a: str, b: str):
        super().__init__(f"{a}/{b}")


class Fails(Toy):
    name = "fails"

    def __init__(self, odd: bool = False):
        self.odd = odd

    def process(self, rows: pa.Table) -> pa.Table:
        if self.odd:
            raise Odd("left", "right")
        raise CarveError("the disk is full")


ROWS = [{"episode_id": f"ep{i}", "task": f"task {i}"} for i in range(7)]
CFG = RayConfig(part_episodes=2)


def _run(first: type[PipelineStep], in_process: bool, workers: int = 1, **kwargs: object) -> list[pa.Table]:
    steps = [StepSpec(first, dict(kwargs)), StepSpec(Passes)]
    return list(LocalExecutor(CFG, first_in_process=in_process, decode_workers=workers).run(ROWS, steps))


def test_the_child_and_the_thread_hand_on_the_same_blocks() -> None:
    child, thread = _run(WherePid, True), _run(WherePid, False)
    assert len(child) == len(thread) == 4  # ceil(7 / 2) blocks, in order
    pids = {p for b in child for p in b.column("_pid").to_pylist()}
    assert pids and os.getpid() not in pids  # decoded in another process
    assert {p for b in thread for p in b.column("_pid").to_pylist()} == {os.getpid()}
    for a, b in zip(child, thread, strict=True):
        assert a.drop_columns(["_pid"]).equals(b.drop_columns(["_pid"]))
    assert [r["episode_id"] for b in child for r in b.to_pylist()] == [r["episode_id"] for r in ROWS]


def test_several_children_hand_on_the_blocks_in_order() -> None:
    """Three children decode blocks ahead; the later steps still get them in order, the same."""
    one, three = _run(WherePid, True), _run(SlowPid, True, workers=3)
    assert len({p for b in three for p in b.column("_pid").to_pylist()}) > 1  # several processes decoded
    assert os.getpid() not in {p for b in three for p in b.column("_pid").to_pylist()}
    for a, b in zip(one, three, strict=True):
        assert a.drop_columns(["_pid"]).equals(b.drop_columns(["_pid"]))
    assert [r["episode_id"] for b in three for r in b.to_pylist()] == [r["episode_id"] for r in ROWS]


def test_children_side_by_side_decode_with_the_cores_shared_out() -> None:
    """Three children: each one's video decoders get the usable cores divided by three, at least one
    thread (not one per core each); one child keeps the library's choice (0); this process is untouched."""
    from carve.pipeline.choose import usable_cores

    three = {t for b in _run(DecoderThreads, True, workers=3) for t in b.column("_threads").to_pylist()}
    assert three == {max(1, usable_cores() // 3)}
    one = {t for b in _run(DecoderThreads, True) for t in b.column("_threads").to_pylist()}
    assert one == {0} and video.decoder_threads() == 0


def test_no_more_children_than_blocks() -> None:
    """Eight children asked for, four blocks (7 rows, 2 per block): four processes are started."""
    import multiprocessing

    steps = [StepSpec(WherePid, {}), StepSpec(Passes)]
    started = []
    for _ in LocalExecutor(CFG, decode_workers=8).run(ROWS, steps):
        started.append(len(multiprocessing.active_children()))
    assert len(started) == 4 and max(started) == 4


def test_an_error_of_the_first_step_reaches_the_caller() -> None:
    for in_process, workers in ((True, 1), (True, 2), (False, 1)):
        with pytest.raises(CarveError, match="the disk is full"):
            _run(Fails, in_process, workers)
    with pytest.raises(CarveError, match="Odd in step fails: left/right"):  # not picklable back: named
        _run(Fails, True, odd=True)


def test_a_forked_child_sets_aside_the_readers_its_parent_kept_open(tmp_path: Path) -> None:
    from test_e2e_pipeline import write_folder_episode

    write_folder_episode(tmp_path, "ep", seed=0, frames=30)
    mp4 = next(tmp_path.rglob("*.mp4"))
    parent = video.pooled_reader(str(mp4))
    assert video.pooled_reader(str(mp4)) is parent  # kept open for the next episode of the file
    video.forget_inherited_readers()  # what the child does first
    try:
        assert video.pooled_reader(str(mp4)) is not parent
        assert parent in video._INHERITED
    finally:
        video._INHERITED.remove(parent)
        parent._close()


def test_a_carve_run_gives_the_same_rows_with_the_first_step_in_a_thread(tmp_path: Path) -> None:
    from test_e2e_pipeline import write_folder_episode

    from carve.pipeline.run import run_pipeline

    src = tmp_path / "raw" / "toy"
    src.mkdir(parents=True)
    for i in range(3):
        write_folder_episode(src, f"ep_{i}", seed=i, frames=60)
    rows = []
    for in_process, workers in ((True, 2), (False, 1)):
        cfg = CarveConfig().with_overrides({"root": str(tmp_path / f"root-{in_process}"),
                                            "source": {"uri": str(src), "format": "folder"},
                                            "embed": {"text": "none"}, "ray": {"progress": False, "part_episodes": 1}})
        s = run_pipeline(cfg, shard=False, executor=LocalExecutor(cfg.ray, first_in_process=in_process,
                                                                       decode_workers=workers))
        assert s.episodes_ok == 3 and s.events > 0
        t = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / f"root-{in_process}").rglob(
            "events/**/*.parquet"))]).sort_by("event_id")
        rows.append(t.to_pylist())
    assert rows[0] == rows[1]
