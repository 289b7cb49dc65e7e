"""`GET /report/{name}`: the coverage audit page of a dataset, self-contained HTML (token required;
browsers may send it as the HTTP Basic password, see auth.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse

from carve.service.auth import require_token
from carve.service.deps import NAME_PATTERN, CatalogsDep, ViewsDep

router = APIRouter(tags=["report"], dependencies=[Depends(require_token)])


@router.get("/report/{name}", response_class=HTMLResponse)
def report(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> HTMLResponse:
    return HTMLResponse(views.report(catalogs.get(), name))
