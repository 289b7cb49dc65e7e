"""Coverage maths of the audit: the one "under-covered" rule, and the change between two versions.

**Under-covered** (one definition, used by `/datasets/{d}/clusters`, `/datasets/{d}/coverage`,
its CSV, the static report and the UI): a cluster is under-covered when its size is below
`ratio` x the median size of the non-empty clusters in scope (`UNDER_COVERED_RATIO` = 0.25 by
default; `/coverage` takes another `min_ratio`). An empty cluster (size 0) in scope is
under-covered as soon as any cluster has events; with no events at all nothing is.

The change between versions (`/coverage`): cluster sizes of one version are keyed by the
matching cluster of another through their centroids (`centroid_map`: each cluster of `src` ->
the nearest, by cosine, of `dst`; `remap` adds up clusters mapped to the same target), each
cluster gets a `status` (grew, shrank, appeared, vanished, same), and each under-covered one a
suggested number of episodes to collect (`under_covered_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

UNDER_COVERED_RATIO = 0.25  # a cluster below this fraction of the median non-empty cluster size


def median_size(sizes: Iterable[int]) -> float:
    """The median of the non-empty cluster sizes (0.0 if there is none)."""
    nz = [int(s) for s in sizes if int(s) > 0]
    return float(np.median(nz)) if nz else 0.0


def is_under_covered(size: int, median: float, ratio: float = UNDER_COVERED_RATIO) -> bool:
    """The one rule: `size < ratio x median` (median: `median_size` of the clusters in scope)."""
    return bool(median) and size < ratio * median


def status(before: int, after: int) -> str:
    """How a cluster changed between two versions: appeared, vanished, grew, shrank or same."""
    if before == 0 and after > 0:
        return "appeared"
    if after == 0 and before > 0:
        return "vanished"
    return "grew" if after > before else "shrank" if after < before else "same"


def centroid_map(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """Each row (centroid) of `a` -> the index of the nearest (cosine) row of `b`; ValueError
    if their sizes differ."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings of different sizes ({a.shape[1]}, {b.shape[1]})")
    return {i: int(j) for i, j in enumerate(np.argmax(a @ b.T, axis=1).tolist())}


def remap(sizes: Mapping[int, int], mapping: Mapping[int, int] | None) -> dict[int, int]:
    """Cluster sizes of one version keyed by the matching cluster of another (`centroid_map`);
    clusters mapped to the same target add up. No mapping: the same ids."""
    out: dict[int, int] = {}
    for c, n in sizes.items():
        tgt = mapping.get(c, c) if mapping is not None else c
        out[tgt] = out.get(tgt, 0) + n
    return out


def change_rows(before: Mapping[int, int], after: Mapping[int, int], known: Iterable[int],
                captions: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per cluster (of `before`, `after` or `known`): before, after, delta, status, a caption."""
    rows = []
    for c in sorted(set(before) | set(after) | set(known)):
        b, a = int(before.get(c, 0)), int(after.get(c, 0))
        info = captions.get(c, {})
        rows.append({"cluster": c, "before": b, "after": a, "delta": a - b, "status": status(b, a),
                     "caption": info.get("caption"), "event_id": info.get("event_id")})
    return rows


def under_covered_rows(rows: list[dict[str, Any]], captions: Mapping[int, Mapping[str, Any]],
                       ratio: float) -> tuple[float, list[dict[str, Any]]]:
    """(median, the under-covered clusters of `rows` (`change_rows`) by their `after` size, each
    with the episodes it has and the episodes to collect to reach the median)."""
    median = median_size(r["after"] for r in rows)
    under = []
    # events an episode adds to a cluster it reaches: the cluster's own rate, else the typical one
    rate = {r["cluster"]: r["after"] / max(1, int((captions.get(r["cluster"]) or {}).get("episodes") or 1))
            for r in rows if r["after"] > 0}
    typical = float(np.median(list(rate.values()))) if rate else 1.0
    for r in rows:
        if is_under_covered(r["after"], median, ratio):
            eps = int((captions.get(r["cluster"]) or {}).get("episodes") or 0) if r["after"] else 0
            per_ep = max(1.0, rate.get(r["cluster"], typical))
            want = math.ceil(max(0.0, median - r["after"]) / per_ep)
            under.append({"cluster": r["cluster"], "size": r["after"], "ratio": round(r["after"] / median, 4),
                          "caption": r["caption"], "event_id": r["event_id"], "episodes": eps,
                          "events_per_episode": round(per_ep, 3), "suggested_episodes": int(want)})
    return median, under


def change_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many clusters grew, shrank, appeared, vanished or stayed the same."""
    return {s: sum(1 for r in rows if r["status"] == s) for s in ("grew", "shrank", "appeared", "vanished", "same")}
