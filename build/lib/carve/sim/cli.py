"""`carve synth`: the command line of the simulator (see sim/synth.py).

`--noise LEVEL` (0..1, default 0) adds the teleoperation-noise model of
`sim.tasks.OperatorNoise`: hand drift, per-motion speed variation, brief mid-motion
hesitations and variable dwells; 0 is the clean scripted operator.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

# the task types of sim/tasks.py, listed here so that `carve --help` does not import pybullet
TASK_CHOICES = ("pick_place", "stack", "push", "two_object")


def _run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.sim.synth import synthesize

    load_config(args)  # logging level and config validation, like every subcommand
    t0 = time.perf_counter()
    try:
        root = synthesize(
            args.out, args.episodes, workers=args.workers, seed=args.seed, fps=args.fps, size=args.size,
            codec=args.codec, tasks=args.tasks, overwrite=args.overwrite, progress=not args.quiet,
            operator_noise=args.noise,
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
    p.add_argument("--fps", type=int, default=12)
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (square)")
    p.add_argument("--codec", choices=["h264", "av1"], default="h264")
    p.add_argument("--tasks", nargs="+", choices=list(TASK_CHOICES), default=None,
                   help="task types to generate (round-robin); default: all")
    p.add_argument("--noise", type=float, default=0.0, metavar="LEVEL",
                   help="teleoperation noise 0..1 (hand drift, speed variation, hesitations, "
                        "variable dwells); 0 = clean scripted operator")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_run)
