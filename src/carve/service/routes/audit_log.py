"""The audit trail of the service (admin): who changed what, when, and with what outcome.

    GET /audit-log?limit=&offset=&user=&since=    rows newest first (JSON)
    GET /audit-log.csv?...                         the same rows as CSV

One row per state-changing request (job start, cancel, resume, export, flag add/clear, key
add/revoke; refusals included) and per `carve keys` change: time, user, role, how they signed
in, method, route, path, target, HTTP status, outcome. Written by `access.AuditMiddleware`.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from carve.service.access import authorize
from carve.service.deps import NO_NUL, CatalogsDep
from carve.storage import access

router = APIRouter(tags=["users"], dependencies=[Depends(authorize)])
MAX_OFFSET = 2**62  # what a catalog's 64-bit integer takes (a larger offset would be a 500, not an answer)


def _rows(catalogs: CatalogsDep, limit: int, offset: int, user: str | None, since: float | None
          ) -> list[dict[str, Any]]:
    return access.entries(catalogs.get(), limit=limit, offset=offset, user=user, since=since)


@router.get("/audit-log")
def audit_log(catalogs: CatalogsDep, limit: int = Query(1000, ge=1, le=100_000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
              user: str | None = Query(None, max_length=100, pattern=NO_NUL),
              since: float | None = Query(None, ge=0, allow_inf_nan=False)) -> list[dict[str, Any]]:
    return _rows(catalogs, limit, offset, user, since)


@router.get("/audit-log.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def audit_log_csv(catalogs: CatalogsDep, limit: int = Query(100_000, ge=1, le=1_000_000),
                  offset: int = Query(0, ge=0, le=MAX_OFFSET), user: str | None = Query(None, max_length=100, pattern=NO_NUL),
                  since: float | None = Query(None, ge=0, allow_inf_nan=False)) -> Response:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(access.AUDIT_FIELDS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(_rows(catalogs, limit, offset, user, since))
    return Response(buf.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="carve-audit-log.csv"'})
