"""Coverage audit: what the catalog holds, how it clusters, and what balancing changed.

Owns the read side of clusters and shards for the report page and the HTTP service:

* `load_audit(root, dataset=None)` gathers the committed events (`storage.events.read_events`),
  the latest `<root>/clusters/vNNN/assignments/part-*.parquet`, the latest
  `<root>/shards/vNNN/manifest.json` and the quarantined episodes of the catalog. A dataset
  with events but no clusters or shards yet is fine: those parts are simply empty.
* `cluster_rows(audit)` is the per-cluster summary (sizes, shares before/after balancing,
  near-duplicates, under-coverage flag, sample captions) used by the API and the page.
* `render_report(audit, inline=...)` builds a static HTML page: a cluster-size bar chart
  before/after balancing, a 2-D PCA map of the fused event embeddings coloured by cluster,
  coverage by task and by robot, per-cluster cards with keyframe thumbnails and captions,
  flags, and the failures table. Charts are matplotlib (Agg) PNGs, either inlined as data
  URIs (served page) or written beside the HTML (`write_report`). No network is needed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from carve.storage.manifest import ManifestError
from carve.storage.manifest import read_manifest as storage_read_manifest

UNDER_COVERED_FRACTION = 0.25  # a cluster below this fraction of the mean cluster size is flagged
UNDER_COVERED_MIN = 3  # ...and so is any cluster with fewer events than this
_VERSION_DIR = re.compile(r"^v(\d{3,})$")
_EVENT_COLUMNS = ["event_id", "episode_id", "dataset", "robot", "task", "caption", "boundary_reason", "emb"]


class AuditError(ValueError):
    """A cluster or shard file the audit cannot read; the message names the file and the reason."""


# -- readers of <root>/clusters and <root>/shards ----------------------------------------
def list_versions(root: str | Path, kind: str) -> list[int]:
    """Versions present under `<root>/<kind>/vNNN/` (kind: clusters | shards), ascending."""
    base = Path(root) / kind
    if not base.is_dir():
        return []
    out = []
    for entry in base.iterdir():
        m = _VERSION_DIR.match(entry.name)
        if m and entry.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def version_dir(root: str | Path, kind: str, version: int) -> Path:
    return Path(root) / kind / f"v{version:03d}"


def read_clusters_meta(root: str | Path, version: int) -> dict[str, Any]:
    path = version_dir(root, "clusters", version) / "meta.json"
    if not path.exists():
        return {"version": version}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AuditError(f"{path}: not valid JSON ({e})") from e


def read_assignments(root: str | Path, version: int) -> pa.Table:
    """All assignment part files of a clusters version (columns in docs/FORMATS.md)."""
    adir = version_dir(root, "clusters", version) / "assignments"
    cols = ["event_id", "episode_id", "dataset", "cluster_id", "cluster_dist", "dup_of"]
    files = sorted(p for p in adir.glob("part-*.parquet")) if adir.is_dir() else []
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except (OSError, pa.ArrowInvalid) as e:
            raise AuditError(f"{f}: cannot read assignments ({e})") from e
        missing = [c for c in ("event_id", "cluster_id") if c not in t.column_names]
        if missing:
            raise AuditError(f"{f}: assignments file lacks columns {missing}")
        for c in cols:
            if c not in t.column_names:
                typ = pa.float32() if c == "cluster_dist" else pa.string()
                t = t.append_column(c, pa.nulls(t.num_rows, typ))
        tables.append(t.select(cols).cast(_ASSIGN_SCHEMA))
    if not tables:
        return _ASSIGN_SCHEMA.empty_table()
    return pa.concat_tables(tables)


_ASSIGN_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("episode_id", pa.string()),
        ("dataset", pa.string()),
        ("cluster_id", pa.int32()),
        ("cluster_dist", pa.float32()),
        ("dup_of", pa.string()),
    ]
)


def read_manifest(root: str | Path, version: int) -> dict[str, Any]:
    """A shards manifest, validated by `storage.manifest` (which refuses a newer manifest or
    schema version, naming the file); its errors surface as `AuditError`."""
    path = version_dir(root, "shards", version) / "manifest.json"
    try:
        m = storage_read_manifest(str(path))
    except ManifestError as e:
        raise AuditError(str(e)) from e
    m.pop("_dir", None)
    return m


def latest_manifest(root: str | Path) -> tuple[int, dict[str, Any]] | None:
    """The newest complete shards version (one with a manifest), or None."""
    for v in reversed(list_versions(root, "shards")):
        if (version_dir(root, "shards", v) / "manifest.json").exists():
            return v, read_manifest(root, v)
    return None


def data_fingerprint(root: str | Path) -> tuple[Any, ...]:
    """Cheap key that changes when events, clusters, shards or episode records change."""
    root = Path(root)
    parts: list[Any] = []
    for sub in ("events", "clusters", "shards"):
        base = root / sub
        if not base.is_dir():
            parts.append((sub, None))
            continue
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                if f.startswith(".tmp-"):
                    continue
                st = os.stat(os.path.join(dirpath, f))
                parts.append((dirpath, f, st.st_size, st.st_mtime_ns))
    return tuple(sorted(parts, key=repr))


# -- the audit data ------------------------------------------------------------------------
@dataclass
class Audit:
    """Everything the report and the cluster views need, for one dataset or all (`dataset=None`)."""

    root: str
    dataset: str | None
    events: pa.Table  # metadata + emb, one row per committed event
    cluster_of: dict[str, int] = field(default_factory=dict)  # event_id -> cluster id
    dup_of: dict[str, str] = field(default_factory=dict)  # event_id -> representative
    clusters_version: int | None = None
    clusters_meta: dict[str, Any] = field(default_factory=dict)
    manifest_version: int | None = None
    manifest: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    episodes_ok: int = 0


def load_audit(root: str | Path, dataset: str | None = None) -> Audit:
    """Read events, latest clusters, latest manifest and failures (for one dataset or all)."""
    from carve.storage.catalog import Catalog
    from carve.storage.events import read_events

    root = str(root)
    events = read_events(root, columns=_EVENT_COLUMNS)
    if dataset is not None:
        events = events.filter(pc.equal(events.column("dataset"), dataset))
    audit = Audit(root=root, dataset=dataset, events=events)
    # a clusters folder without meta.json is an interrupted write (meta.json is written last)
    cversions = [v for v in list_versions(root, "clusters") if (version_dir(root, "clusters", v) / "meta.json").exists()]
    if cversions:
        v = cversions[-1]
        audit.clusters_version = v
        audit.clusters_meta = read_clusters_meta(root, v)
        assign = read_assignments(root, v)
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
    with Catalog(root) as cat:
        audit.failures = [
            {"episode_id": r.episode_id, "dataset": r.dataset, "episode_index": r.episode_index, "error": r.error}
            for r in cat.episodes(dataset=dataset, status="failed")
        ]
        audit.episodes_ok = len(cat.episodes(dataset=dataset, status="ok"))
    return audit


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
    before_m: dict[str, int] = {}
    after_m: dict[str, int] = {}
    if audit.manifest:
        before_m = {str(k): int(v) for k, v in (audit.manifest.get("clusters", {}).get("before") or {}).items()}
        after_m = {str(k): int(v) for k, v in (audit.manifest.get("clusters", {}).get("after") or {}).items()}
    k = int(audit.clusters_meta.get("k") or 0)
    ids = sorted(set(members) | {int(x) for x in before_m} | {int(x) for x in after_m} | set(range(k)))
    total = sum(len(m) for m in members.values())
    tot_before = sum(before_m.values())
    tot_after = sum(after_m.values())
    mean = total / len(ids) if ids else 0.0
    rows = []
    for c in ids:
        idx = members.get(c, [])
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
        n_before = before_m.get(str(c))
        n_after = after_m.get(str(c))
        rows.append(
            {
                "cluster_id": c,
                "size": len(idx),
                "share": len(idx) / total if total else 0.0,
                "size_before": n_before,
                "size_after": n_after,
                "share_before": (n_before / tot_before) if (n_before is not None and tot_before) else None,
                "share_after": (n_after / tot_after) if (n_after is not None and tot_after) else None,
                "duplicates": sum(1 for i in idx if ev_ids[i] in audit.dup_of),
                "under_covered": len(idx) < max(UNDER_COVERED_MIN, UNDER_COVERED_FRACTION * mean),
                "top_tasks": [t for t, _ in Counter(tasks[i] or "" for i in idx).most_common(3)],
                "sample_captions": seen,
                "sample_events": sample_events,
            }
        )
    return rows


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


def keyframes_of(root: str, event_ids: list[str], episodes: set[str] | None = None) -> dict[str, list[bytes]]:
    """event_id -> keyframe JPEGs for a few events (reads only the episodes holding them)."""
    from carve.storage.events import read_events

    if not event_ids:
        return {}
    t = read_events(root, columns=["event_id", "keyframes"], filter_episodes=episodes)
    t = t.filter(pc.is_in(t.column("event_id"), value_set=pa.array(event_ids, pa.string())))
    return {e: [bytes(b) for b in (k or [])] for e, k in zip(t.column("event_id").to_pylist(),
                                                            t.column("keyframes").to_pylist(), strict=True)}


# -- charts ----------------------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows of `x` onto their first two principal components (numpy SVD)."""
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2), dtype=np.float32)
    _u, _s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    proj = x @ comps.T
    if proj.shape[1] < 2:
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
    return proj.astype(np.float32)


