"""Per-version summaries of a clustering, for the audit views: `clusters/vNNN/summary.*`.

A clusters version holds, next to its assignments, what the service's cluster and coverage
views show, precomputed so that no view reads embeddings or every event:

* `summary.parquet`: one row per (dataset, cluster) with events: `size`, `duplicates`, the
  most common tasks and robots with their counts (top `TOP`), and up to `SAMPLES` sample
  events with distinct captions (the first in stream order; the first events if none has a
  caption);
* `summary.json` (written last): format and version, the clusters version, `k`, the names of
  the assignment parts it covers, and per dataset the totals (`events`, `assigned`, `episodes`,
  `duplicates`, `clusters`) and the coverage tables by task and by robot (events, distinct
  episodes, distinct clusters, duplicates per value; unassigned events count as events).

They are derived after clustering (`carve.audit.derive.derive_views`, called once after
`cluster_catalog`, `assign_new` and `recluster`) and, if missing or stale, with every shard cut.
This module owns their formats and writers, and the layout's projection: `LayoutProjector` is
the one PCA of Carve (the UI's map and the static report's map both use the stored one).
A summary is current while the assignment parts it names are the version's parts
(`read_summary` returns None otherwise, and readers compute one in memory with
`summary_from_assignments`, which is what an older root without summaries gets). Computing one
is a single streaming pass over the small columns of the committed events (event_id,
episode_id, dataset, task, robot, caption), one part file at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from carve.clustering.kmeans import ClusteringError
from carve.clustering.stream import read_keys
from carve.clustering.versions import assignment_files, read_assignments, unique_assignments, version_dir
from carve.storage.events import EventSnapshot, iter_events, snapshot
from carve.storage.layout import RootLayout
from carve.storage.manifest import utc_now
from carve.storage.root import Root

SUMMARY_FORMAT = "carve.clusters_summary"
SUMMARY_VERSION = 1
SUMMARY_JSON = "summary.json"
SUMMARY_PARQUET = "summary.parquet"
SAMPLES = 3
TOP = 10
UNKNOWN = "(unknown)"

_counts = pa.list_(pa.struct([pa.field("value", pa.string()), pa.field("count", pa.int64())]))
SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("cluster_id", pa.int32(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
        pa.field("tasks", _counts),
        pa.field("robots", _counts),
        pa.field("sample_event_ids", pa.list_(pa.string())),
        pa.field("sample_captions", pa.list_(pa.string())),
    ],
    metadata={b"carve.summary_version": str(SUMMARY_VERSION).encode()},
)
_META_COLUMNS = ["event_id", "episode_id", "dataset", "task", "robot", "caption"]


@dataclass
class ClusterSummary:
    """One clustering's summary: the per-(dataset, cluster) table and the per-dataset totals."""

    clusters: pa.Table  # SUMMARY_SCHEMA, sorted by (dataset, cluster_id)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # summary.json without `datasets`

    def for_dataset(self, dataset: str) -> pa.Table:
        return self.clusters.filter(pc.equal(self.clusters.column("dataset"), dataset))


class _Samples:
    """The first SAMPLES distinct non-empty captions of one (dataset, cluster), and the first events."""

    __slots__ = ("caption_ids", "captions", "first_ids")

    def __init__(self) -> None:
        self.captions: list[str] = []
        self.caption_ids: list[str] = []
        self.first_ids: list[str] = []

    @property
    def done(self) -> bool:
        return len(self.captions) >= SAMPLES

    def offer(self, event_id: str, caption: str | None) -> None:
        if len(self.first_ids) < SAMPLES:
            self.first_ids.append(event_id)
        if caption and caption not in self.captions and len(self.captions) < SAMPLES:
            self.captions.append(caption)
            self.caption_ids.append(event_id)


