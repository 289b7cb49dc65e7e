"""Coverage audit data: what the catalog holds, how it clusters, and what balancing changed.

The reads under the audit read model (`carve.audit.model`, one clustering version, which the
static report page, `carve ui-export` and the HTTP service's views all read) and the full audit
(`load_audit`), which the report reads for what the model does not hold. It reads nothing by path
itself: clustering versions and assignments come from `clustering.versions`, shard manifests
from `storage.manifest`, events from `storage.events` and episode records from the catalog,
all through one `Root` opened at the entry (`load_audit(root, ...)` takes a URI, a path or a
`Root`).

* `load_audit(root, dataset=None)` gathers the committed events, the assignments of the latest
  complete clusters version, the latest shard manifest (typed: `storage.manifest.ShardManifest`,
  read by `load_manifest`) and the quarantined episodes and recent runs. A dataset with events
  but no clusters or shards yet is fine: those parts are simply empty. The report reads from it
  what the model does not hold (`report.render`): the event count, quarantined episodes and the
  runs' steps, the latest manifest, coverage over all datasets or counting events committed after
  the clustering, the heat map's most common tasks, the cards' keyframes, and the embeddings of
  events not on the version's layout (or of every event before any clustering).
* `cluster_rows(audit)` is the per-cluster summary (sizes, shares before/after balancing,
  near-duplicates, under-coverage flag by the one rule of `carve.audit.coverage`, sample
  captions) of the full audit (the report reads the same rows from the clustering's summary:
  `summary_cluster_rows`; a test holds the two equal).
* `coverage(audit, key)` counts events, episodes, clusters and duplicates per task or robot;
  `keyframes_of` fetches the keyframes of a few events; `map_points` gives the points of the
  embedding map (the version's stored layout and its projection: one PCA for the report and the UI).
* `version_summaries(root, dataset)` lists every clusters and shards version (the versions
  view); `data_fingerprint(root)` is the report page's cache key in the service.
* The views that must scale (the service's clusters and coverage views) never load the audit:
  `cluster_summary(root, version, dataset)` reads the summary written with the clusters version
  (`clustering.summary`: `clusters/vNNN/summary.parquet` + `summary.json`; computed from the
  assignments and the events' small columns if a version has none), and
  `summary_cluster_rows` / `summary_coverage` give the same rows as `cluster_rows` / `coverage`.

Charts are `report.charts`, the HTML page is `report.render` (jinja2 templates), both above this layer.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.audit.coverage import is_under_covered, median_size
from carve.clustering import summary as cs
from carve.clustering import versions as cv
from carve.core.errors import CarveError
from carve.storage import manifest as sm
from carve.storage.events import read_events
from carve.storage.layout import RootLayout
from carve.storage.root import Root, open_root
from carve.storage.schema import EVENT_SCHEMA, check_schema

_EVENT_COLUMNS = ["event_id", "episode_id", "dataset", "robot", "task", "caption", "boundary_reason", "emb"]
_FINGERPRINT_DIRS = ("events", "clusters", "shards")

RootLike = str | Path | Root


class AuditError(CarveError, ValueError):
    """A cluster or shard file the audit cannot read; the message names the file and the reason."""


# -- versions, through clustering.versions and storage.manifest ------------------------------
def version_folders(root: RootLike, kind: str) -> list[int]:
    """Every `<root>/<kind>/vNNN/` folder (kind: clusters | shards), finished or not, ascending.

    `clustering.versions.complete_versions` lists the finished ones; the versions view also
    shows interrupted writes (as incomplete), so it needs every numbered folder."""
    root = open_root(root)
    names = root.list_dirs(RootLayout.check_kind(kind))
    return sorted(v for name in names if (v := RootLayout.parse_version(name)) is not None)


def read_clusters_meta(root: RootLike, version: int) -> dict[str, Any]:
    """`meta.json` of a clusters version; `{"version": v}` for an unfinished one (no meta.json yet)."""
    root = open_root(root)
    path = f"{cv.version_dir(root, 'clusters', version)}/meta.json"
    if not root.exists(root.relative(path)):
        return {"version": version}
    try:
        return json.loads(root.read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AuditError(f"{root.uri_of(path)}: not valid JSON ({e})") from e


def read_cluster_assignments(root: RootLike, version: int) -> pa.Table:
    """All assignment parts of a clusters version (`clustering.versions.read_assignments`)."""
    root = open_root(root)
    try:
        return cv.read_assignments(root, version)
    except (OSError, pa.ArrowInvalid, ValueError, KeyError) as e:
        where = root.uri_of(f"{cv.version_dir(root, 'clusters', version)}/assignments")
        raise AuditError(f"{where}: cannot read the assignments ({type(e).__name__}: {e})") from e


def load_manifest(root: RootLike, version: int) -> sm.ShardManifest:
    """A shards manifest as the typed `ShardManifest`, read and validated by `storage.manifest`
    (which refuses a newer manifest or schema version, naming the file); its errors surface as
    `AuditError`."""
    try:
        return sm.load_manifest(open_root(root), version)
    except sm.ManifestError as e:
        raise AuditError(str(e)) from e


def latest_manifest(root: RootLike) -> tuple[int, sm.ShardManifest] | None:
    """The newest complete shards version (one with a manifest) and its manifest, or None."""
    root = open_root(root)
    done = sm.manifest_versions(root)
    if not done:
        return None
    return done[-1], load_manifest(root, done[-1])


def data_fingerprint(root: RootLike) -> tuple[Any, ...]:
    """Cheap key that changes when the events, clusters or shards files change (a stat of the trees)."""
    root = open_root(root)
    parts: list[Any] = []
    for sub in _FINGERPRINT_DIRS:
        if not root.exists(sub):
            parts.append((sub, None))
            continue
        for info in root.fs.get_file_info(pafs.FileSelector(root.path(sub), recursive=True)):
            if info.type == pafs.FileType.File and not info.base_name.startswith(".tmp-"):
                parts.append((info.path, info.size, info.mtime_ns))
    return tuple(sorted(parts, key=repr))


def version_summaries(root: RootLike, dataset: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every clusters and shards version with its headline numbers (the versions view).

    Unfinished versions are listed with `complete: False` (a shards version also with the
    reason its manifest cannot be used); a shards version whose sources do not include
    `dataset` is left out."""
    root = open_root(root)
    done = set(cv.complete_versions(root, "clusters"))
    clusters = []
    for v in version_folders(root, "clusters"):
        meta = read_clusters_meta(root, v)
        clusters.append({"version": v, "complete": v in done, "k": meta.get("k"), "levels": meta.get("levels"),
                         "n_events": meta.get("n_events"), "created_at": meta.get("created_at")})
    shards = []
    for v in version_folders(root, "shards"):
        try:
            m = load_manifest(root, v)
        except AuditError as e:
            shards.append({"version": v, "complete": False, "error": str(e)})
            continue
        sources = [s.dataset for s in m.sources]
        if dataset is not None and sources and dataset not in sources:
            continue
        shards.append({"version": v, "complete": True, "created_at": m.created_at,
                       "clusters_version": m.clusters_version, "policy": sm.record_json(m.policy),
                       "total_rows": m.total_rows, "unique_events": m.unique_events,
                       "shards": len(m.shards), "stats": sm.record_json(m.stats)})
    return {"clusters": clusters, "shards": shards}


