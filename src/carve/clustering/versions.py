"""Clustering versions on disk: `<root>/clusters/vNNN/` (save, load, list, assignments).

A clustering version holds `centroids.npy` (k×d float32, unit rows), `index.faiss` (an
inner-product index of the centroids), `hierarchy.json`, `assignments/part-*.parquet` and
`meta.json`, which is written LAST: a folder without `meta.json` is an interrupted write and
is ignored (its number is never reused). Assignment part files are written once and never
touched again; events ingested later get a new part file (see `clustering.curate.assign_new`).
Version numbers of both clusters and shards are claimed in the catalog (`claim_version`): a
`claimed` row is inserted before any file is written, and its (kind, version) key makes the
claim exclusive across processes and hosts, on a local disk and on an object store alike
(which has no exclusive mkdir). The number is one more than any version on disk (complete or
not) or in the catalog (finished, claimed or abandoned); a number is never reused.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from carve.clustering.hierarchical import Hierarchy
from carve.clustering.kmeans import ClusteringError, build_index
from carve.storage.layout import RootLayout
from carve.storage.root import Root

CLUSTERS_FORMAT = "carve.clusters"
CLUSTERS_VERSION = 1
INITIAL_PART = "part-00000-initial.parquet"  # the assignments of the events the centroids were trained on
ASSIGNMENT_ROW_GROUP = 1024  # rows per row group of an assignments part (the unit of an event lookup)

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


def version_dir(root: Root, kind: str, version: int) -> str:
    """The folder (a path on `root.fs`) of one version."""
    return root.path(*RootLayout.version(kind, version))


def _numbered_dirs(root: Root, kind: str) -> list[int]:
    names = root.list_dirs(RootLayout.check_kind(kind))
    return sorted(v for name in names if (v := RootLayout.parse_version(name)) is not None)


def complete_versions(root: Root, kind: str) -> list[int]:
    """Versions whose final marker (clusters: meta.json, shards: manifest.json) exists."""
    return [v for v in _numbered_dirs(root, kind) if root.exists(*RootLayout.done_marker(kind, v))]


def latest_version(root: Root, kind: str) -> int | None:
    done = complete_versions(root, kind)
    return done[-1] if done else None


def claim_version(root: Root, kind: str) -> int:
    """A version number of `kind` that no other process gets: claimed in the catalog (which is the
    arbiter on every kind of root), above every numbered folder on disk. On a local disk the
    folder is created too."""
    floor = max(_numbered_dirs(root, kind), default=0) + 1
    v = root.catalog.claim_version(RootLayout.check_kind(kind), floor, path=lambda n: version_dir(root, kind, n))
    if root.is_local:
        root.makedirs(*RootLayout.version(kind, v))
    return v


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
    if not root.exists(*RootLayout.done_marker(RootLayout.CLUSTERS, version)):
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
    return root.list_files(*RootLayout.clusters(version, "assignments"), suffix=".parquet")


def write_assignments(root: Root, version: int, table: pa.Table, key: str | None = None) -> str:
    """Write one new assignments part file (never overwriting an existing one); return its path.

    Rows are sorted by event_id and written in row groups of ASSIGNMENT_ROW_GROUP rows, so the
    Parquet statistics of a part are an event-id index: `AssignmentIndex` finds one event by
    reading a single row group."""
    key = key or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    path = f"{version_dir(root, 'clusters', version)}/assignments/part-{key}.parquet"
    if root.exists(root.relative(path)):
        raise ClusteringError(f"{path}: assignments part already exists; parts are never rewritten")
    table = table.cast(ASSIGNMENT_SCHEMA)
    if table.num_rows > 1:
        table = table.sort_by("event_id")
    root.write_table(path, table, row_group_size=ASSIGNMENT_ROW_GROUP)
    return path


def unique_assignments(asg: pa.Table) -> pa.Table:
    """The first assignment of each event_id (parts in file order), in that order."""
    if asg.num_rows == 0:
        return asg
    rows = pa.array(np.arange(asg.num_rows, dtype=np.int64))
    first = pa.table({"event_id": asg.column("event_id"), "_row": rows}).group_by(
        "event_id", use_threads=False).aggregate([("_row", "min")]).column("_row_min")
    keep = np.sort(first.to_numpy())
    if len(keep) == asg.num_rows:
        return asg
    return asg.take(pa.array(keep))


class AssignmentIndex:
    """Point lookups of one event's assignment in a clusters version, without reading the parts.

    Built from the footers of the version's assignment parts (one read each): the event_id
    min/max of every row group. `lookup(event_id)` bisects them and reads the one row group
    that can hold the id (parts written by `write_assignments` are sorted by event_id, so that
    is one row group per part, checked in part order; the first part holding the id wins, as in
    `read_assignments`). Unsorted parts (older writers) still work, with wider row groups."""

    def __init__(self, root: Root, version: int):
        self.root = root
        self.version = int(version)
        self.parts: list[tuple[str, pq.FileMetaData, list[tuple[str, str, int]]]] = []
        for f in assignment_files(root, version):
            pf = pq.ParquetFile(f, filesystem=root.fs)
            md = pf.metadata
            col = pf.schema_arrow.get_field_index("event_id")
            groups = []
            for i in range(md.num_row_groups):
                st = md.row_group(i).column(col).statistics
                if st is None or not st.has_min_max:
                    groups.append(("", "\U0010ffff", i))
                else:
                    lo, hi = st.min, st.max
                    groups.append((lo.decode() if isinstance(lo, bytes) else lo,
                                   hi.decode() if isinstance(hi, bytes) else hi, i))
            self.parts.append((f, md, groups))

    @property
    def part_names(self) -> list[str]:
        return [f.rpartition("/")[2] for f, _, _ in self.parts]

    LOOKUP_COLUMNS = ("event_id", "episode_id", "dataset", "cluster_id", "dup_of")

    def lookup(self, event_id: str, columns: tuple[str, ...] = LOOKUP_COLUMNS) -> dict[str, Any] | None:
        """The assignment row of `event_id` (`columns` of it, plus `part`) or None."""
        for f, md, groups in self.parts:
            for lo, hi, i in groups:
                if not lo <= event_id <= hi:
                    continue
                pf = pq.ParquetFile(f, filesystem=self.root.fs, metadata=md)
                t = pf.read_row_group(i, columns=list(columns))
                hit = pc.index(t.column("event_id"), event_id).as_py()
                if hit >= 0:
                    row = t.slice(hit, 1).to_pylist()[0]
                    row["part"] = f.rpartition("/")[2]
                    return row
        return None


def read_assignments(root: Root, version: int) -> pa.Table:
    """All assignment parts of a version, with a `part` column (file name) appended."""
    tables = []
    for f in assignment_files(root, version):
        t = pq.read_table(f, filesystem=root.fs).cast(ASSIGNMENT_SCHEMA)
        tables.append(t.append_column("part", pa.array([f.rpartition("/")[2]] * t.num_rows, pa.string())))
    if not tables:
        return ASSIGNMENT_SCHEMA.append(pa.field("part", pa.string())).empty_table()
    return pa.concat_tables(tables)
