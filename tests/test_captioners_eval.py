"""Caption evaluation: verb normalisation, object and arm matching, clauses, phase overlap mapping (one and
two arms, arms acting together or apart), verb-and-arm accuracy, and `carve eval-captions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carve.captioners.eval import (
    acting_arms,
    caption_arm,
    caption_clauses,
    caption_object,
    evaluate,
    format_report,
    judge,
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
        ("hold the cube still with both arms", "hold"),
        ("the arm stays still", "hold"),
        ("holding the peg", "hold"),
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
    assert rep["per_phase"]["lift"] == {"events": 1, "accuracy": 0.0, "verb_arm_accuracy": 0.0}
    assert rep["verb_arm_correct"] == 2  # one arm: the verb alone
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


@pytest.mark.parametrize(
    ("caption", "arm"),
    [
        ("move the cube to the left arm with the right arm", "right"),  # the instrument, not the destination
        ("move the cube to the left arm", None),  # an arm as a place names no actor
        ("retreat from the left arm", None),
        ("the right hand grasps the cube", "right"),  # the subject
        ("Left arm, grasp the cube", "left"),
        ("hold the peg still using both hands", "both"),
        ("grasp the cube, left arm", "left"),
    ],
)
def test_caption_arm_names_the_actor(caption: str, arm: str | None) -> None:
    assert caption_arm(caption) == arm


@pytest.mark.parametrize(
    ("caption", "clauses"),
    [
        ("grasp the cube with the right arm and reach toward the cube with the left arm",
         [("grasp", "right"), ("reach", "left")]),
        ("put the red cube and the blue cube in the tray with the left arm", [("place", "left")]),
        ("reach toward the peg and the socket with both arms", [("reach", "both")]),
        ("The left arm grasps the socket while the right arm holds the peg.", [("grasp", "left"), ("hold", "right")]),
        ("Left arm, grasp the cube", [("grasp", "left")]),
        ("reach toward the cube", [("reach", None)]),
        ("reach toward and grasp the cube with the right arm", [("reach", "right"), ("grasp", "right")]),
        ("the left arm lifts the box and moves it to the shelf", [("lift", "left"), ("move", "left")]),
        ("", [(None, None)]),
    ],
)
def test_caption_clauses(caption: str, clauses: list[tuple[str | None, str | None]]) -> None:
    assert [(c.verb, c.arm) for c in caption_clauses(caption)] == clauses


# both arms on one schedule (an insertion): every phase is done together
TOGETHER = [
    {"name": "reach", "start": 0, "end": 100, "arm": "left", "object": "socket"},
    {"name": "grasp", "start": 100, "end": 150, "arm": "left", "object": "socket"},
    {"name": "hold", "start": 150, "end": 200, "arm": "left", "object": "socket"},
    {"name": "reach", "start": 0, "end": 100, "arm": "right", "object": "peg"},
    {"name": "grasp", "start": 100, "end": 150, "arm": "right", "object": "peg"},
    {"name": "hold", "start": 150, "end": 200, "arm": "right", "object": "peg"},
]
# a hand-over: the arms act at once but do different things, then both hold
APART = [
    {"name": "move", "start": 0, "end": 100, "arm": "left", "object": None},
    {"name": "grasp", "start": 100, "end": 160, "arm": "left", "object": "cube"},
    {"name": "hold", "start": 160, "end": 200, "arm": "left", "object": "cube"},
    {"name": "reach", "start": 0, "end": 90, "arm": "right", "object": "cube"},
    {"name": "release", "start": 90, "end": 150, "arm": "right", "object": "cube"},
    {"name": "retreat", "start": 150, "end": 160, "arm": "right", "object": None},
    {"name": "hold", "start": 160, "end": 200, "arm": "right", "object": None},
]


def test_acting_arms_together_only_at_once() -> None:
    tp, acting = acting_arms(0, 100, TOGETHER)
    assert tp["arm"] == "left" and [(p["arm"], p["name"]) for p in acting] == [("left", "reach"), ("right", "reach")]
    assert [p["arm"] for p in acting_arms(150, 200, APART)[1]] == ["left", "right"]  # both hold
    assert [p["arm"] for p in acting_arms(0, 90, APART)[1]] == ["right"]  # move and reach: apart
    # a retreat lasting to the end meets the other arm's retreat: the same name, but not at once
    tail = [{"name": "retreat", "start": 20, "end": 100, "arm": "left"},
            {"name": "retreat", "start": 80, "end": 100, "arm": "right"}]
    assert [p["arm"] for p in acting_arms(80, 100, tail)[1]] == ["right"]
    both = [{"name": "lift", "start": 0, "end": 50, "arm": "both", "object": "box"}]
    assert [p["arm"] for p in acting_arms(0, 50, both, ["left", "right"])[1]] == ["left", "right"]


@pytest.mark.parametrize(
    ("start", "end", "phases", "caption", "verb_ok", "arm_ok", "verb_arm_ok"),
    [
        # together: the caption must name both arms and the verb
        (0, 100, TOGETHER, "reach toward the peg with both arms", True, True, True),
        (0, 100, TOGETHER, "reach toward the socket with the left arm and reach toward the peg with the right arm",
         True, True, True),
        (0, 100, TOGETHER, "reach toward the peg with the left arm", True, False, False),
        (0, 100, TOGETHER, "reach toward the socket with the left arm and grasp the peg with the right arm",
         False, True, False),
        (100, 150, TOGETHER, "reach toward the peg with both arms", False, True, False),
        (150, 200, TOGETHER, "hold the peg still with both arms", True, True, True),
        # apart: the arm the tie rule picks (the shorter phase: the right reach) with its verb, or both verbs
        (0, 90, APART, "reach toward the cube with the right arm", True, True, True),
        (0, 90, APART, "reach toward the cube with both arms", True, False, False),
        (0, 90, APART, "move with the left arm and reach toward the cube with the right arm", True, True, True),
        (0, 90, APART, "move to the standby pose with the left arm", False, False, False),
        (0, 90, APART, "reach toward the cube", True, False, False),
        (100, 150, APART, "release the cube with the right arm and grasp the cube with the left arm",
         True, True, True),
        (160, 200, APART, "hold the cube still with both arms", True, True, True),
        (160, 200, APART, "move the cube with the left arm", False, False, False),
    ],
)
def test_judge_verb_and_arm(start: int, end: int, phases: list[dict], caption: str, verb_ok: bool, arm_ok: bool,
                            verb_arm_ok: bool) -> None:
    v = judge(start, end, phases, caption, ["left", "right"])
    assert (v.verb_ok, v.arm_ok, v.verb_arm_ok) == (verb_ok, arm_ok, verb_arm_ok), v


def test_judge_objects_of_arms_together() -> None:
    # in an insertion one arm holds the socket and the other the peg: either object is the right one
    assert judge(0, 100, TOGETHER, "reach toward the peg with both arms", ["left", "right"]).object_ok is True
    assert judge(0, 100, TOGETHER, "reach toward the socket with both arms", ["left", "right"]).object_ok is True
    assert judge(0, 100, TOGETHER, "reach toward the cube with both arms", ["left", "right"]).object_ok is False
    assert judge(0, 90, APART, "reach toward the cube with the right arm", ["left", "right"]).object_ok is True
    assert judge(0, 100, PHASES, "reach toward it", None).arm_ok is None  # one arm: no arm scored
    assert judge(200, 300, TOGETHER, "hold still", ["left", "right"]) is None


def test_evaluate_reports_verb_and_arm_together_and_per_task() -> None:
    truth = {"dataset": "sim", "episodes": [
        {"episode_index": 0, "arms": ["left", "right"], "task_type": "insertion", "phases": TOGETHER},
        {"episode_index": 1, "arms": ["left", "right"], "task_type": "transfer", "phases": APART},
    ]}
    caps = [(0, 0, 100, "reach toward the peg with both arms"), (0, 100, 150, "grasp the peg with the left arm"),
            (0, 150, 200, "hold the peg still with both arms"), (1, 0, 90, "reach toward the cube with the right arm"),
            (1, 90, 150, "release the cube with the right arm and grasp the cube with the left arm"),
            (1, 160, 200, "move the cube with the left arm")]
    rows = [{"episode_index": e, "start_frame": s, "end_frame": t, "caption": c} for e, s, t, c in caps]
    rep = evaluate(rows, truth)
    assert rep["events"] == 6 and rep["together_events"] == 4  # insertion x3 and the final hold
    assert rep["correct"] == 5 and rep["arm_correct"] == 4 and rep["verb_arm_correct"] == 4
    assert rep["verb_arm_accuracy"] == pytest.approx(4 / 6)
    assert rep["per_arm"]["both"]["events"] == 4 and rep["per_arm"]["both"]["verb_arm_accuracy"] == pytest.approx(0.5)
    assert rep["per_task"]["insertion"] == {"events": 3, "accuracy": 1.0, "verb_arm_accuracy": pytest.approx(2 / 3)}
    assert rep["per_task"]["transfer"]["verb_arm_accuracy"] == pytest.approx(2 / 3)
    assert rep["per_phase"]["hold"] == {"events": 2, "accuracy": 0.5, "verb_arm_accuracy": 0.5}
    text = format_report(rep)
    assert "caption verb and arm accuracy: 66.7% (4/6 events; 4 with the arms acting together)" in text
    assert "insertion" in text and "hold -> move: 1" in text


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
                                      "arm_accuracy": pytest.approx(2 / 3), "verb_arm_accuracy": pytest.approx(2 / 3)}
    assert rep["verb_arm_correct"] == 4 and rep["together_events"] == 0  # the unnamed release, the idle arm
    assert rep["per_arm"]["right"]["accuracy"] == pytest.approx(2 / 3)
    assert rep["per_arm"]["right"]["object_accuracy"] == pytest.approx(1 / 3)
    text = format_report(rep)
    assert "caption object accuracy: 60.0% (3/5" in text and "caption arm accuracy: 66.7%" in text
    assert "caption verb and arm accuracy: 66.7% (4/6 events)" in text
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
    assert rep["verb_arm_accuracy"] == pytest.approx(0.75)  # one arm: the verb alone
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-verb-arm-accuracy", "0.8"]) == 1
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-verb-arm-accuracy", "0.7"]) == 0


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
    assert "nope.json: does not exist" in capsys.readouterr().err  # read_truth: the forms eval-segments takes


def test_evaluate_reports_which_truth_phases_an_event_names() -> None:
    # a phase no event's middle frame falls in lowers the recall, never the per-event accuracy
    phases = [{"name": "reach above the peg", "start": 0, "end": 8}, {"name": "descend to the peg", "start": 8, "end": 12},
              {"name": "grasp the peg", "start": 12, "end": 15}, {"name": "carry the peg to the hole", "start": 15, "end": 30},
              {"name": "insert the peg into the hole", "start": 30, "end": 40}]
    truth = {"episodes": [{"episode_index": 0, "task_type": "peg", "length": 40, "phases": phases},
                          {"episode_index": 1, "task_type": "peg", "length": 40, "phases": phases}]}
    caps = [(0, 0, 13, "reach toward the peg"),  # middle 6: the reach run (reach above + descend) named
            (0, 13, 40, "lift the peg"),  # middle 26: the carry named; grasp and insertion have no event
            (1, 0, 12, "reach toward the peg"), (1, 12, 15, "grasp the peg"), (1, 15, 30, "lift the peg"),
            (1, 30, 40, "lift the peg to the hole")]  # the insertion seen, its class not named
    rows = [{"episode_index": e, "start_frame": s, "end_frame": t, "caption": c} for e, s, t, c in caps]
    rep = evaluate(rows, truth, at="middle")
    assert (rep["class_correct"], rep["class_events"]) == (5, 6)
    assert (rep["phases"], rep["phases_seen"], rep["phases_named"]) == (8, 6, 5)
    assert rep["phase_recall"] == pytest.approx(5 / 8)
    assert rep["per_task_phases"]["peg"] == {"phases": 8, "seen": 6, "named": 5, "recall": pytest.approx(5 / 8)}
    assert [(u["episode_index"], u["name"], u["seen"]) for u in rep["unnamed_phases"]] == [
        (0, "grasp the peg", False), (0, "insert the peg into the hole", False),
        (1, "insert the peg into the hole", True)]
    assert "truth phases named by an event: 62.5% (5/8 runs of one class; 2 with no event" in format_report(rep)
