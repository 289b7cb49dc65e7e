"""Curation driver: cluster the catalog, assign new events, measure drift.

    cluster_catalog(root, cfg) -> clusters version   all committed events -> hierarchical k-means + dedup
    assign_new(root, cfg)      -> clusters version   unassigned events -> latest centroids, new part file
    recluster(root, cfg)       -> clusters version   a fresh clustering of everything (old ones kept)
    coverage_drift(root, cfg)  -> dict               how far new events sit from the centroids vs. training

Balancing and cutting shards from a clustering version is `carve.shard.cut.cut_shards`.

`root` is the opened root handle (`carve.storage.root.Root`): its filesystem and catalog are
used as they are, never resolved again here.

Versions are recorded in the catalog (`versions` table) as they are finished. Nothing here
re-captions or re-embeds: it reads the `emb` column of the event catalog.

Memory stays bounded on a large catalog (clustering/stream.py): k-means trains on a seeded
sample of `cluster.train_sample_per_centroid` x k events; every event is then assigned in
batches of `cluster.batch_rows` read part file by part file, its unit vector spilled to a
local per-cluster file, and near-duplicates are marked one cluster at a time from the spill
(the SemDeDup rule of clustering/dedup.py plus its raw-signal check: each event's state/action
fingerprint is spilled by cluster the same way). The driver holds the sample, the small
key columns (event_id, episode_id, dataset), one batch and one cluster's embeddings, never the
whole embedding matrix. A catalog no larger than the sample is clustered in memory, as before.
The audit views' products of a version (summary, layout, neighbours) are derived after
clustering by one call, `carve.audit.derive.derive_views`, which the callers make.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from carve.clustering.dedup import (
    SIG_DIM,
    against_existing,
    apply_copies,
    cluster_members,
    dedup_cluster,
    event_fingerprints,
    mark_duplicates_by_cluster,
    rank_order,
)
from carve.clustering.hierarchical import auto_levels, build_hierarchy
from carve.clustering.kmeans import ClusteringError, assign, build_index, k_clamp_message
from carve.clustering.stream import (
    ClusterSpill,
    gather_unit_vectors,
    iter_unit_batches,
    read_keys,
    sample_rows,
)
from carve.clustering.summary import align
from carve.clustering.versions import (
    INITIAL_PART,
    claim_version,
    load_clustering,
    read_assignments,
    save_clustering,
    unique_assignments,
    write_assignments,
)
from carve.core.config import CarveConfig
from carve.core.log import get_logger, log_event
from carve.storage.events import EventSnapshot, iter_events, snapshot
from carve.storage.manifest import utc_now
from carve.storage.root import Root

log = get_logger("carve.clustering.curate")

def _assignment_table(keys: pa.Table, labels: np.ndarray, paths: np.ndarray, dist: np.ndarray,
                      dup_of: pa.Array) -> pa.Table:
    """The assignments of the rows of `keys` (event_id, episode_id, dataset), built column-wise."""
    depth = int(paths.shape[1]) if paths.ndim == 2 else 1
    flat = pa.array(np.ascontiguousarray(paths, dtype=np.int32).reshape(-1))
    offsets = pa.array(np.arange(0, len(labels) * depth + 1, depth, dtype=np.int32))
    return pa.table(
        {
            "event_id": keys.column("event_id"),
            "episode_id": keys.column("episode_id"),
            "dataset": keys.column("dataset"),
            "cluster_id": pa.array(np.asarray(labels, dtype=np.int32)),
            "cluster_path": pa.ListArray.from_arrays(offsets, flat),
            "cluster_dist": pa.array(np.asarray(dist, dtype=np.float32)),
            "dup_of": dup_of,
        }
    )


def _ids_at(ids: pa.Array, rows: np.ndarray) -> pa.Array:
    """ids[rows[i]] for rows >= 0, null where rows[i] < 0 (`dup_of` from row indices)."""
    rows = np.asarray(rows, dtype=np.int64)
    neg = rows < 0
    return ids.take(pa.array(np.where(neg, 0, rows), mask=neg)) if len(rows) else pa.array([], pa.string())


def _id_list(ids: pa.Array) -> Callable[[np.ndarray], list[str]]:
    return lambda rows: ids.take(pa.array(rows)).to_pylist()


def _dist_summary(dist: np.ndarray) -> dict[str, float]:
    d = np.asarray(dist, dtype=np.float64)
    return {"mean": float(d.mean()), "p50": float(np.median(d)), "p95": float(np.quantile(d, 0.95))}


def _spill_fingerprints(root: Root, snap: EventSnapshot, rows: np.ndarray | None, labels: np.ndarray,
                        spill: ClusterSpill) -> None:
    """Spill the signal fingerprints (clustering.dedup) of `rows` (sorted global rows; None: all)
    by cluster, `labels[i]` being the cluster of the i-th of them; one part file at a time."""
    want = None if rows is None else np.asarray(rows, dtype=np.int64)
    g0 = pos = 0
    for t in iter_events(root, columns=["state", "action"], snap=snap):
        n_t = t.num_rows
        if want is not None:
            lo, hi = np.searchsorted(want, [g0, g0 + n_t])
            t = t.take(pa.array(want[lo:hi] - g0))
        g0 += n_t
        if t.num_rows:
            spill.add(labels[pos : pos + t.num_rows], event_fingerprints(t))
            pos += t.num_rows


def _assign_streaming(root: Root, snap: EventSnapshot, index: Any, keys: pa.Table, dim: int,
                      cc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign every event of the snapshot in batches streamed from the part files, spilling each
    batch's unit vectors by cluster; then mark near-duplicates one cluster at a time from the
    spill. Returns (labels, cosine distances, dup_of as row index or -1)."""
    n = keys.num_rows
    labels = np.full(n, -1, dtype=np.int32)
    dist = np.zeros(n, dtype=np.float32)
    tol = cc.dedup_signal_tol
    with ClusterSpill(dim, cc.spill_dir) as spill, ClusterSpill(SIG_DIM, cc.spill_dir) as sig_spill:
        for b in iter_unit_batches(root, snap, batch_rows=cc.batch_rows, dim=dim):
            lab, dst = assign(index, b.x)
            labels[b.rows] = lab
            dist[b.rows] = dst
            spill.add(lab, b.x)
        if (labels < 0).any():
            raise ClusteringError(f"{root}: the event files changed while clustering; run it again")
        members = cluster_members(labels)

        def vectors(_j: int, rows: np.ndarray) -> np.ndarray:
            xc = spill.read(int(labels[rows[0]]))  # in ascending row order, as `rows`
            if len(xc) != len(rows):
                raise ClusteringError(f"{root}: spill of cluster {int(labels[rows[0]])} holds {len(xc)} vectors, "
                                      f"expected {len(rows)}")
            return xc

        if tol is not None:  # the raw-signal check of a near-duplicate
            _spill_fingerprints(root, snap, None, labels, sig_spill)
        dup_idx = mark_duplicates_by_cluster(members, vectors, dist, _id_list(keys.column("event_id")),
                                             cc.dedup_threshold, n,
                                             lambda _j, rows: sig_spill.read(int(labels[rows[0]])), tol)
    return labels, dist, dup_idx


