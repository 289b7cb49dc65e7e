"""What the phase labeller (`captioners.phases`) reads of an episode: its signals and gripper events.

`assemble` puts an episode back together from its event rows (local frames: the events back to
back); `arm_signals` gives, per arm, its gripper opening (or command), its measured finger opening
where the state has one, and its smoothed motion, through the segmenter's own readers
(`carve.ingest.arms`: one configuration serves every robot, simulator and frame rate). Per arm,
`gripper_events` finds the gripper's transitions, hysteresis states and grasp cycles
(`grasp_cycles`: close onset, open onset), `travel_end` where a transition has finished its travel,
and `regrasps` where held fingers open part-way (`RECLOSE_SHARE` of the gripper's travel) and close
again; `commanded_speed`, for delta actions, the speed the command asks of the hand (where the hand
does not follow, it pushes against something). Between arms, `handovers` finds the cycles that give an object to another arm and those that
receive it (`HANDOVER_S`). Which phase these make is `phases`' business.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from carve.captioners.base import EventView
from carve.captioners.paths import motion_bouts, run_spans
from carve.captioners.task_text import TaskPhrases
from carve.core.config import SegmentConfig
from carve.ingest.arms import SINGLE_ARM, ArmLayout, arm_layouts
from carve.ingest.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, gripper_states, gripper_transitions, noise_sigma
from carve.ingest.kinematics import move_speed, smooth, speed, still_mask, thresholds
from carve.ingest.segment import turn_spans

HANDOVER_S = 1.0  # one arm closes within this of the other's opening: a hand-over
SETTLE_S = 0.1  # a gripper transition's own first moments: motion starting inside it does not end it
RECLOSE_SHARE = 0.3  # held fingers that, having opened by this share of the gripper's travel, close again by it: a re-grasp (`regrasps`)


@dataclass
class Episode:
    """One episode reassembled from its event rows (local frames: the events back to back)."""

    fps: float
    starts: list[int]
    ends: list[int]
    state: np.ndarray | None  # (n, Ds) or None when the rows carry no usable state
    action: np.ndarray | None
    gripper: np.ndarray | None  # the rows' per-frame opening in [0, 1] (first acting arm)
    state_names: list[str]
    action_names: list[str]

    @property
    def n(self) -> int:
        return self.ends[-1] if self.ends else 0


def assemble(events: list[EventView]) -> Episode:
    starts, ends, pos = [], [], 0
    for v in events:
        starts.append(pos)
        pos += max(1, v.num_frames)
        ends.append(pos)

    def stack(mats: list[np.ndarray]) -> np.ndarray | None:
        if not mats or any(m.ndim != 2 or m.shape[0] != e - s for m, s, e in zip(mats, starts, ends, strict=True)):
            return None
        if len({m.shape[1] for m in mats}) != 1 or mats[0].shape[1] == 0:
            return None
        x = np.vstack(mats).astype(np.float64)
        return x if np.all(np.isfinite(x)) else None

    grips = [np.asarray(v.gripper, np.float64) for v in events]
    g = None
    if all(len(x) == e - s for x, s, e in zip(grips, starts, ends, strict=True)):
        g = np.concatenate(grips) if grips else None
        if g is not None and not np.all(np.isfinite(g)):
            g = None
    fps = next((v.fps for v in events if v.fps and v.fps > 0), 10.0)
    return Episode(fps=float(fps), starts=starts, ends=ends, state=stack([v.state for v in events]),
                    action=stack([v.action for v in events]), gripper=g,
                    state_names=list(events[0].state_names), action_names=list(events[0].action_names))


def _gripper_dim(state: np.ndarray, grip: np.ndarray) -> int | None:
    """The state column that carries the gripper (correlates with `grip`), if any."""
    if state.ndim != 2 or state.shape[0] < 3 or len(grip) != state.shape[0] or np.ptp(grip) < 1e-6:
        return None
    best, best_c = None, 0.98
    for d in range(state.shape[1]):
        col = state[:, d]
        if np.ptp(col) < 1e-9:
            continue
        c = abs(float(np.corrcoef(col, grip)[0, 1]))
        if c > best_c:
            best, best_c = d, c
    return best


@dataclass
class ArmSignal:
    """What the labeller reads of one arm: its gripper opening (or command) and its motion."""

    name: str
    gripper: np.ndarray | None  # (n,) higher = more open; None without a gripper
    motion: np.ndarray  # (n, k) in rad or m, smoothed; k = 0 without motion columns
    kind: str
    up: int | None = None  # the motion column that is the height ("z" of a Cartesian arm), when named
    opening: np.ndarray | None = None  # (n,) the fingers' MEASURED opening (a state column), when there is one
    # (n,) the speed the arm's delta-action command asks for (m/s), when the actions are named Cartesian
    # deltas (`commanded_speed`): where the hand does not follow it, it pushes against something
    commanded: np.ndarray | None = None
    # (n,) frames where the hand turns without moving (`turning`), when the arm records its orientation or
    # joints beside its hand's position
    turning: np.ndarray | None = None


_HEIGHT = re.compile(r"(?:^|[._\s])(?:z|pos_?z|eef_?z|ee_?z)$", re.I)
# a commanded translation step: dx, delta_x, dpos_x, robot0_dpos_z (robomimic's OSC_POSE), not a rotation
_DELTA_MOVE = re.compile(r"(?:^|[._])(?:d|dpos[._]?|delta[._]?(?:pos[._]?)?)([xyz])$", re.I)
MIN_FREE_FRAMES = 3  # frames of clear motion needed to learn how far a unit of command moves the hand


def commanded_speed(action: np.ndarray | None, action_names: list[str], sp: np.ndarray,
                    fast: float) -> np.ndarray | None:
    """Per frame, the speed (m/s) the delta-action command asks of a Cartesian arm: the norm of its
    x/y/z delta columns (named, one each) times the command's gain, the median of achieved speed over
    command norm on the frames where the hand clearly moves (`sp >= fast`, at least
    `MIN_FREE_FRAMES`). None without such columns or such frames. Where the command asks for clear
    motion and the hand does not make it, something holds the hand back: it presses or pushes
    against it (a force-like signal of data that records no force)."""
    if action is None or len(action_names) != action.shape[1]:
        return None
    cols: dict[str, int] = {}
    for i, name in enumerate(action_names):
        m = _DELTA_MOVE.search(name.strip())
        if m:
            if m.group(1).lower() in cols:
                return None  # two arms' deltas (or ambiguous names): not one arm's command
            cols[m.group(1).lower()] = i
    if sorted(cols) != ["x", "y", "z"]:
        return None
    cmd = np.linalg.norm(np.asarray(action, np.float64)[:, [cols["x"], cols["y"], cols["z"]]], axis=1)
    free = (sp >= fast) & (cmd > 1e-9)
    if int(free.sum()) < MIN_FREE_FRAMES:
        return None
    return float(np.median(sp[free] / cmd[free])) * cmd


def _height_column(lay_motion: list[int], names: list[str], kind: str) -> int | None:
    """The index (among the arm's motion columns) of the Cartesian height, from the column names."""
    if kind != "cartesian" or not names:
        return None
    hits = [k for k, i in enumerate(lay_motion) if i < len(names) and _HEIGHT.search(names[i].strip())]
    return hits[0] if len(hits) == 1 else None


def arm_signals(ep: Episode, cfg: SegmentConfig) -> list[ArmSignal]:
    n = ep.n
    if ep.state is None:
        return [ArmSignal(SINGLE_ARM, ep.gripper, np.zeros((n, 0)), "joint")]
    names_ok = len(ep.state_names) == ep.state.shape[1]
    layouts = arm_layouts(ep.state_names if names_ok else None, ep.action_names or None, ep.state, ep.action, cfg)
    if len(layouts) == 1 and layouts[0].gripper is None and layouts[0].gripper_action is None:
        # no named gripper: the state column that follows the rows' opening, else the rows' opening
        lay = layouts[0]
        gdim = _gripper_dim(ep.state, ep.gripper) if ep.gripper is not None else None
        if gdim is not None and not lay.motion_in_action:
            lay.motion = [i for i in lay.motion if i != gdim]
        grips = [ep.state[:, gdim] if gdim is not None else ep.gripper]
        opens = [np.asarray(ep.state[:, gdim], float) if gdim is not None else None]
    else:
        grips = [lay.gripper_command(ep.state, ep.action) if lay.gripper is not None or lay.gripper_action is not None
                 else None for lay in layouts]
        opens = [np.asarray(ep.state[:, lay.gripper], float) if lay.gripper is not None else None for lay in layouts]
    out = []
    for lay, g, op in zip(layouts, grips, opens, strict=True):
        x = smooth(lay.motion_signal(ep.state, ep.action), ep.fps, cfg.smooth_s)
        names = ep.action_names if lay.motion_in_action else (ep.state_names if names_ok else [])
        cmd = None
        if len(layouts) == 1 and lay.kind == "cartesian" and not lay.motion_in_action and x.shape[1]:
            cmd = commanded_speed(ep.action, ep.action_names, speed(x, ep.fps), move_speed(lay.kind, cfg))
        out.append(ArmSignal(lay.name, g if g is not None and len(g) == n else None, x, lay.kind,
                              _height_column(lay.motion, names, lay.kind),
                              op if op is not None and len(op) == n else None, cmd,
                              turning(lay, ep.state, x, ep.fps, cfg)))
    return out


def turning(lay: ArmLayout, state: np.ndarray, x: np.ndarray, fps: float, cfg: SegmentConfig) -> np.ndarray | None:
    """(n,) the frames where a Cartesian arm's hand turns without moving: from each turn's onset to where it
    stops (`ingest.segment.turn_spans`, the segmenter's rule, on `ArmLayout.turn`); None when the arm records no
    orientation or joints beside its position."""
    if not lay.turn or not x.shape[1]:
        return None
    sp = speed(x, fps)
    out = np.zeros(len(sp), dtype=bool)
    for a, e in turn_spans(lay, state, sp, still_mask(sp, fps, thresholds(lay.kind, cfg)[0], cfg), fps, cfg):
        out[a:e] = True
    return out


def grasp_cycles(trans: list[tuple[int, str]], first_move: int = 0) -> list[tuple[int | None, int | None]]:
    """(close onset, open onset) of each grasp cycle; None where the episode starts holding / ends holding.

    An open before the first close is no release when a close follows (nothing was held: the
    gripper opens to grasp, during the approach), nor when it starts before the arm's first motion
    (`first_move`, plus a gripper transition's own first moments): the gripper only opens from its
    start state. Otherwise, with no later close, the episode starts holding and the open releases."""
    out: list[tuple[int | None, int | None]] = []
    for i, (t, kind) in enumerate(trans):
        if kind == GRIPPER_CLOSE:
            out.append((t, None))
        elif kind == GRIPPER_OPEN:
            if out and out[-1][1] is None:
                out[-1] = (out[-1][0], t)
            elif not out and t > first_move and not any(k == GRIPPER_CLOSE for _, k in trans[i + 1 :]):
                out.append((None, t))  # holding from the start: carried, then released
    return out


@dataclass
class Gripper:
    """One arm's gripper events: transitions, hysteresis states and grasp cycles."""

    trans: list[tuple[int, str]]
    states: np.ndarray | None
    cycles: list[tuple[int | None, int | None]]


def _first_move(sig: ArmSignal, fps: float, cfg: SegmentConfig) -> int:
    """The first frame of the arm's first motion bout (the episode's length when it never moves);
    0 without motion columns (the arm counts as moving throughout)."""
    x = sig.motion
    if not x.shape[1]:
        return 0
    pause, _ = thresholds(sig.kind, cfg)
    bouts = motion_bouts(speed(x, fps), fps, pause, move_speed(sig.kind, cfg), cfg)
    return bouts[0][0] if bouts else len(x)


def gripper_events(sig: ArmSignal, fps: float, cfg: SegmentConfig) -> Gripper:
    trans = gripper_transitions(sig.gripper, fps, cfg) if sig.gripper is not None else []
    states = gripper_states(sig.gripper, fps, cfg) if trans and sig.gripper is not None else None
    start_state = _first_move(sig, fps, cfg) + max(1, round(SETTLE_S * fps)) if trans else 0
    return Gripper(trans, states, grasp_cycles(trans, start_state))


def travel_end(g: np.ndarray | None, t: int, opening: bool, fps: float) -> int:
    """The frame where a gripper transition that starts at t has finished its travel (the opening
    stops moving toward its new state by more than the noise over `SETTLE_S`)."""
    if g is None or t >= len(g):
        return t
    w = max(1, round(SETTLE_S * fps))
    sign = 1.0 if opening else -1.0
    lo, hi = np.percentile(g, [5, 95])
    step = max(3.0 * noise_sigma(g), 0.02 * float(hi - lo), 1e-12)
    e = t
    while e + w < len(g) and sign * (g[e + w] - g[e]) > step:
        e += 1
    return min(len(g), e + w)


def handovers(sigs: list[ArmSignal], grips: list[Gripper], fps: float,
               phrases: TaskPhrases) -> tuple[list[set[int]], list[set[int]]]:
    """Per arm: the grasp cycles that RECEIVE an object from another arm, and those that GIVE it.

    A hand-over: arm A, holding (a close before the open), opens while arm B closes: B's close
    onset lies between `HANDOVER_S` before A's open onset and `HANDOVER_S` after A's gripper has
    finished opening. Not when the task gives the two arms different objects."""
    gets: list[set[int]] = [set() for _ in sigs]
    gives: list[set[int]] = [set() for _ in sigs]
    w = HANDOVER_S * fps
    for a, b in itertools.permutations(range(len(sigs)), 2):
        pa, pb = phrases.arms.get(sigs[a].name), phrases.arms.get(sigs[b].name)
        if pa is not None and pb is not None and not set(pa.objects) & set(pb.objects):
            continue
        for ka, (ca, oa) in enumerate(grips[a].cycles):
            if ca is None or oa is None:
                continue
            done = travel_end(sigs[a].gripper, oa, True, fps)
            for kb, (cb, _) in enumerate(grips[b].cycles):
                if cb is not None and oa - w <= cb <= done + w:
                    gives[a].add(ka)
                    gets[b].add(kb)
    return gets, gives


def regrasps(g: np.ndarray, held: np.ndarray) -> list[tuple[int, int]]:
    """[onset, end) of each re-grasp inside the held stretches: the fingers, holding, open by at least
    `RECLOSE_SHARE` of the gripper's travel (5th to 95th percentile) from the lowest opening they had since the
    stretch began or since the last re-grasp, then close again by as much; the closing runs from the peak of
    that opening to where the opening stops falling by more than the noise."""
    lo, hi = np.percentile(g, [5, 95])
    need = RECLOSE_SHARE * float(hi - lo)
    step = max(3.0 * noise_sigma(g), 1e-12)
    out: list[tuple[int, int]] = []
    if need <= 0:
        return out
    for a, e in run_spans(held):
        trough = float(g[a])
        peak_i, peak = -1, -np.inf
        k = a
        while k < e:
            v = float(g[k])
            if peak_i < 0:
                trough = min(trough, v)
                if v - trough >= need:
                    peak_i, peak = k, v
            elif v > peak:
                peak_i, peak = k, v
            elif peak - v >= need:
                s = peak_i
                f = k
                while f + 1 < len(g) and float(g[f]) - float(g[f + 1]) > step:
                    f += 1
                out.append((s, f + 1))
                trough, peak_i, peak = float(g[min(f, len(g) - 1)]), -1, -np.inf
                k = f + 1
                continue
            k += 1
    return out

