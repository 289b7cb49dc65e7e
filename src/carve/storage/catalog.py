"""The catalog: datasets, episodes, jobs, runs and versions, in SQLite or PostgreSQL.

It records, per episode, its fingerprint, status (`ok`, `failed`) and error, and which
ingest batch holds its events, so that a re-run skips finished episodes and a bad one is
quarantined with its reason. Jobs of the HTTP service live here too, and the version numbers
of clusterings and shard sets are claimed here (`claim_version`), so two processes never
write the same version, on a local disk or an object store.

Backends, by SQLAlchemy URL (SQLAlchemy Core; the schema is `carve.storage.migrations`,
applied when a catalog opens):

* `sqlite:///<path>`: the embedded default, `<root>/catalog.sqlite` of a local root. WAL mode
  with a busy timeout, so several processes (two servers, a job subprocess) share it; a write
  is one short `BEGIN IMMEDIATE` transaction.
* `postgresql+psycopg://user:password@host:5432/db` (psycopg 3; `postgresql://` means the
  same): for clusters, object-store roots and several service replicas. Writes are short
  transactions; a compare-and-set (`transition_job`) is one conditional UPDATE, and
  `create_job_if_idle` holds a transaction-scoped advisory lock on its source.

Which URL a root uses: `catalog_url_for` (explicit `catalog.url`, else `CARVE_CATALOG_URL`,
else the SQLite file of a local root). A catalog on a server belongs to one root: the first
root that opens it is recorded (`carve_meta`) and another root is refused, so two roots never
mix their episodes in one database. A `Catalog` is safe to share between threads (each call
takes a pooled connection); connection failures raise `CatalogError` naming the database
(password hidden) and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from carve.core import env
from carve.storage import migrations
from carve.storage.fs import split_query
from carve.storage.layout import RootLayout
from carve.storage.migrations import CatalogError

if TYPE_CHECKING:
    from carve.storage.root import Root

CATALOG_ENV = env.CATALOG_URL
SQLITE_NAME = RootLayout.CATALOG
ACTIVE_JOB_STATES = ("queued", "running")
__all__ = ["ACTIVE_JOB_STATES", "CATALOG_ENV", "Catalog", "CatalogError", "EpisodeRecord", "catalog_url_for"]
_JOB_FIELDS = {"state", "stage", "progress", "error", "pid", "owner", "heartbeat"}

# -- tables (as migrations.HEAD leaves them; the DDL itself is in migrations.py) ------------------
_md = sa.MetaData()
DATASETS = sa.Table(
    "datasets", _md,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("source_uri", sa.Text, nullable=False),
    sa.Column("format", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)
EPISODES = sa.Table(
    "episodes", _md,
    sa.Column("episode_id", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("episode_index", sa.Integer, nullable=False),
    sa.Column("source_uri", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("num_events", sa.Integer, nullable=False),
    sa.Column("batch", sa.Text),
    sa.Column("job_id", sa.Text),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("part", sa.Text),  # the part file holding its events (storage/parts.py); NULL before 0003
    sa.Column("source_file", sa.Text),  # where it lives in its source (revision 0007; NULL before)
    sa.Column("source_key", sa.Text),
)
JOBS = sa.Table(
    "jobs", _md,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("source_uri", sa.Text, nullable=False),
    sa.Column("format", sa.Text, nullable=False),
    sa.Column("overrides", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("stage", sa.Text),
    sa.Column("progress", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("owner", sa.Text),
    sa.Column("heartbeat", sa.Double),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("kind", sa.Text, nullable=False, server_default="run"),  # run | export (revision 0005)
    sa.Column("params", sa.Text),  # JSON options of a non-run job (an export's request)
    sa.Column("submitted_by", sa.Text),  # the service user who started it (revision 0008; NULL: CLI or older)
)
RUNS = sa.Table(
    "runs", _md,
    sa.Column("batch", sa.Text, primary_key=True),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("job_id", sa.Text),
    sa.Column("seconds", sa.Double, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
)
VERSIONS = sa.Table(
    "versions", _md,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # claimed | complete
)
META = sa.Table(
    "carve_meta", _md,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass
class EpisodeRecord:
    episode_id: str
    dataset: str
    episode_index: int
    source_uri: str
    fingerprint: str
    status: str
    error: str | None
    num_events: int
    batch: str | None


# -- which database -----------------------------------------------------------------------------
def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{os.path.abspath(path)}"


def root_identity(root: Root) -> str:
    """How a catalog names the root it belongs to: the local path, or `scheme://bucket/prefix`."""
    return split_query(root.uri_of(root.base))[0]


def catalog_url_for(root: Root, explicit: str | None = None) -> str | None:
    """The catalog URL of `root`: `explicit`, else `CARVE_CATALOG_URL`, else `<root>/catalog.sqlite`
    for a local root; None for an object-store root without one."""
    url = explicit or env.catalog_url()
    if url:
        return url
    return sqlite_url(Path(root.base) / SQLITE_NAME) if root.is_local else None


def _normalize(url: str) -> sa.URL:
    try:
        u = make_url(url)
    except sa.exc.ArgumentError as e:
        raise CatalogError(f"catalog URL {url!r} is not a database URL ({e}); "
                           "use sqlite:////path/catalog.sqlite or postgresql+psycopg://user@host:5432/db") from None
    backend = u.get_backend_name()
    if backend == "postgresql" and u.get_driver_name() in ("psycopg2", "psycopg", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise CatalogError(f"catalog {u.render_as_string(hide_password=True)}: unsupported database {backend!r}; "
                           "use sqlite:///... or postgresql+psycopg://...")
    if backend == "sqlite" and (not u.database or u.database == ":memory:"):
        raise CatalogError(f"catalog {url!r}: a SQLite catalog must be a file (sqlite:////path/catalog.sqlite)")
    return u


def _sqlite_engine(u: sa.URL) -> sa.Engine:
    Path(u.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(u, connect_args={"timeout": 30.0, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver never opens transactions; "begin" below does
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # writers take the write lock up front (no deadlocking lock upgrades); readers a snapshot
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("carve_write") else "BEGIN")

    return engine


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for `parts`."""
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big", signed=True)


