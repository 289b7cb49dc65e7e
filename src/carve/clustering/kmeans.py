"""Flat spherical k-means: input checks, k choice, seeding, training, assignment.

Owns the low-level clustering primitives the rest of `clustering/` builds on:

* `as_unit_vectors` turns an embedding column into an L2-normalised float32 matrix and
  refuses NaN/inf rows (naming how many and which event_ids) or zero vectors;
* `choose_k` picks k from the config or a size heuristic (~sqrt(n/2)); a k larger than the
  number of events is clamped to n with a warning naming both numbers;
* `train_kmeans` runs spherical Lloyd iterations (`lloyd_spherical`: one GEMM + argmax per
  iteration on numpy's BLAS, centroid sums updated by the points that moved) from a seeded
  k-means++ initialisation (on a subsample), so unequal blobs are all found; `engine="faiss"`
  runs `faiss.Kmeans` instead (the same clustering from the same start, but its iterations,
  on faiss-cpu's own BLAS and OpenMP, measured 0.71x of the GEMM bound against 0.82x, and
  ~0.3x on a loaded machine: bench/bench_kmeans.py);
* `build_index` keeps the centroids as a faiss `IndexFlatIP` (the on-disk `index.faiss`);
  `assign` returns cluster ids plus cosine distances (`1 - cos`), one GEMM + argmax per batch.
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


class _RowNames(Sequence[str]):
    """"row i" for any i: the names of rows without event ids, built only for an error message."""

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i):  # type: ignore[override]
        return f"row {i}"


class ArrowIds(Sequence[str]):
    """The event ids of an Arrow string array as a sequence, converted one at a time (only the
    few an error message names), so a batch of embeddings never builds a list of all its ids."""

    def __init__(self, array: pa.Array | pa.ChunkedArray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):  # type: ignore[override]
        return self.array[int(i)].as_py()


def as_unit_vectors(x: np.ndarray, event_ids: Sequence[str] | None = None) -> np.ndarray:
    """L2-normalised float32 copy of `x`; NaN/inf or all-zero rows raise ClusteringError."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ClusteringError(f"embeddings must be a 2-D matrix, got shape {x.shape}")
    ids: Sequence[str] = event_ids if event_ids is not None else _RowNames()
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


