"""Verb classes: which action a caption, a ground-truth phase name or a task instruction names.

Owns the grouping of action verbs into CLASSES of synonyms, used to score captions by class
(`carve eval-captions`), to check a VLM's structured verb (`captioners.replies`) and to read the
verb of a task instruction (`captioners.task_text`):

| class | verbs (base forms; phrasal verbs joined by "_") |
|-------|--------------------------------------------------|
| reach | reach, approach, go, extend, head, descend, align, hover |
| grasp | grasp, grab, grip, clamp, seize, pinch, hook, close_gripper |
| lift | lift, raise, pick_up, pick, elevate, hoist, carry, move, transport, transfer, bring, translate |
| place | place, put, put_down, set, set_down, lower, stack, deposit, drop_off |
| release | release, let_go, drop, ungrasp, open_gripper |
| retreat | retreat, withdraw, return, back_away, move_away, move_back, pull_back, retract |
| pull | pull, open, slide, drag, draw, slide_open, pull_out |
| push | push, press, close, shut, shove, nudge, sweep, depress, tap |
| insert | insert, plug, fit, slot |
| turn | turn, rotate, twist, spin, screw, unscrew, flip |
| hold | hold, stay, remain, wait, keep_still, pause |

"open" / "close" name the GRIPPER's action (release / grasp) when the gripper, hand, fingers or
claws follow them ("open the gripper"), else the object's ("open the drawer": pull). A leading
"slide" is the `pull` class (an articulated part slid open) and "push" / "press" the `push`
class, so a drawer pulled open and a drawer pushed closed fall in different classes, as they do
in the world. Subject words ("the robot", "the left arm", "then") are skipped; inflections are
folded ("presses", "pulling", "opened", "put"). A verb in no class is OPEN VOCABULARY: `verb_class`
returns None and `lead_verb` still gives its lemma, so callers can record it as such.
"""

from __future__ import annotations

import re

CLASSES: dict[str, tuple[str, ...]] = {
    "reach": ("reach", "approach", "go", "extend", "head", "descend", "align", "hover"),
    "grasp": ("grasp", "grab", "grip", "clamp", "seize", "pinch", "hook", "close_gripper"),
    "lift": ("lift", "raise", "pick_up", "pick", "elevate", "hoist", "carry", "move", "transport", "transfer",
             "bring", "translate"),
    "place": ("place", "put", "put_down", "set", "set_down", "lower", "stack", "deposit", "drop_off"),
    "release": ("release", "let_go", "drop", "ungrasp", "open_gripper"),
    "retreat": ("retreat", "withdraw", "return", "back_away", "move_away", "move_back", "pull_back", "retract"),
    "pull": ("pull", "open", "slide", "drag", "draw", "slide_open", "pull_out"),
    "push": ("push", "press", "close", "shut", "shove", "nudge", "sweep", "depress", "tap"),
    "insert": ("insert", "plug", "fit", "slot"),
    "turn": ("turn", "rotate", "twist", "spin", "screw", "unscrew", "flip"),
    "hold": ("hold", "stay", "remain", "wait", "keep_still", "pause"),
}
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
              "pinches": "pinch", "slides": "slide", "rises": "rise", "does": "do"}
_PHRASAL = {"up", "down", "go", "away", "back", "out", "open", "off", "on", "still"}


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


def verb_class(text: str | None) -> str | None:
    """The class (a key of CLASSES) of the leading verb of `text`; None for open vocabulary or no verb."""
    verb, _ = lead_verb(text)
    if verb is None:
        return None
    return CLASS_OF.get(verb)
