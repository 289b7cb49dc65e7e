"""Caption accuracy against ground truth (`carve eval-captions`): verb, object, arm, verb and arm.

Owns:
* `leading_verb(caption)`: the phase a caption names with its leading action verb (subject
  words such as "the robot" skipped, inflections and common synonyms folded: "grabs" ->
  grasp, "picks up" -> lift, "lowers" -> place, "opens the gripper" -> release, "stays" ->
  hold ...), or None;
* `truth_phase(start, end, phases)`: the ground-truth phase an event [start, end) is scored
  against. Per arm, the phase with the largest frame overlap (ties: the earlier one). With
  several arms (two-arm data, where one arm's retreat, which lasts to the episode's end, spans
  the other arm's whole pick), the arm whose phases cover most of the event wins; arms within
  `TIE_FRACTION` of that coverage are tied, and the one whose phase is SHORTEST wins (the
  specific action, not the other arm's long tail). The caption plays no part in this choice.
  `overlap_phase` is its name;
* `acting_arms(start, end, phases)`: the arms the event is scored for. One arm (the arm of
  `truth_phase`), unless the arms act TOGETHER: the truth phase's arm is "both", or another
  tied arm's phase (see above) has the same name and runs at the same time (the two phases
  overlap by at least `TOGETHER_FRACTION` of the longer one: both arms reach, insert or hold at
  once). A long tail of one arm that merely ends with the other arm's phase of the same name
  (a retreat lasting to the end of the episode) is not together;
* `caption_clauses(caption)`: a caption's clauses ("grasp the cube with the right arm and
  reach toward the cube with the left arm" has two), split at "and" / "while" / "whereas" /
  ";" / "," where a new action verb follows, each with its verb and the arm it names; a clause
  that names no arm shares the arm of the clause before it ("the right arm reaches for the cube
  and grasps it"), or at the start, of the first clause naming one ("reach toward and grasp the
  cube with the right arm");
* `caption_object(caption)`: the object a caption names: the noun phrase right after its
  leading verb (and a particle such as "up", "toward", "for"), up to the next preposition or
  conjunction ("in", "on", "to", "with", "and" ...), determiners dropped:
  "place the red cube in the tray" -> "red cube", "reach toward the blue lego brick with the
  left arm" -> "blue lego brick";
* `object_matches(truth_object, caption)`: the match rule for objects: the caption's object
  phrase contains every COLOUR word of the true object (see `COLOURS`) and its head noun (the
  last word; singular and plural fold: "cubes" = "cube"). A true object without a colour word
  needs all of its words. So "the blue brick" matches "blue lego brick", "the red cube" does
  not match "blue cube", and "place the cyan cube on the red cube" names "cyan cube";
* `caption_arm(caption)`: the arm a caption (or a clause) names as the actor: "left" /
  "right" / "both", from an instrument phrase ("... with the left arm", "using both hands"),
  else a subject before the verb ("left arm: ...", "the right hand grasps ..."), else any arm
  phrase that is not a place ("move the cube to the left arm" names no actor), else None;
* `judge(start, end, phases, caption, arms)`: one event's verdict (below);
* `evaluate(events, truth)`: the report (below) over event rows (dicts with episode_index,
  start_frame, end_frame, caption, and optionally dataset) and the ground-truth JSON of
  docs/FORMATS.md.
* `phase_coverage(...)`: the truth's side of `evaluate`'s report: of the classed truth phases of
  the episodes that have events (consecutive phases of one class per arm are one run), how many an
  event was judged on and how many such an event names by class (`phase_recall`).

How an event is judged (`judge`). The caption's clause for an arm is its first clause naming
that arm, or naming "both" arms. In a multi-arm episode:

* **one acting arm**: the ARM is right when a clause names that arm alone ("with both arms"
  claims a joint action the truth does not have); the VERB is that clause's verb (else the
  leading verb), and the OBJECT is read from that clause too. So where the arms do different things, the caption must name the arm that
  `truth_phase` picks with its verb, or name both arms' verbs, each with its arm ("grasp the
  cube with the right arm and reach toward it with the left arm");
* **arms acting together**: the ARM is right when every acting arm is named ("with both
  arms", or one clause per arm); the VERB is right when the clauses of all acting arms name the
  truth's verb. The OBJECT may be any acting arm's object (in an insertion one arm holds the
  peg and the other the socket; a caption names one object phrase);
* **VERB AND ARM** is right when both are right in the same caption.

In a one-arm episode the arm is not scored: the verb is the leading verb, and "verb and arm"
is the verb alone. The report (`evaluate`) gives verb accuracy overall, per phase, per arm
(the acting arm, "both" for events where the arms act together) and per task type, a
confusion table, object accuracy over the events whose true phase has an `object` (a retreat
has none), arm accuracy over events of multi-arm episodes, and the combined verb-and-arm
accuracy (`verb_arm_accuracy`) overall and in every breakdown.

VERB CLASSES (`captioners.verb_classes`): every verdict also carries the class of the true phase's
name (its leading verb: "pull the drawer open" is `pull`, "descend to the handle" `reach`; a name in
one's own words scores) and the class of the caption's verb for the acting arm(s) ("(open)" for a
verb of no class: open vocabulary, "(none)" without a verb). The report adds `class_accuracy`, per
task type (`per_task_class`), the class confusion table (`class_confusion`, `format_class_confusion`),
the open-vocabulary verbs used and `unclassified_events` (true phases whose name has no class verb,
left out of the class score). `phase_spans` gives the phases of the plain JSON and LeRobot truth
forms (names + boundaries) as spans. `at="middle"` takes the truth phase at each event's middle
frame instead of the largest overlap.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from carve.captioners.verb_classes import CLASS_OF, lead_verb, lemma, verb_class
from carve.captioners.verb_classes import words as _words

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push", "hold")

_SYNONYMS: dict[str, str] = {
    **{p: p for p in PHASES},
    "approach": "reach", "go": "reach", "extend": "reach", "head": "reach",
    "grab": "grasp", "grip": "grasp", "close": "grasp", "clamp": "grasp", "seize": "grasp", "pinch": "grasp",
    "raise": "lift", "pick_up": "lift", "pick": "lift", "elevate": "lift", "hoist": "lift",
    "carry": "move", "transport": "move", "transfer": "move", "bring": "move", "translate": "move",
    "put": "place", "lower": "place", "set": "place", "put_down": "place", "set_down": "place",
    "stack": "place", "insert": "place", "deposit": "place",
    "open": "release", "let_go": "release", "drop": "release", "let": "release", "ungrasp": "release",
    "withdraw": "retreat", "return": "retreat", "back": "retreat", "back_away": "retreat",
    "move_away": "retreat", "move_back": "retreat", "pull_back": "retreat", "retract": "retreat",
    "slide": "push", "shove": "push", "nudge": "push", "sweep": "push",
    "stay": "hold", "remain": "hold", "wait": "hold", "keep_still": "hold",
}
_SKIP = {
    "the", "a", "an", "robot", "robotic", "arm", "gripper", "hand", "end", "effector", "end-effector", "it",
    "then", "now", "slowly", "carefully", "quickly", "gently", "first", "next", "finally", "and", "to",
    "is", "are", "starts", "begins", "continues", "panda", "manipulator", "i", "we", "will",
    "left", "right", "both", "arms", "hands", "grippers",  # "left arm: grasp ...", "both arms lift ..."
}
TIE_FRACTION = 0.9  # arms whose best phase overlaps the event at least this share of the best are tied
TOGETHER_FRACTION = 0.5  # two arms' phases of one name overlapping this share of the longer: at once
COLOURS = frozenset({
    "red", "green", "blue", "yellow", "orange", "purple", "cyan", "magenta", "pink", "brown", "black", "white",
    "gray", "grey", "violet", "teal", "beige", "gold", "golden", "silver", "navy", "maroon", "olive", "lime",
    "turquoise", "indigo",
})
_PARTICLES = {"up", "down", "toward", "towards", "to", "for", "at", "onto", "over", "out", "off", "on", "into"}
_STOPS = {
    "in", "into", "on", "onto", "to", "toward", "towards", "over", "above", "at", "from", "with", "using", "next",
    "beside", "near", "inside", "under", "below", "across", "off", "and", "then", "while", "by", "for", "so",
    "until", "before", "after", "behind", "away", "back",
}
_DETERMINERS = {"the", "a", "an", "this", "that", "its", "their", "his", "her", "of"}
_ARM_RE = re.compile(r"\b(left|right|both)\s+(?:arm|hand|gripper)s?\b")
# the actor named as an instrument: "with the left arm", "using both hands", "by its right gripper"
_ARM_WITH_RE = re.compile(
    r"\b(?:with|using|by)\s+(?:the\s+|its\s+|their\s+|his\s+|her\s+)?(left|right|both)\s+(?:arm|hand|gripper)s?\b")
# an arm phrase that is a place, not an actor: "to the left arm", "from the right hand"
_ARM_PLACE_WORDS = {"to", "toward", "towards", "from", "into", "onto", "in", "on", "over", "near", "beside", "at",
                    "of", "above", "under", "between", "behind"}
# clause separators: "and", "while", "whereas", ";", "," (a clause starts only where a verb follows)
_CLAUSE_SPLIT = re.compile(r"\s*;\s*|\s*,\s*|\s+(?:and|while|whereas)\s+")


def _verb_span(words: list[str]) -> tuple[int, int] | None:
    """(index of the leading verb, index after it and its particle word) in `words`, or None."""
    i = 0
    while i < len(words) and words[i] in _SKIP:
        i += 1
    if i >= len(words):
        return None
    head = lemma(words[i], _SYNONYMS)
    nxt = lemma(words[i + 1], _SYNONYMS) if i + 1 < len(words) else ""
    if f"{head}_{nxt}" in _SYNONYMS:
        return i, i + 2
    if head in _SYNONYMS:
        return i, i + 1
    return None


def leading_verb(caption: str | None) -> str | None:
    """The phase named by the caption's leading action verb, or None when it names none."""
    words = _words(caption)
    span = _verb_span(words)
    if span is None:
        return None
    i, j = span
    if j == i + 2:
        return _SYNONYMS[f"{lemma(words[i], _SYNONYMS)}_{lemma(words[i + 1], _SYNONYMS)}"]
    return _SYNONYMS[lemma(words[i], _SYNONYMS)]


