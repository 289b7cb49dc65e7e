"""Caption evaluation: verb normalisation, phase overlap mapping, accuracy, and `carve eval-captions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carve.captioners.eval import evaluate, format_report, leading_verb, overlap_phase
from carve.cli.main import main
from carve.storage.catalog import Catalog
from carve.storage.events import write_event_part
from carve.storage.root import open_root
from carve.storage.schema import events_to_table, make_event_id

PHASES = [
    {"name": "reach", "start": 0, "end": 20},
    {"name": "grasp", "start": 20, "end": 28},
    {"name": "lift", "start": 28, "end": 40},
    {"name": "move", "start": 40, "end": 60},
]
TRUTH = {"dataset": "sim", "fps": 12, "episodes": [
    {"episode_index": 0, "task": "put the red cube in the tray", "task_type": "pick_place", "length": 60,
     "boundaries": [20, 28, 40], "phases": PHASES},
]}


@pytest.mark.parametrize(
    ("caption", "verb"),
    [
        ("reach toward the red cube", "reach"),
        ("The robot arm reaches for the cube", "reach"),
        ("The gripper grabs the red cube.", "grasp"),
        ("picks up the cube", "lift"),
        ("Carefully lowering the block into the tray", "place"),
        ("opens the gripper to let go", "release"),
        ("moves the cube to the tray", "move"),
        ("move away from the tray", "retreat"),
        ("withdrew", "retreat"),
        ("slides the cylinder left", "push"),
        ("dropped the cube", "release"),
        ("the robot", None),
        ("", None),
        (None, None),
        ("wave hello", None),
    ],
)
def test_leading_verb(caption: str | None, verb: str | None) -> None:
    assert leading_verb(caption) == verb


def test_overlap_phase_picks_largest_overlap() -> None:
    assert overlap_phase(0, 20, PHASES) == "reach"
    assert overlap_phase(18, 27, PHASES) == "grasp"  # 2 frames of reach, 7 of grasp
    assert overlap_phase(25, 45, PHASES) == "lift"  # 3 grasp, 12 lift, 5 move
    assert overlap_phase(36, 60, PHASES) == "move"
    assert overlap_phase(60, 70, PHASES) is None


def test_evaluate_counts_accuracy_and_confusions() -> None:
    events = [
        {"dataset": "sim", "episode_index": 0, "start_frame": 0, "end_frame": 21, "caption": "reach toward it"},
        {"dataset": "sim", "episode_index": 0, "start_frame": 21, "end_frame": 29, "caption": "grasp it"},
        {"dataset": "sim", "episode_index": 0, "start_frame": 29, "end_frame": 42, "caption": "move it"},  # wrong
        {"dataset": "sim", "episode_index": 0, "start_frame": 42, "end_frame": 60, "caption": ""},  # no verb
        {"dataset": "sim", "episode_index": 5, "start_frame": 0, "end_frame": 9, "caption": "reach"},  # unknown ep
    ]
    rep = evaluate(events, TRUTH)
    assert rep["events"] == 4 and rep["correct"] == 2 and rep["accuracy"] == pytest.approx(0.5)
    assert rep["unmatched_events"] == 1
    assert rep["per_phase"]["lift"] == {"events": 1, "accuracy": 0.0}
    assert rep["per_phase"]["reach"]["accuracy"] == 1.0
    assert rep["confusion"]["lift"] == {"move": 1}
    assert rep["confusion"]["move"] == {"(none)": 1}
    text = format_report(rep)
    assert "50.0%" in text and "lift -> move: 1" in text


def _write_catalog(root: Path, captions: list[str]) -> None:
    bounds = [(p["start"], p["end"]) for p in PHASES]
    rows = []
    for k, ((s, e), cap) in enumerate(zip(bounds, captions, strict=True)):
        rows.append({"event_id": make_event_id("sim/0", s, e), "episode_id": "sim/0", "dataset": "sim",
                     "episode_index": 0, "event_index": k, "num_events": len(bounds), "start_frame": s,
                     "end_frame": e, "fps": 12.0, "task": "t", "caption": cap, "state": [], "action": []})
    path = write_event_part(open_root(root), "b1", "000000", events_to_table(rows))
    with Catalog(str(root)) as cat:
        cat.record_episodes([{"episode_id": "sim/0", "dataset": "sim", "episode_index": 0, "source_uri": "x",
                              "fingerprint": "f", "status": "ok", "num_events": 4, "batch": "b1", "path": path}])


def test_cli_eval_captions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    _write_catalog(root, ["reach toward the cube", "grasp the cube", "lift the cube", "place the cube"])
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(TRUTH))
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["events"] == 4 and rep["accuracy"] == pytest.approx(0.75)
    assert rep["confusion"]["move"] == {"place": 1}
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-accuracy", "0.9"]) == 1
    assert "75.0%" in capsys.readouterr().out


def test_cli_eval_captions_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-captions", "--root", str(tmp_path), "--truth", str(tmp_path / "nope.json")]) == 2
    assert "nope.json does not exist" in capsys.readouterr().err
