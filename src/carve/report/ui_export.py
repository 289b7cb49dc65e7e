"""The analysts' pages as a static folder (`carve ui-export`): open `index.html` from `file://`
or any static file server; nothing is loaded from another host.

`export_ui(get, out_dir, ...)` asks the HTTP API (through `get(path) -> (status, bytes)`, which
the CLI backs with the app in-process) for exactly the responses the pages read and writes:

    index.html map.html event.html cluster.html coverage.html   the page shells (mode "static")
    static/ui.js static/ui.css static/plotly.min.js              the same assets the server serves
    data/<key>.js      one API response each, as `CARVE_SNAP_PUT(key, value);` (a script, not
                       JSON, because pages opened from file:// cannot fetch())
    media/<key>        clips (MP4), keyframes (JPEG) and the coverage CSVs

`<key>` is the API path with every character outside [A-Za-z0-9_.-] replaced by "_" (ui.js
computes the same names). What the export lacks against the server, by design:

* flagging and unflagging (the flag form is disabled; the flags shown are those at export time);
* event views, clips and neighbours only for `max_events` events (spread over the clusters), hover
  thumbnails for `max_thumbs` map points, the first page (`cluster_page` events) of each
  cluster, the map up to `max_points` points (a density underlay beyond), and coverage only
  between consecutive versions of each kind (and each version against itself);
* filters work on the exported map points in the browser (the server filters all of them).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from carve.report.ui_pages import PAGES, STATIC_FILES, render_ui, static_file
from carve.storage.fs import atomic_write_bytes

Get = Callable[[str], tuple[int, bytes]]
CLUSTER_PAGE = 60  # ui.js asks for this page size


def snap_name(key: str) -> str:
    """The file name of an API path in data/ and media/ (as ui.js's snapName)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", key)


def _q(d: str) -> str:
    return quote(d, safe="")


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
    all_ds = w.json("/datasets") or []
    names = [d["name"] for d in all_ds if datasets is None or d["name"] in datasets]
    events: list[str] = []
    for d in names:
        base = f"/datasets/{_q(d)}"
        w.json(f"{base}/versions")
        facets = w.json(f"{base}/map/facets") or {}
        points: list[dict[str, Any]] = []
        first = None
        while len(points) < max_points:
            page = w.get(f"{base}/map?" + urlencode({"offset": len(points), "limit": min(20_000, max_points - len(points))}))
            if page[0] != 200:
                w.missing.append(f"{base}/map ({page[0]})")
                break
            m = json.loads(page[1])
            first = first or m
            points += m.get("points") or []
            if not m.get("points") or len(points) >= int(m.get("total") or 0):
                break
        if first is not None:
            snap = {**first, "points": points, "offset": 0, "limit": len(points)}
            if int(first.get("total") or 0) > len(points):
                status, body = w.get(f"{base}/map/bins?bins=64")
                if status == 200:
                    snap["bins_snapshot"] = json.loads(body)
            w.put(f"{base}/map", snap)
        for p in points[:max_thumbs]:
            w.file(f"/events/{_q(p['event_id'])}/keyframes/0.jpg")
        chosen = _spread(points, max_events)
        events += chosen
        # clusters: the first page of each, with thumbnails
        fac = facets.get("facets", facets) if isinstance(facets, dict) else {}
        for c in [x["value"] if isinstance(x, dict) else x for x in fac.get("cluster", [])]:
            r = w.json(f"{base}/clusters/{c}?offset=0&limit={CLUSTER_PAGE}")
            for e in (r or {}).get("events", []):
                w.file(f"/events/{_q(e['event_id'])}/keyframes/0.jpg")
        # coverage between consecutive versions of each kind (and a version against itself)
        vs = (facets.get("versions") if isinstance(facets, dict) else None) or {}
        for kind in ("clusters", "shards"):
            vv = sorted(int(v) for v in vs.get(kind, []))
            pairs = set(itertools.pairwise(vv)) | {(v, v) for v in vv}
            for a, b in sorted(pairs):
                q = urlencode({"from": a, "to": b, "kind": kind})
                w.json(f"{base}/coverage?{q}")
                w.file(f"{base}/coverage.csv?{q}")
    for eid in events:
        e = f"/events/{_q(eid)}"
        ev = w.json(f"{e}?images=false")
        w.json(f"{e}/signals")
        nb = w.json(f"{e}/neighbours?k=8") or {}
        w.json(f"{e}/flags")
        if clips:
            w.file(f"{e}/clip.mp4")
        for i in range(int((ev or {}).get("num_keyframes") or 0)):
            w.file(f"{e}/keyframes/{i}.jpg")
        for n in nb.get("neighbours", []) if isinstance(nb, dict) else nb:
            w.file(f"/events/{_q(n['event_id'])}/keyframes/0.jpg")
    for page in PAGES:
        html = render_ui(page, mode="static", base="", snapshots=None)
        atomic_write_bytes(html.encode(), str(out / f"{page}.html"))
    for name in STATIC_FILES:
        atomic_write_bytes(static_file(name)[0], str(out / "static" / name))
    summary = {"out": str(out), "datasets": names, "events": len(events), "snapshots": len(w.snapshots),
               "media": len(w.media), "missing": w.missing}
    atomic_write_bytes(json.dumps(summary, indent=2).encode(), str(out / "export.json"))
    return summary