# -- the audit data ------------------------------------------------------------------------
@dataclass
class Audit:
    """Everything the report and the cluster views need, for one dataset or all (`dataset=None`)."""

    root: Root
    dataset: str | None
    events: pa.Table  # metadata + emb, one row per committed event
    cluster_of: dict[str, int] = field(default_factory=dict)  # event_id -> cluster id
    dup_of: dict[str, str] = field(default_factory=dict)  # event_id -> representative
    clusters_version: int | None = None
    clusters_meta: dict[str, Any] = field(default_factory=dict)
    manifest_version: int | None = None
    manifest: sm.ShardManifest | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    episodes_ok: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)  # latest `carve run`s first, with per-step stats


def load_audit(root: RootLike, dataset: str | None = None) -> Audit:
    """Read events, latest clusters, latest manifest and failures (for one dataset or all)."""
    root = open_root(root)
    events = read_events(root, columns=_EVENT_COLUMNS)
    if dataset is not None:
        events = events.filter(pc.equal(events.column("dataset"), dataset))
    audit = Audit(root=root, dataset=dataset, events=events)
    # a clusters folder without meta.json is an interrupted write (meta.json is written last)
    v = cv.latest_version(root, "clusters")
    if v is not None:
        audit.clusters_version = v
        audit.clusters_meta = read_clusters_meta(root, v)
        assign = read_cluster_assignments(root, v)
        ids = assign.column("event_id").to_pylist()
        cids = assign.column("cluster_id").to_pylist()
        dups = assign.column("dup_of").to_pylist()
        for e, c, d in zip(ids, cids, dups, strict=True):  # the first assignment of an event wins
            if c is None or e in audit.cluster_of:
                continue
            audit.cluster_of[e] = int(c)
            if d:
                audit.dup_of[e] = d
    lm = latest_manifest(root)
    if lm is not None:
        audit.manifest_version, audit.manifest = lm
    cat = root.catalog
    audit.failures = [
        {"episode_id": r.episode_id, "dataset": r.dataset, "episode_index": r.episode_index, "error": r.error}
        for r in cat.episodes(dataset=dataset, status="failed")
    ]
    audit.episodes_ok = len(cat.episodes(dataset=dataset, status="ok"))
    audit.runs = cat.runs(dataset=dataset, limit=5)
    return audit


