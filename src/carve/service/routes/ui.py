"""The analysts' pages under `/ui/` (a key required, roles: service/access.py; a browser may
send it as the HTTP Basic password and is challenged for it, as on /report):

    GET /ui/                    the datasets
    GET /ui/map?dataset=&...    the embedding map (filters in the query string); a dataset's whole
                                map carries its first screen's binary frame in the page, with ui.css
                                and ui.js inline (docs/API.md)
    GET /ui/event?id=           one event: clip and signals (quality findings marked), caption,
                                source, findings, neighbours, flags
    GET /ui/cluster?dataset=&c= a cluster's events as thumbnails / clips
    GET /ui/coverage?dataset=   coverage between two versions, CSV download
    GET /ui/quality?dataset=    the quality gate's findings: counts by kind, worst episodes, drop list CSV
    GET /ui/static/{name}       ui.js, ui.css and plotly.min.js (from the installed plotly)

The pages are shells (report/ui_pages.py, report/templates/ui/); their script reads the API with
`fetch()`, sending the key the page was opened with as a Bearer header (the page is served
with `Cache-Control: no-store` so it is not kept; behind a trusted auth proxy there is no key
and the proxy's header goes with every request). Each page shows the signed-in user and role
and hides the actions that role may not take (`access.allowed_actions`); the server checks
every request anyway. Nothing is loaded from another host.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from carve.audit.model import NotFound
from carve.report.ui_pages import PAGES, STATIC_FILES, InlineFrame, render_ui, static_file
from carve.service.access import allowed_actions, authorize, principal_of
from carve.service.auth import presented_credential
from carve.service.deps import NAME_PATTERN, CatalogsDep, ViewsDep
from carve.service.routes.audit import first_screen

# authorize answers 401 on /ui with a Basic challenge, so that a browser asks for the key
router = APIRouter(tags=["ui"], dependencies=[Depends(authorize)])
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


# The map's canvas, as the page last measured it (a cookie its script sets), else that of a window
# 1280 px wide (ui.css: main padding, the hover card and the gap): the size of the inline frame
SCREEN_COOKIE = "carve_map_screen"
DEFAULT_SCREEN = (930, 638)
_SCREEN = re.compile(r"^(\d{2,4})x(\d{2,4})$")


def map_screen(request: Request) -> tuple[int, int]:
    """The canvas size the map page's inline frame is made for (`SCREEN_COOKIE`, else `DEFAULT_SCREEN`)."""
    m = _SCREEN.match(request.cookies.get(SCREEN_COOKIE, ""))
    if m and all(16 <= int(x) <= 8192 for x in m.groups()):
        return int(m.group(1)), int(m.group(2))
    return DEFAULT_SCREEN


def _inline_frame(request: Request, views: ViewsDep, catalogs: CatalogsDep) -> InlineFrame | None:
    """The map's first screen to carry in the page itself (one response instead of two), when its
    address asks for a dataset's whole map (no filter, no clustering version): None otherwise, or
    when the frame cannot be made (the page then asks the API and shows its error)."""
    name = request.query_params.get("dataset") or ""
    if set(request.query_params) != {"dataset"} or not re.fullmatch(NAME_PATTERN, name):
        return None
    width, height = map_screen(request)
    try:
        raw, _packed = first_screen(views, catalogs.get(), name, None, width, height).frame()
    except (HTTPException, NotFound):  # an unknown dataset, no clustering yet: the page's request says so
        return None
    return InlineFrame(dataset=name, width=width, height=height, b64=base64.b64encode(raw).decode("ascii"))


def _page(request: Request, page: str, inline: InlineFrame | None = None) -> Response:
    p = principal_of(request)
    key = "" if p.via == "proxy" else (presented_credential(request) or "")
    user = {"name": p.name, "role": p.role, "may": allowed_actions(p.role)}
    html = render_ui(page, mode="server", token=key, base="/ui/", user=user, frame=inline)
    if inline is not None and "gzip" in request.headers.get("accept-encoding", ""):
        # the page carries the frame (~290 kB of base64 at 100k events); level 1 packs it in ~3 ms
        return Response(gzip.compress(html.encode(), compresslevel=1, mtime=0), media_type="text/html; charset=utf-8",
                        headers={**_NO_STORE, "Content-Encoding": "gzip", "Vary": "Accept-Encoding, Cookie"})
    return HTMLResponse(html, headers=_NO_STORE)


@router.get("/ui", include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def _page_route(page: str) -> Callable[..., Response]:
    if page == "map":
        def map_route(request: Request, views: ViewsDep, catalogs: CatalogsDep) -> Response:
            return _page(request, page, _inline_frame(request, views, catalogs))

        return map_route

    def route(request: Request) -> Response:
        return _page(request, page)

    return route


for _page_name in PAGES:  # /ui/ (the index), /ui/map, /ui/event, /ui/cluster, /ui/coverage, /ui/quality
    router.add_api_route("/ui/" if _page_name == "index" else f"/ui/{_page_name}", _page_route(_page_name),
                         methods=["GET"], response_class=HTMLResponse, name=f"ui_{_page_name}")


@router.get("/ui/static/{name}", response_class=Response)
def ui_static(name: str = Path(pattern=r"^[a-z.]{1,40}$")) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    data, media = static_file(name)
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600",
                                                     "X-Content-Type-Options": "nosniff"})
