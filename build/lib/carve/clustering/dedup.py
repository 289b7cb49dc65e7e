"""Near-duplicate marking within clusters (SemDeDup-style); nothing is ever deleted.

Inside each leaf cluster, events are ranked by closeness to the centroid (ties broken by
event_id, so the result is deterministic). Walking that ranking, an event that is not yet
marked becomes a representative, and every lower-ranked unmarked member whose cosine
similarity to it is >= `threshold` gets `dup_of = <representative event_id>`. So `dup_of`
always points at a representative (never at another duplicate).

`mark_duplicates` does this for a whole clustering; `mark_against_existing` does it for
newly assigned events: first against the existing representatives of their cluster, then
among themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_BLOCK = 2048
_BLOCK_FLOATS = 16_000_000  # at most ~64 MB of similarities at a time


def _rank(cluster_dist: np.ndarray, event_ids: Sequence[str], members: np.ndarray) -> np.ndarray:
    """Members sorted by (distance to centroid, event_id)."""
    ids = [event_ids[i] for i in members]
    order = sorted(range(len(members)), key=lambda j: (float(cluster_dist[members[j]]), ids[j]))
    return members[np.asarray(order, dtype=np.int64)]


def _greedy(x: np.ndarray, ranked: np.ndarray, threshold: float, dup_idx: np.ndarray) -> None:
    """Greedy representative selection over `ranked` rows of x; fills dup_idx (row -> rep row)."""
    m = len(ranked)
    if m < 2:
        return
    xm = x[ranked]
    marked = np.zeros(m, dtype=bool)
    bsz = max(16, min(_BLOCK, _BLOCK_FLOATS // m))
    for s in range(0, m, bsz):
        block = xm[s : s + bsz] @ xm.T  # (b, m) cosine similarities
        for r in range(block.shape[0]):
            i = s + r
            if marked[i]:
                continue
            sims = block[r]
            hit = np.flatnonzero(sims[i + 1 :] >= threshold) + i + 1
            hit = hit[~marked[hit]]
            if hit.size:
                marked[hit] = True
                dup_idx[ranked[hit]] = ranked[i]


def mark_duplicates(
    x: np.ndarray,
    cluster_ids: np.ndarray,
    cluster_dist: np.ndarray,
    event_ids: Sequence[str],
    threshold: float,
) -> list[str | None]:
    """`dup_of` per event (None for representatives and unique events)."""
    n = len(event_ids)
    dup_idx = np.full(n, -1, dtype=np.int64)
    order = np.argsort(cluster_ids, kind="stable")
    bounds = np.flatnonzero(np.diff(cluster_ids[order])) + 1
    for members in np.split(order, bounds):
        if len(members) > 1:
            _greedy(x, _rank(cluster_dist, event_ids, members), threshold, dup_idx)
    return [event_ids[j] if j >= 0 else None for j in dup_idx]


def mark_against_existing(
    x_new: np.ndarray,
    cluster_new: np.ndarray,
    dist_new: np.ndarray,
    ids_new: Sequence[str],
    x_ref: np.ndarray,
    cluster_ref: np.ndarray,
    ids_ref: Sequence[str],
    threshold: float,
) -> list[str | None]:
    """`dup_of` for new events: vs. existing representatives (`*_ref`) of their cluster, then each other."""
    n = len(ids_new)
    out: list[str | None] = [None] * n
    left = np.ones(n, dtype=bool)
    for c in np.unique(cluster_new):
        new_m = np.flatnonzero(cluster_new == c)
        ref_m = np.flatnonzero(cluster_ref == c)
        if ref_m.size == 0:
            continue
        sims = x_new[new_m] @ x_ref[ref_m].T
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(new_m)), best]
        for j, i in enumerate(new_m):
            if best_sim[j] >= threshold:
                out[i] = ids_ref[ref_m[best[j]]]
                left[i] = False
    rest = np.flatnonzero(left)
    if rest.size > 1:
        sub = mark_duplicates(x_new[rest], cluster_new[rest], dist_new[rest], [ids_new[i] for i in rest], threshold)
        for i, d in zip(rest, sub, strict=True):
            out[i] = d
    return out
