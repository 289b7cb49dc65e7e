"""`carve export --format lerobot`: the export loads in the real lerobot 0.4.4 and round-trips.

A 4-episode simulated LeRobot v3.0 dataset (pybullet, H.264) goes through `carve run`; its
shards version is exported three ways and loaded with `LeRobotDataset(repo_id, root=DIR)`:

* `--unit episode` (stream-copied video): frame count, episode boundaries, per-frame `task`
  (the episode goal) and `subtask` (the event caption), decoded frames equal to the source's,
  sampling weights following the version's balance;
* `--unit event` (AV1 re-encode): one episode per shard row (repeats included), task = subtask =
  caption, PSNR >= 35 dB against the source frames;
* `--unit episode --task-from caption --reencode --codec h264`: task = subtask = caption.

The conformance tests skip when lerobot is not importable, unless CARVE_REQUIRE_LEROBOT=1
(then they fail). Install: `pip install --no-deps -r tests/fixtures/lerobot/requirements-lerobot044.txt`.
They decode with torchcodec (lerobot's default) where it loads, else with lerobot's PyAV backend
(no Debian ffmpeg: the same frame checks still run; requires.lerobot_video_backend).
The round trip (`carve run` on the export; events recovered from `subtask_index` changes match
the original events) needs no lerobot.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from requires import lerobot_video_backend, require_lerobot

from carve.core.config import CarveConfig
from carve.export.lerobot import export_lerobot
from carve.export.video import psnr
from carve.ingest.sources import load_episode, open_source
from carve.storage.events import read_events
from carve.storage.root import open_root
from carve.storage.shards import ShardReader

pytestmark = pytest.mark.usefixtures("ray_local")
CAM = "observation.images.front"


def _cfg(root: Path, source: Path) -> CarveConfig:
    return CarveConfig().with_overrides({
        "root": str(root), "source": {"uri": str(source), "format": "lerobot"},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
        "embed": {"text": "none"},  # no MiniLM load: the export does not depend on the embeddings
    })


def curated_root(tmp_path_factory: pytest.TempPathFactory, episodes: int = 4) -> tuple[Path, Path]:
    """(sim dataset, Carve root with one shards version); built once per test session."""
    from carve.pipeline.run import run_pipeline
    from carve.sim.synth import synthesize

    base = tmp_path_factory.getbasetemp() / f"export-curated-{episodes}"
    sim, root = base / "sim", base / "root"
    if not (root / "shards" / "v001" / "manifest.json").exists():
        synthesize(str(sim), episodes, workers=2, progress=False, overwrite=True)
        s = run_pipeline(_cfg(root, sim))
        assert s.episodes_failed == 0 and s.shards_version == 1
    return sim, root


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return curated_root(tmp_path_factory)


def _lerobot() -> Callable[..., Any]:
    """`LeRobotDataset` loading with the video backend this machine has: torchcodec where it
    loads, else lerobot's PyAV backend (skips, or fails under CARVE_REQUIRE_LEROBOT=1, without
    lerobot; fails under CARVE_REQUIRE_FFMPEG=1 without torchcodec)."""
    return functools.partial(require_lerobot(), video_backend=lerobot_video_backend())


def _sources(sim: Path) -> dict[int, Any]:
    """episode index -> loaded source episode."""
    return {r.episode_index: load_episode(r) for r in open_source(str(sim), "lerobot", dataset="sim").list_episodes()}


def _events(root: Path) -> dict[int, list[dict[str, Any]]]:
    """The original events of each episode, by start frame."""
    t = read_events(open_root(root), columns=["episode_index", "start_frame", "end_frame", "caption", "event_id"])
    out: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(t.to_pylist(), key=lambda r: (r["episode_index"], r["start_frame"])):
        out.setdefault(r["episode_index"], []).append(r)
    return out


def _item_frame(item: dict[str, Any]) -> np.ndarray:
    """lerobot's (3, H, W) float frame in [0, 1] as (H, W, 3) uint8."""
    return np.round(item[CAM].permute(1, 2, 0).numpy() * 255.0).clip(0, 255).astype(np.uint8)


def _spans(values: list[Any]) -> list[tuple[int, int, Any]]:
    """Runs of equal consecutive values: (start, end, value)."""
    out, start = [], 0
    for v, grp in itertools.groupby(values):
        n = len(list(grp))
        out.append((start, start + n, v))
        start += n
    return out


