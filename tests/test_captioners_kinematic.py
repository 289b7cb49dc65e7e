"""The kinematic captioner on hand-built signals: verbs, phrases, arms, next_caption linking, determinism."""

from __future__ import annotations

import itertools

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
from carve.captioners.eval import caption_clauses, evaluate, leading_verb
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
    # the right arm's own pick after the left arm let go (not one "release" event to the end); a caption may
    # name both arms ("release ... with the left arm and reach ... with the right arm")
    right = [v for c in caps for cl in caption_clauses(c) if cl.arm == "right" for v in [cl.verb]]
    assert [v for k, v in enumerate(right) if k == 0 or v != right[k - 1]][:2] == ["reach", "grasp"], caps
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


# ------------------------------------------------------------------ hand-made multi-arm signals (issue 18)
Keys = list[tuple[float, list[float]]]  # (time in s, value(s)): minimum-jerk between keys, held outside
FPS = 50.0


def _track(keys: Keys, n: int, fps: float = FPS) -> np.ndarray:
    """(n, d) samples of a key track: each span between two keys is one minimum-jerk move (rest at keys)."""
    times = np.array([k[0] for k in keys])
    vals = np.array([k[1] for k in keys], float)
    out = np.empty((n, vals.shape[1]))
    for f in range(n):
        t = f / fps
        i = int(np.searchsorted(times, t, side="right")) - 1
        if i < 0 or i >= len(times) - 1:
            out[f] = vals[0] if i < 0 else vals[-1]
            continue
        s = (t - times[i]) / (times[i + 1] - times[i])
        out[f] = vals[i] + (vals[i + 1] - vals[i]) * (10 * s**3 - 15 * s**4 + 6 * s**5)
    return out


def _views(arms: dict[str, tuple[Keys, Keys]], bounds_s: list[float], task: str, end_s: float) -> list:
    """EventViews of one episode: per arm (joint keys of 4 joints in rad, gripper keys 0 closed .. 1 open),
    ALOHA-style names (`left_*` / `right_*`; one arm "": unprefixed), events cut at `bounds_s` seconds."""
    from carve.captioners.base import EventView

    n = round(end_s * FPS)
    cols, names = [], []
    for arm, (joints, grip) in arms.items():
        pre = f"{arm}_" if arm else ""
        cols += [_track(joints, n), _track(grip, n)]
        names += [*(f"{pre}j{i}" for i in range(4)), f"{pre}gripper"]
    state = np.hstack(cols).astype(np.float32)
    gcol = names.index(next(nm for nm in names if nm.endswith("gripper")))
    cuts = [0, *(round(b * FPS) for b in bounds_s), n]
    return [EventView(episode_id="h", event_index=k, num_events=len(cuts) - 1, task=task, start_frame=s,
                      end_frame=e, fps=FPS, state=state[s:e], action=state[s:e], gripper=state[s:e, gcol],
                      state_names=names, action_names=names)
            for k, (s, e) in enumerate(itertools.pairwise(cuts))]


def _j(*v: float) -> list[float]:
    return list(v)


def test_cycles_an_opening_before_any_grasp_is_no_release() -> None:
    from carve.captioners.signals import grasp_cycles as _cycles

    # opens while approaching, then a grasp cycle: only the grasp cycle
    assert _cycles([(2, "gripper_open"), (100, "gripper_close"), (200, "gripper_open")]) == [(100, 200)]
    # opens and never closes again: the episode started holding, that open is a release
    assert _cycles([(5, "gripper_open")]) == [(None, 5)]
    assert _cycles([(10, "gripper_close"), (50, "gripper_open"), (70, "gripper_close")]) == [(10, 50), (70, None)]


