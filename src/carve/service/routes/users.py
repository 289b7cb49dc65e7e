"""Who is signed in, and the per-user API keys (admin).

    GET    /whoami          {user, role, via, may: {flag, run, cancel, export, keys, audit}}
    GET    /keys            the keys: name, role, created, last used (never the key or its hash)
    POST   /keys            {name, role} -> 201 {key, name, role, ...}: the key, shown this once
    DELETE /keys/{name}     revoke the active key of `name` (404 without one)

The same operations as `carve keys add|list|revoke` (cli/keys.py), on the server's catalog; a
change here takes effect at once (the server's key cache is dropped).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from carve.core.roles import Role
from carve.service.access import TARGET_KEY, allowed_actions, authorize, principal_of
from carve.service.deps import CatalogsDep
from carve.storage import access

router = APIRouter(tags=["users"], dependencies=[Depends(authorize)])
USER_PATTERN = r"^[A-Za-z0-9_.@\-]{1,100}$"


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=USER_PATTERN)
    role: Role


@router.get("/whoami")
def whoami(request: Request) -> dict[str, Any]:
    p = principal_of(request)
    return {"user": p.name, "role": p.role, "via": p.via, "may": allowed_actions(p.role)}


@router.get("/keys")
def list_keys(catalogs: CatalogsDep, include_revoked: bool = False) -> list[dict[str, Any]]:
    return access.list_keys(catalogs.get(), include_revoked=include_revoked)


@router.post("/keys", status_code=201)
def add_key(body: KeyIn, request: Request, catalogs: CatalogsDep) -> dict[str, Any]:
    request.scope[TARGET_KEY] = body.name
    try:
        key, row = access.add_key(catalogs.get(), body.name, body.role, by=principal_of(request).name)
    except access.AccessError as e:
        raise HTTPException(status_code=409, detail=str(e)) from None
    request.app.state.auth.invalidate()
    return {"key": key, **row}


@router.delete("/keys/{name}")
def revoke_key(request: Request, catalogs: CatalogsDep, name: str = Path(pattern=USER_PATTERN)) -> dict[str, Any]:
    try:
        row = access.revoke_key(catalogs.get(), name, by=principal_of(request).name)
    except access.AccessError as e:
        raise HTTPException(status_code=404, detail=str(e)) from None
    request.app.state.auth.invalidate()
    return row
