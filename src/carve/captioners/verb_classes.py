"""Verb classes: which action a caption, a ground-truth phase name or a task instruction names.

Owns the grouping of action verbs into CLASSES of synonyms, used to score captions by class
(`carve eval-captions`), to check a VLM's structured verb (`captioners.replies`) and to read the
verb of a task instruction (`captioners.task_text`):

| class | verbs (base forms; phrasal verbs joined by "_") | what the hand does (why these verbs are one class) |
|-------|--------------------------------------------------|----------------------------------------------------|
| reach | reach, approach, go, extend, head, descend, align, hover, move_to | moves toward something, nothing held or worked |
| grasp | grasp, grab, grip, clamp, seize, pinch, hook, catch, squeeze, close_gripper | closes the fingers on something |
| lift | lift, raise, pick_up, pick, elevate, hoist, carry, move, transport, transfer, bring, translate, take, take_out, remove, retrieve, fetch, get, unstack, hand_over, hand, give, pass, scoop | moves a HELD object (up, across, to someone: a hand-over is a carry to the other hand; a scoop raises material on a tool) |
| place | place, put, put_down, set, set_down, lower, stack, deposit, drop_off, hang, lay, stow, load, mount | brings a held object down onto / into a place (a hang puts it onto a hook or rod) |
| release | release, let_go, drop, ungrasp, open_gripper | opens the fingers |
| retreat | retreat, withdraw, return, back_away, move_away, move_back, pull_back, retract | moves away after the work |
| pull | pull, open, slide (toward the actor, below), drag, draw, slide_open, slide_out, pull_out, pull_open, unplug, extract, yank, tug | moves a part or object TOWARD the hand's side, along its guide (a drawer, a door opened toward the robot, a plug drawn out of its socket) |
| push | push, press, close, shut, slide (away, below), shove, nudge, sweep, depress, tap, poke, knock, knock_over, topple, tip_over, hit, strike, hammer, pound, kick, punch, bump, bat, click, switch, switch_on, switch_off, push_down, press_down, slide_in | moves a part or object AWAY from the hand's side, or presses into it (a button, a switch, an object swept or knocked over; an impact, with the hand or a tool, is a short hard push: a nail hammered in, a ball kicked) |
| insert | insert, plug, plug_in, fit, slot, thread, dock | pushes a held piece INTO a close-fitting hole (the fit, not the push, is the point) |
| turn | turn, rotate, twist, spin, screw, unscrew, flip, lock, unlock, crank, wind, unwind, swivel ("turn on" is a turn with the result "on") | rotates a part or object about an axis: a faucet, a dial, a key or knob (a lock is locked and unlocked by turning its key, knob or latch: lock / unlock are turns; a bolt slid by hand is better said "slide the bolt") |
| pour | pour, tip, tilt, empty, dump, decant, fill | tilts a held container so its contents flow out |
| wipe | wipe, scrub, mop, rub, polish, brush, clean, dust, stir, mix, whisk | strokes a tool or the hand back and forth over a surface or round a container, nothing taken anywhere |
| fold | fold, unfold, crumple, crease | bends a deformable object (cloth, paper) over itself |
| hold | hold, stay, remain, wait, keep_still, pause | keeps still |

"open" / "close" name the GRIPPER's action (release / grasp) when the gripper, hand, fingers or
claws follow them ("open the gripper"), else the object's ("open the drawer": pull). "push" / "press"
are the `push` class and "pull" the `pull` class, so a drawer pulled open and a drawer pushed closed
fall in different classes, as they do in the world. "slide" names a motion along a surface or guide
and no direction, so its class is read from the words after it (`slide_class`): toward the actor
("out", "open", "back", "backward", "toward(s)", "off", "from", "down") is `pull`; away from it or into
something ("into", "in", "inside", "under", "underneath", "onto", "away", "forward", "closed", "shut",
"across", "through") is `push`; a slide with neither ("slide the block to the left") is `pull`, the
class of its most common use ("slide the window open"), and the kinematic captioner never captions a
bare "slide" (it says push or pull, `captioners.templates`). "hand over" / "hand it over" is a carry
to another hand (`lift`), the release that ends it a `release`. Subject words ("the robot", "the left
arm", "then") are skipped; inflections are folded ("presses", "pulling", "opened", "put"). A verb in no
class is OPEN VOCABULARY: `verb_class` returns None and `lead_verb` still gives its lemma, so callers
can record it as such.
"""

