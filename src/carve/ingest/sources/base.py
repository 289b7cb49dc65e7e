"""The record types every reader produces.

A reader lists `EpisodeRef`s (small, picklable, one per episode: these are the rows of the
first Ray Data stage) and loads an `Episode` from a ref on a worker. Frames are decoded on
demand through `Episode.frames`, so segmentation can run on signals alone and only the
keyframes are decoded when vision is not needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode lives. `locator` is format-specific and JSON-serialisable."""

    source_uri: str  # dataset root (local path or pyarrow.fs URI)
    format: str  # "lerobot" | "folder" | "hdf5" | "rlds"
    dataset: str  # dataset name
    episode_index: int
    locator: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fingerprint: str = ""  # changes when the episode's bytes change; used to skip finished work

    @property
    def episode_id(self) -> str:
        return f"{self.dataset}/{self.episode_index:06d}"

    @property
    def label(self) -> str:
        """Human-readable name used in error messages."""
        return f"episode {self.episode_index} of {self.format}://{self.source_uri}"

    def to_row(self) -> dict[str, Any]:
        return {
            "source_uri": self.source_uri,
            "format": self.format,
            "dataset": self.dataset,
            "episode_index": int(self.episode_index),
            "locator": json.dumps(self.locator, sort_keys=True),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EpisodeRef:
        loc = row.get("locator") or "{}"
        return cls(
            source_uri=str(row["source_uri"]),
            format=str(row["format"]),
            dataset=str(row["dataset"]),
            episode_index=int(row["episode_index"]),
            locator=json.loads(loc) if isinstance(loc, str) else dict(loc),
            fingerprint=str(row.get("fingerprint") or ""),
        )


def provenance(ref: EpisodeRef, source_id: str | None = None) -> dict[str, str | None]:
    """Where the episode lives inside its source: `source_file` (the file holding its rows,
    relative to the source) and `source_key` (the key inside that file: LeRobot
    `episode_index=N`, an HDF5 group such as `data/demo_3` or `/` for an ACT file, a folder
    episode's name, an RLDS record `record=N` of its TFRecord shard, followed by
    ` episode_id=<source_id>` when the loaded episode names itself: `Episode.source_id`)."""
    out = _where(ref)
    if source_id is not None:
        out["source_key"] = f"{out['source_key']} episode_id={source_id}"
    return out


def _where(ref: EpisodeRef) -> dict[str, str | None]:
    loc = ref.locator
    if ref.format == "lerobot":
        return {"source_file": loc.get("data_path"), "source_key": f"episode_index={ref.episode_index}"}
    if ref.format == "hdf5":
        demo = loc.get("demo")
        return {"source_file": loc.get("file"), "source_key": f"data/{demo}" if demo else "/"}
    if ref.format == "folder":
        return {"source_file": loc.get("arrays") or loc.get("video"), "source_key": loc.get("name")}
    if ref.format == "rlds":
        return {"source_file": loc.get("shard"), "source_key": f"record={loc.get('record')}"}
    return {"source_file": None, "source_key": None}


FrameFn = Callable[[str, Sequence[int] | None], np.ndarray]


@dataclass
class Episode:
    """One loaded episode: aligned per-frame signals plus lazy video access.

    `state`, `action` are (T, D) float32 arrays, `timestamps` (T,) seconds from the episode
    start. `frames(camera, indices)` returns (N, H, W, 3) uint8 RGB frames for the given
    frame indices (all frames when `indices` is None), frame-accurate by timestamp.
    """

    ref: EpisodeRef
    fps: float
    task: str
    state: np.ndarray
    action: np.ndarray
    timestamps: np.ndarray
    state_names: list[str]
    action_names: list[str]
    cameras: list[str]
    robot: str = "unknown"
    _frame_fn: FrameFn | None = field(default=None, repr=False)
    # the source's other per-frame features (e.g. LeRobot's observation.velocity, next.done), in
    # their own dtype, (T,) or (T, k), with their feature specs (dtype, shape, names), so that an
    # export keeps them
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    extra_features: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the cameras the caller selected (`load_episode(camera=...)`); None = every camera. `cameras`
    # still lists them all (frames of any can be read); what inspects "the episode's cameras" on
    # its own (the run's quality gate) looks at `selected_cameras` only
    selected: list[str] | None = None
    # the source's own id of the episode, where it has one beside its position (an RLDS build's
    # `episode_metadata/episode_id` or `file_path`): part of the events' `source_key`
    source_id: str | None = None

    @property
    def selected_cameras(self) -> list[str]:
        return [c for c in self.cameras if self.selected is None or c in self.selected]

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    def video_spans(self) -> dict[str, tuple[str, float]]:
        """camera -> (video file URI, the episode's start time in that file) for cameras stored as
        video files; {} for images stored with the data (HDF5, LeRobot image columns)."""
        spans = getattr(self._frame_fn, "video_spans", None)
        return {cam: v for cam, v in spans().items() if cam in self.cameras} if spans else {}

    def frames(self, camera: str | None = None, indices: Sequence[int] | None = None) -> np.ndarray:
        if self._frame_fn is None or not self.cameras:
            from carve.core.errors import EpisodeError

            raise EpisodeError(self.ref.label, "has no video")
        cam = camera or self.cameras[0]
        if cam not in self.cameras:
            from carve.core.errors import EpisodeError

            raise EpisodeError(self.ref.label, f"unknown camera {cam!r}; has {self.cameras}")
        return self._frame_fn(cam, indices)
