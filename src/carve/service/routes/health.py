"""`GET /health`: liveness and the identity of this server's job runner (no token needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from carve.service.deps import RunnerDep

router = APIRouter(tags=["service"])


@router.get("/health")
def health(runner: RunnerDep) -> dict[str, Any]:
    return {"status": "ok", "owner": runner.owner}
