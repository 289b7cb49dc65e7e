"""Bearer-token authentication of the HTTP service.

The token comes from `service.token` in the config or, if unset, `CARVE_TOKEN` in the
environment; a server without one refuses to start. Every route but `/health` depends on
`require_token` (which reads the token `create_app` resolved from `app.state.token`). API clients send `Authorization: Bearer <token>`; so that an analyst can
open the report page in a plain browser, HTML routes also accept HTTP Basic auth whose
password is the token (the browser prompts for it). Comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from carve.core import env

MIN_TOKEN_LEN = 16

bearer_scheme = HTTPBearer(auto_error=False, description="the service token (service.token or CARVE_TOKEN)")


class TokenError(ValueError):
    """No usable token is configured."""


def resolve_token(configured: str | None) -> str:
    """The service token from config, else CARVE_TOKEN; refuse a missing or short one."""
    token = configured or env.token() or ""
    if not token:
        raise TokenError("no service token: set service.token in the config or CARVE_TOKEN in the environment")
    if len(token) < MIN_TOKEN_LEN:
        raise TokenError(f"the service token must be at least {MIN_TOKEN_LEN} characters long")
    return token


def _basic_password(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def check_request(request: Request, creds: HTTPAuthorizationCredentials | None, token: str) -> None:
    """Raise 401 unless the request carries the token (Bearer, or Basic password for HTML pages)."""
    presented: str | None = None
    if creds is not None and creds.scheme.lower() == "bearer":
        presented = creds.credentials
    else:
        presented = _basic_password(request.headers.get("authorization", ""))
    if presented is not None and hmac.compare_digest(presented.encode(), token.encode()):
        return
    html = request.url.path.startswith("/report")
    challenge = 'Basic realm="carve", charset="UTF-8"' if html else "Bearer"
    reason = "missing bearer token" if presented is None else "invalid token"
    raise HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": challenge})


def require_token(request: Request, creds: HTTPAuthorizationCredentials | None = Security(bearer_scheme)) -> None:
    """FastAPI dependency: 401 unless the request carries the app's token (`app.state.token`)."""
    check_request(request, creds, request.app.state.token)