def _copy_rows(keys: pa.Table, copies: dict[str, str] | None) -> dict[int, int]:
    """`copies` (an event of a copied episode -> the original's event it repeats) as rows of `keys`."""
    if not copies:
        return {}
    row = {e: i for i, e in enumerate(keys.column("event_id").to_pylist())}
    return {row[a]: row[b] for a, b in copies.items() if a in row and b in row}


def cluster_catalog(root: Root, cfg: CarveConfig, copies: dict[str, str] | None = None) -> int:
    """Cluster every committed event into a new clusters version; return its number.

    k-means trains on a seeded sample of `cluster.train_sample_per_centroid` x k events (all of
    them when the catalog is smaller: then everything happens in memory, as before). A larger
    catalog is then assigned in batches streamed from the event part files, and near-duplicates
    are marked one cluster at a time (`_assign_streaming`), so the driver holds the sample, one
    batch and one cluster's embeddings, never the whole embedding matrix. The views' products
    (summary, layout, neighbours) are not made here: `carve.audit.derive.derive_views` next."""
    cc = cfg.cluster
    snap = snapshot(root)
    keys = read_keys(root, snap)
    n = keys.num_rows
    if n == 0:
        raise ClusteringError(f"{root}: the event catalog has no committed events to cluster; run `carve run` first")
    requested = cc.levels[-1] if cc.levels else cc.k
    levels = auto_levels(n, cc.k, cc.levels or None)
    note = k_clamp_message(requested, n) if requested is not None and requested > n else None
    sample = sample_rows(n, cc.train_sample_per_centroid * levels[-1], cc.seed)
    x = gather_unit_vectors(root, snap, sample, n)
    dim = int(x.shape[1])
    hier = build_hierarchy(x, levels, niter=cc.niter, seed=cc.seed, max_points_per_centroid=cc.train_sample_per_centroid)
    index = build_index(hier.leaf_centroids)
    ids = keys.column("event_id")
    if sample is None:  # the sample is the whole catalog, already in memory
        labels, dist = assign(index, x)
        with ClusterSpill(SIG_DIM, cc.spill_dir) as sig_spill:  # fingerprints on disk, one cluster read at a time
            if cc.dedup_signal_tol is not None:  # the raw-signal check of a near-duplicate
                _spill_fingerprints(root, snap, None, labels, sig_spill)
            dup_idx = mark_duplicates_by_cluster(cluster_members(labels), lambda _j, rows: x[rows], dist, _id_list(ids),
                                                 cc.dedup_threshold, n,
                                                 lambda _j, rows: sig_spill.read(int(labels[rows[0]])),
                                                 cc.dedup_signal_tol)
    else:
        del x
        labels, dist, dup_idx = _assign_streaming(root, snap, index, keys, dim, cc)
    dup_idx = apply_copies(dup_idx, _copy_rows(keys, copies))  # copied episodes (`pipeline.copies`)
    paths = hier.paths(labels)
    version = claim_version(root, "clusters")
    sizes = np.bincount(labels, minlength=hier.levels[-1])
    meta: dict[str, Any] = {
        "version": version,
        "k": int(hier.levels[-1]),
        "k_requested": requested,
        "k_note": note,
        "levels": [int(v) for v in hier.levels],
        "dim": dim,
        "n_events": n,
        "n_duplicates": int((dup_idx >= 0).sum()),
        "empty_clusters": int((sizes == 0).sum()),
        "train_dist": _dist_summary(dist),
        "train_sample": n if sample is None else len(sample),
        "created_at": utc_now(),
        "config": cc.model_dump(),
    }
    table = _assignment_table(keys, labels, paths, dist, _ids_at(ids, dup_idx))
    del paths
    vdir = save_clustering(root, version, hier, meta, table)
    root.catalog.record_version("clusters", version, vdir, {k: meta[k] for k in ("k", "levels", "n_events", "n_duplicates")})
    log_event(log, "clustered", version=version, k=meta["k"], levels=meta["levels"], n=n,
              train_sample=meta["train_sample"])
    return version


