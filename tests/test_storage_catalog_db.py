"""The catalog as a database: migrations of an old catalog.sqlite, atomic claims across processes on
SQLite and PostgreSQL, which catalog a root gets, and how a bad or unreachable catalog shows."""

from __future__ import annotations

import multiprocessing as mp
import socket
import sqlite3
from pathlib import Path

import pytest

from carve.storage import migrations
from carve.storage.catalog import Catalog, CatalogError
from carve.storage.root import open_root

# The catalog schema of Carve 0.2, before migrations: what an existing catalog.sqlite holds.
OLD_SCHEMA = """
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


def _old_catalog(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "catalog.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(OLD_SCHEMA)
    con.executemany("INSERT INTO datasets VALUES (?,?,?,?)", [("sim", "/data/sim", "lerobot", 1.0)])
    con.executemany(
        "INSERT INTO episodes VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [("sim/000000", "sim", 0, "/data/sim", "fp0", "ok", None, 4, "b1", "j1", 2.0),
         ("sim/000001", "sim", 1, "/data/sim", "fp1", "failed", "video ends at 4.2 s", 0, None, "j1", 2.0)],
    )
    con.execute("INSERT INTO jobs (id, source_uri, format, overrides, state, progress, created_at, updated_at, owner)"
                " VALUES ('j1', '/data/sim', 'auto', '{\"cluster\": {\"k\": 2}}', 'succeeded', '{\"events\": 4}', 3.0,"
                " 4.0, 'host:1:abc')")
    con.execute("INSERT INTO runs VALUES ('b1', 'sim', 'j1', 12.5, '{\"episodes\": 2}', 5.0)")
    con.execute("INSERT INTO versions VALUES ('clusters', 1, '/r/clusters/v001', '{\"k\": 2}', 6.0)")
    con.execute("INSERT INTO versions VALUES ('shards', 1, '/r/shards/v001', '{\"total_rows\": 4}', 7.0)")
    con.commit()
    con.close()
    return path


def test_old_catalog_sqlite_is_migrated_in_place_with_its_rows(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    path = _old_catalog(tmp_path / "root")
    inode = path.stat().st_ino
    with open_root(tmp_path / "root") as root:
        cat = root.catalog
        assert cat.revision() == migrations.HEAD
        (d,) = cat.datasets()
        assert (d["name"], d["source_uri"], d["ok"], d["failed"], d["events"]) == ("sim", "/data/sim", 1, 1, 4)
        assert cat.finished_fingerprints("sim") == {"sim/000000": "fp0"}
        assert [(e.episode_id, e.error) for e in cat.episodes(status="failed")] == [("sim/000001", "video ends at 4.2 s")]
        job = cat.job("j1")
        assert job["overrides"] == {"cluster": {"k": 2}} and job["progress"] == {"events": 4}
        assert job["state"] == "succeeded" and job["owner"] == "host:1:abc"
        assert cat.runs()[0]["summary"] == {"episodes": 2}
        assert [(v["version"], v["meta"]) for v in cat.versions("shards")] == [(1, {"total_rows": 4})]
        # the new revision's features work on the old rows: a claim goes above the recorded version
        assert cat.claim_version("shards") == 2
        assert [v["version"] for v in cat.versions("shards")] == [1]
        assert cat.integrity_ok()
    assert path.stat().st_ino == inode  # the same file, upgraded, not a new one
    con = sqlite3.connect(path)
    assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
    assert {r[1] for r in con.execute("PRAGMA table_info(versions)")} >= {"state"}
    con.close()
    with Catalog(tmp_path / "root") as again:  # opening again migrates nothing
        assert again.revision() == migrations.HEAD and len(again.episodes()) == 2


def test_a_catalog_from_a_newer_carve_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    Catalog(tmp_path).close()
    con = sqlite3.connect(tmp_path / "catalog.sqlite")
    con.execute("UPDATE alembic_version SET version_num='9999'")
    con.commit()
    con.close()
    with pytest.raises(CatalogError, match=r"revision 9999.*upgrade Carve"):
        Catalog(tmp_path)


def _race(url: str | None, root: str, source: str, job_id: str, barrier, out) -> None:
    cat = Catalog(root)
    barrier.wait()
    created = cat.create_job_if_idle(source, "auto")[1]
    claimed = cat.transition_job(job_id, ("queued",), expect_owner=None, owner=str(id(cat)), state="running")
    claims = [cat.claim_version("shards") for _ in range(5)]
    out.put((created, claimed, claims))
    cat.close()


def test_claims_and_compare_and_set_are_atomic_across_processes(tmp_path: Path, catalog_url):
    with Catalog(tmp_path) as cat:
        job_id = cat.create_job("/src/other", "auto")
    ctx = mp.get_context("spawn")
    n = 3
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(catalog_url, str(tmp_path), "/src/x", job_id, barrier, out))
             for _ in range(n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(created for created, _, _ in results) == 1  # one active job per source
    assert sum(claimed for _, claimed, _ in results) == 1  # one owner per job
    claims = [v for _, _, vs in results for v in vs]
    assert sorted(claims) == list(range(1, 5 * n + 1))  # every version number handed out once
    with Catalog(tmp_path) as cat:
        assert len(cat.jobs(limit=100)) == 2 and cat.integrity_ok()


def test_an_object_store_root_asks_for_a_catalog_url(s3, monkeypatch):
    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    root = open_root(s3.uri("carve"))
    assert root.catalog_url is None
    with pytest.raises(CatalogError) as e:
        root.catalog  # noqa: B018
    msg = str(e.value)
    assert s3.uri("carve") in msg and "postgresql+psycopg://" in msg and "sqlite:////" in msg
    assert "CARVE_CATALOG_URL" in msg and "catalog.url" in msg


def test_an_explicit_catalog_url_wins(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CARVE_CATALOG_URL", f"sqlite:///{tmp_path}/from-env.sqlite")
    root = open_root(tmp_path / "root", catalog_url=f"sqlite:///{tmp_path}/explicit.sqlite")
    root.catalog.upsert_dataset("d", "/src", "auto")
    root.close()
    assert (tmp_path / "explicit.sqlite").exists() and not (tmp_path / "from-env.sqlite").exists()
    assert not (tmp_path / "root" / "catalog.sqlite").exists()
    env_root = open_root(tmp_path / "root")
    assert env_root.catalog_url == f"sqlite:///{tmp_path}/from-env.sqlite"
    env_root.close()


def test_a_server_catalog_belongs_to_one_root(tmp_path: Path, postgres_server):
    url = postgres_server.new_database()
    with open_root(tmp_path / "a", catalog_url=url) as a:
        a.catalog.upsert_dataset("d", "/src", "auto")
    with open_root(tmp_path / "a", catalog_url=url) as again:
        assert [d["name"] for d in again.catalog.datasets()] == ["d"]
    with pytest.raises(CatalogError) as e:
        open_root(tmp_path / "b", catalog_url=url).catalog  # noqa: B018
    msg = str(e.value)
    assert f"belongs to root {tmp_path / 'a'}, not {tmp_path / 'b'}" in msg
    assert postgres_server.password not in msg and "***" in msg


def test_an_unreachable_or_unsupported_catalog_is_named_without_its_password():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(CatalogError) as e:
        Catalog(url=f"postgresql://carve:hunter2@127.0.0.1:{port}/carve")
    msg = str(e.value)
    assert f"127.0.0.1:{port}/carve" in msg and "hunter2" not in msg
    with pytest.raises(CatalogError, match="unsupported database 'mysql'"):
        Catalog(url="mysql://u@127.0.0.1/db")
    with pytest.raises(CatalogError, match="must be a file"):
        Catalog(url="sqlite://")
