"""`RootLayout`: the name of every path under a Carve root, written once (docs/FORMATS.md).

    catalog.sqlite                                 the catalog of a local root (or `catalog.url`)
    events/batch=<id>/part-<first>-<uid>.parquet   event part files, one batch per `carve run`
    clusters/vNNN/...                              a clustering version (meta.json written last)
    shards/vNNN/part-XXXXX.parquet, manifest.json  a shards version (manifest written last)
    reports/                                       `carve report`'s default output
    jobs/<id>/                                     the service's job folders (local roots)

Each method returns the parts of a path relative to the root, for `Root.path(*parts)`,
`Root.exists(*parts)` and friends; `parse_version` and `parse_batch` read the names back.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^v(\d{3,})$")


class RootLayout:
    """Paths under a root, as tuples of parts (see the module doc)."""

    CATALOG = "catalog.sqlite"
    EVENTS = "events"
    CLUSTERS = "clusters"
    SHARDS = "shards"
    REPORTS = "reports"
    JOBS = "jobs"
    MANIFEST = "manifest.json"
    CLUSTERS_DONE = "meta.json"  # a clustering version is complete once this exists
    VERSION_KINDS = (CLUSTERS, SHARDS)

    @staticmethod
    def version_name(version: int) -> str:
        """`v003`."""
        return f"v{int(version):03d}"

    @classmethod
    def check_kind(cls, kind: str) -> str:
        if kind not in cls.VERSION_KINDS:
            raise ValueError(f"unknown version kind {kind!r}")
        return kind

    @classmethod
    def version(cls, kind: str, version: int, *rest: str) -> tuple[str, ...]:
        """`<kind>/vNNN[/rest...]` of a clusters or shards version."""
        return (cls.check_kind(kind), cls.version_name(version), *rest)

    @classmethod
    def clusters(cls, version: int, *rest: str) -> tuple[str, ...]:
        return cls.version(cls.CLUSTERS, version, *rest)

    @classmethod
    def shards(cls, version: int, *rest: str) -> tuple[str, ...]:
        return cls.version(cls.SHARDS, version, *rest)

    @classmethod
    def done_marker(cls, kind: str, version: int) -> tuple[str, ...]:
        """The file whose presence makes a version complete (written last)."""
        return cls.version(kind, version, cls.CLUSTERS_DONE if kind == cls.CLUSTERS else cls.MANIFEST)

    @classmethod
    def manifest(cls, version: int) -> tuple[str, ...]:
        return cls.shards(version, cls.MANIFEST)

    @classmethod
    def batch(cls, batch: str, *rest: str) -> tuple[str, ...]:
        """`events/batch=<id>[/rest...]`."""
        return (cls.EVENTS, f"batch={batch}", *rest)

    @staticmethod
    def parse_version(name: str) -> int | None:
        """`v003` -> 3; None for any other folder name."""
        m = _VERSION.match(name)
        return int(m.group(1)) if m else None

    @staticmethod
    def parse_batch(path: str) -> str | None:
        """The batch id of a part file's path (its `batch=<id>` segment), None without one."""
        for seg in path.replace("\\", "/").split("/"):
            if seg.startswith("batch="):
                return seg[len("batch=") :]
        return None
