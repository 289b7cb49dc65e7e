"""Event segmentation: split one episode into variable-length events at its event joints.

Owns `Segment`, `segment_episode` and `segment_arms`, called by `ingest/events.py`. It reads
every arm of the episode (`ingest.arms`: ALOHA-style `left_*`/`right_*`, grippers that exist
only in the action stream, Cartesian or joint motion) and works in physical units: every
threshold is in seconds and m/s or rad/s, resolved from the episode's fps, so one
configuration serves 10 to 50 fps. Per arm, boundary candidates are:

* `gripper_close` / `gripper_open` (`ingest.gripper`): hysteresis in the gripper's own units
  from its noise floor, debounced in seconds, placed at the onset of the transition;
* `motion_start` (`ingest.kinematics`): after a gripper transition, the onset of the arm's
  next sustained move, which ends the grasp or release even when tremor keeps the hand from
  standing perfectly still;
* `pause` (`ingest.kinematics`): the arm, after standing still for `pause_min_s`, starts to
  move again (placed at that onset);
* `motion_start` of a turn (`ingest.kinematics.turns_in_place`): a Cartesian arm whose hand stands
  still while its orientation or joints turn (`ArmLayout.turn`) starts an event where the turning
  starts, and the hand's next move after it another (as after a gripper transition);
* both onsets go back to where their command started (`command_start`, at most `command_lead_s`)
  when the actions are absolute targets of the arm's positions that it follows with a lag;
* `motion_change` (`ingest.kinematics`): AWE waypoints (Shi et al., CoRL 2023) where the path
  turns by `turn_deg` or slows to a velocity minimum, for motion that flows from one phase
  into the next without a stop (lift -> move -> lower);
* `speed_change` (`ingest.kinematics`): the onset of a change between two steady speed levels,
  the way a controller moving at constant speed between waypoints changes phase, or from a
  steady level into a rest that lasts to the episode's end (`final_stop`: the controller's final
  "stay"); AWE waypoints inside such a change are the same joint and are dropped;
* `visual` (only with `use_visual`, over the whole episode): peaks of a windowed change score
  of per-frame image descriptors (`ingest.visual.frame_descriptors`) above `visual_threshold`.

Each arm's candidates are accepted in priority order (gripper, motion start, pause, motion
or speed change, visual) unless one already lies within `refractory_s`; the episode's boundaries are the
union over arms (again with the refractory rule, plus the onset of each arm's first move when
there are several arms), so no event spans another arm's grasp or release, and
`segment_arms` gives the per-arm event streams. Segments shorter than `min_len_s` are merged
into a neighbour by dropping their weaker boundary; segments longer than `max_len_s` are split
evenly (`max_len`). Each segment records the arm(s) that act in it. The segments tile [0, T).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from carve.core.config import SegmentConfig
from carve.ingest.arms import ArmLayout, arm_layouts
from carve.ingest.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, gripper_transitions
from carve.ingest.kinematics import (
    MOTION,
    MOTION_START,
    PAUSE,
    SPEED,
    command_lag,
    command_start,
    final_stop,
    motion_starts,
    move_speed,
    pause_boundaries,
    sharpen_onset,
    smooth,
    speed,
    speed_steps,
    still_mask,
    thresholds,
    turn_speed,
    turns_in_place,
    waypoint_boundaries,
)

EPISODE_START = "episode_start"
EPISODE_END = "episode_end"
VISUAL = "visual"
MAX_LEN = "max_len"
_PRIORITY = {GRIPPER_CLOSE: 5, GRIPPER_OPEN: 5, MOTION_START: 4, PAUSE: 3, MOTION: 2, SPEED: 2, VISUAL: 1, MAX_LEN: 0}


@dataclass
class Segment:
    """Frames [start, end) of one event, why it starts and ends, and the arm(s) acting in it."""

    start: int
    end: int
    start_reason: str
    end_reason: str
    arms: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class ArmSignals:
    """One arm's signals in SI units and the boundaries found on them."""

    layout: ArmLayout
    speed: np.ndarray
    gripper: np.ndarray
    boundaries: list[tuple[int, str]]


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
# Per arm


