"""The FastAPI application of `carve serve` (OpenAPI at /openapi.json, docs at /docs).

Routes, one router per resource under `service/routes/` (all but `/health` need a user's key
or the service token, auth.py, and the role access.ROUTE_ROLES names for the route):

    GET  /health                    routes/health.py
    POST /jobs, GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel, /jobs/{id}/resume
                                    routes/jobs.py
    POST /exports, GET /exports/{id} routes/export.py (export jobs, run by the same job runner)
    GET  /datasets, /datasets/{name}, /datasets/{name}/clusters,
         /events/{id}, /events/{id}/keyframes/{i}.jpg
                                    routes/datasets.py
    GET  /datasets/{name}/versions  routes/versions.py
    GET  /report/{dataset}          routes/report.py: the coverage audit page, self-contained
    GET  /datasets/{name}/map, /map/bins, /map/facets, /datasets/{name}/clusters/{c},
         /datasets/{name}/coverage(.csv), /events/{id}/neighbours
                                    routes/audit.py: the analysts' audit API (docs/API.md)
    GET  /events/{id}/signals, /events/{id}/clip.mp4, /events/{id}/keyframe.jpg
                                    routes/media.py
    POST/GET /events/{id}/flags, DELETE /events/{id}/flags/{flag_id}, GET /datasets/{name}/flags
                                    routes/flags.py
    GET  /whoami, GET/POST /keys, DELETE /keys/{name}
                                    routes/users.py (keys: admin)
    GET  /audit-log, /audit-log.csv routes/audit_log.py (admin)

`create_app` only assembles: it resolves the token, puts the configuration, the read views,
the one job runner, the root's catalog handle and the authenticator on `app.state` (routes take
them through the dependencies of deps.py), adds the guards and the audit trail
(access.AuditMiddleware), includes the routers and checks that every route has its row in
access.ROUTE_ROLES. Validation errors are 422
with the reasons; oversized bodies 413; too many requests 429 (limits.py); paths outside the
allowed roots 403; unknown datasets, jobs and events 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from carve.core.config import CarveConfig
from carve.service.access import AuditMiddleware, check_routes
from carve.service.auth import Authenticator, resolve_token
from carve.service.deps import Catalogs
from carve.service.jobs import TERMINAL_STATES, JobRunner
from carve.service.limits import BodyLimitMiddleware, RateLimitMiddleware
from carve.service.routes import (
    audit,
    audit_log,
    datasets,
    export,
    flags,
    health,
    jobs,
    media,
    report,
    users,
    versions,
)
from carve.service.routes import ui as ui_routes
from carve.service.views import NotFound, Views
from carve.storage.root import root_of

# the routers, in the order they are matched; the last one is the analysts' pages under /ui/
ROUTERS = tuple(m.router for m in (health, jobs, audit, datasets, versions, report, export, media, flags, users,
                                   audit_log, ui_routes))


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(exc)})


def create_app(cfg: CarveConfig, *, start_runner: bool = True, ray_address: str | None = None) -> FastAPI:
    """Build the app for `cfg` (raises auth.TokenError without a usable token or with an unusable
    auth setting)."""
    token = resolve_token(cfg.service.token)
    root = root_of(cfg)  # opened once; views, catalogs and the runner share the handle
    catalogs = Catalogs(root)
    authenticator = Authenticator(token, catalogs, cfg.service)  # checks the auth settings first
    root.catalog  # noqa: B018 - creates the schema before serving
    runner = JobRunner(cfg, root=root, ray_address=ray_address or cfg.ray.address)

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
    app.state.cfg = cfg
    app.state.token = token
    app.state.runner = runner
    app.state.root = root
    app.state.views = Views(root)
    app.state.catalogs = catalogs
    app.state.auth = authenticator
    app.state.terminal_states = TERMINAL_STATES
    app.add_middleware(AuditMiddleware, catalogs=catalogs)
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.service.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, per_min=cfg.service.rate_limit_per_min, exempt=("/health",))
    app.add_exception_handler(NotFound, _not_found)
    for router in ROUTERS:  # no prefixes: a route's path is its key in access.ROUTE_ROLES
        app.include_router(router)
    check_routes(ROUTERS)
    return app
