"""Fault: a source file vanishes mid-run (listed, then deleted before it is decoded).

`carve run` lists the episodes on the driver and decodes them later on Ray workers. Here the
files are deleted in between (by an executor that deletes them and then hands the listed rows
to the real `RayExecutor`): the episode whose video vanished and the one whose arrays vanished
are quarantined with an error naming the missing file; the other finishes, and a re-run after the
files are back ingests the two.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_e2e_pipeline import _cfg, write_folder_episode

from carve.pipeline.executor import RayExecutor, StepSpec
from carve.storage.catalog import Catalog
from carve.storage.events import read_events
from carve.storage.root import open_root

pytestmark = pytest.mark.usefixtures("ray_local")


class DeleteBeforeDecode:
    """Deletes `paths` once the episodes are listed, then runs the steps on the real executor."""

    def __init__(self, inner: RayExecutor, paths: list[Path]):
        self.inner = inner
        self.paths = paths

    def run(self, rows: list[dict[str, Any]], steps: list[StepSpec]) -> Iterator[pa.Table]:
        for p in self.paths:
            p.unlink()
        yield from self.inner.run(rows, steps)


def test_an_episode_whose_file_vanished_is_quarantined_naming_the_file(tmp_path: Path):
    from carve.pipeline.run import run_pipeline

    src = tmp_path / "raw" / "toy"
    src.mkdir(parents=True)
    for i in range(3):
        write_folder_episode(src, f"ep_{i}", seed=i, frames=60)
    keep = tmp_path / "kept"
    keep.mkdir()
    gone = [src / "ep_1.mp4", src / "ep_2.npz"]
    for p in gone:
        shutil.copy(p, keep / p.name)
    root = tmp_path / "carve"
    cfg = _cfg(root, src).with_overrides({"embed": {"text": "none"}})

    s = run_pipeline(cfg, shard=False, executor=DeleteBeforeDecode(RayExecutor(cfg.ray), gone))
    assert s.episodes_total == 3 and s.episodes_ok == 1 and s.episodes_failed == 2
    with Catalog(root) as cat:
        failed = {r.episode_id: r.error or "" for r in cat.episodes(status="failed")}
        ok = {r.episode_id for r in cat.episodes(status="ok")}
    assert len(failed) == 2 and len(ok) == 1
    video_err = next(e for ep, e in failed.items() if ep.endswith("1"))
    arrays_err = next(e for ep, e in failed.items() if ep.endswith("2"))
    assert str(src / "ep_1.mp4") in video_err and "not found" in video_err, video_err
    assert str(src / "ep_2.npz") in arrays_err and "missing" in arrays_err, arrays_err
    ev = read_events(open_root(root), columns=["event_id", "episode_id"])
    assert set(ev.column("episode_id").to_pylist()) == ok
    assert ev.num_rows == s.events > 0

    # the files come back: a re-run ingests exactly the two quarantined episodes
    for p in gone:
        shutil.copy(keep / p.name, p)
    s2 = run_pipeline(cfg, shard=False)
    assert s2.episodes_skipped == 1 and s2.episodes_ok == 2 and s2.episodes_failed == 0
    ids = read_events(open_root(root), columns=["event_id"]).column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == s.events + s2.events