def compute_summary(root: Root, snap: EventSnapshot, cluster_of_row: np.ndarray, dup_of_row: np.ndarray) -> ClusterSummary:
    """The summary of the snapshot's events, whose row i is in cluster `cluster_of_row[i]` (-1:
    not assigned) and is a near-duplicate if `dup_of_row[i]`; one streaming pass."""
    cluster_of_row = np.asarray(cluster_of_row, dtype=np.int64)
    dup_of_row = np.asarray(dup_of_row, dtype=bool)
    groups: dict[tuple[str, int, str, str], list[int]] = {}  # (dataset, cluster, task, robot) -> [events, dups]
    eps_of: dict[tuple[str, str, str], set[str]] = {}  # (dataset, "task"|"robot", value) -> episodes
    ds_eps: dict[str, set[str]] = {}
    samples: dict[tuple[str, int], _Samples] = {}
    g0 = 0
    for t in iter_events(root, columns=_META_COLUMNS, snap=snap):
        n = t.num_rows
        if n == 0:
            continue
        if g0 + n > len(cluster_of_row):
            raise ClusteringError(f"{root}: the event files changed while summarising the clustering")
        c = cluster_of_row[g0 : g0 + n]
        d = dup_of_row[g0 : g0 + n]
        g0 += n
        ds = t.column("dataset")
        task = pc.fill_null(t.column("task"), "")
        robot = pc.fill_null(t.column("robot"), "")
        tt = pa.table({"dataset": ds, "cluster": pa.array(c), "task": task, "robot": robot,
                       "dup": pa.array(d.astype(np.int64)), "episode_id": t.column("episode_id")})
        agg = tt.group_by(["dataset", "cluster", "task", "robot"], use_threads=False).aggregate(
            [("dup", "sum"), ("dup", "count")])
        want_samples = False
        for key_ds, key_c, key_t, key_r, n_dup, n_ev in zip(
                *(agg.column(x).to_pylist() for x in ("dataset", "cluster", "task", "robot", "dup_sum", "dup_count")),
                strict=True):
            acc = groups.setdefault((key_ds, int(key_c), key_t, key_r), [0, 0])
            acc[0] += int(n_ev)
            acc[1] += int(n_dup)
            if key_c >= 0 and not ((s := samples.get((key_ds, int(key_c)))) is not None and s.done):
                want_samples = True
        for key, col in (("task", "task"), ("robot", "robot")):
            eps = tt.group_by(["dataset", col, "episode_id"], use_threads=False).aggregate([])
            for e_ds, val, ep in zip(*(eps.column(x).to_pylist() for x in ("dataset", col, "episode_id")), strict=True):
                eps_of.setdefault((e_ds, key, val), set()).add(ep)
                ds_eps.setdefault(e_ds, set()).add(ep)
        if not want_samples:  # every (dataset, cluster) of this part has its samples already
            continue
        ids = t.column("event_id").to_pylist()
        caps = t.column("caption").to_pylist()
        for i, (dsi, ci) in enumerate(zip(ds.to_pylist(), c.tolist(), strict=True)):
            if ci < 0:
                continue
            s = samples.get((dsi, ci))
            if s is None:
                s = samples[(dsi, ci)] = _Samples()
            elif s.done:
                continue
            s.offer(ids[i], caps[i])
    if g0 != len(cluster_of_row):
        raise ClusteringError(f"{root}: the event files changed while summarising the clustering "
                              f"({g0} rows read, {len(cluster_of_row)} expected)")
    return _build(groups, eps_of, ds_eps, samples)


def _top(counter: dict[str, int]) -> list[dict[str, Any]]:
    # most common first; ties keep first appearance (as collections.Counter.most_common)
    return [{"value": v, "count": n} for v, n in sorted(counter.items(), key=lambda kv: -kv[1])[:TOP]]


