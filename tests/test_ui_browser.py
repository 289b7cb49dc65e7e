"""The analysts' pages (/ui/) in headless Chromium (Playwright), against the real app on a loopback
port over a fabricated root whose events point at a real H.264 LeRobot dataset.

Every step saves a screenshot to tests/artifacts/ui/NN-step.png. Every test fails if the page
requested anything but the test server (or data:/blob: URLs it made itself). Skips when
/usr/bin/chromium or Playwright is missing, unless CARVE_REQUIRE_BROWSER=1 (CI), where that is
a failure.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from browser import TOKEN, launch, need_browser, record_external, watched_page

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
TIMEOUT_MS = 30_000

browser = pytest.mark.browser


_shots = {"n": 0}


def shot(page: Any, step: str) -> Path:
    """A full-page screenshot of this step: tests/artifacts/ui/NN-step.png."""
    _shots["n"] += 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{_shots['n']:02d}-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


class Env:
    def __init__(self, fab: Any, cfg: CarveConfig, srv: LiveServer, browser: Any):
        self.fab, self.cfg, self.srv, self.browser = fab, cfg, srv, browser
        self.api = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def get(self, path: str) -> Any:
        r = self.api.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    need_browser()
    from playwright.sync_api import sync_playwright

    for old in ARTIFACTS.glob("*.png") if ARTIFACTS.exists() else []:
        old.unlink()
    tmp = tmp_path_factory.mktemp("ui")
    fab = fabricate_root(tmp / "root", datasets=("sim",), episodes=8, videos=True)
    cfg = CarveConfig.model_validate({"root": str(fab.root),
                                      "service": {"token": TOKEN, "rate_limit_per_min": 100_000}})
    with LiveServer(create_app(cfg, start_runner=False)) as srv, sync_playwright() as pw:
        browser = launch(pw, "--autoplay-policy=no-user-gesture-required")
        e = Env(fab, cfg, srv, browser)
        try:
            yield e
        finally:
            e.api.close()
            browser.close()


@pytest.fixture
def page(env: Env) -> Iterator[Any]:
    with watched_page(env.browser, env.srv.url + "/", TIMEOUT_MS) as p:
        yield p


def _open_map(env: Env, page: Any, query: str = "") -> None:
    resp = page.goto(f"{env.srv.url}/ui/map?dataset=sim{query}")
    assert resp is not None and resp.status == 200
    page.wait_for_selector("#map[data-ready='1']")
    page.wait_for_selector("#filters[data-ready='1']")  # the selects are filled after the first draw


def _point_xy(page: Any, i: int) -> tuple[float, float]:
    """Page coordinates of map point i (the page's own data -> canvas pixel mapping)."""
    return tuple(page.evaluate("i => window.CARVE_MAP.toPage(i)", i))


@browser
def test_map_hover_and_click_lands_on_event(env: Env, page: Any):
    _open_map(env, page)
    total = env.get("/datasets/sim/map?limit=1")["total"]
    n = page.evaluate("window.CARVE_MAP.points.length")
    assert n == total == len(env.fab.event_ids)
    assert page.locator("#map canvas").count() == 1  # points are drawn on one canvas, not as DOM nodes
    assert page.locator("#map svg .point").count() == 0
    assert page.evaluate("typeof window.Plotly") == "undefined"  # the map page does not load plotly.js
    shot(page, "map")
    # an isolated point (the under-covered cluster's lone event), so the hover cannot pick a neighbour
    i = page.evaluate(f"window.CARVE_MAP.points.findIndex(p => p.cluster === {env.fab.tiny_cluster})")
    assert i >= 0
    pt = page.evaluate(f"window.CARVE_MAP.points[{i}]")
    x, y = _point_xy(page, i)
    page.mouse.move(x - 30, y - 30)
    page.mouse.move(x, y, steps=5)
    page.wait_for_function("id => document.querySelector('#hover-text').textContent.includes(id)", arg=pt["event_id"])
    assert pt["caption"] in page.inner_text("#hover-text")
    page.wait_for_function("() => { const im = document.querySelector('#hover-img');"
                           " return !im.hidden && im.complete && im.naturalWidth > 0; }")
    shot(page, "map-hover")
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(r"/ui/event\?"))
    assert f"id={pt['event_id']}" in page.url
    page.wait_for_function("id => document.querySelector('#ev-id').textContent === id", arg=pt["event_id"])
    page.wait_for_selector("#ev-meta dd")
    assert pt["caption"] in page.inner_text("#ev-meta")
    shot(page, "event-from-map")


