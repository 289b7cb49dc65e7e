"""Catalog bookkeeping, schema validation and the committed-only event reader.

The catalog tests run on both backends (`catalog_url`: SQLite in the root, and a fresh
PostgreSQL database; see tests/pg_server.py)."""

from __future__ import annotations

import multiprocessing as mp

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.storage.catalog import Catalog
from carve.storage.events import part_path, read_events, write_event_part
from carve.storage.root import open_root
from carve.storage.schema import (
    EVENT_SCHEMA,
    SCHEMA_VERSION,
    SchemaError,
    check_schema,
    conform,
    events_to_table,
    make_event_id,
)


def _events(episode_id: str, n: int, index: int = 0) -> pa.Table:
    rows = [
        {
            "event_id": make_event_id(episode_id, k * 10, k * 10 + 10),
            "episode_id": episode_id,
            "dataset": "d",
            "episode_index": index,
            "event_index": k,
            "num_events": n,
            "start_frame": k * 10,
            "end_frame": k * 10 + 10,
            "fps": 10.0,
            "task": "t",
            "state": [[0.0, 1.0]] * 10,
            "action": [[0.5]] * 10,
        }
        for k in range(n)
    ]
    return events_to_table(rows)


def _rec(episode_id: str, status: str, batch: str | None, fp: str = "f1", n: int = 0) -> dict:
    return {
        "episode_id": episode_id, "dataset": "d", "episode_index": int(episode_id[-1]), "source_uri": "/src",
        "fingerprint": fp, "status": status, "error": None if status == "ok" else "boom", "num_events": n,
        "batch": batch,
    }


def test_event_ids_are_stable_and_distinct():
    assert make_event_id("d/000001", 0, 10) == make_event_id("d/000001", 0, 10)
    assert make_event_id("d/000001", 0, 10) != make_event_id("d/000001", 0, 11)
    assert make_event_id("d/000001", 0, 10) != make_event_id("d/000002", 0, 10)


def test_schema_version_checks(tmp_path):
    check_schema(EVENT_SCHEMA, "x")
    newer = EVENT_SCHEMA.with_metadata({b"carve.schema_version": b"4"})
    with pytest.raises(SchemaError, match="v4"):
        check_schema(newer, "shard.parquet")
    # a v1 table (before cameras/arms/names and the v3 provenance) is still read: the new columns come back null
    v1 = pa.schema([f for f in EVENT_SCHEMA if f.name not in ("cameras", "arms", "state_names", "action_names",
                                                              "emb_visual_cameras", "source_file", "source_key",
                                                              "source_start_s", "source_end_s")],
                   metadata={**EVENT_SCHEMA.metadata, b"carve.schema_version": b"1"})
    assert check_schema(v1, "old.parquet") == 1
    old = conform(v1.empty_table().append_column("x", pa.array([], pa.int8())).drop_columns(["x"]))
    assert old.schema.names == EVENT_SCHEMA.names
    with pytest.raises(SchemaError, match="not a Carve event table"):
        check_schema(pa.schema([("a", pa.int32())]), "foreign.parquet")
    missing = pa.schema([f for f in EVENT_SCHEMA if f.name != "action"], metadata=EVENT_SCHEMA.metadata)
    with pytest.raises(SchemaError, match="action"):
        check_schema(missing, "m.parquet")


def test_read_events_returns_only_committed_episodes(tmp_path, catalog_url):
    root = str(tmp_path)
    with Catalog(root) as cat:
        write_event_part(open_root(root), "b1", "p0", pa.concat_tables([_events("d/000000", 3, 0), _events("d/000001", 2, 1)]))
        # episode 1 was written but the run crashed before the catalog commit: not visible
        cat.record_episodes([_rec("d/000000", "ok", "b1", n=3)])
        t = read_events(open_root(root), columns=["episode_id", "event_index"])
        assert sorted(set(t.column("episode_id").to_pylist())) == ["d/000000"]
        assert t.num_rows == 3
        # a re-ingest of episode 0 in batch b2 supersedes the b1 rows
        write_event_part(open_root(root), "b2", "p0", _events("d/000000", 4, 0))
        cat.record_episodes([_rec("d/000000", "ok", "b2", fp="f2", n=4)])
        t = read_events(open_root(root), columns=["event_index"])
        assert t.num_rows == 4
        assert t.column_names == ["event_index"]
        assert read_events(open_root(root), committed_only=False).num_rows == 3 + 2 + 4


def test_atomic_part_leaves_no_temp_files(tmp_path):
    root = str(tmp_path)
    write_event_part(open_root(root), "b1", "p0", _events("d/000000", 2))
    files = [p.name for p in (tmp_path / "events" / "batch=b1").iterdir()]
    assert files == ["part-p0.parquet"]
    schema = pq.read_schema(tmp_path / "events" / "batch=b1" / "part-p0.parquet")
    assert check_schema(schema, "part") == SCHEMA_VERSION
    assert part_path(open_root(root), "b1", "p0").endswith("/events/batch=b1/part-p0.parquet")


def test_catalog_fingerprints_and_failures(tmp_path, catalog_url):
    with Catalog(tmp_path) as cat:
        cat.upsert_dataset("d", "/src", "lerobot")
        cat.record_episodes([_rec("d/000000", "ok", "b1", n=5), _rec("d/000001", "failed", None)])
        assert cat.finished_fingerprints("d") == {"d/000000": "f1"}
        failed = cat.episodes(status="failed")
        assert [(r.episode_id, r.error) for r in failed] == [("d/000001", "boom")]
        (d,) = cat.datasets()
        assert (d["ok"], d["failed"], d["events"]) == (1, 1, 5)
        # a retried episode that now succeeds leaves quarantine
        cat.record_episodes([_rec("d/000001", "ok", "b2", n=2)])
        assert cat.episodes(status="failed") == []


def _hammer(root: str, worker: int) -> None:
    with Catalog(root) as cat:
        for i in range(40):
            cat.record_episodes([_rec(f"d/{worker}{i:05d}", "ok", "b", n=1)])
            cat.create_job(f"/src/{worker}/{i}", "auto")


def test_concurrent_writers_do_not_corrupt(tmp_path, catalog_url):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Catalog(tmp_path) as cat:
        assert len(cat.episodes()) == 120
        assert len(cat.jobs(limit=1000)) == 120
        assert cat.integrity_ok()


def test_one_active_job_per_source(tmp_path, catalog_url):
    with Catalog(tmp_path) as cat:
        a, created_a = cat.create_job_if_idle("/src/x", "auto")
        b, created_b = cat.create_job_if_idle("/src/x", "auto")
        assert created_a and not created_b and a == b
        cat.update_job(a, state="succeeded")
        c, created_c = cat.create_job_if_idle("/src/x", "auto")
        assert created_c and c != a
