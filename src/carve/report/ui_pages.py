"""The analysts' pages (`/ui/` of `carve serve`, and the static export): shells and assets.

Every page is a small HTML shell rendered from `report/templates/ui/<page>.html.j2` (jinja2,
autoescaped) plus two static files of `report/static/` (`ui.js`, `ui.css`) and, on the event
page, plotly.js, which is read from the installed `plotly` package
(`plotly/package_data/plotly.min.js`; the map draws on a plain canvas without it): nothing is
loaded from a CDN or any other host. The data come from the HTTP API through `fetch()` in the
served pages, or from JSON snapshots (`data/*.js`, loaded by `<script>` so that `file://`
works) in the static export (`report.ui_export`). The API paths the script reads are not
spelled in it: each page's config carries `carve.audit.paths.PATHS`, the table the routes are
declared with and the export asks for.

* `PAGES`: the page names (`map`, `event`, `cluster`, `coverage`, `quality`, `index`).
* `render_ui(page, mode=..., token=..., base=...)` -> HTML of one shell. A served map page that
  carries its first screen (`frame`) carries `ui.css` and `ui.js` inline as well, so that a
  browser that holds neither draws the map from the one response (`inline_assets`).
* `static_file(name)` -> (bytes, media type) of `ui.js`, `ui.css` or `plotly.min.js`.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from markupsafe import Markup

from carve.audit.paths import CLUSTER_PAGE, PATHS
from carve.report.render import ENV

PAGES = ("index", "map", "event", "cluster", "coverage", "quality")
STATIC_DIR = Path(__file__).resolve().parent / "static"
_MEDIA = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
STATIC_FILES = ("ui.js", "ui.css", "plotly.min.js")

KEYS = (  # (key, what it does) - the help overlay of every page and the docs
    ("j / ↓ / →", "next event or point"),
    ("k / ↑ / ←", "previous event or point"),
    ("Enter", "open the selected event (or cluster)"),
    ("f", "flag the event: focus its flag form (on the map: of the selected point)"),
    ("/", "focus the first filter"),
    ("g m / g c / g q", "go to the map / the coverage / the quality page"),
    ("Esc", "close help, leave a field"),
    ("?", "show or hide this help"),
)


def plotly_js_path() -> Path:
    """plotly.min.js as the installed `plotly` package ships it (FileNotFoundError without it)."""
    spec = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    path = Path(str(spec))
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: pip install plotly")
    return path


@lru_cache(maxsize=8)
def _read(name: str) -> bytes:
    if name == "plotly.min.js":
        return plotly_js_path().read_bytes()
    return (STATIC_DIR / name).read_bytes()


def static_file(name: str) -> tuple[bytes, str]:
    """(content, media type) of one of STATIC_FILES; KeyError for anything else."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return _read(name), _MEDIA[Path(name).suffix]


@dataclass(frozen=True)
class InlineAssets:
    """`ui.css` and `ui.js` as a page carries them in its own `<style>` and `<script>`."""

    css: Markup
    js: Markup


@lru_cache(maxsize=1)
def inline_assets() -> InlineAssets:
    """The two static files to put inside a page; ValueError if either holds the text that would
    end its element early (`</style` / `</script`, any case), which the file then has to avoid."""
    css, js = _read("ui.css").decode(), _read("ui.js").decode()
    for name, text, end in (("ui.css", css, "</style"), ("ui.js", js, "</script")):
        if end in text.lower():
            raise ValueError(f"{STATIC_DIR / name} contains {end!r}: it cannot be carried inside a page")
    return InlineAssets(css=Markup(css), js=Markup(js))


@dataclass(frozen=True)
class InlineFrame:
    """A map frame (`carve.audit.mapframe`) the served map page carries in its HTML, base64, so that
    its first screen needs no second request: made for `dataset`'s whole map on a width x height canvas."""

    dataset: str
    width: int
    height: int
    b64: str


def render_ui(page: str, *, mode: str = "server", token: str = "", base: str = "/ui/",
              title: str | None = None, snapshots: list[str] | None = None,
              user: dict[str, Any] | None = None, frame: InlineFrame | None = None) -> str:
    """The HTML shell of `page`. `mode` is "server" (data from the API, `token` sent as Bearer)
    or "static" (data from `data/*.js` snapshots beside the page; `snapshots` lists the keys the
    export holds). `base` is where the static assets are (`/ui/static/` or `static/`). `user`:
    the signed-in user ({name, role, may: {action: bool}}), shown on the page, whose `may`
    hides the actions the role may not take (None: a static export, no user). `frame`: the map's
    first screen, carried in the map page (served mode), with `ui.css` and `ui.js` inline: a
    fresh browser then draws it with no request but the page's (measured: bench/bench_ui.py)."""
    if page not in PAGES:
        raise KeyError(page)
    cfg = {"mode": mode, "base": base, "token": token, "page": page, "snapshots": snapshots or [], "paths": PATHS,
           "cluster_page": CLUSTER_PAGE, "user": user,
           "frame": None if frame is None else {"dataset": frame.dataset, "width": frame.width, "height": frame.height}}
    tpl = ENV.get_template(f"ui/{page}.html.j2")
    return tpl.render(
        page=page, title=title or page, keys=KEYS, static_base=base + "static/", frame=frame,
        assets=inline_assets() if frame is not None else None,
        # JSON in a <script type=application/json>: '<' is escaped so no value can close the tag
        config_json=Markup(json.dumps(cfg).replace("<", "\\u003c")),
    )
