"""`carve eval-segments`: score event boundaries against ground truth (see carve.ingest.eval_segments)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from carve.ingest.eval_segments import (
    DEFAULT_TOLERANCE,
    evaluate,
    format_report,
    load_truth,
    predictions_from_catalog,
    predictions_from_source,
)
from carve.storage.root import open_root


def _run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config

    if not args.source and not args.root:
        raise SystemExit("carve eval-segments: give --root (event catalog) or --source (dataset)")
    cfg = load_config(args)
    truth = load_truth(args.truth)
    if args.source:
        predicted = predictions_from_source(args.source, cfg.segment, cfg.source, progress=not args.json)
    else:
        predicted = predictions_from_catalog(open_root(cfg.root), args.dataset, hint=truth.get("dataset"))
    report = evaluate(truth, predicted, tol=args.tolerance)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["overall"] else 1


def register(subparsers: Any) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("eval-segments", help="score event boundaries against simulated ground truth")
    add_common(p)
    p.add_argument("--truth", required=True, help="ground_truth_events.json written by `carve synth`")
    p.add_argument("--source", default=None, help="segment this dataset directly instead of reading --root")
    p.add_argument("--dataset", default=None, help="dataset name in the catalog (default: the truth's)")
    p.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE, help="boundary match tolerance (frames)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run)
