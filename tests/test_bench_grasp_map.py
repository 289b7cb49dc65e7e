"""`bench.grasp_map`'s pieces: the grasp step of a demonstration, and the hand errors by forward kinematics
(zero for the same configuration, the wrist joint's turn as yaw, a shoulder turn as centimetres), each against
what is known without the code: the first close command, the joint angle itself, the hand's distance from the
base axis."""

from __future__ import annotations

import numpy as np
import pytest

from bench.grasp_map import HandPose, grasp_step, hand_errors


def test_the_grasp_is_the_first_close_command() -> None:
    a = np.zeros((6, 8))
    a[3:, 7] = 1.0
    a[5, 7] = 0.0
    assert grasp_step(a) == 3
    with pytest.raises(ValueError, match="never closes"):
        grasp_step(np.zeros((4, 8)))


def test_hand_errors_follow_the_arm_kinematics() -> None:
    fk = HandPose()
    q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])
    np.testing.assert_allclose(hand_errors(fk, q[None], q[None]), [[0.0, 0.0]], atol=1e-6)
    wrist = q.copy()
    wrist[6] += np.radians(10)  # the last joint turns the hand about its own axis: yaw only, no travel
    err = hand_errors(fk, wrist[None], q[None])[0]
    assert err[0] < 0.5 and err[1] == pytest.approx(10.0, abs=0.5)
    base = q.copy()
    base[0] += 0.1  # the first joint swings the hand about the vertical base axis: an arc of r * 0.1 rad
    pos, _ = fk(q)
    r = np.linalg.norm(pos[:2] - np.asarray(fk.env.scene.arms[0].base)[:2])
    err = hand_errors(fk, base[None], q[None])[0]
    assert r > 0.2 and err[0] == pytest.approx(100 * 2 * r * np.sin(0.05), rel=0.02)  # the chord of the arc


def test_a_policys_closes_are_measured_per_scene_with_its_other_objects(tmp_path) -> None:
    """`policy_closes` runs a saved policy closed loop (here an untrained one) and reports, per held-out scene,
    its first close (or None) and how many objects the scene holds besides the task's."""
    import torch

    from bench.grasp_map import TEST_BASE, policy_closes
    from carve.sim.env import SimEnv
    from carve.sim.synth import episode_seed
    from carve.trainer.config import ModelConfig
    from carve.trainer.model import ModelSpec, WorldActionModel
    from carve.trainer.policy import Policy, PolicySettings

    torch.manual_seed(0)
    model = WorldActionModel(ModelConfig(d_model=32, n_layers=1, n_heads=4), ModelSpec("chunk", 8, 8, 16, 0, 16, 8))
    Policy(model, PolicySettings(visual="zeros", text="zeros", fps=12)).save(tmp_path / "p")
    rows = policy_closes(str(tmp_path / "p"), "pick_place", 2)
    want = []
    for i in range(2):
        with SimEnv(fps=12, render=False) as env:
            env.reset("pick_place", episode_seed(TEST_BASE, i))
            assert env.scene is not None
            want.append(sum(o.name not in {g.obj.name for g in env.goals} for o in env.scene.objects))
    assert [r["scene"] for r in rows] == [0, 1] and [r["other_objects"] for r in rows] == want
    assert all(r["close_cm"] is None or r["close_cm"] >= 0 for r in rows)
    assert all(isinstance(r["grasped"], bool) for r in rows)
