"""Caption verb classes on tasks beyond pick-and-place, measured in one run (issue 25's "Must show").

On the corpus item `metaworld_tasks` (tests/corpus/metaworld_tasks: Meta-World 3.1.1 scripted experts
opening doors and windows, closing drawers and windows, turning a faucet, pressing a button, inserting a
peg from the side, and pick-and-place, written by lerobot 0.4.4; the truth is the experts' own
sub-goals, see its README) this runs the shipped configuration, with no per-item settings:

    carve run --source tests/corpus/metaworld_tasks/dataset --root OUT/root --set source.dataset=metaworld_tasks
    carve eval-captions --root OUT/root --truth tests/corpus/metaworld_tasks/truth_carve.json --at middle --json
    carve eval-captions --root OUT/root --truth tests/corpus/metaworld_tasks/truth_all.json --at middle --json
    carve eval-captions --root OUT/root --truth tests/corpus/metaworld_tasks/dataset --at middle --json

(the same truth in the three forms `--truth` takes: the reports must agree), and reads the captions
back to count consecutive events of one episode with the same caption. Then the same run and scoring on
the held-out item `metaworld_heldout` (tests/corpus/metaworld_heldout: six more Meta-World part-action
tasks whose episodes were first captioned after the rules were fixed), against every expert phase change
(`truth_carve.json`, the primary score) and against `truth.json` (phases under 0.15 s merged), and on the
second held-out item `metaworld_heldout2` (six Meta-World tasks used nowhere else, their task table and
README committed before any of their episodes was captioned, measured once with the captioner frozen at
kinematic-v6). Writes the "Caption verb classes" section of BENCHMARKS.md: verb-class accuracy per task
(at each event's middle frame), which tasks the captioner's rules were tuned on and which were held out,
the confusion tables and the consecutive-same-caption counts, all from one run.

    python -m bench.caption_classes            # about 2 min on 2 cores
    python -m bench.caption_classes --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import sys
from pathlib import Path
from typing import Any

from bench.common import fresh_dir
from bench.quality_segments import _carve, _rel, _run, _show
from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
ITEM = ROOT / "tests" / "corpus" / "metaworld_tasks"
HELDOUT = ROOT / "tests" / "corpus" / "metaworld_heldout"
HELDOUT2 = ROOT / "tests" / "corpus" / "metaworld_heldout2"
BEGIN, END = "<!-- caption-classes:begin -->", "<!-- caption-classes:end -->"
HEADING = "## Caption verb classes beyond pick-and-place (issue 25)"
PICK_PLACE = ("pick-place-v3",)
TARGET, PICK_TARGET = 0.9, 0.95
# tasks whose episodes were looked at while the captioner's part-action, grasp and placement rules were
# set (TURN_DEG, RISE_FRACTION, the not-lowered placement; the lift-off off a part, RISE_COS, was set on
# faucet-open-v3); the others were first measured after
TUNED = ("door-open-v3", "drawer-close-v3", "peg-insert-side-v3", "window-open-v3", "pick-place-v3", "faucet-open-v3")
# the held-out item measured with main at 42918d9 (kinematic-v4, before the lift-off rule), the same commands
HELDOUT_BEFORE = {"button-press-topdown-v3": 1.0, "coffee-button-v3": 1.0, "dial-turn-v3": 0.571,
                  "door-close-v3": 0.5, "faucet-close-v3": 0.455, "handle-press-v3": 0.778}
HELDOUT_BEFORE_ALL = "0.673 (33/49)"
# the held-out item with main at 044fa4d (kinematic-v5: the rules of the first held-out measurement), the
# same commands; it was then looked at while kinematic-v6's rules were set (re-approach, detour, one motion)
HELDOUT_V5 = {"button-press-topdown-v3": 1.0, "coffee-button-v3": 1.0, "dial-turn-v3": 0.429,
              "door-close-v3": 0.5, "faucet-close-v3": 0.727, "handle-press-v3": 0.778}
HELDOUT_V5_ALL, HELDOUT_V5_MERGED = "0.694 (34/49)", "0.694 (34/49)"
# the second held-out item with main at 044fa4d (kinematic-v5), the same commands (measured after the
# frozen kinematic-v6 run, for the comparison only)
HELDOUT2_V5 = {"door-lock-v3": 0.333, "door-unlock-v3": 0.5, "handle-press-side-v3": 0.833, "lever-pull-v3": 0.667,
               "plate-slide-v3": 0.5, "shelf-place-v3": 0.833}
HELDOUT2_V5_ALL = "0.567 (38/67)"
PICK_LIKE = ("pick-place-v3", "shelf-place-v3")  # grasp-and-carry tasks: the pick-and-place target
# measured at main a4b8d1a (kinematic-v3) with the same commands (`carve run` with that commit's captioners,
# this eval): 34/79 = 0.430 overall
BEFORE_ALL = "0.430 (34/79)"
# held-out tasks' and pick-place's first measurement (the rules as they were when first run on them); the
# grasp-on-the-move and not-lowered-placement rules were changed after pick-place's
FIRST_LOOK = {"button-press-v3": 1.0, "faucet-open-v3": 0.5, "window-close-v3": 1.0, "pick-place-v3": 0.6}
BEFORE = {"button-press-v3": 0.5, "door-open-v3": 0.5, "drawer-close-v3": 0.3, "faucet-open-v3": 0.357,
          "peg-insert-side-v3": 0.5, "pick-place-v3": 0.8, "window-close-v3": 0.333, "window-open-v3": 0.333}
GENERATOR = [
    "MUJOCO_GL=osmesa /work/venv-metaworld/bin/python tests/corpus/metaworld_tasks/simulate.py --out /tmp/mwt-npz",
    ".venv/bin/python tests/corpus/metaworld_tasks/make_dataset.py --npz /tmp/mwt-npz --force",
]


def repeats(root: Path) -> tuple[int, int, list[str]]:
    """(pairs of consecutive events of one episode, of them with the same caption, examples)."""
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    with open_root(str(root)) as r:
        rows = read_events(r, columns=["episode_index", "event_index", "caption"]).to_pylist()
    rows.sort(key=lambda x: (x["episode_index"], x["event_index"]))
    pairs = same = 0
    examples = []
    for a, b in itertools.pairwise(rows):
        if a["episode_index"] != b["episode_index"]:
            continue
        pairs += 1
        if a["caption"] == b["caption"]:
            same += 1
            examples.append(f"episode {a['episode_index']}: {a['caption']!r}")
    return pairs, same, examples


def run_item(item: Path, root: Path, forms: tuple[str, ...]) -> tuple[dict[str, Any], list[list[str]]]:
    """`carve run` on the corpus item's dataset, then `eval-captions --at middle` against each truth form."""
    carve = _carve()
    run = [carve, "run", "--source", _rel(item / "dataset"), "--root", _rel(root), "--set",
           f"source.dataset={item.name}", "--set", "ray.progress=false", "--set", "ray.num_cpus=2",
           "--set", "ray.object_store_memory_mb=256", "--no-shard"]
    _run(run)
    reports, cmds = {}, [run]
    for form in forms:
        cmd = [carve, "eval-captions", "--root", _rel(root), "--truth", _rel(item / form), "--at", "middle", "--json"]
        text, _, _ = _run(cmd)
        reports[form] = json.loads(text)
        cmds.append(cmd)
    return reports, cmds


