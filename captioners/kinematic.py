"""The offline kinematic captioner: a deterministic HEURISTIC, not a model.

It describes each event of an episode from its signals alone (no pixels): the per-frame
gripper opening (`gripper`, in [0, 1]), the arm motion (state rows without the gripper
column), the boundary reasons and the event's position in its episode, plus the objects and
target parsed from the episode's task text. The rules, per episode:

0. Events split only by `max_len` (an arbitrary cut) are labelled as one.
1. An event whose gripper opening falls by more than `GRIP_DELTA` is a *grasp*; one whose
   opening rises by more than `GRIP_DELTA` is a *release* (boundary reasons
   `gripper_close`/`gripper_open` at the event's start count when there is no gripper
   signal). A gripper event that is mostly arm motion after the fingers settled is the
   motion instead: grasp+lift is a *lift*, release+retreat a *retreat* (or the next *reach*).
2. Between a grasp and the following release the object is held: the held events are
   *lift* (first), *place* (last) and *move* (the rest); with only two held events the
   longer one is the *move*, with one it is a *move*.
3. With the gripper open: events before a grasp *reach* toward the next object, events after
   the last release *retreat*.
4. Without any grasp in the episode (a closed fist, e.g. "push ..." tasks): the first moving
   event is a *reach*, the last one a *retreat* (with 3+ moving events, or when it returns
   towards the start pose, or when the first event is much longer, i.e. two motions merged),
   the ones in between *push* when the task asks for a push, else *move*.
5. An event with (almost) no arm or gripper motion repeats its predecessor's phase: a dwell
   belongs to the phase it follows (a first idle event is part of the reach).

Phrases come from `parse_task`: "put the red cube in the tray" gives object "the red cube",
target "the tray", relation "in"; "put A and then B in the tray" gives two objects (the
k-th grasp cycle handles the k-th object); arbitrary task text degrades to "the object" and
"the target". The same input always gives the same captions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from carve.captioners.base import Captioner, CaptionResult, EventView
from carve.core.config import CaptionConfig

GRIP_DELTA = 0.3  # change of the normalised opening that counts as closing/opening
STILL_FRACTION = 0.08  # arm path below this fraction of the episode's longest event path = still
HOME_FRACTION = 0.35  # end pose within this fraction of the episode's pose range of the start = home

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push")


# ------------------------------------------------------------------------------------- task text
@dataclass
class TaskPhrases:
    """Noun phrases parsed from a task instruction."""

    objects: list[str] = field(default_factory=lambda: ["the object"])
    target: str = ""  # "the tray", "the blue cube"; "" when the task names none
    relation: str = "in"  # "in", "on", "to" ...
    direction: str = ""  # for pushes: "to the left"
    is_push: bool = False

    def obj(self, k: int) -> str:
        return self.objects[min(k, len(self.objects) - 1)]


_DET = r"(?:the|a|an|this|that)"
_REL = r"(in|into|inside|on|onto|on top of|to|towards?|next to|onto the top of|over|under|beside|at)"
_PUT_VERBS = r"(?:put|place|move|stack|set|drop|transfer|carry|bring|pick up|pick|lay|insert|hang|stow)"
_PUSH_VERBS = r"(?:push|slide|shove|nudge|sweep)"
_DIRECTIONS = r"(?:left|right|front|back|forward|backward|away|the side)"


def _np(phrase: str) -> str:
    """Normalise a noun phrase: lowercase words, a determiner in front."""
    words = re.sub(r"[^\w\s-]", " ", phrase.lower()).split()
    if not words:
        return ""
    if words[0] not in ("the", "a", "an", "this", "that", "it"):
        words.insert(0, "the")
    if words[0] in ("a", "an", "this", "that"):
        words[0] = "the"
    return " ".join(words)


def _cut_clause(phrase: str) -> str:
    """A noun phrase without a trailing clause ("the cup and close the lid" -> "the cup")."""
    return re.split(r"\s*(?:,|\band\b|\bthen\b|\bwhile\b|\bso\b|\bafter\b)\s*", phrase, maxsplit=1)[0].strip()


def parse_task(task: str) -> TaskPhrases:
    """Objects, target and relation of a task instruction (never raises)."""
    text = " ".join(re.sub(r"[^\w\s,'-]", " ", (task or "").lower()).split())
    # "pick up X and place it on Y" -> "pick up X on Y"
    text = re.sub(rf"\s*,?\s+and(?:\s+then)?\s+{_PUT_VERBS}\s+(?:it|them)\b", "", text)
    out = TaskPhrases()
    if not text:
        return out
    m = re.match(rf"^(?:please\s+)?{_PUSH_VERBS}\s+(.+)$", text)
    if m:
        out.is_push = True
        rest = m.group(1)
        dm = re.search(rf"\s+((?:(?:to|towards?)\s+(?:the\s+)?)?{_DIRECTIONS})(?:\s.*)?$", rest)
        tm = re.search(rf"\s+{_REL}\s+(.+)$", rest)
        if dm:
            out.direction = dm.group(1)
            out.relation = "to"
            rest = rest[: dm.start()]
        elif tm:
            out.relation, out.target = tm.group(1), _np(_cut_clause(tm.group(2)))
            rest = rest[: tm.start()]
        out.objects = [_np(_cut_clause(rest)) or "the object"]
        return out
    m = re.match(rf"^(?:please\s+)?{_PUT_VERBS}\s+(.+?)\s+{_REL}\s+(.+)$", text)
    if m:
        objs = re.split(r"\s*(?:,\s*and then|,\s*then|\s+and then|\s+then|,\s*and|\s+and|,)\s+", m.group(1))
        objs = [_np(o) for o in objs if _np(o) and _np(o) not in ("it", "the it")]
        out.objects = objs or ["the object"]
        out.relation = {"into": "in", "inside": "in", "onto": "on", "on top of": "on",
                        "onto the top of": "on"}.get(m.group(2), m.group(2))
        out.target = _np(_cut_clause(m.group(3)))
        return out
    # "pick up the X" / "grasp the X" / "open the drawer": the first noun phrase after the verb
    m = re.match(rf"^(?:please\s+)?[\w-]+(?:\s+up)?\s+({_DET}\s+.+)$", text)
    if m:
        out.objects = [_np(_cut_clause(m.group(1)))]
    return out


# ------------------------------------------------------------------------------------- signals
@dataclass
class _Signals:
    g_start: float | None
    g_end: float | None
    g_drop: float  # largest fall of the opening inside the event (>= 0)
    g_rise: float  # largest rise of the opening inside the event (>= 0)
    g_mean: float | None
    path: float  # arm path length in the state's units
    path_after_grip: float  # arm path after the gripper transition has (nearly) finished
    frac_after_grip: float  # fraction of the event's frames after that point
    start_pose: np.ndarray
    end_pose: np.ndarray
    frames: int


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


def _arm(view: EventView, gdim: int | None) -> np.ndarray:
    m = view.state if view.state.ndim == 2 and view.state.size else view.action
    if m.ndim != 2 or m.size == 0:
        return np.zeros((max(1, view.num_frames), 1), np.float32)
    if gdim is not None and m is view.state and m.shape[1] > 1:
        m = np.delete(m, gdim, axis=1)
    return m


def _signals(view: EventView, gdim: int | None) -> _Signals:
    g = np.asarray(view.gripper, np.float64)
    arm = _arm(view, gdim).astype(np.float64)
    path = float(np.linalg.norm(np.diff(arm, axis=0), axis=1).sum()) if len(arm) > 1 else 0.0
    path_after, frac_after = 0.0, 0.0
    if len(g):
        run_max = np.maximum.accumulate(g)
        run_min = np.minimum.accumulate(g)
        drop, rise = float(np.max(run_max - g)), float(np.max(g - run_min))
        gs, ge, gm = float(g[0]), float(g[-1]), float(g.mean())
        if max(drop, rise) >= GRIP_DELTA:
            settled = np.flatnonzero(np.abs(g - g[-1]) > 0.1)
            t_c = int(settled[-1]) + 1 if len(settled) else 0
            if len(arm) == len(g) and t_c < len(arm) - 1:
                path_after = float(np.linalg.norm(np.diff(arm[t_c:], axis=0), axis=1).sum())
            frac_after = (len(g) - t_c) / len(g)
    else:
        drop = rise = 0.0
        gs = ge = gm = None
    return _Signals(gs, ge, drop, rise, gm, path, path_after, frac_after, arm[0], arm[-1], max(1, view.num_frames))


# ------------------------------------------------------------------------------------- labelling
def _merge_max_len(events: list[EventView]) -> tuple[list[EventView], list[int]]:
    """Join events split only by `max_len` (an arbitrary cut, not a semantic one).

    Returns the merged views and, per original event, the index of its merged view.
    """
    merged: list[EventView] = []
    owner: list[int] = []
    for v in events:
        if merged and v.start_reason == "max_len" and merged[-1].end_frame == v.start_frame:
            m = merged[-1]
            merged[-1] = EventView(
                episode_id=m.episode_id, event_index=m.event_index, num_events=m.num_events, task=m.task,
                start_frame=m.start_frame, end_frame=v.end_frame, fps=m.fps, start_reason=m.start_reason,
                boundary_reason=v.boundary_reason, keyframes=m.keyframes,
                state=_vstack(m.state, v.state), action=_vstack(m.action, v.action),
                gripper=np.concatenate([np.asarray(m.gripper, np.float32), np.asarray(v.gripper, np.float32)]),
                row=m.row,
            )
        else:
            merged.append(v)
        owner.append(len(merged) - 1)
    return merged, owner


def _vstack(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim == 2 and b.ndim == 2 and a.size and b.size and a.shape[1] == b.shape[1]:
        return np.vstack([a, b])
    return np.zeros((0, 0), np.float32)


def label_phases(events: list[EventView]) -> list[str]:
    """The phase name (see PHASES) of each event of one episode, in order. Deterministic."""
    if not events:
        return []
    merged, owner = _merge_max_len(events)
    labels = _label_merged(merged)
    return [labels[k] for k in owner]


def _label_merged(events: list[EventView]) -> list[str]:
    n = len(events)
    phrases = parse_task(events[0].task)
    gdim = None
    for v in events:
        gdim = _gripper_dim(v.state, np.asarray(v.gripper)) if v.state.ndim == 2 else None
        if gdim is not None:
            break
    sig = [_signals(v, gdim) for v in events]
    longest = max(s.path for s in sig) or 1.0
    still = [s.path < STILL_FRACTION * longest and s.g_drop < GRIP_DELTA and s.g_rise < GRIP_DELTA for s in sig]
    # a gripper event that is mostly the arm moving afterwards (e.g. "grasp + lift" in one event)
    motion_led = [s.frac_after_grip > 0.5 and s.path_after_grip > STILL_FRACTION * longest for s in sig]

    labels: list[str | None] = [None] * n
    for i, (v, s) in enumerate(zip(events, sig, strict=True)):
        if s.g_drop >= GRIP_DELTA and s.g_drop >= s.g_rise:
            labels[i] = "grasp"
        elif s.g_rise >= GRIP_DELTA:
            labels[i] = "release"
        elif s.g_start is None and v.start_reason == "gripper_close":
            labels[i] = "grasp"
        elif s.g_start is None and v.start_reason == "gripper_open":
            labels[i] = "release"
    # a grasp/release split over two events: keep the one with the larger change
    for i in range(1, n):
        if labels[i] is not None and labels[i] == labels[i - 1]:
            key = "g_drop" if labels[i] == "grasp" else "g_rise"
            weaker = i if getattr(sig[i], key) < getattr(sig[i - 1], key) else i - 1
            labels[weaker] = None if not still[weaker] else labels[weaker]

    if any(lab == "grasp" for lab in labels):
        _label_pick_cycles(labels, sig, still, motion_led)
    else:
        _label_no_grasp(labels, sig, still, phrases)
    # dwell-only events repeat the phase they follow (a first idle event is part of the reach)
    out: list[str] = []
    for i in range(n):
        lab = labels[i]
        if still[i] and lab not in ("grasp", "release"):
            lab = out[-1] if out else "reach"
        out.append(lab or "move")
    return out


def _label_pick_cycles(
    labels: list[str | None], sig: list[_Signals], still: list[bool], motion_led: list[bool]
) -> None:
    n = len(labels)
    last_release = max((i for i in range(n) if labels[i] == "release"), default=-1)
    releases = [i for i in range(n) if labels[i] == "release"]
    i = 0
    while i < n:
        if labels[i] == "grasp":
            j = i + 1
            while j < n and labels[j] not in ("release", "grasp"):
                j += 1
            held = [k for k in range(i + 1, j) if not still[k]]
            if motion_led[i]:  # the grasp event is mostly the lift: it opens the held stretch
                held = [i, *held]
            _label_held(labels, sig, held)  # still held events are resolved by the dwell rule
            i = j
            continue
        if labels[i] is None:
            labels[i] = "retreat" if i > last_release >= 0 and not any(
                lab == "grasp" for lab in labels[i:]) else "reach"
        i += 1
    for r in releases:  # a release that is mostly the arm moving away is the retreat (or next reach)
        if motion_led[r]:
            labels[r] = "reach" if any(lab == "grasp" for lab in labels[r + 1 :]) else "retreat"


def _label_held(labels: list[str | None], sig: list[_Signals], held: list[int]) -> None:
    if not held:
        return
    if len(held) == 1:
        labels[held[0]] = "move"
        return
    if len(held) == 2:
        a, b = held
        if sig[a].frames >= sig[b].frames:
            labels[a], labels[b] = "move", "place"
        else:
            labels[a], labels[b] = "lift", "move"
        return
    labels[held[0]] = "lift"
    labels[held[-1]] = "place"
    for k in held[1:-1]:
        labels[k] = "move"


def _label_no_grasp(labels: list[str | None], sig: list[_Signals], still: list[bool], phrases: TaskPhrases) -> None:
    n = len(labels)
    moving = [i for i in range(n) if not still[i] and labels[i] is None]
    if not moving:
        return
    middle = "push" if phrases.is_push else "move"
    home = sig[0].start_pose
    span = max(float(np.linalg.norm(s.end_pose - home)) for s in sig) or 1.0

    def returns_home(i: int) -> bool:
        d_end = float(np.linalg.norm(sig[i].end_pose - home))
        return d_end < HOME_FRACTION * span or d_end < HOME_FRACTION * float(np.linalg.norm(sig[i].start_pose - home))

    labels[moving[0]] = "reach"
    rest = moving[1:]
    if not rest:
        return
    last = rest[-1]
    # the last motion is the retreat when there are 3+ motions, when it goes back towards the start
    # pose, or when the first event is clearly two motions merged (much longer than the last one)
    merged_first = sig[moving[0]].frames >= 1.5 * sig[last].frames
    if len(rest) >= 2 or returns_home(last) or merged_first:
        labels[last] = "retreat"
        rest = rest[:-1]
    for k in rest:
        labels[k] = middle


# ------------------------------------------------------------------------------------- wording
def describe(phase: str, phrases: TaskPhrases, obj_index: int, holding: str) -> str:
    """The caption of one phase, e.g. describe("place", ...) -> "place the red cube in the tray"."""
    obj = phrases.obj(obj_index)
    target = phrases.target
    rel = phrases.relation if phrases.relation in ("in", "on") else "at"
    if phase == "reach":
        return f"reach toward {obj}"
    if phase == "grasp":
        return f"grasp {obj}"
    if phase == "lift":
        return f"lift {holding or obj}"
    if phase == "move":
        what = holding or obj
        if target:
            return f"move {what} {'over' if rel == 'on' else 'to'} {target}"
        return f"move {what}"
    if phase == "place":
        what = holding or obj
        return f"place {what} {rel} {target}" if target else f"place {what} down"
    if phase == "release":
        return f"release {holding or obj}"
    if phase == "retreat":
        return f"retreat from {target}" if target and not phrases.is_push else "retreat to the start position"
    if phase == "push":
        if phrases.direction:
            return f"push {obj} {phrases.direction}"
        return f"push {obj} to {target}" if target else f"push {obj}"
    return f"{phase} {obj}"


def caption_episode_events(events: list[EventView]) -> list[str]:
    """Captions for the events of one episode (sorted by event_index)."""
    if not events:
        return []
    phrases = parse_task(events[0].task)
    phases = label_phases(events)
    out = []
    cycle = -1  # index of the object of the current grasp cycle
    prev = None
    for ph in phases:
        if (ph == "reach" and prev != "reach") or (ph == "grasp" and prev not in ("reach", "grasp")):
            cycle += 1
        k = max(cycle, 0)
        holding = phrases.obj(k) if ph in ("lift", "move", "place", "release") else ""
        out.append(describe(ph, phrases, k, holding))
        prev = ph
    return out


class KinematicCaptioner(Captioner):
    """Deterministic captions from signals + task text (see the module docstring)."""

    name = "kinematic-v1"

    def __init__(self, cfg: CaptionConfig | None = None):
        self.cfg = cfg or CaptionConfig()

    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        return [CaptionResult(caption=c) for c in caption_episode_events(events)]