def caption_object(caption: str | None) -> str:
    """The object phrase a caption names after its leading verb ("" when none); see the module doc."""
    words = _words(_ARM_RE.sub(" ", (caption or "").lower()))
    span = _verb_span(words)
    if span is None:
        return ""
    k = span[1]
    while k < len(words) and words[k] in _PARTICLES:
        k += 1
    out = []
    while k < len(words) and words[k] not in _STOPS:
        if words[k] not in _DETERMINERS:
            out.append(words[k])
        k += 1
    return " ".join(out)


def _forms(word: str) -> set[str]:
    w = word.lower()
    out = {w}
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        out.add(w[:-1])
        if w.endswith("es"):
            out.add(w[:-2])
    return out


def object_matches(truth_object: str | None, caption: str | None) -> bool:
    """Whether the caption names the true object (colour words + head noun; see the module doc)."""
    want = [w for w in _words(truth_object) if w not in _DETERMINERS]
    if not want:
        return False
    have: set[str] = set()
    for w in caption_object(caption).split():
        have |= _forms(w)
    colours = [w for w in want if w in COLOURS]
    needed = [*colours, want[-1]] if colours else want
    return all(_forms(w) & have for w in needed)


def caption_arm(caption: str | None) -> str | None:
    """The arm a caption names as the actor ("left" / "right" / "both"), or None; see the module doc."""
    text = (caption or "").lower()
    m = _ARM_WITH_RE.search(text)
    if m:
        return m.group(1)
    words = _words(text)
    span = _verb_span(words)
    before = " ".join(words[: span[0]]) if span else ""
    m = _ARM_RE.search(before)
    if m:  # the subject: "left arm: grasp ...", "the right hand grasps ..."
        return m.group(1)
    for m in _ARM_RE.finditer(text):
        prev = [w for w in _words(text[: m.start()]) if w not in ("the", "a", "its", "their")][-1:]
        if not prev or prev[0] not in _ARM_PLACE_WORDS:
            return m.group(1)
    return None