def recluster(root: Root, cfg: CarveConfig) -> int:
    """A fresh clustering of the whole catalog as a new version (earlier versions stay as they are)."""
    return cluster_catalog(root, cfg)


def _unique_assignments(root: Root, version: int) -> pa.Table:
    return unique_assignments(read_assignments(root, version))


def assign_new(root: Root, cfg: CarveConfig, copies: dict[str, str] | None = None) -> int:
    """Assign committed events that the latest clustering has not seen to its centroids.

    They go into a new assignments part file (older ones are never touched), with near-dups
    marked against the existing representatives of their cluster, then among themselves (the
    version's views are stale until `carve.audit.derive.derive_views`). Streams like
    `cluster_catalog`: the new events' vectors and
    then those of the existing representatives of the clusters they land in are spilled by
    cluster and compared one cluster at a time. Returns the clusters version (unchanged)."""
    cc = cfg.cluster
    cl = load_clustering(root)
    snap = snapshot(root)
    keys = read_keys(root, snap)
    asg = _unique_assignments(root, cl.version)
    cluster_row, dup_row = align(keys, asg)
    new_rows = np.flatnonzero(cluster_row < 0)
    if len(new_rows) == 0:
        return cl.version
    ids = keys.column("event_id")
    m = len(new_rows)
    labels = np.full(m, -1, dtype=np.int32)
    dist = np.zeros(m, dtype=np.float32)
    dup_new = np.full(m, -1, dtype=np.int64)  # global row of the event a new one duplicates
    tol = cc.dedup_signal_tol
    with ClusterSpill(cl.dim, cc.spill_dir) as spill_new, ClusterSpill(cl.dim, cc.spill_dir) as spill_ref, \
            ClusterSpill(SIG_DIM, cc.spill_dir) as sig_new, ClusterSpill(SIG_DIM, cc.spill_dir) as sig_ref:
        pos = 0
        for b in iter_unit_batches(root, snap, new_rows, batch_rows=cc.batch_rows):
            if b.x.shape[1] != cl.dim:
                raise ClusteringError(
                    f"{cl.path}: new events have {b.x.shape[1]}-d embeddings but the clustering is {cl.dim}-d "
                    "(the embedders changed); run `carve recluster`"
                )
            lab, dst = assign(cl.index, b.x)
            labels[pos : pos + len(lab)] = lab
            dist[pos : pos + len(lab)] = dst
            pos += len(lab)
            spill_new.add(lab, b.x)
        if pos != m:
            raise ClusteringError(f"{root}: the event files changed while assigning; run it again")
        # existing representatives (still committed) of the clusters the new events land in
        ref_rows = np.flatnonzero((cluster_row >= 0) & ~dup_row & np.isin(cluster_row, np.unique(labels)))
        for b in iter_unit_batches(root, snap, ref_rows, batch_rows=cc.batch_rows, dim=cl.dim):
            spill_ref.add(cluster_row[b.rows], b.x)
        if tol is not None:  # the raw-signal check of a near-duplicate
            _spill_fingerprints(root, snap, new_rows, labels, sig_new)
            _spill_fingerprints(root, snap, ref_rows, cluster_row[ref_rows], sig_ref)
        ref_of = {int(cluster_row[ref_rows[r[0]]]): ref_rows[r] for r in cluster_members(cluster_row[ref_rows])}
        id_list = _id_list(ids)
        for p in cluster_members(labels):  # positions into new_rows, ascending
            c = int(labels[p[0]])
            xn = spill_new.read(c)
            refs = ref_of.get(c, np.zeros(0, np.int64))  # global rows, ascending: the order of spill_ref.read(c)
            sn, sr = (sig_new.read(c), sig_ref.read(c)) if tol is not None else (None, None)
            best = against_existing(xn, spill_ref.read(c), cc.dedup_threshold, sn, sr, tol)
            hit = best >= 0
            dup_new[p[hit]] = refs[best[hit]]
            rest = np.flatnonzero(~hit)
            if len(rest) > 1:  # then among themselves
                order = rank_order(dist[p[rest]], id_list(new_rows[p[rest]]))
                rep = dedup_cluster(np.ascontiguousarray(xn[rest][order]), cc.dedup_threshold,
                                    None if sn is None else sn[rest][order], tol)
                marked = np.flatnonzero(rep >= 0)
                dup_new[p[rest[order[marked]]]] = new_rows[p[rest[order[rep[marked]]]]]
    pairs = {r: o for r, o in _copy_rows(keys, copies).items() if cluster_row[r] < 0}  # new copies only
    if pairs:  # over all rows: a new copy may repeat an event assigned before (its representative kept)
        full = np.full(len(cluster_row), -1, dtype=np.int64)
        full[new_rows] = dup_new
        row = {e: i for i, e in enumerate(ids.to_pylist())}
        for e, d in zip(asg.column("event_id").to_pylist(), asg.column("dup_of").to_pylist(), strict=True):
            if d is not None and e in row and d in row:
                full[row[e]] = row[d]
        dup_new = apply_copies(full, pairs)[new_rows]
    paths = cl.hierarchy.paths(labels)
    path = write_assignments(root, cl.version,
                             _assignment_table(keys.take(pa.array(new_rows)), labels, paths, dist, _ids_at(ids, dup_new)))
    drift = coverage_drift(root, cfg, cl.version)
    cat = root.catalog
    rec = next((r for r in cat.versions("clusters") if int(r["version"]) == cl.version), None)
    meta = dict(rec["meta"]) if rec else {}
    meta.update(n_assigned_later=drift["new_events"], drift=drift)
    cat.record_version("clusters", cl.version, rec["path"] if rec else cl.path, meta)
    log_event(log, "assigned", version=cl.version, n=m, part=path, drift_ratio=drift["ratio"])
    if drift["recommend_recluster"]:
        log_event(log, "recluster_recommended", logging.WARNING, version=cl.version, reason=drift["reason"])
    return cl.version


