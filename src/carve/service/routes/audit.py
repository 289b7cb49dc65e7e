"""The analysts' audit API: the embedding map, one cluster, coverage over time, neighbours (token required).

    GET /datasets/{d}/map            the 2-D layout's points, filtered and paged
    GET /datasets/{d}/map/bins       the same points as a 2-D histogram (count, majority cluster)
    GET /datasets/{d}/map/facets     distinct values of each filter, with counts
    GET /datasets/{d}/clusters/{c}   one cluster: its events (paged), sizes before/after balancing,
                                     members per dataset/task/robot, near-duplicates
    GET /datasets/{d}/coverage       per-dataset coverage by task/robot plus the change between
                                     two clusters or shards versions (or one ingest batch): grew,
                                     shrank, appeared, vanished, the drift ratio, under-covered clusters
    GET /datasets/{d}/coverage.csv   the under-covered clusters, "collect more of these"
    GET /events/{id}/neighbours      nearest events in embedding space, same clustering version

Everything reads what each clustering version stores with it (`clustering.summary`:
`summary.*` and `layout.*`, the layout being a PCA of the fused embedding fitted on the k-means
training sample) and the shard manifests; a version without a layout gets one written on first
use (`refresh_layout`). Neighbours read one cluster's row groups of the version's
`neighbours.parquet` (`clustering.neighbours`: the unit embeddings sorted by cluster, one row
group per cluster; written on first use for a version without one). Results are cached on the
server's `Views` (keyed by version and assignment parts, so a new assignments part or version
invalidates them).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response

from carve.clustering import neighbours as cn
from carve.clustering import summary as cs
from carve.clustering.curate import coverage_drift
from carve.clustering.kmeans import ClusteringError
from carve.clustering.versions import complete_versions, version_dir
from carve.core.config import CarveConfig
from carve.report import audit as au
from carve.service.auth import require_token
from carve.service.deps import ID_PATTERN, NAME_PATTERN, CatalogsDep, CfgDep, ViewsDep
from carve.service.views import NotFound, Views
from carve.storage.catalog import Catalog
from carve.storage.manifest import manifest_versions

router = APIRouter(dependencies=[Depends(require_token)])

MAX_LIMIT = 20_000
UNDER_RATIO = 0.25


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=status, media_type="application/json")


# -- versions and the stored layout -----------------------------------------------------------------
def clusters_version(views: Views, v: int | None) -> int:
    if v is None:
        st = views._clusters_state()
        if st.version is None:
            raise NotFound("not clustered yet: no clusters version")
        return int(st.version)
    if v not in complete_versions(views.root, "clusters"):
        raise NotFound(f"no clusters version {v}; have {complete_versions(views.root, 'clusters')}")
    return int(v)


def shards_version(views: Views, v: int | None, clusters: int | None = None) -> int | None:
    have = manifest_versions(views.root)
    if v is not None:
        if v not in have:
            raise NotFound(f"no shards version {v}; have {have}")
        return int(v)
    if clusters is not None:  # the latest cut over that clustering
        for s in reversed(have):
            if int(views._manifest(s).get("clusters_version") or -1) == clusters:
                return int(s)
        return None
    return int(have[-1]) if have else None


def _parts(views: Views, version: int) -> tuple[str, ...]:
    """The assignment parts of a clusters version (the cache key of everything derived from it),
    from the views' clusters state for the latest version, else listed at most every
    `fingerprint_ttl_s`."""
    st = views._clusters_state()
    if st.version == version:
        return st.parts
    return views._recent(f"audit-parts-{version}", lambda: tuple(cs.part_names(views.root, version)))


def layout(views: Views, version: int) -> pa.Table:
    """The layout of a clusters version (written on first use if the version has none)."""
    parts = _parts(views, version)

    def build() -> pa.Table:
        t = cs.read_layout(views.root, version)
        if t is None:
            cs.refresh_layout(views.root, version)
            t = cs.read_layout(views.root, version)
        if t is None:
            raise NotFound(f"clusters version {version}: no layout could be read")
        return t.combine_chunks()

    return views._cached(("layout", None, version, parts), build)


def dataset_layout(views: Views, cat: Catalog, name: str, version: int) -> tuple[pa.Table, list[float]]:
    """One dataset's rows of the layout (with their row number `_row`) and their extent."""
    t, extent, _ = _dataset_layout(views, cat, name, version)
    return t, extent


