"""`ray.data_reservation` reaches Ray Data for the run, and only for the run.

Ray Data's per-operator resource reservation (`DataContext.op_resource_reservation_enabled`)
splits part of the CPUs evenly between the operators; with it on, a 4-CPU run of `carve run`
decoded one block at a time where its concurrency was 3, and a 2-CPU run one of two (docs/CLUSTER.md);
Carve turns it off unless `ray.data_reservation` asks for it. `RayExecutor` sets
the flag from the config while its blocks come out and puts the caller's value back after,
also when a step fails. So too Ray Data's high-memory warning, off during the run: it measures
worker processes, and the write tasks share the decode's, so it blamed the write step for the
decode's frames and advised reserving that memory for every write task.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from carve.core.config import RayConfig, SegmentConfig, SourceConfig
from carve.ingest.sources import open_source
from carve.pipeline.executor import RayExecutor, StepSpec
from carve.pipeline.steps import DecodeSegment


@pytest.mark.timeout(180)
@pytest.mark.parametrize("reservation", [False, True])
def test_the_flag_holds_during_the_run_and_is_put_back(ray_local, tmp_path: Path, reservation: bool):
    import ray.data
    from test_e2e_pipeline import write_folder_episode

    for i in range(2):
        write_folder_episode(tmp_path, f"ep_{i}", seed=i, frames=40)
    rows = [r.to_row() for r in open_source(str(tmp_path), "folder").list_episodes()]
    ctx = ray.data.DataContext.get_current()
    before = ctx.op_resource_reservation_enabled
    ratio = ctx.downstream_capacity_backpressure_ratio
    memory = ctx.issue_detectors_config.high_memory_detector_config
    interval = memory.detection_time_interval_s
    assert interval != -1  # Ray Data's own default: on
    cfg = RayConfig(num_cpus=2, progress=False, part_episodes=1, data_reservation=reservation)
    steps = [StepSpec(DecodeSegment, {"seg_cfg": SegmentConfig(), "src_cfg": SourceConfig(uri=str(tmp_path))})]
    seen, ratios, intervals, events = [], [], [], 0
    for block in RayExecutor(cfg).run(rows, steps):
        seen.append(ctx.op_resource_reservation_enabled)
        ratios.append(ctx.downstream_capacity_backpressure_ratio)
        intervals.append(memory.detection_time_interval_s)
        events += block.num_rows
    assert events > 0 and seen == [reservation] * len(seen) and len(seen) == 2
    # without the reservation, the downstream-capacity backpressure is off too (it held the writes back)
    assert ratios == [ratio if reservation else None] * 2
    assert intervals == [-1, -1]
    assert ctx.op_resource_reservation_enabled == before and ctx.downstream_capacity_backpressure_ratio == ratio
    assert memory.detection_time_interval_s == interval
    with pytest.raises(KeyError):  # rows that are no episodes: the step fails, the flag still comes back
        list(RayExecutor(cfg).run([{"x": 1}], steps))
    assert ctx.op_resource_reservation_enabled == before
    assert memory.detection_time_interval_s == interval


def test_the_reservation_is_off_unless_asked():
    """Carve's plan leaves the light steps their CPU shares itself (pipeline/choose.py `step_cpus`);
    Ray Data's reservation on top of it ran one decode task of two on 2 CPUs (tests/test_ray_plan.py)."""
    assert RayConfig().data_reservation is False
    assert RayConfig(data_reservation=True).data_reservation is True
