"""The policy API beyond the action queue (tests/test_policy.py): the caption planner that feeds
event mode its next-event description (advanced once per predicted event, reset per episode,
saved with the policy), captions-off execution, and the task token through the shared text
encoder."""

from __future__ import annotations

import numpy as np
import torch

from carve.trainer.config import ModelConfig
from carve.trainer.model import ModelSpec, WorldActionModel
from carve.trainer.planner import CaptionPlanner, task_shape
from carve.trainer.policy import Policy, PolicySettings

STATE, ACTION, TEXT = 6, 4, 32
PICK = [("reach", "arm", 0), ("grasp", "arm", 0), ("lift", "arm", 0), ("move", "arm", 0), ("place", "arm", 0),
        ("release", "arm", 0)]
PUSH = [("reach", "arm", 0), ("push", "arm", 0), ("retreat", "arm", 0)]


class Scripted(WorldActionModel):
    """The real model with its predicted event lengths forced to a script."""

    def __init__(self, cfg: ModelConfig, spec: ModelSpec, lengths: list[int]) -> None:
        super().__init__(cfg, spec)
        self.lengths, self.calls = lengths, 0

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward(batch)
        if "stop_logits" in out:
            n = self.lengths[self.calls % len(self.lengths)]
            logits = torch.full_like(out["stop_logits"], -10.0)
            logits[:, n - 1] = 10.0
            out["stop_logits"] = logits
        self.calls += 1
        return out


class Counting:
    """A text encoder double that records what it is asked to encode (feature-hashed vectors)."""

    def __init__(self, dim: int) -> None:
        self.dim, self.seen = dim, []

    def encode(self, items: list[str]) -> np.ndarray:
        from carve.trainer.data import task_embedding

        self.seen.extend(items)
        return np.stack([task_embedding(t, self.dim) for t in items])


def model(mode: str, lengths: list[int] | None = None, horizon: int = 12) -> WorldActionModel:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, block_size=4)
    spec = ModelSpec(mode, STATE, ACTION, 1, TEXT, TEXT, horizon)
    return Scripted(cfg, spec, lengths or [3]) if mode == "event" else WorldActionModel(cfg, spec)


def obs(task: str = "put the red cube in the tray") -> dict:
    return {"state": np.zeros(STATE, np.float32), "images": {}, "task": task}


def fitted() -> CaptionPlanner:
    return CaptionPlanner.fit([("put the red cube in the tray", PICK), ("put the blue ball in the tray", PICK),
                               ("put the green cube in the tray", PICK[:-1]),
                               ("push the red cube to the left", PUSH)])


def test_planner_keeps_each_task_shapes_modal_sequence_and_renders_this_tasks_objects() -> None:
    p = fitted()
    assert p.sequence("put the yellow cylinder in the tray") == PICK  # 2 of 3 pick-and-place demos
    assert p.sequence("push the blue cube to the right") == PUSH
    assert task_shape("put the red cube in the tray") != task_shape("push the red cube to the left")
    caps = p.captions("put the yellow cylinder in the tray")
    assert len(caps) == len(PICK)
    assert "yellow cylinder" in caps[1] and caps[1].startswith("grasp")
    assert caps[4].startswith("place") and "tray" in caps[4]


def test_planner_advances_once_per_call_and_resets() -> None:
    p = fitted()
    o = obs("push the blue cube to the right")
    got = [p(o) for _ in range(5)]
    assert got[:3] == p.captions(o["task"]) and got[3] == got[4] == got[2]  # past the end: the last phase
    p.reset()
    assert p(o) == got[0]
    assert CaptionPlanner.from_dict(p.to_dict()).sequences == p.sequences


def test_event_policy_asks_the_planner_once_per_predicted_event() -> None:
    enc = Counting(TEXT)
    planner = fitted()
    pol = Policy(model("event", lengths=[2, 3, 1]), PolicySettings(visual="zeros", text_source="planner"),
                 text_encoder=enc, planner=planner)
    pol.reset()
    for _ in range(6):  # events of 2, 3 and 1 steps: three plans
        pol.select_action(obs())
    assert pol.plans == 3 and planner.k == 3
    assert [t for t in enc.seen if t.startswith(("reach", "grasp", "lift"))] == planner.captions(obs()["task"])[:3]
    pol.reset()  # a new episode starts the planner over
    assert planner.k == 0


def test_captions_off_feeds_the_task_text_and_the_task_token_can_share_the_encoder() -> None:
    enc = Counting(TEXT)
    pol = Policy(model("event"), PolicySettings(visual="zeros", text_source="task", task_encoder="text"),
                 text_encoder=enc)
    pol.select_action(obs("put the red cube in the tray"))
    assert enc.seen == ["put the red cube in the tray"]  # caption slot and task token: one encode (cached)
    enc2 = Counting(TEXT)
    chunk = Policy(model("chunk", horizon=4), PolicySettings(visual="zeros", task_encoder="text"), text_encoder=enc2)
    chunk.select_action(obs("push the red cube to the left"))
    assert enc2.seen == ["push the red cube to the left"]


def test_saved_planner_policy_loads_with_its_planner_and_acts_identically(tmp_path) -> None:
    settings = PolicySettings(visual="zeros", text="hashed", text_source="planner", task_encoder="text",
                              extra={"planner": fitted().to_dict()})
    a = Policy(model("event", lengths=[2]), settings)
    a.save(tmp_path / "p")
    b = Policy.load(tmp_path / "p")
    assert isinstance(b.planner, CaptionPlanner)
    a.reset()
    b.reset()
    for _ in range(2):  # the loaded model predicts its own lengths; compare one plan each
        x, y = a.predict(obs()), b.predict(obs())
        np.testing.assert_array_equal(x["actions"], y["actions"])
