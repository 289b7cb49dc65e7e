"""`carve eval-sim`: a saved policy acting closed loop in `carve.sim.env`; success and task progress
with 95% confidence intervals, per task type.

    carve eval-sim --policy runs/event/policy --tasks pick_place push --seeds 50 --out eval.json

`evaluate_policy(policy, tasks, seeds, ...)` runs one episode per (task type, environment seed):
`policy.reset()`, then `select_action` / `env.step` until the env says done (success held, or
the task's time limit). Environment seeds are `episode_seed(seed_base, i)` for i < `--seeds`
(`eval_seeds`), the same for every policy, so two policies are compared on the same scenes;
the default base (`EVAL_SEED_BASE`) is not a `carve synth --seed` anyone trains on by default
(0). Reported per task type and over all: success rate with a Wilson 95% interval, mean
progress (0..100) with a percentile-bootstrap 95% interval (`BOOT` resamples, seeded), and
every episode's outcome. The env's conditions (fps, style, cameras, image size) default to the
policy's fps and `carve synth`'s defaults; images are rendered only if the policy's visual
encoder needs them, and privileged object poses are observed if the policy's state takes them
(`privileged_state`, the pilot). `--study` runs `carve.sim.study` instead (train event,
unified and chunk models over several seeds and compare them closed loop; `--out` is its
markdown report, the JSON goes beside it). Registered through the `carve.commands` entry point (nothing imported
until it runs).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

EVAL_SEED_BASE = 10_000
BOOT = 2000
TASK_CHOICES = ("pick_place", "stack", "push", "two_object", "bimanual_pick_place")
DEFAULT_TASKS = ("pick_place", "stack", "push", "two_object")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def bootstrap_ci(values: list[float], n_boot: int = BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def eval_seeds(n: int, base: int = EVAL_SEED_BASE) -> list[int]:
    from carve.sim.synth import episode_seed

    return [episode_seed(base, i) for i in range(n)]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    k, n = sum(bool(r["success"]) for r in rows), len(rows)
    prog = [float(r["progress"]) for r in rows]
    return {"episodes": n, "success_rate": k / n if n else float("nan"), "success_ci95": list(wilson(k, n)),
            "progress_mean": sum(prog) / n if n else float("nan"), "progress_ci95": list(bootstrap_ci(prog))}


def evaluate_policy(policy: Any, tasks: list[str], seeds: list[int], *, fps: int | None = None,
                    style: str = "dwell", size: int = 128, max_seconds: float | None = None,
                    progress: bool = False, hold: str = "foh", camera_jitter: bool = True,
                    cameras: int | None = None) -> dict[str, Any]:
    """Run `policy` once per (task, seed) in a `SimEnv` (joint targets between actions follow
    `hold`, `sim.env.HOLDS`; `cameras`: how many it renders, None for the scene's default); per-task
    and overall summaries plus episodes."""
    from carve.sim.env import SimEnv

    render = policy.settings.visual != "zeros"
    fps = fps or policy.settings.fps
    rows: list[dict[str, Any]] = []
    for task in tasks:
        for seed in seeds:
            t0 = time.perf_counter()
            with SimEnv(fps=fps, style=style, size=size, render=render, max_seconds=max_seconds,
                        privileged=bool(policy.settings.privileged_state), hold=hold,
                        camera_jitter=camera_jitter, cameras=cameras) as env:
                obs = env.reset(task, seed)
                policy.reset()
                done, info = False, {"success": False, "progress": 0.0, "step": 0}
                while not done:
                    obs, _, done, info = env.step(policy.select_action(obs))
            rows.append({"task": task, "seed": seed, "success": bool(info["success"]),
                         "progress": float(info["progress"]), "steps": int(info["step"]),
                         "seconds": round(time.perf_counter() - t0, 2)})
            if progress:
                print(f"{task} seed {seed}: success={info['success']} progress={info['progress']:.0f} "
                      f"steps={info['step']}", flush=True)
    out: dict[str, Any] = {"tasks": {t: summarize([r for r in rows if r["task"] == t]) for t in tasks},
                           "overall": summarize(rows), "episodes": rows}
    return out


def format_table(res: dict[str, Any]) -> str:
    lines = ["| task | episodes | success (95% CI) | progress (95% CI) |", "|---|---|---|---|"]
    for name, s in [*res["tasks"].items(), ("all", res["overall"])]:
        lo, hi = s["success_ci95"]
        plo, phi = s["progress_ci95"]
        lines.append(f"| {name} | {s['episodes']} | {s['success_rate']:.1%} ({lo:.1%}-{hi:.1%}) | "
                     f"{s['progress_mean']:.1f} ({plo:.1f}-{phi:.1f}) |")
    return "\n".join(lines)


def _run_study(args: argparse.Namespace) -> int:
    from carve.sim.study import run_study

    if not args.out:
        print("carve eval-sim: error: --study needs --out PATH (markdown; the JSON is written beside it)")
        return 2
    try:
        cfg = _study_config(args)
    except ValueError as e:  # a setting the study cannot use (StudyConfig's checks name it)
        print(f"carve eval-sim: error: {e}")
        return 2
    run_study(cfg, args.out, progress=not args.quiet)
    return 0


def _study_config(args: argparse.Namespace) -> Any:
    from carve.sim.study import STUDY_TASKS, StudyConfig

    more = {"seed_base": args.seed_base} if args.seed_base is not None else {}
    if args.chunk_lens:
        more["chunk_lens"] = args.chunk_lens
    return StudyConfig(tasks=list(args.tasks or STUDY_TASKS), env_seeds=args.seeds, train_seeds=args.train_seeds,
                       train_episodes=args.train_episodes, steps=args.steps, batch_size=args.batch_size,
                       workers=args.workers, text=args.text, fps=args.fps or 12, max_seconds=args.max_seconds,
                       ensemble_m=None if args.no_ensemble else 0.01, val_train_seeds=args.val_train_seeds,
                       val_env_seeds=args.val_seeds, hold_ablation_seeds=args.hold_ablation_seeds,
                       matched_seeds=args.matched_seeds, plateau_every=args.plateau_every,
                       plateau_max_steps=args.plateau_max_steps, observation=args.observation,
                       visual_shift=args.visual_shift, actions=args.actions,
                       camera=args.camera, views=args.views,
                       **({"image_size": args.size} if args.size else {}), **more)


def _run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.trainer.policy import Policy, PolicyError

    load_config(args)
    if args.study:
        return _run_study(args)
    if not args.policy:
        print("carve eval-sim: error: give --policy DIR (or --study)")
        return 2
    try:
        policy = Policy.load(args.policy)
    except PolicyError as e:
        print(f"carve eval-sim: error: {e}")
        return 2
    base = EVAL_SEED_BASE if args.seed_base is None else args.seed_base
    seeds = eval_seeds(args.seeds, base)
    res = evaluate_policy(policy, list(args.tasks or DEFAULT_TASKS), seeds, fps=args.fps, style=args.style, size=args.size or 128,
                          max_seconds=args.max_seconds, progress=not args.quiet)
    res.update({"policy": str(args.policy), "mode": policy.mode, "seed_base": base})
    print(format_table(res))
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


def register(subparsers: Any) -> None:
    from carve.cli.main import add_common

    p = subparsers.add_parser("eval-sim", help="run a saved policy closed loop in the simulator: success and "
                                               "progress with 95%% CIs")
    add_common(p)
    p.add_argument("--policy", default=None, help="policy directory (Policy.save: model.safetensors, config.json, "
                                                  "normalization.json)")
    p.add_argument("--tasks", nargs="+", choices=list(TASK_CHOICES), default=None,
                   help="task types (default: pick_place stack push two_object)")
    p.add_argument("--seeds", type=int, default=50, help="environment seeds per task type")
    p.add_argument("--seed-base", type=int, default=None,
                   help=f"environment seed i is episode_seed(seed_base, i) (the same for every policy; default "
                        f"{EVAL_SEED_BASE}, --study: its final base, 50000)")
    p.add_argument("--fps", type=int, default=None, help="control rate (default: the policy's, else carve synth's)")
    p.add_argument("--style", choices=["dwell", "blended"], default="dwell",
                   help="picks carve synth's default fps / cameras for the scene")
    p.add_argument("--size", type=int, default=None,
                   help="rendered image size (default: 128, the dataset's frame size; --study: 64, its images reach "
                        "the policies at 32 px)")
    p.add_argument("--max-seconds", type=float, default=None, help="time limit per episode (default: per task)")
    p.add_argument("--out", default=None, help="write the full results (every episode) as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-episode lines")
    g = p.add_argument_group("study (--study: train event / unified / chunk and compare them; see carve.sim.study)")
    g.add_argument("--study", action="store_true", help="run the whole study; --out is the markdown report")
    g.add_argument("--observation", choices=["pixels", "privileged"], default="pixels",
                   help="what every policy observes besides its proprioception: the rendered camera images through "
                        "one image encoder (default), or the simulator's object poses (the privileged-state ablation)")
    g.add_argument("--camera", choices=["random", "fixed"], default="random",
                   help="pixels: each scene's camera pose drawn at random (as carve synth records), or one fixed pose "
                        "for every scene (as a robot cell mounts it), in the demonstrations and the evaluation")
    g.add_argument("--views", choices=["front", "front+wrist"], default="front",
                   help="pixels: the cameras every policy sees: the front camera (default), or the front camera and "
                        "the wrist camera on the hand, each through its own convolutions (robomimic's agentview + "
                        "eye-in-hand)")
    g.add_argument("--actions", choices=["absolute", "relative"], default="absolute",
                   help="every mode's joint targets: as recorded, or offsets from the joints at the plan's start")
    g.add_argument("--visual-shift", type=int, default=0, metavar="PX",
                   help="pixels: shift each training image at random by up to PX pixels (DrQ's augmentation; 0: off)")
    g.add_argument("--train-seeds", type=int, default=10, help="training seeds per mode (a random effect in the CIs)")
    g.add_argument("--train-episodes", type=int, default=40, help="demonstrations recorded for training")
    g.add_argument("--steps", type=int, default=300, help="training steps per model")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--workers", type=int, default=2, help="evaluation processes")
    g.add_argument("--text", choices=["hashed", "minilm"], default="hashed", help="the one text encoder of every mode")
    g.add_argument("--chunk-lens", type=int, nargs="+", default=None,
                   help="chunk lengths swept on the validation set (default 8 16 32; x executed 4 / half / all)")
    g.add_argument("--no-ensemble", action="store_true", help="leave ACT's temporal ensembling out of the sweep")
    g.add_argument("--val-train-seeds", type=int, default=3, help="training seeds of the chunk sweep (validation)")
    g.add_argument("--val-seeds", type=int, default=20, help="validation environment seeds per task of the sweep")
    g.add_argument("--hold-ablation-seeds", type=int, default=3,
                   help="training seeds re-evaluated with the linear and zoh holds")
    g.add_argument("--matched-seeds", type=int, default=3,
                   help="training seeds of the equal-budget ablation: event, the best chunk and unified with event "
                        "mode's supervised actions per step, each trained to a plateau of its validation action loss (0: off)")
    g.add_argument("--plateau-every", type=int, default=100, help="steps between the ablation's validation checks")
    g.add_argument("--plateau-max-steps", type=int, default=3000, help="the ablation's step limit per model")
    p.set_defaults(func=_run)
