"""The teleoperation-noise model of the simulator (`run_episode(..., operator_noise=...)`,
`carve synth --noise`): a seed is reproducible at every level, a noisy operator changes the
execution but not the scene or the plan, the ground truth stays consistent, and each
imperfection (tremor, speed, hesitations, gripper-sensor noise) is there and scales."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from test_sim_tasks import EXPECTED

from carve.cli.main import main as carve_main
from carve.sim.operator import _GRID, OperatorNoise, min_jerk
from carve.sim.synth import GROUND_TRUTH_FILE, synthesize
from carve.sim.tasks import TASK_TYPES, SimEpisode, run_episode


def _same(a: SimEpisode, b: SimEpisode) -> bool:
    return (a.task == b.task and np.array_equal(a.state, b.state) and np.array_equal(a.action, b.action)
            and a.ground_truth(0) == b.ground_truth(0))


@pytest.fixture(scope="module")
def clean() -> dict[str, SimEpisode]:
    return {tt: run_episode(tt, seed=7, fps=10, size=16, render=False) for tt in TASK_TYPES}


@pytest.fixture(scope="module")
def noisy() -> dict[str, SimEpisode]:
    return {tt: run_episode(tt, seed=7, fps=10, size=16, render=False, operator_noise=1.0) for tt in TASK_TYPES}


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


def test_tremor_moves_the_hand_while_holding(clean: dict[str, SimEpisode], noisy: dict[str, SimEpisode]) -> None:
    def held_motion(ep: SimEpisode) -> float:
        """Mean commanded hand motion per frame over the gripper phases (meant to hold still)."""
        assert ep.ee_cmd is not None
        steps = [np.linalg.norm(np.diff(ep.ee_cmd[p.start : p.end, 0], axis=0), axis=-1).mean()
                 for p in ep.phases if p.name in ("grasp", "release")]
        return float(np.mean(steps))

    assert held_motion(clean["pick_place"]) < 1e-6  # the clean operator holds perfectly still
    assert held_motion(noisy["pick_place"]) > 2e-4  # tremor: a fraction of a mm per frame
    assert noisy["pick_place"].ee_cmd is not None and clean["pick_place"].ee_cmd is not None


def test_gripper_sensor_noise(clean: dict[str, SimEpisode], noisy: dict[str, SimEpisode]) -> None:
    def open_std(ep: SimEpisode) -> float:
        reach = next(p for p in ep.phases if p.name == "reach")
        return float(np.std(ep.state[reach.start : reach.end, 7]))

    assert open_std(clean["pick_place"]) < 1e-4
    assert 0.0002 < open_std(noisy["pick_place"]) < 0.001  # N(0, 0.5 mm) at level 1


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
    assert np.isfinite(ep.state).all() and np.isfinite(ep.action).all()
    assert np.abs(ep.action[:, :7] - ep.state[:, :7]).max() < 0.05  # the servos still track
    grip, cmd, held = ep.state[:, 7], ep.action[:, 7], ep.held[:, 0]
    if task_type == "push":
        assert (cmd == 1.0).all() and not held.any()
        return
    for p in ep.phases:
        seg = grip[p.start : p.end]
        if p.name == "grasp":
            assert seg[-1] < seg[0] - 0.01 and (cmd[p.start : p.end] == 1.0).all()
        elif p.name in ("lift", "move", "place"):
            assert held[p.start : p.end].all() and (cmd[p.start : p.end] == 1.0).all()
        elif p.name == "release":
            assert seg[-1] > seg[0] + 0.01 and (cmd[p.start : p.end] == 0.0).all()
        elif p.name == "reach":
            assert seg.min() > 0.077  # open (up to sensor noise) until the grasp starts


def test_speed_profiles_vary_and_hesitate_but_never_stop() -> None:
    assert OperatorNoise(0.0, seed=1).episode_speed == 1.0
    speeds = {round(OperatorNoise(1.0, seed=s).episode_speed, 6) for s in range(20)}
    assert len(speeds) > 10 and min(speeds) >= 0.8 and max(speeds) <= 1.25  # per-episode speed
    noise = OperatorNoise(1.0, seed=5)
    hesitant, durations = 0, set()
    for _ in range(200):
        warp, dur = noise.warp(1.2)
        assert warp is not None
        durations.add(round(dur, 6))
        s = np.asarray(min_jerk(warp))
        assert s[0] == 0.0 and s[-1] == 1.0
        du = np.diff(warp)
        assert (du > 0).all()
        assert du.min() > 0.05 * du.max()  # a hesitation slows the hand down, never to a stop
        mid = du[len(du) // 4 : 3 * len(du) // 4]
        hesitant += int(mid.min() < 0.6 * np.median(du))
    assert 0 < hesitant < 200 and len(durations) > 1  # occasional, and a hesitation costs time
    assert noise.warp(1.2)[0] is not None and OperatorNoise(0.0, seed=5).warp(1.2) == (None, 1.2)
    assert len(_GRID) == len(noise.warp(1.0)[0])
    assert all(noise.hold(0.3) >= 0.15 for _ in range(50))
    with pytest.raises(ValueError, match="operator noise"):
        OperatorNoise(1.5, seed=0)


def test_tremor_is_band_limited_and_a_few_mm() -> None:
    tremor = OperatorNoise(1.0, seed=3).tremor(20.0)
    x = tremor.samples
    assert np.allclose(x[0], 0.0)  # registered at the start: builds up from zero
    rms = x[100:].std(axis=0)
    assert 0.0015 < rms[0] < 0.004 and 0.0015 < rms[1] < 0.004 and rms[2] < rms[0]
    spec = np.abs(np.fft.rfft(x[100:, 0])) ** 2
    freqs = np.fft.rfftfreq(len(x) - 100, 1.0 / tremor.hz)
    assert spec[freqs > 5.0].sum() < 0.01 * spec.sum()  # nothing above a few Hz
    assert np.allclose(OperatorNoise(0.0, seed=3).tremor(5.0)(2.0), 0.0)


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