def step_rows(audit: Audit) -> list[dict[str, Any]]:
    """One row per step of the latest run: episodes, events, failures, seconds."""
    if not audit.runs:
        return []
    stages = audit.runs[0]["summary"].get("stages") or {}
    return [{"step": name, **{k: s.get(k, "") for k in ("episodes", "events", "failures", "seconds")}}
            for name, s in stages.items()]


def cluster_rows(audit: Audit, samples: int = 3) -> list[dict[str, Any]]:
    """Per-cluster summary: sizes in scope, shares before/after balancing, dups, flags, samples."""
    ev_ids = audit.events.column("event_id").to_pylist()
    captions = audit.events.column("caption").to_pylist()
    tasks = audit.events.column("task").to_pylist()
    members: dict[int, list[int]] = {}
    for i, eid in enumerate(ev_ids):
        c = audit.cluster_of.get(eid)
        if c is not None:
            members.setdefault(c, []).append(i)
    stats: dict[int, dict[str, Any]] = {}
    for c, idx in members.items():
        seen: list[str] = []
        sample_events: list[str] = []
        for i in idx:
            cap = captions[i] or ""
            if cap and cap not in seen:
                seen.append(cap)
                sample_events.append(ev_ids[i])
            if len(seen) >= samples:
                break
        if not sample_events:
            sample_events = [ev_ids[i] for i in idx[:samples]]
        stats[c] = {
            "size": len(idx),
            "duplicates": sum(1 for i in idx if ev_ids[i] in audit.dup_of),
            "top_tasks": [t for t, _ in Counter(tasks[i] or "" for i in idx).most_common(3)],
            "sample_captions": seen,
            "sample_events": sample_events,
        }
    return _rows(stats, int(audit.clusters_meta.get("k") or 0), audit.manifest)


def _rows(stats: dict[int, dict[str, Any]], k: int, manifest: sm.ShardManifest | None) -> list[dict[str, Any]]:
    """The cluster rows from per-cluster stats in scope (size, duplicates, top_tasks, sample
    captions and events), the clustering's k and the latest manifest's before/after counts."""
    counts = manifest.clusters if manifest is not None else None
    before_m = {str(c): int(v) for c, v in counts.before.items()} if counts is not None else {}
    after_m = {str(c): int(v) for c, v in counts.after.items()} if counts is not None else {}
    ids = sorted(set(stats) | {int(x) for x in before_m} | {int(x) for x in after_m} | set(range(k)))
    total = sum(s["size"] for s in stats.values())
    tot_before = sum(before_m.values())
    tot_after = sum(after_m.values())
    empty = {"size": 0, "duplicates": 0, "top_tasks": [], "sample_captions": [], "sample_events": []}
    median = median_size(stats.get(c, empty)["size"] for c in ids)  # the one under-covered rule
    rows = []
    for c in ids:
        st = stats.get(c, empty)
        n_before = before_m.get(str(c))
        n_after = after_m.get(str(c))
        rows.append(
            {
                "cluster_id": c,
                "size": st["size"],
                "share": st["size"] / total if total else 0.0,
                "size_before": n_before,
                "size_after": n_after,
                "share_before": (n_before / tot_before) if (n_before is not None and tot_before) else None,
                "share_after": (n_after / tot_after) if (n_after is not None and tot_after) else None,
                "duplicates": st["duplicates"],
                "under_covered": is_under_covered(st["size"], median),
                "top_tasks": list(st["top_tasks"]),
                "sample_captions": list(st["sample_captions"]),
                "sample_events": list(st["sample_events"]),
            }
        )
    return rows


