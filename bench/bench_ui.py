"""Page-load time of the analysts' pages (/ui/) at 100k events against a plain static file served
by the same server, same run.

A format-true root with `--events` events is fabricated as the pages read it
(`carve.sim.service_fakes.fabricate_root`: event parts, catalog, clusters v001 with its map
layout and near-duplicates, a shards manifest; no pipeline run), plus a small root whose events
point at a real H.264 LeRobot dataset (clips and signals cut from the source). Each root is
served by `carve serve` in its own process, as deployed. Measured, `--loads` times each, after a
warm-up round:

* **map page**: the page's own requests in the order the page makes them: the HTML, which
  carries the map's first screen (one binary frame, `carve.audit.mapframe`, base64, gzip
  accepted as a browser does; made for the server's default canvas, that of a 1280x900 window);
  then, once that screen is drawn, the dataset list, the facets and the versions at once (the
  filters' lists); with the browser's copy of ui.js/ui.css (`warm`) and with them fetched too
  (`cold`); the map page loads no plotly.js since issue 22;
* **event view**: HTML; then the event, its signals, neighbours, flags and clip at once; then
  its keyframes and its neighbours' thumbnails at once (random events);
* with `--browser` (default when /usr/bin/chromium and Playwright exist): the same pages in
  headless Chromium, from navigation to the map drawn (`#map[data-ready='1']`), and to the
  signals drawn and the clip decodable (`readyState >= 2`), each load in a fresh context
  (cold: no cache, scripts parsed and compiled again) and in one kept context (`_warm`: an
  analyst moving between pages, static files and compiled scripts cached; the key goes as an
  `Authorization` header, since Playwright's `http_credentials` turns Chromium's cache off, and
  `*_script_bytes_max` shows ui.js/ui.css came from the cache). The map and the static file
  are waited for the same way: the page's `load` event, then one look that the map is drawn
  (`*_drawn_after_load`: loads where it was not yet, then waited for by selector). A selector
  wait alone costs Playwright's injected script on every new document (tens of ms), which the
  static file's wait does not pay;
* **baseline**: `GET /ui/static/ui.css` (a plain static file of the same server), and in the
  browser a navigation to it.

Reports p50/p95 (ms) and `ratio_*` = page p95 / baseline p95 (how many static-file fetches one
page load costs), and the map frame's bytes (raw and on the wire) and points at `--events`;
`*_inpage_*`: the same Chromium loads on the page's own clock (navigation start to the map's
`carve-map-drawn` performance mark, or to the static file's `loadEventEnd`), which leaves out
the harness's round trips to the browser.

    python -m bench.bench_ui [--events 100000] [--loads 30] [--no-browser]
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import stop

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
STATIC = ["/ui/static/ui.css", "/ui/static/ui.js"]  # what the map page loads (the event page adds plotly.min.js)
MAP_SCREEN = {"width": 930, "height": 638}  # the map canvas of a 1280x900 window (ui.css; routes/ui.py DEFAULT_SCREEN)
FRAME = "/datasets/{d}/map/frame?width={width}&height={height}"


def _pct(lat: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(lat) * 1000.0, q)) if lat else float("nan")


async def _get(c: httpx.AsyncClient, path: str, errors: list[str]) -> bytes:
    r = await c.get(path)
    if r.status_code != 200:
        errors.append(f"{path}: HTTP {r.status_code} {r.text[:160]}")
    return r.content


async def _all(c: httpx.AsyncClient, paths: list[str], errors: list[str]) -> list[bytes]:
    return list(await asyncio.gather(*(_get(c, p, errors) for p in paths)))


async def map_load(c: httpx.AsyncClient, dataset: str, cold: bool, errors: list[str]) -> None:
    await _get(c, f"/ui/map?dataset={dataset}", errors)  # carries the first screen's frame
    if cold:
        await _all(c, STATIC, errors)
    await _all(c, [f"/datasets/{dataset}/map/facets", "/datasets", f"/datasets/{dataset}/versions"], errors)


def frame_size(url: str, dataset: str) -> dict[str, int]:
    """The map's first-screen frame: raw bytes, bytes on the wire (gzip), points, events; and the
    map page's bytes on the wire, which carry it."""
    from carve.audit.mapframe import decode_header

    h = {"Authorization": f"Bearer {TOKEN}", "Accept-Encoding": "gzip"}
    with httpx.Client(base_url=url, headers=h, timeout=60) as c:
        r = c.get(FRAME.format(d=dataset, **MAP_SCREEN))
        r.raise_for_status()
        head = decode_header(r.content)
        wire = int(r.headers.get("content-length") or len(r.content))
        page = c.get(f"/ui/map?dataset={dataset}")
        page.raise_for_status()
        page_wire = int(page.headers.get("content-length") or len(page.content))
    return {"frame_raw_bytes": len(r.content), "frame_wire_bytes": wire, "frame_points": head["n"],
            "frame_total": head["total"], "map_page_wire_bytes": page_wire, "map_page_bytes": len(page.content)}


