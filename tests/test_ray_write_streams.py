"""On Ray, each block's part is written as the block comes out of the earlier steps, not after them.

The decode and embed steps run in actor pools whose actors hold their CPUs for the whole run; on a
Ray sized to those actors (here 2 CPUs, one actor each) a write step that reserves a CPU waits
until they are gone, so every part is written at the end and every block waits in the object
store meanwhile. Stand-ins keep the shipped shape (a slow actor step, a second actor step, then a
task step with the write step's own reservation from `build_steps`) and log when each block passes
them; the first part must be written while blocks are still being decoded (the last block's
decode waits for it, up to a minute, so the check does not hang on how busy the machine is).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from carve.core.config import CarveConfig, RayConfig
from carve.pipeline.executor import RayExecutor, StepSpec
from carve.pipeline.run import build_steps
from carve.pipeline.step import PipelineStep
from carve.storage.root import open_root


def _stamp(path: str, what: str) -> None:
    with open(path, "a") as f:
        f.write(f"{time.time():.6f} {what}\n")


@pytest.mark.timeout(300)
def test_parts_are_written_while_blocks_are_still_decoded(ray_local, tmp_path: Path):
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    cfg = CarveConfig().with_overrides({"root": str(tmp_path / "root")})
    shipped = {s.name: s for s in build_steps(cfg, open_root(tmp_path / "root"), "b")}
    log = str(tmp_path / "log.txt")

    class SlowDecode(PipelineStep):  # holds its CPU, as the decode actor does
        name = "decode_segment"
        compute = "actors"

        def __init__(self, log: str):
            self.log, self.calls = log, 0

        def process(self, rows: pa.Table) -> pa.Table:
            return rows

        def __call__(self, batch: pa.Table) -> pa.Table:  # input rows through, no event schema
            self.calls += 1
            if self.calls == 8:  # the last block waits (up to a minute) for a part of the earlier ones
                t0 = time.time()
                while time.time() - t0 < 60 and "written" not in Path(self.log).read_text():
                    time.sleep(0.2)
            _stamp(self.log, "decoded")
            return batch

    class Pass(PipelineStep):  # the embed actor's CPU
        name = "embed"
        compute = "actors"

        def __init__(self, log: str):
            self.log = log

        def process(self, rows: pa.Table) -> pa.Table:
            return rows

        def __call__(self, batch: pa.Table) -> pa.Table:
            return batch

    class Write(PipelineStep):
        name = "write"
        compute = "tasks"

        def __init__(self, log: str):
            self.log = log

        def process(self, rows: pa.Table) -> pa.Table:
            return rows

        def __call__(self, batch: pa.Table) -> pa.Table:
            _stamp(self.log, "written")
            return batch

    write = shipped["write"]
    steps = [StepSpec(SlowDecode, {"log": log}, concurrency=1, num_cpus=shipped["decode_segment"].num_cpus),
             StepSpec(Pass, {"log": log}, concurrency=1, num_cpus=shipped["embed"].num_cpus),
             StepSpec(Write, {"log": log}, num_cpus=write.num_cpus, num_gpus=write.num_gpus)]
    rows = [{"episode_id": f"ep{i}", "x": i} for i in range(8)]
    out = list(RayExecutor(RayConfig(num_cpus=2, progress=False), decode_workers=4).run(rows, steps))
    assert sum(t.num_rows for t in out) == 8
    stamps = [line.split() for line in Path(log).read_text().splitlines()]
    decoded = [float(t) for t, what in stamps if what == "decoded"]
    written = [float(t) for t, what in stamps if what == "written"]
    assert len(decoded) == 8 and len(written) == 8  # 8 blocks (2 x 4 decode workers)
    assert min(written) < max(decoded), "every part was written after the last block was decoded"
