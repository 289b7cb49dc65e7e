"""The export's feature statistics: histogram image stats equal numpy's over the pixels, and the
count-weighted aggregation equals the stats of the concatenated frames (lerobot's convention)."""

from __future__ import annotations

import numpy as np

from carve.export.layout import QUANTILES
from carve.export.stats import aggregate, image_stats, vector_stats


def test_image_stats_are_exact_per_channel():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 17, 13, 3), dtype=np.uint8)
    frames[..., 1] //= 3
    got = image_stats(frames)
    px = frames.reshape(-1, 3).astype(np.float64) / 255.0
    want = {"min": px.min(0), "max": px.max(0), "mean": px.mean(0), "std": px.std(0),
            **{k: np.quantile(px, q, axis=0) for k, q in QUANTILES.items()}}
    for k, v in want.items():
        assert got[k].shape == (3, 1, 1)
        assert np.allclose(got[k].ravel(), v), k
    assert got["count"].tolist() == [5]


def test_aggregate_weights_episodes_by_count():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 4)), rng.normal(3.0, 2.0, size=(10, 4))
    agg = aggregate([{"x": vector_stats(a)}, {"x": vector_stats(b)}])["x"]
    both = np.concatenate([a, b])
    assert np.allclose(agg["mean"], both.mean(0)) and np.allclose(agg["std"], both.std(0))
    assert np.allclose(agg["min"], both.min(0)) and np.allclose(agg["max"], both.max(0))
    assert agg["count"].tolist() == [50]


def test_stats_without_quantiles_as_the_simulator_writes_them():
    """`quantiles=False` (the simulator's datasets, as lerobot 0.3.x wrote stats): the same
    min/max/mean/std/count in the same key order, no quantile keys, and they aggregate."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (4, 9, 11, 3), dtype=np.uint8)
    x = rng.normal(size=(30, 3))
    for full, bare in ((image_stats(frames), image_stats(frames, quantiles=False)),
                       (vector_stats(x), vector_stats(x, quantiles=False))):
        assert list(bare) == ["min", "max", "mean", "std", "count"]
        for k, v in bare.items():
            assert np.array_equal(v, full[k]), k
    agg = aggregate([{"x": vector_stats(x[:10], quantiles=False)}, {"x": vector_stats(x[10:], quantiles=False)}])["x"]
    assert list(agg) == ["min", "max", "mean", "std", "count"]
    assert np.allclose(agg["mean"], x.mean(0)) and agg["count"].tolist() == [30]
