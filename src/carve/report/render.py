"""The coverage audit page: `report/templates/*.html.j2` rendered with jinja2 (autoescaping on).

* `render_report(audit, inline=True)` -> (HTML, {file name: PNG}). The page holds a
  cluster-size bar chart before/after balancing, a 2-D PCA map of the event embeddings, coverage
  by task and by robot, flags, per-cluster cards with keyframe thumbnails and captions, and the
  quarantined episodes. With `inline` the PNGs are embedded as data URIs (the served page);
  otherwise the page links them by file name (`write_report` writes them beside it). The page
  loads nothing from the network.
* `write_report(root, out_dir=None, dataset=None)` writes `index.html` and its PNGs (into a
  local folder or an object store, e.g. `s3://bucket/root/reports`).

Every value from the data (captions, task names, errors, ids) is escaped by the template
engine; this module only shapes the audit into the templates' context.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from carve.audit.data import (
    Audit,
    RootLike,
    cluster_rows,
    coverage,
    duplicate_count,
    load_audit,
    sample_keyframes,
    step_rows,
)
from carve.report.charts import report_charts
from carve.storage.fs import atomic_write_bytes, is_uri, join
from carve.storage.root import open_root

TEMPLATE = "report.html.j2"
_CHARTS = (  # (file name, element id, alt text) in page order
    ("sizes.png", "sizes", "cluster sizes"),
    ("map.png", "map", "embedding map"),
    ("coverage.png", "coverage", "task x cluster coverage"),
)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _share(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _vnum(v: int) -> str:
    return f"v{int(v):03d}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("carve.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["share"] = _share
    env.filters["vnum"] = _vnum
    return env


ENV = _environment()


def _balance(manifest: dict[str, Any] | None) -> dict[str, str] | None:
    """Max/min ratio and normalised entropy before and after balancing, formatted ('–' if absent)."""
    stats = (manifest or {}).get("stats")
    if not stats:
        return None

    def num(when: str, key: str, fmt: str) -> str:
        v = stats.get(when, {}).get(key)
        return format(v, fmt) if isinstance(v, int | float) else "–"

    return {f"{when}_{key}": num(when, key, fmt) for when in ("before", "after")
            for key, fmt in (("max_min_ratio", ".2f"), ("entropy", ".3f"))}


def report_context(audit: Audit, rows: list[dict[str, Any]], charts: dict[str, bytes], inline: bool) -> dict[str, Any]:
    """The templates' context: plain values, lists and dicts (no markup)."""
    frames = sample_keyframes(audit, rows)
    cards = []
    for r in rows:
        thumbs = []
        for e in r["sample_events"]:
            kf = frames.get(e) or []
            if kf:
                thumbs.append({"event_id": e, "src": data_uri(kf[len(kf) // 2], "image/jpeg")})
        cards.append({**r, "thumbs": thumbs})
    return {
        "scope": audit.dataset or "all datasets",
        "n_events": audit.events.num_rows,
        "episodes_ok": audit.episodes_ok,
        "failures": audit.failures,
        "clusters_version": audit.clusters_version,
        "manifest_version": audit.manifest_version,
        "duplicates": duplicate_count(audit),
        "balance": _balance(audit.manifest),
        "charts": [
            {"id": cid, "alt": alt,
             "src": (data_uri(charts[name], "image/png") if inline else name) if name in charts else None}
            for name, cid, alt in _CHARTS
        ],
        "by_task": coverage(audit, "task"),
        "by_robot": coverage(audit, "robot"),
        "under_covered": [r for r in rows if r["under_covered"]],
        "cards": cards,
        "steps": step_rows(audit),
        "last_run": audit.runs[0] if audit.runs else None,
    }


def render_report(audit: Audit, inline: bool = True) -> tuple[str, dict[str, bytes]]:
    """(HTML, {file name: PNG bytes}). With `inline` the PNGs are embedded as data URIs too."""
    rows = cluster_rows(audit)
    charts = report_charts(audit, rows)
    page = ENV.get_template(TEMPLATE).render(report_context(audit, rows, charts, inline))
    return page, charts


def write_report(root: RootLike, out_dir: str | Path | None = None, dataset: str | None = None) -> Path | str:
    """Write `index.html` plus its PNG charts into `out_dir` (default `<root>/reports`; a local
    folder or an object-store URI such as `s3://bucket/reports`); return the HTML path (a `Path`
    on a local disk, else its URI)."""
    r = open_root(root)
    out = str(out_dir) if out_dir else r.uri_of(r.path("reports"))
    try:
        page, charts = render_report(load_audit(r, dataset), inline=False)
    finally:
        if r is not root:  # opened here: close its catalog
            r.close()
    for name, data in charts.items():
        atomic_write_bytes(data, join(out, name))
    index = join(out, "index.html")
    atomic_write_bytes(page.encode(), index)
    return index if is_uri(index) else Path(index)
