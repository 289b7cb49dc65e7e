"""Running a list of pipeline steps: on Ray Data (the default) or in this process.

A step is described by a `StepSpec` (its class, constructor arguments, how many workers and
rows per batch); the executor is separate from the steps, as in datatrove. `RayExecutor`
builds the DAG top to bottom as `from_items -> map_batches(step) -> ...`, declaring each
step's compute and resources at its `map_batches` (actor pools for steps that hold a model,
task pools otherwise; `num_gpus` for a step on a GPU, `num_cpus` otherwise), and yields the
blocks of the last step as they finish. When the last block is out it logs the nodes each
operator ran on (`ray_nodes`, info level), which is how a cluster run shows it was spread.
`LocalExecutor` runs the same steps block by block in the calling process (tests, and the
Ray-overhead measurement: same work, no Ray).

Blocks: the input rows (episodes) are cut into `plan_blocks` contiguous blocks of about
`ray.part_episodes` episodes, and each block is one part file of events (WriteEvents). So
that the decode workers are never idle for want of blocks, there are at least
2 x `ray.decode_concurrency` blocks (each worker has one block in hand and one queued) when
there are that many episodes: 1,000 episodes at the defaults (32, 1) make 32 blocks, 120 make
4, 3 make 2. Ray Data's splitting of large output blocks is turned off for the run, so a
block reaches WriteEvents whole and an episode is never split across two blocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from carve.core.config import RayConfig
from carve.core.log import get_logger, log_event
from carve.pipeline.step import PipelineStep

log = get_logger("executor")


@dataclass
class StepSpec:
    """One step of a DAG: `cls(**kwargs)` on batches of `batch_size` rows (None: whole blocks),
    each worker reserving `num_gpus` GPUs (a share below 1 lets workers share one) or else
    `num_cpus` CPUs."""

    cls: type[PipelineStep]
    kwargs: dict[str, Any] = field(default_factory=dict)
    concurrency: int | None = None  # workers; None: Ray Data's default for tasks
    batch_size: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def resources(self) -> dict[str, float]:
        """What each worker asks Ray for, as `map_batches` takes it. A GPU worker gets Ray Data's
        one CPU beside its GPUs (naming both is marked experimental by Ray Data)."""
        return {"num_gpus": self.num_gpus} if self.num_gpus > 0 else {"num_cpus": self.num_cpus}

    @property
    def name(self) -> str:
        return self.cls.name


class Executor(Protocol):
    """Runs steps over input rows and yields the last step's output blocks as they finish."""

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]: ...


def _task_of(cls: type[PipelineStep]) -> Any:
    """A stateless step as a Ray task function (construct, which is cheap, and call), named after
    the step class so that Ray Data's progress shows it."""

    def task(batch: pa.Table, kwargs: dict[str, Any]) -> pa.Table:
        return cls(**kwargs)(batch)

    task.__name__ = task.__qualname__ = cls.__name__
    return task


class RayExecutor:
    """The steps as one Ray Data DAG; `ray` must already be initialised (`ensure_ray`)."""

    def __init__(self, cfg: RayConfig):
        self.cfg = cfg
        self.nodes: dict[str, list[str]] = {}  # after a run: operator -> node ids (see nodes_used)

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        import ray.data

        if not rows:
            return
        ctx = ray.data.DataContext.get_current()
        saved = ctx.target_max_block_size, ctx.raise_original_map_exception
        # one block in, one block out: an episode must never be split over two blocks (two parts)
        ctx.target_max_block_size = None
        # a step's own error (e.g. NoSpaceError naming the part) reaches the driver as itself, a CarveError
        ctx.raise_original_map_exception = True
        try:
            yield from self._run(rows, steps)
        finally:
            ctx.target_max_block_size, ctx.raise_original_map_exception = saved

    def _run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        import ray.data

        ds = ray.data.from_items(rows, override_num_blocks=plan_blocks(len(rows), self.cfg))
        for s in steps:
            # Ray Data's public map_batches wants a fixed batch size once GPUs are asked for; a step
            # that takes whole blocks (one episode each) goes through map_batches_internal, which Ray
            # Data's own map_groups uses for the same reason: same arguments, no such check
            map_batches = ds.map_batches
            if s.num_gpus > 0 and s.batch_size is None and hasattr(ds, "map_batches_internal"):
                map_batches = ds.map_batches_internal
            if s.cls.compute == "actors":
                ds = map_batches(
                    s.cls, fn_constructor_kwargs=s.kwargs, batch_size=s.batch_size, batch_format="pyarrow",
                    compute=ray.data.ActorPoolStrategy(size=s.concurrency or 1), **s.resources(),
                )
            else:
                compute = ray.data.TaskPoolStrategy(size=s.concurrency) if s.concurrency else None
                ds = map_batches(
                    _task_of(s.cls), fn_kwargs={"kwargs": s.kwargs}, batch_size=s.batch_size,
                    batch_format="pyarrow", compute=compute, **s.resources(),
                )
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
        self.nodes = nodes_used(ds)
        for op, ids in self.nodes.items():
            log_event(log, "ray_nodes", operator=op, nodes=len(ids), node_ids=",".join(ids))


def nodes_used(ds: Any) -> dict[str, list[str]]:
    """{operator: ids of the nodes its tasks ran on} of an executed dataset, from Ray Data's block
    stats (internal structures: empty if this Ray lays them out differently)."""
    out: dict[str, set[str]] = {}
    try:
        stack = [ds._raw_stats()]
        while stack:
            st = stack.pop()
            for op, blocks in st.metadata.items():
                ids = {b.exec_stats.node_id for b in blocks if getattr(b, "exec_stats", None)}
                out.setdefault(op, set()).update(i for i in ids if i)
            stack.extend(st.parents)
    except Exception:  # diagnostics only
        return {}
    return {op: sorted(ids) for op, ids in out.items()}


class LocalExecutor:
    """The same steps in this process, on the same blocks of episodes as `RayExecutor`."""

    def __init__(self, cfg: RayConfig | None = None):
        self.cfg = cfg or RayConfig()

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        built = [s.cls(**s.kwargs) for s in steps]
        for chunk in split_rows(rows, plan_blocks(len(rows), self.cfg)):
            block = pa.Table.from_pylist(chunk)
            for step in built:
                block = step(block)
            yield block


def plan_blocks(n: int, cfg: RayConfig) -> int:
    """How many blocks `n` episodes make (module doc): ceil(n / part_episodes), at least
    2 x decode_concurrency, at most n."""
    if n <= 0:
        return 0
    return min(n, max(math.ceil(n / cfg.part_episodes), 2 * cfg.decode_concurrency))


def split_rows(rows: list[dict[str, Any]], blocks: int) -> list[list[dict[str, Any]]]:
    """`rows` in `blocks` contiguous runs of near-equal length (as Ray Data's `from_items` cuts them)."""
    if not rows or blocks <= 0:
        return []
    q, r = divmod(len(rows), blocks)
    out, start = [], 0
    for i in range(blocks):
        stop = start + q + (1 if i < r else 0)
        out.append(rows[start:stop])
        start = stop
    return [c for c in out if c]
