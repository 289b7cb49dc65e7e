"""Phase labelling for the kinematic captioner: which phase each event of an episode is, per arm.

It labels PHASES PER ARM, frame by frame, on the whole episode (the event rows of one episode
tile it), then gives each event the phase of the arm(s) acting in it. Only signals that any
teleoperation recording has are used, read in physical units through `carve.ingest` (the
segmenter's own readers and the run's `segment.*` thresholds), so one configuration serves every
robot, simulator and frame rate.

Per arm, frames are labelled (the events' own boundaries are used only where noted):

1. **grasp**: from the close onset until the arm moves off after holding (the segmenter's own
   `motion_starts` rule, robust to tremor during the hold); **release**: from the open onset
   until the arm moves off. An arm still braking at the end of its previous motion when the
   gripper starts to move (its speed only falls until it rests) never "holds" by that rule: its
   grasp / release then lasts until its next motion bout starts (a slow hand-over opening while
   the arm waits is all release), and a last release that no motion follows lasts to the
   episode's end. An arm that keeps moving through the transition ends it where the gripper
   state has switched.
2. **Held stretch** (between grasp and release): up first, then across, then down. A
   least-squares three-piece polyline through the path (in the arm's motion space) gives the
   three pieces; each piece's direction is its mean velocity away from the blends, and every
   frame goes, in order, to the piece whose direction its velocity follows: where two blended
   motions overlap, the split falls where the new one becomes the faster. The first piece is
   **lift**, the middle one **move**, the last one **place**; a hold at a corner belongs to the
   piece it ends. Held until the episode ends (never released): two pieces, lift and move (lift
   and **place** when the task names a target and the arm comes to rest: the object reached it).
3. **Hand-over** between two arms: arm A, holding, opens its gripper while arm B closes its
   own (B's close onset from `HANDOVER_S` before A's open onset to `HANDOVER_S` after A's
   gripper has finished opening), unless the task gives the arms different objects. A's open
   is its **release**, and A brings the object over without putting it down (its held stretch
   is lift, move: no place); B takes an object that is already up (its held stretch has no
   lift: move, place; or move alone when B holds it to the end).
4. **Gripper open**: before a grasp the arm **reach**es (from its first motion on, or from the
   previous release); after the last release it **retreat**s. Before its first motion an arm is
   idle (the other arm may be working); the rest after its last motion belongs to its last
   phase (a hold belongs to the phase it follows).
5. **No grasp at all** (a closed fist, "push ..." tasks): the arm's active stretch is split
   into **reach**, **push** (**move** when the task asks for no push) and **retreat**: at the two
   event boundaries (the segmenter's pauses and velocity minima) through which the three-piece
   polyline fits the path best, or by the free fit when there are fewer. The last piece is a
   retreat only where it leaves: back toward the start pose, or rising off upward; else (an
   episode cut while the hand still pushes) the stretch is reach | push, fitted the same way.
   When the instruction's verb works a PART of the scene (its class, `task_text` /
   `verb_classes`, is pull, push or turn and the task is no "push the object" task: open a
   drawer or door, close a window, press a button, turn a faucet), the hand reaches the part and then works it: **reach** up to the path's
   last sharp turn (`TURN_DEG` between the motion `TURN_S` before and after a frame, stops left
   out), **act** after it (the task's action: "pull the drawer open"); when that last leg heads
   back to the start pose it is the **retreat** and the action is the leg before it; when the
   action moves into the part or sideways (push, press, close; a turn not "up") and the path ends
   by rising off the part, never to come down again, the rise is the **retreat** and the leg
   before it the action ("turn the faucet on", then "retreat from the faucet"); the action then
   starts at the last sharp turn before the lift-off, however short the action's own leg (a dial
   turned by 2 cm). A retreat is the motion after the episode's LAST interaction: when the hand,
   having left the part, heads back to it (its distance from where it left falls by more than the
   waypoint error and `COME_BACK_SHARE` of its farthest), the excursion is a re-approach between
   two interactions, a **reach**. A last leg after the last sharp turn that comes back to where it
   turned, or never leaves the waypoint error around it (a slip, a wiggle, a wipe's last stroke),
   is no start of the action: it started at the turn before. Without a sharp turn the two-piece
   fit splits reach | act, unless the segmenter found no change of motion inside the stretch
   either: then it is one motion, the action (the hand starts at the part; an episode of "close
   the door" is never captioned only as a reach). A held object's last piece is **act** instead
   of **place** when the instruction inserts ("insert the peg into the hole"), and a last piece
   that does not go down (a Cartesian arm with a named height column) is a **move**, not a place.
   A grasp closed while the hand still moves lasts while its speed falls (it closes in on the
   object) and the gripper switches, up to `GRASP_SETTLE_S` after the fingers stop.
6. **hold** at the end: the arm's final rest, from its last frame at the moving speed and from
   where it stays within the waypoint error (`waypoint_error_rad` / `_m`: a smaller motion is no
   waypoint of the segmenter) of its final pose, is **hold** (its grasp or release keeps its
   own label). An arm that settles slowly after its last command is holding, not moving.

7. **A fist, not a held object.** Under an instruction that works a part or pushes the object (its
   verb class a part action: push, press, pull, turn, wipe ...), a gripper that only OPENS in the
   episode, never having closed in it (closed from the start, nothing picked up), held nothing: the
   closed fingers were a fist or a tool posture (a button pressed with the closed hand). The arm is
   labelled as with no grasp at all (rule 5), and the opening is no release.
8. **Holding a part is working it.** Under such an instruction, the stretch in which the arm holds
   what it closed on (a handle, a mug pushed along the table, a plug drawn out) is the task's action
   (**act**), not lift / move / place: "pull the drawer open" with a grasp of its handle is still a
   pull. Its grasp and release keep their labels; a hand-over (rule 3) keeps its carry.
9. **Strokes.** Without a grasp, where the hand works the part in several strokes (a named height
   column needed): the path's legs between its sharp turns; a level leg after the approach that the
   hand ends by rising off and then coming down again to the height it left is a stroke of the action
   (**act**), the rise and the descent a re-approach (**reach**), whatever the last-turn rule of rule 5
   made of them (the action is where the hand moves the part, also when the operator or expert loops
   back over the part afterwards; the episode may end on the way back).

10. **Re-grasp.** While the arm holds what it closed on, fingers that open part-way (by `RECLOSE_SHARE`
   of the gripper's travel, read on the fingers' MEASURED opening where the state has one: a command that
   stays "closed" says nothing of fingers forced apart by what they hold) and then close on it again
   re-grasp it, when the hand slows down through the closing (its speed where the fingers stop is at most
   `RECLOSE_SLOW` of its speed where they began): the closing is a **grasp**, from the peak of the opening
   until the fingers stop closing, whatever the held stretch was (a carry, a placement, the task's action).
   The hand tightens its hold on the object as it comes to rest; it neither carries nor works it in those
   frames. Fingers that settle while the hand keeps moving the object at speed belong to that motion.

Rule 1 also reads a grasp on the move with a height column: fingers that close while the hand still
goes down (mostly down, faster than the pause speed) close in on the object, and the grasp lasts
through that descent.

Each event takes, per arm, the majority label of its frames. Arms whose majority is **hold**
are not acting; of the acting arms the event is about the arm with the most acting frames in
it (an arm within `TIE_FRACTION` of that is a tie, and the one in the shorter phase, with the
final hold it ends in, wins: the specific action, not the long tail of an arm that has
finished). Two tied arms in the same
phase AT ONCE (their runs of that phase overlap by `TOGETHER_FRACTION` of the longer one: both
reach, grasp, lift or insert together) make the event the arms' together ("both"); a tied
arm doing something else is named too, in a second clause. When no arm acts and the arms
hold, the event is a hold of every holding arm. An event where every arm is idle repeats its
predecessor's phase (a first one: its successor's).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

from carve.captioners.base import EventView
from carve.captioners.task_text import TaskPhrases, parse_task
from carve.core.config import SegmentConfig
from carve.ingest.arms import SINGLE_ARM, arm_layouts
from carve.ingest.gripper import GRIPPER_CLOSE, GRIPPER_OPEN, gripper_states, gripper_transitions, noise_sigma
from carve.ingest.kinematics import motion_starts, move_speed, runs, smooth, speed, thresholds

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push", "hold", "act")
REACH, GRASP, LIFT, MOVE, PLACE, RELEASE, RETREAT, PUSH, HOLD, ACT = range(len(PHASES))
# instruction verb classes (`verb_classes`) whose action works a part of the scene without carrying
# it (a drawer pulled open, a button pressed, a faucet turned or a lock locked, a table wiped): no grasp
# cycle needed
PART_ACTIONS = ("pull", "push", "turn", "wipe")
RETURN_COS = 0.7  # a last leg heading back to the start pose within this cosine ...
RETURN_SHARE = 0.5  # ... and ending nearer the start than this share of its own start's distance: a retreat
COME_BACK_SHARE = 0.2  # a hand that left a part and comes back by this share of its farthest distance: re-approach
RISE_COS = 0.5  # a last leg whose displacement points up within this cosine (>= 30 deg above level) rises
GRASP_SETTLE_S = 0.5  # a grasp closed on the move ends at the latest this long after the fingers stop
RISE_FRACTION = 0.1  # ... or where the hand's speed rises by more than this share of the moving speed
TURN_DEG = 40.0  # the path turns by more than this between ...
TURN_S = 0.1  # ... its motion over this long before and after a frame: a sharp turn
ACT_SHARE = 0.2  # a turn with less than this share of the path after it is no start of the action
IDLE = -1
BOTH = "both"  # the arm of an event that the arms do together
TIE_FRACTION = 0.9  # arms with at least this share of the most active arm's frames are tied
TOGETHER_FRACTION = 0.7  # two arms' runs of one phase overlapping this share of the longer: done together
HANDOVER_S = 1.0  # one arm closes within this of the other's opening: a hand-over
BRAKING_RISE = 1.1  # an arm braking to rest: its speed never rises above this x its speed at the start
FIT_POINTS = 64  # samples of a path (evenly in time) for the polyline fit
DIRECTION_ROUNDS = 2  # piece directions re-estimated from the previous split
SETTLE_S = 0.1  # a gripper transition's own first moments: motion starting inside it does not end it
RECLOSE_SHARE = 0.3  # held fingers that, having opened by this share of the gripper's travel, close again by it: a re-grasp ...
RECLOSE_SLOW = 0.5  # ... when the hand slows through the closing: its speed where it ends is at most this share of where it began


# ------------------------------------------------------------------------------------- signals
@dataclass
class _Episode:
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


def _assemble(events: list[EventView]) -> _Episode:
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
    return _Episode(fps=float(fps), starts=starts, ends=ends, state=stack([v.state for v in events]),
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
class _ArmSignal:
    """What the labeller reads of one arm: its gripper opening (or command) and its motion."""

    name: str
    gripper: np.ndarray | None  # (n,) higher = more open; None without a gripper
    motion: np.ndarray  # (n, k) in rad or m, smoothed; k = 0 without motion columns
    kind: str
    up: int | None = None  # the motion column that is the height ("z" of a Cartesian arm), when named
    opening: np.ndarray | None = None  # (n,) the fingers' MEASURED opening (a state column), when there is one


_HEIGHT = re.compile(r"(?:^|[._\s])(?:z|pos_?z|eef_?z|ee_?z)$", re.I)


def _height_column(lay_motion: list[int], names: list[str], kind: str) -> int | None:
    """The index (among the arm's motion columns) of the Cartesian height, from the column names."""
    if kind != "cartesian" or not names:
        return None
    hits = [k for k, i in enumerate(lay_motion) if i < len(names) and _HEIGHT.search(names[i].strip())]
    return hits[0] if len(hits) == 1 else None


def _arm_signals(ep: _Episode, cfg: SegmentConfig) -> list[_ArmSignal]:
    n = ep.n
    if ep.state is None:
        return [_ArmSignal(SINGLE_ARM, ep.gripper, np.zeros((n, 0)), "joint")]
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
        out.append(_ArmSignal(lay.name, g if g is not None and len(g) == n else None, x, lay.kind,
                              _height_column(lay.motion, names, lay.kind),
                              op if op is not None and len(op) == n else None))
    return out


# ------------------------------------------------------------------------------------- one arm
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    starts, ends = runs(mask)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _bouts(sp: np.ndarray, fps: float, pause: float, fast: float, cfg: SegmentConfig) -> list[tuple[int, int]]:
    """Stretches of real motion: above the pause speed, around at least a moment at the moving speed."""
    hold = max(2, round(cfg.pause_min_s * fps))
    merged: list[list[int]] = []
    for a, e in _runs(sp > pause):  # a dip shorter than a pause does not end the motion (hesitations)
        if merged and a - merged[-1][1] < hold:
            merged[-1][1] = e
        else:
            merged.append([a, e])
    need = max(1, hold // 2)
    return [(a, e) for a, e in merged if int(np.sum(sp[a:e] >= fast)) >= need]


def _move_off(sp: np.ndarray, fps: float, t: int, until: int, fast: float, cfg: SegmentConfig) -> int | None:
    """After a gripper transition at t: where the arm, having held, moves off (`ingest.kinematics.motion_starts`,
    the segmenter's rule: robust to tremor during the hold); None when it never held or never moves off."""
    if sp.size == 0 or not np.any(sp):
        return None
    found = motion_starts(sp, fps, [t], [until], fast, cfg)
    return found[0][0] if found else None


def _cycles(trans: list[tuple[int, str]], first_move: int = 0) -> list[tuple[int | None, int | None]]:
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


def _polyline_fit(p: np.ndarray, pieces: int) -> list[int]:
    """Indices of the inner vertices of the least-squares `pieces`-piece polyline through points `p`
    (vertices on the points; cost: squared distances of the points to their piece)."""
    m = len(p)
    cost = np.full((m, m), np.inf)
    for i in range(m - 1):
        d = p[i + 1 :] - p[i]  # d[j]: from point i to point i+1+j (a chord, and a point between)
        g = d @ d.T  # g[q, j] = d[q] . d[j]
        vv = np.diag(g).copy()
        t = np.clip(np.divide(g, vv[None, :], out=np.zeros_like(g), where=vv[None, :] > 1e-18), 0.0, 1.0)
        res = vv[:, None] - 2.0 * t * g + t * t * vv[None, :]  # squared distance of point q to chord j
        res = np.maximum(res, 0.0) * np.tri(len(d), k=-1).T  # only the points strictly inside (q < j)
        cost[i, i + 1 :] = res.sum(axis=0)
    best = np.full((pieces + 1, m), np.inf)
    arg = np.zeros((pieces + 1, m), int)
    best[0, 0] = 0.0
    for k in range(1, pieces + 1):
        for j in range(1, m):
            tot = best[k - 1, :j] + cost[:j, j]
            i = int(np.argmin(tot))
            best[k, j], arg[k, j] = tot[i], i
    corners, j = [], m - 1
    for k in range(pieces, 1, -1):
        j = int(arg[k, j])
        corners.append(j)
    return sorted(corners)


def _direction_split(v: np.ndarray, dirs: list[np.ndarray]) -> list[int]:
    """Frames where pieces 2..k start: the ordered split that maximises the velocity's projection on
    the direction of its piece (a frame belongs to the piece whose direction it follows; on a flat
    stretch, a hold, the later split wins, so a hold stays with the piece it ends)."""
    m, k = len(v), len(dirs)
    score = np.stack([v @ u for u in dirs], axis=1)  # (m, k)
    cs = np.vstack([np.zeros((1, k)), np.cumsum(score, axis=0)])  # prefix sums, (m + 1, k)
    # best[j][t]: the best value of pieces 0..j covering frames [0, t) ; piece j ends at t
    best = np.full((k, m + 1), -np.inf)
    arg = np.zeros((k, m + 1), int)
    best[0] = cs[:, 0]
    for j in range(1, k):
        # piece j covers [a, t): value = best[j-1][a] + cs[t, j] - cs[a, j], with 1 <= a < t
        f = best[j - 1] - cs[:, j]
        run_val, run_arg = -np.inf, 0
        for t in range(1, m + 1):
            a = t - 1
            if a >= 1 and f[a] >= run_val - 1e-12:  # ties: the later split
                run_val, run_arg = f[a], a
            if run_val > -np.inf:
                best[j, t], arg[j, t] = run_val + cs[t, j], run_arg
    out, t = [], m
    for j in range(k - 1, 0, -1):
        t = int(arg[j, t])
        out.append(t)
    return sorted(out)


def _polyline_corners(x: np.ndarray, sp: np.ndarray, pause: float, pieces: int) -> list[int] | None:
    """Frames (local) where pieces 2..k of the path `x` start, or None when it hardly moves.

    A least-squares k-piece polyline through the path (sampled evenly in time, at most
    `FIT_POINTS` points) gives the pieces; each piece's direction is its mean velocity over its
    central half (away from the blends), and every frame then goes to the piece whose direction
    its velocity follows, in order (`_direction_split`): where two blended motions overlap, the
    split falls where the new one becomes the faster. The directions are re-estimated from that
    split (`DIRECTION_ROUNDS`). A corner inside a hold is moved to the hold's end (the hold belongs
    to the piece it ends).
    """
    m = x.shape[0]
    if x.ndim != 2 or x.shape[1] == 0 or m < pieces + 1:
        return None
    moving = sp > pause
    if int(moving.sum()) < 2:
        return None
    idx = np.unique(np.linspace(0, m - 1, min(m, FIT_POINTS)).round().astype(int))
    if len(idx) < pieces + 1:
        return None
    verts = [0, *(int(idx[c]) for c in _polyline_fit(x[idx], pieces)), m - 1]
    v = np.where(moving[:, None], np.gradient(x, axis=0), 0.0)
    corners = verts[1:-1]
    for _ in range(DIRECTION_ROUNDS):
        dirs = []
        for a, b in itertools.pairwise(verts):  # the mean velocity of the piece's central half
            d = v[a + (b - a) // 4 : b - (b - a) // 4 + 1].sum(axis=0)
            nd = float(np.linalg.norm(d))
            dirs.append(d / nd if nd > 1e-12 else d)
        corners = _direction_split(v, dirs)
        verts = [0, *corners, m - 1]
    out = []
    for c in corners:
        while 0 < c < m and not moving[c]:  # inside a hold: to its end
            c += 1
        out.append(min(c, m))
    return out


def _chord_cost(x: np.ndarray, i: int, j: int) -> float:
    """Squared distances of the frames x[i..j] to the chord x[i] -> x[j]."""
    pts = x[i : j + 1] - x[i]
    v = x[j] - x[i]
    vv = float(v @ v)
    t = np.clip(pts @ v / vv, 0.0, 1.0) if vv > 1e-18 else np.zeros(len(pts))
    return float(np.sum((pts - t[:, None] * v) ** 2))


def _corners_among(x: np.ndarray, cands: list[int], pieces: int) -> list[int]:
    """The `pieces` - 1 of the candidate frames through which the polyline fits the path best."""
    m = len(x)
    best, out = np.inf, cands[: pieces - 1]
    for combo in itertools.combinations(cands, pieces - 1):
        verts = [0, *combo, m - 1]
        cost = sum(_chord_cost(x, a, b) for a, b in itertools.pairwise(verts))
        if cost < best:
            best, out = cost, list(combo)
    return out


def _label_path(labels: np.ndarray, x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int,
                names: tuple[int, ...], fallback: int, cands: list[int] | None = None) -> None:
    """Label frames [a, e) with `names`, one per piece of the path's polyline fit (corners among
    the candidate frames `cands` when there are enough of them, else free)."""
    if e <= a:
        return
    if len(names) == 1:
        labels[a:e] = names[0]
        return
    inside = sorted({c - a for c in cands or [] if a < c < e - 1})
    if len(inside) >= len(names) - 1 and x.shape[1]:
        corners: list[int] | None = _corners_among(x[a:e], inside, len(names))
    else:
        corners = _polyline_corners(x[a:e], sp[a:e], pause, len(names)) if e - a >= 3 else None
    if corners is None:
        labels[a:e] = fallback
        return
    edges = [0, *corners, e - a]
    for name, lo, hi in zip(names, edges[:-1], edges[1:], strict=True):
        labels[a + lo : a + max(lo, hi)] = name


@dataclass
class _Gripper:
    """One arm's gripper events: transitions, hysteresis states and grasp cycles."""

    trans: list[tuple[int, str]]
    states: np.ndarray | None
    cycles: list[tuple[int | None, int | None]]


def _first_move(sig: _ArmSignal, fps: float, cfg: SegmentConfig) -> int:
    """The first frame of the arm's first motion bout (the episode's length when it never moves);
    0 without motion columns (the arm counts as moving throughout)."""
    x = sig.motion
    if not x.shape[1]:
        return 0
    pause, _ = thresholds(sig.kind, cfg)
    bouts = _bouts(speed(x, fps), fps, pause, move_speed(sig.kind, cfg), cfg)
    return bouts[0][0] if bouts else len(x)


def _gripper_events(sig: _ArmSignal, fps: float, cfg: SegmentConfig) -> _Gripper:
    trans = gripper_transitions(sig.gripper, fps, cfg) if sig.gripper is not None else []
    states = gripper_states(sig.gripper, fps, cfg) if trans and sig.gripper is not None else None
    start_state = _first_move(sig, fps, cfg) + max(1, round(SETTLE_S * fps)) if trans else 0
    return _Gripper(trans, states, _cycles(trans, start_state))


def _travel_end(g: np.ndarray | None, t: int, opening: bool, fps: float) -> int:
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


def _handovers(sigs: list[_ArmSignal], grips: list[_Gripper], fps: float,
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
            done = _travel_end(sigs[a].gripper, oa, True, fps)
            for kb, (cb, _) in enumerate(grips[b].cycles):
                if cb is not None and oa - w <= cb <= done + w:
                    gives[a].add(ka)
                    gets[b].add(kb)
    return gets, gives


def _final_rest(x: np.ndarray, sp: np.ndarray, fast: float, err: float) -> int:
    """The first frame of the arm's final rest: after its last clearly fast frame, and from where it
    stays within `err` (the waypoint error: a smaller motion is no waypoint) of its final pose."""
    n = len(x)
    if n == 0 or x.ndim != 2 or x.shape[1] == 0:
        return n
    far = np.flatnonzero(np.linalg.norm(x - x[-1], axis=1) > err)
    moving = np.flatnonzero(sp >= fast)
    return max(int(far[-1]) + 1 if len(far) else 0, int(moving[-1]) + 1 if len(moving) else 0)


def _returns(x: np.ndarray, a: int, s: int, e: int) -> bool:
    """Whether the leg [s, e) of the path heads back to the pose the arm started from at a (a retreat):
    its displacement points at the start (cosine >= `RETURN_COS`) and it ends nearer the start than
    `RETURN_SHARE` of the distance its own start had."""
    if x.shape[1] == 0 or not a <= s < e - 1:
        return False
    d, back = x[e - 1] - x[s], x[a] - x[s]
    nd, nb = float(np.linalg.norm(d)), float(np.linalg.norm(back))
    if nd < 1e-12 or nb < 1e-12:
        return False
    return float(d @ back) / (nd * nb) >= RETURN_COS and float(np.linalg.norm(x[e - 1] - x[a])) < RETURN_SHARE * nb


def _rises(x: np.ndarray, up: int | None, s: int, e: int, err: float) -> bool:
    """Whether the leg [s, e) of the path lifts the hand off upward: its displacement points up (the
    height column `up`) with cosine >= `RISE_COS`, and it never comes down more than `err` (the
    waypoint error) below where it started. False without a height column."""
    if up is None or x.shape[1] == 0 or not 0 <= s < e - 1:
        return False
    d = x[e - 1] - x[s]
    nd = float(np.linalg.norm(d))
    return nd > 1e-12 and float(d[up]) / nd >= RISE_COS and float(np.min(x[s:e, up])) >= float(x[s, up]) - err


def _turns(x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float,
           share: float = ACT_SHARE) -> list[int]:
    """The frames in [a, e) where the path turns sharply, the sharpest frame of each turn, in order: by
    more than `TURN_DEG` between its motion over the `TURN_S` of moving frames before and after it
    (frames slower than the pause speed are left out, so a stop at the corner does not hide the turn),
    with at least `share` of the stretch's path still to come. Where the hand reaches a part and starts
    to work it the motion turns (over, onto, then along the part's own axis); a part's own motion (a
    slide, a door's arc) turns gradually."""
    if x.shape[1] == 0 or e - a < 3:
        return []
    idx = a + np.flatnonzero(sp[a:e] > pause)
    w = max(1, round(TURN_S * fps))
    if len(idx) < 2 * w + 1:
        return []
    y = x[idx]
    steps = np.linalg.norm(np.diff(y, axis=0), axis=1)
    left = np.concatenate([np.cumsum(steps[::-1])[::-1], [0.0]])  # path length from each moving frame on
    total = float(left[0])
    if total <= 0:
        return []
    cos_max = float(np.cos(np.radians(TURN_DEG)))
    found: list[int] = []
    best, prev = None, -2
    for t in range(w, len(idx) - w):
        if left[t] < share * total:
            break
        d1, d2 = y[t] - y[t - w], y[t + w] - y[t]
        n1, n2 = float(np.linalg.norm(d1)), float(np.linalg.norm(d2))
        if n1 < 1e-12 or n2 < 1e-12:
            continue
        cos = float(d1 @ d2) / (n1 * n2)
        if cos >= cos_max:
            continue
        if t != prev + 1:  # a new turn: its sharpest frame counts
            best = None
            found.append(-1)
        if best is None or cos < best[0]:
            best = (cos, t)
        prev = t
        found[-1] = int(idx[best[1]])
    return found


def _last_turn(x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float) -> int | None:
    """The frame in [a, e) where the path last turns sharply (`_turns`) with at least `ACT_SHARE` of the
    stretch's path still to come; None when it never does."""
    found = _turns(x, sp, pause, a, e, fps)
    return found[-1] if found else None


def _lift_off(x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float, up: int,
              err: float) -> tuple[int, int] | None:
    """(the action's start, the hand's lift-off) when the path ends by rising off a part it worked. The
    sharp turns (`_turns`, any share of the path after them) cut the path into legs; the lift-off is the
    first turn of the last run of legs that rise (`_rises`) with the hand never coming down again below
    where the leg started (a rise that turns on its way up lifts off at its first turn; legs of the hand
    hovering after it are passed over). The action starts at the last sharp turn before it (any share of
    the path after it: the lift-off bounds the action, however short), from which the leg up to the
    lift-off does not rise. None when the path ends otherwise."""
    turns = _turns(x, sp, pause, a, e, fps, share=0.0)
    if not turns:
        return None
    off = None
    for r, nxt in reversed(list(zip(turns, [*turns[1:], e], strict=True))):
        if _rises(x, up, r, nxt, err) and float(np.min(x[r:e, up])) >= float(x[r, up]) - err:
            off = r
        elif off is not None:
            break
    if off is None:
        return None
    before = [t for t in turns if t < off]  # the lift-off ends the action: no share of the path need follow
    c0 = before[-1] if before else None
    return (c0, off) if c0 is not None and not _rises(x, up, c0, off, err) else None


def _label_part_action(labels: np.ndarray, x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int,
                       fps: float, bounds: list[int] | None, leaves_up: int | None = None,
                       err: float = 0.0) -> None:
    """No grasp, and the task works a part of the scene (`PART_ACTIONS`): the hand reaches the part, then
    works it: **reach** up to the path's last sharp turn (`_last_turn`), **act** after it. When that last
    leg heads back to the start pose (`_returns`) it is the **retreat**, and the action is the leg before
    it (from the turn before). Where the action does not move upward (`leaves_up`: the height column,
    given for a press / push / close into the part or a turn not "up"; `err` the waypoint error), a path
    that ends by rising off the part (`_lift_off`) is reach | act | **retreat** at those turns, the rise a
    **reach** instead when the hand heads back to the part (`_comes_back`: a re-approach). A last leg
    that comes back to its turn or stays within `err` of it (`_stays`) is a detour inside the action,
    which then starts at the turn before. Without a sharp turn (the approach bends smoothly into the
    action) the two-piece polyline through the path, cornered at an event boundary where there is one,
    splits reach | act; with no event boundary inside the stretch either, it is all the action."""
    off = _lift_off(x, sp, pause, a, e, fps, leaves_up, err) if leaves_up is not None else None
    if off is not None:
        labels[a : off[0]], labels[off[0] : off[1]] = REACH, ACT
        labels[off[1] : e] = REACH if _comes_back(x, off[1], e, err) else RETREAT
        return
    c = _last_turn(x, sp, pause, a, e, fps)
    if c is None:
        if not any(a < b < e for b in bounds or []):  # no turn, and the segmenter found no change of motion
            labels[a:e] = ACT  # in it: one motion, the task's action (the hand starts at the part)
            return
        _label_path(labels, x, sp, pause, a, e, (REACH, ACT), ACT, bounds)
        return
    if _returns(x, a, c, e):
        c0 = _last_turn(x, sp, pause, a, c, fps)
        labels[a : c0 if c0 is not None else a] = REACH
        labels[c0 if c0 is not None else a : c] = ACT
        labels[c:e] = RETREAT
        return
    if _comes_back(x, c, e, err) or _stays(x, c, e, err):  # the last leg returns where it turned, or never
        # leaves the waypoint error around it: a detour within the work (a hand slipping off and pressing
        # again, a wipe's last stroke, a wiggle), so the action started at the turn before
        c0 = _last_turn(x, sp, pause, a, c, fps)
        c = c0 if c0 is not None else c
    labels[a:c] = REACH
    labels[c:e] = ACT


def _leg_kind(x: np.ndarray, up: int, s: int, t: int, err: float) -> str:
    """"rise", "fall", "level" or "still": how the leg [s, t) of the path goes, by its displacement (up or
    down within `RISE_COS`; "still" when it moves no more than the waypoint error `err`)."""
    d = x[t - 1] - x[s]
    nd = float(np.linalg.norm(d))
    if nd <= err:
        return "still"
    if float(d[up]) / nd >= RISE_COS:
        return "rise"
    return "fall" if float(-d[up]) / nd >= RISE_COS else "level"


def _label_strokes(labels: np.ndarray, x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float,
                   up: int | None, err: float) -> None:
    """A part worked in several strokes (rule 9, module doc): the path's legs between its sharp turns
    (`_turns`, any share of the path after them); a level leg after the approach that the hand ends by
    rising off and then coming down again to the height it left (within the waypoint error `err`) is a
    stroke of the task's action (**act**), and the rise and the descent are a re-approach (**reach**),
    whatever the last-turn rule made of them (an expert or operator that works the part, lifts off, comes
    back and works it again; the episode may end on the way back). Needs the height column `up`."""
    if up is None or x.shape[1] == 0 or e - a < 3:
        return
    edges = [a, *_turns(x, sp, pause, a, e, fps, share=0.0), e]
    legs = [(s, t) for s, t in itertools.pairwise(edges) if t - s >= 2]
    kinds = [_leg_kind(x, up, s, t, err) for s, t in legs]
    i = 1
    while i < len(legs) - 2:
        if kinds[i] != "level" or kinds[i + 1] != "rise":
            i += 1
            continue
        j = i + 2
        while j < len(legs) and kinds[j] in ("rise", "still"):
            j += 1
        if j < len(legs) and kinds[j] == "fall" and x[legs[j][1] - 1, up] <= x[legs[i][1] - 1, up] + err:
            labels[legs[i][0] : legs[i][1]] = ACT
            labels[legs[i + 1][0] : legs[j][1]] = REACH
            i = j + 1
        else:
            i += 1


def _stays(x: np.ndarray, s: int, e: int, err: float) -> bool:
    """Whether the path [s, e) stays within the waypoint error `err` of x[s] (no leg of its own: the
    segmenter keeps no waypoint for a smaller motion)."""
    return x.shape[1] > 0 and 0 <= s < e and float(np.max(np.linalg.norm(x[s:e] - x[s], axis=1))) <= err


def _comes_back(x: np.ndarray, s: int, e: int, err: float) -> bool:
    """Whether the hand, having left at s the place where it worked a part, heads back to it before e: its
    distance from x[s] falls from its farthest by more than the waypoint error `err` and by at least
    `COME_BACK_SHARE` of that farthest distance. Such an excursion lies between two interactions with
    the part (the hand lifted off to come at it again): a re-approach (**reach**), not a retreat, which
    is the motion after the episode's last interaction, away from the part."""
    if x.shape[1] == 0 or not 0 <= s < e - 1:
        return False
    d = np.linalg.norm(x[s:e] - x[s], axis=1)
    far = float(d.max())
    back = far - float(d[-1])
    return back > err and back >= COME_BACK_SHARE * far


def _leaves(labels: np.ndarray, x: np.ndarray, a: int, e: int, up: int | None, err: float) -> bool:
    """Whether the **retreat** piece of [a, e) leaves: it heads back to the start pose (`_returns`) or
    lifts the hand off upward (`_rises`). True when there is no retreat piece."""
    r = np.flatnonzero(labels[a:e] == RETREAT)
    if len(r) == 0:
        return True
    s = a + int(r[0])
    return _returns(x, a, s, e) or _rises(x, up, s, e, err)


def slide_from_motion(labels: np.ndarray, x: np.ndarray) -> str:
    """Whether an undirected slide ("slide the block to the left") pushes or pulls, from the hand's motion:
    the action's displacement (its first to its last **act** frame) against the approach's (the first
    labelled frame to the action's start). A hand that keeps going the way it came moves the object away
    from where it came from, a **push**; one that turns back brings it toward that side, a **pull**
    (cosine > 0: push). "" when the arm has no action or no motion columns."""
    act = np.flatnonzero(labels == ACT)
    lab = np.flatnonzero(labels >= 0)
    if x.shape[1] == 0 or len(act) == 0 or len(lab) == 0:
        return ""
    s, e, a = int(act[0]), int(act[-1]), int(lab[0])
    d_act, d_app = x[e] - x[s], x[s] - x[a]
    if float(np.linalg.norm(d_act)) == 0.0 or float(np.linalg.norm(d_app)) == 0.0:
        return ""
    return "push" if float(d_act @ d_app) > 0 else "pull"


def _label_arm(sig: _ArmSignal, n: int, fps: float, cfg: SegmentConfig, is_push: bool,
               bounds: list[int] | None = None, grip: _Gripper | None = None, gets: set[int] | None = None,
               gives: set[int] | None = None, has_target: bool = False,
               action: str = "", result: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: phase code (IDLE when the arm rests outside any phase), grasp-cycle index, and
    whether the arm holds an object (between a close and the following open).

    `bounds` are the event boundaries of the episode (the segmenter's pauses and velocity minima);
    without a grasp they are the candidate corners of reach | push | retreat. `gets` / `gives` are
    the grasp cycles that receive an object from / hand it to another arm (`_handovers`);
    `has_target`: the task names where the object goes; `action`: the class of the instruction's verb
    (`TaskPhrases.action`): a part action without a grasp is reach | act (`_label_part_action`), and an
    insertion's last held piece is **act** (insert) instead of place; `result`: the instruction's particle
    ("up" makes a turn's rising last leg part of the action)."""
    labels = np.full(n, IDLE, int)
    cycle = np.zeros(n, int)
    held = np.zeros(n, bool)
    x = sig.motion
    sp = speed(x, fps) if x.shape[1] else np.zeros(n)
    pause, err = thresholds(sig.kind, cfg)
    fast = move_speed(sig.kind, cfg)
    bouts = _bouts(sp, fps, pause, fast, cfg) if x.shape[1] else []
    grip = grip or _gripper_events(sig, fps, cfg)
    states, cycles = grip.states, grip.cycles
    works_part = action in PART_ACTIONS or is_push
    if works_part and cycles and all(c is None for c, _ in cycles):
        # a gripper that only opens, never having closed in the episode, under an instruction that works a
        # part (press, push, pull, turn, wipe): nothing was picked up, the closed fingers were a fist or a
        # tool posture; no object is held and the opening is no release (rule 7)
        cycles = []
    gets, gives = gets or set(), gives or set()
    settle = max(1, round(SETTLE_S * fps))
    # without motion columns the arm counts as moving throughout (only the gripper tells the phases)
    first_move = (bouts[0][0] if bouts else n) if x.shape[1] else 0
    last_still = (bouts[-1][1] if bouts else 0) if x.shape[1] else n
    rest = _final_rest(x, sp, fast, err) if bouts else n

    def finish() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _label_regrasps(labels, sig.opening if sig.opening is not None else sig.gripper, held, fps, sp)
        out = _hold_to_end(labels)
        if rest < n:  # the final rest after the arm's last motion: it holds (its grasp / release stay)
            tail = out[rest:]
            tail[(tail >= 0) & (tail != GRASP) & (tail != RELEASE)] = HOLD
        return out, cycle, held

    if not cycles:
        if bouts and action in PART_ACTIONS and not is_push:
            # pushing, pressing and closing move into the part, a turn sideways (unless "up"): a last leg
            # that rises is the hand leaving it; a pull may lift the part (a lid), so it keeps its rise
            leaves_up = sig.up if action == "push" or (action == "turn" and result != "up") else None
            _label_part_action(labels, x, sp, pause, first_move, last_still, fps, bounds, leaves_up, err)
            _label_strokes(labels, x, sp, pause, first_move, last_still, fps, sig.up, err)
        elif bouts:
            mid = PUSH if is_push else MOVE
            _label_path(labels, x, sp, pause, first_move, last_still, (REACH, mid, RETREAT), mid, bounds)
            if not _leaves(labels, x, first_move, last_still, sig.up, err):  # cut while it pushes: no retreat
                _label_path(labels, x, sp, pause, first_move, last_still, (REACH, mid), mid, bounds)
        return finish()
    put = ACT if action == "insert" else PLACE  # the last held piece: an insertion, or a placement

    def settled(t: int, closed: bool) -> int:
        """The frame after the gripper state (hysteresis) has switched, from onset t."""
        if states is None:
            return min(n, t + settle)
        want = 0 if closed else 1
        later = np.flatnonzero(states[t:] == want)
        return min(n, t + (int(later[0]) if len(later) else 0) + 1)

    def descends(k: int) -> bool:
        """Whether the hand goes down from frame k to k + 1: faster than the pause speed, and mostly down (the
        drop is at least `RISE_COS` of the step). Fingers that close while the hand still descends close in
        on the object, so the grasp goes on (rule 1); a carry that sags on its way across is no descent."""
        if sig.up is None:
            return False
        d = x[k + 1] - x[k]
        drop, step = float(-d[sig.up]), float(np.linalg.norm(d))
        return drop * fps > pause and drop >= RISE_COS * step

    def moved_off(t: int, until: int, closed: bool) -> int:
        """Where a grasp / release from t ends: where the arm, having held, moves off. When it never
        held because it was still braking at the end of its previous motion (its speed only falls
        from t to the end of that bout), where its next bout starts (after the last release, when
        no motion follows: the episode's end); else where the gripper state has switched."""
        found = _move_off(sp, fps, t, until, fast, cfg)
        if found is not None:
            return found
        cur = next(((a, e) for a, e in bouts if a <= t < e), None)
        if cur is not None and float(np.max(sp[t : cur[1]])) <= BRAKING_RISE * float(sp[t]):
            nxt_bout = next((a for a, _ in bouts if cur[1] <= a < until), None)
            if nxt_bout is not None:
                return nxt_bout
            if not closed and until >= n:
                return n
        if closed:  # closing on the move: the grasp lasts while the hand still closes in on the object (its
            # speed falls) and the gripper switches; it ends where the hand speeds up again (carrying it off)
            hi = min(until, n, _travel_end(sig.gripper, t, False, fps) + round(GRASP_SETTLE_S * fps))
            k = t
            while k + 1 < hi and (sp[k + 1] <= sp[k] + RISE_FRACTION * fast or descends(k)):
                k += 1
            return min(until, max(settled(t, closed), k + 1))
        return min(until, settled(t, closed))

    prev_end = 0
    for k, (c, o) in enumerate(cycles):
        c0 = c if c is not None else 0
        stop = o if o is not None else n
        held[c0:stop] = True
        # approach: from the arm's first motion (first cycle) or from the previous release
        a = min(first_move, c0) if k == 0 else prev_end
        labels[a:c0], cycle[a:c0] = REACH, k
        if c is not None:
            ge = moved_off(c, stop, True)
            labels[c:ge], cycle[c:ge] = GRASP, k
        else:
            ge = min(first_move, stop)
        cycle[ge:stop] = k
        if works_part and k not in gets and k not in gives:
            # the instruction works a part or pushes the object: what the hand does while it holds the
            # handle, the mug or the plug is the task's action, not a carry (rule 8)
            end = max(ge, min(n, rest)) if o is None else o
            labels[ge:end] = ACT
            if o is None:
                return finish()
            nxt = cycles[k + 1][0] if k + 1 < len(cycles) and cycles[k + 1][0] is not None else n
            re_ = moved_off(o, nxt, False)
            labels[o:re_], cycle[o:re_] = RELEASE, k
            prev_end = re_
            continue
        if o is None:  # held to the end: up, then across (or to the target, where the arm comes to rest)
            names = (LIFT, put) if has_target and rest < n else (LIFT, MOVE)
            names = names[1:] if k in gets else names  # handed over: already up
            _label_path(labels, x, sp, pause, ge, max(ge, min(n, rest)), names, MOVE)
            if put == PLACE and sig.up is not None:  # a placement goes down: not lowered at all, it is a move
                last = np.flatnonzero(labels[ge:] == PLACE)
                if len(last) and x[ge + last[0], sig.up] - x[ge + last[-1], sig.up] <= err:
                    labels[ge + last] = MOVE
            return finish()
        names = (LIFT, MOVE, MOVE) if k in gives else (LIFT, MOVE, put)  # handing over: no place
        names = names[1:] if k in gets else names
        _label_path(labels, x, sp, pause, ge, o, names, MOVE)
        nxt = cycles[k + 1][0] if k + 1 < len(cycles) and cycles[k + 1][0] is not None else n
        re_ = moved_off(o, nxt, False)
        labels[o:re_], cycle[o:re_] = RELEASE, k
        prev_end = re_
    if last_still > prev_end:  # after the last release: the retreat (the rest that follows belongs to it)
        labels[prev_end:], cycle[prev_end:] = RETREAT, len(cycles) - 1
    return finish()


def _regrasps(g: np.ndarray, held: np.ndarray) -> list[tuple[int, int]]:
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
    for a, e in _runs(held):
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


def _label_regrasps(labels: np.ndarray, g: np.ndarray | None, held: np.ndarray, fps: float,
                    sp: np.ndarray | None = None) -> None:
    """Rule 10: while the arm holds what it closed on, fingers that open part-way and close on it again
    while the hand slows down (its speed where the closing ends at most `RECLOSE_SLOW` of its speed where it
    began; without motion columns, always) re-grasp it: the closing is a **grasp** (of whatever the held
    stretch was: a carry, a placement, the task's action), from the peak of the opening until the fingers
    stop closing, at least `SETTLE_S`. Fingers that settle while the hand keeps moving the object at speed
    are part of that motion."""
    if g is None or len(g) != len(labels) or not held.any() or not np.all(np.isfinite(g)):
        return
    settle = max(1, round(SETTLE_S * fps))
    for s, f in _regrasps(np.asarray(g, float), held):
        f = max(f, s + settle)
        moving = sp is not None and len(sp) == len(labels) and bool(np.any(sp))
        if moving and float(sp[min(f, len(sp)) - 1]) > RECLOSE_SLOW * float(sp[s]):
            continue  # the hand keeps moving the object: the fingers settle within that motion
        span = labels[s:f]
        span[np.isin(span, (LIFT, MOVE, PLACE, ACT))] = GRASP


def _hold_to_end(labels: np.ndarray) -> np.ndarray:
    """The rest after an arm's last phase belongs to that phase (it holds its final pose)."""
    act = np.flatnonzero(labels >= 0)
    if len(act):
        labels[act[-1] + 1 :] = labels[act[-1]]
    return labels


# ------------------------------------------------------------------------------------- events
@dataclass
class EventPhase:
    """The phase of one event: its name, the arm it is about ("both" when the arms do it together),
    the grasp cycle (object index), whether the arm holds an object (for "hold"), and the phases of
    other arms doing something else at the same time (named in the caption too)."""

    phase: str
    arm: str
    cycle: int = 0
    holds: bool = True
    others: list[EventPhase] = field(default_factory=list)
    action: str = ""  # for "act": the class the motion gives an undirected slide (`slide_from_motion`), else ""


def _run(labels: np.ndarray, t: int) -> tuple[int, int]:
    """[start, end) of the run of equal labels containing frame t."""
    v = labels[t]
    a = t
    while a > 0 and labels[a - 1] == v:
        a -= 1
    e = t
    while e < len(labels) and labels[e] == v:
        e += 1
    return a, e


@dataclass
class _Cand:
    """One arm's reading of one event."""

    arm: str
    phase: int  # the majority label of its non-idle frames
    acting: int  # frames in a phase other than idle or hold
    run: tuple[int, int]  # the run of that label containing its first frame in the event
    cycle: int
    holds: bool
    tail: int = 0  # frames of the final hold that follows that run (the rest the phase ends in)
    action: str = ""  # an undirected slide's class from the motion (`slide_from_motion`), for an "act"

    @property
    def run_len(self) -> int:
        return self.run[1] - self.run[0]


def _together(a: _Cand, b: _Cand) -> bool:
    """Two arms doing the same phase at once: their runs overlap by `TOGETHER_FRACTION` of the longer."""
    ov = min(a.run[1], b.run[1]) - max(a.run[0], b.run[0])
    return a.phase == b.phase and ov >= TOGETHER_FRACTION * max(a.run_len, b.run_len)


def _event_phase(cands: list[_Cand]) -> EventPhase | None:
    """The phase of one event from its arms' readings (see the module doc)."""
    if not cands:
        return None
    movers = [c for c in cands if c.phase != HOLD]
    if not movers:  # every arm holds still: a hold, with every arm that holds
        first = next((c for c in cands if c.holds), cands[0])
        arm = BOTH if len(cands) == 2 else first.arm
        return EventPhase(PHASES[HOLD], arm, first.cycle, holds=any(c.holds for c in cands))
    most = max(c.acting for c in movers)
    tied = [c for c in movers if c.acting >= TIE_FRACTION * most]
    main = min(tied, key=lambda c: (c.run_len + c.tail, -c.acting, c.arm))
    rest = [c for c in tied if c is not main]
    if len(cands) == 2 and rest and _together(main, rest[0]):
        return EventPhase(PHASES[main.phase], BOTH, main.cycle, main.holds, action=main.action)
    others = [EventPhase(PHASES[c.phase], c.arm, c.cycle, c.holds, action=c.action) for c in rest
              if c.phase != main.phase]
    return EventPhase(PHASES[main.phase], main.arm, main.cycle, main.holds, others, main.action)


def _event_phases_from_signals(ep: _Episode, phrases: TaskPhrases,
                               cfg: SegmentConfig) -> tuple[list[EventPhase | None], int]:
    """Per event: the phase of the arm(s) it is about (None when every arm rests), and the number of
    arms; `cfg` is the run's segmentation config (arms, grippers and thresholds as the segmenter saw them)."""
    sigs = _arm_signals(ep, cfg)
    grips = [_gripper_events(s, ep.fps, cfg) for s in sigs]
    gets, gives = _handovers(sigs, grips, ep.fps, phrases)
    if len(sigs) == 1 and phrases.hands_over:  # the one arm recorded hands its objects to someone unseen
        gives = [set(range(len(grips[0].cycles)))]
    tracks = []
    for sig, grip, get, give in zip(sigs, grips, gets, gives, strict=True):
        mine = phrases.for_arm(sig.name)
        labels, cycle, held = _label_arm(sig, ep.n, ep.fps, cfg, phrases.is_push, ep.starts[1:], grip, get, give,
                                         bool(mine.target), mine.action or phrases.action,
                                         mine.result if mine.action else phrases.result)
        slide = slide_from_motion(labels, sig.motion) if phrases.undirected else ""
        tracks.append((sig.name, labels, cycle, held, slide))
    out: list[EventPhase | None] = []
    for s, e in zip(ep.starts, ep.ends, strict=True):
        cands = []
        for name, labels, cycle, held, slide in tracks:
            lab = labels[s:e]
            act = lab[lab >= 0]
            if len(act) == 0:
                continue
            counts = np.bincount(act, minlength=len(PHASES))
            top = set(np.flatnonzero(counts == counts.max()).tolist())
            ph = next(int(v) for v in lab if v in top)  # ties: the phase that comes first in the event
            t = s + int(np.flatnonzero(lab == ph)[0])
            k = int(np.bincount(cycle[s:e][lab == ph]).argmax())
            acting = int(np.sum((lab >= 0) & (lab != HOLD)))
            run = _run(labels, t)
            tail = ep.n - run[1] if run[1] < ep.n and np.all(labels[run[1] :] == HOLD) else 0
            cands.append(_Cand(name, ph, acting, run, k, bool(held[e - 1]), tail, slide if ph == ACT else ""))
        out.append(_event_phase(cands))
    return out, len(tracks)


def _event_phases_from_reasons(events: list[EventView]) -> list[EventPhase | None]:
    """Without signals: gripper boundary reasons give grasp/release; the rest follows their order."""
    closes = [i for i, v in enumerate(events) if v.start_reason == GRIPPER_CLOSE]
    if not closes:
        return [EventPhase("move", SINGLE_ARM, 0) for _ in events]
    out: list[EventPhase | None] = []
    cycle, holding = -1, False
    for i, v in enumerate(events):
        if v.start_reason == GRIPPER_CLOSE:
            cycle, holding = cycle + 1, True
            out.append(EventPhase("grasp", SINGLE_ARM, cycle))
        elif v.start_reason == GRIPPER_OPEN and cycle >= 0:  # before the first close: nothing is held
            holding = False
            out.append(EventPhase("release", SINGLE_ARM, max(cycle, 0)))
        elif holding:
            out.append(EventPhase("move", SINGLE_ARM, cycle))
        elif any(c > i for c in closes):
            out.append(EventPhase("reach", SINGLE_ARM, cycle + 1))
        else:
            out.append(EventPhase("retreat", SINGLE_ARM, max(cycle, 0)))
    return out


def episode_phases(events: list[EventView], cfg: SegmentConfig | None = None) -> tuple[list[EventPhase], int]:
    """(the phase of each event of one episode, the number of arms), with the run's `segment.*`."""
    phrases = parse_task(events[0].task)
    ep = _assemble(events)
    has_signal = ep.state is not None or (ep.gripper is not None and np.ptp(ep.gripper) > 0)
    raw, arms = (_event_phases_from_signals(ep, phrases, cfg or SegmentConfig()) if has_signal
                 else ([None] * len(events), 1))
    if all(r is None for r in raw):
        raw = _event_phases_from_reasons(events)
    # an event where every arm rests belongs to the phase it follows (a first one: to the next)
    out: list[EventPhase] = []
    for i, r in enumerate(raw):
        if r is None:
            r = out[-1] if out else next((x for x in raw[i + 1 :] if x is not None), EventPhase("reach", SINGLE_ARM))
        out.append(r)
    return out, arms


def event_phases(events: list[EventView], cfg: SegmentConfig | None = None) -> list[EventPhase]:
    """The phase, arm and object index of each event of one episode, in order. Deterministic."""
    return episode_phases(events, cfg)[0] if events else []


def label_phases(events: list[EventView], cfg: SegmentConfig | None = None) -> list[str]:
    """The phase name (see PHASES) of each event of one episode, in order. Deterministic."""
    return [p.phase for p in event_phases(events, cfg)]