def measure(out: Path) -> dict[str, Any]:
    root = out / "root"
    reports, cmds = run_item(ITEM, root, ("truth_carve.json", "truth_all.json", "dataset"))
    pairs, same, examples = repeats(root)
    held, held_cmds = run_item(HELDOUT, out / "heldout", ("truth_carve.json", "truth.json"))
    hpairs, hsame, _ = repeats(out / "heldout")
    held2, held2_cmds = run_item(HELDOUT2, out / "heldout2", ("truth_carve.json", "truth.json"))
    h2pairs, h2same, h2examples = repeats(out / "heldout2")
    return {"reports": reports, "commands": cmds, "pairs": pairs, "same": same, "examples": examples,
            "heldout": held, "heldout_commands": held_cmds, "heldout_pairs": hpairs, "heldout_same": hsame,
            "heldout2": held2, "heldout2_commands": held2_cmds, "heldout2_pairs": h2pairs, "heldout2_same": h2same,
            "heldout2_examples": h2examples}


def section(m: dict[str, Any]) -> str:
    rep = m["reports"]["truth_carve.json"]
    forms_agree = all(  # the LeRobot form has no task type: its events are all under "unknown"
        (r["class_correct"], r["class_events"], r["unmatched_events"], r["class_confusion"]) ==
        (rep["class_correct"], rep["class_events"], rep["unmatched_events"], rep["class_confusion"])
        for r in m["reports"].values())
    lines = [BEGIN, "",
             f"Measured {dt.date.today().isoformat()} on {platform.machine()} ({platform.python_version()}), "
             "`python -m bench.caption_classes`; the shipped configuration, no per-item settings.", "",
             "The data: `tests/corpus/metaworld_tasks` (not in `tests/corpus_items.py`, see its README), made by", "",
             "```sh", *GENERATOR, "```", "",
             "Verb-class accuracy: the class (`captioners/verb_classes.py`) of each event's caption verb against the "
             "class of the expert's phase at the event's MIDDLE frame (`eval-captions --at middle`). "
             f"Target: >= {TARGET:.2f} on every non-pick-and-place task, >= {PICK_TARGET:.2f} on pick-and-place. "
             "`before`: main at a4b8d1a (kinematic-v3), the same dataset, segmenter and scoring. "
             "`split`: *tuned* = the task's episodes were looked at while the captioner's rules were set; "
             "*held out* = first measured after the rules were fixed. `first`: a task's first measurement with "
             "the rules of the time (pick-place's grasp and placement rules were changed after it).", "",
             "| task | events | before | after | first | target | split |",
             "|------|--------|--------|-------|-------|--------|-------|"]
    for task, s in rep["per_task_class"].items():
        target = PICK_TARGET if task in PICK_PLACE else TARGET
        ok = "met" if s["accuracy"] >= target else "**not met**"
        split = "tuned" if task in TUNED else "held out"
        before = f"{BEFORE[task]:.2f}" if task in BEFORE else "-"
        first = f"{FIRST_LOOK[task]:.2f}" if task in FIRST_LOOK else "-"
        lines.append(f"| {task} | {s['events']} | {before} | {s['accuracy']:.2f} | {first} | {target:.2f} ({ok}) "
                     f"| {split} |")
    held = [s for t, s in rep["per_task_class"].items() if t not in TUNED]
    tuned = [s for t, s in rep["per_task_class"].items() if t in TUNED]

    def pooled(rows: list[dict[str, Any]]) -> str:
        n = sum(r["events"] for r in rows)
        c = sum(round(r["accuracy"] * r["events"]) for r in rows)
        return f"{c / n:.3f} ({c}/{n})" if n else "-"

    lines += ["", f"All events: {rep['class_accuracy']:.3f} ({rep['class_correct']}/{rep['class_events']}; before "
              f"{BEFORE_ALL}); "
              f"tuned tasks {pooled(tuned)}, held-out tasks {pooled(held)}. "
              f"The three truth forms (`truth_carve.json`, `truth_all.json`, the dataset's `subtask_index`) give "
              f"{'the same' if forms_agree else 'DIFFERENT'} scores and confusions (the LeRobot form carries no task "
              f"type, so its per-task table is one row).", "",
              "Where faucet-open misses: its expert turns the handle, then rises off it and hovers to \"reach above "
              "the faucet handle\" again (its sub-goal: the handle has moved away from the hand). The captioner "
              "now finds the turn (3 of 3 turn events, 0 before the lift-off rule) and calls the rise off the "
              "handle a retreat (\"retreat from the faucet\"): 5 events whose truth is the expert's re-approach.",
              "", "Confusions (rows: the truth's class, columns: the caption's class; events):", "", "```"]
    from carve.captioners.eval import format_class_confusion

    lines += [format_class_confusion(rep["class_confusion"], indent=""), "```", ""]
    if rep.get("open_vocabulary"):
        lines.append(f"Open-vocabulary caption verbs: {rep['open_vocabulary']}.")
    lines += [f"Consecutive events of one episode with the same caption: {m['same']} of {m['pairs']} pairs"
              + (f" ({'; '.join(m['examples'][:3])})" if m["examples"] else "") + ".", "",
              "Commands:", "", "```sh", *[_show(c) for c in m["commands"]], "```", "", *heldout_lines(m),
              *heldout2_lines(m), END]
    return "\n".join(lines)


