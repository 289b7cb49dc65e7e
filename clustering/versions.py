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
from carve.storage.fs import (
    atomic_write_bytes,
    atomic_write_table,
    exists,
    is_local,
    join,
    list_files,
    read_bytes,
    resolve,
)

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


def kind_dir(root: str, kind: str) -> str:
    if kind not in ("clusters", "shards"):
        raise ValueError(f"unknown version kind {kind!r}")
    return join(str(root), kind)


def version_dir(root: str, kind: str, version: int) -> str:
    return join(kind_dir(root, kind), f"v{int(version):03d}")


def _numbered_dirs(root: str, kind: str) -> list[int]:
    import pyarrow.fs as pafs

    fs, path = resolve(kind_dir(root, kind))
    if not exists(fs, path):
        return []
    out = []
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=False)):
        m = _VDIR.match(info.base_name)
        if info.type == pafs.FileType.Directory and m:
            out.append(int(m.group(1)))
    return sorted(out)


def complete_versions(root: str, kind: str) -> list[int]:
    """Versions whose final marker (clusters: meta.json, shards: manifest.json) exists."""
    marker = "meta.json" if kind == "clusters" else "manifest.json"
    fs, _ = resolve(str(root))
    return [v for v in _numbered_dirs(root, kind) if exists(fs, resolve(join(version_dir(root, kind, v), marker))[1])]


def latest_version(root: str, kind: str) -> int | None:
    done = complete_versions(root, kind)
    return done[-1] if done else None


def next_version(root: str, kind: str) -> int:
    """One more than any version on disk (complete or not) or recorded in the catalog."""
    from carve.storage.catalog import Catalog

    seen = list(_numbered_dirs(root, kind))
    fs, path = resolve(str(root))
    if exists(fs, join(path, "catalog.sqlite")):
        with Catalog(path) as cat:
            seen += [int(r["version"]) for r in cat.versions(kind)]
    return max(seen, default=0) + 1


def claim_version(root: str, kind: str) -> int:
    """`next_version`, with its folder created exclusively on local disks, so two processes
    cutting shards (or clustering) at once never get the same number."""
    import os

    fs, _ = resolve(str(root))
    v = next_version(root, kind)
    if not is_local(fs):
        return v
    while True:
        path = resolve(version_dir(root, kind, v))[1]
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
    root: str, version: int, hierarchy: Hierarchy, meta: dict[str, Any], assignments: pa.Table
) -> str:
    """Write a whole clustering version (meta.json last); return its folder."""
    vdir = version_dir(root, "clusters", version)
    centroids = np.ascontiguousarray(hierarchy.leaf_centroids, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, centroids)
    atomic_write_bytes(buf.getvalue(), join(vdir, "centroids.npy"))
    atomic_write_bytes(bytes(faiss.serialize_index(build_index(centroids))), join(vdir, "index.faiss"))
    atomic_write_bytes(json.dumps(hierarchy.to_json()).encode(), join(vdir, "hierarchy.json"))
    write_assignments(root, version, assignments, key=INITIAL_PART[len("part-") : -len(".parquet")])
    full_meta = {"format": CLUSTERS_FORMAT, "clusters_format_version": CLUSTERS_VERSION, **meta}
    atomic_write_bytes(json.dumps(full_meta, indent=2, sort_keys=True).encode(), join(vdir, "meta.json"))
    return vdir


def load_clustering(root: str, version: int | None = None) -> Clustering:
    """Load a clustering version (default: the latest complete one)."""
    if version is None:
        version = latest_version(root, "clusters")
        if version is None:
            raise ClusteringError(f"{root}: no clustering yet; run `carve cluster` first")
    vdir = version_dir(root, "clusters", version)
    fs, mpath = resolve(join(vdir, "meta.json"))
    if not exists(fs, mpath):
        raise ClusteringError(f"{vdir}: clustering version {version} does not exist or was never finished")
    try:
        meta = json.loads(read_bytes(join(vdir, "meta.json")))
    except json.JSONDecodeError as e:
        raise ClusteringError(f"{vdir}/meta.json: not valid JSON ({e})") from e
    if int(meta.get("clusters_format_version", 1)) > CLUSTERS_VERSION:
        raise ClusteringError(
            f"{vdir}/meta.json: clusters format v{meta['clusters_format_version']} is newer than this Carve "
            f"reads (v{CLUSTERS_VERSION}); upgrade Carve"
        )

    def load(name: str, parse: Callable[[bytes], Any]) -> Any:
        try:
            return parse(read_bytes(join(vdir, name)))
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


def assignment_files(root: str, version: int) -> list[str]:
    return list_files(join(version_dir(root, "clusters", version), "assignments"), ".parquet")


def write_assignments(root: str, version: int, table: pa.Table, key: str | None = None) -> str:
    """Write one new assignments part file (never overwriting an existing one); return its path."""
    key = key or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    path = join(version_dir(root, "clusters", version), "assignments", f"part-{key}.parquet")
    fs, p = resolve(path)
    if exists(fs, p):
        raise ClusteringError(f"{path}: assignments part already exists; parts are never rewritten")
    atomic_write_table(table.cast(ASSIGNMENT_SCHEMA), path)
    return path


def read_assignments(root: str, version: int) -> pa.Table:
    """All assignment parts of a version, with a `part` column (file name) appended."""
    tables = []
    for f in assignment_files(root, version):
        fs, p = resolve(f)
        t = pq.read_table(p, filesystem=fs).cast(ASSIGNMENT_SCHEMA)
        tables.append(t.append_column("part", pa.array([f.rpartition("/")[2]] * t.num_rows, pa.string())))
    if not tables:
        return ASSIGNMENT_SCHEMA.append(pa.field("part", pa.string())).empty_table()
    return pa.concat_tables(tables)