# -- the precomputed summaries (clustering.summary): views that never read embeddings ----------
def cluster_summary(root: RootLike, version: int, dataset: str | None = None) -> cs.ClusterSummary:
    """The summary of a clusters version as written with it (only `dataset`'s rows if given), or,
    for a version written before summaries (or whose summary is stale), one computed now from
    its assignments and the committed events' small columns (a streaming pass, no embeddings)."""
    root = open_root(root)
    try:
        s = cs.read_summary(root, version, dataset)
        if s is None:
            s = cs.summary_from_assignments(root, version)
            if dataset is not None:
                s = cs.ClusterSummary(clusters=s.for_dataset(dataset), meta=s.meta,
                                      datasets={dataset: s.datasets[dataset]} if dataset in s.datasets else {})
    except (OSError, pa.ArrowInvalid, ValueError, KeyError) as e:
        where = root.uri_of(cv.version_dir(root, "clusters", version))
        raise AuditError(f"{where}: cannot summarise the clustering ({type(e).__name__}: {e})") from e
    return s


def summary_cluster_rows(summary: cs.ClusterSummary, k: int, manifest: sm.ShardManifest | None,
                         dataset: str | None = None, samples: int = 3) -> list[dict[str, Any]]:
    """`cluster_rows` from a summary (for one dataset, or all datasets summed)."""
    t = summary.clusters if dataset is None else summary.for_dataset(dataset)
    stats: dict[int, dict[str, Any]] = {}
    tasks_of: dict[int, dict[str, int]] = {}
    for r in t.to_pylist():
        c = int(r["cluster_id"])
        st = stats.setdefault(c, {"size": 0, "duplicates": 0, "top_tasks": [], "sample_captions": [],
                                  "sample_events": []})
        st["size"] += int(r["size"])
        st["duplicates"] += int(r["duplicates"])
        tc = tasks_of.setdefault(c, {})
        for x in r["tasks"] or []:
            tc[x["value"]] = tc.get(x["value"], 0) + int(x["count"])
        for e, cap in zip(r["sample_event_ids"] or [], (r["sample_captions"] or []) + [None] * samples, strict=False):
            if len(st["sample_events"]) >= samples:
                break
            if cap is None:
                if not st["sample_captions"]:
                    st["sample_events"].append(e)
            elif cap not in st["sample_captions"]:
                st["sample_captions"].append(cap)
                st["sample_events"].append(e)
    for c, tc in tasks_of.items():
        stats[c]["top_tasks"] = [v for v, _ in sorted(tc.items(), key=lambda kv: -kv[1])[:3]]
    return _rows(stats, k, manifest)


def summary_coverage(summary: cs.ClusterSummary, dataset: str, key: str) -> list[dict[str, Any]]:
    """`coverage(audit, key)` of one dataset (key: task | robot) from a summary."""
    if key not in ("task", "robot"):
        raise ValueError(f"coverage by {key!r}: choose task or robot")
    return [dict(r) for r in (summary.datasets.get(dataset) or {}).get(f"by_{key}", [])]


def coverage(audit: Audit, key: str) -> list[dict[str, Any]]:
    """Events, episodes, clusters touched and near-duplicates per value of `key` (task | robot)."""
    vals = audit.events.column(key).to_pylist()
    eps = audit.events.column("episode_id").to_pylist()
    ids = audit.events.column("event_id").to_pylist()
    acc: dict[str, dict[str, Any]] = {}
    for v, ep, eid in zip(vals, eps, ids, strict=True):
        a = acc.setdefault(v or "(unknown)", {"events": 0, "episodes": set(), "clusters": set(), "duplicates": 0})
        a["events"] += 1
        a["episodes"].add(ep)
        if eid in audit.cluster_of:
            a["clusters"].add(audit.cluster_of[eid])
        if eid in audit.dup_of:
            a["duplicates"] += 1
    return [
        {key: k, "events": a["events"], "episodes": len(a["episodes"]), "clusters": len(a["clusters"]),
         "duplicates": a["duplicates"]}
        for k, a in sorted(acc.items(), key=lambda kv: -kv[1]["events"])
    ]


