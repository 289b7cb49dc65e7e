"""Phase labelling for the kinematic captioner: which phase each event of an episode is, per arm.

It labels PHASES PER ARM, frame by frame, on the whole episode (the event rows of one episode
tile it), then gives each event the phase of the arm(s) acting in it. Only signals that any
teleoperation recording has are used, read in physical units through `carve.ingest` (the
segmenter's own readers and the run's `segment.*` thresholds), so one configuration serves every
robot, simulator and frame rate.

This module holds the rules and applies them. What it reads lives beside it: `signals` (the
episode reassembled from its rows, each arm's gripper and motion signals, grasp cycles, hand-overs
and re-grasps), `paths` (the path geometry: motion bouts, the polyline fit, sharp turns, legs that
return, rise or come back, the final rest) and `event_phase` (the phase names and codes,
`EventPhase`, and the choice of one event's phase from its arms' readings).

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
   three-piece polyline fit of the path (in the arm's motion space; `paths.label_path`) gives the
   three pieces. The first piece is **lift**, the middle one **move**, the last one **place**; a
   hold at a corner belongs to the piece it ends. Held until the episode ends (never released):
   two pieces, lift and move (lift and **place** when the task names a target and the arm comes to rest: the object reached it).
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
   drawer or door, close a window, press a button, turn a faucet), the hand reaches the part and
   then works it: **reach** up to the path's last sharp turn (`paths.sharp_turns`), **act** after
   it (the task's action: "pull the drawer open"); when that last leg heads back to the start
   pose it is the **retreat** and the action is the leg before it; when the action moves into
   the part or sideways (push, press, close; a turn not "up") and the path ends by rising off the
   part, never to come down again, the rise is the **retreat** and the leg before it the action
   ("turn the faucet on", then "retreat from the faucet"); the action then starts at the last
   sharp turn before the lift-off, however short the action's own leg (a dial turned by 2 cm). A
   retreat is the motion after the episode's LAST interaction: when the hand, having left the
   part, heads back to it (`paths.comes_back`), the excursion is a re-approach between
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

11. **Pressing on, not holding still.** Where the actions are Cartesian deltas (`signals.commanded_speed`),
   a final rest (rule 6) in which the command keeps asking for clear motion (at least the moving speed)
   that the hand does not make (below `PRESS_SHARE` of it, on at least half of the rest's frames) is the
   hand pushing against what it touches: after a press, push, part action or placement it is that action
   held (a button kept down, a block pressed into its hole), not a hold. An arm that rests because its
   command has stopped still holds (an expert's or operator's final "stay"); absolute-position actions say
   nothing of this and keep rule 6.

12. **A tool is carried, then worked with.** Where rule 8 holds and the instruction names a tool the hand
   works with ("push the thermos with the stick", "hammer the nail": `TaskPhrases.tool`), the hand first
   brings the tool to the part: the held stretch is a carry (**lift**) up to its last sharp turn
   (`last_turn`), the action after it (all of it the action when the path never turns sharply). An
   instruction whose verb is a reach ("reach the goal", "touch the cup") makes an arm's motion, without a
   grasp, all **reach**.

13. **A held object turned in place.** Where the arm records its orientation or joints beside its hand's
   position, frames in which the hand holds what it closed on and turns without moving (`signals.turning`:
   the segmenter's `turns_in_place`) are a **turn** ("turn the peg": stood upright, poured, flipped), not a
   carry, placement or hold; the task's action under rule 8 keeps its own verb.

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

import numpy as np

from carve.captioners.base import EventView
from carve.captioners.event_phase import (
    ACT,
    GRASP,
    HOLD,
    IDLE,
    LIFT,
    MOVE,
    PHASES,
    PLACE,
    PUSH,
    REACH,
    RELEASE,
    RETREAT,
    TURN,
    Cand,
    EventPhase,
    event_phase,
    label_run,
)
from carve.captioners.paths import (
    RISE_COS,
    comes_back,
    final_rest,
    label_path,
    last_turn,
    leg_kind,
    lift_off,
    motion_bouts,
    move_off,
    returns,
    rises,
    sharp_turns,
    stays,
)
from carve.captioners.signals import (
    SETTLE_S,
    ArmSignal,
    Episode,
    Gripper,
    arm_signals,
    assemble,
    gripper_events,
    handovers,
    regrasps,
    travel_end,
)
from carve.captioners.task_text import TaskPhrases, parse_task
from carve.core.config import SegmentConfig
from carve.ingest.arms import SINGLE_ARM
from carve.ingest.gripper import GRIPPER_CLOSE, GRIPPER_OPEN
from carve.ingest.kinematics import move_speed, speed, thresholds

# instruction verb classes (`verb_classes`) whose action works a part of the scene without carrying
# it (a drawer pulled open, a button pressed, a faucet turned or a lock locked, a table wiped): no grasp
# cycle needed
PART_ACTIONS = ("pull", "push", "turn", "wipe")
GRASP_SETTLE_S = 0.5  # a grasp closed on the move ends at the latest this long after the fingers stop
RISE_FRACTION = 0.1  # ... or where the hand's speed rises by more than this share of the moving speed
BRAKING_RISE = 1.1  # an arm braking to rest: its speed never rises above this x its speed at the start
PRESS_SHARE = 0.25  # a rest whose hand makes less than this share of the speed its command asks for presses on (rule 11)
PRESSING = (ACT, PUSH, PLACE)  # the actions a hand goes on doing against what it touches (rule 11)
RECLOSE_SLOW = 0.5  # a re-grasp (`signals.regrasps`) when the hand slows through the closing: its speed where it ends is at most this share of where it began



# ------------------------------------------------------------------------------------- one arm
def _label_part_action(labels: np.ndarray, x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int,
                       fps: float, bounds: list[int] | None, leaves_up: int | None = None,
                       err: float = 0.0) -> None:
    """No grasp, and the task works a part of the scene (`PART_ACTIONS`): the hand reaches the part, then
    works it: **reach** up to the path's last sharp turn (`last_turn`), **act** after it. When that last
    leg heads back to the start pose (`returns`) it is the **retreat**, and the action is the leg before
    it (from the turn before). Where the action does not move upward (`leaves_up`: the height column,
    given for a press / push / close into the part or a turn not "up"; `err` the waypoint error), a path
    that ends by rising off the part (`lift_off`) is reach | act | **retreat** at those turns, the rise a
    **reach** instead when the hand heads back to the part (`comes_back`: a re-approach). A last leg
    that comes back to its turn or stays within `err` of it (`stays`) is a detour inside the action,
    which then starts at the turn before. Without a sharp turn (the approach bends smoothly into the
    action) the two-piece polyline through the path, cornered at an event boundary where there is one,
    splits reach | act; with no event boundary inside the stretch either, it is all the action."""
    off = lift_off(x, sp, pause, a, e, fps, leaves_up, err) if leaves_up is not None else None
    if off is not None:
        labels[a : off[0]], labels[off[0] : off[1]] = REACH, ACT
        labels[off[1] : e] = REACH if comes_back(x, off[1], e, err) else RETREAT
        return
    c = last_turn(x, sp, pause, a, e, fps)
    if c is None:
        if not any(a < b < e for b in bounds or []):  # no turn, and the segmenter found no change of motion
            labels[a:e] = ACT  # in it: one motion, the task's action (the hand starts at the part)
            return
        label_path(labels, x, sp, pause, a, e, (REACH, ACT), ACT, bounds)
        return
    if returns(x, a, c, e):
        c0 = last_turn(x, sp, pause, a, c, fps)
        labels[a : c0 if c0 is not None else a] = REACH
        labels[c0 if c0 is not None else a : c] = ACT
        labels[c:e] = RETREAT
        return
    if comes_back(x, c, e, err) or stays(x, c, e, err):  # the last leg returns where it turned, or never
        # leaves the waypoint error around it: a detour within the work (a hand slipping off and pressing
        # again, a wipe's last stroke, a wiggle), so the action started at the turn before
        c0 = last_turn(x, sp, pause, a, c, fps)
        c = c0 if c0 is not None else c
    labels[a:c] = REACH
    labels[c:e] = ACT


def _label_strokes(labels: np.ndarray, x: np.ndarray, sp: np.ndarray, pause: float, a: int, e: int, fps: float,
                   up: int | None, err: float) -> None:
    """A part worked in several strokes (rule 9, module doc): the path's legs between its sharp turns
    (`sharp_turns`, any share of the path after them); a level leg after the approach that the hand ends by
    rising off and then coming down again to the height it left (within the waypoint error `err`) is a
    stroke of the task's action (**act**), and the rise and the descent are a re-approach (**reach**),
    whatever the last-turn rule made of them (an expert or operator that works the part, lifts off, comes
    back and works it again; the episode may end on the way back). Needs the height column `up`."""
    if up is None or x.shape[1] == 0 or e - a < 3:
        return
    edges = [a, *sharp_turns(x, sp, pause, a, e, fps, share=0.0), e]
    legs = [(s, t) for s, t in itertools.pairwise(edges) if t - s >= 2]
    kinds = [leg_kind(x, up, s, t, err) for s, t in legs]
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


def _leaves(labels: np.ndarray, x: np.ndarray, a: int, e: int, up: int | None, err: float) -> bool:
    """Whether the **retreat** piece of [a, e) leaves: it heads back to the start pose (`returns`) or
    lifts the hand off upward (`rises`). True when there is no retreat piece."""
    r = np.flatnonzero(labels[a:e] == RETREAT)
    if len(r) == 0:
        return True
    s = a + int(r[0])
    return returns(x, a, s, e) or rises(x, up, s, e, err)


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


def _label_arm(sig: ArmSignal, n: int, fps: float, cfg: SegmentConfig, is_push: bool,
               bounds: list[int] | None = None, grip: Gripper | None = None, gets: set[int] | None = None,
               gives: set[int] | None = None, has_target: bool = False,
               action: str = "", result: str = "", tool: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: phase code (IDLE when the arm rests outside any phase), grasp-cycle index, and
    whether the arm holds an object (between a close and the following open).

    `bounds` are the event boundaries of the episode (the segmenter's pauses and velocity minima);
    without a grasp they are the candidate corners of reach | push | retreat. `gets` / `gives` are
    the grasp cycles that receive an object from / hand it to another arm (`handovers`);
    `has_target`: the task names where the object goes; `action`: the class of the instruction's verb
    (`TaskPhrases.action`): a part action without a grasp is reach | act (`_label_part_action`), and an
    insertion's last held piece is **act** (insert) instead of place; `result`: the instruction's particle
    ("up" makes a turn's rising last leg part of the action); `tool`: the instruction names a tool the hand
    works with ("with the stick", "hammer the nail": rule 12)."""
    labels = np.full(n, IDLE, int)
    cycle = np.zeros(n, int)
    held = np.zeros(n, bool)
    x = sig.motion
    sp = speed(x, fps) if x.shape[1] else np.zeros(n)
    pause, err = thresholds(sig.kind, cfg)
    fast = move_speed(sig.kind, cfg)
    bouts = motion_bouts(sp, fps, pause, fast, cfg) if x.shape[1] else []
    grip = grip or gripper_events(sig, fps, cfg)
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
    rest = final_rest(x, sp, fast, err) if bouts else n

    def finish() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _label_regrasps(labels, sig.opening if sig.opening is not None else sig.gripper, held, fps, sp)
        out = _hold_to_end(labels)
        if rest < n:  # the final rest after the arm's last motion: it holds (its grasp / release stay)
            tail = out[rest:]
            pressed = _pressed_on(out, rest, sp, sig.commanded, fast)  # rule 11
            tail[(tail >= 0) & (tail != GRASP) & (tail != RELEASE)] = HOLD if pressed is None else pressed
        if sig.turning is not None:  # rule 13: a held object turned in the hand, the hand's position still
            out[sig.turning & held & np.isin(out, (LIFT, MOVE, PLACE, HOLD))] = TURN
        return out, cycle, held

    if not cycles:
        if bouts and action in PART_ACTIONS and not is_push:
            # pushing, pressing and closing move into the part, a turn sideways (unless "up"): a last leg
            # that rises is the hand leaving it; a pull may lift the part (a lid), so it keeps its rise
            leaves_up = sig.up if action == "push" or (action == "turn" and result != "up") else None
            _label_part_action(labels, x, sp, pause, first_move, last_still, fps, bounds, leaves_up, err)
            _label_strokes(labels, x, sp, pause, first_move, last_still, fps, sig.up, err)
        elif bouts and action == "reach":  # "reach the goal", "touch the cup": the motion is the reach
            labels[first_move:last_still] = REACH
        elif bouts:
            mid = PUSH if is_push else MOVE
            label_path(labels, x, sp, pause, first_move, last_still, (REACH, mid, RETREAT), mid, bounds)
            if not _leaves(labels, x, first_move, last_still, sig.up, err):  # cut while it pushes: no retreat
                label_path(labels, x, sp, pause, first_move, last_still, (REACH, mid), mid, bounds)
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
        found = move_off(sp, fps, t, until, fast, cfg)
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
            hi = min(until, n, travel_end(sig.gripper, t, False, fps) + round(GRASP_SETTLE_S * fps))
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
            if tool:  # a tool is carried to the part, then worked with (rule 12): the action from the last turn
                c = last_turn(x, sp, pause, ge, end, fps) if x.shape[1] else None
                labels[ge : c if c is not None else ge] = LIFT
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
            label_path(labels, x, sp, pause, ge, max(ge, min(n, rest)), names, MOVE)
            if put == PLACE and sig.up is not None:  # a placement goes down: not lowered at all, it is a move
                last = np.flatnonzero(labels[ge:] == PLACE)
                if len(last) and x[ge + last[0], sig.up] - x[ge + last[-1], sig.up] <= err:
                    labels[ge + last] = MOVE
            return finish()
        names = (LIFT, MOVE, MOVE) if k in gives else (LIFT, MOVE, put)  # handing over: no place
        names = names[1:] if k in gets else names
        label_path(labels, x, sp, pause, ge, o, names, MOVE)
        nxt = cycles[k + 1][0] if k + 1 < len(cycles) and cycles[k + 1][0] is not None else n
        re_ = moved_off(o, nxt, False)
        labels[o:re_], cycle[o:re_] = RELEASE, k
        prev_end = re_
    if last_still > prev_end:  # after the last release: the retreat (the rest that follows belongs to it)
        labels[prev_end:], cycle[prev_end:] = RETREAT, len(cycles) - 1
    return finish()


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
    for s, f in regrasps(np.asarray(g, float), held):
        f = max(f, s + settle)
        moving = sp is not None and len(sp) == len(labels) and bool(np.any(sp))
        if moving and float(sp[min(f, len(sp)) - 1]) > RECLOSE_SLOW * float(sp[s]):
            continue  # the hand keeps moving the object: the fingers settle within that motion
        span = labels[s:f]
        span[np.isin(span, (LIFT, MOVE, PLACE, ACT))] = GRASP