def arm_signals(layout: ArmLayout, state: np.ndarray, action: np.ndarray | None, fps: float,
                cfg: SegmentConfig) -> ArmSignals:
    """Smoothed motion, speed and the gripper/pause/motion boundary candidates of one arm."""
    n = state.shape[0]
    g = layout.gripper_command(state, action)
    cands: list[tuple[int, str]] = gripper_transitions(g, fps, cfg) if len(g) else []
    x = smooth(layout.motion_signal(state, action), fps, cfg.smooth_s)
    sp = speed(x, fps) if x.shape[1] else np.zeros(n)
    if x.shape[1]:
        pause_speed, err = thresholds(layout.kind, cfg)
        still = still_mask(sp, fps, pause_speed, cfg)
        grips = [b for b, _ in cands]
        moving = move_speed(layout.kind, cfg)
        raw = speed(layout.motion_signal(state, action), fps)
        cands += motion_starts(sp, fps, grips, [*grips[1:], n][: len(grips)], moving, cfg, raw)
        hold = max(2, round(cfg.pause_min_s * fps))
        turns, turning = _turns(layout, state, sp, still, raw, fps, cfg, moving, hold, n, grips)
        if cfg.use_pauses:  # a hand that stands still to turn is not pausing: no pause ends inside a turn or its rest
            cands += [(t, r) for t, r in pause_boundaries(sp, still, fps, cfg, moving) if not turning[t]]
        cands = [(sharpen_onset(raw, t, moving, hold), r) if r in (MOTION_START, PAUSE) else (t, r)
                 for t, r in cands]
        cands = _command_led(cands + turns, layout, state, action, fps, cfg)
        steps = ([*speed_steps(sp, fps, pause_speed, moving, cfg), *final_stop(sp, fps, pause_speed, moving, cfg)]
                 if cfg.use_speed_steps else [])
        if cfg.use_waypoints:
            cands += _outside_steps(waypoint_boundaries(x, sp, still, err, [t for t, _ in cands], fps, cfg),
                                    steps, fps, cfg)
        cands += steps
    return ArmSignals(layout, sp, g, _accept(cands, n, _frames(cfg.refractory_s, fps)))


def _turns(layout: ArmLayout, state: np.ndarray, sp: np.ndarray, still: np.ndarray, raw: np.ndarray, fps: float,
           cfg: SegmentConfig, moving: float, hold: int, n: int,
           grips: list[int]) -> tuple[list[tuple[int, str]], np.ndarray]:
    """A Cartesian arm's turns in place (`kinematics.turns_in_place` on its `ArmLayout.turn` columns): each
    turn's onset and the onset of the hand's next move after it (sharpened as every motion start), found up to
    the next gripper transition; and the (n,) mask of the frames from each turn's onset to that next move (a
    turn, and the rest it ends in, are no pause)."""
    turning = np.zeros(n, dtype=bool)
    out: list[tuple[int, str]] = []
    for a, e in turn_spans(layout, state, sp, still, fps, cfg):
        nxt = motion_starts(sp, fps, [e], [min([g for g in grips if g > e] or [n])], moving, cfg, raw)
        out += [(a, MOTION_START), *((sharpen_onset(raw, t, moving, hold), r) for t, r in nxt)]
        # the turn and the rest after it up to the next move: that move's start is the boundary, no pause end
        turning[a : max(e, out[-1][0]) if nxt else e] = True
    return out, turning


def turn_spans(layout: ArmLayout, state: np.ndarray, sp: np.ndarray, still: np.ndarray, fps: float,
               cfg: SegmentConfig) -> list[tuple[int, int]]:
    """[onset, end) of each turn in place of an arm (`kinematics.turns_in_place` on its `ArmLayout.turn`
    columns; `sp` its hand's smoothed speed, `still` its `still_mask`); none without turn columns. The
    kinematic captioner reads the same spans (`captioners.signals.turning`)."""
    if not layout.turn:
        return []
    return turns_in_place(sp, turn_speed(layout.turn_signal(state), layout.turn_kind, fps, cfg.smooth_s), still,
                          fps, cfg)