def _build(groups: dict[tuple[str, int, str, str], list[int]], eps_of: dict[tuple[str, str, str], set[str]],
           ds_eps: dict[str, set[str]], samples: dict[tuple[str, int], _Samples]) -> ClusterSummary:
    per: dict[tuple[str, int], dict[str, Any]] = {}
    cov: dict[tuple[str, str, str], dict[str, Any]] = {}  # (dataset, key, value) -> events, clusters, duplicates
    datasets: dict[str, dict[str, Any]] = {}
    for (ds, c, task, robot), (n_ev, n_dup) in groups.items():
        tot = datasets.setdefault(ds, {"events": 0, "assigned": 0, "duplicates": 0, "clusters": 0})
        tot["events"] += n_ev
        for key, val in (("task", task), ("robot", robot)):
            a = cov.setdefault((ds, key, val), {"events": 0, "clusters": set(), "duplicates": 0})
            a["events"] += n_ev
            if c >= 0:
                a["clusters"].add(c)
                a["duplicates"] += n_dup
        if c < 0:
            continue
        tot["assigned"] += n_ev
        tot["duplicates"] += n_dup
        p = per.setdefault((ds, c), {"size": 0, "duplicates": 0, "tasks": {}, "robots": {}})
        p["size"] += n_ev
        p["duplicates"] += n_dup
        p["tasks"][task] = p["tasks"].get(task, 0) + n_ev
        p["robots"][robot] = p["robots"].get(robot, 0) + n_ev
    for ds, tot in datasets.items():
        tot["episodes"] = len(ds_eps.get(ds, ()))
        tot["clusters"] = sum(1 for d, _ in per if d == ds)
        for key in ("task", "robot"):
            rows = [{key: (val or UNKNOWN), "events": a["events"], "episodes": len(eps_of.get((d, key, val), ())),
                     "clusters": len(a["clusters"]), "duplicates": a["duplicates"]}
                    for (d, k, val), a in cov.items() if d == ds and k == key]
            tot[f"by_{key}"] = _merge_unknown(rows, key)
    keys = sorted(per)
    empty = _Samples()

    def sample(k: tuple[str, int]) -> tuple[list[str], list[str]]:
        s = samples.get(k, empty)
        return (s.caption_ids, s.captions) if s.captions else (s.first_ids, [])

    cols = {
        "dataset": [k[0] for k in keys], "cluster_id": [k[1] for k in keys],
        "size": [per[k]["size"] for k in keys], "duplicates": [per[k]["duplicates"] for k in keys],
        "tasks": [_top(per[k]["tasks"]) for k in keys], "robots": [_top(per[k]["robots"]) for k in keys],
        "sample_event_ids": [sample(k)[0] for k in keys], "sample_captions": [sample(k)[1] for k in keys],
    }
    table = pa.Table.from_pydict(cols, schema=SUMMARY_SCHEMA)
    return ClusterSummary(clusters=table, datasets=datasets)


