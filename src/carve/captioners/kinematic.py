"""The offline kinematic captioner: a deterministic HEURISTIC, not a model.

It describes each event of an episode from its signals alone (no pixels) plus the objects,
target and arm assignment parsed from the episode's task text. It labels PHASES PER ARM,
frame by frame, on the whole episode (the event rows of one episode tile it), and then gives
each event the phase of the arm(s) acting in it. Only signals that any teleoperation recording
has are used, read in physical units through `carve.ingest` (the segmenter's own readers and
thresholds, the run's `segment.*`: seconds, m/s or rad/s, m or rad), so one configuration
serves every robot, simulator and frame rate:

* which columns belong to which arm (`ingest.arms.arm_layouts`: ALOHA-style `left_*` /
  `right_*`, a single arm, grippers in the state or only in the action). Rows without column
  names are one arm; its gripper is the state column that tracks the row's `gripper` opening;
* each arm's gripper STATE (open / closed by hysteresis in the gripper's own units,
  `ingest.gripper`), read from the operator's command when there is one: a close followed by
  an open is one grasp cycle; the object is held in between. An open before the arm's first
  close is NO release when a close follows (nothing was held: the gripper opens to grasp,
  during the approach); only without a later close does the episode start holding;
* each arm's motion (smoothed, `ingest.kinematics`): its speed, and "bouts" of motion (speed
  above the pause speed around a stretch at the moving speed), so tremor is not motion.

Consecutive events of one episode that would get the same caption (one phase the segmenter cut at
a pause or a change of speed) are not captioned alike: they are numbered, with the reason of the cut
("lift the peg (part 2 of 3 after a pause)"); where the arm started a new grasp cycle on the same
phase the data shows a retry, and the caption says so ("grasp the peg again (retry)"). See
`number_repeats`.

The work is in three modules: `captioners.task_text` (the instruction's objects, target and arms),
`captioners.phases` (the phase of each event, per arm, from the signals) and
`captioners.templates` (the words). This module puts them together as the `kinematic` backend.
"""

from __future__ import annotations

from carve.captioners.base import Captioner, CaptionResult, EventView
from carve.captioners.event_phase import EventPhase
from carve.captioners.phases import episode_phases, event_phases, label_phases
from carve.captioners.task_text import parse_task
from carve.captioners.templates import phase_caption
from carve.core.config import CaptionConfig, SegmentConfig

__all__ = ["KinematicCaptioner", "caption_episode_events", "event_phases", "label_phases", "number_repeats",
           "parse_task"]


# why the segmenter cut a phase (an event's start_reason), as said in a numbered caption
CUT_REASONS = {"pause": "after a pause", "motion_change": "after a turn", "speed_change": "after a change of speed",
               "motion_start": "after a stop", "gripper_close": "as the gripper closes",
               "gripper_open": "as the gripper opens", "visual": "after a change in view", "max_len": "continued"}


def number_repeats(captions: list[str], phases: list[EventPhase], reasons: list[str]) -> list[str]:
    """Captions in which no two consecutive events share a caption: a run of k equal captions of one
    phase becomes "<caption> (part i of k <reason>)" from its second event on (the first names the
    phase as it is), the reason being why that event starts (`CUT_REASONS`);
    an event whose arm is on a new grasp cycle of the same phase is a retry: "<caption> again (retry)"."""
    out = list(captions)
    i = 0
    while i < len(captions):
        j = i + 1
        while j < len(captions) and captions[j] == captions[i]:
            j += 1
        run = list(range(i, j))
        cycles = [phases[k].cycle for k in run]
        groups: list[list[int]] = []
        for k, c in zip(run, cycles, strict=True):
            if groups and phases[groups[-1][-1]].cycle == c:
                groups[-1].append(k)
            else:
                groups.append([k])
        for g_i, group in enumerate(groups):
            base = captions[group[0]] + (" again (retry)" if g_i else "")
            for part, k in enumerate(group, start=1):
                if part == 1:
                    out[k] = base
                else:
                    why = CUT_REASONS.get(reasons[k], "")
                    out[k] = f"{base} (part {part} of {len(group)}{' ' + why if why else ''})"
        i = j
    return out


def caption_episode_events(events: list[EventView], cfg: SegmentConfig | None = None) -> list[str]:
    """Captions for the events of one episode (sorted by event_index); `cfg`: the run's `segment.*`."""
    if not events:
        return []
    phrases = parse_task(events[0].task)
    phases, arms = episode_phases(events, cfg)
    captions = [phase_caption(p, phrases, arms > 1) for p in phases]
    return number_repeats(captions, phases, [v.start_reason for v in events])


class KinematicCaptioner(Captioner):
    """Deterministic captions from signals + task text (see the module docstring)."""

    name = "kinematic-v12"  # rule 13 (a held object turned in place); v11 (rules 11-12) measured held out once, on maniskill_heldout

    def __init__(self, cfg: CaptionConfig | None = None, segment: SegmentConfig | None = None):
        self.cfg = cfg or CaptionConfig()
        self.segment = segment or SegmentConfig()

    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        return [CaptionResult(caption=c) for c in caption_episode_events(events, self.segment)]