def _command_led(cands: list[tuple[int, str]], layout: ArmLayout, state: np.ndarray, action: np.ndarray | None,
                 fps: float, cfg: SegmentConfig) -> list[tuple[int, str]]:
    """Motion starts and pause ends moved back to where their command started (`command_start`), when the
    actions are absolute targets of the arm's positions (`ArmLayout.command`) that the arm follows with a lag
    (`command_lag` >= 1 frame: a command equal to the measurement moves nothing): the phase starts where its
    command does. Never to within `refractory_s` of the gripper transition before them (the grasp or release
    the move ends keeps its frames)."""
    cmd = layout.command_signal(action)
    if not cmd.shape[1] or cmd.shape[0] < 3:
        return cands
    lead = round(cfg.command_lead_s * fps)
    if command_lag(layout.command_measured(state), cmd, fps, lead) == 0:
        return cands
    grips = [t for t, r in cands if r in (GRIPPER_CLOSE, GRIPPER_OPEN)]
    gap = _frames(cfg.refractory_s, fps)
    csp = speed(cmd, fps)
    floor = 0.5 * thresholds(layout.command_kind, cfg)[0]

    def led(t: int) -> int:
        before = [g for g in grips if g < t]
        return min(t, max(command_start(csp, t, lead, floor), max(before) + gap if before else 1))

    return [(led(t), r) if r in (MOTION_START, PAUSE) else (t, r) for t, r in cands]


def _outside_steps(cands: list[tuple[int, str]], steps: list[tuple[int, str]], fps: float,
                   cfg: SegmentConfig) -> list[tuple[int, str]]:
    """`cands` less those inside a speed step's change (from `refractory_s` before its onset to
    `speed_step_transition_s` after): the corner a joint-space path shows there is the same joint."""
    before, after = _frames(cfg.refractory_s, fps), _frames(cfg.speed_step_transition_s, fps)
    return [(t, r) for t, r in cands if not any(k - before < t <= k + after for k, _ in steps)]


def _frames(seconds: float, fps: float) -> int:
    """A duration in frames at `fps`, rounded up (a refractory or minimum length is never shortened)."""
    return max(1, int(np.ceil(seconds * fps - 1e-9)))


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


def _tile(bounds: list[tuple[int, str]], n: int) -> list[Segment]:
    edges = [0, *(t for t, _ in bounds), n]
    reasons = [EPISODE_START, *(r for _, r in bounds), EPISODE_END]
    return [Segment(int(edges[i]), int(edges[i + 1]), reasons[i], reasons[i + 1]) for i in range(len(edges) - 1)]


def _finish(bounds: list[tuple[int, str]], n: int, fps: float, cfg: SegmentConfig) -> list[Segment]:
    bounds = _merge_short(bounds, n, _frames(cfg.min_len_s, fps))
    return _tile(_split_long(bounds, n, max(2, _frames(cfg.max_len_s, fps))), n)


def _acting(seg: Segment, arms: list[ArmSignals], fps: float, cfg: SegmentConfig) -> list[str]:
    """Arms that move (above the pause speed) or whose gripper changes state within the segment."""
    out = []
    for a in arms:
        pause_speed, _ = thresholds(a.layout.kind, cfg)
        moving = int(np.sum(a.speed[seg.start : seg.end] > pause_speed))
        grip = any(seg.start <= t < seg.end + 1 and r in (GRIPPER_CLOSE, GRIPPER_OPEN)
                   for t, r in a.boundaries)
        if moving >= max(1, round(cfg.pause_min_s * fps)) or grip:
            out.append(a.layout.name)
    if not out and arms:  # nobody moves enough: the most active arm
        out = [max(arms, key=lambda a: float(np.mean(a.speed[seg.start : seg.end]))).layout.name]
    return out


