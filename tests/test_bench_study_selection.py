"""bench.study_selection: its grid, its resampling and its binomial tail against the sum of its terms."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from bench.study_selection import binomial_tail, measure, outcome_grid, resampled_scores


def _study(grid: np.ndarray) -> dict:
    return {"episodes": [{"task": "push", "variant": "chunk_best", "train_seed": t, "seed": 100 + e,
                          "success": bool(grid[t, e])} for t in range(grid.shape[0]) for e in range(grid.shape[1])]}


@pytest.mark.parametrize(("k", "n", "p"), [(8, 30, 0.07), (0, 5, 0.3), (5, 5, 0.5), (3, 10, 0.0)])
def test_binomial_tail_equals_the_sum_of_its_terms(k: int, n: int, p: float) -> None:
    want = sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(want, abs=1e-12)


def test_outcome_grid_places_each_episode() -> None:
    want = np.array([[1, 0, 0], [0, 0, 1]], float)
    assert np.array_equal(outcome_grid(_study(want), "push"), want)


def test_an_incomplete_grid_is_refused() -> None:
    study = _study(np.ones((2, 3)))
    study["episodes"].pop()
    with pytest.raises(SystemExit, match="not a full grid"):
        outcome_grid(study, "push")


def test_resampling_keeps_the_environment_seeds_clustering() -> None:
    # one environment seed every policy solves, nine none does: a grid of 10 environment seeds drawn with
    # replacement holds it k ~ Binomial(10, 0.1) times, so P(score >= 0.2) = P(k >= 2) = 1 - 0.9^10 - 0.9^9
    grid = np.zeros((5, 10))
    grid[:, 0] = 1
    s = resampled_scores(grid, train=3, envs=10, draws=40_000, rng=np.random.default_rng(1))
    assert s.mean() == pytest.approx(0.1, abs=0.005)
    assert (s >= 0.2 - 1e-9).mean() == pytest.approx(1 - 0.9**10 - 10 * 0.1 * 0.9**9, abs=0.01)


def test_best_of_n_is_likelier_than_one() -> None:
    grid = np.zeros((10, 20))
    grid[:3, :2] = 1
    m = measure(_study(grid), "push", hits=3, of=30, train=3, configs=11, draws=5_000, seed=0)
    assert m["p_best_of_n"] > m["p_single"] > 0
