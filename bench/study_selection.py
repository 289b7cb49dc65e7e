"""How likely is the chunk baseline's validation score, given its final-seed episodes? (issue 20)

The committed study (`paper/study.json`) chose its chunk configuration on validation runs: 3 training seeds x
10 environment seeds per task type. On push, the chosen configuration scored 26.7% there (8 of 30 episodes,
BENCHMARKS.md, "Closed-loop study on rendered observations") and 7.0% on the final seeds (10 training seeds x
20 environment seeds). This asks whether that gap needs a flawed validation set, or whether chance explains it.

It resamples validation-sized grids (3 training seeds x 10 environment seeds, both drawn with replacement) from
the final seeds' own grid of outcomes of the chosen configuration on one task, so the environment seeds'
clustering (some starts are easy for every policy) is kept, and reports:

* `p_single`: the chance that one configuration as good as the chosen one scores at least the validation
  score;
* `p_best_of_n`: the chance that the best of `n` such configurations, drawn independently, does (the sweep had
  `n` configurations; all as good as the chosen one is the generous case for chance: the others did worse);
* `p_binomial`: the same single chance if the 30 episodes were independent (no clustering).

    python -m bench.study_selection                      # push, 8 of 30, the sweep's size
    python -m bench.study_selection --task push --hits 8 --of 30
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

STUDY = Path(__file__).resolve().parent.parent / "paper" / "study.json"


def outcome_grid(study: dict[str, Any], task: str, variant: str = "chunk_best") -> np.ndarray:
    """(training seeds, environment seeds) successes of `variant` on `task` in the study's final episodes."""
    eps = [e for e in study["episodes"] if e["task"] == task and e["variant"] == variant]
    if not eps:
        raise SystemExit(f"no {variant} episodes on {task} in the study")
    seeds = sorted({e["train_seed"] for e in eps})
    envs = sorted({e["seed"] for e in eps})
    grid = np.full((len(seeds), len(envs)), np.nan)
    for e in eps:
        grid[seeds.index(e["train_seed"]), envs.index(e["seed"])] = float(e["success"])
    if np.isnan(grid).any():
        raise SystemExit(f"the {variant} episodes on {task} are not a full grid of training x environment seeds")
    return grid


def resampled_scores(grid: np.ndarray, train: int, envs: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Success rates of `draws` grids of `train` x `envs` seeds drawn with replacement from `grid`."""
    rows = rng.integers(0, grid.shape[0], (draws, train))
    cols = rng.integers(0, grid.shape[1], (draws, envs))
    return grid[rows[:, :, None], cols[:, None, :]].mean(axis=(1, 2))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (scipy)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def measure(study: dict[str, Any], task: str, hits: int, of: int, train: int, configs: int, draws: int,
            seed: int) -> dict[str, Any]:
    grid = outcome_grid(study, task)
    envs = of // train
    rng = np.random.default_rng(seed)
    target = hits / of - 1e-9
    single = resampled_scores(grid, train, envs, draws, rng)
    best = resampled_scores(grid, train, envs, draws * configs, rng).reshape(draws, configs).max(axis=1)
    return {"task": task, "final_rate": float(grid.mean()), "final_grid": list(grid.shape),
            "validation": f"{hits}/{of}", "p_single": float((single >= target).mean()),
            "p_best_of_n": float((best >= target).mean()), "n": configs,
            "p_binomial": binomial_tail(hits, of, float(grid.mean())),
            "single_p95_p99": [float(np.percentile(single, 95)), float(np.percentile(single, 99))],
            "env_seed_successes": sorted(grid.sum(axis=0).astype(int).tolist(), reverse=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", type=Path, default=STUDY)
    ap.add_argument("--task", default="push")
    ap.add_argument("--hits", type=int, default=8, help="the chosen configuration's validation successes")
    ap.add_argument("--of", type=int, default=30, help="its validation episodes")
    ap.add_argument("--train-seeds", type=int, default=3, help="validation training seeds")
    ap.add_argument("--configs", type=int, default=None, help="configurations swept (default: the study's)")
    ap.add_argument("--draws", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    study = json.loads(args.study.read_text())
    configs = args.configs or len(study.get("chunk_sweep") or study["sweep"])
    print(json.dumps(measure(study, args.task, args.hits, args.of, args.train_seeds, configs, args.draws,
                             args.seed), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
