"""Review flags on events (a key required; roles: service/access.py): raise, clear (the row
stays: audit trail), list.

    POST   /events/{id}/flags            {"kind": "wrong_boundary"|"wrong_caption"|"bad_episode"|"keep",
                                          "note": str|null} -> 201, the flag
    DELETE /events/{id}/flags/{flag_id}  clears it (state "cleared", cleared_by, cleared_at)
    GET    /events/{id}/flags?state=active|cleared|all
    GET    /datasets/{d}/flags?state=active|cleared|all

Who: the authenticated user (service/auth.py: the key's name, "token" for the shared service
token, a trusted proxy's user), never a name the client types. Adding and clearing need the
`analyst` role (service/access.py). Flags live
in the catalog (storage/flags.py); active ones keep their events (a `bad_episode` flag: every
event of the episode) out of the next shard version cut, and a `keep` flag puts an event the
quality gate left out back in.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from carve.audit.paths import PATHS
from carve.service.access import TARGET_KEY, authorize, principal_of
from carve.service.deps import ID_PATTERN, NAME_PATTERN, NO_NUL, CatalogsDep, ViewsDep
from carve.storage import flags as fl

router = APIRouter(dependencies=[Depends(authorize)])


class FlagIn(BaseModel):
    kind: Literal["wrong_boundary", "wrong_caption", "bad_episode", "keep"]
    note: str | None = Field(None, max_length=4000, pattern=NO_NUL)


def who_of(request: Request) -> str:
    """The user behind a request, as authenticated (never a typed name)."""
    return principal_of(request).name


def _state(state: str) -> str | None:
    return None if state == "all" else state


@router.post(PATHS["flags"], tags=["flags"], status_code=201)
def flag_event(body: FlagIn, request: Request, views: ViewsDep, catalogs: CatalogsDep,
               event_id: str = Path(pattern=ID_PATTERN)) -> dict[str, Any]:
    cat = catalogs.get()
    row = views._event_row(cat, event_id, ["event_id", "episode_id", "dataset"])  # 404 for an unknown event
    f = fl.add_flag(cat, event_id, body.kind, who=who_of(request), note=body.note,
                    episode_id=row["episode_id"], dataset=row["dataset"])
    request.scope[TARGET_KEY] = f"{event_id}/{f['id']}"
    return f


@router.delete("/events/{event_id}/flags/{flag_id}", tags=["flags"])
def unflag_event(request: Request, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
                 flag_id: str = Path(pattern=ID_PATTERN)) -> dict[str, Any]:
    f = fl.clear_flag(catalogs.get(), event_id, flag_id, who=who_of(request))
    if f is None:
        raise HTTPException(status_code=404, detail=f"event {event_id!r} has no flag {flag_id!r}")
    return f


@router.get(PATHS["flags"], tags=["flags"])
def event_flags(catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
                state: str = Query("all", pattern="^(active|cleared|all)$")) -> list[dict[str, Any]]:
    return fl.list_flags(catalogs.get(), event_id=event_id, state=_state(state))


@router.get("/datasets/{name}/flags", tags=["flags"])
def dataset_flags(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
                  state: str = Query("active", pattern="^(active|cleared|all)$")) -> list[dict[str, Any]]:
    cat = catalogs.get()
    views.require_dataset(cat, name)
    return fl.list_flags(cat, dataset=name, state=_state(state))