class Catalog:
    """Access to one catalog database (module doc). Thread-safe; `close()` releases its connections.

    `Catalog(root_dir)` is the catalog of a local root directory (`CARVE_CATALOG_URL`, else its
    `catalog.sqlite`); `Catalog(url=...)` a database by URL; `Catalog.for_root(root)` the
    catalog of an opened root."""

    def __init__(self, root: str | Path | None = None, *, url: str | None = None, root_id: str | None = None):
        if url is None:
            if root is None:
                raise ValueError("Catalog needs a local root directory or a database url")
            url = env.catalog_url()
            if url is not None and root_id is None:
                root_id = os.path.abspath(root)
            url = url or sqlite_url(Path(root) / SQLITE_NAME)
        u = _normalize(url)
        self.backend: str = u.get_backend_name()
        self.url: str = u.render_as_string(hide_password=True)  # printable: no password
        self.path: Path | None = Path(u.database or "") if self.backend == "sqlite" else None
        self.root = Path(root) if root is not None else None
        if self.backend == "sqlite":
            self.engine = _sqlite_engine(u)
            # the catalog file inside its root belongs to that root by where it is
            if self.path is not None and root_id is not None and self.path.parent == Path(root_id):
                root_id = None
        else:
            self.engine = sa.create_engine(u, pool_pre_ping=True, pool_size=4, max_overflow=8)
        self._closed = threading.Event()
        try:
            self._open(root_id)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def for_root(cls, root: Root) -> Catalog:
        """The catalog of an opened root (`root.catalog_url`; see `catalog_url_for`)."""
        url = root.catalog_url
        if url is None:
            raise CatalogError(
                f"root {root.uri}: an object-store root has no embedded catalog; set catalog.url or "
                f"{CATALOG_ENV} to a PostgreSQL URL (postgresql+psycopg://user:password@host:5432/carve), "
                "or to a SQLite file on a local disk (sqlite:////var/lib/carve/catalog.sqlite) if only this "
                "machine uses the root"
            )
        return cls(url=url, root_id=root_identity(root))

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections ------------------------------------------------------------------------------
    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:300]
            raise CatalogError(f"catalog {self.url}: {reason}") from e

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on success."""
        with self._errors(), self.engine.connect() as c:
            c.execution_options(carve_write=True)
            with c.begin():
                yield c

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as c:
            yield c

    def transaction(self) -> Any:
        """One write transaction (a context manager yielding the connection), for bookkeeping kept
        beside these tables in other modules (storage/parts.py)."""
        return self._tx()

    def reading(self) -> Any:
        """A read connection (context manager), for other modules' queries (storage/parts.py)."""
        return self._read()

    def _insert(self, table: sa.Table) -> Any:
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _upsert(self, table: sa.Table, keys: list[str], update: list[str]) -> Any:
        stmt = self._insert(table)
        return stmt.on_conflict_do_update(index_elements=keys, set_={k: stmt.excluded[k] for k in update})

    def _open(self, root_id: str | None) -> None:
        """Migrate to migrations.HEAD (once, under a lock) and check which root the catalog belongs to."""
        with self._read() as c:
            rev = migrations.current_revision(c)
            bound = self._bound_root(c) if rev == migrations.HEAD else None
        if rev == migrations.HEAD and (root_id is None or bound == root_id):
            return
        migrations.pending(rev, f"catalog {self.url}")  # a newer schema: refuse before locking
        with self._tx() as c:
            if self.backend == "postgresql":
                c.execute(sa.select(sa.func.pg_advisory_xact_lock(migrations.PG_LOCK_KEY)))
            migrations.upgrade(c, f"catalog {self.url}")
            if root_id is None:
                return
            bound = self._bound_root(c)
            if bound is None:
                c.execute(META.insert().values(key="root", value=root_id))
            elif bound != root_id:
                raise CatalogError(
                    f"catalog {self.url} belongs to root {bound}, not {root_id}: give every root its own "
                    f"database (if the root moved, update it: UPDATE carve_meta SET value='{root_id}' "
                    "WHERE key='root')"
                )

    @staticmethod
    def _bound_root(c: sa.Connection) -> str | None:
        return c.execute(sa.select(META.c.value).where(META.c.key == "root")).scalar_one_or_none()

    # -- datasets -----------------------------------------------------------------
    def upsert_dataset(self, name: str, source_uri: str, fmt: str) -> None:
        with self._tx() as c:
            c.execute(self._upsert(DATASETS, ["name"], ["source_uri", "format"]),
                      {"name": name, "source_uri": source_uri, "format": fmt, "created_at": time.time()})

    def datasets(self) -> list[dict[str, Any]]:
        d, e = DATASETS.c, EPISODES.c

        def total(value: Any) -> Any:
            return sa.func.coalesce(sa.func.sum(sa.case((e.status == "ok", value), else_=0)), 0)

        failed = sa.func.coalesce(sa.func.sum(sa.case((e.status == "failed", 1), else_=0)), 0)
        q = (
            sa.select(d.name, d.source_uri, d.format, d.created_at, total(1).label("ok"),
                      failed.label("failed"), total(e.num_events).label("events"))
            .select_from(DATASETS.outerjoin(EPISODES, e.dataset == d.name))
            .group_by(d.name, d.source_uri, d.format, d.created_at)
            .order_by(d.name)
        )
        with self._read() as c:
            rows = c.execute(q).mappings().all()
        return [{**dict(r), "ok": int(r["ok"] or 0), "failed": int(r["failed"] or 0), "events": int(r["events"] or 0)}
                for r in rows]

    def dataset(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.datasets() if d["name"] == name), None)

    # -- episodes -----------------------------------------------------------------
    def finished_fingerprints(self, dataset: str) -> dict[str, str]:
        """episode_id -> fingerprint of episodes already ingested successfully."""
        e = EPISODES.c
        with self._read() as c:
            rows = c.execute(sa.select(e.episode_id, e.fingerprint).where(e.dataset == dataset, e.status == "ok"))
            return {r.episode_id: r.fingerprint for r in rows}

    def record_episodes(self, records: list[dict[str, Any]], job_id: str | None = None,
                        conn: sa.Connection | None = None) -> None:
        """Insert or replace episode records (keys: episode_id, dataset, episode_index,
        source_uri, fingerprint, status, error, num_events, batch, optional part) in one
        transaction (the caller's `conn`, if given: storage/parts.py commits a block with it)."""
        if not records:
            return
        now = time.time()
        rows = [
            {
                "episode_id": r["episode_id"], "dataset": r["dataset"], "episode_index": int(r["episode_index"]),
                "source_uri": r["source_uri"], "fingerprint": r.get("fingerprint", ""), "status": r["status"],
                "error": r.get("error"), "num_events": int(r.get("num_events", 0)), "batch": r.get("batch"),
                "job_id": job_id, "updated_at": now, "part": r.get("part") or None,
                "source_file": r.get("source_file"), "source_key": r.get("source_key"),
            }
            for r in records
        ]
        stmt = self._upsert(EPISODES, ["episode_id"], ["fingerprint", "status", "error", "num_events", "batch",
                                                       "job_id", "updated_at", "source_uri", "part", "source_file",
                                                       "source_key"])
        if conn is not None:
            conn.execute(stmt, rows)
            return
        with self._tx() as c:
            c.execute(stmt, rows)

    def episodes(self, dataset: str | None = None, status: str | None = None) -> list[EpisodeRecord]:
        e = EPISODES.c
        q = sa.select(e.episode_id, e.dataset, e.episode_index, e.source_uri, e.fingerprint, e.status, e.error,
                      e.num_events, e.batch)
        if dataset is not None:
            q = q.where(e.dataset == dataset)
        if status is not None:
            q = q.where(e.status == status)
        with self._read() as c:
            rows = c.execute(q.order_by(e.dataset, e.episode_index)).mappings().all()
        return [EpisodeRecord(**dict(r)) for r in rows]

    def ok_batches(self, dataset: str | None = None) -> list[str]:
        """Event batches that hold at least one successfully ingested episode."""
        e = EPISODES.c
        q = sa.select(e.batch).distinct().where(e.status == "ok", e.batch.is_not(None))
        if dataset is not None:
            q = q.where(e.dataset == dataset)
        with self._read() as c:
            return sorted(c.execute(q).scalars())

    # -- jobs ---------------------------------------------------------------------
    @staticmethod
    def _new_job(source_uri: str, fmt: str, overrides: dict[str, Any] | None, kind: str = "run",
                 params: dict[str, Any] | None = None, submitted_by: str | None = None) -> dict[str, Any]:
        now = time.time()
        return {"id": uuid.uuid4().hex[:16], "source_uri": source_uri, "format": fmt,
                "overrides": json.dumps(overrides or {}), "state": "queued", "progress": "{}",
                "created_at": now, "updated_at": now, "kind": kind,
                "params": json.dumps(params) if params is not None else None, "submitted_by": submitted_by}

    def create_job(self, source_uri: str, fmt: str, overrides: dict[str, Any] | None = None, *, kind: str = "run",
                   params: dict[str, Any] | None = None) -> str:
        """A queued job: `kind` run (`source_uri` the dataset, `fmt` its format) or export
        (`source_uri` the output folder, `params` the export's options)."""
        row = self._new_job(source_uri, fmt, overrides, kind, params)
        with self._tx() as c:
            c.execute(JOBS.insert().values(**row))
        return row["id"]

    def create_job_if_idle(self, source_uri: str, fmt: str, overrides: dict[str, Any] | None = None, *,
                           kind: str = "run", params: dict[str, Any] | None = None,
                           submitted_by: str | None = None) -> tuple[str, bool]:
        """Create a job unless one is already active for the same source (an export's output
        folder); returns (id, created); `submitted_by` is the service user starting it. Atomic
        across processes: SQLite's write lock, or a PostgreSQL advisory lock on the source."""
        j = JOBS.c
        with self._tx() as c:
            if self.backend == "postgresql":
                c.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key("carve.jobs", source_uri))))
            active = c.execute(
                sa.select(j.id).where(j.source_uri == source_uri, j.state.in_(ACTIVE_JOB_STATES))
                .order_by(j.created_at).limit(1)
            ).scalar_one_or_none()
            if active is not None:
                return active, False
            row = self._new_job(source_uri, fmt, overrides, kind, params, submitted_by)
            c.execute(JOBS.insert().values(**row))
            return row["id"], True

    @staticmethod
    def _job_values(fields: dict[str, Any]) -> dict[str, Any]:
        bad = set(fields) - _JOB_FIELDS
        if bad:
            raise ValueError(f"unknown job fields {sorted(bad)}")
        values = dict(fields)
        if "progress" in values and not isinstance(values["progress"], str):
            values["progress"] = json.dumps(values["progress"])
        values["updated_at"] = time.time()
        return values

    def update_job(self, job_id: str, **fields: Any) -> None:
        values = self._job_values(fields)
        with self._tx() as c:
            c.execute(JOBS.update().where(JOBS.c.id == job_id).values(**values))

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._read() as c:
            r = c.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
        return _job_dict(r) if r else None

    def jobs(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(JOBS)
        if state:
            q = q.where(JOBS.c.state == state)
        with self._read() as c:
            rows = c.execute(q.order_by(JOBS.c.created_at.desc()).limit(limit)).mappings().all()
        return [_job_dict(r) for r in rows]

    _UNSET: Any = object()

    def transition_job(
        self, job_id: str, from_states: tuple[str, ...], expect_owner: Any = _UNSET, **fields: Any
    ) -> bool:
        """Compare-and-set a job: update `fields` only if its state is in `from_states` (and, if
        given, its owner is `expect_owner`). True if the row changed. Two servers sharing one
        catalog use this so that only one of them starts, adopts, cancels or finishes a job; it
        is one conditional UPDATE, atomic on SQLite and on PostgreSQL (which re-checks the
        condition on the locked row)."""
        values = self._job_values(fields)
        if not from_states:
            raise ValueError("transition_job needs at least one from_state")
        j = JOBS.c
        cond = [j.id == job_id, j.state.in_(from_states)]
        if expect_owner is not Catalog._UNSET:
            cond.append(j.owner.is_(None) if expect_owner is None else j.owner == expect_owner)
        with self._tx() as c:
            return c.execute(JOBS.update().where(*cond).values(**values)).rowcount == 1

    def job_episodes(self, job_id: str, max_failures: int = 200) -> dict[str, Any]:
        """What a job ingested: its datasets, ok/failed episode counts and the failures with reasons."""
        e = EPISODES.c
        with self._read() as c:
            rows = c.execute(
                sa.select(e.dataset, e.status, sa.func.count().label("n")).where(e.job_id == job_id)
                .group_by(e.dataset, e.status)
            ).all()
            fails = c.execute(
                sa.select(e.episode_id, e.dataset, e.episode_index, e.error)
                .where(e.job_id == job_id, e.status == "failed")
                .order_by(e.dataset, e.episode_index).limit(max_failures)
            ).mappings().all()
        return {
            "datasets": sorted({r.dataset for r in rows}),
            "ok": sum(int(r.n) for r in rows if r.status == "ok"),
            "failed": sum(int(r.n) for r in rows if r.status == "failed"),
            "failures": [dict(r) for r in fails],
        }

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check of the catalog file; on PostgreSQL, that the server answers
        and the schema is at the current revision."""
        with self._read() as c:
            if self.backend == "sqlite":
                row = c.exec_driver_sql("PRAGMA integrity_check").first()
                return bool(row) and row[0] == "ok"
            return migrations.current_revision(c) == migrations.HEAD

    def revision(self) -> str | None:
        """The schema revision of the database (`carve.storage.migrations`)."""
        with self._read() as c:
            return migrations.current_revision(c)

    # -- versions -----------------------------------------------------------------
    def claim_version(self, kind: str, floor: int = 1, path: Callable[[int], str] | None = None) -> int:
        """Claim the next free version number of `kind` (at least `floor`, one more than any
        number claimed or recorded): a `claimed` row is inserted, and the (kind, version)
        primary key makes the claim exclusive across processes and hosts."""
        v_ = VERSIONS.c
        for _ in range(50):
            try:
                with self._tx() as c:
                    top = c.execute(sa.select(sa.func.max(v_.version)).where(v_.kind == kind)).scalar_one_or_none()
                    v = max(int(top or 0) + 1, int(floor))
                    c.execute(VERSIONS.insert().values(kind=kind, version=v, path=path(v) if path else "",
                                                       meta="{}", created_at=time.time(), state="claimed"))
                    return v
            except sa.exc.IntegrityError:  # another process claimed it between our read and insert
                continue
        raise CatalogError(f"catalog {self.url}: could not claim a {kind} version (50 conflicting claims)")

    def record_version(self, kind: str, version: int, path: str, meta: dict[str, Any] | None = None) -> None:
        """Record a finished version (insert, or complete its claim)."""
        with self._tx() as c:
            c.execute(self._upsert(VERSIONS, ["kind", "version"], ["path", "meta", "created_at", "state"]),
                      {"kind": kind, "version": int(version), "path": path, "meta": json.dumps(meta or {}),
                       "created_at": time.time(), "state": "complete"})

    def versions(self, kind: str, include_claimed: bool = False) -> list[dict[str, Any]]:
        """Finished versions of `kind` (kind, version, path, meta, created_at), oldest first; with
        `include_claimed` also the numbers claimed by writes not finished (or abandoned)."""
        v_ = VERSIONS.c
        q = sa.select(v_.kind, v_.version, v_.path, v_.meta, v_.created_at).where(v_.kind == kind)
        if not include_claimed:
            q = q.where(v_.state == "complete")
        with self._read() as c:
            rows = c.execute(q.order_by(v_.version)).mappings().all()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]

    # -- runs -------------------------------------------------------------------------
    def record_run(self, batch: str, dataset: str, job_id: str | None, seconds: float,
                   summary: dict[str, Any]) -> None:
        """Keep what one `carve run` did (per-step stats included) for the report and `carve status`."""
        with self._tx() as c:
            c.execute(self._upsert(RUNS, ["batch"], ["dataset", "job_id", "seconds", "summary", "created_at"]),
                      {"batch": batch, "dataset": dataset, "job_id": job_id, "seconds": float(seconds),
                       "summary": json.dumps(summary), "created_at": time.time()})

    def runs(self, dataset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs first, each with its decoded summary."""
        q = sa.select(RUNS)
        if dataset is not None:
            q = q.where(RUNS.c.dataset == dataset)
        with self._read() as c:
            rows = c.execute(q.order_by(RUNS.c.created_at.desc()).limit(limit)).mappings().all()
        return [{**dict(r), "summary": json.loads(r["summary"])} for r in rows]


def _job_dict(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["overrides"] = json.loads(d.get("overrides") or "{}")
    d["progress"] = json.loads(d.get("progress") or "{}")
    d["kind"] = d.get("kind") or "run"
    d["params"] = json.loads(d["params"]) if d.get("params") else None
    return d
