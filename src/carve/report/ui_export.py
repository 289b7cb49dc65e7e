"""The analysts' pages as a static folder (`carve ui-export`): open `index.html` from `file://`
or any static file server; nothing is loaded from another host.

`export_ui(get, out_dir, ...)` asks the HTTP API (through `get(path) -> (status, bytes)`, which
the CLI backs with the app in-process) for exactly the responses the pages read and writes:

    index.html map.html event.html cluster.html coverage.html quality.html   the page shells (mode "static")
    static/ui.js static/ui.css static/plotly.min.js              the same assets the server serves
    data/<key>.js      one API response each, as `CARVE_SNAP_PUT(key, value);` (a script, not
                       JSON, because pages opened from file:// cannot fetch())
    media/<key>        clips (MP4), keyframes (JPEG), the coverage CSVs and the quality drop list CSV

`<key>` is the API path with every character outside [A-Za-z0-9_.-] replaced by "_" (ui.js
computes the same names). The paths come from `carve.audit.paths` (`url`), the table the
routes are declared with and ui.js receives in its page config: no path is spelled here. What the export lacks against the server, by design:

* flagging and unflagging (the flag form is disabled; the flags shown are those at export time);
* event views, clips and neighbours only for `max_events` events (spread over the clusters), hover
  thumbnails for `max_thumbs` map points, the first page (`cluster_page` events) of each
  cluster, the map up to `max_points` points (a density underlay beyond), and coverage only
  between consecutive versions of each kind (and each version against itself);
* filters work on the exported map points in the browser (the server filters all of them); for
  the `defect` filter each exported point carries `defect`, the kinds of findings touching it
  (asked from the map with each value of the defect facet);
* the quality page's worst episodes link to events that are exported (their events are added to
  the `max_events` spread over the clusters).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from carve.audit.paths import CLUSTER_PAGE, url
from carve.audit.quality import NO_FINDING
from carve.report.ui_pages import PAGES, STATIC_FILES, render_ui, static_file
from carve.storage.fs import atomic_write_bytes

Get = Callable[[str], tuple[int, bytes]]


def snap_name(key: str) -> str:
    """The file name of an API path in data/ and media/ (as ui.js's snapName)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", key)


class _Writer:
    def __init__(self, get: Get, out: Path):
        self.get, self.out = get, out
        self.snapshots: list[str] = []
        self.media: set[str] = set()
        self.missing: list[str] = []

    def json(self, path: str, key: str | None = None) -> Any:
        status, body = self.get(path)
        if status != 200:
            self.missing.append(f"{path} ({status})")
            return None
        value = json.loads(body)
        self.put(key or path, value)
        return value

    def put(self, key: str, value: Any) -> None:
        text = f"CARVE_SNAP_PUT({json.dumps(key)}, {json.dumps(value, separators=(',', ':'))});\n"
        atomic_write_bytes(text.encode(), str(self.out / "data" / f"{snap_name(key)}.js"))
        self.snapshots.append(key)

    def file(self, path: str) -> bool:
        if path in self.media:
            return True
        status, body = self.get(path)
        if status != 200:
            self.missing.append(f"{path} ({status})")
            return False
        atomic_write_bytes(body, str(self.out / "media" / snap_name(path)))
        self.media.add(path)
        return True


def _spread(points: list[dict[str, Any]], n: int) -> list[str]:
    """Up to n event ids, round-robin over the clusters (so every cluster has some)."""
    by: dict[Any, list[str]] = {}
    for p in points:
        by.setdefault(p.get("cluster"), []).append(p["event_id"])
    out: list[str] = []
    queues = [list(reversed(v)) for _, v in sorted(by.items(), key=lambda kv: str(kv[0]))]
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop())
    return out


