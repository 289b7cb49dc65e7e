"""Schema migrations of the catalog, run through Alembic's operations API when a catalog opens.

The catalog's tables are created and changed only here, revision by revision, on SQLite and
PostgreSQL alike; the revision a database is at lives in Alembic's own `alembic_version` table
(so `alembic current` reads it too). The revisions are plain functions in this module, which
ships inside the package: no script directory or `alembic.ini` is needed, and opening a catalog
(`carve.storage.catalog.Catalog`) brings it to `HEAD` inside one transaction, holding SQLite's
write lock or a PostgreSQL advisory lock, so several processes opening one catalog at once
migrate it exactly once.

A catalog written before migrations existed (Carve 0.2's `catalog.sqlite`, tables made by
`CREATE TABLE IF NOT EXISTS`, no `alembic_version`) is revision 0001 with its rows: 0001 creates
only the tables and indexes that are missing, and the later revisions upgrade it in place.

Revisions (never edit one that has shipped; add the next):

    0001  datasets, episodes, jobs, runs, versions (the schema of Carve 0.2)
    0002  versions.state (`claimed` | `complete`: a version number is claimed in the catalog
          before its files are written), carve_meta (the root a catalog belongs to), an index
          on jobs(source_uri, state)
    0003  parts (one row per events part file: path, batch, dataset, rows, bytes, created_at,
          state `live` | `compacted`, compacted_at) and episodes.part (the part file holding the
          episode's events; NULL for episodes written before 0003, read by their batch)
    0004  flags: analysts' review flags on events (kind, note, who, when; cleared, never
          deleted: the audit trail), see storage/flags.py
    0005  jobs.kind (`run` | `export`: what the service's one job runner starts) and
          jobs.params (the options of a kind other than `run`, JSON)
    0006  defects: the quality gate's findings per episode (kind, severity, frame span, detail;
          storage/defects.py), replaced when the episode is ingested again
    0007  episodes.source_file, episodes.source_key: where the episode lives inside its source
          (`ingest.sources.base.provenance`)
    0008  api_keys (per-user service keys: name, role, sha256 of the secret, created, last
          used, revoked; storage/access.py), audit_log (every state-changing service request:
          user, role, time, route, outcome) and jobs.submitted_by (who started a job: only they
          or an admin may cancel it)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from carve.core.errors import CarveError

VERSION_TABLE = sa.Table(  # Alembic's version table, as Alembic itself defines it
    "alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32), primary_key=True)
)
PG_LOCK_KEY = 0x43415256_45000001  # pg_advisory_xact_lock key held while migrating ("CARVE", 1)


class CatalogError(CarveError):
    """A catalog that cannot be opened or reached; the message names it (no password) and why."""


@dataclass(frozen=True)
class Revision:
    id: str
    down: str | None
    doc: str
    upgrade: Callable[[Operations, sa.Connection], None]


def _tables(conn: sa.Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _indexes(conn: sa.Connection, table: str) -> set[str]:
    return {str(i["name"]) for i in sa.inspect(conn).get_indexes(table)}


def _r0001(op: Operations, conn: sa.Connection) -> None:
    have = _tables(conn)
    if "datasets" not in have:
        op.create_table(
            "datasets",
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("source_uri", sa.Text, nullable=False),
            sa.Column("format", sa.Text, nullable=False),
            sa.Column("created_at", sa.Double, nullable=False),
        )
    if "episodes" not in have:
        op.create_table(
            "episodes",
            sa.Column("episode_id", sa.Text, primary_key=True),
            sa.Column("dataset", sa.Text, nullable=False),
            sa.Column("episode_index", sa.Integer, nullable=False),
            sa.Column("source_uri", sa.Text, nullable=False),
            sa.Column("fingerprint", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),  # ok | failed
            sa.Column("error", sa.Text),
            sa.Column("num_events", sa.Integer, nullable=False, server_default="0"),
            sa.Column("batch", sa.Text),  # events/<batch>/ holding this episode's events
            sa.Column("job_id", sa.Text),
            sa.Column("updated_at", sa.Double, nullable=False),
        )
    if "episodes_dataset" not in _indexes(conn, "episodes"):
        op.create_index("episodes_dataset", "episodes", ["dataset", "status"])
    if "jobs" not in have:
        op.create_table(
            "jobs",
            sa.Column("id", sa.Text, primary_key=True),
            sa.Column("source_uri", sa.Text, nullable=False),
            sa.Column("format", sa.Text, nullable=False),
            sa.Column("overrides", sa.Text, nullable=False, server_default="{}"),
            sa.Column("state", sa.Text, nullable=False),
            sa.Column("stage", sa.Text),
            sa.Column("progress", sa.Text, nullable=False, server_default="{}"),
            sa.Column("error", sa.Text),
            sa.Column("pid", sa.Integer),
            sa.Column("owner", sa.Text),
            sa.Column("heartbeat", sa.Double),
            sa.Column("created_at", sa.Double, nullable=False),
            sa.Column("updated_at", sa.Double, nullable=False),
        )
    if "jobs_state" not in _indexes(conn, "jobs"):
        op.create_index("jobs_state", "jobs", ["state"])
    if "runs" not in have:
        op.create_table(
            "runs",
            sa.Column("batch", sa.Text, primary_key=True),
            sa.Column("dataset", sa.Text, nullable=False),
            sa.Column("job_id", sa.Text),
            sa.Column("seconds", sa.Double, nullable=False),
            sa.Column("summary", sa.Text, nullable=False),  # JSON: counts, failures and per-step stats
            sa.Column("created_at", sa.Double, nullable=False),
        )
    if "versions" not in have:
        op.create_table(
            "versions",
            sa.Column("kind", sa.Text, primary_key=True),  # clusters | shards
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("meta", sa.Text, nullable=False, server_default="{}"),
            sa.Column("created_at", sa.Double, nullable=False),
        )


def _r0002(op: Operations, conn: sa.Connection) -> None:
    op.add_column("versions", sa.Column("state", sa.Text, nullable=False, server_default="complete"))
    op.create_table(
        "carve_meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("jobs_source_state", "jobs", ["source_uri", "state"])


def _r0003(op: Operations, conn: sa.Connection) -> None:
    op.create_table(
        "parts",
        sa.Column("path", sa.Text, primary_key=True),  # relative to the root: events/batch=<id>/part-*.parquet
        sa.Column("batch", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="live"),  # live | compacted
        sa.Column("compacted_at", sa.Double),
    )
    op.create_index("parts_batch", "parts", ["batch", "state"])
    op.add_column("episodes", sa.Column("part", sa.Text))
    op.create_index("episodes_part", "episodes", ["part"])


def _r0004(op: Operations, conn: sa.Connection) -> None:
    op.create_table(
        "flags",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("episode_id", sa.Text),
        sa.Column("dataset", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),  # wrong_boundary | wrong_caption | bad_episode
        sa.Column("note", sa.Text),
        sa.Column("who", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("state", sa.Text, nullable=False),  # active | cleared
        sa.Column("cleared_by", sa.Text),
        sa.Column("cleared_at", sa.Double),
    )
    op.create_index("flags_event", "flags", ["event_id"])
    op.create_index("flags_dataset_state", "flags", ["dataset", "state"])


def _r0005(op: Operations, conn: sa.Connection) -> None:
    op.add_column("jobs", sa.Column("kind", sa.Text, nullable=False, server_default="run"))
    op.add_column("jobs", sa.Column("params", sa.Text))


def _r0006(op: Operations, conn: sa.Connection) -> None:
    op.create_table(
        "defects",
        sa.Column("episode_id", sa.Text, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),  # error | warning
        sa.Column("start_frame", sa.Integer, nullable=False),
        sa.Column("end_frame", sa.Integer, nullable=False),  # inclusive
        sa.Column("detail", sa.Text),
        sa.Column("batch", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_index("defects_episode", "defects", ["episode_id"])
    op.create_index("defects_dataset_kind", "defects", ["dataset", "kind"])


def _r0007(op: Operations, conn: sa.Connection) -> None:
    op.add_column("episodes", sa.Column("source_file", sa.Text))
    op.add_column("episodes", sa.Column("source_key", sa.Text))


def _r0008(op: Operations, conn: sa.Connection) -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),  # the key's public id (the part after "carve_")
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),  # viewer | analyst | engineer | admin
        sa.Column("hash", sa.Text, nullable=False),  # sha256 hex of the key's secret part
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("created_by", sa.Text),
        sa.Column("last_used_at", sa.Double),
        sa.Column("revoked_at", sa.Double),
        sa.Column("revoked_by", sa.Text),
    )
    op.create_index("api_keys_name", "api_keys", ["name"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("username", sa.Text),  # NULL: the request was not authenticated
        sa.Column("role", sa.Text),
        sa.Column("via", sa.Text),  # key | token | proxy | cli
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("route", sa.Text, nullable=False),  # the route's template, e.g. /jobs/{job_id}/cancel
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("target", sa.Text),  # the job, flag or key acted on
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),  # ok | refused | unauthenticated | error
        sa.Column("client", sa.Text),
    )
    op.create_index("audit_log_at", "audit_log", ["at"])
    op.add_column("jobs", sa.Column("submitted_by", sa.Text))


REVISIONS: tuple[Revision, ...] = (
    Revision("0001", None, "datasets, episodes, jobs, runs, versions (Carve 0.2)", _r0001),
    Revision("0002", "0001", "versions.state, carve_meta, jobs(source_uri, state)", _r0002),
    Revision("0003", "0002", "parts, episodes.part", _r0003),
    Revision("0004", "0003", "flags (review flags on events, with their audit trail)", _r0004),
    Revision("0005", "0004", "jobs.kind, jobs.params (export jobs in the one job runner)", _r0005),
    Revision("0006", "0005", "defects (the quality gate's findings per episode)", _r0006),
    Revision("0007", "0006", "episodes.source_file, episodes.source_key (provenance)", _r0007),
    Revision("0008", "0007", "api_keys, audit_log, jobs.submitted_by (users and roles of the service)", _r0008),
)
HEAD = REVISIONS[-1].id


def current_revision(conn: sa.Connection) -> str | None:
    """The revision the database on `conn` is at (None: no catalog yet, or one from before migrations)."""
    return MigrationContext.configure(conn).get_current_revision()


def pending(current: str | None, where: str = "catalog") -> list[Revision]:
    """The revisions to apply after `current`; a revision this code does not know is an error."""
    ids = [r.id for r in REVISIONS]
    if current is None:
        return list(REVISIONS)
    if current not in ids:
        raise CatalogError(
            f"{where} is at schema revision {current}, which this Carve does not know (it knows up to {HEAD}); "
            "it was written by a newer Carve: upgrade Carve"
        )
    return list(REVISIONS[ids.index(current) + 1 :])


def upgrade(conn: sa.Connection, where: str = "catalog") -> list[str]:
    """Bring the database on `conn` to HEAD inside the caller's transaction (which must hold the
    migration lock); return the ids of the revisions applied."""
    ctx = MigrationContext.configure(conn)
    todo = pending(ctx.get_current_revision(), where)
    if not todo:
        return []
    op = Operations(ctx)
    for rev in todo:
        rev.upgrade(op, conn)
    VERSION_TABLE.create(conn, checkfirst=True)
    conn.execute(VERSION_TABLE.delete())
    conn.execute(VERSION_TABLE.insert().values(version_num=HEAD))
    return [r.id for r in todo]
