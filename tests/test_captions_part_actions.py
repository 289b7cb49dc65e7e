"""Captions that name what the robot does on tasks beyond pick-and-place (issue 25).

* the instruction's verb, object, result and manner (`captioners.task_text`, a documented grammar);
* verb classes of captions and of users' own phase names (`captioners.verb_classes`);
* part actions without a grasp (a drawer pulled open, a button pressed): reach | act [| retreat] from
  the path's last sharp turn, on hand-made Cartesian paths whose phases are known by construction;
* consecutive events with the same caption are numbered with the reason, a retry says so;
* `eval-captions` by verb class, at each event's middle frame, from plain JSON truth with phase names;
* the `metaworld_tasks` corpus item (Meta-World scripted experts written by lerobot 0.4.4; the truth
  is the experts' own sub-goals): verb-class accuracy per task through the real `carve run`, the
  three truth forms agree, and no two consecutive events of an episode share a caption;
* the item `metaworld_heldout` (six more part-action tasks, first captioned after the rules were fixed,
  then looked at for kinematic-v6): every episode captioned, turns and presses named as such, the
  re-approach after a lift-off a reach;
* the second item `metaworld_heldout2` (six tasks used nowhere else, measured once with the captioner
  frozen at kinematic-v6, then looked at for kinematic-v7's vocabulary): its measured score is a floor;
* the third item `metaworld_heldout3` (six more tasks used nowhere else, measured once with the captioner
  frozen at kinematic-v7, then looked at for kinematic-v8): kinematic-v8's score is a floor;
* the fourth item `metaworld_heldout4` (five more tasks used nowhere else, measured once with the
  captioner frozen at kinematic-v8, its misses then named for kinematic-v9): kinematic-v9's score is a floor;
* the fifth held-out item `metaworld_heldout5` (five more tasks used nowhere else, measured once with the
  captioner frozen at kinematic-v9): its measured score is a floor;
* the sixth held-out item `metaworld_heldout6` (five more tasks used nowhere else, not yet captioned): only
  its truth's phase names are checked here;
* the verb table: the verbs real datasets use map to the class their physical meaning gives, every phase
  name of the seven Meta-World sets has a class, and each task's instruction parses to the class of the
  expert phase that carries its verb.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carve.captioners.base import EventView
from carve.captioners.eval import evaluate, format_report
from carve.captioners.event_phase import EventPhase
from carve.captioners.kinematic import caption_episode_events, number_repeats
from carve.captioners.task_text import parse_task
from carve.captioners.verb_classes import lead_verb, verb_class
from carve.cli.main import main

ITEM = Path(__file__).resolve().parent / "corpus" / "metaworld_tasks"
HELDOUT = Path(__file__).resolve().parent / "corpus" / "metaworld_heldout"
HELDOUT2 = Path(__file__).resolve().parent / "corpus" / "metaworld_heldout2"
HELDOUT3 = Path(__file__).resolve().parent / "corpus" / "metaworld_heldout3"
HELDOUT4 = Path(__file__).resolve().parent / "corpus" / "metaworld_heldout4"
HELDOUT5 = Path(__file__).resolve().parent / "corpus" / "metaworld_heldout5"
HELDOUT6 = Path(__file__).resolve().parent / "corpus" / "metaworld_heldout6"
MANISKILL = Path(__file__).resolve().parent / "corpus" / "maniskill_heldout"
MANISKILL2 = Path(__file__).resolve().parent / "corpus" / "maniskill_heldout2"


# ------------------------------------------------------------------------------------- instruction
@pytest.mark.parametrize(
    ("task", "verb", "action", "result", "manner", "objects", "target"),
    [
        ("open the drawer", "open", "pull", "open", "", ["the drawer"], ""),
        ("Close the window.", "close", "push", "closed", "", ["the window"], ""),
        ("turn the faucet on", "turn", "turn", "on", "", ["the faucet"], ""),
        ("turn on the faucet", "turn", "turn", "on", "", ["the faucet"], ""),
        ("press the button from the top", "press", "push", "", "from the top", ["the button"], ""),
        ("insert the peg into the hole from the side", "insert", "insert", "", "from the side", ["the peg"],
         "the hole"),
        ("pull the handle up", "pull", "pull", "up", "", ["the handle"], ""),
        ("pick up the puck and place it at the goal", "pick_up", "lift", "", "", ["the puck"], "the goal"),
        ("wipe the table", "wipe", "wipe", "", "", ["the table"], ""),
        ("wave the flag", "wave", "", "", "", ["the flag"], ""),  # a verb of no class: open vocabulary
        ("lock the door", "lock", "turn", "", "", ["the door"], ""),  # a lock is turned (its key, knob, latch)
        ("slide the plate into the cabinet from the side", "slide", "push", "", "from the side", ["the plate"],
         "the cabinet"),
        ("slide the plate out of the cabinet", "slide", "pull", "", "", ["the plate"], ""),  # a source
        ("pick the nut up off the peg", "pick", "lift", "", "", ["the nut"], ""),  # a particle after the object
        ("flip the pancake onto the plate", "flip", "turn", "", "", ["the pancake"], "the plate"),
        ("hammer the nail into the wall", "hammer", "push", "", "", ["the nail"], "the wall"),  # an impact: a push
        ("kick the ball into the goal", "kick", "push", "", "", ["the ball"], "the goal"),
        ("push the thermos to the goal with the stick", "push", "push", "", "with the stick", ["the thermos"],
         "the goal"),  # the tool is no part of the target
        ("wipe the table using a sponge", "wipe", "wipe", "", "using a sponge", ["the table"], ""),
        ("", "", "", "", "", ["the object"], ""),
    ],
)
def test_instruction_verb_object_result(task: str, verb: str, action: str, result: str, manner: str,
                                        objects: list[str], target: str) -> None:
    p = parse_task(task)
    assert (p.verb, p.action, p.result, p.manner, p.objects, p.target) == (verb, action, result, manner, objects,
                                                                           target)


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        ("pull the drawer open", "pull"), ("slide the window open", "pull"), ("opens the door", "pull"),
        ("open the gripper", "release"), ("close the gripper", "grasp"), ("push the drawer closed", "push"),
        ("the robot presses the button", "push"), ("insert the peg into the hole", "insert"),
        ("turn the faucet handle", "turn"), ("carry the puck to the goal", "lift"), ("move the cube", "lift"),
        ("lift the peg (part 2 of 3 after a pause)", "lift"), ("descend to the peg", "reach"),
        ("move away from the drawer", "retreat"), ("let go of the cube", "release"), ("wave the flag", None),
        ("", None),
    ],
)
def test_verb_classes(text: str, cls: str | None) -> None:
    assert verb_class(text) == cls


def test_open_vocabulary_keeps_its_lemma() -> None:
    assert lead_verb("the left arm waves the flag") == ("wave", 4)
    assert lead_verb("picks up the cup") == ("pick_up", 2)



@pytest.mark.parametrize(("task", "tool", "objects"), [
    ("push the thermos to the goal with the stick", "the stick", ["the thermos"]),
    ("wipe the table using a sponge", "a sponge", ["the table"]),
    ("hammer the nail into the wall", "the hammer", ["the nail"]),  # the verb names its tool
    ("push the block with the gripper", "", ["the block with the gripper"]),  # the robot's own body is no tool
    ("put the red cube in the tray with the left arm", "", ["the red cube"]),
])
def test_the_tool_an_instruction_works_with(task: str, tool: str, objects: list[str]) -> None:
    p = parse_task(task)
    assert (p.tool, p.objects) == (tool, objects)

# ------------------------------------------------------------------------------------- part actions
FPS = 20.0
Keys = list[tuple[float, list[float]]]


def _path(keys: Keys, n: int) -> np.ndarray:
    """(n, 3) hand positions (m): a minimum-jerk move between consecutive keys, at rest on each key."""
    times = np.array([k[0] for k in keys])
    vals = np.array([k[1] for k in keys], float)
    out = np.empty((n, 3))
    for f in range(n):
        t = f / FPS
        i = int(np.searchsorted(times, t, side="right")) - 1
        if i >= len(times) - 1:
            out[f] = vals[-1]
            continue
        s = (t - times[i]) / (times[i + 1] - times[i])
        out[f] = vals[i] + (vals[i + 1] - vals[i]) * (10 * s**3 - 15 * s**4 + 6 * s**5)
    return out


def _views(keys: Keys, bounds_s: list[float], task: str, end_s: float) -> list[EventView]:
    """One single-arm Cartesian episode (x y z in m, a gripper held closed), events cut at `bounds_s`."""
    n = round(end_s * FPS)
    state = np.hstack([_path(keys, n), np.zeros((n, 1))]).astype(np.float32)
    names = ["x", "y", "z", "gripper"]
    cuts = [0, *(round(b * FPS) for b in bounds_s), n]
    return [EventView(episode_id="p", event_index=k, num_events=len(cuts) - 1, task=task, start_frame=s, end_frame=e,
                      fps=FPS, state=state[s:e], action=state[s:e], gripper=state[s:e, 3], state_names=names,
                      action_names=names)
            for k, (s, e) in enumerate(itertools.pairwise(cuts))]


START, OVER, DOWN, PULLED = [0.0, 0.4, 0.3], [0.0, 0.6, 0.3], [0.0, 0.6, 0.12], [0.0, 0.45, 0.12]


def test_drawer_pull_is_the_action_not_a_retreat() -> None:
    # over the handle, down onto it, pull it back toward the robot, rest: the pull is the episode's action
    views = _views([(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, PULLED)], [0.6, 1.0], "open the drawer", 2.4)
    assert caption_episode_events(views) == [
        "reach toward the drawer",
        "reach toward the drawer (part 2 of 2)",  # the descent onto the handle: the same reach, numbered
        "pull the drawer open",
    ]



def _press_views(command_in_rest: float, action_names: list[str]) -> list[EventView]:
    """Reach over a button, press it down 6 cm, rest on it for 0.6 s; the actions are the per-frame command
    (x y z steps of 1 cm per unit, then the grip): during the rest `command_in_rest` (units along -z)."""
    keys = [(0.0, START), (0.8, OVER), (1.2, [0.0, 0.6, 0.24]), (1.5, [0.0, 0.6, 0.18])]
    n = round(2.1 * FPS)
    pos = _path(keys, n)
    step = np.diff(pos, axis=0, append=pos[-1:]) / 0.01  # the command that made each step
    rest = round(1.5 * FPS)
    step[rest:] = [0.0, 0.0, -command_in_rest]  # the hand no longer follows: the button has bottomed out
    action = np.hstack([step, np.full((n, 1), -1.0)]).astype(np.float32)
    state = np.hstack([pos, np.ones((n, 1))]).astype(np.float32)
    cuts = [0, round(0.8 * FPS), round(1.2 * FPS), rest, n]
    return [EventView(episode_id="b", event_index=k, num_events=len(cuts) - 1, task="press the button down",
                      start_frame=s, end_frame=e, fps=FPS, state=state[s:e], action=action[s:e],
                      gripper=state[s:e, 3], state_names=["x", "y", "z", "gripper"], action_names=action_names)
            for k, (s, e) in enumerate(itertools.pairwise(cuts))]


def test_a_rest_against_the_button_with_the_command_still_pressing_is_the_press() -> None:
    """Rule 11: delta actions that keep asking the hand down (0.5 units = 0.1 m/s at 20 fps, above the moving
    speed) while it rests on the bottomed-out button: the press goes on. A command that has stopped, or
    actions that are positions (no delta names), leave the rest a hold."""
    delta = ["dx", "dy", "dz", "grip_effort"]
    pressed = caption_episode_events(_press_views(0.5, delta))
    assert pressed[-1].startswith("press the button down"), pressed
    stopped = caption_episode_events(_press_views(0.0, delta))
    assert stopped[-1] == "hold still", stopped
    absolute = caption_episode_events(_press_views(0.5, ["x", "y", "z", "grip_effort"]))
    assert absolute[-1] == "hold still", absolute

def test_a_last_leg_back_to_the_start_is_the_retreat() -> None:
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, PULLED), (3.0, START)]
    views = _views(keys, [0.6, 1.0, 2.0], "open the drawer", 3.4)
    caps = caption_episode_events(views)
    assert caps[2] == "pull the drawer open" and caps[3] == "retreat from the drawer"


def test_button_pressed_from_the_top() -> None:
    keys = [(0.0, START), (0.8, [0.1, 0.6, 0.3]), (1.4, [0.1, 0.6, 0.22])]
    views = _views(keys, [0.8], "press the button from the top", 1.8)
    assert caption_episode_events(views) == ["reach toward the button", "press the button"]


def test_button_pressed_from_the_top_then_left_upward() -> None:
    # down onto the button, then up off it (not back to the start): the press is the action, the rise a retreat
    keys = [(0.0, START), (0.8, [0.1, 0.6, 0.3]), (1.4, [0.1, 0.6, 0.22]), (2.0, [0.1, 0.6, 0.32])]
    views = _views(keys, [0.8, 1.4], "press the button from the top", 2.4)
    assert caption_episode_events(views) == ["reach toward the button", "press the button", "retreat from the button"]


def test_faucet_turned_sideways_then_left_upward() -> None:
    # over the handle, down onto it, sideways along its arc, then up off it: the sideways leg is the turn
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, [0.15, 0.6, 0.12]), (2.6, [0.15, 0.6, 0.27])]
    views = _views(keys, [0.6, 1.0, 2.0], "turn the faucet on", 3.0)
    assert caption_episode_events(views)[2:] == ["turn the faucet on", "retreat from the faucet"]


def _classes(views: list[EventView]) -> list[str | None]:
    return [verb_class(c) for c in caption_episode_events(views)]


def test_a_lift_off_that_comes_back_down_to_the_part_is_a_re_approach() -> None:
    # turned, up off the handle, then back down toward it: the hand left to come at the part again (a reach
    # between two interactions with it), not the retreat that ends an episode (held-out dial-turn's miss)
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, [0.15, 0.6, 0.12]), (2.6, [0.15, 0.6, 0.27]),
            (3.2, [0.12, 0.6, 0.15])]
    views = _views(keys, [0.6, 1.0, 2.0, 2.6], "turn the faucet on", 3.6)
    assert _classes(views)[2:] == ["turn", "reach", "reach"]


def test_a_short_turn_before_the_lift_off_starts_the_action() -> None:
    # a long descent onto a dial, a short turn of it (3 cm, under a fifth of the path), a rise off it: the
    # descent is still the approach and the short sideways leg the turn (held-out dial-turn's other miss)
    keys = [(0.0, START), (0.6, OVER), (1.2, DOWN), (1.5, [0.03, 0.6, 0.12]), (2.2, [0.03, 0.6, 0.3])]
    views = _views(keys, [0.6, 1.2, 1.5], "turn the dial", 2.6)
    assert _classes(views) == ["reach", "reach", "turn", "retreat"]


def test_one_motion_without_any_change_is_the_action() -> None:
    # the segmenter found no boundary and the path no sharp turn: the episode is one motion, the task's own
    # (held-out door-close: the hand pushes the door from the first frame); never captioned as a reach
    views = _views([(0.0, [0.0, 0.6, 0.12]), (1.5, [-0.15, 0.55, 0.12])], [], "close the door", 1.5)
    assert caption_episode_events(views) == ["push the door closed"]


def test_a_press_along_one_straight_line_has_no_turn_to_lift_off_from() -> None:
    # one straight push into the button (no sharp turn at all): the two-piece fit, no lift-off to look for
    views = _views([(0.0, START), (1.2, [0.0, 0.6, 0.3])], [0.6], "press the button", 1.2)
    assert caption_episode_events(views) == ["reach toward the button", "press the button"]


def test_a_lid_pulled_up_open_keeps_its_rise_as_the_action() -> None:
    # a pull may lift the part: the rise after the descent is the action, not a retreat
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, [0.0, 0.6, 0.3])]
    views = _views(keys, [0.6, 1.0], "open the lid", 2.4)
    assert caption_episode_events(views)[-1] == "pull the lid open"


def test_closing_a_window_pushes_it_closed() -> None:
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, [-0.15, 0.6, 0.12])]
    views = _views(keys, [0.6, 1.0], "close the window", 2.4)
    assert caption_episode_events(views)[-1] == "push the window closed"


def test_pick_and_place_words_stay() -> None:
    # without a part action the same path keeps the pick-and-place vocabulary (no grasp: reach, move, retreat)
    views = _views([(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, PULLED)], [0.6, 1.0], "put the cube in the tray", 2.4)
    assert all(c.split()[0] in ("reach", "move", "retreat", "hold") for c in caption_episode_events(views))


def _views_grip(keys: Keys, bounds_s: list[float], task: str, end_s: float,
                opening: list[tuple[float, float]]) -> list[EventView]:
    """As `_views`, with a gripper opening (1 open, 0 closed) that steps to each value at its time (s)."""
    views = _views(keys, bounds_s, task, end_s)
    for v in views:
        g = np.ones(v.end_frame - v.start_frame, np.float32)
        for t, val in opening:
            g[max(0, round(t * FPS) - v.start_frame) :] = val if round(t * FPS) < v.end_frame else g[0]
        v.state[:, 3] = g
        v.gripper = v.state[:, 3]
    return views



def test_a_tool_is_grasped_carried_to_the_part_then_worked_with() -> None:
    """Rule 12: down onto the stick, close on it, carry it up and over to the thermos (a sharp turn), then push
    along +x: the carry is the tool's lift, the push from the turn on is the action, and the grasp and the carry
    name the tool, the action the object and the tool. Without the tool phrase the held stretch is all the
    action (rule 8), as before."""
    keys = [(0.0, [0.0, 0.4, 0.2]), (0.6, [0.0, 0.5, 0.05]), (1.0, [0.0, 0.5, 0.05]),  # reach down, grasp
            (1.6, [0.0, 0.5, 0.2]), (2.2, [-0.2, 0.7, 0.2]),  # up, then over to the thermos
            (3.2, [0.15, 0.7, 0.2])]  # push it along +x
    views = _views_grip(keys, [0.6, 1.0, 2.2], "push the thermos to the goal with the stick", 3.5, [(0.65, 0.0)])
    assert caption_episode_events(views) == ["reach toward the thermos", "grasp the stick", "lift the stick",
                                             "push the thermos with the stick"]
    plain = _views_grip(keys, [0.6, 1.0, 2.2], "push the thermos to the goal", 3.5, [(0.65, 0.0)])
    caps = caption_episode_events(plain)
    assert caps[1] == "grasp the thermos" and [verb_class(c) for c in caps[2:]] == ["push", "push"], caps


def test_a_reach_instruction_is_all_reach() -> None:
    """An instruction whose verb is a reach, no grasp: the motion over the wall and down to the goal is the reach,
    not a carry of "the goal"."""
    keys = [(0.0, [0.0, 0.4, 0.2]), (0.8, [0.0, 0.6, 0.35]), (1.6, [0.0, 0.8, 0.15])]
    caps = caption_episode_events(_views(keys, [0.8], "reach the goal behind the wall", 2.0))
    assert [verb_class(c) for c in caps] == ["reach", "reach"], caps

def test_a_fist_that_only_opens_holds_nothing() -> None:
    # the fingers closed from the first frame (a fist), over a wall, down in front of the button, then open as
    # the hand presses forward: nothing was picked up, so nothing is lifted, placed or released (rule 7)
    keys = [(0.0, [0.0, 0.4, 0.2]), (0.6, [0.0, 0.55, 0.3]), (1.2, [0.0, 0.62, 0.15]), (2.2, [0.0, 0.75, 0.15])]
    views = _views_grip(keys, [0.6, 1.2], "press the button behind the wall", 2.6, [(0.0, 0.0), (1.2, 1.0)])
    caps = caption_episode_events(views)
    assert not [c for c in caps if verb_class(c) in ("lift", "place", "release")], caps
    assert verb_class(caps[-1]) == "push" and verb_class(caps[0]) == "reach"


def test_a_grasped_handle_pulled_is_the_pull_not_a_carry() -> None:
    # over the handle, down onto it, the fingers close on it, the drawer pulled toward the robot while held
    # (rule 8): a pull, the same as without the grasp
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (1.4, DOWN), (2.4, PULLED)]
    views = _views_grip(keys, [0.6, 1.0, 1.4], "open the drawer", 2.8, [(1.0, 0.0)])
    assert _classes(views) == ["reach", "reach", "grasp", "pull"]


def test_a_part_worked_in_two_strokes_is_acted_twice() -> None:
    # down to the plate, a level stroke, up off it, back down, a second level stroke (rule 9): both strokes
    # are the action, the rise and the descent between them a re-approach
    low, high = 0.07, 0.11
    keys = [(0.0, [0.0, 0.6, 0.2]), (0.5, [0.0, 0.68, low]), (1.0, [0.08, 0.6, low]), (1.4, [0.06, 0.55, high]),
            (1.8, [0.04, 0.55, low]), (2.8, [-0.2, 0.55, low])]
    views = _views(keys, [0.5, 1.0, 1.4, 1.8], "slide the plate out of the cabinet", 3.0)
    assert _classes(views) == ["reach", "pull", "reach", "reach", "pull"]


def test_fingers_closing_on_the_way_down_are_the_grasp() -> None:
    # the fingers start to close early on the way down to the cube, while the hand still speeds up; the rest
    # of the descent is the grasp (the hand closes in on the object), not a lift; then up and across with it
    keys = [(0.0, [0.0, 0.55, 0.3]), (1.0, [0.0, 0.6, 0.05]), (2.0, [0.0, 0.6, 0.2]), (3.0, [0.2, 0.6, 0.2])]
    views = _views_grip(keys, [0.3, 1.0, 2.0], "pick up the cube", 3.0, [(0.3, 0.0)])
    assert _classes(views)[1] == "grasp"


# ------------------------------------------------------------------------------------- repeats
def test_consecutive_equal_captions_are_numbered_with_the_reason_and_a_retry_says_so() -> None:
    caps = ["reach toward the peg", "reach toward the peg", "grasp the peg", "grasp the peg", "lift the peg",
            "lift the peg", "lift the peg"]
    phases = [EventPhase("reach", "arm", 0), EventPhase("reach", "arm", 0), EventPhase("grasp", "arm", 0),
              EventPhase("grasp", "arm", 1), EventPhase("lift", "arm", 1), EventPhase("lift", "arm", 1),
              EventPhase("lift", "arm", 1)]
    reasons = ["episode_start", "pause", "gripper_close", "gripper_close", "motion_start", "speed_change", "max_len"]
    assert number_repeats(caps, phases, reasons) == [
        "reach toward the peg",
        "reach toward the peg (part 2 of 2 after a pause)",
        "grasp the peg",
        "grasp the peg again (retry)",  # a new grasp cycle of the same phase: the data shows a retry
        "lift the peg",
        "lift the peg (part 2 of 3 after a change of speed)",
        "lift the peg (part 3 of 3 continued)",
    ]


# ------------------------------------------------------------------------------------- scoring
PLAIN_TRUTH = [{"episode_index": 0, "boundaries": [10, 20], "length": 40, "task_type": "drawer-open",
                "phases": ["move above the handle", "descend to the handle", "pull the drawer open"]}]


def test_class_scoring_reads_users_own_phase_names_at_the_middle_frame() -> None:
    from carve.ingest.truth import _from_json

    truth = _from_json(PLAIN_TRUTH, "plain.json")
    events = [
        # the approach overlaps "move above" and the descent 10 frames each (a tie: the earlier, "move above" ->
        # lift class, a user's name taken at its word); its middle frame (11) is in the descent (reach class)
        {"episode_index": 0, "start_frame": 0, "end_frame": 24, "caption": "approach the drawer"},
        {"episode_index": 0, "start_frame": 24, "end_frame": 32, "caption": "slides the drawer open"},
        {"episode_index": 0, "start_frame": 32, "end_frame": 40, "caption": "wiggle the drawer"},
    ]
    mid = evaluate(events, truth, at="middle")
    assert (mid["class_correct"], mid["class_events"]) == (2, 3)
    assert mid["class_confusion"] == {"reach": {"reach": 1}, "pull": {"pull": 1, "(open)": 1}}
    assert mid["open_vocabulary"] == {"wiggle": 1}
    assert mid["per_task_class"] == {"drawer-open": {"events": 3, "accuracy": pytest.approx(2 / 3)}}
    over = evaluate(events, truth, at="overlap")
    assert over["class_correct"] == 1 and over["class_confusion"]["lift"] == {"reach": 1}
    text = format_report(mid)
    assert "caption verb-class accuracy: 66.7% (2/3" in text and "middle frame" in text
    assert "open-vocabulary caption verbs: wiggle (1)" in text


def test_cli_scores_a_plain_truth_without_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_captioners_eval import PHASES, _write_catalog

    root = tmp_path / "root"
    _write_catalog(root, ["reach toward the cube", "grasp the cube", "pick up the cube", "press the cube"])
    ends = [p["end"] for p in PHASES]
    plain = [{"episode_index": 0, "boundaries": ends[:-1],  # no length: the catalog's last event gives it
              "phases": ["approach the cube", "grab the cube", "carry the cube", "put down the cube"]}]
    gt = tmp_path / "plain.json"
    gt.write_text(json.dumps(plain))
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--at", "middle", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["class_correct"], rep["class_events"], rep["unmatched_events"]) == (3, 4, 0)
    assert rep["class_confusion"]["place"] == {"push": 1}
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-class-accuracy", "0.8"]) == 1
    assert main(["eval-captions", "--root", str(root), "--truth", str(gt), "--min-class-accuracy", "0.7"]) == 0


# ------------------------------------------------------------------------------------- the corpus item
NON_PICK_TARGET, PICK_TARGET = 0.9, 0.95
PICK_PLACE = {"pick-place-v3"}
# measured and reported in BENCHMARKS.md: after turning the handle the expert rises off it and hovers to
# re-approach the handle that has moved away ("reach above the faucet handle", its sub-goal); the hand
# leaves the part upward, which the captioner calls a retreat
KNOWN_BELOW = {"faucet-open-v3"}


def _repeated_captions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events whose next event, in the same episode, has the same caption (rows in episode and time order)."""
    return [a for a, b in itertools.pairwise(rows)
            if a["episode_index"] == b["episode_index"] and a["caption"] == b["caption"]]