def _dataset_layout(views: Views, cat: Catalog, name: str, version: int) -> tuple[pa.Table, list[float], PointCodes]:
    views.require_dataset(cat, name)
    parts = _parts(views, version)

    def build() -> tuple[pa.Table, list[float], PointCodes]:
        t = layout(views, version)
        t = t.filter(pc.equal(t.column("dataset"), name)).combine_chunks()
        t = t.append_column("_row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
        return t, cs._extent(t), PointCodes(t)

    return views._cached(("layout_ds", name, version, parts), build)


def _filter(t: pa.Table, task: str | None, robot: str | None, arm: str | None, verb: str | None,
            cluster: str | None) -> pa.Table:
    mask = None

    def both(m: Any) -> None:
        nonlocal mask
        mask = m if mask is None else pc.and_(mask, m)

    for col, val in (("task", task), ("robot", robot), ("verb", verb)):
        if val is not None:
            both(pc.equal(t.column(col), val))
    if arm is not None:
        lists = t.column("arms").combine_chunks()
        flat = pc.equal(pc.list_flatten(lists), arm).to_numpy(zero_copy_only=False)
        owner = pc.list_parent_indices(lists).to_numpy()
        hit = np.zeros(t.num_rows, dtype=bool)
        hit[owner[flat]] = True
        both(pa.array(hit))
    if cluster is not None:
        try:
            ids = [int(c) for c in cluster.split(",") if c.strip()]
        except ValueError:
            raise HTTPException(status_code=422, detail=f"cluster must be an integer or a comma list: {cluster!r}") from None
        both(pc.is_in(t.column("cluster"), value_set=pa.array(ids, pa.int32())))
    return t if mask is None else t.filter(pc.fill_null(mask, False))


_POINT_COLS = ["event_id", "x", "y", "cluster", "task", "robot", "arms", "verb", "caption", "episode_id", "dup"]


def _points(t: pa.Table) -> list[dict[str, Any]]:
    d = t.select(_POINT_COLS).to_pydict()
    d["x"] = np.round(np.asarray(d["x"], dtype=np.float64), 5).tolist()
    d["y"] = np.round(np.asarray(d["y"], dtype=np.float64), 5).tolist()
    keys = list(d)
    return [dict(zip(keys, vals, strict=True)) for vals in zip(*d.values(), strict=True)]


class PointCodes:
    """The JSON text of each point of a dataset's layout, encoded on first request and kept, so a
    page of points already sent once costs a join of strings (the map is reloaded often)."""

    def __init__(self, t: pa.Table):
        self.t = t
        self.codes: list[str | None] = [None] * t.num_rows

    def encode(self, rows: np.ndarray) -> str:
        todo = [int(i) for i in rows if self.codes[int(i)] is None]
        if todo:
            for i, p in zip(todo, _points(self.t.take(pa.array(todo, pa.int64()))), strict=True):
                self.codes[i] = json.dumps(p, separators=(",", ":"))
        return "[" + ",".join(self.codes[int(i)] for i in rows) + "]"  # type: ignore[misc]


@router.get("/datasets/{name}/map", tags=["audit"], response_class=Response)
def map_points(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
               clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
               task: str | None = None, robot: str | None = None, arm: str | None = None, verb: str | None = None,
               cluster: str | None = None, offset: int = Query(0, ge=0), limit: int = Query(5000, ge=1, le=MAX_LIMIT),
               ) -> Response:
    v = clusters_version(views, clusters_version_)
    t, extent, codes = _dataset_layout(views, catalogs.get(), name, v)
    f = _filter(t, task, robot, arm, verb, cluster)
    rows = f.column("_row").slice(offset, limit).to_numpy()
    head = json.dumps({"dataset": name, "version": v, "total": f.num_rows, "offset": offset, "limit": limit,
                       "extent": extent}, separators=(",", ":"))
    body = head[:-1] + ',"points":' + codes.encode(rows) + "}"
    return Response(body.encode(), media_type="application/json")


@router.get("/datasets/{name}/map/bins", tags=["audit"], response_class=Response)
def map_bins(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
             clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
             task: str | None = None, robot: str | None = None, arm: str | None = None, verb: str | None = None,
             cluster: str | None = None, bins: int = Query(64, ge=2, le=512)) -> Response:
    v = clusters_version(views, clusters_version_)
    t, extent = dataset_layout(views, catalogs.get(), name, v)

    def build() -> bytes:
        f = _filter(t, task, robot, arm, verb, cluster)
        return _json({"dataset": name, "version": v, "total": f.num_rows, "bins": bins, "extent": extent,
                      "cells": histogram(f, extent, bins)}).body

    if task is None and robot is None and arm is None and verb is None and cluster is None:  # the default view
        return Response(views._cached(("bins", name, v, _parts(views, v), bins), build), media_type="application/json")
    return Response(build(), media_type="application/json")


def histogram(t: pa.Table, extent: list[float], bins: int) -> list[dict[str, Any]]:
    """Non-empty cells of a bins x bins grid over `extent`: ix (along x from xmin), iy, count,
    the cluster most of the cell's points belong to, and one event of that cluster in it."""
    if t.num_rows == 0:
        return []
    x = t.column("x").to_numpy().astype(np.float64)
    y = t.column("y").to_numpy().astype(np.float64)
    c = t.column("cluster").to_numpy().astype(np.int64)
    x0, x1, y0, y1 = extent
    ix = np.clip(((x - x0) / max(x1 - x0, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    iy = np.clip(((y - y0) / max(y1 - y0, 1e-12) * bins).astype(np.int64), 0, bins - 1)
    cell = ix * bins + iy
    counts = np.bincount(cell, minlength=bins * bins)
    # majority cluster per cell: runs of (cell, cluster) in sorted order, the longest run per cell
    k1 = int(c.max()) + 1
    uniq, first, runs = np.unique(cell * k1 + c, return_index=True, return_counts=True)
    ce, cl = uniq // k1, uniq % k1
    o = np.lexsort((-runs, ce))  # per cell, the longest run first (ties: the lower cluster id)
    sel = o[np.r_[True, ce[o][1:] != ce[o][:-1]]]
    ids = t.column("event_id").take(pa.array(first[sel])).to_pylist()
    out = [{"ix": int(e) // bins, "iy": int(e) % bins, "count": int(counts[e]), "cluster": int(m), "cluster_count": int(r),
            "event_id": i} for e, m, r, i in zip(ce[sel].tolist(), cl[sel].tolist(), runs[sel].tolist(), ids, strict=True)]
    return out


@router.get("/datasets/{name}/map/facets", tags=["audit"], response_class=Response)
def map_facets(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
               clusters_version_: int | None = Query(None, alias="clusters_version", ge=1)) -> Response:
    v = clusters_version(views, clusters_version_)
    cat = catalogs.get()
    t, _ = dataset_layout(views, cat, name, v)

    def build() -> dict[str, Any]:
        def counts(arr: Any) -> list[dict[str, Any]]:
            vc = pc.value_counts(arr).to_pylist()
            rows = [{"value": r["values"], "count": int(r["counts"])} for r in vc]
            return sorted(rows, key=lambda r: (-r["count"], str(r["value"])))

        arms = pc.list_flatten(t.column("arms").combine_chunks()) if t.num_rows else pa.array([], pa.string())
        return {"dataset": name, "version": v, "total": t.num_rows,
                "versions": {"clusters": complete_versions(views.root, "clusters"),
                             "shards": manifest_versions(views.root)},
                "facets": {"task": counts(t.column("task")), "robot": counts(t.column("robot")),
                           "arm": counts(arms), "verb": counts(t.column("verb")),
                           "cluster": sorted(counts(t.column("cluster")), key=lambda r: r["value"])}}

    return _json(views._cached(("facets", name, v, _parts(views, v)), build))


# -- one cluster --------------------------------------------------------------------------------------
def _assignments(views: Views, version: int) -> pa.Table:
    from carve.clustering.versions import read_assignments, unique_assignments

    parts = _parts(views, version)
    return views._cached(("assignments", None, version, parts), lambda: unique_assignments(
        read_assignments(views.root, version)).select(["event_id", "cluster_id", "cluster_dist", "dup_of"])
        .combine_chunks())


def _shard_counts(views: Views, version: int) -> dict[int, dict[str, float]]:
    """Per cluster: rows, unique events and summed weight of a shards version (small columns)."""
    def build() -> dict[int, dict[str, float]]:
        man = views._manifest(version)
        vdir = version_dir(views.root, "shards", version)
        out: dict[int, dict[str, Any]] = {}
        for s in man.get("shards") or []:
            t = pq.read_table(f"{vdir}/{s['path']}", filesystem=views.root.fs, columns=["event_id", "cluster_id", "weight"])
            for c, e, w in zip(*(t.column(x).to_pylist() for x in ("cluster_id", "event_id", "weight")), strict=True):
                a = out.setdefault(int(c if c is not None else -1), {"rows": 0, "events": set(), "weight": 0.0})
                a["rows"] += 1
                a["events"].add(e)
                a["weight"] += float(w if w is not None else 1.0)
        return {c: {"rows": a["rows"], "unique_events": len(a["events"]), "weight": round(a["weight"], 4)}
                for c, a in out.items()}

    return views._cached(("shard_counts", None, version), build)


def _by(t: pa.Table, col: str) -> list[dict[str, Any]]:
    vc = pc.value_counts(pc.fill_null(t.column(col), cs.UNKNOWN)).to_pylist() if t.num_rows else []
    return sorted(({"value": r["values"], "count": int(r["counts"])} for r in vc), key=lambda r: -r["count"])


@router.get("/datasets/{name}/clusters/{cluster}", tags=["audit"], response_class=Response)
def cluster_detail(views: ViewsDep, catalogs: CatalogsDep, name: str = Path(pattern=NAME_PATTERN),
                   cluster: int = Path(ge=0), clusters_version_: int | None = Query(None, alias="clusters_version", ge=1),
                   shards_version_: int | None = Query(None, alias="shards_version", ge=1),
                   offset: int = Query(0, ge=0), limit: int = Query(48, ge=1, le=1000)) -> Response:
    cat = catalogs.get()
    v = clusters_version(views, clusters_version_)
    t, _ = dataset_layout(views, cat, name, v)
    whole = layout(views, v)
    members_all = whole.filter(pc.equal(whole.column("cluster"), cluster))
    members = t.filter(pc.equal(t.column("cluster"), cluster))
    if members_all.num_rows == 0:
        raise NotFound(f"cluster {cluster} of clusters version {v} has no events")
    sv = shards_version(views, shards_version_, v)
    balance: dict[str, Any] = {"shards_version": sv}
    if sv is not None:
        man = views._manifest(sv)
        cnt = _shard_counts(views, sv).get(cluster, {"rows": 0, "unique_events": 0, "weight": 0.0})
        balance.update({
            "clusters_version": man.get("clusters_version"), "policy": (man.get("policy") or {}).get("name"),
            "before": int((man.get("clusters") or {}).get("before", {}).get(str(cluster), 0)),
            "after": int((man.get("clusters") or {}).get("after", {}).get(str(cluster), 0)),
            "rows": cnt["rows"], "unique_events": cnt["unique_events"], "weight": cnt["weight"]})
    asg = _assignments(views, v)
    page = members.slice(offset, limit)
    pos = pc.index_in(page.column("event_id"), value_set=asg.column("event_id")).to_pylist()
    dist = asg.column("cluster_dist").to_pylist()
    dup_of = asg.column("dup_of").to_pylist()
    events = []
    for r, p in zip(page.select(["event_id", "episode_id", "caption", "task", "robot", "verb", "dup"]).to_pylist(),
                    pos, strict=True):
        eid = r["event_id"]
        events.append({**r, "cluster_dist": None if p is None else round(float(dist[p]), 5),
                       "dup_of": None if p is None else dup_of[p],
                       "keyframe_url": f"/events/{eid}/keyframe.jpg?i=0",
                       "keyframe_urls": [f"/events/{eid}/keyframe.jpg?i={i}" for i in range(3)],
                       "clip_url": f"/events/{eid}/clip.mp4", "signals_url": f"/events/{eid}/signals"})
    dups = members.filter(members.column("dup"))
    dpos = pc.index_in(dups.column("event_id"), value_set=asg.column("event_id")).to_pylist()
    near = [{"event_id": e, "dup_of": None if p is None else dup_of[p], "caption": c}
            for e, c, p in zip(dups.column("event_id").to_pylist(), dups.column("caption").to_pylist(), dpos,
                               strict=True)][:500]
    return _json({
        "dataset": name, "cluster": cluster, "clusters_version": v, "size": members.num_rows,
        "size_all_datasets": members_all.num_rows, "duplicates": dups.num_rows,
        "balance": balance, "total": members.num_rows, "offset": offset, "limit": limit, "events": events,
        "members": {"dataset": _by(members_all, "dataset"), "task": _by(members, "task"), "robot": _by(members, "robot")},
        "near_duplicates": near,
    })


# -- neighbours ------------------------------------------------------------------------------------
def _neighbours_meta(views: Views, version: int) -> dict[str, Any]:
    """`neighbours.json` of a clusters version (its files written on first use if missing or stale)."""
    parts = _parts(views, version)

    def build() -> dict[str, Any]:
        if not cn.neighbours_is_current(views.root, version):
            cn.refresh_neighbours(views.root, version)
        meta = cn.read_neighbours_meta(views.root, version)
        if meta is None:
            raise NotFound(f"clusters version {version}: no neighbours index could be read")
        return meta

    return views._cached(("neighbours_meta", None, version, parts), build)


def _event_rows(views: Views, version: int) -> dict[str, int]:
    """event_id -> row of the version's layout (one dict per version and parts)."""
    whole = layout(views, version)
    return views._cached(("layout_rows", None, version, _parts(views, version)), lambda: {
        e: i for i, e in enumerate(whole.column("event_id").to_pylist())})


def _cluster_vectors(views: Views, version: int, cluster: int) -> tuple[list[str], np.ndarray]:
    """Ids and unit embeddings of one cluster's members: its row groups of `neighbours.parquet`."""
    got = cn.read_cluster(views.root, version, cluster, _neighbours_meta(views, version))
    if got is None:
        raise NotFound(f"clusters version {version}: the neighbours index cannot be read")
    return got


@router.get("/events/{event_id}/neighbours", tags=["events"], response_class=Response)
def neighbours(views: ViewsDep, catalogs: CatalogsDep, event_id: str = Path(pattern=ID_PATTERN),
               k: int = Query(8, ge=1, le=100), clusters_version_: int | None = Query(None, alias="clusters_version",
                                                                                      ge=1)) -> Response:
    cat = catalogs.get()
    v = clusters_version(views, clusters_version_)
    whole = layout(views, v)
    row = _event_rows(views, v).get(event_id)
    if row is None:
        views._event_row(cat, event_id, ["event_id"])  # 404 for an unknown event
        return _json({"event_id": event_id, "clusters_version": v, "cluster": None, "neighbours": [],
                      "note": "the event is not assigned in this clusters version yet"})
    cluster = int(whole.column("cluster")[row].as_py())
    ids, x = _cluster_vectors(views, v, cluster)
    if event_id not in ids:
        return _json({"event_id": event_id, "clusters_version": v, "cluster": cluster, "neighbours": [],
                      "note": "the event's embedding cannot be read"})
    q = x[ids.index(event_id)]
    sim = x @ q
    order = [int(i) for i in np.argsort(-sim, kind="stable")[: k + 1] if ids[int(i)] != event_id][:k]
    rows = _event_rows(views, v)
    at = [rows[ids[i]] for i in order if ids[i] in rows]
    info = whole.select(["event_id", "episode_id", "dataset", "caption", "task", "x", "y"]).take(pa.array(at, pa.int64()))
    by_id = {r["event_id"]: r for r in info.to_pylist()}
    out = [{**by_id.get(ids[i], {"event_id": ids[i]}), "similarity": round(float(sim[i]), 5),
            "distance": round(float(1.0 - sim[i]), 5), "keyframe_url": f"/events/{ids[i]}/keyframe.jpg?i=0"}
           for i in order]
    asg = _assignments(views, v)
    mine = asg.filter(pc.equal(asg.column("event_id"), event_id))
    dups_of_me = asg.filter(pc.fill_null(pc.equal(asg.column("dup_of"), event_id), False))
    return _json({"event_id": event_id, "clusters_version": v, "cluster": cluster, "searched": len(ids),
                  "dup_of": mine.column("dup_of")[0].as_py() if mine.num_rows else None,
                  "duplicates": dups_of_me.column("event_id").to_pylist()[:200], "neighbours": out})


# -- coverage over time ----------------------------------------------------------------------------
def _cluster_sizes(views: Views, cat: Catalog, name: str, version: int) -> dict[int, int]:
    t, _ = dataset_layout(views, cat, name, version)
    vc = pc.value_counts(t.column("cluster")).to_pylist() if t.num_rows else []
    return {int(r["values"]): int(r["counts"]) for r in vc}


def _centroids(views: Views, version: int) -> np.ndarray:
    try:
        return np.load(io.BytesIO(views.root.read_bytes(f"{version_dir(views.root, 'clusters', version)}/centroids.npy")))
    except (OSError, ValueError) as e:
        raise NotFound(f"clusters version {version}: no readable centroids ({type(e).__name__})") from None


def _centroid_map(views: Views, src: int, dst: int) -> dict[int, int]:
    """Each cluster of clusters version `src` -> the nearest (cosine) cluster of version `dst`."""
    def build() -> dict[int, int]:
        a, b = _centroids(views, src), _centroids(views, dst)
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        if a.shape[1] != b.shape[1]:
            raise HTTPException(status_code=422, detail=f"clusters versions {src} and {dst} have embeddings of "
                                                        f"different sizes ({a.shape[1]}, {b.shape[1]})")
        return {i: int(j) for i, j in enumerate(np.argmax(a @ b.T, axis=1).tolist())}

    return views._cached(("centroid_map", None, src, dst), build)


def _captions(views: Views, cat: Catalog, name: str, version: int) -> dict[int, dict[str, Any]]:
    """Per cluster of one dataset: a representative caption and its distinct episodes."""
    def build() -> dict[int, dict[str, Any]]:
        t, _ = dataset_layout(views, cat, name, version)
        out: dict[int, dict[str, Any]] = {}
        agg = t.group_by(["cluster", "episode_id"], use_threads=False).aggregate([])
        for c, _ep in zip(agg.column("cluster").to_pylist(), agg.column("episode_id").to_pylist(), strict=True):
            out.setdefault(int(c), {"caption": None, "event_id": None, "episodes": 0})["episodes"] += 1
        for r in au.cluster_summary(views.root, version, name).for_dataset(name).to_pylist():
            o = out.setdefault(int(r["cluster_id"]), {"caption": None, "event_id": None, "episodes": 0})
            caps, ids = r["sample_captions"] or [], r["sample_event_ids"] or []
            o["caption"] = caps[0] if caps else None
            o["event_id"] = ids[0] if ids else None
        return out

    return views._cached(("captions", name, version, _parts(views, version)), build)


def _all_captions(views: Views, version: int) -> dict[int, dict[str, Any]]:
    """A representative caption per cluster over every dataset (for clusters a dataset lacks)."""
    def build() -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for r in au.cluster_summary(views.root, version).clusters.to_pylist():
            o = out.setdefault(int(r["cluster_id"]), {"caption": None, "event_id": None, "episodes": 0})
            if o["caption"] is None and r["sample_captions"]:
                o["caption"], o["event_id"] = r["sample_captions"][0], (r["sample_event_ids"] or [None])[0]
        return out

    return views._cached(("all_captions", None, version, _parts(views, version)), build)


def _status(before: int, after: int) -> str:
    if before == 0 and after > 0:
        return "appeared"
    if after == 0 and before > 0:
        return "vanished"
    return "grew" if after > before else "shrank" if after < before else "same"


def _remapped(sizes: dict[int, int], mapping: dict[int, int] | None) -> dict[int, int]:
    """Cluster sizes of one version keyed by the matching cluster of another (`_centroid_map`);
    clusters mapped to the same target add up. No mapping: the same ids."""
    out: dict[int, int] = {}
    for c, n in sizes.items():
        tgt = mapping.get(c, c) if mapping is not None else c
        out[tgt] = out.get(tgt, 0) + n
    return out


def _drift_or_none(views: Views, cfg: CarveConfig, version: int) -> dict[str, Any] | None:
    """The clustering's drift (`coverage_drift`) for `version`, or None when it cannot be computed."""
    try:
        return coverage_drift(views.root, cfg, version)
    except ClusteringError:
        return None


def coverage_diff(views: Views, cat: Catalog, cfg: CarveConfig, name: str, kind: str | None, frm: int | None,
                  to: int | None, batch: str | None, min_ratio: float) -> dict[str, Any]:
    """Per cluster of `to`: size in `from` and in `to`, delta and status; the drift ratio; the
    under-covered clusters (size < min_ratio x the median cluster size of `to`)."""
    views.require_dataset(cat, name)
    drift: dict[str, Any] | None = None
    if batch is not None:
        kind = "batch"
        v = clusters_version(views, to)
        t, _ = dataset_layout(views, cat, name, v)
        eps = {r.episode_id for r in cat.episodes(dataset=name, status="ok") if r.batch == batch}
        if not eps:
            raise NotFound(f"dataset {name!r} has no committed episodes in batch {batch!r}")
        in_batch = pc.is_in(t.column("episode_id"), value_set=pa.array(sorted(eps), pa.string()))
        after = _cluster_sizes(views, cat, name, v)
        added = t.filter(in_batch)
        vc = pc.value_counts(added.column("cluster")).to_pylist() if added.num_rows else []
        gained = {int(r["values"]): int(r["counts"]) for r in vc}
        before = {c: n - gained.get(c, 0) for c, n in after.items()}
        frm_v, to_v, cap_v = v, v, v
    elif (kind or "clusters") == "clusters":
        kind = "clusters"
        to_v = clusters_version(views, to)
        have = complete_versions(views.root, "clusters")
        frm_v = clusters_version(views, frm) if frm is not None else max([h for h in have if h < to_v] or [to_v])
        after = _cluster_sizes(views, cat, name, to_v)
        mapping = _centroid_map(views, frm_v, to_v) if frm_v != to_v else None
        before = _remapped(_cluster_sizes(views, cat, name, frm_v), mapping)
        cap_v = to_v
        drift = _drift_or_none(views, cfg, to_v)
    elif kind == "shards":
        have = manifest_versions(views.root)
        if not have:
            raise NotFound("no shards versions")
        to_v = shards_version(views, to)
        assert to_v is not None
        frm_v = shards_version(views, frm) if frm is not None else max([h for h in have if h < to_v] or [to_v])
        assert frm_v is not None
        m_to, m_from = views._manifest(to_v), views._manifest(frm_v)
        cv_to, cv_from = int(m_to.get("clusters_version") or 0), int(m_from.get("clusters_version") or 0)
        ds_to = _shard_counts_ds(views, to_v, name)
        ds_from = _shard_counts_ds(views, frm_v, name)
        mapping = _centroid_map(views, cv_from, cv_to) if cv_from != cv_to and cv_from and cv_to else None
        after = dict(ds_to)
        before = _remapped(ds_from, mapping)
        cap_v = cv_to
        drift = _drift_or_none(views, cfg, cv_to)
    else:
        raise HTTPException(status_code=422, detail=f"kind must be clusters or shards, not {kind!r}")
    caps = _captions(views, cat, name, cap_v) if cap_v else {}
    known: set[int] = set()
    if cap_v:  # every cluster of the clustering, also those this dataset has no event in
        whole = layout(views, cap_v)
        known = set(pc.unique(whole.column("cluster")).to_pylist()) if whole.num_rows else set()
        if not caps or len(caps) < len(known):
            caps = {**_all_captions(views, cap_v), **caps}
    rows = []
    for c in sorted(set(before) | set(after) | known):
        b, a = int(before.get(c, 0)), int(after.get(c, 0))
        info = caps.get(c, {})
        rows.append({"cluster": c, "before": b, "after": a, "delta": a - b, "status": _status(b, a),
                     "caption": info.get("caption"), "event_id": info.get("event_id")})
    sizes = [r["after"] for r in rows if r["after"] > 0]
    median = float(np.median(sizes)) if sizes else 0.0
    under = []
    # events an episode adds to a cluster it reaches: the cluster's own rate, else the typical one
    rate = {r["cluster"]: r["after"] / max(1, int((caps.get(r["cluster"]) or {}).get("episodes") or 1))
            for r in rows if r["after"] > 0}
    typical = float(np.median(list(rate.values()))) if rate else 1.0
    for r in rows:
        if median and r["after"] < min_ratio * median:
            eps = int((caps.get(r["cluster"]) or {}).get("episodes") or 0) if r["after"] else 0
            per_ep = max(1.0, rate.get(r["cluster"], typical))
            want = math.ceil(max(0.0, median - r["after"]) / per_ep)
            under.append({"cluster": r["cluster"], "size": r["after"], "ratio": round(r["after"] / median, 4),
                          "caption": r["caption"], "event_id": r["event_id"], "episodes": eps,
                          "events_per_episode": round(per_ep, 3), "suggested_episodes": int(want)})
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("grew", "shrank", "appeared", "vanished", "same")}
    return {"kind": kind, "from": frm_v, "to": to_v, "batch": batch, "changes": counts, "clusters": rows,
            "drift": drift, "drift_ratio": (drift or {}).get("ratio"), "median": median, "min_ratio": min_ratio,
            "under_covered": under}


def _shard_counts_ds(views: Views, version: int, name: str) -> dict[int, int]:
    """Rows per cluster of one dataset in a shards version (small columns of its shard files)."""
    def build() -> dict[int, int]:
        man = views._manifest(version)
        vdir = version_dir(views.root, "shards", version)
        out: dict[int, int] = {}
        for s in man.get("shards") or []:
            t = pq.read_table(f"{vdir}/{s['path']}", filesystem=views.root.fs, columns=["dataset", "cluster_id"])
            t = t.filter(pc.equal(t.column("dataset"), name))
            for r in pc.value_counts(t.column("cluster_id")).to_pylist() if t.num_rows else []:
                out[int(r["values"])] = out.get(int(r["values"]), 0) + int(r["counts"])
        return out

    return views._cached(("shard_counts_ds", name, version), build)


@router.get("/datasets/{name}/coverage", tags=["datasets", "audit"], response_class=Response)
def coverage(views: ViewsDep, catalogs: CatalogsDep, cfg: CfgDep, name: str = Path(pattern=NAME_PATTERN),
             from_: int | None = Query(None, alias="from", ge=1), to: int | None = Query(None, ge=1),
             kind: str | None = Query(None, pattern="^(clusters|shards)$"),
             batch: str | None = Query(None, pattern=r"^[A-Za-z0-9_.\-]{1,200}$"),
             min_ratio: float = Query(UNDER_RATIO, gt=0, le=10)) -> Response:
    cat = catalogs.get()
    body = dict(views.coverage(cat, name))
    if body.get("clusters_version") is not None or kind == "shards":
        body.update(coverage_diff(views, cat, cfg, name, kind, from_, to, batch, min_ratio))
    return _json(body)


@router.get("/datasets/{name}/coverage.csv", tags=["audit"], response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def coverage_csv(views: ViewsDep, catalogs: CatalogsDep, cfg: CfgDep, name: str = Path(pattern=NAME_PATTERN),
                 from_: int | None = Query(None, alias="from", ge=1), to: int | None = Query(None, ge=1),
                 kind: str | None = Query(None, pattern="^(clusters|shards)$"),
                 batch: str | None = Query(None, pattern=r"^[A-Za-z0-9_.\-]{1,200}$"),
                 min_ratio: float = Query(UNDER_RATIO, gt=0, le=10)) -> Response:
    d = coverage_diff(views, catalogs.get(), cfg, name, kind, from_, to, batch, min_ratio)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "kind", "version", "cluster", "size", "ratio_to_median", "median", "episodes",
                "suggested_episodes", "representative_caption", "example_event_id"])
    for u in d["under_covered"]:
        w.writerow([name, d["kind"], d["to"], u["cluster"], u["size"], u["ratio"], d["median"], u["episodes"],
                    u["suggested_episodes"], u["caption"] or "", u["event_id"] or ""])
    fname = f"{name}-under-covered-{d['kind']}-v{d['to']}.csv"
    return Response(buf.getvalue().encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{fname}"'})
