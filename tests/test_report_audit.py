"""The coverage audit (audit/data.py, report/render.py) and `carve report` on fabricated, format-true roots."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from carve.audit import data as au
from carve.clustering.summary import LayoutProjector
from carve.report import render
from carve.sim.service_fakes import fabricate_root

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    return fabricate_root(tmp_path_factory.mktemp("audit") / "root", datasets=("sim", "aloha"))


def test_cluster_rows_flags_and_counts(fab):
    a = au.load_audit(fab.root)
    rows = {r["cluster_id"]: r for r in au.cluster_rows(a)}
    assign = pq.read_table(fab.root / "clusters/v001/assignments/part-00000.parquet").to_pylist()
    assert set(rows) == set(range(fab.k))
    assert sum(r["size"] for r in rows.values()) == len(assign) == a.events.num_rows
    for cid, r in rows.items():
        assert r["duplicates"] == sum(1 for x in assign if x["cluster_id"] == cid and x["dup_of"])
    assert rows[fab.tiny_cluster]["size"] == 1 and rows[fab.tiny_cluster]["under_covered"]
    assert [c for c, r in rows.items() if r["under_covered"]] == [fab.tiny_cluster]
    before = sum(r["share_before"] for r in rows.values())
    after = sum(r["share_after"] for r in rows.values())
    assert before == pytest.approx(1.0) and after == pytest.approx(1.0)


def test_dataset_scope_and_coverage_tables(fab):
    a = au.load_audit(fab.root, "aloha")
    assert set(a.events.column("dataset").to_pylist()) == {"aloha"}
    assert [f["dataset"] for f in a.failures] == ["aloha"]
    by_task = au.coverage(a, "task")
    assert sum(r["events"] for r in by_task) == a.events.num_rows
    assert sum(r["episodes"] for r in by_task) == a.episodes_ok
    by_robot = {r["robot"]: r for r in au.coverage(a, "robot")}
    assert set(by_robot) == {"panda", "so100"}
    assert all(r["clusters"] >= 1 for r in by_robot.values())


def test_pca_separates_two_blobs():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 0.1, size=(50, 12)) + 3.0
    b = rng.normal(0, 0.1, size=(50, 12)) - 3.0
    x = np.vstack([a, b]).astype(np.float32)
    xy = LayoutProjector.fit(x).project(x)  # the one PCA of the map (report and UI)
    assert xy.shape == (100, 2)
    first = xy[:, 0]
    assert first[:50].min() > first[50:].max() or first[:50].max() < first[50:].min()


def test_write_report_is_self_contained(fab, tmp_path: Path):
    out = tmp_path / "rep"
    path = render.write_report(fab.root, out)
    page = path.read_text()
    refs = re.findall(r"src='([^']+)'", page)
    files = [r for r in refs if not r.startswith("data:")]
    assert set(files) == {"sizes.png", "map.png", "coverage.png"}
    for f in files:
        with Image.open(out / f) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert not any(r.startswith(("http:", "https:", "//")) for r in refs)
    assert sum(1 for r in refs if r.startswith("data:image/jpeg")) >= 3  # keyframe thumbnails
    assert page.count("data-cluster=") == fab.k
    for failed in fab.failures:
        assert failed in page


def test_events_without_clusters_still_report(tmp_path: Path):
    fab = fabricate_root(tmp_path / "root", clusters=False)
    a = au.load_audit(fab.root)
    assert a.clusters_version is None and au.cluster_rows(a) == []
    page, charts = render.render_report(a, inline=True)
    assert "not clustered yet" in page and set(charts) == {"map.png"}


def test_manifest_versions_are_validated(tmp_path: Path):
    fab = fabricate_root(tmp_path / "root")
    man_path = fab.root / "shards/v001/manifest.json"
    man = json.loads(man_path.read_text())
    (fab.root / "shards/v002").mkdir()  # an unfinished version: no manifest yet
    assert au.latest_manifest(fab.root)[0] == 1
    man_path.write_text(json.dumps({**man, "manifest_version": 2}))
    with pytest.raises(au.AuditError, match=r"v001/manifest.json: manifest_version 2"):
        au.load_manifest(fab.root, 1)
    man_path.write_text(json.dumps({**man, "schema_version": 9}))
    with pytest.raises(au.AuditError, match="schema v9"):
        au.load_manifest(fab.root, 1)
    man_path.write_text("{not json")
    with pytest.raises(au.AuditError, match="not valid JSON"):
        au.load_manifest(fab.root, 1)


def test_carve_report_cli(fab, tmp_path: Path):
    out = tmp_path / "cli-report"
    r = subprocess.run([sys.executable, "-m", "carve.cli.main", "report", "--root", str(fab.root), "--out", str(out),
                        "--dataset", "sim"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    page = (out / "index.html").read_text()
    assert "Coverage audit: sim" in page and (out / "sizes.png").exists()


def test_unfinished_clusters_version_is_ignored(tmp_path: Path):
    fab = fabricate_root(tmp_path / "root")
    part = fab.root / "clusters/v001/assignments/part-00000.parquet"
    (fab.root / "clusters/v002/assignments").mkdir(parents=True)  # interrupted: no meta.json yet
    t = pq.read_table(part)
    pq.write_table(t.set_column(t.schema.get_field_index("cluster_id"), "cluster_id",
                                pa.array([0] * t.num_rows, pa.int32())),
                   fab.root / "clusters/v002/assignments/part-00000.parquet")
    a = au.load_audit(fab.root)
    assert a.clusters_version == 1
    assert len({c for c in a.cluster_of.values()}) == fab.k


def test_captions_tasks_and_errors_are_escaped(tmp_path: Path):
    fab = fabricate_root(tmp_path / "root")
    evil = "<script>alert('x')</script>"
    caps = au.load_audit(fab.root).events.column("caption").to_pylist()
    # in the event files, so that the clustering's summary (the report's cards) carries them too
    for part in sorted((fab.root / "events").rglob("*.parquet")):
        t = pq.read_table(part)
        t = t.set_column(t.schema.get_field_index("caption"), "caption",
                         pa.array([evil + c for c in t.column("caption").to_pylist()], pa.string()))
        t = t.set_column(t.schema.get_field_index("task"), "task",
                         pa.array([f"<b onmouseover='x'>{x}</b>" for x in t.column("task").to_pylist()], pa.string()))
        pq.write_table(t, part)
    a = au.load_audit(fab.root)
    a.failures = [{**f, "error": "bad <img src=x onerror=alert(1)>"} for f in a.failures]
    page, _ = render.render_report(a, inline=True)
    assert "<script" not in page and "<b onmouseover" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" + caps[0] in page  # a card's sample caption
    assert "&lt;b onmouseover=&#39;x&#39;&gt;" in page  # the coverage-by-task table
    assert "bad &lt;img src=x onerror=alert(1)&gt;" in page  # the quarantined-episodes table


def _without_samples(rows):
    return [{k: v for k, v in r.items() if k not in ("sample_captions", "sample_events")} for r in rows]


def test_summary_views_match_the_full_audit(fab, tmp_path):
    """The service's summary-based rows equal the full audit's: on a fabricated root (summary computed
    from the assignments) and on a root clustered by Carve (summary written with the version)."""
    from test_cluster_curate import add_episodes, blob_embeddings, cfg_for

    from carve.clustering.curate import cluster_catalog
    from carve.shard.cut import cut_shards
    from carve.storage.root import open_root

    x, y = blob_embeddings([40, 25, 15, 3], seed=21, spread=0.1)
    add_episodes(tmp_path, x, labels=y)
    cfg = cfg_for(tmp_path, k=4)
    cluster_catalog(open_root(cfg.root), cfg)
    cut_shards(open_root(cfg.root), cfg)
    for root, datasets in ((fab.root, fab.datasets), (tmp_path, ["d"])):
        for ds in datasets:
            a = au.load_audit(root, ds)
            s = au.cluster_summary(root, a.clusters_version, ds)
            full = au.cluster_rows(a)
            fast = au.summary_cluster_rows(s, int(a.clusters_meta["k"]), a.manifest, dataset=ds)
            assert _without_samples(fast) == _without_samples(full)
            for f, g in zip(fast, full, strict=True):  # samples: distinct captions of members, first ones first
                assert f["sample_captions"] == g["sample_captions"] and f["sample_events"] == g["sample_events"]
            for key in ("task", "robot"):
                assert au.summary_coverage(s, ds, key) == au.coverage(a, key)