def _run_item(root: Path, item: Path, forms: tuple[str, ...]) -> dict[str, Any]:
    """The real `carve run` on a corpus item, `eval-captions --at middle` against each truth form, the rows."""
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--source", str(item / "dataset"), "--root", str(root), "--no-shard",
                     "--set", f"source.dataset={item.name}", "--set", "ray.progress=false",
                     "--set", "ray.num_cpus=2", "--set", "ray.object_store_memory_mb=256"])
    assert code == 0, err.getvalue()[-3000:]
    reports = {}
    for form in forms:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["eval-captions", "--root", str(root), "--truth", str(item / form), "--at", "middle",
                         "--json"]) == 0
        reports[form] = json.loads(buf.getvalue())
    with open_root(str(root)) as r:
        rows = read_events(r, columns=["episode_index", "event_index", "caption"]).to_pylist()
    return {"reports": reports, "rows": sorted(rows, key=lambda x: (x["episode_index"], x["event_index"])),
            "root": root}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-tasks") / "root", ITEM,
                     ("truth_carve.json", "truth_all.json", "dataset"))


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-heldout") / "root", HELDOUT, ("truth_carve.json",))


def test_corpus_verb_classes_per_task(corpus: dict[str, Any]) -> None:
    rep = corpus["reports"]["truth_carve.json"]
    tasks = rep["per_task_class"]
    assert rep["unmatched_events"] == 0 and rep["unclassified_events"] == 0
    assert {"door-open-v3", "drawer-close-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
            "faucet-open-v3", "button-press-v3", "pick-place-v3"} == set(tasks)
    for task, s in tasks.items():
        if task in KNOWN_BELOW:
            continue
        target = PICK_TARGET if task in PICK_PLACE else NON_PICK_TARGET
        assert s["accuracy"] >= target, (task, s, rep["class_confusion"])
    # issue 25's failure modes: a pull or a push as a retreat, an insertion as a placement, a grasp as a lift
    conf = rep["class_confusion"]
    assert conf["pull"].get("retreat", 0) == 0 and conf["push"].get("retreat", 0) == 0
    assert conf["insert"].get("place", 0) == 0 and conf["grasp"].get("lift", 0) == 0
    assert set(conf["turn"]) == {"turn"}  # the faucet's turn is found (it was captioned "reach" before)


