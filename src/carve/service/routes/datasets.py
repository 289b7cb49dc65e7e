"""Datasets, their clusters and their events (read-only; token required).

    GET /datasets, /datasets/{name}, /datasets/{name}/clusters (/coverage: routes/audit.py)
    GET /events/{id}/keyframes/{i}.jpg   (GET /events/{id}, with its findings: routes/media.py)

The cluster and coverage views read the summary written with the latest clusters version and
the latest manifest; an event is a point lookup (assignments index, catalog, one row group of
its batch). Neither reads embeddings or every event (service/views.py).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse, Response

from carve.audit.models import ClustersResponse
from carve.audit.paths import PATHS
from carve.service.access import authorize
from carve.service.deps import ID_PATTERN, NAME_PATTERN, CatalogsDep, ViewsDep

router = APIRouter(dependencies=[Depends(authorize)])


@router.get(PATHS["datasets"], tags=["datasets"])
def datasets(catalogs: CatalogsDep) -> list[dict[str, Any]]:
    return catalogs.get().datasets()


@router.get("/datasets/{name}", tags=["datasets"])
def dataset(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> dict[str, Any]:
    return views.require_dataset(catalogs.get(), name)


def _json(body: Any) -> Response:
    """A JSON response serialised directly (the views return plain JSON values; FastAPI's
    per-field encoder costs more than the cached view itself on large bodies)."""
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return Response(data, media_type="application/json")


@router.get("/datasets/{name}/clusters", tags=["datasets"], response_class=JSONResponse,
            response_model=ClustersResponse)
def clusters(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> Response:
    return _json(views.clusters_json(catalogs.get(), name))


# GET /datasets/{name}/coverage (views.coverage plus the change between versions) is in routes/audit.py


@router.get(PATHS["keyframe"], tags=["events"], response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
def keyframe(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
             index: int = Path(ge=0, le=64)) -> Response:
    return Response(views.keyframe(catalogs.get(), event_id, index), media_type="image/jpeg")