# --------------------------------------------------------------------------------------------
# Episode


def _signals(state: np.ndarray, action: np.ndarray | None, fps: float, cfg: SegmentConfig,
             state_names: list[str] | None, action_names: list[str] | None) -> tuple[np.ndarray, list[ArmSignals]]:
    state = np.asarray(state, dtype=np.float64)
    if state.ndim == 1:
        state = state[:, None]
    act = np.asarray(action, dtype=np.float64) if action is not None else None
    if act is not None and (act.ndim != 2 or act.shape[0] != state.shape[0]):
        act = None
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    layouts = arm_layouts(state_names, action_names, state, act, cfg)
    return state, [arm_signals(lay, state, act, fps, cfg) for lay in layouts]


def segment_arms(state: np.ndarray, action: np.ndarray | None, fps: float, cfg: SegmentConfig,
                 state_names: list[str] | None, action_names: list[str] | None) -> dict[str, list[Segment]]:
    """Per-arm event streams: each arm's own boundaries only, segments tiling [0, T)."""
    state, arms = _signals(state, action, fps, cfg, state_names, action_names)
    n = state.shape[0]
    out = {}
    for a in arms:
        segs = _finish(a.boundaries, n, fps, cfg)
        for s in segs:
            s.arms = [a.layout.name]
        out[a.layout.name] = segs
    return out


def segment_episode(
    state: np.ndarray,
    action: np.ndarray | None,
    fps: float,
    cfg: SegmentConfig,
    state_names: list[str] | None,
    action_names: list[str] | None,
    visual_features: np.ndarray | None = None,
) -> list[Segment]:
    """Segments tiling [0, T) of one episode: the union of every arm's boundaries (see the module doc)."""
    state, arms = _signals(state, action, fps, cfg, state_names, action_names)
    n = state.shape[0]
    if n == 0:
        return []
    cands = [b for a in arms for b in a.boundaries]
    if len(arms) > 1:  # an arm that starts while another already works starts its first event then
        for a in arms:
            first = next((t for t, r in a.boundaries if r in (GRIPPER_CLOSE, GRIPPER_OPEN)), n)
            for t, r in motion_starts(a.speed, fps, [0], [first], move_speed(a.layout.kind, cfg), cfg):
                others = [o for o in arms if o is not a]
                if any(np.sum(o.speed[:t] > move_speed(o.layout.kind, cfg)) >= _frames(cfg.pause_min_s, fps)
                       for o in others):
                    cands.append((t, r))
    if cfg.use_visual and visual_features is not None and len(visual_features) == n:
        cands += visual_boundaries(np.asarray(visual_features), cfg)
    segs = _finish(_accept(cands, n, _frames(cfg.refractory_s, fps)), n, fps, cfg)
    for s in segs:
        s.arms = _acting(s, arms, fps, cfg)
    return segs


def gripper_track(state: np.ndarray, action: np.ndarray | None, cfg: SegmentConfig,
                  state_names: list[str] | None, action_names: list[str] | None) -> dict[str, np.ndarray]:
    """arm -> its gripper opening per frame scaled to [0, 1] by its 5th/95th percentiles (for captions)."""
    state = np.asarray(state, dtype=np.float64)
    act = np.asarray(action, dtype=np.float64) if action is not None else None
    out = {}
    for lay in arm_layouts(state_names, action_names, state, act, cfg):
        g = lay.gripper_measured(state, act)
        if len(g) == 0:
            continue
        lo, hi = np.percentile(g, [5, 95])
        out[lay.name] = np.clip((g - lo) / (hi - lo), 0.0, 1.0) if hi - lo > 1e-9 else np.ones_like(g)
    return out


def boundaries_of(segments: list[Segment]) -> list[int]:
    """The internal boundary frames (segment starts except 0)."""
    return [s.start for s in segments[1:]]