def test_episode_unit_loads_in_lerobot_with_subtasks_and_identical_frames(curated, tmp_path: Path):
    LeRobotDataset = _lerobot()
    sim, root = curated
    out = tmp_path / "ep"
    s = export_lerobot(root, out, version=1, unit="episode", episodes_per_file=3)
    assert s.cameras[CAM] == "copy (h264)"  # whole episodes start on keyframes: copied, not re-encoded
    src, events = _sources(sim), _events(root)
    lengths = [src[i].length for i in sorted(src)]

    ds = LeRobotDataset("carve/export-episode", root=out)
    assert len(ds) == sum(lengths) == s.frames
    assert ds.num_episodes == len(src) == s.episodes
    # several episodes per file, more than one file
    eps = ds.meta.episodes
    assert {(e["data/chunk_index"], e["data/file_index"]) for e in eps} == {(0, 0), (0, 1)}
    bounds = np.cumsum([0, *lengths])
    assert [(e["dataset_from_index"], e["dataset_to_index"]) for e in eps] == list(itertools.pairwise(bounds))
    subtasks = set(ds.meta.subtasks.index)
    for k, i in enumerate(sorted(src)):
        assert {ev["caption"] for ev in events[i]} <= subtasks
        # every frame's language (lerobot's lookup of task_index / subtask_index), from its columns ...
        cols = ds.hf_dataset.select(range(int(bounds[k]), int(bounds[k + 1])))
        assert [int(v) for v in cols["episode_index"]] == [k] * lengths[k]
        assert [int(v) for v in cols["frame_index"]] == list(range(lengths[k]))
        caps = [next(e["caption"] for e in events[i] if e["start_frame"] <= f < e["end_frame"])
                for f in range(lengths[k])]
        assert [ds.meta.subtasks.iloc[int(v)].name for v in cols["subtask_index"]] == caps
        assert {ds.meta.tasks.iloc[int(v)].name for v in cols["task_index"]} == {src[i].task}
        # ... and items as lerobot yields them, with decoded frames bit-identical to the source's
        picks = sorted({0, lengths[k] - 1, *range(0, lengths[k], 5), *(e["start_frame"] for e in events[i])})
        want = src[i].frames(CAM, picks)
        for f, w in zip(picks, want, strict=True):
            item = ds[int(bounds[k]) + f]
            assert int(item["episode_index"]) == k and int(item["frame_index"]) == f
            assert item["task"] == src[i].task and item["subtask"] == caps[f]
            assert psnr(_item_frame(item), w) == float("inf"), (i, f)

    # sampling weights: events of the version carry weight/length per frame, others 0; mean 1
    w = np.asarray(ds.hf_dataset["sampling_weight"], dtype=np.float64)
    assert abs(w.mean() - 1.0) < 1e-4
    side = pq.read_table(out / "meta" / "carve_events.parquet").to_pylist()
    assert len(side) == sum(len(v) for v in events.values())
    per_frame = {(r["index_from"], r["index_to"]): (r["weight"] / (r["frame_to"] - r["frame_from"]))
                 if r["in_shards"] else 0.0 for r in side}
    scale = w[side[0]["index_from"]] / per_frame[(side[0]["index_from"], side[0]["index_to"])]
    for (a, b), pf in per_frame.items():
        assert np.allclose(w[a:b], pf * scale, rtol=1e-4), (a, b)
    shard_ids = set(ShardReader(str(root), 1, columns=["event_id"]).read_all().column("event_id").to_pylist())
    assert {r["event_id"] for r in side if r["in_shards"]} == shard_ids
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["features"]["subtask_index"]["dtype"] == "int64"


