"""Simulated episodes (one arm, the historical dwell configuration): each task renders,
records consistent measured arrays and a phase schedule that tiles the episode with the
task's phases; grasps are physical (the object is held only between grasp and release)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from carve.core.config import SegmentConfig
from carve.ingest.arms import arm_layouts
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
CAM = "observation.images.front"


@pytest.fixture(scope="module")
def episodes() -> dict:
    return {tt: run_episode(tt, seed=7, fps=10, size=48) for tt in TASK_TYPES}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_episode_renders_and_records(episodes: dict, task_type: str) -> None:
    ep = episodes[task_type]
    t = ep.length
    assert t > 20
    assert list(ep.frames) == [CAM] and ep.cameras == [CAM]
    frames = ep.frames[CAM]
    assert frames.shape == (t, 48, 48, 3) and frames.dtype == np.uint8
    assert frames.std() > 5  # a real image, not a blank buffer
    assert not np.array_equal(frames[0], frames[t // 2])  # the arm moved in view
    assert ep.state.shape == (t, len(STATE_NAMES)) and ep.action.shape == (t, len(ACTION_NAMES))
    assert ep.state_names == STATE_NAMES and ep.action_names == ACTION_NAMES
    assert np.isfinite(ep.state).all() and np.isfinite(ep.action).all()
    assert re.fullmatch(TEXT[task_type], ep.task), ep.task
    # the state is measured: the servoed joints follow the commanded targets closely, not exactly
    lag = np.abs(ep.action[:, :7] - ep.state[:, :7])
    assert lag.max() < 0.05 and lag.max() > 1e-5
    assert set(np.unique(ep.action[:, 7])) <= {0.0, 1.0}  # one arm: the binary gripper command
    assert (ep.fps, ep.style, ep.arms) == (10, "dwell", ["arm"])


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_ground_truth_tiles_episode_with_task_phases(episodes: dict, task_type: str) -> None:
    ep = episodes[task_type]
    gt = ep.ground_truth(3)
    phases = gt["phases"]
    assert [p["name"] for p in phases] == EXPECTED[task_type]
    assert set(p["name"] for p in phases) <= set(PHASE_NAMES)
    assert {p["arm"] for p in phases} == {"arm"}
    assert phases[0]["start"] == 0 and phases[-1]["end"] == gt["length"] == ep.length
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(phases))
    assert all(p["end"] > p["start"] for p in phases)
    assert all(a["end_s"] == b["start_s"] for a, b in itertools.pairwise(phases))
    assert gt["boundaries"] == [p["start"] for p in phases[1:]] == gt["arm_boundaries"]["arm"]
    assert gt["episode_index"] == 3 and gt["task_type"] == task_type
    assert (gt["fps"], gt["style"], gt["arms"], gt["cameras"]) == (10, "dwell", ["arm"], [CAM])
    # a boundary is the first frame at or after the phase's start time
    for p in phases:
        assert p["start"] - 1 < p["start_s"] * 10 <= p["start"] + 1e-6


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_gripper_and_grasp_follow_the_phase_schedule(episodes: dict, task_type: str) -> None:
    ep = episodes[task_type]
    (arm,) = arm_layouts(STATE_NAMES, None, ep.state, None, SegmentConfig())
    gdim = arm.gripper
    assert gdim == 7
    grip = ep.state[:, gdim]
    held = ep.held[:, 0]
    if task_type == "push":
        assert np.ptp(grip) < 2e-3 and not held.any()  # a closed fist: no grasp, no change
        return
    for p in ep.phases:
        seg = grip[p.start : p.end]
        if p.name == "grasp":
            assert seg[-1] < seg[0] - 0.01  # fingers closed on the object
            assert held[p.end - 1]  # ... and the contact made the grasp
        elif p.name in ("lift", "move", "place"):
            assert seg.max() < 0.079 and held[p.start : p.end].all()  # holding the object
        elif p.name == "release":
            assert seg[-1] > seg[0] + 0.01
        elif p.name in ("reach", "retreat"):
            assert not held[p.start : p.end].any()


def test_same_seed_same_episode_and_unknown_task() -> None:
    a = run_episode("push", seed=11, fps=10, size=16, render=False)
    b = run_episode("push", seed=11, fps=10, size=16, render=False)
    c = run_episode("push", seed=12, fps=10, size=16, render=False)
    assert np.array_equal(a.state, b.state) and a.task == b.task and a.frames == {}
    assert a.length != c.length or not np.array_equal(a.state, c.state)
    with pytest.raises(ValueError, match="unknown task type 'juggle'"):
        run_episode("juggle", seed=0)
    with pytest.raises(ValueError, match="unknown task type 'pick_place' for 2 arm"):
        run_episode("pick_place", seed=0, arms=2)
    with pytest.raises(ValueError, match="fps must be in"):
        run_episode("push", seed=0, fps=60)
    with pytest.raises(ValueError, match="unknown style"):
        run_episode("push", seed=0, style="jerky")
    with pytest.raises(ValueError, match="cameras must be in"):
        run_episode("push", seed=0, cameras=5)
