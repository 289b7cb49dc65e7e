"""`CaptionPlanner`: the next-event description for event-mode policies, from caption templates.

It is fitted on training episodes: the kinematic captioner's per-event phases (phase, arm,
grasp cycle) of each episode, grouped by the task's *shape* (parsed from the task text by the
captioner's own `parse_task`: push or not, number of objects, relation, arms named), and the
most frequent phase sequence of each shape is kept. At run time the policy calls it once per
plan (each event-mode plan is one event): it parses the observation's task text, takes the
sequence of that shape and renders phase k with the captioner's templates (`describe`,
`arm_suffix`), so the k-th call of an episode returns the k-th event's caption for *this*
task's objects and target; past the end it repeats the last phase. `reset()` starts a new
episode (the policy calls it). `to_dict` / `from_dict` save it inside a policy's settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from carve.captioners.task_text import parse_task
from carve.captioners.templates import arm_suffix, describe

Phase = tuple[str, str, int]  # (phase, arm, grasp cycle)


def task_shape(task: str) -> str:
    """A key for tasks that share a phase sequence: push?, objects, relation, arms."""
    p = parse_task(task)
    return f"push={int(p.is_push)}|objects={len(p.objects)}|rel={p.relation}|arms={','.join(sorted(p.arms))}"


def render(task: str, phase: Phase, multi_arm: bool) -> str:
    name, arm, cycle = phase
    text = describe(name, parse_task(task).for_arm(arm), cycle)
    return text + (arm_suffix(arm) if multi_arm else "")


class CaptionPlanner:
    """Caption templates of each task shape's typical phase sequence, advanced once per call."""

    def __init__(self, sequences: dict[str, list[Phase]]) -> None:
        if not sequences:
            raise ValueError("a planner needs at least one phase sequence")
        self.sequences = {k: [tuple(p) for p in v] for k, v in sequences.items()}  # type: ignore[misc]
        counts = Counter(len(v) for v in self.sequences.values())
        self._fallback = max(self.sequences, key=lambda k: (counts[len(self.sequences[k])], k))
        self.k = 0

    @classmethod
    def fit(cls, episodes: Sequence[tuple[str, Sequence[Phase]]]) -> CaptionPlanner:
        """From (task text, its events' phases) of training episodes: the modal sequence per shape."""
        by_shape: dict[str, Counter[tuple[Phase, ...]]] = {}
        for task, phases in episodes:
            by_shape.setdefault(task_shape(task), Counter())[tuple(tuple(p) for p in phases)] += 1  # type: ignore[misc]
        return cls({k: list(c.most_common(1)[0][0]) for k, c in by_shape.items()})

    def reset(self) -> None:
        self.k = 0

    def sequence(self, task: str) -> list[Phase]:
        return self.sequences.get(task_shape(task)) or self.sequences[self._fallback]

    def captions(self, task: str) -> list[str]:
        seq = self.sequence(task)
        multi = len({p[1] for p in seq}) > 1
        return [render(task, p, multi) for p in seq]

    def __call__(self, observation: dict[str, Any]) -> str:
        caps = self.captions(str(observation.get("task") or ""))
        text = caps[min(self.k, len(caps) - 1)]
        self.k += 1
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"sequences": {k: [list(p) for p in v] for k, v in self.sequences.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaptionPlanner:
        return cls({k: [(str(p[0]), str(p[1]), int(p[2])) for p in v] for k, v in d["sequences"].items()})