def test_gripper_opening_during_the_approach_is_part_of_the_reach() -> None:
    # one arm starts with its gripper closed and opens it on the way to the cube, while moving fast (as ALOHA /
    # SO-100 arms rest closed)
    joints = [(0.0, _j(0, 0, 0, 0)), (1.5, _j(0.8, 0, 0, 0)), (2.6, _j(0.8, 0, 0, 0)),  # reach, then still
              (3.2, _j(0.8, 0.5, 0, 0)), (3.4, _j(0.8, 0.5, 0, 0)),  # lift
              (4.0, _j(0.8, 0.5, 0.6, 0)), (4.2, _j(0.8, 0.5, 0.6, 0)),  # move
              (4.7, _j(0.8, 0.0, 0.6, 0)), (5.4, _j(0.8, 0.0, 0.6, 0)),  # place, then still
              (6.2, _j(0, 0, 0, 0))]  # retreat
    grip = [(0.0, _j(0)), (0.3, _j(0)), (1.4, _j(1)), (1.8, _j(1)), (2.2, _j(0)), (4.8, _j(0)), (5.2, _j(1))]
    views = _views({"": (joints, grip)}, [0.8, 1.8, 2.6, 3.3, 4.1, 4.8, 5.4], "put the red cube in the tray", 6.6)
    from carve.captioners.kinematic import caption_episode_events, label_phases

    assert label_phases(views) == ["reach", "reach", "grasp", "lift", "move", "place", "release", "retreat"]
    assert caption_episode_events(views)[0] == "reach toward the red cube"


def test_cycles_an_opening_before_the_arm_moves_is_the_start_state() -> None:
    from carve.captioners.signals import grasp_cycles as _cycles

    # the gripper opens before the arm's first motion (frame 20), and never closes: no release
    assert _cycles([(5, "gripper_open")], first_move=20) == []
    # it opens after the arm has moved (a carry from the start): that open is a release
    assert _cycles([(30, "gripper_open")], first_move=20) == [(None, 30)]


def test_gripper_opening_from_its_start_state_is_never_a_release() -> None:
    # an ALOHA arm rests with its gripper closed; it opens it before moving, then pushes the cube: nothing
    # was held, so no event is a release (the opening is part of the first phase)
    joints = [(0.0, _j(0, 0, 0, 0)), (0.6, _j(0, 0, 0, 0)), (2.0, _j(0.8, 0, 0, 0)),
              (2.4, _j(0.8, 0, 0, 0)), (3.6, _j(0.8, 0, 0.6, 0)), (4.4, _j(0.8, 0, 0.6, 0))]
    grip = [(0.0, _j(0)), (0.05, _j(0)), (0.5, _j(1))]
    views = _views({"": (joints, grip)}, [0.5, 2.2, 3.7], "push the red cube to the goal", 4.6)
    from carve.captioners.kinematic import caption_episode_events, label_phases

    phases = label_phases(views)
    assert "release" not in phases and phases[0] != "release"
    assert not caption_episode_events(views)[0].startswith("release")
    # the same opening after a carry from the start (the arm moved first, holding): a release
    carry = [(0.0, _j(0, 0, 0, 0)), (0.6, _j(0, 0, 0, 0)), (2.0, _j(0.8, 0, 0, 0)),
             (3.0, _j(0.8, 0, 0, 0)), (4.0, _j(0, 0, 0, 0))]
    grip_late = [(0.0, _j(0)), (2.2, _j(0)), (2.6, _j(1))]
    late = _views({"": (carry, grip_late)}, [0.5, 2.1, 2.9], "put the red cube in the tray", 4.6)
    assert label_phases(late)[2] == "release"


def test_without_signals_an_opening_before_the_first_grasp_is_no_release() -> None:
    # only the boundary reasons: the episode's first event starts with the gripper opening from its start state
    rows = event_rows("x", "put the red cube in the tray", np.zeros((40, 8), np.float32),
                      np.zeros(40, np.float32), [(0, 10), (10, 20), (20, 30), (30, 40)], keyframes=False)
    for r, reason in zip(rows, ["gripper_open", "gripper_close", "motion_pause", "gripper_open"], strict=True):
        r["state"], r["action"], r["gripper"] = [], [], []
        r["start_reason"] = reason
    from carve.captioners.kinematic import label_phases

    [views] = views_from_table(events_to_table(rows, EVENT_SCHEMA))
    assert label_phases(views) == ["reach", "grasp", "move", "release"]


