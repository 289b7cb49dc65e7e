"""Hand-built episodes shared by the captioner tests (no tests here): scripted joint/gripper signals."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
from PIL import Image

from carve.storage.schema import events_to_table, make_event_id

HOME = np.zeros(7)


def script_episode(steps: list[tuple[str, int, np.ndarray | None, float | None]], dwell: int = 3, seed: int = 0,
                   grip0: float = 1.0):
    """Signals for a sequence of phases.

    Each step is (phase, moving_frames, arm_target or None (hold still), gripper_target or None).
    The arm moves smoothly to its target (or the gripper ramps to its target) and then holds
    still for `dwell` frames, like a teleoperator. Returns (state T x 8, gripper T, phases).
    """
    rng = np.random.default_rng(seed)
    pose, grip = HOME.copy(), grip0
    rows, grips, phases = [], [], []
    for name, m, target, g_target in steps:
        start = len(rows)
        p0, g0 = pose.copy(), grip
        for i in range(1, m + 1):
            s = i / m
            s = 10 * s**3 - 15 * s**4 + 6 * s**5
            pose = p0 + (target - p0) * s if target is not None else p0
            grip = g0 + (g_target - g0) * s if g_target is not None else g0
            rows.append(np.r_[pose + rng.normal(0, 1e-4, 7), grip])
            grips.append(grip)
        for _ in range(dwell):
            rows.append(np.r_[pose + rng.normal(0, 1e-4, 7), grip])
            grips.append(grip)
        phases.append({"name": name, "start": start, "end": len(rows)})
    return np.asarray(rows, np.float32), np.asarray(grips, np.float32), phases


def pick_place_steps(obj_at: np.ndarray, place_at: np.ndarray) -> list:
    up = np.r_[0, 0.6, 0, 0.2, 0, 0, 0]
    return [
        ("reach", 16, obj_at, None),
        ("grasp", 5, None, 0.0),
        ("lift", 9, obj_at + up, None),
        ("move", 14, place_at + up, None),
        ("place", 9, place_at, None),
        ("release", 5, None, 1.0),
    ]


def pick_place_script(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.5, 1.0, 7), rng.uniform(-1.0, -0.5, 7)
    return [*pick_place_steps(a, b), ("retreat", 12, HOME + rng.normal(0, 0.02, 7), None)]


def two_object_script(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    a, b, c, d = (rng.uniform(0.5, 1.0, 7), rng.uniform(-1.0, -0.5, 7), rng.uniform(0.3, 0.8, 7),
                  rng.uniform(-0.9, -0.4, 7))
    return [*pick_place_steps(a, b), *pick_place_steps(c, d), ("retreat", 12, HOME, None)]


def push_script(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.5, 1.0, 7)
    return [
        ("reach", 16, start, None),
        ("push", 10, start + np.r_[0.3, -0.2, 0, 0.1, 0, 0, 0], None),
        ("retreat", 12, HOME + rng.normal(0, 0.02, 7), None),
    ]


def tiny_jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value % 256, 40, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def event_rows(
    episode_id: str, task: str, state: np.ndarray, gripper: np.ndarray, bounds: list[tuple[int, int]],
    episode_index: int = 0, keyframes: bool = True, start_reasons: list[str] | None = None,
) -> list[dict]:
    """Schema-v1 event rows for frames `bounds` of one hand-built episode."""
    rows = []
    for k, (s, e) in enumerate(bounds):
        rows.append({
            "event_id": make_event_id(episode_id, s, e), "episode_id": episode_id, "dataset": "test",
            "episode_index": episode_index, "event_index": k, "num_events": len(bounds),
            "start_frame": s, "end_frame": e, "fps": 12.0, "task": task,
            "start_reason": (start_reasons[k] if start_reasons else ""), "boundary_reason": "",
            "keyframes": [tiny_jpeg(10 * k + j) for j in range(3)] if keyframes else [],
            "state": state[s:e].tolist(), "action": state[s:e].tolist(), "gripper": gripper[s:e].tolist(),
        })
    return rows


def episode_table(script: list, task: str, episode_id: str = "ep0", episode_index: int = 0,
                  seed: int = 0, grip0: float = 1.0) -> tuple[pa.Table, list[dict]]:
    """A table whose events are exactly the scripted phases, and those phases."""
    state, grip, phases = script_episode(script, seed=seed, grip0=grip0)
    bounds = [(p["start"], p["end"]) for p in phases]
    return events_to_table(event_rows(episode_id, task, state, grip, bounds, episode_index)), phases
