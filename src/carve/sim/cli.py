"""`carve synth`: the command line of the simulator (see sim/synth.py).

Conditions: `--style dwell|blended` (the operator stops after every phase, or moves through
lift -> move -> place without stopping), `--fps` (10..50; the motion takes the same seconds
at any rate), `--arms 1|2` (two Pandas with ALOHA-style `left_*` / `right_*` names),
`--cameras N` (views, each its own video feature) and `--noise LEVEL` (0..1, default 0:
per-episode speed, tremor, hesitations, variable holds, gripper-sensor noise; 0 is the clean
scripted operator). The defaults are the historical dataset: dwell, 12 fps, one camera, one
arm; any other style or arm count defaults to 30 fps and two cameras.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

# the task types of sim/tasks.py, listed here so that `carve --help` does not import pybullet
TASK_CHOICES = ("pick_place", "stack", "push", "two_object", "bimanual_pick_place")
STYLE_CHOICES = ("dwell", "blended")


def _run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.sim.synth import synthesize

    load_config(args)  # logging level and config validation, like every subcommand
    t0 = time.perf_counter()
    try:
        root = synthesize(
            args.out, args.episodes, workers=args.workers, seed=args.seed, fps=args.fps, size=args.size,
            codec=args.codec, tasks=args.tasks, overwrite=args.overwrite, progress=not args.quiet,
            operator_noise=args.noise, style=args.style, arms=args.arms, cameras=args.cameras,
        )
    except (ValueError, FileExistsError) as e:
        print(f"carve synth: error: {e}")
        return 2
    if not args.quiet:
        print(f"wrote {args.episodes} episodes to {root} in {time.perf_counter() - t0:.1f}s "
              f"(ground truth: {root / 'ground_truth_events.json'})")
    return 0


def register(subparsers: Any) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("synth", help="simulate Franka Panda episodes as a LeRobot v3.0 dataset + ground truth")
    add_common(p)
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--workers", type=int, default=2, help="simulation processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", choices=list(STYLE_CHOICES), default="dwell",
                   help="operator style: dwell = stop after every phase; blended = lift -> move -> place "
                        "without stopping (stops only to grasp and release)")
    p.add_argument("--arms", type=int, choices=[1, 2], default=1,
                   help="1 Panda, or 2 side by side (ALOHA-style left_*/right_* names, overlapping activity)")
    p.add_argument("--fps", type=int, default=None,
                   help="frame rate 10..50 (default: 12 for dwell with one arm, else 30)")
    p.add_argument("--cameras", type=int, default=None,
                   help="camera views, each a video feature (1 arm: front, wrist, side, top; 2 arms: front, "
                        "side, left_wrist, right_wrist); default: 1 for dwell with one arm, else 2")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (square)")
    p.add_argument("--codec", choices=["h264", "av1"], default="h264")
    p.add_argument("--tasks", nargs="+", choices=list(TASK_CHOICES), default=None,
                   help="task types to generate (round-robin); default: all for the arm count "
                        "(bimanual_pick_place needs --arms 2, the others --arms 1)")
    p.add_argument("--noise", type=float, default=0.0, metavar="LEVEL",
                   help="teleoperation noise 0..1 (per-episode speed, tremor, hesitations, variable holds, "
                        "gripper-sensor noise); 0 = clean scripted operator")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_run)
