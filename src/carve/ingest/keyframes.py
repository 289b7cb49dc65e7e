"""A peer baseline for event boundaries: the keyframe rule of PerAct and RVT.

Owns `perceiver_keyframes(state, action, fps, state_names, action_names)`, the boundaries that
`carve eval-segments --baseline keyframes` scores beside Carve's segmenter. Nothing in the
pipeline uses it; it is the yardstick.

The rule is the keyframe heuristic of James & Davison's ARM (`arm/demo_loading_utils.py`),
used unchanged by PerAct (Shridhar et al., CoRL 2022: `keypoint_discovery` in
`peract/helpers/demo_loading_utils.py`) and RVT (Goyal et al., CoRL 2023, which imports that
function from its vendored PerAct in `rvt/utils/dataset.py`); its bimanual form is PerAct2's
(Grotz et al. 2024, `_keypoint_discovery_bimanual` in `peract_bimanual`). Frame i > 0 is a
keyframe when

* the binary gripper state differs from frame i-1 (any gripper, for several arms), or
* the arm is stopped: every joint velocity is within `stopping_delta` = 0.1 of zero
  (`np.allclose(obs.joint_velocities, 0, atol=0.1)`; for several arms every joint of every
  arm, as PerAct2 requires both arms stopped), no gripper changes over frames i-2..i+1, i is
  not the second-to-last frame, and the stop buffer has run out. A stop keyframe sets the
  buffer to 4 frames and every frame without one counts it down, so a further stop keyframe
  comes at the earliest 5 frames later (a long stop gives one every 5 frames; gripper
  keyframes ignore the buffer), or
* it is the last frame; when the keyframe before the last frame is its neighbour, that one is
  dropped.

Translation to recorded teleoperation, in physical units:

* joint velocities (rad/s) are finite differences of the measured joint angles (the state
  columns `carve.ingest.arms.arm_layouts` assigns to each arm; degrees are converted) times
  the fps, central differences (`np.gradient`), like RLBench's simulator-reported velocities
  at the frame itself. An arm known only by its Cartesian end-effector position is tested in
  m/s with the same 0.1;
* the buffer of 4 frames is taken at RLBench's 20 Hz demonstrations (CoppeliaSim's default
  50 ms step): `buffer_s` = 0.2 s, resolved per episode as round(0.2 x fps) frames;
* RLBench's `gripper_open` is 1 when the gripper's open amount (its opening scaled to [0, 1]
  over its range) exceeds 0.9 (`rlbench/backend/scene.py`). Here the opening is each arm's
  gripper command when the recording has one (oriented so that higher is more open, the same
  signal Carve's segmenter reads), else the measured opening, scaled to [0, 1] over the
  episode's range; a gripper whose signal never changes stays in one state;
* keyframes mark where a motion ends: a keyframe at frame k starts the next segment at k.
  The last frame is the episode's end, not a boundary, and is left out.
"""

from __future__ import annotations

import numpy as np

from carve.core.config import SegmentConfig
from carve.ingest.arms import arm_layouts

STOPPING_DELTA = 0.1  # rad/s, PerAct's `stopping_delta`
BUFFER_S = 0.2  # s: PerAct's stop buffer of 4 frames at RLBench's 20 Hz
OPEN_THRESHOLD = 0.9  # RLBench: gripper_open = open_amount > 0.9


def joint_velocities(state: np.ndarray, action: np.ndarray | None, fps: float,
                     state_names: list[str] | None, action_names: list[str] | None,
                     cfg: SegmentConfig | None = None) -> np.ndarray:
    """(T, J) velocities of every arm's joints (rad/s; m/s for a Cartesian-only arm)."""
    state = np.asarray(state, dtype=np.float64)
    act = None if action is None else np.asarray(action, dtype=np.float64)
    cols = []
    for lay in arm_layouts(state_names, action_names, state, act, cfg or SegmentConfig()):
        q = lay.motion_signal(state, act)
        if q.shape[1] and q.shape[0] > 1:
            cols.append(np.gradient(q, axis=0) * float(fps))
    return np.concatenate(cols, axis=1) if cols else np.zeros((state.shape[0], 0))


