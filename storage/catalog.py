"""The SQLite catalog at `<root>/catalog.sqlite`: episodes, jobs, datasets and versions.

It records, per episode, its fingerprint, status (`ok`, `failed`) and error, and which
ingest batch holds its events, so that a re-run skips finished episodes and a bad one is
quarantined with its reason. Jobs of the HTTP service live here too. The database runs in
WAL mode with a busy timeout so that several processes (two servers, a job subprocess) can
share it; every write is one short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carve.core.errors import CarveError

if TYPE_CHECKING:
    from carve.storage.root import Root

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    source_uri TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS episodes (
    episode_id TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    episode_index INTEGER NOT NULL,
    source_uri TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,            -- ok | failed
    error TEXT,
    num_events INTEGER NOT NULL DEFAULT 0,
    batch TEXT,                      -- events/<batch>/ holding this episode's events
    job_id TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_dataset ON episodes(dataset, status);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    source_uri TEXT NOT NULL,
    format TEXT NOT NULL,
    overrides TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,             -- queued | running | succeeded | failed | cancelled | resumable
    stage TEXT,
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    pid INTEGER,
    owner TEXT,
    heartbeat REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS runs (
    batch TEXT PRIMARY KEY,          -- the ingest batch a `carve run` wrote
    dataset TEXT NOT NULL,
    job_id TEXT,
    seconds REAL NOT NULL,
    summary TEXT NOT NULL,           -- JSON: counts, failures and per-step stats
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    kind TEXT NOT NULL,              -- clusters | shards
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    PRIMARY KEY (kind, version)
);
"""

ACTIVE_JOB_STATES = ("queued", "running")


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