def embedding_matrix(audit: Audit, max_points: int = 5000, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """(n x d fused embeddings, cluster id or -1 per row) for events with an embedding."""
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


def chart_map(audit: Audit) -> bytes | None:
    """2-D PCA map of event embeddings coloured by cluster; None if no event has an embedding."""
    x, labels = embedding_matrix(audit)
    if x.shape[0] == 0:
        return None
    xy = pca_2d(x)
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
    ax.set_title(f"event embeddings (PCA, {x.shape[0]} events)", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def chart_task_coverage(audit: Audit, rows: list[dict[str, Any]], max_tasks: int = 20) -> bytes | None:
    """Heat map of events per (task, cluster); None before clustering."""
    if not audit.cluster_of or not rows:
        return None
    tasks = audit.events.column("task").to_pylist()
    ids = audit.events.column("event_id").to_pylist()
    top = [t for t, _ in Counter(t or "(unknown)" for t in tasks).most_common(max_tasks)]
    col = {r["cluster_id"]: j for j, r in enumerate(rows)}
    m = np.zeros((len(top), len(rows)), dtype=np.int64)
    ti = {t: i for i, t in enumerate(top)}
    for t, e in zip(tasks, ids, strict=True):
        c = audit.cluster_of.get(e)
        t = t or "(unknown)"
        if c is not None and t in ti and c in col:
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


# -- HTML --------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ccc;border-radius:6px;padding:8px;width:270px}
.card.flag{border-color:#d33;background:#fff5f5}.thumbs img{width:80px;height:auto;margin-right:3px}
.badge{display:inline-block;background:#d33;color:#fff;border-radius:4px;padding:0 5px;font-size:.75em}
.muted{color:#777}img.chart{max-width:100%;border:1px solid #eee}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _fmt_share(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(audit: Audit, inline: bool = True) -> tuple[str, dict[str, bytes]]:
    """(HTML, {file name: PNG bytes}). With `inline` the PNGs are embedded as data URIs too."""
    rows = cluster_rows(audit)
    scope = audit.dataset or "all datasets"
    charts: dict[str, bytes] = {}
    if rows:
        where = f"shards v{audit.manifest_version:03d}" if audit.manifest_version is not None else "no shards yet"
        charts["sizes.png"] = chart_sizes(rows, f"events per cluster ({where})")
    m = chart_map(audit)
    if m is not None:
        charts["map.png"] = m
    cov = chart_task_coverage(audit, rows)
    if cov is not None:
        charts["coverage.png"] = cov

    def img(name: str, alt: str) -> str:
        if name not in charts:
            return f"<p class='muted'>{html.escape(alt)}: not available</p>"
        src = _data_uri(charts[name], "image/png") if inline else name
        return f"<img class='chart' id='chart-{name.split('.')[0]}' src='{src}' alt='{html.escape(alt)}'>"

    samples = [e for r in rows for e in r["sample_events"]]
    ep_of = dict(zip(audit.events.column("event_id").to_pylist(), audit.events.column("episode_id").to_pylist(),
                     strict=True))
    kf = keyframes_of(audit.root, samples, episodes={ep_of[e] for e in samples}) if samples else {}
    n_ev = audit.events.num_rows
    dups = len([e for e in audit.events.column("event_id").to_pylist() if e in audit.dup_of])
    under = [r for r in rows if r["under_covered"]]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Carve coverage: {html.escape(scope)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Coverage audit: {html.escape(scope)}</h1>",
        f"<p id='summary'>{n_ev} events from {audit.episodes_ok} episodes; {len(audit.failures)} episodes quarantined; "
        + (f"clusters v{audit.clusters_version:03d} ({len(rows)} clusters); " if audit.clusters_version else
           "not clustered yet; ")
        + (f"shards v{audit.manifest_version:03d}; " if audit.manifest_version is not None else "no shards yet; ")
        + f"{dups} near-duplicates; {len(under)} under-covered clusters.</p>",
    ]
    if audit.manifest and audit.manifest.get("stats"):
        st = audit.manifest["stats"]

        def num(when: str, key: str, fmt: str) -> str:
            v = st.get(when, {}).get(key)
            return format(v, fmt) if isinstance(v, int | float) else "–"

        out.append(
            "<p>Balance (max/min cluster ratio, normalised entropy): before "
            f"{num('before', 'max_min_ratio', '.2f')} / {num('before', 'entropy', '.3f')}, after "
            f"{num('after', 'max_min_ratio', '.2f')} / {num('after', 'entropy', '.3f')}.</p>"
        )
    out += ["<h2>Cluster sizes before / after balancing</h2>", img("sizes.png", "cluster sizes"),
            "<h2>Event embedding map</h2>", img("map.png", "embedding map"),
            "<h2>Coverage by task</h2>", img("coverage.png", "task x cluster coverage"),
            _table(coverage(audit, "task"), ["task", "events", "episodes", "clusters", "duplicates"]),
            "<h2>Coverage by robot</h2>",
            _table(coverage(audit, "robot"), ["robot", "events", "episodes", "clusters", "duplicates"])]
    out.append("<h2>Flags</h2>")
    if under:
        out.append("<ul id='flags'>" + "".join(
            f"<li>cluster {r['cluster_id']}: only {r['size']} events (under-covered)</li>" for r in under) + "</ul>")
    else:
        out.append("<p id='flags' class='muted'>no under-covered clusters</p>")
    out.append("<h2>Clusters</h2><div class='cards'>")
    for r in rows:
        thumbs = []
        for e in r["sample_events"]:
            frames = kf.get(e) or []
            if frames:
                mid = frames[len(frames) // 2]
                thumbs.append(f"<img src='{_data_uri(mid, 'image/jpeg')}' alt='keyframe of {html.escape(e)}'>")
        caps = "".join(f"<li>{html.escape(c)}</li>" for c in r["sample_captions"]) or "<li class='muted'>no captions</li>"
        badge = " <span class='badge'>under-covered</span>" if r["under_covered"] else ""
        out.append(
            f"<div class='card{' flag' if r['under_covered'] else ''}' data-cluster='{r['cluster_id']}'>"
            f"<b>cluster {r['cluster_id']}</b>{badge}<br>"
            f"<span class='muted'>{r['size']} events ({_fmt_share(r['share'])}), share before "
            f"{_fmt_share(r['share_before'])} → after {_fmt_share(r['share_after'])}, "
            f"{r['duplicates']} near-dups</span>"
            f"<div class='thumbs'>{''.join(thumbs)}</div><ul>{caps}</ul></div>"
        )
    if not rows:
        out.append("<p class='muted'>no clusters yet: run clustering to fill this section</p>")
    out.append("</div><h2>Quarantined episodes</h2>")
    out.append(_table(audit.failures, ["dataset", "episode_index", "episode_id", "error"]))
    out.append("</body></html>")
    return "\n".join(out), charts


def write_report(root: str | Path, out_dir: str | Path | None = None, dataset: str | None = None) -> Path:
    """Write `index.html` plus its PNG charts into `out_dir` (default `<root>/reports`); return the HTML path."""
    from carve.storage.fs import atomic_write_bytes

    out = Path(out_dir) if out_dir else Path(root) / "reports"
    audit = load_audit(root, dataset)
    page, charts = render_report(audit, inline=False)
    for name, data in charts.items():
        atomic_write_bytes(data, str(out / name))
    path = out / "index.html"
    atomic_write_bytes(page.encode(), str(path))
    return path
