"""`GET /report/{name}`: the coverage audit page of a dataset, self-contained HTML (a key
required, roles: service/access.py; browsers may send it as the HTTP Basic password, see auth.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse

from carve.service.access import authorize
from carve.service.deps import NAME_PATTERN, CatalogsDep, ViewsDep

router = APIRouter(tags=["report"], dependencies=[Depends(authorize)])


@router.get("/report/{name}", response_class=HTMLResponse)
def report(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> HTMLResponse:
    return HTMLResponse(views.report(catalogs.get(), name))
