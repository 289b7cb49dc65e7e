"""Task-text parsing for the kinematic captioner: objects, target, relation and arm assignment.

`parse_task(task)` reads an instruction into `TaskPhrases`: "put the red cube in the tray" gives
object "the red cube", target "the tray", relation "in" (a source, "from the table", is
dropped); "put A and then B in the tray" gives two objects (the k-th grasp cycle handles the k-th
object); "put A in the tray with the left arm and B with the right arm" (or "left arm: ...;
right arm: ...") gives each arm its own phrases; "transfer A from the right arm to the left arm"
gives the right arm A with target "the left arm"; "... and hand it over" marks a hand-over to
someone unseen. Arbitrary text degrades to "the object" and "the target". Never raises.

The instruction's VERB is read too, by a small documented grammar (NLP libraries need model
downloads this tool cannot rely on):

    instruction := ["please"] verb [particle] object [particle] [relation target] [manner] ["and" ...]
    verb        := the first word (inflections folded), joined with a following particle where that
                   makes a phrasal verb ("pick up", "turn on") -- `captioners.verb_classes.lead_verb`
    particle    := "open" | "closed" | "shut" | "on" | "off" | "up" | "down" | "in" | "out"
    manner      := "from the top" | "from the side" | "from above" | "from below" | "from the front"
                 | ("with" | "using") the-tool     (an instrument: no part of the object or the target)

giving `verb` (its lemma: "open"), `action` (its class, `verb_classes.CLASSES`: "pull"), `result` (the
particle: the state the object is brought to or the direction, "open", "closed", "on", "up") and
`manner` ("from the top"). "open the drawer" -> pull, result "open"; "close the window" -> push,
result "closed"; "turn the faucet on" / "turn on the faucet" -> turn, result "on"; "press the
button from the top" -> push (verb "press"), manner "from the top"; "insert the peg into the hole
from the side" -> insert, target "the hole", relation "in"; "lock the door" -> turn (verb "lock");
"slide the plate into the cabinet" -> push and "slide the plate out of the cabinet" -> pull (a slide's
class is read from the words after it, `verb_classes.slide_class`). A "push the object" task
(`is_push`: push, slide, shove, nudge, sweep, drag) whose class comes out `pull` (a slide or drag
toward the hand's side) is no push: the object is worked as a part is, reached and then pulled. A
"slide" whose words give no direction ("slide the block to the left") is `undirected`: the captioner
reads push or pull from the hand's motion (`captioners.phases`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from carve.captioners.verb_classes import lead_verb, slide_direction, verb_class, words


@dataclass
class TaskPhrases:
    """Noun phrases parsed from a task instruction, and per arm when the task assigns arms."""

    objects: list[str] = field(default_factory=lambda: ["the object"])
    target: str = ""  # "the tray", "the blue cube"; "" when the task names none
    relation: str = "in"  # "in", "on", "to" ...
    direction: str = ""  # for pushes: "to the left"
    is_push: bool = False
    hands_over: bool = False  # "... and hand it over": the object goes to someone else, not onto a place
    verb: str = ""  # the instruction's verb lemma ("open", "press", "pick_up"); "" when it has none
    action: str = ""  # its class (`verb_classes.CLASSES`: "pull", "push", "insert", "turn" ...); "" when none
    result: str = ""  # the particle: the state the object is brought to / the direction ("open", "on", "up")
    manner: str = ""  # "from the top", "from the side"
    source: str = ""  # where the object comes from, no part of it: "out of the cabinet", "off the peg"
    tool: str = ""  # what the hand works with: "the stick" ("... with the stick"), "the hammer" ("hammer the nail")
    # the verb names a motion along a surface and the words no direction ("slide the block to the left"):
    # whether it pushes or pulls is read from the hand's motion (`captioners.phases`, `slide_from_motion`)
    undirected: bool = False
    arms: dict[str, TaskPhrases] = field(default_factory=dict)  # "left" -> that arm's phrases

    def obj(self, k: int) -> str:
        return self.objects[min(max(k, 0), len(self.objects) - 1)]

    def for_arm(self, arm: str) -> TaskPhrases:
        """The phrases of `arm` when the task gives it its own, else the task's."""
        return self.arms.get(arm, self)


