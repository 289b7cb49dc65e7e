"""The replay gate of the closed-loop simulator: recorded `carve synth` actions, replayed open loop
in `carve.sim.env.SimEnv`, must reach the task's success predicate in >= 95% of episodes per type.

For every task type it simulates `--episodes` episodes exactly as `carve synth --seed S --tasks
<type>` would (episode i has seed `episode_seed(S, i)`; no rendering, the actions do not depend
on it), replays each one's recorded actions in a fresh env of the same conditions (fps, style,
cameras), and reports per type the success rate, the mean task progress (0..100), and the
largest state deviation from the recording (rad / m). `gate_ok` is whether every type reaches
`--threshold`. Runs in `--workers` processes.

Run: `python -m bench.replay_gate [--episodes 20 --seed 0 --style dwell --noise 0 --fps N --hold foh]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

ONE_ARM = ("pick_place", "stack", "push", "two_object")
TWO_ARM = ("bimanual_pick_place",)


def _job(args: tuple[str, int, int | None, str, float, str]) -> dict[str, Any]:
    from carve.sim.env import arms_for, replay
    from carve.sim.synth import default_cameras, default_fps
    from carve.sim.tasks import run_episode

    task, seed, fps, style, noise, hold = args
    arms = arms_for(task)
    fps = fps or default_fps(style, arms)
    t0 = time.perf_counter()
    ep = run_episode(task, seed, fps=fps, render=False, operator_noise=noise, style=style, arms=arms,
                     cameras=default_cameras(style, arms))
    res = replay(ep, seed, hold=hold)
    res.update({"task": task, "seed": seed, "seconds": time.perf_counter() - t0})
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from carve.sim.synth import episode_seed

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=20, help="episodes per task type")
    ap.add_argument("--seed", type=int, default=0, help="the `carve synth --seed` of the episodes")
    ap.add_argument("--tasks", nargs="+", default=list(ONE_ARM + TWO_ARM))
    ap.add_argument("--style", default="dwell", choices=["dwell", "blended"])
    ap.add_argument("--noise", type=float, default=0.0, help="operator noise 0..1")
    ap.add_argument("--fps", type=int, default=None, help="default: carve synth's for the style/arms")
    ap.add_argument("--hold", default="foh", choices=["foh", "linear", "zoh"])
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    jobs = [(t, episode_seed(args.seed, i), args.fps, args.style, args.noise, args.hold)
            for t in args.tasks for i in range(args.episodes)]
    t0 = time.perf_counter()
    if args.workers <= 1:
        rows = [_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(_job, jobs))
    out: dict[str, Any] = {
        "description": "Recorded `carve synth` actions replayed open loop in `carve.sim.env` (success >= "
                       f"{args.threshold:.0%} per task type is the gate).",
        "command": "python -m bench.replay_gate " + " ".join(argv or []),
        "episodes_per_type": args.episodes, "style": args.style, "noise": args.noise, "hold": args.hold,
    }
    ok = True
    for t in args.tasks:
        mine = [r for r in rows if r["task"] == t]
        rate = float(np.mean([r["success"] for r in mine]))
        ok = ok and rate >= args.threshold
        out[f"{t}_success"] = rate
        out[f"{t}_progress"] = round(float(np.mean([r["progress"] for r in mine])), 1)
        out[f"{t}_max_state_err"] = round(float(max(r["max_state_err"] for r in mine)), 4)
        failed = [r["seed"] for r in mine if not r["success"]]
        if failed:
            out[f"{t}_failed_seeds"] = failed
        print(f"{t:22s} success {rate:6.1%}  progress {out[f'{t}_progress']:5.1f}  "
              f"max state err {out[f'{t}_max_state_err']:.3f}  ({len(mine)} episodes)", flush=True)
    out["gate_ok"] = ok
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(main(sys.argv[1:]), indent=1))
