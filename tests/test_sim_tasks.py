"""Scripted pybullet episodes: each task renders, records consistent arrays and a phase
schedule that tiles the episode with the task's phases."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from carve.core.config import SegmentConfig
from carve.ingest.segment import find_gripper_dim
from carve.sim.scene import ACTION_NAMES, STATE_NAMES
from carve.sim.tasks import PHASE_NAMES, TASK_TYPES, run_episode

PICK = ["reach", "grasp", "lift", "move", "place", "release"]
EXPECTED = {
    "pick_place": [*PICK, "retreat"],
    "stack": [*PICK, "retreat"],
    "push": ["reach", "push", "retreat"],
    "two_object": [*PICK, *PICK, "retreat"],
}
TEXT = {
    "pick_place": r"put the \w+ [\w ]+ in the tray",
    "stack": r"stack the \w+ cube on the \w+ cube",
    "push": r"push the \w+ [\w ]+ to the (left|right|front|back)",
    "two_object": r"put the \w+ [\w ]+ and then the \w+ [\w ]+ in the tray",
}


@pytest.fixture(scope="module")
def episodes() -> dict:
    return {tt: run_episode(tt, seed=7, fps=10, size=64) for tt in TASK_TYPES}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_episode_renders_and_records(episodes: dict, task_type: str) -> None:
    ep = episodes[task_type]
    t = ep.length
    assert t > 20
    assert ep.frames.shape == (t, 64, 64, 3) and ep.frames.dtype == np.uint8
    assert ep.frames.std() > 5  # a real image, not a blank buffer
    assert not np.array_equal(ep.frames[0], ep.frames[t // 2])  # the arm moved in view
    assert ep.state.shape == (t, len(STATE_NAMES)) and ep.action.shape == (t, len(ACTION_NAMES))
    assert np.isfinite(ep.state).all() and np.isfinite(ep.action).all()
    assert re.fullmatch(TEXT[task_type], ep.task), ep.task
    # the action is the next frame's joint target: the arm reaches it (plus tremor)
    assert np.abs(ep.action[:-1, :7] - ep.state[1:, :7]).max() < 1e-4


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_ground_truth_tiles_episode_with_task_phases(episodes: dict, task_type: str) -> None:
    ep = episodes[task_type]
    gt = ep.ground_truth(3)
    phases = gt["phases"]
    assert [p["name"] for p in phases] == EXPECTED[task_type]
    assert set(p["name"] for p in phases) <= set(PHASE_NAMES)
    assert phases[0]["start"] == 0 and phases[-1]["end"] == gt["length"] == ep.length
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(phases))
    assert all(p["end"] > p["start"] for p in phases)
    assert gt["boundaries"] == [p["start"] for p in phases[1:]]
    assert gt["episode_index"] == 3 and gt["task_type"] == task_type


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_gripper_follows_the_phase_schedule(episodes: dict, task_type: str) -> None:
    ep = episodes[task_type]
    gdim = find_gripper_dim(STATE_NAMES, SegmentConfig())
    assert gdim == 7
    grip = ep.state[:, gdim]
    if task_type == "push":
        assert np.ptp(grip) < 1e-6  # no grasp: the gripper never changes
        return
    for p in ep.phases:
        seg = grip[p.start : p.end]
        if p.name == "grasp":
            assert seg[-1] < seg[0] - 0.01  # fingers closed on the object
        elif p.name in ("lift", "move", "place"):
            assert seg.max() < 0.079  # holding the object: not fully open
        elif p.name == "release":
            assert seg[-1] > seg[0] + 0.01


def test_same_seed_same_episode_and_unknown_task() -> None:
    a = run_episode("push", seed=11, fps=10, size=16, render=False)
    b = run_episode("push", seed=11, fps=10, size=16, render=False)
    c = run_episode("push", seed=12, fps=10, size=16, render=False)
    assert np.array_equal(a.state, b.state) and a.task == b.task
    assert a.length != c.length or not np.array_equal(a.state, c.state)
    with pytest.raises(ValueError, match="unknown task type 'juggle'"):
        run_episode("juggle", seed=0)
