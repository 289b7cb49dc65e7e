"""`carve eval-captions`: caption verb, verb-class, object, arm and verb-and-arm accuracy of a catalog against ground truth.

    carve eval-captions --root ROOT --truth TRUTH [--at overlap|middle] [--json]
                        [--min-accuracy 0.9] [--min-object-accuracy 0.9] [--min-verb-arm-accuracy 0.95]
                        [--min-class-accuracy 0.9]

TRUTH is any form `carve eval-segments --truth` takes (`ingest.truth.read_truth`): Carve's own
`ground_truth_events.json`, JSON annotations of one's own (`{"episode_index", "boundaries",
"phases": [name, ...]}`), or a LeRobot dataset folder with per-frame `subtask_index`; plain entries
without `length` take it from the catalog. Phase names are the user's own: each is scored by the
class of its leading verb (`captioners.verb_classes`: "pull the drawer open" is the `pull` class,
"descend to the peg" `reach`), against the class of the caption's verb; the exact-verb accuracy
compares the caption's verb with the phase name itself (the names `carve synth` writes).

Reads the committed events of ROOT (`storage.events.read_events`), maps each to the
ground-truth phase it is scored against (the phase it overlaps most; with two arms, the acting
arm's: `captioners.eval.truth_phase`, or both arms' when they do the same thing at once:
`captioners.eval.acting_arms`) and judges each caption (`captioners.eval.judge`): the verb it
gives the acting arm(s) against the phase name, the arm(s) it names, and the object it names
against the phase's `object` (colour words + head noun: `captioners.eval.object_matches`).
`--at middle` takes each event's truth phase at its middle frame instead of its largest overlap.
Prints verb accuracy overall, per phase, per arm and per task type, verb-class accuracy overall and
per task type with the class confusion table, object accuracy (over
events whose phase has an object), arm accuracy for multi-arm episodes, verb-and-arm accuracy
(both right in the same caption; the verb alone in one-arm episodes) and the common
confusions, or the full report as JSON with `--json`. Exit code 1 when `--min-accuracy`
(verb), `--min-object-accuracy`, `--min-verb-arm-accuracy` or `--min-class-accuracy` is not met.
"""

from __future__ import annotations

import argparse
import json

from carve.core.errors import CarveError

EVENT_COLUMNS = ["dataset", "episode_index", "start_frame", "end_frame", "caption", "fps"]


def eval_captions(args: argparse.Namespace) -> int:
    from carve.captioners.eval import evaluate, format_report
    from carve.cli.main import load_config
    from carve.ingest.truth import complete_truth, episode_info, read_truth
    from carve.storage.events import read_events
    from carve.storage.root import root_of

    cfg = load_config(args)
    truth = read_truth(args.truth)  # TruthError is a CarveError naming the file and the forms
    table = read_events(root_of(cfg), columns=EVENT_COLUMNS)
    if table.num_rows == 0:
        raise CarveError(f"no events in the catalog at {cfg.root}; run `carve run` first")
    rows = table.select(EVENT_COLUMNS).to_pylist()
    if truth.get("dataset") is not None and any(r["dataset"] == truth["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == truth["dataset"]]
    else:
        mine = rows
    complete_truth(truth, episode_info((r["episode_index"], r["end_frame"], r["fps"]) for r in mine),
                   f"the catalog of {cfg.root}")
    report = evaluate(rows, truth, at=args.at)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.min_accuracy is not None and report["accuracy"] < args.min_accuracy:
        return 1
    if args.min_object_accuracy is not None and report["object_accuracy"] < args.min_object_accuracy:
        return 1
    if args.min_verb_arm_accuracy is not None and report["verb_arm_accuracy"] < args.min_verb_arm_accuracy:
        return 1
    if args.min_class_accuracy is not None and report["class_accuracy"] < args.min_class_accuracy:
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser(
        "eval-captions", help="caption verb, object and arm accuracy against ground truth",
        description="Compare each event's caption verb, object and arm with the ground-truth phase it overlaps "
                    "most (with two arms: the acting arm's phase, or both arms' when they act together).",
    )
    add_common(p)
    p.add_argument("--truth", required=True,
                   help="ground truth in any form `carve eval-segments` takes: ground_truth_events.json, JSON "
                        "annotations with phase names, or a LeRobot dataset folder with subtask_index")
    p.add_argument("--at", choices=("overlap", "middle"), default="overlap",
                   help="score each event against the truth phase it overlaps most (default) or the one at its "
                        "middle frame")
    p.add_argument("--min-class-accuracy", type=float, default=None,
                   help="exit 1 when verb-class accuracy is below this")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--min-accuracy", type=float, default=None, help="exit 1 when verb accuracy is below this")
    p.add_argument("--min-object-accuracy", type=float, default=None,
                   help="exit 1 when object accuracy is below this")
    p.add_argument("--min-verb-arm-accuracy", type=float, default=None,
                   help="exit 1 when verb-and-arm accuracy (both right in one caption) is below this")
    p.set_defaults(func=eval_captions)
