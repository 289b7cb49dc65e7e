"""`carve cluster`, `carve recluster`, `carve shard`, `carve versions`: the CLI of clustering/curate.py.

    carve cluster   --root R     first time: cluster the catalog; later: assign new events
    carve recluster --root R     a fresh clustering version over every event
    carve shard     --root R [--policy uniform|temperature|hierarchical] [--total N]
    carve versions  --root R     clusters and shards versions, and the coverage drift
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from carve.shard.balance import POLICIES
from carve.storage.layout import RootLayout
from carve.storage.root import root_of


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text)


def _drift_line(d: dict[str, Any] | None) -> str:
    if not d:
        return "drift: n/a"
    if d["new_events"] == 0:
        return f"drift: no events assigned since clustering ({d['train_events']} clustered)"
    line = (f"drift: {d['new_events']} events assigned later, mean centroid distance {d['new_mean_dist']:.4f} "
            f"vs {d['train_mean_dist']:.4f} at training (ratio {d['ratio']})")
    if d["recommend_recluster"]:
        line += f"\n  recluster recommended: {d['reason']} (run `carve recluster`)"
    return line


def cmd_cluster(args: argparse.Namespace) -> int:
    from carve.audit.derive import derive_views
    from carve.cli.main import load_config
    from carve.clustering.curate import assign_new, cluster_catalog, coverage_drift
    from carve.clustering.versions import latest_version

    cfg = load_config(args)
    root = root_of(cfg)
    if latest_version(root, "clusters") is None:
        v, action = cluster_catalog(root, cfg), "clustered"
    else:
        v, action = assign_new(root, cfg), "assigned new events to"
    derive_views(root, v, cfg.cluster)
    d = coverage_drift(root, cfg, v)
    _emit(args, {"clusters_version": v, "action": action, "drift": d},
          f"{action} clusters v{v:03d}: {cfg.root}/{'/'.join(RootLayout.clusters(v))}/\n{_drift_line(d)}")
    return 0


def cmd_recluster(args: argparse.Namespace) -> int:
    from carve.audit.derive import derive_views
    from carve.cli.main import load_config
    from carve.clustering.curate import recluster
    from carve.clustering.versions import load_clustering

    cfg = load_config(args)
    root = root_of(cfg)
    v = recluster(root, cfg)
    derive_views(root, v, cfg.cluster)
    meta = load_clustering(root, v).meta
    _emit(args, {"clusters_version": v, "meta": meta},
          f"clusters v{v:03d}: k={meta['k']} levels={meta['levels']} over {meta['n_events']} events, "
          f"{meta['n_duplicates']} near-duplicates" + (f"\n  note: {meta['k_note']}" if meta.get("k_note") else ""))
    return 0


def _num(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def cmd_shard(args: argparse.Namespace) -> int:
    from carve.audit.derive import derive_views
    from carve.cli.main import load_config
    from carve.shard.cut import cut_shards
    from carve.storage.manifest import BalanceStats, load_manifest

    cfg = load_config(args)
    root = root_of(cfg)
    v = cut_shards(root, cfg, policy=args.policy, total=args.total, progress=cfg.ray.progress)
    m = load_manifest(cfg.root, v)
    assert m.clusters_version is not None and m.policy is not None  # a cut writes both
    derive_views(root, m.clusters_version, cfg.cluster)  # the cut assigns new events first
    b = (m.stats.before if m.stats else None) or BalanceStats()
    a = (m.stats.after if m.stats else None) or BalanceStats()
    draws = f"{m.sampling.epoch_samples:g}" if m.sampling and m.sampling.epoch_samples is not None else "n/a"
    _emit(args, m.to_json(),
          f"shards v{v:03d}: {m.total_rows} rows in {len(m.shards)} shards ({m.unique_events} unique events), "
          f"policy {m.policy.name}, clusters v{m.clusters_version:03d}"
          + (f", mode weights: {draws} weighted draws per epoch (sampling_weight)\n"
             if m.mode == "weights" else "\n") +
          f"  max/min cluster share {_num(b.max_min_ratio, '.2f')} -> {_num(a.max_min_ratio, '.2f')}, "
          f"normalised entropy {_num(b.entropy, '.3f')} -> {_num(a.entropy, '.3f')}\n"
          f"  {cfg.root}/{'/'.join(RootLayout.manifest(v))}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config
    from carve.clustering.curate import versions_summary

    cfg = load_config(args)
    s = versions_summary(root_of(cfg), cfg)
    lines = ["clusters:"]
    for r in s["clusters"]:
        m = r["meta"]
        lines.append(f"  v{r['version']:03d}  k={m.get('k')} levels={m.get('levels')} events={m.get('n_events')} "
                     f"later={m.get('n_assigned_later', 0)}  {r['path']}")
    lines.append("shards:")
    for r in s["shards"]:
        m = r["meta"]
        lines.append(f"  v{r['version']:03d}  rows={m.get('total_rows')} shards={m.get('shards')} "
                     f"policy={m.get('policy')} clusters=v{m.get('clusters_version', 0):03d}  {r['path']}")
    lines.append(_drift_line(s["drift"]))
    _emit(args, s, "\n".join(lines))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    for name, helptext, func in (
        ("cluster", "cluster the event catalog (first time) or assign new events", cmd_cluster),
        ("recluster", "a fresh clustering version over every event", cmd_recluster),
        ("versions", "list clusters and shards versions and the coverage drift", cmd_versions),
    ):
        p = subparsers.add_parser(name, help=helptext)
        add_common(p)
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=func)

    p = subparsers.add_parser("shard", help="write a new cluster-balanced shards version + manifest")
    add_common(p)
    p.add_argument("--policy", choices=POLICIES, default=None, help="balancing policy (default: shard.policy)")
    p.add_argument("--total", type=int, default=None, help="rows across all shards (default: shard.total_events)")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_shard)

