"""The steps of `carve run`, in DAG order (each a `PipelineStep`, see pipeline/step.py).

- `DecodeSegment` (Ray tasks): a block of EpisodeRef rows in (`ray.part_episodes` episodes,
  pipeline/executor.py), one row per event out (a quarantined episode leaves a single row
  carrying its reason; its block-mates go on).
- `Caption` (actors): the configured captioner (`carve.captioners`) over the good rows.
- `Embed` (actors): the configured embedders (`carve.embedding`) over the good rows.
- `WriteEvents` (Ray tasks): the good events of a block as one atomic part file under
  `<root>/events/batch=<id>/` (several, cut at episode boundaries, when the block's Arrow size
  exceeds `ray.part_target_mb`), and one summary row per episode, naming its part, for the
  driver to commit (storage/parts.py `commit_block`).

pipeline/run.py composes them and pipeline/executor.py runs them.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import pyarrow as pa

from carve.core.config import CaptionConfig, CheckConfig, EmbedConfig, SegmentConfig, SourceConfig
from carve.core.errors import CarveError
from carve.ingest.sources.base import EpisodeRef
from carve.pipeline.step import (
    STATUS_FIELDS,
    PipelineStep,
    add_seconds,
    good_mask,
    quarantine_row,
    rows_to_stage_table,
    unexpected,
)
from carve.storage.root import Root
from carve.storage.schema import EVENT_SCHEMA

SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("episode_index", pa.int64()),
        pa.field("source_uri", pa.string()),
        pa.field("fingerprint", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("num_events", pa.int64()),
        pa.field("batch", pa.string()),
        pa.field("path", pa.string()),
        pa.field("stats", pa.string()),
        pa.field("part", pa.string()),  # the part file relative to the root ("" for a failed episode)
        pa.field("part_rows", pa.int64()),
        pa.field("part_bytes", pa.int64()),
        pa.field("defects", pa.string()),  # the quality gate's findings (JSON list), null when not checked
        pa.field("source_file", pa.string()),  # where the episode lives in its source (provenance)
        pa.field("source_key", pa.string()),
    ]
)


class DecodeSegment(PipelineStep):
    """Load each episode of a block (signals + video), segment it into events and build their
    rows; an episode that fails is quarantined alone."""

    name = "decode_segment"
    compute = "tasks"

    def __init__(self, seg_cfg: SegmentConfig, src_cfg: SourceConfig, check_cfg: CheckConfig | None = None):
        self.seg_cfg = seg_cfg
        self.src_cfg = src_cfg
        self.check_cfg = check_cfg  # None: no quality check in this run

    def process(self, events: pa.Table) -> pa.Table:  # not used: the input is episodes, not events
        raise NotImplementedError

    def _check(self, ep: Any) -> str | None:
        """The quality gate's findings on the loaded episode as JSON (`carve.quality`), or None when
        the run does not check; a check that fails is a finding, never a quarantine."""
        if self.check_cfg is None or not self.check_cfg.in_run:
            return None
        from carve.quality.check import check_episode
        from carve.quality.defects import Defect

        try:
            found = check_episode(ep, self.check_cfg, self.seg_cfg).defects
        except Exception as e:
            found = [Defect("unreadable", 0, max(0, ep.length - 1), f"the checks failed ({type(e).__name__}: {e})")]
        return json.dumps([d.as_dict() for d in found], separators=(",", ":"))

    def __call__(self, batch: pa.Table) -> pa.Table:
        from carve.ingest.events import episode_events
        from carve.ingest.sources import load_episode

        tables = []
        for r in batch.to_pylist():
            t0 = time.perf_counter()
            ref = EpisodeRef.from_row(r)
            try:
                ep = load_episode(ref, camera=self.src_cfg.camera, video_backend=self.src_cfg.video_backend)
                if not ep.task and self.src_cfg.task:
                    ep.task = self.src_cfg.task
                every = self.seg_cfg.obs_every_s
                stride = max(1, round(every * ep.fps)) if every > 0 else 0
                rows = episode_events(ep, self.seg_cfg, self.src_cfg.camera, obs_stride=stride)
                defects = self._check(ep)
                for row in rows:
                    row["_fingerprint"] = ref.fingerprint
                    row["_defects"] = defects
            except CarveError as e:
                rows = [quarantine_row(ref, str(e), self.name)]
            except Exception as e:  # a bug or an unforeseen file problem: quarantine with the traceback tail
                rows = [quarantine_row(ref, unexpected(ref.label, e), self.name)]
            t = rows_to_stage_table(rows)
            stats = add_seconds(t.column("_stats").to_pylist(), self.name, time.perf_counter() - t0)
            tables.append(t.set_column(t.schema.get_field_index("_stats"), "_stats", pa.array(stats, pa.string())))
        return pa.concat_tables(tables) if tables else rows_to_stage_table([])


class Caption(PipelineStep):
    """The configured captioner (kinematic, OpenAI-compatible HTTP, vLLM) over the good rows."""

    name = "caption"

    @classmethod
    def requires(cls, cfg: CaptionConfig) -> dict[str, str]:
        return {"openai": {"openai": "openai"}, "vllm": {"vllm": "vllm", "ray.data.llm": "ray[llm]"}}.get(
            cfg.backend, {})

    def __init__(self, cfg: CaptionConfig, segment: SegmentConfig | None = None):
        from carve.captioners.stage import CaptionStage

        self.stage = CaptionStage(cfg, segment=segment)

    def process(self, events: pa.Table) -> pa.Table:
        return self.stage(events)


class Embed(PipelineStep):
    """The configured visual/text/motion embedders and the fused `emb` over the good rows."""

    name = "embed"

    @classmethod
    def requires(cls, cfg: EmbedConfig) -> dict[str, str]:
        req: dict[str, str] = {}
        if "open_clip" in (cfg.visual, cfg.text):
            req["open_clip"] = "open_clip_torch"
        if cfg.text == "minilm":
            req["sentence_transformers"] = "sentence-transformers"
        return req

    def __init__(self, cfg: EmbedConfig):
        from carve.embedding.stage import EmbedStage

        self.stage = EmbedStage(cfg)

    def process(self, events: pa.Table) -> pa.Table:
        return self.stage(events)


class WriteEvents(PipelineStep):
    """Write the good events of a block as atomic part files (one, or several cut at episode
    boundaries above `part_target_mb` of Arrow data); one summary row per episode."""

    name = "write"
    compute = "tasks"

    def __init__(self, root: Root, batch_id: str, row_group_size: int = 256, part_target_mb: float = 128.0):
        self.root = root
        self.batch_id = batch_id
        self.row_group_size = row_group_size
        self.part_target_bytes = max(1, int(part_target_mb * 1024 * 1024))

    def process(self, events: pa.Table) -> pa.Table:  # not used: the output is one row per episode
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        ok = good_mask(batch)
        good, bad = batch.filter(pa.array(ok)), batch.filter(pa.array(~ok))
        where = self._write_parts(good)
        status_cols = ["episode_id", "dataset", "episode_index", "source_uri", "source_file", "source_key",
                       *(f.name for f in STATUS_FIELDS)]
        summary: dict[str, dict[str, Any]] = {}
        for r in good.select(status_cols).to_pylist():
            s = summary.setdefault(r["episode_id"], self._summary(r, "ok", None, *where[r["episode_id"]]))
            s["defects"] = s["defects"] or r["_defects"]
            s["num_events"] += 1
            s["_row_stats"].append(r["_stats"])
        for r in bad.select(status_cols).to_pylist():
            summary[r["episode_id"]] = self._summary(r, "failed", r["_error"], "")
            summary[r["episode_id"]]["_row_stats"].append(r["_stats"])
        share = (time.perf_counter() - t0) / max(len(summary), 1)
        for s in summary.values():
            s["stats"] = _episode_stats(s.pop("_row_stats"), self.name, share if s["status"] == "ok" else 0.0)
        rows = list(summary.values())
        return pa.Table.from_pydict({f.name: [r[f.name] for r in rows] for f in SUMMARY_SCHEMA}, schema=SUMMARY_SCHEMA)

    def _write_parts(self, good: pa.Table) -> dict[str, tuple[str, str, int, int]]:
        """Write the good rows as parts of at most the target size, cut at episode boundaries (an
        episode's rows are contiguous); episode_id -> (fs path, part relative to the root, the
        part's rows, its bytes)."""
        from carve.storage.events import write_event_part
        from carve.storage.parts import plan_parts

        if not good.num_rows:
            return {}
        events = good.select(EVENT_SCHEMA.names)
        ids = events.column("episode_id").to_pylist()
        first = {e: i for i, e in reversed(list(enumerate(ids)))}
        order = sorted(range(len(ids)), key=lambda i: (first[ids[i]], i))
        if order != list(range(len(ids))):  # steps keep an episode's rows together; if not, regroup them
            events = events.take(pa.array(order, pa.int64()))
            ids = [ids[i] for i in order]
        starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
        bounds = [*starts, len(ids)]
        sizes = [events.slice(a, b - a).nbytes for a, b in itertools.pairwise(bounds)]
        where: dict[str, tuple[str, str, int, int]] = {}
        for first_ep, stop_ep in plan_parts(sizes, self.part_target_bytes):
            a, b = bounds[first_ep], bounds[stop_ep]
            part = events.slice(a, b - a)
            key = f"{min(part.column('episode_index').to_pylist()):06d}-{uuid.uuid4().hex[:8]}"
            path = write_event_part(self.root, self.batch_id, key, part, self.row_group_size)
            size = int(self.root.fs.get_file_info(path).size or 0)
            for e in ids[a:b]:
                where[e] = (path, self.root.relative(path), part.num_rows, size)
        return where

    def _summary(self, r: dict[str, Any], status: str, error: str | None, path: str = "", part: str = "",
                 part_rows: int = 0, part_bytes: int = 0) -> dict[str, Any]:
        return {
            "episode_id": r["episode_id"], "dataset": r["dataset"], "episode_index": r["episode_index"],
            "source_uri": r["source_uri"], "fingerprint": r["_fingerprint"], "status": status, "error": error,
            "num_events": 0, "batch": self.batch_id if status == "ok" else None, "path": path, "_row_stats": [],
            "part": part, "part_rows": part_rows, "part_bytes": part_bytes, "defects": None,
            "source_file": r.get("source_file"), "source_key": r.get("source_key"),
        }


def _episode_stats(row_stats: list[str | None], step: str, write_seconds: float) -> str:
    """One episode's stats: the sum of its rows' seconds per step, plus this step's share."""
    seconds: dict[str, float] = {}
    failed_at = None
    for raw in row_stats:
        s = json.loads(raw) if raw else {"seconds": {}}
        for k, v in s["seconds"].items():
            seconds[k] = seconds.get(k, 0.0) + v
        failed_at = s.get("failed_at") or failed_at
    if failed_at is None:
        seconds[step] = seconds.get(step, 0.0) + write_seconds
    out: dict[str, Any] = {"seconds": seconds}
    if failed_at:
        out["failed_at"] = failed_at
    return json.dumps(out, separators=(",", ":"))