async def event_load(c: httpx.AsyncClient, eid: str, errors: list[str], clip: bool = True) -> None:
    await _get(c, f"/ui/event?id={eid}", errors)
    e = f"/events/{eid}"
    paths = [f"{e}?images=false", f"{e}/signals", f"{e}/neighbours?k=8", f"{e}/flags"] + ([f"{e}/clip.mp4"] if clip else [])
    ev, _sig, nb, *_ = await _all(c, paths, errors)
    n_kf = json.loads(ev).get("num_keyframes", 0) if ev else 0
    neighbours = json.loads(nb).get("neighbours", []) if nb else []
    await _all(c, [f"{e}/keyframes/{i}.jpg" for i in range(n_kf)]
               + [f"/events/{n['event_id']}/keyframes/0.jpg" for n in neighbours], errors)


async def _timed(n: int, make: Callable[[int], Awaitable[None]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await make(i)
        out.append(time.perf_counter() - t0)
    return out


def http_runs(url: str, ids: list[str], dataset: str, loads: int, clip: bool, seed: int) -> dict[str, Any]:
    """Per-page timings (s) of the page's own requests, sequenced as the page sequences them."""
    rng = np.random.default_rng(seed)
    errors: list[str] = []

    async def go() -> dict[str, list[float]]:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120,
                                     limits=httpx.Limits(max_connections=6)) as c:  # a browser's 6 per host
            await map_load(c, dataset, True, errors)  # warm-up: layout, facets, summaries
            for i in rng.integers(len(ids), size=5):
                await event_load(c, ids[i], errors, clip)
            picks = [ids[i] for i in rng.integers(len(ids), size=loads)]
            return {
                "static": await _timed(loads, lambda i: _get(c, STATIC[0], errors)),
                "map_warm": await _timed(loads, lambda i: map_load(c, dataset, False, errors)),
                "map_cold": await _timed(loads, lambda i: map_load(c, dataset, True, errors)),
                "event": await _timed(loads, lambda i: event_load(c, picks[i], errors, clip)),
            }

    out: dict[str, Any] = asyncio.run(go())
    out["errors"] = errors
    return out


def browser_context(browser: Any) -> Any:
    """A new Chromium context that sends the key as a header, as a browser sends a saved login: Playwright's
    `http_credentials` answers the auth challenge by intercepting every request, and with interception on it
    turns Chromium's HTTP cache off (`Network.setCacheDisabled`), so a "kept" browser fetched ui.js and ui.css
    again on every page."""
    ctx = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"},
                              viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(120_000)
    return ctx


def wait_map(page: Any) -> bool:
    """Wait for a map page as for the static file (its load event), then look at it once; True when the map
    was drawn by then, else wait for it to be drawn and return False."""
    page.wait_for_load_state("load")
    if page.evaluate("() => document.querySelector(\"#map[data-ready='1']\") !== null"):
        return True
    page.wait_for_selector("#map[data-ready='1']", state="attached")
    return False


def browser_runs(url: str, ids: list[str], dataset: str, loads: int, seed: int, clip: bool) -> dict[str, list[float]]:
    """Navigation -> plot drawn (map) / signals drawn and clip decodable (event), fresh context each."""
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(seed + 1)
    out: dict[str, list[float]] = {"static": [], "map": [], "event": [], "map_warm": [], "event_warm": []}
    late: list[int] = []  # map loads not drawn by their load event
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            def context() -> Any:
                return browser_context(browser)

            warm = context()  # an analyst's browser: cache and compiled scripts kept between pages
            warm_page = warm.new_page()

            def once(kind: str, path: str, ready: Callable[[Any], None]) -> None:
                ctx = None if kind.endswith("_warm") else context()
                page = warm_page if ctx is None else ctx.new_page()
                t0 = time.perf_counter()
                page.goto(url + path, wait_until="commit")
                ready(page)
                out[kind].append(time.perf_counter() - t0)
                if kind in ("static", "map", "map_warm"):  # the page's own clock: navigation start to drawn / loaded
                    out.setdefault(f"{kind}_inpage", []).append(page.evaluate(
                        "() => { const m = performance.getEntriesByName('carve-map-drawn');"
                        " return (m.length ? m[m.length - 1].startTime"
                        " : performance.getEntriesByType('navigation')[0].loadEventEnd) / 1000; }"))
                if ctx is None:  # a kept browser: bytes of ui.js/ui.css that came over the wire (0: its cache)
                    out.setdefault(f"{kind}_script_bytes", []).append(page.evaluate(
                        "() => performance.getEntriesByType('resource').filter(e => /\\/ui\\.(js|css)$/.test("
                        "e.name)).reduce((a, e) => a + e.transferSize, 0)"))
                if ctx is not None:
                    ctx.close()

            def map_ready(p: Any) -> None:
                if not wait_map(p):
                    late.append(1)

            def event_ready(p: Any) -> None:
                p.wait_for_selector("#signals[data-ready='1']", state="attached")
                p.wait_for_selector("#ev-meta dd", state="attached")
                if clip:
                    p.wait_for_function("() => document.querySelector('#clip').readyState >= 2")

            once("map", f"/ui/map?dataset={dataset}", map_ready)  # warm-up
            once("map_warm", f"/ui/map?dataset={dataset}", map_ready)
            for k in ("map", "map_warm", "map_warm_script_bytes", "map_inpage", "map_warm_inpage"):
                out.get(k, []).clear()
            late.clear()
            for _ in range(loads):
                once("static", STATIC[0], lambda p: p.wait_for_load_state("load"))
                once("map", f"/ui/map?dataset={dataset}", map_ready)
                once("event", f"/ui/event?id={ids[int(rng.integers(len(ids)))]}", event_ready)
                once("map_warm", f"/ui/map?dataset={dataset}", map_ready)
                once("event_warm", f"/ui/event?id={ids[int(rng.integers(len(ids)))]}", event_ready)
            warm.close()
        finally:
            browser.close()
    out["map_drawn_after_load"] = [float(len(late))]
    return out


def _serve(root: Path, port: int, src: str | None = None) -> subprocess.Popen[bytes]:
    """`carve serve` of `root` on `port`; with `src`, the carve of that src/ folder (first on PYTHONPATH)."""
    carve = str(Path(sys.executable).with_name("carve"))
    env = {**os.environ, "CARVE_TOKEN": TOKEN, **({"PYTHONPATH": src} if src else {})}
    return subprocess.Popen([carve, "serve", "--root", str(root), "--port", str(port),
                             "--set", "service.rate_limit_per_min=100000000", "--set", "ray.progress=false"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--events-per-episode", type=int, default=200)
    ap.add_argument("--loads", type=int, default=30, help="measured HTTP loads per page (Chromium: a fifth of it, at least 20, so its p95 is not the slowest of a handful)")
    ap.add_argument("--browser", dest="browser", action="store_true", default=None)
    ap.add_argument("--no-browser", dest="browser", action="store_false")
    ap.add_argument("--keep", default=None, help="reuse/keep the fabricated roots in this folder")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from bench.bench_service import _wait_up
    from carve.sim.service_fakes import fabricate_root, free_port

    if args.browser is None:
        try:
            import playwright.sync_api  # noqa: F401

            args.browser = Path(CHROMIUM).exists()
        except ImportError:
            args.browser = False
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="carve-bench-ui-"))
    big, small = tmp / "big", tmp / "video"
    procs: list[subprocess.Popen[bytes]] = []
    res: dict[str, Any] = {}
    res["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        t0 = time.perf_counter()
        epe = args.events_per_episode
        eps = max(1, args.events // epe)
        marker = tmp / "ids.json"
        if not marker.exists():
            fab = fabricate_root(big, datasets=("sim",), episodes=eps, events_per_episode=epe, k=32,
                                 failed_episodes=0, seed=args.seed)
            vfab = fabricate_root(small, datasets=("sim",), episodes=4, videos=True, seed=args.seed)
            marker.write_text(json.dumps({"big": fab.event_ids, "video": vfab.event_ids}))
        ids = json.loads(marker.read_text())
        prep_s = time.perf_counter() - t0
        port, vport = free_port(), free_port()
        procs = [_serve(big, port), _serve(small, vport)]
        url, vurl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{vport}"
        _wait_up(url, procs[0])
        _wait_up(vurl, procs[1])
        h = http_runs(url, ids["big"], "sim", args.loads, clip=False, seed=args.seed)
        hv = http_runs(vurl, ids["video"], "sim", args.loads, clip=True, seed=args.seed)
        b = browser_runs(url, ids["big"], "sim", max(20, args.loads // 5), args.seed, False) if args.browser else None
        bv = browser_runs(vurl, ids["video"], "sim", max(20, args.loads // 5), args.seed, True) if args.browser else None
        total = httpx.get(f"{url}/datasets/sim/map?limit=1", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60).json()["total"]
        res.update(frame_size(url, "sim"))
    finally:
        stop(procs)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    res.update({
        "description": "p50/p95 page-load time of /ui/map and /ui/event vs GET of a plain static file (ui.css) "
                       "of the same server; ratio = page p95 / static p95",
        "command": " ".join(["python -m bench.bench_ui", *(argv if argv is not None else [])]).strip(),
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "events": len(ids["big"]), "map_total": total, "loads": args.loads, "prep_s": round(prep_s, 1),
    })
    rows = [("http", "100k", h, ["map_warm", "map_cold", "event"]), ("http", "video root", hv, ["event"])]
    if b is not None and bv is not None:
        rows += [("chromium", "100k", b, ["map", "map_warm", "event", "event_warm"]),
                 ("chromium", "video root", bv, ["event", "event_warm"])]
    print("| how | root | page | p50 ms | p95 ms | static p95 ms | page p95 / static p95 |")
    print("|---|---|---|---|---|---|---|")
    for how, where, r, pages in rows:
        sp95 = _pct(r["static"], 95)
        for pg in pages:
            key = f"{how}_{'big' if where == '100k' else 'video'}_{pg}"
            p50, p95 = _pct(r[pg], 50), _pct(r[pg], 95)
            res.update({f"{key}_p50_ms": round(p50, 1), f"{key}_p95_ms": round(p95, 1),
                        f"{key}_static_p95_ms": round(sp95, 2), f"ratio_{key}": round(p95 / sp95, 1)})
            print(f"| {how} | {where} | {pg} | {p50:.1f} | {p95:.1f} | {sp95:.2f} | {p95 / sp95:.1f} |")
    for name, r in (("big", b), ("video", bv)):
        for pg in ("map_warm", "event_warm"):
            if r is not None and r.get(f"{pg}_script_bytes"):
                res[f"chromium_{name}_{pg}_script_bytes_max"] = int(max(r[f"{pg}_script_bytes"]))
    if b is not None:
        res["chromium_big_map_drawn_after_load"] = int(b["map_drawn_after_load"][0])
        sp95 = _pct(b["static_inpage"], 95)
        for pg in ("map", "map_warm"):  # in the page's clock (performance marks), no harness round trips
            p50, p95 = _pct(b[f"{pg}_inpage"], 50), _pct(b[f"{pg}_inpage"], 95)
            res.update({f"chromium_big_{pg}_inpage_p50_ms": round(p50, 1), f"chromium_big_{pg}_inpage_p95_ms": round(p95, 1),
                        "chromium_big_static_inpage_p95_ms": round(sp95, 1),
                        f"ratio_chromium_big_{pg}_inpage": round(p95 / sp95, 1)})
            print(f"| chromium, page clock | 100k | {pg} | {p50:.1f} | {p95:.1f} | {sp95:.2f} | {p95 / sp95:.1f} |")
    errors = h["errors"] + hv["errors"]
    res["errors"] = len(errors)
    res["error_examples"] = errors[:3]
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