def test_heldout_tasks_every_episode_captioned_and_every_turn_found(heldout: dict[str, Any]) -> None:
    # six part-action tasks first captioned after the rules were fixed (BENCHMARKS.md: the target is not met
    # there); what must hold: every episode captioned, the turns and presses named as such, none a retreat
    rep = heldout["reports"]["truth_carve.json"]
    assert rep["unmatched_events"] == 0 and rep["unclassified_events"] == 0
    assert {r["episode_index"] for r in heldout["rows"]} == set(range(18))
    conf = rep["class_confusion"]
    assert set(conf["turn"]) == {"turn"} and conf["turn"]["turn"] >= 6
    assert conf["push"].get("retreat", 0) == 0 and conf["push"]["push"] >= 10
    for task in ("button-press-topdown-v3", "coffee-button-v3", "dial-turn-v3"):
        assert rep["per_task_class"][task]["accuracy"] >= NON_PICK_TARGET, (task, rep["per_task_class"])
    # the fixes measured on this item after it was looked at (BENCHMARKS.md): dial-turn's re-approach after
    # the turn is a reach (8 events were "retreat") and its short turn starts the action; handle-press's slip
    # after the press is no new start of it; what is left: faucet-close's rise off the handle at the end
    # (3 events the expert calls "reach above"), door-close's flickering truth, one press with no reach
    assert conf["reach"].get("retreat", 0) <= 3 and conf["reach"].get("turn", 0) == 0
    assert rep["per_task_class"]["handle-press-v3"]["accuracy"] >= 8 / 9 - 1e-9
    assert rep["class_correct"] >= 43, rep["class_correct"]
    assert not _repeated_captions(heldout["rows"])


