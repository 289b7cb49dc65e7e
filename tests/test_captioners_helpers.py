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


# ----------------------------------------------------------------------- blended / two-arm episodes
def _min_jerk(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _min_jerk_speed(s: np.ndarray, dur: float) -> np.ndarray:
    inside = (s > 0) & (s < 1)
    return np.where(inside, (30 * s**2 - 60 * s**3 + 30 * s**4) / dur, 0.0)


class _ArmScript:
    """One arm's commands in seconds: minimum-jerk sub-movements that may overlap (blended), gripper ramps."""

    def __init__(self, home: np.ndarray, grip0: float = 1.0):
        self.home, self.grip0 = home.astype(float), grip0
        self.moves: list[tuple[float, float, np.ndarray]] = []  # (t0, duration, displacement)
        self.grips: list[tuple[float, float, float]] = []  # (t0, duration, target opening)
        self.phases: list[tuple[str, float]] = []  # (name, start time)

    def pose_at(self, t: float) -> np.ndarray:
        return self.home + sum((d * float(_min_jerk(np.array((t - t0) / dur))) for t0, dur, d in self.moves),
                               np.zeros_like(self.home))

    def move(self, name: str, t0: float, dur: float, delta: np.ndarray) -> float:
        if self.moves:  # where two motions overlap, the new phase starts once the new one is the faster
            pt0, pdur, pd = self.moves[-1]
            ts = np.linspace(t0, t0 + dur, 400)
            v_new = _min_jerk_speed((ts - t0) / dur, dur) * np.linalg.norm(delta)
            v_old = _min_jerk_speed((ts - pt0) / pdur, pdur) * np.linalg.norm(pd)
            start = float(ts[np.argmax(v_new > v_old)]) if t0 < pt0 + pdur else t0
        else:
            start = t0
        self.moves.append((t0, dur, np.asarray(delta, float)))
        self.phases.append((name, start))
        return t0 + dur

    def grip(self, name: str, t0: float, dur: float, target: float) -> float:
        self.grips.append((t0, dur, target))
        self.phases.append((name, t0))
        return t0 + dur

    def sample(self, fps: float, n: int, rng: np.random.Generator, tremor: float) -> tuple[np.ndarray, np.ndarray]:
        ts = np.arange(n) / fps
        pose = np.stack([self.pose_at(t) for t in ts]) + rng.normal(0, tremor, (n, len(self.home)))
        g = np.full(n, self.grip0)
        for t0, dur, target in self.grips:
            s = _min_jerk((ts - t0) / dur)
            prev = g[np.searchsorted(ts, t0) - 1] if t0 > 0 else self.grip0
            g = np.where(ts >= t0, prev + (target - prev) * s, g)
        return pose, g

    def phase_frames(self, fps: float, n: int, arm: str, obj: str, until: int | None = None) -> list[dict]:
        starts = [int(np.ceil(t * fps - 1e-9)) for _, t in self.phases]
        ends = [*starts[1:], until if until is not None else n]
        return [{"name": name, "start": s, "end": e, "arm": arm, "object": None if name == "retreat" else obj}
                for (name, _), s, e in zip(self.phases, starts, ends, strict=True)]


def blended_pick_place(script: _ArmScript, t: float, obj_at: np.ndarray, place_at: np.ndarray,
                       up: np.ndarray, slow: float = 1.0) -> float:
    """reach (stop) grasp (stop) lift -> move -> place blended, release, retreat leaving early; returns the end.

    `slow` scales every duration (the operator's speed)."""
    start = script.home + sum((d for _, _, d in script.moves), np.zeros_like(script.home))
    t = script.move("reach", t, 1.2 * slow, obj_at - start) + 0.2 * slow
    t = script.grip("grasp", t, 0.3, 0.0) + 0.25 * slow
    t_lift = t
    script.move("lift", t_lift, 0.8 * slow, up)
    t_move = t_lift + 0.55 * 0.8 * slow  # the next motion starts once the lift has slowed past its peak
    script.move("move", t_move, 1.2 * slow, place_at - obj_at)
    t_place = t_move + 0.6 * 1.2 * slow
    t = script.move("place", t_place, 0.8 * slow, -up) + 0.2 * slow
    t = script.grip("release", t, 0.3, 1.0)
    return script.move("retreat", t - 0.15, 1.0 * slow, script.home - place_at)  # leaves before the fingers open


def blended_episode(seed: int = 0, fps: float = 30.0, tremor: float = 2e-3):
    """One arm, blended: (state T x 8, gripper T, ground-truth phases with objects)."""
    rng = np.random.default_rng(seed)
    arm = _ArmScript(HOME)
    a, b = rng.uniform(0.5, 1.0, 7), rng.uniform(-1.0, -0.5, 7)
    end = blended_pick_place(arm, 0.3, a, b, np.r_[0, 0.6, 0, 0.4, 0, 0, 0], slow=float(rng.uniform(0.8, 1.4)))
    n = int((end + 0.5) * fps)
    pose, g = arm.sample(fps, n, rng, tremor)
    g = g + rng.normal(0, 0.005, n)
    return np.c_[pose, g].astype(np.float32), g.astype(np.float32), arm.phase_frames(fps, n, "arm", "red cube")


def two_arm_episode(seed: int = 0, fps: float = 30.0, tremor: float = 2e-3):
    """Two arms, ALOHA-style names; the right arm starts while the left one is placing.

    Returns (state T x 16, names, the left gripper T, ground-truth phases: left "red cube", right
    "blue cylinder"; the left retreat lasts to the episode's end, the right arm has no phase before
    its reach)."""
    rng = np.random.default_rng(seed)
    left, right = _ArmScript(HOME), _ArmScript(HOME)
    up = np.r_[0, 0.6, 0, 0.4, 0, 0, 0]
    slow = float(rng.uniform(0.8, 1.4))
    blended_pick_place(left, 0.3, rng.uniform(0.5, 1.0, 7), rng.uniform(-1.0, -0.5, 7), up, slow)
    t_right = next(t for name, t in left.phases if name == "place") + float(rng.uniform(0.2, 0.8))
    end = blended_pick_place(right, t_right, rng.uniform(-1.0, -0.5, 7), rng.uniform(0.5, 1.0, 7), up, slow)
    n = int((end + 0.5) * fps)
    lp, lg = left.sample(fps, n, rng, tremor)
    rp, rg = right.sample(fps, n, rng, tremor)
    state = np.c_[lp, lg, rp, rg].astype(np.float32)
    names = [*(f"left_joint_{i}" for i in range(7)), "left_gripper", *(f"right_joint_{i}" for i in range(7)),
             "right_gripper"]
    phases = left.phase_frames(fps, n, "left", "red cube") + right.phase_frames(fps, n, "right", "blue cylinder")
    return state, names, lg.astype(np.float32), phases


def segmented_rows(episode_id: str, task: str, state: np.ndarray, names: list[str] | None, fps: float,
                   episode_index: int = 0) -> list[dict]:
    """Event rows of a hand-built episode cut by the real segmenter (names: None for unnamed columns)."""
    from carve.core.config import SegmentConfig
    from carve.ingest.segment import gripper_track, segment_episode

    cols = names or [*(f"joint_{i}" for i in range(state.shape[1] - 1)), "gripper_opening"]
    segs = segment_episode(state, state, fps, SegmentConfig(), cols, cols)
    grips = gripper_track(state, state, SegmentConfig(), cols, cols)
    rows = []
    for k, s in enumerate(segs):
        grip = next((grips[a] for a in s.arms if a in grips), next(iter(grips.values())))
        rows.append({
            "event_id": make_event_id(episode_id, s.start, s.end), "episode_id": episode_id, "dataset": "test",
            "episode_index": episode_index, "event_index": k, "num_events": len(segs), "start_frame": s.start,
            "end_frame": s.end, "fps": fps, "task": task, "start_reason": s.start_reason,
            "boundary_reason": s.end_reason, "arms": s.arms, "keyframes": [],
            "state": state[s.start : s.end].tolist(), "action": state[s.start : s.end].tolist(),
            "state_names": cols if names else None, "action_names": cols if names else None,
            "gripper": grip[s.start : s.end].tolist(),
        })
    return rows