@dataclass
class Clause:
    """One clause of a caption: its text, the phase its leading verb names, the arm it names."""

    text: str
    verb: str | None
    arm: str | None


def caption_clauses(caption: str | None) -> list[Clause]:
    """The caption's clauses, each with its verb and arm (a part without a verb joins its clause)."""
    parts = [p for p in _CLAUSE_SPLIT.split((caption or "").strip()) if p.strip()]
    texts: list[str] = []
    pending = ""  # words before the first verb ("left arm, grasp ..."): the first clause's subject
    for part in parts:
        if leading_verb(part) is None:
            if texts:
                texts[-1] = f"{texts[-1]} and {part}"
            else:
                pending = f"{pending} {part}".strip()
            continue
        texts.append(f"{pending} {part}".strip() if pending and not texts else part)
        pending = ""
    if not texts:
        texts = [(caption or "").strip()]
    out = [Clause(t, leading_verb(t), caption_arm(t)) for t in texts]
    named = [c.arm for c in out if c.arm]
    for i, c in enumerate(out):  # a clause naming no arm shares the arm of the one before (else of the next)
        if c.arm is None and named:
            c.arm = next((d.arm for d in reversed(out[:i]) if d.arm), named[0])
    return out


def _overlap(start: int, end: int, p: Mapping[str, Any]) -> int:
    return min(int(end), int(p["end"])) - max(int(start), int(p["start"]))


