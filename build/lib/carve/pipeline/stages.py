"""The Ray Data stages of `carve run`, each a small function or callable class over Arrow batches.

- `decode_segment`: EpisodeRef rows -> event rows (one input row = one episode; output rows
  carry `_fingerprint` and, for a quarantined episode, a single row with `_error`).
- `CaptionStep` / `EmbedStep`: wrap the captioner and embedder stages so that quarantine rows
  pass through untouched and the model stages see clean schema-v1 event rows only.
- `write_events`: atomically writes the good events of a batch as one part file under
  `<root>/events/batch=<id>/` and returns one summary row per episode for the catalog.

`pipeline/run.py` composes them; see there for the whole DAG.
"""

from __future__ import annotations

import io
import traceback
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carve.core.config import CaptionConfig, EmbedConfig, SegmentConfig, SourceConfig
from carve.core.errors import CarveError, EpisodeError
from carve.ingest.sources.base import Episode, EpisodeRef
from carve.storage.schema import EVENT_SCHEMA, make_event_id

STATUS_FIELDS = [pa.field("_fingerprint", pa.string()), pa.field("_error", pa.string())]
STAGE_SCHEMA = pa.schema(list(EVENT_SCHEMA) + STATUS_FIELDS, metadata=EVENT_SCHEMA.metadata)

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
    ]
)


