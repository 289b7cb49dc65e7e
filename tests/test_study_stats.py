"""The study's statistics (`carve.sim.study_stats`): a two-level bootstrap that carries the spread
between training seeds, and Holm's adjustment, checked against hand-computed values."""

from __future__ import annotations

import numpy as np

from carve.sim.study_stats import boot2, holm, interval


def test_holm_matches_the_textbook_step_down() -> None:
    # p sorted: 0.01, 0.02, 0.03, 0.5 -> x4, x3, x2, x1, running maximum
    got = holm({"a": 0.03, "b": 0.01, "c": 0.5, "d": 0.02})
    assert got == {"b": 0.04, "d": 0.06, "a": 0.06, "c": 0.5}
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}


def test_seeds_as_a_random_effect_widen_the_interval() -> None:
    """Two training seeds that disagree completely (one column all 1, one all 0): resampling only
    episodes would give a zero-width interval around 0.5; resampling seeds too spans 0 to 1."""
    m = np.column_stack([np.ones(40), np.zeros(40)])
    r = interval(m)
    assert r["mean"] == 0.5
    assert r["ci95"][0] == 0.0 and r["ci95"][1] == 1.0
    rows_only = m.mean(1)  # the seed-averaged episodes: every one is 0.5
    assert rows_only.std() == 0.0


def test_boot2_of_a_constant_is_that_constant_and_nan_cells_are_left_out() -> None:
    m = np.full((5, 3), 0.25)
    m[0, 0] = np.nan
    assert np.allclose(boot2(m, n_boot=50), 0.25)


def test_bootstrap_p_value_is_small_for_a_clear_difference_and_large_for_none() -> None:
    rng = np.random.default_rng(0)
    clear = rng.normal(1.0, 0.2, (50, 10))
    none = rng.normal(0.0, 1.0, (50, 10))
    assert interval(clear)["p"] == 0.0
    assert interval(none)["p"] > 0.05