def _merge_unknown(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows with value None and "" both read "(unknown)": one row of them; most events first."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r[key] in out:  # only UNKNOWN can repeat ("" and a literal "(unknown)")
            o = out[r[key]]
            for f in ("events", "episodes", "clusters", "duplicates"):
                o[f] += r[f]
        else:
            out[r[key]] = dict(r)
    return sorted(out.values(), key=lambda r: -r["events"])


def align(keys: pa.Table, assignments: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id or -1, is-duplicate) for each row of `keys` (an event_id column) from unique
    assignments (one vectorised hash join; no per-event Python)."""
    idx = pc.index_in(keys.column("event_id"), value_set=assignments.column("event_id").combine_chunks())
    found = np.asarray(idx.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    pos = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    n = keys.num_rows
    cluster = np.full(n, -1, dtype=np.int64)
    dup = np.zeros(n, dtype=bool)
    if assignments.num_rows and found.any():
        cids = assignments.column("cluster_id").to_numpy(zero_copy_only=False).astype(np.int64)
        isdup = np.asarray(assignments.column("dup_of").is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        cluster[found] = cids[pos[found]]
        dup[found] = isdup[pos[found]]
    return cluster, dup


def part_names(root: Root, version: int) -> list[str]:
    return [f.rpartition("/")[2] for f in assignment_files(root, version)]


def summary_from_assignments(root: Root, version: int, snap: EventSnapshot | None = None,
                             keys: pa.Table | None = None) -> ClusterSummary:
    """Compute (not write) the summary of a clusters version from its assignment parts and the
    committed events: two streaming passes over small columns (the keys, then the metadata)."""
    parts = part_names(root, version)
    snap = snap or snapshot(root)
    keys = keys if keys is not None else read_keys(root, snap)
    cluster, dup = align(keys, unique_assignments(read_assignments(root, version)))
    s = compute_summary(root, snap, cluster, dup)
    s.meta = _meta(root, version, parts)
    return s


def _meta(root: Root, version: int, parts: list[str]) -> dict[str, Any]:
    k = None
    vdir = version_dir(root, "clusters", version)
    if root.exists(*RootLayout.done_marker(RootLayout.CLUSTERS, version)):
        k = json.loads(root.read_bytes(f"{vdir}/meta.json")).get("k")
    return {"format": SUMMARY_FORMAT, "summary_version": SUMMARY_VERSION, "clusters_version": int(version), "k": k,
            "assignment_parts": parts, "created_at": utc_now()}


def write_summary(root: Root, version: int, summary: ClusterSummary, k: int | None = None,
                  parts: list[str] | None = None) -> str:
    """Write `summary.parquet`, then `summary.json`, into the clusters version's folder; it covers
    the assignment `parts` (default: the version's parts as they are now)."""
    vdir = version_dir(root, "clusters", version)
    parts = part_names(root, version) if parts is None else list(parts)
    meta = {**_meta(root, version, parts), **summary.meta, "assignment_parts": parts, "created_at": utc_now()}
    if k is not None:
        meta["k"] = int(k)
    root.write_table(f"{vdir}/{SUMMARY_PARQUET}", summary.clusters.cast(SUMMARY_SCHEMA), row_group_size=4096)
    root.write_bytes(f"{vdir}/{SUMMARY_JSON}",
                     json.dumps({**meta, "datasets": summary.datasets}, indent=1, sort_keys=True).encode())
    summary.meta = meta
    return f"{vdir}/{SUMMARY_JSON}"


def refresh_summary(root: Root, version: int, snap: EventSnapshot | None = None, keys: pa.Table | None = None) -> str:
    """Recompute and write the summary of a version (after a new assignments part)."""
    return write_summary(root, version, summary_from_assignments(root, version, snap, keys))


def read_version_meta(root: Root, version: int, filename: str, fmt: str, version_key: str,
                      max_version: int) -> dict[str, Any] | None:
    """The JSON file `filename` of a clusters version (summary, layout, neighbours), or None if it
    has none, or one this Carve cannot read (another `format`, or a `version_key` above `max_version`)."""
    rel = RootLayout.clusters(version, filename)
    if not root.exists(*rel):
        return None
    try:
        meta = json.loads(root.read_bytes(root.path(*rel)))
    except (OSError, ValueError):
        return None
    if meta.get("format") != fmt or int(meta.get(version_key, 0)) > max_version:
        return None
    return meta


def derived_is_current(root: Root, version: int, meta: dict[str, Any] | None) -> bool:
    """Whether a file derived from a clusters version (its `meta`) covers the version's assignment parts."""
    return meta is not None and meta.get("assignment_parts") == part_names(root, version)


def summary_is_current(root: Root, version: int) -> bool:
    return derived_is_current(root, version, read_summary_meta(root, version))


def read_summary_meta(root: Root, version: int) -> dict[str, Any] | None:
    """`summary.json` of a version, or None if it has none (or one this Carve cannot read)."""
    return read_version_meta(root, version, SUMMARY_JSON, SUMMARY_FORMAT, "summary_version", SUMMARY_VERSION)


def read_summary(root: Root, version: int, dataset: str | None = None) -> ClusterSummary | None:
    """The written summary of a version (only `dataset`'s rows if given), or None if it is
    missing, unreadable or stale (its assignment parts are not the version's parts)."""
    meta = read_summary_meta(root, version)
    if not derived_is_current(root, version, meta):
        return None
    path = f"{version_dir(root, 'clusters', version)}/{SUMMARY_PARQUET}"
    try:
        filters = [("dataset", "==", dataset)] if dataset is not None else None
        table = pq.read_table(path, filesystem=root.fs, filters=filters).cast(SUMMARY_SCHEMA)
    except (OSError, pa.ArrowInvalid):
        return None
    datasets = meta.pop("datasets", {}) or {}
    if dataset is not None:
        datasets = {dataset: datasets[dataset]} if dataset in datasets else {}
    return ClusterSummary(clusters=table, datasets=datasets, meta=meta)


# -- the 2-D layout of the embedding map ------------------------------------------------------------
#
# `clusters/vNNN/layout.parquet` holds one row per assigned event: its 2-D position (PCA of the
# fused `emb`, fitted on the k-means training sample and applied to every event in streamed
# batches by `carve.audit.derive`), its cluster and the columns the map filters on;
# `layout.json` (written last) holds the
# projection (mean, two components), the extent and the assignment parts the layout covers. The
# audit map pages read only these files, never the embeddings.

LAYOUT_PARQUET = "layout.parquet"
LAYOUT_JSON = "layout.json"
LAYOUT_FORMAT = "carve.clusters_layout"
LAYOUT_VERSION = 1
LAYOUT_FIT_ROWS = 50_000  # at most this many sample rows go into the PCA fit
LAYOUT_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("episode_id", pa.string()),
    pa.field("dataset", pa.string()),
    pa.field("x", pa.float32()),
    pa.field("y", pa.float32()),
    pa.field("cluster", pa.int32()),
    pa.field("dup", pa.bool_()),
    pa.field("task", pa.string()),
    pa.field("robot", pa.string()),
    pa.field("arms", pa.list_(pa.string())),
    pa.field("verb", pa.string()),
    pa.field("caption", pa.string()),
])
_LAYOUT_META = ["event_id", "episode_id", "dataset", "task", "robot", "caption"]
_VERB_SKIP = {"left", "right", "both", "arm", "arms", "hand", "hands", "gripper", "grippers", "the", "a", "an",
              "then", "and", "robot", "first", "now"}


