"""The closed-loop study on rendered observations (issue 20, item 4): what a pixel policy is trained on
is what it sees when it acts, the conv stem that reads it, and which task types enter the pooled
contrasts.

The recorded visual input of a step is checked against the image the simulator renders at that step,
block-averaged here with numpy (not through the study's or the policy's encoder code), and the rows'
`obs_visual` must tile the episode exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_pixel_recording_is_the_rendered_frame_at_32_px_at_every_step() -> None:
    from carve.sim.env import MAX_SECONDS, SimEnv
    from carve.sim.study import episode_rows, record_episode

    rec = record_episode("push", 4242, 12, "pixels", 64)
    n = len(rec["action"])
    assert rec["visual"].shape == (n, 3 * 32 * 32) and n > 10
    with SimEnv(fps=12, render=True, size=64, max_seconds=max(MAX_SECONDS["push"], n / 12 + 1.0)) as env:
        obs = env.reset("push", 4242)
        for t, a in enumerate(rec["action"]):
            if t in (0, n // 2, n - 1):
                (front,) = obs["images"].values()  # the one camera of a one-arm dwell scene
                small = front.astype(np.float64).reshape(32, 2, 32, 2, 3).mean((1, 3))  # 64 px -> 32 px
                want = (small.transpose(2, 0, 1).reshape(-1) / 127.5 - 1.0).astype(np.float32)
                np.testing.assert_allclose(rec["visual"][t], want, atol=1.01 / 127.5)  # PIL works in uint8: one level
            obs, _, done, _ = env.step(a)
            if done:
                break
    rows = episode_rows(rec, 0, 12)
    assert all(r["obs_stride"] == 1 and len(r["obs_visual"]) == len(r["action"]) for r in rows)
    np.testing.assert_array_equal(np.concatenate([np.asarray(r["obs_visual"], np.float32) for r in rows]), rec["visual"])
    assert record_episode("push", 4242, 12)["visual"] is None  # the privileged recording renders nothing


def test_a_task_enters_the_pooled_contrasts_only_above_the_bar_for_its_best_mode() -> None:
    from carve.sim.study import TASK_INCLUSION, included_tasks

    def cell(x: float) -> dict[str, float]:
        return {"success_rate": x}

    per_task = {"event": {"a": cell(0.50), "b": cell(0.0), "c": cell(TASK_INCLUSION), "d": cell(0.0)},
                "chunk_best": {"a": cell(0.10), "b": cell(0.25), "c": cell(0.05), "d": cell(0.0)},
                "hold": {"a": cell(0.0), "b": cell(0.0), "c": cell(0.0), "d": cell(0.9)}}  # not a mode: ignored
    assert included_tasks(per_task, ["a", "b", "c", "d"]) == ["a", "b"]  # c sits at the bar: not above it
    assert included_tasks({"event": {"x": cell(0.0)}}, ["x"]) == ["x"]  # none above: all kept (and reported)


def test_the_conv_stem_locates_a_bright_spot_and_the_world_head_predicts_the_pooled_frame() -> None:
    """The spatial softmax's keypoints follow where the image's content is, and the world target is the
    end frame average-pooled to 8 x 8 (computed here with numpy)."""
    import torch

    from carve.trainer.config import ModelConfig
    from carve.trainer.model import ConvStem, ModelSpec, WorldActionModel

    stem = ConvStem(32, 16)
    with torch.no_grad():  # one channel that copies the red plane: its keypoint is the red spot's centre
        for conv in stem.convs[::2]:
            conv.weight.zero_()
            conv.bias.zero_()
        stem.convs[0].weight[0, 0, 2, 2] = 1.0
        stem.convs[2].weight[0, 0, 1, 1] = 1.0
        stem.convs[4].weight[0, 0, 1, 1] = 50.0
    keypoints = []
    for row, col in ((4, 4), (4, 27), (27, 12)):
        img = -np.ones((3, 32, 32), np.float32)
        img[0, row - 1 : row + 3, col - 1 : col + 3] = 1.0
        f = stem.convs(torch.from_numpy(img)[None])
        keypoints.append((torch.softmax(f.flatten(2), -1) @ stem.grid)[0, 0].tolist())
    (x0, y0), (x1, y1), (x2, y2) = keypoints
    assert x1 > x0 + 0.5 and abs(y1 - y0) < 0.2 and y2 > y0 + 0.5 and x0 < x2 < x1  # x right, y down

    spec = ModelSpec("event", 8, 8, 3 * 32 * 32, 16, 16, 8)
    model = WorldActionModel(ModelConfig(d_model=32, n_layers=1, n_heads=4, visual_stem="conv"), spec)
    frame = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    want = frame.reshape(2, 3, 8, 4, 8, 4).mean((3, 5)).reshape(2, -1)
    np.testing.assert_allclose(model.world_target(torch.from_numpy(frame.reshape(2, -1))).numpy(), want, atol=1e-6)
    batch = {"visual": torch.from_numpy(frame.reshape(2, -1)), "state": torch.zeros(2, 8), "text": torch.zeros(2, 16)}
    out = model(batch)
    assert out["end_visual"].shape == (2, 3 * 8 * 8) and out["actions"].shape == (2, 8, 8)


def test_an_unknown_observation_kind_is_refused_by_name() -> None:
    import pytest

    from carve.sim.study import StudyConfig, record_episode

    with pytest.raises(ValueError, match="unknown observation 'depth'; use one of pixels, privileged"):
        StudyConfig(observation="depth")
    with pytest.raises(ValueError, match="unknown observation 'depth'"):
        record_episode("push", 1, 12, "depth")


def test_a_training_shift_moves_each_image_by_whole_pixels_within_the_pad_and_eval_never_shifts() -> None:
    """`random_shift` against numpy: every output image is its input moved by one (dy, dx) in [-pad, pad]
    with the edges replicated (np.pad 'edge'), and the offsets differ between images; the stem in eval mode
    reads the image as given."""
    import torch

    from carve.trainer.model import ConvStem, random_shift

    pad = 2
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (64, 3, 12, 12)).astype(np.float32)
    torch.manual_seed(0)
    out = random_shift(torch.from_numpy(x), pad).numpy()
    offsets = set()
    for img, got in zip(x, out, strict=True):
        padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if np.array_equal(padded[:, dy : dy + 12, dx : dx + 12], got)]
        assert len(hits) == 1  # exactly one whole-pixel offset explains the image
        offsets.add(hits[0])
    assert len(offsets) > 10  # per image, not one offset for the batch (25 possible)

    stem = ConvStem(12, 8, shift=pad)
    flat = torch.from_numpy(x[:4].reshape(4, -1))
    stem.eval()
    with torch.no_grad():
        a, b = stem(flat), stem(flat)
    torch.testing.assert_close(a, b)  # eval: no randomness
    stem.train()
    with torch.no_grad():
        c = stem(flat)
    assert not torch.allclose(a, c)  # training: shifted


def test_a_shift_without_rendered_images_is_refused_by_name_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The study, the trainer's config and the command line each refuse a shift that would have nothing to
    shift (or a negative one), and the command writes nothing."""
    from carve.cli.main import main
    from carve.sim.study import StudyConfig
    from carve.trainer.config import TrainConfig, TrainConfigError

    with pytest.raises(ValueError, match="visual_shift 2 shifts rendered images: it needs observation 'pixels', "
                                         "not 'privileged'"):
        StudyConfig(observation="privileged", visual_shift=2)
    with pytest.raises(ValueError, match="visual_shift must be 0 or more pixels, got -1"):
        StudyConfig(visual_shift=-1)
    with pytest.raises(TrainConfigError, match=r"model\.visual_shift: shifts the images of model\.visual_stem 'conv', "
                                               r"got 2 with 'linear'"):
        TrainConfig.from_dict({"model": {"visual_shift": 2}})
    assert TrainConfig.from_dict({"model": {"visual_shift": 2, "visual_stem": "conv"}}).model.visual_shift == 2
    out = tmp_path / "study" / "study.md"
    assert main(["eval-sim", "--study", "--observation", "privileged", "--visual-shift", "2", "--out", str(out)]) == 2
    assert "carve eval-sim: error: visual_shift 2 shifts rendered images" in capsys.readouterr().out
    assert not out.parent.exists()
