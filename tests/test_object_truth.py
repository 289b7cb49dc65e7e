"""Contact / object-state truth (carve.sim.object_truth) against the simulator's own traces."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from carve.ingest.truth import read_truth
from carve.sim.object_truth import MERGE_S, object_events, object_truth_entry
from carve.sim.tasks import SimEpisode, run_episode

KW = {"fps": 12, "size": 32, "render": False}


@pytest.fixture(scope="module")
def pick_place():
    return run_episode("pick_place", 3, **KW)


@pytest.fixture(scope="module")
def push():
    return run_episode("push", 4, **KW)


def _frames_named(events, word: str) -> list[int]:
    return [e.frame for e in events if any(n.startswith(word) for n in e.names)]


def _well_formed(ep, bounds: list[int]) -> None:
    assert bounds == sorted(set(bounds))
    assert all(0 < b < ep.length - 1 for b in bounds)
    assert all((b - a) / ep.fps >= MERGE_S - 1e-9 for a, b in itertools.pairwise(bounds))


def test_pick_place_grasp_and_release_follow_held(pick_place):
    ep = pick_place
    held = ep.held[:, 0]
    first = int(np.argmax(held))
    assert held[first] and not held[:first].any(), "the episode was built to grasp once"
    after = int(np.argmax(~held[first:])) + first
    assert not held[after] and held[first:after].all()
    events = object_events(ep)
    assert _frames_named(events, "grasp") == [first]
    assert _frames_named(events, "release") == [after]
    bounds = [e.frame for e in events]
    _well_formed(ep, bounds)
    (pos,) = ep.objects.values()
    moved = np.flatnonzero(np.linalg.norm(np.diff(pos, axis=0), axis=1) > 0.01 / ep.fps)
    starts = _frames_named(events, "object moves")
    assert starts and first < starts[0] <= after, "the object is carried only while held"
    assert starts[0] - 1 in moved.tolist()


def test_push_has_motion_but_no_grasp(push):
    ep = push
    assert not ep.held.any()
    events = object_events(ep)
    assert not _frames_named(events, "grasp") and not _frames_named(events, "release")
    (pos,) = ep.objects.values()
    changed = np.flatnonzero(np.linalg.norm(np.diff(pos, axis=0), axis=1) * ep.fps > 0.01) + 1
    starts, stops = _frames_named(events, "object moves"), _frames_named(events, "object stops")
    assert starts and starts[0] == int(changed[0])
    assert stops and stops[-1] > starts[0]
    assert np.linalg.norm(pos[stops[-1]] - pos[starts[0] - 1]) > 0.01, "the push moved the object"
    _well_formed(ep, [e.frame for e in events])


def test_entry_is_read_by_eval_segments(pick_place, push, tmp_path):
    path = tmp_path / "truth.json"
    path.write_text(json.dumps([object_truth_entry(pick_place, 0), object_truth_entry(push, 1)]))
    truth = read_truth(str(path))
    assert truth["form"] == "json"
    got = {e["episode_index"]: e for e in truth["episodes"]}
    assert got[0]["length"] == pick_place.length and got[1]["fps"] == push.fps
    assert got[0]["boundaries"] == [e.frame for e in object_events(pick_place)]
    assert got[1]["task_type"] == "push"


def test_built_traces_merge_and_short_blips():
    """A hand-built 12 fps trace: grasp at 10, motion from 11 (merged into the grasp, < 0.15 s),
    stop at 20, a 1-interval blip at 30 (< 0.2 s: not motion), release at 40."""
    n, fps = 60, 12
    held = np.zeros((n, 1), dtype=bool)
    held[10:40] = True
    pos = np.zeros((n, 3))
    pos[11:21, 0] = np.arange(1, 11) * 0.01  # 12 cm/s over intervals 10..19, at rest from frame 20
    pos[21:, 0] = pos[20, 0]
    pos[31:, 1] = 0.005  # one interval at 6 cm/s
    ep = SimEpisode(task="t", task_type="pick_place", fps=fps, style="dwell", arms=["arm"], cameras=[],
                    state=np.zeros((n, 8), np.float32), action=np.zeros((n, 8), np.float32), frames={},
                    objects={"cube": pos}, held=held)
    events = object_events(ep)
    assert [e.frame for e in events] == [10, 20, 40]
    assert events[0].names == ["grasp (arm)", "object moves (cube)"]
    assert events[1].names == ["object stops (cube)"] and events[2].names == ["release (arm)"]
