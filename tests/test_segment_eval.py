"""Boundary/segment metrics of `pipeline.eval_segments` on hand-made cases, and the report."""

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
    assert predictions_from_catalog(str(tmp_path), hint="sim") == {0: [20, 35], 1: [10]}
    assert predictions_from_catalog(str(tmp_path), "other") == {0: [5, 6, 7]}
    with pytest.raises(ValueError, match="pick one with --dataset"):
        predictions_from_catalog(str(tmp_path), hint="nope")
    with pytest.raises(ValueError, match="no dataset 'x'"):
        predictions_from_catalog(str(tmp_path), "x")
