"""The coverage report page in headless Chromium (Playwright): charts load, cluster cards render.

Skips when /usr/bin/chromium or Playwright is missing, unless CARVE_REQUIRE_BROWSER=1 (CI),
where that is a failure. Saves a screenshot to tests/artifacts/report.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import TOKEN, analyst_context, launch, need_browser, record_external

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.sim.service_fakes import LiveServer, fabricate_root

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.browser


def test_report_page_renders_charts_and_cards(tmp_path: Path):
    need_browser()
    from playwright.sync_api import sync_playwright

    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=8)
    cfg = CarveConfig.model_validate({"root": str(fab.root), "service": {"token": TOKEN}})
    with LiveServer(create_app(cfg, start_runner=False)) as srv, sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = analyst_context(browser).new_page()
            external = record_external(page, (srv.url, "data:"))
            resp = page.goto(f"{srv.url}/report/sim", wait_until="load")
            assert resp is not None and resp.status == 200
            assert "Coverage audit: sim" in page.title() + page.inner_text("h1")
            for chart in ("sizes", "map", "coverage"):
                img = page.locator(f"#chart-{chart}")
                assert img.count() == 1, chart
                loaded = img.evaluate("el => el.complete && el.naturalWidth > 0")
                assert loaded, f"chart {chart} did not load"
            cards = page.locator(".card")
            assert cards.count() == fab.k
            thumbs = page.locator(".card .thumbs img")
            assert thumbs.count() >= 3
            assert all(thumbs.nth(i).evaluate("el => el.naturalWidth > 0") for i in range(thumbs.count()))
            flagged = page.locator(".card.flag")
            assert flagged.count() >= 1
            assert f"cluster {fab.tiny_cluster}" in flagged.first.inner_text()
            assert external == []  # readable without a network
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
