"""Balancing policies: allocation, caps, prefix balance, determinism, hierarchy, statistics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from carve.clustering.kmeans import ClusteringError
from carve.shard.balance import BalancePolicy, allocate, balance, balance_stats, interleave, plan_targets

SKEWED = [500, 200, 100, 50, 25]


def _ids(sizes: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])


def test_allocate_respects_caps_and_keeps_the_total():
    out = allocate(100, np.ones(3), np.array([10, 1000, 1000]))
    assert out.tolist()[0] == 10 and out.sum() == 100 and abs(int(out[1]) - int(out[2])) <= 1
    assert allocate(100, np.ones(2), np.array([5, 7])).tolist() == [5, 7]  # capacity < total


def test_uniform_on_skewed_input_reaches_high_entropy_and_caps_repeats():
    cids = _ids(SKEWED)
    pol = BalancePolicy("uniform", max_repeat=4, seed=1)
    rows, targets = balance(cids, np.ones(len(cids), bool), len(cids), pol)
    before = balance_stats(Counter(cids.tolist()))
    after = balance_stats(Counter(cids[rows].tolist()), list(range(len(SKEWED))))
    assert before["entropy"] < 0.85 and before["max_min_ratio"] == 20.0
    assert after["entropy"] >= 0.95
    assert after["max_min_ratio"] < before["max_min_ratio"]
    assert len(rows) == len(cids)
    reps = Counter(rows.tolist())
    assert max(reps.values()) <= 4
    assert targets[4] == 25 * 4  # the smallest cluster is capped at max_repeat copies


def test_temperature_interpolates_between_uniform_and_natural():
    sizes = {c: n for c, n in enumerate(SKEWED)}
    total = sum(SKEWED)
    t0 = plan_targets(sizes, total, BalancePolicy("temperature", temperature=0.0, max_repeat=100))
    t1 = plan_targets(sizes, total, BalancePolicy("temperature", temperature=1.0))
    th = plan_targets(sizes, total, BalancePolicy("temperature", temperature=0.5, max_repeat=100))
    assert max(t0.values()) - min(t0.values()) <= 1
    assert t1 == sizes
    ent = [balance_stats(t)["entropy"] for t in (t1, th, t0)]
    assert ent[0] < ent[1] < ent[2]
    assert sum(th.values()) == total


def test_every_prefix_is_balanced():
    cids = _ids([400, 100, 50, 50])
    rows, targets = balance(cids, np.ones(len(cids), bool), 600, BalancePolicy("uniform", seed=3))
    shares = {c: t / len(rows) for c, t in targets.items()}
    for prefix in (40, 100, 150, 333):
        got = Counter(cids[rows[:prefix]].tolist())
        for c, s in shares.items():
            assert abs(got.get(c, 0) - s * prefix) <= 1.0 + 1e-9, (prefix, c)


def test_deterministic_by_seed():
    cids = _ids(SKEWED)
    elig = np.ones(len(cids), bool)
    a, _ = balance(cids, elig, 500, BalancePolicy("uniform", seed=5))
    b, _ = balance(cids, elig, 500, BalancePolicy("uniform", seed=5))
    c, _ = balance(cids, elig, 500, BalancePolicy("uniform", seed=6))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_ineligible_rows_are_never_drawn():
    cids = _ids([50, 50])
    elig = np.ones(100, bool)
    elig[::3] = False
    rows, _ = balance(cids, elig, 200, BalancePolicy("uniform"))
    assert elig[rows].all()


def test_hierarchical_splits_top_down():
    # top cluster 0 has leaves 0,1,2; top cluster 1 has leaf 3 only
    paths = {0: (0, 0), 1: (0, 1), 2: (0, 2), 3: (1, 3)}
    sizes = {0: 100, 1: 100, 2: 100, 3: 100}
    t = plan_targets(sizes, 300, BalancePolicy("hierarchical"), paths)
    assert t[3] == 150 and t[0] + t[1] + t[2] == 150 and max(t[0], t[1], t[2]) - min(t[0], t[1], t[2]) <= 1
    u = plan_targets(sizes, 300, BalancePolicy("uniform"))
    assert set(u.values()) == {75}
    with pytest.raises(ClusteringError, match="hierarchy"):
        plan_targets(sizes, 300, BalancePolicy("hierarchical"))


def test_unknown_policy_is_refused():
    with pytest.raises(ClusteringError, match="unknown balancing policy"):
        BalancePolicy("zipf")  # type: ignore[arg-type]


def test_interleave_keeps_all_picks():
    picks = {0: np.arange(10), 1: np.arange(10, 13)}
    rows, cids = interleave(picks, 0)
    assert sorted(rows.tolist()) == list(range(13)) and Counter(cids.tolist()) == {0: 10, 1: 3}
