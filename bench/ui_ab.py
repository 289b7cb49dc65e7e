"""The map page in a fresh browser, two source trees side by side (an A/B for a change to the page, issue 22).

`bench.bench_ui` measures one tree against the static file. To tell whether a change to the map page helps a
fresh browser, whose load times move by as much between runs as most changes, this serves the same root from
each given `src/` folder (`python -m carve serve` with that folder first on `PYTHONPATH`) and alternates fresh
Chromium contexts between them, each map load followed by a load of the static file (`/ui/static/ui.css`) from
the same server. A load is waited for as `bench_ui` waits for it: its `load` event, then the map looked at once
(or waited for when not yet drawn). Prints per tree p50/p95 of those loads (ms), of the map's `carve-map-drawn`
mark on the page's clock, of the static file, and the ratio of the p95s.

With `--profile` it instead records V8's sampling profile of fresh map loads from the first tree and prints the
functions with the most self time per load (`(program)`: the renderer's native work outside any script).

    python -m bench.bench_ui --keep D --loads 100          # makes the 100k-event root D/big once
    python -m bench.ui_ab D/big OLD/src src --loads 30     # OLD: e.g. `git worktree add OLD main`
    python -m bench.ui_ab D/big src src --loads 30         # the same tree twice: the noise alone
    python -m bench.ui_ab D/big src --profile --loads 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_service import _wait_up
from bench.bench_ui import CHROMIUM, TOKEN, browser_context, wait_map
from bench.bench_ui import _serve as serve

PORT = 8800


def _serve(root: str, src: str, port: int) -> subprocess.Popen[bytes]:
    proc = serve(Path(root), port, src)
    _wait_up(f"http://127.0.0.1:{port}", proc)
    return proc


def _dataset(port: int) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/datasets", headers={"Authorization": f"Bearer {TOKEN}"})
    body = json.loads(urllib.request.urlopen(req).read())
    return (body if isinstance(body, list) else body["datasets"])[0]["name"]


def _load(browser: Any, url: str, is_map: bool) -> tuple[float, float | None]:
    """One fresh-context load: (ms from navigation to ready, the page's `carve-map-drawn` mark or None)."""
    ctx = browser_context(browser)
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    if is_map:
        wait_map(page)
    else:
        page.wait_for_load_state("load")
    wall = (time.perf_counter() - t0) * 1e3
    drawn = page.evaluate("() => { const m = performance.getEntriesByName('carve-map-drawn');"
                          " return m.length ? m[0].startTime : null; }") if is_map else None
    ctx.close()
    return wall, drawn


def ab(browser: Any, ports: dict[str, int], dataset: str, loads: int) -> dict[str, dict[str, list[float]]]:
    """`loads` rounds of one fresh map load and one static load from each server (label -> port)."""
    out = {src: {"map": [], "drawn": [], "static": []} for src in ports}
    map_path, static_path = f"/ui/map?dataset={dataset}", "/ui/static/ui.css"
    for port in ports.values():  # one unmeasured load each
        _load(browser, f"http://127.0.0.1:{port}{map_path}", True)
    for _ in range(loads):
        for src, port in ports.items():
            wall, drawn = _load(browser, f"http://127.0.0.1:{port}{map_path}", True)
            out[src]["map"].append(wall)
            if drawn is not None:
                out[src]["drawn"].append(drawn)
            out[src]["static"].append(_load(browser, f"http://127.0.0.1:{port}{static_path}", False)[0])
    return out


def profile(browser: Any, port: int, dataset: str, loads: int) -> Counter[str]:
    """Self time (ms, summed over `loads` fresh map loads) per function, from V8's sampling profiler."""
    spent: Counter[str] = Counter()
    for _ in range(loads):
        ctx = browser_context(browser)
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 100})
        cdp.send("Profiler.start")
        page.goto(f"http://127.0.0.1:{port}/ui/map?dataset={dataset}", wait_until="load")
        prof = cdp.send("Profiler.stop")["profile"]
        nodes = {n["id"]: n["callFrame"] for n in prof["nodes"]}
        for sample, dt in zip(prof["samples"], prof["timeDeltas"], strict=True):
            frame = nodes[sample]
            spent[f"{frame['functionName'] or '(anonymous)'} {frame['url'].rsplit('/', 1)[-1][:40]}:"
                  f"{frame['lineNumber']}"] += dt / 1e3
        ctx.close()
    return spent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="a served root (bench_ui's D/big)")
    ap.add_argument("src", nargs="+", help="src/ folders of the trees to compare")
    ap.add_argument("--loads", type=int, default=30, help="fresh map loads per tree (each with a static load)")
    ap.add_argument("--profile", action="store_true", help="profile the first tree's fresh map loads instead")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    srcs = [str(Path(s).resolve()) for s in args.src]
    # one server per argument, labelled by its tree (and its place, when a tree is given twice: an A/A run)
    labels = [src if srcs.count(src) == 1 else f"{src} (#{i + 1})" for i, src in enumerate(srcs)]
    ports = {label: PORT + i for i, label in enumerate(labels)}
    procs = [_serve(args.root, src, PORT + i) for i, src in enumerate(srcs)]
    try:
        dataset = _dataset(PORT)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                if args.profile:
                    spent = profile(browser, PORT, dataset, args.loads)
                    for name, ms in spent.most_common(20):
                        print(f"{ms / args.loads:8.2f} ms per load  {name}")
                    return 0
                res = ab(browser, ports, dataset, args.loads)
            finally:
                browser.close()
    finally:
        for p in procs:
            p.terminate()
    for src, r in res.items():
        q = {k: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) if v else (float("nan"),) * 2
             for k, v in r.items()}
        print(f"{src}: map p50 {q['map'][0]:.0f} / p95 {q['map'][1]:.0f} ms; drawn (page clock) p50 "
              f"{q['drawn'][0]:.0f} / p95 {q['drawn'][1]:.0f}; static p50 {q['static'][0]:.0f} / p95 "
              f"{q['static'][1]:.0f}; map p95 / static p95 {q['map'][1] / q['static'][1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
