"""Relative actions (`ModelConfig.relative_actions`): the first N action dimensions are offsets from
the plan start's first N state values. The model's targets, the policy's actions in dataset units
(through a save / load round trip), the study's offset statistics and the name pairing, each against
values worked out by hand here; and the streaming trainer refuses what it cannot normalise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from carve.sim.study import paired_dims
from carve.sim.study_episodes import EpisodeData, action_offsets, norm_stats
from carve.trainer.config import ModelConfig, TrainConfig
from carve.trainer.model import ModelSpec, WorldActionModel
from carve.trainer.policy import Policy, PolicySettings

MEAN = [0.5, -1.0, 0.25]
STD = [2.0, 0.5, 4.0]


def model(relative: int, mode: str = "chunk") -> WorldActionModel:
    torch.manual_seed(0)
    m = WorldActionModel(ModelConfig(d_model=16, n_layers=1, n_heads=2, block_size=4, relative_actions=relative),
                         ModelSpec(mode, 4, 3, 8, 8, 8, 4))
    m.set_norm_stats(np.zeros(4), np.ones(4), MEAN, STD)
    return m


def test_targets_are_offsets_from_the_plan_start_state_for_the_first_n_dimensions() -> None:
    state = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    actions = torch.tensor([[[11.0, 19.0, 1.0], [12.0, 21.0, 0.0]]])
    # dims 0-1 relative to state 10, 20; dim 2 absolute: ((a - anchor) - mean) / std
    want = torch.tensor([[[(1.0 - 0.5) / 2, (-1.0 + 1.0) / 0.5, (1.0 - 0.25) / 4],
                          [(2.0 - 0.5) / 2, (1.0 + 1.0) / 0.5, (0.0 - 0.25) / 4]]])
    rel = model(2)
    assert torch.allclose(rel.normalize_actions(actions, state), want)
    assert torch.allclose(rel.denormalize_actions(want, state), actions)
    absolute = model(0)  # the default ignores the state
    want_abs = (actions - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(absolute.normalize_actions(actions, state), want_abs)


def test_more_relative_dimensions_than_the_model_has_is_an_error() -> None:
    with pytest.raises(ValueError, match="relative_actions 4: the model has 3 action"):
        model(4)


def test_the_policy_adds_the_observed_joints_back_after_a_save_load_round_trip(tmp_path) -> None:
    m = model(2)
    with torch.no_grad():  # the action head predicts 0 (normalised): every action is mean (+ the state's joints)
        m.action_head.weight.zero_()
        m.action_head.bias.zero_()
    settings = PolicySettings(visual="zeros", text="hashed", n_action_steps=4)
    Policy(m, settings).save(tmp_path / "p")
    policy = Policy.load(tmp_path / "p")
    assert policy.model.cfg.relative_actions == 2
    ob = {"state": np.array([3.0, -2.0, 7.0, 9.0], np.float32), "images": {}, "task": "stack"}
    acts = policy.predict(ob)["actions"]
    np.testing.assert_allclose(acts, np.tile([3.5, -3.0, 0.25], (4, 1)), atol=1e-6)
    ob["state"][:2] = [0.0, 1.0]  # another start state moves the relative dimensions only
    np.testing.assert_allclose(policy.predict(ob)["actions"], np.tile([0.5, 0.0, 0.25], (4, 1)), atol=1e-6)


def _episode() -> EpisodeData:
    state = np.array([[0.0, 5.0], [1.0, 5.0], [3.0, 5.0]], np.float32)
    action = np.array([[1.0, 0.0], [3.0, 1.0], [6.0, 1.0]], np.float32)
    return EpisodeData("e", "t", state, action, np.array([0]), np.array([3]), ["c"], np.ones(1), np.zeros(1, bool))


def test_offset_statistics_cover_every_action_a_plan_start_predicts() -> None:
    ep = _episode()
    # horizon 2: from t=0 actions 0,1; from t=1 actions 1,2; from t=2 action 2 (joint 0 minus state[t, 0])
    want = np.array([[1 - 0, 0], [3 - 0, 1], [3 - 1, 1], [6 - 1, 1], [6 - 3, 1]], np.float32)
    np.testing.assert_array_equal(action_offsets(ep, 1, 2), want)
    st = norm_stats([ep], relative=1, horizon=2)
    np.testing.assert_allclose(st.action_mean, [14 / 5, 4 / 5], rtol=1e-6)
    np.testing.assert_allclose(st.action_std, [np.std([1, 3, 2, 5, 3]), np.std([0, 1, 1, 1, 1])], rtol=1e-6)
    np.testing.assert_allclose(norm_stats([ep]).action_mean, [10 / 3, 2 / 3], rtol=1e-6)  # absolute: the actions


def test_paired_dims_counts_the_leading_joint_targets() -> None:
    joints = [f"joint_{i}" for i in range(7)]
    assert paired_dims([*joints, "gripper_opening"], [f"{j}_target" for j in joints] + ["gripper_command"]) == 7
    assert paired_dims(["a", "b", "c"], ["a", "b", "c"]) == 3  # ALOHA-style: the action names the state
    assert paired_dims(["x", "y"], ["y", "x"]) == 0


def test_the_streaming_trainer_refuses_relative_actions(tmp_path) -> None:
    from carve.trainer.train import train

    cfg = TrainConfig(model=ModelConfig(relative_actions=7), out_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="relative_actions 7: the streaming trainer"):
        train(cfg)


def test_a_study_with_relative_actions_trains_every_mode_on_them(tmp_path) -> None:
    import json

    from carve.cli.main import main

    out = tmp_path / "study.md"
    args = ["eval-sim", "--study", "--tasks", "pick_place", "--observation", "privileged", "--actions", "relative",
            "--train-episodes", "3", "--train-seeds", "1", "--seeds", "1", "--steps", "4", "--batch-size", "4",
            "--max-seconds", "1", "--workers", "1", "--chunk-lens", "4", "--no-ensemble", "--val-train-seeds", "1",
            "--val-seeds", "1", "--hold-ablation-seeds", "0", "--matched-seeds", "0", "-q", "--out", str(out)]
    assert main(args) == 0
    pol = tmp_path / "study" / "policies"
    for name in ("event-seed0", "unified-seed0", "chunk_best-seed0"):
        cfg = json.loads((pol / name / "config.json").read_text())
        assert cfg["model"]["relative_actions"] == 7, name  # the 7 joint targets; the gripper command absolute
    assert json.loads(out.with_suffix(".json").read_text())["config"]["actions"] == "relative"
    assert "offsets from the joints measured at the plan's start" in out.read_text()
    with pytest.raises(ValueError, match="unknown actions 'delta'"):
        from carve.sim.study import StudyConfig

        StudyConfig(actions="delta")
