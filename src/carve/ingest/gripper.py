"""Gripper transitions that survive sensor noise: hysteresis in the gripper's own units.

A gripper opening is read in whatever unit the recording uses (metres of finger gap, a 0..1
command, a joint angle). Normalising it to [0, 1] per episode would stretch sensor noise over
the whole band when the gripper hardly moves; instead the signal's own noise floor decides:

* `noise_sigma(g)`: the per-frame noise, a robust (MAD) estimate from the second difference,
  so that steady motion does not count as noise;
* the closed and open levels are the 5th and 95th percentiles, `travel` their distance; a
  gripper whose travel is below `gripper_min_travel_sigma` x noise (or below the absolute
  `gripper_min_travel`, in the recording's unit) never transitions;
* the hysteresis band is `gripper_hysteresis` x travel, but never less than 4 noise sigmas,
  from each level; a new state must hold `gripper_min_hold_s` seconds (and two frames);
* each transition is placed at its onset: the first frame at which the opening moves toward
  its new state, found by walking back while the opening still moves in the transition's
  direction by more than the noise.
"""

from __future__ import annotations

import numpy as np

from carve.core.config import SegmentConfig

GRIPPER_CLOSE = "gripper_close"
GRIPPER_OPEN = "gripper_open"


def noise_sigma(g: np.ndarray) -> float:
    """Per-frame noise of a signal: 1.4826 x MAD of its second difference / sqrt(6)."""
    if len(g) < 4:
        return 0.0
    d2 = np.diff(g, n=2)
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6.0))


def gripper_states(g: np.ndarray, fps: float, cfg: SegmentConfig) -> np.ndarray | None:
    """Binary open (1) / closed (0) per frame, or None for a gripper that never really moves."""
    if len(g) < 2 or not np.all(np.isfinite(g)):
        return None
    lo, hi = np.percentile(g, [5, 95])
    travel = float(hi - lo)
    sigma = noise_sigma(g)
    if travel <= max(cfg.gripper_min_travel, cfg.gripper_min_travel_sigma * sigma, 1e-9):
        return None
    band = max(cfg.gripper_hysteresis * travel, 4.0 * sigma)
    band = min(band, 0.45 * travel)
    close_below, open_above = hi - band, lo + band
    code = np.where(g >= open_above, 1, np.where(g <= close_below, 0, -1))
    # inside both thresholds (a narrow band): the nearer level decides
    mid = (lo + hi) / 2.0
    amb = (g < open_above) & (g > close_below)
    code[amb] = -1
    if code[0] < 0:
        code[0] = 1 if g[0] >= mid else 0
    idx = np.where(code >= 0, np.arange(len(code)), 0)
    np.maximum.accumulate(idx, out=idx)
    state = code[idx]
    hold = max(2, round(cfg.gripper_min_hold_s * fps))  # a one-frame spike is never a transition
    for _ in range(3):  # a run (other than the first) shorter than `hold` reverts to the previous state
        change = np.flatnonzero(np.diff(state)) + 1
        if len(change) == 0:
            break
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(state)]])
        short = np.flatnonzero((ends - starts) < hold)
        short = short[short > 0]
        if len(short) == 0:
            break
        for k in short:
            state[starts[k] : ends[k]] = state[starts[k] - 1]
    return state


def gripper_transitions(g: np.ndarray, fps: float, cfg: SegmentConfig) -> list[tuple[int, str]]:
    """(frame, gripper_close | gripper_open) of each transition, placed at its onset."""
    state = gripper_states(g, fps, cfg)
    if state is None:
        return []
    step_noise = 3.0 * noise_sigma(g)
    out: list[tuple[int, str]] = []
    prev = 0
    for t in np.flatnonzero(np.diff(state)) + 1:
        closing = state[t] == 0
        k = int(t)
        while k > prev + 1:  # back over the frames the opening already moved into
            step = g[k - 2] - g[k - 1] if closing else g[k - 1] - g[k - 2]
            if step <= step_noise:
                break
            k -= 1
        if 0 < k < len(g):
            out.append((k, GRIPPER_CLOSE if closing else GRIPPER_OPEN))
            prev = k
    return out
