"""Running a list of pipeline steps: on Ray Data (the default) or in this process.

A step is described by a `StepSpec` (its class, constructor arguments, how many workers and
what each reserves; building the spec checks the step's optional dependencies, on the driver);
the executor is separate from the steps, as in datatrove. `RayExecutor` builds the DAG top to
bottom as `from_arrow -> map_batches(step) -> ...`, declaring each step's compute and resources
at its `map_batches` (actor pools for steps that hold a model, task pools otherwise; `num_gpus`
for a step on a GPU, `num_cpus` otherwise), and yields the blocks of the last step as they
finish. When the last block is out it logs the nodes each step ran on (`ray_nodes`, info level),
which is how a cluster run shows it was spread. `LocalExecutor` runs the same steps block by
block, decoding the next blocks in child processes (pipeline/ahead.py, forkserver) while the current
one goes through the later steps in the calling process: a small embedded run (pipeline/choose.py decides), tests, and the
Ray-overhead measurement (same work, no Ray).

Blocks: the input rows (episodes) are cut into `plan_blocks` contiguous blocks of about
`ray.part_episodes` episodes, and each block is one part file of events (WriteEvents). So
that the decode workers are never idle for want of blocks, there are at least
2 x the decode workers (`ray.decode_concurrency`, or as sized from the CPUs by
pipeline/choose.py; one in this process) blocks (each worker has one block in hand and one
queued) when there are that many episodes: 1,000 episodes at 32 per block and one worker make
32 blocks, 120 make 4, 3 make 2. The rows a step makes do not depend on how the episodes are
cut into blocks (a distinct text's vector does not depend on what it is embedded with), so the plan changes
the part files, never the event rows. On Ray Data a block travels as one row (`pack`: its table as Arrow IPC bytes, and
the node each step ran it on), and every step's `map_batches` takes `batch_size=1`: each call
gets one whole block, Ray Data can neither split nor merge blocks, so an episode is never split
across two parts, and a GPU step is given the fixed batch size the public `map_batches` asks for.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from carve.core.config import RayConfig
from carve.core.log import get_logger, log_event
from carve.pipeline.step import PipelineStep

log = get_logger("executor")


@dataclass
class StepSpec:
    """One step of a DAG: `cls(**kwargs)` on whole blocks, each worker reserving `num_gpus` GPUs
    (a share below 1 lets workers share one) or else `num_cpus` CPUs. Building the spec checks the
    step's optional dependencies (`PipelineStep.check`), so a missing one fails on the driver."""

    cls: type[PipelineStep]
    kwargs: dict[str, Any] = field(default_factory=dict)
    concurrency: int | None = None  # workers; None: Ray Data's default for tasks
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    compute: str | None = None  # "tasks" | "actors" on Ray; None: the step class's own

    def __post_init__(self) -> None:
        self.cls.check(**self.kwargs)

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


# -- a block as one Ray Data row -----------------------------------------------------------
BLOCK = "block"  # the column holding a block's table (Arrow IPC stream bytes)
NODE_PREFIX = "node:"  # + step name: the column holding the node a step ran that block on


def pack(table: pa.Table, nodes: dict[str, str] | None = None) -> pa.Table:
    """One row holding `table` whole (and the nodes the steps so far ran it on)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    data = sink.getvalue()
    offsets = pa.array([0, data.size], pa.int64()).buffers()[1]
    block = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, data])
    names = sorted(nodes or {})
    return pa.Table.from_arrays([block, *(pa.array([(nodes or {})[n]], pa.string()) for n in names)],
                                names=[BLOCK, *names])


def unpack(batch: pa.Table) -> Iterator[tuple[pa.Table, dict[str, str]]]:
    """The blocks held by `pack`ed rows, each with its nodes so far."""
    blocks = batch.column(BLOCK)
    node_cols = [c for c in batch.column_names if c.startswith(NODE_PREFIX)]
    for i in range(batch.num_rows):
        table = pa.ipc.open_stream(blocks[i].as_buffer()).read_all()
        yield table, {c: batch.column(c)[i].as_py() for c in node_cols}


def _apply(step: PipelineStep, batch: pa.Table) -> pa.Table:
    """`step` on each block held in `batch` (one with batch_size=1), noting the node it ran on."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    out = [pack(step(table), {**nodes, NODE_PREFIX + step.name: node}) for table, nodes in unpack(batch)]
    return pa.concat_tables(out)


def _task_of(cls: type[PipelineStep]) -> Any:
    """A stateless step as a Ray task function (construct, which is cheap, and call), named after
    the step class so that Ray Data's progress shows it."""

    def task(batch: pa.Table, kwargs: dict[str, Any]) -> pa.Table:
        return _apply(cls(**kwargs), batch)

    task.__name__ = task.__qualname__ = cls.__name__
    return task


def _actor_of(cls: type[PipelineStep]) -> type:
    """A step that holds a model as a Ray actor class (built once per worker), named after it."""

    class Actor:
        def __init__(self, kwargs: dict[str, Any]):
            self.step = cls(**kwargs)

        def __call__(self, batch: pa.Table) -> pa.Table:
            return _apply(self.step, batch)

    Actor.__name__ = Actor.__qualname__ = cls.__name__
    return Actor