def keyframes_of(root: RootLike, event_ids: list[str], episodes: set[str] | None = None) -> dict[str, list[bytes]]:
    """event_id -> keyframe JPEGs for a few events (reads only the episodes holding them)."""
    if not event_ids:
        return {}
    t = read_events(open_root(root), columns=["event_id", "keyframes"], filter_episodes=episodes)
    t = t.filter(pc.is_in(t.column("event_id"), value_set=pa.array(event_ids, pa.string())))
    return {e: [bytes(b) for b in (k or [])] for e, k in zip(t.column("event_id").to_pylist(),
                                                            t.column("keyframes").to_pylist(), strict=True)}


def sample_keyframes(audit: Audit, rows: list[dict[str, Any]]) -> dict[str, list[bytes]]:
    """Keyframes of the sample events of `rows` (the cluster cards' thumbnails)."""
    samples = [e for r in rows for e in r["sample_events"]]
    if not samples:
        return {}
    ep_of = dict(zip(audit.events.column("event_id").to_pylist(), audit.events.column("episode_id").to_pylist(),
                     strict=True))
    return keyframes_of(audit.root, samples, episodes={ep_of[e] for e in samples})


# -- one event without reading the catalog: row-group statistics of one batch ---------------
class BatchIndex:
    """Where each episode's rows are in one events batch folder, for point reads of single events.

    Built once per batch (and again when its live part files change, e.g. after `carve compact`)
    with `pyarrow.dataset` over the batch's live part files, or `events/batch=<id>/` for a batch
    written before the catalog recorded parts (temporary files, whose names start with '.', are
    skipped): the footer of each part file is read, and every row
    group is mapped to its episodes: from the episode_id statistics when a row group holds one
    episode (min == max), else from its episode_id column (read once). `read(episodes,
    event_id, columns)` then reads only the row groups holding those episodes and filters them
    to the event, whatever order the part files were written in. Cost: one footer per part file
    of the batch plus the episode_id column of its multi-episode row groups, once; then one row
    group (or the few holding the episode) per lookup."""

    def __init__(self, root: RootLike, batch: str, files: list[str] | None = None):
        self.root = open_root(root)
        self.batch = batch
        base = self.root.path(*RootLayout.batch(batch))
        try:
            # `files`: the batch's live part files as the catalog lists them (compaction replaces
            # files in a batch folder; parts written before catalog revision 0003 are not listed)
            src = [self.root.path(f) for f in files] if files else base
            dset = pads.dataset(src, filesystem=self.root.fs, format="parquet")
        except (OSError, pa.ArrowInvalid) as e:
            raise AuditError(f"{self.root.uri_of(base)}: cannot list the batch ({type(e).__name__}: {e})") from e
        self.where: dict[str, list[tuple[str, pq.FileMetaData, int]]] = {}
        for frag in dset.get_fragments():
            md = frag.metadata
            pf = pq.ParquetFile(frag.path, filesystem=self.root.fs, metadata=md)
            check_schema(pf.schema_arrow, frag.path)
            col = pf.schema_arrow.get_field_index("episode_id")
            for i in range(md.num_row_groups):
                st = md.row_group(i).column(col).statistics
                if st is not None and st.has_min_max and st.min == st.max:
                    eps = [st.min.decode() if isinstance(st.min, bytes) else st.min]
                else:
                    eps = pf.read_row_group(i, columns=["episode_id"]).column("episode_id").unique().to_pylist()
                for e in eps:
                    self.where.setdefault(e, []).append((frag.path, md, i))

    def read(self, episodes: str | set[str], event_id: str, columns: list[str]) -> pa.Table:
        """The rows of `event_id` among `episodes` of this batch (usually one row)."""
        eps = {episodes} if isinstance(episodes, str) else set(episodes)
        cols = list(dict.fromkeys(["event_id", "episode_id", *columns]))
        groups = sorted({(f, i): md for e in eps for f, md, i in self.where.get(e, ())}.items())
        out = []
        for (f, i), md in groups:
            t = pq.ParquetFile(f, filesystem=self.root.fs, metadata=md).read_row_group(i, columns=cols)
            t = t.filter(pc.equal(t.column("event_id"), event_id))
            if t.num_rows:  # an event id names one episode's event; keep only the episodes asked for
                t = t.filter(pc.is_in(t.column("episode_id"), value_set=pa.array(sorted(eps), pa.string())))
            if t.num_rows:
                out.append(t.select(columns))
        if not out:
            return pa.schema([EVENT_SCHEMA.field(c) for c in columns]).empty_table()
        return pa.concat_tables(out, promote_options="default")


