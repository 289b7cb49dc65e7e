"""The policy API (`carve.trainer.policy`): the action queue (event mode executes its predicted
length, then re-observes; chunk and unified modes re-plan every `n_action_steps`), the directory
save / load round trip, and a closed-loop smoke run in the simulator for every task type."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from carve.trainer.config import ModelConfig
from carve.trainer.model import ModelSpec, WorldActionModel
from carve.trainer.policy import CONFIG_FILE, NORM_FILE, WEIGHTS_FILE, Policy, PolicyError, PolicySettings

STATE, ACTION, VISUAL, TEXT, TASK = 8, 8, 256, 24, 16


class Recording(WorldActionModel):
    """The real model, recording the state it is asked about and (event mode) forcing the
    predicted lengths to a script."""

    def __init__(self, cfg: ModelConfig, spec: ModelSpec, lengths: list[int] | None = None) -> None:
        super().__init__(cfg, spec)
        self.lengths = lengths
        self.seen: list[float] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward(batch)
        self.seen.append(float(batch["state"][0, 0]))
        if self.lengths is not None:
            n = self.lengths[(len(self.seen) - 1) % len(self.lengths)]
            logits = torch.full_like(out["stop_logits"], -10.0)
            logits[:, n - 1] = 10.0
            out["stop_logits"] = logits
        return out


def tiny(mode: str, horizon: int = 8, state: int = STATE, action: int = ACTION, cls: type = WorldActionModel,
         seed: int = 0, **kw: object) -> WorldActionModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, block_size=4)
    model = cls(cfg, ModelSpec(mode, state, action, VISUAL, TEXT, TASK, horizon), **kw)
    rng = np.random.default_rng(seed)
    model.set_norm_stats(rng.normal(0, 1, state), rng.uniform(0.5, 2, state), rng.normal(0, 1, action),
                         rng.uniform(0.1, 1, action))
    return model


def obs(k: int, rng: np.random.Generator | None = None) -> dict:
    rng = rng or np.random.default_rng(k)
    state = np.zeros(STATE, np.float32)
    state[0] = k  # the step index, so the recorded model shows which observations it saw
    return {"state": state, "images": {"front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)},
            "task": "put the red cube in the tray"}


SETTINGS = {"visual": "descriptor", "text": "hashed"}


def test_event_mode_executes_its_predicted_length_then_reobserves() -> None:
    model = tiny("event", horizon=12, cls=Recording, lengths=[3, 5, 1, 4])
    policy = Policy(model, PolicySettings(**SETTINGS))
    actions = [policy.select_action(obs(k)) for k in range(14)]
    assert model.seen == [0, 3, 8, 9, 13]  # planned at 0, then after 3, 5, 1 and 4 executed steps
    assert policy.plans == 5 and policy.last_plan == {"mode": "event", "queued": 3, "length": 3}
    assert len(policy.queue) == 2  # 3 queued at step 13, one popped
    # what was executed is the denormalised prediction made at the planning step
    ref = Policy(tiny("event", horizon=12, cls=Recording, lengths=[5]), PolicySettings(**SETTINGS))
    np.testing.assert_allclose(np.stack(actions[3:8]), ref.predict(obs(3))["actions"][:5], rtol=1e-6)
    assert actions[0].dtype == np.float32 and actions[0].shape == (ACTION,)
    # a cap on the executed length, and reset() drops the queue
    capped = Policy(tiny("event", horizon=12, cls=Recording, lengths=[10]),
                    PolicySettings(max_event_steps=4, **SETTINGS))
    for k in range(9):
        capped.select_action(obs(k))
    assert capped.model.seen == [0, 4, 8]  # type: ignore[attr-defined]
    capped.reset()
    assert not capped.queue
    capped.select_action(obs(20))
    assert capped.model.seen[-1] == 20  # type: ignore[attr-defined]


@pytest.mark.parametrize(("mode", "n_steps", "expected"), [("chunk", 3, [0, 3, 6, 9]), ("chunk", None, [0, 8]),
                                                          ("unified", 5, [0, 5])])
def test_chunk_and_unified_replan_every_n_action_steps(mode: str, n_steps: int | None, expected: list[int]) -> None:
    model = tiny(mode, horizon=8, cls=Recording)
    policy = Policy(model, PolicySettings(n_action_steps=n_steps, **SETTINGS))
    actions = [policy.select_action(obs(k)) for k in range(10)]
    assert model.seen == expected
    n = n_steps or 8
    np.testing.assert_allclose(np.stack(actions[:n]), policy.predict(obs(0))["actions"][:n], rtol=1e-6)
    assert policy.n_action_steps == n and policy.last_plan["length"] is None


def test_settings_are_checked() -> None:
    with pytest.raises(PolicyError, match="n_action_steps"):
        Policy(tiny("chunk", horizon=8), PolicySettings(n_action_steps=9))
    with pytest.raises(PolicyError, match="text encoder"):
        Policy(tiny("event"), PolicySettings(text="bert"))
    policy = Policy(tiny("event"), PolicySettings(**SETTINGS))
    with pytest.raises(PolicyError, match="state has 3 values"):
        policy.select_action({**obs(0), "state": np.zeros(3)})
    with pytest.raises(PolicyError, match="camera"):
        Policy(tiny("chunk"), PolicySettings(cameras=["wrist"], **SETTINGS)).select_action(obs(0))
    planned = Policy(tiny("event"), PolicySettings(visual="zeros", text="hashed", text_source="planner"))
    with pytest.raises(PolicyError, match="planner"):
        planned.select_action(obs(0))
    texts: list[str] = []
    planned.planner = lambda o: texts.append(o["task"]) or "grasp the red cube"
    planned.select_action({**obs(0), "images": {}})
    assert texts == ["put the red cube in the tray"]


@pytest.mark.parametrize("mode", ["event", "unified", "chunk"])
def test_save_load_round_trip_gives_identical_actions(tmp_path, mode: str) -> None:
    settings = PolicySettings(n_action_steps=None if mode == "event" else 3, fps=12, **SETTINGS)
    policy = Policy(tiny(mode, seed=3), settings)
    out = policy.save(tmp_path / "policy")
    assert {p.name for p in out.iterdir()} == {WEIGHTS_FILE, CONFIG_FILE, NORM_FILE}
    cfg = json.loads((out / CONFIG_FILE).read_text())
    assert cfg["format"] == "carve.policy" and cfg["mode"] == mode and cfg["policy"]["n_action_steps"] == settings.n_action_steps
    norm = json.loads((out / NORM_FILE).read_text())
    np.testing.assert_array_equal(np.float32(norm["action_std"]), policy.model.action_std.numpy())
    loaded = Policy.load(out)
    assert loaded.settings == policy.settings and loaded.spec == policy.spec
    for k in range(10):
        a, b = policy.select_action(obs(k)), loaded.select_action(obs(k))
        np.testing.assert_array_equal(a, b)
    assert loaded.plans == policy.plans
    # the statistics come from normalization.json, the one source of them
    norm["action_mean"] = [v + 1.0 for v in norm["action_mean"]]
    (out / NORM_FILE).write_text(json.dumps(norm))
    shifted = Policy.load(out)
    np.testing.assert_allclose(shifted.predict(obs(0))["actions"], policy.predict(obs(0))["actions"] + 1.0,
                               rtol=1e-5, atol=1e-5)


def test_loading_something_else_fails_clearly(tmp_path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        Policy.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(PolicyError, match="not a Carve policy"):
        Policy.load(tmp_path)
    out = Policy(tiny("chunk")).save(tmp_path / "p")
    (out / NORM_FILE).write_text(json.dumps({"state_mean": [0.0]}))
    with pytest.raises(PolicyError, match=r"normalization\.json"):
        Policy.load(out)


def test_from_trainer_checkpoint(tmp_path) -> None:
    from carve.trainer.checkpoint import save_checkpoint
    from carve.trainer.config import TrainConfig

    model = tiny("chunk", seed=5)
    cfg = TrainConfig(mode="chunk", model=model.cfg)
    path = save_checkpoint({"config": cfg.model_dump(), "spec": asdict(model.spec), "model": model.state_dict(),
                            "step": 1}, tmp_path / "ckpt-00000001.pt")
    policy = Policy.from_checkpoint(path, PolicySettings(**SETTINGS))
    np.testing.assert_array_equal(policy.predict(obs(1))["actions"],
                                  Policy(model, PolicySettings(**SETTINGS)).predict(obs(1))["actions"])


@pytest.mark.parametrize(("task", "mode"), [("pick_place", "event"), ("stack", "chunk"), ("push", "unified"),
                                            ("two_object", "chunk"), ("bimanual_pick_place", "event")])
def test_closed_loop_smoke_in_the_simulator(task: str, mode: str) -> None:
    from carve.sim.env import SimEnv

    with SimEnv(size=32, fps=10) as env:
        first = env.reset(task, 3)
        dim = len(env.state_names)
        model = tiny(mode, horizon=4, state=dim, action=dim)
        # untrained: normalised outputs near 0, so actions stay near the start pose
        model.set_norm_stats(first["state"], np.ones(dim), first["state"], np.full(dim, 0.01))
        policy = Policy(model, PolicySettings(n_action_steps=2 if mode != "event" else None, **SETTINGS))
        o = first
        for _ in range(6):
            a = policy.select_action(o)
            assert a.shape == (env.action_dim,) and np.isfinite(a).all()
            o, _, done, info = env.step(a)
            assert np.isfinite(o["state"]).all() and 0.0 <= info["progress"] <= 100.0
            assert not done
        assert policy.plans >= 2
        assert np.abs(o["state"][:7] - first["state"][:7]).max() < 0.2  # stayed near the start pose


def test_carve_eval_sim_reports_success_and_progress_with_cis(tmp_path) -> None:
    from carve.cli.main import main
    from carve.sim.eval_sim import wilson

    Policy(tiny("chunk", horizon=4), PolicySettings(visual="zeros", text="hashed")).save(tmp_path / "p")
    out = tmp_path / "eval.json"
    rc = main(["eval-sim", "--policy", str(tmp_path / "p"), "--tasks", "push", "--seeds", "2", "--max-seconds", "0.5",
               "--out", str(out), "-q"])
    assert rc == 0
    res = json.loads(out.read_text())
    push = res["tasks"]["push"]
    assert push["episodes"] == 2 and len(res["episodes"]) == 2
    assert push["success_rate"] == 0.0 and push["success_ci95"][0] == 0.0 and push["success_ci95"][1] > 0.3
    assert res["episodes"][0]["steps"] == 6  # the time limit at 12 fps
    lo, hi = wilson(45, 50)
    assert 0.78 < lo < 0.9 < hi < 0.97


def test_privileged_state_pilot_policy_reads_object_poses() -> None:
    from carve.sim.env import SimEnv

    with SimEnv(render=False, privileged=True, fps=10) as env:
        o = env.reset("stack", 1)
        dim = len(o["state"]) + len(o["privileged"]["object_state"])  # 8 + 2 poses + target = 25
        model = tiny("chunk", horizon=4, state=dim, cls=Recording)
        model.set_norm_stats(np.zeros(dim), np.ones(dim), o["state"], np.full(ACTION, 0.01))
        policy = Policy(model, PolicySettings(visual="zeros", text="hashed", privileged_state=True))
        for _ in range(3):
            o, *_ = env.step(policy.select_action(o))
        assert dim == 25 and policy.plans == 1
        with pytest.raises(PolicyError, match="privileged"):
            policy.reset()
            policy.select_action({"state": o["state"], "images": {}, "task": o["task"]})


@pytest.mark.parametrize("m, expected", [
    (0.0, [0.0, 50.5, 101.0, 201.0, 301.0]),  # plain mean of the open chunks' actions for the step
    # ACT's weights exp(-m i), the oldest chunk i = 0: step 2 = (2 + 101/2 + 200/4) / 1.75
    (float(np.log(2.0)), [0.0, (1 + 100 / 2) / 1.5, (2 + 101 / 2 + 200 / 4) / 1.75, (102 + 201 / 2 + 300 / 4) / 1.75,
                          (202 + 301 / 2 + 400 / 4) / 1.75]),
])
def test_temporal_ensembling_averages_every_open_chunk(m: float, expected: list[float]) -> None:
    """Chunk p (planned at step p) predicts 100 p + j for its j-th step, horizon 3: at step t the
    policy acts the weighted mean of the chunks planned at t-2, t-1 and t."""
    policy = Policy(tiny("chunk", horizon=3), PolicySettings(temporal_ensemble=m, **SETTINGS))
    plans = iter(range(100))
    policy.predict = lambda _obs: {"actions": np.repeat((100.0 * next(plans) + np.arange(3.0))[:, None], ACTION, 1)
                                   .astype(np.float32), "length": None}
    policy.reset()
    got = [float(policy.select_action(obs(k))[0]) for k in range(5)]
    assert np.allclose(got, expected, rtol=1e-5)
    assert policy.plans == 5 and policy.last_plan["ensembled"] == 3
    policy.reset()
    assert float(policy.select_action(obs(0))[0]) == 500.0  # a new episode forgets the old chunks


def test_temporal_ensembling_runs_the_real_model_every_step_and_is_refused_in_event_mode() -> None:
    model = tiny("unified", horizon=4, cls=Recording)
    policy = Policy(model, PolicySettings(temporal_ensemble=0.01, n_action_steps=4, **SETTINGS))
    for k in range(6):
        assert policy.select_action(obs(k)).shape == (ACTION,)
    assert model.seen == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # observed at every step, not every 4
    with pytest.raises(PolicyError, match="temporal_ensemble"):
        Policy(tiny("event"), PolicySettings(temporal_ensemble=0.01, **SETTINGS))
