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
kinematic-v6, then looked at while kinematic-v7's vocabulary was set: no longer held out), and on the third
held-out item `metaworld_heldout3` (six more Meta-World tasks used nowhere else, their task table and README
committed before any episode was simulated, measured once with the captioner frozen at kinematic-v7, then
looked at for kinematic-v8), and on the fourth held-out item `metaworld_heldout4` (five more Meta-World tasks
used nowhere else, named before any episode was simulated or any v8 rule written, measured once with the
captioner frozen at kinematic-v8, then named in v9's brief), on the fifth held-out item `metaworld_heldout5`
(five more Meta-World tasks used nowhere else, measured once with the captioner frozen at kinematic-v9, then
seen by kinematic-v10), and on the sixth held-out item `metaworld_heldout6` (five tool-use and
non-grasp tasks used nowhere else, measured once with the captioner frozen at kinematic-v10), and on the two ManiSkill 3 items (`maniskill_heldout`, held out for kinematic-v11;
`maniskill_heldout2`, held out for kinematic-v12: captions and boundary F1). Writes the "Caption verb classes" section of BENCHMARKS.md: verb-class accuracy per task
(at each event's middle frame), which tasks the captioner's rules were tuned on and which were held out,
the confusion tables and the consecutive-same-caption counts, all from one run.

    python -m bench.caption_classes            # about 2 min on 2 cores
    python -m bench.caption_classes --no-write
    python -m bench.caption_classes --render   # the section again from the last run's measure.json (no run)
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import fresh_dir
from bench.quality_segments import _carve, _rel, _run, _show
from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
ITEM = ROOT / "tests" / "corpus" / "metaworld_tasks"
HELDOUT = ROOT / "tests" / "corpus" / "metaworld_heldout"
HELDOUT2 = ROOT / "tests" / "corpus" / "metaworld_heldout2"
HELDOUT3 = ROOT / "tests" / "corpus" / "metaworld_heldout3"
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
# the second held-out item's one held-out measurement (kinematic-v6 frozen at 5642f2e; BENCHMARKS.md of 8bf73f6)
HELDOUT2_V6 = dict(HELDOUT2_V5)
HELDOUT2_V6_ALL = "0.567 (38/67)"
FROZEN_V7 = "6724c1a"  # kinematic-v7, frozen before any episode of metaworld_heldout3 was captioned
HELDOUT3_TABLE = "060b07a"  # metaworld_heldout3's task table and README (hand-insert replacing box-close: 2fd46ae)
HELDOUT4 = ROOT / "tests" / "corpus" / "metaworld_heldout4"
FROZEN_V8 = "2913d8d"  # kinematic-v8 (src/carve/captioners), frozen before any episode of metaworld_heldout4 was captioned
HELDOUT4_TABLE = "4881d81"  # metaworld_heldout4's task table and README, before any episode was simulated
HELDOUT4_DATA = "eb928c4"  # its dataset, simulated and written, not captioned
HELDOUT5 = ROOT / "tests" / "corpus" / "metaworld_heldout5"
FROZEN_V9 = "26347c1"  # kinematic-v9 (src/carve/captioners), frozen before any episode of metaworld_heldout5 was captioned (first frozen at b353900, then rule 10 narrowed, 6182ff3, after heldout4 dropped; heldout5 not yet captioned)
HELDOUT5_TABLE = "62b0445"  # metaworld_heldout5's task table and README, before any episode was simulated
HELDOUT5_DATA = "2c6df00"  # its dataset, simulated and written, not captioned
# metaworld_heldout5's one held-out measurement (kinematic-v9, BENCHMARKS.md of main at 3546e23): the "v9" column
HELDOUT5_V9 = {"button-press-topdown-wall-v3": 0.75, "pick-place-wall-v3": 13 / 15, "plate-slide-back-side-v3": 1.0,
               "push-wall-v3": 1.0, "sweep-v3": 11 / 14}
HELDOUT5_V9_ALL = "0.883 (53/60)"
HELDOUT6 = ROOT / "tests" / "corpus" / "metaworld_heldout6"
FROZEN_V10 = "45289d5"  # kinematic-v10, frozen before any episode of metaworld_heldout6 was captioned
HELDOUT6_TABLE = "3f07b5d"  # metaworld_heldout6's task table and README, before any episode was simulated
HELDOUT6_DATA = "8759ccc"  # its dataset, simulated and written, not captioned
# metaworld_heldout6's one held-out measurement (kinematic-v10, BENCHMARKS.md of main at b855b28): the "v10" column
HELDOUT6_V10 = {"hammer-v3": 8 / 11, "reach-wall-v3": 2 / 5, "soccer-v3": 2 / 7, "stick-pull-v3": 11 / 19,
                "stick-push-v3": 6 / 13}
HELDOUT6_V10_ALL = "0.527 (29/55)"
# a held-out set from another third-party simulator (ManiSkill 3's motion-planning solutions)
MANISKILL = ROOT / "tests" / "corpus" / "maniskill_heldout"
MANISKILL2 = ROOT / "tests" / "corpus" / "maniskill_heldout2"
FROZEN_V12 = "c85676e"  # the second ManiSkill set's table commit: the captioner and segmenter as measured there
MANISKILL2_NOTES = (
    "Written after its one measurement (nothing changed since): the middle-frame score does not show that "
    "**the charger's insertion never has an event of its own**. In both PlugCharger episodes no boundary is "
    "found where the carry to the receptacle ends and the 5-cm insertion begins (two slow screws of the held "
    "charger, no stop between them), so one event, \"lift the charger\", spans both; its middle frame is in the "
    "carry. The other misses: PullCube's 6-frame empty-gripper closing before the reach (3, as PushCube's in "
    "the first set), two PickCube descents continued from the reach, and one PickCube carry that starts after a "
    "pause while the fingers settle, captioned \"grasp the cube (part 2 of 2 after a pause)\" (the one caption "
    "miss: PickCube 0.90 against the pick-and-place 0.95).")
FROZEN_V11 = "cc028a3"  # kinematic-v11 and the segmenter, frozen before maniskill_heldout's tasks were chosen
MANISKILL_TABLE = "718d971"  # its task table, generator and README, before any episode was simulated
MANISKILL_DATA = "e9a1209"  # its dataset, simulated and written, never captioned or segmented before this run
# its one held-out measurement (kinematic-v11 and the segmenter at cc028a3; BENCHMARKS.md of main at 473a34c)
MANISKILL_HELD = {"LiftPegUpright-v1": 12 / 15, "PegInsertionSide-v1": 1.0, "PullCubeTool-v1": 16 / 17,
                  "PushCube-v1": 4 / 5, "StackCube-v1": 17 / 18}
MANISKILL_HELD_ALL = "0.900 (54/60)"
MANISKILL_SEG_HELD = "0.426 [0.32, 0.54] (23 hits, 24 false, 38 missed; keyframes 0.390)"
# metaworld_heldout4's one held-out measurement (kinematic-v8, BENCHMARKS.md of main at 8e5e2f9): the "v8" column
HELDOUT4_V8 = {"coffee-pull-v3": 1.0, "push-back-v3": 0.875, "peg-unplug-side-v3": 0.833,
               "handle-pull-side-v3": 0.75, "disassemble-v3": 0.75}
HELDOUT4_V8_ALL = "0.847 (50/59)"
V8_ALL = {"tasks": "0.937 (74/79)", "heldout": "0.878 (43/49)", "heldout2": "0.701 (47/67)",
          "heldout3": "0.896 (60/67)"}  # kinematic-v8 on the seen sets (this round's first measurement, w25d)
# kinematic-v7 (main at faa31d5) on each set, the same commands (BENCHMARKS.md of faa31d5; re-measured in this
# round with the same numbers): the "v7" columns
V7 = {"button-press-v3": 1.0, "door-open-v3": 1.0, "drawer-close-v3": 1.0, "faucet-open-v3": 0.643,
      "peg-insert-side-v3": 1.0, "pick-place-v3": 1.0, "window-close-v3": 1.0, "window-open-v3": 1.0,
      "button-press-topdown-v3": 1.0, "coffee-button-v3": 1.0, "dial-turn-v3": 1.0, "door-close-v3": 0.5,
      "faucet-close-v3": 0.727, "handle-press-v3": 0.889, "door-lock-v3": 0.5, "door-unlock-v3": 0.625,
      "handle-press-side-v3": 0.833, "lever-pull-v3": 0.667, "plate-slide-v3": 1.0, "shelf-place-v3": 0.833,
      "button-press-wall-v3": 0.0, "coffee-push-v3": 0.75, "hand-insert-v3": 0.727, "plate-slide-back-v3": 0.5,
      "plate-slide-side-v3": 1.0, "sweep-into-v3": 0.357}
V7_ALL = {"tasks": "0.937 (74/79)", "heldout": "0.878 (43/49)", "heldout2": "0.687 (46/67)",
          "heldout3": "0.537 (36/67)"}
PICK_LIKE = ("pick-place-v3", "shelf-place-v3", "hand-insert-v3", "disassemble-v3", "pick-place-wall-v3", "PickCube-v1",
             "PlaceSphere-v1",
             "StackCube-v1")  # grasp-and-carry tasks: the pick-and-place target
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
    held3, held3_cmds = run_item(HELDOUT3, out / "heldout3", ("truth_carve.json", "truth.json"))
    h3pairs, h3same, h3examples = repeats(out / "heldout3")
    held4, held4_cmds = run_item(HELDOUT4, out / "heldout4", ("truth_carve.json", "truth.json"))
    h4pairs, h4same, h4examples = repeats(out / "heldout4")
    held5, held5_cmds = run_item(HELDOUT5, out / "heldout5", ("truth_carve.json", "truth.json"))
    h5pairs, h5same, h5examples = repeats(out / "heldout5")
    held6, held6_cmds = run_item(HELDOUT6, out / "heldout6", ("truth_carve.json", "truth.json"))
    h6pairs, h6same, h6examples = repeats(out / "heldout6")
    extra: dict[str, Any] = {}
    for item, key, tols in ((MANISKILL, "maniskill", ("0.1",)), (MANISKILL2, "maniskill2", ("0.1", "0.2"))):
        if (item / "dataset").exists():
            extra |= simulator_item(item, out, key, tols)
    return {**extra,"heldout6": held6, "heldout6_commands": held6_cmds, "heldout6_pairs": h6pairs, "heldout6_same": h6same,
            "heldout6_examples": h6examples, "heldout5": held5, "heldout5_commands": held5_cmds, "heldout5_pairs": h5pairs, "heldout5_same": h5same,
            "heldout5_examples": h5examples,
            "heldout4": held4, "heldout4_commands": held4_cmds, "heldout4_pairs": h4pairs, "heldout4_same": h4same,
            "heldout4_examples": h4examples,"heldout3": held3, "heldout3_commands": held3_cmds, "heldout3_pairs": h3pairs, "heldout3_same": h3same,
            "heldout3_examples": h3examples, "reports": reports, "commands": cmds, "pairs": pairs, "same": same, "examples": examples,
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
             "Protocol (which set was seen when): all nine sets are captioned here by kinematic-v12 in this one "
             "run (v12 = v11 and rule 13, a held object turned in place, written on `maniskill_heldout`'s misses "
             "after its one measurement with v11; no Meta-World caption changed; `maniskill_heldout2`, the last "
             "section, is the held-out test of v12). `metaworld_tasks` was looked at while kinematic-v3 to v5 were set (its held-out tasks: first "
             "measured after); `metaworld_heldout` was held out for v5 and looked at for v6; `metaworld_heldout2` "
             "was held out for v6 (0.567) and looked at for v7's vocabulary; `metaworld_heldout3` was held out for "
             f"v7 (0.537, frozen at {FROZEN_V7}) and looked at for v8's rules and v9's (rule 10 was written on it); "
             f"`metaworld_heldout4` was held out for v8 (frozen at {FROZEN_V8}; {HELDOUT4_V8_ALL}) and its named misses "
             "were in the brief of v9's round (v9's rule was written on the four sets above, not on heldout4's "
             "captions): it is no longer held out; `metaworld_heldout5` was held out for v9 (frozen at "
             f"{FROZEN_V9}; {HELDOUT5_V9_ALL}) and its misses were looked at for v10's rule 11: it is no longer held "
             "out; `metaworld_heldout6` was held out for v10: its five tasks were chosen and named from the policies' "
             f"source and committed ({HELDOUT6_TABLE}) before any episode was simulated and before any v10 rule was "
             f"written; it was simulated and written ({HELDOUT6_DATA}) without being captioned; the captioner was "
             f"frozen ({FROZEN_V10}) and measured once ({HELDOUT6_V10_ALL}); its misses were then looked at for "
             "v11's rule 12, so no Meta-World set is held out for v11 (none has an unused task left but reach-v3); "
             "`maniskill_heldout`, from another simulator, was: its tasks were chosen after v11 was frozen, and "
             "its one measurement is the last section's `held out` column (v12's rule 13 was then written on it). What was known while v10 was written: "
             "heldout6's task list and texts (v10's impact verbs, hammer and kick among them, and its cut of a tool "
             "phrase, \"with the stick\", were added knowing them) and, for the last minutes before the freeze, "
             "the recording's log (stick-push's episodes end before its push arm runs; soccer's expert labels most "
             "of its motion \"reach behind the ball\"), never its captions. Column `v7`: kinematic-v7 (main at "
             "faa31d5) on the same data and scoring.", "",
             "The data: `tests/corpus/metaworld_tasks` (not in `tests/corpus_items.py`, see its README), made by", "",
             "```sh", *GENERATOR, "```", "",
             "Verb-class accuracy: the class (`captioners/verb_classes.py`) of each event's caption verb against the "
             "class of the expert's phase at the event's MIDDLE frame (`eval-captions --at middle`). "
             f"Target: >= {TARGET:.2f} on every non-pick-and-place task, >= {PICK_TARGET:.2f} on pick-and-place. "
             "`before`: main at a4b8d1a (kinematic-v3), the same dataset, segmenter and scoring. "
             "`split`: *tuned* = the task's episodes were looked at while the captioner's rules were set; "
             "*held out* = first measured after the rules were fixed. `first`: a task's first measurement with "
             "the rules of the time (pick-place's grasp and placement rules were changed after it).", "",
             "| task | events | before | v7 | after | first | target | split |",
             "|------|--------|--------|----|-------|-------|--------|-------|"]
    for task, s in rep["per_task_class"].items():
        target = PICK_TARGET if task in PICK_PLACE else TARGET
        ok = "met" if s["accuracy"] >= target else "**not met**"
        split = "tuned" if task in TUNED else "held out"
        before = f"{BEFORE[task]:.2f}" if task in BEFORE else "-"
        first = f"{FIRST_LOOK[task]:.2f}" if task in FIRST_LOOK else "-"
        lines.append(f"| {task} | {s['events']} | {before} | {_v7(task)} | {s['accuracy']:.2f} | {first} | "
                     f"{target:.2f} ({ok}) | {split} |")
    held = [s for t, s in rep["per_task_class"].items() if t not in TUNED]
    tuned = [s for t, s in rep["per_task_class"].items() if t in TUNED]

    def pooled(rows: list[dict[str, Any]]) -> str:
        n = sum(r["events"] for r in rows)
        c = sum(round(r["accuracy"] * r["events"]) for r in rows)
        return f"{c / n:.3f} ({c}/{n})" if n else "-"

    lines += ["", f"All events: {rep['class_accuracy']:.3f} ({rep['class_correct']}/{rep['class_events']}; before "
              f"{BEFORE_ALL}; v7 {V7_ALL['tasks']}); "
              f"tuned tasks {pooled(tuned)}, held-out tasks {pooled(held)}. "
              f"The three truth forms (`truth_carve.json`, `truth_all.json`, the dataset's `subtask_index`) give "
              f"{'the same' if forms_agree else 'DIFFERENT'} scores and confusions (the LeRobot form carries no task "
              f"type, so its per-task table is one row).", "",
              "Where faucet-open misses (unchanged by v8): its expert turns the handle, then rises off it and hovers to \"reach above "
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
              *heldout2_lines(m), *heldout3_lines(m), *heldout4_lines(m), *heldout5_lines(m), *heldout6_lines(m), *maniskill_lines(m), *maniskill2_lines(m), *recall_lines(m), END]
    return "\n".join(lines)


def _v7(task: str) -> str:
    return _cell(V7, task)


def _cell(table: dict[str, float], task: str) -> str:
    """A task's score in an earlier version's table, "-" where that version has none."""
    return f"{table[task]:.2f}" if task in table else "-"


def _task_rows(rep: dict[str, Any], merged: dict[str, Any], earlier: Callable[[str], list[str]]) -> list[str]:
    """One table row per task of a set: its events, the cells `earlier(task)` gives (earlier versions'
    scores), this run's score, the merged truth's and the task's target (met or not)."""
    rows = []
    for task, s in rep["per_task_class"].items():
        mg = merged["per_task_class"].get(task, {}).get("accuracy")
        target = PICK_TARGET if task in PICK_LIKE else TARGET
        ok = "met" if s["accuracy"] >= target else "**not met**"
        cells = [task, str(s["events"]), *earlier(task), f"{s['accuracy']:.2f}", "-" if mg is None else f"{mg:.2f}",
                 f"{target:.2f} ({ok})"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _repeats(m: dict[str, Any], key: str) -> str:
    """The sentence on consecutive events of one episode with the same caption in set `key`."""
    ex = m.get(f"{key}_examples") or []
    return (f"Consecutive events of one episode with the same caption: {m[f'{key}_same']} of {m[f'{key}_pairs']} "
            "pairs" + (f" ({'; '.join(ex[:3])})" if ex else "") + ".")


def _confusions(rep: dict[str, Any]) -> list[str]:
    """A set's confusions table, fenced, with its heading."""
    from carve.captioners.eval import format_class_confusion

    return ["Confusions (all changes; rows: the truth's class, columns: the caption's class):", "", "```",
            format_class_confusion(rep["class_confusion"], indent=""), "```", ""]


def _commands(m: dict[str, Any], key: str) -> list[str]:
    """The commands that measured set `key`, fenced."""
    return ["```sh", *[_show(c) for c in m[f"{key}_commands"]], "```", ""]


def heldout_lines(m: dict[str, Any]) -> list[str]:
    """The first held-out item's table: per task, against every phase change and with short flips merged."""
    rep, merged = m["heldout"]["truth_carve.json"], m["heldout"]["truth.json"]
    lines = ["### First held-out set (no longer held out): `tests/corpus/metaworld_heldout`", "",
             "Six more Meta-World part-action tasks (3 episodes each), named from the policies' source and first "
             "captioned after the rules above were fixed (its README), with kinematic-v5 (column `v5`, main at "
             "044fa4d; `v4`: main at 42918d9, before the lift-off rule). Its misses were then looked at and "
             "kinematic-v6's rules set from them, so **it is a tuned set now**: `after` is no held-out score (the "
             "fourth held-out set below is). `after`: against every expert phase change (`truth_carve.json`, the "
             "primary score, as above); `merged`: against `truth.json` (a phase under 0.15 s between two of the "
             "same sub-goal is one phase with them).", "",
             "| task | events | v4 | v5 (held out) | v7 | after | merged | target |",
             "|------|--------|----|---------------|----|-------|--------|--------|"]
    lines += _task_rows(rep, merged, lambda t: [_cell(HELDOUT_BEFORE, t), _cell(HELDOUT_V5, t), _v7(t)])
    lines += ["", f"All events of this set: {rep['class_accuracy']:.3f} ({rep['class_correct']}/{rep['class_events']}; "
              f"v7 {V7_ALL['heldout']}, v5 {HELDOUT_V5_ALL}, v4 {HELDOUT_BEFORE_ALL}); merged truth {merged['class_accuracy']:.3f} "
              f"({merged['class_correct']}/{merged['class_events']}; v5 {HELDOUT_V5_MERGED}). " + _repeats(m, "heldout"), "",
              *_confusions(rep),
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
              *_commands(m, "heldout")]
    return lines


def heldout2_lines(m: dict[str, Any]) -> list[str]:
    """The second held-out item's table: its one held-out measurement (kinematic-v6) and kinematic-v7 on it."""
    rep, merged = m["heldout2"]["truth_carve.json"], m["heldout2"]["truth.json"]
    lines = ["### Second held-out set (no longer held out): `tests/corpus/metaworld_heldout2`", "",
             "Six Meta-World tasks used nowhere else in the repository (3 episodes each): their task table "
             "(`HELDOUT2_TASKS`, named from the policies' source) and README were committed (420e7ee) before any of "
             "their episodes was captioned, the captioner was then frozen (5642f2e, kinematic-v6) and measured "
             "once: column `v6 (held out)`, the set's held-out score. Its misses were then looked at while "
             f"kinematic-v7's vocabulary was set ({FROZEN_V7}), so **it is a seen set now**: `after` is no held-out "
             "score (the fourth held-out set below is). `v5`: main at 044fa4d. One grasp-and-carry task "
             "(shelf-place: target 0.95) and five part actions.", "",
             "| task | events | v5 | v6 (held out) | v7 | after | merged | target |",
             "|------|--------|----|---------------|----|-------|--------|--------|"]
    lines += _task_rows(rep, merged, lambda t: [_cell(HELDOUT2_V5, t), _cell(HELDOUT2_V6, t), _v7(t)])
    lines += ["", f"All events of the second set: {rep['class_accuracy']:.3f} "
              f"({rep['class_correct']}/{rep['class_events']}; v7 {V7_ALL['heldout2']}, held out with v6 "
              f"{HELDOUT2_V6_ALL}, v5 "
              f"{HELDOUT2_V5_ALL}); merged truth {merged['class_accuracy']:.3f} "
              f"({merged['class_correct']}/{merged['class_events']}). " + _repeats(m, "heldout2"), "",
              *_confusions(rep),
              "What kinematic-v7 changed (`captioners/verb_classes.py`, `task_text.py`, `templates.py`, "
              "`phases.py`; vocabulary and one kinematic rule, none naming a task, a simulator or an expert): "
              "(1) the verb classes cover the manipulation verbs of real teleoperation datasets, with a table of "
              "what each class means physically (`verb_classes`' module doc): lock / unlock are turns (a lock is "
              "worked by turning its key, knob or latch), unplug / extract pulls, knock over / switch / poke "
              "pushes, plug in / thread / dock insertions, hang / lay / stow placements, hand over / take / "
              "remove / scoop carries, and three new classes, pour (pour, tip, tilt, empty ...), wipe (wipe, "
              "scrub, stir ...) and fold (fold, unfold ...); wipe is worked as a part (reach, wipe, retreat); "
              "(2) a slide names a motion along a surface and no direction: its class is read from the words "
              "after it (into, in, under, away, forward, closed: push; out, back, toward, open: pull); a slide "
              "whose words give none takes push or pull from the hand's motion (the action's displacement along "
              "the approach's: push; against it: pull), and the captioner never says a bare \"slide\"; a "
              "pull-class slide is worked as a part (reached, then pulled), not pushed across the table. Here "
              "(1) makes door-lock and door-unlock part actions (\"lock the door\", class turn, where v6 said "
              "\"move the door\") and (2) puts plate-slide's truth \"slide the plate into the cabinet\" with the "
              "pushes the hand does (6 of 6). What is left: door-lock's expert turns the lock during its \"descend "
              "to the lock\" arm (the captioner's \"lock the door\" falls there) and both lock experts then loop "
              "back up and away (\"reach up away from the door\", captioned as the retreat it looks like); "
              "door-unlock's turn happens mid-episode and the captioner puts the action at the last sharp turn "
              "of the path, after the loop; lever-pull's expert flips between its two reach arms while the "
              "captioner starts the pull at the first turn under the lever; shelf-place: one grasp captioned as "
              "the lift (found as the grasp by v8, rule 1's descent) and one carry onto the shelf as a placement. These are where the expert's sub-goal names "
              "and the motion disagree; the truth is not relabelled.", "",
              "```sh", *[_show(c) for c in m["heldout2_commands"]], "```", ""]
    return lines


# written after the one measurement of the third held-out set (notes on it, the captioner unchanged)
HELDOUT3_NOTES = (
    "Read as a held-out test, the target is met on one task (plate-slide-side, 8 of 8: the slide's class from "
    "its words, \"into the cabinet\": push, is the push the hand does) and **not met** on five. Where it misses "
    "(seen only after this one measurement; nothing was changed for them): (a) button-press-wall (0 of 10): "
    "its expert closes the fingers from the first step (a fist, effort 1.0) and opens them as it presses: the "
    "captioner reads a held object from the start, so the approach over the wall is \"lift\" / \"place\" and "
    "the press is \"release the button\" (the fingers' opening is the only gripper change); (b) coffee-push "
    "and sweep-into: the fingers close on the mug / the cube and the hand moves it along the table: the "
    "captioner names a held object's motion with the carry vocabulary (\"move the mug to the coffee "
    "machine\", \"place the cube at the hole\") while the truth keeps the task's verb (push, sweep: class "
    "push); the grasp onto the cube is captioned as the lift in all 3 sweep episodes, and 2 sweep experts "
    "go back down to the cube at the end (\"grasp the cube\" again); (c) plate-slide-back: the expert pulls "
    "the plate out, then loops back over it (\"reach above the front of the plate\", \"descend ...\") and "
    "pulls again: the captioner puts the pull on the last leg (the last sharp turn), so the first pull is a "
    "reach; the parser also keeps \"out of the cabinet\" in the object (\"reach toward the plate out of the "
    "cabinet\"); (d) hand-insert: the descent into the hole is short and the block then rests, captioned "
    "\"hold the block still\" in 2 episodes where the truth is the placement, and one grasp is the lift. "
    "(a) and (b) are one gap: a task whose verb pushes or presses while the gripper is closed is captioned with "
    "the pick-and-place words of a held object.")


def heldout3_lines(m: dict[str, Any]) -> list[str]:
    """The third held-out item's table, measured once with the captioner frozen (kinematic-v7)."""
    rep, merged = m["heldout3"]["truth_carve.json"], m["heldout3"]["truth.json"]
    lines = ["### Third held-out set (no longer held out): `tests/corpus/metaworld_heldout3`", "",
             "Six Meta-World tasks used nowhere else in the repository (3 episodes each): their task table "
             f"(`HELDOUT3_TASKS`, named from the policies' source) and README were committed ({HELDOUT3_TABLE}) "
             "before any of their episodes was simulated (box-close-v3, refused by the recording's grab-name check "
             "at its first step, was replaced by hand-insert-v3 before any episode was recorded: 2fd46ae); the "
             f"dataset was made (74844a6) and the captioner frozen ({FROZEN_V7}, kinematic-v7) before any episode "
             "was captioned, then measured once: column `v7 (held out)`, the set's held-out score. Its misses were "
             f"then looked at while kinematic-v8's rules were written ({FROZEN_V8}), so **it is a seen set now**: "
             "`after` is no held-out score (the fourth held-out set below is). One pick-and-place-like task "
             "(hand-insert: target 0.95) and five that move or work something else.", "",
             "| task | events | v7 (held out) | after | merged | target |",
             "|------|--------|---------------|-------|--------|--------|"]
    lines += _task_rows(rep, merged, lambda t: [_v7(t)])
    lines += ["", f"All events of the third set: {rep['class_accuracy']:.3f} "
              f"({rep['class_correct']}/{rep['class_events']}; held out with v7 {V7_ALL['heldout3']}); merged truth {merged['class_accuracy']:.3f} "
              f"({merged['class_correct']}/{merged['class_events']}). " + _repeats(m, "heldout3"), "",
              *_confusions(rep),
              "Its misses with v7, as written after that one measurement: " + HELDOUT3_NOTES, "", V8_CHANGES, "",
              *_commands(m, "heldout3")]
    return lines


V8_CHANGES = (
    "What kinematic-v8 changed (`captioners/phases.py` rules 7-9 and rule 1's descent, `task_text.py`; no rule"
    " names a task, a simulator or an expert; each is what a captioner of real teleoperation needs, where "
    "operators press with a closed hand, pull drawers by their grasped handle and wipe or slide in strokes): "
    "(7) under an instruction whose verb works a part or pushes the object (class push, pull, turn, wipe), a "
    "gripper that only opens in the episode, never having closed, held nothing: a fist or tool posture, "
    "labelled as with no grasp (button-press-wall); (8) under such an instruction the stretch in which the arm"
    " holds what it closed on is the task's action, not lift / move / place (coffee-push, sweep-into: \"push "
    "the mug\", \"sweep the cube\"); (9) without a grasp, a level leg at the part that the hand ends by rising "
    "off and coming back down to the height it left is a stroke of the action and the rise and descent a re-"
    "approach, whatever the last-turn rule made of them (plate-slide-back: the pull before the expert's loop "
    "was a reach); (1) fingers that close while the hand still goes mostly down are still grasping, through "
    "the descent (sweep-into's and hand-insert's grasps were lifts); the parser cuts a source (\"out of the "
    "cabinet\", \"off the peg\", \"away from\"), a particle or manner adverb after the object (\"the nut up\", \"the "
    "peg sideways\") and a target after a part verb's object (\"into\", \"onto\", \"to\") from the object, and a "
    "pull's caption keeps its source (\"pull the plate out of the cabinet\"). What is left here: button-press-"
    "wall's descent in front of the button is captioned as the press in 2 episodes (the forward press is under"
    " a fifth of the path, so the action starts at the turn above the wall); 2 sweep-into experts go back down"
    " to the cube at the end (\"grasp the cube\" while the fingers stay closed: no gripper change to see); hand-"
    "insert's block rests in the hole at the end, captioned \"hold the block still\" where the expert still "
    "names the placement (2 events).")

# written after the one measurement of the fourth held-out set (notes on it, the captioner unchanged)
HELDOUT4_NOTES = (
    "Read as a held-out test, the target is met on coffee-pull (11 of 11) and **not met** on four: push-back "
    "0.88 (14 of 16), peg-unplug-side 0.83 (10 of 12), handle-pull-side 0.75 (6 of 8) and the pick-and-place-"
    "like disassemble 0.75 (9 of 12); 50 of 59 events overall. Every pull after a grasp is captioned as the "
    "pull (17 of 19 pull events; rule 8 on tasks it was not written on: before v8 a held handle or mug was "
    "lifted or moved) and no event is captioned with a carry where the truth pulls. Where it misses (seen only"
    " after this one measurement; nothing was changed for them): (a) the experts return to their grasp or "
    "descend arm while already moving the part, with the fingers still closed: disassemble's expert flips "
    "between \"grasp the nut\" and \"lift the nut off the peg\" while it lifts (known from the recording's log "
    "before v8 was written: 3 events), peg-unplug-side's once mid-unplug (1 event), handle-pull-side's goes "
    "back to its descend arm (\"grasp the handle\", the fingers closing) in one episode after the pull has begun"
    " (1 event): no gripper change and no turn of the path marks them; (b) handle-pull-side's pull starts "
    "while the fingers still close on the handle: the captioner keeps the grasp to the fingers' stop (2 "
    "events); (c) one push-back episode loses the puck: the fingers open (the expert's effort drops to 0 away "
    "from the puck) and the hand goes back down to it, captioned \"release the puck\" (2 events) where the "
    "expert's sub-goal is the descent: the gripper did open. The merged truth (`truth.json`, phases under 0.15"
    " s merged into a neighbour) scores lower (0.73), because the merge keeps the first name of a flip. The "
    "caption \"pull the mug out\" drops \"from under the coffee machine\" (the parser's source words are \"out of\","
    " \"off\", \"away from\"; object words only, not scored).")


def _seen_set_lines(m: dict[str, Any], key: str, title: str, intro: str, version: str, earlier: dict[str, float],
                    earlier_all: str, notes: str, changes: str) -> list[str]:
    """A held-out item measured once by `version` (column `<version> (held out)`, `earlier`), then seen by the
    next version (`after`): its table, totals, confusions, the notes written after that one measurement and
    what the next version changed."""
    rep, merged = m[key]["truth_carve.json"], m[key]["truth.json"]
    head = f"{version} (held out)"
    lines = [f"### {title}", "", intro, "", f"| task | events | {head} | after | merged | target |",
             f"|------|--------|{'-' * (len(head) + 2)}|-------|--------|--------|"]
    lines += _task_rows(rep, merged, lambda t: [_cell(earlier, t)])
    lines += ["", f"All events of this set: {rep['class_accuracy']:.3f} ({rep['class_correct']}/"
              f"{rep['class_events']}; held out with {version} {earlier_all}); merged truth "
              f"{merged['class_accuracy']:.3f} ({merged['class_correct']}/{merged['class_events']}). "
              + _repeats(m, key), "",
              *_confusions(rep),
              *([f"Its misses with {version}, as written after that one measurement: " + notes, ""] if notes else []),
              changes, "", *_commands(m, key)]
    return lines


def heldout4_lines(m: dict[str, Any]) -> list[str]:
    """The fourth held-out item's table, measured once with the captioner frozen (kinematic-v8)."""
    intro = ("Five Meta-World tasks used nowhere else in the repository (3 episodes each; every env name of "
             "`tests/corpus/*/README.md` and the `simulate.py` scripts grepped): their task table "
             f"(`HELDOUT4_TASKS`, named from the policies' source) and README were committed ({HELDOUT4_TABLE}) "
             "before any episode was simulated and before any kinematic-v8 rule was written or looked at; the "
             f"dataset was made ({HELDOUT4_DATA}) and the captioner frozen ({FROZEN_V8}, kinematic-v8) before any "
             "episode was captioned, then measured once: column `v8 (held out)`. Its misses were named in the brief "
             "of kinematic-v9's round, so **it is a seen set now**: `after` is no held-out score. "
             "One pick-and-place-like task (disassemble: grasp the nut, lift it off its peg; target 0.95) and four "
             "pulls with a grasp (coffee-pull, push-back: its env brings the puck toward the robot, handle-pull-side, "
             "peg-unplug-side).")
    return _seen_set_lines(m, "heldout4", "Fourth held-out set (no longer held out): `tests/corpus/metaworld_heldout4`",
                           intro, "v8", HELDOUT4_V8, HELDOUT4_V8_ALL, HELDOUT4_NOTES, V9_CHANGES)

V9_CHANGES = (
    "What kinematic-v9 changed (`captioners/phases.py` rule 10; written on the four sets above, it names no "
    "task, simulator or expert): while the arm holds what it closed on, fingers that open part-way (by 30% of "
    "the gripper's travel, read on the fingers' MEASURED opening where the state has one: a command that stays "
    "\"closed\" says nothing of fingers forced apart by what they hold) and then close on it again re-grasp it: "
    "the closing is a grasp, whatever the held stretch was. A teleoperator or expert tightening the hold on a "
    "slipping object is grasping it, not carrying or working it. On the seen sets: sweep-into's two experts "
    "that go back down to the cube at the end (\"grasp the cube\", v8's \"what is left\") are now found "
    "(metaworld_heldout3 0.896 -> 0.925); the other three seen sets unchanged.")

# written after the one measurement of the fifth held-out set (notes on it, the captioner unchanged then)
HELDOUT5_NOTES = (
    "53 of 60 events; the target is met on push-wall (17 of 17: the puck pushed with "
    "the fingers closed on it is the push, rule 8, through the expert's flips between its push arms) and "
    "plate-slide-back-side (6 of 6: a fist, rule 7, and \"slide ... out\" a pull), **not met** on three. Where "
    "it misses (seen only after this one measurement; (b) then led to kinematic-v10's rule 11): (a) sweep (3 events): "
    "the expert opens the fingers as the cube goes past x 0.4 and sweeps on with them open; the captioner "
    "calls the opening and what follows \"release the cube\" (the fingers did open) where the expert's sub-"
    "goal is still the sweep; (b) button-press-topdown-wall (2 events): the hand rests on the pressed button at"
    " the end, \"hold still\" where the expert still names the press (as hand-insert's rest in the third set);"
    " (c) pick-place-wall (2 events, one episode): the carry over the wall and down to the goal's height is "
    "captioned as the placement (the puck does go down to the goal; the expert has no place arm, so its truth "
    "says carry).")


def heldout5_lines(m: dict[str, Any]) -> list[str]:
    """The fifth held-out item's table, measured once with the captioner frozen (kinematic-v9)."""
    if "heldout5" not in m:
        return []
    intro = ("Five Meta-World tasks used nowhere else in the repository (3 episodes each; every env name grepped "
             "with `git grep` over the whole tree): their task table "
             f"(`HELDOUT5_TASKS`, named from the policies' source) and README were committed ({HELDOUT5_TABLE}) "
             "before any episode was simulated and before any kinematic-v9 rule was written or looked at; the "
             f"dataset was made ({HELDOUT5_DATA}) and the captioner frozen ({FROZEN_V9}, kinematic-v9) before any "
             "episode was captioned, then measured once: column `v9 (held out)`. Its misses were then looked at "
             "while kinematic-v10's rule 11 was written, so **it is a seen set now**: `after` is no held-out score. "
             "One pick-and-place task (pick-place-wall: the puck carried over a wall; target 0.95) and four that "
             "are not (push-wall: a puck pushed round a wall with the fingers closed on it; sweep: a cube swept off "
             "the table's edge; plate-slide-back-side: a plate slid out sideways with a fist; "
             "button-press-topdown-wall: a press from above, fingers open).")
    return _seen_set_lines(m, "heldout5", "Fifth held-out set (no longer held out): `tests/corpus/metaworld_heldout5`",
                           intro, "v9", HELDOUT5_V9, HELDOUT5_V9_ALL, HELDOUT5_NOTES, V10_CHANGES)


V10_CHANGES = (
    "What kinematic-v10 changed (`captioners/phases.py` rule 11, `signals.commanded_speed`, `verb_classes.py`, "
    "`task_text.py`; no rule names a task, a simulator or an expert): (11) where the actions are Cartesian "
    "deltas, a final rest in which the command keeps asking for clear motion (at least the moving speed, the "
    "command's gain learned from the episode's own free motion) that the hand does not make (below a quarter of "
    "it, on at least half of the rest's frames) is the hand pushing against what it touches: after a press, "
    "push, part action or placement it is that action held, not a hold (a force-like signal of data that "
    "records no force; absolute-position actions and a command that has stopped keep the hold). Impact verbs "
    "(hit, strike, hammer, pound, kick, punch, bump, bat) are pushes, and a tool phrase (\"with the stick\", "
    "\"using a sponge\") is cut from the object and target. On the seen sets: button-press-topdown-wall's and "
    "hand-insert's final rests (4 events, (b) above and the third set's \"what is left\") are now the press and "
    "the placement; the other sets unchanged.")


def heldout6_lines(m: dict[str, Any]) -> list[str]:
    """The sixth held-out item's table, measured once with the captioner frozen (kinematic-v10)."""
    if "heldout6" not in m:
        return []
    intro = ("Five Meta-World tasks used nowhere else in the repository (3 episodes each): their task table "
             f"(`HELDOUT6_TASKS`, named from the policies' source) and README were committed ({HELDOUT6_TABLE}) "
             "before any episode was simulated and before any kinematic-v10 rule was written; the dataset was made "
             f"({HELDOUT6_DATA}) and the captioner frozen ({FROZEN_V10}, kinematic-v10) before any episode was "
             "captioned, then measured once: column `v10 (held out)`. Its misses were then looked at while "
             "kinematic-v11's rule 12 was written, so **it is a seen set now**: `after` (v11) is an in-sample score, "
             "and no held-out set measures v11. None is pick-and-place: a hammer grasped and swung at a nail, a "
             "stick grasped to push and to pull a thermos, a ball pushed into a goal with the fingers closed, a "
             "reach over a wall.")
    return _seen_set_lines(m, "heldout6", "Sixth held-out set (no longer held out): `tests/corpus/metaworld_heldout6`",
                           intro, "v10", HELDOUT6_V10, HELDOUT6_V10_ALL, HELDOUT6_NOTES, V11_CHANGES)

V11_CHANGES = (
    "What kinematic-v11 changed (`captioners/phases.py` rule 12, `task_text.py`, `templates.py`; written on this "
    "set's misses (a) and (e) after its one measurement, so read its score here as in-sample; no rule names a "
    "task, a simulator or an expert): (12) where rule 8 holds and the instruction names a tool the hand works "
    "with (\"with the stick\", \"using a sponge\", or a verb that names its tool: \"hammer the nail\"), the held "
    "stretch is the tool's carry (lift) up to the path's last sharp turn and the action after it, as rule 5 "
    "splits a part action; the grasp, carry, release and hold name the tool, the action the object and the tool "
    "(\"grasp the stick\", \"lift the stick\", \"push the thermos with the stick\"); an instruction whose verb is "
    "a reach makes an arm's motion without a grasp all reach; the captions keep an impact verb of the "
    "instruction (\"hammer the nail\", \"kick the ball\"). The robot's own body (\"with the gripper\", \"with the "
    "left arm\") is no tool. On the other six sets every score is unchanged.")


# written after the one measurement of the sixth held-out set (notes on it, the captioner unchanged then)
HELDOUT6_NOTES = (
    "29 of 55 events; the target is met on no task. Where it misses (seen only after this one measurement; "
    "(a) and (e) then led to kinematic-v11's rule 12): (a) **a tool's carry is captioned as the tool's "
    "work** (17 events): under \"push / pull the thermos ... with the stick\" and \"hammer the nail\" rule 8 makes "
    "the whole stretch the hand holds what it closed on the task's action, while the expert first carries the "
    "tool into position (\"carry the stick to the thermos's height\", \"lift the hammer in line with the nail\": "
    "class lift; captioned pull 7 times, push 10 times). Rule 8 was written for a held handle, mug or plug, "
    "where holding is working; with a tool the hand first brings the tool to the object. (b) The grasp names the "
    "task's object (\"grasp the nail\", \"grasp the thermos\"): the hand grasps the tool (object words, not "
    "scored). (c) stick-push: the env reports success while the expert is still in \"carry the stick to the "
    "thermos\" (its push arm never runs; the recording's log), so the stick pushes the thermos during a phase "
    "named a carry. (d) soccer: the expert names most of its motion \"reach behind the ball\" (2 of 3 episodes "
    "are that one phase) while the ball is pushed into the goal: the captions' \"push the ball\" (3 events) "
    "miss against that name (kept as the expert's truth). (e) reach-wall: an instruction whose verb is a reach (\"reach the goal behind the "
    "wall\") is captioned \"move the goal behind the wall\" for the motion that reaches it (3 events): with no "
    "grasp and no part verb the captioner names the middle of the path with the carry word, where a reach-only "
    "instruction should make the whole motion its reach. A next held-out set needs another third-party "
    "simulator: of Meta-World's 50 tasks only reach-v3 is left unused (box-close-v3 is refused by the "
    "recording).")



# written after the one measurement of the ManiSkill set (notes on it, the captioner unchanged)
MANISKILL_NOTES = (
    "Its one held-out measurement, as written after it: captions 54 of 60 events; the target is "
    "met on PullCubeTool (16 of 17: rule 12, written on Meta-World's stick and hammer, finds the hook tool's "
    "carry and the pull with it on a simulator it was not written on) and PegInsertionSide (5 of 5), not met on "
    "PushCube (4 of 5), LiftPegUpright (12 of 15) and StackCube (17 of 18; pick-and-place: target 0.95). Where captions miss: "
    "LiftPegUpright's \"turn the peg upright\" is captioned as the lift it is part of (3 events: the captioner "
    "reads the hand's position, not its orientation); StackCube's descent onto the green cube once as \"move "
    "... over\" (1); PushCube's first \"close the gripper\" (an empty gripper closing before the reach, 6 "
    "frames) has no event of its own (1). **Segmentation fails here: boundary F1 0.426 at +-0.1 s (2 frames at "
    "20 fps), not better than the keyframe rule (+0.036, CI through 0).** Its pause and motion-start "
    "boundaries sit 3-4 frames (0.15-0.2 s) after the expert's planner call starts, in every episode: a planned "
    "trajectory (time-optimal, from rest) ramps up slowly and the joint-position controller follows its targets "
    "with a lag, so the measured motion starts after the command does; at +-0.2 s the same boundaries score "
    "0.852 (46 hits, 1 false, 15 missed; keyframes 0.390). The misses beyond the lag: the carry down behind the "
    "cube before the hook's pull (3), PushCube's first closing and reach (6). What was changed after it "
    "(`ingest/segment.py`, `_command_led`; no rule names a simulator): where the actions are absolute targets "
    "of the arm's positions (state and action columns of the same name: a joint-position controller, a leader "
    "arm) and the measured positions follow them with a lag (the shift that best aligns the two speeds, "
    "`command_lag`, at least one frame; up to `segment.command_lead_s` 0.3 s), a motion start or pause end "
    "goes back to where its command started (`command_start`: the command's speed minimum before the move, or "
    "where it was still at rest), never to within `refractory_s` of the gripper transition before it. A "
    "command equal to the measurement moves nothing. Then (2026-12-06, second session; no rule names a simulator "
    "or a task) LiftPegUpright's turn: the hand stands still (its position under the pause speed) while the joints "
    "turn the peg upright for ~2.5 s, so the lift, the turn and the lowering were one event, \"lift the peg\". A "
    "Cartesian arm that also records its orientation (roll, pitch, yaw, or a quaternion as robomimic's "
    "`robot0_eef_quat`) or, failing that, its joints now has turn columns (`ArmLayout.turn`, read as rad/s by "
    "`kinematics.turn_speed`); where the hand stands still and they turn at `move_speed_rad_s` for "
    "`pause_min_s`, the turn starts an event, and the hand's next move after it another "
    "(`kinematics.turns_in_place`, `segment._turns`; both onsets led by the command as above). The captioner "
    "names a held object turned in place \"turn ...\" (rule 13 of `captioners/phases.py`). LiftPegUpright 12/15 "
    "-> 20/21 (its turns found and named in 3 of 3 episodes; the miss left: a lowering called \"move\"), boundary "
    "F1 0.870 -> 0.930 (6 more hits, no false one). Every Meta-World set above (hand positions only: no turn "
    "columns), every corpus item of issue 18 (robomimic_mw's quaternion included) and the lerobot fixtures (roll, "
    "pitch, yaw) give the same boundaries and captions as before: none of them turns in place. Then the pause "
    "rule (`kinematics.pause_boundaries`): a move after a stop had to reach the moving speed within twice "
    "`pause_min_s` (0.3 s) of the speed leaving the pause, or the stop started nothing; a planned move from "
    "rest ramps up slower than that (PushCube's push after the reach behind the cube: 0.35 s, one episode of "
    "three; the hook's carry down behind the cube), so those stops were lost. The move now has until the arm's "
    "next stop to reach the moving speed (a creep that never does still starts nothing), and no pause ends "
    "inside a turn or the rest it ends in (the turn's rule marks those joints). PushCube 4/5 -> 6/6, "
    "PullCubeTool 16/17 -> 21/21, boundary F1 0.930 -> 0.975 (58 hits, 0 false, 3 missed). Unchanged by it: "
    "every Meta-World set (captions and boundary counts alike), every corpus item of issue 18 and Carve's "
    "simulator against contact/object truth (`bench.seg_object_truth`, seed base 910000: dwell 0.533 / 0.978, "
    "blended 0.359 / 0.888).")


def maniskill_lines(m: dict[str, Any]) -> list[str]:
    """The ManiSkill held-out item: verb classes and boundary F1, measured once with the captioner and the
    segmenter frozen before its tasks were chosen."""
    if "maniskill" not in m:
        return []
    rep, merged, seg = m["maniskill"]["truth_carve.json"], m["maniskill"]["truth.json"], m["maniskill_segments"]["0.1"]
    lines = ["### Held-out set from another simulator: `tests/corpus/maniskill_heldout` (ManiSkill 3)", "",
             "Scripted experts of a second third-party simulator (ManiSkill 3's motion-planning solutions; its "
             "README says how the truth comes from the solutions' own planner calls). The captioner "
             f"(kinematic-v11) and the segmenter were frozen ({FROZEN_V11}) before its tasks were chosen; its task "
             f"table, generator and README were committed ({MANISKILL_TABLE}) before any episode was simulated, and "
             f"the dataset ({MANISKILL_DATA}) was never captioned or segmented before its one measurement: column "
             f"`held out` and, for the segmentation, {MANISKILL_SEG_HELD}. The segmenter's command-led onsets "
             "(`segment._command_led`) and, later (2026-12-06), the turn in place (`kinematics.turns_in_place`, "
             "the captioner's rule 13) and the pause rule's slow moves were then written with its misses in view, so `after` and the boundary "
             "F1 below are in-sample.",
             "", "| task | events | held out | after | merged | target |",
             "|------|--------|----------|-------|--------|--------|"]
    lines += _task_rows(rep, merged, lambda t: [_cell(MANISKILL_HELD, t)])
    lines += ["", f"All events: {rep['class_accuracy']:.3f} ({rep['class_correct']}/{rep['class_events']}; held "
              f"out {MANISKILL_HELD_ALL}); merged truth {merged['class_accuracy']:.3f} ({merged['class_correct']}/"
              f"{merged['class_events']}). " + _repeats(m, "maniskill"), "",
              "Segmentation against the same truth (`truth.json`, phases >= 0.15 s), +-0.1 s, in-sample: "
              f"{_f1_figures(seg)}; target F1 >= 0.85 (issue 18) "
              f"{'met' if seg['carve']['boundary_f1'] >= 0.85 else '**not met**'}.", "",
              *_confusions(rep), *([MANISKILL_NOTES, ""] if MANISKILL_NOTES else []), *_commands(m, "maniskill")]
    return lines


def simulator_item(item: Path, out: Path, key: str, tols: tuple[str, ...]) -> dict[str, Any]:
    """A third-party simulator's item (the ManiSkill sets): captions against both truth forms, boundaries
    against `truth.json` at each tolerance of `tols` (with the keyframe rule), and the repeated captions."""
    root = out / key
    reports, cmds = run_item(item, root, ("truth_carve.json", "truth.json"))
    segs = {}
    for tol in tols:
        seg_cmd = [_carve(), "eval-segments", "--root", _rel(root), "--truth", _rel(item / "truth.json"),
                   "--tolerance-s", tol, "--baseline", "keyframes", "--bootstrap", "1000", "--json"]
        seg = json.loads(_run(seg_cmd)[0])
        segs[tol] = {"carve": seg["overall"], "keyframes": seg["baselines"]["keyframes"]["overall"],
                     "diff": seg["comparison"]["keyframes"]}
        cmds.append(seg_cmd)
    pairs, same, examples = repeats(root)
    return {key: reports, f"{key}_commands": cmds, f"{key}_pairs": pairs, f"{key}_same": same,
            f"{key}_examples": examples, f"{key}_segments": segs}


def _f1_figures(seg: dict[str, Any]) -> str:
    """Boundary F1 with its interval, precision, recall and counts, then the keyframe rule and the difference."""
    c, k, d = seg["carve"], seg["keyframes"], seg["diff"]
    lo, hi = c.get("boundary_f1_ci", [float("nan")] * 2)
    return (f"boundary F1 **{c['boundary_f1']:.3f}** [{lo:.2f}, {hi:.2f}] (P {c['boundary_precision']:.3f}, R "
            f"{c['boundary_recall']:.3f}; {c['boundary_tp']} hits, {c['boundary_fp']} false, {c['boundary_fn']} "
            f"missed); the keyframe rule (PerAct/RVT) {k['boundary_f1']:.3f}; Carve - keyframes {d['diff']:+.3f} "
            f"[{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]")


def maniskill2_lines(m: dict[str, Any]) -> list[str]:
    """The second ManiSkill held-out item: verb classes and boundary F1 with the captioner and the segmenter
    as they stood when its tasks were chosen (kinematic-v12)."""
    if "maniskill2" not in m:
        return []
    rep, merged = m["maniskill2"]["truth_carve.json"], m["maniskill2"]["truth.json"]
    lines = ["### Second held-out set from ManiSkill 3: `tests/corpus/maniskill_heldout2`", "",
             "Four more ManiSkill 3 solutions (PullCube, PlugCharger, PlaceSphere, PickCube), chosen, named and "
             f"committed ({FROZEN_V12}) before any episode was simulated, with the captioner (kinematic-v12) and "
             "the segmenter as they stood then; its README says what was known. `v12` is this run's score "
             "against every phase change (`truth_carve.json`), `merged` against `truth.json`.", "",
             "| task | events | v12 | merged | target |", "|------|--------|-----|--------|--------|"]
    lines += _task_rows(rep, merged, lambda t: [])
    lines += ["", f"All events: {rep['class_accuracy']:.3f} ({rep['class_correct']}/{rep['class_events']}); merged "
              f"truth {merged['class_accuracy']:.3f} ({merged['class_correct']}/{merged['class_events']}). "
              + _repeats(m, "maniskill2"), ""]
    for tol, seg in m["maniskill2_segments"].items():
        lines.append(f"Segmentation against `truth.json` at +-{tol} s: {_f1_figures(seg)}.")
    lines += ["", *_confusions(rep), MANISKILL2_NOTES, "", *_commands(m, "maniskill2")]
    return lines


SET_KEYS = (("reports", "metaworld_tasks"), ("heldout", "metaworld_heldout"), ("heldout2", "metaworld_heldout2"),
            ("heldout3", "metaworld_heldout3"), ("heldout4", "metaworld_heldout4"), ("heldout5", "metaworld_heldout5"),
            ("heldout6", "metaworld_heldout6"), ("maniskill", "maniskill_heldout"), ("maniskill2", "maniskill_heldout2"))


def recall_lines(m: dict[str, Any]) -> list[str]:
    """The truth's side of the score for every set (`eval-captions`' `phase_recall`): of the truth's phases
    (consecutive phases of one class one run), how many an event was judged on and how many it names."""
    lines = ["### The truth's side: phases an event names", "",
             "The accuracies above judge each EVENT at its middle frame, so a truth phase that no event's "
             "middle frame falls in (no event of its own) costs them nothing. Here each set's truth phases are "
             "counted instead (`eval-captions`' `phase_recall`; consecutive phases of one class are one run, so "
             "\"reach above\" then \"descend to\" is one reach): `seen` = runs an event was judged on, "
             "`named` = runs such an event names by class; against every phase change (`truth_carve.json`) and, "
             "where the set has it in this run, against the phases of >= 0.15 s (`truth.json`: a Meta-World "
             "expert's one-frame flips between its branches merged). Same runs as above.", "",
             "| set | runs | seen | named | recall | recall, phases >= 0.15 s | runs no event names (first three) |",
             "|-----|------|------|-------|--------|--------------------------|------------------------------------|"]
    for key, name in SET_KEYS:
        if key not in m or "phases" not in m[key]["truth_carve.json"]:
            continue
        rep, merged = m[key]["truth_carve.json"], m[key].get("truth.json")
        miss = "; ".join(f"ep {u['episode_index']} {u['name']}{'' if u['seen'] else ' (no event)'}"
                         for u in rep["unnamed_phases"][:3]) or "-"
        mg = (f"{merged['phase_recall']:.3f} ({merged['phases_named']}/{merged['phases']})"
              if merged and "phases" in merged else "-")
        lines.append(f"| {name} | {rep['phases']} | {rep['phases_seen']} | {rep['phases_named']} | "
                     f"{rep['phase_recall']:.3f} | {mg} | {miss} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/carve-bench-caption-classes"))
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    ap.add_argument("--render", action="store_true",
                    help="write the section from the last run's OUT/measure.json instead of running again")
    args = ap.parse_args(argv)
    if args.render:
        m = json.loads((args.out / "measure.json").read_text())
    else:
        m = measure(fresh_dir(args.out))
        (args.out / "measure.json").write_text(json.dumps(m, indent=1))
    text = section(m)
    if args.no_write:
        print(text)
    else:
        write_section(text, BEGIN, END, HEADING)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