def caption_verb(caption: str | None) -> str | None:
    """The caption's leading word that is not an arm name or article, lower case ("reach
    toward the cube" -> "reach", "left arm: lift the cup" -> "lift"); None for no caption."""
    for w in "".join(ch if ch.isalpha() or ch == "-" else " " for ch in (caption or "").lower()).split():
        if w not in _VERB_SKIP:
            return w
    return None


@dataclass
class LayoutProjector:
    """A 2-D linear projection (PCA): `project(x) = (x - mean) @ components.T`."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (2, d)

    @classmethod
    def fit(cls, x: np.ndarray, seed: int = 0) -> LayoutProjector:
        x = np.asarray(x, dtype=np.float64)
        if len(x) > LAYOUT_FIT_ROWS:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), LAYOUT_FIT_ROWS, replace=False))]
        d = x.shape[1] if x.ndim == 2 else 0
        mean = x.mean(axis=0) if len(x) else np.zeros(d)
        comps = np.zeros((2, d))
        if len(x) > 1 and d:
            # one BLAS thread: with other work on the cores OpenBLAS's threaded gesdd is ~4x slower than one
            # thread, and in the test suite two processes fitting at once stalled in it for ~9 minutes; on an
            # idle box one thread costs a third more (BENCHMARKS, "The layout's PCA on one BLAS thread")
            with threadpool_limits(limits=1, user_api="blas"):
                _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
            m = min(2, vt.shape[0])
            comps[:m] = vt[:m]
            for i in range(m):  # a deterministic sign: the largest coordinate is positive
                if comps[i, np.argmax(np.abs(comps[i]))] < 0:
                    comps[i] = -comps[i]
        return cls(mean.astype(np.float32), comps.astype(np.float32))

    def project(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        return ((np.asarray(x, dtype=np.float32) - self.mean) @ self.components.T).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayoutProjector:
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["components"], dtype=np.float32))


def _layout_meta_tables(root: Root, snap: EventSnapshot) -> Any:
    try:
        yield from iter_events(root, columns=[*_LAYOUT_META, "arms"], snap=snap)
    except (KeyError, pa.ArrowInvalid):  # a schema-v1 part has no `arms`: read them all without it
        for t in iter_events(root, columns=_LAYOUT_META, snap=snap):
            yield t.append_column("arms", pa.nulls(t.num_rows, pa.list_(pa.string())))


def layout_table(root: Root, snap: EventSnapshot, xy: np.ndarray, cluster_of_row: np.ndarray,
                 dup_of_row: np.ndarray) -> pa.Table:
    """The layout rows of the snapshot's assigned events (row i at `xy[i]`, in cluster
    `cluster_of_row[i]`, -1: left out), with the map's filter columns; one streaming pass over
    small columns."""
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    cluster_of_row = np.asarray(cluster_of_row, dtype=np.int64)
    dup_of_row = np.asarray(dup_of_row, dtype=bool)
    out: list[pa.Table] = []
    g0 = 0
    for t in _layout_meta_tables(root, snap):
        n = t.num_rows
        if g0 + n > len(cluster_of_row):
            raise ClusteringError(f"{root}: the event files changed while laying out the clustering")
        sl = slice(g0, g0 + n)
        g0 += n
        keep = cluster_of_row[sl] >= 0
        if not keep.any():
            continue
        caps = t.column("caption")
        tt = pa.table({
            "event_id": t.column("event_id"), "episode_id": t.column("episode_id"), "dataset": t.column("dataset"),
            "x": pa.array(xy[sl, 0]), "y": pa.array(xy[sl, 1]),
            "cluster": pa.array(cluster_of_row[sl].astype(np.int32)), "dup": pa.array(dup_of_row[sl]),
            "task": t.column("task"), "robot": t.column("robot"), "arms": t.column("arms"),
            "verb": pa.array([caption_verb(c) for c in caps.to_pylist()], pa.string()), "caption": caps,
        })
        out.append(tt.filter(pa.array(keep)).cast(LAYOUT_SCHEMA))
    return pa.concat_tables(out) if out else LAYOUT_SCHEMA.empty_table()


def _extent(t: pa.Table) -> list[float]:
    if t.num_rows == 0:
        return [0.0, 1.0, 0.0, 1.0]
    x, y = t.column("x"), t.column("y")
    ext = [pc.min(x).as_py(), pc.max(x).as_py(), pc.min(y).as_py(), pc.max(y).as_py()]
    return [float(v) if v is not None else 0.0 for v in ext]


def write_layout(root: Root, version: int, table: pa.Table, projector: LayoutProjector,
                 parts: list[str] | None = None) -> str:
    """Write `layout.parquet`, then `layout.json`, into the clusters version's folder."""
    vdir = version_dir(root, "clusters", version)
    parts = part_names(root, version) if parts is None else list(parts)
    root.write_table(f"{vdir}/{LAYOUT_PARQUET}", table.cast(LAYOUT_SCHEMA), row_group_size=16384)
    meta = {"format": LAYOUT_FORMAT, "layout_version": LAYOUT_VERSION, "clusters_version": int(version),
            "method": "pca", "rows": table.num_rows, "extent": _extent(table), "assignment_parts": parts,
            "projection": projector.as_dict(), "created_at": utc_now()}
    root.write_bytes(f"{vdir}/{LAYOUT_JSON}", json.dumps(meta).encode())
    return f"{vdir}/{LAYOUT_JSON}"


