"""The quality gate's findings as the analysts' pages read them: per dataset, per event, on the map.

`carve run` records each finding of the quality gate (`carve.quality`) in the catalog's
`defects` table and quarantines the episodes it cannot read (`episodes.status = "failed"`,
with the reason). This module reads both (`carve.storage.defects` read helpers) and owns:

* `findings(cache, cat, dataset)`: one dataset's `DatasetFindings`, an `EpisodeReport` per
  episode built from the catalog rows (a quarantined episode is one `unreadable` finding,
  as `carve check` reports it), so the score is the one of `carve.quality.defects`;
* `dataset_quality(...)`: the body of `GET /datasets/{d}/quality` (counts by kind with severity,
  episodes checked, the worst episodes, the drop list) and `drop_rows(...)` (its CSV);
* `event_tags(...)`: per row of a clustering version's layout of one dataset, the kinds of the
  findings whose span touches the event (`storage.defects.touches`, the shard cut's rule), the
  map's `defect` facet (`NO_FINDING` for none);
* `event_findings(...)`: the findings that touch one event, in episode frames and relative to
  the event, and whether the gate leaves the event out of the next shard cut (an error touches
  it and no active `keep` flag, storage/flags.py, overrules).

Everything is cached in the one `ViewCache` under a key holding `findings_stamp` (rows and
newest `created_at` of the defects table, count and newest `updated_at` of the episodes), so
a new run makes new keys (the cache's rule: new data, new key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from carve.audit.cache import ViewCache
from carve.quality.defects import KINDS, Defect, EpisodeReport
from carve.storage import defects as sd
from carve.storage.catalog import Catalog
from carve.storage.flags import list_flags
from carve.storage.root import Root

NO_FINDING = "none"  # the defect facet's value of an event no finding touches
WORST = 20  # episodes in the quality page's worst list (the route's default)
QUARANTINED = "failed"  # catalog status of an episode `carve run` could not read


@dataclass
class EpisodeQuality:
    """One catalog episode: provenance, status, its findings as an `EpisodeReport`."""

    episode_id: str
    episode_index: int | None
    status: str | None
    error: str | None
    source_file: str | None
    source_key: str | None
    report: EpisodeReport
    rows: list[dict[str, Any]] = field(default_factory=list)  # the catalog's defect rows (unknown kinds too)

    @property
    def kinds(self) -> list[str]:
        return sorted({r["kind"] for r in self.rows})

    @property
    def quarantined(self) -> bool:
        return self.status == QUARANTINED

    @property
    def dropped(self) -> bool:
        """In the drop list: an error finding, or quarantined."""
        return self.quarantined or any(r["severity"] == "error" for r in self.rows)


@dataclass
class DatasetFindings:
    """The findings of one dataset as recorded in the catalog (the state `stamp`)."""

    dataset: str
    stamp: tuple[Any, ...]
    episodes: dict[str, EpisodeQuality]

    def with_findings(self) -> list[EpisodeQuality]:
        return [e for e in self.episodes.values() if e.rows]


def stamp(cache: ViewCache, cat: Catalog, dataset: str) -> tuple[Any, ...]:
    """`storage.defects.findings_stamp` of a dataset (re-checked at most every `cache.ttl_s`)."""
    return cache.recent(f"quality-stamp-{dataset}", lambda: tuple(sd.findings_stamp(cat, dataset)))


def _report(index: int | None, rows: list[dict[str, Any]]) -> EpisodeReport:
    rep = EpisodeReport(episode_index=int(index) if index is not None else -1)
    for r in rows:
        if r["kind"] in KINDS:
            rep.defects.append(Defect(r["kind"], int(r["start_frame"]), int(r["end_frame"]), r.get("detail") or ""))
    return rep


def findings(cache: ViewCache, cat: Catalog, dataset: str) -> DatasetFindings:
    """One dataset's `DatasetFindings` (cached per `stamp`)."""
    st = stamp(cache, cat, dataset)

    def build() -> DatasetFindings:
        by_ep: dict[str, list[dict[str, Any]]] = {}
        for r in sd.episode_defects(cat, dataset=dataset):
            by_ep.setdefault(r["episode_id"], []).append(r)
        out: dict[str, EpisodeQuality] = {}
        for e in sd.episode_sources(cat, dataset):
            rows = list(by_ep.pop(e["episode_id"], []))
            if e["status"] == QUARANTINED:  # as `carve check` reports an episode it cannot read
                rows.append({"episode_id": e["episode_id"], "dataset": dataset, "kind": "unreadable",
                             "severity": KINDS["unreadable"][0], "start_frame": 0, "end_frame": 0,
                             "detail": e["error"] or "quarantined"})
            out[e["episode_id"]] = EpisodeQuality(e["episode_id"], e["episode_index"], e["status"], e["error"],
                                                  e["source_file"], e["source_key"], _report(e["episode_index"], rows),
                                                  rows)
        for ep, rows in by_ep.items():  # findings of an episode the catalog no longer lists
            out[ep] = EpisodeQuality(ep, None, None, None, None, None, _report(None, rows), rows)
        return DatasetFindings(dataset, st, out)

    return cache.get(("quality_findings", dataset, st), build)


