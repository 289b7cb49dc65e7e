"""The HTTP API through a real uvicorn server on loopback: auth, validation, guards, read views.

The fixture fabricates a format-true root (events + catalog + clusters v001 + shards v001,
see pipeline/service/testing.py) and serves it with the job runner off, so submitted jobs
stay queued and nothing but the API is exercised here (job execution: test_service_jobs.py).
Every test runs with the catalog in SQLite and in PostgreSQL (`catalog_url*`, tests/pg_server.py).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from PIL import Image

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, catalog_url_module):
    base = tmp_path_factory.mktemp("svc")
    fab = fabricate_root(base / "root", datasets=("sim", "aloha"))
    allowed = base / "allowed"
    for name in ("ds1", "ds2", "ds3"):
        (allowed / name).mkdir(parents=True)
    outside = base / "outside"
    outside.mkdir()
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    cfg = CarveConfig.model_validate({
        "root": str(fab.root),
        "service": {"token": TOKEN, "allowed_roots": [str(allowed)], "max_body_bytes": 2048,
                    "rate_limit_per_min": 100_000},
    })
    app = create_app(cfg, start_runner=False)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
        yield {"client": client, "url": srv.url, "fab": fab, "allowed": allowed, "outside": outside, "app": app}


def test_health_is_open_everything_else_needs_the_token(env):
    url = env["url"]
    assert httpx.get(f"{url}/health").status_code == 200
    spec = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    open_paths = [p for p, ops in spec["paths"].items() if "get" in ops and "{" not in p and p != "/health"]
    assert "/jobs" in open_paths and "/datasets" in open_paths
    for path in [*open_paths, "/datasets/sim/clusters", "/report/sim", f"/events/{env['fab'].event_ids[0]}"]:
        r = httpx.get(f"{url}{path}")
        assert r.status_code == 401, path
        assert "WWW-Authenticate" in r.headers
        assert httpx.get(f"{url}{path}", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert httpx.post(f"{url}/jobs", json={"source": str(env["allowed"] / "ds1")}).status_code == 401


def test_report_accepts_basic_auth_for_browsers(env):
    r = httpx.get(f"{env['url']}/report/sim", auth=("analyst", TOKEN))
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    r = httpx.get(f"{env['url']}/report/sim")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")


def test_datasets_and_versions(env):
    c = env["client"]
    ds = {d["name"]: d for d in c.get("/datasets").json()}
    assert set(ds) == {"sim", "aloha"}
    assert ds["sim"]["ok"] == 6 and ds["sim"]["failed"] == 1 and ds["sim"]["events"] == 36
    v = c.get("/datasets/sim/versions").json()
    assert [x["version"] for x in v["clusters"]] == [1]
    assert [x["version"] for x in v["shards"]] == [1] and v["shards"][0]["complete"]


@pytest.mark.parametrize("path", ["/datasets/nope", "/datasets/nope/clusters", "/datasets/nope/versions",
                                  "/report/nope"])
def test_unknown_dataset_is_404_naming_it(env, path):
    r = env["client"].get(path)
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


def test_clusters_view_matches_the_files(env):
    fab = env["fab"]
    body = env["client"].get("/datasets/sim/clusters").json()
    assert body["clusters_version"] == 1 and body["shards_version"] == 1
    rows = {r["cluster_id"]: r for r in body["clusters"]}
    assign = pq.read_table(fab.root / "clusters/v001/assignments/part-00000.parquet").to_pylist()
    sim = [a for a in assign if a["dataset"] == "sim"]
    for cid, row in rows.items():
        assert row["size"] == sum(1 for a in sim if a["cluster_id"] == cid)
        assert row["duplicates"] == sum(1 for a in sim if a["cluster_id"] == cid and a["dup_of"])
    manifest = json.loads((fab.root / "shards/v001/manifest.json").read_text())
    tot = sum(manifest["clusters"]["after"].values())
    for cid, n in manifest["clusters"]["after"].items():
        assert rows[int(cid)]["share_after"] == pytest.approx(n / tot)
    assert rows[fab.tiny_cluster]["under_covered"] is True
    big = max(rows.values(), key=lambda r: r["size"])
    assert big["under_covered"] is False and big["sample_captions"]
    # sample captions really belong to events of that cluster
    events = pq.read_table(next((fab.root / "events").rglob("*.parquet")).parent).to_pylist()
    cap_of = {e["event_id"]: e["caption"] for e in events}
    members = {a["event_id"] for a in sim if a["cluster_id"] == big["cluster_id"]}
    assert set(big["sample_captions"]) <= {cap_of[e] for e in members}


def test_event_detail_and_keyframes(env):
    c = env["client"]
    eid = env["fab"].event_ids[3]
    ev = c.get(f"/events/{eid}").json()
    assert ev["event_id"] == eid and ev["caption"] and ev["cluster_id"] is not None
    assert len(ev["keyframes"]) == ev["num_keyframes"] == 3
    head, data = ev["keyframes"][1].split(",", 1)
    assert head == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(data))).format == "JPEG"
    r = c.get(ev["keyframe_urls"][2])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size[0] > 0
    assert c.get(f"/events/{eid}/keyframes/7.jpg").status_code == 404
    assert c.get("/events/0123456789abcdef0000").status_code == 404


def test_coverage_view_matches_the_audit(env):
    from carve.audit import data as au

    body = env["client"].get("/datasets/aloha/coverage").json()
    a = au.load_audit(env["fab"].root, "aloha")
    assert body["clusters_version"] == 1 and body["events"] == a.events.num_rows
    assert body["by_task"] == au.coverage(a, "task") and body["by_robot"] == au.coverage(a, "robot")
    assert env["client"].get("/datasets/nope/coverage").status_code == 404


def test_event_lookup_reads_one_batch_and_finds_events_not_yet_assigned(tmp_path: Path, catalog_url):
    """An event committed after the clustering (no assignment yet) is still found, in a part file
    holding several episodes; a superseded or unknown id is a NotFound, not a scan."""
    from carve.service.views import NotFound, Views
    from carve.storage.events import write_event_part
    from carve.storage.root import open_root
    from carve.storage.schema import events_to_table, make_event_id

    fab = fabricate_root(tmp_path / "root")
    root = open_root(fab.root)
    rows = []
    for ep in ("sim/ep0100", "sim/ep0101"):
        for k in range(3):
            rows.append({"event_id": make_event_id(ep, k, k + 1), "episode_id": ep, "dataset": "sim",
                         "episode_index": int(ep[-3:]), "event_index": k, "num_events": 3, "start_frame": k,
                         "end_frame": k + 1, "fps": 10.0, "task": "t", "caption": f"late {ep} {k}",
                         "keyframes": [b"\xff\xd8late"], "state": [[0.0]], "action": [[0.0]]})
    write_event_part(root, "b-late", "chunk-0000", events_to_table(rows))
    root.catalog.record_episodes([{"episode_id": ep, "dataset": "sim", "episode_index": int(ep[-3:]),
                                   "source_uri": "/s", "status": "ok", "num_events": 3, "batch": "b-late"}
                                  for ep in ("sim/ep0100", "sim/ep0101")])
    views = Views(root, fingerprint_ttl_s=0.0)
    late = views.event(root.catalog, rows[4]["event_id"])
    assert late["caption"] == "late sim/ep0101 1" and late["cluster_id"] is None and late["clusters_version"] == 1
    assert views.keyframe(root.catalog, rows[4]["event_id"], 0) == b"\xff\xd8late"
    old = views.event(root.catalog, fab.event_ids[5], images=False)
    assert old["cluster_id"] is not None and old["event_id"] == fab.event_ids[5]
    with pytest.raises(NotFound, match="unknown event"):
        views.event(root.catalog, "0123456789abcdef0000")
    # the episode of an assigned event is re-ingested without it: gone, not served from the old batch
    root.catalog.record_episodes([{"episode_id": old["episode_id"], "dataset": "sim", "episode_index": 0,
                                   "source_uri": "/s", "status": "failed", "error": "gone", "num_events": 0}])
    with pytest.raises(NotFound, match="no longer"):
        views.event(root.catalog, fab.event_ids[5])


def test_submit_then_duplicate_source_gets_409_naming_the_job(env):
    c = env["client"]
    src = str(env["allowed"] / "ds1")
    r = c.post("/jobs", json={"source": src, "format": "folder", "overrides": {"segment": {"min_len_s": 0.5}}})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    job = c.get(f"/jobs/{job_id}").json()
    assert job["state"] == "queued" and job["overrides"] == {"segment": {"min_len_s": 0.5}}
    assert job["episodes"] == {"datasets": [], "ok": 0, "failed": 0, "failures": []}
    # the same directory spelled differently is the same source
    r2 = c.post("/jobs", json={"source": src + "/./", "format": "folder"})
    assert r2.status_code == 409 and r2.json()["job_id"] == job_id
    assert job_id in [j["id"] for j in c.get("/jobs", params={"state": "queued"}).json()]


def test_cancel_queued_then_again_is_409(env):
    c = env["client"]
    job_id = c.post("/jobs", json={"source": str(env["allowed"] / "ds2")}).json()["id"]
    r = c.post(f"/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    again = c.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert c.post("/jobs/doesnotexist/cancel").status_code == 404
    assert c.get("/jobs/doesnotexist").status_code == 404
    # once cancelled, the source is free again
    assert c.post("/jobs", json={"source": str(env["allowed"] / "ds2")}).status_code == 202


@pytest.mark.parametrize(
    ("source", "status", "needle"),
    [
        ("{allowed}/../outside", 403, ".."),
        ("{allowed}/escape", 403, "symlink"),
        ("{outside}", 403, "outside the allowed roots"),
        ("/etc/passwd", 403, "outside"),
        ("relative/path", 422, "absolute"),
        ("{allowed}/missing", 422, "does not exist"),
        ("s3://bucket/data", 403, "outside"),
    ],
)
def test_source_confinement(env, source, status, needle):
    src = source.format(allowed=env["allowed"], outside=env["outside"])
    r = env["client"].post("/jobs", json={"source": src})
    assert r.status_code == status, r.text
    assert needle in json.dumps(r.json()["detail"])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"source": "{ds3}", "overrides": {"service": {"token": "x"}}}, "may not be overridden"),
        ({"source": "{ds3}", "overrides": {"ray": {"address": "x"}}}, "may not be overridden"),
        ({"source": "{ds3}", "overrides": {"segment": {"min_len_s": -1}}}, "min_len_s"),
        ({"source": "{ds3}", "overrides": {"segment": {"no_such_key": 1}}}, "no_such_key"),
        ({"source": "{ds3}", "overrides": {"source": {"uri": "/etc"}}}, "uri"),
        ({"source": "{ds3}", "format": "mkv"}, "format"),
        ({"source": "{ds3}", "surprise": 1}, "surprise"),
        ({"format": "folder"}, "source"),
    ],
)
def test_validation_errors_are_422_with_reasons(env, body, needle):
    payload = json.loads(json.dumps(body).replace("{ds3}", str(env["allowed"] / "ds3")))
    r = env["client"].post("/jobs", json=payload)
    assert r.status_code == 422, r.text
    assert needle in json.dumps(r.json()["detail"])


def test_malformed_json_is_422(env):
    r = env["client"].post("/jobs", content=b'{"source": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "json" in json.dumps(r.json()["detail"]).lower()


def test_oversized_body_is_413_declared_or_streamed(env):
    big = {"source": str(env["allowed"] / "ds3"), "overrides": {"caption": {"model": "x" * 5000}}}
    r = env["client"].post("/jobs", json=big)
    assert r.status_code == 413 and "2048" in r.json()["detail"]

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = env["client"].post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_report_page_is_self_contained(env):
    r = env["client"].get("/report/sim")
    assert r.status_code == 200
    page = r.text
    assert "src='http" not in page and 'src="http' not in page and "<script src" not in page
    assert page.count("data:image/png;base64,") >= 2
    assert page.count("class='card") >= env["fab"].k
    assert "video ends at 4.2 s" in page  # the failures table


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, catalog_url):
    fab = fabricate_root(tmp_path / "root", clusters=False)
    cfg = CarveConfig.model_validate({"root": str(fab.root),
                                      "service": {"token": TOKEN, "rate_limit_per_min": 3}})
    with LiveServer(create_app(cfg, start_runner=False)) as srv, httpx.Client(base_url=srv.url, headers=AUTH) as c:
        codes = [c.get("/jobs").status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = c.get("/datasets")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert c.get("/health").status_code == 200  # exempt


def test_dataset_without_clusters_yet(tmp_path: Path, catalog_url):
    fab = fabricate_root(tmp_path / "root", clusters=False)
    cfg = CarveConfig.model_validate({"root": str(fab.root), "service": {"token": TOKEN}})
    with LiveServer(create_app(cfg, start_runner=False)) as srv, httpx.Client(base_url=srv.url, headers=AUTH) as c:
        body = c.get("/datasets/sim/clusters").json()
        assert body["clusters_version"] is None and body["clusters"] == [] and body["events"] == 36
        assert c.get("/datasets/sim/versions").json() == {"dataset": "sim", "clusters": [], "shards": []}
        page = c.get("/report/sim")
        assert page.status_code == 200 and "not clustered yet" in page.text
