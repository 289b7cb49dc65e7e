"""Authorization of the HTTP service: the one table of route x minimum role, its one check, the audit trail.

`ROUTE_ROLES` maps every route (method, path template) to the lowest role that may call it
(roles: `carve.core.roles`). Every router depends on `authorize`, which authenticates the
request (auth.py), looks its matched route up in this table and answers 403 below that role.
`create_app` checks at start-up that the app's routes and the table agree exactly (a route
without a row would be refused to everyone; `check_routes`), docs/API.md holds the same table
(`markdown_table`, checked by tests/test_service_roles.py) and the tests' route x role matrix
is generated from it. Rules beyond a route's role live in the route: a job is cancelled only by
the user who started it or an admin (routes/jobs.py).

`AuditMiddleware` writes one audit row (storage/access.py) for every state-changing request that
reached a route (POST, PUT, PATCH, DELETE), refusals included (401, 403), before its response
leaves, so a client that got its answer finds the row. `/health` needs no credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials

from carve.core.roles import ROLES, at_least
from carve.service.auth import Principal, bearer_scheme
from carve.storage import access

log = logging.getLogger(__name__)

V, A, E, ADMIN = "viewer", "analyst", "engineer", "admin"
# the one table: (method, route) -> the lowest role allowed. docs/API.md shows it (markdown_table).
ROUTE_ROLES: dict[tuple[str, str], str] = {
    # who am I (the pages show it)
    ("GET", "/whoami"): V,
    # jobs and exports
    ("GET", "/jobs"): V,
    ("GET", "/jobs/{job_id}"): V,
    ("POST", "/jobs"): E,
    ("POST", "/jobs/{job_id}/cancel"): E,  # and only the job's owner or an admin
    ("POST", "/jobs/{job_id}/resume"): E,
    ("POST", "/exports"): E,
    ("GET", "/exports/{export_id}"): V,
    # datasets, clusters, versions, reports
    ("GET", "/datasets"): V,
    ("GET", "/datasets/{name}"): V,
    ("GET", "/datasets/{name}/clusters"): V,
    ("GET", "/datasets/{name}/versions"): V,
    ("GET", "/report/{name}"): V,
    # the audit API
    ("GET", "/datasets/{name}/map"): V,
    ("GET", "/datasets/{name}/map/bins"): V,
    ("GET", "/datasets/{name}/map/facets"): V,
    ("GET", "/datasets/{name}/map/frame"): V,
    ("GET", "/datasets/{name}/clusters/{cluster}"): V,
    ("GET", "/datasets/{name}/coverage"): V,
    ("GET", "/datasets/{name}/coverage.csv"): V,
    ("GET", "/datasets/{name}/quality"): V,
    ("GET", "/datasets/{name}/quality.csv"): V,
    ("GET", "/events/{event_id}/neighbours"): V,
    # events and media
    ("GET", "/events/{event_id}"): V,
    ("GET", "/events/{event_id}/signals"): V,
    ("GET", "/events/{event_id}/clip.mp4"): V,
    ("GET", "/events/{event_id}/clip.webm"): V,
    ("GET", "/events/{event_id}/keyframe.jpg"): V,
    ("GET", "/events/{event_id}/keyframes/{index}.jpg"): V,
    # review flags
    ("GET", "/events/{event_id}/flags"): V,
    ("GET", "/datasets/{name}/flags"): V,
    ("POST", "/events/{event_id}/flags"): A,
    ("DELETE", "/events/{event_id}/flags/{flag_id}"): A,
    # the pages
    ("GET", "/ui"): V,
    ("GET", "/ui/"): V,
    ("GET", "/ui/map"): V,
    ("GET", "/ui/event"): V,
    ("GET", "/ui/cluster"): V,
    ("GET", "/ui/coverage"): V,
    ("GET", "/ui/quality"): V,
    ("GET", "/ui/static/{name}"): V,
    # keys and the audit log
    ("GET", "/keys"): ADMIN,
    ("POST", "/keys"): ADMIN,
    ("DELETE", "/keys/{name}"): ADMIN,
    ("GET", "/audit-log"): ADMIN,
    ("GET", "/audit-log.csv"): ADMIN,
}
OPEN_ROUTES: frozenset[tuple[str, str]] = frozenset({("GET", "/health")})  # no credentials needed
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRINCIPAL_KEY = "carve.principal"  # where `authorize` leaves the request's Principal in its ASGI scope
TARGET_KEY = "carve.target"  # what a route acted on (a job, flag or key), for the audit row
# what each role may do beyond reading, for the pages (they hide the rest; the server still checks)
ACTIONS: dict[str, tuple[str, str]] = {
    "flag": ("POST", "/events/{event_id}/flags"),
    "run": ("POST", "/jobs"),
    "cancel": ("POST", "/jobs/{job_id}/cancel"),
    "export": ("POST", "/exports"),
    "keys": ("POST", "/keys"),
    "audit": ("GET", "/audit-log"),
}


class RoutesError(RuntimeError):
    """The app's routes and ROUTE_ROLES disagree."""


