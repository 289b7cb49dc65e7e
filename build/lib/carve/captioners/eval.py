"""Caption accuracy against simulated ground truth (`carve eval-captions`).

Owns:
* `leading_verb(caption)`: the phase a caption names with its leading action verb (subject
  words such as "the robot" skipped, inflections and common synonyms folded: "grabs" ->
  grasp, "picks up" -> lift, "lowers" -> place, "opens the gripper" -> release ...), or None;
* `overlap_phase(start, end, phases)`: the ground-truth phase with the largest frame overlap
  with an event [start, end) (ties go to the earlier phase);
* `evaluate(events, truth)`: accuracy overall and per phase plus a confusion table, over
  event rows (dicts with episode_index, start_frame, end_frame, caption, and optionally
  dataset) and the ground-truth JSON of docs/FORMATS.md.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push")

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
}
_SKIP = {
    "the", "a", "an", "robot", "robotic", "arm", "gripper", "hand", "end", "effector", "end-effector", "it",
    "then", "now", "slowly", "carefully", "quickly", "gently", "first", "next", "finally", "and", "to",
    "is", "are", "starts", "begins", "continues", "panda", "manipulator", "i", "we", "will",
}
_IRREGULAR = {"went": "go", "goes": "go", "brought": "bring", "put": "put", "set": "set", "let": "let",
              "held": "hold", "withdrew": "withdraw", "lifts": "lift", "moves": "move", "places": "place",
              "raises": "raise", "closes": "close", "releases": "release", "pushes": "push",
              "reaches": "reach", "approaches": "approach", "lowers": "lower", "grasps": "grasp"}


def _lemma(word: str) -> str:
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in _SYNONYMS:
        return w
    for suf, rep in (("ing", ""), ("ing", "e"), ("ied", "y"), ("ed", ""), ("ed", "e"), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) > len(suf) + 2:
            cand = w[: -len(suf)] + rep
            if cand in _SYNONYMS:
                return cand
            if len(cand) > 2 and cand[-1] == cand[-2] and cand[:-1] in _SYNONYMS:  # "dropped", "gripping"
                return cand[:-1]
    return w


def leading_verb(caption: str | None) -> str | None:
    """The phase named by the caption's leading action verb, or None when it names none."""
    words = re.findall(r"[a-z]+(?:-[a-z]+)?", (caption or "").lower())
    i = 0
    while i < len(words) and words[i] in _SKIP:
        i += 1
    if i >= len(words):
        return None
    head = _lemma(words[i])
    nxt = _lemma(words[i + 1]) if i + 1 < len(words) else ""
    two = f"{head}_{nxt}"
    if two in _SYNONYMS:
        return _SYNONYMS[two]
    return _SYNONYMS.get(head)


def overlap_phase(start: int, end: int, phases: Iterable[Mapping[str, Any]]) -> str | None:
    """The ground-truth phase name with the largest overlap with frames [start, end)."""
    best, best_ov = None, 0
    for p in phases:
        ov = min(int(end), int(p["end"])) - max(int(start), int(p["start"]))
        if ov > best_ov:
            best, best_ov = str(p["name"]), ov
    return best


def evaluate(events: Iterable[Mapping[str, Any]], truth: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy of caption verbs against the overlapping ground-truth phases.

    Events of episodes that the ground truth does not list are counted in `unmatched_events`.
    """
    by_index = {int(e["episode_index"]): e for e in truth.get("episodes", [])}
    gt_dataset = truth.get("dataset")
    rows = list(events)
    datasets = {r.get("dataset") for r in rows}
    if gt_dataset in datasets and len(datasets) > 1:
        rows = [r for r in rows if r.get("dataset") == gt_dataset]
    total = correct = unmatched = 0
    per: dict[str, Counter[str]] = defaultdict(Counter)
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        ep = by_index.get(int(r["episode_index"]))
        if ep is None:
            unmatched += 1
            continue
        truth_phase = overlap_phase(int(r["start_frame"]), int(r["end_frame"]), ep.get("phases", []))
        if truth_phase is None:
            unmatched += 1
            continue
        pred = leading_verb(r.get("caption")) or "(none)"
        total += 1
        per[truth_phase]["total"] += 1
        if pred == truth_phase:
            correct += 1
            per[truth_phase]["correct"] += 1
        confusion[truth_phase][pred] += 1
    return {
        "events": total,
        "correct": correct,
        "accuracy": correct / total if total else 0.0,
        "unmatched_events": unmatched,
        "per_phase": {
            ph: {"events": c["total"], "accuracy": c["correct"] / c["total"] if c["total"] else 0.0}
            for ph, c in sorted(per.items(), key=lambda kv: PHASES.index(kv[0]) if kv[0] in PHASES else 99)
        },
        "confusion": {t: dict(c.most_common()) for t, c in confusion.items()},
    }


def format_report(rep: Mapping[str, Any]) -> str:
    """Human-readable accuracy table and the most common confusions."""
    lines = [f"caption verb accuracy: {rep['accuracy']:.1%} ({rep['correct']}/{rep['events']} events)"]
    if rep.get("unmatched_events"):
        lines.append(f"  ({rep['unmatched_events']} events had no ground-truth episode/phase)")
    lines.append(f"  {'phase':<9} {'events':>6} {'accuracy':>9}")
    for ph, s in rep["per_phase"].items():
        lines.append(f"  {ph:<9} {s['events']:>6} {s['accuracy']:>9.1%}")
    mistakes = [(n, t, p) for t, c in rep["confusion"].items() for p, n in c.items() if p != t]
    if mistakes:
        lines.append("  most common confusions (truth -> caption verb):")
        for n, t, p in sorted(mistakes, key=lambda x: (-x[0], x[1], x[2]))[:10]:
            lines.append(f"    {t} -> {p}: {n}")
    return "\n".join(lines)
