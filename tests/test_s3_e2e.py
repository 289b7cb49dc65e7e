"""End to end on object storage: `carve run` with its source and its root on an S3 server (moto on
127.0.0.1) and its catalog on PostgreSQL (or an explicit SQLite file when PostgreSQL is not
installed and not required), against a local run of the same simulated LeRobot v3.0 dataset.

The source URI carries the endpoint as its query; the root URI does not, so that one travels
through `AWS_ENDPOINT_URL` (both forms are documented in docs/CLUSTER.md). The S3 run must give
the local run's event rows, clusters and shard rows (all but the `source_uri` column, a path);
`carve report`, the trainer's loader and `carve export` work against the S3 root; and two
`carve shard` processes started at once on it claim two distinct versions, both valid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.storage.catalog import sqlite_url
from carve.storage.events import read_events
from carve.storage.root import Root, open_root

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["--set", "ray.num_cpus=2", "--set", "ray.object_store_memory_mb=256", "--set", "ray.progress=false",
            "--set", "cluster.k=3", "--set", "shard.rows_per_shard=16"]


def carve(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    r = subprocess.run([sys.executable, "-m", "carve", *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"carve {' '.join(args)} -> {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r.stdout


@dataclass
class Runs:
    tmp: Path
    bucket: object
    env: dict[str, str]  # S3 settings + the S3 root's catalog
    local_env: dict[str, str]
    local: Root
    remote: Root
    remote_uri: str
    catalog_url: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory, s3_server, request) -> Iterator[Runs]:
    from s3_server import S3Bucket

    tmp = tmp_path_factory.mktemp("s3e2e")
    try:
        catalog_url = request.getfixturevalue("postgres_server").new_database()
    except pytest.skip.Exception:  # no PostgreSQL here (and not required): an explicit SQLite file
        catalog_url = sqlite_url(tmp / "s3-catalog.sqlite")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CARVE_CATALOG_URL"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in s3_server.env().items():  # this process too: the bucket and the checks below
            mp.setenv(k, v)
        bucket = S3Bucket(s3_server, "carve-e2e")
        local_env = {**base_env, **s3_server.env()}
        env = {**local_env, "CARVE_CATALOG_URL": catalog_url}
        carve("synth", "--out", str(tmp / "sim"), "--episodes", "3", "--workers", "1", "--quiet", env=local_env)
        source_uri = bucket.upload(tmp / "sim", "sources/sim")
        remote_uri = bucket.uri("carve", query=False)  # the endpoint comes from AWS_ENDPOINT_URL
        with ThreadPoolExecutor(2) as pool:  # the reference run on local disk and the S3 run, side by side
            done = [pool.submit(carve, "run", "--source", str(tmp / "sim"), "--root", str(tmp / "local"), *SETTINGS,
                                env=local_env),
                    pool.submit(carve, "run", "--source", source_uri, "--root", remote_uri, *SETTINGS, env=env)]
            for f in done:
                f.result()
        local = open_root(tmp / "local", catalog_url=sqlite_url(tmp / "local" / "catalog.sqlite"))
        remote = open_root(remote_uri, catalog_url=catalog_url)
        yield Runs(tmp, bucket, env, local_env, local, remote, remote_uri, catalog_url)
        local.close()
        remote.close()


def _by_event(t: pa.Table) -> pa.Table:
    return t.sort_by("event_id")


def test_events_clusters_and_shards_match_a_local_run(runs: Runs):
    from carve.clustering.versions import load_clustering, read_assignments
    from carve.storage.manifest import load_manifest
    from carve.storage.shards import ShardReader

    local, remote = runs.local, runs.remote
    assert runs.bucket.keys("carve")  # everything went to the bucket ...
    assert not any(p.name.startswith("s3") for p in REPO.iterdir())  # ... and nothing to a local "s3:" folder
    # the catalog: same datasets and episodes
    assert [(d["name"], d["ok"], d["events"]) for d in remote.catalog.datasets()] == \
        [(d["name"], d["ok"], d["events"]) for d in local.catalog.datasets()]
    assert remote.catalog.datasets()[0]["source_uri"].startswith("s3://carve-e2e/sources/sim")
    # events, row for row (source_uri is the only path)
    ev_local, ev_remote = _by_event(read_events(local)), _by_event(read_events(remote))
    assert ev_local.num_rows == ev_remote.num_rows > 0
    assert ev_remote.column("source_uri")[0].as_py().startswith("s3://")
    assert ev_remote.drop_columns(["source_uri"]).equals(ev_local.drop_columns(["source_uri"]))
    # clusters: same centroids, same assignment of every event
    cl_local, cl_remote = load_clustering(local, 1), load_clustering(remote, 1)
    np.testing.assert_array_equal(cl_local.centroids, cl_remote.centroids)
    a_local, a_remote = (_by_event(read_assignments(r, 1).drop_columns(["part"])) for r in (local, remote))
    assert a_remote.equals(a_local)
    # shards v001 and their manifests
    s_local = ShardReader(local, version=1, verify=True).read_all()
    s_remote = ShardReader(remote, version=1, verify=True).read_all()
    assert s_remote.drop_columns(["source_uri"]).equals(s_local.drop_columns(["source_uri"]))
    m_local, m_remote = load_manifest(local, 1).to_json(), load_manifest(remote, 1).to_json()
    for key in ("total_rows", "unique_events", "clusters", "stats", "emb_dims", "clusters_version", "policy"):
        assert m_remote[key] == m_local[key], key
    assert [(s["path"], s["rows"]) for s in m_remote["shards"]] == [(s["path"], s["rows"]) for s in m_local["shards"]]
    assert [v["version"] for v in remote.catalog.versions("shards")] == [1]


def test_report_on_the_s3_root(runs: Runs):
    out = carve("report", "--root", runs.remote_uri, env=runs.env)
    assert "report: s3://carve-e2e/carve/reports/index.html" in out
    keys = runs.bucket.keys("carve/reports")
    assert {"index.html", "sizes.png", "map.png"} <= set(keys)
    html = runs.remote.read_bytes(runs.remote.path("reports", "index.html")).decode()
    assert "<title>Carve coverage: all datasets</title>" in html and "sizes.png" in html
    n = runs.remote.catalog.datasets()[0]["events"]
    assert n > 0 and str(n) in html


def test_trainer_loader_streams_the_s3_shards(runs: Runs):
    from carve.trainer.config import DataConfig
    from carve.trainer.data import EventStream, make_loader
    from carve.trainer.manifest import open_manifest

    def first_batch(where: str) -> dict:
        m = open_manifest(where)
        ds = EventStream(m, DataConfig(manifest=where, batch_size=4, holdout_frac=0.0), split="all", infinite=False)
        return next(iter(make_loader(ds, num_workers=1)))  # a loader worker process reads S3 too

    b_remote = first_batch(runs.remote_uri)
    b_local = first_batch(str(runs.local.base))
    assert b_remote["event_id"] == b_local["event_id"]
    for k, v in b_local.items():
        if k != "event_id":
            assert np.array_equal(np.asarray(v), np.asarray(b_remote[k])), k


def test_export_reads_the_s3_root_and_source(runs: Runs):
    from carve.export.lerobot import export_lerobot

    out = carve("export", "--root", runs.remote_uri, "--shards", "v001", "--out", str(runs.tmp / "export-s3"),
                "--json", env=runs.env)
    s = json.loads(out)
    ref = export_lerobot(runs.local, runs.tmp / "export-local", version=1)
    assert (s["episodes"], s["frames"], s["events"]) == (ref.episodes, ref.frames, ref.events)
    assert s["cameras"] == ref.cameras  # stream-copied from the bucket just as from disk
    a, b = runs.tmp / "export-s3", runs.tmp / "export-local"
    files = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    for f in files:
        if f.suffix == ".parquet":
            assert pq.read_table(a / f).equals(pq.read_table(b / f)), f
        elif f.suffix == ".mp4":
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    info = json.loads((a / "meta" / "info.json").read_text())
    assert info["carve"]["source_root"] == runs.remote_uri


def test_the_services_export_job_on_the_s3_root(runs: Runs, monkeypatch):
    """`POST /exports` on a server whose root is in the bucket: the job's files live in a local folder
    of the server (`job_dir`), the subprocess gets the server's catalog, and the export succeeds."""
    import time

    import httpx

    from carve.core.config import CarveConfig
    from carve.service.app import create_app
    from carve.sim.service_fakes import LiveServer

    token = "s3-export-token-0123456789"
    allowed = runs.tmp / "exports-allowed"
    allowed.mkdir()
    for k, v in runs.env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)  # the server's config names its catalog
    cfg = CarveConfig.model_validate({"root": runs.remote_uri, "catalog": {"url": runs.catalog_url},
                                      "service": {"token": token, "allowed_roots": [str(allowed)],
                                                  "poll_interval_s": 0.2, "rate_limit_per_min": 10_000}})
    with LiveServer(create_app(cfg)) as srv, \
            httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        r = client.post("/exports", json={"out": str(allowed / "ds"), "shards": 1})
        assert r.status_code == 202, r.text
        job = r.json()
        deadline = time.time() + 300
        while job["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
            job = client.get(f"/exports/{job['id']}").json()
    assert job["state"] == "succeeded", job
    assert job["summary"]["episodes"] > 0 and (allowed / "ds" / "meta" / "info.json").exists()


def test_two_concurrent_shard_runs_claim_distinct_versions(runs: Runs):
    from carve.storage.manifest import load_manifest
    from carve.storage.shards import ShardReader

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda policy: carve("shard", "--root", runs.remote_uri, "--policy", policy,
                                                  "--json", *SETTINGS, env=runs.env),
                             ["uniform", "temperature"]))
    versions = sorted(json.loads(o)["version"] for o in outs)
    assert versions == [2, 3]
    for v in versions:
        m = load_manifest(runs.remote, v).to_json()
        assert m["version"] == v and m["total_rows"] > 0
        assert ShardReader(runs.remote, version=v, verify=True).read_all().num_rows == m["total_rows"]
    assert [v["version"] for v in runs.remote.catalog.versions("shards")] == [1, 2, 3]
