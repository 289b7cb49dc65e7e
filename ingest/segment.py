"""Event segmentation: split one episode into variable-length events at semantic joints.

Owns `Segment`, `find_gripper_dim`, `gripper_opening` and `segment_episode` (called by
`ingest/events.py`). Everything is numpy over the episode's signals; it costs a small
fraction of decoding the episode's video.

Boundary candidates, each with the reason recorded on the events it separates
(`storage.schema.BOUNDARY_REASONS`):

* `gripper_close` / `gripper_open`: the gripper opening (normalised to [0, 1] over the
  episode) crosses the hysteresis band 0.5 -/+ `gripper_hysteresis`; a new state must hold
  `gripper_min_hold_frames` frames (debounce). The boundary is placed at the *onset* of the
  transition: the last frame before the fingers started moving.
* `pause`: the arm's speed (norm of the per-frame change of the non-gripper state) stays
  below `pause_speed` x the episode's 95th-percentile speed for at least `pause_min_frames`
  frames. The boundary is placed where motion resumes (the onset of the next movement);
  an idle stretch at the very start or end of an episode is not a boundary.
* `visual` (only with `use_visual`): peaks of a windowed change score (`visual_change_score`)
  over the per-frame image descriptors the caller passes as `visual_features` (Carve's one
  image descriptor: `ingest.visual.frame_descriptors` of the episode's frames, unit rows)
  above `visual_threshold`.

Candidates are accepted in priority order (gripper, then pause, then visual) unless an
accepted boundary lies within `refractory_frames`. Segments shorter than `min_len_frames`
are merged into a neighbour by dropping their weaker boundary; segments longer than
`max_len_frames` are split evenly (`max_len`). The segments tile [0, T) exactly.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from carve.core.config import SegmentConfig

EPISODE_START = "episode_start"
EPISODE_END = "episode_end"
GRIPPER_CLOSE = "gripper_close"
GRIPPER_OPEN = "gripper_open"
PAUSE = "pause"
VISUAL = "visual"
MAX_LEN = "max_len"
_PRIORITY = {GRIPPER_CLOSE: 3, GRIPPER_OPEN: 3, PAUSE: 2, VISUAL: 1, MAX_LEN: 0}
_ONSET_EPS = 0.01  # normalised gripper change per frame that counts as "moving"


@dataclass
class Segment:
    """Frames [start, end) of one event and why it starts and ends."""

    start: int
    end: int
    start_reason: str
    end_reason: str

    @property
    def length(self) -> int:
        return self.end - self.start


# --------------------------------------------------------------------------------------------
# Gripper


def find_gripper_dim(state_names: list[str] | None, cfg: SegmentConfig) -> int | None:
    """The state column holding the gripper: `cfg.gripper_dim`, else the first name matching
    `cfg.gripper_name_pattern` (case-insensitive), else None."""
    if cfg.gripper_dim is not None:
        return int(cfg.gripper_dim)
    if not state_names:
        return None
    pat = re.compile(cfg.gripper_name_pattern, re.IGNORECASE)
    for i, name in enumerate(state_names):
        if pat.search(str(name)):
            return i
    return None


def gripper_opening(state: np.ndarray, gdim: int | None) -> np.ndarray:
    """The gripper opening per frame normalised to [0, 1] over the episode (1 = widest).

    Empty when there is no gripper column. A gripper that never moves (range below 1e-6 or
    below 2% of its magnitude) maps to 1.0 when its value is positive, else 0.0.
    """
    if gdim is None or state.ndim != 2 or state.shape[0] == 0:
        return np.zeros((0,), dtype=np.float32)
    if not -state.shape[1] <= gdim < state.shape[1]:
        raise ValueError(f"gripper dim {gdim} is outside the state's {state.shape[1]} columns")
    g = state[:, gdim].astype(np.float64)
    lo, hi = float(np.min(g)), float(np.max(g))
    rng = hi - lo
    if rng <= max(1e-6, 0.02 * max(abs(lo), abs(hi))):
        return np.full(g.shape, 1.0 if hi > 1e-6 else 0.0, dtype=np.float32)
    return ((g - lo) / rng).astype(np.float32)


def _debounced_states(g: np.ndarray, hysteresis: float, hold: int) -> np.ndarray:
    """Binary open(1)/closed(0) state per frame with hysteresis and a minimum hold."""
    lo, hi = 0.5 - hysteresis, 0.5 + hysteresis
    code = np.where(g >= hi, 1, np.where(g <= lo, 0, -1))
    if code[0] < 0:
        code[0] = 1 if g[0] >= 0.5 else 0
    idx = np.where(code >= 0, np.arange(len(code)), 0)
    np.maximum.accumulate(idx, out=idx)
    state = code[idx]  # forward-fill the last definite state through the band
    # debounce: a run (other than the first) shorter than `hold` reverts to the previous state
    for _ in range(3):
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


def gripper_boundaries(g: np.ndarray, cfg: SegmentConfig) -> list[tuple[int, str]]:
    """(frame, reason) of each debounced gripper transition, placed at its onset."""
    if len(g) < 2:
        return []
    state = _debounced_states(g, cfg.gripper_hysteresis, cfg.gripper_min_hold_frames)
    out = []
    prev_b = 0
    for t in np.flatnonzero(np.diff(state)) + 1:
        closing = state[t] == 0
        k = int(t)
        # walk back over frames where the opening was already moving in the transition direction
        while k > prev_b + 1:
            step = g[k - 1] - g[k] if closing else g[k] - g[k - 1]
            if step <= _ONSET_EPS:
                break
            k -= 1
        if 0 < k < len(g):
            out.append((k, GRIPPER_CLOSE if closing else GRIPPER_OPEN))
            prev_b = k
    return out


# --------------------------------------------------------------------------------------------
# Pauses


def arm_speed(state: np.ndarray, gdim: int | None) -> np.ndarray:
    """Per-frame speed of the non-gripper state: ||x[t+1] - x[t]|| (last frame repeats)."""
    x = state.astype(np.float64)
    if gdim is not None and x.shape[1] > 1:
        x = np.delete(x, gdim % x.shape[1], axis=1)
    if x.shape[0] < 2:
        return np.zeros(x.shape[0])
    sp = np.linalg.norm(np.diff(x, axis=0), axis=1)
    return np.concatenate([sp, sp[-1:]])


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the True runs of a boolean array."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def pause_boundaries(speed: np.ndarray, cfg: SegmentConfig) -> list[tuple[int, str]]:
    """(frame, "pause") where motion resumes after each pause inside the episode."""
    n = len(speed)
    if n < 3:
        return []
    scale = float(np.percentile(speed, 95))
    if scale <= 0:
        return []
    thr = cfg.pause_speed * scale
    starts, ends = _runs(speed < thr)
    keep = ((ends - starts) >= cfg.pause_min_frames) & (starts > 0) & (ends < n)
    out = []
    for a, e in zip(starts[keep], ends[keep], strict=True):
        # the still arm's jitter level inside this pause (robust: median + 3 MAD)
        inside = speed[a:e]
        med = float(np.median(inside))
        noise = min(med + 3.0 * float(np.median(np.abs(inside - med))), 0.5 * thr)
        k = int(e)
        while k > a + 1 and speed[k - 1] > noise:  # back to where the arm actually started moving
            k -= 1
        out.append((k, PAUSE))
    return out


# --------------------------------------------------------------------------------------------
# Visual change points


def visual_change_score(feats: np.ndarray, window: int = 3) -> np.ndarray:
    """Per-frame change score in [0, ~1]: distance between the mean features of the `window`
    frames before t and the `window` frames from t on."""
    t = feats.shape[0]
    if t < 2:
        return np.zeros(t)
    c = np.concatenate([np.zeros((1, feats.shape[1])), np.cumsum(feats.astype(np.float64), axis=0)])
    idx = np.arange(t)
    lo = np.maximum(idx - window, 0)
    hi = np.minimum(idx + window, t)
    before = (c[idx] - c[lo]) / np.maximum(idx - lo, 1)[:, None]
    after = (c[hi] - c[idx]) / np.maximum(hi - idx, 1)[:, None]
    score = np.linalg.norm(after - before, axis=1) / 2.0
    score[0] = 0.0
    return score


def visual_boundaries(feats: np.ndarray, cfg: SegmentConfig) -> list[tuple[int, str]]:
    score = visual_change_score(feats)
    if len(score) < 3:
        return []
    peak = (score[1:-1] >= score[:-2]) & (score[1:-1] >= score[2:]) & (score[1:-1] > cfg.visual_threshold)
    return [(int(i) + 1, VISUAL) for i in np.flatnonzero(peak)]


# --------------------------------------------------------------------------------------------
# Assembly


def _accept(cands: list[tuple[int, str]], n: int, refractory: int) -> list[tuple[int, str]]:
    """Accept candidates by priority (then time) unless one is already within `refractory`."""
    order = sorted(cands, key=lambda c: (-_PRIORITY[c[1]], c[0]))
    taken: list[tuple[int, str]] = []
    for t, r in order:
        if not 0 < t < n:
            continue
        if any(abs(t - u) < max(refractory, 1) for u, _ in taken):
            continue
        taken.append((t, r))
    return sorted(taken)


def _merge_short(bounds: list[tuple[int, str]], n: int, min_len: int) -> list[tuple[int, str]]:
    """Drop boundaries until no segment is shorter than `min_len` (weaker boundary first)."""
    b = list(bounds)
    while b:
        edges = [0, *(t for t, _ in b), n]
        lens = np.diff(edges)
        short = np.flatnonzero(lens < min_len)
        if len(short) == 0:
            break
        i = int(short[np.argmin(lens[short])])  # the shortest segment, [edges[i], edges[i+1])
        # candidate boundaries to drop: b[i-1] (its start) and b[i] (its end), when they exist
        options = [j for j in (i - 1, i) if 0 <= j < len(b)]
        # drop the lower-priority boundary; on a tie the one whose merge gives the shorter segment
        costs = [(_PRIORITY[b[j][1]], int(lens[j] + lens[j + 1])) for j in options]
        b.pop(options[costs.index(min(costs))])
    return b


def _split_long(bounds: list[tuple[int, str]], n: int, max_len: int) -> list[tuple[int, str]]:
    edges = [0, *(t for t, _ in bounds), n]
    out = list(bounds)
    for a, e in itertools.pairwise(edges):
        length = e - a
        if length > max_len:
            parts = int(np.ceil(length / max_len))
            out.extend((a + (length * k) // parts, MAX_LEN) for k in range(1, parts))
    return sorted(out)


def segment_episode(
    state: np.ndarray,
    action: np.ndarray,
    fps: float,
    cfg: SegmentConfig,
    state_names: list[str] | None,
    action_names: list[str] | None,
    visual_features: np.ndarray | None = None,
) -> list[Segment]:
    """Segments tiling [0, T) of one episode (see the module docstring for the rules).

    `action` is used for motion when the state has no column besides the gripper. `fps` is
    accepted for callers that express thresholds in seconds; the defaults are in frames.
    """
    state = np.asarray(state)
    n = int(state.shape[0])
    if n == 0:
        return []
    if state.ndim == 1:
        state = state[:, None]
    gdim = find_gripper_dim(state_names, cfg)
    if gdim is not None and not -state.shape[1] <= gdim < state.shape[1]:
        gdim = None  # the pattern matched an action-only name or the config is for another robot
    cands: list[tuple[int, str]] = []
    g = gripper_opening(state, gdim)
    if len(g):
        cands.extend(gripper_boundaries(g, cfg))
    if cfg.use_pauses:
        motion = state
        motion_gdim = gdim
        if state.shape[1] - (gdim is not None) == 0 and action is not None and np.asarray(action).ndim == 2:
            motion, motion_gdim = np.asarray(action), None
        cands.extend(pause_boundaries(arm_speed(motion, motion_gdim), cfg))
    if cfg.use_visual and visual_features is not None and len(visual_features) == n:
        cands.extend(visual_boundaries(np.asarray(visual_features), cfg))
    bounds = _accept(cands, n, cfg.refractory_frames)
    bounds = _merge_short(bounds, n, cfg.min_len_frames)
    bounds = _split_long(bounds, n, cfg.max_len_frames)
    edges = [0, *(t for t, _ in bounds), n]
    reasons = [EPISODE_START, *(r for _, r in bounds), EPISODE_END]
    return [
        Segment(int(edges[i]), int(edges[i + 1]), reasons[i], reasons[i + 1]) for i in range(len(edges) - 1)
    ]


def boundaries_of(segments: list[Segment]) -> list[int]:
    """The internal boundary frames (segment starts except 0)."""
    return [s.start for s in segments[1:]]
