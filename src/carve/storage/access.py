"""Who may use the service and what they did: per-user API keys and the audit log (revision 0008).

Keys. A key is `carve_<id>_<secret>`: `id` 12 hex characters (public, the row's primary key,
shown by `carve keys list`), `secret` 32 random bytes from `secrets` (43 URL-safe characters).
Only the SHA-256 of the secret is stored. A fast hash is enough here, unlike for passwords: the
secret has 256 bits of entropy, so there is nothing to guess from a leaked hash and no
dictionary to slow down (scrypt or PBKDF2 protect low-entropy human passwords, at a cost of
tens of milliseconds per request that would break the service's per-request budget). The
service compares hashes with `hmac.compare_digest`. A key has one name and one role; a name has
at most one active key (revoke, then add again to rotate). Revoking keeps the row (revoked_at,
revoked_by), so the log's users stay resolvable.

Audit log. One row per state-changing request of the service (job start, cancel, resume,
export, flag add/clear, key add/revoke) and per key change made with `carve keys`: time, user,
role, how they signed in (`key`, `token`, `proxy`, `cli`), method, route template, path,
target, HTTP status and outcome (`ok`, `refused`, `unauthenticated`, `error`). Rows are only
ever inserted. No column ever holds key material.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

import sqlalchemy as sa

from carve.core.roles import check_role
from carve.storage.catalog import Catalog

KEY_PREFIX = "carve_"
KEY_RE = re.compile(r"^carve_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@\-]{1,100}$")

_md = sa.MetaData()
API_KEYS = sa.Table(
    "api_keys", _md,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("created_by", sa.Text),
    sa.Column("last_used_at", sa.Double),
    sa.Column("revoked_at", sa.Double),
    sa.Column("revoked_by", sa.Text),
)
AUDIT_LOG = sa.Table(
    "audit_log", _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("username", sa.Text),
    sa.Column("role", sa.Text),
    sa.Column("via", sa.Text),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("client", sa.Text),
)
AUDIT_FIELDS = ("id", "at", "user", "role", "via", "method", "route", "path", "target", "status", "outcome", "client")


class AccessError(ValueError):
    """A key that cannot be added or revoked (bad name, unknown role, name taken, no such key)."""


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret part (module doc: why SHA-256 suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None (never raises, never echoes the key)."""
    m = KEY_RE.match(key)
    return (m.group(1), m.group(2)) if m else None


def _public(r: Any) -> dict[str, Any]:
    d = dict(r._mapping) if hasattr(r, "_mapping") else dict(r)
    d.pop("hash", None)
    d["active"] = d.get("revoked_at") is None
    return d


def add_key(cat: Catalog, name: str, role: str, *, by: str | None = None) -> tuple[str, dict[str, Any]]:
    """Make a key for `name` with `role`; returns (the key, shown once; its row without the hash)."""
    if not NAME_RE.match(name or ""):
        raise AccessError("a key name is 1-100 letters, digits and _ . @ -")
    try:
        check_role(role)
    except ValueError as e:
        raise AccessError(str(e)) from None
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    row = {"id": key_id, "name": name, "role": role, "hash": hash_secret(secret), "created_at": time.time(),
           "created_by": by}
    k = API_KEYS.c
    with cat.transaction() as c:
        taken = c.execute(sa.select(k.id).where(k.name == name, k.revoked_at.is_(None))).first()
        if taken is not None:
            raise AccessError(f"{name!r} already has an active key; revoke it first")
        c.execute(API_KEYS.insert().values(**row))
    return f"{KEY_PREFIX}{key_id}_{secret}", _public(row)


def list_keys(cat: Catalog, include_revoked: bool = False) -> list[dict[str, Any]]:
    """The keys (name, role, created, last used, revoked; never the hash), oldest first."""
    q = sa.select(API_KEYS)
    if not include_revoked:
        q = q.where(API_KEYS.c.revoked_at.is_(None))
    with cat.reading() as c:
        return [_public(r) for r in c.execute(q.order_by(API_KEYS.c.created_at))]


def revoke_key(cat: Catalog, name: str, *, by: str | None = None) -> dict[str, Any]:
    """Revoke the active key of `name` (AccessError if it has none); returns its row."""
    k = API_KEYS.c
    with cat.transaction() as c:
        row = c.execute(sa.select(API_KEYS).where(k.name == name, k.revoked_at.is_(None))).first()
        if row is None:
            raise AccessError(f"no active key named {name!r}")
        now = time.time()
        c.execute(API_KEYS.update().where(k.id == row.id).values(revoked_at=now, revoked_by=by))
    return {**_public(row), "revoked_at": now, "revoked_by": by, "active": False}


def key_record(cat: Catalog, key_id: str) -> dict[str, Any] | None:
    """The row of key `key_id` (hash included: for the service's check only)."""
    with cat.reading() as c:
        r = c.execute(sa.select(API_KEYS).where(API_KEYS.c.id == key_id)).first()
    return dict(r._mapping) if r is not None else None


def active_role(cat: Catalog, name: str) -> str | None:
    """The role of `name`'s active key, if any (a trusted proxy's user known to the catalog)."""
    k = API_KEYS.c
    with cat.reading() as c:
        return c.execute(sa.select(k.role).where(k.name == name, k.revoked_at.is_(None))).scalar_one_or_none()


def touch_key(cat: Catalog, key_id: str, at: float | None = None) -> None:
    """Record that the key was used (the service calls this at most once a minute per key)."""
    with cat.transaction() as c:
        c.execute(API_KEYS.update().where(API_KEYS.c.id == key_id).values(last_used_at=at or time.time()))


def record(cat: Catalog, *, method: str, route: str, path: str, status: int, outcome: str,
           user: str | None = None, role: str | None = None, via: str | None = None, target: str | None = None,
           client: str | None = None, at: float | None = None) -> None:
    """Append one row to the audit log."""
    with cat.transaction() as c:
        c.execute(AUDIT_LOG.insert().values(
            at=at or time.time(), username=user, role=role, via=via, method=method, route=route[:500],
            path=path[:2000], target=target[:500] if target else None, status=int(status), outcome=outcome,
            client=client))


def entries(cat: Catalog, *, limit: int = 1000, offset: int = 0, user: str | None = None,
            since: float | None = None) -> list[dict[str, Any]]:
    """Audit rows, newest first (`user`: only theirs; `since`: at or after this time)."""
    a = AUDIT_LOG.c
    q = sa.select(AUDIT_LOG)
    if user is not None:
        q = q.where(a.username == user)
    if since is not None:
        q = q.where(a.at >= since)
    with cat.reading() as c:
        rows = c.execute(q.order_by(a.at.desc(), a.id.desc()).limit(limit).offset(offset)).mappings().all()
    return [{("user" if k == "username" else k): v for k, v in r.items()} for r in rows]
