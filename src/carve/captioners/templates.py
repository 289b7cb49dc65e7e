"""Caption templates of the kinematic captioner: the words for an event's phase.

Captions: the arm is named at the END in multi-arm episodes, "grasp the red cube with the
left arm" (the leading verb stays first, as in single-arm captions), "reach toward the peg
with both arms" for arms together, "grasp the cube with the right arm and reach toward the
cube with the left arm" for two arms doing different things at once, "hold the cube still
with both arms" ("hold still" when no holding arm holds an object); one-arm episodes name no
arm. Phrases come from `parse_task`: "put the red cube in the tray" gives object "the red
cube", target "the tray", relation "in" (a source, "from the table", is dropped); "put A and
then B in the tray" gives two objects (the k-th grasp cycle of the arm handles the k-th
object); "put A in the tray with the left arm and B with the right arm" (or "left arm: ...;
right arm: ...") gives each arm its own phrases; "transfer A from the right arm to the left
arm" gives the right arm A with target "the left arm" and the left arm A; arbitrary task text
degrades to "the object" and "the target". The task's own action (phase "act": a part of the
scene worked without carrying it, or an insertion) is worded from the instruction's verb class
(`act_caption`): "pull the drawer open", "press the button", "insert the peg into the hole".
Without usable signals the boundary reasons
(`gripper_close` / `gripper_open`) and the event order decide. The same input always gives
the same captions.
"""

from __future__ import annotations

from dataclasses import replace

from carve.captioners.event_phase import BOTH, EventPhase
from carve.captioners.phases import PART_ACTIONS
from carve.captioners.task_text import TaskPhrases
from carve.ingest.arms import SINGLE_ARM

_OWN_VERB = {"pull": ("pull", "drag", "draw", "unplug", "extract", "yank", "tug"),
             "push": ("press", "push", "depress", "tap", "shove", "poke", "knock", "hit", "click", "sweep", "nudge",
                      "strike", "hammer", "pound", "kick", "punch", "bump", "bat"),
             "turn": ("turn", "rotate", "twist", "spin", "screw", "unscrew", "flip", "lock", "unlock", "crank",
                      "wind", "unwind", "swivel"),
             "insert": ("insert", "plug"),
             "wipe": ("wipe", "scrub", "mop", "rub", "polish", "brush", "clean", "dust", "stir", "mix", "whisk")}
# a verb of the class that is not the instruction's own (or "slide", whose direction the class says) is said so
_DEFAULT_VERB = {"pull": "pull", "push": "push", "turn": "turn", "insert": "insert", "wipe": "wipe"}


def act_caption(phrases: TaskPhrases, obj: str) -> str:
    """The task's own action on `obj`, in the words of its verb class: "open the drawer" -> "pull the drawer
    open", "close the window" -> "push the window closed", "press the button" -> "press the button",
    "turn the faucet on" -> "turn the faucet on", "insert the peg into the hole" -> "insert the peg into the
    hole", "lock the door" -> "lock the door" (a turn), "slide the plate out of the cabinet" -> "pull the
    plate". An instruction verb of the class is kept; "open" / "close" become pull / push with the result,
    and "slide" (no direction of its own, `verb_classes.slide_class`) the push or pull its class says."""
    cls = phrases.action
    verb = phrases.verb.replace("_", " ").split()[0] if phrases.verb else ""
    word = verb if verb in _OWN_VERB.get(cls, ()) else _DEFAULT_VERB.get(cls, verb or "move")
    if cls == "insert":
        return f"{word} {obj} into {phrases.target}" if phrases.target else f"{word} {obj}"
    result = f" {phrases.result}" if phrases.result and phrases.result not in ("in",) else ""
    source = f" {phrases.source}" if phrases.source and cls == "pull" else ""  # "pull the plate out of the cabinet"
    return f"{word} {obj}{result}{source}"


def describe(phase: str, phrases: TaskPhrases, obj_index: int, holding: str = "") -> str:
    """The caption of one phase, e.g. describe("place", ...) -> "place the red cube in the tray"."""
    obj = phrases.obj(obj_index)
    target = phrases.target
    rel = phrases.relation if phrases.relation in ("in", "on") else "at"
    if phrases.tool and phase in ("grasp", "lift", "move", "place", "release", "hold", "turn"):
        obj = phrases.tool  # the hand grasps and carries the tool, and works the object with it
    what = holding or obj
    if phase == "reach":
        return f"reach toward {obj}"
    if phase == "grasp":
        return f"grasp {obj}"
    if phase == "lift":
        return f"lift {what}"
    if phase == "move":
        if target:
            return f"move {what} {'over' if rel == 'on' else 'to'} {target}"
        return f"move {what}"
    if phase == "place":
        return f"place {what} {rel} {target}" if target else f"place {what} down"
    if phase == "release":
        return f"release {what}"
    if phase == "retreat":
        if target and not phrases.is_push:
            return f"retreat from {target}"
        # a part worked in place (a faucet turned, a button pressed): the hand leaves the part, wherever to
        return f"retreat from {obj}" if phrases.action in PART_ACTIONS and not phrases.is_push \
            else "retreat to the start position"
    if phase == "push":
        if phrases.direction:
            return f"push {obj} {phrases.direction}"
        return f"push {obj} to {target}" if target else f"push {obj}"
    if phase == "hold":
        return f"hold {what} still"
    if phase == "turn":  # a held object turned in place (phases' rule 13)
        return f"turn {what}"
    if phase == "act":
        instrument = f" {phrases.manner}" if phrases.manner.startswith(("with ", "using ")) else ""
        return act_caption(phrases, what) + instrument
    return f"{phase} {obj}"


def arm_suffix(arm: str) -> str:
    """" with the left arm" for a named arm of a multi-arm robot, " with both arms" for the arms
    acting together ("" for a single arm)."""
    name = arm.replace("_", " ").strip()
    if not name or name == SINGLE_ARM:
        return ""
    if name == BOTH:
        return " with both arms"
    return f" with the {name} arm"


def _phrases_of(phrases: TaskPhrases, arm: str, k: int) -> TaskPhrases:
    """The phrases an arm's caption uses; for both arms, each arm's own object when the task gives
    the arms different ones ("the peg and the socket")."""
    if arm != BOTH or len(phrases.arms) < 2:
        return phrases.for_arm(arm)
    objs = list(dict.fromkeys(p.obj(k) for _, p in sorted(phrases.arms.items())))
    first = next(iter(sorted(phrases.arms.items())))[1]
    return TaskPhrases(objects=[" and ".join(objs)], target=first.target, relation=first.relation,
                       direction=first.direction, is_push=first.is_push, verb=phrases.verb, action=phrases.action,
                       result=phrases.result)


def phase_caption(p: EventPhase, phrases: TaskPhrases, multi_arm: bool) -> str:
    """The caption of one event's phase: "<verb> <object> ... with the left arm" (no arm for one arm);
    other arms doing something else at the same time follow, "... and <verb> ... with the right arm"."""
    parts = []
    for q in [p, *p.others]:
        mine = _phrases_of(phrases, q.arm, q.cycle)
        if q.action:  # an undirected slide: the push or pull the hand's motion shows (`phases.slide_from_motion`)
            mine = replace(mine, action=q.action)
        text = describe(q.phase, mine, q.cycle)
        if q.phase == "hold" and not q.holds:
            text = "hold still"
        parts.append(text + (arm_suffix(q.arm) if multi_arm else ""))
    return " and ".join(parts)