@browser
def test_map_first_screen_is_one_binary_request(env: Env, page: Any):
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    _open_map(env, page, "&task=" + env.get("/datasets/sim/map/facets")["facets"]["task"][0]["value"])
    frames = [u for u in seen if "/map/frame?" in u]
    assert len(frames) == 1 and "task=" in frames[0]  # started by the page's head, taken over by ui.js
    assert not [u for u in seen if re.search(r"/datasets/[^/?]+/map(\?|$)|/map/bins|plotly", u)]  # no row JSON, no plotly.js
    n = page.evaluate("window.CARVE_MAP.points.length")
    assert page.inner_text("#map-info").startswith(f"{n} of {n} events")


@browser
def test_map_first_screen_comes_in_the_page(env: Env, page: Any):
    """A dataset's whole map needs no request beyond the page: the page carries the first screen's
    frame, made for the canvas the page measured last time (a cookie); the filters' lists are asked
    for after the map is drawn."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    _open_map(env, page)
    assert not [u for u in seen if "/map/frame" in u], seen
    assert not [u for u in seen if "/ui/static/" in u], seen  # its style and script come in the page too
    canvas = page.evaluate("[window.CARVE_MAP.w, window.CARVE_MAP.h]")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["carve_map_screen"]
    assert cookie == f"{round(canvas[0])}x{round(canvas[1])}"
    whole = env.get("/datasets/sim/map?limit=1")["total"]
    n = page.evaluate("window.CARVE_MAP.points.length")
    assert 0 < n <= whole and page.inner_text("#map-info").startswith(f"{n} of {whole} events")
    filters = [i for i, u in enumerate(seen) if "/map/facets" in u]
    assert filters, seen
    page.set_viewport_size({"width": 700, "height": 900})  # a narrower window: the frame in the page no longer
    seen.clear()                                           # fits, so it is asked for at the new size
    _open_map(env, page)
    w = page.evaluate("window.CARVE_MAP.w")
    assert w < canvas[0] - 100
    frames = [u for u in seen if "/map/frame" in u]
    assert len(frames) == 1 and f"width={round(w)}" in frames[0], frames
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex"  # ui.css applied
    assert {c["name"]: c["value"] for c in page.context.cookies()}["carve_map_screen"].startswith(f"{round(w)}x")
    seen.clear()  # and from then on the page carries a frame made for it
    _open_map(env, page)
    assert not [u for u in seen if "/map/frame" in u], seen
    shot(page, "map-inline")


@browser
def test_map_zoom_asks_for_the_visible_box(env: Env, page: Any):
    _open_map(env, page)
    n0 = page.evaluate("window.CARVE_MAP.points.length")
    i = page.evaluate(f"window.CARVE_MAP.points.findIndex(p => p.cluster === {env.fab.tiny_cluster})")
    x, y = _point_xy(page, i)
    page.mouse.move(round(x), round(y))  # the wheel zooms around the (whole) pixel under the pointer
    for _ in range(4):
        page.mouse.wheel(0, -400)  # zoom in around the lone point: about 24x
    page.wait_for_selector("#map[data-refined]", state="attached")
    page.wait_for_function("() => { const m = window.CARVE_MAP, v = m.view; return m.points.length > 0 &&"
                           " m.points.every(p => p.x >= v[0] && p.x <= v[1] && p.y >= v[2] && p.y <= v[3]); }")
    zoomed = page.evaluate("window.CARVE_MAP.points.map(p => p.event_id)")
    assert 0 < len(zoomed) < n0 and env.get("/datasets/sim/map?limit=1")["total"] == n0
    assert "in view" in page.inner_text("#map-info")
    shot(page, "map-zoomed")
    x, y = _point_xy(page, page.evaluate(f"window.CARVE_MAP.points.findIndex(p => p.cluster === {env.fab.tiny_cluster})"))
    page.mouse.click(x, y)  # a point of the refined sample still opens its event
    page.wait_for_url(re.compile(r"/ui/event\?"))


@browser
def test_event_view_plays_clip_and_marks_boundaries(env: Env, page: Any):
    eid = env.fab.event_ids[3]
    ev = env.get(f"/events/{eid}?images=false")
    page.goto(f"{env.srv.url}/ui/event?id={eid}&dataset=sim")
    page.wait_for_function("() => { const v = document.querySelector('#clip'); return v.currentTime > 0.3; }")
    t1 = page.evaluate("document.querySelector('#clip').currentTime")
    page.wait_for_function("t => document.querySelector('#clip').currentTime !== t", arg=t1)
    assert page.evaluate("document.querySelector('#clip').loop") is True
    assert page.evaluate("document.querySelector('#clip').videoWidth") > 0
    page.wait_for_selector("#signals[data-ready='1']")
    sig = page.inner_text("#signals")
    assert f"end: {ev['boundary_reason']}" in sig and f"start: {ev['start_reason']}" in sig
    meta = page.inner_text("#ev-meta")
    assert ev["caption"] in meta and ev["caption_status"] in meta and f"cluster {ev['cluster_id']}" in meta
    page.wait_for_selector("#neighbours li a")
    nb = env.get(f"/events/{eid}/neighbours?k=8")["neighbours"]
    assert page.locator("#neighbours li a").count() == len(nb) > 0
    assert page.locator("#keyframes img").count() == ev["num_keyframes"]
    shot(page, "event-clip-playing")


@browser
def test_filter_by_task(env: Env, page: Any):
    _open_map(env, page)
    facets = env.get("/datasets/sim/map/facets")["facets"]
    task = facets["task"][1]
    page.select_option("#f-task", task["value"])
    page.wait_for_function("n => window.CARVE_MAP.points.length === n", arg=task["count"])
    tasks = set(page.evaluate("window.CARVE_MAP.points.map(p => p.task)"))
    assert tasks == {task["value"]}
    assert "task=" in page.url  # the filter is in the address, so the view can be shared
    assert page.inner_text("#map-info").startswith(f"{task['count']} of {task['count']} events")
    shot(page, "map-filtered-by-task")
    page.reload()  # the filter survives a reload
    page.wait_for_selector("#map[data-ready='1']")
    page.wait_for_selector("#filters[data-ready='1']")
    page.wait_for_function("n => window.CARVE_MAP.points.length === n", arg=task["count"])
    assert page.input_value("#f-task") == task["value"]


@browser
def test_flag_event_is_in_api_and_left_out_of_next_shards(env: Env, page: Any):
    from carve.shard.cut import cut_shards
    from carve.storage.root import open_root

    eid = env.fab.event_ids[7]
    page.goto(f"{env.srv.url}/ui/event?id={eid}&dataset=sim")
    page.wait_for_selector("#flags li")
    page.select_option("#flag-kind", "wrong_caption")
    page.fill("#flag-note", "says cube; it is a ball")
    shot(page, "flag-form")
    page.click("#flag-submit")
    page.wait_for_selector("#flags li.flag")
    assert "says cube; it is a ball" in page.inner_text("#flags")
    shot(page, "flagged")
    flags = env.get(f"/events/{eid}/flags")
    flags = flags if isinstance(flags, list) else flags["flags"]
    active = [f for f in flags if f["state"] == "active"]
    assert len(active) == 1 and active[0]["kind"] == "wrong_caption" and active[0]["note"] == "says cube; it is a ball"
    assert active[0]["who"] and active[0]["created_at"]

    root = open_root(env.fab.root)
    version = cut_shards(root, env.cfg)
    sdir = Path(env.fab.root) / "shards" / f"v{version:03d}"
    ids = set()
    for part in sorted(sdir.glob("part-*.parquet")):
        ids |= set(pq.read_table(part, columns=["event_id"]).column("event_id").to_pylist())
    assert ids, "the new shard version is empty"
    assert eid not in ids
    assert env.fab.event_ids[8] in ids or env.fab.event_ids[9] in ids  # others are kept
    manifest = json.loads((sdir / "manifest.json").read_text())
    assert manifest["version"] == version

    page.click("#flags li.flag button.unflag")  # unflag: kept in the audit trail as cleared
    page.wait_for_function("() => !document.querySelector('#flags button.unflag')")
    assert "unflagged" in page.inner_text("#flags")
    flags = env.get(f"/events/{eid}/flags")
    flags = flags if isinstance(flags, list) else flags["flags"]
    assert [f["state"] for f in flags] == ["cleared"]
    shot(page, "unflagged")


@browser
def test_coverage_csv_download(env: Env, page: Any):
    from carve.shard.cut import cut_shards
    from carve.storage.root import open_root

    cut_shards(open_root(env.fab.root), env.cfg, policy="uniform")  # at least two shard versions to compare
    page.goto(f"{env.srv.url}/ui/coverage?dataset=sim")
    page.wait_for_selector("#cov-table[data-ready='1']")
    page.select_option("#cov-kind", "shards")  # compare the last two shard versions
    page.wait_for_function("() => location.search.includes('kind=shards')")
    page.wait_for_selector("#cov-table[data-ready='1']")
    assert page.input_value("#cov-from") != page.input_value("#cov-to")
    page.wait_for_function("() => (document.querySelector('#cov-csv').getAttribute('href') || '').startsWith('blob:')")
    q = dict(x.split("=") for x in page.url.split("?", 1)[1].split("&"))
    assert set(q) >= {"dataset", "from", "to", "kind"}
    cov = env.get(f"/datasets/sim/coverage?from={q['from']}&to={q['to']}&kind={q['kind']}")
    under = cov["under_covered"]
    assert any(u["cluster"] == env.fab.tiny_cluster for u in under)
    assert f"cluster {env.fab.tiny_cluster}" in page.inner_text("#cov-under")
    page.wait_for_function("n => document.querySelectorAll('#cov-table tbody tr').length === n", arg=len(cov["clusters"]))
    for status in ("grew", "shrank", "appeared"):
        n = sum(1 for c in cov["clusters"] if c["status"] == status)
        assert page.locator(f"#cov-table tbody tr.{status}").count() == n
    shot(page, "coverage")
    with page.expect_download() as dl_info:
        page.click("#cov-csv")
    dl = dl_info.value
    assert dl.suggested_filename.endswith(".csv")
    data = Path(dl.path()).read_bytes()
    api_csv = env.api.get(f"/datasets/sim/coverage.csv?from={q['from']}&to={q['to']}&kind={q['kind']}").content
    assert data == api_csv
    text = data.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {int(r["cluster"]) for r in rows} == {u["cluster"] for u in under}
    shot(page, "coverage-downloaded")


@browser
def test_keyboard_navigation(env: Env, page: Any):
    _open_map(env, page)
    page.keyboard.press("?")
    assert page.is_visible("#help")
    assert "next event or point" in page.inner_text("#help")
    shot(page, "keyboard-help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "f-dataset"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus is visible
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.evaluate("window.CARVE_MAP.sel") == 0
    p0 = page.evaluate("window.CARVE_MAP.points[0]")
    page.wait_for_function("id => document.querySelector('#hover-text').textContent.includes(id)", arg=p0["event_id"])
    shot(page, "keyboard-map-selected")
    page.keyboard.press("f")  # flag the selected point: its event opens with the flag form focused
    page.wait_for_url(re.compile(r"/ui/event\?.*flag=1"))
    assert f"id={p0['event_id']}" in page.url
    page.wait_for_function("() => document.activeElement.id === 'flag-kind'")
    page.go_back()
    page.wait_for_selector("#map[data-ready='1']")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/event\?"))
    assert f"id={p0['event_id']}" in page.url
    page.wait_for_selector("#neighbours li a")
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.closest('#neighbours') !== null")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    first = page.evaluate("document.activeElement.getAttribute('href')")
    shot(page, "keyboard-neighbour")
    page.keyboard.press("f")
    assert page.evaluate("document.activeElement.id") == "flag-kind"
    page.keyboard.press("Escape")
    page.keyboard.press("k")
    page.keyboard.press("Enter")  # opens the selected neighbour
    page.wait_for_url(re.compile(re.escape(first.split("?")[1])))
    shot(page, "keyboard-opened-neighbour")


@browser
def test_cluster_browser(env: Env, page: Any):
    c = 1
    data = env.get(f"/datasets/sim/clusters/{c}?offset=0&limit=60")
    page.goto(f"{env.srv.url}/ui/cluster?dataset=sim&c={c}")
    page.wait_for_selector("#cl-grid li")
    assert page.locator("#cl-grid li").count() == len(data["events"])
    sizes = page.inner_text("#cl-sizes")
    assert str(data["balance"]["before"]) in sizes and str(data["balance"]["after"]) in sizes
    assert "task" in page.inner_text("#cl-members")
    page.hover("#cl-grid li:first-child")
    page.wait_for_function("() => { const v = document.querySelector('#cl-grid li:first-child video');"
                           " return v && v.currentTime > 0.2; }")
    shot(page, "cluster-browser")


@browser
def test_static_export_loads_from_file(env: Env, tmp_path: Path):
    from fastapi.testclient import TestClient

    from carve.report.ui_export import export_ui

    client = TestClient(create_app(env.cfg, start_runner=False))

    def get(path: str) -> tuple[int, bytes]:
        r = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        return r.status_code, r.content

    out = tmp_path / "ui"
    summary = export_ui(get, out, max_events=6)
    assert summary["missing"] == []
    ctx = env.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = ctx.new_page()
        outside = record_external(page, ("file:", "data:", "blob:"))
        page.goto((out / "map.html").as_uri() + "?dataset=sim")
        page.wait_for_selector("#map[data-ready='1']", timeout=TIMEOUT_MS)
        assert page.evaluate("window.CARVE_MAP.points.length") == len(env.fab.event_ids)
        shot(page, "static-map")
        page.keyboard.press("j")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"event\.html\?"), timeout=TIMEOUT_MS)
        page.wait_for_selector("#ev-meta dd", timeout=TIMEOUT_MS)
        page.wait_for_function("() => document.querySelector('#clip').currentTime > 0.2", timeout=TIMEOUT_MS)
        assert page.is_disabled("#flag-submit")  # flagging needs the server
        shot(page, "static-event")
        assert outside == []
    finally:
        ctx.close()


def test_ui_export_cli_writes_a_static_folder(tmp_path: Path):
    """`carve ui-export`: pages, assets, snapshots and media, and nothing that points off the folder."""
    from carve.cli.main import main

    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=3, videos=True)
    out = tmp_path / "export"
    assert main(["ui-export", "--root", str(fab.root), "--out", str(out), "--max-events", "4"]) == 0
    summary = json.loads((out / "export.json").read_text())
    assert summary["missing"] == [] and summary["events"] == 4
    for name in ("index", "map", "event", "cluster", "coverage", "quality"):
        html = (out / f"{name}.html").read_text()
        assert '"mode": "static"' in html and "http://" not in html and "https://" not in html
    assert (out / "static" / "plotly.min.js").stat().st_size > 1_000_000
    snap = (out / "data" / "_datasets_sim_map.js").read_text()
    assert snap.startswith('CARVE_SNAP_PUT("/datasets/sim/map", ')
    points = json.loads(snap[len('CARVE_SNAP_PUT("/datasets/sim/map", '):-3])["points"]
    assert len(points) == len(fab.event_ids)
    quality = (out / "data" / "_datasets_sim_quality.js").read_text()  # the quality page's data and drop list
    assert quality.startswith('CARVE_SNAP_PUT("/datasets/sim/quality", ')
    assert (out / "media" / "_datasets_sim_quality.csv").read_text().startswith("episode_index,episode_id,")
    clips = list((out / "media").glob("*_clip.mp4"))
    assert len(clips) == 4 and all(c.read_bytes()[4:8] == b"ftyp" for c in clips)
