"""Boundary/segment metrics of `carve.ingest.eval_segments` on hand-made cases (tolerance in frames and
in seconds, bootstrap intervals), the report, `carve eval-segments`, and the PerAct/RVT keyframe
baseline of `carve.ingest.keyframes` on hand-made signals."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from carve.ingest.eval_segments import (
    boundary_counts,
    evaluate,
    format_report,
    load_truth,
    match_boundaries,
    prf,
    segment_counts,
)
from carve.storage.root import open_root

TRUE = [20, 35, 50, 80, 100]
LENGTH = 130


def f1(pred: list[int], true: list[int], tol: int = 2) -> float:
    return prf(boundary_counts(pred, true, tol))["f1"]


def test_perfect_prediction() -> None:
    assert boundary_counts(TRUE, TRUE) == {"tp": 5, "fp": 0, "fn": 0}
    assert f1(TRUE, TRUE) == 1.0
    assert segment_counts(TRUE, TRUE, LENGTH) == {"tp": 6, "fp": 0, "fn": 0}


def test_shift_by_one_is_within_tolerance_and_by_five_is_not() -> None:
    plus1 = [b + 1 for b in TRUE]
    plus5 = [b + 5 for b in TRUE]
    assert f1(plus1, TRUE) == 1.0
    assert f1(plus5, TRUE) == 0.0
    assert f1(plus5, TRUE, tol=5) == 1.0
    assert f1(plus1, TRUE, tol=0) == 0.0
    # segments barely change with a 5-frame shift: all still overlap at IoU >= 0.5
    assert prf(segment_counts(plus5, TRUE, LENGTH))["f1"] == 1.0


def test_missing_boundary_lowers_recall_only() -> None:
    pred = [b for b in TRUE if b != 50]
    c = boundary_counts(pred, TRUE)
    assert c == {"tp": 4, "fp": 0, "fn": 1}
    m = prf(c)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(0.8)
    s = segment_counts(pred, TRUE, LENGTH)
    # the merged [35, 80) still matches [50, 80) (IoU 30/45); [35, 50) is left unmatched
    assert s == {"tp": 5, "fp": 0, "fn": 1}


def test_matching_is_one_to_one_and_maximal() -> None:
    # two predictions near one true boundary: only one can match
    assert boundary_counts([19, 21], [20]) == {"tp": 1, "fp": 1, "fn": 0}
    # greedy nearest-first would pair 11 with 10 and leave 12 and 9 unmatched; the best has 2 pairs
    pairs = match_boundaries([9, 11], [10, 12], tol=1)
    assert len(pairs) == 2 and all(abs(p - t) <= 1 for p, t in pairs)
    assert boundary_counts([], TRUE) == {"tp": 0, "fp": 0, "fn": 5}
    assert prf({"tp": 0, "fp": 0, "fn": 0})["f1"] == 1.0


def truth_doc() -> dict:
    return {
        "dataset": "sim",
        "fps": 12,
        "episodes": [
            {"episode_index": 0, "task_type": "pick_place", "length": LENGTH, "boundaries": TRUE},
            {"episode_index": 1, "task_type": "push", "length": 60, "boundaries": [20, 40]},
            {"episode_index": 2, "task_type": "push", "length": 60, "boundaries": [25, 45]},
        ],
    }


def test_evaluate_per_task_and_overall() -> None:
    pred = {0: TRUE, 1: [21, 40, 52], 2: [25]}
    rep = evaluate(truth_doc(), pred, tol=2)
    pp, push, overall = rep["per_task"]["pick_place"], rep["per_task"]["push"], rep["overall"]
    assert pp["boundary_f1"] == 1.0 and pp["count_ratio"] == 1.0
    assert (push["boundary_tp"], push["boundary_fp"], push["boundary_fn"]) == (3, 1, 1)
    assert push["pred_events"] == 4 + 2 and push["true_events"] == 6
    assert overall["episodes"] == 3
    assert overall["boundary_precision"] == pytest.approx(8 / 9)
    assert overall["boundary_recall"] == pytest.approx(8 / 9)
    assert overall["count_ratio"] == pytest.approx((6 + 6) / (6 + 6))
    text = format_report(rep)
    assert "pick_place" in text and "overall" in text


def test_evaluate_reports_episodes_without_predictions() -> None:
    rep = evaluate(truth_doc(), {0: TRUE})
    assert rep["missing_episodes"] == [1, 2]
    assert rep["overall"]["episodes"] == 1


def test_load_truth_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load_truth(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset": "x"}))
    with pytest.raises(ValueError, match=r"bad\.json"):
        load_truth(bad)


def write_catalog(root: Path, dataset: str, episodes: dict[int, list[int]], length: int) -> None:
    import pyarrow as pa

    from carve.storage.catalog import Catalog
    from carve.storage.events import write_event_part
    from carve.storage.schema import EVENT_SCHEMA, conform, make_event_id

    rows, records = [], []
    for idx, bounds in episodes.items():
        ep_id = f"{dataset}/{idx:06d}"
        edges = [0, *bounds, length]
        for k, (a, b) in enumerate(itertools.pairwise(edges)):
            rows.append({"event_id": make_event_id(ep_id, a, b), "episode_id": ep_id, "dataset": dataset,
                         "episode_index": idx, "event_index": k, "num_events": len(edges) - 1,
                         "start_frame": a, "end_frame": b, "fps": 12.0})
        records.append({"episode_id": ep_id, "dataset": dataset, "episode_index": idx, "source_uri": "mem",
                        "status": "ok", "num_events": len(edges) - 1, "batch": "b1"})
    cols = {f.name: [r.get(f.name) for r in rows] for f in EVENT_SCHEMA}
    write_event_part(open_root(root), "b1", dataset, conform(pa.Table.from_pydict(cols, schema=EVENT_SCHEMA)))
    with Catalog(root) as cat:
        cat.upsert_dataset(dataset, "mem", "folder")
        cat.record_episodes(records)


def test_predictions_from_catalog_group_by_episode_and_dataset(tmp_path: Path) -> None:
    from carve.ingest.eval_segments import predictions_from_catalog

    write_catalog(tmp_path, "sim", {0: [20, 35], 1: [10]}, 60)
    write_catalog(tmp_path, "other", {0: [5, 6, 7]}, 60)
    root = open_root(str(tmp_path))
    assert predictions_from_catalog(root, hint="sim") == {0: [20, 35], 1: [10]}
    assert predictions_from_catalog(root, "other") == {0: [5, 6, 7]}
    with pytest.raises(ValueError, match="pick one with --dataset"):
        predictions_from_catalog(root, hint="nope")
    with pytest.raises(ValueError, match="no dataset 'x'"):
        predictions_from_catalog(root, "x")


# --------------------------------------------------------------------------------------------
# Tolerance in seconds, bootstrap intervals


def test_tolerance_in_seconds_is_resolved_per_episode_from_its_fps() -> None:
    from carve.ingest.eval_segments import tolerance_frames

    assert [tolerance_frames(0.1, f) for f in (10, 12, 15, 25, 30, 50)] == [1, 1, 2, 3, 3, 5]  # half up
    truth = {"dataset": "sim", "fps": 30, "episodes": [
        {"episode_index": 0, "task_type": "a", "length": 300, "fps": 50, "boundaries": [100, 200]},
        {"episode_index": 1, "task_type": "a", "length": 300, "boundaries": [100, 200]},  # falls back to 30
    ]}
    pred = {0: [105, 204], 1: [103, 204]}
    rep = evaluate(truth, pred, tol_s=0.1)
    assert rep["tolerance"] is None and rep["tolerance_s"] == 0.1
    assert rep["tolerance_frames"] == {"50": 5, "30": 3}
    eps = {e["episode_index"]: e for e in rep["per_episode"]}
    assert eps[0]["tolerance_frames"] == 5 and eps[0]["boundary"] == {"tp": 2, "fp": 0, "fn": 0}
    assert eps[1]["tolerance_frames"] == 3 and eps[1]["boundary"] == {"tp": 1, "fp": 1, "fn": 1}
    # the same predictions at a fixed 3 frames: episode 0 loses both
    assert evaluate(truth, pred, tol=3)["overall"]["boundary_tp"] == 1
    assert "+-0.1 s (3 frames at 30 fps, 5 frames at 50 fps)" in format_report(rep)
    assert "+-2 frames" in format_report(evaluate(truth, pred))


def test_tolerance_in_seconds_needs_an_fps() -> None:
    truth = {"dataset": "nofps", "episodes": [{"episode_index": 0, "length": 50, "boundaries": [10]}]}
    with pytest.raises(ValueError, match="episode 0 of nofps: no fps"):
        evaluate(truth, {0: [10]}, tol_s=0.1)


def many_episodes(n: int = 20) -> tuple[dict, dict[int, list[int]], dict[int, list[int]]]:
    """Ground truth of `n` episodes, a good and a poor prediction."""
    eps, good, poor = [], {}, {}
    for i in range(n):
        true = [20 + i, 50, 80]
        eps.append({"episode_index": i, "task_type": "t", "length": 100, "fps": 10, "boundaries": true})
        good[i] = true if i % 4 else [20 + i, 50]
        poor[i] = [30, 50] if i % 2 else [10, 40, 60, 90]
    return {"dataset": "x", "fps": 10, "episodes": eps}, good, poor


def test_bootstrap_intervals_are_seeded_and_contain_the_point_estimate() -> None:
    from carve.ingest.eval_segments import paired_bootstrap

    truth, good, poor = many_episodes()
    a = evaluate(truth, good, tol_s=0.1, bootstrap=500, seed=3)
    b = evaluate(truth, good, tol_s=0.1, bootstrap=500, seed=3)
    o = a["overall"]
    assert o["boundary_f1_ci"] == b["overall"]["boundary_f1_ci"]
    assert o["boundary_f1_ci"][0] <= o["boundary_f1"] <= o["boundary_f1_ci"][1] < 1.0
    assert o["segment_f1_ci"][0] <= o["segment_f1"] <= o["segment_f1_ci"][1]
    assert "95% bootstrap intervals" in format_report(a)
    assert "boundary_f1_ci" not in evaluate(truth, good, tol_s=0.1)["overall"]
    p = evaluate(truth, poor, tol_s=0.1)
    cmp = paired_bootstrap(a, p, n=500, seed=0)
    assert cmp["diff"] == pytest.approx(o["boundary_f1"] - p["overall"]["boundary_f1"])
    assert 0 < cmp["ci"][0] <= cmp["diff"] <= cmp["ci"][1] and cmp["p_not_better"] == 0.0
    assert paired_bootstrap(a, a, n=200)["diff"] == 0.0


def test_cli_tolerance_flags_exclusive_and_errors_without_traceback(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from carve.cli.main import main as carve_main

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(truth_doc()))
    with pytest.raises(SystemExit):
        carve_main(["eval-segments", "--truth", str(gt), "--root", str(tmp_path), "--tolerance", "2",
                    "--tolerance-s", "0.1"])
    capsys.readouterr()
    # an empty catalog is a message, not a traceback (--baseline from --root alone: tests/test_eval_truth_*.py)
    with pytest.raises(SystemExit, match=f"^carve eval-segments: catalog {tmp_path} has no events$"):
        carve_main(["eval-segments", "--truth", str(gt), "--root", str(tmp_path), "--baseline", "keyframes"])


# --------------------------------------------------------------------------------------------
# The PerAct/RVT keyframe rule


def arm_signals(n: int, fps: float, moves: list[tuple[int, int]], grip: list[tuple[int, int]],
                rate: float = 1.0) -> tuple:
    """(T, 7) joints moving at `rate` rad/s inside `moves` frame ranges, still elsewhere, and a
    binary close command (1 = close) inside `grip` ranges, plus the measured opening."""
    import numpy as np

    vel = np.zeros((n, 7))
    for a, b in moves:
        vel[a:b] = rate
    q = np.cumsum(vel, axis=0) / fps
    cmd = np.zeros(n)
    for a, b in grip:
        cmd[a:b] = 1.0
    opening = 0.08 * (1.0 - cmd)
    return q, cmd, opening


def test_keyframes_at_gripper_changes_and_stops_with_the_published_buffer() -> None:
    import numpy as np

    from carve.ingest.keyframes import perceiver_keyframes

    fps, n = 20.0, 100
    q, cmd, opening = arm_signals(n, fps, moves=[(0, 30), (45, 70)], grip=[(40, 80)])
    state = np.column_stack([q, opening])
    action = np.column_stack([q, cmd])
    names_s = [*(f"joint_{i}" for i in range(7)), "gripper_opening"]
    names_a = [*(f"joint_{i}_target" for i in range(7)), "gripper_command"]
    keys = perceiver_keyframes(state, action, fps, names_s, names_a)
    # gripper changes: closes at 40, opens at 80 (the stop buffer does not apply to them).
    # stops: still from 30 (central differences) and from 70: a stop keyframe, then one every
    # buffer + 1 = 5 frames (0.2 s at 20 fps: PerAct's 4 frames); none while the gripper changes
    # within frames i-2..i+1 (41, 81); the second-to-last frame never stops, and the last frame
    # (PerAct's final keyframe) is the episode's end, not a boundary.
    assert keys == [30, 35, 40, 42, 70, 75, 80, 82, 87, 92, 97]
    # while the arm moves (45..69) there is none
    assert not [k for k in keys if 45 <= k < 70]


def test_keyframe_buffer_is_in_seconds() -> None:
    import numpy as np

    from carve.ingest.keyframes import perceiver_keyframes

    for fps in (10.0, 50.0):
        n = int(3 * fps)
        q, _, _ = arm_signals(n, fps, moves=[(0, int(fps))], grip=[])
        keys = perceiver_keyframes(q, None, fps, None, None)
        gaps = set(np.diff(keys).tolist())
        assert gaps == {round(0.2 * fps) + 1}, (fps, keys)


def test_keyframes_read_every_gripper_of_every_arm() -> None:
    import numpy as np

    from carve.ingest.keyframes import perceiver_keyframes

    fps, n = 30.0, 120
    ql, _, gl = arm_signals(n, fps, moves=[(0, n)], grip=[(20, 60)])
    qr, _, gr = arm_signals(n, fps, moves=[(0, n)], grip=[(70, 100)])
    names = [f"{a}_{c}" for a in ("left", "right") for c in (*(f"joint_{i}" for i in range(7)), "gripper")]
    state = np.column_stack([ql, gl, qr, gr])
    keys = perceiver_keyframes(state, state.copy(), fps, names, names)
    assert keys == [20, 60, 70, 100]
    # one arm still, the other moving: not stopped (PerAct2 requires both arms stopped)
    still = np.column_stack([np.zeros_like(ql), gl, qr, gr])
    assert perceiver_keyframes(still, None, fps, names, None) == [20, 60, 70, 100]
