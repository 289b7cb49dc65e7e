"""The audit read model: `AuditRoot` (one root) and `VersionView` (one clustering version).

`AuditRoot(root, cache)` knows the root's versions (the latest clustering's state, manifests,
clusters `meta.json`) and opens `VersionView`s. A `VersionView` is one clusters version with
named members, each built once per (version, assignment parts) in the one `ViewCache`:

    layout              the stored 2-D layout (`clusters/vNNN/layout.*`, derived on first use)
    rows                event_id -> row of the layout
    dataset(name)       one dataset's rows of the layout, its extent and its encoded points
    assignments         unique assignments (event_id, cluster_id, cluster_dist, dup_of)
    neighbours(...)     the nearest events of one event, from one cluster's row groups
    summary(dataset)    the per-(dataset, cluster) summary (`clustering.summary`)
    coverage sizes      cluster sizes of a dataset, representative captions, centroids
    defect_tags(cat, d) per layout row, the kinds of the quality gate's findings touching the
                        event (`carve.audit.quality`; the map's `defect` facet)

The maths of the audit pages is here too, as functions of these members: the map's filter,
points and histogram (`filter_layout`, `histogram`, `facets`), one cluster's page
(`cluster_detail`), neighbours (`neighbours`) and the change between two versions
(`coverage_change`, with the one under-covered rule of `carve.audit.coverage`). The service's
routes are thin adapters over them; the bodies are described by `carve.audit.models`. The
static report (`carve.report.render`) reads a `VersionView` too: its summary (cluster rows,
coverage) and its layout (the map). Shard manifests are the typed `ShardManifest`
(`AuditRoot.manifest`).
"""

from __future__ import annotations

import io
import json
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.audit import coverage as cov
from carve.audit import data as au
from carve.audit import mapframe as mf
from carve.audit import quality as aq
from carve.audit.cache import ViewCache
from carve.audit.derive import derive_layout, derive_neighbours
from carve.clustering import neighbours as cn
from carve.clustering import summary as cs
from carve.clustering.kmeans import ClusteringError
from carve.clustering.versions import (
    assignment_files,
    complete_versions,
    latest_version,
    read_assignments,
    unique_assignments,
    version_dir,
)
from carve.storage.catalog import Catalog
from carve.storage.layout import RootLayout
from carve.storage.manifest import ShardManifest, manifest_versions
from carve.storage.root import Root


class NotFound(LookupError):
    """A dataset, version, cluster, event or keyframe that does not exist; the message says which."""


class Unprocessable(ValueError):
    """A request the audit cannot answer as asked (a bad filter, versions that cannot be compared)."""


class ClustersState(NamedTuple):
    """What the cluster views depend on; a new value makes new cache keys."""

    version: int | None
    parts: tuple[str, ...]
    summary: tuple[int, int] | None  # (size, mtime_ns) of summary.json
    manifest_version: int | None