@pytest.fixture(scope="module")
def heldout2(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-heldout2") / "root", HELDOUT2, ("truth_carve.json",))


def test_second_heldout_set_keeps_its_measured_score(heldout2: dict[str, Any]) -> None:
    # measured once with the captioner frozen at kinematic-v6 (BENCHMARKS.md: 38 of 67 events, the target not
    # met), then looked at for kinematic-v7 (46 of 67); a later rule may raise it, never lower it: every episode
    # captioned, the grasps found, no repeats
    rep = heldout2["reports"]["truth_carve.json"]
    assert rep["unmatched_events"] == 0 and rep["unclassified_events"] == 0
    assert {r["episode_index"] for r in heldout2["rows"]} == set(range(18))
    assert rep["class_correct"] >= 46, (rep["class_correct"], rep["class_confusion"])
    # the truth's "slide the plate into the cabinet" is a push (the slide's words), as the hand's motion is
    assert rep["class_confusion"].get("pull", {}).get("push", 0) == 0
    assert rep["class_confusion"]["grasp"].get("grasp", 0) >= 2
    assert not _repeated_captions(heldout2["rows"])


@pytest.fixture(scope="module")
def heldout3(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-heldout3") / "root", HELDOUT3, ("truth_carve.json",))


def test_third_heldout_set_keeps_its_measured_score(heldout3: dict[str, Any]) -> None:
    # measured once with the captioner frozen at kinematic-v7 (BENCHMARKS.md: 36 of 67 events, the target met on
    # plate-slide-side only), then looked at for kinematic-v8 (60 of 67), kinematic-v9 (62 of 67: rule 10 finds
    # sweep-into's two re-grasps) and kinematic-v10 (64 of 67: rule 11, hand-insert's block pressed into its hole);
    # a later rule may raise it, never lower it: every episode captioned, every truth phase classed, the grasps
    # found, no repeats
    rep = heldout3["reports"]["truth_carve.json"]
    assert rep["unmatched_events"] == 0 and rep["unclassified_events"] == 0
    assert {r["episode_index"] for r in heldout3["rows"]} == set(range(18))
    assert rep["class_correct"] >= 64, (rep["class_correct"], rep["class_confusion"])
    assert rep["class_confusion"]["grasp"].get("grasp", 0) >= 10
    # nothing in this set is lifted, placed or released where the expert pushes, presses or slides (a fist,
    # a mug held while pushed: the expert's own phases, not Carve's)
    for cls in ("push", "pull"):
        row = rep["class_confusion"].get(cls, {})
        assert not {k: v for k, v in row.items() if k in ("lift", "place", "release")}, (cls, row)
    assert not _repeated_captions(heldout3["rows"])


@pytest.fixture(scope="module")
def heldout4(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-heldout4") / "root", HELDOUT4, ("truth_carve.json",))


def test_fourth_heldout_set_keeps_its_measured_score(heldout4: dict[str, Any]) -> None:
    # measured once with the captioner frozen at kinematic-v8 (BENCHMARKS.md: 50 of 59 events, the target met on
    # coffee-pull only), its misses then named for kinematic-v9 (50 of 59: no longer held out); a later rule may
    # raise it, never lower it: every
    # episode captioned, every truth phase classed, the grasps found, the pulls named, no repeats
    conf = _measured_set(heldout4, 15, 50)
    assert conf["grasp"].get("grasp", 0) >= 5  # every episode grasps (its expert closes)
    assert conf["pull"].get("pull", 0) >= 12  # the four pull tasks: 3 episodes each


def _measured_set(data: dict[str, Any], episodes: int, floor: int) -> dict[str, dict[str, int]]:
    """What every measured set keeps: every episode captioned, every truth phase classed, at least `floor`
    events right by class, no two consecutive events of an episode with the same caption; its class confusions."""
    rep = data["reports"]["truth_carve.json"]
    assert rep["unmatched_events"] == 0 and rep["unclassified_events"] == 0
    assert {r["episode_index"] for r in data["rows"]} == set(range(episodes))
    assert rep["class_correct"] >= floor, (rep["class_correct"], rep["class_confusion"])
    assert not _repeated_captions(data["rows"])
    return rep["class_confusion"]


@pytest.fixture(scope="module")
def heldout5(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-heldout5") / "root", HELDOUT5, ("truth_carve.json",))


def test_fifth_heldout_set_keeps_its_measured_score(heldout5: dict[str, Any]) -> None:
    # measured once with the captioner frozen at kinematic-v9 (BENCHMARKS.md: 53 of 60 events, the target met on
    # push-wall and plate-slide-back-side), then looked at for kinematic-v10 (55 of 60: rule 11, the button kept
    # pressed); a later rule may raise it, never lower it: the grasps found, the pushes and the pull named,
    # nothing pushed or pulled captioned as a carry or placement
    conf = _measured_set(heldout5, 15, 55)
    assert conf["grasp"].get("grasp", 0) >= 9  # pick-place-wall, push-wall, sweep: the experts close
    assert conf["push"].get("push", 0) >= 14 and conf["pull"].get("pull", 0) >= 3
    for cls in ("push", "pull"):
        assert not {k: v for k, v in conf.get(cls, {}).items() if k in ("lift", "place")}, (cls, conf.get(cls))


@pytest.fixture(scope="module")
def heldout6(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("metaworld-heldout6") / "root", HELDOUT6, ("truth_carve.json",))


def test_sixth_heldout_set_keeps_its_measured_score(heldout6: dict[str, Any]) -> None:
    # measured once with the captioner frozen at kinematic-v10 (BENCHMARKS.md: 29 of 55 events, the target met on
    # no task: a tool's carry is captioned as the tool's work), then looked at for kinematic-v11 (44 of 55, in
    # sample: rule 12); a later rule may raise it, never lower it: the grasps of the hammer and the stick found,
    # the tools' carries and the pulls with the stick named
    conf = _measured_set(heldout6, 15, 44)
    assert conf["grasp"].get("grasp", 0) >= 8 and conf["pull"].get("pull", 0) >= 5, conf
    assert conf["lift"].get("lift", 0) >= 12, conf  # the tools' carries (rule 12), 17 of them


@pytest.fixture(scope="module")
def maniskill(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("maniskill-heldout") / "root", MANISKILL, ("truth_carve.json",))


def test_maniskill_heldout_set_keeps_its_measured_score(maniskill: dict[str, Any]) -> None:
    # another third-party simulator (ManiSkill 3's motion-planning solutions), measured once with the captioner
    # frozen at kinematic-v11 before its tasks were chosen (BENCHMARKS.md: 54 of 60 events): the hook tool's
    # grasp, carry and pull found (rule 12 on a simulator it was not written on), the releases named; then, in
    # sample, kinematic-v12 with the segmenter of 2026-12-06 (69 of 71): the peg turned upright in place is an
    # event and a turn in every LiftPegUpright episode (the segmenter's turns_in_place, rule 13), and the slow
    # planned moves after a stop start events (PushCube's push, the hook's carry down)
    conf = _measured_set(maniskill, 13, 69)
    assert conf["grasp"].get("grasp", 0) >= 10 and conf["lift"].get("lift", 0) >= 10, conf
    assert conf["pull"].get("pull", 0) >= 2 and conf["release"].get("release", 0) >= 6, conf
    assert conf["turn"].get("turn", 0) >= 3 and conf["push"].get("push", 0) >= 3, conf


def test_maniskill_heldout_set_keeps_its_boundaries(maniskill: dict[str, Any]) -> None:
    # boundary F1 at +-0.1 s against the planner calls (phases >= 0.15 s): 0.426 held out (cc028a3), then in
    # sample 0.870 (command-led onsets), 0.930 (turns in place), 0.975 (slow moves after a stop: 58 hits, 0
    # false, 3 missed, the 3 PushCube gripper closings at frame 6); a later rule may raise it, never lower it
    o = _boundaries(maniskill["root"], MANISKILL / "truth.json")
    assert o["boundary_tp"] >= 58 and o["boundary_fp"] == 0, o


def _boundaries(root: Path, truth: Path) -> dict[str, Any]:
    """`carve eval-segments --tolerance-s 0.1 --json`'s overall scores of `root` against `truth`."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["eval-segments", "--root", str(root), "--truth", str(truth), "--tolerance-s", "0.1",
                     "--json"]) == 0
    return json.loads(buf.getvalue())["overall"]


@pytest.fixture(scope="module")
def maniskill2(tmp_path_factory: pytest.TempPathFactory, ray_local: Any) -> dict[str, Any]:
    return _run_item(tmp_path_factory.mktemp("maniskill-heldout2") / "root", MANISKILL2, ("truth_carve.json",))


def test_second_maniskill_heldout_set_keeps_its_measured_score(maniskill2: dict[str, Any]) -> None:
    # four more ManiSkill 3 solutions, measured once with the captioner (kinematic-v12) and the segmenter as they
    # stood when the tasks were chosen (c85676e; BENCHMARKS.md: 29 of 30 events); a later rule may raise it,
    # never lower it: the grasps and the release found, the fist's pull named a pull, the carries a lift and
    # the sphere's placement a place
    conf = _measured_set(maniskill2, 9, 29)
    assert conf["grasp"].get("grasp", 0) >= 6 and conf["lift"].get("lift", 0) >= 5, conf
    assert conf["pull"].get("pull", 0) >= 3 and conf["place"].get("place", 0) >= 1, conf
    assert conf["release"].get("release", 0) >= 1 and conf["reach"].get("reach", 0) >= 13, conf


def test_second_maniskill_heldout_set_keeps_its_boundaries(maniskill2: dict[str, Any]) -> None:
    # boundary F1 at +-0.1 s against the planner calls: 0.857 held out (21 hits, 0 false, 7 missed: the 3
    # empty-gripper closings before PullCube's reach, the 2 PlugCharger insertions, 2 PickCube descents)
    o = _boundaries(maniskill2["root"], MANISKILL2 / "truth.json")
    assert o["boundary_tp"] >= 21 and o["boundary_fp"] == 0, o


@pytest.mark.parametrize("item", [ITEM, HELDOUT, HELDOUT2, HELDOUT3, HELDOUT4, HELDOUT5, HELDOUT6, MANISKILL,
                                  MANISKILL2],
                         ids=lambda p: p.name)
def test_every_expert_phase_name_has_a_verb_class(item: Path) -> None:
    # the truth is scored by class: a phase name in no class could never be matched
    names = {p for ep in json.loads((item / "truth_all.json").read_text()) for p in ep["phases"]}
    assert not [n for n in names if verb_class(n) is None]


# each task's own action: the name of its expert's arm that moves the part or object (the READMEs' task tables,
# from the policies' source) and the class that motion is (what the hand does, not what Carve says)
TASK_ACTION = {"door-lock-v3": ("turn the lock", "turn"), "door-unlock-v3": ("turn the lock", "turn"),
               "plate-slide-v3": ("slide the plate into the cabinet", "push"),
               "plate-slide-side-v3": ("slide the plate into the cabinet", "push"),
               "plate-slide-back-v3": ("slide the plate out of the cabinet", "pull"),
               "sweep-into-v3": ("sweep the cube into the hole", "push"),
               "coffee-push-v3": ("push the mug under the coffee machine", "push"),
               "button-press-wall-v3": ("press the button", "push"), "lever-pull-v3": ("pull the lever up", "pull"),
               "handle-press-side-v3": ("press the handle down", "push"),
               # the fourth set (its README: from the policies' source and the envs' object and goal ranges)
               "coffee-pull-v3": ("pull the mug out from under the coffee machine", "pull"),
               "push-back-v3": ("pull the puck back to the goal", "pull"),  # the goal is nearer the robot
               "handle-pull-side-v3": ("pull the handle up", "pull"), "peg-unplug-side-v3": ("unplug the peg", "pull"),
               "disassemble-v3": ("lift the nut off the peg", "lift"),
               # the fifth set (its README, likewise)
               "pick-place-wall-v3": ("carry the puck to the goal", "lift"),
               "push-wall-v3": ("push the puck to the goal", "push"),
               "sweep-v3": ("sweep the cube off the table", "push"),
               "plate-slide-back-side-v3": ("slide the plate out of the cabinet", "pull"),
               "button-press-topdown-wall-v3": ("press the button down", "push"),
               # the sixth set (its README, likewise): an impact is a push, a tool's work its action
               "hammer-v3": ("knock the nail into the wall", "push"),
               "stick-push-v3": ("push the thermos to the goal with the stick", "push"),
               "stick-pull-v3": ("pull the thermos to the goal with the stick", "pull"),
               "soccer-v3": ("push the ball into the goal", "push"), "reach-wall-v3": ("reach the goal", "reach")}


@pytest.mark.parametrize("item", [HELDOUT2, HELDOUT3, HELDOUT4, HELDOUT5, HELDOUT6], ids=lambda p: p.name)
def test_each_instruction_parses_to_the_class_of_its_experts_action(item: Path) -> None:
    seen = set()
    for ep in json.loads((item / "truth_all.json").read_text()):
        if ep["task_type"] not in TASK_ACTION:
            continue
        name, cls = TASK_ACTION[ep["task_type"]]
        assert parse_task(ep["task"]).action == cls, ep["task"]
        assert verb_class(name) == cls, name
        seen.add(ep["task_type"])
    assert len(seen) == 5


def test_corpus_truth_forms_agree(corpus: dict[str, Any]) -> None:
    keys = ("class_correct", "class_events", "unmatched_events", "class_confusion")
    first = corpus["reports"]["truth_carve.json"]
    for form, rep in corpus["reports"].items():
        assert {k: rep[k] for k in keys} == {k: first[k] for k in keys}, form


def test_corpus_no_two_consecutive_events_share_a_caption(corpus: dict[str, Any]) -> None:
    # Meta-World's experts grasp once per episode: no retry, so no caption may repeat on the next event
    rows = corpus["rows"]
    same = [(a["episode_index"], a["caption"]) for a, b in itertools.pairwise(rows)
            if a["episode_index"] == b["episode_index"] and a["caption"] == b["caption"]]
    assert not same, same
    assert any("(part 2 of" in r["caption"] for r in rows)  # the repeats that were there are numbered


# ------------------------------------------------------------------------------------- the verb table
# Each verb's class from what it means physically (verb_classes' module doc), not from any caption.
@pytest.mark.parametrize(
    ("text", "cls"),
    [
        # a lock is locked and unlocked by turning its key, knob or latch
        ("lock the door", "turn"), ("unlock the door", "turn"), ("twist the cap off", "turn"),
        ("flip the pancake", "turn"), ("crank the handle", "turn"), ("rotate the valve", "turn"),
        # a slide's direction is in the words after it: away from the hand / into something is a push ...
        ("slide the plate into the cabinet", "push"), ("slide the drawer closed", "push"),
        ("slide the block forward", "push"), ("slide the tray under the shelf", "push"),
        # ... toward the hand's side a pull; a slide with neither keeps the pull class ("slide the window open")
        ("slide the plate out of the cabinet", "pull"), ("slide the window open", "pull"),
        ("slide the box toward the robot", "pull"), ("slide the block to the left", "pull"),
        ("unplug the charger", "pull"), ("pull out the drawer", "pull"), ("drag the box", "pull"),
        ("knock over the cup", "push"), ("tip over the bottle", "push"), ("sweep the crumbs into the bin", "push"),
        ("switch on the lamp", "push"), ("poke the sponge", "push"),
        ("plug in the charger", "insert"), ("insert the key", "insert"),
        ("hang the mug on the rack", "place"), ("stack the cups", "place"), ("put the cup down", "place"),
        ("hand it over", "lift"), ("hand the cup over to the person", "lift"), ("scoop the beans", "lift"),
        ("take out the bread", "lift"), ("remove the lid", "lift"),
        ("pour the water into the glass", "pour"), ("tilt the cup", "pour"), ("tip the bottle", "pour"),
        ("wipe the table", "wipe"), ("stir the soup", "wipe"), ("scrub the pan", "wipe"),
        ("fold the towel", "fold"), ("unfold the shirt", "fold"),
    ],
)
def test_verb_table_maps_real_dataset_verbs(text: str, cls: str) -> None:
    assert verb_class(text) == cls


def test_every_class_verb_is_in_one_class_only() -> None:
    from carve.captioners.verb_classes import CLASSES

    verbs = [v for vs in CLASSES.values() for v in vs]
    assert len(verbs) == len(set(verbs))


@pytest.mark.parametrize(
    ("task", "caption"),
    [
        ("lock the door", "lock the door"),  # the instruction's own verb of the class is kept
        ("slide the plate out of the cabinet", "pull the plate out of the cabinet"),  # never a bare "slide"
        ("wipe the table", "wipe the table"),
    ],
)
def test_act_caption_keeps_the_class(task: str, caption: str) -> None:
    from carve.captioners.templates import act_caption

    p = parse_task(task)
    got = act_caption(p, p.obj(0))
    assert got == caption and verb_class(got) == verb_class(task)


def test_a_slide_toward_the_hand_is_no_push_task() -> None:
    assert parse_task("slide the plate out of the cabinet").is_push is False
    assert parse_task("slide the plate into the cabinet").is_push is True


# ------------------------------------------------------------------------------------- undirected slides
@pytest.mark.parametrize(
    ("end", "cls"),
    [
        ([0.0, 0.75, 0.12], "push"),  # the hand keeps going the way it came: the block moves away from it
        ([0.0, 0.45, 0.12], "pull"),  # the hand turns back the way it came: the block comes toward it
    ],
)
def test_an_undirected_slide_takes_push_or_pull_from_the_motion(end: list[float], cls: str) -> None:
    # "slide the block to the left" says no push or pull: the direction of the hand's motion decides it
    assert parse_task("slide the block to the left").undirected
    keys = [(0.0, START), (0.6, OVER), (1.0, DOWN), (2.0, end)]
    views = _views(keys, [0.6, 1.0], "slide the block to the left", 2.4)
    caps = caption_episode_events(views)
    assert verb_class(caps[-1]) == cls and caps[-1].split()[0] in ("push", "pull")


def test_a_directed_slide_keeps_the_class_its_words_give() -> None:
    assert not parse_task("slide the plate out of the cabinet").undirected
    assert not parse_task("slide the window open").undirected
