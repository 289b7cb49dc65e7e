"""Running a list of pipeline steps: on Ray Data (the default) or in this process.

A step is described by a `StepSpec` (its class, constructor arguments, how many workers and
rows per batch); the executor is separate from the steps, as in datatrove. `RayExecutor`
builds the DAG top to bottom as `from_items -> map_batches(step) -> ...`, declaring each
step's compute at its `map_batches` (actor pools for steps that hold a model, task pools
otherwise), and yields the blocks of the last step as they finish. `LocalExecutor` runs the
same steps one episode at a time in the calling process (tests, and the Ray-overhead
measurement: same work, no Ray).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from carve.core.config import RayConfig
from carve.pipeline.step import PipelineStep


@dataclass
class StepSpec:
    """One step of a DAG: `cls(**kwargs)` on batches of `batch_size` rows (None: whole blocks)."""

    cls: type[PipelineStep]
    kwargs: dict[str, Any] = field(default_factory=dict)
    concurrency: int | None = None  # workers; None: Ray Data's default for tasks
    batch_size: int | None = None

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

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        import ray.data

        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        for s in steps:
            if s.cls.compute == "actors":
                ds = ds.map_batches(
                    s.cls, fn_constructor_kwargs=s.kwargs, batch_size=s.batch_size, batch_format="pyarrow",
                    compute=ray.data.ActorPoolStrategy(size=s.concurrency or 1),
                )
            else:
                compute = ray.data.TaskPoolStrategy(size=s.concurrency) if s.concurrency else None
                ds = ds.map_batches(
                    _task_of(s.cls), fn_kwargs={"kwargs": s.kwargs}, batch_size=s.batch_size,
                    batch_format="pyarrow", compute=compute,
                )
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")


class LocalExecutor:
    """The same steps in this process, one input row (episode) at a time."""

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        built = [s.cls(**s.kwargs) for s in steps]
        for row in rows:
            block = pa.Table.from_pylist([row])
            for step in built:
                block = step(block)
            yield block
