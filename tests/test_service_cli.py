"""`carve serve` as a real process: refuses to start without a token; serves with CARVE_TOKEN, with
its catalog in SQLite and in PostgreSQL (CARVE_CATALOG_URL, which the job subprocess gets too)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from carve.sim.service_fakes import free_port

REPO = Path(__file__).resolve().parents[1]
TOKEN = "cli-token-0123456789abcdef"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CARVE_TOKEN"}
    env.update(extra)
    return env


def test_serve_refuses_without_token(tmp_path: Path):
    r = subprocess.run([sys.executable, "-m", "carve.cli.main", "serve", "--root", str(tmp_path / "root"),
                        "--port", str(free_port())], cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "CARVE_TOKEN" in r.stderr


def test_serve_with_env_token(tmp_path: Path, catalog_url):
    port = free_port()
    (tmp_path / "allowed").mkdir()
    p = subprocess.Popen([sys.executable, "-m", "carve.cli.main", "serve", "--root", str(tmp_path / "root"),
                          "--port", str(port), "--allow-root", str(tmp_path / "allowed")],
                         cwd=REPO, env=_env(CARVE_TOKEN=TOKEN), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
            assert time.time() < deadline, "carve serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"{url}/jobs").status_code == 401
        r = httpx.post(f"{url}/jobs", json={"source": str(tmp_path / "allowed")},
                       headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 202, r.text
        # the server runs it as a `carve run` subprocess; an empty folder is not a dataset
        deadline = time.time() + 120
        job = r.json()
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            assert time.time() < deadline, job
            time.sleep(0.3)
            job = httpx.get(f"{url}/jobs/{job['id']}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert job["state"] == "failed" and job["error"] and job["pid"]
    finally:
        p.terminate()
        p.wait(timeout=30)
