"""Read-only views the HTTP service serves: datasets, versions, clusters, events, report pages.

Everything is computed from the files under the root (the `report.audit` read side, over one
`Root` opened here) and the catalog, and cached per (dataset, data fingerprint): the
fingerprint is a stat of the events/clusters/shards trees plus the catalog's per-dataset
episode counts, re-checked at most twice a second, so a new part file, clusters version or manifest invalidates the cache
while job heartbeats do not.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from typing import Any

import pyarrow.compute as pc

from carve.report import audit as au
from carve.report.render import render_report
from carve.storage.catalog import Catalog
from carve.storage.events import read_events
from carve.storage.root import Root, open_root

_EVENT_META = [
    "event_id", "episode_id", "dataset", "source_uri", "camera", "robot", "episode_index", "event_index",
    "num_events", "start_frame", "end_frame", "fps", "start_reason", "boundary_reason", "task", "caption",
    "next_caption", "caption_model", "caption_status", "keyframes",
]


class NotFound(LookupError):
    """A dataset, event or keyframe that does not exist; the message says which."""


class Views:
    """Cached read views over one root (thread-safe; one instance per server)."""

    def __init__(self, root: str | Root, max_entries: int = 16, fingerprint_ttl_s: float = 0.5):
        self.root = open_root(root)
        self.fingerprint_ttl_s = fingerprint_ttl_s
        self._fp: tuple[float, tuple[Any, ...]] | None = None
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._build_locks: dict[tuple[Any, ...], threading.Lock] = {}

    def _fingerprint(self, cat: Catalog) -> tuple[Any, ...]:
        """(episode counts, file stats), recomputed at most every `fingerprint_ttl_s`."""
        now = time.monotonic()
        with self._lock:
            if self._fp is not None and now - self._fp[0] < self.fingerprint_ttl_s:
                return self._fp[1]
        stats = tuple((d["name"], d["ok"], d["failed"], d["events"]) for d in cat.datasets())
        fp = (stats, au.data_fingerprint(self.root))
        with self._lock:
            self._fp = (now, fp)
        return fp

    def _key(self, cat: Catalog, what: str, dataset: str | None) -> tuple[Any, ...]:
        return (what, dataset, self._fingerprint(cat))

    def _cached(self, key: tuple[Any, ...], build: Any) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            lock = self._build_locks.setdefault(key[:2], threading.Lock())
        with lock:  # one build per (view, dataset) at a time; concurrent callers wait for it
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            value = build()
            with self._lock:
                self._cache[key] = value
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
            return value

    def audit(self, cat: Catalog, dataset: str | None) -> au.Audit:
        return self._cached(self._key(cat, "audit", dataset), lambda: au.load_audit(self.root, dataset))

    # -- datasets ------------------------------------------------------------------------
    @staticmethod
    def require_dataset(cat: Catalog, name: str) -> dict[str, Any]:
        d = cat.dataset(name)
        if d is None:
            known = [x["name"] for x in cat.datasets()]
            raise NotFound(f"unknown dataset {name!r}; known: {known}")
        return d

    def versions(self, cat: Catalog, name: str) -> dict[str, Any]:
        self.require_dataset(cat, name)
        return {"dataset": name, **au.version_summaries(self.root, name)}

    def clusters(self, cat: Catalog, name: str) -> dict[str, Any]:
        self.require_dataset(cat, name)

        def build() -> dict[str, Any]:
            a = au.load_audit(self.root, name)
            rows = au.cluster_rows(a)
            return {
                "dataset": name,
                "clusters_version": a.clusters_version,
                "shards_version": a.manifest_version,
                "k": a.clusters_meta.get("k", len(rows)) if a.clusters_version is not None else None,
                "events": a.events.num_rows,
                "stats": (a.manifest or {}).get("stats"),
                "note": None if a.clusters_version is not None else "not clustered yet",
                "clusters": rows,
            }

        return self._cached(self._key(cat, "clusters", name), build)

    def report(self, cat: Catalog, name: str) -> str:
        self.require_dataset(cat, name)
        return self._cached(self._key(cat, "report", name),
                            lambda: render_report(au.load_audit(self.root, name), inline=True)[0])

    # -- events --------------------------------------------------------------------------
    def _event_row(self, cat: Catalog, event_id: str) -> dict[str, Any]:
        a = self.audit(cat, None)
        ids = a.events.column("event_id")
        hit = pc.index(ids, event_id).as_py()
        if hit < 0:
            raise NotFound(f"unknown event {event_id!r}")
        episode = a.events.column("episode_id")[hit].as_py()
        t = read_events(self.root, columns=_EVENT_META, filter_episodes={episode})
        t = t.filter(pc.equal(t.column("event_id"), event_id))
        if t.num_rows == 0:
            raise NotFound(f"event {event_id!r} is no longer in the catalog")
        row = t.slice(0, 1).to_pylist()[0]
        row["cluster_id"] = a.cluster_of.get(event_id)
        row["dup_of"] = a.dup_of.get(event_id)
        row["clusters_version"] = a.clusters_version
        return row

    def event(self, cat: Catalog, event_id: str, images: bool = True) -> dict[str, Any]:
        row = self._event_row(cat, event_id)
        frames = row.pop("keyframes") or []
        row["num_keyframes"] = len(frames)
        row["keyframe_urls"] = [f"/events/{event_id}/keyframes/{i}.jpg" for i in range(len(frames))]
        if images:
            row["keyframes"] = ["data:image/jpeg;base64," + base64.b64encode(f).decode() for f in frames]
        return row

    def keyframe(self, cat: Catalog, event_id: str, index: int) -> bytes:
        row = self._event_row(cat, event_id)
        frames = row.get("keyframes") or []
        if not 0 <= index < len(frames):
            raise NotFound(f"event {event_id!r} has {len(frames)} keyframes; no keyframe {index}")
        return bytes(frames[index])
