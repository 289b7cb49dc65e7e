"""The API paths the analysts' pages read, written once.

`PATHS` maps a name to the path template of one route (`{name}`: a dataset, `{event_id}`, ...).
The routes are declared with these templates (`service/routes/*.py`), `carve ui-export` asks
for `url(...)` of them (`report/ui_export.py`), and the pages' script (`report/static/ui.js`)
receives the same table in its page config (`report.ui_pages.render_ui`) and fills the
templates itself, so no path is spelled a second time.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

PATHS: dict[str, str] = {
    "datasets": "/datasets",
    "versions": "/datasets/{name}/versions",
    "map": "/datasets/{name}/map",
    "bins": "/datasets/{name}/map/bins",
    "facets": "/datasets/{name}/map/facets",
    "frame": "/datasets/{name}/map/frame",
    "cluster": "/datasets/{name}/clusters/{cluster}",
    "coverage": "/datasets/{name}/coverage",
    "coverage_csv": "/datasets/{name}/coverage.csv",
    "quality": "/datasets/{name}/quality",
    "quality_csv": "/datasets/{name}/quality.csv",
    "event": "/events/{event_id}",
    "signals": "/events/{event_id}/signals",
    "neighbours": "/events/{event_id}/neighbours",
    "flags": "/events/{event_id}/flags",
    "clip": "/events/{event_id}/clip.mp4",
    "keyframe": "/events/{event_id}/keyframes/{index}.jpg",
}
CLUSTER_PAGE = 60  # events per page of the cluster browser (the pages ask for it, the export snapshots it)


def url(key: str, query: dict[str, Any] | str | None = None, /, **params: Any) -> str:
    """The path `PATHS[key]` with its parameters filled in (each percent-encoded, '/' too) and
    `query` (a dict, url-encoded in its order, or a ready string) appended after '?'."""
    path = PATHS[key].format(**{k: quote(str(v), safe="") for k, v in params.items()})
    if query:
        path += "?" + (query if isinstance(query, str) else urlencode(query))
    return path
