"""Defects in one episode's signals: values, timestamps, jumps, idling, the gripper, offsets.

Every arm is read the way the segmenter reads it (`ingest.arms`: joints in radians or degrees,
end-effector positions in metres, grippers in their own units), so the thresholds of
`CheckConfig` are physical: rad/s, m/s, seconds. Each function returns `Defect`s with spans in
the episode's own frame indices (end inclusive).
"""

from __future__ import annotations

import numpy as np

from carve.core.config import CheckConfig, SegmentConfig
from carve.ingest.arms import ArmLayout, arm_layouts
from carve.ingest.gripper import gripper_transitions
from carve.ingest.kinematics import move_speed, smooth, speed, thresholds
from carve.quality.defects import Defect, runs


def nonfinite(state: np.ndarray, action: np.ndarray) -> list[Defect]:
    """`nan`: each run of frames whose state or action holds NaN/Inf."""
    out = []
    for name, arr in (("state", state), ("action", action)):
        if arr.size == 0:
            continue
        bad = ~np.isfinite(arr)
        for a, b in runs(bad.any(axis=1)):
            dims = sorted({int(d) for d in np.flatnonzero(bad[a : b + 1].any(axis=0))})
            out.append(Defect("nan", a, b, f"{name} dims {dims} non-finite in frames {a}..{b}"))
    return out


def timestamps(ts: np.ndarray, fps: float, cfg: CheckConfig) -> list[Defect]:
    """`timestamp_gap` where the step reaches `gap_periods` frame periods (frames missing), and
    `fps_mismatch` when the median step says another frame rate than the declared one."""
    out: list[Defect] = []
    ts = np.asarray(ts, dtype=np.float64)
    if len(ts) < 2 or fps <= 0 or not np.all(np.isfinite(ts)):
        return out
    step = np.diff(ts)
    for k in np.flatnonzero(step >= cfg.gap_periods / fps):
        missing = round(step[k] * fps) - 1
        out.append(Defect("timestamp_gap", int(k), int(k) + 1,
                          f"timestamp jumps {step[k]:.3f} s from frame {k} to {k + 1} (~{missing} frames missing)"))
    for k in np.flatnonzero(step <= 0):
        out.append(Defect("timestamp_gap", int(k), int(k) + 1, f"timestamp does not increase at frame {k + 1}"))
    measured = 1.0 / float(np.median(step)) if np.median(step) > 0 else 0.0
    if measured and abs(measured - fps) > cfg.fps_tolerance * fps:
        out.append(Defect("fps_mismatch", 0, len(ts) - 1,
                          f"timestamps run at {measured:.2f} fps, the dataset declares {fps:g} fps"))
    return out


class Motion:
    """The arms of one episode in physical units: per-arm speed, gripper, and whether the robot is still."""

    def __init__(self, state: np.ndarray, action: np.ndarray, fps: float, seg: SegmentConfig,
                 state_names: list[str], action_names: list[str]):
        self.fps = fps
        self.seg = seg
        self.state = np.nan_to_num(np.asarray(state, dtype=np.float64))
        act = np.asarray(action, dtype=np.float64) if action is not None and len(action) else None
        self.action = np.nan_to_num(act) if act is not None and act.shape[0] == self.state.shape[0] else None
        self.layouts: list[ArmLayout] = arm_layouts(state_names, action_names, self.state, self.action, seg)
        n = self.state.shape[0]
        self.speeds, self.raw_speeds, self.grippers, self.moving_speed, self.still_speed = [], [], [], [], []
        for lay in self.layouts:
            x = lay.motion_signal(self.state, self.action)
            self.speeds.append(speed(smooth(x, fps, seg.smooth_s), fps) if x.shape[1] else np.zeros(n))
            self.raw_speeds.append(speed(x, fps) if x.shape[1] else np.zeros(n))
            self.grippers.append(lay.gripper_command(self.state, self.action))
            self.still_speed.append(thresholds(lay.kind, seg)[0])
            self.moving_speed.append(move_speed(lay.kind, seg))

    @property
    def n(self) -> int:
        return int(self.state.shape[0])

    def still(self) -> np.ndarray:
        """Per frame: every arm below its pause speed and no gripper in motion."""
        out = np.ones(self.n, dtype=bool)
        for sp, lo in zip(self.speeds, self.still_speed, strict=True):
            out &= sp < lo
        for g in self.grippers:
            if len(g) == self.n and np.ptp(g) > 0:
                gv = np.abs(np.gradient(smooth(g[:, None], self.fps, self.seg.smooth_s)[:, 0])) * self.fps
                out &= gv < 0.5 * float(np.ptp(g))  # less than half its travel per second
        return out

    def moving(self) -> np.ndarray:
        """Per frame: some arm at its moving speed."""
        out = np.zeros(self.n, dtype=bool)
        for sp, hi in zip(self.speeds, self.moving_speed, strict=True):
            out |= sp >= hi
        return out


