"""`carve run`: the command-line face of pipeline/run.py (`carve status` is in cli/maintenance.py)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from carve.pipeline.run import Cancelled, run_pipeline


def _on_sigterm(signum: int, frame: object) -> None:
    raise Cancelled()


def cmd_run(args: argparse.Namespace) -> int:
    from carve.cli.main import load_config

    if args.source:
        args.overrides.append(f"source.uri={args.source}")
    if args.format:
        args.overrides.append(f"source.format={args.format}")
    if args.task:
        args.overrides.append(f"source.task={json.dumps(args.task)}")
    if args.ray_address:
        args.overrides.append(f"ray.address={args.ray_address}")
    if args.allow_shared_local_root:
        args.overrides.append("ray.allow_shared_local_root=true")
    if args.executor:
        args.overrides.append(f"ray.executor={args.executor}")
    cfg = load_config(args)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        s = run_pipeline(cfg, job_id=args.job_id, shard=not args.no_shard)
    except Cancelled:
        print("carve: run cancelled", file=sys.stderr)
        return 143
    if args.json:
        print(json.dumps(s.as_dict(), indent=2))
    else:
        print(
            f"dataset {s.dataset}: {s.episodes_total} episodes, {s.episodes_skipped} already ingested, "
            f"{s.episodes_ok} ingested, {s.episodes_failed} quarantined, {s.events} events "
            f"in {s.seconds:.1f} s"
        )
        for ep, err in s.failures:
            print(f"  quarantined {ep}: {err}")
        for note in s.notes:
            print(f"  note: {note}")
        if s.quality:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(s.quality.items()))
            print(f"  quality gate: episodes with findings by kind: {kinds} (the events an error touches stay "
                  "out of the shards; `carve check` reports them in full)")
        if s.stages:
            print(format_stages(s.stages))
        print(f"events:  {cfg.root}/events/" + (f"batch={s.batch}/" if s.batch else ""))
        if s.clusters_version is not None:
            print(f"clusters: {cfg.root}/clusters/v{s.clusters_version:03d}/")
        if s.shards_version is not None:
            print(f"shards:  {cfg.root}/shards/v{s.shards_version:03d}/manifest.json")
    return 3 if s.episodes_failed else 0


def format_stages(stages: dict[str, dict[str, Any]]) -> str:
    """The per-step table of a run summary."""
    lines = [f"  {'step':<16} {'episodes':>8} {'events':>7} {'failed':>6} {'seconds':>8}"]
    for name, s in stages.items():
        lines.append(f"  {name:<16} {s.get('episodes', ''):>8} {s.get('events', ''):>7} "
                     f"{s.get('failures', ''):>6} {s.get('seconds', 0.0):>8.2f}")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    from carve.cli.main import add_common

    p = sub.add_parser("run", help="ingest -> segment -> caption -> embed -> cluster -> shard")
    add_common(p)
    p.add_argument("--source", help="dataset root (LeRobot v2.1/v3.0, MP4+arrays folder, HDF5, RLDS TFDS build)")
    p.add_argument("--format", choices=["auto", "lerobot", "folder", "hdf5", "rlds"], default=None)
    p.add_argument("--task", default=None,
                   help="task text for episodes whose source names none (source.task; a tasks.json beside the "
                        "files wins)")
    p.add_argument("--ray-address", default=None,
                   help="join a Ray cluster at its head's GCS address (head:6379) instead of starting an "
                        "embedded Ray; see docs/CLUSTER.md")
    p.add_argument("--executor", choices=["auto", "ray", "local"], default=None,
                   help="where the steps run (ray.executor): auto (default) keeps a small embedded run in this "
                        "process and starts Ray when it pays; ray or local to choose")
    p.add_argument("--allow-shared-local-root", action="store_true",
                   help="on a multi-node cluster, accept a local root/source: every node mounts it at the same path")
    p.add_argument("--job-id", default=None, help="(service) report progress into this catalog job")
    p.add_argument("--no-shard", action="store_true", help="stop after the event catalog is written")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=cmd_run)
