"""Near-duplicate marking within clusters (SemDeDup-style); nothing is ever deleted.

Inside each leaf cluster, events are ranked by closeness to the centroid (ties broken by
event_id, so the result is deterministic). Walking that ranking, an event that is not yet
marked becomes a representative, and every lower-ranked unmarked member whose cosine
similarity to it is >= `threshold` gets `dup_of = <representative event_id>`. So `dup_of`
always points at a representative (never at another duplicate).

Everything is decided inside one cluster, so a cluster is the unit of work and of memory:

* `dedup_cluster(x_ranked, threshold)` is the rule on one cluster's (unit) vectors in rank
  order; it needs that cluster's vectors and one block of similarities (<= ~64 MB), never more;
* `mark_duplicates` applies it to every cluster of an in-memory matrix;
* `mark_duplicates_by_cluster` applies it to clusters handed over one at a time (the streaming
  clustering reads each cluster's vectors back from a local spill, `clustering.stream`), so at
  most one cluster's embeddings are held at once;
* `against_existing` / `mark_against_existing` do it for newly assigned events: first against
  the existing representatives of their cluster, then among themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

_BLOCK = 2048
_BLOCK_FLOATS = 16_000_000  # at most ~64 MB of similarities at a time


def rank_order(dist: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Positions 0..m-1 of one cluster's members sorted by (distance to centroid, event_id)."""
    order = sorted(range(len(ids)), key=lambda j: (float(dist[j]), ids[j]))
    return np.asarray(order, dtype=np.int64)


def dedup_cluster(xm: np.ndarray, threshold: float) -> np.ndarray:
    """The greedy rule on one cluster's vectors `xm` (rows in rank order): for each row, the
    row of its representative, or -1 for representatives and unique rows."""
    m = len(xm)
    rep = np.full(m, -1, dtype=np.int64)
    if m < 2:
        return rep
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
                rep[hit] = i
    return rep


def cluster_members(cluster_ids: np.ndarray) -> list[np.ndarray]:
    """Row indices of each non-empty cluster (ascending rows), clusters in ascending id order."""
    cluster_ids = np.asarray(cluster_ids)
    order = np.argsort(cluster_ids, kind="stable")
    bounds = np.flatnonzero(np.diff(cluster_ids[order])) + 1
    return [m for m in np.split(order, bounds) if len(m)]


def mark_duplicates_by_cluster(
    members: list[np.ndarray],
    vectors: Callable[[int, np.ndarray], np.ndarray],
    cluster_dist: np.ndarray,
    event_ids: Callable[[np.ndarray], Sequence[str]],
    threshold: float,
    n: int,
) -> np.ndarray:
    """`dup_of` as a row index per event (-1: kept), one cluster at a time.

    `members[j]` are the rows (ascending) of the j-th cluster; `vectors(j, rows)` returns their
    unit vectors in that order and `event_ids(rows)` their ids. Only one cluster's vectors are
    held at a time."""
    dup_idx = np.full(n, -1, dtype=np.int64)
    for j, rows in enumerate(members):
        if len(rows) < 2:
            continue
        order = rank_order(cluster_dist[rows], event_ids(rows))
        rep = dedup_cluster(np.ascontiguousarray(vectors(j, rows)[order]), threshold)
        hit = np.flatnonzero(rep >= 0)
        dup_idx[rows[order[hit]]] = rows[order[rep[hit]]]
    return dup_idx


def mark_duplicates(
    x: np.ndarray,
    cluster_ids: np.ndarray,
    cluster_dist: np.ndarray,
    event_ids: Sequence[str],
    threshold: float,
) -> list[str | None]:
    """`dup_of` per event (None for representatives and unique events), `x` in memory."""
    members = cluster_members(cluster_ids)
    dup_idx = mark_duplicates_by_cluster(
        members, lambda _j, rows: x[rows], np.asarray(cluster_dist), lambda rows: [event_ids[i] for i in rows],
        threshold, len(event_ids),
    )
    return [event_ids[j] if j >= 0 else None for j in dup_idx]


def against_existing(x_new: np.ndarray, x_ref: np.ndarray, threshold: float) -> np.ndarray:
    """For new events of one cluster: the row of the most similar existing representative
    (`x_ref`) if its cosine is >= `threshold`, else -1."""
    out = np.full(len(x_new), -1, dtype=np.int64)
    if len(x_ref) == 0 or len(x_new) == 0:
        return out
    bsz = max(1, _BLOCK_FLOATS // len(x_ref))
    for s in range(0, len(x_new), bsz):
        sims = x_new[s : s + bsz] @ x_ref.T
        best = sims.argmax(axis=1)
        ok = sims[np.arange(len(best)), best] >= threshold
        out[s : s + bsz][ok] = best[ok]
    return out


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
        best = against_existing(x_new[new_m], x_ref[ref_m], threshold)
        for j in np.flatnonzero(best >= 0):
            out[new_m[j]] = ids_ref[ref_m[best[j]]]
            left[new_m[j]] = False
    rest = np.flatnonzero(left)
    if rest.size > 1:
        sub = mark_duplicates(x_new[rest], cluster_new[rest], dist_new[rest], [ids_new[i] for i in rest], threshold)
        for i, d in zip(rest, sub, strict=True):
            out[i] = d
    return out
