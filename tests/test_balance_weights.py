"""Balance without losing data: the default cut carries every non-duplicate event once, with weights.

The default `shard.mode` "weights" writes every eligible event exactly once and puts the
balancing policy into `sampling_weight`; `shard.sampling` turns the weights into seeded
weighted epochs. The opt-in mode "resample" keeps the old rows (repeats / drops).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_cluster_curate import add_episodes, blob_embeddings, cfg_for

from carve.clustering.curate import cluster_catalog
from carve.clustering.versions import read_assignments, unique_assignments
from carve.shard.balance import BalancePolicy, balance, plan_targets, weigh
from carve.shard.cut import cut_shards
from carve.shard.sampling import (
    WeightedEpochSampler,
    draw_rows,
    epoch_indices,
    expected_counts,
    iter_weighted,
    read_sampling_weights,
    round_counts,
)
from carve.storage.manifest import load_manifest
from carve.storage.root import open_root
from carve.storage.shards import ShardReader

SIZES = [240, 60, 30, 30]


@pytest.fixture()
def catalog(tmp_path: Path) -> tuple[Path, list[str], set[str]]:
    """Skewed blobs plus 6 near-copies of blob events: returns (root, all ids, duplicate-marked ids)."""
    x, y = blob_embeddings(SIZES, seed=11, spread=0.15)
    copies = x[:6] + 1e-5
    x = np.concatenate([x, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    ids = add_episodes(tmp_path, x, labels=np.concatenate([y, y[:6]]))
    cfg = cfg_for(tmp_path, k=len(SIZES), dedup_threshold=0.999)
    v = cluster_catalog(open_root(cfg.root), cfg)
    asg = unique_assignments(read_assignments(open_root(tmp_path), v))
    dups = {e for e, d in zip(asg.column("event_id").to_pylist(), asg.column("dup_of").to_pylist(), strict=True) if d}
    return tmp_path, ids, dups


def _cut(root: Path, **shard) -> tuple[dict, object]:
    cfg = cfg_for(root, k=len(SIZES), dedup_threshold=0.999)
    for k, v in shard.items():
        setattr(cfg.shard, k, v)
    v = cut_shards(open_root(cfg.root), cfg)
    return load_manifest(str(root), v).to_json(), ShardReader(str(root), v).read_all()


def test_default_cut_carries_every_non_duplicate_event_exactly_once(catalog):
    root, ids, dups = catalog
    assert len(dups) == 6
    m, t = _cut(root)
    got = Counter(t.column("event_id").to_pylist())
    assert set(got) == set(ids) - dups  # every non-duplicate, no duplicate-marked event
    assert max(got.values()) == 1
    assert t.column("dup_of").null_count == t.num_rows
    assert m["mode"] == "weights" and m["config"]["mode"] == "weights"
    assert m["total_rows"] == m["unique_events"] == m["eligible_events"] == len(ids) - 6
    assert m["duplicates_excluded"] == 6
    # the weight summary: an epoch of the weights is the policy's total
    assert m["sampling"]["column"] == "sampling_weight"
    assert m["sampling"]["epoch_samples"] == pytest.approx(m["requested_rows"], abs=1e-3)
    assert m["sampling"]["min"] < 1.0 < m["sampling"]["max"]
    assert sum(m["clusters"]["rows"].values()) == t.num_rows


@pytest.mark.parametrize("policy,total", [("uniform", None), ("temperature", 200), ("hierarchical", 500)])
def test_weights_reproduce_the_balancing_policy(catalog, policy, total):
    root, _, _ = catalog
    m, t = _cut(root, policy=policy, total_events=total)
    cids = np.asarray(t.column("cluster_id").to_pylist())
    w = np.asarray(t.column("sampling_weight").to_pylist(), dtype=np.float64)
    assert np.array_equal(w, np.asarray(t.column("weight").to_pylist(), dtype=np.float64))
    # per cluster: the weights add up to the policy's rows (manifest "after"), a cluster weighs alike
    for c, want in m["clusters"]["after"].items():
        sel = cids == int(c)
        assert w[sel].sum() == pytest.approx(want, rel=1e-5)
        assert np.ptp(w[sel]) < 1e-6
    assert w.sum() == pytest.approx(total or m["eligible_events"], rel=1e-5)
    # the big cluster's rows weigh less than the small clusters' (uniform-like policies)
    big = max(m["clusters"]["rows"], key=lambda c: m["clusters"]["rows"][c])
    small = min(m["clusters"]["rows"], key=lambda c: m["clusters"]["rows"][c])
    assert w[cids == int(big)].max() < w[cids == int(small)].min()
    # and match what the resample mode writes: the same per-cluster counts, as rows
    mr, tr = _cut(root, policy=policy, total_events=total, mode="resample")
    assert mr["clusters"]["after"] == m["clusters"]["after"]
    assert dict(Counter(str(c) for c in tr.column("cluster_id").to_pylist())) == \
        {c: v for c, v in m["clusters"]["after"].items() if v}


def test_weigh_matches_plan_targets_and_skips_ineligible():
    rng = np.random.default_rng(3)
    cids = rng.choice(5, size=400, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    eligible = rng.random(400) > 0.1
    pol = BalancePolicy("temperature", temperature=0.3, max_repeat=3, seed=4)
    rows, w, targets = weigh(cids, eligible, 300, pol)
    assert sorted(rows.tolist()) == np.flatnonzero(eligible).tolist()
    sizes = Counter(cids[eligible].tolist())
    assert targets == plan_targets(sizes, 300, pol)
    for c, tgt in targets.items():
        assert w[cids[rows] == c].sum() == pytest.approx(tgt)
    assert (w <= pol.max_repeat + 1e-9).all()
    # same rows and weights for the same seed; the resample path still draws its rows as before
    rows2, w2, _ = weigh(cids, eligible, 300, pol)
    assert np.array_equal(rows, rows2) and np.array_equal(w, w2)
    rrows, rtargets = balance(cids, eligible, 300, pol)
    assert rtargets == targets and len(rrows) == 300


def test_weighted_epochs_are_deterministic_by_seed_and_follow_the_weights():
    w = np.array([0.25, 0.25, 1.0, 2.5, 4.0, 0.0, 1.0])
    a = epoch_indices(w, epoch=0, seed=7)
    assert len(a) == round(w.sum())
    assert np.array_equal(a, epoch_indices(w, epoch=0, seed=7))
    assert not np.array_equal(a, epoch_indices(w, epoch=0, seed=8))
    assert not np.array_equal(a, epoch_indices(w, epoch=1, seed=7))
    exp = expected_counts(w)
    for e in range(50):  # each row floor or ceil of its expected count, never a zero-weight row
        cnt = np.bincount(epoch_indices(w, e, 7), minlength=len(w))
        assert (cnt >= np.floor(exp)).all() and (cnt <= np.ceil(exp)).all()
        assert cnt[5] == 0
    mean = np.mean([np.bincount(epoch_indices(w, e, 1), minlength=len(w)) for e in range(400)], axis=0)
    assert np.allclose(mean, exp, atol=0.08)
    assert sorted(epoch_indices(np.ones(9), 0, 0).tolist()) == list(range(9))  # equal weights: a permutation
    with pytest.raises(ValueError):
        epoch_indices([1.0, np.nan], 0, 0)
    with pytest.raises(ValueError):
        epoch_indices([0.0, 0.0], 0, 0)


def test_the_loaders_draw_is_the_shard_packages_and_rounds_each_row_to_floor_or_ceil():
    w = [0.25, 1.0, 2.5, 0.0, 3.75, 1.5]
    rows = [0, 2, 3, 5]
    got = draw_rows(rows, [w[r] for r in rows], np.random.default_rng(0))
    # the rule: floor(w) + (one uniform per row < frac(w)), in row order, the uniforms drawn in one call
    u, want = np.random.default_rng(0).random(len(rows)), []
    for r, x in zip(rows, u.tolist(), strict=True):
        k = int(w[r])
        k += x < w[r] - k
        want.extend([r] * k)
    assert got.tolist() == want
    assert round_counts([0.0, 1.0, 2.5, 2.5], [0.0, 0.99, 0.49, 0.5]).tolist() == [0, 1, 3, 2]
    counts = np.zeros(len(w))
    for e in range(2000):  # each row floor or ceil of its weight, w on average
        c = np.bincount(draw_rows(np.arange(len(w)), w, np.random.default_rng([7, e])), minlength=len(w))
        assert (c >= np.floor(w)).all() and (c <= np.ceil(w)).all()
        counts += c
    assert np.allclose(counts / 2000, w, atol=0.05)
    import carve.trainer.plan as plan

    assert plan.draw_rows is draw_rows  # the trainer's loader draws with this function


def test_sampler_splits_an_epoch_over_ranks():
    w = np.linspace(0.1, 3.0, 17)
    parts = []
    for r in range(3):
        s = WeightedEpochSampler(w, seed=5, rank=r, world_size=3)
        s.set_epoch(2)
        parts.append(list(s))
        assert len(parts[-1]) == len(s)
    full = epoch_indices(w, 2, 5)
    padded = np.resize(full, 3 * len(parts[0]))  # wrapped so every rank gets the same count
    assert sorted(i for p in parts for i in p) == sorted(padded.tolist())
    assert set(padded[: len(full)].tolist()) == set(full.tolist())


def test_shard_reader_iterates_a_weighted_epoch(catalog):
    root, _, _ = catalog
    _cut(root)
    reader = ShardReader(str(root))
    t = reader.read_all()
    w = read_sampling_weights(reader)
    assert np.allclose(w, np.asarray(t.column("sampling_weight").to_pylist()))
    ids = t.column("event_id").to_pylist()
    want = [ids[i] for i in epoch_indices(w, 3, 11)]
    got = [e for b in iter_weighted(reader, epoch=3, seed=11, batch_size=50) for e in b.column("event_id").to_pylist()]
    assert got == want
    # an epoch's cluster mix follows the balance, not the catalog's skew
    cid = dict(zip(ids, t.column("cluster_id").to_pylist(), strict=True))
    m = reader.manifest
    mix = Counter(str(cid[e]) for e in got)
    for c, after in m.clusters.after.items():
        assert abs(mix[c] - after) <= max(3, 0.1 * after)


def test_resample_mode_still_repeats_and_weighs_rows_one(catalog):
    root, ids, dups = catalog
    m, t = _cut(root, mode="resample")
    assert m["mode"] == "resample"
    assert m["unique_events"] < m["total_rows"] or m["unique_events"] < len(ids) - len(dups)
    assert max(Counter(t.column("event_id").to_pylist()).values()) > 1  # small clusters repeat
    assert set(t.column("sampling_weight").to_pylist()) == {1.0}
    assert read_sampling_weights(ShardReader(str(root))).tolist() == [1.0] * t.num_rows