# --------------------------------------------------------------------------- decode + segment
def encode_jpeg(frame: np.ndarray, short_side: int, quality: int) -> bytes:
    """Resize an RGB frame so its short side is `short_side` and JPEG-encode it."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame))
    w, h = img.size
    scale = short_side / min(w, h)
    if scale < 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def keyframe_indices(start: int, end: int) -> tuple[int, int, int]:
    """Start, middle and last frame of [start, end)."""
    last = max(start, end - 1)
    return start, (start + last) // 2, last


def episode_events(ep: Episode, seg_cfg: SegmentConfig, camera: str | None) -> list[dict[str, Any]]:
    """Segment one loaded episode and build its schema-v1 event rows (keyframes included)."""
    from carve.ingest.segment import (
        find_gripper_dim,
        gripper_opening,
        segment_episode,
        visual_features_from_frames,
    )

    ref = ep.ref
    if ep.length == 0:
        raise EpisodeError(ref.label, "episode is empty (0 frames)")
    cam = camera or (ep.cameras[0] if ep.cameras else None)
    all_frames: np.ndarray | None = None
    vis = None
    if seg_cfg.use_visual and cam is not None:
        all_frames = ep.frames(cam, None)
        if all_frames.shape[0] < ep.length:
            raise EpisodeError(ref.label, f"video has {all_frames.shape[0]} frames but the episode has {ep.length}")
        vis = visual_features_from_frames(all_frames[: ep.length])
    segments = segment_episode(
        ep.state, ep.action, ep.fps, seg_cfg, ep.state_names, ep.action_names, visual_features=vis
    )
    if not segments:
        raise EpisodeError(ref.label, "segmentation produced no events")
    gdim = find_gripper_dim(ep.state_names, seg_cfg)
    grip = gripper_opening(ep.state, gdim)

    jpegs: dict[int, bytes] = {}
    if cam is not None:
        wanted = sorted({i for s in segments for i in keyframe_indices(s.start, s.end)})
        frames = all_frames[wanted] if all_frames is not None else ep.frames(cam, wanted)
        if len(frames) != len(wanted):
            raise EpisodeError(ref.label, f"decoded {len(frames)} of {len(wanted)} keyframes from camera {cam}")
        for i, fr in zip(wanted, frames, strict=True):
            jpegs[i] = encode_jpeg(fr, seg_cfg.keyframe_size, seg_cfg.keyframe_quality)

    rows = []
    n = len(segments)
    for k, s in enumerate(segments):
        rows.append(
            {
                "event_id": make_event_id(ref.episode_id, s.start, s.end),
                "episode_id": ref.episode_id,
                "dataset": ref.dataset,
                "source_uri": ref.source_uri,
                "camera": cam,
                "robot": ep.robot,
                "episode_index": ref.episode_index,
                "event_index": k,
                "num_events": n,
                "start_frame": s.start,
                "end_frame": s.end,
                "fps": float(ep.fps),
                "start_reason": s.start_reason,
                "boundary_reason": s.end_reason,
                "task": ep.task,
                "keyframes": [jpegs[i] for i in keyframe_indices(s.start, s.end)] if jpegs else [],
                "state": ep.state[s.start : s.end].astype(np.float32).tolist(),
                "action": ep.action[s.start : s.end].astype(np.float32).tolist(),
                "gripper": grip[s.start : s.end].astype(np.float32).tolist() if len(grip) else [],
                "_fingerprint": ref.fingerprint,
                "_error": None,
            }
        )
    return rows


def failure_row(ref: EpisodeRef, error: str) -> dict[str, Any]:
    """The single row that carries a quarantined episode through the later stages."""
    return {
        "event_id": f"failed:{ref.episode_id}",
        "episode_id": ref.episode_id,
        "dataset": ref.dataset,
        "source_uri": ref.source_uri,
        "episode_index": ref.episode_index,
        "event_index": -1,
        "num_events": 0,
        "start_frame": 0,
        "end_frame": 0,
        "fps": 0.0,
        "_fingerprint": ref.fingerprint,
        "_error": error,
    }


def rows_to_stage_table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in STAGE_SCHEMA}
    return pa.Table.from_pydict(cols, schema=STAGE_SCHEMA)


def decode_segment(batch: pa.Table, seg_cfg: SegmentConfig, src_cfg: SourceConfig) -> pa.Table:
    """Ray Data map_batches function: EpisodeRef rows in, event rows (or one failure row per
    quarantined episode) out. Never raises for a bad episode."""
    from carve.ingest.sources import load_episode

    rows: list[dict[str, Any]] = []
    for r in batch.to_pylist():
        ref = EpisodeRef.from_row(r)
        try:
            ep = load_episode(ref, camera=src_cfg.camera, video_backend=src_cfg.video_backend)
            rows.extend(episode_events(ep, seg_cfg, src_cfg.camera))
        except CarveError as e:
            rows.append(failure_row(ref, str(e)))
        except Exception as e:  # a bug or an unforeseen file problem: quarantine with the traceback tail
            tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
            rows.append(failure_row(ref, f"{ref.label}: unexpected {type(e).__name__}: {e} ({tb})"))
    return rows_to_stage_table(rows)


# --------------------------------------------------------------------------- model stages
def _split(batch: pa.Table) -> tuple[pa.Table, pa.Table, np.ndarray]:
    ok_mask = pc.is_null(batch.column("_error")).to_numpy(zero_copy_only=False)
    return batch.filter(pa.array(ok_mask)), batch.filter(pa.array(~ok_mask)), ok_mask


def _apply_to_good_rows(batch: pa.Table, fn: Any, stage: str) -> pa.Table:
    """Run `fn` on the schema-v1 part of the good rows; failure rows pass through. A stage
    that fails for a whole batch quarantines those episodes with the reason."""
    good, bad, _ = _split(batch)
    if good.num_rows == 0:
        return batch
    status = good.select([f.name for f in STATUS_FIELDS])
    events = good.select(EVENT_SCHEMA.names)
    try:
        out = fn(events)
    except CarveError as e:
        err = pa.array([f"{stage} failed: {e}"] * good.num_rows, pa.string())
        status = status.set_column(1, "_error", err)
        out = events
    except Exception as e:  # keep the job going; the episodes are quarantined with the reason
        err = pa.array([f"{stage} failed: {type(e).__name__}: {e}"] * good.num_rows, pa.string())
        status = status.set_column(1, "_error", err)
        out = events
    if out.num_rows != good.num_rows:
        raise RuntimeError(f"{stage} returned {out.num_rows} rows for {good.num_rows}")
    from carve.storage.schema import conform

    out = conform(out.select([c for c in out.column_names if c in EVENT_SCHEMA.names]), EVENT_SCHEMA)
    merged = pa.Table.from_arrays(
        [*out.columns, *status.columns], schema=STAGE_SCHEMA
    )
    return pa.concat_tables([merged, bad.cast(STAGE_SCHEMA)]) if bad.num_rows else merged


class CaptionStep:
    """Actor: the configured captioner over the good rows of a batch."""

    def __init__(self, cfg: CaptionConfig):
        from carve.captioners.stage import CaptionStage

        self.stage = CaptionStage(cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _apply_to_good_rows(batch, self.stage, "captioning")


class EmbedStep:
    """Actor: the configured embedders over the good rows of a batch."""

    def __init__(self, cfg: EmbedConfig):
        from carve.embedding.embed import EmbedStage

        self.stage = EmbedStage(cfg)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _apply_to_good_rows(batch, self.stage, "embedding")


# --------------------------------------------------------------------------- write
def write_events(batch: pa.Table, root: str, batch_id: str, row_group_size: int = 256) -> pa.Table:
    """Write the good events of this block as one atomic part file; one summary row per episode."""
    from carve.storage.events import write_event_part

    good, bad, _ = _split(batch)
    path = ""
    if good.num_rows:
        first = min(good.column("episode_index").to_pylist())
        key = f"{first:06d}-{uuid.uuid4().hex[:8]}"
        path = write_event_part(root, batch_id, key, good.select(EVENT_SCHEMA.names), row_group_size)
    summary: dict[str, dict[str, Any]] = {}
    for r in good.select(["episode_id", "dataset", "episode_index", "source_uri", "_fingerprint"]).to_pylist():
        s = summary.setdefault(
            r["episode_id"],
            {
                "episode_id": r["episode_id"],
                "dataset": r["dataset"],
                "episode_index": r["episode_index"],
                "source_uri": r["source_uri"],
                "fingerprint": r["_fingerprint"],
                "status": "ok",
                "error": None,
                "num_events": 0,
                "batch": batch_id,
                "path": path,
            },
        )
        s["num_events"] += 1
    for r in bad.select(["episode_id", "dataset", "episode_index", "source_uri", "_fingerprint", "_error"]).to_pylist():
        summary[r["episode_id"]] = {
            "episode_id": r["episode_id"],
            "dataset": r["dataset"],
            "episode_index": r["episode_index"],
            "source_uri": r["source_uri"],
            "fingerprint": r["_fingerprint"],
            "status": "failed",
            "error": r["_error"],
            "num_events": 0,
            "batch": None,
            "path": "",
        }
    rows = list(summary.values())
    return pa.Table.from_pydict({f.name: [r[f.name] for r in rows] for f in SUMMARY_SCHEMA}, schema=SUMMARY_SCHEMA)
