"""End to end: `carve run` over a folder dataset with good and bad episodes.

Checks the whole DAG on the embedded Ray: good episodes all land as events, clusters and a
shard version; each bad episode is quarantined with a reason that names it; a re-run skips
finished work; a new episode is ingested and *assigned* without touching what was written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from carve.sim.lerobot_writer import write_video
from carve.sim.toy import toy_episode
from carve.storage.root import open_root

pytestmark = pytest.mark.usefixtures("ray_local")


def write_folder_episode(folder: Path, name: str, seed: int, *, frames: int = 96, task: str | None = None,
                         video_frames: int | None = None, corrupt: str | None = None) -> None:
    ep = toy_episode(seed, frames=frames, task=task or "put the red cube in the tray")
    video = next(iter(ep.frames.values()))
    state, action = ep.state.copy(), ep.action.copy()
    if corrupt == "nan":
        action[frames // 2, 0] = np.nan
    if corrupt == "inf":
        state[3, 1] = np.inf
    write_video(folder / f"{name}.mp4", video[: video_frames or frames], 12)
    if corrupt == "truncated":
        data = (folder / f"{name}.mp4").read_bytes()
        (folder / f"{name}.mp4").write_bytes(data[: len(data) // 3])
    np.savez(folder / f"{name}.npz", state=state, action=action,
             timestamps=np.arange(frames, dtype=np.float64) / 12.0)
    (folder / f"{name}.json").write_text(json.dumps({"task": ep.task, "fps": 12}))


BAD = {"ep_nan": "nan", "ep_inf": "inf", "ep_trunc": "truncated", "ep_short": "short", "ep_empty": "empty"}


@pytest.fixture()
def folder_dataset(tmp_path: Path) -> Path:
    ds = tmp_path / "raw" / "toy"
    ds.mkdir(parents=True)
    tasks = ["put the red cube in the tray", "stack the red cube on the blue cube", "push the green cube to the left"]
    for i in range(4):
        write_folder_episode(ds, f"ep_good{i}", seed=i, task=tasks[i % 3])
    for name, kind in BAD.items():
        if kind == "short":
            write_folder_episode(ds, name, seed=9, video_frames=40)
        elif kind == "empty":
            write_video(ds / f"{name}.mp4", np.zeros((2, 64, 64, 3), np.uint8), 12)
            np.savez(ds / f"{name}.npz", state=np.zeros((0, 8), np.float32), action=np.zeros((0, 8), np.float32),
                     timestamps=np.zeros(0))
        else:
            write_folder_episode(ds, name, seed=10, corrupt=kind)
    return ds


def _cfg(root: Path, source: Path):
    from carve.core.config import CarveConfig

    return CarveConfig().with_overrides({
        "root": str(root),
        "source": {"uri": str(source), "format": "folder"},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
        "cluster": {"k": 3},
        "shard": {"rows_per_shard": 8},
    })


def _sha(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_bad_episodes_quarantined_good_ones_written_and_rerun_is_incremental(folder_dataset: Path, tmp_path: Path):
    from carve.pipeline.run import run_pipeline
    from carve.storage.catalog import Catalog
    from carve.storage.events import read_events

    root = tmp_path / "carve"
    s = run_pipeline(_cfg(root, folder_dataset))
    assert s.episodes_total == 4 + len(BAD)
    assert s.episodes_ok == 4
    assert s.episodes_failed == len(BAD)
    with Catalog(root) as cat:
        failed = {r.episode_id: r.error for r in cat.episodes(status="failed")}
        assert len(failed) == len(BAD)
        for err in failed.values():
            assert err and "episode" in err  # names the episode
        reasons = " ".join(failed.values()).lower()
        assert "nan" in reasons and "inf" in reasons
    ev = read_events(open_root(root), columns=["episode_id", "event_index", "num_events", "caption", "next_caption", "emb"])
    assert set(ev.column("episode_id").to_pylist()) == {r.episode_id for r in Catalog(root).episodes(status="ok")}
    assert ev.num_rows == s.events and s.events >= 4 * 2
    rows = ev.to_pylist()
    for r in rows:
        assert r["caption"], r
        assert np.isclose(np.linalg.norm(np.asarray(r["emb"], dtype=np.float64)), 1.0, atol=1e-3)
    by_ep: dict[str, list[dict]] = {}
    for r in rows:
        by_ep.setdefault(r["episode_id"], []).append(r)
    for evs in by_ep.values():
        evs.sort(key=lambda r: r["event_index"])
        for a, b in itertools.pairwise(evs):
            assert a["next_caption"] == b["caption"]
        assert evs[-1]["next_caption"] == ""

    assert s.clusters_version is not None and s.shards_version is not None
    manifest = json.loads((root / "shards" / f"v{s.shards_version:03d}" / "manifest.json").read_text())
    assert sum(sh["rows"] for sh in manifest["shards"]) == manifest["total_rows"] > 0

    events_before = _sha(sorted((root / "events").rglob("*.parquet")))
    assign_before = _sha(sorted((root / "clusters").rglob("assignments/*.parquet")))

    # re-run: everything finished is skipped, the bad ones are retried and still fail
    s2 = run_pipeline(_cfg(root, folder_dataset))
    assert s2.episodes_ok == 0 and s2.episodes_skipped == 4
    assert _sha(sorted((root / "events").rglob("*.parquet"))) == events_before

    # a new episode: ingested and assigned to the existing centroids; old files untouched
    write_folder_episode(folder_dataset, "ep_new", seed=42, task="put the blue cube in the tray")
    s3 = run_pipeline(_cfg(root, folder_dataset))
    assert s3.episodes_ok == 1 and s3.episodes_skipped == 4
    assert s3.clusters_version == s.clusters_version
    after_events = _sha(sorted((root / "events").rglob("*.parquet")))
    assert {k: after_events[k] for k in events_before} == events_before
    after_assign = _sha(sorted((root / "clusters").rglob("assignments/*.parquet")))
    assert {k: after_assign[k] for k in assign_before} == assign_before
    assert len(after_assign) > len(assign_before)
    assert s3.shards_version is not None and s3.shards_version > s.shards_version
    # the older shard version stays readable
    assert (root / "shards" / f"v{s.shards_version:03d}" / "manifest.json").exists()


def test_cli_reports_quarantine_with_exit_code(folder_dataset: Path, tmp_path: Path):
    root = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "carve.cli.main", "run", "--source", str(folder_dataset), "--format", "folder",
         "--root", str(root), "--no-shard", "--json", "--set", "ray.num_cpus=1", "--set", "ray.progress=false"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["episodes_ok"] == 4 and out["episodes_failed"] == len(BAD)
