"""`carve export`: a shards version as a dataset trainers read (the CLI of carve.export).

    carve export --root R --format lerobot --shards v003 --out DIR [--unit episode|event]
                 [--task-from task|caption] [--codec av1|h264] [--reencode] [--overwrite]

Writes a LeRobot v3.0 dataset with per-event subtasks, a Carve sidecar of the events and the
version's balance as per-frame sampling weights (carve/export/lerobot.py). Exit status 2 with
a one-line reason for a bad version, an existing folder, a source that is gone, or a failed
write (the folder is then left as it was).
"""

from __future__ import annotations

import argparse
import json
import re


def _version(text: str) -> int:
    m = re.fullmatch(r"v?(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"shards version {text!r}: give it as v003 or 3")
    return int(m.group(1))


def cmd_export(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.export.lerobot import export_lerobot
    from carve.storage.root import root_of

    cfg = load_config(args)
    with root_of(cfg) as root:
        s = export_lerobot(
            root, args.out, version=args.shards, unit=args.unit, task_from=args.task_from, codec=args.codec,
            video="reencode" if args.reencode else "auto", crf=args.crf, dataset=args.dataset,
            overwrite=args.overwrite, episodes_per_file=args.episodes_per_file, trim_idle=args.trim_idle,
        )
    if args.json:
        print(json.dumps(s.as_dict(), indent=2))
        return 0
    print(f"exported shards v{s.shards_version:03d} as LeRobot v3.0: {s.episodes} episodes ({s.unit}s), "
          f"{s.frames} frames, {s.events} events, {s.tasks} tasks, {s.subtasks} subtasks in {s.seconds:.1f} s")
    for cam, how in s.cameras.items():
        print(f"  {cam}: {how}")
    if s.psnr_min_db is not None:
        print(f"  re-encoded frames vs source: PSNR min {s.psnr_min_db:.1f} dB, mean {s.psnr_mean_db:.1f} dB")
    print(f"  task_index from the {'episode task' if s.task_from == 'task' else 'event caption'}; "
          f"subtask_index = event caption; sampling_weight = the version's balance")
    print(f"  {s.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("export", help="write a shards version as a LeRobot v3.0 dataset with per-event language")
    add_common(p)
    p.add_argument("--format", choices=["lerobot"], default="lerobot", help="output format (LeRobot v3.0)")
    p.add_argument("--shards", type=_version, default=None, metavar="vNNN",
                   help="shards version to export (default: the latest complete one)")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--unit", choices=["episode", "event"], default="episode",
                   help="episode: whole source episodes with per-frame subtasks and sampling weights (default); "
                        "event: every shard row as its own episode")
    p.add_argument("--task-from", choices=["task", "caption"], default=None,
                   help="what task_index holds: the episode goal (default for --unit episode) or the event "
                        "caption (default for --unit event; for policies that read only the task)")
    p.add_argument("--codec", choices=["av1", "h264"], default="av1", help="codec of re-encoded video")
    p.add_argument("--crf", type=int, default=None, help="quality of re-encoded video (default: av1 24, h264 20)")
    p.add_argument("--reencode", action="store_true", help="re-encode every span (default: stream-copy "
                   "a camera when every exported span of it allows it)")
    p.add_argument("--dataset", default=None, help="export only this dataset's rows of the version")
    p.add_argument("--episodes-per-file", type=int, default=None,
                   help="start a new data/video file after this many episodes (default: lerobot's size limits)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--trim-idle", action="store_true",
                   help="cut the idle head and tail the quality gate found off each episode (data and video alike)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--job-id", default=None, help="the service job this export runs as (names the process)")
    p.set_defaults(func=cmd_export)
