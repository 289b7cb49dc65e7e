"""`carve keys add|list|revoke`: the service's per-user API keys, in the root's catalog.

    carve keys add --name alice --role analyst    prints the key once (only its hash is stored)
    carve keys list [--all] [--json]              name, role, created, last used (never the key)
    carve keys revoke --name alice

A running server sees a change within `service.key_cache_s` seconds, without a restart. Each
change is also written to the audit log (user: the shell's login name, via `cli`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import TYPE_CHECKING

from carve.core.roles import ROLES

if TYPE_CHECKING:
    from carve.storage.catalog import Catalog


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z" if t else "never"


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (a container without a passwd entry)
        return "cli"


def _catalog(args: argparse.Namespace) -> Catalog:
    from carve.cli.main import load_config
    from carve.storage.root import root_of

    return root_of(load_config(args)).catalog


def _audit(cat: Catalog, action: str, name: str, status: int) -> None:
    from carve.storage import access

    access.record(cat, method="CLI", route=f"carve keys {action}", path=f"carve keys {action} --name {name}",
                  status=status, outcome="ok" if status < 400 else "rejected", user=_who(), role="admin",
                  via="cli", target=name)


def cmd_add(args: argparse.Namespace) -> int:
    from carve.storage import access

    cat = _catalog(args)
    try:
        key, row = access.add_key(cat, args.name, args.role, by=_who())
    except access.AccessError as e:
        print(f"carve: error: {e}", file=sys.stderr)
        return 2
    _audit(cat, "add", args.name, 201)
    print(f"key for {row['name']} ({row['role']}), shown once; keep it secret:", file=sys.stderr)
    print(key)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from carve.storage import access

    rows = access.list_keys(_catalog(args), include_revoked=args.all)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<24} {'role':<9} {'id':<13} {'created':<21} {'last used':<21} state")
    for r in rows:
        state = "active" if r["active"] else f"revoked {_when(r['revoked_at'])}"
        print(f"{r['name']:<24} {r['role']:<9} {r['id']:<13} {_when(r['created_at']):<21} "
              f"{_when(r['last_used_at']):<21} {state}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from carve.storage import access

    cat = _catalog(args)
    try:
        access.revoke_key(cat, args.name, by=_who())
    except access.AccessError as e:
        print(f"carve: error: {e}", file=sys.stderr)
        return 2
    _audit(cat, "revoke", args.name, 200)
    print(f"revoked the key of {args.name}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = sub.add_parser("keys", help="per-user API keys of `carve serve` (add, list, revoke)")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    a = ks.add_parser("add", help="make a key for a user; prints it once")
    add_common(a)
    a.add_argument("--name", required=True, help="the user (letters, digits, _ . @ -)")
    a.add_argument("--role", required=True, choices=ROLES, help="what the user may do (docs/API.md)")
    a.set_defaults(func=cmd_add)
    ls = ks.add_parser("list", help="the keys: name, role, created, last used (never the key)")
    add_common(ls)
    ls.add_argument("--all", action="store_true", help="also revoked keys")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(func=cmd_list)
    r = ks.add_parser("revoke", help="revoke a user's key (takes effect without a restart)")
    add_common(r)
    r.add_argument("--name", required=True)
    r.set_defaults(func=cmd_revoke)
