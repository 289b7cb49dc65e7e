"""Latency of the service's scaled views at 100k events against a plain Starlette endpoint, same run.

A format-true root with `--events` events (two datasets, multi-episode part files, 672-d
embeddings, captions, one JPEG keyframe per event; `bench.bench_cluster_memory.
fabricate_embedded_root`) is clustered and sharded by the real commands (`carve recluster`,
`carve shard`, which write the clusters summary), then served by `carve serve` (a separate
process, as deployed). Measured from an httpx AsyncClient with `--concurrency` requests in
flight (each of 1 and 8 by default: latency alone, then under load), `--requests` each, after
a warm-up round:

* `GET /events/{id}` for random event ids (a point lookup: assignments index, catalog, one row
  group of the event's batch; keyframes included as data URIs);
* `GET /datasets/sim/clusters` (the precomputed summary of the latest clustering + manifest);
* baseline: `GET /health` of a plain Starlette app under the same uvicorn, hit the same way.

Reports p50/p99 (ms) of each, errors, and `ratio_*` = baseline p99 / view p99 (1 = as fast
as an empty endpoint). Client and servers are on 127.0.0.1.

    python -m bench.bench_service_views [--events 100000] [--requests 2000] [--concurrency 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import stop

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"


async def _load(url: str, paths: list[str], headers: dict[str, str], concurrency: int) -> tuple[list[float], list[str]]:
    """GET every path with `concurrency` requests in flight; (latencies in s, error messages)."""
    lat: list[float] = []
    errs: list[str] = []
    queue = list(reversed(paths))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while queue:
                path = queue.pop()
                t0 = time.perf_counter()
                try:
                    r = await client.get(path)
                    if r.status_code != 200:
                        errs.append(f"{path}: HTTP {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    errs.append(f"{path}: {type(e).__name__}")
                lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, errs


def _pct(lat: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(lat) * 1000.0, q)) if lat else float("nan")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per endpoint")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="requests in flight (one run each)")
    ap.add_argument("--dim", type=int, default=672)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from bench.bench_cluster_memory import fabricate_embedded_root
    from bench.bench_service import _wait_up
    from carve.sim.service_fakes import free_port

    tmp = Path(tempfile.mkdtemp(prefix="carve-bench-views-"))
    root = tmp / "root"
    carve = str(Path(sys.executable).with_name("carve"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        fab = fabricate_embedded_root(root, args.events, dim=args.dim, datasets=("sim", "aloha"), keyframes=True,
                                      seed=args.seed)
        quiet = ["--set", "ray.progress=false"]
        subprocess.run([carve, "recluster", "--root", str(root), *quiet], check=True, capture_output=True, cwd=REPO)
        subprocess.run([carve, "shard", "--root", str(root), *quiet], check=True, capture_output=True, cwd=REPO)
        prep_s = time.perf_counter() - t0
        port, bport = free_port(), free_port()
        env = {**os.environ, "CARVE_TOKEN": TOKEN}
        procs.append(subprocess.Popen(
            [carve, "serve", "--root", str(root), "--port", str(port), "--set", "service.rate_limit_per_min=100000000",
             *quiet], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.bench_service", "--baseline-server", str(bport)],
                                      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        url, burl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bport}"
        _wait_up(url, procs[0])
        _wait_up(burl, procs[1])
        headers = {"Authorization": f"Bearer {TOKEN}"}
        rng = np.random.default_rng(args.seed)
        ids = fab["event_ids_sample"]
        n = args.requests
        event_paths = [f"/events/{ids[i]}" for i in rng.integers(len(ids), size=n)]
        warm = [f"/events/{ids[i]}" for i in rng.integers(len(ids), size=max(50, n // 10))]
        asyncio.run(_load(url, [*warm, "/datasets/sim/clusters"], headers, 4))  # first touch of batches
        asyncio.run(_load(burl, ["/health"] * 50, {}, 4))
        runs = {}
        for c in args.concurrency:
            runs[c] = (asyncio.run(_load(url, event_paths, headers, c)),
                       asyncio.run(_load(url, ["/datasets/sim/clusters"] * n, headers, c)),
                       asyncio.run(_load(burl, ["/health"] * n, {}, c)))
        body = httpx.get(f"{url}/datasets/sim/clusters", headers=headers, timeout=60).json()
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    res: dict[str, Any] = {
        "description": f"p50/p99 of GET /events/{{id}} and GET /datasets/sim/clusters at {args.events:,} events "
                       "vs a plain Starlette /health, N requests in flight (_cN); ratio = baseline p99 / view p99",
        "command": " ".join(["python -m bench.bench_service_views", *(argv if argv is not None else [])]).strip(),
        "events": fab["events"], "episodes": fab["episodes"], "part_files": fab["parts"], "batches": fab["batches"],
        "clusters": len(body.get("clusters") or []), "requests": n, "prep_s": round(prep_s, 1),
    }
    errors: list[str] = []
    print("| endpoint | in flight | p50 ms | p99 ms | baseline p99 / p99 |")
    print("|---|---|---|---|---|")
    for c, ((ev_lat, ev_err), (cl_lat, cl_err), (b_lat, b_err)) in runs.items():
        t = f"_c{c}"
        res.update({f"events_p50_ms{t}": _pct(ev_lat, 50), f"events_p99_ms{t}": _pct(ev_lat, 99),
                    f"clusters_p50_ms{t}": _pct(cl_lat, 50), f"clusters_p99_ms{t}": _pct(cl_lat, 99),
                    f"baseline_p50_ms{t}": _pct(b_lat, 50), f"baseline_p99_ms{t}": _pct(b_lat, 99)})
        res[f"ratio_events{t}"] = res[f"baseline_p99_ms{t}"] / res[f"events_p99_ms{t}"]
        res[f"ratio_clusters{t}"] = res[f"baseline_p99_ms{t}"] / res[f"clusters_p99_ms{t}"]
        errors += ev_err + cl_err + b_err
        print(f"| GET /events/{{id}} | {c} | {res['events_p50_ms' + t]:.1f} | {res['events_p99_ms' + t]:.1f} "
              f"| {res['ratio_events' + t]:.3f} |")
        print(f"| GET /datasets/sim/clusters | {c} | {res['clusters_p50_ms' + t]:.1f} | {res['clusters_p99_ms' + t]:.1f} "
              f"| {res['ratio_clusters' + t]:.3f} |")
        print(f"| plain Starlette /health | {c} | {res['baseline_p50_ms' + t]:.1f} | {res['baseline_p99_ms' + t]:.1f} | 1 |")
    res["errors"] = len(errors)
    res["error_examples"] = errors[:3]
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
