"""The kinematic captioner on hand-built signals: verbs, phrases, arms, next_caption linking, determinism."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from test_captioners_helpers import (
    blended_episode,
    episode_table,
    event_rows,
    pick_place_script,
    push_script,
    script_episode,
    segmented_rows,
    two_arm_episode,
    two_object_script,
)

from carve.captioners.base import views_from_table
from carve.captioners.eval import evaluate, leading_verb
from carve.captioners.kinematic import KinematicCaptioner, label_phases, parse_task
from carve.captioners.stage import CaptionStage
from carve.core.config import CaptionConfig, SegmentConfig
from carve.storage.schema import EVENT_SCHEMA, events_to_table


def _captions(table: pa.Table) -> list[str]:
    out = CaptionStage(CaptionConfig(backend="kinematic"))(table)
    return out.column("caption").to_pylist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pick_place_verbs_and_phrases(seed: int) -> None:
    table, phases = episode_table(pick_place_script(seed), "put the red cube in the tray", seed=seed)
    caps = _captions(table)
    assert [leading_verb(c) for c in caps] == [p["name"] for p in phases]
    assert caps[0] == "reach toward the red cube"
    assert "the red cube" in caps[2] and "tray" in caps[4]
    assert caps[-1].startswith("retreat")


def test_stack_mentions_base_cube() -> None:
    table, phases = episode_table(pick_place_script(3), "stack the red cube on the blue cube")
    caps = _captions(table)
    assert [leading_verb(c) for c in caps] == [p["name"] for p in phases]
    place = caps[[p["name"] for p in phases].index("place")]
    assert place == "place the red cube on the blue cube"


def test_two_object_uses_second_object_in_second_cycle() -> None:
    table, phases = episode_table(two_object_script(4), "put the red cube and then the blue cylinder in the tray")
    caps = _captions(table)
    assert [leading_verb(c) for c in caps] == [p["name"] for p in phases]
    grasps = [c for c in caps if c.startswith("grasp")]
    assert grasps == ["grasp the red cube", "grasp the blue cylinder"]


def test_push_without_grasp() -> None:
    table, _ = episode_table(push_script(5), "push the green cube to the left", grip0=0.0)
    caps = _captions(table)
    assert [leading_verb(c) for c in caps] == ["reach", "push", "retreat"]
    assert caps[1] == "push the green cube to the left"


def test_next_caption_links_within_episode_and_keeps_row_order() -> None:
    t1, _ = episode_table(pick_place_script(0), "put the red cube in the tray", episode_id="a", episode_index=0)
    t2, _ = episode_table(push_script(1), "push the green cube to the right", episode_id="b", episode_index=1,
                          grip0=0.0)
    table = pa.concat_tables([t1, t2])
    perm = np.random.default_rng(0).permutation(table.num_rows)
    shuffled = table.take(pa.array(perm))
    out = CaptionStage(CaptionConfig())(shuffled)
    assert out.num_rows == table.num_rows
    assert out.column("event_id").to_pylist() == shuffled.column("event_id").to_pylist()
    rows = out.select(["episode_id", "event_index", "caption", "next_caption", "caption_status",
                       "caption_model"]).to_pylist()
    by_key = {(r["episode_id"], r["event_index"]): r for r in rows}
    for (ep, k), r in by_key.items():
        nxt = by_key.get((ep, k + 1))
        assert r["next_caption"] == (nxt["caption"] if nxt else "")
        assert r["caption_status"] == "ok" and r["caption"]
        assert r["caption_model"] == KinematicCaptioner.name
    assert by_key[("a", 6)]["next_caption"] == "" and by_key[("b", 2)]["next_caption"] == ""


def test_deterministic() -> None:
    table, _ = episode_table(two_object_script(7), "put the red cube and then the blue cube in the tray")
    assert _captions(table) == _captions(table)


def test_dwell_only_event_repeats_previous_phase() -> None:
    state, grip, phases = script_episode(pick_place_script(2))
    # split the lift phase so that its trailing dwell is an event of its own
    bounds = []
    for p in phases:
        if p["name"] == "lift":
            bounds += [(p["start"], p["end"] - 3), (p["end"] - 3, p["end"])]
        else:
            bounds.append((p["start"], p["end"]))
    table = events_to_table(event_rows("e", "put the red cube in the tray", state, grip, bounds))
    verbs = [leading_verb(c) for c in _captions(table)]
    assert verbs == ["reach", "grasp", "lift", "lift", "move", "place", "release", "retreat"]


def test_segmenter_events_score_high_on_constructed_ground_truth() -> None:
    from carve.ingest.segment import segment_episode

    names = [*(f"joint_{i}" for i in range(7)), "gripper_opening"]
    rows, truth = [], {"dataset": "test", "episodes": []}
    scripts = [(pick_place_script(s), "put the red cube in the tray", 1.0) for s in range(3)]
    scripts += [(push_script(s), "push the red cube to the left", 0.0) for s in range(2)]
    scripts += [(two_object_script(9), "put the red cube and then the blue cube in the tray", 1.0)]
    for i, (script, task, g0) in enumerate(scripts):
        state, grip, phases = script_episode(script, dwell=4, seed=i, grip0=g0)
        segs = segment_episode(state, state, 12.0, SegmentConfig(), names, names)
        ev = event_rows(f"ep{i}", task, state, grip, [(s.start, s.end) for s in segs], episode_index=i,
                        start_reasons=[s.start_reason for s in segs])
        rows += CaptionStage(CaptionConfig())(events_to_table(ev)).to_pylist()
        truth["episodes"].append({"episode_index": i, "task": task, "length": len(state), "phases": phases})
    rep = evaluate(rows, truth)
    assert rep["accuracy"] >= 0.9, rep


def test_arbitrary_task_text_is_handled() -> None:
    table, _ = episode_table(pick_place_script(0), "Fold the towel neatly, please!!")
    caps = _captions(table)
    assert all(c and leading_verb(c) for c in caps)
    table, _ = episode_table(push_script(0), "", grip0=0.0)
    assert all(c and leading_verb(c) for c in _captions(table))


def test_missing_signals_still_caption() -> None:
    rows = event_rows("x", "put the red cube in the tray", np.zeros((20, 8), np.float32),
                      np.zeros(20, np.float32), [(0, 10), (10, 20)], keyframes=False)
    for r in rows:
        r["state"], r["action"], r["gripper"] = [], [], []
    caps = _captions(events_to_table(rows, EVENT_SCHEMA))
    assert len(caps) == 2 and all(caps)


@pytest.mark.parametrize(
    ("task", "objects", "target", "relation"),
    [
        ("put the red cube in the tray", ["the red cube"], "the tray", "in"),
        ("stack the red cube on the blue cube", ["the red cube"], "the blue cube", "on"),
        ("put the red cube and then the blue cube in the tray", ["the red cube", "the blue cube"], "the tray", "in"),
        ("Place a green lego brick into the bowl.", ["the green lego brick"], "the bowl", "in"),
        ("pick up the bottle and place it on the shelf", ["the bottle"], "the shelf", "on"),
        ("put the spoon into the cup and close the lid", ["the spoon"], "the cup", "in"),
    ],
)
def test_parse_task(task: str, objects: list[str], target: str, relation: str) -> None:
    p = parse_task(task)
    assert p.objects == objects and p.target == target and p.relation == relation and not p.is_push


def test_parse_push_task() -> None:
    p = parse_task("push the green cube to the left")
    assert p.is_push and p.objects == ["the green cube"] and p.direction == "to the left"
    assert parse_task("slide the block forward").direction == "forward"
    assert parse_task("slide the block forward").objects == ["the block"]
    assert parse_task("pick up the bottle").objects == ["the bottle"]
    assert parse_task("").objects == ["the object"]


def test_label_phases_sees_only_one_episode() -> None:
    table, phases = episode_table(pick_place_script(1), "put the red cube in the tray")
    (views,) = views_from_table(table)
    assert label_phases(views) == [p["name"] for p in phases]
    assert label_phases([]) == []


def test_max_len_pieces_share_their_phase() -> None:
    state, grip, phases = script_episode(push_script(3), grip0=0.0)
    reach, push, retreat = phases
    third = (reach["end"] - reach["start"]) // 3
    bounds = [(0, third), (third, 2 * third), (2 * third, reach["end"]),
              (push["start"], push["end"]), (retreat["start"], retreat["end"])]
    reasons = ["episode_start", "max_len", "max_len", "pause", "pause"]
    table = events_to_table(event_rows("p", "push the red cube to the left", state, grip, bounds,
                                       start_reasons=reasons))
    assert [leading_verb(c) for c in _captions(table)] == ["reach", "reach", "reach", "push", "retreat"]


def test_gripper_event_dominated_by_motion_takes_the_motion_phase() -> None:
    state, grip, phases = script_episode(pick_place_script(6))
    names = [p["name"] for p in phases]
    g, lift = phases[names.index("grasp")], phases[names.index("lift")]
    r, ret = phases[names.index("release")], phases[names.index("retreat")]
    bounds = [(p["start"], p["end"]) for p in phases if p["name"] in ("reach", "move", "place")]
    bounds += [(g["start"], lift["end"]), (r["start"], ret["end"])]  # grasp+lift, release+retreat
    bounds.sort()
    table = events_to_table(event_rows("m", "put the red cube in the tray", state, grip, bounds))
    assert [leading_verb(c) for c in _captions(table)] == ["reach", "lift", "move", "place", "retreat"]


TWO_ARM_TASK = "put the red cube in the tray with the left arm and the blue cylinder with the right arm"


def _scored(rows: list[dict], truth: dict) -> dict:
    return evaluate(CaptionStage(CaptionConfig())(events_to_table(rows)).to_pylist(), truth)


def test_blended_motion_gets_the_right_verbs() -> None:
    # lift -> move -> place flow through without a stop; the segmenter's cuts, not scripted ones
    rows, truth = [], {"dataset": "test", "episodes": []}
    for i in range(4):
        state, _, phases = blended_episode(seed=10 + i)
        rows += segmented_rows(f"b{i}", "put the red cube in the tray", state, None, 30.0, episode_index=i)
        truth["episodes"].append({"episode_index": i, "phases": phases})
    rep = _scored(rows, truth)
    assert rep["accuracy"] >= 0.9 and rep["object_accuracy"] >= 0.9, rep
    assert {"grasp", "lift", "move"} <= set(rep["per_phase"]), rep


def test_two_arm_episode_is_labelled_per_arm_and_names_the_arm() -> None:
    rows, truth = [], {"dataset": "test", "episodes": []}
    for i in range(3):
        state, names, _, phases = two_arm_episode(seed=20 + i)
        rows += segmented_rows(f"t{i}", TWO_ARM_TASK, state, names, 30.0, episode_index=i)
        truth["episodes"].append({"episode_index": i, "arms": ["left", "right"], "phases": phases})
    out = CaptionStage(CaptionConfig())(events_to_table(rows)).to_pylist()
    rep = evaluate(out, truth)
    assert rep["accuracy"] >= 0.9 and rep["object_accuracy"] >= 0.9 and rep["arm_accuracy"] >= 0.9, rep
    assert set(rep["per_arm"]) == {"left", "right"} and rep["per_arm"]["right"]["accuracy"] >= 0.9
    caps = [r["caption"] for r in out if r["episode_id"] == "t0"]
    # the right arm's own pick after the left arm let go (not one "release" event to the end)
    right = [c for c in caps if c.endswith("with the right arm")]
    assert [leading_verb(c) for c in right][:2] == ["reach", "grasp"], caps
    assert "grasp the blue cylinder with the right arm" in caps and "grasp the red cube with the left arm" in caps
    assert all(c.endswith(("with the left arm", "with the right arm")) for c in caps)


def test_one_arm_captions_name_no_arm() -> None:
    table, _ = episode_table(pick_place_script(0), "put the red cube in the tray")
    assert not any("arm" in c for c in _captions(table))


def test_idle_arm_does_not_take_over_events() -> None:
    # the left arm rests after its retreat; the events of the right arm's pick are about the right arm
    state, names, _, phases = two_arm_episode(seed=3)
    rows = segmented_rows("t", TWO_ARM_TASK, state, names, 30.0)
    (views,) = views_from_table(events_to_table(rows))
    from carve.captioners.kinematic import event_phases

    right_grasp = next(p for p in phases if p["arm"] == "right" and p["name"] == "grasp")
    labelled = event_phases(views)
    after = [lab for v, lab in zip(views, labelled, strict=True) if v.start_frame >= right_grasp["start"]]
    assert after and all(lab.arm == "right" for lab in after), labelled


@pytest.mark.parametrize(
    ("task", "left", "right"),
    [
        (TWO_ARM_TASK, ["the red cube"], ["the blue cylinder"]),
        ("left arm: put the green block in the bowl; right arm: put the cup on the shelf", ["the green block"],
         ["the cup"]),
        ("pick up the sponge with the right hand and put the plate in the rack with the left arm", ["the plate"],
         ["the sponge"]),
    ],
)
def test_parse_task_per_arm(task: str, left: list[str], right: list[str]) -> None:
    p = parse_task(task)
    assert p.for_arm("left").objects == left and p.for_arm("right").objects == right
    assert p.for_arm("arm") is p and set(p.objects) == {*left, *right}
    assert p.for_arm("left").target
