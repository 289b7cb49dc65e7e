"""The coverage audit page: `report/templates/*.html.j2` rendered with jinja2 (autoescaping on).

* `render_report(audit, inline=True, view=None)` -> (HTML, {file name: PNG}). The page holds a
  cluster-size bar chart before/after balancing, a 2-D PCA map of the event embeddings, coverage
  by task and by robot, flags, per-cluster cards with keyframe thumbnails and captions, and the
  quarantined episodes. With `inline` the PNGs are embedded as data URIs (the served page);
  otherwise the page links them by file name (`write_report` writes them beside it). The page
  loads nothing from the network.
* What it shows comes from the audit read model, as the service's views and `carve ui-export`
  read it: the `VersionView` of the clusters version (`carve.audit.model`) gives the cluster rows
  (its summary: sizes, shares before/after balancing, duplicates, the one under-covered rule of
  `carve.audit.coverage`, samples; `report_rows`), coverage by task and robot (`report_coverage`)
  and the map (its stored layout). The full audit (`audit.data.load_audit`) gives only what the
  model does not hold: the event count, the quarantined episodes and the last runs' steps,
  coverage over all datasets or counting events committed after the clustering, the cards'
  keyframes, and the embeddings of events not yet on the layout (projected by its PCA).
* `write_report(root, out_dir=None, dataset=None)` writes `index.html` and its PNGs (into a
  local folder or an object store, e.g. `s3://bucket/root/reports`).

Every value from the data (captions, task names, errors, ids) is escaped by the template
engine; this module only shapes the audit into the templates' context.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pyarrow as pa
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from carve.audit.cache import ViewCache
from carve.audit.data import (
    Audit,
    RootLike,
    coverage,
    load_audit,
    sample_keyframes,
    step_rows,
    summary_cluster_rows,
    summary_coverage,
)
from carve.audit.model import AuditRoot, NotFound, VersionView
from carve.clustering import summary as cs
from carve.core.errors import CarveError
from carve.report.charts import report_charts
from carve.storage.fs import atomic_write_bytes, is_uri, join
from carve.storage.manifest import ShardManifest
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


def _balance(manifest: ShardManifest | None) -> dict[str, str] | None:
    """Max/min ratio and normalised entropy before and after balancing, formatted ('–' if absent)."""
    stats = manifest.stats if manifest is not None else None
    if stats is None or not stats.to_json():
        return None

    def num(when: str, key: str, fmt: str) -> str:
        side = getattr(stats, when)
        v = getattr(side, key) if side is not None else None
        return format(v, fmt) if isinstance(v, int | float) else "–"

    return {f"{when}_{key}": num(when, key, fmt) for when in ("before", "after")
            for key, fmt in (("max_min_ratio", ".2f"), ("entropy", ".3f"))}


def version_view(audit: Audit) -> VersionView | None:
    """The audit read model's `VersionView` of the audit's clusters version (on a cache of its
    own), or None before any clustering."""
    if audit.clusters_version is None:
        return None
    return AuditRoot(audit.root, ViewCache()).version(audit.clusters_version)


def report_rows(audit: Audit, summary: cs.ClusterSummary | None) -> list[dict[str, Any]]:
    """The cluster rows (sizes, shares before/after balancing, duplicates, the one under-covered
    rule, samples) from the version's summary, as the service's clusters view; [] before clustering."""
    if summary is None:
        return []
    return summary_cluster_rows(summary, int(audit.clusters_meta.get("k") or 0), audit.manifest,
                                dataset=audit.dataset)


def report_coverage(audit: Audit, summary: cs.ClusterSummary | None, key: str) -> list[dict[str, Any]]:
    """Coverage by `key` (task | robot): the version's summary, as the service's coverage view,
    when it counts every event of the report's dataset; else (all datasets at once, whose distinct
    clusters a per-dataset summary cannot add up, or events committed after the clustering)
    counted on the audit's events."""
    if summary is not None and audit.dataset is not None:
        totals = summary.datasets.get(audit.dataset) or {}
        if int(totals.get("events", -1)) == audit.events.num_rows:
            return summary_coverage(summary, audit.dataset, key)
    return coverage(audit, key)


def _layout(view: VersionView | None) -> pa.Table | None:
    """The version's stored layout, or None (before clustering, or one that cannot be read or derived)."""
    if view is None:
        return None
    try:
        return view.layout
    except (NotFound, OSError, CarveError):
        return None


def report_context(audit: Audit, rows: list[dict[str, Any]], charts: dict[str, bytes], inline: bool,
                   summary: cs.ClusterSummary | None = None) -> dict[str, Any]:
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
        "duplicates": sum(r["duplicates"] for r in rows),
        "balance": _balance(audit.manifest),
        "charts": [
            {"id": cid, "alt": alt,
             "src": (data_uri(charts[name], "image/png") if inline else name) if name in charts else None}
            for name, cid, alt in _CHARTS
        ],
        "by_task": report_coverage(audit, summary, "task"),
        "by_robot": report_coverage(audit, summary, "robot"),
        "under_covered": [r for r in rows if r["under_covered"]],
        "cards": cards,
        "steps": step_rows(audit),
        "last_run": audit.runs[0] if audit.runs else None,
    }


def render_report(audit: Audit, inline: bool = True, view: VersionView | None = None) -> tuple[str, dict[str, bytes]]:
    """(HTML, {file name: PNG bytes}). With `inline` the PNGs are embedded as data URIs too.
    `view`: the read model's view of `audit.clusters_version` (the service passes its own, whose
    members are cached with the UI's); one on a fresh cache if not given."""
    if view is None:
        view = version_view(audit)
    summary = view.summary(audit.dataset) if view is not None else None
    rows = report_rows(audit, summary)
    charts = report_charts(audit, rows, _layout(view))
    page = ENV.get_template(TEMPLATE).render(report_context(audit, rows, charts, inline, summary))
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
