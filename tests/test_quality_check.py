"""`carve check` (carve.quality) on a corrupted corpus of data Carve did not make.

Clean episodes of two third-party generators (Meta-World's scripted policies and ACT's scripted
experts in gym-aloha, tests/corpus/) are copied, one defect of each kind injected at a known
span (`carve.sim.defects`), and written as LeRobot v3.0 with AV1 by the real lerobot 0.4.4.
The check must find each injected defect (right episode, right kind, both ends of the span
within 0.25 s), report nothing on the clean episodes among them and on the untouched corpus, and
carry on past an unreadable episode, naming it. The expected spans are the injector's, never the
checker's.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from requires import require_lerobot

from carve.cli.main import main
from carve.quality.check import check_source
from carve.quality.defects import KINDS

CORPUS = Path(__file__).resolve().parent / "corpus"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lerobot"
SOURCES = {"metaworld": CORPUS / "metaworld" / "dataset", "aloha": CORPUS / "aloha_scripted" / "dataset"}
TOL_S = 0.25


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    require_lerobot()
    from carve.sim.defects import make_corrupted_corpus

    out = tmp_path_factory.mktemp("corrupted")
    truth = make_corrupted_corpus({k: str(v) for k, v in SOURCES.items()}, out, seed=0)
    return out, truth


@pytest.fixture(scope="module")
def reports(corrupted: tuple[Path, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out, truth = corrupted
    return {name: check_source(str(out / name), "lerobot").as_dict() for name in truth["datasets"]}


def _carve(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    return code, buf.getvalue()


def test_every_injected_kind_is_found_at_its_span(corrupted, reports):
    _, truth = corrupted
    found: dict[str, list[bool]] = {}
    for name, d in truth["datasets"].items():
        eps = {e["episode_index"]: e for e in reports[name]["episodes"]}
        for row in d["episodes"]:
            if row["kind"] is None:
                continue
            e = eps[row["episode_index"]]
            tol = round(TOL_S * e["fps"])
            hit = any(x["kind"] == row["kind"] and abs(x["start_frame"] - row["start_frame"]) <= tol
                      and abs(x["end_frame"] - row["end_frame"]) <= tol for x in e["defects"])
            found.setdefault(row["kind"], []).append(hit)
            assert hit, (name, row, e["defects"])
    injected = set(KINDS) - {"unreadable"}
    assert set(found) == injected, injected - set(found)  # the corpus carries every kind
    assert all(len(v) >= 2 for v in found.values()), {k: len(v) for k, v in found.items()}


def test_clean_episodes_among_them_have_no_findings(corrupted, reports):
    _, truth = corrupted
    clean = 0
    for name, d in truth["datasets"].items():
        eps = {e["episode_index"]: e for e in reports[name]["episodes"]}
        for row in d["episodes"]:
            if row["kind"] is None:
                clean += 1
                assert eps[row["episode_index"]]["defects"] == [], (name, row["episode_index"])
                assert eps[row["episode_index"]]["score"] == 100
    assert clean >= 10


def test_the_report_has_the_documented_form(corrupted, reports):
    rep = reports["aloha"]
    assert {"dataset", "episodes"} <= set(rep)
    for e in rep["episodes"]:
        assert isinstance(e["episode_index"], int) and 0 <= e["score"] <= 100
        for x in e["defects"]:
            assert x["kind"] in KINDS and x["severity"] in ("error", "warning")
            assert 0 <= x["start_frame"] <= x["end_frame"] < e["length"] and x["detail"]
    errors = {e["episode_index"] for e in rep["episodes"] if any(x["severity"] == "error" for x in e["defects"])}
    assert set(rep["summary"]["drop"]) == errors and errors


@pytest.mark.parametrize("source", [*SOURCES.values(), CORPUS / "so100_joint" / "dataset",
                                    CORPUS / "robomimic_mw" / "demos.hdf5", CORPUS / "aloha_hdf5" / "episodes"])
def test_the_untouched_corpus_is_clean(source: Path):
    rep = check_source(str(source))
    assert all(not e.defects for e in rep.episodes), [(e.episode_index, e.as_dict()["defects"]) for e in rep.episodes
                                                      if e.defects]


def test_cli_writes_both_reports_and_fails_on_errors(corrupted, tmp_path: Path):
    out, _ = corrupted
    js, md = tmp_path / "r" / "report.json", tmp_path / "r" / "report.md"
    code, text = _carve("check", "--source", str(out / "metaworld"), "--json", str(js), "--markdown", str(md),
                        "--fail-on", "error", "--set", "ray.progress=false")
    assert code == 1 and "with errors" in text
    rep = json.loads(js.read_text())
    assert rep["dataset"] and len(rep["episodes"]) == len(json.loads((out / "truth.json").read_text())
                                                         ["datasets"]["metaworld"]["episodes"])
    assert "## Drop list" in md.read_text() and not list(js.parent.glob(".*.tmp"))
    # the untouched dataset: exit 0 even with --fail-on warning
    code, _ = _carve("check", "--source", str(SOURCES["metaworld"]), "--fail-on", "warning",
                     "--set", "ray.progress=false")
    assert code == 0


def test_an_unreadable_episode_is_a_finding_and_the_check_goes_on(tmp_path: Path):
    ds = tmp_path / "v21"
    shutil.copytree(FIXTURES / "v21", ds)
    victim = sorted(ds.glob("data/**/*.parquet"))[1]
    victim.write_bytes(b"PAR1 this is not a parquet file")
    rep = check_source(str(ds)).as_dict()
    by = {e["episode_index"]: e for e in rep["episodes"]}
    assert len(by) == 3
    bad = [e for e in rep["episodes"] if any(x["kind"] == "unreadable" for x in e["defects"])]
    assert len(bad) == 1 and bad[0]["score"] == 0
    assert victim.name in bad[0]["defects"][0]["detail"]
    assert all(e["length"] > 0 for e in rep["episodes"] if e is not bad[0])  # the others were checked


def test_thresholds_are_physical_and_set_by_config():
    """The same one-frame jump of a joint is impossible at 50 fps and possible at 10 fps (rad/s, not
    rad per frame), and `check.jump_speed_rad_s` moves the line."""
    from carve.core.config import CarveConfig, SegmentConfig
    from carve.quality.signals import Motion, jumps

    names = [f"joint_{i}" for i in range(6)] + ["gripper"]

    def motion(fps: int) -> Motion:
        n = fps * 2
        state = np.zeros((n, 7))
        state[:, 0] = np.linspace(0, 0.5, n)
        state[n // 2 :, 0] += 0.5  # +0.5 rad between two frames: 25 rad/s at 50 fps, 5 rad/s at 10 fps
        return Motion(state, state.copy(), fps, SegmentConfig(), names, names)

    shipped = CarveConfig().check
    assert jumps(motion(50), shipped) and not jumps(motion(10), shipped)
    loose = CarveConfig.load(None, ["check.jump_speed_rad_s=40"]).check
    assert not jumps(motion(50), loose)


@pytest.fixture(scope="module")
def ingested(corrupted, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """`carve run` (quality check on) over the corrupted Meta-World set: (config, root)."""
    from carve.core.config import CarveConfig
    from carve.pipeline.run import run_pipeline

    request.getfixturevalue("ray_local")
    out, _ = corrupted
    root = tmp_path_factory.mktemp("ingested") / "root"
    cfg = CarveConfig().with_overrides({
        "root": str(root), "source": {"uri": str(out / "metaworld"), "format": "lerobot"},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
        "embed": {"text": "none"}, "cluster": {"k": 3},
    })
    summary = run_pipeline(cfg)
    assert summary.shards_version == 1
    # the run's summary counts the episodes with findings by kind (what `carve run` prints)
    assert {"frozen_video", "black_video", "state_jump", "idle_head", "idle_tail"} <= set(summary.quality), summary
    return cfg, root


def test_carve_run_records_the_findings_and_the_shard_cut_leaves_error_spans_out(corrupted, ingested):
    """`carve run` checks every episode it ingests: the findings go to the catalog, the events an
    error span touches stay out of the shards (counted by kind in the manifest), and an analyst's
    `keep` flag puts one back in the next version."""
    from carve.shard.cut import cut_shards
    from carve.storage.defects import episode_defects
    from carve.storage.events import read_events
    from carve.storage.flags import add_flag
    from carve.storage.manifest import load_manifest
    from carve.storage.root import open_root

    _, truth = corrupted
    cfg, root = ingested
    rows = {r["episode_index"]: r for r in truth["datasets"]["metaworld"]["episodes"]}
    with open_root(root) as r:
        found = episode_defects(r.catalog, dataset="metaworld")
        by_ep = {}
        for d in found:
            by_ep.setdefault(int(d["episode_id"].rsplit("/", 1)[1]), []).append(d)
        gated_kinds = {"frozen_video", "black_video", "state_jump"}  # errors that survive strict loading
        for idx, row in rows.items():
            if row["kind"] in gated_kinds | {"idle_head", "idle_tail", "gripper_chatter", "truncated"}:
                assert any(d["kind"] == row["kind"] for d in by_ep.get(idx, [])), (idx, row, by_ep.get(idx))
            if row["kind"] is None:
                assert idx not in by_ep, (idx, by_ep[idx])
        m = load_manifest(root, 1).to_json()
        q = m["quality_excluded"] if "quality_excluded" in m else m["extra"]["quality_excluded"]
        assert set(q["by_kind"]) == gated_kinds and q["events"] == sum(q["by_kind"].values())
        events = read_events(r, columns=["event_id", "episode_id", "start_frame", "end_frame"]).to_pylist()
        shard_ids = {e for s in _shard_event_ids(root, 1) for e in s}
        gated = []
        for e in events:
            idx = int(e["episode_id"].rsplit("/", 1)[1])
            for d in by_ep.get(idx, []):
                if d["severity"] == "error" and e["start_frame"] <= d["end_frame"] and e["end_frame"] - 1 >= d["start_frame"]:
                    gated.append(e)
        assert gated and not {e["event_id"] for e in gated} & shard_ids
        assert len({e["event_id"] for e in gated}) == q["events"]
        keep = gated[0]
        add_flag(r.catalog, keep["event_id"], "keep", who="analyst", episode_id=keep["episode_id"], dataset="metaworld")
        v2 = cut_shards(r, cfg)
        m2 = load_manifest(root, v2).to_json()
        q2 = m2["quality_excluded"] if "quality_excluded" in m2 else m2["extra"]["quality_excluded"]
        assert q2["kept_by_flag"] == 1 and q2["events"] == q["events"] - 1
        assert keep["event_id"] in {e for s in _shard_event_ids(root, v2) for e in s}


def test_a_copied_episode_goes_through_the_dedup_in_carve_run(corrupted, ingested):
    """The injector's noisy, trimmed copies (truth: `of` the original's index): `carve run` records
    their `duplicate_episode` finding, marks every event of the copy `dup_of` an event of the
    original (or that event's representative), so no copy reaches the shards; clean episodes are
    neither findings nor copies."""
    from carve.clustering.versions import read_assignments, unique_assignments
    from carve.storage.defects import episode_defects
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    _, truth = corrupted
    _, root = ingested
    rows = truth["datasets"]["metaworld"]["episodes"]
    copies = {r["episode_index"]: r["of"] for r in rows if r["kind"] == "duplicate_episode"}
    clean = {r["episode_index"] for r in rows if r["kind"] is None}
    assert copies
    with open_root(root) as r:
        found = {int(d["episode_id"].rsplit("/", 1)[1]): d
                 for d in episode_defects(r.catalog, dataset="metaworld") if d["kind"] == "duplicate_episode"}
        events = read_events(r, columns=["event_id", "episode_index"]).to_pylist()
        asg = unique_assignments(read_assignments(r, 1)).select(["event_id", "dup_of"]).to_pylist()
    assert set(found) == set(copies), found
    for idx, of in copies.items():
        assert found[idx]["severity"] == "warning" and f"episode {of}" in found[idx]["detail"]
    dup_of = {a["event_id"]: a["dup_of"] for a in asg}
    ep_of = {e["event_id"]: e["episode_index"] for e in events}
    shard_ids = {e for s in _shard_event_ids(root, 1) for e in s}
    for idx, of in copies.items():
        mine = [e for e, i in ep_of.items() if i == idx]
        originals = {e for e, i in ep_of.items() if i == of}
        targets = originals | {dup_of[e] for e in originals if dup_of[e]}
        assert mine and all(dup_of[e] in targets for e in mine), (idx, [dup_of[e] for e in mine])
        assert not set(mine) & shard_ids
    assert not clean & set(found)


def _shard_event_ids(root: Path, version: int) -> list[set[str]]:
    import pyarrow.parquet as pq

    return [set(pq.read_table(p, columns=["event_id"]).column(0).to_pylist())
            for p in sorted((root / "shards" / f"v{version:03d}").glob("*.parquet"))]


def test_a_trimmed_export_cuts_data_and_video_on_the_same_frames(ingested, tmp_path: Path):
    """`carve export --trim-idle`: the idle head and tail the gate found are cut off, the timestamps
    restart, every exported episode has as many video frames as data rows, and lerobot 0.4.4 reads
    every frame of the result."""
    from requires import lerobot_video_backend

    from carve.export.lerobot import export_lerobot
    from carve.storage.defects import episode_defects
    from carve.storage.root import open_root

    LeRobotDataset = require_lerobot()
    _, root = ingested
    with open_root(root) as r:
        idle = {d["episode_id"]: d for d in episode_defects(r.catalog) if d["kind"] in ("idle_head", "idle_tail")}
        assert {d["kind"] for d in idle.values()} == {"idle_head", "idle_tail"}
        full = export_lerobot(r, tmp_path / "full", version=1, codec="h264")
        trimmed = export_lerobot(r, tmp_path / "trim", version=1, codec="h264", trim_idle=True)
    cut = sum((d["end_frame"] - d["start_frame"] + 1) for d in idle.values())
    assert full.episodes == trimmed.episodes and full.frames - trimmed.frames == cut, (full, trimmed, cut)
    ds = LeRobotDataset("carve/trimmed", root=tmp_path / "trim", video_backend=lerobot_video_backend())
    assert len(ds) == trimmed.frames
    eps = ds.meta.episodes
    cams = ds.meta.video_keys
    table = ds.hf_dataset.with_format("numpy")
    ep_col, ts_col = np.asarray(table["episode_index"]).reshape(-1), np.asarray(table["timestamp"]).reshape(-1)
    for k in range(ds.meta.total_episodes):
        n = int(eps[k]["length"])
        ts = ts_col[ep_col == k]
        assert len(ts) == n and np.allclose(ts, np.arange(n) / ds.fps, atol=1e-4), k  # timestamps restart
        for cam in cams:
            span = float(eps[k][f"videos/{cam}/to_timestamp"]) - float(eps[k][f"videos/{cam}/from_timestamp"])
            assert round(span * ds.fps) == n, (k, cam, span * ds.fps, n)  # as many video frames as rows
    last = [int(i) for i in np.flatnonzero(ep_col == ds.meta.total_episodes - 1)]
    for i in (0, len(ds) // 2, *last[-2:]):  # lerobot decodes frames at both ends of the trimmed spans
        item = ds[int(i)]
        assert all(tuple(item[c].shape)[-2:] == tuple(ds.meta.features[c]["shape"][:2]) for c in cams)


def test_video_samples_sit_on_keyframes_and_decode_one_frame_each(monkeypatch: pytest.MonkeyPatch):
    """lerobot writes a keyframe every 2 frames; at 20 fps the check's 0.25 s samples fall on odd
    frames half the time. Each inner sample moves to a neighbouring keyframe, and a sample on a
    keyframe decodes that frame alone (the seek lands on it, not on the keyframe before it)."""
    import carve.ingest.video as video
    from carve.core.config import CheckConfig
    from carve.quality.video import packet_times, sample_indices, snap_to_keyframes

    src = next((SOURCES["metaworld"] / "videos").rglob("*.mp4"))
    pk = packet_times(str(src))
    fps = pk.fps
    assert np.allclose(np.diff(pk.keys[:10]) * fps, 2.0)  # the writer's own GOP (2): the premise of the test
    cfg = CheckConfig()
    n = 80
    rel = np.arange(n) / fps
    idx = sample_indices(n, fps, cfg)
    snapped = snap_to_keyframes(idx, rel, pk.keys - pk.times[0], fps, cfg)
    key_frames = set(np.round((pk.keys - pk.times[0]) * fps).astype(int).tolist())
    assert snapped[0] == 0 and snapped[-1] == n - 1  # the ends stay
    assert all(int(i) in key_frames for i in snapped[1:-1])
    assert np.max(np.abs(snapped[1:-1] - idx[1:-1])) <= 1 and len(snapped) == len(idx)

    steps = {"n": 0}
    step = video._PyAVDecoder.step

    def counted(self: Any) -> Any:
        steps["n"] += 1
        return step(self)

    monkeypatch.setattr(video._PyAVDecoder, "step", counted)
    inner = snapped[1:-1]
    with video.VideoReader(str(src), backend="pyav", seek_gap_s=pk.key_gap, threads=False) as r:
        frames = r.read_at(pk.times[0] + inner / fps)
        assert steps["n"] <= 2 * len(inner)  # from the keyframe before each sample: 3 frames or more each
        steps["n"] = 0
        sequential = r.read_range(pk.times[0], pk.times[0] + n / fps)
    assert np.array_equal(frames, sequential[inner])  # the same pixels as decoding every frame in order
