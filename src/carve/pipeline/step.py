"""The pipeline step: one small, composable stage of `carve run`, in the style of datatrove's `PipelineStep`.

A step subclasses `PipelineStep`, names itself (`name`), declares its optional dependencies
(`requires(...)`, from the arguments it is built with: import name -> pip package; a missing
one fails where the step is built, with an install hint) and does its work in
`process(rows)` on the *good* rows of a batch. Calling the step (`step(batch)`, which is what
Ray Data's `map_batches` does) is the one failure mechanism of the pipeline; no step overrides it:

- rows of episodes quarantined by an earlier step pass through untouched;
- an exception in `process` on a batch of several episodes retries them one episode at a
  time, so that only the episodes that fail on their own are quarantined (`quarantine`), with
  the step's name and the reason, and the job carries on. A step whose failure is the run's,
  not an episode's (`quarantines = False`: a part file that cannot be written), lets it rise;
- `process` returns any number of rows: as many as it got (their status columns are carried
  over), or rows that bring their own status (DecodeSegment: one episode row in, its event
  rows out). A step that works one episode at a time says so (`one_episode_at_a_time`);
- `finish(rows)` turns the step's whole output (processed and passed-through rows) into what
  it hands on: the rows themselves, or WriteEvents' one summary row per episode;
- the seconds `process` took are shared out over the rows it returned, in the step's own
  float column (`_seconds_<step>`); the driver adds them up per step (`RunStats` of
  `StepStats` counters) from the one summary row per episode that reaches it, wherever the
  step ran. A column of rows, not a side channel: a block Ray runs twice still counts once.

Rows between steps carry the event schema's columns plus `STATUS_FIELDS`: `_fingerprint`
(the episode's source fingerprint), `_error` (set on a quarantined episode's rows),
`_failed_at` (the step that quarantined it) and `_defects` (JSON: the quality gate's findings
on the episode, `carve.quality`; null when not checked), then the steps' seconds columns and
any status column a step adds (names starting with `_`).
"""

from __future__ import annotations

import importlib.util
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carve.core.errors import CarveError
from carve.ingest.sources.base import EpisodeRef, provenance
from carve.storage.schema import EVENT_SCHEMA, conform

STATUS_FIELDS = [pa.field("_fingerprint", pa.string()), pa.field("_error", pa.string()),
                 pa.field("_failed_at", pa.string()), pa.field("_defects", pa.string())]
STAGE_SCHEMA = pa.schema(list(EVENT_SCHEMA) + STATUS_FIELDS, metadata=EVENT_SCHEMA.metadata)
SECONDS_PREFIX = "_seconds_"


def seconds_column(step: str) -> str:
    """The float column holding each row's share of the seconds `step` spent."""
    return SECONDS_PREFIX + step


def stage_schema(*steps: str) -> pa.Schema:
    """The rows after `steps` have run: `STAGE_SCHEMA` and one seconds column per step."""
    return pa.schema([*STAGE_SCHEMA, *(pa.field(seconds_column(s), pa.float64()) for s in steps)],
                     metadata=EVENT_SCHEMA.metadata)


def step_seconds(row: Mapping[str, Any]) -> dict[str, float]:
    """{step: seconds} of one row (a stage row or an episode's summary row): the steps it went through."""
    return {k[len(SECONDS_PREFIX):]: float(v) for k, v in row.items() if k.startswith(SECONDS_PREFIX) and v is not None}


class MissingDependency(CarveError):
    """A step whose optional dependency is not installed; the message says what to install."""


def check_requirements(step: str, requirements: dict[str, str]) -> None:
    """Raise `MissingDependency` naming every missing import and its pip package."""
    missing = {mod: pkg for mod, pkg in requirements.items() if _missing(mod)}
    if missing:
        hint = " ".join(sorted(set(missing.values())))
        raise MissingDependency(
            f"step {step} needs {', '.join(sorted(missing))}, which is not installed: pip install {hint}"
        )


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return True