def _insertion(task: str = "insert the peg into the socket") -> list:
    """Both arms on the same schedule (mirrored joints): reach opening the gripper, grasp, lift, insert, hold."""
    def arm(sign: float) -> tuple[Keys, Keys]:
        joints = [(0.0, _j(0, 0, 0, 0)), (2.0, _j(sign * 0.9, 0.2, 0, 0)), (2.8, _j(sign * 0.9, 0.2, 0, 0)),
                  (3.6, _j(sign * 0.9, 0.8, 0, 0)), (4.4, _j(sign * 0.9, 0.8, sign * 0.5, 0))]
        grip = [(0.0, _j(0)), (1.8, _j(1)), (2.1, _j(1)), (2.5, _j(0))]
        return joints, grip
    return _views({"left": arm(1.0), "right": arm(-1.0)}, [1.0, 2.0, 2.8, 3.6, 4.5], task, 6.0)


def test_arms_doing_the_same_thing_at_once_are_captioned_with_both_arms() -> None:
    from carve.captioners.kinematic import caption_episode_events, event_phases

    views = _insertion()
    assert caption_episode_events(views) == [
        "reach toward the peg with both arms",
        "reach toward the peg with both arms (part 2 of 2)",  # one reach cut in two: numbered, not repeated
        "grasp the peg with both arms",
        "lift the peg with both arms",
        "insert the peg into the socket with both arms",  # held to the end, brought to the target: the task's insert
        "hold the peg still with both arms",  # every arm still at the end: a hold, not the last motion
    ]
    assert {p.arm for p in event_phases(views)} == {"both"}


def _transfer(task: str = "Transfer the cube from the right arm to the left arm") -> list:
    """A hand-over: the right arm picks the cube and opens at the meeting point while the left arm closes."""
    right = ([(0.0, _j(0, 0, 0, 0)), (1.6, _j(-0.8, 0.3, 0, 0)), (2.6, _j(-0.8, 0.3, 0, 0)),  # reach, grasp
              (3.2, _j(-0.8, 0.8, 0, 0)), (3.8, _j(-0.3, 0.8, 0.2, 0)),  # lift, move to the meeting point
              (5.0, _j(-0.3, 0.8, 0.2, 0)), (5.8, _j(-0.9, 0.2, 0, 0))],  # wait (hand over), retreat
             [(0.0, _j(0)), (1.5, _j(1)), (2.0, _j(1)), (2.4, _j(0)), (4.0, _j(0)), (4.8, _j(1))])
    left = ([(0.0, _j(0, 0, 0, 0)), (1.6, _j(0.4, 0.4, 0, 0)), (3.8, _j(0.3, 0.8, 0.2, 0)),  # standby, approach
             (4.8, _j(0.3, 0.8, 0.2, 0)), (5.8, _j(0.9, 0.6, 0.5, 0))],  # take the cube, carry it away
            [(0.0, _j(0)), (1.5, _j(1)), (4.0, _j(1)), (4.4, _j(0))])
    return _views({"left": left, "right": right}, [2.0, 2.6, 3.2, 4.0, 4.8, 5.8], task, 7.0)


def test_hand_over_is_a_release_and_the_taker_moves_the_object_without_lifting_it() -> None:
    from carve.captioners.eval import caption_clauses
    from carve.captioners.kinematic import caption_episode_events

    caps = caption_episode_events(_transfer())
    per_arm = [{c.arm: c.verb for c in caption_clauses(cap)} for cap in caps]
    assert caps[0] == "reach toward the cube with the right arm", caps  # the opening on the way is no release
    assert [p.get("right") for p in per_arm[:4]] == ["reach", "grasp", "lift", "move"], caps  # no place
    assert per_arm[4] == {"left": "grasp", "right": "release"}, caps  # both named: they act at once
    assert per_arm[5] == {"right": "retreat", "left": "move"}, caps  # the cube is already up: no lift
    assert caps[-1] == "hold the cube still with both arms", caps
    assert not any(p.get("right") == "place" or p.get("left") == "lift" for p in per_arm), caps


