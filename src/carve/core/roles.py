"""The service's roles, lowest first: each may do what the ones below it may, and more.

    viewer    read pages, events, clips and reports
    analyst   also add and clear review flags
    engineer  also start, cancel and resume jobs and exports
    admin     also manage keys and read the audit log

Which route needs which role is the one table `carve.service.access.ROUTE_ROLES`; this module
only names the roles and orders them (config, the catalog's keys and the service share it).
"""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "analyst", "engineer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "analyst", "engineer", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}


class RoleError(ValueError):
    """A role name that is not one of `ROLES`."""


def check_role(role: str) -> Role:
    """`role` if it is a known role, else RoleError naming the known ones."""
    if role not in _RANK:
        raise RoleError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def at_least(role: str, minimum: str) -> bool:
    """True if `role` may do what `minimum` may (an unknown role may do nothing)."""
    return role in _RANK and _RANK[role] >= _RANK[minimum]
