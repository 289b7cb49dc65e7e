"""The captioner contract: what a captioner sees (`EventView`), what it returns
(`CaptionResult`) and the `Captioner` base class. Every backend imports this module and it
imports no backend; `captioners/registry.py:make_captioner(cfg)` picks one.

A captioner describes the events of ONE episode at a time (`caption_episode`), given in
`event_index` order, so a backend can condition each caption on the previous one. Batches of
several episodes go through `caption_episodes`, which backends may parallelise across
episodes. A failed event is never dropped: its result has `status="failed: <reason>"`.

`views_from_table` turns event rows (schema v1 or v2) into views grouped by episode
(defensive: rows may come in any order; each view remembers its row position; the v2 columns
`arms`, `cameras`, `state_names`, `action_names` are empty when absent), and
`link_next_captions` fills `next_caption` from the following event of the same episode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

STATUS_OK = "ok"
STATUS_EMPTY = "empty"  # the backend answered but with no usable caption
OPEN_VOCABULARY = "open vocabulary"  # a caption verb in no verb class (`captioners.verb_classes`)


def failed(reason: str) -> str:
    """The `caption_status` of a failed event: `failed: <reason>` on one line."""
    text = " ".join(str(reason).split()) or "unknown error"
    return f"failed: {text[:300]}"


@dataclass
class EventView:
    """One event, as a captioner sees it (built from one event row)."""

    episode_id: str
    event_index: int
    num_events: int
    task: str
    start_frame: int
    end_frame: int  # exclusive
    fps: float
    start_reason: str = ""
    boundary_reason: str = ""  # the reason of the boundary that ENDS the event
    keyframes: list[bytes] = field(default_factory=list)  # JPEGs: start, middle, end of each camera, camera-major
    state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # T x Ds
    action: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # T x Da
    gripper: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # T, opening in [0, 1]
    row: int = -1  # position of the source row in its batch (-1 when built by hand)
    arms: list[str] = field(default_factory=list)  # arm(s) the segmenter saw acting ("arm" for one arm)
    cameras: list[str] = field(default_factory=list)  # the views of `keyframes`, in order
    state_names: list[str] = field(default_factory=list)  # column names of `state`
    action_names: list[str] = field(default_factory=list)  # column names of `action`

    def camera_keyframes(self) -> list[tuple[str, list[bytes]]]:
        """(camera name, its keyframes) per view; one unnamed view ("") when `cameras` is unknown."""
        cams = [c for c in self.cameras if c] if self.cameras else []
        if not cams or len(self.keyframes) % len(cams):
            return [("", list(self.keyframes))] if self.keyframes else []
        per = len(self.keyframes) // len(cams)
        return [(c, self.keyframes[i * per : (i + 1) * per]) for i, c in enumerate(cams)]

    @property
    def num_frames(self) -> int:
        return max(0, int(self.end_frame) - int(self.start_frame))

    @property
    def duration_s(self) -> float:
        return self.num_frames / float(self.fps) if self.fps and self.fps > 0 else 0.0

    @property
    def label(self) -> str:
        return f"event {self.event_index} of episode {self.episode_id}"


@dataclass
class CaptionResult:
    """A caption for one event; `status` is "ok", "empty" or "failed: <reason>" (caption then "")."""

    caption: str
    status: str = STATUS_OK
    verb: str = ""  # the caption's verb as a structured reply named it ("" when not known)
    verb_class: str = ""  # its class (`verb_classes.CLASSES`), OPEN_VOCABULARY for a verb of no class, "" unknown

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @classmethod
    def failure(cls, reason: str) -> CaptionResult:
        return cls(caption="", status=failed(reason))


class Captioner(ABC):
    """Describes the events of one episode. `name` is recorded in `caption_model`."""

    name: str = "captioner"

    @abstractmethod
    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        """Captions for `events` (one episode, sorted by event_index), one result per event."""

    def caption_episodes(self, episodes: Sequence[list[EventView]]) -> list[list[CaptionResult]]:
        """Captions for several episodes; the default runs them one after the other."""
        return [self.caption_episode(list(evs)) for evs in episodes]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients/pools; the default has nothing to release."""


def link_next_captions(results: Sequence[CaptionResult]) -> list[str]:
    """`next_caption` of each event of one episode: the following event's caption, "" for the last."""
    return [results[i + 1].caption if i + 1 < len(results) else "" for i in range(len(results))]