def coverage_drift(root: Root, cfg: CarveConfig, version: int | None = None) -> dict[str, Any]:
    """How well the clustering still covers the catalog.

    `ratio` = mean centroid distance (1 - cos) of events assigned after training / that of
    the training events. Near 1: new data looks like the old; well above 1 (>= cluster.
    recluster_drift_ratio), or more new events than training ones: recluster."""
    cl = load_clustering(root, version)
    asg = _unique_assignments(root, cl.version)
    parts = np.asarray(asg.column("part").to_pylist(), dtype=object)
    dist = asg.column("cluster_dist").to_numpy(zero_copy_only=False).astype(np.float64)
    train = parts == INITIAL_PART
    n_train, n_new = int(train.sum()), int((~train).sum())
    train_mean = float(dist[train].mean()) if n_train else 0.0
    new_mean = float(dist[~train].mean()) if n_new else None
    ratio = None
    if new_mean is not None:
        ratio = new_mean / train_mean if train_mean > 1e-9 else (1.0 if new_mean <= 1e-9 else float("inf"))
    thr = cfg.cluster.recluster_drift_ratio
    reasons = []
    if ratio is not None and ratio >= thr:
        reasons.append(f"new events sit {ratio:.2f}x farther from their centroids than training events (>= {thr})")
    if n_new > n_train:
        reasons.append(f"more events were assigned later ({n_new}) than were clustered ({n_train})")
    return {
        "version": cl.version,
        "train_events": n_train,
        "new_events": n_new,
        "train_mean_dist": train_mean,
        "new_mean_dist": new_mean,
        "ratio": None if ratio is None or not np.isfinite(ratio) else round(ratio, 4),
        "recommend_recluster": bool(reasons),
        "reason": "; ".join(reasons) or None,
    }


def versions_summary(root: Root, cfg: CarveConfig) -> dict[str, Any]:
    """Clusters and shards versions recorded in the catalog, plus the latest clustering's drift."""
    cat = root.catalog
    out: dict[str, Any] = {"clusters": cat.versions("clusters"), "shards": cat.versions("shards")}
    try:
        out["drift"] = coverage_drift(root, cfg)
    except ClusteringError:
        out["drift"] = None
    return out