def _pressed_on(labels: np.ndarray, rest: int, sp: np.ndarray, commanded: np.ndarray | None,
                fast: float) -> int | None:
    """The label the final rest from `rest` keeps when the hand presses on (rule 11): the action it rests
    after (act, push or place), when the command asks for clear motion the hand does not make on at least
    half of the rest's frames; None otherwise (the rest is a hold)."""
    if commanded is None or rest <= 0 or rest >= len(labels) or labels[rest - 1] not in PRESSING:
        return None
    ask = commanded[rest:]
    blocked = (ask >= fast) & (sp[rest:] < PRESS_SHARE * ask)
    return int(labels[rest - 1]) if float(blocked.mean()) >= 0.5 else None


def _hold_to_end(labels: np.ndarray) -> np.ndarray:
    """The rest after an arm's last phase belongs to that phase (it holds its final pose)."""
    act = np.flatnonzero(labels >= 0)
    if len(act):
        labels[act[-1] + 1 :] = labels[act[-1]]
    return labels


# ------------------------------------------------------------------------------------- events
def _event_phases_from_signals(ep: Episode, phrases: TaskPhrases,
                               cfg: SegmentConfig) -> tuple[list[EventPhase | None], int]:
    """Per event: the phase of the arm(s) it is about (None when every arm rests), and the number of
    arms; `cfg` is the run's segmentation config (arms, grippers and thresholds as the segmenter saw them)."""
    sigs = arm_signals(ep, cfg)
    grips = [gripper_events(s, ep.fps, cfg) for s in sigs]
    gets, gives = handovers(sigs, grips, ep.fps, phrases)
    if len(sigs) == 1 and phrases.hands_over:  # the one arm recorded hands its objects to someone unseen
        gives = [set(range(len(grips[0].cycles)))]
    tracks = []
    for sig, grip, get, give in zip(sigs, grips, gets, gives, strict=True):
        mine = phrases.for_arm(sig.name)
        labels, cycle, held = _label_arm(sig, ep.n, ep.fps, cfg, phrases.is_push, ep.starts[1:], grip, get, give,
                                         bool(mine.target), mine.action or phrases.action,
                                         mine.result if mine.action else phrases.result,
                                         bool(mine.tool or phrases.tool))
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
            run = label_run(labels, t)
            tail = ep.n - run[1] if run[1] < ep.n and np.all(labels[run[1] :] == HOLD) else 0
            cands.append(Cand(name, ph, acting, run, k, bool(held[e - 1]), tail, slide if ph == ACT else ""))
        out.append(event_phase(cands))
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
    ep = assemble(events)
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
