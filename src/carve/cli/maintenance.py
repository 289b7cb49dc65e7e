"""`carve status`, `carve compact` and `carve gc`: looking after a root's event part files.

    carve status --root out [--json]        datasets: episodes ok / quarantined, events, batches,
                                            live parts, orphan parts and temp files with bytes;
                                            quarantined episodes with reasons; versions
    carve compact --root out [--dry-run]    small live parts of finished batches -> parts of
                                            `ray.part_target_mb` (one catalog transaction)
    carve gc --root out [--dry-run] [--min-age-s 3600]
                                            delete orphan parts, temp files and compacted parts
                                            older than the grace period

The bookkeeping itself is carve.storage.parts. An orphan is a part file no committed episode
points to (a driver killed mid-run, a compaction that crashed); readers never read it. `gc`'s
grace period (`--min-age-s`, default one hour) keeps the fresh, not yet committed parts of a
job that is running now; pass 0 only when nothing is running on the root.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _print_done(args: argparse.Namespace, done: list[Any], line: Callable[[Any], str], total: str) -> int:
    """What `compact`/`gc` did: as JSON (one object per item) with --json, else a line per item and a total."""
    if args.json:
        print(json.dumps([d.__dict__ for d in done], indent=2))
        return 0
    for d in done:
        print(line(d))
    print(total)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.storage.parts import status
    from carve.storage.root import root_of

    cfg = load_config(args)
    with root_of(cfg) as root:
        cat = root.catalog
        parts = status(root)
        if args.json:
            out: dict[str, Any] = {"datasets": parts,
                                   "quarantined": [{"episode_id": r.episode_id, "dataset": r.dataset, "error": r.error}
                                                   for r in cat.episodes(status="failed")],
                                   "versions": {k: [v["version"] for v in cat.versions(k)]
                                                for k in ("clusters", "shards")}}
            print(json.dumps(out, indent=2))
            return 0
        sources = {d["name"]: d["source_uri"] for d in cat.datasets()}
        for name, d in parts.items():
            print(f"{name}: {d['episodes_ok']} episodes ok, {d['episodes_failed']} quarantined, {d['events']} events "
                  f"({sources.get(name, 'not in the catalog')})")
            line = (f"  {d['batches']} batches, {d['live_parts']} live parts ({_mb(d['live_bytes'])}), "
                    f"{d['orphan_parts']} orphan parts ({_mb(d['orphan_bytes'])}), "
                    f"{d['temp_parts']} temp files ({_mb(d['temp_bytes'])})")
            if d["compacted_parts"]:
                line += f", {d['compacted_parts']} compacted parts awaiting deletion ({_mb(d['compacted_bytes'])})"
            if d["legacy_parts"]:
                line += f", {d['legacy_parts']} parts written before catalog revision 0003"
            print(line)
            for o in d["orphans"]:
                print(f"  {o['kind']} {o['path']}: {o['bytes']} bytes, {o['age_s']:.0f} s old")
        if any(d["orphans"] for d in parts.values()):
            print("  (carve gc --root ... removes orphans and temp files older than --min-age-s)")
        for rec in cat.episodes(status="failed"):
            print(f"  quarantined {rec.episode_id}: {rec.error}")
        for kind in ("clusters", "shards"):
            vs = cat.versions(kind)
            if vs:
                print(f"{kind}: " + ", ".join(f"v{v['version']:03d}" for v in vs))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.storage.parts import compact
    from carve.storage.root import root_of

    cfg = load_config(args)
    target = args.target_mb if args.target_mb is not None else cfg.ray.part_target_mb
    with root_of(cfg) as root:
        done = compact(root, target_mb=target, grace_s=args.grace_s, min_batch_age_s=args.min_batch_age_s,
                       row_group_size=cfg.shard.row_group_size, dry_run=args.dry_run)
    verb = "would rewrite" if args.dry_run else "rewrote"
    return _print_done(args, done, lambda c: f"batch {c.batch}: {verb} {len(c.old)} parts ({c.rows} rows) as "
                                             f"{len(c.new) or 'new'} part(s)",
                       f"{len(done)} compactions, {sum(len(c.old) for c in done)} parts -> "
                       f"{sum(len(c.new) for c in done)}")


def cmd_gc(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.storage.parts import gc
    from carve.storage.root import root_of

    cfg = load_config(args)
    with root_of(cfg) as root:
        removed = gc(root, min_age_s=args.min_age_s, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    return _print_done(args, removed, lambda f: f"{verb} {f.kind} {f.path} ({f.bytes} bytes)",
                       f"{verb} {len(removed)} files, {_mb(sum(f.bytes for f in removed))}")


def register(sub: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    q = sub.add_parser("status", help="what the catalog holds: datasets, parts and orphans, quarantined episodes, "
                                      "versions")
    add_common(q)
    q.add_argument("--json", action="store_true", help="print as JSON")
    q.set_defaults(func=cmd_status)

    c = sub.add_parser("compact", help="rewrite small event part files of finished batches into parts of the "
                                       "target size")
    add_common(c)
    c.add_argument("--target-mb", type=float, default=None, help="part size to aim for (default ray.part_target_mb)")
    c.add_argument("--grace-s", type=float, default=0.0,
                   help="keep the old files this long for readers holding an older snapshot (gc deletes them "
                        "later); default 0: delete them at once")
    c.add_argument("--min-batch-age-s", type=float, default=3600.0,
                   help="a batch without a finished run is compacted only when its last commit is this old")
    c.add_argument("--dry-run", action="store_true", help="say what would be rewritten, write nothing")
    c.add_argument("--json", action="store_true", help="print as JSON")
    c.set_defaults(func=cmd_compact)

    g = sub.add_parser("gc", help="delete orphan event part files, temp files and compacted parts")
    add_common(g)
    g.add_argument("--min-age-s", type=float, default=3600.0,
                   help="grace period: only files at least this old (a running job's fresh parts are younger)")
    g.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    g.add_argument("--json", action="store_true", help="print as JSON")
    g.set_defaults(func=cmd_gc)