from __future__ import annotations

import re

CLASSES: dict[str, tuple[str, ...]] = {
    "reach": ("reach", "approach", "go", "extend", "head", "descend", "align", "hover", "move_to"),
    "grasp": ("grasp", "grab", "grip", "clamp", "seize", "pinch", "hook", "catch", "squeeze", "close_gripper"),
    "lift": ("lift", "raise", "pick_up", "pick", "elevate", "hoist", "carry", "move", "transport", "transfer",
             "bring", "translate", "take", "take_out", "remove", "retrieve", "fetch", "get", "unstack",
             "hand_over", "hand", "give", "pass", "scoop"),
    "place": ("place", "put", "put_down", "set", "set_down", "lower", "stack", "deposit", "drop_off", "hang",
              "lay", "stow", "load", "mount"),
    "release": ("release", "let_go", "drop", "ungrasp", "open_gripper"),
    "retreat": ("retreat", "withdraw", "return", "back_away", "move_away", "move_back", "pull_back", "retract"),
    "pull": ("pull", "open", "slide", "drag", "draw", "slide_open", "slide_out", "pull_out", "pull_open", "unplug",
             "extract", "yank", "tug"),
    "push": ("push", "press", "close", "shut", "shove", "nudge", "sweep", "depress", "tap", "poke", "knock",
             "knock_over", "topple", "tip_over", "hit", "strike", "hammer", "pound", "kick", "punch", "bump", "bat",
             "click", "switch", "switch_on", "switch_off", "push_down", "press_down", "slide_in"),
    "insert": ("insert", "plug", "plug_in", "fit", "slot", "thread", "dock"),
    "turn": ("turn", "rotate", "twist", "spin", "screw", "unscrew", "flip", "lock", "unlock", "crank", "wind",
             "unwind", "swivel"),
    "pour": ("pour", "tip", "tilt", "empty", "dump", "decant", "fill"),
    "wipe": ("wipe", "scrub", "mop", "rub", "polish", "brush", "clean", "dust", "stir", "mix", "whisk"),
    "fold": ("fold", "unfold", "crumple", "crease"),
    "hold": ("hold", "stay", "remain", "wait", "keep_still", "pause"),
}
# "slide"'s direction (module doc): the words after it that make it a pull (toward the actor) or a push
SLIDE_PULL = frozenset({"out", "open", "back", "backward", "backwards", "toward", "towards", "off", "from", "down"})
SLIDE_PUSH = frozenset({"into", "in", "inside", "under", "underneath", "onto", "away", "forward", "forwards",
                        "closed", "shut", "across", "through"})
CLASS_OF: dict[str, str] = {v: c for c, verbs in CLASSES.items() for v in verbs}
# the class each phase of the kinematic captioner (`captioners.phases.PHASES`) belongs to
PHASE_CLASS: dict[str, str] = {"reach": "reach", "grasp": "grasp", "lift": "lift", "move": "lift", "place": "place",
                               "release": "release", "retreat": "retreat", "push": "push", "hold": "hold"}

_GRIPPER_WORDS = {"gripper", "grippers", "hand", "hands", "fingers", "claws", "claw", "jaws", "fist"}
_SKIP = {
    "the", "a", "an", "robot", "robotic", "arm", "gripper", "hand", "end", "effector", "end-effector", "it",
    "then", "now", "slowly", "carefully", "quickly", "gently", "first", "next", "finally", "and", "to",
    "is", "are", "starts", "begins", "continues", "continue", "keeps", "panda", "manipulator", "i", "we", "will",
    "left", "right", "both", "arms", "hands", "grippers", "please", "sawyer",
}
_IRREGULAR = {"went": "go", "goes": "go", "brought": "bring", "held": "hold", "withdrew": "withdraw",
              "drew": "draw", "shut": "shut", "spun": "spin", "let": "let", "put": "put", "set": "set",
              "lowers": "lower", "closes": "close", "pushes": "push", "presses": "press", "reaches": "reach",
              "approaches": "approach", "releases": "release", "places": "place", "raises": "raise",
              "pinches": "pinch", "slides": "slide", "rises": "rise", "does": "do", "took": "take",
              "takes": "take", "gave": "give", "hung": "hang", "hangs": "hang", "wound": "wind", "laid": "lay",
              "got": "get", "caught": "catch", "wipes": "wipe", "pours": "pour", "folds": "fold",
              "mixes": "mix", "brushes": "brush", "dumps": "dump", "fills": "fill", "hit": "hit", "struck": "strike",
              "unlocks": "unlock", "locks": "lock", "flips": "flip", "stirs": "stir"}
