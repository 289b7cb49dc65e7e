"""Service load test: concurrent GETs of /jobs and /datasets/{name}/clusters on loopback.

Carve path: `carve serve` (a separate process, as deployed) over a fabricated, format-true
root (pipeline/service/testing.py), hit by `--requests` concurrent GETs (half /jobs, half
/datasets/sim/clusters) from an httpx AsyncClient, while (unless `--no-job`) a real
`carve run` job submitted over HTTP ingests a toy folder dataset. Baseline: a plain Starlette
app answering a constant JSON /health under the same uvicorn, hit the same way.

Reports errors (non-200 or transport errors), p50/p99 latency of each, and
`ratio` = baseline p99 / Carve p99 (so < 1 means the Carve routes are that much slower than
an empty endpoint).

    python -m bench.bench_service                     # 200 concurrent GETs while a job runs
    python -m bench.bench_service --requests 400 --no-job
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"


def _baseline_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/health", health)])


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err[-500:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not come up in {timeout} s")


async def _load(url: str, paths: list[str], headers: dict[str, str]) -> tuple[list[float], int, list[str]]:
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=len(paths))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def one(path: str) -> tuple[float, str | None]:
            t0 = time.perf_counter()
            try:
                r = await client.get(path)
                err = None if r.status_code == 200 else f"{path}: HTTP {r.status_code}"
            except httpx.HTTPError as e:
                err = f"{path}: {type(e).__name__}"
            return time.perf_counter() - t0, err

        results = await asyncio.gather(*(one(p) for p in paths))
    lat = [r[0] for r in results]
    errs = [r[1] for r in results if r[1]]
    return lat, len(errs), errs[:5]


def _pct(lat: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(lat) * 1000.0, q)) if lat else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="concurrent GETs per round")
    ap.add_argument("--episodes", type=int, default=20, help="episodes per fabricated dataset")
    ap.add_argument("--with-job", dest="with_job", action="store_true", default=True,
                    help="run a real ingestion job during the load (the default)")
    ap.add_argument("--no-job", dest="with_job", action="store_false", help="load an idle server")
    ap.add_argument("--baseline-server", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.baseline_server is not None:  # child mode: serve the baseline app
        import uvicorn

        uvicorn.run(_baseline_app(), host="127.0.0.1", port=args.baseline_server, log_level="error")
        return {}

    from carve.sim.service_fakes import fabricate_root, free_port

    tmp = Path(tempfile.mkdtemp(prefix="carve-bench-service-"))
    fab = fabricate_root(tmp / "root", datasets=("sim", "aloha"), episodes=args.episodes, k=8)
    allowed = tmp / "allowed"
    allowed.mkdir()
    env = {**os.environ, "CARVE_TOKEN": TOKEN}
    port, bport = free_port(), free_port()
    carve = subprocess.Popen(
        [sys.executable, "-m", "carve.cli.main", "serve", "--root", str(fab.root), "--port", str(port),
         "--allow-root", str(allowed), "--set", "service.rate_limit_per_min=1000000",
         "--set", "ray.num_cpus=1", "--set", "ray.progress=false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = subprocess.Popen([sys.executable, "-m", "bench.bench_service", "--baseline-server", str(bport)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url, burl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bport}"
    job_state = job_state_before = None
    try:
        _wait_up(url, carve)
        _wait_up(burl, base)
        job_id = None
        if args.with_job:
            from carve.sim.toy import write_toy_folder

            write_toy_folder(allowed / "toy", episodes=4)
            r = httpx.post(f"{url}/jobs", json={"source": str(allowed / "toy"), "format": "folder"}, headers=headers)
            job_id = r.json().get("id")
            deadline = time.time() + 60  # load only once the job's pipeline is really running
            while time.time() < deadline:
                job_state_before = httpx.get(f"{url}/jobs/{job_id}", headers=headers).json().get("state")
                if job_state_before == "running":
                    break
                time.sleep(0.2)
        # warm the caches once, as a real dashboard would
        httpx.get(f"{url}/datasets/sim/clusters", headers=headers, timeout=60)
        n = args.requests
        paths = ["/jobs" if i % 2 else "/datasets/sim/clusters" for i in range(n)]
        t0 = time.perf_counter()
        lat, errors, examples = asyncio.run(_load(url, paths, headers))
        carve_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        blat, berrors, _ = asyncio.run(_load(burl, ["/health"] * n, {}))
        base_s = time.perf_counter() - t0
        if job_id:
            job_state = httpx.get(f"{url}/jobs/{job_id}", headers=headers).json().get("state")
            httpx.post(f"{url}/jobs/{job_id}/cancel", headers=headers)  # leave no pipeline process behind
            deadline = time.time() + 60
            while time.time() < deadline:
                st = httpx.get(f"{url}/jobs/{job_id}", headers=headers).json().get("state")
                if st in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.5)
        jobs_lat = [x for x, p in zip(lat, paths, strict=True) if p == "/jobs"]
        cl_lat = [x for x, p in zip(lat, paths, strict=True) if p != "/jobs"]
        res = {
            "description": f"{n} concurrent GETs (half /jobs, half /datasets/sim/clusters) against `carve serve` on "
                           "loopback vs a plain Starlette /health; ratio = baseline p99 / Carve p99",
            "command": "python -m bench.bench_service" + ("" if args.with_job else " --no-job"),
            "requests": n,
            "events_in_catalog": len(fab.event_ids),
            "errors": errors,
            "error_examples": examples,
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
            "jobs_p99_ms": _pct(jobs_lat, 99),
            "clusters_p99_ms": _pct(cl_lat, 99),
            "wall_s": carve_s,
            "baseline_errors": berrors,
            "baseline_p50_ms": _pct(blat, 50),
            "baseline_p99_ms": _pct(blat, 99),
            "baseline_wall_s": base_s,
            "with_job": bool(args.with_job),
            "job_state_before_load": job_state_before,
            "job_state_after_load": job_state,
        }
        res["ratio"] = res["baseline_p99_ms"] / res["p99_ms"] if res["p99_ms"] else float("nan")
    finally:
        for p in (carve, base):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
