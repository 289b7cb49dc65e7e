"""The teleoperation-noise model of the simulator (`run_episode(..., operator_noise=...)`,
`carve synth --noise`): level 0 is the clean operator bit for bit, a noisy operator changes
the trajectories but not the scene or the plan, and the ground truth stays exact."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from carve.cli.main import main as carve_main
from carve.core.config import SegmentConfig
from carve.ingest.eval_segments import evaluate
from carve.ingest.segment import segment_episode
from carve.sim.scene import STATE_NAMES
from carve.sim.synth import GROUND_TRUTH_FILE, synthesize
from carve.sim.tasks import TASK_TYPES, OperatorNoise, SimEpisode, run_episode
from test_sim_tasks import EXPECTED


def _same(a: SimEpisode, b: SimEpisode) -> bool:
    return (a.task == b.task and np.array_equal(a.state, b.state) and np.array_equal(a.action, b.action)
            and a.ground_truth(0) == b.ground_truth(0))


@pytest.fixture(scope="module")
def clean() -> dict[str, SimEpisode]:
    return {tt: run_episode(tt, seed=7, fps=10, size=16, render=False) for tt in TASK_TYPES}


@pytest.fixture(scope="module")
def noisy() -> dict[str, SimEpisode]:
    return {tt: run_episode(tt, seed=7, fps=10, size=16, render=False, operator_noise=1.0) for tt in TASK_TYPES}


def test_noise_zero_is_the_clean_operator(clean: dict[str, SimEpisode]) -> None:
    for tt in ("pick_place", "push"):
        assert _same(run_episode(tt, seed=7, fps=10, size=16, render=False, operator_noise=0.0), clean[tt])
    # rendered frames too
    a = run_episode("push", seed=3, fps=10, size=16)
    b = run_episode("push", seed=3, fps=10, size=16, operator_noise=0.0)
    assert _same(a, b) and np.array_equal(a.frames, b.frames)


def test_noise_changes_execution_not_the_plan(clean: dict[str, SimEpisode], noisy: dict[str, SimEpisode]) -> None:
    for tt in TASK_TYPES:
        c, n = clean[tt], noisy[tt]
        assert n.task == c.task  # same scene and instruction: the noise has its own random stream
        assert [p.name for p in n.phases] == [p.name for p in c.phases]
        assert n.length != c.length or not np.allclose(n.state, c.state)
    # the same seed and level reproduce the episode; another level gives another execution
    again = run_episode("push", seed=7, fps=10, size=16, render=False, operator_noise=1.0)
    assert _same(again, noisy["push"])
    half = run_episode("push", seed=7, fps=10, size=16, render=False, operator_noise=0.5)
    assert not _same(half, noisy["push"]) and half.task == noisy["push"].task


def test_noise_makes_the_hand_drift_while_holding(clean: dict[str, SimEpisode], noisy: dict[str, SimEpisode]) -> None:
    def held_motion(ep: SimEpisode) -> float:
        """Mean joint change per frame over the gripper phases (the arm is meant to hold still)."""
        steps = [np.abs(np.diff(ep.state[p.start : p.end, :7], axis=0)).sum(axis=1).mean()
                 for p in ep.phases if p.name in ("grasp", "release")]
        return float(np.mean(steps))

    assert held_motion(noisy["pick_place"]) > 2 * held_motion(clean["pick_place"])


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_noisy_ground_truth_is_consistent(noisy: dict[str, SimEpisode], task_type: str) -> None:
    ep = noisy[task_type]
    gt = ep.ground_truth(0)
    phases = gt["phases"]
    assert [p["name"] for p in phases] == EXPECTED[task_type]
    assert phases[0]["start"] == 0 and phases[-1]["end"] == gt["length"] == ep.length
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(phases))
    assert all(p["end"] > p["start"] for p in phases)
    assert gt["boundaries"] == [p["start"] for p in phases[1:]]
    assert all(a < b for a, b in itertools.pairwise(gt["boundaries"]))
    assert np.isfinite(ep.state).all() and np.isfinite(ep.action).all()
    # the recorded state still follows the commands (the noise is in what is commanded)
    assert np.abs(ep.action[:-1, :7] - ep.state[1:, :7]).max() < 1e-4
    grip = ep.state[:, 7]
    cmd = ep.action[:, 7]
    if task_type == "push":
        assert np.ptp(grip) < 1e-6 and (cmd == 1.0).all()
        return
    for p in ep.phases:
        seg = grip[p.start : p.end]
        if p.name == "grasp":
            assert seg[-1] < seg[0] - 0.01 and (cmd[p.start : p.end] == 1.0).all()
        elif p.name in ("lift", "move", "place"):
            assert seg.max() < 0.079 and (cmd[p.start : p.end] == 1.0).all()
        elif p.name == "release":
            assert seg[-1] > seg[0] + 0.01 and (cmd[p.start : p.end] == 0.0).all()
        elif p.name == "reach":
            assert seg.min() > 0.079  # open until the grasp starts


def test_progress_profiles_hesitate_but_never_stop() -> None:
    noise = OperatorNoise(1.0, seed=5, fps=12)
    lengths, hesitant = [], 0
    for _ in range(200):
        u = np.asarray(noise.progress(12))
        du = np.diff(np.concatenate([[0.0], u]))
        assert u[-1] == 1.0 and (du > 0).all()
        # a hesitation slows the hand down, but every frame still makes progress
        assert du.min() > 0.05 * du.max()
        lengths.append(len(u))
        mid = du[len(du) // 4 : 3 * len(du) // 4]
        hesitant += int(mid.min() < 0.6 * np.median(du))
    assert min(lengths) >= 7 and max(lengths) <= 25 and len(set(lengths)) > 3  # speed varies per motion
    assert 0 < hesitant < 200  # occasional, not always
    assert all(noise.dwell(3) >= 2 for _ in range(50))
    assert len({noise.dwell(4) for _ in range(50)}) > 2
    with pytest.raises(ValueError, match="operator noise"):
        OperatorNoise(1.5, seed=0, fps=12)


def test_segmentation_still_finds_the_phases_on_noisy_episodes(noisy: dict[str, SimEpisode]) -> None:
    gt = {"episodes": [ep.ground_truth(i) for i, ep in enumerate(noisy.values())]}
    pred = {i: [s.start for s in segment_episode(ep.state, ep.action, 10, SegmentConfig(), STATE_NAMES, None)[1:]]
            for i, ep in enumerate(noisy.values())}
    rep = evaluate(gt, pred, tol=2)
    assert rep["overall"]["boundary_f1"] >= 0.8


def test_synth_records_the_noise_level_and_validates_it(tmp_path: Path) -> None:
    out = tmp_path / "noisy"
    rc = carve_main(["synth", "--out", str(out), "--episodes", "2", "--workers", "1", "--seed", "1", "--fps", "10",
                     "--size", "16", "--tasks", "push", "--noise", "0.5", "-q"])
    assert rc == 0
    gt = json.loads((out / GROUND_TRUTH_FILE).read_text())
    assert gt["generator"]["operator_noise"] == 0.5
    for e in gt["episodes"]:
        assert e["phases"][0]["start"] == 0 and e["phases"][-1]["end"] == e["length"]
        assert e["boundaries"] == [p["start"] for p in e["phases"][1:]]
    assert carve_main(["synth", "--out", str(tmp_path / "bad"), "--episodes", "1", "--workers", "1", "--size", "16",
                       "--noise", "1.5", "-q"]) == 2
    with pytest.raises(ValueError, match="noise"):
        synthesize(str(tmp_path / "x"), 1, 1, 0, 10, 16, "h264", None, operator_noise=-0.1)
    with pytest.raises(ValueError, match="operator_noise"):
        run_episode("push", seed=0, operator_noise=2.0)