def test_hand_over_needs_the_same_object() -> None:
    from carve.captioners.signals import arm_signals as _arm_signals
    from carve.captioners.signals import assemble as _assemble
    from carve.captioners.signals import gripper_events as _gripper_events
    from carve.captioners.signals import handovers as _handovers
    from carve.captioners.task_text import parse_task
    from carve.core.config import SegmentConfig

    for task, expect in (("Transfer the cube from the right arm to the left arm", ([{0}, set()], [set(), {0}])),
                         ("put the red cube in the tray with the right arm and the blue cube with the left arm",
                          ([set(), set()], [set(), set()]))):
        ep = _assemble(_transfer(task))
        sigs = _arm_signals(ep, SegmentConfig())
        assert [s.name for s in sigs] == ["left", "right"]
        grips = [_gripper_events(s, ep.fps, SegmentConfig()) for s in sigs]
        assert _handovers(sigs, grips, ep.fps, parse_task(task)) == expect, task


def test_release_lasts_while_the_gripper_opens_on_a_still_arm() -> None:
    # the gripper starts opening while the arm is still braking at the end of a slow carry (so the arm never
    # "holds then moves off" right after the open), opens slowly, the arm waits, then retreats (an SO-100
    # hand-over: the other arm takes the cube out of view, so the carry before the opening is a move, as
    # ACT's scripted expert names it, never a place)
    joints = [(0.0, _j(0, 0, 0, 0)), (1.2, _j(0.8, 0, 0, 0)), (2.0, _j(0.8, 0, 0, 0)),  # reach, grasp
              (2.8, _j(0.8, 0.6, 0, 0)), (3.4, _j(0.8, 0.6, 0.6, 0)), (5.0, _j(0.8, -0.2, 0.6, 0)),  # lift, move, place
              (6.0, _j(0.8, -0.2, 0.6, 0)), (7.0, _j(0, 0, 0, 0))]  # wait (hand over), retreat
    grip = [(0.0, _j(1)), (1.3, _j(1)), (1.7, _j(0)), (4.3, _j(0)), (5.8, _j(1))]
    views = _views({"": (joints, grip)}, [1.3, 2.0, 2.8, 3.4, 4.3, 6.0], "pick up the cube and hand it over", 7.4)
    from carve.captioners.kinematic import label_phases

    assert label_phases(views) == ["reach", "grasp", "lift", "move", "move", "release", "retreat"]
    # the same motion when the task names a place: the last carry is the place
    views = _views({"": (joints, grip)}, [1.3, 2.0, 2.8, 3.4, 4.3, 6.0], "put the cube in the tray", 7.4)
    assert label_phases(views) == ["reach", "grasp", "lift", "move", "place", "release", "retreat"]


def test_opening_while_already_retreating_stays_a_short_release() -> None:
    # the operator starts to retreat and opens the gripper on the way (the arm speeds up through the open):
    # the release ends where the gripper has switched, the rest of that motion is the retreat
    joints = [(0.0, _j(0, 0, 0, 0)), (1.2, _j(0.8, 0, 0, 0)), (2.0, _j(0.8, 0, 0, 0)),  # reach, grasp
              (2.8, _j(0.8, 0.6, 0, 0)), (3.4, _j(0.8, 0.6, 0.6, 0)), (4.0, _j(0.8, 0.2, 0.6, 0)),  # lift, move, place
              (5.4, _j(0, 0, 0, 0))]  # retreat, opening the gripper on the way
    grip = [(0.0, _j(1)), (1.3, _j(1)), (1.7, _j(0)), (4.2, _j(0)), (4.5, _j(1))]
    views = _views({"": (joints, grip)}, [1.3, 2.0, 2.8, 3.4, 4.0], "put the cube in the tray", 6.0)
    from carve.captioners.kinematic import label_phases

    assert label_phases(views) == ["reach", "grasp", "lift", "move", "place", "retreat"]