_HAND_VERB = {"hand", "hands", "handed", "handing"}
_PHRASAL = {"up", "down", "go", "away", "back", "out", "open", "off", "on", "still", "over", "in", "to"}


def lemma(word: str, known: set[str] | dict[str, str]) -> str:
    """`word`'s base form: an irregular form's, else `word` itself when `known`, else the first
    suffix-stripped form in `known`, else (an unknown verb) without a plural "s"."""
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in known:
        return w
    for suf, rep in (("ing", ""), ("ing", "e"), ("ied", "y"), ("ed", ""), ("ed", "e"), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) > len(suf) + 2:
            cand = w[: -len(suf)] + rep
            if cand in known:
                return cand
            if len(cand) > 2 and cand[-1] == cand[-2] and cand[:-1] in known:  # "dropped", "gripping"
                return cand[:-1]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):  # an unknown verb: "wipes"
        return w[:-1]
    return w


_KNOWN = {v.split("_")[0] for v in CLASS_OF} | set(CLASS_OF) | {"keep", "let", "back"}


def words(text: str | None) -> list[str]:
    """Lower-case words of `text` (hyphenated words kept whole)."""
    return re.findall(r"[a-z]+(?:-[a-z]+)?", (text or "").lower())


def lead_verb(text: str | None) -> tuple[str | None, int]:
    """(the leading verb's lemma, joined with its particle when that makes a listed phrasal verb,
    "open_gripper" / "close_gripper" for the gripper's own action; the index of the first word after
    it), or (None, 0) when the text has no words after the subject words."""
    ws = words(text)
    i = 0
    while i < len(ws) and ws[i] in _SKIP:
        if ws[i] in _HAND_VERB and "over" in ws[i + 1 : i + 5]:  # "hand it over": the verb, not the subject
            return "hand_over", i + 1 + ws[i + 1 :].index("over") + 1
        i += 1
    if i >= len(ws):
        return None, 0
    head = lemma(ws[i], _KNOWN)
    rest = [w for w in ws[i + 1 : i + 4] if w not in ("the", "its", "a", "an", "their")]
    if head in ("open", "close") and rest and rest[0] in _GRIPPER_WORDS:
        return f"{head}_gripper", i + 1 + ws[i + 1 :].index(rest[0]) + 1
    nxt = ws[i + 1] if i + 1 < len(ws) else ""
    if nxt in _PHRASAL and f"{head}_{nxt}" in CLASS_OF:
        return f"{head}_{nxt}", i + 2
    return head, i + 1


def slide_direction(after: list[str]) -> str | None:
    """The class the words `after` a "slide" give it: `push` when a word of SLIDE_PUSH comes first,
    `pull` when one of SLIDE_PULL does, None when neither occurs (the words say no direction)."""
    for w in after:
        if w in SLIDE_PUSH:
            return "push"
        if w in SLIDE_PULL:
            return "pull"
    return None


def slide_class(after: list[str]) -> str:
    """The class of a "slide" followed by the words `after` (module doc): `slide_direction`, else `pull`."""
    return slide_direction(after) or "pull"


def verb_class(text: str | None) -> str | None:
    """The class (a key of CLASSES) of the leading verb of `text`; None for open vocabulary or no verb.
    A "slide" takes its class from the words after it (`slide_class`)."""
    verb, after = lead_verb(text)
    if verb is None:
        return None
    if verb == "slide":
        return slide_class(words(text)[after:])
    return CLASS_OF.get(verb)