def _assign_block(x: np.ndarray, c: np.ndarray, block_rows: int, with_best: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """(argmax_j <x_i, c_j>, and with `with_best` that inner product) per row: one GEMM + argmax
    per block of rows."""
    n = len(x)
    labels = np.empty(n, dtype=np.int64)
    best = np.empty(n, dtype=np.float32) if with_best else None
    ct = np.ascontiguousarray(c.T)
    for s in range(0, n, block_rows):
        sims = x[s : s + block_rows] @ ct
        lab = sims.argmax(axis=1)
        labels[s : s + block_rows] = lab
        if best is not None:
            best[s : s + block_rows] = sims[np.arange(len(lab)), lab]
    return labels, best


def _block_rows(k: int, floats: int = 16_000_000) -> int:
    """Rows per GEMM block so that one block of similarities stays under `floats` (64 MB)."""
    return max(1024, floats // max(k, 1))


def _moved_sums(x: np.ndarray, rows: np.ndarray, plus: np.ndarray, minus: np.ndarray, k: int) -> np.ndarray:
    """(k, d): for each j, +x[rows[j]] on cluster plus[j] and, where minus[j] >= 0, -x[rows[j]] on
    cluster minus[j]; one sparse (k x n, CSC built directly: `rows` ascending) times x."""
    import scipy.sparse as sp

    n = len(x)
    has = minus >= 0
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[rows + 1] = 1 + has
    np.cumsum(indptr, out=indptr)
    start = indptr[rows]
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    indices[start] = plus
    data[start] = 1.0
    indices[start[has] + 1] = minus[has]
    data[start[has] + 1] = -1.0
    return np.asarray(sp.csc_matrix((data, indices, indptr), shape=(k, n)) @ x)


def lloyd_spherical(x: np.ndarray, init: np.ndarray, niter: int, *, block_rows: int | None = None,
                    threads: int | None = None) -> np.ndarray:
    """`niter` spherical Lloyd iterations from `init`; returns the (k, d) unit centroids.

    Each iteration is one GEMM + argmax over the points (numpy's BLAS, in blocks of
    `block_rows` rows, default: <= 64 MB of similarities per block) and an update of the
    per-cluster sums by the points whose cluster changed only (a sparse +1/-1 matrix times those
    rows, split over `threads` threads: scipy releases the GIL; all points in the first
    iteration), so an iteration costs little more than the GEMM itself. A cluster left empty
    gets the point that is farthest from its centroid (as scikit-learn relocates empty clusters)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    c = np.ascontiguousarray(init, dtype=np.float32).copy()
    k = len(c)
    block_rows = block_rows or _block_rows(k)
    threads = max(1, threads or min(4, os.cpu_count() or 1))
    labels = np.full(n, -1, dtype=np.int64)
    sums = np.zeros((k, d), dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="carve-lloyd") as pool:
        for _ in range(niter):
            new, _ = _assign_block(x, c, block_rows, with_best=False)
            moved = np.flatnonzero(new != labels)
            if len(moved):
                plus, minus = new[moved], labels[moved]
                chunks = [ch for ch in np.array_split(np.arange(len(moved)), threads if len(moved) > 4096 else 1)
                          if len(ch)]
                jobs = [pool.submit(_moved_sums, x, moved[ch], plus[ch], minus[ch], k) for ch in chunks]
                for job in jobs:
                    sums += job.result()
                counts += np.bincount(plus, minlength=k) - np.bincount(minus[minus >= 0], minlength=k)
                labels[moved] = plus
            empty = np.flatnonzero(counts == 0)
            if len(empty):
                best = np.einsum("ij,ij->i", x, c[labels])  # similarity of each point to its centroid
                far = np.argsort(best, kind="stable")  # least similar first
                taken = 0
                for e in empty:
                    while taken < n and counts[labels[far[taken]]] <= 1:
                        taken += 1  # never empty another cluster
                    if taken >= n:
                        break
                    p = int(far[taken])
                    taken += 1
                    sums[labels[p]] -= x[p]
                    counts[labels[p]] -= 1
                    sums[e] = x[p]
                    counts[e] = 1
                    labels[p] = e
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            keep = norms[:, 0] > 0
            c[keep] = (sums[keep] / norms[keep]).astype(np.float32)
    return c


def train_kmeans(
    x: np.ndarray,
    k: int,
    *,
    niter: int = 25,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    init: str = "kmeans++",
    init_centroids: np.ndarray | None = None,
    engine: str = "numpy",
) -> np.ndarray:
    """Spherical k-means on unit vectors `x`; returns (k, d) L2-normalised centroids.

    At most `max_points_per_centroid` x k points (a seeded subsample) are used. The start is
    `init_centroids` if given, else seeded k-means++ (`kmeans_pp_init`). `engine="numpy"` (the
    default) runs `lloyd_spherical` on numpy's BLAS; `engine="faiss"` runs `faiss.Kmeans`
    (slower per iteration here: bench/bench_kmeans.py)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if k > n:
        raise ClusteringError(f"k={k} is larger than the number of points ({n})")
    if n > k * max_points_per_centroid:
        rng = np.random.default_rng([int(seed), 0x7E57])
        x = x[np.sort(rng.choice(n, size=k * max_points_per_centroid, replace=False))]
    if init_centroids is not None:
        init_c = np.ascontiguousarray(init_centroids, dtype=np.float32)
    elif init == "kmeans++" and k > 1:
        init_c = kmeans_pp_init(x, k, seed)
    else:
        init_c = x[np.sort(np.random.default_rng(seed).choice(len(x), size=k, replace=False))]
    if engine == "faiss":
        km = faiss.Kmeans(d, k, niter=niter, spherical=True, seed=seed, verbose=False, min_points_per_centroid=1,
                          max_points_per_centroid=max(max_points_per_centroid, -(-len(x) // k)))
        km.train(x, init_centroids=init_c)
        c = np.asarray(km.centroids, dtype=np.float32).reshape(k, d)
    elif engine == "numpy":
        c = lloyd_spherical(x, init_c, niter)
    else:
        raise ClusteringError(f"unknown k-means engine {engine!r}; choose numpy or faiss")
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
    """(cluster_id int32, cosine distance float32 = 1 - cos) of each unit vector in `x`.

    The centroids come from the inner-product `index`; the search is one GEMM + argmax per
    batch of rows on numpy's BLAS (as the training iterations)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1] != index.d:
        raise ClusteringError(f"embedding size {x.shape[1]} does not match the clustering's dimension {index.d}")
    c = np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32).reshape(index.ntotal, index.d)
    labels, best = _assign_block(x, c, min(batch, _block_rows(len(c))))
    assert best is not None
    return labels.astype(np.int32), np.clip(1.0 - best, 0.0, 2.0).astype(np.float32)


def kmeans(x: np.ndarray, k: int, *, niter: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convenience: train on `x` and assign it; returns (centroids, labels, cosine distances)."""
    c = train_kmeans(x, k, niter=niter, seed=seed)
    labels, dist = assign(build_index(c), x)
    return c, labels, dist