_DET = r"(?:the|a|an|this|that)"
_REL = r"(in|into|inside|on|onto|on top of|to|towards?|next to|onto the top of|over|under|beside|at)"
_PUT_VERBS = r"(?:put|place|move|stack|set|drop|transfer|carry|bring|pick up|pick|lay|insert|hang|stow|mount|load)"
_PUSH_VERBS = r"(?:push|slide|shove|nudge|sweep|drag)"
_DIRECTIONS = r"(?:left|right|front|back|forward|backward|away|the side)"
_ARM_WORDS = r"(?:arm|hand|gripper)"
# "... with the left arm", "using the right hand"
_ARM_WITH = re.compile(rf"\s*,?\s*\b(?:with|using|by)\s+(?:the\s+|its\s+|their\s+)?(left|right)\s+{_ARM_WORDS}\b")
# "left arm: ...", "the right arm puts ..."
_ARM_SUBJECT = re.compile(rf"(?:^|[;.]|,|\band\b|\bthen\b|\bwhile\b)\s*(?:the\s+)?(left|right)\s+{_ARM_WORDS}\s*:?\s*")
# "hand it over", "hand the cube over to ...", "a hand-over"
_HAND_OVER = re.compile(r"\bhand(?:s|ed|ing)?(?:\s+(?!over\b)[\w'-]+){0,3}\s+over\b|\bhand-?over\b")
# "... from the right arm to the left arm": a transfer between the arms
_ARM_TRANSFER = re.compile(rf"\s*\bfrom\s+(?:the\s+|its\s+)?(left|right)\s+{_ARM_WORDS}\s+"
                           rf"(?:over\s+)?(?:to|into|towards?)\s+(?:the\s+|its\s+)?(left|right)\s+{_ARM_WORDS}\b")


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
    """A noun phrase without a trailing clause or source ("the cup and close the lid" -> "the cup",
    "the cup from the table" -> "the cup", "the plate out of the cabinet" -> "the plate", "the lid off the
    pot" -> "the lid": where the object comes from is no part of it)."""
    return re.split(r"\s*(?:,|\band\b|\bthen\b|\bwhile\b|\bso\b|\bafter\b|\bfrom\b|\bout\s+of\b|\baway\s+from\b"
                    r"|\boff\s+(?:of\s+)?(?=(?:the|a|an|its|their)\b))\s*", phrase, maxsplit=1)[0].strip()


def _base_verb(text: str) -> str:
    """Third-person verbs at the start folded to the base form ("puts the cube" -> "put the cube")."""
    m = re.match(r"^(\w+?)(?:es|s)\b(.*)$", text)
    if m and re.fullmatch(rf"{_PUT_VERBS}|{_PUSH_VERBS}|pick", m.group(1)):
        return m.group(1) + m.group(2)
    return text


def _parse_text(text: str) -> TaskPhrases:
    """Objects, target and relation of one normalised clause."""
    text = _base_verb(re.sub(rf"\s*,?\s+and(?:\s+then)?\s+{_PUT_VERBS}\s+(?:it|them)\b", "", text).strip(" ,"))
    out = TaskPhrases()
    if not text:
        return out
    text = re.sub(r"\s+from\s+(?:the\s+)?(?:top|side|above|below|front)$", "", text)  # the manner: no direction
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
        what = re.sub(r"\s+from\s+.*$", "", m.group(1))  # "the cup from the table": where it comes from
        objs = re.split(r"\s*(?:,\s*and then|,\s*then|\s+and then|\s+then|,\s*and|\s+and|,)\s+", what)
        objs = [_np(o) for o in objs if _np(o) and _np(o) not in ("it", "the it")]
        out.objects = objs or ["the object"]
        out.relation = {"into": "in", "inside": "in", "onto": "on", "on top of": "on",
                        "onto the top of": "on"}.get(m.group(2), m.group(2))
        out.target = _np(_cut_clause(m.group(3)))
        return out
    # "pick up the X" / "grasp the X" / "open the drawer": the first noun phrase after the verb
    m = re.match(rf"^(?:please\s+)?[\w-]+(?:\s+(?:up|on|off|out|open|down))?\s+({_DET}\s+.+)$", text)
    if m:
        what = _cut_clause(m.group(1))
        tm = re.search(r"\s+(into|onto|inside|to|towards?)\s+(.+)$", what)  # "pull the cart to the door": the target
        if tm:
            out.relation = {"into": "in", "inside": "in", "onto": "on"}.get(tm.group(1), "to")
            out.target = _np(tm.group(2))
            what = what[: tm.start()]
        out.objects = [_np(what)]
    return out


