"""The FastAPI application of `carve serve` (OpenAPI at /openapi.json, docs at /docs).

Routes (all but `/health` need the bearer token, see auth.py):

    POST /jobs                      submit {source, format, overrides} -> 202 {id}; 409 if that
                                    source already has an active job (the body names it)
    GET  /jobs, /jobs/{id}          state, stage, progress, ingested/failed episodes with reasons
    POST /jobs/{id}/cancel          queued -> cancelled; running -> cancelling (the owner kills it)
    POST /jobs/{id}/resume          resumable (orphaned by a dead server) -> queued
    GET  /datasets, /datasets/{name}, /datasets/{name}/versions, /datasets/{name}/clusters
    GET  /events/{id}, /events/{id}/keyframes/{i}.jpg
    GET  /report/{dataset}          the coverage audit page (clustering/audit.py), self-contained
    GET  /health

Concurrent submission of the same source: the second request gets 409 with the active job's
id (`Catalog.create_job_if_idle` decides inside one SQLite transaction, so this also holds
across two servers). Validation errors are 422 with the reasons; oversized bodies 413;
too many requests 429 (limits.py); paths outside the allowed roots 403.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from carve.core.config import CarveConfig, ConfigError
from carve.service.auth import bearer_scheme, check_request, resolve_token
from carve.service.jobs import TERMINAL_STATES, JobRunner, cancel_marker
from carve.service.limits import BodyLimitMiddleware, RateLimitMiddleware, SourceRejected, confine_source
from carve.service.views import NotFound, Views
from carve.storage.catalog import Catalog

_NAME = r"^[A-Za-z0-9_.\-]{1,200}$"
_ID = r"^[A-Za-z0-9_\-]{1,128}$"


class JobRequest(BaseModel):
    """A job submission."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=4096, description="dataset root under an allowed root")
    format: Literal["auto", "lerobot", "folder", "hdf5"] = "auto"
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="config overrides by section, e.g. {'segment': {'min_len_frames': 6}}"
    )


class JobCreated(BaseModel):
    id: str
    state: str
    source: str


class JobView(BaseModel):
    id: str
    source_uri: str
    format: str
    state: str
    stage: str | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    owner: str | None = None
    pid: int | None = None
    heartbeat: float | None = None
    created_at: float
    updated_at: float
    overrides: dict[str, Any] = Field(default_factory=dict)
    episodes: dict[str, Any] | None = None


def _unprocessable(loc: list[str], msg: str) -> HTTPException:
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": msg, "type": "value_error"}])


