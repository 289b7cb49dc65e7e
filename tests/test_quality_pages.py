"""The analysts' quality pages (issues 19, 26): the quality gate's findings per dataset, on the map
and on the event page, over a real uvicorn server and a fabricated root (real H.264 sources).

Known findings at known spans are recorded in the catalog's `defects` table the way `carve run`
records them (`storage.defects.record_defects`); the fabricated root also has one quarantined
episode per dataset. Provenance (source file, key, span in source seconds) is written into the
events and the catalog's episodes. Every expectation is computed here from those rows and the
events' frames, not read back from the code under test: counts by kind and severity, the drop
list, the score (`carve.quality.defects.EpisodeReport`), the map's defect facet (event [start,
end) x finding [start, end] spans), the findings of `/events/{id}`, the OpenAPI models, the
static export, and (headless Chromium) the quality page and the event page's bands and provenance.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from browser import TOKEN  # the analyst's browser context logs in with it (tests/browser.py)

from carve.audit import models as am
from carve.audit.paths import PATHS, url
from carve.core.config import CarveConfig
from carve.quality.defects import Defect, EpisodeReport
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root
from carve.storage.catalog import EPISODES, Catalog
from carve.storage.defects import record_defects
from carve.storage.flags import add_flag

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DS = "sim"
# episode -> findings (kind, severity, start_frame, end_frame inclusive, detail); events are frames
# [10 i, 10 i + 10) of 60-frame episodes (service_fakes.fabricate_root)
FINDINGS: dict[str, list[tuple[str, str, int, int, str]]] = {
    f"{DS}/ep0001": [("nan", "error", 12, 14, "NaN in action[2]"), ("idle_head", "warning", 0, 9, "still for 0.8 s")],
    f"{DS}/ep0002": [("state_jump", "error", 25, 25, "x jumps 0.4 m in one frame"),
                     ("gripper_chatter", "warning", 30, 47, "7 transitions in 1.5 s")],
    f"{DS}/ep0003": [("truncated", "warning", 55, 59, "ends moving at 0.3 m/s")],
}


def _record(cat: Catalog, findings: dict[str, list[tuple[str, str, int, int, str]]]) -> None:
    with cat.transaction() as c:
        record_defects(c, [{"episode_id": ep, "dataset": DS, "batch": "b1", "defects": json.dumps([
            {"kind": k, "severity": s, "start_frame": a, "end_frame": b, "detail": d} for k, s, a, b, d in rows])}
            for ep, rows in findings.items()])


def _src_file(episode_index: int) -> str:
    return f"data/chunk-000/episode_{episode_index:06d}.parquet"


def _add_provenance(root: Path) -> None:
    """Provenance on every event (file, key, span in source seconds) and catalog episode."""
    for f in sorted((root / "events").rglob("*.parquet")):
        t = pq.read_table(f)
        idx = t.column("episode_index").to_pylist()
        fps = [float(x or 12.0) for x in t.column("fps").to_pylist()]
        vals = {"source_file": pa.array([_src_file(i) for i in idx], pa.string()),
                "source_key": pa.array([f"episode_index={i}" for i in idx], pa.string()),
                "source_start_s": pa.array([s / r for s, r in zip(t.column("start_frame").to_pylist(), fps, strict=True)],
                                           pa.float64()),
                "source_end_s": pa.array([e / r for e, r in zip(t.column("end_frame").to_pylist(), fps, strict=True)],
                                         pa.float64())}
        for name, arr in vals.items():
            t = t.set_column(t.schema.get_field_index(name), t.schema.field(name), arr)
        pq.write_table(t, f)
    with Catalog(root) as cat, cat.transaction() as c:
        for r in c.execute(sa.select(EPISODES.c.episode_id, EPISODES.c.episode_index)).all():
            c.execute(EPISODES.update().where(EPISODES.c.episode_id == r.episode_id)
                      .values(source_file=_src_file(r.episode_index), source_key=f"episode_index={r.episode_index}"))


class Env:
    def __init__(self, fab: Any, cfg: CarveConfig, srv: LiveServer, client: httpx.Client, kept: str):
        self.fab, self.cfg, self.srv, self.c, self.kept = fab, cfg, srv, client, kept

    def get(self, path: str, **params: Any) -> Any:
        r = self.c.get(path, params=params or None)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()


def _events(root: Path) -> list[dict[str, Any]]:
    t = pq.read_table(root / "events", columns=["event_id", "episode_id", "dataset", "start_frame", "end_frame"])
    return [r for r in t.to_pylist() if r["dataset"] == DS]


def _touch(ev: dict[str, Any], a: int, b: int) -> bool:
    """Event frames [start, end) and finding frames [a, b] share a frame (computed by hand)."""
    return bool(set(range(ev["start_frame"], ev["end_frame"])) & set(range(a, b + 1)))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    fab = fabricate_root(tmp_path_factory.mktemp("quality") / "root", datasets=(DS,), episodes=5, videos=True)
    _add_provenance(fab.root)
    evs = _events(fab.root)
    kept = next(e["event_id"] for e in evs if e["episode_id"] == f"{DS}/ep0002" and _touch(e, 25, 25))
    with Catalog(fab.root) as cat:
        _record(cat, FINDINGS)
        add_flag(cat, kept, "keep", who="analyst", note="the jump is a re-grasp", episode_id=f"{DS}/ep0002", dataset=DS)
    cfg = CarveConfig.model_validate({"root": str(fab.root), "service": {"token": TOKEN, "rate_limit_per_min": 100_000}})
    with LiveServer(create_app(cfg, start_runner=False)) as srv, \
            httpx.Client(base_url=srv.url, headers=AUTH, timeout=60) as client:
        yield Env(fab, cfg, srv, client, kept)


def _all_findings(fab: Any) -> dict[str, list[tuple[str, str, int, int, str]]]:
    """The inserted findings plus the quarantined episodes (one `unreadable` error each)."""
    return {**FINDINGS, **{ep: [("unreadable", "error", 0, 0, "quarantined")] for ep in fab.failures}}


def test_quality_counts_by_kind_and_severity(env: Env):
    q = env.get(url("quality", name=DS))
    allf = _all_findings(env.fab)
    # per (kind, severity): episodes with the kind, and findings of the kind
    expect = {(k, s): (sum(1 for rows in allf.values() if any(r[0] == k for r in rows)),
                       sum(1 for rows in allf.values() for r in rows if r[0] == k))
              for rows in allf.values() for k, s, *_ in rows}
    assert {(k["kind"], k["severity"]): (k["episodes"], k["findings"]) for k in q["by_kind"]} == expect
    for sev in ("error", "warning"):
        row = next(r for r in q["by_severity"] if r["severity"] == sev)
        assert row["findings"] == sum(1 for rows in allf.values() for r in rows if r[1] == sev)
        assert row["episodes"] == sum(1 for rows in allf.values() if any(r[1] == sev for r in rows))
    assert q["episodes"] == 5 and q["quarantined"] == len(env.fab.failures) == 1
    assert q["episodes_checked"] == 5 + len(env.fab.failures)
    assert q["episodes_with_findings"] == len(allf)
    assert q["findings"] == sum(len(v) for v in allf.values())
    assert q["by_kind"][0]["severity"] == "error"  # errors first


def test_score_is_the_quality_packages_and_worst_first(env: Env):
    q = env.get(url("quality", name=DS))
    allf = _all_findings(env.fab)
    assert {w["episode_id"] for w in q["worst"]} == set(allf)
    for w in q["worst"]:
        rep = EpisodeReport(episode_index=w["episode_index"],
                            defects=[Defect(k, a, b, d) for k, _s, a, b, d in allf[w["episode_id"]]])
        assert w["score"] == rep.score, w["episode_id"]
        assert w["kinds"] == sorted({r[0] for r in allf[w["episode_id"]]})
    assert [w["score"] for w in q["worst"]] == sorted(w["score"] for w in q["worst"])
    assert q["worst"][0]["episode_id"] in env.fab.failures and q["worst"][0]["score"] == 0
    assert q["worst"][0]["quarantine_reason"]
    ep1 = next(w for w in q["worst"] if w["episode_id"] == f"{DS}/ep0001")
    assert ep1["source_file"] == _src_file(1) and ep1["source_key"] == "episode_index=1"
    assert ep1["score"] == 100 - 35 - 10
    # the link opens the event the error touches
    ev = next(e for e in _events(env.fab.root) if e["event_id"] == ep1["event_id"])
    assert ev["episode_id"] == f"{DS}/ep0001" and _touch(ev, 12, 14)
    ep2 = next(w for w in q["worst"] if w["episode_id"] == f"{DS}/ep0002")
    assert (ep2["events_gated"], ep2["kept_events"]) == (1, 1)  # the keep flag overrules the gate for it
    assert env.get(url("quality", name=DS), worst=1)["worst"] == q["worst"][:1]
    assert env.c.get(url("quality", name="nope")).status_code == 404


def test_drop_list_csv(env: Env):
    r = env.c.get(url("quality_csv", name=DS))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["episode_index", "episode_id", "source_file", "source_key", "score", "kinds",
                             "kept_events"]
    allf = _all_findings(env.fab)
    expect = {ep for ep, fs in allf.items() if any(s == "error" for _k, s, *_ in fs)}
    assert {r["episode_id"] for r in rows} == expect == {f"{DS}/ep0001", f"{DS}/ep0002", *env.fab.failures}
    by = {r["episode_id"]: r for r in rows}
    assert by[f"{DS}/ep0001"]["source_file"] == _src_file(1) and by[f"{DS}/ep0001"]["kinds"] == "idle_head;nan"
    assert by[f"{DS}/ep0001"]["score"] == "55" and by[env.fab.failures[0]]["score"] == "0"
    assert by[f"{DS}/ep0002"]["kept_events"] == "1"
    assert [int(r["episode_index"]) for r in rows] == sorted(int(r["episode_index"]) for r in rows)


def test_defect_facet_counts_events_a_finding_touches(env: Env):
    evs = _events(env.fab.root)
    tags = {e["event_id"]: {k for k, _s, a, b, _d in FINDINGS.get(e["episode_id"], []) if _touch(e, a, b)}
            for e in evs}
    expect: dict[str, int] = {}
    for t in tags.values():
        for k in t:
            expect[k] = expect.get(k, 0) + 1
    expect["none"] = sum(1 for t in tags.values() if not t)
    fa = env.get(url("facets", name=DS))
    got = {r["value"]: r["count"] for r in fa["facets"]["defect"]}
    assert got == expect and expect["gripper_chatter"] == 2
    for kind in expect:
        m = env.get(url("map", name=DS), defect=kind)
        want = {e for e, t in tags.items() if (kind in t if kind != "none" else not t)}
        assert m["total"] == len(want) and {p["event_id"] for p in m["points"]} == want, kind
        b = env.get(url("bins", name=DS), defect=kind, bins=4)
        assert sum(c["count"] for c in b["cells"]) == len(want)
    both = env.get(url("map", name=DS), defect="nan", task=env.get(url("map", name=DS))["points"][0]["task"])
    assert both["total"] <= expect["nan"]
    assert env.get(url("map", name=DS), defect="black_video")["total"] == 0


def test_a_new_run_invalidates_the_facet(env: Env, tmp_path: Path):
    with Catalog(env.fab.root) as cat:
        _record(cat, {f"{DS}/ep0004": [("black_video", "error", 0, 59, "front is black")]})
    try:
        deadline = time.monotonic() + 15  # the findings' state is re-checked every ttl (stale for at most stale_ok_s)
        while True:
            got = {r["value"]: r["count"] for r in env.get(url("facets", name=DS))["facets"]["defect"]}
            if got.get("black_video") == 6 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert got.get("black_video") == 6
        q = env.get(url("quality", name=DS))
        assert any(k["kind"] == "black_video" and k["episodes"] == 1 for k in q["by_kind"])
    finally:
        with Catalog(env.fab.root) as cat:
            _record(cat, {f"{DS}/ep0004": []})
        deadline = time.monotonic() + 15
        while "black_video" in {r["value"] for r in env.get(url("facets", name=DS))["facets"]["defect"]}:
            assert time.monotonic() < deadline
            time.sleep(0.3)


def test_event_lists_exactly_the_findings_that_touch_it_and_its_provenance(env: Env):
    for e in [e for e in _events(env.fab.root) if e["episode_id"] in FINDINGS or e["episode_id"] == f"{DS}/ep0000"]:
        body = env.get(url("event", "images=false", event_id=e["event_id"]))
        want = sorted((k, s, a, b, d, a - e["start_frame"], b - e["start_frame"])
                      for k, s, a, b, d in FINDINGS.get(e["episode_id"], []) if _touch(e, a, b))
        got = sorted((f["kind"], f["severity"], f["start_frame"], f["end_frame"], f["detail"], f["event_start"],
                      f["event_end"]) for f in body["findings"])
        assert got == want, e["event_id"]
        errors = any(w[1] == "error" for w in want)
        gate = ("kept" if e["event_id"] == env.kept else "excluded") if errors else "pass"
        assert body["quality_gate"] == gate, e["event_id"]
        idx = int(e["episode_id"][-4:])
        assert body["source_file"] == _src_file(idx) and body["source_key"] == f"episode_index={idx}"
        assert body["source_start_s"] == pytest.approx(e["start_frame"] / 12.0)
        assert body["source_end_s"] == pytest.approx(e["end_frame"] / 12.0)
        assert am.EventResponse.model_validate(body).model_dump(exclude_unset=True) == body
    with_images = env.get(url("event", event_id=env.kept))
    assert len(with_images["keyframes"]) == with_images["num_keyframes"] > 0
    assert am.EventResponse.model_validate(with_images).model_dump(exclude_unset=True) == with_images
    assert env.c.get(url("event", event_id="0" * 20)).status_code == 404


def test_openapi_names_the_quality_models(env: Env):
    spec = env.get("/openapi.json")
    schemas = spec["components"]["schemas"]
    for name in ("QualityResponse", "EventResponse", "KindCount", "QualityEpisode", "EventFinding"):
        assert name in schemas, name
    for path, name in ((PATHS["quality"], "QualityResponse"), (PATHS["event"], "EventResponse")):
        ref = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{name}", path
    assert "text/csv" in spec["paths"][PATHS["quality_csv"]]["get"]["responses"]["200"]["content"]
    assert "defect" in spec["components"]["schemas"]["Facets"]["properties"]
    q = env.get(url("quality", name=DS))
    assert am.QualityResponse.model_validate(q).model_dump(exclude_unset=True) == q
    fa = env.get(url("facets", name=DS))
    assert am.MapFacetsResponse.model_validate(fa).model_dump(exclude_unset=True) == fa


def _export(env: Env, out: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from carve.report.ui_export import export_ui, snap_name

    client = TestClient(create_app(env.cfg, start_runner=False))

    def get(path: str) -> tuple[int, bytes]:
        r = client.get(path, headers=AUTH)
        return r.status_code, r.content

    summary = export_ui(get, out, max_events=4, clips=False)
    summary["snap"] = lambda key: json.loads((out / "data" / f"{snap_name(key)}.js").read_text()
                                             .split(", ", 1)[1].rsplit(");", 1)[0])
    summary["media_of"] = lambda key: out / "media" / snap_name(key)
    return summary


def test_ui_export_writes_the_quality_page_and_its_data(env: Env, tmp_path: Path):
    s = _export(env, tmp_path / "ui")
    assert s["missing"] == []
    html = (tmp_path / "ui" / "quality.html").read_text()
    assert '"page": "quality"' in html and '"mode": "static"' in html
    assert s["snap"](url("quality", name=DS)) == env.get(url("quality", name=DS))
    assert s["media_of"](url("quality_csv", name=DS)).read_bytes() == env.c.get(url("quality_csv", name=DS)).content
    # the worst episodes' events are exported (the page links to them), with their findings
    for w in env.get(url("quality", name=DS))["worst"]:
        if w["event_id"]:
            ev = s["snap"](url("event", "images=false", event_id=w["event_id"]))
            assert ev["findings"] and ev["episode_id"] == w["episode_id"]
    # each exported map point carries the kinds touching it (the static page filters by them)
    pts = s["snap"](url("map", name=DS))["points"]
    nan = {p["event_id"] for p in env.get(url("map", name=DS), defect="nan")["points"]}
    assert {p["event_id"] for p in pts if "nan" in p["defect"]} == nan


# -- in the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Any]:
    from browser import launch, need_browser

    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw, "--autoplay-policy=no-user-gesture-required")
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(env: Env, browser: Any) -> Iterator[Any]:
    from browser import watched_page

    with watched_page(browser, env.srv.url + "/", 30_000) as p:
        yield p


ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"


@pytest.mark.browser
def test_quality_page_shows_counts_worst_episodes_and_the_drop_list(env: Env, page: Any):
    q = env.get(url("quality", name=DS))
    page.goto(f"{env.srv.url}/ui/")
    page.click("#datasets a:has-text('quality')")
    page.wait_for_selector("#q-kinds[data-ready='1']")
    assert "dataset=sim" in page.url
    rows = page.locator("#q-kinds tbody tr")
    assert rows.count() == len(q["by_kind"])
    for k in q["by_kind"]:
        text = page.inner_text(f"#q-kinds tr[data-kind='{k['kind']}']")
        assert k["kind"] in text and k["severity"] in text and str(k["findings"]) in text
    assert page.locator("#q-worst tbody tr").count() == len(q["worst"])
    worst = page.inner_text("#q-worst")
    assert _src_file(1) in worst and "quarantined" in worst
    assert str(q["drop"]["episodes"]) in page.inner_text("#q-summary")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "quality-page.png"), full_page=True)
    page.wait_for_function("() => (document.querySelector('#q-csv').getAttribute('href') || '').startsWith('blob:')")
    with page.expect_download() as dl:
        page.click("#q-csv")
    assert Path(dl.value.path()).read_bytes() == env.c.get(url("quality_csv", name=DS)).content
    # a kind's link opens the map filtered by the defect facet
    page.click("#q-kinds a:has-text('gripper_chatter')")
    page.wait_for_selector("#map[data-ready='1']")
    page.wait_for_selector("#filters[data-ready='1']")  # the selects are filled after the first draw
    assert page.input_value("#f-defect") == "gripper_chatter"
    page.wait_for_function("n => window.CARVE_MAP.points.length === n", arg=2)


@pytest.mark.browser
def test_event_page_marks_defect_spans_and_shows_provenance(env: Env, page: Any):
    q = env.get(url("quality", name=DS))
    ep2 = next(w for w in q["worst"] if w["episode_id"] == f"{DS}/ep0001")
    eid = ep2["event_id"]
    ev = env.get(url("event", "images=false", event_id=eid))
    page.goto(f"{env.srv.url}/ui/quality?dataset={DS}")
    page.wait_for_selector("#q-kinds[data-ready='1']")
    page.click(f"#q-worst tr[data-episode='{DS}/ep0001'] a")
    page.wait_for_url(f"**/ui/event?id={eid}*")
    page.wait_for_selector("#signals[data-ready='1']")
    bands = page.evaluate("window.CARVE_EVENT.bands")
    assert [(b["kind"], b["severity"]) for b in bands] == [(f["kind"], f["severity"]) for f in ev["findings"]]
    assert ev["findings"] and "nan" in page.inner_text("#signals")  # the band's label on the plot
    # a band spans the finding's frames on the plot's time axis (seconds from the episode's start)
    nan = next(b for b in bands if b["kind"] == "nan")
    assert nan["x0"] == pytest.approx(12 / 12.0, abs=1e-4) and nan["x1"] == pytest.approx(15 / 12.0, abs=1e-4)
    spans = page.locator("#clip-timeline .tl-span")
    assert spans.count() == len(ev["findings"])
    assert page.get_attribute("#clip-timeline .tl-span[data-kind='nan']", "class").endswith("error")
    assert page.inner_text("#ev-source-file") == _src_file(1)
    assert page.inner_text("#ev-source-key") == "episode_index=1"
    assert page.inner_text("#ev-source-span") == f"{ev['source_start_s']:.3f} s – {ev['source_end_s']:.3f} s"
    assert "NaN in action[2]" in page.inner_text("#ev-findings") and "excluded" in page.inner_text("#ev-gate")
    page.wait_for_function("() => document.querySelector('#clip').currentTime > 0.2")
    page.screenshot(path=str(ARTIFACTS / "event-defect-bands.png"), full_page=True)


@pytest.mark.browser
def test_static_quality_page_and_defect_filter_load_from_file(env: Env, browser: Any, tmp_path: Path):
    from browser import record_external

    s = _export(env, tmp_path / "ui")
    assert s["missing"] == []
    q = env.get(url("quality", name=DS))
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = ctx.new_page()
        outside = record_external(page, ("file:", "data:", "blob:"))
        page.goto((tmp_path / "ui" / "quality.html").as_uri() + f"?dataset={DS}")
        page.wait_for_selector("#q-kinds[data-ready='1']", timeout=30_000)
        assert page.locator("#q-kinds tbody tr").count() == len(q["by_kind"])
        assert page.get_attribute("#q-csv", "href").startswith("media/")
        page.click("#q-kinds a:has-text('gripper_chatter')")  # the static map filters its exported points
        page.wait_for_selector("#map[data-ready='1']", timeout=30_000)
        page.wait_for_function("n => window.CARVE_MAP.points.length === n", arg=2, timeout=30_000)
        assert outside == []
    finally:
        ctx.close()
