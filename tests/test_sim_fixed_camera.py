"""`SimEnv(camera_jitter=False)`: every scene's fixed camera at `CameraPose.nominal`, and nothing else about the
scene changes (the same objects where they were, the same frames' content apart from the view)."""

from __future__ import annotations

import numpy as np

from carve.sim.env import SimEnv
from carve.sim.scene import CameraPose


def _scene(seed: int, jitter: bool) -> tuple[CameraPose, dict, np.ndarray]:
    with SimEnv(fps=12, render=True, size=32, privileged=True, camera_jitter=jitter) as env:
        ob = env.reset("pick_place", seed)
        assert env.scene is not None
        return env.scene.fixed_cameras["front"], ob["privileged"], ob["images"]["front"]


def test_a_fixed_camera_is_the_nominal_pose_in_every_scene_and_leaves_the_scene_alone() -> None:
    nominal = CameraPose.nominal("front")
    assert nominal == CameraPose((0.5, 0.0, 0.06), 0.9, 90.0, -42.5, 56.0)
    poses = []
    for seed in (3, 4):
        fixed, priv_fixed, img_fixed = _scene(seed, False)
        drawn, priv_drawn, img_drawn = _scene(seed, True)
        assert fixed == nominal and drawn != nominal
        poses.append(drawn)
        # the scene's rng stream is the same: objects and goal where they were
        np.testing.assert_array_equal(priv_fixed["object_state"], priv_drawn["object_state"])
        assert not np.array_equal(img_fixed, img_drawn)  # only the view changed
    assert poses[0] != poses[1]  # the default still draws a pose per scene


def test_the_study_takes_random_or_fixed_cameras_only() -> None:
    import pytest

    from carve.sim.study import StudyConfig

    assert StudyConfig(camera="fixed").camera == "fixed"
    with pytest.raises(ValueError, match="unknown camera 'moving'; use one of random, fixed"):
        StudyConfig(camera="moving")