def jumps(m: Motion, cfg: CheckConfig) -> list[Defect]:
    """`state_jump`: a motion coordinate that changes faster in one frame than any arm can move."""
    out = []
    for lay in m.layouts:
        if lay.motion_in_action or not lay.motion:
            continue
        x = lay.motion_signal(m.state, None)
        limit = (cfg.jump_speed_m_s if lay.kind == "cartesian" else cfg.jump_speed_rad_s) / m.fps
        step = np.abs(np.diff(x, axis=0))
        bad = (step > limit).any(axis=1)
        unit = "m" if lay.kind == "cartesian" else "rad"
        for a, b in runs(bad):
            size = float(step[a : b + 1].max())
            out.append(Defect("state_jump", a, b + 1, f"{lay.name}: a coordinate jumps {size:.3f} {unit} in one frame "
                              f"(more than {limit:.3f} {unit} at {m.fps:g} fps)"))
    return out


def idle(m: Motion, cfg: CheckConfig) -> list[Defect]:
    """`idle_head` / `idle_tail`: the robot still for at least `idle_min_s` from the start / to the end."""
    still = m.still()
    need = max(1, round(cfg.idle_min_s * m.fps))
    if m.n == 0 or still.all() or not m.moving().any():
        return []  # a robot that never moves is not idling at its ends: nothing to trim against
    out = []
    head = int(np.argmin(still))  # the first frame that is not still
    if still[0] and head >= need:
        out.append(Defect("idle_head", 0, head - 1, f"still for the first {head / m.fps:.2f} s"))
    tail = int(np.argmin(still[::-1]))
    if still[-1] and tail >= need:
        out.append(Defect("idle_tail", m.n - tail, m.n - 1, f"still for the last {tail / m.fps:.2f} s"))
    return out


def chatter(m: Motion, cfg: CheckConfig) -> list[Defect]:
    """`gripper_chatter`: `chatter_transitions` open/close transitions within `chatter_window_s`,
    each within `chatter_window_s / (chatter_transitions - 1)` of the previous one.
    A transition is a crossing of the gripper's hysteresis band (`segment.gripper_hysteresis` of
    its 5th-95th percentile travel at each end), counted without the segmenter's debounce and
    noise gate (a chattering gripper is its own noise)."""
    out = []
    window = cfg.chatter_window_s * m.fps
    for lay, g in zip(m.layouts, m.grippers, strict=True):
        if len(g) != m.n:
            continue
        t = _crossings(np.asarray(g, dtype=np.float64), m.seg.gripper_hysteresis)
        k = cfg.chatter_transitions
        gap = window / (k - 1)  # a burst: transitions each within this of the previous one
        spans = [(t[i], t[i + k - 1]) for i in range(len(t) - k + 1)
                 if t[i + k - 1] - t[i] <= window and all(t[j + 1] - t[j] <= gap for j in range(i, i + k - 1))]
        for a, b in _merge(spans):
            n_tr = sum(a <= f <= b for f in t)
            out.append(Defect("gripper_chatter", a, b, f"{lay.name}: the gripper switches {n_tr} times in "
                              f"{(b - a) / m.fps:.2f} s"))
    return out


