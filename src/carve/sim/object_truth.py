"""Contact and object-state ground truth for segmentation (issue 20, item 6).

Owns the event truth derived from what physically happened in a simulated episode, not from
the operator's command schedule (`SimEpisode.phases`, which `carve synth` writes as
`ground_truth_events.json`). `object_events(ep)` reads only the simulator's traces of a
`SimEpisode`:

* `held` ((T, arms) bool, the grasp constraint that physical contact makes, sim/scene.py):
  a rising edge is a "grasp" (the first frame the arm holds the object), a falling edge a
  "release" (the first frame it no longer does);
* `objects` (task object name -> (T, 3) position): the object's speed over frame interval
  k is |p[k+1] - p[k]| x fps. A stretch of intervals with speed above `MOTION_SPEED`
  (1 cm/s) lasting at least `MIN_MOTION_S` (0.2 s) is the object in motion: "object moves"
  at the first frame whose position has changed, "object stops" at the first frame after the
  last moving interval. For a push task (no grasp) these are the contact-driven events.

Both constants are properties of the truth, chosen from physics (1 cm/s is well above the
simulator's resting jitter, 0 m/s to three decimals, and far below any transport speed;
0.2 s keeps out the one-frame settling of an object when it is let go), not tuned on Carve's
output. Frame 0 and the last frame (length - 1) are never boundaries; events
closer than `MERGE_S` (0.15 s) to the previous kept one are merged into it (the earlier is
kept, and its names gather the merged ones).

`object_truth_entry(ep, episode_index)` is the episode's entry in the plain JSON list form
that `carve eval-segments --truth` accepts (carve.ingest.truth, form b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carve.sim.tasks import SimEpisode

MOTION_SPEED = 0.01  # m/s: an object moves when its speed is above this
MIN_MOTION_S = 0.2  # s: the shortest stretch of motion that counts
MERGE_S = 0.15  # s: events closer than this to the previous kept one are merged into it


@dataclass
class ObjectEvent:
    """One boundary frame and the physical events that happen at it."""

    frame: int
    names: list[str] = field(default_factory=list)  # e.g. "grasp (arm)", "object moves (red cube)"

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "events": list(self.names)}


def contact_edges(held: np.ndarray) -> list[tuple[int, str]]:
    """(frame, "grasp" | "release") per arm column of `held` ((T,) or (T, arms) bool):
    grasp at the first frame of each run of True, release at the first frame after it."""
    h = np.asarray(held, dtype=bool)
    if h.ndim == 1:
        h = h[:, None]
    out: list[tuple[int, str]] = []
    for a in range(h.shape[1]):
        d = np.diff(h[:, a].astype(np.int8))
        out += [(int(k) + 1, "grasp") for k in np.flatnonzero(d > 0)]
        out += [(int(k) + 1, "release") for k in np.flatnonzero(d < 0)]
    return sorted(out)


def motion_stretches(pos: np.ndarray, fps: float, speed: float = MOTION_SPEED,
                     min_s: float = MIN_MOTION_S) -> list[tuple[int, int]]:
    """(start, stop) frames of each stretch where an object at `pos` ((T, 3) metres) moves
    faster than `speed` m/s for at least `min_s` seconds: start is the first frame whose
    position has changed, stop the first frame after the last moving interval."""
    p = np.asarray(pos, dtype=np.float64)
    if p.shape[0] < 2:
        return []
    moving = np.linalg.norm(np.diff(p, axis=0), axis=1) * float(fps) > speed
    min_intervals = max(1, math.ceil(min_s * float(fps) - 1e-9))
    out: list[tuple[int, int]] = []
    k, n = 0, moving.size
    while k < n:
        if not moving[k]:
            k += 1
            continue
        j = k
        while j + 1 < n and moving[j + 1]:
            j += 1
        if j - k + 1 >= min_intervals:
            out.append((k + 1, j + 1))
        k = j + 1
    return out


def object_events(ep: SimEpisode, *, merge_s: float = MERGE_S, speed: float = MOTION_SPEED,
                  min_s: float = MIN_MOTION_S) -> list[ObjectEvent]:
    """The contact and object-state events of `ep` (see the module docstring), sorted by
    frame, inside (0, length - 1), no two closer than `merge_s` seconds."""
    raw: list[tuple[int, str]] = []
    if ep.held is not None:
        held = np.asarray(ep.held, dtype=bool)
        if held.ndim == 1:
            held = held[:, None]
        for a, arm in enumerate(ep.arms[: held.shape[1]]):
            raw += [(f, f"{kind} ({arm})") for f, kind in contact_edges(held[:, a])]
    for name, pos in ep.objects.items():
        for start, stop in motion_stretches(pos, ep.fps, speed, min_s):
            raw += [(start, f"object moves ({name})"), (stop, f"object stops ({name})")]
    raw = sorted(r for r in raw if 0 < r[0] < ep.length - 1)
    gap = merge_s * ep.fps  # in frames
    events: list[ObjectEvent] = []
    for frame, name in raw:
        if events and frame - events[-1].frame < gap - 1e-9:
            events[-1].names.append(name)
        else:
            events.append(ObjectEvent(frame, [name]))
    return events


def object_boundaries(ep: SimEpisode, **kw: Any) -> list[int]:
    """The boundary frames of `object_events(ep, **kw)`."""
    return [e.frame for e in object_events(ep, **kw)]


def object_truth_entry(ep: SimEpisode, episode_index: int) -> dict[str, Any]:
    """`ep`'s entry for `carve eval-segments --truth` (a list of these is form b of
    carve.ingest.truth), with the named events under "events" (kept, not scored)."""
    events = object_events(ep)
    return {"episode_index": int(episode_index), "boundaries": [e.frame for e in events],
            "length": ep.length, "fps": ep.fps, "task_type": ep.task_type, "task": ep.task,
            "events": [e.to_json() for e in events]}
