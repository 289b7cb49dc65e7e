"""Read-only views the HTTP service serves: datasets, versions, clusters, coverage, events, report pages.

The views that must stay fast on a large root never load the events or their embeddings:

* **clusters / coverage** (`/datasets/{d}/clusters`, `/datasets/{d}/coverage`) read the summary
  written with the latest clusters version (`clusters/vNNN/summary.parquet` + `summary.json`,
  see `clustering.summary`; for a version without one it is computed once from the assignments
  and the events' small columns) plus the latest shard manifest, cached per state: (clusters
  version, its assignment parts, the summary file's size and mtime, the manifest version),
  re-checked at most every `fingerprint_ttl_s` (by a background thread while the last value
  is younger than `stale_ok_s`, so no request waits for the listings or catalog queries).
  All of it lives in one cache (`carve.audit.cache.ViewCache`; its invalidation rule: new data,
  new key) shared with the audit read model (`carve.audit.model`), which the audit routes read.
* **one event** (`/events/{id}`, its keyframes) is a point lookup: the event's episode from the
  latest clustering's assignments (`AssignmentIndex`: parts sorted by event_id, so their
  row-group statistics find the one row group to read), the episode's batch from the catalog
  (`episodes`: a map episode -> batch, reloaded when the catalog's dataset counts or batches
  change), then the event's row from that batch only (`audit.data.BatchIndex`: the batch's
  part footers, read once and kept, select the row group holding the episode). Cost per
  lookup: two row-group reads; per new batch: one footer read per part file. An event the
  clustering has not assigned yet (its episode was committed after the last clustering or
  assignment, normally only until the run's curate step ends) is searched in the batches of
  such episodes only; an unknown id costs nothing more once everything is assigned.

The coverage report page (`/report/{d}`) renders from the same audit read model (the latest
clusters version's `VersionView`: summary, layout, through the one cache) plus the full audit
(`audit.data.load_audit`, which reads the events with their embeddings) for what the model does
not hold (see `report.render`), cached per (dataset, data fingerprint): a stat of the
events/clusters/shards trees plus the catalog's episode counts.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq

from carve.audit import data as au
from carve.audit.cache import ViewCache
from carve.audit.model import AuditRoot, ClustersState, NotFound
from carve.clustering import summary as cs
from carve.clustering.versions import AssignmentIndex, assignment_files
from carve.report.render import render_report
from carve.storage.catalog import Catalog
from carve.storage.manifest import ShardManifest, record_json
from carve.storage.parts import live_parts
from carve.storage.root import Root, open_root

_EVENT_META = [
    "event_id", "episode_id", "dataset", "source_uri", "source_file", "source_key", "source_start_s", "source_end_s",
    "camera", "robot", "episode_index", "event_index",
    "num_events", "start_frame", "end_frame", "fps", "start_reason", "boundary_reason", "task", "caption",
    "next_caption", "caption_model", "caption_status", "keyframes",
]


class Views:
    """Cached read views over one root (thread-safe; one instance per server).

    Everything is kept in one `carve.audit.cache.ViewCache` (`self.cache`): built values keyed by
    the state they were built from, in one LRU of `max_entries`, and the TTL probes of that state
    (`fingerprint_ttl_s`, `stale_ok_s`). The rule: a change of the data (a new clusters or shards
    version, a new assignments part, a rewritten summary, new episodes in the catalog, a
    compacted batch, changed files under events/clusters/shards) changes the key, never the
    value of an existing key; stale entries leave by LRU order. The audit read model of the
    root (`self.audit`, `carve.audit.model.AuditRoot`) shares the same cache."""

    def __init__(self, root: str | Root, max_entries: int = 320, fingerprint_ttl_s: float = 0.5,
                 stale_ok_s: float = 5.0):
        self.root = open_root(root)
        self.cache = ViewCache(max_entries=max_entries, ttl_s=fingerprint_ttl_s, stale_ok_s=stale_ok_s)
        self.audit = AuditRoot(self.root, self.cache)

    @property
    def fingerprint_ttl_s(self) -> float:
        return self.cache.ttl_s

    # -- the one cache -------------------------------------------------------------------------
    def _recent(self, name: str, compute: Callable[[], Any], fresh: bool = False) -> Any:
        return self.cache.recent(name, compute, fresh)

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        return self.cache.get(key, build)

    # -- catalog state -------------------------------------------------------------------------
    def _datasets(self, cat: Catalog, fresh: bool = False) -> dict[str, dict[str, Any]]:
        return self._recent("datasets", lambda: {d["name"]: d for d in cat.datasets()}, fresh)

    def _catalog_stats(self, cat: Catalog) -> tuple[Any, ...]:
        return tuple((d["name"], d["ok"], d["failed"], d["events"]) for d in self._datasets(cat).values())

    def _episodes(self, cat: Catalog) -> dict[str, tuple[str, str | None]]:
        """episode_id -> (dataset, batch) of every committed episode, reloaded when the catalog's
        dataset counts or its batches change (checked at most every `fingerprint_ttl_s`)."""
        key = self._recent("episodes_key", lambda: (self._catalog_stats(cat), tuple(cat.ok_batches())))
        return self._cached(("episodes", None, key), lambda: {
            r.episode_id: (r.dataset, r.batch) for r in cat.episodes(status="ok")})

    def require_dataset(self, cat: Catalog, name: str) -> dict[str, Any]:
        d = self._datasets(cat).get(name) or self._datasets(cat, fresh=True).get(name)
        if d is None:
            known = list(self._datasets(cat))
            raise NotFound(f"unknown dataset {name!r}; known: {known}")
        return d

    # -- clustering state ----------------------------------------------------------------------
    def _clusters_state(self) -> ClustersState:
        return self.audit.state()

    def _summary(self, cat: Catalog, st: ClustersState) -> cs.ClusterSummary:
        assert st.version is not None
        # a summary computed from the assignments (no summary.json) also depends on the events
        extra = self._catalog_stats(cat) if st.summary is None else None
        return self._cached(("summary", None, st, extra), lambda: au.cluster_summary(self.root, st.version))

    def _manifest(self, version: int | None) -> ShardManifest | None:
        return self.audit.manifest(version)

    def _clusters_meta(self, version: int) -> dict[str, Any]:
        return self.audit.clusters_meta(version)

    def _index(self, st: ClustersState) -> AssignmentIndex:
        assert st.version is not None
        return self._cached(("index", None, st.version, st.parts), lambda: AssignmentIndex(self.root, st.version))

    def _assigned_episodes(self, st: ClustersState) -> frozenset[str]:
        def build() -> frozenset[str]:
            out: set[str] = set()
            for f in assignment_files(self.root, st.version):
                out.update(pq.read_table(f, filesystem=self.root.fs, columns=["episode_id"])
                           .column("episode_id").unique().to_pylist())
            return frozenset(out)

        return self._cached(("assigned_episodes", None, st.version, st.parts), build)

    def _batch(self, cat: Catalog, batch: str) -> au.BatchIndex:
        # keyed by the batch's live part files: compaction replaces them (one indexed catalog query)
        files = tuple(p["path"] for p in live_parts(cat, batch))
        return self._cached(("batch", batch, files), lambda: au.BatchIndex(self.root, batch, list(files)))

    # -- the report page ------------------------------------------------------------------------
    def _fingerprint(self, cat: Catalog) -> tuple[Any, ...]:
        """(episode counts, file stats) for the report page, recomputed at most every `fingerprint_ttl_s`."""
        return self._recent("fingerprint", lambda: (self._catalog_stats(cat), au.data_fingerprint(self.root)))

    def report(self, cat: Catalog, name: str) -> str:
        self.require_dataset(cat, name)

        def build() -> str:
            audit = au.load_audit(self.root, name)
            view = self.audit.version(audit.clusters_version) if audit.clusters_version is not None else None
            return render_report(audit, inline=True, view=view)[0]

        return self._cached(("report", name, self._fingerprint(cat)), build)

    # -- datasets ------------------------------------------------------------------------------
    def versions(self, cat: Catalog, name: str) -> dict[str, Any]:
        self.require_dataset(cat, name)
        return {"dataset": name, **au.version_summaries(self.root, name)}

    def clusters(self, cat: Catalog, name: str) -> dict[str, Any]:
        """Per-cluster rows of one dataset from the latest clustering's summary (no events read)."""
        d = self.require_dataset(cat, name)
        st = self._clusters_state()

        def build() -> dict[str, Any]:
            manifest = self._manifest(st.manifest_version)
            rows: list[dict[str, Any]] = []
            k = None
            if st.version is not None:
                k = self._clusters_meta(st.version).get("k")
                rows = au.summary_cluster_rows(self._summary(cat, st), int(k or 0), manifest, dataset=name)
                k = k if k is not None else len(rows)
            return {
                "dataset": name,
                "clusters_version": st.version,
                "shards_version": st.manifest_version,
                "k": k,
                "events": d["events"],
                "stats": record_json(manifest.stats) if manifest is not None else None,
                "note": None if st.version is not None else "not clustered yet",
                "clusters": rows,
            }

        return self._cached(("clusters", name, st, d["events"]), build)

    def clusters_json(self, cat: Catalog, name: str) -> bytes:
        """`clusters` serialised once per state (the route sends these bytes as they are)."""
        d = self.require_dataset(cat, name)
        st = self._clusters_state()
        return self._cached(("clusters_json", name, st, d["events"]),
                            lambda: json.dumps(self.clusters(cat, name), separators=(",", ":")).encode())

    def coverage(self, cat: Catalog, name: str) -> dict[str, Any]:
        """Events, episodes, clusters and near-duplicates per task and per robot of one dataset,
        from the latest clustering's summary."""
        d = self.require_dataset(cat, name)
        st = self._clusters_state()

        def build() -> dict[str, Any]:
            if st.version is None:
                return {"dataset": name, "clusters_version": None, "events": d["events"], "by_task": [],
                        "by_robot": [], "note": "not clustered yet"}
            s = self._summary(cat, st)
            tot = s.datasets.get(name) or {}
            return {"dataset": name, "clusters_version": st.version, "events": d["events"],
                    "assigned": tot.get("assigned", 0), "duplicates": tot.get("duplicates", 0),
                    "by_task": au.summary_coverage(s, name, "task"), "by_robot": au.summary_coverage(s, name, "robot"),
                    "note": None}

        return self._cached(("coverage", name, st, d["events"]), build)

    # -- events --------------------------------------------------------------------------------
    def _locate(self, cat: Catalog, event_id: str) -> tuple[str, str, dict[str, Any] | None, int | None]:
        """(episode_id, batch, assignment row or None, clusters version) of a committed event."""
        st = self._clusters_state()
        episodes = self._episodes(cat)
        hit = self._index(st).lookup(event_id) if st.version is not None else None
        if hit is not None:
            ep = episodes.get(hit["episode_id"])
            if ep is None or ep[1] is None:
                raise NotFound(f"event {event_id!r} is no longer in the catalog")
            return hit["episode_id"], ep[1], hit, st.version
        # not assigned yet: only episodes the clustering has not seen can hold it
        seen = self._assigned_episodes(st) if st.version is not None else frozenset()
        pending: dict[str, set[str]] = {}
        for e, (_ds, batch) in episodes.items():
            if batch is not None and e not in seen:
                pending.setdefault(batch, set()).add(e)
        for batch in sorted(pending):
            t = self._batch(cat, batch).read(pending[batch], event_id, ["episode_id"])
            if t.num_rows:
                return t.column("episode_id")[0].as_py(), batch, None, st.version
        raise NotFound(f"unknown event {event_id!r}")

    def _event_row(self, cat: Catalog, event_id: str, columns: list[str]) -> dict[str, Any]:
        episode, batch, hit, version = self._locate(cat, event_id)
        t = self._batch(cat, batch).read(episode, event_id, columns)
        if t.num_rows == 0:
            raise NotFound(f"event {event_id!r} is no longer in the catalog")
        row = t.slice(0, 1).to_pylist()[0]
        row["cluster_id"] = hit["cluster_id"] if hit else None
        row["dup_of"] = hit["dup_of"] if hit else None
        row["clusters_version"] = version
        return row

    def event(self, cat: Catalog, event_id: str, images: bool = True) -> dict[str, Any]:
        row = self._event_row(cat, event_id, _EVENT_META)
        frames = row.pop("keyframes") or []
        row["num_keyframes"] = len(frames)
        row["keyframe_urls"] = [f"/events/{event_id}/keyframes/{i}.jpg" for i in range(len(frames))]
        if images:
            row["keyframes"] = ["data:image/jpeg;base64," + base64.b64encode(f).decode() for f in frames]
        return row

    def keyframe(self, cat: Catalog, event_id: str, index: int) -> bytes:
        row = self._event_row(cat, event_id, ["event_id", "keyframes"])
        frames = row.get("keyframes") or []
        if not 0 <= index < len(frames):
            raise NotFound(f"event {event_id!r} has {len(frames)} keyframes; no keyframe {index}")
        return bytes(frames[index])