# -- the embedding map: the one PCA, the stored layout ------------------------------------------
def map_points(audit: Audit, layout: pa.Table | None = None, max_points: int = 5000,
               seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """The report's embedding map: (n x 2 positions, cluster id or -1 per point) of up to
    `max_points` events (a seeded sample). With the clusters version's stored `layout`
    (`carve.audit.model.VersionView.layout`, the UI's map) the clustered events in scope are its
    rows, and the events it does not hold (committed after the clustering) are projected by the
    layout's stored projection (`clustering.summary.LayoutProjector`); before any clustering (no
    layout), the events of `map_sample` are projected by one PCA fitted on them."""
    if layout is None or audit.clusters_version is None:
        x, labels = map_sample(audit, max_points, seed)
        if x.shape[0] == 0:
            return np.zeros((0, 2), np.float32), []
        u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return cs.LayoutProjector.fit(u, seed).project(u), labels
    lay = layout if audit.dataset is None else layout.filter(pc.equal(layout.column("dataset"), audit.dataset))
    xy = [np.stack([lay.column("x").to_numpy(), lay.column("y").to_numpy()], axis=1).astype(np.float32)]
    labels = [int(c) for c in lay.column("cluster").to_pylist()]
    meta = cs.read_layout_meta(audit.root, audit.clusters_version)
    if meta is not None:  # the events the layout does not hold, by its projection
        proj = cs.LayoutProjector.from_dict(meta["projection"])
        dim = len(meta["projection"]["mean"])
        placed = set(lay.column("event_id").to_pylist())
        embs = audit.events.column("emb").to_pylist()
        rest = [e for e, eid in zip(embs, audit.events.column("event_id").to_pylist(), strict=True)
                if eid not in placed and e and len(e) == dim]
        if rest:
            x = np.asarray(rest, dtype=np.float32)
            u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            xy.append(proj.project(u).astype(np.float32))
            labels += [-1] * len(rest)
    pts = np.concatenate(xy) if xy else np.zeros((0, 2), np.float32)
    if pts.shape[0] > max_points:
        keep = sorted(np.random.default_rng(seed).choice(pts.shape[0], max_points, replace=False).tolist())
        pts, labels = pts[keep], [labels[i] for i in keep]
    return pts, labels


def task_cluster_pairs(audit: Audit, layout: pa.Table | None = None) -> list[tuple[str, int]]:
    """(task, cluster id) of every clustered event in scope, the task "(unknown)" if it has none:
    from the clusters version's stored `layout` when given (its rows are the clustered events),
    else from the audit's events and assignments."""
    if layout is not None:
        lay = layout if audit.dataset is None else layout.filter(pc.equal(layout.column("dataset"), audit.dataset))
        return [(t or "(unknown)", int(c)) for t, c in zip(lay.column("task").to_pylist(),
                                                           lay.column("cluster").to_pylist(), strict=True)]
    tasks = audit.events.column("task").to_pylist()
    ids = audit.events.column("event_id").to_pylist()
    return [(t or "(unknown)", audit.cluster_of[e]) for t, e in zip(tasks, ids, strict=True) if e in audit.cluster_of]


def map_sample(audit: Audit, max_points: int = 5000, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """The points of the embedding map: (n x d fused event embeddings, cluster id or -1 per row),
    for up to `max_points` events (a seeded sample) whose embedding has the most common size."""
    embs = audit.events.column("emb").to_pylist()
    ids = audit.events.column("event_id").to_pylist()
    keep = [i for i, e in enumerate(embs) if e]
    if not keep:
        return np.zeros((0, 2), np.float32), []
    dim = Counter(len(embs[i]) for i in keep).most_common(1)[0][0]
    keep = [i for i in keep if len(embs[i]) == dim]
    if len(keep) > max_points:
        keep = sorted(np.random.default_rng(seed).choice(keep, max_points, replace=False).tolist())
    x = np.asarray([embs[i] for i in keep], dtype=np.float32)
    return x, [audit.cluster_of.get(ids[i], -1) for i in keep]