def _keep_flags(cat: Catalog, dataset: str) -> dict[str, set[str]]:
    """episode_id -> event ids with an active `keep` flag (the gate's overrule)."""
    out: dict[str, set[str]] = {}
    for f in list_flags(cat, dataset=dataset, state="active"):
        if f["kind"] == "keep":
            out.setdefault(f.get("episode_id") or "", set()).add(f["event_id"])
    return out


def episode_events(cache: ViewCache, root: Root, f: DatasetFindings) -> pa.Table:
    """event_id, episode_id, start_frame, end_frame of the events of every episode with a finding
    (only the part files that hold such episodes are read)."""
    from carve.storage.events import read_events

    eps = {e.episode_id for e in f.with_findings() if not e.quarantined}

    def build() -> pa.Table:
        cols = ["event_id", "episode_id", "start_frame", "end_frame"]
        if not eps:
            return pa.table({c: pa.array([], pa.string() if c.endswith("_id") else pa.int64()) for c in cols})
        return read_events(root, columns=cols, filter_episodes=eps).combine_chunks()

    return cache.get(("quality_events", f.dataset, f.stamp), build)


def _touched(rows: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    return [r for r in rows if sd.touches(start, end, int(r["start_frame"]), int(r["end_frame"]))]


# -- the quality page --------------------------------------------------------------------------
def dataset_quality(cache: ViewCache, root: Root, cat: Catalog, dataset: str, worst: int = WORST) -> dict[str, Any]:
    """The body of `GET /datasets/{dataset}/quality` (see docs/API.md)."""
    f = findings(cache, cat, dataset)
    keep = _keep_flags(cat, dataset)

    def build() -> dict[str, Any]:
        kinds: dict[tuple[str, str], dict[str, Any]] = {}
        sev: dict[str, dict[str, Any]] = {s: {"severity": s, "episodes": 0, "findings": 0} for s in ("error", "warning")}
        for e in f.episodes.values():
            seen_sev: set[str] = set()
            for r in e.rows:
                k = kinds.setdefault((r["kind"], r["severity"]), {
                    "kind": r["kind"], "severity": r["severity"], "what": KINDS.get(r["kind"], ("", ""))[1],
                    "episodes": set(), "findings": 0})
                k["episodes"].add(e.episode_id)
                k["findings"] += 1
                s = sev.setdefault(r["severity"], {"severity": r["severity"], "episodes": 0, "findings": 0})
                s["findings"] += 1
                if r["severity"] not in seen_sev:
                    seen_sev.add(r["severity"])
                    s["episodes"] += 1
        by_kind = sorted(({**k, "episodes": len(k["episodes"])} for k in kinds.values()),
                         key=lambda k: (k["severity"] != "error", -k["episodes"], k["kind"]))
        scores = [e.report.score for e in f.episodes.values() if e.episode_index is not None]
        ev = episode_events(cache, root, f)
        by_ep: dict[str, list[tuple[str, int, int]]] = {}
        for eid, ep, s, t in zip(*(ev.column(c).to_pylist() for c in ("event_id", "episode_id", "start_frame",
                                                                        "end_frame")), strict=True):
            by_ep.setdefault(ep, []).append((eid, int(s), int(t)))
        bad = sorted(f.with_findings(), key=lambda e: (e.report.score, -len(e.rows),
                                                        e.episode_index if e.episode_index is not None else 1 << 62,
                                                        e.episode_id))
        rows = [_episode_row(e, by_ep.get(e.episode_id, []), keep.get(e.episode_id, set())) for e in bad[:worst]]
        dropped = [e for e in f.episodes.values() if e.dropped]
        return {
            "dataset": dataset,
            "episodes": sum(e.status == "ok" for e in f.episodes.values()),
            "episodes_checked": len(scores),
            "episodes_with_findings": len(f.with_findings()),
            "quarantined": sum(e.quarantined for e in f.episodes.values()),
            "mean_score": round(float(np.mean(scores)), 2) if scores else None,
            "findings": sum(len(e.rows) for e in f.episodes.values()),
            "by_severity": [sev[s] for s in sorted(sev, key=lambda s: (s != "error", s))],
            "by_kind": by_kind,
            "worst": rows,
            "drop": {"episodes": len(dropped), "kept_events": sum(len(keep.get(e.episode_id, ())) for e in dropped)},
        }

    return cache.get(("quality", dataset, f.stamp, worst, tuple(sorted((k, tuple(sorted(v))) for k, v in keep.items()))),
                     build)


def _episode_row(e: EpisodeQuality, events: list[tuple[str, int, int]], kept: set[str]) -> dict[str, Any]:
    errors = [r for r in e.rows if r["severity"] == "error"]
    first = errors[0] if errors else (e.rows[0] if e.rows else None)
    # the event to open: the first one the worst finding touches, else the episode's first event
    link = next((eid for eid, s, t in sorted(events, key=lambda x: x[1])
                 if first is not None and sd.touches(s, t, int(first["start_frame"]), int(first["end_frame"]))),
                min(events, key=lambda x: x[1])[0] if events else None)
    touched = {eid for eid, s, t in events if _touched(errors, s, t)}
    return {"episode_id": e.episode_id, "episode_index": e.episode_index, "score": e.report.score,
            "kinds": e.kinds, "errors": len(errors), "warnings": len(e.rows) - len(errors),
            "status": e.status, "quarantine_reason": e.error if e.quarantined else None,
            "source_file": e.source_file, "source_key": e.source_key, "dropped": e.dropped,
            "events": len(events), "events_gated": len(touched), "kept_events": len(touched & kept),
            "event_id": link,
            "findings": [{"kind": r["kind"], "severity": r["severity"], "start_frame": int(r["start_frame"]),
                          "end_frame": int(r["end_frame"]), "detail": r.get("detail")} for r in e.rows[:50]]}


DROP_COLUMNS = ["episode_index", "episode_id", "source_file", "source_key", "score", "kinds", "kept_events"]


def drop_rows(cache: ViewCache, cat: Catalog, dataset: str) -> list[list[Any]]:
    """The drop list (`DROP_COLUMNS`): every episode with an error finding or quarantined, by
    episode index; `kinds` joined by ";", `kept_events` the events of it an active `keep` flag
    puts back into the shards (the episode's other touched events stay out)."""
    f = findings(cache, cat, dataset)
    keep = _keep_flags(cat, dataset)
    out = []
    for e in sorted((e for e in f.episodes.values() if e.dropped),
                    key=lambda e: (e.episode_index if e.episode_index is not None else 1 << 62, e.episode_id)):
        out.append([e.episode_index if e.episode_index is not None else "", e.episode_id, e.source_file or "",
                    e.source_key or "", e.report.score, ";".join(e.kinds), len(keep.get(e.episode_id, ()))])
    return out


# -- the map's defect facet ----------------------------------------------------------------------
def event_tags(cache: ViewCache, root: Root, cat: Catalog, layout: pa.Table, key: tuple[Any, ...],
               dataset: str) -> list[tuple[str, ...]]:
    """Per row of `layout` (one dataset's rows of a clustering version's layout, `key` naming
    it), the sorted kinds of the findings that touch the event; () when none does."""
    f = findings(cache, cat, dataset)

    def build() -> list[tuple[str, ...]]:
        rows_of = {e.episode_id: e.rows for e in f.with_findings()}
        ev = episode_events(cache, root, f)
        tags: dict[str, tuple[str, ...]] = {}
        for eid, ep, s, t in zip(*(ev.column(c).to_pylist() for c in ("event_id", "episode_id", "start_frame",
                                                                        "end_frame")), strict=True):
            kinds = sorted({r["kind"] for r in _touched(rows_of.get(ep, []), int(s), int(t))})
            if kinds:
                tags[eid] = tuple(kinds)
        return [tags.get(e, ()) for e in layout.column("event_id").to_pylist()]

    return cache.get(("defect_tags", dataset, *key, f.stamp), build)


def tag_mask(tags: list[tuple[str, ...]], value: str) -> np.ndarray:
    """Rows whose tags hold `value` (`NO_FINDING`: rows without any)."""
    if value == NO_FINDING:
        return np.fromiter((not t for t in tags), dtype=bool, count=len(tags))
    return np.fromiter((value in t for t in tags), dtype=bool, count=len(tags))


def tag_counts(tags: list[tuple[str, ...]]) -> list[dict[str, Any]]:
    """The facet's values with counts: each kind (events it touches), then `NO_FINDING`."""
    counts: dict[str, int] = {}
    for t in tags:
        for k in t:
            counts[k] = counts.get(k, 0) + 1
    rows = sorted(({"value": k, "count": n} for k, n in counts.items()), key=lambda r: (-r["count"], r["value"]))
    none = sum(1 for t in tags if not t)
    return rows + ([{"value": NO_FINDING, "count": none}] if none else [])


# -- one event ---------------------------------------------------------------------------------
def event_findings(cat: Catalog, event_id: str, episode_id: str, start: int, end: int) -> dict[str, Any]:
    """The findings that touch the event [start, end) (episode frames, and relative to the event:
    `event_start`/`event_end` = frame - start, end inclusive) and the gate's verdict for it:
    `pass` (no error touches it), `excluded` (left out of the next shard cut) or `kept` (an
    active `keep` flag overrules the error)."""
    rows = _touched(sd.episode_defects(cat, episode_id=episode_id), start, end)
    out = [{"kind": r["kind"], "severity": r["severity"], "detail": r.get("detail"),
            "start_frame": int(r["start_frame"]), "end_frame": int(r["end_frame"]),
            "event_start": int(r["start_frame"]) - start, "event_end": int(r["end_frame"]) - start}
           for r in rows]
    gate = "pass"
    if any(r["severity"] == "error" for r in rows):
        kept = any(f["kind"] == "keep" for f in list_flags(cat, event_id=event_id, state="active"))
        gate = "kept" if kept else "excluded"
    return {"findings": out, "quality_gate": gate}
