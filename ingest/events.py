"""From one loaded episode to its schema-v1 event rows: segment, cut keyframes, slice signals.

`episode_events(ep, seg_cfg, camera)` runs the segmenter (`carve.ingest.segment`) on the
episode's signals (and, when `segment.use_visual`, on per-frame visual descriptors of its
camera), decodes the start/middle/last keyframe of every event as a small JPEG and slices
state, action and gripper per event. A problem with the episode raises `EpisodeError` naming
it and the reason.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from carve.core.config import SegmentConfig
from carve.core.errors import EpisodeError
from carve.ingest.sources.base import Episode
from carve.storage.schema import make_event_id


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
    )
    from carve.ingest.visual import frame_descriptors

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
        vis = frame_descriptors(all_frames[: ep.length])
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
            }
        )
    return rows
