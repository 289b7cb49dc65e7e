"""Each clusters version's embeddings sorted by cluster, for the neighbours view: `clusters/vNNN/neighbours.*`.

`GET /events/{id}/neighbours` searches the event's own cluster. So that a query reads that
cluster's vectors and nothing else, a clusters version stores, next to its layout:

* `neighbours.parquet`: one row per assigned event (`event_id`, `cluster`, `emb` as the
  L2-normalised float32 fused embedding, a fixed-size list), sorted by cluster, **one row group
  per cluster** (a cluster larger than `MAX_GROUP_ROWS` takes several consecutive groups),
  uncompressed (a query decodes nothing);
* `neighbours.json` (written last): format and version, the clusters version, `dim`, `rows`,
  the assignment parts it covers and `groups`: cluster -> [first row group, row groups, rows].

`read_cluster(root, version, cluster)` then reads one cluster's row groups. The files are
derived after every clustering and every new assignments part
(`carve.audit.derive.derive_views`); a version written before them, or whose parts changed,
gets them on first use (as the layout). A refresh keeps the vectors the old
file holds for events still in the same cluster and streams only the others from the event
part files; the vectors of each cluster pass through a `ClusterSpill` on local disk, so the
driver holds one batch and one cluster at a time, never the whole matrix.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.clustering.kmeans import ClusteringError
from carve.clustering.stream import ClusterSpill, iter_unit_batches, read_keys
from carve.clustering.summary import align, derived_is_current, part_names, read_version_meta
from carve.clustering.versions import read_assignments, unique_assignments, version_dir
from carve.storage.events import EventSnapshot, snapshot
from carve.storage.layout import RootLayout
from carve.storage.manifest import utc_now
from carve.storage.root import Root

NEIGHBOURS_PARQUET = "neighbours.parquet"
NEIGHBOURS_JSON = "neighbours.json"
NEIGHBOURS_FORMAT = "carve.clusters_neighbours"
NEIGHBOURS_VERSION = 1
MAX_GROUP_ROWS = 1 << 20  # pyarrow's largest row group


def neighbours_schema(dim: int) -> pa.Schema:
    return pa.schema([pa.field("event_id", pa.string(), nullable=False), pa.field("cluster", pa.int32(), nullable=False),
                      pa.field("emb", pa.list_(pa.float32(), int(dim)))])


def _table(ids: pa.Array, cluster: int, x: np.ndarray) -> pa.Table:
    x = np.ascontiguousarray(x, dtype=np.float32)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), int(x.shape[1]))
    return pa.table([ids, pa.array(np.full(len(x), cluster, np.int32)), emb], schema=neighbours_schema(x.shape[1]))


def read_neighbours_meta(root: Root, version: int) -> dict[str, Any] | None:
    """`neighbours.json` of a version, or None if it has none (or one this Carve cannot read)."""
    return read_version_meta(root, version, NEIGHBOURS_JSON, NEIGHBOURS_FORMAT, "neighbours_version",
                             NEIGHBOURS_VERSION)


def neighbours_is_current(root: Root, version: int) -> bool:
    return derived_is_current(root, version, read_neighbours_meta(root, version))


def _old_file(root: Root, version: int) -> tuple[pq.ParquetFile, dict[str, Any], pa.Table] | None:
    """The version's current neighbours file, its meta and its (event_id, cluster) columns."""
    meta = read_neighbours_meta(root, version)
    if meta is None:
        return None
    try:
        f = pq.ParquetFile(f"{version_dir(root, 'clusters', version)}/{NEIGHBOURS_PARQUET}", filesystem=root.fs)
        return f, meta, f.read(columns=["event_id", "cluster"])
    except (OSError, pa.ArrowInvalid):
        return None


