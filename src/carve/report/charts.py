"""The coverage audit's charts: matplotlib (Agg) PNGs, made offline from the report's data.

* `chart_sizes(rows, title)`: events per cluster before and after balancing (grouped bars), the
  cluster rows of the clustering's summary (`report.render.report_rows`, as the service's
  clusters view);
* `chart_map(audit, layout)`: 2-D PCA map of the fused event embeddings, coloured by cluster:
  the clusters version's stored layout (`VersionView.layout`, the UI's map), plus the events it
  does not hold by its projection (`audit.data.map_points`);
* `chart_task_coverage(audit, rows, layout)`: heat map of events per (task, cluster), counted
  on the layout's rows (`audit.data.task_cluster_pairs`).

`report_charts(audit, rows, layout)` makes every chart the data allows, by file name
(`sizes.png`, `map.png`, `coverage.png`); `report.render` inlines or links them.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

from carve.audit.data import Audit, map_points, task_cluster_pairs


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def chart_sizes(rows: list[dict[str, Any]], title: str) -> bytes:
    """Grouped bars: events per cluster before and after balancing."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    before = [r["size_before"] if r["size_before"] is not None else r["size"] for r in rows]
    ax.bar(x - 0.2, before, width=0.4, label="before balancing", color="#8da0cb")
    if any(r["size_after"] is not None for r in rows):
        ax.bar(x + 0.2, [r["size_after"] or 0 for r in rows], width=0.4, label="after balancing", color="#fc8d62")
    ax.set_xticks(x, [str(r["cluster_id"]) for r in rows], fontsize=7)
    ax.set_xlabel("cluster")
    ax.set_ylabel("events")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def chart_map(audit: Audit, layout: pa.Table | None = None) -> bytes | None:
    """2-D PCA map of event embeddings coloured by cluster (the stored `layout` of the clusters
    version, if given); None if no event has a position."""
    xy, labels = map_points(audit, layout)
    if xy.shape[0] == 0:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    lab = np.asarray(labels)
    ids = sorted(set(lab.tolist()) - {-1})
    cmap = plt.get_cmap("tab10" if len(ids) <= 10 else "tab20")
    for j, c in enumerate(ids):
        sel = lab == c
        ax.scatter(xy[sel, 0], xy[sel, 1], color=cmap(j % cmap.N), s=10, alpha=0.8, label=f"cluster {c}")
    if (lab < 0).any():
        ax.scatter(xy[lab < 0, 0], xy[lab < 0, 1], c="lightgray", s=10, label="not clustered")
    if len(ids) <= 20:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(f"event embeddings (PCA, {xy.shape[0]} events)", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def chart_task_coverage(audit: Audit, rows: list[dict[str, Any]], layout: pa.Table | None = None,
                        max_tasks: int = 20) -> bytes | None:
    """Heat map of events per (task, cluster) of the `max_tasks` most common tasks in scope, the
    cells counted on the clusters version's stored `layout` if given; None before clustering."""
    if not audit.cluster_of or not rows:
        return None
    top = [t for t, _ in Counter(t or "(unknown)" for t in audit.events.column("task").to_pylist())
           .most_common(max_tasks)]
    col = {r["cluster_id"]: j for j, r in enumerate(rows)}
    m = np.zeros((len(top), len(rows)), dtype=np.int64)
    ti = {t: i for i, t in enumerate(top)}
    for t, c in task_cluster_pairs(audit, layout):
        if t in ti and c in col:
            m[ti[t], col[c]] += 1
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(rows) + 3), 0.3 * len(top) + 1.5))
    im = ax.imshow(m, aspect="auto", cmap="Blues")
    ax.set_yticks(range(len(top)), [t[:48] for t in top], fontsize=7)
    ax.set_xticks(range(len(rows)), [str(r["cluster_id"]) for r in rows], fontsize=7)
    ax.set_xlabel("cluster")
    ax.set_title("events per task and cluster", fontsize=10)
    fig.colorbar(im, ax=ax)
    return _png(fig)


def report_charts(audit: Audit, rows: list[dict[str, Any]], layout: pa.Table | None = None) -> dict[str, bytes]:
    """{file name: PNG} of every chart the data allows (`layout`: the clusters version's stored
    layout, None before clustering)."""
    charts: dict[str, bytes] = {}
    if rows:
        where = f"shards v{audit.manifest_version:03d}" if audit.manifest_version is not None else "no shards yet"
        charts["sizes.png"] = chart_sizes(rows, f"events per cluster ({where})")
    m = chart_map(audit, layout)
    if m is not None:
        charts["map.png"] = m
    cov = chart_task_coverage(audit, rows, layout)
    if cov is not None:
        charts["coverage.png"] = cov
    return charts