# ---------------------------------------------------------------- table rows -> views


def _matrix_column(col: pa.ChunkedArray | pa.Array, n: int) -> list[np.ndarray]:
    """list<list<float32>> column -> one (T, D) float32 array per row (empty rows -> (0, 0))."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    out: list[np.ndarray] = []
    if arr.null_count == len(arr) or len(arr) == 0:
        return [np.zeros((0, 0), np.float32) for _ in range(n)]
    if isinstance(arr, pa.LargeListArray | pa.ListArray) and isinstance(
        arr.values, pa.ListArray | pa.LargeListArray
    ):
        outer = arr.offsets.to_numpy(zero_copy_only=False)
        inner_arr = arr.values
        inner = inner_arr.offsets.to_numpy(zero_copy_only=False)
        vals = inner_arr.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        for i in range(len(arr)):
            if not arr[i].is_valid:
                out.append(np.zeros((0, 0), np.float32))
                continue
            a, b = int(outer[i]), int(outer[i + 1])
            if b <= a:
                out.append(np.zeros((0, 0), np.float32))
                continue
            lo, hi = int(inner[a]), int(inner[b])
            widths = np.diff(inner[a : b + 1])
            if np.all(widths == widths[0]) and widths[0] > 0:
                out.append(vals[lo:hi].reshape(b - a, int(widths[0])))
            else:  # ragged rows: pad to the widest with NaN-free zeros
                w = int(widths.max())
                m = np.zeros((b - a, w), np.float32)
                for j in range(b - a):
                    s, e = int(inner[a + j]), int(inner[a + j + 1])
                    m[j, : e - s] = vals[s:e]
                out.append(m)
        return out
    for v in arr.to_pylist():
        out.append(np.asarray(v, np.float32) if v else np.zeros((0, 0), np.float32))
    return out


def _vector_column(col: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return [np.asarray(v if v is not None else [], np.float32) for v in arr.to_pylist()]


def _str_list(v: object) -> list[str]:
    return [str(x) for x in v if x is not None] if isinstance(v, list | tuple) else []


def views_from_table(table: pa.Table) -> list[list[EventView]]:
    """Group event rows into episodes of views sorted by event_index.

    Episodes come out in order of their first row in the table.
    """
    n = table.num_rows
    names = set(table.column_names)

    def col(name: str, default: object) -> list:
        return table.column(name).to_pylist() if name in names else [default] * n

    ep = col("episode_id", "")
    ev = col("event_index", 0)
    ne = col("num_events", 0)
    task = col("task", "")
    sf = col("start_frame", 0)
    ef = col("end_frame", 0)
    fps = col("fps", 0.0)
    sr = col("start_reason", "")
    br = col("boundary_reason", "")
    kf = col("keyframes", [])
    state = _matrix_column(table.column("state"), n) if "state" in names else [np.zeros((0, 0), np.float32)] * n
    action = _matrix_column(table.column("action"), n) if "action" in names else [np.zeros((0, 0), np.float32)] * n
    grip = _vector_column(table.column("gripper")) if "gripper" in names else [np.zeros(0, np.float32)] * n
    arms, cams = col("arms", None), col("cameras", None)
    snames, anames = col("state_names", None), col("action_names", None)

    groups: dict[str, list[EventView]] = {}
    for i in range(n):
        view = EventView(
            episode_id=str(ep[i] or ""),
            event_index=int(ev[i] or 0),
            num_events=int(ne[i] or 0),
            task=str(task[i] or ""),
            start_frame=int(sf[i] or 0),
            end_frame=int(ef[i] or 0),
            fps=float(fps[i] or 0.0),
            start_reason=str(sr[i] or ""),
            boundary_reason=str(br[i] or ""),
            keyframes=[bytes(b) for b in (kf[i] or []) if b is not None],
            state=state[i],
            action=action[i],
            gripper=grip[i],
            row=i,
            arms=_str_list(arms[i]),
            cameras=_str_list(cams[i]),
            state_names=_str_list(snames[i]),
            action_names=_str_list(anames[i]),
        )
        groups.setdefault(view.episode_id, []).append(view)
    return [sorted(g, key=lambda v: (v.event_index, v.start_frame, v.row)) for g in groups.values()]
