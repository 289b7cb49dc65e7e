"""Segmentation on the conventions of real datasets, with the shipped configuration.

One pick-and-place at 20 fps is built by hand, its phase starts known by construction (not by
any Carve rule): reach along x (1 s), descend (0.5 s, a 90-degree turn without stopping), grasp
(0.15 s: the gripper closes while the hand is still), lift (0.5 s), carry along y (1 s), place
(0.5 s), release (0.15 s), retreat (1 s). Then the same motion is recorded the ways real datasets
record it: the gripper in metres, 0..1, 0..100 or radians, either polarity, with or without a
command; Cartesian or joint-space only (SO-100 names, in degrees); delta actions. Every variant
must give the same boundaries within +-0.1 s (2 frames), the 0.15 s phases included.
"""

from __future__ import annotations

import numpy as np
import pytest

from carve.core.config import SegmentConfig
from carve.ingest.arms import arm_layouts
from carve.ingest.eval_segments import boundary_counts, prf
from carve.ingest.gripper import GRIPPER_CLOSE, GRIPPER_OPEN
from carve.ingest.segment import boundaries_of, segment_episode

FPS = 20
# (name, frames, displacement of the hand (m), gripper at the end of the phase: 1 open, 0 closed)
PLAN = [("reach", 20, (0.2, 0, 0), 1), ("descend", 10, (0, 0, -0.1), 1), ("grasp", 3, (0, 0, 0), 0),
        ("lift", 10, (0, 0, 0.1), 0), ("carry", 20, (0, 0.2, 0), 0), ("place", 10, (0, 0, -0.1), 0),
        ("release", 3, (0, 0, 0), 1), ("retreat", 20, (0, 0, 0.15), 1)]
TRUTH = list(np.cumsum([p[1] for p in PLAN])[:-1])  # [20, 30, 33, 43, 63, 73, 76]


def trajectory() -> tuple[np.ndarray, np.ndarray]:
    """(hand xyz per frame, gripper opening 0..1 per frame): piecewise constant velocity."""
    xyz, grip = [np.array([0.3, 0.0, 0.2])], [1.0]
    for _, n, d, g_end in PLAN:
        g0 = grip[-1]
        for k in range(1, n + 1):
            xyz.append(xyz[-1] + np.asarray(d) / n)
            grip.append(g0 + (g_end - g0) * k / n)
    return np.array(xyz[:-1]), np.array(grip[:-1])


def _f1(pred: list[int]) -> float:
    return prf(boundary_counts(pred, TRUTH, tol=2))["f1"]


def test_truth_is_what_the_plan_says():
    assert TRUTH == [20, 30, 33, 43, 63, 73, 76]
    xyz, grip = trajectory()
    assert len(xyz) == sum(p[1] for p in PLAN) == 96
    # the fingers close over frames 30..33 while the hand holds, and open over 73..76
    assert grip[30] == 1.0 and grip[33] == 0.0 and grip[73] == 0.0 and grip[76] == 1.0
    assert np.allclose(xyz[30], xyz[33]) and np.allclose(xyz[73], xyz[76])


@pytest.mark.parametrize("unit,scale,offset", [("metres", 0.08, 0.0), ("unit", 1.0, 0.0), ("percent", 100.0, 0.0),
                                               ("radians", 0.8, 0.1)])
@pytest.mark.parametrize("command", ["same polarity", "reversed (+1 closes)", "none"])
def test_gripper_units_and_polarity(unit: str, scale: float, offset: float, command: str):
    xyz, grip = trajectory()
    g = offset + scale * grip
    nxt = np.roll(grip, -1)  # the operator's command leads the fingers by a frame
    state = np.column_stack([xyz, g])
    snames = ["x", "y", "z", "gripper"]
    if command == "none":
        action, anames = np.roll(xyz, -1, axis=0), ["x", "y", "z"]
    else:
        cmd = offset + scale * nxt if command == "same polarity" else np.where(nxt < 0.5, 1.0, -1.0)
        action, anames = np.column_stack([np.roll(xyz, -1, axis=0), cmd]), snames
    segs = segment_episode(state, action, FPS, SegmentConfig(), snames, anames)
    assert _f1(boundaries_of(segs)) == 1.0, (unit, command, boundaries_of(segs))
    # a command's polarity is learned from the measured opening: closing is a close in every unit
    reasons = {s.start: s.start_reason for s in segs}
    assert any(abs(t - 30) <= 2 and r == GRIPPER_CLOSE for t, r in reasons.items()), reasons
    assert any(abs(t - 73) <= 2 and r == GRIPPER_OPEN for t, r in reasons.items()), reasons


