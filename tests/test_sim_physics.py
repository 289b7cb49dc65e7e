"""The simulator is physics-driven and shaped after teleoperation, not after the segmenter:
the measured hand follows the commanded one under position control, a grasped object moves
with the gripper by a contact-made constraint and falls and rests when released, the motion
takes the same seconds at any frame rate, and the blended operator does not stop between
lift, move and place while the dwell operator does."""

from __future__ import annotations

import numpy as np
import pytest

from carve.sim.operator import ArmPlan, Motion, OperatorNoise, crossover
from carve.sim.tasks import SimEpisode, run_episode


@pytest.fixture(scope="module")
def pick() -> SimEpisode:
    return run_episode("pick_place", seed=4, fps=20, size=16, render=False, style="blended", operator_noise=0.5)


def _speed(ep: SimEpisode, arm: int = 0) -> np.ndarray:
    """Measured end-effector speed (m/s) per frame."""
    assert ep.ee_meas is not None
    v = np.linalg.norm(np.diff(ep.ee_meas[:, arm], axis=0), axis=-1) * ep.fps
    return np.concatenate([v, v[-1:]])


def test_measured_hand_follows_the_commanded_one(pick: SimEpisode) -> None:
    assert pick.ee_cmd is not None and pick.ee_meas is not None
    err = np.linalg.norm(pick.ee_cmd[:, 0] - pick.ee_meas[:, 0], axis=-1)
    assert err.max() < 0.015 and np.median(err) < 0.004  # a servo's lag, within a centimetre or so
    assert err.max() > 1e-4  # ... but measured, not teleported
    assert np.ptp(pick.ee_meas[:, 0, 2]) > 0.2  # and the hand really travelled


def test_grasped_object_moves_with_the_gripper_then_falls_and_rests(pick: SimEpisode) -> None:
    assert pick.ee_meas is not None and pick.held is not None
    (obj,) = pick.objects.values()
    held = pick.held[:, 0]
    ph = {p.name: p for p in pick.phases}
    assert held[ph["lift"].start : ph["release"].start].all()
    assert not held[: ph["grasp"].start].any() and not held[ph["release"].end :].any()
    # while held, the object keeps its offset to the hand and travels with it
    offset = obj[held] - pick.ee_meas[held, 0]
    assert np.abs(offset - offset.mean(axis=0)).max() < 0.005
    assert np.linalg.norm(obj[held][-1] - obj[held][0]) > 0.2
    assert obj[:, 2].max() > obj[0, 2] + 0.08  # lifted
    # before the grasp it rests where it was; after release it drops a little and comes to rest
    assert np.ptp(obj[: ph["grasp"].start], axis=0).max() < 0.002
    rel = ph["release"].start
    assert obj[rel:, 2].min() < obj[rel, 2] - 0.003
    tail = obj[-5:]
    assert np.ptp(tail, axis=0).max() < 1e-3  # at rest
    assert np.linalg.norm(pick.ee_meas[-1, 0] - obj[-1]) > 0.1  # the hand went away without it


@pytest.mark.parametrize("style", ["dwell", "blended"])
def test_same_motion_in_seconds_at_10_and_50_fps(style: str) -> None:
    slow = run_episode("two_object", seed=2, fps=10, size=16, render=False, style=style, operator_noise=0.5)
    fast = run_episode("two_object", seed=2, fps=50, size=16, render=False, style=style, operator_noise=0.5)
    assert abs(slow.length / 10 - fast.length / 50) <= 1 / 10  # the same duration within a frame
    assert [p.name for p in slow.phases] == [p.name for p in fast.phases]
    assert np.allclose([p.start_s for p in slow.phases], [p.start_s for p in fast.phases])
    for a, b in zip(slow.phases, fast.phases, strict=True):  # boundaries in frames at each rate
        assert abs(a.start / 10 - b.start / 50) <= 1 / 10
    # the measured trajectories agree at the shared instants (every 5th frame at 50 fps)
    assert slow.ee_meas is not None and fast.ee_meas is not None
    n = min(slow.length, fast.length // 5)
    diff = np.linalg.norm(slow.ee_meas[:n, 0] - fast.ee_meas[: 5 * n : 5, 0], axis=-1)
    assert np.median(diff) < 0.003


def _lift_to_place(ep: SimEpisode) -> tuple[int, int]:
    ph = {p.name: p for p in ep.phases}
    return (ph["lift"].start + ph["lift"].end) // 2, (ph["place"].start + ph["place"].end) // 2


@pytest.mark.parametrize("task_type,seed,noise", [("pick_place", 0, 0.0), ("stack", 1, 0.5), ("two_object", 3, 1.0)])
def test_blended_does_not_stop_between_lift_move_and_place_dwell_does(task_type: str, seed: int,
                                                                      noise: float) -> None:
    kw = {"seed": seed, "fps": 30, "size": 16, "render": False, "operator_noise": noise}
    blended = run_episode(task_type, style="blended", **kw)
    dwell = run_episode(task_type, style="dwell", **kw)
    v = _speed(blended)
    a, b = _lift_to_place(blended)
    assert v[a:b].min() > 0.05 * v.max(), (v[a:b].min(), v.max())
    v = _speed(dwell)
    a, b = _lift_to_place(dwell)
    assert v[a:b].min() < 0.03 * v.max()  # dwell: a stop at lift -> move and at move -> place
    # both stop to grasp and to release
    for ep in (blended, dwell):
        v = _speed(ep)
        for name in ("grasp", "release"):
            p = next(p for p in ep.phases if p.name == name)
            assert v[p.start : p.end].min() < 0.03 * v.max()


def test_blended_boundary_is_where_the_next_motion_takes_over() -> None:
    lift = Motion(0.0, 1.0, np.array([0.0, 0.0, 0.1]), np.array([0.0, 0.0, 0.0333]), np.array([0.0, 0.0, 0.0667]))
    move = Motion(0.6, 1.0, np.array([0.3, 0.0, 0.0]), np.array([0.1, 0.0, 0.0]), np.array([0.2, 0.0, 0.0]))
    t = crossover(lift, move)
    assert 0.6 < t < 1.0
    assert move.speed(np.array([t + 0.01]))[0] > lift.speed(np.array([t + 0.01]))[0]
    assert move.speed(np.array([t - 0.01]))[0] < lift.speed(np.array([t - 0.01]))[0]
    # an ArmPlan in blended style overlaps lift -> move -> place; in dwell style it does not
    for style, overlapping in (("blended", True), ("dwell", False)):
        plan = ArmPlan("arm", np.zeros(3), 0.0, 0.08, style, np.random.default_rng(0), OperatorNoise(0.0, 0))
        plan.move("lift", np.array([0.0, 0.0, 0.1]), (0.6, 0.9))
        plan.pause()
        plan.move("move", np.array([0.2, 0.0, 0.1]), (1.0, 1.6), blend=True)
        plan.pause()
        plan.move("place", np.array([0.2, 0.0, 0.0]), (0.6, 0.9), blend=True)
        m = plan.motions
        assert (m[1].t0 < m[0].t1 and m[2].t0 < m[1].t1) == overlapping
        starts = [p.t for p in plan.phases]
        assert starts == sorted(starts) and starts[0] == 0.0
        assert np.allclose(plan.pose(plan.end)[0], [0.2, 0.0, 0.0])