def write_neighbours(root: Root, version: int, snap: EventSnapshot, keys: pa.Table, cluster_of_row: np.ndarray,
                     parts: list[str] | None = None, *, reuse: bool = True, batch_rows: int = 16384,
                     spill_dir: str | None = None) -> str:
    """Write `neighbours.parquet` (one row group per cluster), then `neighbours.json`, for the
    snapshot's events, row i of `keys` being in cluster `cluster_of_row[i]` (-1: left out). With
    `reuse`, vectors of the old file whose event keeps its cluster are copied from it; the rest
    are streamed from the event part files."""
    vdir = version_dir(root, "clusters", version)
    parts = part_names(root, version) if parts is None else list(parts)
    cluster = np.asarray(cluster_of_row, dtype=np.int64)
    assigned = cluster >= 0
    old = _old_file(root, version) if reuse else None
    keep_old: dict[int, np.ndarray] = {}  # cluster -> mask over its rows in the old file
    todo = np.flatnonzero(assigned)
    if old is not None and old[2].num_rows:
        cols = old[2]
        idx = pc.index_in(cols.column("event_id"), value_set=keys.column("event_id").combine_chunks())
        found = np.asarray(idx.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        pos = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        old_c = cols.column("cluster").to_numpy().astype(np.int64)
        same = found & (cluster[pos] == old_c)
        covered = np.zeros(len(cluster), dtype=bool)
        covered[pos[same]] = True
        todo = np.flatnonzero(assigned & ~covered)
        start = 0
        for c in np.unique(old_c) if len(old_c) else []:  # the old file is cluster-sorted
            n_c = int((old_c == c).sum())
            keep_old[int(c)] = same[start : start + n_c]
            start += n_c
    dim = int(old[1].get("dim") or 0) if old is not None else 0
    ids_all = keys.column("event_id").combine_chunks()
    target = f"{vdir}/.tmp-{uuid.uuid4().hex[:8]}-{NEIGHBOURS_PARQUET}" if root.is_local else \
        f"{vdir}/{NEIGHBOURS_PARQUET}"
    groups: dict[str, list[int]] = {}
    spill: ClusterSpill | None = None
    try:
        for b in iter_unit_batches(root, snap, todo, batch_rows=batch_rows, dim=dim or None) if len(todo) else ():
            if spill is None:
                dim = dim or int(b.x.shape[1])
                spill = ClusterSpill(dim, spill_dir)
            spill.add(cluster[b.rows], b.x)
        if not dim:
            raise ClusteringError(f"{root}: clusters version {version} has no assigned events to index")
        todo_c = cluster[todo]
        new_rows = {int(todo_c[m[0]]): m for m in _members(todo_c)}  # cluster -> positions into todo
        root.makedirs(*RootLayout.clusters(version))
        rg = rows = 0
        with pq.ParquetWriter(target, neighbours_schema(dim), filesystem=root.fs, compression="none",
                              write_statistics=False) as w:
            for c in sorted(set(np.unique(cluster[assigned]).tolist())):
                pieces = []
                if old is not None and c in keep_old and keep_old[c].any():
                    g = old[1]["groups"].get(str(c))
                    t = old[0].read_row_groups(list(range(g[0], g[0] + g[1]))) if g else None
                    if t is not None and t.num_rows == len(keep_old[c]):
                        pieces.append(t.filter(pa.array(keep_old[c])).cast(neighbours_schema(dim)))
                if c in new_rows:
                    r = np.sort(todo[new_rows[c]])
                    x = spill.read(c) if spill is not None else np.zeros((0, dim), np.float32)
                    if len(x) != len(r):
                        raise ClusteringError(f"{root}: spill of cluster {c} holds {len(x)} vectors, expected {len(r)}")
                    pieces.append(_table(ids_all.take(pa.array(r)), c, x))
                t = pa.concat_tables(pieces) if pieces else None
                if t is None or t.num_rows == 0:
                    continue
                n_g = 0
                for lo in range(0, t.num_rows, MAX_GROUP_ROWS):
                    w.write_table(t.slice(lo, MAX_GROUP_ROWS), row_group_size=MAX_GROUP_ROWS)
                    n_g += 1
                groups[str(c)] = [rg, n_g, t.num_rows]
                rg += n_g
                rows += t.num_rows
        if target != f"{vdir}/{NEIGHBOURS_PARQUET}":
            root.fs.move(target, f"{vdir}/{NEIGHBOURS_PARQUET}")
    except BaseException:
        if root.is_local and root.fs.get_file_info(target).type != pafs.FileType.NotFound:
            root.fs.delete_file(target)
        raise
    finally:
        if spill is not None:
            spill.close()
    meta = {"format": NEIGHBOURS_FORMAT, "neighbours_version": NEIGHBOURS_VERSION, "clusters_version": int(version),
            "dim": dim, "rows": rows, "assignment_parts": parts, "groups": groups, "created_at": utc_now()}
    root.write_bytes(f"{vdir}/{NEIGHBOURS_JSON}", json.dumps(meta).encode())
    return f"{vdir}/{NEIGHBOURS_JSON}"


def _members(labels: np.ndarray) -> list[np.ndarray]:
    """Positions into `labels` of each cluster's members, ascending, one array per cluster."""
    if len(labels) == 0:
        return []
    order = np.argsort(labels, kind="stable")
    edges = np.flatnonzero(np.diff(labels[order])) + 1
    return [order[lo:hi] for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(order)], strict=True)]


def refresh_neighbours(root: Root, version: int, snap: EventSnapshot | None = None, keys: pa.Table | None = None,
                       batch_rows: int = 16384, spill_dir: str | None = None) -> str:
    """(Re)write the neighbours files of a version from its assignment parts (vectors of events
    already in the old file are copied, the others streamed from the part files)."""
    snap = snap or snapshot(root)
    keys = keys if keys is not None else read_keys(root, snap)
    parts = part_names(root, version)
    cluster, _ = align(keys, unique_assignments(read_assignments(root, version)))
    return write_neighbours(root, version, snap, keys, cluster, parts, batch_rows=batch_rows, spill_dir=spill_dir)


def read_cluster(root: Root, version: int, cluster: int, meta: dict[str, Any] | None = None,
                 ) -> tuple[list[str], np.ndarray] | None:
    """The event ids and unit vectors ((n, dim) float32) of one cluster, read from its row groups
    only; ([], (0, dim)) for a cluster without events; None if the version has no readable file."""
    meta = meta if meta is not None else read_neighbours_meta(root, version)
    if meta is None:
        return None
    dim = int(meta["dim"])
    g = meta["groups"].get(str(int(cluster)))
    if g is None:
        return [], np.zeros((0, dim), dtype=np.float32)
    try:
        f = pq.ParquetFile(f"{version_dir(root, 'clusters', version)}/{NEIGHBOURS_PARQUET}", filesystem=root.fs)
        t = f.read_row_groups(list(range(g[0], g[0] + g[1])), columns=["event_id", "emb"])
    except (OSError, pa.ArrowInvalid):
        return None
    emb = t.column("emb").combine_chunks()
    x = emb.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) if len(emb) else np.zeros((0, dim), np.float32)
    return t.column("event_id").to_pylist(), x
