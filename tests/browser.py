"""Headless Chromium (Playwright) for the browser tests (test_ui_browser.py, test_report_browser.py):
the skip-or-fail check, the launch, an analyst's context and the hook that records requests that
leave the test server.

Skips with a reason naming the Debian package when chromium (or fonts-dejavu-core, or the
playwright package) is missing, unless CARVE_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from requires import chromium_path, require_chromium

TOKEN = "browser-token-0123456789abcdef"


def need_browser() -> None:
    """Skip the test (fail it under CARVE_REQUIRE_BROWSER=1) without Debian's chromium and
    fonts-dejavu-core or the playwright package (the probe and the rule: requires.py)."""
    require_chromium()


def launch(pw: Any, *args: str) -> Any:
    """Headless Debian chromium from a `sync_playwright()` handle, with extra command-line `args`."""
    return pw.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox", *args])


def analyst_context(browser: Any, **kw: Any) -> Any:
    """A 1280x900 browser context logged in as the analyst (HTTP basic auth with the test token)."""
    return browser.new_context(http_credentials={"username": "analyst", "password": TOKEN},
                               viewport={"width": 1280, "height": 900}, **kw)


def record_external(page: Any, allowed: tuple[str, ...]) -> list[str]:
    """The list the page's requests to URLs not starting with one of `allowed` are appended to."""
    external: list[str] = []
    page.on("request", lambda req: external.append(req.url) if not req.url.startswith(allowed) else None)
    return external


@contextlib.contextmanager
def watched_page(browser: Any, base_url: str, timeout_ms: int) -> Iterator[Any]:
    """A page of a fresh analyst context that, when the test is done, asserts no request left the
    host (`base_url`, data: and blob: URLs only) and no script error happened."""
    ctx = analyst_context(browser, accept_downloads=True)
    ctx.set_default_timeout(timeout_ms)
    p = ctx.new_page()
    external = record_external(p, (base_url, "data:", "blob:"))
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield p
        assert external == [], f"requests left the host: {external}"
        assert errors == [], f"script errors: {errors}"
    finally:
        ctx.close()
