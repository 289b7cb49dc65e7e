"""The kinds of defect `carve check` reports, their severity, and an episode's score.

A defect is a span of an episode's own frame indices (end inclusive) with a kind, a severity and
a detail. Errors exclude the episode (or the events the span touches) from what is trained on;
warnings are reported. An episode's score is 100 less 35 per kind of error and 10 per kind of
warning it has (at least 0); an episode that cannot be read scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]

KINDS: dict[str, tuple[Severity, str]] = {
    "nan": ("error", "NaN/Inf in state or action"),
    "timestamp_gap": ("error", "frames missing: the timestamp jumps by at least `check.gap_periods` frame periods"),
    "fps_mismatch": ("error", "the measured frame rate (timestamps or video) differs from the declared one"),
    "frozen_video": ("error", "a camera repeats one image while the robot moves"),
    "black_video": ("error", "a camera is black or one constant colour"),
    "video_length_mismatch": ("error", "the video has another number of frames than the data has rows"),
    "state_jump": ("error", "a physically impossible one-frame jump in the state"),
    "idle_head": ("warning", "the robot stands still for long at the start"),
    "idle_tail": ("warning", "the robot stands still for long at the end"),
    "gripper_chatter": ("warning", "the gripper opens and closes rapidly"),
    "action_state_offset": ("warning", "a constant offset between the commanded and the measured positions"),
    "duplicate_episode": ("warning", "a near-duplicate of another episode"),
    "truncated": ("warning", "the episode ends in the middle of a motion"),
    "missed_grasp": ("warning", "the gripper closes on nothing"),
    "unreadable": ("error", "the episode cannot be read"),
}
ERROR_PENALTY = 35
WARNING_PENALTY = 10


@dataclass
class Defect:
    """One finding: frames [start_frame, end_frame] (end inclusive) of the episode."""

    kind: str
    start_frame: int
    end_frame: int
    detail: str
    severity: Severity = "error"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown defect kind {self.kind!r}")
        self.severity = KINDS[self.kind][0]
        self.start_frame, self.end_frame = int(self.start_frame), int(max(self.start_frame, self.end_frame))

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "start_frame": self.start_frame,
                "end_frame": self.end_frame, "detail": self.detail}


@dataclass
class EpisodeReport:
    """The findings of one episode and its score."""

    episode_index: int
    length: int = 0
    fps: float = 0.0
    defects: list[Defect] = field(default_factory=list)

    @property
    def score(self) -> int:
        if any(d.kind == "unreadable" for d in self.defects):
            return 0
        errors = {d.kind for d in self.defects if d.severity == "error"}
        warnings = {d.kind for d in self.defects if d.severity == "warning"}
        return max(0, 100 - ERROR_PENALTY * len(errors) - WARNING_PENALTY * len(warnings))

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.defects)

    def as_dict(self) -> dict[str, Any]:
        return {"episode_index": self.episode_index, "score": self.score, "length": self.length, "fps": self.fps,
                "defects": [d.as_dict() for d in sorted(self.defects, key=lambda d: (d.start_frame, d.kind))]}


def runs(mask: Any) -> list[tuple[int, int]]:
    """[first, last] (inclusive) of each run of True in a boolean sequence (`ingest.kinematics.runs`)."""
    from carve.ingest.kinematics import runs as _runs

    starts, ends = _runs(mask)
    return [(int(a), int(b) - 1) for a, b in zip(starts, ends, strict=True)]


__all__ = ["KINDS", "Defect", "EpisodeReport", "Severity", "runs"]
