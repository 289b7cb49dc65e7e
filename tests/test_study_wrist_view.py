"""Two cameras for a pixel policy (issue 20, item 4): `carve eval-sim --study --views front+wrist`.

The recorded visual input of a step is the front frame and then the wrist frame, each block-averaged
here with numpy (not through the study's or the policy's encoder code); the conv stem reads each camera
through its own convolutions, so the token depends on both images; the world head's target is each
camera's frame pooled to 8 x 8; a policy that takes two cameras refuses an observation with one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _small(frame: np.ndarray) -> np.ndarray:
    """64 px -> 32 px by 2 x 2 block means, channel-major in [-1, 1] (what the pixel input should be)."""
    small = frame.astype(np.float64).reshape(32, 2, 32, 2, 3).mean((1, 3))
    return (small.transpose(2, 0, 1).reshape(-1) / 127.5 - 1.0).astype(np.float32)


def test_a_front_and_wrist_recording_is_both_rendered_frames_in_camera_order() -> None:
    from carve.sim.env import MAX_SECONDS, SimEnv
    from carve.sim.study import record_episode

    rec = record_episode("pick_place", 4242, 12, "pixels", 64, views="front+wrist")
    n = len(rec["action"])
    assert rec["visual"].shape == (n, 2 * 3 * 32 * 32) and n > 10
    with SimEnv(fps=12, render=True, size=64, cameras=2,
                max_seconds=max(MAX_SECONDS["pick_place"], n / 12 + 1.0)) as env:
        obs = env.reset("pick_place", 4242)
        assert sorted(obs["images"]) == ["front", "wrist"]
        for t, a in enumerate(rec["action"]):
            if t in (0, n // 2, n - 1):
                want = np.concatenate([_small(obs["images"]["front"]), _small(obs["images"]["wrist"])])
                np.testing.assert_allclose(rec["visual"][t], want, atol=1.01 / 127.5)  # PIL works in uint8
            obs, _, done, _ = env.step(a)
            if done:
                break
    front_only = record_episode("pick_place", 4242, 12, "pixels", 64)["visual"]
    np.testing.assert_array_equal(front_only, rec["visual"][:, : 3 * 32 * 32])  # the same front frames
    assert not np.allclose(rec["visual"][:, 3 * 32 * 32 :], front_only)  # the wrist sees something else


def test_each_camera_has_its_own_convolutions_and_world_target() -> None:
    import torch

    from carve.trainer.config import ModelConfig
    from carve.trainer.model import ConvStem, ModelSpec, WorldActionModel

    torch.manual_seed(0)
    stem = ConvStem(16, 8, cameras=2).eval()
    assert len(stem.others) == 1 and stem.proj.in_features == 2 * 2 * 32
    assert stem.convs[0].weight.data_ptr() != stem.others[0][0].weight.data_ptr()
    rng = np.random.default_rng(1)
    a, b, c = (rng.uniform(-1, 1, 3 * 16 * 16).astype(np.float32) for _ in range(3))
    with torch.no_grad():
        ab, ac, cb = (stem(torch.from_numpy(np.concatenate(p))[None]) for p in ((a, b), (a, c), (c, b)))
        ba = stem(torch.from_numpy(np.concatenate((b, a)))[None])
    assert not torch.allclose(ab, ac) and not torch.allclose(ab, cb)  # both images reach the token
    assert not torch.allclose(ab, ba)  # and which camera an image comes from matters
    with torch.no_grad():  # the second camera's keypoints go through the second camera's convolutions only
        for p in stem.others.parameters():
            p.zero_()
        again_ab, again_ac = (stem(torch.from_numpy(np.concatenate(p))[None]) for p in ((a, b), (a, c)))
    torch.testing.assert_close(again_ab, again_ac)

    spec = ModelSpec("event", 8, 8, 2 * 3 * 32 * 32, 16, 16, 8)
    model = WorldActionModel(ModelConfig(d_model=32, n_layers=1, n_heads=4, visual_stem="conv", visual_cameras=2), spec)
    frames = rng.uniform(-1, 1, (2, 2, 3, 32, 32)).astype(np.float32)  # (batch, camera, C, H, W)
    want = frames.reshape(2, 2, 3, 8, 4, 8, 4).mean((4, 6)).reshape(2, -1)
    np.testing.assert_allclose(model.world_target(torch.from_numpy(frames.reshape(2, -1))).numpy(), want, atol=1e-6)
    out = model({"visual": torch.from_numpy(frames.reshape(2, -1)), "state": torch.zeros(2, 8), "text": torch.zeros(2, 16)})
    assert out["end_visual"].shape == (2, 2 * 3 * 8 * 8)
    with pytest.raises(ValueError, match=r"2 \(3, S, S\) image vector"):
        WorldActionModel(ModelConfig(d_model=32, n_layers=1, n_heads=4, visual_stem="conv", visual_cameras=2),
                         ModelSpec("event", 8, 8, 3 * 32 * 32 + 3, 16, 16, 8))


def test_a_two_camera_policy_acts_on_both_images_and_refuses_one(tmp_path: Path) -> None:
    """Saved and loaded, the policy builds its input from both cameras in name order; an observation with
    one camera is refused by name, where averaging the images would have run silently."""
    import torch

    from carve.trainer.config import ModelConfig
    from carve.trainer.model import ModelSpec, WorldActionModel
    from carve.trainer.policy import Policy, PolicyError, PolicySettings

    torch.manual_seed(0)
    spec = ModelSpec("chunk", 8, 8, 2 * 3 * 32 * 32, 0, 16, 4)
    model = WorldActionModel(ModelConfig(d_model=32, n_layers=1, n_heads=4, visual_stem="conv", visual_cameras=2), spec)
    Policy(model, PolicySettings(visual="pixels", text="zeros")).save(tmp_path / "p")
    policy = Policy.load(tmp_path / "p")
    assert policy.model.cfg.visual_cameras == 2
    rng = np.random.default_rng(2)
    front, wrist = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    got = policy._encode_visual({"wrist": wrist, "front": front})
    np.testing.assert_allclose(got, np.concatenate([_small(front), _small(wrist)]), atol=1.01 / 127.5)
    obs = {"state": np.zeros(8, np.float32), "images": {"front": front, "wrist": wrist}, "task": "pick"}
    policy.reset()
    assert policy.select_action(obs).shape == (8,)
    with pytest.raises(PolicyError, match=r"takes 2 camera image\(s\).*gives 1 image.*`cameras` setting"):
        policy._encode_visual({"front": front})
    one = Policy(WorldActionModel(ModelConfig(d_model=32, n_layers=1, n_heads=4, visual_stem="conv"),
                                  ModelSpec("chunk", 8, 8, 3 * 32 * 32, 0, 16, 4)),
                 PolicySettings(visual="pixels", text="zeros"))
    with pytest.raises(PolicyError, match=r"takes 1 camera image\(s\).*gives 2 image"):  # no silent average
        one._encode_visual({"front": front, "wrist": wrist})
    one.settings.cameras = ["front"]
    np.testing.assert_allclose(one._encode_visual({"front": front, "wrist": wrist}), _small(front), atol=1.01 / 127.5)


def test_views_are_checked_by_name_and_reach_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from carve.cli.main import build_parser, main
    from carve.sim.eval_sim import _study_config
    from carve.sim.study import StudyConfig
    from carve.trainer.config import TrainConfig

    with pytest.raises(ValueError, match=r"unknown views 'top'; use one of front, front\+wrist"):
        StudyConfig(views="top")
    with pytest.raises(ValueError, match=r"views 'front\+wrist' renders cameras: it needs observation 'pixels'"):
        StudyConfig(views="front+wrist", observation="privileged")
    with pytest.raises(ValueError, match=r"views 'front\+wrist' is the one arm's wrist camera; bimanual_pick_place "
                                         r"has two arms"):
        StudyConfig(views="front+wrist", tasks=["push", "bimanual_pick_place"])
    assert StudyConfig(tasks=["bimanual_pick_place"]).views == "front"
    with pytest.raises(ValueError, match=r"model\.visual_cameras: 2 camera images need model\.visual_stem 'conv'"):
        TrainConfig.from_dict({"model": {"visual_cameras": 2}})
    args = build_parser().parse_args(["eval-sim", "--study", "--views", "front+wrist"])
    assert _study_config(args).views == "front+wrist"
    assert main(["eval-sim", "--study", "--views", "front+wrist", "--observation", "privileged",
                 "--out", str(tmp_path / "s.md")]) == 2
    assert "needs observation 'pixels'" in capsys.readouterr().out
    assert not (tmp_path / "s.md").exists()
