"""shard.cut.cut_shards + shard.write + storage.shards/manifest: layout, balance per shard, integrity, versions, bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_cluster_curate import add_episodes, blob_embeddings, cfg_for, with_root

from carve.clustering.curate import cluster_catalog
from carve.shard.cut import cut_shards
from carve.storage.manifest import ManifestError, ShardManifest, load_manifest
from carve.storage.root import open_root
from carve.storage.schema import SCHEMA_VERSION, emb_dims, schema_version
from carve.storage.shards import ShardIntegrityError, ShardReader, iter_shards

SIZES = [240, 60, 30, 30]


@pytest.fixture()
def clustered(tmp_path: Path) -> tuple[Path, list[str]]:
    x, y = blob_embeddings(SIZES, seed=11, spread=0.15)
    ids = add_episodes(tmp_path, x, labels=y)
    cluster_catalog(*with_root(cfg_for(tmp_path, k=len(SIZES))))
    return tmp_path, ids


def test_cut_shards_writes_balanced_verified_shards_and_manifest_last(clustered):
    root, ids = clustered
    cfg = cfg_for(root)
    cfg.shard.mode = "resample"  # the opt-in policy that repeats/drops rows (the default, weights: test_balance_weights)
    v = cut_shards(open_root(cfg.root), cfg)
    vdir = root / "shards" / f"v{v:03d}"
    m = json.loads((vdir / "manifest.json").read_text())
    assert m["format"] == "carve.manifest" and m["manifest_version"] == 1 and m["version"] == v
    assert m["clusters_version"] == 1 and m["policy"]["name"] == "uniform"
    assert m["emb_dims"] == {"emb": 16, "text": 8}
    assert m["total_rows"] == len(ids) == sum(s["rows"] for s in m["shards"])
    assert len(m["shards"]) == -(-len(ids) // 64)
    assert all(s["rows"] == 64 for s in m["shards"][:-1])
    assert m["stats"]["before"]["entropy"] < m["stats"]["after"]["entropy"]
    assert m["stats"]["after"]["entropy"] >= 0.95
    assert sum(m["clusters"]["after"].values()) == m["total_rows"]
    assert m["sources"][0]["dataset"] == "d" and m["sources"][0]["fingerprint"]
    # each shard on its own is balanced: every cluster present in roughly equal numbers
    k = len(SIZES)
    for t in iter_shards(str(root), verify=True):
        counts = Counter(t.column("cluster_id").to_pylist())
        assert len(counts) == k
        assert max(counts.values()) - min(counts.values()) <= 2
    # file-level format: schema version + emb dims in Arrow metadata, zstd, row groups
    first = vdir / m["shards"][0]["path"]
    pf = pq.ParquetFile(first)
    assert schema_version(pf.schema_arrow) == SCHEMA_VERSION and emb_dims(pf.schema_arrow) == {"emb": 16, "text": 8}
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    t = ShardReader(str(root)).read_all()
    assert t.num_rows == m["total_rows"]
    assert t.column("weight").null_count == 0 and t.column("cluster_path").null_count == 0
    assert set(t.column("event_id").to_pylist()) <= set(ids)
    # small clusters are upsampled, so their weight is above the big cluster's
    w = {c: wt for c, wt in zip(t.column("cluster_id").to_pylist(), t.column("weight").to_pylist(), strict=True)}
    assert min(w.values()) < 1.0 < max(w.values())


def test_the_manifest_reads_into_a_typed_object_that_writes_back_the_same_bytes(clustered, tmp_path):
    root, ids = clustered
    cfg = cfg_for(root)
    v = cut_shards(open_root(cfg.root), cfg)
    path = root / "shards" / f"v{v:03d}" / "manifest.json"
    m = load_manifest(str(root), v)
    assert isinstance(m, ShardManifest) and m.version == v and m.clusters_version == 1
    assert m.policy is not None and m.policy.name == "uniform" and m.mode == "weights"
    assert m.total_rows == sum(s.rows for s in m.shards) == len(ids)
    assert m.stats is not None and m.stats.after is not None and m.stats.after.entropy is not None
    assert m.sampling is not None and m.sampling.column == "sampling_weight"
    assert Path(m.dir) == path.parent
    # the typed object is the format: its JSON is the file's, byte for byte
    assert json.dumps(m.to_json(), indent=2).encode() == path.read_bytes()
    assert m.to_json() == json.loads(path.read_text())
    # a manifest without the optional records (hand-written, older) still loads; a wrong type is named
    raw = json.loads(path.read_text())
    small = {k: raw[k] for k in ("format", "manifest_version", "version", "schema_version", "shards", "total_rows")}
    (tmp_path / "manifest.json").write_text(json.dumps(small))
    got = load_manifest(str(tmp_path / "manifest.json"))
    assert got.stats is None and got.sources == [] and got.to_json() == small
    (tmp_path / "manifest.json").write_text(json.dumps({**small, "total_rows": "many"}))
    with pytest.raises(ManifestError, match="total_rows"):
        load_manifest(str(tmp_path / "manifest.json"))


def test_policies_and_total_override(clustered):
    root, _ = clustered
    cfg = cfg_for(root)
    cfg.shard.mode = "resample"
    v1 = cut_shards(open_root(cfg.root), cfg, policy="temperature", total=200)
    v2 = cut_shards(open_root(cfg.root), cfg, policy="hierarchical", total=200)
    m1, m2 = load_manifest(str(root), v1).to_json(), load_manifest(str(root), v2).to_json()
    assert m1["total_rows"] == m2["total_rows"] == 200
    assert m1["policy"]["name"] == "temperature" and m2["policy"]["name"] == "hierarchical"
    # temperature 0.5 keeps some of the skew; uniform-like hierarchical removes more of it
    assert m1["stats"]["after"]["max_min_ratio"] > m2["stats"]["after"]["max_min_ratio"]


def test_duplicates_are_excluded_unless_asked(tmp_path: Path):
    x, _ = blob_embeddings([40, 40], seed=12, spread=0.3)
    copies = x[:6] + 1e-5
    add_episodes(tmp_path, np.concatenate([x, copies / np.linalg.norm(copies, axis=1, keepdims=True)]), per_episode=2)
    cfg = cfg_for(tmp_path, k=2, dedup_threshold=0.999)
    cluster_catalog(open_root(cfg.root), cfg)
    m = load_manifest(str(tmp_path), cut_shards(open_root(cfg.root), cfg)).to_json()
    assert m["duplicates_excluded"] == 6 and m["eligible_events"] == 80
    t = ShardReader(str(tmp_path)).read_all()
    assert t.column("dup_of").null_count == t.num_rows
    cfg.shard.include_duplicates = True
    m2 = load_manifest(str(tmp_path), cut_shards(open_root(cfg.root), cfg)).to_json()
    assert m2["duplicates_excluded"] == 0 and m2["eligible_events"] == 86
    assert ShardReader(str(tmp_path)).read_all().column("dup_of").null_count < m2["total_rows"]


def test_sha256_mismatch_is_detected(clustered):
    root, _ = clustered
    v = cut_shards(*with_root(cfg_for(root)))
    m = load_manifest(str(root), v)
    victim = Path(m.dir) / m.shards[1].path
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=m.shards[1].path):
        list(iter_shards(str(root), v, verify=True))


def test_newer_manifest_or_schema_is_refused(clustered):
    root, _ = clustered
    v = cut_shards(*with_root(cfg_for(root)))
    path = root / "shards" / f"v{v:03d}" / "manifest.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "manifest_version": 2}))
    with pytest.raises(ManifestError, match="manifest_version 2 is newer"):
        load_manifest(str(root))
    path.write_text(json.dumps({**m, "schema_version": 9}))
    with pytest.raises(ManifestError, match="schema v9"):
        ShardReader(str(path))
    path.write_text(json.dumps({**m, "format": "other"}))
    with pytest.raises(ManifestError, match="not a Carve manifest"):
        load_manifest(str(path))


def test_interrupted_shard_write_leaves_no_manifest_and_old_versions_readable(clustered, monkeypatch):
    import carve.shard.write as shards_mod

    root, _ = clustered
    cfg = cfg_for(root)
    v1 = cut_shards(open_root(cfg.root), cfg)
    old = (root / "shards" / f"v{v1:03d}" / "manifest.json").read_bytes()
    real = shards_mod._write_one
    calls = {"n": 0}

    def flaky(root, data: bytes, path: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real(root, data, path)

    monkeypatch.setattr(shards_mod, "_write_one", flaky)
    with pytest.raises(OSError, match="disk full"):
        cut_shards(open_root(cfg.root), cfg)
    broken = root / "shards" / f"v{v1 + 1:03d}"
    assert broken.exists() and not (broken / "manifest.json").exists()
    assert not list(broken.glob(".tmp-*"))
    assert load_manifest(str(root)).version == v1  # latest complete version
    assert (root / "shards" / f"v{v1:03d}" / "manifest.json").read_bytes() == old
    monkeypatch.setattr(shards_mod, "_write_one", real)
    v3 = cut_shards(open_root(cfg.root), cfg)
    assert v3 == v1 + 2  # the interrupted number is never reused
    assert len(list(iter_shards(str(root), v1, verify=True))) == len(list(iter_shards(str(root), v3, verify=True)))


def test_no_manifest_at_all_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ManifestError, match="no shard manifest"):
        load_manifest(str(tmp_path))
