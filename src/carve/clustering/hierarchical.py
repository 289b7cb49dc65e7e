"""Hierarchical k-means (Vo et al. 2024, "Automatic data curation for self-supervised learning").

Level 1 is spherical k-means on the points (the leaf clusters, k = `levels[-1]`); level l+1
is k-means on the centroids of level l, so each leaf cluster gets a parent, each parent a
grandparent, up to the top level (`levels[0]`). The result is a tree stored as per-level
centroids and parent arrays (`hierarchy.json`); the `cluster_path` of an event is its
cluster id at every level, top level first, ending with its leaf `cluster_id`.

Balanced sampling along this tree (equal share per top-level cluster, recursively down to
the leaves, then points) lives in `carve/shard/balance.py` (policy `hierarchical`).
Levels come from the config (`cluster.levels`, top first) or `auto_levels` from the size.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from carve.clustering.kmeans import ClusteringError, assign, build_index, choose_k, train_kmeans

HIERARCHY_FORMAT = "carve.hierarchy"
HIERARCHY_VERSION = 1


@dataclass
class Hierarchy:
    """Per-level k, centroids and parents, top level first; the last level is the leaf level."""

    levels: list[int]
    centroids: list[np.ndarray]  # centroids[l]: (levels[l], d) float32, unit rows
    parents: list[np.ndarray | None]  # parents[l][i]: id at level l-1 of cluster i of level l; None at top

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def leaf_centroids(self) -> np.ndarray:
        return self.centroids[-1]

    def leaf_paths(self) -> np.ndarray:
        """(k_leaf, depth) int32: the path (top first) of every leaf cluster."""
        k = self.levels[-1]
        out = np.empty((k, self.depth), dtype=np.int32)
        cur = np.arange(k, dtype=np.int32)
        out[:, -1] = cur
        for lvl in range(self.depth - 1, 0, -1):
            parents = self.parents[lvl]
            assert parents is not None
            cur = parents[cur].astype(np.int32)
            out[:, lvl - 1] = cur
        return out

    def paths(self, leaf_ids: np.ndarray) -> np.ndarray:
        """(n, depth) int32 cluster paths of points with the given leaf cluster ids."""
        return self.leaf_paths()[np.asarray(leaf_ids, dtype=np.int64)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": HIERARCHY_FORMAT,
            "hierarchy_version": HIERARCHY_VERSION,
            "order": "top_first",
            "levels": [
                {
                    "k": int(k),
                    "centroids": np.asarray(c, dtype=np.float32).tolist(),
                    "parents": None if p is None else [int(v) for v in p],
                }
                for k, c, p in zip(self.levels, self.centroids, self.parents, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "hierarchy.json") -> Hierarchy:
        if data.get("format") != HIERARCHY_FORMAT:
            raise ClusteringError(f"{where}: not a Carve hierarchy (format={data.get('format')!r})")
        if int(data.get("hierarchy_version", 0)) > HIERARCHY_VERSION:
            raise ClusteringError(
                f"{where}: hierarchy version {data['hierarchy_version']} is newer than this Carve reads "
                f"({HIERARCHY_VERSION}); upgrade Carve"
            )
        lv = data["levels"]
        return cls(
            levels=[int(x["k"]) for x in lv],
            centroids=[np.asarray(x["centroids"], dtype=np.float32) for x in lv],
            parents=[None if x["parents"] is None else np.asarray(x["parents"], dtype=np.int32) for x in lv],
        )


def auto_levels(n: int, k: int | None = None, levels: list[int] | None = None) -> list[int]:
    """Levels (k per level, top first) for `n` points from the config, or from the size."""
    if levels:
        levels = [int(v) for v in levels]
        if any(v < 1 for v in levels):
            raise ClusteringError(f"cluster.levels must all be >= 1, got {levels}")
        if any(a > b for a, b in itertools.pairwise(levels)):
            raise ClusteringError(f"cluster.levels go top level first and may not grow upwards, got {levels}")
        if k is not None and k != levels[-1]:
            raise ClusteringError(f"cluster.k={k} disagrees with the leaf level of cluster.levels={levels}")
        leaf = choose_k(n, levels[-1])  # clamped to n with a warning
        return [min(v, leaf) for v in levels]
    leaf = choose_k(n, k)
    if leaf < 8:
        return [leaf]
    return [max(2, round(math.sqrt(leaf))), leaf]


def build_hierarchy(
    x: np.ndarray,
    levels: list[int],
    *,
    niter: int = 25,
    seed: int = 0,
    max_points_per_centroid: int = 256,
) -> Hierarchy:
    """Hierarchical k-means of unit vectors `x` with `levels` (top first)."""
    if not levels:
        raise ClusteringError("build_hierarchy needs at least one level")
    depth = len(levels)
    cents: list[np.ndarray] = [np.empty(0)] * depth
    parents: list[np.ndarray | None] = [None] * depth
    cents[-1] = train_kmeans(x, levels[-1], niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid)
    for lvl in range(depth - 2, -1, -1):
        below = cents[lvl + 1]
        k = min(levels[lvl], len(below))
        cents[lvl] = train_kmeans(below, k, niter=niter, seed=seed + depth - lvl, max_points_per_centroid=10**6)
        parents[lvl + 1], _ = assign(build_index(cents[lvl]), below)
        levels = [*levels[:lvl], k, *levels[lvl + 1 :]]
    return Hierarchy(levels=list(levels), centroids=cents, parents=parents)
