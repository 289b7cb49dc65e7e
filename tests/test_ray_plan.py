"""On Ray, the shipped plan (`choose.step_concurrency`, `choose.step_cpus`) runs the decode on
every CPU while an embed actor and the write task ride along.

On 2 CPUs the plan is two decode workers of 0.75 CPU, one embed actor of 0.25 and one write
task of 0.1. Before it, each worker reserved a whole CPU: the embed actor held one core, one
decode task ran at a time, and the write tasks waited for the end of the run. Here the steps
are stand-ins with the plan's resources, on a real embedded Ray of 2 CPUs with the shipped
`ray.data_reservation`: the decode stand-in sleeps and notes when it ran, and two of its tasks
must be seen running at the same time while the actor is alive. Nothing here is timed against
a bound: it asks whether two tasks overlapped at all.
"""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from carve.core.config import CarveConfig, RayConfig
from carve.pipeline.choose import step_concurrency, step_cpus
from carve.pipeline.executor import RayExecutor, StepSpec
from carve.pipeline.step import PipelineStep


def _steps(cpus: dict[str, float], workers: tuple[int, int]) -> list[StepSpec]:
    # stand-ins built here so that Ray ships them by value to its workers
    import os
    import time

    class Decode(PipelineStep):
        name = "decode_segment"
        compute = "tasks"

        def __call__(self, batch: pa.Table) -> pa.Table:
            t0 = time.time()
            time.sleep(1.5)
            n = batch.num_rows
            return pa.table({"block": batch.column("block"), "start": [t0] * n, "end": [time.time()] * n,
                             "pid": [os.getpid()] * n})

        def process(self, rows: pa.Table) -> pa.Table:
            return rows

    class Pass(PipelineStep):  # the embed and write stand-ins: hand the block on
        def __call__(self, batch: pa.Table) -> pa.Table:
            return batch

        def process(self, rows: pa.Table) -> pa.Table:
            return rows

    embed = type("Embed", (Pass,), {"name": "embed", "compute": "actors"})
    write = type("Write", (Pass,), {"name": "write", "compute": "tasks"})

    return [StepSpec(Decode, concurrency=workers[0], num_cpus=cpus["decode_segment"]),
            StepSpec(embed, concurrency=workers[1], num_cpus=cpus["embed"]),
            StepSpec(write, concurrency=1, num_cpus=cpus["write"])]


@pytest.mark.timeout(240)
def test_two_decode_workers_run_at_once_beside_the_embed_actor_on_two_cpus(ray_local) -> None:
    cfg = CarveConfig()
    workers = step_concurrency(cfg.ray, 2)
    cpus = step_cpus(cfg, 2, workers)
    assert workers == (2, 1)
    ray_cfg = RayConfig(num_cpus=2, progress=False, part_episodes=1, data_reservation=cfg.ray.data_reservation)
    out = pa.concat_tables(RayExecutor(ray_cfg, decode_workers=workers[0]).run(
        [{"block": i} for i in range(6)], _steps(cpus, workers)))
    assert sorted(out.column("block").to_pylist()) == list(range(6))  # every block came through
    spans = list(zip(out.column("start").to_pylist(), out.column("end").to_pylist(), strict=True))
    overlap = max(min(a[1], b[1]) - max(a[0], b[0]) for a, b in itertools.combinations(spans, 2))
    assert overlap > 0.5, f"the decode tasks ran one at a time: {sorted(spans)}"
    assert len(set(out.column("pid").to_pylist())) >= 2  # in two worker processes
