"""`carve synth` beyond the historical configuration, read back through Carve's own readers
(`carve.ingest.sources.open_source` / `load_episode`): a two-arm dataset with ALOHA-style
`left_*` / `right_*` names and overlapping activity, and a dataset with two cameras whose
videos both decode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carve.ingest.eval_segments import evaluate
from carve.ingest.sources import load_episode, open_source
from carve.sim.synth import GROUND_TRUTH_FILE, synthesize
from carve.sim.tasks import SimEpisode, run_episode

PICK = ["reach", "grasp", "lift", "move", "place", "release", "retreat"]


@pytest.fixture(scope="module")
def two_arms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bimanual"
    return synthesize(str(out), episodes=2, workers=1, seed=5, fps=10, size=32, style="blended", arms=2,
                      cameras=2, operator_noise=0.5, progress=False)


@pytest.fixture(scope="module")
def two_cams(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cams"
    return synthesize(str(out), episodes=2, workers=1, seed=1, fps=15, size=32, tasks=["push"], style="blended",
                      cameras=2, progress=False)


def test_two_arm_dataset_has_left_and_right_gripper_columns(two_arms: Path) -> None:
    src = open_source(str(two_arms))
    refs = src.list_episodes()
    assert len(refs) == 2
    ep = load_episode(refs[0])
    for names in (ep.state_names, ep.action_names):
        assert "left_gripper" in names and "right_gripper" in names
        assert len(names) == 16 and all(n.startswith(("left_", "right_")) for n in names)
    assert ep.state.shape[1] == ep.action.shape[1] == 16
    gl, gr = ep.state_names.index("left_gripper"), ep.state_names.index("right_gripper")
    # each gripper closes (on its object) and opens again in the measured state and in the action
    for sig in (ep.state, ep.action):
        for g in (gl, gr):
            assert sig[:, g].max() > 0.07 and sig[:, g].min() < 0.06
    info = json.loads((two_arms / "meta/info.json").read_text())
    assert info["robot_type"] == "bimanual_panda"


def test_two_arm_ground_truth_has_both_arms_and_their_union(two_arms: Path) -> None:
    gt = json.loads((two_arms / GROUND_TRUTH_FILE).read_text())
    assert gt["generator"]["arms"] == 2 and gt["generator"]["style"] == "blended"
    for e in gt["episodes"]:
        assert e["arms"] == ["left", "right"] and e["task_type"] == "bimanual_pick_place"
        assert e["style"] == "blended" and e["fps"] == 10 and len(e["cameras"]) == 2
        by_arm = {a: [p for p in e["phases"] if p["arm"] == a] for a in e["arms"]}
        for arm, phases in by_arm.items():
            assert [p["name"] for p in phases] == PICK, arm
            assert all(p["end"] > p["start"] for p in phases)
            assert phases[-1]["end"] == e["length"]
            assert e["arm_boundaries"][arm] == [p["start"] for p in phases if p["start"] > 0]
        assert by_arm["left"][0]["start"] == 0 and by_arm["right"][0]["start"] > 0
        union = sorted({b for bs in e["arm_boundaries"].values() for b in bs})
        assert e["boundaries"] == union
        # the right arm starts before the left one is done: their activity overlaps in time
        left_retreat = by_arm["left"][-1]
        assert by_arm["right"][0]["start_s"] < left_retreat["start_s"] + 0.6
        assert by_arm["right"][0]["start"] > by_arm["left"][4]["start"]  # ... after the left one placed
    # the schema the evaluators read still works on the union (a perfect prediction scores 1)
    rep = evaluate(gt, {e["episode_index"]: e["boundaries"] for e in gt["episodes"]}, tol=0)
    assert rep["overall"]["boundary_f1"] == 1.0


@pytest.fixture(scope="module")
def bimanual() -> SimEpisode:
    return run_episode("bimanual_pick_place", seed=3, fps=20, size=16, render=False, style="dwell", arms=2,
                       cameras=2, operator_noise=0.3)


def test_both_arms_move_at_the_same_time_and_each_carries_its_object(bimanual: SimEpisode) -> None:
    ep = bimanual
    assert ep.ee_meas is not None and ep.held is not None
    speed = np.linalg.norm(np.diff(ep.ee_meas, axis=0), axis=-1) * ep.fps  # (T-1, 2)
    both = (speed[:, 0] > 0.05) & (speed[:, 1] > 0.05)
    assert both.sum() >= 3  # frames where both hands travel
    left, right = ep.arm_phases("left"), ep.arm_phases("right")
    assert right[0].start < max(p.end for p in left if p.name == "release") + ep.fps  # overlapping activity
    for k, (name, track) in enumerate(ep.objects.items()):
        held = ep.held[:, k]
        assert held.any(), name
        assert np.linalg.norm(track[-1, :2] - track[0, :2]) > 0.15  # moved into the tray
    assert not (ep.held[:, 0] & ep.held[:, 1]).all()


def test_two_camera_dataset_has_two_video_features_that_decode(two_cams: Path) -> None:
    info = json.loads((two_cams / "meta/info.json").read_text())
    videos = sorted(k for k, f in info["features"].items() if f["dtype"] == "video")
    assert videos == ["observation.images.front", "observation.images.wrist"]
    gt = json.loads((two_cams / GROUND_TRUTH_FILE).read_text())
    assert gt["generator"]["cameras"] == ["observation.images.front", "observation.images.wrist"]
    src = open_source(str(two_cams))
    for ref in src.list_episodes():
        ep = load_episode(ref)
        assert sorted(ep.cameras) == videos and ep.fps == 15.0
        views = {cam: ep.frames(cam) for cam in videos}
        for cam, fr in views.items():
            assert fr.shape == (ep.length, 32, 32, 3) and fr.dtype == np.uint8, cam
            assert fr.std() > 5 and not np.array_equal(fr[0], fr[-1]), cam
        assert np.abs(views[videos[0]].astype(int) - views[videos[1]].astype(int)).mean() > 10  # two views
        last = ep.frames(videos[1], [ep.length - 1])
        assert last.shape == (1, 32, 32, 3)
    # the camera can be chosen by name when opening the source
    one = load_episode(open_source(str(two_cams), camera="observation.images.wrist").list_episodes()[0])
    assert one.frames("observation.images.wrist", [0]).shape == (1, 32, 32, 3)
