"""The service's export jobs (`POST /exports`, `GET /exports/{id}`): jobs of kind `export` that the
one job runner starts as `carve export` subprocesses, with the server's config and catalog; the
output folder must lie under an allowed root."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_export_lerobot import _cfg, curated_root

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer

TOKEN = "export-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
pytestmark = pytest.mark.usefixtures("ray_local")


def _wait(client: httpx.Client, job: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
    deadline = time.time() + timeout
    while job["state"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.3)
        job = client.get(f"/exports/{job['id']}").json()
    return job


def _server_cfg(root: Path, allowed: Path, **extra: Any) -> CarveConfig:
    return CarveConfig.model_validate({
        "root": str(root), **extra,
        "service": {"token": TOKEN, "allowed_roots": [str(allowed)], "rate_limit_per_min": 10_000,
                    "poll_interval_s": 0.2},
    })


def test_export_job_runs_carve_export_and_reports_its_summary(tmp_path_factory, tmp_path: Path):
    _, root = curated_root(tmp_path_factory)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    with LiveServer(create_app(_server_cfg(root, allowed))) as srv, \
            httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
        assert httpx.post(f"{srv.url}/exports", json={"out": str(allowed / "x")}).status_code == 401
        r = client.post("/exports", json={"out": str(tmp_path / "outside" / "x")})
        assert r.status_code in (403, 422) and "output folder" in r.text
        assert client.post("/exports", json={"out": "relative/x"}).status_code == 422
        assert client.get("/exports/0123456789ab").status_code == 404

        r = client.post("/exports", json={"out": str(allowed / "lerobot"), "shards": 1, "unit": "event",
                                          "codec": "h264"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] == "queued" and job["out"] == str(allowed / "lerobot")
        # one job runner: the export is a job like any other, listed under /jobs with its kind
        listed = {j["id"]: j for j in client.get("/jobs").json()}
        assert listed[job["id"]]["kind"] == "export" and listed[job["id"]]["params"]["unit"] == "event"
        assert client.get(f"/exports/{job['id']}").json()["id"] == job["id"]
        job = _wait(client, job)
        assert job["state"] == "succeeded", job
        assert job["summary"]["unit"] == "event" and job["summary"]["episodes"] > 0
        assert (allowed / "lerobot" / "meta" / "info.json").exists()
        assert client.get(f"/jobs/{job['id']}").json()["state"] == "succeeded"

        # the same folder again without overwrite: the job fails with the reason
        job = _wait(client, client.post("/exports", json={"out": str(allowed / "lerobot")}).json())
        assert job["state"] == "failed" and "already exists" in job["error"], job


def test_an_export_job_uses_the_servers_catalog_and_config(tmp_path_factory, tmp_path: Path, monkeypatch):
    """The catalog given to the server by URL (not `<root>/catalog.sqlite`) and its log level reach
    the export subprocess: without them it would open an empty catalog that does not know the
    dataset's source, and log at the default level."""
    from carve.pipeline.run import run_pipeline

    sim, _ = curated_root(tmp_path_factory)
    root, allowed = tmp_path / "root", tmp_path / "allowed"
    allowed.mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'catalog.sqlite'}"
    (tmp_path / "db").mkdir()
    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    s = run_pipeline(_cfg(root, sim).with_overrides({"catalog": {"url": url}}))
    assert s.shards_version == 1 and not (root / "catalog.sqlite").exists()
    with LiveServer(create_app(_server_cfg(root, allowed, catalog={"url": url}, log_level="INFO"))) as srv, \
            httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
        job = _wait(client, client.post("/exports", json={"out": str(allowed / "ds"), "codec": "h264"}).json())
        assert job["state"] == "succeeded", job
        assert not (root / "catalog.sqlite").exists()  # the export never opened a catalog of its own
        from carve.service.jobs import job_dir

        log = (job_dir(str(root), job["id"]) / "log.txt").read_text()
        assert " info carve." in log, log[-2000:]  # the server's log level, from its config
