"""Clustering versions on disk: `<root>/clusters/vNNN/` (save, load, list, assignments).

A clustering version holds `centroids.npy` (k×d float32, unit rows), `index.faiss` (an
inner-product index of the centroids), `hierarchy.json`, `assignments/part-*.parquet` and
`meta.json`, which is written LAST: a folder without `meta.json` is an interrupted write and
is ignored (its number is never reused). Assignment part files are written once and never
touched again; events ingested later get a new part file (see `clustering.curate.assign_new`).
Version numbers of both clusters and shards come from `next_version`, the highest number on
disk or in the catalog plus one.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from carve.clustering.hierarchical import Hierarchy
from carve.clustering.kmeans import ClusteringError, build_index
from carve.storage.root import Root

CLUSTERS_FORMAT = "carve.clusters"
CLUSTERS_VERSION = 1
INITIAL_PART = "part-00000-initial.parquet"  # the assignments of the events the centroids were trained on
_VDIR = re.compile(r"^v(\d{3,})$")

ASSIGNMENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("cluster_id", pa.int32(), nullable=False),
        pa.field("cluster_path", pa.list_(pa.int32())),
        pa.field("cluster_dist", pa.float32()),
        pa.field("dup_of", pa.string()),
    ],
    metadata={b"carve.assignments_version": b"1"},
)


def _check_kind(kind: str) -> str:
    if kind not in ("clusters", "shards"):
        raise ValueError(f"unknown version kind {kind!r}")
    return kind


def version_dir(root: Root, kind: str, version: int) -> str:
    """The folder (a path on `root.fs`) of one version."""
    return root.path(_check_kind(kind), f"v{int(version):03d}")


def _numbered_dirs(root: Root, kind: str) -> list[int]:
    return sorted(int(m.group(1)) for name in root.list_dirs(_check_kind(kind)) if (m := _VDIR.match(name)))


def complete_versions(root: Root, kind: str) -> list[int]:
    """Versions whose final marker (clusters: meta.json, shards: manifest.json) exists."""
    marker = "meta.json" if kind == "clusters" else "manifest.json"
    return [v for v in _numbered_dirs(root, kind) if root.exists(kind, f"v{v:03d}", marker)]


def latest_version(root: Root, kind: str) -> int | None:
    done = complete_versions(root, kind)
    return done[-1] if done else None


def next_version(root: Root, kind: str) -> int:
    """One more than any version on disk (complete or not) or recorded in the catalog."""
    seen = list(_numbered_dirs(root, kind))
    seen += [int(r["version"]) for r in root.catalog.versions(kind)]
    return max(seen, default=0) + 1


def claim_version(root: Root, kind: str) -> int:
    """`next_version`, with its folder created exclusively on local disks, so two processes
    cutting shards (or clustering) at once never get the same number."""
    import os

    v = next_version(root, kind)
    if not root.is_local:
        return v
    while True:
        path = version_dir(root, kind, v)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            os.mkdir(path)
            return v
        except FileExistsError:
            v += 1


@dataclass
class Clustering:
    """One saved clustering version, loaded."""

    version: int
    path: str
    centroids: np.ndarray
    hierarchy: Hierarchy
    meta: dict[str, Any]
    index: faiss.Index

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])


def save_clustering(
    root: Root, version: int, hierarchy: Hierarchy, meta: dict[str, Any], assignments: pa.Table
) -> str:
    """Write a whole clustering version (meta.json last); return its folder."""
    vdir = version_dir(root, "clusters", version)
    centroids = np.ascontiguousarray(hierarchy.leaf_centroids, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, centroids)
    root.write_bytes(f"{vdir}/centroids.npy", buf.getvalue())
    root.write_bytes(f"{vdir}/index.faiss", bytes(faiss.serialize_index(build_index(centroids))))
    root.write_bytes(f"{vdir}/hierarchy.json", json.dumps(hierarchy.to_json()).encode())
    write_assignments(root, version, assignments, key=INITIAL_PART[len("part-") : -len(".parquet")])
    full_meta = {"format": CLUSTERS_FORMAT, "clusters_format_version": CLUSTERS_VERSION, **meta}
    root.write_bytes(f"{vdir}/meta.json", json.dumps(full_meta, indent=2, sort_keys=True).encode())
    return vdir


def load_clustering(root: Root, version: int | None = None) -> Clustering:
    """Load a clustering version (default: the latest complete one)."""
    if version is None:
        version = latest_version(root, "clusters")
        if version is None:
            raise ClusteringError(f"{root}: no clustering yet; run `carve cluster` first")
    vdir = version_dir(root, "clusters", version)
    if not root.exists("clusters", f"v{int(version):03d}", "meta.json"):
        raise ClusteringError(f"{vdir}: clustering version {version} does not exist or was never finished")
    try:
        meta = json.loads(root.read_bytes(f"{vdir}/meta.json"))
    except json.JSONDecodeError as e:
        raise ClusteringError(f"{vdir}/meta.json: not valid JSON ({e})") from e
    if int(meta.get("clusters_format_version", 1)) > CLUSTERS_VERSION:
        raise ClusteringError(
            f"{vdir}/meta.json: clusters format v{meta['clusters_format_version']} is newer than this Carve "
            f"reads (v{CLUSTERS_VERSION}); upgrade Carve"
        )

    def load(name: str, parse: Callable[[bytes], Any]) -> Any:
        try:
            return parse(root.read_bytes(f"{vdir}/{name}"))
        except ClusteringError:
            raise
        except (OSError, ValueError, RuntimeError) as e:  # missing/truncated file, bad JSON, faiss refusing bytes
            raise ClusteringError(
                f"{vdir}/{name}: clustering version {version} is damaged ({type(e).__name__}: {e}); "
                "run `carve recluster` to make a fresh version"
            ) from e

    centroids = load("centroids.npy", lambda b: np.load(io.BytesIO(b)))
    index = load("index.faiss", lambda b: faiss.deserialize_index(np.frombuffer(b, dtype=np.uint8)))
    hierarchy = load("hierarchy.json", lambda b: Hierarchy.from_json(json.loads(b), f"{vdir}/hierarchy.json"))
    return Clustering(version=int(version), path=vdir, centroids=centroids, hierarchy=hierarchy, meta=meta, index=index)


def assignment_files(root: Root, version: int) -> list[str]:
    return root.list_files("clusters", f"v{int(version):03d}", "assignments", suffix=".parquet")


def write_assignments(root: Root, version: int, table: pa.Table, key: str | None = None) -> str:
    """Write one new assignments part file (never overwriting an existing one); return its path."""
    key = key or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    path = f"{version_dir(root, 'clusters', version)}/assignments/part-{key}.parquet"
    if root.exists(root.relative(path)):
        raise ClusteringError(f"{path}: assignments part already exists; parts are never rewritten")
    root.write_table(path, table.cast(ASSIGNMENT_SCHEMA))
    return path


def read_assignments(root: Root, version: int) -> pa.Table:
    """All assignment parts of a version, with a `part` column (file name) appended."""
    tables = []
    for f in assignment_files(root, version):
        t = pq.read_table(f, filesystem=root.fs).cast(ASSIGNMENT_SCHEMA)
        tables.append(t.append_column("part", pa.array([f.rpartition("/")[2]] * t.num_rows, pa.string())))
    if not tables:
        return ASSIGNMENT_SCHEMA.append(pa.field("part", pa.string())).empty_table()
    return pa.concat_tables(tables)
