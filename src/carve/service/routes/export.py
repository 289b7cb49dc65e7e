"""Export jobs: a shards version as a LeRobot v3.0 dataset (a key required; roles: service/access.py).

    POST /exports        {shards, out, unit, task_from, codec, reencode, overwrite, dataset}
                         -> 202 {id, state, out}; the output folder's parent must lie under
                         an allowed root (service.allowed_roots), 403 otherwise; 409 while
                         another export writes the same folder
    GET  /exports/{id}   state (queued | running | succeeded | failed | cancelled | ...), the
                         export summary or the error

An export is a job of kind `export` in the catalog, started, watched, cancelled and recovered by
the service's one job runner (`service.jobs.JobRunner`) like `carve run` jobs, so it also
appears under /jobs and `POST /jobs/{id}/cancel` stops it. The runner's subprocess is `carve
export ... --json` with the server's config file and catalog; its summary (stdout) is kept in
the job's folder (`service.jobs.job_dir`, local to the server for an object-store root).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from carve.service.access import TARGET_KEY, authorize, principal_of
from carve.service.deps import ID_PATTERN, CatalogsDep, CfgDep
from carve.service.jobs import job_dir
from carve.service.limits import SourceRejected, confine_source

# no prefix: a route's path is its full path, the key of access.ROUTE_ROLES
router = APIRouter(tags=["exports"], dependencies=[Depends(authorize)])
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
KIND = "export"


class ExportRequest(BaseModel):
    """An export submission (the options of `carve export`)."""

    model_config = ConfigDict(extra="forbid")
    out: str = Field(min_length=1, max_length=4096, description="absolute output folder; its parent under an allowed root")
    shards: int | None = Field(default=None, ge=1, description="shards version (default: the latest)")
    unit: Literal["episode", "event"] = "episode"
    task_from: Literal["task", "caption"] | None = None
    codec: Literal["av1", "h264"] = "av1"
    reencode: bool = False
    overwrite: bool = False
    trim_idle: bool = Field(default=False, description="cut the idle head and tail the quality gate found")
    dataset: str | None = Field(default=None, max_length=200)


class ExportView(BaseModel):
    id: str
    state: str
    out: str
    summary: dict[str, Any] | None = None
    error: str | None = None


def _confine_out(out: str, allowed: list[str]) -> str:
    p = Path(out)
    if not p.is_absolute() or ".." in p.parts or not p.name or not set(p.name) <= _NAME_CHARS:
        raise HTTPException(status_code=422, detail=[{"loc": ["body", "out"], "type": "value_error",
                                                      "msg": f"out {out!r} must be an absolute path without '..' "
                                                             "whose last part is a plain folder name"}])
    try:
        parent = confine_source(str(p.parent), allowed)
    except SourceRejected as e:
        raise HTTPException(status_code=e.status, detail=f"output folder: {e}") from e
    return str(Path(parent) / p.name)


@router.post("/exports", status_code=202, response_model=ExportView,
             responses={403: {"description": "output folder outside the allowed roots"},
                        409: {"description": "an active export already writes this folder"}})
def submit(req: ExportRequest, request: Request, cfg: CfgDep, catalogs: CatalogsDep) -> Any:
    out = _confine_out(req.out, cfg.service.allowed_roots)
    params = {**req.model_dump(), "out": out}
    job_id, created = catalogs.get().create_job_if_idle(out, "lerobot", kind=KIND, params=params,
                                                        submitted_by=principal_of(request).name)
    request.scope[TARGET_KEY] = job_id
    if not created:
        return JSONResponse(status_code=409, content={
            "detail": f"export {job_id} is already writing {out}; cancel it or wait", "job_id": job_id})
    return ExportView(id=job_id, state="queued", out=out)


@router.get("/exports/{export_id}", response_model=ExportView)
def get_export(cfg: CfgDep, catalogs: CatalogsDep, export_id: str = PathParam(pattern=ID_PATTERN)) -> Any:
    job = catalogs.get().job(export_id)
    if job is None or job["kind"] != KIND:
        raise HTTPException(status_code=404, detail=f"unknown export {export_id!r}")
    view = ExportView(id=export_id, state=job["state"], out=(job["params"] or {}).get("out", job["source_uri"]),
                      error=job.get("error"))
    if job["state"] == "succeeded":
        view.summary = json.loads((job_dir(cfg.root, export_id) / "summary.json").read_text())
    return view
