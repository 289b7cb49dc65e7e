"""Flat spherical k-means with faiss: input checks, k choice, training, assignment.

Owns the low-level clustering primitives the rest of `clustering/` builds on:

* `as_unit_vectors` turns an embedding column into an L2-normalised float32 matrix and
  refuses NaN/inf rows (naming how many and which event_ids) or zero vectors;
* `choose_k` picks k from the config or a size heuristic (~sqrt(n/2)); a k larger than the
  number of events is clamped to n with a warning naming both numbers;
* `train_kmeans` runs `faiss.Kmeans(d, k, niter, spherical=True, seed)` from a seeded
  k-means++ initialisation (on a subsample), so unequal blobs are all found;
* `build_index` / `assign` do inner-product search on an `IndexFlatIP` of the centroids and
  return cluster ids plus cosine distances (`1 - cos`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import faiss
import numpy as np
import pyarrow as pa

from carve.core.errors import CarveError
from carve.core.log import get_logger, log_event

log = get_logger("carve.clustering.kmeans")

K_MIN = 2
K_MAX = 1024
_KMPP_MAX_POINTS = 20_000
_KMPP_POINTS_PER_CENTROID = 32  # k-means++ seeds on a subsample of this many points per centroid


class ClusteringError(CarveError):
    """Clustering cannot run on this input; the message names the events/versions and the reason."""


def embedding_matrix(column: pa.ChunkedArray | pa.Array | Sequence, event_ids: Sequence[str], what: str = "emb") -> np.ndarray:
    """An (n, d) float32 matrix from a list<float32> column; errors name missing/ragged rows."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if isinstance(column, pa.Array):
        nulls = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if nulls.any():
            bad = [event_ids[i] for i in np.flatnonzero(nulls)[:5]]
            raise ClusteringError(
                f"{int(nulls.sum())} of {n} events have no `{what}` embedding (e.g. {bad}); run the embed stage first"
            )
        lengths = np.asarray(column.value_lengths().to_numpy(zero_copy_only=False))
        if lengths.min() != lengths.max():
            d = int(np.bincount(lengths).argmax())
            bad = [event_ids[i] for i in np.flatnonzero(lengths != d)[:5]]
            raise ClusteringError(
                f"`{what}` embeddings have different sizes ({int(lengths.min())}..{int(lengths.max())}); "
                f"events with size != {d}: {bad}"
            )
        d = int(lengths[0])
        if d == 0:
            raise ClusteringError(f"`{what}` embeddings are empty (size 0)")
        values = column.flatten().to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(values.reshape(n, d), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(column, dtype=np.float32))


