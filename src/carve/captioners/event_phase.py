"""The phases the kinematic captioner names, and how one event's phase is chosen from its arms.

`PHASES` are the phase names and `REACH` ... `ACT` their per-frame codes (`IDLE`: an arm resting
outside any phase); `EventPhase` is what the captioner gets for one event (the phase, the arm it is
about or `BOTH`, the object index, the other arms' phases). `event_phase` chooses it from each
arm's reading of the event (`Cand`: its majority label and the run of that label, `label_run`): the
most acting arm, ties (`TIE_FRACTION`) to the shorter phase, two arms in the same phase at once
(`TOGETHER_FRACTION`) both. The rules are in `phases`' module doc, which labels the frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "retreat", "push", "hold", "act", "turn")
REACH, GRASP, LIFT, MOVE, PLACE, RELEASE, RETREAT, PUSH, HOLD, ACT, TURN = range(len(PHASES))
IDLE = -1
BOTH = "both"  # the arm of an event that the arms do together
TIE_FRACTION = 0.9  # arms with at least this share of the most active arm's frames are tied
TOGETHER_FRACTION = 0.7  # two arms' runs of one phase overlapping this share of the longer: done together


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
    action: str = ""  # for "act": the class the motion gives an undirected slide (`phases.slide_from_motion`), else ""


def label_run(labels: np.ndarray, t: int) -> tuple[int, int]:
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
class Cand:
    """One arm's reading of one event."""

    arm: str
    phase: int  # the majority label of its non-idle frames
    acting: int  # frames in a phase other than idle or hold
    run: tuple[int, int]  # the run of that label containing its first frame in the event
    cycle: int
    holds: bool
    tail: int = 0  # frames of the final hold that follows that run (the rest the phase ends in)
    action: str = ""  # an undirected slide's class from the motion (`phases.slide_from_motion`), for an "act"

    @property
    def run_len(self) -> int:
        return self.run[1] - self.run[0]


def _together(a: Cand, b: Cand) -> bool:
    """Two arms doing the same phase at once: their runs overlap by `TOGETHER_FRACTION` of the longer."""
    ov = min(a.run[1], b.run[1]) - max(a.run[0], b.run[0])
    return a.phase == b.phase and ov >= TOGETHER_FRACTION * max(a.run_len, b.run_len)


def event_phase(cands: list[Cand]) -> EventPhase | None:
    """The phase of one event from its arms' readings (see `phases`' module doc, its last paragraph)."""
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

