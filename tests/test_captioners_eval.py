"""Caption evaluation: verb normalisation, object and arm matching, phase overlap mapping (one and two
arms), accuracy, and `carve eval-captions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carve.captioners.eval import (
    caption_arm,
    caption_object,
    evaluate,
    format_report,
    leading_verb,
    object_matches,
    overlap_phase,
    truth_phase,
)
from carve.cli.main import main
from carve.storage.catalog import Catalog
from carve.storage.events import write_event_part
from carve.storage.root import open_root
from carve.storage.schema import events_to_table, make_event_id

PHASES = [
    {"name": "reach", "start": 0, "end": 20, "object": "red cube"},
    {"name": "grasp", "start": 20, "end": 28, "object": "red cube"},
    {"name": "lift", "start": 28, "end": 40, "object": "red cube"},
    {"name": "move", "start": 40, "end": 60, "object": "red cube"},
]
# two arms: the left arm's retreat lasts to the episode's end, over the right arm's whole pick
TWO_ARM = [
    {"name": "grasp", "start": 0, "end": 10, "arm": "left", "object": "red cube"},
    {"name": "release", "start": 10, "end": 20, "arm": "left", "object": "red cube"},
    {"name": "retreat", "start": 20, "end": 100, "arm": "left", "object": None},
    {"name": "reach", "start": 25, "end": 50, "arm": "right", "object": "blue lego brick"},
    {"name": "grasp", "start": 50, "end": 70, "arm": "right", "object": "blue lego brick"},
    {"name": "lift", "start": 70, "end": 100, "arm": "right", "object": "blue lego brick"},
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
    assert rep["object_events"] == 4 and rep["object_correct"] == 0  # "it" names no object
    assert rep["arm_events"] == 0 and set(rep["per_arm"]) == {"arm"}


@pytest.mark.parametrize(
    ("caption", "obj"),
    [
        ("place the red cube in the tray", "red cube"),
        ("reach toward the blue lego brick with the left arm", "blue lego brick"),
        ("The robot picks up a small green block from the table", "small green block"),
        ("grasp the red cube", "red cube"),
        ("left arm: grasp the cyan cube", "cyan cube"),
        ("push the yellow cylinder to the left", "yellow cylinder"),
        ("retreat from the tray", ""),
        ("release it", "it"),
        ("wave hello", ""),
        ("", ""),
    ],
)
def test_caption_object(caption: str, obj: str) -> None:
    assert caption_object(caption) == obj


@pytest.mark.parametrize(
    ("truth", "caption", "hit"),
    [
        ("blue lego brick", "grasp the blue lego brick", True),
        ("blue lego brick", "grasp the blue brick with the left arm", True),  # colour + head noun
        ("blue lego brick", "grasp the blue cube", False),  # another shape
        ("red cube", "lift the blue cube", False),  # another colour
        ("cyan cube", "place the cyan cube on the red cube", True),  # the object, not the target
        ("red cube", "place the cyan cube on the red cube", False),
        ("red cubes", "move the red cube to the tray", True),  # plural folds
        ("purple cylinder", "reach toward the cylinder", False),  # the colour is needed
        ("sponge", "wipe the table with the sponge", False),  # the sponge is not the object acted on
        ("sponge", "grab the yellow sponge", True),
        ("red cube", "release it", False),
        ("", "grasp the red cube", False),
    ],
)
def test_object_matches(truth: str, caption: str, hit: bool) -> None:
    assert object_matches(truth, caption) is hit


def test_caption_arm() -> None:
    assert caption_arm("grasp the red cube with the left arm") == "left"
    assert caption_arm("Right hand: lift the cup") == "right"
    assert caption_arm("lift the box with both arms") == "both"
    assert caption_arm("push the cube to the left") is None


def test_truth_phase_with_two_arms_prefers_the_acting_arm() -> None:
    # only the left arm: its phases
    assert truth_phase(0, 10, TWO_ARM)["name"] == "grasp"
    assert truth_phase(20, 25, TWO_ARM)["arm"] == "left"
    # the left arm's long retreat covers the right arm's pick: the specific (shorter) phase wins
    assert (truth_phase(30, 50, TWO_ARM)["arm"], truth_phase(30, 50, TWO_ARM)["name"]) == ("right", "reach")
    assert truth_phase(48, 70, TWO_ARM)["name"] == "grasp"  # 2 frames of reach, 20 of grasp
    assert overlap_phase(70, 100, TWO_ARM) == "lift"
    # an event that mostly precedes the right arm's start stays with the left arm
    assert truth_phase(18, 30, TWO_ARM)["name"] == "retreat"


def test_evaluate_two_arms_reports_object_and_per_arm_accuracy() -> None:
    truth = {"dataset": "sim", "episodes": [{"episode_index": 0, "arms": ["left", "right"], "phases": TWO_ARM}]}
    events = [
        {"episode_index": 0, "start_frame": 0, "end_frame": 10, "caption": "grasp the red cube with the left arm"},
        {"episode_index": 0, "start_frame": 10, "end_frame": 20, "caption": "release the red cube"},  # no arm
        {"episode_index": 0, "start_frame": 20, "end_frame": 25, "caption": "retreat from the tray with the left arm"},
        {"episode_index": 0, "start_frame": 25, "end_frame": 50,
         "caption": "reach toward the blue brick with the right arm"},
        {"episode_index": 0, "start_frame": 50, "end_frame": 70,
         "caption": "grasp the red cube with the right arm"},  # wrong object
        {"episode_index": 0, "start_frame": 70, "end_frame": 100,
         "caption": "retreat from the tray with the left arm"},  # the idle arm: wrong verb, object and arm
    ]
    rep = evaluate(events, truth)
    assert rep["events"] == 6 and rep["correct"] == 5
    assert rep["object_events"] == 5 and rep["object_correct"] == 3  # the retreat has no object
    assert rep["arm_events"] == 6 and rep["arm_correct"] == 4
    assert rep["per_arm"]["left"] == {"events": 3, "accuracy": 1.0, "object_events": 2,
                                      "object_accuracy": 1.0, "arm_events": 3,
                                      "arm_accuracy": pytest.approx(2 / 3)}
    assert rep["per_arm"]["right"]["accuracy"] == pytest.approx(2 / 3)
    assert rep["per_arm"]["right"]["object_accuracy"] == pytest.approx(1 / 3)
    text = format_report(rep)
    assert "caption object accuracy: 60.0% (3/5" in text and "caption arm accuracy: 66.7%" in text
    assert "right" in text and "lift -> retreat: 1" in text


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
    assert rep["object_events"] == 4 and rep["object_accuracy"] == pytest.approx(0.0)
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-accuracy", "0.9"]) == 1
    assert "75.0%" in capsys.readouterr().out


def test_cli_eval_captions_scores_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    _write_catalog(root, ["reach toward the red cube", "grasp the red cube", "lift the blue cube",
                          "move the red cube to the tray"])
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(TRUTH))
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt)]) == 0
    out = capsys.readouterr().out
    assert "caption verb accuracy: 100.0% (4/4 events)" in out
    assert "caption object accuracy: 75.0% (3/4 events whose phase has an object)" in out
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-object-accuracy", "0.8"]) == 1
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-object-accuracy", "0.7"]) == 0


def test_cli_eval_captions_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-captions", "--root", str(tmp_path), "--truth", str(tmp_path / "nope.json")]) == 2
    assert "nope.json does not exist" in capsys.readouterr().err