# -- per-step counters ----------------------------------------------------------------------
@dataclass
class StepStats:
    """What one step did over a run: episodes that reached it, events it passed on, seconds, failures."""

    name: str
    episodes: int = 0
    events: int = 0
    seconds: float = 0.0
    failures: int = 0

    def stat_update(self, *, episodes: int = 0, events: int = 0, seconds: float = 0.0, failures: int = 0) -> None:
        self.episodes += episodes
        self.events += events
        self.seconds += seconds
        self.failures += failures

    def as_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "events": self.events, "seconds": round(self.seconds, 3),
                "failures": self.failures}


@dataclass
class RunStats:
    """Per-step stats of a run, added up on the driver from the episodes' summary rows."""

    order: list[str]
    steps: dict[str, StepStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for n in self.order:
            self.steps.setdefault(n, StepStats(n))

    def add_episode(self, seconds: Mapping[str, float], failed_at: str | None, num_events: int) -> None:
        """One episode that reached the driver: the seconds each step it went through spent on it
        (`step_seconds`), the step that quarantined it (None: ok) and its events."""
        for name in self.order:
            if name not in seconds and name != failed_at:
                continue  # never reached this step (quarantined earlier)
            st = self.steps[name]
            st.stat_update(episodes=1, seconds=float(seconds.get(name, 0.0)))
            if name == failed_at:
                st.stat_update(failures=1)
                break
            st.stat_update(events=num_events)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {n: self.steps[n].as_dict() for n in self.order}


# -- the step ---------------------------------------------------------------------------
class PipelineStep(ABC):
    """One stage over Arrow batches of rows. Subclasses set `name` and implement `process`."""

    name: ClassVar[str] = "step"
    #: "tasks" (stateless, Ray tasks) or "actors" (holds a model, Ray actor pool)
    compute: ClassVar[str] = "actors"
    #: optional dependencies of every instance: import name -> pip package (`requires` may add some)
    dependencies: ClassVar[dict[str, str]] = {}
    #: `process` gets one episode's rows at a time (no batching to gain, nothing to retry)
    one_episode_at_a_time: ClassVar[bool] = False
    #: an exception in `process` quarantines the episodes (False: it fails the run)
    quarantines: ClassVar[bool] = True

    def __new__(cls, *args: Any, **kwargs: Any) -> PipelineStep:
        # as datatrove's `_requires_dependencies`: a missing optional package fails where the
        # step is built, with a pip install hint, not deep inside a worker
        cls.check(*args, **kwargs)
        return super().__new__(cls)

    @classmethod
    def requires(cls, *args: Any, **kwargs: Any) -> dict[str, str]:
        """Optional dependencies of a step built with these arguments: import name -> pip package."""
        return dict(cls.dependencies)

    @classmethod
    def check(cls, *args: Any, **kwargs: Any) -> None:
        """Raise `MissingDependency` if a step built with these arguments would miss a package."""
        check_requirements(cls.name, cls.requires(*args, **kwargs))

    @abstractmethod
    def process(self, rows: pa.Table) -> pa.Table:
        """The good rows of one batch in, without the status columns (event rows; the first step
        gets the executor's input rows), rows out. Return as many rows as came in, in order, and
        their status is carried over; or return rows with their own status columns (any number)."""

    def episodes(self, rows: pa.Table) -> list[pa.Table]:
        """`rows` cut into one table per episode, in order: the unit of retry and quarantine."""
        ids = rows.column("episode_id")
        return [rows.filter(pc.equal(ids, ep)) for ep in pc.unique(ids).to_pylist()]

    def quarantine(self, rows: pa.Table, error: Exception) -> pa.Table:
        """The rows of one episode on which `process` raised `error`, marked quarantined (called
        inside the `except`, so a traceback is at hand)."""
        reason = str(error) if isinstance(error, CarveError) else f"{type(error).__name__}: {error}"
        rows = _set_column(rows, "_error", pa.array([f"{self.name} failed: {reason}"] * rows.num_rows, pa.string()))
        return _set_column(rows, "_failed_at", pa.array([self.name] * rows.num_rows, pa.string()))

    def finish(self, rows: pa.Table) -> pa.Table:
        """What the step hands on, from all its output rows (processed, then passed through)."""
        return rows

    def __call__(self, batch: pa.Table) -> pa.Table:
        """The step on one block: the pipeline's one failure mechanism (module doc); no step overrides it."""
        ok = good_mask(batch)
        if ok.all():  # the usual block: no copy of its keyframes and vectors through a filter
            good, bad = batch, batch.slice(0, 0)
        else:
            good, bad = batch.filter(pa.array(ok)), batch.filter(pa.array(~ok))
        units = self.episodes(good) if self.one_episode_at_a_time and good.num_rows else [good]
        done = [t for u in units if u.num_rows for t in self._attempt(u)]
        schema = self._output_schema(batch, done)
        out = [conform(t, schema) for t in [*done, bad] if t.num_rows]
        return self.finish(pa.concat_tables(out) if out else schema.empty_table())

    def _attempt(self, rows: pa.Table) -> list[pa.Table]:
        """`process` on `rows`; on an exception, one episode at a time, quarantining those that fail alone."""
        t0 = time.perf_counter()
        try:
            out = self.process(rows.drop_columns([c for c in rows.column_names if c.startswith("_")]))
        except Exception as e:
            if not self.quarantines:
                raise
            units = self.episodes(rows)
            if len(units) > 1:  # one episode at a time: a bad one does not take its block-mates along
                return [t for u in units for t in self._attempt(u)]
            out = self.quarantine(rows, e)
        else:
            out = self._carry_status(rows, out)
        share = (time.perf_counter() - t0) / max(out.num_rows, 1)
        return [out.append_column(pa.field(seconds_column(self.name), pa.float64()),
                                  pa.array([share] * out.num_rows, pa.float64()))]

    def _carry_status(self, rows: pa.Table, out: pa.Table) -> pa.Table:
        """`out` with the status columns it does not set taken from `rows`, row by row."""
        for name in _status_names(rows):
            if name in out.column_names:
                continue
            if out.num_rows != rows.num_rows:
                raise RuntimeError(f"step {self.name} returned {out.num_rows} rows for {rows.num_rows}")
            out = out.append_column(rows.schema.field(name), rows.column(name))
        return out

    def _output_schema(self, batch: pa.Table, done: list[pa.Table]) -> pa.Schema:
        """The event schema, the status fields, the status columns that came in, those the step
        added, its seconds column: the same for every batch, whatever it held."""
        fields: dict[str, pa.Field] = {f.name: f for f in STAGE_SCHEMA}
        for t in [batch, *done]:
            for f in t.schema:
                if f.name.startswith("_") and f.name not in fields:
                    fields[f.name] = f if not pa.types.is_null(f.type) else f.with_type(pa.string())
        seconds = seconds_column(self.name)
        fields.pop(seconds, None)
        fields[seconds] = pa.field(seconds, pa.float64())
        return pa.schema(list(fields.values()), metadata=EVENT_SCHEMA.metadata)


def _status_names(t: pa.Table) -> list[str]:
    return [c for c in t.column_names if c.startswith("_")]


def _set_column(t: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = t.schema.get_field_index(name)
    return t.set_column(i, name, values) if i >= 0 else t.append_column(name, values)


def quarantine_row(ref: EpisodeRef, error: str, step: str) -> dict[str, Any]:
    """The single row that carries a quarantined episode through the later steps."""
    return {
        "event_id": f"failed:{ref.episode_id}",
        "episode_id": ref.episode_id,
        "dataset": ref.dataset,
        "source_uri": ref.source_uri,
        **provenance(ref),
        "episode_index": ref.episode_index,
        "event_index": -1,
        "num_events": 0,
        "start_frame": 0,
        "end_frame": 0,
        "fps": 0.0,
        "_fingerprint": ref.fingerprint,
        "_error": error,
        "_failed_at": step,
    }


def unexpected(label: str, e: BaseException) -> str:
    """The quarantine reason of an unforeseen exception: type, message and the traceback tail."""
    tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
    return f"{label}: unexpected {type(e).__name__}: {e} ({tb})"


def rows_to_stage_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in STAGE_SCHEMA}
    return pa.Table.from_pydict(cols, schema=STAGE_SCHEMA)


def good_mask(batch: pa.Table) -> np.ndarray:
    """The rows not quarantined (all of them when the batch has no `_error` column: the first step's input)."""
    if "_error" not in batch.column_names:
        return np.ones(batch.num_rows, dtype=bool)
    return np.asarray(pc.is_null(batch.column("_error")).to_numpy(zero_copy_only=False), dtype=bool)
