"""Pipeline jobs: submit, list, inspect, cancel, resume (a key required; roles: service/access.py).

    POST /jobs                      submit {source, format, overrides} -> 202 {id}; 409 if that
                                    source already has an active job (the body names it)
    GET  /jobs, /jobs/{id}          state, stage, progress, ingested/failed episodes with reasons
    POST /jobs/{id}/cancel          queued -> cancelled; running -> cancelling (the runner kills it);
                                    only the user who started the job or an admin (403 otherwise)
    POST /jobs/{id}/resume          resumable (orphaned by a dead server) -> queued

Job state lives in the catalog (`Catalog.create_job_if_idle` decides a concurrent submission
inside one SQLite transaction, so the 409 also holds across two servers); `service.jobs`
runs them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from carve.core.config import ConfigError
from carve.service.access import TARGET_KEY, authorize, principal_of
from carve.service.deps import ID_PATTERN, Catalogs, CatalogsDep, CfgDep, RunnerDep
from carve.service.jobs import cancel_marker
from carve.service.limits import SourceRejected, confine_source
from carve.service.views import NotFound

# no prefix: a route's path is its full path, the key of access.ROUTE_ROLES
router = APIRouter(tags=["jobs"], dependencies=[Depends(authorize)])

JobState = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled", "resumable"]


class JobRequest(BaseModel):
    """A job submission."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=4096, description="dataset root under an allowed root")
    format: Literal["auto", "lerobot", "folder", "hdf5", "rlds"] = "auto"
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="config overrides by section, e.g. {'segment': {'min_len_frames': 6}}"
    )


class JobCreated(BaseModel):
    id: str
    state: str
    source: str


class JobView(BaseModel):
    id: str
    kind: Literal["run", "export"] = "run"  # export: source_uri is the output folder, params its options
    source_uri: str
    format: str
    state: str
    stage: str | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    owner: str | None = None
    submitted_by: str | None = None  # the user who started it (the runner that runs it: owner)
    pid: int | None = None
    heartbeat: float | None = None
    created_at: float
    updated_at: float
    overrides: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] | None = None
    episodes: dict[str, Any] | None = None


def _unprocessable(loc: list[str], msg: str) -> HTTPException:
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def _job(catalogs: Catalogs, job_id: str) -> dict[str, Any]:
    job = catalogs.get().job(job_id)
    if job is None:
        raise NotFound(f"unknown job {job_id!r}")
    return job


def _job_view(catalogs: Catalogs, job: dict[str, Any], with_episodes: bool) -> JobView:
    view = JobView(**{k: job.get(k) for k in JobView.model_fields if k in job})
    if with_episodes and job.get("kind", "run") == "run":
        view.episodes = catalogs.get().job_episodes(job["id"])
    return view


@router.post("/jobs", status_code=202, response_model=JobCreated,
             responses={403: {"description": "source outside the allowed roots"},
                        409: {"description": "an active job already ingests this source"}})
def submit(req: JobRequest, request: Request, cfg: CfgDep, catalogs: CatalogsDep) -> Any:
    bad = sorted(set(req.overrides) - set(cfg.service.overridable))
    if bad:
        raise _unprocessable(["body", "overrides"], f"sections {bad} may not be overridden; allowed: "
                             f"{cfg.service.overridable}")
    if "uri" in req.overrides.get("source", {}):
        raise _unprocessable(["body", "overrides", "source", "uri"], "give the source as `source`, not an override")
    try:
        source = confine_source(req.source, cfg.service.allowed_roots)
    except SourceRejected as e:
        if e.status == 422:
            raise _unprocessable(["body", "source"], str(e)) from e
        raise HTTPException(status_code=e.status, detail=str(e)) from e
    try:
        cfg.with_overrides({**req.overrides, "source": {**req.overrides.get("source", {}), "uri": source,
                                                        "format": req.format}})
    except ConfigError as e:
        raise _unprocessable(["body", "overrides"], str(e)) from e
    cat = catalogs.get()
    stopping = [j["id"] for j in cat.jobs(state="cancelling", limit=10_000) if j["source_uri"] == source]
    if stopping:
        return JSONResponse(status_code=409, content={
            "detail": f"job {stopping[0]} on {source} is still being cancelled; retry shortly",
            "job_id": stopping[0]})
    job_id, created = cat.create_job_if_idle(source, req.format, req.overrides,
                                             submitted_by=principal_of(request).name)
    request.scope[TARGET_KEY] = job_id
    if not created:
        return JSONResponse(status_code=409, content={
            "detail": f"job {job_id} is already ingesting {source}; cancel it or wait", "job_id": job_id})
    return JobCreated(id=job_id, state="queued", source=source)


@router.get("/jobs", response_model=list[JobView])
def list_jobs(catalogs: CatalogsDep, state: JobState | None = None, limit: int = Query(100, ge=1, le=1000)) -> Any:
    return [_job_view(catalogs, j, False) for j in catalogs.get().jobs(state=state, limit=limit)]


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(catalogs: CatalogsDep, job_id: str = Path(pattern=ID_PATTERN)) -> Any:
    return _job_view(catalogs, _job(catalogs, job_id), True)


@router.post("/jobs/{job_id}/cancel", response_model=JobView, status_code=202,
             responses={403: {"description": "neither the job's owner nor an admin"},
                        409: {"description": "the job already ended"}})
def cancel(request: Request, cfg: CfgDep, runner: RunnerDep, catalogs: CatalogsDep,
           job_id: str = Path(pattern=ID_PATTERN)) -> Any:
    job = _job(catalogs, job_id)
    me = principal_of(request)
    if me.role != "admin" and job.get("submitted_by") != me.name:
        raise HTTPException(status_code=403, detail=f"job {job_id} was started by {job.get('submitted_by') or 'the CLI'}; "
                                                    "only they or an admin may cancel it")
    cat = catalogs.get()
    if cat.transition_job(job_id, ("queued", "resumable"), state="cancelled", error="cancelled"):
        return _job_view(catalogs, _job(catalogs, job_id), True)
    if cat.transition_job(job_id, ("running",), state="cancelling"):
        marker = cancel_marker(cfg.root, job_id)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        runner.request_cancel(job_id)
        return _job_view(catalogs, _job(catalogs, job_id), True)
    job = _job(catalogs, job_id)
    if job["state"] == "cancelling":
        return _job_view(catalogs, job, True)
    raise HTTPException(status_code=409, detail=f"job {job_id} already ended ({job['state']})")


@router.post("/jobs/{job_id}/resume", response_model=JobView, status_code=202,
             responses={409: {"description": "the job is not resumable"}})
def resume(catalogs: CatalogsDep, job_id: str = Path(pattern=ID_PATTERN)) -> Any:
    job = _job(catalogs, job_id)
    cat = catalogs.get()
    busy = [j["id"] for st in ("queued", "running", "cancelling") for j in cat.jobs(state=st, limit=10_000)
            if j["source_uri"] == job["source_uri"] and j["id"] != job_id]
    if busy:
        raise HTTPException(status_code=409, detail=f"job {busy[0]} is already ingesting {job['source_uri']}")
    if cat.transition_job(job_id, ("resumable",), state="queued", owner=None, pid=None, error=None):
        return _job_view(catalogs, _job(catalogs, job_id), True)
    raise HTTPException(status_code=409, detail=f"job {job_id} is {job['state']}, not resumable")
