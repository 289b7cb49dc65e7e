"""The service's export job (`POST /exports`, `GET /exports/{id}`): a `carve export` subprocess
on the session's curated root; the output folder must lie under an allowed root."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from test_export_lerobot import curated_root

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer

TOKEN = "export-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
pytestmark = pytest.mark.usefixtures("ray_local")


def test_export_job_runs_carve_export_and_reports_its_summary(tmp_path_factory, tmp_path: Path):
    _, root = curated_root(tmp_path_factory)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    cfg = CarveConfig.model_validate({
        "root": str(root), "service": {"token": TOKEN, "allowed_roots": [str(allowed)], "rate_limit_per_min": 10_000},
    })
    with LiveServer(create_app(cfg, start_runner=False)) as srv, \
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
        assert job["state"] == "running" and job["out"] == str(allowed / "lerobot")
        deadline = time.time() + 120
        while job["state"] == "running" and time.time() < deadline:
            time.sleep(0.5)
            job = client.get(f"/exports/{job['id']}").json()
        assert job["state"] == "succeeded", job
        assert job["summary"]["unit"] == "event" and job["summary"]["episodes"] > 0
        assert (allowed / "lerobot" / "meta" / "info.json").exists()

        # the same folder again without overwrite: the job fails with the reason
        job = client.post("/exports", json={"out": str(allowed / "lerobot")}).json()
        deadline = time.time() + 120
        while job["state"] == "running" and time.time() < deadline:
            time.sleep(0.5)
            job = client.get(f"/exports/{job['id']}").json()
        assert job["state"] == "failed" and "already exists" in job["error"]
