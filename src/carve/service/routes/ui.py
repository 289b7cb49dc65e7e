"""The analysts' pages under `/ui/` (a key required, roles: service/access.py; a browser may
send it as the HTTP Basic password and is challenged for it, as on /report):

    GET /ui/                    the datasets
    GET /ui/map?dataset=&...    the embedding map (filters in the query string)
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

from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from carve.report.ui_pages import PAGES, STATIC_FILES, render_ui, static_file
from carve.service.access import allowed_actions, authorize, principal_of
from carve.service.auth import presented_credential

# authorize answers 401 on /ui with a Basic challenge, so that a browser asks for the key
router = APIRouter(tags=["ui"], dependencies=[Depends(authorize)])
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _page(request: Request, page: str) -> HTMLResponse:
    p = principal_of(request)
    key = "" if p.via == "proxy" else (presented_credential(request) or "")
    user = {"name": p.name, "role": p.role, "may": allowed_actions(p.role)}
    return HTMLResponse(render_ui(page, mode="server", token=key, base="/ui/", user=user), headers=_NO_STORE)


@router.get("/ui", include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def _page_route(page: str) -> Callable[[Request], HTMLResponse]:
    def route(request: Request) -> HTMLResponse:
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
