"""`carve eval-segments --truth <LeRobot dataset>` on a real `carve export`, and `--baseline keyframes`
from `--root` alone.

`carve run` segments the LeRobot v3.0 fixture (3 episodes) into a root, built once for the
module; `carve export --format lerobot` writes it with a per-frame `subtask_index` that is the
event each frame lies in. So:

* the catalog scored against its own export gets F1 = 1.0 (every event caption differs from its
  neighbour's, checked, so each event start is a subtask change), and the export scored against
  itself through `--source` (the segmenter re-run on the exported signals) too;
* a copy with one boundary moved by 3 frames and one removed gets the counts worked out below
  from the number of events, not from the code under test;
* `--baseline keyframes` with `--root` only runs the keyframe rule on the source the catalog
  recorded and reports exactly what the same run with `--source` reports.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.core.config import CarveConfig
from carve.storage.events import read_events
from carve.storage.root import open_root

pytestmark = pytest.mark.usefixtures("ray_local")
FIXTURE = Path(__file__).parent / "fixtures" / "lerobot" / "v30"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(Carve root of the fixture, its LeRobot export)."""
    from carve.export.lerobot import export_lerobot
    from carve.pipeline.run import run_pipeline

    base = tmp_path_factory.mktemp("eval-truth-export")
    root, out = base / "root", base / "export"
    cfg = CarveConfig().with_overrides({
        "root": str(root), "source": {"uri": str(FIXTURE), "format": "lerobot"},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
        "embed": {"text": "none"},
    })
    s = run_pipeline(cfg)
    assert s.episodes_failed == 0 and s.episodes_ok == 3
    # re-encoded to H.264: the fixture's AV1 is not stream-copied here (no AV1 decoder template needed)
    export_lerobot(root, out, unit="episode", video="reencode", codec="h264")
    return root, out


def events_of(root: Path) -> dict[int, list[dict[str, Any]]]:
    t = read_events(open_root(root), columns=["episode_index", "start_frame", "end_frame", "caption"])
    out: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(t.to_pylist(), key=lambda r: (r["episode_index"], r["start_frame"])):
        out.setdefault(r["episode_index"], []).append(r)
    return out


def eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    from carve.cli.main import main as carve_main

    capsys.readouterr()
    assert carve_main(["eval-segments", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_catalog_scored_against_its_own_export_is_perfect(exported, capsys: pytest.CaptureFixture[str]) -> None:
    from carve.ingest.truth import read_truth

    root, out = exported
    events = events_of(root)
    for evs in events.values():  # each event start is a change of subtask_index
        assert all(a["caption"] != b["caption"] for a, b in itertools.pairwise(evs))
    truth = read_truth(out)
    assert truth["form"] == "lerobot" and truth["fps"] == 30.0
    for ep in truth["episodes"]:
        evs = events[ep["episode_index"]]
        assert ep["boundaries"] == [e["start_frame"] for e in evs[1:]]
        assert ep["phases"] == [e["caption"] for e in evs]
        assert ep["length"] == evs[-1]["end_frame"]
    rep = eval_json(capsys, "--root", str(root), "--truth", str(out))
    o = rep["overall"]
    assert o["episodes"] == 3 and rep["missing_episodes"] == []
    assert o["boundary_fp"] == o["boundary_fn"] == 0
    assert o["boundary_precision"] == o["boundary_recall"] == o["boundary_f1"] == o["segment_f1"] == 1.0
    # the export as both the dataset segmented (--source) and the truth: the same events again
    rep = eval_json(capsys, "--source", str(out), "--truth", str(out))
    assert rep["overall"]["boundary_f1"] == 1.0 and rep["overall"]["episodes"] == 3


def _rewrite_subtasks(folder: Path, edit: dict[int, list[tuple[int, int, int]]]) -> None:
    """Set subtask_index of episode e's frames [a, b) to the value at frame `src` for (a, b, src) in edit[e]."""
    for f in sorted((folder / "data").rglob("*.parquet")):
        t = pq.read_table(f)
        ep = t.column("episode_index").to_numpy()
        fr = t.column("frame_index").to_numpy()
        sub = t.column("subtask_index").to_numpy().copy()
        for e, spans in edit.items():
            rows = ep == e
            for a, b, src in spans:
                value = sub[rows & (fr == src)]
                assert len(value) == 1
                sub[rows & (fr >= a) & (fr < b)] = value[0]
        i = t.column_names.index("subtask_index")
        pq.write_table(t.set_column(i, t.field(i), pa.array(sub, t.schema.field(i).type)), f)


def test_hand_shifted_export_gives_the_hand_computed_scores(exported, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root, out = exported
    events = events_of(root)
    n_bounds = sum(len(evs) - 1 for evs in events.values())  # B: every event start but the first
    e0, e1 = events[0], events[1]
    # episode 0's first boundary b0 with the next one at least 6 frames after it: the moved boundary b0 + 3
    # stays more than 2 frames from it
    b0 = next(a for a, b in itertools.pairwise(e["start_frame"] for e in e0[1:]) if b - a >= 6)
    c, length1 = e1[-1]["start_frame"], e1[-1]["end_frame"]  # episode 1's last boundary
    shifted = tmp_path / "shifted"
    shutil.copytree(out, shifted)
    # episode 0: frames b0..b0+2 keep the previous subtask -> its boundary moves from b0 to b0 + 3;
    # episode 1: its last event takes the subtask before it -> boundary c disappears
    _rewrite_subtasks(shifted, {0: [(b0, b0 + 3, b0 - 1)], 1: [(c, length1, c - 1)]})
    rep = eval_json(capsys, "--root", str(root), "--truth", str(shifted))
    o = rep["overall"]
    # the prediction is the catalog's B boundaries, the truth the copy's B - 1 (b0 + 3 instead of b0, no c).
    # +-2 frames: B - 2 match; the predicted b0 and c match nothing (fp 2); the true b0 + 3 is missed (fn 1)
    assert (o["boundary_tp"], o["boundary_fp"], o["boundary_fn"]) == (n_bounds - 2, 2, 1)
    p, r = (n_bounds - 2) / n_bounds, (n_bounds - 2) / (n_bounds - 1)
    assert o["boundary_precision"] == pytest.approx(p)
    assert o["boundary_recall"] == pytest.approx(r)
    assert o["boundary_f1"] == pytest.approx(2 * p * r / (p + r))
    assert o["boundary_f1"] < 1.0
    # +-3 frames: b0 matches b0 + 3 again; only the predicted c is extra
    o3 = eval_json(capsys, "--root", str(root), "--truth", str(shifted), "--tolerance", "3")["overall"]
    assert (o3["boundary_tp"], o3["boundary_fp"], o3["boundary_fn"]) == (n_bounds - 1, 1, 0)
    assert o3["boundary_precision"] == pytest.approx((n_bounds - 1) / n_bounds) and o3["boundary_recall"] == 1.0


def test_keyframe_baseline_from_root_alone_equals_the_run_with_source(
        exported, capsys: pytest.CaptureFixture[str]) -> None:
    root, out = exported
    from_root = eval_json(capsys, "--root", str(root), "--truth", str(out), "--baseline", "keyframes",
                          "--tolerance-s", "0.1", "--bootstrap", "50")
    with_source = eval_json(capsys, "--root", str(root), "--source", str(FIXTURE), "--truth", str(out),
                            "--baseline", "keyframes", "--tolerance-s", "0.1", "--bootstrap", "50")
    a, b = from_root["baselines"]["keyframes"], with_source["baselines"]["keyframes"]
    assert a["source"] == str(FIXTURE) == b["source"]  # the source `carve run` recorded in the catalog
    assert a["overall"]["episodes"] == 3 and a["per_episode"]
    assert a["overall"] == b["overall"] and a["per_episode"] == b["per_episode"]
    # the baseline is the keyframe rule itself, run on the recorded source: its boundary counts per
    # episode are those of `perceiver_keyframes` on the same signals
    from carve.core.config import SegmentConfig
    from carve.ingest.keyframes import perceiver_keyframes
    from carve.ingest.sources import load_episode, open_source

    for ref, rec in zip(open_source(str(FIXTURE), "lerobot").list_episodes(), a["per_episode"], strict=True):
        ep = load_episode(ref)
        kf = perceiver_keyframes(ep.state, ep.action, ep.fps, ep.state_names, ep.action_names, cfg=SegmentConfig())
        assert rec["episode_index"] == ref.episode_index
        assert rec["pred_events"] == len([k for k in kf if 0 < k < ep.length]) + 1
    assert from_root["comparison"]["keyframes"]["episodes"] == 3
    # Carve's own numbers: the catalog (--root) and the segmenter on the same source agree too
    assert from_root["overall"]["boundary_f1"] == with_source["overall"]["boundary_f1"] == 1.0
    assert np.isfinite(from_root["comparison"]["keyframes"]["diff"])
