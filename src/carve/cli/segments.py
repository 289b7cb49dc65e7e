"""`carve eval-segments`: score event boundaries against ground truth (see carve.ingest.eval_segments).

    carve eval-segments --root out --truth data/sim/ground_truth_events.json
    carve eval-segments --root out --truth my_annotations.json --baseline keyframes
    carve eval-segments --root out --truth /data/annotated_lerobot_dataset
    carve eval-segments --source data/sim --truth data/sim/ground_truth_events.json --tolerance-s 0.1 \\
        --baseline keyframes --bootstrap 1000

`--truth` is detected (carve.ingest.truth): Carve's `ground_truth_events.json` from `carve
synth`; JSON annotations of one's own (a list, JSON Lines, or `{"episodes": [...]}` of
`{"episode_index", "boundaries", "phases"?}`, the missing lengths and fps taken from the
episodes scored); or a LeRobot v2.1/v3.0 dataset whose frames carry `subtask_index` (its
changes are the boundaries), e.g. one written by `carve export` or annotated with lerobot's
tools. Anything else stops with one message naming the file and what was wrong.

The predictions are the event catalog of `--root`, or (`--source`) the segmenter run on the
dataset directly. The boundary tolerance is `--tolerance` frames (default 2) or `--tolerance-s`
seconds, resolved per episode from its fps; the report says which. `--baseline keyframes`
also scores the PerAct/RVT keyframe rule (`carve.ingest.keyframes`) with the same tolerance, in
the same run, on the dataset of `--source`, or else on the source the catalog of `--root`
recorded for the dataset (an error names its URI when it is gone); `--bootstrap N` adds 95%
intervals over episodes and, with a baseline, the paired interval of Carve's F1 minus the
baseline's. Errors print as `carve eval-segments: <message>` with exit status 1.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from carve.core.errors import CarveError
from carve.ingest.eval_segments import (
    DEFAULT_TOLERANCE,
    catalog_episodes,
    catalog_source,
    evaluate,
    format_comparison,
    format_report,
    paired_bootstrap,
    run_methods,
)
from carve.ingest.truth import complete_truth, read_truth
from carve.storage.root import root_of

BASELINES = ("keyframes",)


def _predict(args: argparse.Namespace, cfg: Any, truth: dict[str, Any]
             ) -> tuple[dict[str, dict[int, list[int]]], str | None]:
    """(method -> episode_index -> boundaries, the dataset the baseline ran on); completes
    `truth`'s missing lengths/fps from the episodes scored."""
    methods = ["carve", *([args.baseline] if args.baseline else [])]
    progress = not args.json
    if args.source:
        preds, info = run_methods(args.source, cfg.segment, methods, cfg.source.format, progress)
        complete_truth(truth, info, f"dataset {args.source}")
        return preds, args.source
    root = root_of(cfg)
    dataset, carve, info = catalog_episodes(root, args.dataset, hint=truth.get("dataset"))
    complete_truth(truth, info, f"the catalog of {root}")
    preds = {"carve": carve}
    if not args.baseline:
        return preds, None
    uri, fmt = catalog_source(root, dataset)
    preds[args.baseline] = run_methods(uri, cfg.segment, [args.baseline], fmt, progress)[0][args.baseline]
    return preds, uri


def _run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config

    if not args.source and not args.root:
        raise SystemExit("carve eval-segments: give --root (event catalog) or --source (dataset)")
    if args.tolerance_s is not None and args.tolerance_s < 0:
        raise SystemExit(f"carve eval-segments: --tolerance-s must be >= 0, got {args.tolerance_s}")
    cfg = load_config(args)
    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    kw: dict[str, Any] = {"tol": tol, "tol_s": args.tolerance_s, "bootstrap": args.bootstrap,
                          "seed": args.bootstrap_seed}
    try:
        truth = read_truth(args.truth)
        preds, base_source = _predict(args, cfg, truth)
        report = evaluate(truth, preds["carve"], **kw)
        base = evaluate(truth, preds[args.baseline], **kw) if args.baseline else None
    except (CarveError, ValueError, OSError) as e:
        raise SystemExit(f"carve eval-segments: {e}") from None
    report["method"] = "carve"
    report["truth"] = {"path": truth["path"], "form": truth["form"], "episodes": len(truth["episodes"])}
    texts = [f"ground truth {truth['path']} ({_FORM_TEXT[truth['form']]}, {len(truth['episodes'])} episodes)",
             format_report(report, "carve" if args.baseline else None)]
    if args.baseline and base is not None:
        base["method"] = args.baseline
        base["source"] = base_source
        cmp = paired_bootstrap(report, base, args.bootstrap, args.bootstrap_seed) if report["overall"] else None
        report["baselines"] = {args.baseline: base}
        report["comparison"] = {args.baseline: cmp}
        texts.append(format_report(base, f"{args.baseline} (PerAct/RVT keyframe rule on {base_source})"))
        if cmp:
            texts.append(format_comparison(args.baseline, cmp))
    print(json.dumps(report, indent=2) if args.json else "\n\n".join(texts))
    return 0 if report["overall"] else 1


_FORM_TEXT = {"carve": "carve synth", "json": "JSON annotations", "lerobot": "LeRobot subtask_index"}


def register(subparsers: Any) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("eval-segments", help="score event boundaries against ground truth (carve synth's, "
                                                        "JSON annotations, or a LeRobot dataset's subtasks)")
    add_common(p)
    p.add_argument("--truth", required=True, metavar="FILE_OR_DATASET",
                   help="ground truth, detected: ground_truth_events.json of `carve synth`; JSON annotations "
                        "(a list, JSON Lines or {\"episodes\": [...]} of {\"episode_index\", \"boundaries\", "
                        "\"phases\"?}; missing length/fps come from the episodes scored); or a LeRobot v2.1/v3.0 "
                        "dataset (local or s3://) whose frames carry subtask_index")
    p.add_argument("--source", default=None,
                   help="segment this dataset directly (the event catalog of --root is read when --source is absent)")
    p.add_argument("--dataset", default=None, help="dataset name in the catalog (default: the truth's)")
    tol = p.add_mutually_exclusive_group()
    tol.add_argument("--tolerance", type=int, default=None,
                     help=f"boundary match tolerance in frames (default {DEFAULT_TOLERANCE})")
    tol.add_argument("--tolerance-s", type=float, default=None, metavar="SECONDS",
                     help="boundary match tolerance in seconds, resolved per episode from its fps")
    p.add_argument("--baseline", choices=list(BASELINES), default=None,
                   help="also score this baseline in the same run (keyframes: the PerAct/RVT rule), on --source "
                        "or else on the source the catalog of --root recorded")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="95%% bootstrap intervals over episodes from N resamples (0: none)")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
