"""From one loaded episode to its schema-v1 event rows: segment, cut keyframes, slice signals.

`episode_events(ep, seg_cfg, camera)` runs the segmenter (`carve.ingest.segment`) on the
episode's signals (and, when `segment.use_visual`, on per-frame visual descriptors of its
camera), decodes the start/middle/last keyframe of every event as a small JPEG and slices
state, action and gripper per event. A problem with the episode raises `EpisodeError` naming
it and the reason.

Per-step observations (optional columns, so a policy trains on the observation at every
decision point it will see, not only three keyframes):
* `env_state`: when the source has `observation.environment_state` (LeRobot's name for
  privileged environment state, e.g. a simulator's object poses), its frames sliced per event;
* `obs_stride` / `obs_visual`: with `obs_stride=k > 0`, the visual descriptor
  (`ingest.visual.image_descriptors`, the `descriptor` embedder's vector; the unit mean over the
  selected cameras when there are several) of frames start, start + k, ... of every event.
Without them (the default) the rows are exactly what they were.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from carve.core.config import SegmentConfig
from carve.core.errors import EpisodeError
from carve.ingest.sources.base import Episode, provenance
from carve.storage.schema import make_event_id

ENV_STATE_FEATURE = "observation.environment_state"


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


def selected_cameras(ep: Episode, camera: str | list[str] | None) -> list[str]:
    """The cameras to use: all of the episode's, or the configured subset (names or comma-separated)."""
    if camera is None or camera == "":
        return list(ep.cameras)
    wanted = [c.strip() for c in camera.split(",")] if isinstance(camera, str) else list(camera)
    missing = [c for c in wanted if c not in ep.cameras]
    if missing:
        raise EpisodeError(ep.ref.label, f"unknown camera(s) {missing}; the episode has {ep.cameras}")
    return wanted