def read_layout_meta(root: Root, version: int) -> dict[str, Any] | None:
    """`layout.json` of a version, or None if it has none (or one this Carve cannot read)."""
    return read_version_meta(root, version, LAYOUT_JSON, LAYOUT_FORMAT, "layout_version", LAYOUT_VERSION)


def layout_is_current(root: Root, version: int) -> bool:
    return derived_is_current(root, version, read_layout_meta(root, version))


def read_layout(root: Root, version: int) -> pa.Table | None:
    """The written layout of a version, or None if it is missing or stale."""
    if not layout_is_current(root, version):
        return None
    try:
        return pq.read_table(f"{version_dir(root, 'clusters', version)}/{LAYOUT_PARQUET}",
                             filesystem=root.fs).cast(LAYOUT_SCHEMA)
    except (OSError, pa.ArrowInvalid):
        return None


def refresh_layout(root: Root, version: int, snap: EventSnapshot | None = None, keys: pa.Table | None = None,
                   sample_per_centroid: int = 256, batch_rows: int = 16384, seed: int = 0) -> str:
    """(Re)write the layout of a version: positions already in its layout are kept and only the
    events without one are projected (with the stored projection); a version without a layout
    gets a projection fitted on a seeded sample, then every event is projected in batches
    streamed from the part files (as `cluster_catalog` does in its assignment pass)."""
    from carve.clustering.stream import gather_unit_vectors, iter_unit_batches, sample_rows

    snap = snap or snapshot(root)
    keys = keys if keys is not None else read_keys(root, snap)
    cluster, dup = align(keys, unique_assignments(read_assignments(root, version)))
    n = keys.num_rows
    xy = np.zeros((n, 2), dtype=np.float32)
    todo = np.flatnonzero(cluster >= 0)
    meta = read_layout_meta(root, version)
    proj: LayoutProjector | None = None
    if meta is not None:
        proj = LayoutProjector.from_dict(meta["projection"])
        try:
            old = pq.read_table(f"{version_dir(root, 'clusters', version)}/{LAYOUT_PARQUET}", filesystem=root.fs,
                                columns=["event_id", "x", "y"])
        except (OSError, pa.ArrowInvalid):
            old = None
        if old is not None and old.num_rows:
            idx = pc.index_in(keys.column("event_id"), value_set=old.column("event_id").combine_chunks())
            found = np.asarray(idx.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            pos = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            xy[found, 0] = old.column("x").to_numpy()[pos[found]]
            xy[found, 1] = old.column("y").to_numpy()[pos[found]]
            todo = np.flatnonzero((cluster >= 0) & ~found)
    if proj is None:
        k = int(cluster.max()) + 1 if n and cluster.max() >= 0 else 1
        sample = sample_rows(n, sample_per_centroid * k, seed)
        x = gather_unit_vectors(root, snap, sample, n)
        proj = LayoutProjector.fit(x, seed)
        del x
    if len(todo):
        for b in iter_unit_batches(root, snap, todo, batch_rows=batch_rows):
            xy[b.rows] = proj.project(b.x)
    return write_layout(root, version, layout_table(root, snap, xy, cluster, dup), proj)