def test_event_unit_reencoded_av1_loads_in_lerobot(curated, tmp_path: Path):
    LeRobotDataset = _lerobot()
    sim, root = curated
    out = tmp_path / "ev"
    s = export_lerobot(root, out, version=1, unit="event", codec="av1")
    assert s.cameras[CAM].startswith(("libsvtav1", "libaom-av1"))
    rows = ShardReader(str(root), 1, columns=["event_id", "episode_index", "start_frame", "end_frame",
                                              "caption"]).read_all().to_pylist()
    rows.sort(key=lambda r: (r["episode_index"], r["start_frame"], r["end_frame"]))
    src = _sources(sim)

    ds = LeRobotDataset("carve/export-event", root=out)
    assert ds.num_episodes == len(rows) == s.episodes  # one episode per shard row, repeats included
    assert len(ds) == sum(r["end_frame"] - r["start_frame"] for r in rows)
    assert ds.meta.info["features"][CAM]["info"]["video.codec"] == "av1"
    worst = float("inf")
    for k, (r, e) in enumerate(zip(rows, ds.meta.episodes, strict=True)):
        n = r["end_frame"] - r["start_frame"]
        assert e["dataset_to_index"] - e["dataset_from_index"] == n and e["length"] == n
        want = src[r["episode_index"]].frames(CAM, list(range(r["start_frame"], r["end_frame"])))
        for f in range(n):
            item = ds[int(e["dataset_from_index"]) + f]
            assert int(item["episode_index"]) == k and int(item["frame_index"]) == f
            assert item["task"] == item["subtask"] == r["caption"]
            worst = min(worst, psnr(_item_frame(item), want[f]))
    assert worst >= 35.0, f"re-encoded frames {worst:.1f} dB from the source"
    assert s.psnr_min_db is not None and s.psnr_min_db >= 35.0
    side = pq.read_table(out / "meta" / "carve_events.parquet").to_pylist()
    repeats = [r for r in side if r["repeat_of_episode"] is not None]
    assert len(repeats) == len(rows) - len({r["event_id"] for r in rows})
    for r in repeats:  # a repeat shares the first occurrence's video span
        a, b = ds.meta.episodes[r["episode_index"]], ds.meta.episodes[r["repeat_of_episode"]]
        assert a[f"videos/{CAM}/from_timestamp"] == b[f"videos/{CAM}/from_timestamp"]


def test_episode_unit_task_from_caption_h264_reencode(curated, tmp_path: Path):
    LeRobotDataset = _lerobot()
    _, root = curated
    out = tmp_path / "cap"
    s = export_lerobot(root, out, version=1, unit="episode", task_from="caption", codec="h264", video="reencode")
    assert s.cameras[CAM].startswith("libx264") and s.psnr_min_db is not None and s.psnr_min_db >= 35.0
    ds = LeRobotDataset("carve/export-caption", root=out)
    events = _events(root)
    e0 = ds.meta.episodes[0]
    for f in range(0, int(e0["length"]), 5):
        item = ds[f]
        ev = next(e for e in events[0] if e["start_frame"] <= f < e["end_frame"])
        assert item["task"] == item["subtask"] == ev["caption"]


def test_round_trip_carve_run_ingests_the_export_and_subtasks_give_back_the_events(curated, tmp_path: Path):
    from carve.pipeline.run import run_pipeline

    _, root = curated
    out = tmp_path / "rt"
    export_lerobot(root, out, version=1, unit="episode")
    events = _events(root)
    # events recovered from the exported subtasks: each change of subtask_index starts one
    data = pq.read_table(out / "data").to_pylist()
    subtasks = pq.read_table(out / "meta" / "subtasks.parquet").to_pandas()
    side = pq.read_table(out / "meta" / "carve_events.parquet").to_pylist()
    src_of = {r["episode_index"]: r["source_episode_index"] for r in side}
    for k in sorted(src_of):
        sub = [r["subtask_index"] for r in data if r["episode_index"] == k]
        got = [(a, b, subtasks.index[v]) for a, b, v in _spans(sub)]
        want = [(a, b, c) for a, b, c in _spans_of(events[src_of[k]])]
        assert got == want, k

    # `carve run` ingests the export; its events are the original ones (same frames, same signals)
    root2 = tmp_path / "root2"
    s = run_pipeline(_cfg(root2, out))
    assert s.episodes_failed == 0 and s.episodes_ok == len(src_of)
    again = _events(root2)
    for k, i in src_of.items():
        assert [(e["start_frame"], e["end_frame"], e["caption"]) for e in again[k]] == \
               [(e["start_frame"], e["end_frame"], e["caption"]) for e in events[i]], k


def _spans_of(evs: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """The events as (start, end, caption), neighbours with the same caption merged (one subtask)."""
    out: list[tuple[int, int, str]] = []
    for e in evs:
        if out and out[-1][2] == e["caption"] and out[-1][1] == e["start_frame"]:
            out[-1] = (out[-1][0], e["end_frame"], e["caption"])
        else:
            out.append((e["start_frame"], e["end_frame"], e["caption"]))
    return out