def strided_descriptors(ep: Episode, cams: list[str], indices: list[int],
                        decoded: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """(len(indices), D) visual descriptors of the given frames (unit mean over `cams`)."""
    from carve.ingest.visual import image_descriptors

    parts = []
    for cam in cams:
        frames = decoded[cam][indices] if decoded and cam in decoded else ep.frames(cam, indices)
        if len(frames) != len(indices):
            raise EpisodeError(ep.ref.label, f"decoded {len(frames)} of {len(indices)} strided frames from {cam}")
        parts.append(np.asarray(image_descriptors(list(frames)), np.float32))
    if len(parts) == 1:
        return parts[0]
    m = np.mean(parts, axis=0)
    return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _fits(ep: Episode, cam: str, max_bytes: int) -> bool:
    """Every frame of the episode from `cam` fits in `max_bytes` (sized from its first frame)."""
    first = ep.frames(cam, [0])
    return len(first) == 1 and first[0].nbytes * ep.length <= max_bytes


def episode_events(ep: Episode, seg_cfg: SegmentConfig, camera: str | list[str] | None,
                   obs_stride: int = 0, dense_max_bytes: int = 0) -> list[dict[str, Any]]:
    """Segment one loaded episode and build its event rows (keyframes of every selected camera;
    per-step observation columns as the module docstring says).

    With `dense_max_bytes`, a camera whose every frame of the episode fits in that many bytes
    is decoded whole, in one forward pass, and its keyframes taken from it: the same frames (each
    index is still the frame nearest its timestamp), and the pass is left to the reader's recent
    frames (`ingest.video.keep_recent`) for the quality check, which then decodes nothing."""
    from carve.ingest.segment import gripper_track, segment_episode
    from carve.ingest.visual import frame_descriptors

    ref = ep.ref
    if ep.length == 0:
        raise EpisodeError(ref.label, "episode is empty (0 frames)")
    cams = selected_cameras(ep, camera)
    all_frames: dict[str, np.ndarray] = {}
    vis = None
    if seg_cfg.use_visual and cams:
        parts = []
        for cam in cams:
            all_frames[cam] = ep.frames(cam, None)
            if all_frames[cam].shape[0] < ep.length:
                raise EpisodeError(ref.label, f"video of camera {cam} has {all_frames[cam].shape[0]} frames "
                                              f"but the episode has {ep.length}")
            parts.append(frame_descriptors(all_frames[cam][: ep.length]))
        vis = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1) / np.sqrt(len(parts))
    segments = segment_episode(
        ep.state, ep.action, ep.fps, seg_cfg, ep.state_names, ep.action_names, visual_features=vis
    )
    if not segments:
        raise EpisodeError(ref.label, "segmentation produced no events")
    grips = gripper_track(ep.state, ep.action, seg_cfg, ep.state_names, ep.action_names)

    jpegs: dict[tuple[str, int], bytes] = {}
    wanted = sorted({i for s in segments for i in keyframe_indices(s.start, s.end)})
    for cam in cams:
        if cam in all_frames:
            frames = all_frames[cam][wanted]
        elif dense_max_bytes and _fits(ep, cam, dense_max_bytes):
            frames = ep.frames(cam, np.arange(ep.length))[wanted]
        else:
            frames = ep.frames(cam, wanted)
        if len(frames) != len(wanted):
            raise EpisodeError(ref.label, f"decoded {len(frames)} of {len(wanted)} keyframes from camera {cam}")
        for i, fr in zip(wanted, frames, strict=True):
            jpegs[(cam, i)] = encode_jpeg(fr, seg_cfg.keyframe_size, seg_cfg.keyframe_quality)

    env = ep.extras.get(ENV_STATE_FEATURE)
    if env is not None:
        env = np.asarray(env, np.float32).reshape(ep.length, -1)
    obs_vis: dict[int, np.ndarray] = {}
    if obs_stride > 0 and cams:
        idx = sorted({i for s in segments for i in range(s.start, s.end, obs_stride)})
        obs_vis = dict(zip(idx, strided_descriptors(ep, cams, idx, all_frames), strict=True))

    rows = []
    n = len(segments)
    where = provenance(ref, ep.source_id)
    for k, s in enumerate(segments):
        grip = next((grips[a] for a in s.arms if a in grips), next(iter(grips.values()), None))
        rows.append(
            {
                "event_id": make_event_id(ref.episode_id, s.start, s.end),
                "episode_id": ref.episode_id,
                "dataset": ref.dataset,
                "source_uri": ref.source_uri,
                **where,
                "source_start_s": float(ep.timestamps[s.start]) if s.start < len(ep.timestamps) else None,
                "source_end_s": (float(ep.timestamps[s.end - 1]) + 1.0 / float(ep.fps)) if s.end > 0 else None,
                "camera": cams[0] if cams else None,
                "cameras": cams,
                "robot": ep.robot,
                "arms": s.arms,
                "episode_index": ref.episode_index,
                "event_index": k,
                "num_events": n,
                "start_frame": s.start,
                "end_frame": s.end,
                "fps": float(ep.fps),
                "start_reason": s.start_reason,
                "boundary_reason": s.end_reason,
                "task": ep.task,
                "keyframes": [jpegs[(c, i)] for c in cams for i in keyframe_indices(s.start, s.end)],
                "state": ep.state[s.start : s.end].astype(np.float32).tolist(),
                "action": ep.action[s.start : s.end].astype(np.float32).tolist(),
                "state_names": list(ep.state_names),
                "action_names": list(ep.action_names),
                "gripper": grip[s.start : s.end].astype(np.float32).tolist() if grip is not None else [],
            }
        )
        if env is not None:
            rows[-1]["env_state"] = env[s.start : s.end].tolist()
        if obs_vis:
            rows[-1]["obs_stride"] = int(obs_stride)
            rows[-1]["obs_visual"] = [obs_vis[i].tolist() for i in range(s.start, s.end, obs_stride)]
    return rows