@contextmanager
def _set_for_run(obj: Any, values: dict[str, Any]) -> Iterator[None]:
    """`obj`'s attributes set to `values` inside the `with`; the caller's put back after, also
    when it fails."""
    saved = {name: getattr(obj, name) for name in values}
    for name, value in values.items():
        setattr(obj, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(obj, name, value)


class RayExecutor:
    """The steps as one Ray Data DAG; `ray` must already be initialised (`ensure_ray`)."""

    def __init__(self, cfg: RayConfig, decode_workers: int | None = None):
        self.cfg = cfg
        self.decode_workers = decode_workers  # None: ray.decode_concurrency, else 1 (plan_blocks)
        self.nodes: dict[str, list[str]] = {}  # after a run: step -> ids of the nodes it ran on

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        import ray.data

        if not rows:
            return
        ctx = ray.data.DataContext.get_current()
        # a step's own error (e.g. NoSpaceError naming the part) reaches the driver as itself, a CarveError
        settings: dict[str, Any] = {"raise_original_map_exception": True}
        # Ray Data's per-operator reservation splits part of the CPUs evenly between the steps (the
        # decode, the bound, then runs fewer tasks than it has CPUs for): `ray.data_reservation`
        settings["op_resource_reservation_enabled"] = self.cfg.data_reservation
        if not self.cfg.data_reservation:
            # without the reservation, Ray Data's downstream-capacity policy held the write step back
            # from the fifth block to the last (`backpressured:tasks(DownstreamCapacity)`), so the
            # driver recorded nothing for most of the run; the driver takes each block as it comes
            settings["downstream_capacity_backpressure_ratio"] = None
        # Ray Data's high-memory warning measures worker processes, and Ray runs the write tasks in the
        # decode's workers: every run of more than 30 s blamed the write step for the decode's frames
        # and advised reserving that memory for each write task. Carve sizes its workers itself (-1: off;
        # a Ray Data without the detector has nothing to turn off)
        memory = getattr(getattr(ctx, "issue_detectors_config", None), "high_memory_detector_config", None)
        with ExitStack() as during_run:
            during_run.enter_context(_set_for_run(ctx, settings))
            if memory is not None:
                during_run.enter_context(_set_for_run(memory, {"detection_time_interval_s": -1}))
            yield from self._run(rows, steps)

    def _run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        import ray.data

        n_blocks = plan_blocks(len(rows), self.cfg, self.decode_workers)
        blocks = [pack(pa.Table.from_pylist(chunk)) for chunk in split_rows(rows, n_blocks)]
        ds = ray.data.from_arrow(blocks)
        for s in steps:
            # one row per block: batch_size=1 hands each call one whole block, GPUs or not
            if (s.compute or s.cls.compute) == "actors":
                ds = ds.map_batches(
                    _actor_of(s.cls), fn_constructor_kwargs={"kwargs": s.kwargs}, batch_size=1,
                    batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=s.concurrency or 1),
                    **s.resources(),
                )
            else:
                compute = ray.data.TaskPoolStrategy(size=s.concurrency) if s.concurrency else None
                ds = ds.map_batches(
                    _task_of(s.cls), fn_kwargs={"kwargs": s.kwargs}, batch_size=1, batch_format="pyarrow",
                    compute=compute, **s.resources(),
                )
        nodes: dict[str, set[str]] = {}
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for table, ran_on in unpack(batch):
                for col, node in ran_on.items():
                    nodes.setdefault(col[len(NODE_PREFIX):], set()).add(node)
                yield table
        self.nodes = {step: sorted(ids) for step, ids in nodes.items()}
        for op, ids in self.nodes.items():
            log_event(log, "ray_nodes", operator=op, nodes=len(ids), node_ids=",".join(ids))


class LocalExecutor:
    """The same steps on this machine without Ray, on the same blocks of episodes as `RayExecutor`.

    Every core at once, as Ray's pipeline would: the first step (decoding) runs on the next
    `decode_workers` blocks in as many child processes started for the run (pipeline/ahead.py; one
    thread where forkserver is missing or `first_in_process=False`) while the other steps (caption,
    embed, write) run on the current one here. Blocks come out in order and each step sees the same
    blocks as before, so the rows are the same whatever the number of children; at most two blocks
    are in memory here, one more in each child. `carve run` gives it one child per usable core
    (`pipeline/choose.local_decode_workers`; `ray.decode_concurrency` when set): on 2 cores, 1,000
    short episodes ran 47.8 / 48.6 s with two children against 50.7 / 51.4 s with one."""

    def __init__(self, cfg: RayConfig | None = None, first_in_process: bool = True, decode_workers: int = 1):
        self.cfg = cfg or RayConfig()
        self.first_in_process = first_in_process  # False: the first step in a thread (pipeline/ahead.py)
        self.decode_workers = max(1, decode_workers)  # child processes decoding blocks ahead

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        from carve.pipeline.ahead import Ahead

        chunks = split_rows(rows, plan_blocks(len(rows), self.cfg))
        if not chunks or not steps:
            return
        spec = steps[0]
        first = spec.cls(**spec.kwargs)
        # the child starts before the later steps are built (the embedder starts a loading thread)
        # no more children than blocks: a child without a block would be started for nothing
        with Ahead(first, spec.cls, spec.kwargs, in_process=self.first_in_process,
                   workers=min(self.decode_workers, len(chunks))) as ahead:
            rest = [s.cls(**s.kwargs) for s in steps[1:]]
            pending = deque(ahead.submit(c) for c in chunks[: ahead.workers])
            for i in range(len(chunks)):
                block = pending.popleft().result()
                if i + ahead.workers < len(chunks):
                    pending.append(ahead.submit(chunks[i + ahead.workers]))
                for step in rest:
                    block = step(block)
                yield block


def plan_blocks(n: int, cfg: RayConfig, workers: int | None = None) -> int:
    """How many blocks `n` episodes make (module doc): ceil(n / part_episodes), at least
    2 x the decode workers (`workers`, else `ray.decode_concurrency`, else 1), at most n."""
    if n <= 0:
        return 0
    workers = workers or cfg.decode_concurrency or 1
    return min(n, max(math.ceil(n / cfg.part_episodes), 2 * workers))


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