def export_ui(get: Get, out_dir: str | Path, datasets: list[str] | None = None, max_events: int = 200,
              max_thumbs: int = 3000, max_points: int = 50_000, clips: bool = True) -> dict[str, Any]:
    """Write the static pages for `datasets` (default: all) into `out_dir`; return what was written."""
    out = Path(out_dir)
    w = _Writer(get, out)
    all_ds = w.json(url("datasets")) or []
    names = [d["name"] for d in all_ds if datasets is None or d["name"] in datasets]
    events: list[str] = []
    for d in names:
        w.json(url("versions", name=d))
        facets = w.json(url("facets", name=d)) or {}
        points: list[dict[str, Any]] = []
        first = None
        while len(points) < max_points:
            page = w.get(url("map", {"offset": len(points), "limit": min(20_000, max_points - len(points))}, name=d))
            if page[0] != 200:
                w.missing.append(f"{url('map', name=d)} ({page[0]})")
                break
            m = json.loads(page[1])
            first = first or m
            points += m.get("points") or []
            if not m.get("points") or len(points) >= int(m.get("total") or 0):
                break
        fac = facets.get("facets", facets) if isinstance(facets, dict) else {}
        tags: dict[str, list[str]] = {}
        for kind in [x["value"] for x in fac.get("defect", []) if x["value"] != NO_FINDING]:
            status, body = w.get(url("map", {"defect": kind, "limit": 20_000}, name=d))
            for p in json.loads(body).get("points", []) if status == 200 else []:
                tags.setdefault(p["event_id"], []).append(kind)
        for p in points:
            p["defect"] = tags.get(p["event_id"], [])
        if first is not None:
            snap = {**first, "points": points, "offset": 0, "limit": len(points)}
            if int(first.get("total") or 0) > len(points):
                status, body = w.get(url("bins", {"bins": 64}, name=d))
                if status == 200:
                    snap["bins_snapshot"] = json.loads(body)
            w.put(url("map", name=d), snap)
        for p in points[:max_thumbs]:
            w.file(url("keyframe", event_id=p["event_id"], index=0))
        chosen = _spread(points, max_events)
        # quality: the counts, the worst episodes (their linked events exported too), the drop list
        q = w.json(url("quality", name=d)) or {}
        w.file(url("quality_csv", name=d))
        chosen += [e["event_id"] for e in q.get("worst", []) if e.get("event_id") and e["event_id"] not in chosen]
        events += chosen
        # clusters: the first page of each, with thumbnails
        for c in [x["value"] if isinstance(x, dict) else x for x in fac.get("cluster", [])]:
            r = w.json(url("cluster", {"offset": 0, "limit": CLUSTER_PAGE}, name=d, cluster=c))
            for e in (r or {}).get("events", []):
                w.file(url("keyframe", event_id=e["event_id"], index=0))
        # coverage between consecutive versions of each kind (and a version against itself)
        vs = (facets.get("versions") if isinstance(facets, dict) else None) or {}
        for kind in ("clusters", "shards"):
            vv = sorted(int(v) for v in vs.get(kind, []))
            pairs = set(itertools.pairwise(vv)) | {(v, v) for v in vv}
            for a, b in sorted(pairs):
                q = urlencode({"from": a, "to": b, "kind": kind})
                w.json(url("coverage", q, name=d))
                w.file(url("coverage_csv", q, name=d))
    for eid in events:
        ev = w.json(url("event", "images=false", event_id=eid))
        w.json(url("signals", event_id=eid))
        nb = w.json(url("neighbours", "k=8", event_id=eid)) or {}
        w.json(url("flags", event_id=eid))
        if clips:
            w.file(url("clip", event_id=eid))
        for i in range(int((ev or {}).get("num_keyframes") or 0)):
            w.file(url("keyframe", event_id=eid, index=i))
        for n in nb.get("neighbours", []) if isinstance(nb, dict) else nb:
            w.file(url("keyframe", event_id=n["event_id"], index=0))
    for page in PAGES:
        html = render_ui(page, mode="static", base="", snapshots=None)
        atomic_write_bytes(html.encode(), str(out / f"{page}.html"))
    for name in STATIC_FILES:
        atomic_write_bytes(static_file(name)[0], str(out / "static" / name))
    summary = {"out": str(out), "datasets": names, "events": len(events), "snapshots": len(w.snapshots),
               "media": len(w.media), "missing": w.missing}
    atomic_write_bytes(json.dumps(summary, indent=2).encode(), str(out / "export.json"))
    return summary
