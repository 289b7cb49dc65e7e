"""`carve synth` in its historical configuration (dwell, one arm, one camera): the LeRobot
v3.0 dataset it writes agrees with its ground-truth file, the result does not depend on the
number of workers, the defaults are that configuration, and `carve eval-segments` reads it.
(How well the segmenter scores on it is measured by `make quality`, not asserted here.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from carve.cli.main import main as carve_main
from carve.sim.synth import GROUND_TRUTH_FILE, synthesize


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "sim"
    return synthesize(str(out), episodes=4, workers=1, seed=3, fps=10, size=32, codec="h264", tasks=None,
                      progress=False)


def test_dataset_matches_ground_truth(dataset: Path) -> None:
    gt = json.loads((dataset / GROUND_TRUTH_FILE).read_text())
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and gt["fps"] == 10
    assert gt["dataset"] == "sim"
    assert info["total_episodes"] == len(gt["episodes"]) == 4
    assert [e["task_type"] for e in gt["episodes"]] == ["pick_place", "stack", "push", "two_object"]
    assert any("gripper" in n for n in info["features"]["observation.state"]["names"])
    assert info["features"]["observation.images.front"]["shape"][:2] == [32, 32]
    assert [k for k, f in info["features"].items() if f["dtype"] == "video"] == ["observation.images.front"]
    assert gt["generator"]["style"] == "dwell" and gt["generator"]["arms"] == 1
    assert gt["generator"]["cameras"] == ["observation.images.front"]
    eps = pq.read_table(next((dataset / "meta/episodes").rglob("*.parquet"))).to_pylist()
    for row, e in zip(sorted(eps, key=lambda r: r["episode_index"]), gt["episodes"], strict=True):
        assert row["episode_index"] == e["episode_index"]
        assert row["tasks"] == [e["task"]]
        assert row["length"] == e["length"]
        phases = e["phases"]
        assert phases[0]["start"] == 0 and phases[-1]["end"] == e["length"]
        assert e["boundaries"] == [p["start"] for p in phases[1:]]
        assert (e["fps"], e["style"], e["arms"], e["cameras"]) == (10, "dwell", ["arm"], ["observation.images.front"])
    data = pq.read_table(dataset / "data/chunk-000/file-000.parquet")
    assert data.num_rows == sum(e["length"] for e in gt["episodes"])
    tasks = pq.read_table(dataset / "meta/tasks.parquet").to_pandas()
    assert set(tasks.index) == {e["task"] for e in gt["episodes"]}


def test_every_dwell_boundary_follows_a_hold(dataset: Path) -> None:
    """The dwell operator stops before every phase change: the measured joints are still in
    the frame before each ground-truth boundary and move somewhere inside every motion phase.
    (A property of the simulated data, not of any segmenter.)"""
    gt = json.loads((dataset / GROUND_TRUTH_FILE).read_text())
    data = pq.read_table(dataset / "data/chunk-000/file-000.parquet").to_pydict()
    ep_idx = np.asarray(data["episode_index"])
    state_all = np.asarray(data["observation.state"], dtype=np.float32)
    for e in gt["episodes"]:
        q = state_all[ep_idx == e["episode_index"], :7]
        speed = np.concatenate([[0.0], np.abs(np.diff(q, axis=0)).max(axis=1) * gt["fps"]])  # rad/s per frame
        for b in e["boundaries"]:
            assert speed[b - 1] < 0.05, (e["task_type"], b, speed[b - 1])
        for p in e["phases"]:
            if p["name"] in ("reach", "lift", "move", "place", "retreat", "push"):
                assert speed[p["start"] : p["end"]].max() > 0.3, (e["task_type"], p)


def test_workers_do_not_change_the_result_and_cli_runs(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "sim2"
    rc = carve_main(["synth", "--out", str(out), "--episodes", "2", "--workers", "2", "--seed", "3",
                     "--fps", "10", "--size", "32", "--tasks", "pick_place", "stack", "-q"])
    assert rc == 0
    two = json.loads((out / GROUND_TRUTH_FILE).read_text())["episodes"]
    one = json.loads((dataset / GROUND_TRUTH_FILE).read_text())["episodes"][:2]
    assert [(e["task"], e["boundaries"], e["length"]) for e in two] == [
        (e["task"], e["boundaries"], e["length"]) for e in one
    ]
    # an existing dataset is not overwritten silently
    assert carve_main(["synth", "--out", str(out), "--episodes", "1", "--workers", "1", "--size", "32", "-q"]) == 2


def test_synthesize_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown task type"):
        synthesize(str(tmp_path / "x"), 1, 1, 0, 10, 32, "h264", ["fold_laundry"])
    with pytest.raises(ValueError, match="size"):
        synthesize(str(tmp_path / "x"), 1, 1, 0, 10, 33, "h264", None)


def test_eval_segments_cli_on_the_dataset(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = carve_main(["eval-segments", "--truth", str(dataset / GROUND_TRUTH_FILE), "--source", str(dataset),
                     "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["per_task"]) == {"pick_place", "stack", "push", "two_object"}
    assert rep["overall"]["episodes"] == 4 and rep["missing_episodes"] == []
    assert rep["overall"]["true_events"] == sum(len(e["boundaries"]) + 1 for e in
                                                json.loads((dataset / GROUND_TRUTH_FILE).read_text())["episodes"])
    assert 0.0 <= rep["overall"]["boundary_f1"] <= 1.0


def test_cli_choices_match_the_simulator() -> None:
    from carve.sim.cli import STYLE_CHOICES, TASK_CHOICES
    from carve.sim.tasks import ALL_TASK_TYPES, STYLES

    assert tuple(TASK_CHOICES) == tuple(ALL_TASK_TYPES)
    assert tuple(STYLE_CHOICES) == tuple(STYLES)


def test_defaults_are_the_historical_configuration(tmp_path: Path) -> None:
    from carve.sim.synth import default_cameras, default_fps

    assert (default_fps("dwell", 1), default_cameras("dwell", 1)) == (12, 1)
    assert (default_fps("blended", 1), default_cameras("blended", 1)) == (30, 2)
    assert (default_fps("dwell", 2), default_cameras("dwell", 2)) == (30, 2)
    out = tmp_path / "default"
    assert carve_main(["synth", "--out", str(out), "--episodes", "1", "--workers", "1", "--size", "16",
                       "--tasks", "push", "-q"]) == 0
    gt = json.loads((out / GROUND_TRUTH_FILE).read_text())
    assert gt["fps"] == 12
    assert {k: gt["generator"][k] for k in ("style", "arms", "cameras", "operator_noise")} == {
        "style": "dwell", "arms": 1, "cameras": ["observation.images.front"], "operator_noise": 0.0}
    assert carve_main(["synth", "--out", str(tmp_path / "bad"), "--episodes", "1", "--fps", "60", "-q"]) == 2
    assert carve_main(["synth", "--out", str(tmp_path / "bad"), "--episodes", "1", "--arms", "2",
                       "--tasks", "push", "-q"]) == 2
