"""`carve eval-segments`: score event boundaries against ground truth (see carve.ingest.eval_segments).

    carve eval-segments --root out --truth data/sim/ground_truth_events.json
    carve eval-segments --source data/sim --truth data/sim/ground_truth_events.json --tolerance-s 0.1 \\
        --baseline keyframes --bootstrap 1000

The boundary tolerance is `--tolerance` frames (default 2) or `--tolerance-s` seconds, resolved
per episode from its fps; the report says which. `--baseline keyframes` also scores the
PerAct/RVT keyframe rule (`carve.ingest.keyframes`) on the same dataset (`--source`), with the
same tolerance, in the same run; `--bootstrap N` adds 95% intervals over episodes and, with a
baseline, the paired interval of Carve's F1 minus the baseline's.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from carve.ingest.eval_segments import (
    DEFAULT_TOLERANCE,
    evaluate,
    format_comparison,
    format_report,
    load_truth,
    paired_bootstrap,
    predictions_by_method,
    predictions_from_catalog,
)
from carve.storage.root import root_of

BASELINES = ("keyframes",)


def _run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config

    if not args.source and not args.root:
        raise SystemExit("carve eval-segments: give --root (event catalog) or --source (dataset)")
    if args.baseline and not args.source:
        raise SystemExit(f"carve eval-segments: --baseline {args.baseline} runs on the dataset's signals; "
                         "give the dataset with --source")
    if args.tolerance_s is not None and args.tolerance_s < 0:
        raise SystemExit(f"carve eval-segments: --tolerance-s must be >= 0, got {args.tolerance_s}")
    cfg = load_config(args)
    truth = load_truth(args.truth)
    methods = ["carve", *([args.baseline] if args.baseline else [])]
    if args.source:
        preds = predictions_by_method(args.source, cfg.segment, cfg.source, methods, progress=not args.json)
    else:
        preds = {"carve": predictions_from_catalog(root_of(cfg), args.dataset, hint=truth.get("dataset"))}
    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    kw: dict[str, Any] = {"tol": tol, "tol_s": args.tolerance_s, "bootstrap": args.bootstrap,
                          "seed": args.bootstrap_seed}
    report = evaluate(truth, preds["carve"], **kw)
    report["method"] = "carve"
    texts = [format_report(report, "carve" if args.baseline else None)]
    if args.baseline:
        base = evaluate(truth, preds[args.baseline], **kw)
        base["method"] = args.baseline
        cmp = paired_bootstrap(report, base, args.bootstrap, args.bootstrap_seed) if report["overall"] else None
        report["baselines"] = {args.baseline: base}
        report["comparison"] = {args.baseline: cmp}
        texts.append(format_report(base, f"{args.baseline} (PerAct/RVT keyframe rule)"))
        if cmp:
            texts.append(format_comparison(args.baseline, cmp))
    print(json.dumps(report, indent=2) if args.json else "\n\n".join(texts))
    return 0 if report["overall"] else 1


def register(subparsers: Any) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("eval-segments", help="score event boundaries against simulated ground truth")
    add_common(p)
    p.add_argument("--truth", required=True, help="ground_truth_events.json written by `carve synth`")
    p.add_argument("--source", default=None,
                   help="segment this dataset directly (the event catalog of --root is read when --source is absent)")
    p.add_argument("--dataset", default=None, help="dataset name in the catalog (default: the truth's)")
    tol = p.add_mutually_exclusive_group()
    tol.add_argument("--tolerance", type=int, default=None,
                     help=f"boundary match tolerance in frames (default {DEFAULT_TOLERANCE})")
    tol.add_argument("--tolerance-s", type=float, default=None, metavar="SECONDS",
                     help="boundary match tolerance in seconds, resolved per episode from its fps")
    p.add_argument("--baseline", choices=list(BASELINES), default=None,
                   help="also score this baseline on --source in the same run (keyframes: the PerAct/RVT rule)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="95%% bootstrap intervals over episodes from N resamples (0: none)")
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
