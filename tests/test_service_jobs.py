"""Job lifecycle of the service: restart recovery, two servers on one catalog, vanished sources,
and (slow) real `carve run` subprocesses submitted over HTTP on a toy folder dataset. Every test
runs with the catalog in SQLite and in PostgreSQL (`catalog_url`, tests/pg_server.py)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root
from carve.sim.toy import write_toy_folder
from carve.storage.catalog import Catalog

TOKEN = "jobs-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("succeeded", "failed", "cancelled")


def _cfg(root: Path, allowed: Path, **service) -> CarveConfig:
    return CarveConfig.model_validate({
        "root": str(root),
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
        "service": {"token": TOKEN, "allowed_roots": [str(allowed)], "poll_interval_s": 0.2,
                    "stale_after_s": 5.0, "rate_limit_per_min": 100_000, **service},
    })


def _wait(client: httpx.Client, job_id: str, pred, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    job = client.get(f"/jobs/{job_id}").json()
    while not pred(job):
        if time.time() > deadline:
            raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")
        time.sleep(0.2)
        job = client.get(f"/jobs/{job_id}").json()
    return job


def _insert_job(cat: Catalog, source: str, state: str, owner: str | None, heartbeat: float | None) -> str:
    jid = cat.create_job(source, "auto")
    cat.update_job(jid, state=state, owner=owner, heartbeat=heartbeat, pid=999_999 if owner else None)
    return jid


def test_restart_marks_orphans_resumable_keeps_live_jobs_and_resume_runs(tmp_path: Path, catalog_url):
    allowed = tmp_path / "allowed"
    src = allowed / "junk"
    src.mkdir(parents=True)
    (src / "readme.txt").write_text("not a dataset")
    root = tmp_path / "root"
    now = time.time()
    with Catalog(root) as cat:
        orphan = _insert_job(cat, str(src), "running", "deadhost:1:aaaaaa", now - 3600)
        cancelling = _insert_job(cat, str(allowed / "x"), "cancelling", "deadhost:1:aaaaaa", now - 3600)
        live = _insert_job(cat, str(allowed / "y"), "running", "otherhost:2:bbbbbb", now + 3600)
        done = _insert_job(cat, str(allowed / "z"), "succeeded", "deadhost:1:aaaaaa", now - 3600)
    app = create_app(_cfg(root, allowed))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as c:
        job = _wait(c, orphan, lambda j: j["state"] != "running", timeout=20)
        assert job["state"] == "resumable" and "orphaned" in job["error"] and "deadhost" in job["error"]
        assert c.get(f"/jobs/{cancelling}").json()["state"] == "cancelled"
        kept = c.get(f"/jobs/{live}").json()
        assert kept["state"] == "running" and kept["owner"] == "otherhost:2:bbbbbb"
        assert c.get(f"/jobs/{done}").json()["state"] == "succeeded"
        # resuming re-queues it; this server claims it and runs a real `carve run` subprocess
        r = c.post(f"/jobs/{orphan}/resume")
        assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
        job = _wait(c, orphan, lambda j: j["state"] in TERMINAL, timeout=120)
        assert job["owner"] == app.state.runner.owner and job["pid"] not in (None, 999_999)
        assert job["state"] == "failed" and job["error"]  # a readme is not a dataset
        jdir = root / "jobs" / orphan
        assert (jdir / "log.txt").exists()
        assert TOKEN not in (jdir / "config.yaml").read_text()
        assert c.post(f"/jobs/{orphan}/resume").status_code == 409
    with Catalog(root) as cat:
        assert cat.integrity_ok()


def test_two_servers_on_one_catalog(tmp_path: Path, catalog_url):
    allowed = tmp_path / "allowed"
    sources = [allowed / f"ds{i}" for i in range(6)]
    for s in sources:
        s.mkdir(parents=True)
    root = tmp_path / "root"
    fabricate_root(root, clusters=False)
    app_a = create_app(_cfg(root, allowed), start_runner=False)
    app_b = create_app(_cfg(root, allowed), start_runner=False)
    with LiveServer(app_a) as a, LiveServer(app_b) as b:
        def submit(i: int) -> tuple[str, int, str]:
            url = (a if i % 2 else b).url
            r = httpx.post(f"{url}/jobs", json={"source": str(sources[i % 6])}, headers=AUTH, timeout=60)
            body = r.json()
            return str(sources[i % 6]), r.status_code, body.get("id") or body.get("job_id")

        with cf.ThreadPoolExecutor(12) as pool:
            results = list(pool.map(submit, range(24)))
        for s in sources:
            mine = [(code, jid) for src, code, jid in results if src == str(s)]
            created = [jid for code, jid in mine if code == 202]
            assert len(created) == 1, mine
            assert all(code == 409 and jid == created[0] for code, jid in mine if code != 202)
        # both servers claim queued jobs at once: every job is claimed exactly once
        with cf.ThreadPoolExecutor(2) as pool:
            fa = pool.submit(app_a.state.runner.claim_queued, 10)
            fb = pool.submit(app_b.state.runner.claim_queued, 10)
            ids_a = {j["id"] for j in fa.result()}
            ids_b = {j["id"] for j in fb.result()}
        assert not ids_a & ids_b and len(ids_a | ids_b) == 6
        with Catalog(root) as cat:
            for jid in ids_a | ids_b:
                job = cat.job(jid)
                owner = app_a.state.runner.owner if jid in ids_a else app_b.state.runner.owner
                assert job["state"] == "running" and job["owner"] == owner
            assert cat.integrity_ok()
        # either server cancels a job owned by the other (the owner kills its process)
        jid, other = (next(iter(ids_a)), b) if ids_a else (next(iter(ids_b)), a)
        r = httpx.post(f"{other.url}/jobs/{jid}/cancel", headers=AUTH)
        assert r.status_code == 202 and r.json()["state"] == "cancelling"


def test_source_that_vanished_before_start_fails_with_reason(tmp_path: Path, catalog_url):
    allowed = tmp_path / "allowed"
    src = allowed / "soon-gone"
    src.mkdir(parents=True)
    root = tmp_path / "root"
    app = create_app(_cfg(root, allowed), start_runner=False)
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH) as c:
        jid = c.post("/jobs", json={"source": str(src)}).json()["id"]
        shutil.rmtree(src)
        app.state.runner.tick()
        job = c.get(f"/jobs/{jid}").json()
        assert job["state"] == "failed"
        assert str(src) in job["error"] and "no longer exists" in job["error"]


# -- slow: the real pipeline ----------------------------------------------------------------
@pytest.mark.slow
def test_http_job_on_toy_dataset_completes_and_is_served(tmp_path: Path, catalog_url):
    allowed = tmp_path / "allowed"
    write_toy_folder(allowed / "toy", episodes=4)
    root = tmp_path / "root"
    app = create_app(_cfg(root, allowed))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        r = c.post("/jobs", json={"source": str(allowed / "toy"), "format": "folder",
                                  "overrides": {"cluster": {"k": 2}, "shard": {"rows_per_shard": 8}}})
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"], lambda j: j["state"] in TERMINAL, timeout=400)
        assert job["state"] == "succeeded", job
        assert job["episodes"]["ok"] == 4 and job["progress"]["events"] > 0
        name = job["episodes"]["datasets"][0]
        clusters = c.get(f"/datasets/{name}/clusters").json()
        assert clusters["clusters_version"] is not None and sum(x["size"] for x in clusters["clusters"]) > 0
        page = c.get(f"/report/{name}")
        assert page.status_code == 200 and "class='card" in page.text


@pytest.mark.slow
def test_cancel_and_vanishing_source_mid_run(tmp_path: Path, catalog_url):
    allowed = tmp_path / "allowed"
    write_toy_folder(allowed / "a", episodes=6)
    write_toy_folder(allowed / "b", episodes=6)
    root = tmp_path / "root"
    app = create_app(_cfg(root, allowed, max_concurrent_jobs=2))
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as c:
        ja = c.post("/jobs", json={"source": str(allowed / "a"), "format": "folder"}).json()["id"]
        jb = c.post("/jobs", json={"source": str(allowed / "b"), "format": "folder"}).json()["id"]
        a = _wait(c, ja, lambda j: j["state"] != "queued" and j["pid"], timeout=60)
        _wait(c, jb, lambda j: j["state"] != "queued" and j["pid"], timeout=60)
        shutil.rmtree(allowed / "b")  # the source disappears mid-run
        r = c.post(f"/jobs/{ja}/cancel")
        if r.status_code == 202:
            a = _wait(c, ja, lambda j: j["state"] in TERMINAL, timeout=120)
            assert a["state"] == "cancelled", (a["error"], a.get("stage"))
            with pytest.raises(ProcessLookupError):
                os.kill(a["pid"], 0)
        b = _wait(c, jb, lambda j: j["state"] in TERMINAL, timeout=400)
        if b["state"] == "failed":
            assert b["error"]
        else:  # episodes read before the deletion made it; the rest are quarantined with reasons
            assert all(f["error"] for f in b["episodes"]["failures"])
    with Catalog(root) as cat:
        assert cat.integrity_ok()


def test_cancel_reaches_a_job_process_whose_server_died(tmp_path: Path, catalog_url):
    """A job process outliving its server (same host) is still cancellable from a new server."""
    import socket
    import subprocess
    import sys

    root = tmp_path / "root"
    with Catalog(root) as cat:
        jid = cat.create_job(str(tmp_path), "auto")
    # a process whose command line names the job, like `carve run --job-id ID` does
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "--job-id", jid])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        with Catalog(root) as cat:
            cat.update_job(jid, state="running", owner=f"{socket.gethostname()}:{dead.pid}:gone00", pid=proc.pid,
                           heartbeat=time.time())
        app = create_app(_cfg(root, tmp_path), start_runner=False)
        with LiveServer(app) as srv, httpx.Client(base_url=srv.url, headers=AUTH) as c:
            r = c.post(f"/jobs/{jid}/cancel")
            assert r.status_code == 202 and r.json()["state"] == "cancelling"
            app.state.runner.tick()
            assert proc.wait(timeout=20) != 0  # terminated by SIGTERM
            # its heartbeat stops; once stale the job ends cancelled, not lost
            with Catalog(root) as cat:
                cat.update_job(jid, heartbeat=time.time() - 3600)
            app.state.runner.tick()
            assert c.get(f"/jobs/{jid}").json()["state"] == "cancelled"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_cancelled_job_process_leaves_the_end_to_its_server(tmp_path: Path, catalog_url):
    """A job process stopped by a cancel never records `cancelled` itself, even when the cancel
    raced its own `running` write: the server records it once the process has exited."""
    from carve.pipeline.run import JobReporter

    with Catalog(tmp_path / "root", url=catalog_url) as cat:
        for before in ("cancelling", "running"):
            jid = _insert_job(cat, str(tmp_path / "src"), "running", "host:1:x", time.time())
            reporter = JobReporter(cat, jid, interval_s=60)  # writes "running" (what a racing cancel overwrote)
            if before == "cancelling":
                cat.update_job(jid, state="cancelling")
            reporter.finish("cancelled", error="cancelled")
            assert cat.job(jid)["state"] == "cancelling", before
        done = _insert_job(cat, str(tmp_path / "src"), "running", "host:1:x", time.time())
        ok = JobReporter(cat, done, interval_s=60)
        ok.finish("succeeded")
        assert cat.job(done)["state"] == "succeeded"
