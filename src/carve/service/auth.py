"""Authentication of the HTTP service: who sends a request (authorization: access.py).

A request names its user in one of three ways, checked by `Authenticator.authenticate`:

* a per-user API key (`carve keys add`, stored hashed in the catalog: storage/access.py), sent
  as `Authorization: Bearer <key>`, or, so that an analyst can open the pages in a plain
  browser, as the password of HTTP Basic auth (the Basic user name is ignored);
* the shared service token (`service.token`, else `CARVE_TOKEN`), the one credential of earlier
  deployments: it keeps working as one key of role `admin` whose user is named `token`;
* the header `service.trusted_proxy_header` set by an auth proxy, honoured only when the
  connection comes from one of `service.trusted_proxies`; from any other address a request
  carrying it is refused (401) whatever else it carries. The user's role is
  `service.proxy_users[user]`, else the role of the user's active key in the catalog, else 403.
  The address is the connection's peer: `carve serve` runs uvicorn with `proxy_headers=False`,
  so a client cannot pose as a proxy with an `X-Forwarded-For` header.

Secrets are compared in constant time (`hmac.compare_digest`: the token itself, the SHA-256 of
a key's secret part). A key's row is read from the catalog by its public id and kept
`service.key_cache_s` seconds (default 2), so a key added or revoked with `carve keys` takes
effect within that time without a restart (at once when changed through `/keys`). No error
message, log line or audit row ever carries a presented credential.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from carve.core import env
from carve.core.roles import ROLES
from carve.storage import access

if TYPE_CHECKING:
    from carve.core.config import ServiceConfig
    from carve.service.deps import Catalogs

log = logging.getLogger(__name__)
MIN_TOKEN_LEN = 16
TOKEN_USER = "token"  # the user name of the shared service token
TOUCH_EVERY_S = 60.0  # a key's last_used_at is written at most this often

bearer_scheme = HTTPBearer(auto_error=False, description="a user's API key (carve keys add), or the service token")


class TokenError(ValueError):
    """No usable token, or an unusable auth setting, is configured."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user of a request (never holds the credential itself)."""

    name: str
    role: str
    via: str  # key | token | proxy
    key_id: str | None = None


TOKEN_PRINCIPAL = Principal(TOKEN_USER, "admin", "token")


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


def presented_credential(request: Request, creds: HTTPAuthorizationCredentials | None = None) -> str | None:
    """The key or token a request carries: the Bearer credential, else the Basic password."""
    if creds is not None and creds.scheme.lower() == "bearer":
        return creds.credentials
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return _basic_password(header)


def challenge_for(path: str) -> str:
    """The WWW-Authenticate challenge of a 401: Basic on HTML pages (a browser then asks), else Bearer."""
    return 'Basic realm="carve", charset="UTF-8"' if path.startswith(("/report", "/ui")) else "Bearer"


def unauthorized(request: Request, reason: str) -> HTTPException:
    return HTTPException(status_code=401, detail=reason, headers={"WWW-Authenticate": challenge_for(request.url.path)})


class Authenticator:
    """Resolves a request to a `Principal` (module doc); one per app, shared by its worker threads."""

    def __init__(self, token: str, catalogs: Catalogs, cfg: ServiceConfig):
        self._token = token.encode()
        self._catalogs = catalogs
        self._ttl = float(cfg.key_cache_s)
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, dict[str, Any] | None]] = {}  # key id -> (read at, row)
        self._touched: dict[str, float] = {}
        self.header = cfg.trusted_proxy_header.lower() if cfg.trusted_proxy_header else None
        self._proxies = [ipaddress.ip_network(a, strict=False) for a in cfg.trusted_proxies]
        bad = {u: r for u, r in cfg.proxy_users.items() if r not in ROLES}
        if bad:
            raise TokenError(f"service.proxy_users: unknown roles {bad}; use one of {', '.join(ROLES)}")
        self._proxy_users = dict(cfg.proxy_users)
        if self.header and not self._proxies:
            raise TokenError("service.trusted_proxy_header is set but service.trusted_proxies is empty: "
                             "name the proxy's addresses")

    # -- the catalog's keys, cached ---------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget every cached key (a key was added or revoked in this process)."""
        with self._lock:
            self._keys.clear()

    def _key_row(self, key_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._keys.get(key_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        row = access.key_record(self._catalogs.get(), key_id)
        with self._lock:
            if len(self._keys) > 10_000:  # unknown ids sent in bulk must not grow the cache without bound
                self._keys.clear()
            self._keys[key_id] = (now, row)
        return row

    def _touch(self, key_id: str) -> None:
        now = time.time()
        with self._lock:
            if now - self._touched.get(key_id, 0.0) < TOUCH_EVERY_S:
                return
            self._touched[key_id] = now
        try:
            access.touch_key(self._catalogs.get(), key_id, now)
        except Exception as e:  # last-used bookkeeping never fails a request
            log.warning("could not record the use of key %s: %s", key_id, type(e).__name__)

    # -- a request --------------------------------------------------------------------------------
    def _trusted(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self._proxies)

    def _proxy_principal(self, request: Request, user: str) -> Principal:
        host = request.client.host if request.client else None
        if not self._trusted(host):
            raise unauthorized(request, f"the {self.header} header is accepted only from a trusted proxy")
        user = user.strip()
        if not access.NAME_RE.match(user):
            raise unauthorized(request, f"the {self.header} header does not hold a valid user name")
        role = self._proxy_users.get(user)
        if role is None:
            role = access.active_role(self._catalogs.get(), user)
        if role is None:
            raise HTTPException(status_code=403, detail=f"user {user!r} has no role on this server")
        return Principal(user, role, "proxy")

    def authenticate(self, request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
        """The request's user, or HTTPException 401 (no, malformed, unknown or revoked credential;
        a proxy header from an untrusted address) or 403 (a proxy user without a role)."""
        if self.header is not None:
            user = request.headers.get(self.header)
            if user is not None:
                return self._proxy_principal(request, user)
        presented = presented_credential(request, creds)
        if not presented:
            raise unauthorized(request, "missing credentials: send a key as a Bearer token (or Basic password)")
        raw = presented.encode("utf-8", "surrogateescape")
        if hmac.compare_digest(raw, self._token):
            return TOKEN_PRINCIPAL
        parsed = access.parse_key(presented)
        if parsed is None:
            raise unauthorized(request, "invalid key")
        key_id, secret = parsed
        row = self._key_row(key_id)
        if row is None or not hmac.compare_digest(row["hash"].encode(), access.hash_secret(secret).encode()):
            raise unauthorized(request, "invalid key")
        if row["revoked_at"] is not None:
            raise unauthorized(request, f"key {key_id} was revoked")
        self._touch(key_id)
        return Principal(row["name"], row["role"], "key", key_id)