def gripper_open(state: np.ndarray, action: np.ndarray | None, state_names: list[str] | None,
                 action_names: list[str] | None, cfg: SegmentConfig | None = None,
                 open_threshold: float = OPEN_THRESHOLD) -> np.ndarray:
    """(G, T) bool: each gripper open (its open amount above `open_threshold`) per frame."""
    state = np.asarray(state, dtype=np.float64)
    act = None if action is None else np.asarray(action, dtype=np.float64)
    rows = []
    for lay in arm_layouts(state_names, action_names, state, act, cfg or SegmentConfig()):
        g = lay.gripper_command(state, act)
        if len(g) != state.shape[0] or not np.all(np.isfinite(g)):
            continue
        lo, hi = float(np.min(g)), float(np.max(g))
        if hi - lo <= 1e-12:
            rows.append(np.ones(len(g), dtype=bool))
            continue
        rows.append((g - lo) / (hi - lo) > open_threshold)
    return np.asarray(rows, dtype=bool).reshape(len(rows), state.shape[0])


def keypoint_discovery(velocities: np.ndarray, grippers: np.ndarray, buffer: int = 4,
                       stopping_delta: float = STOPPING_DELTA) -> list[int]:
    """PerAct's `keypoint_discovery` (heuristic) on arrays: `velocities` (T, J), `grippers`
    (G, T) bool open. Returns the keyframes as PerAct does, the last frame included."""
    n = velocities.shape[0]
    small = np.all(np.abs(velocities) <= stopping_delta, axis=1) if velocities.shape[1] else np.ones(n, bool)

    def same(a: int, b: int) -> bool:
        return bool(np.all(grippers[:, max(a, 0)] == grippers[:, max(b, 0)]))

    keypoints: list[int] = []
    stopped_buffer = 0
    for i in range(n):
        next_is_not_final = i == n - 2
        no_change = i < n - 2 and same(i, i + 1) and same(i, i - 1) and same(i - 2, i - 1)
        stopped = stopped_buffer <= 0 and bool(small[i]) and not next_is_not_final and no_change
        stopped_buffer = buffer if stopped else stopped_buffer - 1
        last = i == n - 1
        changed = i > 0 and not same(i, i - 1)
        if i != 0 and (changed or last or stopped):
            keypoints.append(i)
    if len(keypoints) > 1 and keypoints[-1] - 1 == keypoints[-2]:
        keypoints.pop(-2)
    return keypoints


def perceiver_keyframes(
    state: np.ndarray,
    action: np.ndarray | None,
    fps: float,
    state_names: list[str] | None,
    action_names: list[str] | None,
    *,
    stopping_delta: float = STOPPING_DELTA,
    buffer_s: float = BUFFER_S,
    open_threshold: float = OPEN_THRESHOLD,
    cfg: SegmentConfig | None = None,
) -> list[int]:
    """Internal event boundaries (0 < b < T, sorted) from the PerAct/RVT keyframe rule (see the
    module doc). `cfg` only tells `arm_layouts` how to find gripper columns."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    state = np.asarray(state, dtype=np.float64)
    if state.ndim == 1:
        state = state[:, None]
    n = state.shape[0]
    act = None if action is None else np.asarray(action, dtype=np.float64)
    if act is not None and (act.ndim != 2 or act.shape[0] != n):
        act = None
    if n < 2:
        return []
    vel = joint_velocities(state, act, fps, state_names, action_names, cfg)
    grip = gripper_open(state, act, state_names, action_names, cfg, open_threshold)
    buffer = max(1, round(buffer_s * fps))
    keys = keypoint_discovery(vel, grip, buffer, stopping_delta)
    return sorted({k for k in keys if 0 < k < n - 1})