def create_app(cfg: CarveConfig, *, start_runner: bool = True, ray_address: str | None = None) -> FastAPI:
    """Build the app for `cfg` (raises auth.TokenError without a usable token)."""
    token = resolve_token(cfg.service.token)
    runner = JobRunner(cfg, ray_address=ray_address or cfg.ray.address)
    views = Views(cfg.root)
    local = threading.local()
    Catalog(cfg.root).close()  # create the schema before serving

    def catalog() -> Catalog:
        cat = getattr(local, "cat", None)
        if cat is None:
            cat = local.cat = Catalog(cfg.root)
        return cat

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_runner:
            runner.start()
        try:
            yield
        finally:
            runner.stop()

    app = FastAPI(title="Carve", version="1", lifespan=lifespan,
                  description="Event-grounded curation of robot-manipulation video: jobs, datasets, clusters, audit.")
    app.state.runner = runner
    app.state.views = views
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.service.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, per_min=cfg.service.rate_limit_per_min, exempt=("/health",))

    def auth(request: Request, creds: HTTPAuthorizationCredentials | None = Security(bearer_scheme)) -> None:
        check_request(request, creds, token)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "owner": runner.owner}

    # -- jobs ----------------------------------------------------------------------------
    @app.post("/jobs", status_code=202, response_model=JobCreated, tags=["jobs"], dependencies=[Depends(auth)],
              responses={403: {"description": "source outside the allowed roots"},
                         409: {"description": "an active job already ingests this source"}})
    def submit(req: JobRequest) -> Any:
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
        stopping = [j["id"] for j in catalog().jobs(state="cancelling", limit=10_000) if j["source_uri"] == source]
        if stopping:
            return JSONResponse(status_code=409, content={
                "detail": f"job {stopping[0]} on {source} is still being cancelled; retry shortly",
                "job_id": stopping[0]})
        job_id, created = catalog().create_job_if_idle(source, req.format, req.overrides)
        if not created:
            return JSONResponse(status_code=409, content={
                "detail": f"job {job_id} is already ingesting {source}; cancel it or wait", "job_id": job_id})
        return JobCreated(id=job_id, state="queued", source=source)

    def _job_view(job: dict[str, Any], with_episodes: bool) -> JobView:
        view = JobView(**{k: job.get(k) for k in JobView.model_fields if k in job})
        if with_episodes:
            view.episodes = catalog().job_episodes(job["id"])
        return view

    def _job(job_id: str) -> dict[str, Any]:
        job = catalog().job(job_id)
        if job is None:
            raise NotFound(f"unknown job {job_id!r}")
        return job

    @app.get("/jobs", response_model=list[JobView], tags=["jobs"], dependencies=[Depends(auth)])
    def list_jobs(state: Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled",
                                 "resumable"] | None = None,
                  limit: int = Query(100, ge=1, le=1000)) -> Any:
        return [_job_view(j, False) for j in catalog().jobs(state=state, limit=limit)]

    @app.get("/jobs/{job_id}", response_model=JobView, tags=["jobs"], dependencies=[Depends(auth)])
    def get_job(job_id: str = Path(pattern=_ID)) -> Any:
        return _job_view(_job(job_id), True)

    @app.post("/jobs/{job_id}/cancel", response_model=JobView, status_code=202, tags=["jobs"],
              dependencies=[Depends(auth)], responses={409: {"description": "the job already ended"}})
    def cancel(job_id: str = Path(pattern=_ID)) -> Any:
        job = _job(job_id)
        cat = catalog()
        if cat.transition_job(job_id, ("queued", "resumable"), state="cancelled", error="cancelled"):
            return _job_view(_job(job_id), True)
        if cat.transition_job(job_id, ("running",), state="cancelling"):
            marker = cancel_marker(cfg.root, job_id)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            runner.request_cancel(job_id)
            return _job_view(_job(job_id), True)
        job = _job(job_id)
        if job["state"] == "cancelling":
            return _job_view(job, True)
        raise HTTPException(status_code=409, detail=f"job {job_id} already ended ({job['state']})")

    @app.post("/jobs/{job_id}/resume", response_model=JobView, status_code=202, tags=["jobs"],
              dependencies=[Depends(auth)], responses={409: {"description": "the job is not resumable"}})
    def resume(job_id: str = Path(pattern=_ID)) -> Any:
        job = _job(job_id)
        busy = [j["id"] for st in ("queued", "running", "cancelling") for j in catalog().jobs(state=st, limit=10_000)
                if j["source_uri"] == job["source_uri"] and j["id"] != job_id]
        if busy:
            raise HTTPException(status_code=409, detail=f"job {busy[0]} is already ingesting {job['source_uri']}")
        if catalog().transition_job(job_id, ("resumable",), state="queued", owner=None, pid=None, error=None):
            return _job_view(_job(job_id), True)
        raise HTTPException(status_code=409, detail=f"job {job_id} is {job['state']}, not resumable")

    # -- datasets, events, report ---------------------------------------------------------
    @app.get("/datasets", tags=["datasets"], dependencies=[Depends(auth)])
    def datasets() -> list[dict[str, Any]]:
        return catalog().datasets()

    @app.get("/datasets/{name}", tags=["datasets"], dependencies=[Depends(auth)])
    def dataset(name: str = Path(pattern=_NAME)) -> dict[str, Any]:
        return views.require_dataset(catalog(), name)

    @app.get("/datasets/{name}/versions", tags=["datasets"], dependencies=[Depends(auth)])
    def versions(name: str = Path(pattern=_NAME)) -> dict[str, Any]:
        return views.versions(catalog(), name)

    @app.get("/datasets/{name}/clusters", tags=["datasets"], dependencies=[Depends(auth)])
    def clusters(name: str = Path(pattern=_NAME)) -> dict[str, Any]:
        return views.clusters(catalog(), name)

    @app.get("/events/{event_id}", tags=["events"], dependencies=[Depends(auth)])
    def event(event_id: str = Path(pattern=_ID), images: bool = True) -> dict[str, Any]:
        return views.event(catalog(), event_id, images=images)

    @app.get("/events/{event_id}/keyframes/{index}.jpg", tags=["events"], dependencies=[Depends(auth)],
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def keyframe(event_id: str = Path(pattern=_ID), index: int = Path(ge=0, le=64)) -> Response:
        return Response(views.keyframe(catalog(), event_id, index), media_type="image/jpeg")

    @app.get("/report/{name}", tags=["report"], dependencies=[Depends(auth)], response_class=HTMLResponse)
    def report(name: str = Path(pattern=_NAME)) -> HTMLResponse:
        return HTMLResponse(views.report(catalog(), name))

    app.state.terminal_states = TERMINAL_STATES
    return app
