"""clustering.curate end to end on small synthetic catalogs: cluster, assign, drift, recluster, bad input."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from carve.clustering.kmeans import ClusteringError
from carve.core.config import CarveConfig
from carve.storage.catalog import Catalog
from carve.storage.events import write_event_part
from carve.storage.root import Root, open_root
from carve.storage.schema import events_to_table, make_event_id


def blob_embeddings(sizes: list[int], dim: int = 16, seed: int = 0, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around len(sizes) random directions; returns (x, true blob label)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    xs, ys = [], []
    for b, n in enumerate(sizes):
        pts = centres[b] + spread * rng.normal(size=(n, dim))
        xs.append(pts)
        ys.append(np.full(n, b))
    x = np.concatenate(xs).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.concatenate(ys)


def add_episodes(root: Path, x: np.ndarray, *, per_episode: int = 10, dataset: str = "d", first_episode: int = 0,
                 batch: str = "b1", labels: np.ndarray | None = None) -> list[str]:
    """Write events with embeddings `x` as committed episodes of `per_episode` events; return event ids."""
    ids: list[str] = []
    recs = []
    rows_by_ep: dict[str, list[dict]] = {}
    for i, v in enumerate(x):
        ep_index = first_episode + i // per_episode
        ep = f"{dataset}/{ep_index:06d}"
        k = i % per_episode
        eid = make_event_id(ep, k * 10, k * 10 + 10)
        ids.append(eid)
        label = int(labels[i]) if labels is not None else -1
        rows_by_ep.setdefault(ep, []).append({
            "event_id": eid, "episode_id": ep, "dataset": dataset, "source_uri": "/src", "episode_index": ep_index,
            "event_index": k, "num_events": per_episode, "start_frame": k * 10, "end_frame": k * 10 + 10,
            "fps": 10.0, "task": f"task {label}", "caption": f"blob {label}", "next_caption": "",
            "state": [[0.0, 1.0]] * 2, "action": [[0.5]] * 2,
            "emb_text": [float(a) for a in v[:8]], "emb": [float(a) for a in v],
        })
    for ep, rows in rows_by_ep.items():
        write_event_part(open_root(root), batch, ep, events_to_table(rows))
        recs.append({"episode_id": ep, "dataset": dataset, "episode_index": rows[0]["episode_index"],
                     "source_uri": "/src", "fingerprint": "fp-" + ep, "status": "ok", "num_events": len(rows),
                     "batch": batch})
    with Catalog(root) as cat:
        cat.upsert_dataset(dataset, "/src", "folder")
        cat.record_episodes(recs)
    return ids


def with_root(cfg: CarveConfig) -> tuple[Root, CarveConfig]:
    """(opened root, config): the arguments of the curate functions for one config."""
    return open_root(cfg.root), cfg


def cfg_for(root: Path, **cluster) -> CarveConfig:
    return CarveConfig.model_validate({"root": str(root), "ray": {"progress": False},
                                       "cluster": {"niter": 10, **cluster}, "shard": {"rows_per_shard": 64}})


def _sha(files: list[Path]) -> dict[str, str]:
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _assignments(root: Path, v: int) -> pa.Table:
    from carve.clustering.versions import read_assignments

    return read_assignments(open_root(root), v)


def test_cluster_catalog_finds_blobs_and_writes_the_agreed_layout(tmp_path: Path):
    from carve.clustering.curate import cluster_catalog
    from carve.clustering.versions import load_clustering

    x, y = blob_embeddings([60, 30, 20, 10], seed=1)
    ids = add_episodes(tmp_path, x, labels=y)
    v = cluster_catalog(*with_root(cfg_for(tmp_path, k=4)))
    assert v == 1
    vdir = tmp_path / "clusters" / "v001"
    for name in ("centroids.npy", "index.faiss", "hierarchy.json", "meta.json"):
        assert (vdir / name).exists(), name
    meta = json.loads((vdir / "meta.json").read_text())
    assert meta["k"] == 4 and meta["n_events"] == len(ids) and meta["dim"] == 16
    c = np.load(vdir / "centroids.npy")
    assert c.shape == (4, 16) and c.dtype == np.float32
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-4)
    asg = _assignments(tmp_path, v)
    assert sorted(asg.column("event_id").to_pylist()) == sorted(ids)
    # every true blob lands in exactly one cluster and blobs do not share clusters
    by_id = dict(zip(asg.column("event_id").to_pylist(), asg.column("cluster_id").to_pylist(), strict=True))
    found = [by_id[e] for e in ids]
    pairs = {(int(t), int(f)) for t, f in zip(y, found, strict=True)}
    assert len(pairs) == 4 and len({f for _, f in pairs}) == 4
    cl = load_clustering(open_root(tmp_path))
    assert cl.version == 1 and cl.index.ntotal == 4
    with Catalog(tmp_path) as cat:
        assert [r["version"] for r in cat.versions("clusters")] == [1]


def test_hierarchy_paths_are_consistent_with_parents(tmp_path: Path):
    from carve.clustering.curate import cluster_catalog
    from carve.clustering.versions import load_clustering

    x, _ = blob_embeddings([20] * 8, seed=2)
    add_episodes(tmp_path, x)
    v = cluster_catalog(*with_root(cfg_for(tmp_path, levels=[3, 8])))
    cl = load_clustering(open_root(tmp_path), v)
    assert cl.hierarchy.levels == [3, 8]
    parents = cl.hierarchy.parents[1]
    for row in _assignments(tmp_path, v).to_pylist():
        top, leaf = row["cluster_path"]
        assert leaf == row["cluster_id"] and parents[leaf] == top


def test_near_duplicates_point_at_a_kept_event_and_nothing_is_deleted(tmp_path: Path):
    from carve.clustering.curate import cluster_catalog

    x, _ = blob_embeddings([30, 30], seed=3, spread=0.3)
    rng = np.random.default_rng(0)
    dups = x[:5] + 1e-4 * rng.normal(size=(5, x.shape[1])).astype(np.float32)
    ids = add_episodes(tmp_path, np.concatenate([x, dups]), per_episode=5)
    v = cluster_catalog(*with_root(cfg_for(tmp_path, k=2, dedup_threshold=0.999)))
    rows = {r["event_id"]: r for r in _assignments(tmp_path, v).to_pylist()}
    assert len(rows) == len(ids)
    marked = {e: r["dup_of"] for e, r in rows.items() if r["dup_of"]}
    assert len(marked) == 5
    for orig, copy in zip(ids[:5], ids[-5:], strict=True):
        pair = {orig, copy}
        # exactly one of each pair is kept, the other points at it
        dup = next(e for e in pair if e in marked)
        assert marked[dup] == (pair - {dup}).pop()
        assert rows[marked[dup]]["dup_of"] is None


def test_assign_new_writes_a_new_part_and_keeps_old_files(tmp_path: Path):
    from carve.clustering.curate import assign_new, cluster_catalog, coverage_drift

    x, _ = blob_embeddings([40, 40], seed=4)
    add_episodes(tmp_path, x)
    cfg = cfg_for(tmp_path, k=2)
    v = cluster_catalog(open_root(cfg.root), cfg)
    # everything but the summary, the map layout and the neighbours index (derived views, rewritten with
    # each new part) is written once
    before = _sha(sorted(p for p in (tmp_path / "clusters").rglob("*") if p.is_file() and "summary" not in p.name
                         and "layout" not in p.name and "neighbours" not in p.name))
    assert assign_new(open_root(cfg.root), cfg) == v  # nothing new: no new part
    assert len(list((tmp_path / "clusters/v001/assignments").glob("*.parquet"))) == 1
    x2, _ = blob_embeddings([40, 40], seed=4)  # same blobs, new samples
    x2 = x2 + 0.01
    new_ids = add_episodes(tmp_path, x2 / np.linalg.norm(x2, axis=1, keepdims=True), first_episode=100, batch="b2")
    assert assign_new(open_root(cfg.root), cfg) == v
    parts = sorted((tmp_path / "clusters/v001/assignments").glob("*.parquet"))
    assert len(parts) == 2
    after = _sha(sorted(p for p in (tmp_path / "clusters").rglob("*") if p.is_file()))
    assert {k: after[k] for k in before} == before
    asg = _assignments(tmp_path, v)
    assert set(new_ids) <= set(asg.column("event_id").to_pylist())
    d = coverage_drift(open_root(cfg.root), cfg)
    assert d["new_events"] == len(new_ids) and d["train_events"] == 80
    assert d["ratio"] is not None and d["ratio"] < 3.0


def test_drift_flags_far_away_new_events(tmp_path: Path):
    from carve.clustering.curate import assign_new, cluster_catalog, coverage_drift, recluster

    x, _ = blob_embeddings([30, 30], seed=5, dim=16)
    add_episodes(tmp_path, x)
    cfg = cfg_for(tmp_path, k=2)
    cluster_catalog(open_root(cfg.root), cfg)
    far, _ = blob_embeddings([30], seed=99, dim=16)  # a new direction the centroids never saw
    add_episodes(tmp_path, far, first_episode=50, batch="b2")
    assign_new(open_root(cfg.root), cfg)
    d = coverage_drift(open_root(cfg.root), cfg)
    assert d["recommend_recluster"] and d["ratio"] > cfg.cluster.recluster_drift_ratio
    v2 = recluster(open_root(cfg.root), cfg)
    assert v2 == 2 and (tmp_path / "clusters/v001/meta.json").exists()
    assert coverage_drift(open_root(cfg.root), cfg)["new_events"] == 0


def test_k_larger_than_events_is_clamped_with_a_message(tmp_path: Path, caplog):
    from carve.clustering.curate import cluster_catalog

    x, _ = blob_embeddings([3, 3], seed=6)
    add_episodes(tmp_path, x, per_episode=3)
    with caplog.at_level(logging.WARNING, logger="carve"):
        logging.getLogger("carve").propagate = True
        try:
            v = cluster_catalog(*with_root(cfg_for(tmp_path, k=50)))
        finally:
            logging.getLogger("carve").propagate = False
    meta = json.loads((tmp_path / "clusters" / f"v{v:03d}" / "meta.json").read_text())
    assert meta["k"] == 6 and meta["k_requested"] == 50
    assert "larger than the number of events (6)" in meta["k_note"]
    assert any("k=50" in str(getattr(r, "fields", {})) for r in caplog.records)


def test_nan_embedding_is_refused_naming_the_event(tmp_path: Path):
    from carve.clustering.curate import cluster_catalog

    x, _ = blob_embeddings([10, 10], seed=7)
    x[13, 4] = np.nan
    ids = add_episodes(tmp_path, x)
    with pytest.raises(ClusteringError, match=ids[13]):
        cluster_catalog(*with_root(cfg_for(tmp_path, k=2)))
    assert not (tmp_path / "clusters" / "v001" / "meta.json").exists()


def test_empty_catalog_is_a_clear_error(tmp_path: Path):
    from carve.clustering.curate import assign_new, cluster_catalog
    from carve.shard.cut import cut_shards

    with pytest.raises(ClusteringError, match="no committed events"):
        cluster_catalog(*with_root(cfg_for(tmp_path)))
    with pytest.raises(ClusteringError, match="no clustering yet"):
        assign_new(*with_root(cfg_for(tmp_path)))
    with pytest.raises(ClusteringError, match="no clustering yet"):
        cut_shards(*with_root(cfg_for(tmp_path)))


@pytest.mark.parametrize("damage", ["missing index", "truncated index", "bad hierarchy"])
def test_damaged_clustering_version_is_a_clear_error(tmp_path: Path, damage: str):
    from carve.clustering.curate import cluster_catalog
    from carve.shard.cut import cut_shards

    x, y = blob_embeddings([20, 20], seed=3)
    add_episodes(tmp_path, x, labels=y)
    cluster_catalog(*with_root(cfg_for(tmp_path, k=2)))
    vdir = tmp_path / "clusters" / "v001"
    if damage == "missing index":
        (vdir / "index.faiss").unlink()
        name = "index.faiss"
    elif damage == "truncated index":
        data = (vdir / "index.faiss").read_bytes()
        (vdir / "index.faiss").write_bytes(data[: len(data) // 3])
        name = "index.faiss"
    else:
        (vdir / "hierarchy.json").write_text("{not json")
        name = "hierarchy.json"
    with pytest.raises(ClusteringError, match=rf"v001/{name}: clustering version 1 is damaged.*recluster"):
        cut_shards(*with_root(cfg_for(tmp_path)))
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").glob("v*/manifest.json"))


def test_missing_embeddings_are_refused(tmp_path: Path):
    from carve.clustering.curate import cluster_catalog

    ep = "d/000000"
    rows = [{"event_id": make_event_id(ep, 0, 10), "episode_id": ep, "dataset": "d", "episode_index": 0,
             "event_index": 0, "num_events": 1, "start_frame": 0, "end_frame": 10, "fps": 10.0, "task": "t",
             "state": [[0.0]], "action": [[0.0]]}]
    write_event_part(open_root(tmp_path), "b", ep, events_to_table(rows))
    with Catalog(tmp_path) as cat:
        cat.record_episodes([{"episode_id": ep, "dataset": "d", "episode_index": 0, "source_uri": "/s",
                              "status": "ok", "num_events": 1, "batch": "b"}])
    with pytest.raises(ClusteringError, match="embed"):
        cluster_catalog(*with_root(cfg_for(tmp_path)))


def test_pipeline_curate_step_clusters_then_assigns_and_reshards(tmp_path: Path):
    """pipeline.run.curate, the integration point: first run clusters, later runs assign + reshard."""
    from carve.pipeline.run import JobReporter, RunSummary, curate

    x, _ = blob_embeddings([30, 30, 30], seed=8, spread=0.15)
    add_episodes(tmp_path, x)
    cfg = cfg_for(tmp_path)

    def run() -> RunSummary:
        s = RunSummary()
        with open_root(tmp_path) as root:
            curate(cfg, root, JobReporter(root.catalog, None), s)
        return s

    s1 = run()
    assign_before = _sha(sorted((tmp_path / "clusters").rglob("assignments/*.parquet")))
    s2 = run()  # nothing new
    assert s2.clusters_version == s1.clusters_version and s2.shards_version == s1.shards_version + 1
    assert _sha(sorted((tmp_path / "clusters").rglob("assignments/*.parquet"))) == assign_before
    x3, _ = blob_embeddings([10], seed=8, spread=0.15)
    add_episodes(tmp_path, x3, first_episode=90, batch="b2")
    s3 = run()
    after = _sha(sorted((tmp_path / "clusters").rglob("assignments/*.parquet")))
    assert s3.clusters_version == s1.clusters_version and len(after) == len(assign_before) + 1
    assert {k: after[k] for k in assign_before} == assign_before
    assert (tmp_path / "shards" / f"v{s1.shards_version:03d}" / "manifest.json").exists()
    m = json.loads((tmp_path / "shards" / f"v{s3.shards_version:03d}" / "manifest.json").read_text())
    assert m["eligible_events"] + m["duplicates_excluded"] == 100


def test_streaming_clustering_trains_on_a_sample_and_keeps_the_rules(tmp_path: Path):
    """A catalog larger than the training sample: k-means sees 4 x k events, every event is then
    assigned in streamed batches and near-duplicates are marked one cluster at a time from the
    spill; the blobs are still found and dup_of is what the in-memory rule gives."""
    from carve.clustering.curate import assign_new, cluster_catalog
    from carve.clustering.dedup import mark_against_existing, mark_duplicates
    from carve.clustering.kmeans import as_unit_vectors

    x, y = blob_embeddings([60, 30, 20, 10], seed=11, spread=0.05)
    rng = np.random.default_rng(3)
    x = np.concatenate([x, x[:8] + 1e-4 * rng.normal(size=(8, x.shape[1])).astype(np.float32)])
    y = np.concatenate([y, y[:8]])
    ids = add_episodes(tmp_path, x, per_episode=7, labels=y)
    cfg = cfg_for(tmp_path, k=4, train_sample_per_centroid=4, batch_rows=16, dedup_threshold=0.995)
    v = cluster_catalog(open_root(cfg.root), cfg)
    meta = json.loads((tmp_path / "clusters/v001/meta.json").read_text())
    assert meta["train_sample"] == 16 and meta["n_events"] == len(ids)
    rows = {r["event_id"]: r for r in _assignments(tmp_path, v).to_pylist()}
    found = [rows[e]["cluster_id"] for e in ids]
    pairs = {(int(t), int(f)) for t, f in zip(y, found, strict=True)}
    assert len(pairs) == 4 and len({f for _, f in pairs}) == 4
    xu = as_unit_vectors(x)
    labels = np.array(found)
    dist = np.array([rows[e]["cluster_dist"] for e in ids], np.float32)
    want = mark_duplicates(xu, labels, dist, ids, 0.995)
    assert [rows[e]["dup_of"] for e in ids] == want and sum(d is not None for d in want) >= 8
    # new events, some copies of kept ones: streamed assignment + dedup against the representatives
    x2, _ = blob_embeddings([5, 5], seed=12, spread=0.05)
    x2 = np.concatenate([x2, xu[[0, 70, 100]] + 1e-5, x2[:2] + 1e-5])
    x2 /= np.linalg.norm(x2, axis=1, keepdims=True)
    new_ids = add_episodes(tmp_path, x2, per_episode=5, first_episode=500, batch="b2")
    assign_new(open_root(cfg.root), cfg)
    allrows = {r["event_id"]: r for r in _assignments(tmp_path, v).to_pylist()}
    reps = [e for e in ids if rows[e]["dup_of"] is None]
    new_l = np.array([allrows[e]["cluster_id"] for e in new_ids])
    new_d = np.array([allrows[e]["cluster_dist"] for e in new_ids], np.float32)
    want_new = mark_against_existing(as_unit_vectors(x2), new_l, new_d, new_ids, xu[[ids.index(e) for e in reps]],
                                     np.array([rows[e]["cluster_id"] for e in reps]), reps, 0.995)
    assert [allrows[e]["dup_of"] for e in new_ids] == want_new
    assert sum(d in reps for d in want_new) >= 3 and sum(d in new_ids for d in want_new) >= 2


def test_summary_is_derived_after_the_version_and_follows_new_parts(tmp_path: Path):
    from carve.audit.derive import derive_views
    from carve.clustering import summary as cs
    from carve.clustering.curate import assign_new, cluster_catalog
    from carve.shard.cut import cut_shards

    x, y = blob_embeddings([30, 20, 10], seed=13)
    add_episodes(tmp_path, x, labels=y)
    cfg = cfg_for(tmp_path, k=3)
    v = cluster_catalog(open_root(cfg.root), cfg)
    root = open_root(tmp_path)
    derive_views(root, v, cfg.cluster)
    s = cs.read_summary(root, v)
    assert s is not None and s.meta["assignment_parts"] == ["part-00000-initial.parquet"]
    asg = _assignments(tmp_path, v).to_pylist()
    by_c = {r["cluster_id"]: r for r in s.for_dataset("d").to_pylist()}
    for c, r in by_c.items():
        assert r["size"] == sum(1 for a in asg if a["cluster_id"] == c)
        assert r["duplicates"] == sum(1 for a in asg if a["cluster_id"] == c and a["dup_of"])
        assert 1 <= len(r["sample_captions"]) <= 3 and r["tasks"][0]["count"] <= r["size"]
    assert s.datasets["d"]["events"] == len(asg) and s.datasets["d"]["episodes"] == 6
    # the written summary equals one computed from the assignments
    again = cs.summary_from_assignments(root, v)
    assert again.clusters.equals(s.clusters) and again.datasets == s.datasets
    x2, _ = blob_embeddings([10], seed=14)
    add_episodes(tmp_path, x2, first_episode=90, batch="b2")
    assign_new(open_root(cfg.root), cfg)
    derive_views(root, v, cfg.cluster)
    s2 = cs.read_summary(root, v)
    assert s2 is not None and len(s2.meta["assignment_parts"]) == 2 and s2.datasets["d"]["events"] == 70
    # a stale or missing summary is rewritten by the next cut
    (tmp_path / "clusters/v001/summary.json").unlink()
    assert cs.read_summary(root, v) is None
    cut_shards(open_root(cfg.root), cfg)
    assert cs.read_summary(root, v).datasets == s2.datasets
