"""Fault: the driver of `carve run` is killed (SIGKILL) mid-run.

The real command line runs in a subprocess (embedded Ray, as the CLI starts it) over a small
folder dataset with one episode per part. The test watches the root and kills the driver at a
moment when a part file is on disk that the catalog does not yet reference (the driver is
stopped first, the catalog read again, so the file is certain to stay unreferenced). Then:
readers ignore that orphan, `carve status` reports it, the re-run completes with no event
duplicated in the events or the shards, `carve gc` removes the orphans, and nothing is
reported afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from test_e2e_pipeline import write_folder_episode

from carve.storage.events import read_events
from carve.storage.root import open_root

EPISODES = 8
TASKS = ["put the red cube in the tray", "stack the red cube on the blue cube", "push the green cube to the left"]


def _carve(root: Path, *args: str, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "carve", *args, "--root", str(root), *extra]


RUN_SETTINGS = ["--executor", "ray", "--set", "ray.num_cpus=2", "--set", "ray.object_store_memory_mb=256", "--set", "ray.progress=false",
                "--set", "ray.part_episodes=1", "--set", "cluster.k=3", "--set", "shard.rows_per_shard=8"]


def _on_disk(root: Path, temp: bool = False) -> set[str]:
    """Part files under events/ (with `temp`, also the temp files of writes in progress)."""
    if not (root / "events").exists():
        return set()
    return {str(p.relative_to(root)) for p in (root / "events").rglob("*.parquet")
            if temp or not p.name.startswith(".tmp-")}


def _referenced(root: Path) -> set[str] | None:
    """Parts the catalog's committed episodes point to (None: the catalog is not there yet)."""
    db = root / "catalog.sqlite"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return {p for (p,) in c.execute("SELECT part FROM episodes WHERE status = 'ok' AND part IS NOT NULL")}
    except sqlite3.Error:  # not migrated yet
        return None


def _kill_with_an_uncommitted_part(proc: subprocess.Popen, root: Path, timeout_s: float = 600) -> set[str]:
    """SIGKILL the driver at a moment when a written part is not committed; return those parts."""
    deadline = time.time() + timeout_s
    while proc.poll() is None and time.time() < deadline:
        files = _on_disk(root)  # listed before the catalog is read: a part committed in between counts as referenced
        refs = _referenced(root) if files else None
        if refs is not None and files - refs:
            os.kill(proc.pid, signal.SIGSTOP)  # the driver cannot commit anything from here on
            refs = _referenced(root)
            if refs is not None and files - refs:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return files - refs
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"the run ended (rc={proc.poll()}) before a part was caught between write and commit")


def _settle(root: Path, quiet_s: float = 3.0, timeout_s: float = 120.0) -> None:
    """Wait until no file appears under events/ for `quiet_s` (Ray workers of the killed driver
    may finish a write before they notice their driver is gone)."""
    t_end = time.time() + timeout_s
    last, since = _on_disk(root, temp=True), time.time()
    while time.time() < t_end and time.time() - since < quiet_s:
        time.sleep(0.2)
        now = _on_disk(root, temp=True)
        if now != last:
            last, since = now, time.time()


def _status(root: Path) -> dict:
    p = subprocess.run(_carve(root, "status", "--json"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)["datasets"]["toy"]


def _shard_event_ids(root: Path) -> tuple[list[str], bool]:
    """The event ids of the latest shard version's rows, and whether each eligible event is
    written once (shard.mode `weights`; `resample` repeats events by design)."""
    latest = sorted((root / "shards").glob("v*/manifest.json"))[-1]
    m = json.loads(latest.read_text())
    files = sorted(latest.parent.glob("*.parquet"))
    assert files
    ids = [e for f in files for e in pq.read_table(f, columns=["event_id"]).column("event_id").to_pylist()]
    return ids, (m.get("mode") or m.get("extra", {}).get("mode")) == "weights"


def test_driver_killed_mid_run_rerun_duplicates_nothing_and_gc_removes_orphans(tmp_path: Path):
    source = tmp_path / "raw" / "toy"
    source.mkdir(parents=True)
    for i in range(EPISODES):
        write_folder_episode(source, f"ep_{i:02d}", seed=i, task=TASKS[i % 3])
    root = tmp_path / "carve"
    run = _carve(root, "run", "--source", str(source), "--format", "folder", extra=RUN_SETTINGS)
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(run, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        caught = _kill_with_an_uncommitted_part(proc, root)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what the driver started in its own session (Ray's processes)
        except ProcessLookupError:
            pass
        log.close()
    _settle(root)
    assert caught

    # readers ignore the orphans: only committed episodes' rows, each once
    r = open_root(root)
    ev = read_events(r, columns=["event_id", "episode_id"])
    ok = {rec.episode_id: rec.num_events for rec in r.catalog.episodes(status="ok")}
    assert len(ok) < EPISODES  # killed mid-run
    assert ev.num_rows == sum(ok.values()) == len(set(ev.column("event_id").to_pylist()))
    assert set(ev.column("episode_id").to_pylist()) == set(ok)
    r.close()
    st = _status(root)
    assert st["orphan_parts"] >= len(caught) and {o["path"] for o in st["orphans"]} >= caught
    assert st["orphan_bytes"] > 0

    # the re-run completes: every episode once, in the events and in the shards
    rerun = subprocess.run(run, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    with open_root(root) as r:
        ev = read_events(r, columns=["event_id", "episode_id"])
        ok = {rec.episode_id: rec.num_events for rec in r.catalog.episodes(status="ok")}
    ids = ev.column("event_id").to_pylist()
    assert len(ok) == EPISODES and len(ids) == sum(ok.values()) == len(set(ids))
    shard_ids, once = _shard_event_ids(root)
    assert shard_ids and set(shard_ids) <= set(ids)
    if once:
        assert len(shard_ids) == len(set(shard_ids))

    # the killed run's orphans are still there, reported; gc removes them; then nothing is reported
    st = _status(root)
    assert st["episodes_ok"] == EPISODES and st["orphan_parts"] >= len(caught)
    dry = subprocess.run(_carve(root, "gc", "--dry-run", "--min-age-s", "0"), capture_output=True, text=True,
                         timeout=300)
    assert dry.returncode == 0 and all(p in dry.stdout for p in caught)
    assert {root / p for p in caught} <= {root / p for p in _on_disk(root)}  # a dry run deletes nothing
    gc = subprocess.run(_carve(root, "gc", "--min-age-s", "0"), capture_output=True, text=True, timeout=300)
    assert gc.returncode == 0, gc.stderr[-2000:]
    assert not caught & _on_disk(root) and not _on_disk(root, temp=True) - _on_disk(root)
    st = _status(root)
    assert st["orphan_parts"] == 0 and st["temp_parts"] == 0 and st["orphans"] == []
    # every event row left on disk is a committed one, once
    on_disk = [e for p in sorted(_on_disk(root))
               for e in pq.read_table(root / p, columns=["event_id"]).column("event_id").to_pylist()]
    assert sorted(on_disk) == sorted(ids)
    with open_root(root) as r:
        assert read_events(r, columns=["event_id"]).column("event_id").to_pylist() == ids