def may(role: str, method: str, path: str) -> bool:
    """Whether `role` may call the route (method, path template): the one check."""
    need = ROUTE_ROLES.get((method, path))
    return need is not None and at_least(role, need)


def allowed_actions(role: str) -> dict[str, bool]:
    """{action: allowed} of ACTIONS for `role` (the pages' view of the table)."""
    return {name: may(role, m, p) for name, (m, p) in ACTIONS.items()}


def authorize(request: Request, creds: HTTPAuthorizationCredentials | None = Security(bearer_scheme)) -> Principal:
    """FastAPI dependency of every router but /health: 401 unless authenticated (auth.py), 403
    unless the user's role reaches the matched route's row of ROUTE_ROLES; the request's Principal."""
    principal = request.app.state.auth.authenticate(request, creds)
    request.scope[PRINCIPAL_KEY] = principal
    route = request.scope.get("route")
    path = getattr(route, "path", "")
    if not may(principal.role, request.method, path):
        need = ROUTE_ROLES.get((request.method, path), ADMIN)
        raise HTTPException(status_code=403,
                            detail=f"{request.method} {path} needs role {need}; {principal.name} is {principal.role}")
    return principal


def principal_of(request: Request) -> Principal:
    """The Principal `authorize` resolved for this request."""
    return request.scope[PRINCIPAL_KEY]


def router_routes(routers: Iterable[APIRouter]) -> set[tuple[str, str]]:
    """(method, path) of every route of `routers` (included without a prefix: a route's path is
    the one the app serves, and the one `authorize` finds as `scope["route"].path`)."""
    return {(m, r.path) for router in routers for r in router.routes if isinstance(r, APIRoute)
            for m in (r.methods or ())}


def check_routes(routers: Iterable[APIRouter]) -> None:
    """Refuse to start when a route has no row in ROUTE_ROLES (or a row names no route)."""
    have = router_routes(routers) - OPEN_ROUTES
    missing, extra = have - set(ROUTE_ROLES), set(ROUTE_ROLES) - have
    if missing or extra:
        raise RoutesError(f"ROUTE_ROLES and the app disagree: routes without a role {sorted(missing)}, "
                          f"rows without a route {sorted(extra)}")


def markdown_table() -> str:
    """ROUTE_ROLES as the Markdown table of docs/API.md (a row per route, a column per role)."""
    lines = ["| method | route | " + " | ".join(ROLES) + " |", "|---|---|" + "---|" * len(ROLES)]
    for method, path in sorted(ROUTE_ROLES, key=lambda k: (k[1], k[0])):
        cells = ["yes" if may(r, method, path) else "-" for r in ROLES]
        lines.append(f"| {method} | `{path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return {401: "unauthenticated", 403: "refused"}.get(status, "error" if status >= 500 else "rejected")


class AuditMiddleware:
    """Pure ASGI: one audit row per state-changing request that matched a route (module doc)."""

    def __init__(self, app: Callable[..., Awaitable[None]], catalogs: Any):
        self.app = app
        self.catalogs = catalogs

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        done = False

        async def send_audited(message: MutableMapping[str, Any]) -> None:
            nonlocal done
            if message["type"] == "http.response.start" and not done:
                done = True
                await anyio.to_thread.run_sync(self._record, scope, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except Exception:  # a 500 the server's error middleware answers: recorded as such
            if not done:
                done = True
                await anyio.to_thread.run_sync(self._record, scope, 500)
            raise

    def _record(self, scope: MutableMapping[str, Any], status: int) -> None:
        route = scope.get("route")
        if route is None:  # nothing matched (404, 405) or refused before routing (413, 429)
            return
        p: Principal | None = scope.get(PRINCIPAL_KEY)
        params = scope.get("path_params") or {}
        target = scope.get(TARGET_KEY) or ("/".join(str(v) for v in params.values()) or None)
        client = scope.get("client")
        try:
            access.record(self.catalogs.get(), method=scope["method"], route=getattr(route, "path", "?"),
                          path=scope.get("path", ""), status=status, outcome=_outcome(status),
                          user=p.name if p else None, role=p.role if p else None, via=p.via if p else None,
                          target=target, client=client[0] if client else None)
        except Exception as e:  # the request is answered anyway; say that its row is missing
            log.error("audit log: could not record %s %s (%s): %s", scope["method"], scope.get("path"), status,
                      type(e).__name__)
