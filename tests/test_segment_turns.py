"""A hand that turns without moving (`kinematics.turns_in_place`, `segment._turns`).

Constructed episodes of a Cartesian arm (x, y, z in metres) that also records its joints, its orientation as
roll, pitch, yaw, or as a quaternion (robomimic's names: `robot0_eef_pos_*`, `robot0_eef_quat_*`, whose
sign flips at random, as a quaternion's may): reach, close, lift, then, with the hand's position held, the
object is turned (the joints or the orientation sweep 1.2 rad with a minimum-jerk profile), then lowered
and let go.
A turn starts an event where the turning starts, and the lowering another where it starts; the same
episode with the hand held still instead of turning has neither boundary there. An arm whose motion is its
joints (no position columns) has no turn columns: its turns are its motion already. The kinematic
captioner names the turn of the held object "turn ..." (`phases`' rule 13), and the same stretch held still
is no turn.
"""

from __future__ import annotations

import numpy as np
import pytest

from carve.captioners.base import EventView
from carve.captioners.kinematic import caption_episode_events
from carve.core.config import SegmentConfig
from carve.ingest.arms import arm_layouts
from carve.ingest.segment import segment_episode

FPS = 20.0


def _mj(n: int) -> np.ndarray:
    """Minimum-jerk progress 0 -> 1 over n frames (first value > 0, last 1)."""
    s = np.arange(1, n + 1) / n
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def _episode(turn: bool, columns: str, seed: int = 0) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """State rows and names; `starts`: the frame where each phase after the first begins."""
    rng = np.random.default_rng(seed)
    pos, rot, grip = np.array([0.4, 0.0, 0.3]), np.zeros(7 if columns == "joint" else 3), 0.04
    if columns == "quat":
        rot = np.array([0.3, -0.2, 0.1])  # a rotation vector, written as a quaternion below
    rows: list[list[float]] = []
    starts: dict[str, int] = {}

    def hold(secs: float) -> None:
        for _ in range(round(secs * FPS)):
            rows.append([*pos, *rot, grip])

    def move(name: str, d: np.ndarray, secs: float, dr: np.ndarray | None = None) -> None:
        nonlocal pos, rot
        starts[name] = len(rows)
        p0, r0 = pos.copy(), rot.copy()
        for s in _mj(round(secs * FPS)):
            rows.append([*pos, *rot, grip])
            pos = p0 + s * d
            if dr is not None:
                rot = r0 + s * dr

    def close(name: str) -> None:
        nonlocal grip
        starts[name] = len(rows)
        for s in _mj(round(0.3 * FPS)):
            rows.append([*pos, *rot, grip])
            grip = 0.04 * (1 - s)

    hold(0.5)
    # reaching moves the joints with the hand (a Cartesian move is a joint move too)
    move("reach", np.array([0.1, 0.15, -0.2]), 1.5, rng.normal(0, 0.3, len(rot)))
    hold(0.4)
    close("grasp")
    hold(0.3)
    move("lift", np.array([0.0, 0.0, 0.15]), 1.2, rng.normal(0, 0.2, len(rot)))
    hold(0.2)
    if turn:
        sweep = np.zeros(len(rot))
        sweep[-2:] = [1.0, 0.6] if columns == "joint" else [0.0, 1.2]  # wrist joints / pitch (about y)
        move("turn", np.zeros(3), 2.0, sweep)
    else:
        starts["turn"] = len(rows)
        hold(2.0)
    hold(0.3)
    move("lower", np.array([0.0, 0.0, -0.15]), 2.0, rng.normal(0, 0.1, len(rot)))  # slow: it creeps off
    hold(0.5)
    state = np.asarray(rows)
    state[:, :3] += rng.normal(0, 1e-4, (len(rows), 3))  # sensor noise
    if columns == "quat":  # x, y, z, w of the rotation vector, its sign flipped at random frames
        r = state[:, 3:6]
        angle = np.linalg.norm(r, axis=1, keepdims=True)
        q = np.hstack([r / np.maximum(angle, 1e-12) * np.sin(angle / 2), np.cos(angle / 2)])
        q *= np.where(rng.random((len(q), 1)) < 0.3, -1.0, 1.0)
        state = np.hstack([state[:, :3], q, state[:, 6:]])
        names = [*(f"robot0_eef_pos_{i}" for i in range(3)), *(f"robot0_eef_quat_{i}" for i in range(4)),
                 "robot0_gripper_qpos_0"]
        return state, names, starts
    rot_names = [f"joint_{i}" for i in range(7)] if columns == "joint" else ["roll", "pitch", "yaw"]
    return state, ["x", "y", "z", *rot_names, "gripper"], starts


