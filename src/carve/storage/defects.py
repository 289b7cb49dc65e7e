"""The quality gate's findings in the catalog's `defects` table (revision 0006).

`carve run` checks every episode it ingests (`carve.quality`) and records each finding here:
episode, kind, severity, frame span (the episode's own frames, end inclusive) and detail. An
episode ingested again has its rows replaced. `error_spans` gives the next shard cut what to
leave out: every event that an error's span touches (`clustering.curate.cut_shards`), unless
an analyst's `keep` flag overrules it (storage/flags.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from carve.storage.catalog import Catalog

DEFECTS = sa.Table(
    "defects", sa.MetaData(),
    sa.Column("episode_id", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("start_frame", sa.Integer, nullable=False),
    sa.Column("end_frame", sa.Integer, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("batch", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
)


def record_defects(conn: sa.Connection, records: list[dict[str, Any]]) -> int:
    """Replace the findings of the episodes in `records` (WriteEvents' summary rows, whose
    `defects` is the JSON list of one episode's findings); return the rows written."""
    rows, episodes = [], []
    now = time.time()
    for r in records:
        if r.get("defects") is None:
            continue
        episodes.append(r["episode_id"])
        for d in json.loads(r["defects"] or "[]"):
            rows.append({"episode_id": r["episode_id"], "dataset": r["dataset"], "kind": d["kind"],
                         "severity": d["severity"], "start_frame": int(d["start_frame"]),
                         "end_frame": int(d["end_frame"]), "detail": d.get("detail"), "batch": r.get("batch"),
                         "created_at": now})
    if episodes:
        conn.execute(DEFECTS.delete().where(DEFECTS.c.episode_id.in_(episodes)))
    if rows:
        conn.execute(DEFECTS.insert(), rows)
    return len(rows)


def episode_defects(cat: Catalog, dataset: str | None = None, severity: str | None = None) -> list[dict[str, Any]]:
    """Every recorded finding (optionally of one dataset / severity), by episode and frame."""
    d = DEFECTS.c
    q = sa.select(DEFECTS)
    if dataset is not None:
        q = q.where(d.dataset == dataset)
    if severity is not None:
        q = q.where(d.severity == severity)
    with cat.reading() as c:
        return [dict(r) for r in c.execute(q.order_by(d.episode_id, d.start_frame)).mappings()]


def error_spans(cat: Catalog) -> dict[str, list[tuple[int, int, str]]]:
    """episode_id -> (start_frame, end_frame inclusive, kind) of each error-severity finding."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for r in episode_defects(cat, severity="error"):
        out.setdefault(r["episode_id"], []).append((int(r["start_frame"]), int(r["end_frame"]), r["kind"]))
    return out
