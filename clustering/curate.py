"""Curation driver: cluster the catalog, assign new events, measure drift, cut balanced shards.

    cluster_catalog(root, cfg) -> clusters version   all committed events -> hierarchical k-means + dedup
    assign_new(root, cfg)      -> clusters version   unassigned events -> latest centroids, new part file
    recluster(root, cfg)       -> clusters version   a fresh clustering of everything (old ones kept)
    coverage_drift(root, cfg)  -> dict               how far new events sit from the centroids vs. training
    cut_shards(root, cfg)      -> shards version     balance + write shards + manifest (last)

`root` is the opened root handle (`carve.storage.root.Root`): its filesystem and catalog are
used as they are, never resolved again here.

Versions are recorded in the catalog (`versions` table) as they are finished. Nothing here
re-captions or re-embeds: it reads the `emb` column of the event catalog.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carve.clustering.balance import BalancePolicy, balance, balance_stats
from carve.clustering.dedup import mark_against_existing, mark_duplicates
from carve.clustering.hierarchical import auto_levels, build_hierarchy
from carve.clustering.kmeans import (
    ClusteringError,
    as_unit_vectors,
    assign,
    build_index,
    embedding_matrix,
    k_clamp_message,
)
from carve.clustering.versions import (
    INITIAL_PART,
    claim_version,
    load_clustering,
    read_assignments,
    save_clustering,
    version_dir,
    write_assignments,
)
from carve.core.config import CarveConfig
from carve.core.log import get_logger, log_event
from carve.storage.events import iter_events, read_events, snapshot
from carve.storage.gather import gather_parts
from carve.storage.manifest import build_manifest, utc_now, write_manifest
from carve.storage.root import Root
from carve.storage.schema import EVENT_SCHEMA
from carve.storage.shards import write_shard_parts

log = get_logger("carve.clustering.curate")

_KEY_COLS = ["event_id", "episode_id", "dataset", "emb"]


def _embedded(root: Root) -> tuple[list[str], list[str], list[str], pa.ChunkedArray]:
    t = read_events(root, columns=_KEY_COLS)
    return (
        t.column("event_id").to_pylist(),
        t.column("episode_id").to_pylist(),
        t.column("dataset").to_pylist(),
        t.column("emb"),
    )


def _assignment_table(ids, episodes, datasets, labels, paths, dist, dup_of) -> pa.Table:
    return pa.table(
        {
            "event_id": pa.array(ids, pa.string()),
            "episode_id": pa.array(episodes, pa.string()),
            "dataset": pa.array(datasets, pa.string()),
            "cluster_id": pa.array(np.asarray(labels, dtype=np.int32)),
            "cluster_path": pa.array([list(map(int, p)) for p in paths], pa.list_(pa.int32())),
            "cluster_dist": pa.array(np.asarray(dist, dtype=np.float32)),
            "dup_of": pa.array(dup_of, pa.string()),
        }
    )


def _dist_summary(dist: np.ndarray) -> dict[str, float]:
    d = np.asarray(dist, dtype=np.float64)
    return {"mean": float(d.mean()), "p50": float(np.median(d)), "p95": float(np.quantile(d, 0.95))}


def cluster_catalog(root: Root, cfg: CarveConfig) -> int:
    """Cluster every committed event into a new clusters version; return its number."""
    cc = cfg.cluster
    ids, episodes, datasets, emb = _embedded(root)
    n = len(ids)
    if n == 0:
        raise ClusteringError(f"{root}: the event catalog has no committed events to cluster; run `carve run` first")
    x = as_unit_vectors(embedding_matrix(emb, ids), ids)
    requested = cc.levels[-1] if cc.levels else cc.k
    levels = auto_levels(n, cc.k, cc.levels or None)
    note = k_clamp_message(requested, n) if requested is not None and requested > n else None
    hier = build_hierarchy(x, levels, niter=cc.niter, seed=cc.seed)
    labels, dist = assign(build_index(hier.leaf_centroids), x)
    paths = hier.paths(labels)
    dup_of = mark_duplicates(x, labels, dist, ids, cc.dedup_threshold)
    version = claim_version(root, "clusters")
    sizes = np.bincount(labels, minlength=hier.levels[-1])
    meta: dict[str, Any] = {
        "version": version,
        "k": int(hier.levels[-1]),
        "k_requested": requested,
        "k_note": note,
        "levels": [int(v) for v in hier.levels],
        "dim": int(x.shape[1]),
        "n_events": n,
        "n_duplicates": int(sum(d is not None for d in dup_of)),
        "empty_clusters": int((sizes == 0).sum()),
        "train_dist": _dist_summary(dist),
        "created_at": utc_now(),
        "config": cc.model_dump(),
    }
    vdir = save_clustering(root, version, hier, meta, _assignment_table(ids, episodes, datasets, labels, paths, dist, dup_of))
    root.catalog.record_version("clusters", version, vdir, {k: meta[k] for k in ("k", "levels", "n_events", "n_duplicates")})
    log_event(log, "clustered", version=version, k=meta["k"], levels=meta["levels"], n=n)
    return version


def recluster(root: Root, cfg: CarveConfig) -> int:
    """A fresh clustering of the whole catalog as a new version (earlier versions stay as they are)."""
    return cluster_catalog(root, cfg)


def _unique_assignments(root: Root, version: int) -> pa.Table:
    asg = read_assignments(root, version)
    if asg.num_rows == 0:
        return asg
    _, first = np.unique(np.asarray(asg.column("event_id").to_pylist(), dtype=object), return_index=True)
    return asg.take(pa.array(np.sort(first)))


def assign_new(root: Root, cfg: CarveConfig) -> int:
    """Assign committed events that the latest clustering has not seen to its centroids.

    They go into a new assignments part file (older ones are never touched), with near-dups
    marked against the existing representatives. Returns the clusters version (unchanged)."""
    cl = load_clustering(root)
    asg = _unique_assignments(root, cl.version)
    seen = set(asg.column("event_id").to_pylist())
    ids, episodes, datasets, emb = _embedded(root)
    new = np.array([i not in seen for i in ids], dtype=bool)
    if not new.any():
        return cl.version
    pos = np.flatnonzero(new)
    new_ids = [ids[i] for i in pos]
    x_new = as_unit_vectors(embedding_matrix(emb.take(pa.array(pos)), new_ids), new_ids)
    if x_new.shape[1] != cl.dim:
        raise ClusteringError(
            f"{cl.path}: new events have {x_new.shape[1]}-d embeddings but the clustering is {cl.dim}-d "
            "(the embedders changed); run `carve recluster`"
        )
    labels, dist = assign(cl.index, x_new)
    paths = cl.hierarchy.paths(labels)
    # existing representatives (still committed) to dedup against
    row_of = {e: i for i, e in enumerate(ids)}
    reps = [
        (row_of[e], c)
        for e, c, d in zip(asg.column("event_id").to_pylist(), asg.column("cluster_id").to_pylist(),
                           asg.column("dup_of").to_pylist(), strict=True)
        if d is None and e in row_of
    ]
    if reps:
        ref_rows = np.array([r for r, _ in reps], dtype=np.int64)
        ref_ids = [ids[r] for r in ref_rows]
        x_ref = as_unit_vectors(embedding_matrix(emb.take(pa.array(ref_rows)), ref_ids), ref_ids)
        ref_c = np.array([c for _, c in reps], dtype=np.int64)
    else:
        x_ref, ref_ids, ref_c = np.zeros((0, cl.dim), np.float32), [], np.zeros(0, np.int64)
    dup_of = mark_against_existing(x_new, labels, dist, new_ids, x_ref, ref_c, ref_ids, cfg.cluster.dedup_threshold)
    path = write_assignments(
        root, cl.version,
        _assignment_table(new_ids, [episodes[i] for i in pos], [datasets[i] for i in pos], labels, paths, dist, dup_of),
    )
    drift = coverage_drift(root, cfg, cl.version)
    cat = root.catalog
    rec = next((r for r in cat.versions("clusters") if int(r["version"]) == cl.version), None)
    meta = dict(rec["meta"]) if rec else {}
    meta.update(n_assigned_later=drift["new_events"], drift=drift)
    cat.record_version("clusters", cl.version, rec["path"] if rec else cl.path, meta)
    log_event(log, "assigned", version=cl.version, n=len(new_ids), part=path, drift_ratio=drift["ratio"])
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


def _emb_dims(t: pa.Table) -> dict[str, int]:
    """Sizes of the embedding columns, keyed visual/text/motion/emb/end_visual (absent if empty)."""
    names = {"emb_visual": "visual", "emb_text": "text", "emb_motion": "motion", "emb": "emb",
             "end_emb_visual": "end_visual"}
    out = {}
    for col, key in names.items():
        if col in t.column_names and t.num_rows:
            mx = pc.max(pc.list_value_length(t.column(col))).as_py()
            if mx:
                out[key] = int(mx)
    return out


def _sources(root: Root, datasets: set[str]) -> list[dict[str, Any]]:
    cat = root.catalog
    out = []
    for d in cat.datasets():
        if d["name"] not in datasets:
            continue
        fps = sorted(f"{r.episode_id}:{r.fingerprint}" for r in cat.episodes(dataset=d["name"], status="ok"))
        out.append({
            "dataset": d["name"], "source_uri": d["source_uri"], "format": d["format"],
            "fingerprint": hashlib.sha256("\n".join(fps).encode()).hexdigest()[:32],
        })
    known = {s["dataset"] for s in out}
    out += [{"dataset": d, "source_uri": None, "fingerprint": None} for d in sorted(datasets - known)]
    return out


def _policy(cfg: CarveConfig, policy: str | BalancePolicy | None) -> BalancePolicy:
    if isinstance(policy, BalancePolicy):
        return policy
    sc = cfg.shard
    return BalancePolicy(name=policy or sc.policy, temperature=sc.temperature, max_repeat=sc.max_repeat, seed=sc.seed)


def cut_shards(root: Root, cfg: CarveConfig, policy: str | BalancePolicy | None = None, total: int | None = None) -> int:
    """Balance the catalog over the latest clustering and write a new shards version; return it.

    Events not yet assigned are assigned first (`assign_new`). Near-duplicates are left out
    unless `shard.include_duplicates`. `total` (default `shard.total_events`, else the number
    of eligible events) is the number of rows across all shards."""
    sc = cfg.shard
    pol = _policy(cfg, policy)
    cl = load_clustering(root)
    # the catalog as of now: every read below sees these rows in this order (another job may be
    # committing episodes meanwhile); assign_new runs after it, so all of them have assignments
    snap = snapshot(root)
    assign_new(root, cfg)
    ids = read_events(root, columns=["event_id", "dataset"], snap=snap)
    if ids.num_rows == 0:
        raise ClusteringError(f"{root}: the event catalog has no committed events to shard")
    asg = _unique_assignments(root, cl.version)
    row_of = {e: i for i, e in enumerate(asg.column("event_id").to_pylist())}
    event_ids = ids.column("event_id").to_pylist()
    missing = [e for e in event_ids if e not in row_of]
    if missing:
        raise ClusteringError(f"{root}: {len(missing)} events have no cluster assignment in clusters "
                              f"v{cl.version:03d} (e.g. {missing[0]}); run `carve cluster` and retry")
    idx = np.array([row_of[e] for e in event_ids], dtype=np.int64)
    a = asg.take(pa.array(idx))
    cids = a.column("cluster_id").to_numpy(zero_copy_only=False).astype(np.int64)
    dup = np.asarray(a.column("dup_of").is_null().to_numpy(zero_copy_only=False), dtype=bool)
    eligible = np.ones(len(cids), dtype=bool) if sc.include_duplicates else dup
    n_eligible = int(eligible.sum())
    want = int(total or sc.total_events or n_eligible)
    leaf_paths = {int(c): tuple(int(v) for v in p) for c, p in enumerate(cl.hierarchy.leaf_paths())}
    rows, targets = balance(cids, eligible, want, pol, leaf_paths)
    if len(rows) == 0:
        raise ClusteringError(f"{root}: no events eligible for shards")
    elig_sizes = Counter(cids[eligible].tolist())
    weight = pa.array(np.array([targets.get(int(c), 0) / max(elig_sizes.get(int(c), 1), 1) for c in cids], np.float32))
    dims: dict[str, int] = {}

    def annotate(sub: pa.Table, g: np.ndarray) -> pa.Table:
        take = pa.array(g)
        for name, col in (
            ("cluster_id", a.column("cluster_id")), ("cluster_path", a.column("cluster_path")),
            ("cluster_dist", a.column("cluster_dist")), ("dup_of", a.column("dup_of")), ("weight", weight),
        ):
            sub = sub.set_column(sub.schema.get_field_index(name), EVENT_SCHEMA.field(name), col.take(take))
        for k, v in _emb_dims(sub).items():
            dims[k] = max(dims.get(k, 0), v)
        return sub

    # one pass over the event files, spilling the selected rows; memory stays ~one part file + one shard
    parts = gather_parts(iter_events(root, snap=snap), rows, sc.rows_per_shard, annotate=annotate)
    first = next(parts)  # runs the spill pass, so `dims` is complete before any shard is written
    version = claim_version(root, "shards")
    vdir = version_dir(root, "shards", version)
    shards = write_shard_parts(itertools.chain([first], parts), root, vdir,
                               row_group_size=min(sc.row_group_size, sc.rows_per_shard),
                               compression=sc.compression, emb_dims=dims,
                               progress=cfg.ray.progress and len(rows) > 50_000,
                               total=-(-len(rows) // sc.rows_per_shard))
    before = Counter(cids.tolist())
    after = Counter(cids[rows].tolist())
    keys = sorted(before)
    manifest = build_manifest(
        version=version,
        clusters_version=cl.version,
        policy=pol.as_dict(),
        config={**sc.model_dump(), "policy": pol.name},
        emb_dims=dims,
        shards=[s.as_dict() for s in shards],
        clusters={"before": {str(c): int(before[c]) for c in keys}, "after": {str(c): int(after.get(c, 0)) for c in keys}},
        stats={"before": balance_stats(before, keys), "after": balance_stats(after, keys)},
        sources=_sources(root, set(ids.column("dataset").to_pylist())),
        unique_events=len(set(rows.tolist())),
        extra={"requested_rows": want, "eligible_events": n_eligible, "duplicates_excluded": int((~eligible).sum())},
    )
    write_manifest(root.uri_of(vdir), manifest)
    root.catalog.record_version("shards", version, vdir, {
        "clusters_version": cl.version, "policy": pol.name, "total_rows": manifest["total_rows"],
        "shards": len(shards), "entropy_after": manifest["stats"]["after"]["entropy"],
    })
    log_event(log, "sharded", version=version, rows=manifest["total_rows"], shards=len(shards), policy=pol.name)
    return version


def versions_summary(root: Root, cfg: CarveConfig) -> dict[str, Any]:
    """Clusters and shards versions recorded in the catalog, plus the latest clustering's drift."""
    cat = root.catalog
    out: dict[str, Any] = {"clusters": cat.versions("clusters"), "shards": cat.versions("shards")}
    try:
        out["drift"] = coverage_drift(root, cfg)
    except ClusteringError:
        out["drift"] = None
    return out
