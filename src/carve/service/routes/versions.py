"""`GET /datasets/{name}/versions`: the clusters and shards versions of a dataset (token required)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path

from carve.audit.paths import PATHS
from carve.service.auth import require_token
from carve.service.deps import NAME_PATTERN, CatalogsDep, ViewsDep

router = APIRouter(tags=["datasets"], dependencies=[Depends(require_token)])


@router.get(PATHS["versions"])
def versions(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN)) -> dict[str, Any]:
    return views.versions(catalogs.get(), name)