def heldout_lines(m: dict[str, Any]) -> list[str]:
    """The first held-out item's table: per task, against every phase change and with short flips merged."""
    rep, merged = m["heldout"]["truth_carve.json"], m["heldout"]["truth.json"]
    lines = ["### First held-out set (no longer held out): `tests/corpus/metaworld_heldout`", "",
             "Six more Meta-World part-action tasks (3 episodes each), named from the policies' source and first "
             "captioned after the rules above were fixed (its README), with kinematic-v5 (column `v5`, main at "
             "044fa4d; `v4`: main at 42918d9, before the lift-off rule). Its misses were then looked at and "
             "kinematic-v6's rules set from them, so **it is a tuned set now**: `after` is no held-out score (the "
             "second held-out set below is). `after`: against every expert phase change (`truth_carve.json`, the "
             "primary score, as above); `merged`: against `truth.json` (a phase under 0.15 s between two of the "
             "same sub-goal is one phase with them).", "",
             "| task | events | v4 | v5 (held out) | after | merged | target |",
             "|------|--------|----|---------------|-------|--------|--------|"]
    for task, s in rep["per_task_class"].items():
        mg = merged["per_task_class"].get(task, {}).get("accuracy")
        ok = "met" if s["accuracy"] >= TARGET else "**not met**"
        before = f"{HELDOUT_BEFORE[task]:.2f}" if task in HELDOUT_BEFORE else "-"
        v5 = f"{HELDOUT_V5[task]:.2f}" if task in HELDOUT_V5 else "-"
        lines.append(f"| {task} | {s['events']} | {before} | {v5} | {s['accuracy']:.2f} | "
                     f"{'-' if mg is None else f'{mg:.2f}'} | {TARGET:.2f} ({ok}) |")
    from carve.captioners.eval import format_class_confusion

    lines += ["", f"All events of this set: {rep['class_accuracy']:.3f} ({rep['class_correct']}/{rep['class_events']}; "
              f"v5 {HELDOUT_V5_ALL}, v4 {HELDOUT_BEFORE_ALL}); merged truth {merged['class_accuracy']:.3f} "
              f"({merged['class_correct']}/{merged['class_events']}; v5 {HELDOUT_V5_MERGED}). Consecutive events of "
              f"one episode with the same caption: {m['heldout_same']} of {m['heldout_pairs']} pairs.", "",
              "Confusions (all changes; rows: the truth's class, columns: the caption's class):", "", "```",
              format_class_confusion(rep["class_confusion"], indent=""), "```", "",
              "What kinematic-v6 changed (`captioners/phases.py`, part actions without a grasp; no rule names a "
              "task, a simulator or an expert): (1) a retreat is the motion after the episode's LAST interaction: "
              "a hand that lifts off the part and heads back to it (its distance from where it left falls by more "
              "than the waypoint error and 20% of its farthest) re-approaches, a reach (dial-turn: 8 events were "
              "\"retreat\"); (2) the action starts at the last sharp turn before the lift-off however short its "
              "leg (the dial turned by 2 cm; the descent onto it was captioned \"turn\" in 3 episodes); (3) a "
              "last leg that comes back to its turn or stays within the waypoint error of it is a detour inside "
              "the action (handle-press: a slip off the handle made the press start late); (4) a stretch with no "
              "sharp turn and no event boundary is all the action (the segmenter found one motion: an episode of "
              "\"close the door\" is not captioned only as a reach).", "",
              "What is left: faucet-close's expert rises off the handle at the end of the episode (3 events; "
              "faucet-open's 5 in the tuned set are the same) and the recording stops before it comes down again: "
              "the hand leaves the part, which the captioner calls a retreat while the expert's sub-goal is "
              "\"reach above the faucet handle\" (the handle has moved from under it); by the motion this truth "
              "is arguable, and it stays the primary score. door-close: 2 of 3 episodes are one event (no "
              "boundary), now captioned \"push the door closed\"; the expert's truth flips between \"descend to "
              "the door handle\" and \"push the door closed\" every 1-3 frames, so the middle frame decides (1 of "
              "2 right, as before with the reach caption; the merged truth's first-name-wins labels make it 1 of "
              "4). handle-press: one episode starts straight down onto the handle, which its expert already calls "
              "the press (no force signal tells where the contact starts).", "",
              "```sh", *[_show(c) for c in m["heldout_commands"]], "```", ""]
    return lines


