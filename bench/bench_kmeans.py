"""Carve's faiss spherical k-means against scikit-learn KMeans on the same vectors.

Both run on the same n×d float32 unit vectors (a mixture of `--blobs` noisy directions), with
the same k, the same number of Lloyd iterations and one initialisation (n_init=1), each with
k-means++ seeding, timed end to end (seeding + training + assigning every point). The Carve
path is `clustering.kmeans.train_kmeans` + `assign` as `clustering.curate` calls them, except
that faiss is allowed to train on every point (`max_points_per_centroid` = n) so both do the
same work; the shipped default subsamples to 256 points per centroid, timed as `carve_default`.
sklearn: `KMeans(init="k-means++", n_init=1, max_iter=niter, tol=0, algorithm="lloyd")`.
`ratio` = sklearn seconds / Carve seconds (> 1: Carve is faster). Quality is reported as the
mean cosine of each point to its centroid.

    python -m bench.bench_kmeans [--n 100000] [--dim 384] [--k 100] [--niter 10]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np


def make_vectors(n: int, dim: int, blobs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(blobs, size=n)] + 0.08 * rng.standard_normal((n, dim), dtype=np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def _mean_cos(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    c = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return float(np.einsum("ij,ij->i", x, c[labels]).mean())


def run_carve(x: np.ndarray, k: int, niter: int, seed: int, full: bool) -> tuple[float, float]:
    from carve.clustering.kmeans import assign, build_index, train_kmeans

    t0 = time.perf_counter()
    mppc = len(x) if full else 256
    c = train_kmeans(x, k, niter=niter, seed=seed, max_points_per_centroid=mppc)
    labels, _ = assign(build_index(c), x)
    dt = time.perf_counter() - t0
    return dt, _mean_cos(x, c, labels)


def run_sklearn(x: np.ndarray, k: int, niter: int, seed: int) -> tuple[float, float]:
    from sklearn.cluster import KMeans

    t0 = time.perf_counter()
    km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=niter, tol=0.0, algorithm="lloyd",
                random_state=seed)
    labels = km.fit_predict(x)
    dt = time.perf_counter() - t0
    return dt, _mean_cos(x, km.cluster_centers_.astype(np.float32), labels)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--niter", type=int, default=10)
    ap.add_argument("--blobs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    x = make_vectors(args.n, args.dim, args.blobs, args.seed)
    carve_s, carve_cos = run_carve(x, args.k, args.niter, args.seed, full=True)
    default_s, default_cos = run_carve(x, args.k, args.niter, args.seed, full=False)
    sk_s, sk_cos = run_sklearn(x, args.k, args.niter, args.seed)
    out = {
        "n": args.n, "dim": args.dim, "k": args.k, "niter": args.niter,
        "carve_s": round(carve_s, 3), "sklearn_s": round(sk_s, 3),
        "carve_default_s": round(default_s, 3),
        "carve_mean_cos": round(carve_cos, 4), "carve_default_mean_cos": round(default_cos, 4),
        "sklearn_mean_cos": round(sk_cos, 4),
        "ratio": round(sk_s / carve_s, 3),
    }
    print(out)
    return out


if __name__ == "__main__":
    main()
