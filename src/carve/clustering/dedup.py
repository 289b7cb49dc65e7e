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

The raw-signal check. A near-identical embedding alone does not make a duplicate: distinct
demonstrations of one task (same scene, same caption, same motion pattern) embed almost on
top of each other, and on a 12-episode simulated LeRobot dataset the embedding rule alone
flagged 35% of the events of distinct demos. So, when the callers pass signal fingerprints
(`signal_fingerprint`: the event's state+action trajectory resampled to `SIG_POINTS` points),
a pair also has to repeat the recorded signals: same channels, lengths within
`max(2 frames, 10%)`, and an RMS difference of the resampled trajectories of at most
`signal_tol` times their motion (the RMS of their deviation from their own mean, floored at
1e-3 so a motionless event is compared in absolute units). A copy of an episode ingested
twice, or its video re-encoded, has the same signals (distance 0); a different demonstration
of the same task does not (objects elsewhere, another operator path). Events without signals
(no state/action) fall back to the embedding alone. docs/FORMATS.md ("Near-duplicates") has
the measurement (bench/dedup_validation.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_BLOCK = 2048
_BLOCK_FLOATS = 16_000_000  # at most ~64 MB of similarities at a time

SIG_POINTS = 16  # trajectory samples per event in a signal fingerprint
SIG_CHANNELS = 32  # state+action channels kept (more are truncated; ALOHA has 28)
SIG_DIM = 2 + SIG_POINTS * SIG_CHANNELS  # [frames, channels, values (points x channels)]
_SIG_FLOOR = 1e-3


def signal_fingerprint(state: Sequence[Sequence[float]] | np.ndarray | None,
                       action: Sequence[Sequence[float]] | np.ndarray | None) -> np.ndarray:
    """One event's fixed-size signal fingerprint (SIG_DIM float32): its frame count, its number
    of channels (state then action, at most SIG_CHANNELS) and the trajectory linearly resampled
    at SIG_POINTS evenly spaced frames. No signals: frames and channels 0."""
    out = np.zeros(SIG_DIM, dtype=np.float32)
    parts = []
    for a in (state, action):
        if a is None:
            continue
        try:
            arr = np.asarray(a, dtype=np.float32)
        except ValueError:  # ragged: not a per-frame matrix
            continue
        if arr.ndim == 2 and arr.shape[0] and arr.shape[1] and np.isfinite(arr).all():
            parts.append(arr)
    if not parts:
        return out
    n = min(len(p) for p in parts)
    traj = np.concatenate([p[:n] for p in parts], axis=1)[:, :SIG_CHANNELS]
    c = traj.shape[1]
    t = np.linspace(0.0, n - 1, SIG_POINTS)
    lo = np.floor(t).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    f = (t - lo).astype(np.float32)[:, None]
    res = traj[lo] * (1 - f) + traj[hi] * f  # (SIG_POINTS, c)
    vals = np.zeros((SIG_POINTS, SIG_CHANNELS), dtype=np.float32)
    vals[:, :c] = res
    out[0], out[1] = n, c
    out[2:] = vals.reshape(-1)
    return out


def fingerprints_of(state: Sequence[Any], action: Sequence[Any]) -> np.ndarray:
    """(len, SIG_DIM) fingerprints of parallel lists of per-event state / action sequences."""
    return np.stack([signal_fingerprint(s, a) for s, a in zip(state, action, strict=True)]) if len(state) \
        else np.zeros((0, SIG_DIM), dtype=np.float32)


def _per_event_matrices(col: pa.ChunkedArray | pa.Array) -> list[np.ndarray | None]:
    """A `list<list<float>>` column as one (frames, width) float32 matrix per row (None: null,
    empty or ragged)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    out: list[np.ndarray | None] = [None] * len(arr)
    if len(arr) == 0:
        return out
    outer = arr.offsets.to_numpy()
    inner_arr = arr.values
    inner = inner_arr.offsets.to_numpy()
    vals = inner_arr.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    for i in range(len(arr)):
        a, b = int(outer[i]), int(outer[i + 1])
        if not valid[i] or b <= a:
            continue
        widths = np.diff(inner[a : b + 1])
        w = int(widths[0])
        if w == 0 or (widths != w).any():
            continue
        out[i] = vals[inner[a] : inner[b]].reshape(b - a, w)
    return out


def event_fingerprints(table: pa.Table) -> np.ndarray:
    """(rows, SIG_DIM) signal fingerprints of a table with `state` and `action` columns."""
    st = _per_event_matrices(table.column("state"))
    ac = _per_event_matrices(table.column("action"))
    return fingerprints_of(st, ac)


def signal_distance(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Distance of fingerprint `fa` (SIG_DIM,) to each row of `fb` (m, SIG_DIM): RMS difference of
    the resampled trajectories over their motion; 0 if either has no signals, inf if the channels
    differ or the lengths differ by more than max(2 frames, 10%)."""
    fb = np.atleast_2d(fb)
    d = np.full(len(fb), np.inf, dtype=np.float64)
    if fa[1] == 0:
        return np.zeros(len(fb))
    none = fb[:, 1] == 0
    d[none] = 0.0
    n_a = float(fa[0])
    n_b = fb[:, 0].astype(np.float64)
    ok = ~none & (fb[:, 1] == fa[1]) & (np.abs(n_b - n_a) <= np.maximum(2.0, 0.1 * np.maximum(n_a, n_b)))
    if not ok.any():
        return d
    c = int(fa[1])
    va = fa[2:].reshape(SIG_POINTS, SIG_CHANNELS)[:, :c].astype(np.float64)
    vb = fb[ok, 2:].reshape(-1, SIG_POINTS, SIG_CHANNELS)[:, :, :c].astype(np.float64)
    diff = np.sqrt(((vb - va) ** 2).mean(axis=(1, 2)))
    motion_a = np.sqrt(((va - va.mean(axis=0)) ** 2).mean())
    motion_b = np.sqrt(((vb - vb.mean(axis=1, keepdims=True)) ** 2).mean(axis=(1, 2)))
    d[ok] = diff / np.maximum(0.5 * (motion_a + motion_b), _SIG_FLOOR)
    return d


def rank_order(dist: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Positions 0..m-1 of one cluster's members sorted by (distance to centroid, event_id)."""
    order = sorted(range(len(ids)), key=lambda j: (float(dist[j]), ids[j]))
    return np.asarray(order, dtype=np.int64)


def dedup_cluster(xm: np.ndarray, threshold: float, sig: np.ndarray | None = None,
                  signal_tol: float | None = None) -> np.ndarray:
    """The greedy rule on one cluster's vectors `xm` (rows in rank order): for each row, the
    row of its representative, or -1 for representatives and unique rows. With fingerprints
    `sig` (rows as `xm`) and `signal_tol`, a member must also repeat its representative's
    signals (`signal_distance <= signal_tol`)."""
    check = sig is not None and signal_tol is not None
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
            if hit.size and check:
                hit = hit[signal_distance(sig[i], sig[hit]) <= signal_tol]  # type: ignore[index,operator]
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
    signals: Callable[[int, np.ndarray], np.ndarray] | None = None,
    signal_tol: float | None = None,
) -> np.ndarray:
    """`dup_of` as a row index per event (-1: kept), one cluster at a time.

    `members[j]` are the rows (ascending) of the j-th cluster; `vectors(j, rows)` returns their
    unit vectors in that order and `event_ids(rows)` their ids; `signals(j, rows)`, if given,
    their signal fingerprints (the raw-signal check). Only one cluster's vectors are held at a
    time."""
    dup_idx = np.full(n, -1, dtype=np.int64)
    for j, rows in enumerate(members):
        if len(rows) < 2:
            continue
        order = rank_order(cluster_dist[rows], event_ids(rows))
        sig = signals(j, rows)[order] if signals is not None and signal_tol is not None else None
        rep = dedup_cluster(np.ascontiguousarray(vectors(j, rows)[order]), threshold, sig, signal_tol)
        hit = np.flatnonzero(rep >= 0)
        dup_idx[rows[order[hit]]] = rows[order[rep[hit]]]
    return dup_idx


def mark_duplicates(
    x: np.ndarray,
    cluster_ids: np.ndarray,
    cluster_dist: np.ndarray,
    event_ids: Sequence[str],
    threshold: float,
    sig: np.ndarray | None = None,
    signal_tol: float | None = None,
) -> list[str | None]:
    """`dup_of` per event (None for representatives and unique events), `x` (and the signal
    fingerprints `sig`, if given) in memory."""
    members = cluster_members(cluster_ids)
    dup_idx = mark_duplicates_by_cluster(
        members, lambda _j, rows: x[rows], np.asarray(cluster_dist), lambda rows: [event_ids[i] for i in rows],
        threshold, len(event_ids), None if sig is None else (lambda _j, rows: sig[rows]), signal_tol,
    )
    return [event_ids[j] if j >= 0 else None for j in dup_idx]


def against_existing(x_new: np.ndarray, x_ref: np.ndarray, threshold: float, sig_new: np.ndarray | None = None,
                     sig_ref: np.ndarray | None = None, signal_tol: float | None = None) -> np.ndarray:
    """For new events of one cluster: the row of the most similar existing representative
    (`x_ref`) if its cosine is >= `threshold` (and, with fingerprints and `signal_tol`, it
    repeats the new event's signals), else -1."""
    out = np.full(len(x_new), -1, dtype=np.int64)
    if len(x_ref) == 0 or len(x_new) == 0:
        return out
    check = sig_new is not None and sig_ref is not None and signal_tol is not None
    bsz = max(1, _BLOCK_FLOATS // len(x_ref))
    for s in range(0, len(x_new), bsz):
        sims = x_new[s : s + bsz] @ x_ref.T
        if check:
            for r in np.flatnonzero((sims >= threshold).any(axis=1)):
                cand = np.flatnonzero(sims[r] >= threshold)
                bad = cand[signal_distance(sig_new[s + r], sig_ref[cand]) > signal_tol]  # type: ignore[index,operator]
                sims[r, bad] = -np.inf
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
    sig_new: np.ndarray | None = None,
    sig_ref: np.ndarray | None = None,
    signal_tol: float | None = None,
) -> list[str | None]:
    """`dup_of` for new events: vs. existing representatives (`*_ref`) of their cluster, then each other."""
    n = len(ids_new)
    out: list[str | None] = [None] * n
    left = np.ones(n, dtype=bool)
    check = sig_new is not None and sig_ref is not None and signal_tol is not None
    for c in np.unique(cluster_new):
        new_m = np.flatnonzero(cluster_new == c)
        ref_m = np.flatnonzero(cluster_ref == c)
        best = against_existing(x_new[new_m], x_ref[ref_m], threshold,
                                sig_new[new_m] if check else None, sig_ref[ref_m] if check else None,  # type: ignore[index]
                                signal_tol if check else None)
        for j in np.flatnonzero(best >= 0):
            out[new_m[j]] = ids_ref[ref_m[best[j]]]
            left[new_m[j]] = False
    rest = np.flatnonzero(left)
    if rest.size > 1:
        sub = mark_duplicates(x_new[rest], cluster_new[rest], dist_new[rest], [ids_new[i] for i in rest], threshold,
                              sig_new[rest] if check else None, signal_tol if check else None)  # type: ignore[index]
        for i, d in zip(rest, sub, strict=True):
            out[i] = d
    return out


def apply_copies(dup: np.ndarray, copy_of: dict[int, int]) -> np.ndarray:
    """`dup` (row -> the row of its representative, -1: none) with every event of a copied episode
    marked a duplicate too: row `r` of `copy_of` becomes a duplicate of the representative of row
    `copy_of[r]` (the original episode's event it repeats), and rows that had `r` as their
    representative follow it there, so `dup_of` still only points at representatives. Where the
    copy's event was the representative of the original's, the original's becomes it."""
    out = np.asarray(dup, dtype=np.int64).copy()
    if not copy_of:
        return out
    followers: dict[int, set[int]] = {}  # representative -> the rows marked its duplicates (kept in step)
    for x in np.flatnonzero(out >= 0).tolist():
        followers.setdefault(int(out[x]), set()).add(x)

    def point(x: int, rep: int) -> None:  # row x becomes a duplicate of `rep` (-1: a representative)
        if out[x] >= 0:
            followers[int(out[x])].discard(x)
        out[x] = rep
        if rep >= 0:
            followers.setdefault(rep, set()).add(x)

    for r, o in sorted(copy_of.items()):
        rep = int(out[o]) if out[o] >= 0 else o
        if rep == r:  # the copy's event represented the original's: the original's takes its place
            point(o, -1)
            rep = o
        for x in sorted(followers.pop(r, ())):
            out[x] = rep
            followers.setdefault(rep, set()).add(x)
        point(r, rep)
    return out
