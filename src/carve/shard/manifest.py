"""Building and writing a shards version's manifest: `<root>/shards/vNNN/manifest.json`, LAST and atomically.

`build_manifest` assembles the typed `carve.storage.manifest.ShardManifest` (format
`carve.manifest` v1, docs/FORMATS.md) from what a cut produced; `write_manifest` validates it
and writes its JSON (`ShardManifest.to_json()`, two-space indent, the format's key order) with
`storage.fs.atomic_write_bytes`, after every shard is in place, so a version without a
manifest is an interrupted one. Reading it back is `carve.storage.manifest.load_manifest`.
"""

from __future__ import annotations

import json
from typing import Any

from carve.storage.fs import atomic_write_bytes, join
from carve.storage.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ShardManifest,
    utc_now,
)
from carve.storage.schema import SCHEMA_VERSION


def build_manifest(
    *,
    version: int,
    clusters_version: int | None,
    policy: dict[str, Any],
    config: dict[str, Any],
    emb_dims: dict[str, int],
    shards: list[dict[str, Any]],
    clusters: dict[str, dict[str, int]],
    stats: dict[str, dict[str, Any]],
    sources: list[dict[str, Any]],
    unique_events: int,
    extra: dict[str, Any] | None = None,
) -> ShardManifest:
    """The manifest of a finished cut; `extra` holds the cut's counts (requested_rows, mode, sampling, ...)."""
    m: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "version": int(version),
        "created_at": utc_now(),
        "schema_version": SCHEMA_VERSION,
        "clusters_version": clusters_version,
        "policy": policy,
        "config": config,
        "emb_dims": emb_dims,
        "shards": shards,
        "clusters": clusters,
        "stats": stats,
        "sources": sources,
        "total_rows": int(sum(int(s["rows"]) for s in shards)),
        "unique_events": int(unique_events),
    }
    if extra:
        m.update(extra)
    return ShardManifest.parse(m, f"shards v{int(version):03d}")


def write_manifest(version_dir: str, manifest: ShardManifest) -> str:
    """Atomically write `manifest.json` into `version_dir`; call only after every shard is in place."""
    path = join(version_dir, MANIFEST_NAME)
    data = manifest.to_json()
    ShardManifest.parse(data, path)
    atomic_write_bytes(json.dumps(data, indent=2, sort_keys=False).encode(), path)
    return path