def heldout2_lines(m: dict[str, Any]) -> list[str]:
    """The second held-out item's table, measured once with the captioner frozen (kinematic-v6)."""
    rep, merged = m["heldout2"]["truth_carve.json"], m["heldout2"]["truth.json"]
    lines = ["### Second held-out set: `tests/corpus/metaworld_heldout2`", "",
             "Six Meta-World tasks used nowhere else in the repository (3 episodes each): their task table "
             "(`HELDOUT2_TASKS`, named from the policies' source) and README were committed (420e7ee) before any of "
             "their episodes was captioned, the captioner was then frozen (5642f2e, kinematic-v6) and measured "
             "once; nothing was changed after. `v5`: main at 044fa4d, run afterwards for the comparison. One "
             "grasp-and-carry task (shelf-place: target 0.95) and five part actions.", "",
             "| task | events | v5 | after | merged | target |",
             "|------|--------|----|-------|--------|--------|"]
    for task, s in rep["per_task_class"].items():
        mg = merged["per_task_class"].get(task, {}).get("accuracy")
        target = PICK_TARGET if task in PICK_LIKE else TARGET
        ok = "met" if s["accuracy"] >= target else "**not met**"
        v5 = f"{HELDOUT2_V5[task]:.2f}" if task in HELDOUT2_V5 else "-"
        lines.append(f"| {task} | {s['events']} | {v5} | {s['accuracy']:.2f} | "
                     f"{'-' if mg is None else f'{mg:.2f}'} | {target:.2f} ({ok}) |")
    from carve.captioners.eval import format_class_confusion

    ex = m["heldout2_examples"]
    lines += ["", f"All events of the second held-out set: {rep['class_accuracy']:.3f} "
              f"({rep['class_correct']}/{rep['class_events']}; v5 {HELDOUT2_V5_ALL}); merged truth "
              f"{merged['class_accuracy']:.3f} ({merged['class_correct']}/{merged['class_events']}). Consecutive "
              f"events of one episode with the same caption: {m['heldout2_same']} of {m['heldout2_pairs']} pairs"
              + (f" ({'; '.join(ex[:3])})" if ex else "") + ".", "",
              "Confusions (all changes; rows: the truth's class, columns: the caption's class):", "", "```",
              format_class_confusion(rep["class_confusion"], indent=""), "```", "",
              "Read as a held-out test, the target is **not met** on any task, and kinematic-v6's captions are "
              "identical to v5's on all 67 events: none of its four rules changed a caption here. Where it misses: (a) door-lock and "
              "door-unlock (most misses): the instructions' verbs \"lock\" / \"unlock\" are in no verb class, so "
              "the captioner does not treat them as part actions and falls back to the no-grasp vocabulary "
              "(\"move the door\", \"retreat to the start position\"); their experts also loop back to earlier "
              "sub-goals, and door-lock's expert turns the lock during \"descend to the lock\" (its \"turn the "
              "lock\" arm never runs), a naming of the truth fixed before captioning that makes the lock's turn a "
              "reach; (b) plate-slide: the hand pushes the plate from behind with the gripper open, captioned "
              "\"push the plate\" (class push) while the truth keeps the task's verb \"slide\" (class pull): the "
              "class table puts a slide with the pulls; (c) lever-pull: the expert flips between \"reach below the "
              "lever\" and \"reach up to the lever\" for most of the episode (its `if` on the hand's distance "
              "in the plane) and pulls only near the end, while the captioner starts the pull after the first "
              "turn under the lever (3 events); (d) "
              "shelf-place: one grasp captioned as the lift and one carry onto the shelf as a placement.", "",
              "```sh", *[_show(c) for c in m["heldout2_commands"]], "```", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/carve-bench-caption-classes"))
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = ap.parse_args(argv)
    m = measure(fresh_dir(args.out))
    text = section(m)
    if args.no_write:
        print(text)
    else:
        write_section(text, BEGIN, END, HEADING)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
