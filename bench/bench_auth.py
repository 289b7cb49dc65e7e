"""Per-request cost of authentication and authorization (issue 24): per-user keys vs the shared token.

Carve path: `carve.service.access.authorize`, the one dependency every route runs, on the
server's real `Authenticator` over a fabricated root's catalog (SQLite, or PostgreSQL with
`--catalog-url`). Measured three ways, in one process, on the same routes:

* `token`: the shared service token (the path of every request before issue 24);
* `key`: a per-user key whose row is in the key cache (`service.key_cache_s`, the steady state);
* `key_cold`: a per-user key read from the catalog on every request (`key_cache_s = 0`, the
  worst case: the first request after a cache entry expires);

first as the bare dependency call (what auth itself costs), then end to end: GETs of the same
routes through a real uvicorn on loopback, alternating token and key, whose p50 difference is
what a client sees. Target: auth p50 <= 0.5 ms per request. Also reported: `audit_record`, the
one catalog insert a state-changing request (POST, DELETE) adds for its audit row; reads add none.

    python -m bench.bench_auth                      # 5000 calls per path, 400 HTTP requests per credential
    python -m bench.bench_auth --calls 20000 --requests 1000 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import Request

from carve.core.config import CarveConfig
from carve.service.access import authorize
from carve.service.app import ROUTERS, create_app
from carve.sim.service_fakes import LiveServer, fabricate_root
from carve.storage import access

TOKEN = "bench-token-0123456789abcdef"
ROUTES = ("/jobs", "/datasets/sim", "/datasets/sim/versions")
TEMPLATES = {"/jobs": "/jobs", "/datasets/sim": "/datasets/{name}", "/datasets/sim/versions": "/datasets/{name}/versions"}
_ROUTE_OF = {r.path: r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods}


def _request(app: Any, path: str, key: str) -> tuple[Request, HTTPAuthorizationCredentials]:
    route = _ROUTE_OF[TEMPLATES[path]]
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"authorization", f"Bearer {key}".encode())], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8080), "scheme": "http", "app": app, "route": route}
    return Request(scope), HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)


def _p(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] if len(xs) > 1 else xs[0]


def _summary(xs_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in xs_s]
    return {"p50_ms": round(statistics.median(ms), 4), "p99_ms": round(_p(ms, 99), 4), "n": len(ms)}


def bench_calls(app: Any, creds: dict[str, str], calls: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for label, key in creds.items():
        times: list[float] = []
        for i in range(calls):
            req, c = _request(app, ROUTES[i % len(ROUTES)], key)
            t = time.perf_counter()
            authorize(req, c)
            times.append(time.perf_counter() - t)
        out[label] = _summary(times[calls // 10:])  # the first tenth warms up
    return out


def bench_http(url: str, creds: dict[str, str], requests: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {k: [] for k in creds}
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(requests):
            for label, key in creds.items():  # interleaved: the same load on each
                t = time.perf_counter()
                r = c.get(ROUTES[i % len(ROUTES)], headers={"Authorization": f"Bearer {key}"})
                times[label].append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise RuntimeError(f"{label}: {r.status_code} {r.text[:200]}")
    return {k: _summary(v[requests // 10:]) for k, v in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000, help="dependency calls per credential")
    ap.add_argument("--requests", type=int, default=400, help="HTTP requests per credential")
    ap.add_argument("--catalog-url", default=None, help="a PostgreSQL catalog instead of the root's SQLite file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="carve-bench-auth-") as tmp:
        fab = fabricate_root(Path(tmp) / "root", datasets=("sim",))
        result: dict[str, Any] = {"routes": list(ROUTES)}
        for cache_s, labels in ((2.0, ("token", "key")), (0.0, ("key_cold",))):
            cfg = CarveConfig.model_validate({"root": str(fab.root), "catalog": {"url": args.catalog_url},
                                              "service": {"token": TOKEN, "key_cache_s": cache_s,
                                                          "rate_limit_per_min": 10_000_000}})
            app = create_app(cfg, start_runner=False)
            cat = app.state.catalogs.get()
            name = f"bench-{int(cache_s * 10)}"
            key = access.add_key(cat, name, "viewer")[0]
            creds = {lbl: (TOKEN if lbl == "token" else key) for lbl in labels}
            result.setdefault("authorize", {}).update(bench_calls(app, creds, args.calls))
            if cache_s:
                times = []
                for i in range(max(50, args.calls // 20)):
                    t = time.perf_counter()
                    access.record(cat, method="POST", route="/jobs", path="/jobs", status=202, outcome="ok",
                                  user=name, role="viewer", via="key", target=f"bench{i}")
                    times.append(time.perf_counter() - t)
                result["audit_record"] = _summary(times)
                with LiveServer(app) as srv:
                    result["http"] = bench_http(srv.url, creds, args.requests)
            access.revoke_key(cat, name)
        a, h = result["authorize"], result["http"]
        result["auth_p50_ms"] = {k: v["p50_ms"] for k, v in a.items()}
        result["http_p50_key_minus_token_ms"] = round(h["key"]["p50_ms"] - h["token"]["p50_ms"], 4)
        result["target_ms"] = 0.5
        result["meets_target"] = a["key"]["p50_ms"] <= 0.5 and a["key_cold"]["p50_ms"] <= 0.5
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for lbl, v in result["authorize"].items():
            print(f"authorize  {lbl:<9} p50 {v['p50_ms']:.4f} ms  p99 {v['p99_ms']:.4f} ms  (n={v['n']})")
        for lbl, v in result["http"].items():
            print(f"http GET   {lbl:<9} p50 {v['p50_ms']:.4f} ms  p99 {v['p99_ms']:.4f} ms  (n={v['n']})")
        v = result["audit_record"]
        print(f"audit row (state-changing requests only) p50 {v['p50_ms']:.4f} ms  p99 {v['p99_ms']:.4f} ms")
        print(f"http p50 key - token: {result['http_p50_key_minus_token_ms']:+.4f} ms; "
              f"target auth p50 <= 0.5 ms: {'met' if result['meets_target'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
