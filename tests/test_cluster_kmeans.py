"""Low-level clustering primitives: k choice, input checks, hierarchy format, dedup rules."""

from __future__ import annotations

import numpy as np
import pytest
from test_cluster_curate import blob_embeddings

from carve.clustering.dedup import mark_against_existing, mark_duplicates
from carve.clustering.hierarchical import Hierarchy, auto_levels, build_hierarchy
from carve.clustering.kmeans import ClusteringError, as_unit_vectors, choose_k, kmeans
from carve.storage.root import open_root


def test_choose_k_heuristic_and_clamp():
    assert choose_k(20_000) == 100
    assert choose_k(10, k=50) == 10
    assert choose_k(10, k=4) == 4
    with pytest.raises(ClusteringError, match="0 events"):
        choose_k(0)


def test_unit_vectors_refuse_nan_and_zero_rows_by_id():
    x = np.ones((4, 3), np.float32)
    x[2, 1] = np.inf
    with pytest.raises(ClusteringError, match="ev-c"):
        as_unit_vectors(x, ["ev-a", "ev-b", "ev-c", "ev-d"])
    x[2] = 0
    with pytest.raises(ClusteringError, match=r"all zeros.*ev-c"):
        as_unit_vectors(x, ["ev-a", "ev-b", "ev-c", "ev-d"])
    u = as_unit_vectors(np.array([[3.0, 4.0]]))
    assert np.allclose(u, [[0.6, 0.8]])


def test_kmeans_is_deterministic_by_seed():
    x, _ = blob_embeddings([50, 50, 50], seed=30, spread=0.3)
    a = kmeans(x, 3, niter=5, seed=1)
    b = kmeans(x, 3, niter=5, seed=1)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])


def test_hierarchy_json_round_trip_and_version_check():
    x, _ = blob_embeddings([15] * 9, seed=31)
    h = build_hierarchy(x, auto_levels(len(x), k=9), niter=5)
    assert h.levels == [3, 9]
    back = Hierarchy.from_json(h.to_json())
    assert back.levels == h.levels and np.array_equal(back.leaf_paths(), h.leaf_paths())
    newer = {**h.to_json(), "hierarchy_version": 99}
    with pytest.raises(ClusteringError, match="newer"):
        Hierarchy.from_json(newer, "v001/hierarchy.json")
    with pytest.raises(ClusteringError, match="may not grow upwards"):
        auto_levels(100, levels=[10, 3])


def test_dedup_is_order_independent_and_points_at_representatives():
    rng = np.random.default_rng(0)
    base = as_unit_vectors(rng.normal(size=(6, 8)))
    x = np.concatenate([base, base[:3] + 1e-5, base[:1] + 2e-5])
    x = as_unit_vectors(x)
    ids = [f"e{i:02d}" for i in range(len(x))]
    cl = np.zeros(len(x), np.int64)
    dist = np.zeros(len(x), np.float32)
    d1 = mark_duplicates(x, cl, dist, ids, 0.999)
    perm = rng.permutation(len(x))
    d2 = mark_duplicates(x[perm], cl[perm], dist[perm], [ids[i] for i in perm], 0.999)
    assert dict(zip(ids, d1, strict=True)) == dict(zip([ids[i] for i in perm], d2, strict=True))
    marked = {i: d for i, d in zip(ids, d1, strict=True) if d}
    assert len(marked) == 4 and all(d not in marked for d in marked.values())


def test_new_events_dedup_against_existing_representatives():
    rng = np.random.default_rng(1)
    ref = as_unit_vectors(rng.normal(size=(4, 8)))
    new = as_unit_vectors(np.concatenate([ref[2:3] + 1e-6, rng.normal(size=(1, 8))]))
    out = mark_against_existing(new, np.zeros(2, np.int64), np.zeros(2, np.float32), ["n0", "n1"],
                                ref, np.zeros(4, np.int64), ["r0", "r1", "r2", "r3"], 0.999)
    assert out == ["r2", None]


def test_claimed_version_numbers_are_never_handed_out_twice(tmp_path):
    from carve.clustering.versions import claim_version, latest_version

    assert [claim_version(open_root(tmp_path), "shards") for _ in range(3)] == [1, 2, 3]
    assert latest_version(open_root(tmp_path), "shards") is None  # claimed but never finished
    assert claim_version(open_root(tmp_path), "clusters") == 1


def test_numpy_lloyd_agrees_with_faiss_from_the_same_start_and_fills_empty_clusters():
    from carve.clustering.kmeans import assign, build_index, kmeans_pp_init, train_kmeans

    x, _ = blob_embeddings([300, 150, 80, 40, 20], dim=24, seed=40, spread=0.1)
    init = kmeans_pp_init(x, 5, seed=3)
    a = train_kmeans(x, 5, niter=15, init_centroids=init)
    b = train_kmeans(x, 5, niter=15, init_centroids=init, engine="faiss")
    la, _ = assign(build_index(a), x)
    lb, _ = assign(build_index(b), x)
    assert (la == lb).mean() > 0.99 and np.abs(a - b).max() < 1e-3
    # more centroids than distinct points in some places: no centroid is left without points
    start = np.repeat(x[:1], 8, axis=0)  # 8 identical starting centroids
    c = train_kmeans(x, 8, niter=5, init_centroids=start)
    lab, _ = assign(build_index(c), x)
    assert len(np.unique(lab)) == 8
