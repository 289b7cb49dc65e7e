"""The shard manifest's format and its one reader: `<root>/shards/vNNN/manifest.json`.

Format `carve.manifest`, `manifest_version` 1 (see docs/FORMATS.md): the version
numbers of the shards and of the clustering they were cut from, the balancing policy, the
shard config, embedding sizes, every shard's relative path, row count, size and sha256, the
per-cluster row counts and balance statistics before/after, the sources and the totals.
`ShardManifest` (pydantic, frozen) is that format as a typed object, with one model per
nested record (`ShardEntry`, `ClusterCounts`, `BalanceStats`, `SourceRecord`, ...); fields a
manifest does not carry (older or hand-written ones) are None, and `to_json()` gives back
exactly the keys it was built or read with, in the format's order.

`load_manifest` accepts a manifest file, a `shards/vNNN` folder or a Carve root (a URI, a
path or an opened `Root`; then the latest complete version, or `version=`), validates it and
refuses a `manifest_version` or `schema_version` newer than this code knows, with a message
naming the file, and returns the typed `ShardManifest` (its `dir` is the folder its shard
paths are relative to). This is the only reader of the format, and every reader uses the typed
object: the shard reader (`storage.shards`), the trainer (`trainer.manifest`), the exporter, the
CLI and the audit read model (`carve.audit`: the report, `carve ui-export` and the service); a
caller that sends a record as JSON sends its `to_json()` (`record_json`: None for an absent
one). `ManifestError` is the one error type for a manifest Carve cannot use.
Writing a manifest (last, atomically) is the shard package's (`carve.shard.manifest`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from carve.core.errors import CarveError
from carve.storage.fs import parent
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


class _Record(BaseModel):
    """A manifest record: frozen, keys beyond the declared ones kept (a newer writer's additions)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The JSON object: exactly the keys it was built or read with, declared ones in the format's order."""
        return self.model_dump(exclude_unset=True)


def record_json(record: _Record | None) -> dict[str, Any] | None:
    """A record's JSON object (`to_json()`), or None for a record the manifest does not carry."""
    return None if record is None else record.to_json()


class ShardEntry(_Record):
    """One shard file: its path relative to the version folder, rows, size and sha256."""

    path: str
    rows: int
    bytes: int | None = None
    sha256: str


class PolicyRecord(_Record):
    """The balancing policy the version was cut with (`carve.shard.balance.BalancePolicy`)."""

    name: str
    temperature: float | None = None
    max_repeat: int | None = None
    seed: int | None = None


class ClusterCounts(_Record):
    """Per cluster (id as a string): events before balancing, rows (or expected draws) after, rows written."""

    before: dict[str, int] = {}
    after: dict[str, int] = {}
    rows: dict[str, int] = {}


class BalanceStats(_Record):
    """max/min cluster-share ratio and normalised entropy of a cluster distribution (None: undefined)."""

    max_min_ratio: float | None = None
    entropy: float | None = None


class StatsPair(_Record):
    before: BalanceStats | None = None
    after: BalanceStats | None = None


class SourceRecord(_Record):
    """A dataset the version's events come from, with a fingerprint of its episodes."""

    dataset: str
    source_uri: str | None = None
    format: str | None = None
    fingerprint: str | None = None


class QualityExcluded(_Record):
    """Events the quality gate left out, per kind of finding, and those a `keep` flag kept in."""

    events: int = 0
    by_kind: dict[str, int] = {}
    kept_by_flag: int = 0


class SamplingSummary(_Record):
    """The rows' `sampling_weight`: its column, the draws per epoch (sum) and min/max/mean."""

    column: str = "sampling_weight"
    epoch_samples: float | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    zero_rows: int | None = None


class ShardManifest(_Record):
    """A shards version's manifest (format `carve.manifest` v1). The fields are declared in the
    order the writer puts them, so `to_json()` of a manifest built by `carve.shard.manifest`
    serialises to the same bytes as the dict it replaced."""

    format: str
    manifest_version: int
    version: int
    created_at: str | None = None
    schema_version: int
    clusters_version: int | None = None
    policy: PolicyRecord | None = None
    config: dict[str, Any] = {}
    emb_dims: dict[str, int] = {}
    shards: list[ShardEntry]
    clusters: ClusterCounts | None = None
    stats: StatsPair | None = None
    sources: list[SourceRecord] = []
    total_rows: int
    unique_events: int | None = None
    requested_rows: int | None = None
    eligible_events: int | None = None
    duplicates_excluded: int | None = None
    flagged_excluded: int | None = None
    mode: str | None = None
    quality_excluded: QualityExcluded | None = None
    sampling: SamplingSummary | None = None
    _dir: str = PrivateAttr(default="")

    @property
    def dir(self) -> str:
        """The folder (a URI) the shard paths are relative to; "" for a manifest not read from disk."""
        return self._dir

    @classmethod
    def parse(cls, m: Any, where: str) -> ShardManifest:
        """Validate a manifest's JSON object (`validate_manifest`, then the types), naming `where`."""
        validate_manifest(m, where)
        try:
            return cls.model_validate(m)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ManifestError(f"{where}: {loc}: {first['msg']}") from e


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


def load_manifest(path_or_root: str | Path | Root, version: int | None = None) -> ShardManifest:
    """Load and validate a manifest into a `ShardManifest` (its `dir`: the folder, as a URI, its shard
    paths are relative to)."""
    root = open_root(path_or_root)
    path = _locate(root, version)
    where = root.uri_of(path)
    if root.fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise ManifestError(f"{where}: manifest does not exist (shard version missing or interrupted)")
    try:
        raw = json.loads(root.read_bytes(path))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON: {e}") from e
    except OSError as e:
        raise ManifestError(f"{where}: cannot read the manifest: {e}") from e
    m = ShardManifest.parse(raw, where)
    m._dir = parent(where)
    return m
