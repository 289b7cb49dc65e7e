"""The pipeline step: one small, composable stage of `carve run`, in the style of datatrove's `PipelineStep`.

A step subclasses `PipelineStep`, names itself (`name`), declares its optional dependencies
(`requires(cfg)`: import name -> pip package; a missing one fails on the driver, before any
work starts, with an install hint), and does its work in `process(table)` on the *good* rows
of a batch. Calling the step (`step(batch)`, which is what Ray Data's `map_batches` does) is
the one failure mechanism of the pipeline:

- rows of episodes quarantined by an earlier step pass through untouched;
- an exception in `process` on a batch of several episodes retries them one episode at a
  time, so that only the episodes that fail on their own are quarantined, with the step's
  name and the reason, and the job carries on;
- the seconds the step spent are shared out over the rows it returned (`_stats`), so the
  driver can add them up per step (`StepStats`) from the one summary row per episode that
  reaches it, wherever the step ran.

Rows between steps carry the event schema's columns plus `STATUS_FIELDS`:
`_fingerprint` (the episode's source fingerprint), `_error` (set on a quarantined episode's
single row), `_stats` (JSON: seconds per step, the step an episode failed at) and `_defects`
(JSON: the quality gate's findings on the episode, `carve.quality`; null when not checked).
"""

from __future__ import annotations

import importlib.util
import json
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carve.core.errors import CarveError
from carve.ingest.sources.base import EpisodeRef, provenance
from carve.storage.schema import EVENT_SCHEMA, conform

STATUS_FIELDS = [pa.field("_fingerprint", pa.string()), pa.field("_error", pa.string()), pa.field("_stats", pa.string()),
                 pa.field("_defects", pa.string())]
STAGE_SCHEMA = pa.schema(list(EVENT_SCHEMA) + STATUS_FIELDS, metadata=EVENT_SCHEMA.metadata)


class MissingDependency(CarveError):
    """A step whose optional dependency is not installed; the message says what to install."""


def check_requirements(step: str, requirements: dict[str, str]) -> None:
    """Raise `MissingDependency` naming every missing import and its pip package."""
    missing = {mod: pkg for mod, pkg in requirements.items() if importlib.util.find_spec(mod) is None}
    if missing:
        hint = " ".join(sorted(set(missing.values())))
        raise MissingDependency(
            f"step {step} needs {', '.join(sorted(missing))}, which is not installed: pip install {hint}"
        )


# -- per-row stats ------------------------------------------------------------------------
def row_stats(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {"seconds": {}}


def add_seconds(stats_col: list[str | None], step: str, seconds: float) -> list[str]:
    """Share `seconds` equally over the rows and add it to each row's stats under `step`."""
    share = seconds / max(len(stats_col), 1)
    out = []
    for raw in stats_col:
        s = row_stats(raw)
        s["seconds"][step] = s["seconds"].get(step, 0.0) + share
        out.append(json.dumps(s, separators=(",", ":")))
    return out


def failed_stats(raw: str | None, step: str) -> str:
    s = row_stats(raw)
    s["failed_at"] = step
    return json.dumps(s, separators=(",", ":"))


@dataclass
class StepStats:
    """What one step did over a run: episodes that reached it, events it passed on, seconds, failures."""

    name: str
    episodes: int = 0
    events: int = 0
    seconds: float = 0.0
    failures: int = 0

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

    def add_episode(self, stats_json: str | None, num_events: int) -> None:
        s = row_stats(stats_json)
        failed_at = s.get("failed_at")
        for name in self.order:
            if name not in s["seconds"] and name != failed_at:
                continue  # never reached this step (quarantined earlier) or it ran elsewhere
            st = self.steps[name]
            st.episodes += 1
            st.seconds += float(s["seconds"].get(name, 0.0))
            if name == failed_at:
                st.failures += 1
                break
            st.events += num_events

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {n: self.steps[n].as_dict() for n in self.order}


# -- the step ---------------------------------------------------------------------------
class PipelineStep(ABC):
    """One stage over Arrow batches of event rows. Subclasses set `name` and implement `process`."""

    name: ClassVar[str] = "step"
    #: "tasks" (stateless, Ray tasks) or "actors" (holds a model, Ray actor pool)
    compute: ClassVar[str] = "actors"

    @classmethod
    def requires(cls, cfg: Any) -> dict[str, str]:
        """Optional dependencies for this config: import name -> pip package."""
        return {}

    @classmethod
    def check(cls, cfg: Any) -> None:
        check_requirements(cls.name, cls.requires(cfg))

    @abstractmethod
    def process(self, events: pa.Table) -> pa.Table:
        """Schema-v1 event rows in (the good rows of one batch), the same rows out, with columns filled."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        ok = good_mask(batch)
        good, bad = batch.filter(pa.array(ok)), batch.filter(pa.array(~ok))
        if good.num_rows == 0:
            return batch
        status = good.select([f.name for f in STATUS_FIELDS])
        events = good.select(EVENT_SCHEMA.names)
        try:
            out = self.process(events)
        except Exception as e:  # quarantine these episodes with the reason; the job goes on
            episodes = pc.unique(good.column("episode_id")).to_pylist()
            if len(episodes) > 1:  # one episode at a time: a bad one does not take its block-mates along
                ids = good.column("episode_id")
                parts = [self(good.filter(pc.equal(ids, ep))) for ep in episodes]
                return pa.concat_tables([*parts, bad.cast(STAGE_SCHEMA)] if bad.num_rows else parts)
            reason = str(e) if isinstance(e, CarveError) else f"{type(e).__name__}: {e}"
            status = status.set_column(1, "_error", pa.array([f"{self.name} failed: {reason}"] * good.num_rows,
                                                             pa.string()))
            stats = [failed_stats(s, self.name) for s in status.column("_stats").to_pylist()]
            status = status.set_column(2, "_stats", pa.array(stats, pa.string()))
            out = events
        if out.num_rows != good.num_rows:
            raise RuntimeError(f"step {self.name} returned {out.num_rows} rows for {good.num_rows}")
        out = conform(out.select([c for c in out.column_names if c in EVENT_SCHEMA.names]), EVENT_SCHEMA)
        stats = add_seconds(status.column("_stats").to_pylist(), self.name, time.perf_counter() - t0)
        status = status.set_column(2, "_stats", pa.array(stats, pa.string()))
        merged = pa.Table.from_arrays([*out.columns, *status.columns], schema=STAGE_SCHEMA)
        return pa.concat_tables([merged, bad.cast(STAGE_SCHEMA)]) if bad.num_rows else merged


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
        "_stats": failed_stats(None, step),
    }


def unexpected(label: str, e: BaseException) -> str:
    """The quarantine reason of an unforeseen exception: type, message and the traceback tail."""
    tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
    return f"{label}: unexpected {type(e).__name__}: {e} ({tb})"


def rows_to_stage_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in STAGE_SCHEMA}
    return pa.Table.from_pydict(cols, schema=STAGE_SCHEMA)


def good_mask(batch: pa.Table) -> np.ndarray:
    return np.asarray(pc.is_null(batch.column("_error")).to_numpy(zero_copy_only=False), dtype=bool)
