"""Events part files: several episodes per part, per-episode commit, compaction, orphans and gc.

A run writes fewer part files than episodes and the catalog names each episode's part; an
episode that fails (in any step) is quarantined alone while its block-mates are committed;
`compact` rewrites small parts so that every committed event is read exactly once before and
after, with the old files gone; files the catalog does not reference (a crashed compaction's
output, temp files) are ignored by readers, reported and collected by `gc`, while parts of
roots written before catalog revision 0003 (no part recorded) are still read and never
collected.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pyarrow as pa
import pytest
from test_e2e_pipeline import BAD, _cfg, folder_dataset  # noqa: F401  (fixture)

from carve.core.config import RayConfig
from carve.core.errors import EpisodeError
from carve.pipeline.executor import LocalExecutor, plan_blocks, split_rows
from carve.pipeline.step import PipelineStep, rows_to_stage_table
from carve.storage.events import read_events
from carve.storage.root import open_root

ALL = ["event_id", "episode_id", "event_index", "start_frame", "end_frame", "caption", "next_caption", "keyframes",
       "emb"]


def _files(root: Path) -> list[Path]:
    return sorted((root / "events").rglob("*.parquet"))


def _episode_parts(root: Path) -> dict[str, str | None]:
    with sqlite3.connect(root / "catalog.sqlite") as c:
        return dict(c.execute("SELECT episode_id, part FROM episodes WHERE status = 'ok'").fetchall())


def _live_parts(root: Path) -> set[str]:
    with sqlite3.connect(root / "catalog.sqlite") as c:
        return {p for (p,) in c.execute("SELECT path FROM parts WHERE state = 'live'")}


def _run(tmp_path: Path, source: Path, name: str, **ray: object):
    from carve.pipeline.run import run_pipeline

    cfg = _cfg(tmp_path / name, source).with_overrides({"ray": ray}) if ray else _cfg(tmp_path / name, source)
    return tmp_path / name, run_pipeline(cfg, shard=False, executor=LocalExecutor(cfg.ray))


def test_blocks_are_planned_from_part_episodes_and_keep_workers_busy():
    cfg = RayConfig()
    assert plan_blocks(1000, cfg) == 32 and 1000 / plan_blocks(1000, cfg) >= 10
    assert plan_blocks(120, cfg) == 4
    assert plan_blocks(3, cfg) == 2 and plan_blocks(1, cfg) == 1 and plan_blocks(0, cfg) == 0
    assert plan_blocks(10, RayConfig(decode_concurrency=4)) == 8  # never fewer than 2 per decode worker
    assert plan_blocks(10, RayConfig(part_episodes=1)) == 10
    chunks = split_rows([{"i": i} for i in range(10)], 4)
    assert [len(c) for c in chunks] == [3, 3, 2, 2]
    assert [r["i"] for c in chunks for r in c] == list(range(10))  # contiguous, in order


def test_a_run_writes_fewer_parts_than_episodes_and_commits_each_episode_with_its_part(
        folder_dataset: Path, tmp_path: Path):  # noqa: F811
    root, s = _run(tmp_path, folder_dataset, "few")
    assert s.episodes_ok == 4 and s.episodes_failed == len(BAD)  # bad block-mates do not sink good episodes
    files = _files(root)
    assert 0 < len(files) < s.episodes_ok
    parts = _episode_parts(root)
    assert len(parts) == 4 and all(parts.values())
    assert {root / p for p in parts.values()} == set(files)
    assert _live_parts(root) == set(parts.values())
    ev = read_events(open_root(root), columns=["event_id", "episode_id"])
    assert ev.num_rows == s.events and len(set(ev.column("event_id").to_pylist())) == ev.num_rows
    # the part the catalog names holds every row of the episode
    import pyarrow.parquet as pq

    for ep, part in parts.items():
        held = pq.read_table(root / part, columns=["episode_id"]).column("episode_id").to_pylist()
        assert held.count(ep) == ev.column("episode_id").to_pylist().count(ep) > 0


class FailsOn(PipelineStep):
    """Fails whenever its batch holds episode `bad`."""

    name = "fails_on"

    def __init__(self, bad: str):
        self.bad = bad

    def process(self, events: pa.Table) -> pa.Table:
        if self.bad in events.column("episode_id").to_pylist():
            raise EpisodeError(self.bad, "the captioner choked")
        return events


def test_a_step_failing_on_one_episode_of_a_block_quarantines_that_episode_alone():
    rows = [{"event_id": f"{ep}:{k}", "episode_id": ep, "dataset": "d", "source_uri": "/s", "episode_index": i,
             "event_index": k, "num_events": 2, "start_frame": k, "end_frame": k + 1, "fps": 10.0,
             "_fingerprint": "fp", "_error": None} for i, ep in enumerate("abc") for k in range(2)]
    out = FailsOn("b")(rows_to_stage_table(rows)).to_pylist()
    errors = {r["episode_id"]: r["_error"] for r in out}
    assert errors["a"] is None and errors["c"] is None
    assert errors["b"] and errors["b"].startswith("fails_on failed") and "choked" in errors["b"]
    assert sorted(r["event_id"] for r in out) == sorted(r["event_id"] for r in rows)  # nothing lost, nothing added


def test_write_events_splits_a_block_at_episode_boundaries_above_the_target(tmp_path: Path):
    from carve.pipeline.steps import WriteEvents

    rows = [{"event_id": f"{ep}:{k}", "episode_id": ep, "dataset": "d", "source_uri": "/s", "episode_index": i,
             "event_index": k, "num_events": 3, "start_frame": k, "end_frame": k + 1, "fps": 10.0, "task": "t",
             "caption": "x" * 2000, "_fingerprint": "fp", "_error": None}
            for i, ep in enumerate(["e0", "e1", "e2", "e3"]) for k in range(3)]
    block = rows_to_stage_table(rows)
    root = open_root(tmp_path / "r")
    one = WriteEvents(root, "b1")(block).to_pylist()
    assert len({r["part"] for r in one}) == 1 and one[0]["part_rows"] == 12
    # about two episodes' worth of Arrow bytes per part: parts of whole episodes, at least two of them
    per_episode = block.slice(0, 3).nbytes
    split = WriteEvents(root, "b2", part_target_mb=2.5 * per_episode / 1024 / 1024)(block).to_pylist()
    by_part: dict[str, list[str]] = {}
    for r in split:
        by_part.setdefault(r["part"], []).append(r["episode_id"])
        assert r["status"] == "ok" and r["num_events"] == 3
    assert len(by_part) == 2
    import pyarrow.parquet as pq

    for part, eps in by_part.items():
        assert sorted(set(pq.read_table(root.path(part)).column("episode_id").to_pylist())) == sorted(eps)


def test_compaction_keeps_every_event_once_and_the_catalog_consistent(
        folder_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    from carve.storage.catalog import Catalog
    from carve.storage.parts import compact, gc, scan

    root, s = _run(tmp_path, folder_dataset, "small", part_episodes=1)
    old_files = _files(root)
    assert len(old_files) == s.episodes_ok == 4
    before = read_events(open_root(root), columns=ALL)

    # a compaction that dies after writing its new part, before the catalog commit: readers do
    # not see the new file, status reports it as an orphan, gc removes it
    with open_root(root) as r:
        with monkeypatch.context() as m:
            def boom(self: Catalog) -> None:
                raise RuntimeError("killed before commit")

            m.setattr(Catalog, "transaction", boom)
            with pytest.raises(RuntimeError, match="killed before commit"):
                compact(r, target_mb=64)
        orphans = scan(r).of("orphan")
        assert len(orphans) == 1 and orphans[0].dataset == "toy"
        assert read_events(r, columns=ALL).equals(before)
        assert [f.path for f in gc(r, min_age_s=3600)] == []  # too fresh for the grace period
        assert [f.path for f in gc(r, min_age_s=0, dry_run=True)] == [orphans[0].path]
        assert [f.path for f in gc(r, min_age_s=0)] == [orphans[0].path]
    assert _files(root) == old_files

    with open_root(root) as r:
        assert compact(r, target_mb=64, dry_run=True)[0].old
        done = compact(r, target_mb=64)
        assert len(done) == 1 and len(done[0].old) == 4 and len(done[0].new) == 1 and done[0].episodes == 4
        after = read_events(r, columns=ALL)
        assert not scan(r).of("orphan") and not scan(r).of("compacted")
    assert after.sort_by("event_id").equals(before.sort_by("event_id"))
    assert after.num_rows == s.events and len(set(after.column("event_id").to_pylist())) == after.num_rows
    files = _files(root)
    assert len(files) == 1 and not set(files) & set(old_files)  # old files gone
    parts = _episode_parts(root)
    assert set(parts.values()) == _live_parts(root) == {str(files[0].relative_to(root))}
    with sqlite3.connect(root / "catalog.sqlite") as c:
        assert c.execute("SELECT count(*) FROM parts").fetchone()[0] == 1  # the old rows are forgotten
    with open_root(root) as r:
        assert compact(r, target_mb=64) == []  # nothing small left to merge


def test_compaction_with_a_grace_period_keeps_old_files_for_old_snapshots(folder_dataset: Path, tmp_path: Path):  # noqa: F811
    from carve.storage.events import SnapshotStale, snapshot
    from carve.storage.parts import compact, gc, scan

    root, _ = _run(tmp_path, folder_dataset, "grace", part_episodes=1)
    with open_root(root) as r:
        snap = snapshot(r)
        before = read_events(r, columns=["event_id"], snap=snap)
        compact(r, target_mb=64, grace_s=3600)
        assert read_events(r, columns=["event_id"], snap=snap).equals(before)  # the old snapshot still reads
        assert read_events(r, columns=["event_id"]).sort_by("event_id").equals(before.sort_by("event_id"))
        assert len(scan(r).of("compacted")) == 4 and not scan(r).of("orphan")
        assert gc(r, min_age_s=3600) == []
        assert len(gc(r, min_age_s=0)) == 4
        with pytest.raises(SnapshotStale, match="read again"):
            read_events(r, columns=["event_id"], snap=snap)
        assert read_events(r, columns=["event_id"]).sort_by("event_id").equals(before.sort_by("event_id"))
    assert len(_files(root)) == 1


def test_roots_without_recorded_parts_are_read_by_batch_and_never_collected(tmp_path: Path):
    from carve.storage.catalog import Catalog
    from carve.storage.events import write_event_part
    from carve.storage.parts import gc, scan
    from carve.storage.schema import events_to_table, make_event_id

    def rows(ep: str, i: int) -> pa.Table:
        return events_to_table([{"event_id": make_event_id(ep, 0, 10), "episode_id": ep, "dataset": "d",
                                 "episode_index": i, "event_index": 0, "num_events": 1, "start_frame": 0,
                                 "end_frame": 10, "fps": 10.0, "task": "t", "state": [[0.0]], "action": [[0.0]]}])

    root = open_root(tmp_path)
    write_event_part(root, "old", "d_000000", rows("d/000000", 0))
    write_event_part(root, "old", "d_000001", rows("d/000001", 1))  # written, never committed
    write_event_part(root, "dead", "d_000002", rows("d/000002", 2))  # a killed run's batch: nothing committed
    (tmp_path / "events" / "batch=old" / ".tmp-abcd1234-part-x.parquet").write_bytes(b"torn")
    with Catalog(tmp_path) as cat:
        cat.record_episodes([{"episode_id": "d/000000", "dataset": "d", "episode_index": 0, "source_uri": "/s",
                              "status": "ok", "num_events": 1, "batch": "old"}])
    ev = read_events(root, columns=["episode_id"])
    assert ev.column("episode_id").to_pylist() == ["d/000000"]
    sc = scan(root)
    assert len(sc.of("legacy")) == 2 and len(sc.of("temp")) == 1
    assert [f.path for f in sc.of("orphan")] == ["events/batch=dead/part-d_000002.parquet"]
    assert sc.of("orphan")[0].dataset == "d"
    removed = {f.path for f in gc(root, min_age_s=0)}
    assert removed == {"events/batch=dead/part-d_000002.parquet", "events/batch=old/.tmp-abcd1234-part-x.parquet"}
    assert read_events(root, columns=["episode_id"]).equals(ev)
    assert len(list((tmp_path / "events").rglob("*.parquet"))) == 2


def test_status_and_gc_commands(folder_dataset: Path, tmp_path: Path):  # noqa: F811
    import subprocess
    import sys

    root, _ = _run(tmp_path, folder_dataset, "cli")
    stray = root / "events" / "batch=20260101T000000-dead00" / "part-000000-deadbeef.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(_files(root)[0].read_bytes())
    old = time.time() - 7200
    os.utime(stray, (old, old))

    def carve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "carve", *args, "--root", str(root)], capture_output=True,
                              text=True, timeout=300)

    st = carve("status", "--json")
    assert st.returncode == 0, st.stderr[-2000:]
    d = json.loads(st.stdout)["datasets"]["toy"]
    assert d["episodes_ok"] == 4 and d["episodes_failed"] == len(BAD) and d["batches"] == 1
    assert d["live_parts"] == len(_files(root)) - 1 and d["orphan_parts"] == 1
    assert d["orphan_bytes"] == stray.stat().st_size
    text = carve("status").stdout
    assert "1 orphan parts" in text and stray.name in text
    dry = carve("gc", "--dry-run")
    assert "would remove orphan" in dry.stdout and stray.exists()
    assert carve("gc").returncode == 0 and not stray.exists()  # older than the default hour
    d = json.loads(carve("status", "--json").stdout)["datasets"]["toy"]
    assert d["orphan_parts"] == 0 and d["live_parts"] == len(_files(root))


def test_the_service_finds_an_event_again_after_compaction_replaced_its_part(
        folder_dataset: Path, tmp_path: Path):  # noqa: F811
    from fastapi.testclient import TestClient

    from carve.core.config import CarveConfig
    from carve.service.app import create_app
    from carve.storage.parts import compact

    root, _s = _run(tmp_path, folder_dataset, "svc", part_episodes=1)
    before = read_events(open_root(root), columns=["event_id", "caption"])
    probe = before.column("event_id")[before.num_rows - 1].as_py()
    cfg = CarveConfig.model_validate({"root": str(root), "service": {"token": "t" * 24}})
    with TestClient(create_app(cfg, start_runner=False)) as client:
        auth = {"Authorization": "Bearer " + "t" * 24}
        first = client.get(f"/events/{probe}", headers=auth)
        assert first.status_code == 200, first.text
        with open_root(root) as r:
            assert compact(r, target_mb=64)  # the old part files are deleted at once
        again = client.get(f"/events/{probe}", headers=auth)
        assert again.status_code == 200, again.text
        assert again.json()["caption"] == first.json()["caption"]
        assert again.json()["event_id"] == probe
