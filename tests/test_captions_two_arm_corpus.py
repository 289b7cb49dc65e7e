"""Kinematic captions of two-arm data written by other programs, scored against their generators' truth.

Issue 18: on two-arm data the caption must name the right verb AND the right arm (`verb_arm_accuracy`
of `carve.captioners.eval`: "with both arms" where the arms act together, the arm the truth's tie
rule picks, or both arms' verbs, where they do different things) at least 95% of the time, with the
shipped default configuration. The real pipeline runs in this process (`carve run`, embedded Ray of
tests/conftest.py) on the corpus items of ACT's scripted experts in gym-aloha (tests/corpus/
aloha_scripted: LeRobot v3.0 written by lerobot 0.4.4; tests/corpus/aloha_hdf5: ACT's HDF5 layout,
no task text) and on the SO-100 item (the same expert's right arm alone, whose hand-over opening must
read as a release), and the captions are scored against each item's `truth_carve.json` (the
expert's waypoints, never a Carve rule; see each item's README).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from carve.captioners.eval import evaluate
from carve.cli.main import main

pytestmark = pytest.mark.usefixtures("ray_local")

CORPUS = Path(__file__).resolve().parent / "corpus"
ITEMS = {
    "aloha_scripted": (CORPUS / "aloha_scripted" / "dataset", "lerobot", CORPUS / "aloha_scripted" / "truth_carve.json"),
    "aloha_hdf5": (CORPUS / "aloha_hdf5" / "episodes", "hdf5", CORPUS / "aloha_hdf5" / "truth_carve.json"),
    "so100_joint": (CORPUS / "so100_joint" / "dataset", "lerobot", CORPUS / "so100_joint" / "truth_carve.json"),
}
TARGET = 0.95  # issue 18


def _captioned(name: str, base: Path) -> dict[str, Any]:
    """`carve run` on a corpus item (shipped defaults; the embedded Ray of the test box) and the caption report."""
    from carve.ingest.eval_segments import load_truth
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    source, fmt, truth = ITEMS[name]
    root = base / "root"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--source", str(source), "--format", fmt, "--root", str(root), "--no-shard",
                     "--set", "ray.progress=false", "--set", "ray.num_cpus=2", "--set", "ray.object_store_memory_mb=256"])
    assert code == 0, f"carve run on {name} exited {code}\n{err.getvalue()[-3000:]}"
    with open_root(str(root)) as r:
        rows = read_events(r, columns=["dataset", "episode_index", "start_frame", "end_frame", "caption"]).to_pylist()
    return evaluate(rows, load_truth(truth))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {name: _captioned(name, tmp_path_factory.mktemp(f"captions-{name}")) for name in ITEMS}


@pytest.mark.parametrize("name", ["aloha_scripted", "aloha_hdf5"])
def test_two_arm_captions_name_the_right_verb_and_arm(reports: dict[str, dict[str, Any]], name: str) -> None:
    rep = reports[name]
    assert rep["unmatched_events"] == 0 and rep["arm_events"] == rep["events"] > 0, rep
    assert rep["verb_arm_accuracy"] >= TARGET, (name, rep["verb_arm_accuracy"], rep["confusion"], rep["per_arm"])
    assert rep["arm_accuracy"] >= TARGET and rep["accuracy"] >= TARGET, rep
    # both tasks: the transfer (the arms mostly apart) and the insertion (the arms together throughout)
    assert set(rep["per_task"]) == {"transfer_cube", "insertion"}, rep["per_task"]
    low = {task for task, t in rep["per_task"].items() if t["verb_arm_accuracy"] < 0.9}
    if name == "aloha_hdf5":
        # ACT's HDF5 carries no instruction: the insertion's last held motion (the arms bring the peg and the
        # socket together, joints only) can only be named from the motion, a carry ("move"), where the expert's
        # phase is the insertion (`place`); it is that event alone that may miss
        assert low <= {"insertion"}, rep["per_task"]
        assert set(rep["confusion"].get("place", {})) <= {"place", "move"}, rep["confusion"]
        assert sum(n for v, row in rep["confusion"].items() for c, n in row.items() if c != v) <= 2, rep["confusion"]
    else:
        assert not low, rep["per_task"]
    assert rep["per_arm"]["both"]["events"] >= rep["events"] // 3, rep["per_arm"]  # "with both arms" is scored
    both = rep["per_arm"]["both"]
    both_misses = round(both["events"] * (1.0 - both["verb_arm_accuracy"]))
    assert both["verb_arm_accuracy"] >= 0.9 or (name == "aloha_hdf5" and both_misses <= 2), rep["per_arm"]
    # the failure modes of issue 18: the opening on the way to the object as a release, the final hold as a move
    assert rep["confusion"].get("reach", {}).get("release", 0) == 0, rep["confusion"]
    assert rep["per_phase"]["hold"]["verb_arm_accuracy"] == 1.0, rep["per_phase"]


def test_one_arm_hand_over_is_a_release(reports: dict[str, dict[str, Any]]) -> None:
    rep = reports["so100_joint"]
    assert rep["unmatched_events"] == 0 and rep["arm_events"] == 0 and rep["events"] > 0, rep
    assert rep["accuracy"] >= TARGET and rep["verb_arm_accuracy"] == rep["accuracy"], rep
    assert rep["per_phase"]["release"]["accuracy"] == 1.0, rep["confusion"]  # not "retreat"
    assert rep["confusion"].get("reach", {}).get("release", 0) == 0, rep["confusion"]