class AuditRoot:
    """The versions of one root, and a `VersionView` per clusters version (all in one cache)."""

    def __init__(self, root: Root, cache: ViewCache):
        self.root = root
        self.cache = cache

    def state(self) -> ClustersState:
        """The latest clustering's state (re-checked at most every `cache.ttl_s`)."""
        def compute() -> ClustersState:
            root = self.root
            v = latest_version(root, "clusters")
            mv = manifest_versions(root)
            if v is None:
                return ClustersState(None, (), None, mv[-1] if mv else None)
            parts = tuple(f.rpartition("/")[2] for f in assignment_files(root, v))
            info = root.fs.get_file_info(root.path(*RootLayout.clusters(v, cs.SUMMARY_JSON)))
            summ = (info.size, info.mtime_ns) if info.type == pafs.FileType.File else None
            return ClustersState(v, parts, summ, mv[-1] if mv else None)

        return self.cache.recent("clusters_state", compute)

    def manifest(self, version: int | None) -> ShardManifest | None:
        """The typed manifest of shards version `version` (None for None), read once."""
        if version is None:
            return None
        return self.cache.get(("manifest", None, version), lambda: au.load_manifest(self.root, version))

    def clusters_meta(self, version: int) -> dict[str, Any]:
        return self.cache.get(("clusters_meta", None, version), lambda: au.read_clusters_meta(self.root, version))

    def parts(self, version: int) -> tuple[str, ...]:
        """The assignment parts of a clusters version (the cache key of everything derived from it)."""
        st = self.state()
        if st.version == version:
            return st.parts
        return self.cache.recent(f"audit-parts-{version}", lambda: tuple(cs.part_names(self.root, version)))

    def clusters_version(self, v: int | None) -> int:
        """`v` if it is a complete clusters version, else the latest one; NotFound otherwise."""
        if v is None:
            st = self.state()
            if st.version is None:
                raise NotFound("not clustered yet: no clusters version")
            return int(st.version)
        if v not in complete_versions(self.root, "clusters"):
            raise NotFound(f"no clusters version {v}; have {complete_versions(self.root, 'clusters')}")
        return int(v)

    def shards_version(self, v: int | None, clusters: int | None = None) -> int | None:
        """`v` if it is a shards version; else the latest cut over `clusters`, or the latest one."""
        have = manifest_versions(self.root)
        if v is not None:
            if v not in have:
                raise NotFound(f"no shards version {v}; have {have}")
            return int(v)
        if clusters is not None:  # the latest cut over that clustering
            for s in reversed(have):
                m = self.manifest(s)
                if m is not None and m.clusters_version is not None and int(m.clusters_version) == clusters:
                    return int(s)
            return None
        return int(have[-1]) if have else None

    def version(self, v: int) -> VersionView:
        """The one `VersionView` of clusters version `v` as of its current assignment parts."""
        parts = self.parts(int(v))
        return self.cache.get(("version_view", None, int(v), parts), lambda: VersionView(self, int(v), parts))

    def shard_counts(self, version: int) -> dict[int, dict[str, float]]:
        """Per cluster: rows, unique events and summed weight of a shards version (small columns)."""
        def build() -> dict[int, dict[str, float]]:
            man = self.manifest(version)
            vdir = version_dir(self.root, "shards", version)
            out: dict[int, dict[str, Any]] = {}
            for s in man.shards if man is not None else []:
                t = pq.read_table(f"{vdir}/{s.path}", filesystem=self.root.fs,
                                  columns=["event_id", "cluster_id", "weight"])
                for c, e, w in zip(*(t.column(x).to_pylist() for x in ("cluster_id", "event_id", "weight")),
                                   strict=True):
                    a = out.setdefault(int(c if c is not None else -1), {"rows": 0, "events": set(), "weight": 0.0})
                    a["rows"] += 1
                    a["events"].add(e)
                    a["weight"] += float(w if w is not None else 1.0)
            return {c: {"rows": a["rows"], "unique_events": len(a["events"]), "weight": round(a["weight"], 4)}
                    for c, a in out.items()}

        return self.cache.get(("shard_counts", None, version), build)

    def shard_counts_of(self, version: int, name: str) -> dict[int, int]:
        """Rows per cluster of one dataset in a shards version (small columns of its shard files)."""
        def build() -> dict[int, int]:
            man = self.manifest(version)
            vdir = version_dir(self.root, "shards", version)
            out: dict[int, int] = {}
            for s in man.shards if man is not None else []:
                t = pq.read_table(f"{vdir}/{s.path}", filesystem=self.root.fs, columns=["dataset", "cluster_id"])
                t = t.filter(pc.equal(t.column("dataset"), name))
                for r in pc.value_counts(t.column("cluster_id")).to_pylist() if t.num_rows else []:
                    out[int(r["values"])] = out.get(int(r["values"]), 0) + int(r["counts"])
            return out

        return self.cache.get(("shard_counts_ds", name, version), build)

    def centroid_map(self, src: int, dst: int) -> dict[int, int]:
        """Each cluster of clusters version `src` -> the nearest (cosine) cluster of version `dst`."""
        def build() -> dict[int, int]:
            try:
                return cov.centroid_map(self.version(src).centroids(), self.version(dst).centroids())
            except ValueError as e:
                raise Unprocessable(f"clusters versions {src} and {dst} have {e}") from None

        return self.cache.get(("centroid_map", None, src, dst), build)


