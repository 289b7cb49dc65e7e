"""`GET /datasets/{name}/versions`: the clusters and shards versions of a dataset (a key
required; roles: service/access.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path

from carve.audit.paths import PATHS
from carve.service.access import authorize
from carve.service.deps import NAME_PATTERN, CatalogsDep, ViewsDep

router = APIRouter(tags=["datasets"], dependencies=[Depends(authorize)])


@router.get(PATHS["versions"])
def versions(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> dict[str, Any]:
    return views.versions(catalogs.get(), name)
