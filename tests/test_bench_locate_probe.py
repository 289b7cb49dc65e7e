"""`bench.locate_probe` can only say "the stem cannot find the object" if it finds an object when one is
there to find. On synthetic frames whose target is where a bright square sits (known without the code),
the probe lands well inside the spread of positions; with the targets shuffled against the frames it
does no better than guessing the mean. The scene reader's target is the object the simulator says the task
moves first, and its input is the study's own pixel recording of that frame."""

from __future__ import annotations

import numpy as np


def _spots(n: int, rng: np.random.Generator, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1, -0.6, (n, 3, side, side)).astype(np.float32)
    pos = rng.integers(1, side - 3, (n, 2))
    for img, (r, c) in zip(x, pos, strict=True):
        img[:, r : r + 2, c : c + 2] = 1.0
    return x.reshape(n, -1), (pos[:, ::-1] / side).astype(np.float32)  # (x, y) of the square, in [0, 1]


def test_the_probe_finds_a_square_that_is_there_and_nothing_when_the_targets_are_shuffled() -> None:
    from bench.locate_probe import fit_probe, median_cm

    rng = np.random.default_rng(0)
    x, y = _spots(300, rng)
    xt, yt = _spots(100, rng)
    guess = median_cm(np.broadcast_to(y.mean(0), yt.shape), yt)
    found = median_cm(fit_probe(x, y, side=16, steps=600)(xt), yt)
    shuffled = median_cm(fit_probe(x, y[rng.permutation(len(y))], side=16, steps=600)(xt), yt)
    assert found < 0.3 * guess  # positions spread over the frame: the square is found
    assert shuffled > 0.8 * guess  # no relation to learn: no better than the mean


def test_the_probe_reports_a_row_per_size_as_it_goes_and_splits_by_other_objects() -> None:
    from bench.locate_probe import median_cm, probe

    rng = np.random.default_rng(1)
    x, y = _spots(200, rng)
    xt, yt = _spots(60, rng)
    others = np.arange(60) % 3  # 0, 1 or 2 other objects
    seen: list[dict] = []
    rows = probe({"x": x, "y": y}, {"x": xt, "y": yt, "others": others}, (50, 200), side=16, cameras=1, shift=0,
                 steps=400, report=seen.append)
    assert [r["n"] for r in rows] == [50, 200] and seen == rows
    big = rows[1]
    assert big["held_out_cm"] < 0.5 * big["mean_guess_cm"]
    assert big["mean_guess_cm"] == median_cm(np.broadcast_to(y.mean(0), yt.shape), yt)  # all 200, not 50
    assert rows[0]["mean_guess_cm"] == median_cm(np.broadcast_to(y[:50].mean(0), yt.shape), yt)
    assert min(big["alone_cm"], big["with_others_cm"]) <= big["held_out_cm"] <= max(big["alone_cm"],
                                                                                   big["with_others_cm"])


def test_a_scene_is_the_study_recordings_first_frame_and_the_object_the_expert_grasps_first() -> None:
    """The input is `record_episode`'s first visual row; the target is the object nearest the hand when the
    scripted expert first closes the gripper (found here by replaying its actions, not through `env.goals`)."""
    from bench.locate_probe import scenes
    from carve.sim.env import SimEnv
    from carve.sim.study import record_episode
    from carve.sim.synth import episode_seed
    from carve.sim.tasks import run_episode

    got = scenes("pick_place", 0, 3, views="front+wrist")
    assert got["x"].shape == (3, 2 * 3 * 32 * 32) and got["y"].shape == (3, 2)
    assert got["others"].max() > 0  # a scene with another object: the target is not the only candidate
    for i in range(3):
        seed = episode_seed(0, i)
        np.testing.assert_array_equal(got["x"][i], record_episode("pick_place", seed, 12, "pixels",
                                                                  views="front+wrist")["visual"][0])
        ep = run_episode("pick_place", seed, fps=12, render=False)
        with SimEnv(fps=12, render=False) as env:
            env.reset("pick_place", seed)
            scene = env.scene
            assert scene is not None
            for a in ep.action:
                if a[7] > 0.5:  # the first close command
                    hand = scene.ee_position(scene.arms[0])
                    at = {o.name: scene.object_position(o) for o in scene.objects}
                    break
                env.step(a)
        nearest = min(at, key=lambda k: float(np.linalg.norm(at[k] - hand)))
        assert np.linalg.norm(at[nearest][:2] - got["y"][i]) < 0.01
        assert got["others"][i] == len(at) - 1