def test_gripper_recorded_as_closure_gives_the_same_boundaries():
    """A gripper that reads higher when closed (DROID's gripper_position, Robotiq's 0..255) and no
    command to tell: the boundaries are the same (open/close labels need the command)."""
    xyz, grip = trajectory()
    state = np.column_stack([xyz, 255.0 * (1.0 - grip)])
    names = ["x", "y", "z", "gripper_position"]
    segs = segment_episode(state, np.roll(state, -1, axis=0), FPS, SegmentConfig(), names, names)
    assert _f1(boundaries_of(segs)) == 1.0, boundaries_of(segs)


def _joints(xyz: np.ndarray) -> np.ndarray:
    """A 5-joint arm's angles (rad) that move with the hand: a fixed linear map of the hand's path
    (joint speeds then change exactly where the hand's velocity does; no kinematics are used)."""
    m = np.array([[1.2, -0.4, 0.3], [0.5, 1.1, -0.2], [-0.3, 0.6, 1.4], [0.8, 0.2, -0.9], [0.1, -1.0, 0.5]])
    return (xyz - xyz[0]) @ m.T * 4.0


def test_joint_space_only_in_degrees_with_so100_names():
    xyz, grip = trajectory()
    deg = np.degrees(_joints(xyz)) + np.array([10.0, -80.0, 90.0, 40.0, 5.0])
    state = np.column_stack([deg, 100.0 * grip])  # SO-100: degrees, gripper 0..100
    names = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
             "gripper.pos"]
    lay = arm_layouts(names, names, state, state, SegmentConfig())
    assert len(lay) == 1 and lay[0].kind == "joint" and lay[0].degrees and lay[0].gripper == 5
    segs = segment_episode(state, np.roll(state, -1, axis=0), FPS, SegmentConfig(), names, names)
    assert _f1(boundaries_of(segs)) == 1.0, boundaries_of(segs)


def test_delta_actions_are_not_positions():
    xyz, grip = trajectory()
    delta = np.diff(xyz, axis=0, append=xyz[-1:]) / 0.01  # robomimic-style scaled deltas
    effort = np.where(np.roll(grip, -1) < 0.5, 1.0, -1.0)  # +1 closes
    state = np.column_stack([xyz, grip])
    action = np.column_stack([delta, effort])
    snames, anames = ["x", "y", "z", "gripper"], ["dx", "dy", "dz", "grip_effort"]
    lay = arm_layouts(snames, anames, state, action, SegmentConfig())[0]
    assert lay.motion == [0, 1, 2] and not lay.motion_in_action and lay.gripper_action == 3
    segs = segment_episode(state, action, FPS, SegmentConfig(), snames, anames)
    assert _f1(boundaries_of(segs)) == 1.0, boundaries_of(segs)
    # deltas alone (no position in the state) are never read as a path
    only = arm_layouts(["gripper"], ["delta_x", "delta_y", "delta_z", "gripper"], state[:, 3:], action,
                       SegmentConfig())[0]
    assert only.motion == []


def test_robomimic_second_finger_is_not_motion():
    xyz, grip = trajectory()
    w = 0.04 * grip
    state = np.column_stack([xyz, w, -w])
    names = ["robot0_eef_pos_0", "robot0_eef_pos_1", "robot0_eef_pos_2", "robot0_gripper_qpos_0",
             "robot0_gripper_qpos_1"]
    lay = arm_layouts(names, None, state, None, SegmentConfig())[0]
    assert lay.name == "robot0" and lay.kind == "cartesian" and lay.motion == [0, 1, 2] and lay.gripper == 3