@pytest.mark.parametrize("columns", ["joint", "euler", "quat"])
def test_a_turn_in_place_is_an_event_and_so_is_the_move_after_it(columns: str) -> None:
    state, names, starts = _episode(True, columns)
    lay = arm_layouts(names, None, state, None, SegmentConfig())[0]
    assert lay.kind == "cartesian" and lay.turn_kind == columns
    assert len(lay.turn) == {"joint": 7, "euler": 3, "quat": 4}[columns]
    segs = segment_episode(state, None, FPS, SegmentConfig(), names, None)
    bounds = [s.start for s in segs[1:]]
    # the lowering is slow (a 2 s minimum-jerk move): it creeps off for its first ~0.25 s
    for phase, within in (("turn", 2), ("lower", 5)):
        near = [b for b in bounds if abs(b - starts[phase]) <= within]
        assert near, f"no boundary within {within} frames of the {phase} at {starts[phase]}: {bounds}"
        # one joint, one boundary: neither the rest before the turn nor the one after it is a pause whose end
        # makes a second boundary
        assert len([b for b in bounds if abs(b - starts[phase]) <= 8]) == 1, bounds


@pytest.mark.parametrize("columns", ["joint", "euler", "quat"])
def test_a_hand_held_still_starts_no_turn(columns: str) -> None:
    turned, names, starts = _episode(True, columns)
    still, _, starts_still = _episode(False, columns)
    b_turn = [s.start for s in segment_episode(turned, None, FPS, SegmentConfig(), names, None)[1:]]
    b_still = [s.start for s in segment_episode(still, None, FPS, SegmentConfig(), names, None)[1:]]
    t0 = starts_still["turn"]
    # nothing starts inside the held stretch, and the turned episode has one boundary more there
    assert not [b for b in b_still if t0 - 2 <= b < t0 + round(2.0 * FPS)]
    assert len([b for b in b_turn if abs(b - starts["turn"]) <= 2]) == 1


def test_joint_arms_and_names_without_a_full_orientation_have_no_turn_columns() -> None:
    state, names, _ = _episode(True, "joint")
    joints_only = [n for n in names if n not in ("x", "y", "z")]
    lay = arm_layouts(joints_only, None, state[:, 3:], None, SegmentConfig())[0]
    assert lay.kind == "joint" and lay.turn == []
    two = ["x", "y", "z", "roll", "pitch", "gripper"]  # two Euler angles: not an orientation, no joints either
    lay = arm_layouts(two, None, state[:, [0, 1, 2, 3, 4, -1]], None, SegmentConfig())[0]
    assert lay.kind == "cartesian" and lay.turn == []


def _captions(state: np.ndarray, names: list[str], task: str) -> list[tuple[int, str]]:
    segs = segment_episode(state, None, FPS, SegmentConfig(), names, None)
    views = [EventView(episode_id="t", event_index=k, num_events=len(segs), task=task, start_frame=s.start,
                       end_frame=s.end, fps=FPS, state=state[s.start : s.end], action=state[s.start : s.end],
                       gripper=state[s.start : s.end, -1], state_names=names, action_names=names)
             for k, s in enumerate(segs)]
    return list(zip([s.start for s in segs], caption_episode_events(views), strict=True))


@pytest.mark.parametrize("columns", ["joint", "euler", "quat"])
def test_the_held_object_turned_in_place_is_captioned_a_turn(columns: str) -> None:
    task = "lift the peg and stand it upright on the table"
    state, names, starts = _episode(True, columns)
    caps = _captions(state, names, task)
    turn = [c for s, c in caps if abs(s - starts["turn"]) <= 2]
    assert turn == ["turn the peg"], caps
    before = [c for s, c in caps if s < starts["turn"] - 2]
    assert before[-1].startswith("lift the peg"), caps  # the lift stays a lift
    still, names, _ = _episode(False, columns)
    assert not any(c.startswith("turn") for _, c in _captions(still, names, task))


def test_the_quaternion_turning_speed_is_the_angle_per_second_whatever_its_sign() -> None:
    from carve.ingest.kinematics import turn_speed

    t = np.arange(40) / FPS
    angle = 0.5 * t  # 0.5 rad/s about z
    q = np.stack([np.zeros_like(t), np.zeros_like(t), np.sin(angle / 2), np.cos(angle / 2)], axis=1)
    q[::3] *= -1  # the same orientations
    got = turn_speed(q, "quat", FPS, 0.0)
    assert np.allclose(got, 0.5, atol=1e-9)
    assert np.allclose(turn_speed(np.tile(q[:1], (10, 1)), "quat", FPS, 0.06), 0.0)
