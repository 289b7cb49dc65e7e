"""Fault: a Ray worker process is killed (SIGKILL) mid-run; its work is retried and nothing is lost.

The real pipeline runs on the embedded Ray (`ray_local`) over a small simulated folder dataset.
A watcher thread looks through this test's own descendant processes (/proc; never anyone
else's) for Ray worker processes by their titles and SIGKILLs, once each:

- the worker decoding an episode while it runs `DecodeSegment` (Ray Data fuses the decode tasks
  into the caption actors: title `ray::MapWorker(MapBatches(DecodeSegment)->MapBatches(Caption)).submit`;
  unfused it would be a task, `ray::MapBatches(DecodeSegment)`);
- the `Embed` actor while it is processing a block (title `ray::MapWorker(MapBatches(Embed)).submit`);
- a task worker while it runs `WriteEvents` (title `ray::MapBatches(WriteEvents)`): if it dies
  after its part file is in place, the retry writes another and the first is an orphan, which
  readers ignore (the catalog records the part that holds each episode).

Ray Data's actor pools restart a dead actor and resubmit its block (`max_restarts=-1`,
`max_task_retries=-1`, Ray Data's defaults, which pipeline/executor.py leaves alone), as its
tasks are retried (`max_retries=-1`). The run must end with every episode `ok` and every event
exactly once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_e2e_pipeline import _cfg, write_folder_episode

from carve.storage.catalog import Catalog
from carve.storage.events import read_events
from carve.storage.root import open_root

pytestmark = pytest.mark.usefixtures("ray_local")



def decoding(t: str) -> bool:
    return "MapBatches(DecodeSegment)" in t and (t.endswith(".submit") or t.startswith("ray::MapBatches("))


def embedding(t: str) -> bool:
    return t.startswith("ray::MapWorker(MapBatches(Embed)") and t.endswith(".submit")


def writing(t: str) -> bool:
    return t.startswith("ray::MapBatches(WriteEvents)")


TARGETS: dict[str, Callable[[str], bool]] = {"decode": decoding, "embed": embedding, "write": writing}


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Killer(threading.Thread):
    """SIGKILLs the first descendant process whose title matches each target, once per target."""

    def __init__(self, targets: dict[str, Callable[[str], bool]]):
        super().__init__(daemon=True, name="worker-killer")
        self.targets = dict(targets)
        self.killed: dict[str, tuple[int, str]] = {}
        self.stop = threading.Event()
        self.seen: set[str] = set()

    def run(self) -> None:
        me = os.getpid()
        pids: list[int] = []
        rounds = 0
        while not self.stop.is_set() and len(self.killed) < len(self.targets):
            if rounds % 50 == 0:  # the process tree now and then (a /proc scan); the titles often
                pids = descendants(me)
            rounds += 1
            for pid in pids:
                t = title(pid)
                self.seen.add(t[:80])
                for name, match in self.targets.items():
                    if name not in self.killed and match(t) and pid in descendants(me):  # still ours
                        os.kill(pid, signal.SIGKILL)
                        self.killed[name] = (pid, t)
            time.sleep(0.005)


def test_killed_ray_workers_are_retried_and_nothing_is_lost(tmp_path: Path):
    from carve.pipeline.run import run_pipeline

    src = tmp_path / "raw" / "toy"
    src.mkdir(parents=True)
    tasks = ["put the red cube in the tray", "stack the red cube on the blue cube"]
    for i in range(4):
        write_folder_episode(src, f"ep_{i}", seed=i, frames=72, task=tasks[i % 2])
    root = tmp_path / "carve"
    cfg = _cfg(root, src).with_overrides({"embed": {"text": "none"}, "ray": {"part_episodes": 1, "executor": "ray"}})

    killer = Killer(TARGETS)
    killer.start()
    try:
        s = run_pipeline(cfg, shard=False)
    finally:
        killer.stop.set()
        killer.join(timeout=5)
    assert set(killer.killed) == set(TARGETS), f"not every target was seen running: killed {killer.killed} {killer.seen}"

    assert s.episodes_total == 4 and s.episodes_ok == 4 and s.episodes_failed == 0, s.failures
    with Catalog(root) as cat:
        recs = {r.episode_id: r for r in cat.episodes(status="ok")}
    assert len(recs) == 4
    ev = read_events(open_root(root), columns=["event_id", "episode_id", "event_index", "num_events"])
    ids = ev.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == s.events > 0  # every event once
    by_ep: dict[str, list[int]] = {}
    for r in ev.select(["episode_id", "event_index"]).to_pylist():
        by_ep.setdefault(r["episode_id"], []).append(r["event_index"])
    assert set(by_ep) == set(recs)
    for ep, idx in by_ep.items():  # each episode whole: events 0..n-1, n as the catalog records
        assert sorted(idx) == list(range(recs[ep].num_events)), ep