def _arm_clauses(text: str) -> list[tuple[str, str]]:
    """(arm, clause) pairs when the task assigns work to arms, else []."""
    pairs: list[tuple[str, str]] = []
    with_arm = list(_ARM_WITH.finditer(text))
    if with_arm:  # "<clause> with the left arm and <clause> with the right arm"
        prev = 0
        for m in with_arm:
            pairs.append((m.group(1), text[prev : m.start()]))
            prev = m.end()
        return pairs
    subj = list(_ARM_SUBJECT.finditer(text))
    if subj:  # "left arm: <clause>; right arm: <clause>"
        for i, m in enumerate(subj):
            end = subj[i + 1].start() if i + 1 < len(subj) else len(text)
            pairs.append((m.group(1), text[m.end() : end]))
    return pairs


_SOURCE = re.compile(r"\b(out of|away from|off of|off)\s+((?:the|a|an|its|their)\s+.+)$")
_PARTICLES = ("open", "closed", "shut", "on", "off", "up", "down", "in", "out")
_MANNER = re.compile(r"\bfrom\s+(?:the\s+)?(top|side|above|below|front)\b")
_RESULT_OF = {"open": "open", "close": "closed", "shut": "closed", "turn_on": "on", "turn_off": "off",
              "switch_on": "on", "switch_off": "off"}


def _verb_parts(text: str) -> tuple[str, str, str, str]:
    """(verb lemma, its class, result particle, manner) of an instruction by the grammar of the module doc."""
    clause = re.split(r"\s*(?:[,;.]|\band\b|\bthen\b|\bwhile\b)\s*", text, maxsplit=1)[0]
    verb, after = lead_verb(clause)
    if verb is None:
        return "", "", "", ""
    words = re.findall(r"[a-z]+(?:-[a-z]+)?", clause)
    rest = words[after:]
    result = _RESULT_OF.get(verb, "")
    for i, w in enumerate(rest):  # a particle right after the verb, or ending the clause / before its manner
        nxt = rest[i + 1] if i + 1 < len(rest) else ""
        if not result and w in _PARTICLES and (i == 0 or nxt in ("", "from", "with", "using")):
            result = w
    m = _MANNER.search(clause)
    manner = f"from the {m.group(1)}" if m and m.group(1) not in ("above", "below") else (
        f"from {m.group(1)}" if m else "")
    cls = verb_class(clause) or ""
    if verb == "turn" and result in ("on", "off"):
        cls = "turn"
    return verb, cls, {"shut": "closed"}.get(result, result), manner


def parse_task(task: str) -> TaskPhrases:
    """Objects, target, relation and verb of a task instruction, per arm when it names arms (never raises)."""
    text = " ".join(re.sub(r"[^\w\s,;:'-]", " ", (task or "").lower()).split())
    phrases = _parse_task(text)
    phrases.hands_over = bool(_HAND_OVER.search(text))
    phrases.verb, phrases.action, phrases.result, phrases.manner = _verb_parts(text)
    if phrases.verb == "slide":
        clause = re.split(r"\s*(?:[,;.]|\band\b|\bthen\b|\bwhile\b)\s*", text, maxsplit=1)[0]
        phrases.undirected = slide_direction(words(clause)[lead_verb(clause)[1] :]) is None
    if phrases.is_push and phrases.action and phrases.action != "push":
        # "slide the plate out of the cabinet", "drag the box toward you": the object moves toward the
        # hand's side, a pull (`verb_classes.slide_class`), worked as a part is, not pushed across the table
        phrases.is_push = False
    src = _SOURCE.search(re.split(r"\s*(?:[,;.]|\band\b|\bthen\b|\bwhile\b)\s*", text, maxsplit=1)[0])
    if src:  # "slide the plate out of the cabinet": the source, cut from the object (`_cut_clause`)
        phrases.source = f"{src.group(1)} {_np(_MANNER.sub('', src.group(2)).strip())}"
    # "pick the box up off the shelf", "put the cup down": a particle after the object is no part of it
    phrases.objects = [re.sub(r"(?<=\w)\s+(?:up|down|out|over|away|back|sideways|forwards?|backwards?|upwards?|downwards?)$", "", o)
                       for o in phrases.objects]
    if phrases.result:  # "turn the faucet on": the particle is no part of the object
        phrases.objects = [re.sub(rf"\s+{phrases.result}$", "", o) for o in phrases.objects]
    _cut_instrument(phrases)
    return phrases