class DatasetLayout(NamedTuple):
    """One dataset's rows of a version's layout (with their row number `_row`), extent, points."""

    table: pa.Table
    extent: list[float]
    codes: PointCodes


class VersionView:
    """One clusters version of the audit read model; every member is cached per assignment parts."""

    def __init__(self, owner: AuditRoot, version: int, parts: tuple[str, ...]):
        self.owner = owner
        self.root = owner.root
        self.version = version
        self.parts = parts

    def _get(self, kind: str, scope: str | None, build: Any, *extra: Any) -> Any:
        return self.owner.cache.get((kind, scope, self.version, self.parts, *extra), build)

    @property
    def layout(self) -> pa.Table:
        """The layout of the version (derived on first use if the version has none or a stale one)."""
        def build() -> pa.Table:
            t = cs.read_layout(self.root, self.version)
            if t is None:
                derive_layout(self.root, self.version)
                t = cs.read_layout(self.root, self.version)
            if t is None:
                raise NotFound(f"clusters version {self.version}: no layout could be read")
            return t.combine_chunks()

        return self._get("layout", None, build)

    @property
    def rows(self) -> dict[str, int]:
        """event_id -> row of the version's layout."""
        whole = self.layout
        return self._get("layout_rows", None, lambda: {e: i for i, e in enumerate(whole.column("event_id").to_pylist())})

    def dataset(self, name: str) -> DatasetLayout:
        def build() -> DatasetLayout:
            t = self.layout
            t = t.filter(pc.equal(t.column("dataset"), name)).combine_chunks()
            t = t.append_column("_row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
            return DatasetLayout(t, cs._extent(t), PointCodes(t))

        return self._get("layout_ds", name, build)

    @property
    def assignments(self) -> pa.Table:
        return self._get("assignments", None, lambda: unique_assignments(read_assignments(self.root, self.version))
                         .select(["event_id", "cluster_id", "cluster_dist", "dup_of"]).combine_chunks())

    def neighbours_meta(self) -> dict[str, Any]:
        """`neighbours.json` of the version (its files derived on first use if missing or stale)."""
        def build() -> dict[str, Any]:
            if not cn.neighbours_is_current(self.root, self.version):
                derive_neighbours(self.root, self.version)
            meta = cn.read_neighbours_meta(self.root, self.version)
            if meta is None:
                raise NotFound(f"clusters version {self.version}: no neighbours index could be read")
            return meta

        return self._get("neighbours_meta", None, build)

    def cluster_vectors(self, cluster: int) -> tuple[list[str], np.ndarray]:
        """Ids and unit embeddings of one cluster's members: its row groups of `neighbours.parquet`."""
        got = cn.read_cluster(self.root, self.version, cluster, self.neighbours_meta())
        if got is None:
            raise NotFound(f"clusters version {self.version}: the neighbours index cannot be read")
        return got

    def summary(self, dataset: str | None = None) -> cs.ClusterSummary:
        return au.cluster_summary(self.root, self.version, dataset)

    def centroids(self) -> np.ndarray:
        try:
            return np.load(io.BytesIO(self.root.read_bytes(f"{version_dir(self.root, 'clusters', self.version)}"
                                                           "/centroids.npy")))
        except (OSError, ValueError) as e:
            raise NotFound(f"clusters version {self.version}: no readable centroids ({type(e).__name__})") from None

    def cluster_sizes(self, name: str) -> dict[int, int]:
        t = self.dataset(name).table
        vc = pc.value_counts(t.column("cluster")).to_pylist() if t.num_rows else []
        return {int(r["values"]): int(r["counts"]) for r in vc}

    def captions(self, name: str) -> dict[int, dict[str, Any]]:
        """Per cluster of one dataset: a representative caption and its distinct episodes."""
        def build() -> dict[int, dict[str, Any]]:
            t = self.dataset(name).table
            out: dict[int, dict[str, Any]] = {}
            agg = t.group_by(["cluster", "episode_id"], use_threads=False).aggregate([])
            for c, _ep in zip(agg.column("cluster").to_pylist(), agg.column("episode_id").to_pylist(), strict=True):
                out.setdefault(int(c), {"caption": None, "event_id": None, "episodes": 0})["episodes"] += 1
            for r in self.summary(name).for_dataset(name).to_pylist():
                o = out.setdefault(int(r["cluster_id"]), {"caption": None, "event_id": None, "episodes": 0})
                caps, ids = r["sample_captions"] or [], r["sample_event_ids"] or []
                o["caption"] = caps[0] if caps else None
                o["event_id"] = ids[0] if ids else None
            return out

        return self._get("captions", name, build)

    def all_captions(self) -> dict[int, dict[str, Any]]:
        """A representative caption per cluster over every dataset (for clusters a dataset lacks)."""
        def build() -> dict[int, dict[str, Any]]:
            out: dict[int, dict[str, Any]] = {}
            for r in self.summary().clusters.to_pylist():
                o = out.setdefault(int(r["cluster_id"]), {"caption": None, "event_id": None, "episodes": 0})
                if o["caption"] is None and r["sample_captions"]:
                    o["caption"], o["event_id"] = r["sample_captions"][0], (r["sample_event_ids"] or [None])[0]
            return out

        return self._get("all_captions", None, build)

    def known_clusters(self) -> set[int]:
        whole = self.layout
        return set(pc.unique(whole.column("cluster")).to_pylist()) if whole.num_rows else set()

    def defect_tags(self, cat: Catalog, name: str) -> list[tuple[str, ...]]:
        """Per row of `dataset(name)`, the kinds of the quality gate's findings (catalog
        `defects`) that touch the event (`carve.audit.quality.event_tags`; cached per version,
        assignment parts and the findings' state)."""
        return aq.event_tags(self.owner.cache, self.root, cat, self.dataset(name).table, (self.version, self.parts),
                             name)


# -- the map ----------------------------------------------------------------------------------------
POINT_COLUMNS = ["event_id", "x", "y", "cluster", "task", "robot", "arms", "verb", "caption", "episode_id", "dup"]


def points(t: pa.Table) -> list[dict[str, Any]]:
    """The map points of layout rows (coordinates rounded to 5 decimals)."""
    d = t.select(POINT_COLUMNS).to_pydict()
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
            for i, p in zip(todo, points(self.t.take(pa.array(todo, pa.int64()))), strict=True):
                self.codes[i] = json.dumps(p, separators=(",", ":"))
        return "[" + ",".join(self.codes[int(i)] for i in rows) + "]"  # type: ignore[misc]


def filter_layout(t: pa.Table, task: str | None, robot: str | None, arm: str | None, verb: str | None,
                  cluster: str | None, defect: str | None = None,
                  tags: list[tuple[str, ...]] | None = None) -> pa.Table:
    """The layout rows matching every filter given (`cluster`: an id or a comma list; `defect`: a
    kind of finding touching the event, or `carve.audit.quality.NO_FINDING`, matched against
    `tags`, `VersionView.defect_tags` of the dataset's rows, indexed by the `_row` column)."""
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
            raise Unprocessable(f"cluster must be an integer or a comma list: {cluster!r}") from None
        both(pc.is_in(t.column("cluster"), value_set=pa.array(ids, pa.int32())))
    if defect is not None:
        if tags is None:
            raise Unprocessable("the defect filter needs the findings (defect tags)")
        hit = aq.tag_mask(tags, defect)
        both(pa.array(hit[t.column("_row").to_numpy()] if t.num_rows else np.zeros(0, dtype=bool)))
    return t if mask is None else t.filter(pc.fill_null(mask, False))


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
    return [{"ix": int(e) // bins, "iy": int(e) % bins, "count": int(counts[e]), "cluster": int(m),
             "cluster_count": int(r), "event_id": i}
            for e, m, r, i in zip(ce[sel].tolist(), cl[sel].tolist(), runs[sel].tolist(), ids, strict=True)]


def map_frame(vv: VersionView, name: str, kept: pa.Table, filtered: bool, view: list[float] | None,
              width: int, height: int, cell: int, bins: int, with_density: bool) -> bytes:
    """The map's binary frame (`carve.audit.mapframe`) of dataset `name`: the level-of-detail sample
    of the rows `kept` (the dataset's layout, filtered when `filtered`) inside `view` (default:
    the dataset's extent) for a width x height screen, and the density underlay over the
    dataset's extent when `with_density` (the version's stored grid when unfiltered)."""
    ds = vv.dataset(name)
    box = list(ds.extent) if view is None else [float(v) for v in view]
    if box[1] < box[0] or box[3] < box[2]:
        raise Unprocessable(f"the view box must have x0 <= x1 and y0 <= y1: {box}")
    prio = vv._get("map_prio", name, lambda: mf.priorities(ds.table.num_rows, vv.version))
    x = kept.column("x").to_numpy(zero_copy_only=False)
    y = kept.column("y").to_numpy(zero_copy_only=False)
    rows = kept.column("_row").to_numpy(zero_copy_only=False)
    pick, in_view = mf.sample_rows(x, y, prio[rows], box, width, height, cell)
    grid = None
    if with_density:
        grid = (mf.density(x, y, ds.extent, bins) if filtered
                else vv._get("map_density", name, lambda: mf.stored_density(
                    vv.root, vv.version, vv.parts, name, bins,
                    lambda: mf.density(x, y, ds.extent, bins)), bins))
    header = {"dataset": name, "version": vv.version, "total": kept.num_rows, "in_view": in_view,
              "sampled": len(pick) < in_view, "view": box, "extent": list(ds.extent), "width": width,
              "height": height, "cell": cell, "bins": bins if with_density else None}
    return mf.build_frame(kept, pick, header, grid)


def _value_counts(arr: Any) -> list[dict[str, Any]]:
    vc = pc.value_counts(arr).to_pylist()
    rows = [{"value": r["values"], "count": int(r["counts"])} for r in vc]
    return sorted(rows, key=lambda r: (-r["count"], str(r["value"])))


def facets(vv: VersionView, name: str, cat: Catalog) -> dict[str, Any]:
    """Distinct values of each map filter of one dataset, with counts, and the versions; `defect`
    counts the events each kind of finding touches, then those none touches (`NO_FINDING`)."""
    t = vv.dataset(name).table
    arms = pc.list_flatten(t.column("arms").combine_chunks()) if t.num_rows else pa.array([], pa.string())
    return {"dataset": name, "version": vv.version, "total": t.num_rows,
            "versions": {"clusters": complete_versions(vv.root, "clusters"), "shards": manifest_versions(vv.root)},
            "facets": {"task": _value_counts(t.column("task")), "robot": _value_counts(t.column("robot")),
                       "arm": _value_counts(arms), "verb": _value_counts(t.column("verb")),
                       "cluster": sorted(_value_counts(t.column("cluster")), key=lambda r: r["value"]),
                       "defect": aq.tag_counts(vv.defect_tags(cat, name))}}


# -- one cluster --------------------------------------------------------------------------------------
def _by(t: pa.Table, col: str) -> list[dict[str, Any]]:
    vc = pc.value_counts(pc.fill_null(t.column(col), cs.UNKNOWN)).to_pylist() if t.num_rows else []
    return sorted(({"value": r["values"], "count": int(r["counts"])} for r in vc), key=lambda r: -r["count"])


def cluster_detail(vv: VersionView, name: str, cluster: int, shards_version: int | None, offset: int,
                   limit: int) -> dict[str, Any]:
    """One cluster of one dataset: its events (a page), sizes before/after balancing in the
    shards version (default: the latest cut over this clustering), members, near-duplicates."""
    t = vv.dataset(name).table
    whole = vv.layout
    members_all = whole.filter(pc.equal(whole.column("cluster"), cluster))
    members = t.filter(pc.equal(t.column("cluster"), cluster))
    if members_all.num_rows == 0:
        raise NotFound(f"cluster {cluster} of clusters version {vv.version} has no events")
    sv = vv.owner.shards_version(shards_version, vv.version)
    balance: dict[str, Any] = {"shards_version": sv}
    if sv is not None:
        man = vv.owner.manifest(sv)
        counts = man.clusters if man is not None else None
        cnt = vv.owner.shard_counts(sv).get(cluster, {"rows": 0, "unique_events": 0, "weight": 0.0})
        balance.update({
            "clusters_version": man.clusters_version if man is not None else None,
            "policy": man.policy.name if man is not None and man.policy is not None else None,
            "before": int(counts.before.get(str(cluster), 0)) if counts is not None else 0,
            "after": int(counts.after.get(str(cluster), 0)) if counts is not None else 0,
            "rows": cnt["rows"], "unique_events": cnt["unique_events"], "weight": cnt["weight"]})
    asg = vv.assignments
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
    return {
        "dataset": name, "cluster": cluster, "clusters_version": vv.version, "size": members.num_rows,
        "size_all_datasets": members_all.num_rows, "duplicates": dups.num_rows,
        "balance": balance, "total": members.num_rows, "offset": offset, "limit": limit, "events": events,
        "members": {"dataset": _by(members_all, "dataset"), "task": _by(members, "task"), "robot": _by(members, "robot")},
        "near_duplicates": near,
    }


# -- neighbours ------------------------------------------------------------------------------------
def neighbours(vv: VersionView, event_id: str, k: int) -> dict[str, Any] | None:
    """The `k` nearest events (cosine) of the event's own cluster; None if the version has not
    assigned the event (the caller tells an unknown event from a not yet assigned one)."""
    whole = vv.layout
    rows = vv.rows
    row = rows.get(event_id)
    if row is None:
        return None
    cluster = int(whole.column("cluster")[row].as_py())
    ids, x = vv.cluster_vectors(cluster)
    if event_id not in ids:
        return {"event_id": event_id, "clusters_version": vv.version, "cluster": cluster, "neighbours": [],
                "note": "the event's embedding cannot be read"}
    q = x[ids.index(event_id)]
    sim = x @ q
    order = [int(i) for i in np.argsort(-sim, kind="stable")[: k + 1] if ids[int(i)] != event_id][:k]
    at = [rows[ids[i]] for i in order if ids[i] in rows]
    info = whole.select(["event_id", "episode_id", "dataset", "caption", "task", "x", "y"]).take(pa.array(at, pa.int64()))
    by_id = {r["event_id"]: r for r in info.to_pylist()}
    out = [{**by_id.get(ids[i], {"event_id": ids[i]}), "similarity": round(float(sim[i]), 5),
            "distance": round(float(1.0 - sim[i]), 5), "keyframe_url": f"/events/{ids[i]}/keyframe.jpg?i=0"}
           for i in order]
    asg = vv.assignments
    mine = asg.filter(pc.equal(asg.column("event_id"), event_id))
    dups_of_me = asg.filter(pc.fill_null(pc.equal(asg.column("dup_of"), event_id), False))
    return {"event_id": event_id, "clusters_version": vv.version, "cluster": cluster, "searched": len(ids),
            "dup_of": mine.column("dup_of")[0].as_py() if mine.num_rows else None,
            "duplicates": dups_of_me.column("event_id").to_pylist()[:200], "neighbours": out}


# -- coverage over time ----------------------------------------------------------------------------
def coverage_change(ar: AuditRoot, cat: Catalog, name: str, kind: str | None, frm: int | None, to: int | None,
                    batch: str | None, min_ratio: float, drift_of: Any) -> dict[str, Any]:
    """Per cluster of `to`: size in `from` and in `to`, delta and status; the drift ratio
    (`drift_of(clusters version)`, or None); the under-covered clusters of `to`
    (`carve.audit.coverage`: size < min_ratio x the median non-empty cluster size)."""
    drift: dict[str, Any] | None = None
    if batch is not None:
        kind = "batch"
        v = ar.clusters_version(to)
        t = ar.version(v).dataset(name).table
        eps = {r.episode_id for r in cat.episodes(dataset=name, status="ok") if r.batch == batch}
        if not eps:
            raise NotFound(f"dataset {name!r} has no committed episodes in batch {batch!r}")
        in_batch = pc.is_in(t.column("episode_id"), value_set=pa.array(sorted(eps), pa.string()))
        after = ar.version(v).cluster_sizes(name)
        added = t.filter(in_batch)
        vc = pc.value_counts(added.column("cluster")).to_pylist() if added.num_rows else []
        gained = {int(r["values"]): int(r["counts"]) for r in vc}
        before = {c: n - gained.get(c, 0) for c, n in after.items()}
        frm_v, to_v, cap_v = v, v, v
    elif (kind or "clusters") == "clusters":
        kind = "clusters"
        to_v = ar.clusters_version(to)
        have = complete_versions(ar.root, "clusters")
        frm_v = ar.clusters_version(frm) if frm is not None else max([h for h in have if h < to_v] or [to_v])
        after = ar.version(to_v).cluster_sizes(name)
        mapping = ar.centroid_map(frm_v, to_v) if frm_v != to_v else None
        before = cov.remap(ar.version(frm_v).cluster_sizes(name), mapping)
        cap_v = to_v
        drift = drift_of(to_v)
    elif kind == "shards":
        have = manifest_versions(ar.root)
        if not have:
            raise NotFound("no shards versions")
        to_v = ar.shards_version(to)
        assert to_v is not None
        frm_v = ar.shards_version(frm) if frm is not None else max([h for h in have if h < to_v] or [to_v])
        assert frm_v is not None
        cv_to, cv_from = (int(m.clusters_version or 0) if m is not None else 0
                          for m in (ar.manifest(to_v), ar.manifest(frm_v)))
        ds_to = ar.shard_counts_of(to_v, name)
        ds_from = ar.shard_counts_of(frm_v, name)
        mapping = ar.centroid_map(cv_from, cv_to) if cv_from != cv_to and cv_from and cv_to else None
        after = dict(ds_to)
        before = cov.remap(ds_from, mapping)
        cap_v = cv_to
        drift = drift_of(cv_to)
    else:
        raise Unprocessable(f"kind must be clusters or shards, not {kind!r}")
    caps = ar.version(cap_v).captions(name) if cap_v else {}
    known: set[int] = set()
    if cap_v:  # every cluster of the clustering, also those this dataset has no event in
        known = ar.version(cap_v).known_clusters()
        if not caps or len(caps) < len(known):
            caps = {**ar.version(cap_v).all_captions(), **caps}
    rows = cov.change_rows(before, after, known, caps)
    median, under = cov.under_covered_rows(rows, caps, min_ratio)
    return {"kind": kind, "from": frm_v, "to": to_v, "batch": batch, "changes": cov.change_counts(rows),
            "clusters": rows, "drift": drift, "drift_ratio": (drift or {}).get("ratio"), "median": median,
            "min_ratio": min_ratio, "under_covered": under}


def drift_or_none(drift: Any, version: int) -> dict[str, Any] | None:
    """`drift(version)` (the clustering's `coverage_drift`), or None when it cannot be computed."""
    try:
        return drift(version)
    except ClusteringError:
        return None
