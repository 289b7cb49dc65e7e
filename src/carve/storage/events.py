"""The event catalog on disk: `<root>/events/batch=<id>/part-<first-episode-index>-<uid>.parquet`.

All events, unbalanced, as schema-v1 Parquet, partitioned by ingest batch (one batch per
`carve run`). Each part file holds whole episodes (several: `ray.part_episodes`, split at
`ray.part_target_mb`) and is written atomically; the catalog records an episode as `ok`,
together with the part file that holds it (`episodes.part`, storage/parts.py), only after
that file is in place, so a crash leaves either a finished episode or none. Readers take
the catalog's word: a file is read only for the committed episodes the catalog places in it,
so part files left by a killed run or a crashed compaction (orphans, removed by `carve gc`)
and rows of re-ingested episodes are never read. Episodes committed before catalog revision
0003 have no part; their rows are read from the files of their batch, as before.

`read_events` reads the committed events (or all rows on disk) and validates the schema
version of every file; `iter_events` streams the same rows one part file at a time; both
can be given an `EventSnapshot` so that several passes see the same rows in the same order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from carve.core.errors import CarveError
from carve.storage.layout import RootLayout
from carve.storage.root import Root
from carve.storage.schema import EVENT_SCHEMA, check_schema, conform

EVENTS_DIR = RootLayout.EVENTS


def new_batch_id() -> str:
    """Sortable, unique ingest-batch id."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def part_path(root: Root, batch: str, key: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return root.path(*RootLayout.batch(batch, f"part-{safe}.parquet"))


def write_event_part(root: Root, batch: str, key: str, table: pa.Table, row_group_size: int = 256) -> str:
    """Atomically write one part file of events (conformed to schema v1); return its path."""
    path = part_path(root, batch, key)
    root.write_table(path, conform(table, EVENT_SCHEMA), row_group_size=row_group_size)
    return path


def event_files(root: Root, batches: list[str] | None = None) -> list[str]:
    files = root.list_files(EVENTS_DIR, suffix=".parquet")
    if batches is None:
        return files
    wanted = set(batches)
    return [f for f in files if RootLayout.parse_batch(f) in wanted]


def committed_files(root: Root, batches: list[str] | None = None) -> dict[str, set[str]]:
    """fs path of every part file holding committed episodes -> those episodes' ids.

    An episode's file is the part the catalog records for it; an episode committed before
    catalog revision 0003 (no part) is looked for in every file of its batch that holds no
    recorded part."""
    import sqlalchemy as sa

    from carve.storage.catalog import EPISODES

    e = EPISODES.c
    wanted = set(batches) if batches is not None else None
    q = sa.select(e.episode_id, e.batch, e.part).where(e.status == "ok", e.batch.is_not(None))
    with root.catalog.reading() as c:
        rows = c.execute(q).all()
    out: dict[str, set[str]] = {}
    legacy: dict[str, set[str]] = {}
    for episode_id, batch, part in rows:
        if wanted is not None and batch not in wanted:
            continue
        if part:
            out.setdefault(root.path(part), set()).add(episode_id)
        else:
            legacy.setdefault(batch, set()).add(episode_id)
    for batch, eps in legacy.items():
        for f in root.list_files(*RootLayout.batch(batch), suffix=".parquet"):
            if f not in out:
                out[f] = eps
    return out


class SnapshotStale(CarveError):
    """A part file of a snapshot is gone (compacted and deleted, or collected, since the snapshot
    was taken): take a new snapshot and read again."""


@dataclass(frozen=True)
class EventSnapshot:
    """Which part files (and which of their episodes) make up the catalog at one moment.

    Reads given the same snapshot see the same rows in the same order even while another job
    commits new episodes, so row indices computed from one read stay valid for the next. A
    compaction that deletes the snapshot's files at once (`carve compact --grace-s 0`) makes
    its next read raise `SnapshotStale`; with a grace period the old files stay readable."""

    files: tuple[str, ...]
    committed: dict[str, set[str]] | None  # file -> committed episode ids in it (None: every row)


def snapshot(root: Root, batches: list[str] | None = None, committed_only: bool = True) -> EventSnapshot:
    if not committed_only:
        return EventSnapshot(tuple(event_files(root, batches)), None)
    committed = committed_files(root, batches)
    return EventSnapshot(tuple(sorted(committed)), committed)


def iter_events(
    root: Root,
    columns: list[str] | None = None,
    batches: list[str] | None = None,
    filter_episodes: set[str] | None = None,
    committed_only: bool = True,
    snap: EventSnapshot | None = None,
) -> Iterator[pa.Table]:
    """The events of `read_events`, one table per part file, in the same order (so row i of
    `read_events` is row i of the concatenation); holds one part file in memory at a time.
    With `snap`, the files and committed episodes are those of the snapshot."""
    snap = snap or snapshot(root, batches, committed_only)
    files, committed = snap.files, snap.committed
    want_cols = list(columns) if columns is not None else None
    if want_cols is not None and "episode_id" not in want_cols:
        read_cols = [*want_cols, "episode_id"]
    else:
        read_cols = want_cols
    wanted_eps = set(filter_episodes) if filter_episodes is not None else None
    for f in files:
        allowed: set[str] | None = None
        if committed is not None:
            allowed = committed.get(f, set())
            if not allowed:
                continue
        if wanted_eps is not None:
            allowed = wanted_eps if allowed is None else allowed & wanted_eps
            if not allowed:
                continue
        try:
            pf = pq.ParquetFile(f, filesystem=root.fs)
        except FileNotFoundError:
            raise SnapshotStale(f"{root.uri_of(f)} is gone since the snapshot of the events was taken "
                                "(compacted or collected): read again") from None
        check_schema(pf.schema_arrow, f)
        t = pf.read(columns=read_cols)
        if allowed is not None:
            # set membership per row (a part file holds few episodes; building an Arrow value set
            # of the whole batch for every file would cost O(files x episodes))
            keep = [e in allowed for e in t.column("episode_id").to_pylist()]
            if not all(keep):
                t = t.filter(pa.array(keep, pa.bool_()))
        if want_cols is not None:
            t = t.select(want_cols)
        yield t


def read_events(
    root: Root,
    columns: list[str] | None = None,
    batches: list[str] | None = None,
    filter_episodes: set[str] | None = None,
    committed_only: bool = True,
    snap: EventSnapshot | None = None,
) -> pa.Table:
    """Read events (optionally only some columns / batches / episodes) as one table.

    With `committed_only` (the default) only rows of episodes that the catalog records as
    `ok` *in that part file* (before revision 0003: in that batch) are returned: part files
    left behind by a crash before the catalog commit, compacted parts not yet deleted, and rows
    superseded by a re-ingest of a changed episode are ignored.
    """
    tables = list(iter_events(root, columns, batches, filter_episodes, committed_only, snap))
    if not tables:
        cols = list(columns) if columns is not None else EVENT_SCHEMA.names
        return pa.schema([EVENT_SCHEMA.field(c) for c in cols]).empty_table()
    return pa.concat_tables(tables, promote_options="default")