class Catalog:
    """Thin, process-safe access to `catalog.sqlite`. Open one per thread/process."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "catalog.sqlite"
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    @classmethod
    def for_root(cls, root: Root) -> Catalog:
        """The catalog of an opened root (SQLite at `<root>/catalog.sqlite`)."""
        if not root.is_local:
            raise CarveError(
                f"root {root.uri}: the embedded SQLite catalog needs a local root directory; "
                "an object-store root needs a catalog server"
            )
        return cls(root.base)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # -- datasets -----------------------------------------------------------------
    def upsert_dataset(self, name: str, source_uri: str, fmt: str) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO datasets(name, source_uri, format, created_at) VALUES (?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET source_uri=excluded.source_uri, format=excluded.format",
                (name, source_uri, fmt, time.time()),
            )

    def datasets(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT d.name, d.source_uri, d.format, d.created_at, "
            "SUM(e.status='ok') AS ok, SUM(e.status='failed') AS failed, "
            "COALESCE(SUM(CASE WHEN e.status='ok' THEN e.num_events END), 0) AS events "
            "FROM datasets d LEFT JOIN episodes e ON e.dataset = d.name GROUP BY d.name ORDER BY d.name"
        ).fetchall()
        return [
            {**dict(r), "ok": int(r["ok"] or 0), "failed": int(r["failed"] or 0), "events": int(r["events"] or 0)}
            for r in rows
        ]

    def dataset(self, name: str) -> dict[str, Any] | None:
        return next((d for d in self.datasets() if d["name"] == name), None)

    # -- episodes -----------------------------------------------------------------
    def finished_fingerprints(self, dataset: str) -> dict[str, str]:
        """episode_id -> fingerprint of episodes already ingested successfully."""
        rows = self._conn.execute(
            "SELECT episode_id, fingerprint FROM episodes WHERE dataset=? AND status='ok'", (dataset,)
        ).fetchall()
        return {r["episode_id"]: r["fingerprint"] for r in rows}

    def record_episodes(self, records: list[dict[str, Any]], job_id: str | None = None) -> None:
        """Insert or replace episode records (keys: episode_id, dataset, episode_index,
        source_uri, fingerprint, status, error, num_events, batch) in one transaction."""
        now = time.time()
        with self._tx() as c:
            c.executemany(
                "INSERT INTO episodes(episode_id, dataset, episode_index, source_uri, fingerprint, status, error,"
                " num_events, batch, job_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(episode_id) DO UPDATE SET fingerprint=excluded.fingerprint, status=excluded.status,"
                " error=excluded.error, num_events=excluded.num_events, batch=excluded.batch,"
                " job_id=excluded.job_id, updated_at=excluded.updated_at, source_uri=excluded.source_uri",
                [
                    (
                        r["episode_id"],
                        r["dataset"],
                        int(r["episode_index"]),
                        r["source_uri"],
                        r.get("fingerprint", ""),
                        r["status"],
                        r.get("error"),
                        int(r.get("num_events", 0)),
                        r.get("batch"),
                        job_id,
                        now,
                    )
                    for r in records
                ],
            )

    def episodes(self, dataset: str | None = None, status: str | None = None) -> list[EpisodeRecord]:
        q = "SELECT * FROM episodes WHERE 1=1"
        args: list[Any] = []
        if dataset is not None:
            q += " AND dataset=?"
            args.append(dataset)
        if status is not None:
            q += " AND status=?"
            args.append(status)
        q += " ORDER BY dataset, episode_index"
        return [
            EpisodeRecord(
                episode_id=r["episode_id"],
                dataset=r["dataset"],
                episode_index=r["episode_index"],
                source_uri=r["source_uri"],
                fingerprint=r["fingerprint"],
                status=r["status"],
                error=r["error"],
                num_events=r["num_events"],
                batch=r["batch"],
            )
            for r in self._conn.execute(q, args).fetchall()
        ]

    def ok_batches(self, dataset: str | None = None) -> list[str]:
        """Event batches that hold at least one successfully ingested episode."""
        q = "SELECT DISTINCT batch FROM episodes WHERE status='ok' AND batch IS NOT NULL"
        args: list[Any] = []
        if dataset is not None:
            q += " AND dataset=?"
            args.append(dataset)
        return sorted(r["batch"] for r in self._conn.execute(q, args).fetchall())

    # -- jobs ---------------------------------------------------------------------
    def create_job(self, source_uri: str, fmt: str, overrides: dict[str, Any] | None = None) -> str:
        job_id = uuid.uuid4().hex[:16]
        now = time.time()
        with self._tx() as c:
            c.execute(
                "INSERT INTO jobs(id, source_uri, format, overrides, state, progress, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (job_id, source_uri, fmt, json.dumps(overrides or {}), "queued", "{}", now, now),
            )
        return job_id

    def create_job_if_idle(self, source_uri: str, fmt: str, overrides: dict[str, Any] | None = None) -> tuple[str, bool]:
        """Create a job unless one is already active for the same source; returns (id, created)."""
        now = time.time()
        with self._tx() as c:
            row = c.execute(
                "SELECT id FROM jobs WHERE source_uri=? AND state IN ('queued','running') ORDER BY created_at LIMIT 1",
                (source_uri,),
            ).fetchone()
            if row is not None:
                return row["id"], False
            job_id = uuid.uuid4().hex[:16]
            c.execute(
                "INSERT INTO jobs(id, source_uri, format, overrides, state, progress, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (job_id, source_uri, fmt, json.dumps(overrides or {}), "queued", "{}", now, now),
            )
            return job_id, True

    def update_job(self, job_id: str, **fields: Any) -> None:
        allowed = {"state", "stage", "progress", "error", "pid", "owner", "heartbeat"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown job fields {sorted(bad)}")
        if "progress" in fields and not isinstance(fields["progress"], str):
            fields["progress"] = json.dumps(fields["progress"])
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._tx() as c:
            c.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def job(self, job_id: str) -> dict[str, Any] | None:
        r = self._conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job_dict(r) if r else None

    def jobs(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if state:
            rows = self._conn.execute(
                "SELECT * FROM jobs WHERE state=? ORDER BY created_at DESC LIMIT ?", (state, limit)
            ).fetchall()
        else:
            rows = self._conn.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_job_dict(r) for r in rows]

    _UNSET: Any = object()

    def transition_job(
        self, job_id: str, from_states: tuple[str, ...], expect_owner: Any = _UNSET, **fields: Any
    ) -> bool:
        """Compare-and-set a job: update `fields` only if its state is in `from_states` (and, if
        given, its owner is `expect_owner`). True if the row changed. Two servers sharing one
        catalog use this so that only one of them starts, adopts, cancels or finishes a job."""
        allowed = {"state", "stage", "progress", "error", "pid", "owner", "heartbeat"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown job fields {sorted(bad)}")
        if not from_states:
            raise ValueError("transition_job needs at least one from_state")
        if "progress" in fields and not isinstance(fields["progress"], str):
            fields["progress"] = json.dumps(fields["progress"])
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k}=?" for k in fields)
        where = f"id=? AND state IN ({','.join('?' * len(from_states))})"
        args: list[Any] = [*fields.values(), job_id, *from_states]
        if expect_owner is not Catalog._UNSET:
            if expect_owner is None:
                where += " AND owner IS NULL"
            else:
                where += " AND owner=?"
                args.append(expect_owner)
        with self._tx() as c:
            cur = c.execute(f"UPDATE jobs SET {cols} WHERE {where}", args)
            return cur.rowcount == 1

    def job_episodes(self, job_id: str, max_failures: int = 200) -> dict[str, Any]:
        """What a job ingested: its datasets, ok/failed episode counts and the failures with reasons."""
        rows = self._conn.execute(
            "SELECT dataset, status, COUNT(*) AS n FROM episodes WHERE job_id=? GROUP BY dataset, status", (job_id,)
        ).fetchall()
        fails = self._conn.execute(
            "SELECT episode_id, dataset, episode_index, error FROM episodes WHERE job_id=? AND status='failed'"
            " ORDER BY dataset, episode_index LIMIT ?",
            (job_id, max_failures),
        ).fetchall()
        return {
            "datasets": sorted({r["dataset"] for r in rows}),
            "ok": sum(int(r["n"]) for r in rows if r["status"] == "ok"),
            "failed": sum(int(r["n"]) for r in rows if r["status"] == "failed"),
            "failures": [dict(r) for r in fails],
        }

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check of the catalog file."""
        row = self._conn.execute("PRAGMA integrity_check").fetchone()
        return bool(row) and row[0] == "ok"

    # -- versions -----------------------------------------------------------------
    def record_version(self, kind: str, version: int, path: str, meta: dict[str, Any] | None = None) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO versions(kind, version, path, meta, created_at) VALUES (?,?,?,?,?)",
                (kind, int(version), path, json.dumps(meta or {}), time.time()),
            )

    # -- runs -------------------------------------------------------------------------
    def record_run(self, batch: str, dataset: str, job_id: str | None, seconds: float,
                   summary: dict[str, Any]) -> None:
        """Keep what one `carve run` did (per-step stats included) for the report and `carve status`."""
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs (batch, dataset, job_id, seconds, summary, created_at) VALUES (?,?,?,?,?,?)",
                (batch, dataset, job_id, float(seconds), json.dumps(summary), time.time()),
            )

    def runs(self, dataset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs first, each with its decoded summary."""
        q, args = "SELECT * FROM runs", []
        if dataset is not None:
            q += " WHERE dataset = ?"
            args.append(dataset)
        rows = self._conn.execute(q + " ORDER BY created_at DESC LIMIT ?", [*args, limit]).fetchall()
        return [{**dict(r), "summary": json.loads(r["summary"])} for r in rows]

    def versions(self, kind: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT * FROM versions WHERE kind=? ORDER BY version", (kind,)
        ).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"])} for r in rows]


def _job_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["overrides"] = json.loads(d.get("overrides") or "{}")
    d["progress"] = json.loads(d.get("progress") or "{}")
    return d
