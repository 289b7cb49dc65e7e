"""The steps of `carve run`, in DAG order (each a `PipelineStep`, see pipeline/step.py).

Each does its work in `process`; none overrides `__call__`, the one failure mechanism.

- `DecodeSegment` (Ray tasks): a block of EpisodeRef rows in (`ray.part_episodes` episodes,
  pipeline/executor.py), processed one episode at a time: one row per event out (a quarantined
  episode leaves a single row carrying its reason; its block-mates go on).
- `Caption` (actors): the configured captioner (`carve.captioners`) over the good rows.
- `Embed` (actors): the configured embedders (`carve.embedding`) over the good rows.
- `WriteEvents` (Ray tasks): the good events of a block as one atomic part file under
  `<root>/events/batch=<id>/` (several, cut at episode boundaries, when the block's Arrow size
  exceeds `ray.part_target_mb`), passed on with the part holding each (`PART_FIELDS`); its
  `finish` hands on one summary row per episode, naming its part and the seconds each step
  spent on it, for the driver to commit (storage/parts.py `commit_block`).

pipeline/run.py composes them and pipeline/executor.py runs them.
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import pyarrow as pa

from carve.core.config import CaptionConfig, CheckConfig, EmbedConfig, SegmentConfig, SourceConfig
from carve.core.errors import CarveError
from carve.ingest.sources.base import EpisodeRef
from carve.pipeline.ray_env import worker_cpus
from carve.pipeline.step import SECONDS_PREFIX, PipelineStep, quarantine_row, rows_to_stage_table, unexpected
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
        pa.field("failed_at", pa.string()),  # the step that quarantined the episode (null when ok)
        pa.field("part", pa.string()),  # the part file relative to the root ("" for a failed episode)
        pa.field("part_rows", pa.int64()),
        pa.field("part_bytes", pa.int64()),
        pa.field("defects", pa.string()),  # the quality gate's findings (JSON list), null when not checked
        pa.field("source_file", pa.string()),  # where the episode lives in its source (provenance)
        pa.field("source_key", pa.string()),
    ]
)
# an episode whose frames (per camera) fit in this many bytes is decoded in one forward pass that
# serves its keyframes and its quality check's samples (ingest/events.py `episode_events`)
DENSE_MAX_BYTES = 64 * 2**20


def dense_pays(ep: Any, check_cfg: CheckConfig) -> bool:
    """Whether one forward decode of the episode's every frame (serving its keyframes and the
    quality check's samples) costs less than decoding those apart: only when every camera's video
    has keyframes further apart than the check's sampling interval, so a sample could not seek to
    a keyframe and its reader would decode on through the frames anyway. With short groups of
    pictures (LeRobot's default AV1 has a keyframe every 2 frames) the keyframes and samples are
    decoded apart, a frame or two each. Videos the demuxer cannot read: no (the check says why)."""
    from carve.quality.video import packet_times

    spans = ep.video_spans()
    try:
        return bool(spans) and all(packet_times(uri).key_gap >= check_cfg.video_sample_s for uri, _ in spans.values())
    except Exception:
        return False


# the status columns WriteEvents adds to each event row it wrote: where its episode went
PART_FIELDS = [pa.field("_part_path", pa.string()), pa.field("_part", pa.string()),
               pa.field("_part_rows", pa.int64()), pa.field("_part_bytes", pa.int64())]


class DecodeSegment(PipelineStep):
    """Load each episode of a block (signals + video), segment it into events and build their
    rows; an episode that fails is quarantined alone."""

    name = "decode_segment"
    compute = "tasks"
    one_episode_at_a_time = True  # decoding does not batch; an episode's failure is its own

    def __init__(self, seg_cfg: SegmentConfig, src_cfg: SourceConfig, check_cfg: CheckConfig | None = None):
        self.seg_cfg = seg_cfg
        self.src_cfg = src_cfg
        self.check_cfg = check_cfg  # None: no quality check in this run
        cpus = worker_cpus()
        if cpus is not None:  # a Ray worker: its decoders get the CPUs Ray gave it, not a thread per core
            from carve.ingest import video

            video.set_decoder_threads(cpus)

    def episodes(self, rows: pa.Table) -> list[pa.Table]:
        """The input is one EpisodeRef row per episode."""
        return [rows.slice(i, 1) for i in range(rows.num_rows)]

    def process(self, rows: pa.Table) -> pa.Table:
        """EpisodeRef rows in, their episodes' event rows out (with `_fingerprint` and `_defects`)."""
        from carve.ingest.events import episode_events
        from carve.ingest.sources import load_episode

        out: list[dict[str, Any]] = []
        for r in rows.to_pylist():
            ref = EpisodeRef.from_row(r)
            ep = load_episode(ref, camera=self.src_cfg.camera, video_backend=self.src_cfg.video_backend)
            if not ep.task and self.src_cfg.task:
                ep.task = self.src_cfg.task
            every = self.seg_cfg.obs_every_s
            stride = max(1, round(every * ep.fps)) if every > 0 else 0
            # with the quality check on, an episode's frames are decoded once for both (`DENSE_MAX_BYTES`)
            # when its samples could not seek anyway (`dense_pays`)
            dense = DENSE_MAX_BYTES if self.check_cfg is not None and self.check_cfg.in_run and \
                dense_pays(ep, self.check_cfg) else 0
            events = episode_events(ep, self.seg_cfg, self.src_cfg.camera, obs_stride=stride, dense_max_bytes=dense)
            defects = self._check(ep)
            for row in events:
                row["_fingerprint"] = ref.fingerprint
                row["_defects"] = defects
            out += events
        return rows_to_stage_table(out)

    def quarantine(self, rows: pa.Table, error: Exception) -> pa.Table:
        """The episode's single quarantine row: a CarveError's own message, or the traceback tail
        of an unforeseen exception (a bug or an unforeseen file problem)."""
        ref = EpisodeRef.from_row(rows.to_pylist()[0])
        reason = str(error) if isinstance(error, CarveError) else unexpected(ref.label, error)
        return rows_to_stage_table([quarantine_row(ref, reason, self.name)])

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


class Caption(PipelineStep):
    """The configured captioner (kinematic, OpenAI-compatible HTTP, vLLM) over the good rows."""

    name = "caption"

    @classmethod
    def requires(cls, cfg: CaptionConfig, segment: SegmentConfig | None = None) -> dict[str, str]:
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
        self.stage.warm_up()  # the text model loads while the first blocks decode

    def process(self, events: pa.Table) -> pa.Table:
        return self.stage(events)


# the columns `WriteEvents.finish` reads from each row (besides the steps' seconds)
_SUMMARY_INPUTS = ("episode_id", "dataset", "episode_index", "source_uri", "source_file", "source_key",
                   "_fingerprint", "_error", "_failed_at", "_defects", *(f.name for f in PART_FIELDS))


class WriteEvents(PipelineStep):
    """Write the good events of a block as atomic part files (one, or several cut at episode
    boundaries above `part_target_mb` of Arrow data), then hand on one summary row per episode."""

    name = "write"
    compute = "tasks"
    quarantines = False  # a part that cannot be written (disk full) fails the run, not the episodes

    def __init__(self, root: Root, batch_id: str, row_group_size: int = 256, part_target_mb: float = 128.0):
        self.root = root
        self.batch_id = batch_id
        self.row_group_size = row_group_size
        self.part_target_bytes = max(1, int(part_target_mb * 1024 * 1024))

    def process(self, rows: pa.Table) -> pa.Table:
        """Write the events; pass them on with the part that holds each (`PART_FIELDS`)."""
        where = self._write_parts(rows)
        held = [where[e] for e in rows.column("episode_id").to_pylist()]
        cols = [pa.array([w[i] for w in held], f.type) for i, f in enumerate(PART_FIELDS)]
        return pa.Table.from_arrays([*rows.columns, *cols], schema=pa.schema([*rows.schema, *PART_FIELDS]))

    def finish(self, rows: pa.Table) -> pa.Table:
        """One summary row per episode (ok with its part, or failed with the reason), with the
        seconds each step spent on it (`SUMMARY_SCHEMA` and the seconds columns), for the driver."""
        seconds = [c for c in rows.column_names if c.startswith(SECONDS_PREFIX)]
        wanted = {*_SUMMARY_INPUTS, *seconds}  # not the keyframes and vectors: Python objects of them cost seconds
        summary: dict[str, dict[str, Any]] = {}
        for r in rows.select([c for c in rows.column_names if c in wanted]).to_pylist():
            s = summary.get(r["episode_id"])
            if s is None:
                s = summary[r["episode_id"]] = self._summary(r, seconds)
            s["num_events"] += r["_error"] is None
            s["defects"] = s["defects"] or (r["_defects"] if r["_error"] is None else None)
            for c in seconds:
                if r[c] is not None:
                    s[c] = (s[c] or 0.0) + r[c]
        schema = pa.schema([*SUMMARY_SCHEMA, *(pa.field(c, pa.float64()) for c in seconds)])
        return pa.Table.from_pylist(list(summary.values()), schema=schema)

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

    def _summary(self, r: dict[str, Any], seconds: list[str]) -> dict[str, Any]:
        ok = r["_error"] is None
        return {
            "episode_id": r["episode_id"], "dataset": r["dataset"], "episode_index": r["episode_index"],
            "source_uri": r["source_uri"], "fingerprint": r["_fingerprint"], "status": "ok" if ok else "failed",
            "error": r["_error"], "failed_at": r["_failed_at"], "num_events": 0,
            "batch": self.batch_id if ok else None, "path": r.get("_part_path") or "" if ok else "",
            "part": r.get("_part") or "" if ok else "", "part_rows": r.get("_part_rows") or 0 if ok else 0,
            "part_bytes": r.get("_part_bytes") or 0 if ok else 0, "defects": None,
            "source_file": r.get("source_file"), "source_key": r.get("source_key"), **dict.fromkeys(seconds),
        }