def _crossings(g: np.ndarray, band: float) -> list[int]:
    """Frames where `g` crosses from one end of its travel to the other (hysteresis `band`)."""
    lo, hi = np.percentile(g, [5, 95])
    travel = float(hi - lo)
    if travel <= 1e-9:
        return []
    state, out = None, []
    for i, v in enumerate(g):
        now = 1 if v >= hi - band * travel else 0 if v <= lo + band * travel else state
        if state is not None and now is not None and now != state:
            out.append(i)
        state = now if now is not None else state
    return out


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def offset(m: Motion, state_names: list[str], action_names: list[str], cfg: CheckConfig) -> list[Defect]:
    """`action_state_offset`: position commands that sit a constant distance from the measured
    positions while the arm moves slowly (below half its moving speed, where a follower's lag is
    negligible): a calibration offset between leader and follower. Only where the action names
    the state's own coordinates (absolute position commands)."""
    if m.action is None or not state_names or list(state_names) != list(action_names):
        return []
    out = []
    for lay, sp, fast in zip(m.layouts, m.speeds, m.moving_speed, strict=True):
        if lay.motion_in_action or not lay.motion:
            continue
        slow = sp < 0.5 * fast
        if slow.sum() < max(3, round(0.5 * m.fps)):
            continue
        xs = lay.motion_signal(m.state, None)[slow]
        xa = np.asarray(m.action, dtype=np.float64)[:, lay.motion][slow]
        if lay.degrees:
            xa = np.deg2rad(xa)
        d = xa - xs
        med = np.median(d, axis=0)
        spread = np.median(np.abs(d - med), axis=0) * 1.4826
        limit = cfg.offset_m if lay.kind == "cartesian" else cfg.offset_rad
        bad = (np.abs(med) > limit) & (spread < 0.5 * np.abs(med))
        if bad.any():
            i = int(np.argmax(np.abs(med) * bad))
            unit = "m" if lay.kind == "cartesian" else "rad"
            out.append(Defect("action_state_offset", 0, m.n - 1,
                              f"{lay.name}: commanded minus measured is {med[i]:+.3f} {unit} on coordinate "
                              f"{lay.motion[i]} while it moves slowly (spread {spread[i]:.3f})"))
    return out


def truncated(m: Motion, cfg: CheckConfig) -> list[Defect]:
    """`truncated`: some arm still at its moving speed over the last `truncated_window_s`, and at
    the last frame still at `truncated_peak_fraction` of its fastest over the last second: cut off
    in full motion, not slowing to a stop."""
    w = max(2, round(cfg.truncated_window_s * m.fps))
    if m.n <= w:
        return []
    for sp, hi in zip(m.raw_speeds, m.moving_speed, strict=True):  # unsmoothed: smoothing slows the last frames
        peak = float(np.max(sp[-max(w, round(m.fps)) :]))
        if float(np.min(sp[-w:])) >= hi and float(sp[-1]) >= cfg.truncated_peak_fraction * peak:
            return [Defect("truncated", m.n - w, m.n - 1,
                           f"the arm still moves at {float(sp[-1]):.2f} units/s at the last frame")]
    return []


def missed_grasps(m: Motion, state_names: list[str], action_names: list[str], cfg: CheckConfig) -> list[Defect]:
    """`missed_grasp`: after a close, the measured gripper follows its command all the way shut
    (within `missed_grasp_fraction` of its travel): nothing between the fingers stops it. Needs
    the gripper both measured and commanded under one name (a position command in the state's
    units); otherwise the check is skipped."""
    if m.action is None or not state_names or list(state_names) != list(action_names):
        return []
    out = []
    for lay in m.layouts:
        if lay.gripper is None or lay.gripper_action is None:
            continue
        meas, cmd = m.state[:, lay.gripper], m.action[:, lay.gripper_action]
        lo, hi = np.percentile(meas, [1, 99])
        travel = float(hi - lo)
        if travel <= 1e-9:
            continue
        trans = gripper_transitions(meas, m.fps, m.seg)
        for i, (t, kind) in enumerate(trans):
            if kind != "gripper_close":
                continue
            end = trans[i + 1][0] if i + 1 < len(trans) else m.n
            settle = min(end, t + max(1, round(0.3 * m.fps)))
            if end - settle < 2:
                continue
            gap = float(np.median(meas[settle:end] - cmd[settle:end])) / travel
            if abs(gap) <= cfg.missed_grasp_fraction:
                out.append(Defect("missed_grasp", t, end - 1, f"{lay.name}: the gripper closes onto its command "
                                  f"({gap:+.0%} of its travel apart): nothing in it"))
    return out