def test_final_rest_starts_where_the_arm_stays_within_the_waypoint_error() -> None:
    from carve.captioners.paths import final_rest as _final_rest
    from carve.ingest.kinematics import speed

    # 1 rad/s for 1 s, then it settles: x = 1 + 0.2 (1 - exp(-(t - 1) / 0.2)), speed exp(-(t - 1) / 0.2)
    t = np.arange(0, 3.0, 1 / FPS)
    x = np.where(t <= 1.0, t, 1.0 + 0.2 * (1 - np.exp(-(t - 1.0) / 0.2)))[:, None]
    # within 0.08 rad of the end from t = 1 + 0.2 ln 2.5 = 1.183 s; below 0.25 rad/s from 1 + 0.2 ln 4 = 1.277 s
    sp = speed(x, FPS)
    assert abs(_final_rest(x, sp, 0.25, 0.08) - round(1.277 * FPS)) <= 1  # the later of the two
    assert abs(_final_rest(x, sp, 5.0, 0.08) - round(1.183 * FPS)) <= 1  # never fast: the pose alone
    still = np.zeros((20, 3))
    assert _final_rest(still, speed(still, FPS), 0.25, 0.08) == 0


def test_parse_task_arm_transfer_and_source() -> None:
    p = parse_task("Transfer the cube from the right arm to the left arm")
    assert p.objects == ["the cube"] and p.target == ""
    assert p.for_arm("right").objects == ["the cube"] and p.for_arm("right").target == "the left arm"
    assert p.for_arm("left").objects == ["the cube"] and p.for_arm("left").target == ""
    q = parse_task("put the cup from the table in the sink")
    assert q.objects == ["the cup"] and q.target == "the sink" and q.relation == "in"
    assert parse_task("take the cube from the box").objects == ["the cube"]


def test_hold_and_both_wording() -> None:
    from carve.captioners.event_phase import EventPhase
    from carve.captioners.templates import arm_suffix, describe, phase_caption

    assert describe("hold", parse_task("insert the peg into the socket"), 0) == "hold the peg still"
    assert arm_suffix("both") == " with both arms" and arm_suffix("left") == " with the left arm"
    assert arm_suffix("arm") == ""
    two = parse_task(TWO_ARM_TASK)
    assert phase_caption(EventPhase("reach", "both", 0), two, True) == \
        "reach toward the red cube and the blue cylinder with both arms"
    assert phase_caption(EventPhase("hold", "both", 0, holds=False), two, True) == "hold still with both arms"
    assert phase_caption(EventPhase("grasp", "right", 0, others=[EventPhase("retreat", "left", 0)]), two, True) == \
        "grasp the blue cylinder with the right arm and retreat from the tray with the left arm"
    assert phase_caption(EventPhase("hold", "arm", 0, holds=False), parse_task("put the cube in the tray"),
                         False) == "hold still"


def test_the_captioner_reads_the_runs_segment_config() -> None:
    """The kinematic captioner labels phases with the run's `segment.*` thresholds, not the defaults,
    and the pipeline's Caption step hands it that config."""
    from carve.captioners.kinematic import KinematicCaptioner, caption_episode_events, label_phases
    from carve.core.config import CaptionConfig, SegmentConfig
    from carve.pipeline.steps import Caption

    joints = [(0.0, _j(0, 0, 0, 0)), (1.2, _j(0.8, 0, 0, 0)), (2.0, _j(0.8, 0, 0, 0)),
              (2.8, _j(0.8, 0.6, 0, 0)), (3.4, _j(0.8, 0.6, 0.6, 0)), (5.0, _j(0.8, -0.2, 0.6, 0)),
              (6.0, _j(0.8, -0.2, 0.6, 0)), (7.0, _j(0, 0, 0, 0))]
    grip = [(0.0, _j(1)), (1.3, _j(1)), (1.7, _j(0)), (4.3, _j(0)), (5.8, _j(1))]
    views = _views({"": (joints, grip)}, [1.3, 2.0, 2.8, 3.4, 4.3, 6.0], "put the cube in the tray", 7.4)
    assert label_phases(views) == ["reach", "grasp", "lift", "move", "place", "release", "retreat"]
    # a config under which these joints (at most ~1 rad/s) never count as moving
    still = SegmentConfig(pause_speed_rad_s=5.0, move_speed_rad_s=10.0)
    assert label_phases(views, still) != label_phases(views)
    captioner = Caption(CaptionConfig(), still).stage.captioner
    assert isinstance(captioner, KinematicCaptioner) and captioner.segment is still
    assert [r.caption for r in captioner.caption_episode(views)] == caption_episode_events(views, still)
    assert caption_episode_events(views, still) != caption_episode_events(views)
