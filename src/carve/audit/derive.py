"""The UI's data products of a clusters version, derived after clustering by one call: `derive_views`.

A clusters version (`clustering.versions`: centroids, hierarchy, assignments, meta.json) is what
clustering makes. What the audit views read is derived from it and from the committed events,
and written next to it (formats in `clustering.summary` and `clustering.neighbours`):

* `summary.parquet` + `summary.json`: per (dataset, cluster) sizes, tasks, robots, samples;
* `layout.parquet` + `layout.json`: every assigned event's 2-D position (the one PCA of the
  fused embedding, `clustering.summary.LayoutProjector`) with the map's filter columns;
* `neighbours.parquet` + `neighbours.json`: the unit embeddings sorted by cluster.

`derive_views(root, version)` (re)writes each of them that is missing or stale (it does not
cover the version's assignment parts) and leaves the current ones alone, so it is called once
after every clustering step (`carve cluster`, `carve recluster`, `carve shard`, the run's
cluster stage) and costs nothing when nothing changed. A version's first layout is fitted
exactly as clustering trained: the PCA on the k-means training sample (the same seeded rows of
the same events, `meta.json`'s `train_sample` and `config.seed`), then every event projected in
batches of `cluster.batch_rows` streamed from the part files (all at once when the sample is
the whole catalog); a later layout keeps the stored positions and projects only new events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from carve.clustering import neighbours as cn
from carve.clustering import summary as cs
from carve.clustering.stream import gather_unit_vectors, iter_unit_batches, read_keys, sample_rows
from carve.clustering.versions import latest_version, read_assignments, unique_assignments, version_dir
from carve.core.config import ClusterConfig
from carve.core.errors import CarveError
from carve.storage.events import EventSnapshot, snapshot
from carve.storage.root import Root


@dataclass
class Derived:
    """What `derive_views` wrote (the JSON file of each product), None where it was current."""

    version: int
    summary: str | None = None
    layout: str | None = None
    neighbours: str | None = None


def _version_meta(root: Root, version: int) -> dict[str, Any]:
    return json.loads(root.read_bytes(f"{version_dir(root, 'clusters', version)}/meta.json"))


def _fit_layout(root: Root, version: int, meta: dict[str, Any], snap: EventSnapshot, keys: pa.Table,
                cluster: np.ndarray, dup: np.ndarray, parts: list[str], batch_rows: int) -> str:
    """The first layout of a version: the PCA fitted on the clustering's training sample, every
    assigned event projected (as clustering's assignment pass did before this was derived apart)."""
    conf = meta.get("config") or {}
    seed = int(conf.get("seed", 0))
    n = keys.num_rows
    train = int(meta.get("train_sample") or 0)
    if int(meta.get("n_events") or -1) != n or train <= 0:  # the events changed since: a fresh seeded sample
        k = int(meta.get("k") or (int(cluster.max()) + 1 if n and cluster.max() >= 0 else 1))
        train = int(conf.get("train_sample_per_centroid", 256)) * k
    sample = sample_rows(n, train, seed)
    x = gather_unit_vectors(root, snap, sample, n)
    proj = cs.LayoutProjector.fit(x, seed)
    xy = np.zeros((n, 2), dtype=np.float32)
    todo = np.flatnonzero(cluster >= 0)
    if sample is None:  # the sample is the whole catalog, already in memory
        xy = proj.project(x)
    else:
        del x
        rows = None if len(todo) == n else todo
        if len(todo):
            for b in iter_unit_batches(root, snap, rows, batch_rows=batch_rows, dim=int(proj.mean.shape[0])):
                xy[b.rows] = proj.project(b.x)
    return cs.write_layout(root, version, cs.layout_table(root, snap, xy, cluster, dup), proj, parts=parts)


PRODUCTS = ("summary", "layout", "neighbours")


def derive_views(root: Root, version: int | None = None, cc: ClusterConfig | None = None,
                 snap: EventSnapshot | None = None, keys: pa.Table | None = None,
                 only: tuple[str, ...] = PRODUCTS) -> Derived:
    """(Re)write the summary, layout and neighbours (or `only` some of them) of clusters
    `version` (default: the latest) that are missing or stale; `cc` gives `batch_rows` and
    `spill_dir` (default: the version's own config). `snap`/`keys`: the committed events to
    derive from (default: the catalog now)."""
    if version is None:
        version = latest_version(root, "clusters")
        if version is None:
            raise CarveError(f"{root}: no clusters version to derive views from; run `carve cluster` first")
    meta = _version_meta(root, version)
    cc = cc or ClusterConfig(**{k: v for k, v in (meta.get("config") or {}).items() if k in ClusterConfig.model_fields})
    parts = cs.part_names(root, version)
    stale_summary = "summary" in only and not cs.derived_is_current(root, version, cs.read_summary_meta(root, version))
    layout_meta = cs.read_layout_meta(root, version)
    stale_layout = "layout" in only and not cs.derived_is_current(root, version, layout_meta)
    stale_neighbours = "neighbours" in only and not cn.neighbours_is_current(root, version)
    out = Derived(version=int(version))
    if not (stale_summary or stale_layout or stale_neighbours):
        return out
    snap = snap or snapshot(root)
    keys = keys if keys is not None else read_keys(root, snap)
    cluster, dup = cs.align(keys, unique_assignments(read_assignments(root, version)))
    if stale_summary:
        out.summary = cs.write_summary(root, version, cs.compute_summary(root, snap, cluster, dup),
                                       k=meta.get("k"), parts=parts)
    if stale_layout:
        if layout_meta is None:
            out.layout = _fit_layout(root, version, meta, snap, keys, cluster, dup, parts, cc.batch_rows)
        else:  # keeps the stored positions, projects the events without one
            out.layout = cs.refresh_layout(root, version, snap, keys, batch_rows=cc.batch_rows)
    if stale_neighbours:
        out.neighbours = cn.write_neighbours(root, version, snap, keys, cluster, parts, batch_rows=cc.batch_rows,
                                             spill_dir=cc.spill_dir)
    return out


def derive_layout(root: Root, version: int) -> str | None:
    """Only the layout of `derive_views` (the map's first use of a version without one)."""
    return derive_views(root, version, only=("layout",)).layout


def derive_neighbours(root: Root, version: int) -> str | None:
    """Only the neighbours files of `derive_views` (the neighbours view's first use)."""
    return derive_views(root, version, only=("neighbours",)).neighbours
