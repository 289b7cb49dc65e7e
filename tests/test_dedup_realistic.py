"""Realistic near-duplicates (bench/dedup_realistic.py) on one small simulated scene.

One scene gives six episodes: the source demo A, a distinct demo B of the same task in the same
scene (another plan and operator take), and four near-duplicates of A: its video re-encoded,
trimmed by 2-5 frames at each end, re-timed to 0.9x, and re-recorded with new operator noise.
The whole ingest + clustering runs in this process at 32x32 px. Checked, from how the episodes
were built: the trimmed and re-timed files really are cut / resampled from A (video and signals
alike); with the shipped settings (`carve run`: the episode-copy gate, then the event dedup)
every event of the trimmed and re-encoded copies shares its group with A's matching event; and
B, the same-scene distinct demo, is never taken for a copy of A.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.dedup_realistic import Recording, grouping, make_dataset, true_pairs
from carve.core.config import CarveConfig
from carve.pipeline.copies import episode_copies
from carve.pipeline.executor import LocalExecutor
from carve.pipeline.run import run_pipeline
from carve.storage.events import read_events
from carve.storage.root import open_root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("dedup-real")
    src = work / "raw" / "demos"
    recs = make_dataset(src, "pick_place", 1, 3, size=32, fps=12, noise=0.3)
    cfg = CarveConfig().with_overrides({"root": str(work / "root"), "source": {"uri": str(src), "format": "folder"},
                                        "ray": {"progress": False}})
    run_pipeline(cfg, shard=False, executor=LocalExecutor())
    root = open_root(cfg.root)
    events = read_events(root, columns=["event_id", "episode_id", "start_frame", "end_frame"])
    copies, _ = episode_copies(root, cfg.check)
    groups = grouping(root, cfg, cfg.cluster.dedup_signal_tol, cfg.cluster.dedup_threshold, copies)
    return {"src": src, "recs": recs, "events": events, "copies": copies, "groups": groups}


def _rec(recs: list[Recording], kind: str) -> Recording:
    return next(r for r in recs if r.kind == kind)


def _state(src: Path, r: Recording) -> np.ndarray:
    return np.load(src / f"episode_{r.name}.npz")["state"]


def _video_frames(src: Path, r: Recording) -> int:
    import av

    with av.open(str(src / f"episode_{r.name}.mp4")) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def test_trimmed_and_retimed_files_come_from_the_source(built: dict[str, Any]) -> None:
    src, recs = built["src"], built["recs"]
    a = _state(src, _rec(recs, "source"))
    trim = _state(src, _rec(recs, "trim"))
    cuts = [(s, len(a) - s - len(trim)) for s in range(2, 6) if np.array_equal(a[s : s + len(trim)], trim)]
    assert len(cuts) == 1 and 2 <= cuts[0][1] <= 5  # 2-5 frames off each end, nothing else changed
    retime = _rec(recs, "retime")
    assert len(_state(src, retime)) == round(0.9 * len(a))
    for r in (_rec(recs, "trim"), retime):  # the video is cut / resampled with the signals
        assert _video_frames(src, r) == len(_state(src, r))
    other, again = _rec(recs, "other"), _rec(recs, "rerecord")
    task = str(np.load(src / f"episode_{_rec(recs, 'source').name}.npz")["task"])
    for r in (other, again):  # same task and scene, other signals
        assert str(np.load(src / f"episode_{r.name}.npz")["task"]) == task
        s = _state(src, r)
        assert s.shape != a.shape or not np.allclose(s, a)


def test_shipped_settings_group_trimmed_and_reencoded_copies_with_the_source(built: dict[str, Any]) -> None:
    pairs = true_pairs(built["events"], built["recs"])
    groups = built["groups"]
    for kind in ("trim", "reencode"):
        assert pairs[kind], kind
        missed = [(a, b) for a, b in pairs[kind] if groups[a] != groups[b]]
        assert not missed, (kind, missed)


def test_same_scene_distinct_demo_is_not_taken_for_a_copy(built: dict[str, Any]) -> None:
    recs, events = built["recs"], built["events"]
    name_of = dict(zip(events.column("event_id").to_pylist(),
                       (ep.rsplit("/", 1)[-1] for ep in events.column("episode_id").to_pylist()), strict=True))
    other, source = _rec(recs, "other").name, _rec(recs, "source").name
    linked = {(name_of[c], name_of[o]) for c, o in built["copies"].items()}
    assert (other, source) not in linked and (source, other) not in linked
    copies_of_a = {_rec(recs, k).name for k in ("trim", "reencode")}
    assert copies_of_a <= {c for c, o in linked if o == source}  # ... while the trimmed and re-encoded copies are
