"""Analysts' review flags on events, kept in the catalog's `flags` table (revision 0004).

An analyst flags an event as `wrong_boundary`, `wrong_caption` or `bad_episode`, with an
optional note; the flag records who and when, and starts `active`. Unflagging never deletes a
row: it sets `state = "cleared"` with `cleared_by` / `cleared_at`, so the table is the audit
trail of every flag ever raised.

Active flags leave events out of the next shard version (`carve.shard.cut.cut_shards` asks
`excluded_events`): a `wrong_boundary` or `wrong_caption` flag excludes its event, a
`bad_episode` flag every event of the flagged event's episode. A `keep` flag overrules the
quality gate (storage/defects.py) the other way: its event goes into the shards although an
error finding touches it (`kept_events`). Both directions stay in this audit trail.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa

from carve.storage.catalog import Catalog

KINDS = ("wrong_boundary", "wrong_caption", "bad_episode", "keep")
STATES = ("active", "cleared")

FLAGS = sa.Table(
    "flags", sa.MetaData(),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("episode_id", sa.Text),
    sa.Column("dataset", sa.Text),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("cleared_by", sa.Text),
    sa.Column("cleared_at", sa.Double),
)


class FlagError(ValueError):
    """A flag that cannot be made (unknown kind, note too long); the message says why."""


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping) if hasattr(r, "_mapping") else dict(r)


def add_flag(cat: Catalog, event_id: str, kind: str, *, who: str, note: str | None = None,
             episode_id: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Record an active flag on `event_id` and return it."""
    if kind not in KINDS:
        raise FlagError(f"unknown flag kind {kind!r}; use one of {list(KINDS)}")
    if note is not None and len(note) > 4000:
        raise FlagError("the note is longer than 4000 characters")
    row = {"id": uuid.uuid4().hex[:16], "event_id": event_id, "episode_id": episode_id, "dataset": dataset,
           "kind": kind, "note": note or None, "who": who or "unknown", "created_at": time.time(),
           "state": "active", "cleared_by": None, "cleared_at": None}
    with cat._tx() as c:
        c.execute(FLAGS.insert().values(**row))
    return row


def clear_flag(cat: Catalog, event_id: str, flag_id: str, *, who: str) -> dict[str, Any] | None:
    """Clear an active flag (the row stays, `cleared`); return it, or None if the event has no
    such flag. Clearing a cleared flag returns it unchanged."""
    f = FLAGS.c
    with cat._tx() as c:
        c.execute(FLAGS.update().where((f.id == flag_id) & (f.event_id == event_id) & (f.state == "active"))
                  .values(state="cleared", cleared_by=who or "unknown", cleared_at=time.time()))
        r = c.execute(sa.select(FLAGS).where((f.id == flag_id) & (f.event_id == event_id))).first()
    return _row(r) if r is not None else None


def list_flags(cat: Catalog, *, event_id: str | None = None, dataset: str | None = None,
               state: str | None = "active") -> list[dict[str, Any]]:
    """Flags of one event or one dataset (`state` "active", "cleared" or None for all), oldest first."""
    f = FLAGS.c
    q = sa.select(FLAGS)
    if event_id is not None:
        q = q.where(f.event_id == event_id)
    if dataset is not None:
        q = q.where(f.dataset == dataset)
    if state is not None:
        q = q.where(f.state == state)
    with cat._read() as c:
        return [_row(r) for r in c.execute(q.order_by(f.created_at, f.id)).all()]


def active_flag_keys(cat: Catalog) -> tuple[set[str], set[str]]:
    """(event ids flagged, episode ids flagged `bad_episode`) of every active flag."""
    f = FLAGS.c
    with cat._read() as c:
        rows = c.execute(sa.select(f.event_id, f.episode_id, f.kind).where(f.state == "active")).all()
    events = {r.event_id for r in rows if r.kind not in ("bad_episode", "keep")}
    episodes = {r.episode_id for r in rows if r.kind == "bad_episode" and r.episode_id}
    return events, episodes


def kept_events(cat: Catalog, event_ids: Any) -> Any:
    """A boolean mask (numpy) over event ids: True where an active `keep` flag overrules the gate."""
    import numpy as np

    f = FLAGS.c
    with cat._read() as c:
        kept = {r.event_id for r in c.execute(sa.select(f.event_id).where((f.state == "active") & (f.kind == "keep")))}
    ids = event_ids.to_pylist() if hasattr(event_ids, "to_pylist") else list(event_ids)
    return np.fromiter((e in kept for e in ids), dtype=bool, count=len(ids))


def excluded_events(cat: Catalog, event_ids: Any, episode_ids: Any) -> Any:
    """A boolean mask (numpy) over parallel arrays of event and episode ids: True where an
    active flag excludes the event from shards (see the module doc)."""
    import numpy as np

    ev, eps = active_flag_keys(cat)
    n = len(event_ids)
    if not ev and not eps:
        return np.zeros(n, dtype=bool)
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = event_ids if isinstance(event_ids, pa.ChunkedArray | pa.Array) else pa.array(event_ids, pa.string())
    epi = episode_ids if isinstance(episode_ids, pa.ChunkedArray | pa.Array) else pa.array(episode_ids, pa.string())
    m = pc.or_(pc.is_in(ids, value_set=pa.array(sorted(ev), pa.string())),
               pc.is_in(epi, value_set=pa.array(sorted(eps), pa.string())))
    return np.asarray(pc.fill_null(m, False).to_numpy(zero_copy_only=False), dtype=bool)
