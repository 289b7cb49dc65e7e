"""The quality gate's findings in the catalog's `defects` table (revision 0006).

`carve run` checks every episode it ingests (`carve.quality`) and records each finding here:
episode, kind, severity, frame span (the episode's own frames, end inclusive) and detail. An
episode ingested again has its rows replaced. `error_spans` gives the next shard cut what to
leave out: every event that an error's span touches (`carve.shard.cut.cut_shards`), unless
an analyst's `keep` flag overrules it (storage/flags.py). The read helpers at the end serve the
analysts' pages (`carve.audit.quality`): `touches` (the rule an event and a finding's span
share a frame by), one episode's findings, a dataset's episodes with status and provenance, and
`findings_stamp`, the state the pages' cache keys hold.
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


def replace_kind(conn: sa.Connection, dataset: str, kind: str, rows: list[dict[str, Any]]) -> int:
    """Replace every finding of one `kind` in `dataset` by `rows` (episode_id, severity,
    start_frame, end_frame, detail): the findings a whole-dataset pass makes anew each time
    (`duplicate_episode`), leaving the per-episode ones alone. Returns the rows written."""
    d = DEFECTS.c
    conn.execute(DEFECTS.delete().where(d.dataset == dataset, d.kind == kind))
    now = time.time()
    if rows:
        conn.execute(DEFECTS.insert(), [{"dataset": dataset, "kind": kind, "batch": None, "created_at": now, **r}
                                        for r in rows])
    return len(rows)


def episode_defects(cat: Catalog, dataset: str | None = None, severity: str | None = None,
                    episode_id: str | None = None) -> list[dict[str, Any]]:
    """Every recorded finding (optionally of one dataset / severity / episode), by episode, frame and kind."""
    d = DEFECTS.c
    q = sa.select(DEFECTS)
    for col, val in ((d.dataset, dataset), (d.severity, severity), (d.episode_id, episode_id)):
        if val is not None:
            q = q.where(col == val)
    with cat.reading() as c:
        return [dict(r) for r in c.execute(q.order_by(d.episode_id, d.start_frame, d.kind)).mappings()]


def error_spans(cat: Catalog) -> dict[str, list[tuple[int, int, str]]]:
    """episode_id -> (start_frame, end_frame inclusive, kind) of each error-severity finding."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for r in episode_defects(cat, severity="error"):
        out.setdefault(r["episode_id"], []).append((int(r["start_frame"]), int(r["end_frame"]), r["kind"]))
    return out


# -- read helpers of the analysts' pages (carve.audit.quality) -------------------------------------
def touches(start: int, end: int, f_start: int, f_end: int) -> bool:
    """Whether an event's frames [start, end) share a frame with a finding's span [f_start, f_end]
    (end inclusive): the rule of the shard cut's quality gate (`carve.shard.cut`)."""
    return start <= f_end and end - 1 >= f_start


def episode_sources(cat: Catalog, dataset: str) -> list[dict[str, Any]]:
    """Every catalog episode of a dataset with its status, quarantine reason (`error`) and provenance
    (`source_file`, `source_key`), by episode index."""
    from carve.storage.catalog import EPISODES

    e = EPISODES.c
    q = (sa.select(e.episode_id, e.episode_index, e.status, e.error, e.num_events, e.source_file, e.source_key)
         .where(e.dataset == dataset).order_by(e.episode_index))
    with cat.reading() as c:
        return [dict(r) for r in c.execute(q).mappings()]


def findings_stamp(cat: Catalog, dataset: str | None = None) -> tuple[Any, ...]:
    """What the findings of a dataset (or all) depend on: (rows, newest `created_at`) of the defects
    table and (episodes, newest `updated_at`) of the episodes table; a new run changes it."""
    from carve.storage.catalog import EPISODES

    d, e = DEFECTS.c, EPISODES.c
    qd = sa.select(sa.func.count(), sa.func.max(d.created_at))
    qe = sa.select(sa.func.count(), sa.func.max(e.updated_at))
    if dataset is not None:
        qd, qe = qd.where(d.dataset == dataset), qe.where(e.dataset == dataset)
    with cat.reading() as c:
        return (*c.execute(qd).one(), *c.execute(qe).one())
