"""`carve check`: what is wrong with a dataset, before anyone trains on it (see carve.quality).

    carve check --source /data/my_lerobot_dataset
    carve check --source data.hdf5 --format hdf5 --json report.json --markdown report.md --fail-on error
    carve check --source s3://bucket/ds --set check.idle_min_s=2.0

Works on any source Carve reads, with no root, like a linter. Prints one line per defective
episode and a summary; `--json` / `--markdown` write the full report (carve.quality.check);
`--fail-on error|warning` exits 1 when a defect at least that severe is found. An unreadable
episode is a finding (`unreadable`) with its reason; a source that cannot be listed at all is an
error (exit 2).
"""

from __future__ import annotations

import argparse
import json

FAILED = 1


def _write(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary name (a half-written report never stands)."""
    from carve.storage.fs import atomic_write_bytes

    atomic_write_bytes(text.encode(), path)


def cmd_check(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.quality.check import check_source, to_markdown

    cfg = load_config(args)
    report = check_source(args.source, args.format, cfg.check, cfg.segment, dataset=args.dataset,
                          videos=not args.no_video, progress=cfg.ray.progress)
    d = report.as_dict()
    if args.json:
        _write(args.json, json.dumps(d, indent=2))
    if args.markdown:
        _write(args.markdown, to_markdown(report))
    for e in d["episodes"]:
        if e["defects"]:
            kinds = ", ".join(f"{x['kind']} {x['start_frame']}-{x['end_frame']}" for x in e["defects"])
            print(f"episode {e['episode_index']}: score {e['score']}: {kinds}")
    s = d["summary"]
    print(f"{report.dataset}: {s['episodes']} episodes, {s['clean']} clean, {s['with_errors']} with errors; "
          + (", ".join(f"{k} {v}" for k, v in s["by_kind"].items()) or "no defects"))
    if args.fail_on and report.worst(args.fail_on):
        return FAILED
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("check", help="find what is wrong with a dataset (NaN, gaps, frozen video, idle ends, ...)")
    add_common(p)
    p.add_argument("--source", required=True, help="dataset folder, file or URI (any format Carve reads)")
    p.add_argument("--format", default="auto", choices=["auto", "lerobot", "folder", "hdf5", "rlds"])
    p.add_argument("--dataset", default=None, help="dataset name (default: from the source)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the full report as JSON")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the report as Markdown")
    p.add_argument("--fail-on", choices=["error", "warning"], default=None,
                   help="exit 1 when a defect at least this severe is found")
    p.add_argument("--no-video", action="store_true", help="check the signals only (no frame is read)")
    p.set_defaults(func=cmd_check)