# "with the stick", "using a sponge"; not the robot's own body ("with the gripper", "with the left arm")
_INSTRUMENT = re.compile(r"\s+(with|using)\s+((?:the|a|an|its|their)\s+[\w-]+(?:\s+[\w-]+)?)$")
_BODY = re.compile(r"\b(?:arm|hand|gripper|finger|claw|fist|palm|jaw|effector)s?$")


def _cut_instrument(phrases: TaskPhrases) -> None:
    """"push the thermos to the goal with the stick", "wipe the table using a sponge": the tool the hand works
    with is no part of the object or the target; it becomes the manner when the instruction names none, and
    the `tool` (so does the tool a verb names: "hammer the nail")."""
    def find(text: str) -> re.Match[str] | None:
        m = _INSTRUMENT.search(text)
        return m if m and not _BODY.search(m.group(2)) else None

    for name in ("target", "direction"):
        m = find(getattr(phrases, name))
        if m:
            setattr(phrases, name, getattr(phrases, name)[: m.start()])
            phrases.manner = phrases.manner or f"{m.group(1)} {m.group(2)}"
    cut = [find(o) for o in phrases.objects]
    for m in cut:
        if m:
            phrases.manner = phrases.manner or f"{m.group(1)} {m.group(2)}"
    phrases.objects = [o[: m.start()] if m and m.start() > 0 else o for o, m in zip(phrases.objects, cut, strict=True)]
    m = re.match(r"(?:with|using)\s+(.+)$", phrases.manner)
    phrases.tool = m.group(1) if m else TOOL_VERBS.get(phrases.verb, "")


TOOL_VERBS = {"hammer": "the hammer"}  # verbs that name the tool they are done with


def _parse_task(text: str) -> TaskPhrases:
    m = _ARM_TRANSFER.search(text)
    if m and m.group(1) != m.group(2):  # the source arm brings the object to the other arm, which takes it
        p = parse_task(text[: m.start()] + text[m.end() :])
        src = TaskPhrases(objects=list(p.objects), target=f"the {m.group(2)} arm", relation="to")
        dst = TaskPhrases(objects=list(p.objects), target=p.target, relation=p.relation)
        return TaskPhrases(objects=list(p.objects), target=p.target, relation=p.relation,
                           arms={m.group(1): src, m.group(2): dst})
    pairs = _arm_clauses(text)
    if not pairs:
        return _parse_text(text.replace(";", ",").replace(":", " "))
    arms: dict[str, TaskPhrases] = {}
    base: TaskPhrases | None = None
    for arm, clause in pairs:
        clause = re.sub(r"^(?:\s|,|;|:|\band\b|\bthen\b|\bwhile\b)+", "", clause).strip(" ,;:")
        if not clause:
            continue
        if re.match(rf"^{_DET}\b", clause):  # a bare noun phrase: the verb of the first clause applies
            p = _parse_text(f"put {clause}")
        else:
            p = _parse_text(clause)
        if base is not None and not p.target:
            p.target, p.relation = base.target, base.relation
        if base is None:
            base = p
        arms.setdefault(arm, p)
    if base is None:
        return _parse_text(text)
    objects = [o for p in arms.values() for o in p.objects]
    return TaskPhrases(objects=objects, target=base.target, relation=base.relation, direction=base.direction,
                       is_push=base.is_push, arms=arms)
