"""The closed-loop simulator (`carve.sim.env`): the scene of `carve synth` for a seed, recorded
actions replayed open loop reach the task's success predicate (the replay gate, small; the full
one is `bench/replay_gate.py`), determinism, observations, and the success / progress
predicates."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from carve.sim.env import GAP_HYSTERESIS, PUSH_TARGET, SimEnv, arms_for, replay, synth_episode
from carve.sim.scene import GRIPPER_MAX, pb
from carve.sim.synth import episode_seed, synthesize
from carve.sim.tasks import run_episode


@pytest.mark.parametrize("task", ["pick_place", "stack", "push", "two_object"])
def test_replayed_recording_succeeds(task: str) -> None:
    seed = episode_seed(0, 1)
    ep = run_episode(task, seed, render=False)  # carve synth's defaults: dwell, 12 fps, one camera
    res = replay(ep, seed)
    assert res["first_state_err"] == 0.0  # the same scene and start state as the recording
    assert res["success"] and res["progress"] == 100.0
    assert res["steps"] < ep.length  # ended on success (held for SUCCESS_HOLD_S), not on running out
    assert res["max_state_err"] < 0.1  # the replayed arm tracks the recorded one


def test_replayed_bimanual_blended_noisy_recording_succeeds() -> None:
    seed = 5
    ep = run_episode("bimanual_pick_place", seed, fps=30, render=False, style="blended", operator_noise=0.5,
                     arms=2, cameras=2)
    res = replay(ep, seed)
    assert res["success"] and res["progress"] == 100.0
    assert res["first_state_err"] < 0.002  # only the recording's gripper-sensor noise
    assert res["max_state_err"] < 0.1


def test_seed_of_a_carve_synth_episode_gives_its_scene(tmp_path) -> None:
    root = synthesize(str(tmp_path / "ds"), 2, workers=1, seed=3, size=16, tasks=["push"], progress=False)
    table = pq.read_table(next((root / "data").rglob("*.parquet")))
    rows = table.filter(pc.equal(table["episode_index"], 1))
    state = np.asarray(rows["observation.state"].to_pylist(), np.float32)
    action = np.asarray(rows["action"].to_pylist(), np.float32)
    truth = json.loads((root / "ground_truth_events.json").read_text())["episodes"][1]
    task, seed = synth_episode(3, 1, ["push"])
    env = SimEnv(render=False)
    obs = env.reset(task, seed)
    assert obs["task"] == truth["task"]
    np.testing.assert_array_equal(obs["state"], state[0])
    info: dict = {}
    for a in action:
        obs, _, done, info = env.step(a)
        if done:
            break
    assert info["success"]
    env.close()


def _hold(env: SimEnv, obs: dict) -> np.ndarray:
    """The action that keeps the arms where they are, gripper unchanged."""
    a = np.asarray(obs["state"], np.float64).copy()
    if env.arms == 1:
        a[7] = 1.0 if env.task_type == "push" else 0.0
    return a


def test_same_seed_same_episode_other_seed_other_scene() -> None:
    a, b, c = SimEnv(render=False, privileged=True), SimEnv(render=False, privileged=True), SimEnv(render=False)
    oa, ob = a.reset("pick_place", 11), b.reset("pick_place", 11)
    c.reset("pick_place", 12)
    np.testing.assert_array_equal(oa["privileged"]["object_state"], ob["privileged"]["object_state"])
    assert oa["task"] == ob["task"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        act = _hold(a, oa) + np.r_[rng.normal(0, 0.05, 7), 0.0]
        oa, ra, da, ia = a.step(act)
        ob, rb, db, ib = b.step(act)
        np.testing.assert_array_equal(oa["state"], ob["state"])
        np.testing.assert_array_equal(oa["privileged"]["object_state"], ob["privileged"]["object_state"])
        assert (ra, da, ia) == (rb, db, ib)
    pos_a = a._plan.tracked[0]  # type: ignore[union-attr]
    pos_c = c._plan.tracked[0]  # type: ignore[union-attr]
    assert not np.allclose(a.scene.object_position(pos_a), c.scene.object_position(pos_c))  # type: ignore[union-attr]
    for e in (a, b, c):
        e.close()


def test_observation_contents() -> None:
    with SimEnv(size=32, privileged=True, style="blended") as env:
        obs = env.reset("two_object", 4)
        assert env.fps == 30 and env.camera_names == ["front", "wrist"]  # carve synth's defaults for blended
        assert obs["state"].dtype == np.float32 and obs["state"].shape == (8,)
        assert set(obs["images"]) == {"front", "wrist"}
        assert all(im.shape == (32, 32, 3) and im.dtype == np.uint8 for im in obs["images"].values())
        assert obs["images"]["front"].std() > 5  # a rendered scene, not a blank frame
        assert obs["task"].startswith("put the ") and obs["task"].endswith(" in the tray")
        priv = obs["privileged"]
        assert len(priv["objects"]) == 2 and priv["held"] == [False, False]
        assert priv["object_state"].shape == (2 * 7 + 3,)
        assert env.action_names[-1] == "gripper_command"
    with SimEnv(render=False) as env:
        obs = env.reset("bimanual_pick_place", 2)
        assert env.arms == 2 and obs["images"] == {} and obs["state"].shape == (16,)
        assert env.action_names[7] == "left_gripper"


def test_doing_nothing_is_no_progress_and_times_out() -> None:
    with SimEnv(render=False, max_seconds=1.0) as env:
        obs = env.reset("pick_place", 3)
        done, info, total = False, {}, 0.0
        while not done:
            obs, r, done, info = env.step(_hold(env, obs))
            total += r
        assert info["step"] == env.fps and info["time_limit"]
        assert not info["success"] and info["progress"] == 0.0 and total == 0.0
        assert not any(info["phases"].values())
        with pytest.raises(RuntimeError, match="reset"):
            env.step(_hold(env, obs))


def test_bad_actions_are_refused() -> None:
    with SimEnv(render=False) as env:
        obs = env.reset("push", 1)
        with pytest.raises(ValueError, match="8 values"):
            env.step(np.zeros(7))
        bad = _hold(env, obs)
        bad[2] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            env.step(bad)
    with pytest.raises(ValueError, match="unknown task type"):
        SimEnv().reset("fold_laundry", 0)


def _teleport(env: SimEnv, name: str, pos: np.ndarray) -> None:
    assert env.scene is not None and env._plan is not None
    obj = next(o for o in env._plan.tracked if o.name == name)
    pb.resetBasePositionAndOrientation(obj.body, [float(v) for v in pos], [0, 0, 0, 1],
                                       physicsClientId=env.scene.client)


def _run_holding(env: SimEnv, obs: dict, steps: int) -> dict:
    info: dict = {}
    for _ in range(steps):
        obs, _, done, info = env.step(_hold(env, obs))
        if done:
            break
    return info


def test_success_predicates_and_partial_progress() -> None:
    with SimEnv(render=False, privileged=True) as env:
        obs = env.reset("two_object", 6)
        assert env.scene is not None and env.scene.tray_pos is not None
        names = list(obs["privileged"]["objects"])
        tray = np.array([*env.scene.tray_pos, 0.06])
        _teleport(env, names[0], tray)  # dropped into the tray without being grasped
        info = _run_holding(env, obs, 12)
        assert not info["success"]
        assert info["phases"][f"{names[0]}:released"] and info["phases"][f"{names[0]}:placed"]
        assert not info["phases"][f"{names[0]}:grasped"]
        assert info["progress"] == pytest.approx(100 * 2 / 10)
        _teleport(env, names[1], tray + np.array([0.0, 0.04, 0.0]))
        info = _run_holding(env, obs, 24)
        assert info["success"] and info["progress"] == 100.0 and info["step"] < 36
    with SimEnv(render=False) as env:
        obs = env.reset("stack", 2)
        top, base = env._plan.tracked  # type: ignore[union-attr]
        bp = env.scene.object_position(base)  # type: ignore[union-attr]
        _teleport(env, top.name, bp + np.array([0.0, 0.0, base.half[2] + top.half[2] + 0.003]))
        assert _run_holding(env, obs, 24)["success"]
    with SimEnv(render=False) as env:
        obs = env.reset("push", 8)
        g = env.goals[0]
        assert g.direction is not None
        _teleport(env, g.obj.name, g.start + np.r_[g.direction, 0.0] * (PUSH_TARGET / 2 + 0.01))
        info = _run_holding(env, obs, 6)
        assert not info["success"] and info["phases"][f"{g.obj.name}:halfway"]
        _teleport(env, g.obj.name, g.start + np.r_[g.direction, 0.0] * (PUSH_TARGET + 0.01))
        assert _run_holding(env, obs, 12)["success"]


def test_width_commanded_gripper_closes_and_opens_on_its_direction() -> None:
    grip = {"closed": False, "lo": GRIPPER_MAX, "hi": GRIPPER_MAX}
    seen = []
    for w in [0.08, 0.079, 0.075, 0.06, 0.03, 0.031, 0.032, 0.036, 0.05, 0.048, 0.04, 0.08]:
        SimEnv._trigger(grip, w)
        seen.append(grip["closed"])
    # closes once the gap fell GAP_HYSTERESIS below its maximum, ignores a 2 mm wobble, opens once
    # it rose GAP_HYSTERESIS above its minimum, closes again when it falls back
    assert GAP_HYSTERESIS == 0.004  # the widths above are chosen around it
    assert seen == [False, False, True, True, True, True, True, False, False, False, True, False]


def test_arm_count_of_task_types() -> None:
    assert arms_for("bimanual_pick_place") == 2 and arms_for("stack") == 1
    assert synth_episode(0, 5, ["pick_place", "push"]) == ("push", episode_seed(0, 5))