def _per_arm(start: int, end: int, phases: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """arm -> [frames of the event its phases cover, the best phase's overlap, the best phase]."""
    per_arm: dict[str, list[Any]] = {}
    for p in phases:
        ov = _overlap(start, end, p)
        if ov <= 0:
            continue
        entry = per_arm.setdefault(str(p.get("arm") or ""), [0, 0, p])
        entry[0] += ov
        if ov > entry[1]:
            entry[1], entry[2] = ov, p
    return per_arm


def _tied(per_arm: dict[str, list[Any]]) -> list[list[Any]]:
    most = max(e[0] for e in per_arm.values())
    return [e for e in per_arm.values() if e[0] >= TIE_FRACTION * most]


def _length(p: Mapping[str, Any]) -> int:
    return int(p["end"]) - int(p["start"])


def truth_phase(start: int, end: int, phases: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ground-truth phase an event [start, end) is scored against (see the module doc), or None."""
    per_arm = _per_arm(start, end, phases)
    if not per_arm:
        return None
    best = min(_tied(per_arm), key=lambda e: (_length(e[2]), -e[1], int(e[2]["start"])))
    return best[2]


def overlap_phase(start: int, end: int, phases: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of `truth_phase(start, end, phases)`: for one arm, the phase overlapping most."""
    p = truth_phase(start, end, phases)
    return str(p["name"]) if p is not None else None


def acting_arms(start: int, end: int, phases: Iterable[Mapping[str, Any]],
                arms: Iterable[str] = ("left", "right")) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
    """(`truth_phase`, the phases of the arms acting in the event): one phase, or one per arm when
    the arms act together (see the module doc). `arms` are the episode's arms (for an `arm: both`)."""
    phases = list(phases)
    per_arm = _per_arm(start, end, phases)
    if not per_arm:
        return None, []
    tp = truth_phase(start, end, phases)
    if tp is None:
        return None, []
    if str(tp.get("arm") or "") == "both":
        return tp, [{**tp, "arm": a} for a in arms]
    acting = [tp]
    for e in _tied(per_arm):
        q = e[2]
        if q is tp or str(q["name"]) != str(tp["name"]):
            continue
        together = min(int(tp["end"]), int(q["end"])) - max(int(tp["start"]), int(q["start"]))
        if together >= TOGETHER_FRACTION * max(_length(tp), _length(q)):
            acting.append(q)
    return tp, acting


@dataclass
class Verdict:
    """One event judged against the truth (see the module doc)."""

    truth: str  # the true phase name
    arm: str  # the acting arm, "both" when the arms act together, "arm" for one unnamed arm
    verb: str  # the caption's verb for the acting arm(s), "(none)" when it names none
    verb_ok: bool
    arm_ok: bool | None  # None: a one-arm episode (the arm is not scored)
    object_ok: bool | None  # None: the true phase has no object
    truth_class: str | None = None  # the verb class of the true phase's name (None: its verb is in no class)
    verb_class: str = "(none)"  # the class of the caption's verb for the acting arm(s); "(open)" for a verb in
    # no class (open vocabulary), "(none)" when it names no verb
    open_verb: str | None = None  # that open-vocabulary verb
    judged: list[Mapping[str, Any]] = field(default_factory=list)  # the truth phase(s) the event was judged on

    @property
    def class_ok(self) -> bool:
        return self.truth_class is not None and self.verb_class == self.truth_class

    @property
    def verb_arm_ok(self) -> bool:
        return self.verb_ok and self.arm_ok is not False


def _caption_class(texts: list[str], truth_class: str | None) -> tuple[str, str | None]:
    """(the class the caption's clause(s) for the acting arm(s) name, an open-vocabulary verb): with
    several clauses, one naming another class than the truth's counts (as for the verb)."""
    found = []
    for t in texts:
        verb, _ = lead_verb(t)
        found.append(("(none)", None) if verb is None else (CLASS_OF[verb], None) if verb in CLASS_OF
                     else ("(open)", verb))
    wrong = [f for f in found if f[0] != truth_class]
    return wrong[0] if wrong else found[0]


def judge(start: int, end: int, phases: Iterable[Mapping[str, Any]], caption: str | None,
          arms: Iterable[str] | None = None, at: str = "overlap") -> Verdict | None:
    """The verdict on one event [start, end) with `caption` (None when no truth phase overlaps it).

    `arms` are the episode's arms; with more than one (or phases of several arms) the arm is scored.
    `at`: "overlap" scores against the phase overlapping the event most (`truth_phase`), "middle"
    against the phase at the event's middle frame."""
    phases = list(phases)
    arm_list = [str(a) for a in arms or []]
    phase_arms = sorted({str(p.get("arm") or "arm") for p in phases})
    multi = len(arm_list) > 1 or len(phase_arms) > 1
    if at == "middle":
        start = (int(start) + int(end) - 1) // 2
        end = start + 1
    elif at != "overlap":
        raise ValueError(f"at={at!r}: expected 'overlap' or 'middle'")
    tp, acting = acting_arms(start, end, phases, arm_list if len(arm_list) > 1 else ("left", "right"))
    if tp is None:
        return None
    clauses = caption_clauses(caption)
    together = len(acting) > 1

    def clause_of(arm: str) -> Clause | None:
        return next((c for c in clauses if c.arm == arm), None) or next((c for c in clauses if c.arm == "both"), None)

    if not multi:
        verb = leading_verb(caption)
        arm_ok = None
        texts = [caption or ""]
    else:
        mine = [clause_of(str(p.get("arm") or "")) for p in acting]
        found = [c for c in mine if c is not None]
        if together:
            arm_ok = len(found) == len(mine)
        else:
            arm_ok = bool(found) and found[0].arm == str(tp.get("arm") or "")
        # the verb the caption gives the acting arm(s): with arms together, a clause naming another verb counts
        wrong = [c.verb for c in found if c.verb != str(tp["name"])]
        verb = (wrong[0] if wrong else found[0].verb) if found else leading_verb(caption)
        texts = [c.text for c in found] or [caption or ""]
    truth_name = str(tp["name"])
    objects = [str(p["object"]) for p in acting if p.get("object")]
    object_ok = any(object_matches(o, t) for o in objects for t in texts) if objects else None
    arm = "both" if together else str(tp.get("arm") or "arm")
    truth_class = verb_class(truth_name)
    cls, open_verb = _caption_class(texts, truth_class)
    return Verdict(truth=truth_name, arm=arm, verb=verb or "(none)", verb_ok=verb == truth_name, arm_ok=arm_ok,
                   object_ok=object_ok, truth_class=truth_class, verb_class=cls, open_verb=open_verb,
                   judged=list(acting) or [tp])


def _ratio(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def phase_spans(ep: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The phases of one truth entry as `{"name", "start", "end", ...}`: as written (Carve's own form), or
    built from `boundaries` and phase NAMES (the plain JSON and LeRobot `subtask_index` forms of
    `ingest.truth.read_truth`; the last phase ends at `length`, or open-ended when it is unknown).
    Unnamed phases (no `phases`) are named "(unnamed)"."""
    phases = ep.get("phases")
    if phases and all(isinstance(p, Mapping) for p in phases):
        return list(phases)
    bounds = [int(b) for b in ep.get("boundaries", [])]
    length = ep.get("length")
    ends = [*bounds, int(length) if length is not None else 1 << 40]
    names = [str(p) for p in phases] if phases else ["(unnamed)"] * len(ends)
    return [{"name": n, "start": s, "end": e} for n, s, e in zip(names, [0, *bounds], ends, strict=False)]


def evaluate(events: Iterable[Mapping[str, Any]], truth: Mapping[str, Any], at: str = "overlap") -> dict[str, Any]:
    """Verb, verb-class, object, arm and verb-and-arm accuracy of captions against the ground-truth phases
    (see the module doc), the truth phase of an event taken `at` its largest overlap or its middle frame.
    Events of episodes that the ground truth does not list are counted in `unmatched_events`.
    """
    by_index = {int(e["episode_index"]): e for e in truth.get("episodes", [])}
    gt_dataset = truth.get("dataset")
    rows = list(events)
    datasets = {r.get("dataset") for r in rows}
    if gt_dataset in datasets and len(datasets) > 1:
        rows = [r for r in rows if r.get("dataset") == gt_dataset]
    total = correct = unmatched = together = 0
    obj_total = obj_correct = arm_total = arm_correct = va_correct = 0
    per: dict[str, Counter[str]] = defaultdict(Counter)
    per_arm: dict[str, Counter[str]] = defaultdict(Counter)
    per_task: dict[str, Counter[str]] = defaultdict(Counter)
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    class_confusion: dict[str, Counter[str]] = defaultdict(Counter)
    per_task_class: dict[str, Counter[str]] = defaultdict(Counter)
    open_verbs: Counter[str] = Counter()
    class_total = class_correct = unclassified = 0
    seen: set[tuple[int, str, int, int, str]] = set()  # classed truth phases an event was judged on
    named: set[tuple[int, str, int, int, str]] = set()  # ... by an event whose caption names its class
    judged_episodes: set[int] = set()
    for r in rows:
        ep = by_index.get(int(r["episode_index"]))
        if ep is None:
            unmatched += 1
            continue
        v = judge(int(r["start_frame"]), int(r["end_frame"]), phase_spans(ep), r.get("caption"),
                  ep.get("arms") or [], at=at)
        if v is None:
            unmatched += 1
            continue
        judged_episodes.add(int(r["episode_index"]))
        for p in v.judged:
            key = _phase_key(int(r["episode_index"]), p)
            seen.add(key)
            if v.class_ok:
                named.add(key)
        if v.truth_class is None:
            unclassified += 1
        else:
            class_total += 1
            class_correct += v.class_ok
            class_confusion[v.truth_class][v.verb_class] += 1
            task_c = per_task_class[str(ep.get("task_type") or "")]
            task_c["total"] += 1
            task_c["correct"] += v.class_ok
        if v.open_verb:
            open_verbs[v.open_verb] += 1
        total += 1
        correct += v.verb_ok
        va_correct += v.verb_arm_ok
        together += v.arm == "both"
        confusion[v.truth][v.verb] += 1
        task = str(ep.get("task_type") or "")
        for bucket in (per[v.truth], per_arm[v.arm], *([per_task[task]] if task else [])):
            bucket["total"] += 1
            bucket["correct"] += v.verb_ok
            bucket["va_correct"] += v.verb_arm_ok
        if v.object_ok is not None:
            obj_total += 1
            obj_correct += v.object_ok
            per_arm[v.arm]["obj_total"] += 1
            per_arm[v.arm]["obj_correct"] += v.object_ok
        if v.arm_ok is not None:
            arm_total += 1
            arm_correct += v.arm_ok
            per_arm[v.arm]["arm_total"] += 1
            per_arm[v.arm]["arm_correct"] += v.arm_ok
    return {
        "events": total,
        "correct": correct,
        "accuracy": _ratio(correct, total),
        "object_events": obj_total,
        "object_correct": obj_correct,
        "object_accuracy": _ratio(obj_correct, obj_total),
        "arm_events": arm_total,
        "arm_correct": arm_correct,
        "arm_accuracy": _ratio(arm_correct, arm_total),
        "verb_arm_correct": va_correct,
        "verb_arm_accuracy": _ratio(va_correct, total),
        "together_events": together,
        "unmatched_events": unmatched,
        "per_phase": {
            ph: {"events": c["total"], "accuracy": _ratio(c["correct"], c["total"]),
                 "verb_arm_accuracy": _ratio(c["va_correct"], c["total"])}
            for ph, c in sorted(per.items(), key=lambda kv: PHASES.index(kv[0]) if kv[0] in PHASES else 99)
        },
        "per_arm": {
            a: {"events": c["total"], "accuracy": _ratio(c["correct"], c["total"]),
                "object_events": c["obj_total"], "object_accuracy": _ratio(c["obj_correct"], c["obj_total"]),
                "arm_events": c["arm_total"], "arm_accuracy": _ratio(c["arm_correct"], c["arm_total"]),
                "verb_arm_accuracy": _ratio(c["va_correct"], c["total"])}
            for a, c in sorted(per_arm.items())
        },
        "per_task": {
            t: {"events": c["total"], "accuracy": _ratio(c["correct"], c["total"]),
                "verb_arm_accuracy": _ratio(c["va_correct"], c["total"])}
            for t, c in sorted(per_task.items())
        },
        "confusion": {t: dict(c.most_common()) for t, c in confusion.items()},
        "at": at,
        "class_events": class_total,
        "class_correct": class_correct,
        "class_accuracy": _ratio(class_correct, class_total),
        "unclassified_events": unclassified,
        "per_task_class": {t: {"events": c["total"], "accuracy": _ratio(c["correct"], c["total"])}
                           for t, c in sorted(per_task_class.items())},
        "class_confusion": {t: dict(c.most_common()) for t, c in sorted(class_confusion.items())},
        "open_vocabulary": dict(open_verbs.most_common()),
        **phase_coverage(by_index, judged_episodes, seen, named),
    }


def _phase_key(episode: int, p: Mapping[str, Any]) -> tuple[int, str, int, int, str]:
    return (episode, str(p.get("arm") or ""), int(p["start"]), int(p["end"]), str(p["name"]))


def _class_runs(ep: Mapping[str, Any]) -> list[list[Mapping[str, Any]]]:
    """The episode's classed truth phases in runs: per arm, consecutive phases of one verb class are one run
    ("reach above the cube" then "descend to the cube": one reach)."""
    runs: list[list[Mapping[str, Any]]] = []
    last: dict[str, list[Mapping[str, Any]]] = {}
    for p in sorted(phase_spans(ep), key=lambda q: (str(q.get("arm") or ""), int(q["start"]))):
        cls, arm = verb_class(str(p["name"])), str(p.get("arm") or "")
        if cls is None:
            last.pop(arm, None)
            continue
        run = last.get(arm)
        if run is not None and verb_class(str(run[-1]["name"])) == cls and int(run[-1]["end"]) == int(p["start"]):
            run.append(p)
        else:
            run = [p]
            runs.append(run)
            last[arm] = run
    return runs


def phase_coverage(by_index: Mapping[int, Mapping[str, Any]], episodes: Iterable[int],
                   seen: set[tuple[int, str, int, int, str]], named: set[tuple[int, str, int, int, str]],
                   examples: int = 10) -> dict[str, Any]:
    """The truth's side of the score. The classed phases of the episodes that have events, in runs of one
    class (`_class_runs`): how many runs an event was judged on (`phases_seen`) and how many such an event
    NAMES by class (`phases_named`, `phase_recall`). A run no event is judged on (no event of its own, or
    too short to hold an event's middle frame) lowers the recall but never the per-event accuracy. Per task,
    and the first `examples` runs no event names (`unnamed_phases`, whether seen or not)."""
    total = 0
    per_task: dict[str, Counter[str]] = defaultdict(Counter)
    missing: list[dict[str, Any]] = []
    for e in sorted(episodes):
        ep = by_index[e]
        task = per_task[str(ep.get("task_type") or "")]
        for run in _class_runs(ep):
            keys = {_phase_key(e, p) for p in run}
            is_seen, is_named = bool(keys & seen), bool(keys & named)
            total += 1
            task["phases"] += 1
            task["seen"] += is_seen
            task["named"] += is_named
            if not is_named and len(missing) < examples:
                missing.append({"episode_index": e, "name": " + ".join(str(p["name"]) for p in run),
                                "start": int(run[0]["start"]), "end": int(run[-1]["end"]), "seen": is_seen})
    n_seen = sum(c["seen"] for c in per_task.values())
    n_named = sum(c["named"] for c in per_task.values())
    return {"phases": total, "phases_seen": n_seen, "phases_named": n_named,
            "phase_recall": _ratio(n_named, total),
            "per_task_phases": {t: {"phases": c["phases"], "seen": c["seen"], "named": c["named"],
                                    "recall": _ratio(c["named"], c["phases"])} for t, c in sorted(per_task.items())},
            "unnamed_phases": missing}


def format_class_confusion(confusion: Mapping[str, Mapping[str, int]], indent: str = "  ") -> str:
    """The verb-class confusion table: a row per true class, a column per caption class."""
    cols = sorted({c for row in confusion.values() for c in row})
    head = f"{indent}{'truth | caption':<15}" + "".join(f"{c:>9}" for c in cols)
    rows = [head]
    for t in sorted(confusion):
        rows.append(f"{indent}{t:<15}" + "".join(f"{confusion[t].get(c, 0) or '.':>9}" for c in cols))
    return "\n".join(rows)


def format_report(rep: Mapping[str, Any]) -> str:
    """Human-readable accuracy tables (verb, object, arm, verb and arm) and the most common confusions."""
    lines = [f"caption verb accuracy: {rep['accuracy']:.1%} ({rep['correct']}/{rep['events']} events)"]
    if "object_accuracy" in rep:
        lines.append(f"caption object accuracy: {rep['object_accuracy']:.1%} "
                     f"({rep['object_correct']}/{rep['object_events']} events whose phase has an object)")
    if rep.get("arm_events"):
        lines.append(f"caption arm accuracy: {rep['arm_accuracy']:.1%} "
                     f"({rep['arm_correct']}/{rep['arm_events']} events of multi-arm episodes)")
    if "verb_arm_accuracy" in rep:
        both = f"; {rep['together_events']} with the arms acting together" if rep.get("together_events") else ""
        lines.append(f"caption verb and arm accuracy: {rep['verb_arm_accuracy']:.1%} "
                     f"({rep['verb_arm_correct']}/{rep['events']} events{both})")
    if rep.get("unmatched_events"):
        lines.append(f"  ({rep['unmatched_events']} events had no ground-truth episode/phase)")
    lines.append(f"  {'phase':<9} {'events':>6} {'accuracy':>9} {'verb+arm':>9}")
    for ph, s in rep["per_phase"].items():
        lines.append(f"  {ph:<9} {s['events']:>6} {s['accuracy']:>9.1%} {s.get('verb_arm_accuracy', 0.0):>9.1%}")
    per_arm = rep.get("per_arm") or {}
    if len(per_arm) > 1 or rep.get("arm_events"):
        lines.append(f"  {'arm':<9} {'events':>6} {'verb':>9} {'object':>9} {'arm named':>10} {'verb+arm':>9}")
        for a, s in per_arm.items():
            obj = f"{s['object_accuracy']:>9.1%}" if s["object_events"] else f"{'-':>9}"
            named = f"{s['arm_accuracy']:>10.1%}" if s["arm_events"] else f"{'-':>10}"
            lines.append(f"  {a:<9} {s['events']:>6} {s['accuracy']:>9.1%} {obj} {named} "
                         f"{s.get('verb_arm_accuracy', 0.0):>9.1%}")
    per_task = rep.get("per_task") or {}
    if len(per_task) > 1:
        lines.append(f"  {'task':<20} {'events':>6} {'verb':>9} {'verb+arm':>9}")
        for t, s in per_task.items():
            lines.append(f"  {t:<20} {s['events']:>6} {s['accuracy']:>9.1%} {s['verb_arm_accuracy']:>9.1%}")
    if rep.get("class_events"):
        lines.append(f"caption verb-class accuracy: {rep['class_accuracy']:.1%} ({rep['class_correct']}/"
                     f"{rep['class_events']} events whose true phase names a verb of a class; truth phase at the "
                     f"event's {'middle frame' if rep.get('at') == 'middle' else 'largest overlap'})")
        if rep.get("unclassified_events"):
            lines.append(f"  ({rep['unclassified_events']} events' true phase names no verb of a class)")
        lines.append(format_class_confusion(rep["class_confusion"]))
        tasks = rep.get("per_task_class") or {}
        if len(tasks) > 1:
            lines.append(f"  {'task':<24} {'events':>6} {'verb class':>10}")
            for t, s in tasks.items():
                lines.append(f"  {t:<24} {s['events']:>6} {s['accuracy']:>10.1%}")
        if rep.get("phases"):
            lines.append(f"truth phases named by an event: {rep['phase_recall']:.1%} ({rep['phases_named']}/"
                         f"{rep['phases']} runs of one class; {rep['phases'] - rep['phases_seen']} with no event "
                         "judged on them)")
        if rep.get("open_vocabulary"):
            lines.append("  open-vocabulary caption verbs: " +
                         ", ".join(f"{v} ({n})" for v, n in rep["open_vocabulary"].items()))
    mistakes = [(n, t, p) for t, c in rep["confusion"].items() for p, n in c.items() if p != t]
    if mistakes:
        lines.append("  most common confusions (truth -> caption verb):")
        for n, t, p in sorted(mistakes, key=lambda x: (-x[0], x[1], x[2]))[:10]:
            lines.append(f"    {t} -> {p}: {n}")
    return "\n".join(lines)
