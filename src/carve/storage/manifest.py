"""The shard manifest: `<root>/shards/vNNN/manifest.json`, written LAST and atomically.

Format `carve.manifest`, `manifest_version` 1 (see docs/FORMATS.md): the version
numbers of the shards and of the clustering they were cut from, the balancing policy, the
shard config, embedding sizes, every shard's relative path, row count, size and sha256, the
per-cluster row counts and balance statistics before/after, the sources and the totals.

`read_manifest` accepts a manifest file, a `shards/vNNN` folder or a Carve root (a URI, a
path or an opened `Root`; then the latest complete version, or `version=`), validates it and
refuses a `manifest_version` or `schema_version` newer than this code knows, with a message
naming the file. This is the only reader of the format: the trainer (`trainer.manifest`) and
the coverage audit (`report.audit`) build their views on it, and `ManifestError` is the one
error type for a manifest Carve cannot use.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from carve.core.errors import CarveError
from carve.storage.fs import atomic_write_bytes, join, parent
from carve.storage.layout import RootLayout
from carve.storage.root import Root, open_root
from carve.storage.schema import SCHEMA_VERSION

MANIFEST_FORMAT = "carve.manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = RootLayout.MANIFEST
_REQUIRED = ("format", "manifest_version", "version", "schema_version", "shards", "total_rows")


class ManifestError(CarveError, ValueError):
    """A manifest (or a shard it lists) Carve cannot use; the message names the file and the reason."""


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
) -> dict[str, Any]:
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
    return m


def write_manifest(version_dir: str, manifest: dict[str, Any]) -> str:
    """Atomically write `manifest.json` into `version_dir`; call only after every shard is in place."""
    validate_manifest(manifest, join(version_dir, MANIFEST_NAME))
    path = join(version_dir, MANIFEST_NAME)
    atomic_write_bytes(json.dumps(manifest, indent=2, sort_keys=False).encode(), path)
    return path


def validate_manifest(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise ManifestError(f"{where}: not a JSON object")
    if m.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{where}: not a Carve manifest (format={m.get('format')!r})")
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise ManifestError(f"{where}: missing keys {missing}")
    mv, sv = int(m["manifest_version"]), int(m["schema_version"])
    if mv > MANIFEST_VERSION:
        raise ManifestError(
            f"{where}: manifest_version {mv} is newer than this Carve reads (up to {MANIFEST_VERSION}); upgrade Carve"
        )
    if sv > SCHEMA_VERSION:
        raise ManifestError(
            f"{where}: schema_version {sv}: the shards use event schema v{sv}, this Carve reads up to "
            f"v{SCHEMA_VERSION}; upgrade Carve"
        )
    if mv < 1 or sv < 1:
        raise ManifestError(f"{where}: unknown manifest_version {mv} / schema_version {sv}")
    for s in m["shards"]:
        if not isinstance(s, dict) or not {"path", "rows", "sha256"} <= set(s):
            raise ManifestError(f"{where}: shard entry {s!r} lacks path/rows/sha256")
    return m


def _locate(root: Root, version: int | None) -> str:
    """The manifest file (a path on `root.fs`) for a file, a `shards/vNNN` folder or a root (+ version)."""
    if root.base.endswith(".json") or root.fs.get_file_info(root.base).type == pafs.FileType.File:
        return root.base
    if version is None and root.exists(MANIFEST_NAME):
        return root.path(MANIFEST_NAME)
    if version is None:
        done = manifest_versions(root)
        if not done:
            raise ManifestError(
                f"{root.uri}: no shard manifest found (no manifest.json in the folder nor under "
                "shards/vNNN/); run `carve shard`"
            )
        version = done[-1]
    return root.path(*RootLayout.manifest(version))


def manifest_path(path_or_root: str | Path | Root, version: int | None = None) -> str:
    """Resolve a manifest file, a `shards/vNNN` folder or a Carve root (+ version) to a manifest URI."""
    root = open_root(path_or_root)
    return root.uri_of(_locate(root, version))


def manifest_versions(root: str | Path | Root) -> list[int]:
    """Shard versions under `<root>/shards/` whose manifest.json exists (complete versions), sorted."""
    root = open_root(root)
    out = []
    for name in root.list_dirs(RootLayout.SHARDS):
        v = RootLayout.parse_version(name)
        if v is not None and root.exists(*RootLayout.manifest(v)):
            out.append(v)
    return sorted(out)


def read_manifest(path_or_root: str | Path | Root, version: int | None = None) -> dict[str, Any]:
    """Load and validate a manifest; adds `_dir` (the folder, as a URI, its shard paths are relative to)."""
    root = open_root(path_or_root)
    path = _locate(root, version)
    where = root.uri_of(path)
    if root.fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise ManifestError(f"{where}: manifest does not exist (shard version missing or interrupted)")
    try:
        m = json.loads(root.read_bytes(path))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON: {e}") from e
    except OSError as e:
        raise ManifestError(f"{where}: cannot read the manifest: {e}") from e
    validate_manifest(m, where)
    m["_dir"] = parent(where)
    return m