def as_unit_vectors(x: np.ndarray, event_ids: Sequence[str] | None = None) -> np.ndarray:
    """L2-normalised float32 copy of `x`; NaN/inf or all-zero rows raise ClusteringError."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ClusteringError(f"embeddings must be a 2-D matrix, got shape {x.shape}")
    ids = list(event_ids) if event_ids is not None else [f"row {i}" for i in range(len(x))]
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ClusteringError(
            f"{len(bad)} of {len(x)} embeddings contain NaN or inf: event_ids {[ids[i] for i in bad[:10]]}"
            + (" ..." if len(bad) > 10 else "")
        )
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = norms[:, 0] <= 1e-12
    if zero.any():
        bad = np.flatnonzero(zero)
        raise ClusteringError(
            f"{len(bad)} of {len(x)} embeddings are all zeros and have no direction: event_ids {[ids[i] for i in bad[:10]]}"
        )
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def heuristic_k(n: int) -> int:
    """~sqrt(n/2) clamped to [K_MIN, K_MAX] (not yet clamped to n)."""
    return max(K_MIN, min(K_MAX, round(math.sqrt(max(n, 0) / 2.0))))


def choose_k(n: int, k: int | None = None, *, what: str = "events") -> int:
    """The k to use for `n` points: the configured k, or the size heuristic; clamped to n.

    A k larger than the number of points cannot be trained, so it is clamped to `n` and a
    warning says so (`k_clamp_message` gives the same text for reports)."""
    if n <= 0:
        raise ClusteringError(f"cannot cluster 0 {what}: the catalog has no embedded events")
    if k is not None and k < 1:
        raise ClusteringError(f"k must be >= 1, got {k}")
    want = int(k) if k is not None else heuristic_k(n)
    if want > n:
        log_event(log, "k_clamped", logging.WARNING, message=k_clamp_message(want, n, what, k is not None))
        return n
    return want


def k_clamp_message(k: int, n: int, what: str = "events", explicit: bool = True) -> str:
    src = "cluster.k" if explicit else "the size heuristic"
    return f"k={k} (from {src}) is larger than the number of {what} ({n}); using k={n}"


def kmeans_pp_init(x: np.ndarray, k: int, seed: int, max_points: int | None = None) -> np.ndarray:
    """Seeded greedy k-means++ centres (as in scikit-learn: 2 + log k candidates per step, the
    one that lowers the potential most wins) on a random subsample of at most `max_points` rows
    (default: 32 per centroid, at least 1000, at most 20000)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    if max_points is None:
        max_points = min(_KMPP_MAX_POINTS, max(1000, _KMPP_POINTS_PER_CENTROID * k))
    sample = x if n <= max_points else x[rng.choice(n, size=max_points, replace=False)]
    m = len(sample)
    trials = 2 + int(math.log(k)) if k > 1 else 1
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = sample[int(rng.integers(m))]
    # squared euclidean distance on the unit sphere = 2 - 2 cos
    d2 = np.maximum(2.0 - 2.0 * (sample @ centres[0]), 0.0).astype(np.float64)
    for i in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: pick any point
            centres[i] = sample[int(rng.integers(m))]
            continue
        cand = np.searchsorted(np.cumsum(d2), rng.random(trials) * total)
        cand = np.minimum(cand, m - 1)
        cand_d2 = np.minimum(d2[None, :], np.maximum(2.0 - 2.0 * (sample[cand] @ sample.T), 0.0))
        best = int(np.argmin(cand_d2.sum(axis=1)))
        centres[i] = sample[cand[best]]
        d2 = cand_d2[best]
    return centres


def train_kmeans(
    x: np.ndarray,
    k: int,
    *,
    niter: int = 25,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    init: str = "kmeans++",
) -> np.ndarray:
    """Spherical faiss k-means on unit vectors `x`; returns (k, d) L2-normalised centroids."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if k > n:
        raise ClusteringError(f"k={k} is larger than the number of points ({n})")
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        spherical=True,
        seed=seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max_points_per_centroid,
    )
    init_c = kmeans_pp_init(x, k, seed) if init == "kmeans++" and k > 1 else None
    km.train(x, init_centroids=init_c)
    c = np.asarray(km.centroids, dtype=np.float32).reshape(k, d)
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(c / norms, dtype=np.float32)


def build_index(centroids: np.ndarray) -> faiss.IndexFlatIP:
    """Inner-product index over the (unit) centroids."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    return index


def assign(index: faiss.Index, x: np.ndarray, batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(cluster_id int32, cosine distance float32 = 1 - cos) of each unit vector in `x`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1] != index.d:
        raise ClusteringError(f"embedding size {x.shape[1]} does not match the clustering's dimension {index.d}")
    labels = np.empty(len(x), dtype=np.int32)
    dist = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), batch):
        sims, ids = index.search(x[s : s + batch], 1)
        labels[s : s + batch] = ids[:, 0]
        dist[s : s + batch] = 1.0 - sims[:, 0]
    return labels, np.clip(dist, 0.0, 2.0)


def kmeans(x: np.ndarray, k: int, *, niter: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convenience: train on `x` and assign it; returns (centroids, labels, cosine distances)."""
    c = train_kmeans(x, k, niter=niter, seed=seed)
    labels, dist = assign(build_index(c), x)
    return c, labels, dist
