"""`carve eval-segments --truth` in its three forms (carve.ingest.truth), on hand-made data.

One hand-made prediction (a catalog of two episodes, written below) is scored against the same
annotation given as Carve's own ground_truth_events.json, a plain JSON list (with and without
lengths/fps, which then come from the catalog), `{"fps", "episodes"}`, JSON Lines, and a
LeRobot v3.0 / v2.1 folder with per-frame `subtask_index` (local and on S3); every expected
count is worked out by hand in the comments. Then every malformed input gives one error that
names the file, and `--baseline keyframes` from `--root` alone says when the recorded source
is gone.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carve.ingest.eval_segments import evaluate
from carve.ingest.truth import FORMS_HELP, TruthError, complete_truth, read_truth
from carve.storage.root import open_root

FPS = 10.0
# the catalog's events (the prediction): episode -> (length, boundaries)
PRED = {0: (80, [11, 33, 50, 70]), 1: (60, [20])}
# the annotation: ep 0 phases start at 0, 10, 30, 50; ep 1 at 0, 20, 40 (lengths 80, 60)
TRUE = {0: [10, 30, 50], 1: [20, 40]}
# At +-2 frames: ep 0: 11~10 and 50~50 match, 33 is 3 from 30 (miss), 70 is extra -> tp 2, fp 2, fn 1;
# ep 1: 20~20 -> tp 1, fn 1 (40). Overall tp 3, fp 2, fn 2: P = R = F1 = 3/5.
# Segments at IoU >= 0.5: ep 0 pred [0,11) [11,33) [33,50) [50,70) [70,80) vs true [0,10) [10,30)
# [30,50) [50,80): IoUs 10/11, 19/23, 17/20, 20/30 match, [70,80) extra -> tp 4, fp 1, fn 0;
# ep 1 pred [0,20) [20,60) vs true [0,20) [20,40) [40,60): [0,20) 1.0, [20,60)~[20,40) 20/40 = 0.5
# -> tp 2, fn 1. Overall tp 6, fp 1, fn 1: segment F1 = 6/7.
# At +-0.3 s (3 frames at 10 fps) 33~30 matches too: tp 4, fp 1, fn 1 -> F1 = 0.8.


def write_catalog(root: Path, dataset: str, episodes: dict[int, tuple[int, list[int]]], source_uri: str,
                  fmt: str = "lerobot", fps: float = FPS) -> None:
    """A catalog whose events of `dataset` end at each episode's length and start at its boundaries."""
    from carve.storage.catalog import Catalog
    from carve.storage.events import write_event_part
    from carve.storage.schema import EVENT_SCHEMA, conform, make_event_id

    rows, records = [], []
    for idx, (length, bounds) in episodes.items():
        ep_id = f"{dataset}/{idx:06d}"
        edges = [0, *bounds, length]
        for k, (a, b) in enumerate(itertools.pairwise(edges)):
            rows.append({"event_id": make_event_id(ep_id, a, b), "episode_id": ep_id, "dataset": dataset,
                         "episode_index": idx, "event_index": k, "num_events": len(edges) - 1,
                         "start_frame": a, "end_frame": b, "fps": fps})
        records.append({"episode_id": ep_id, "dataset": dataset, "episode_index": idx, "source_uri": source_uri,
                        "status": "ok", "num_events": len(edges) - 1, "batch": "b1"})
    cols = {f.name: [r.get(f.name) for r in rows] for f in EVENT_SCHEMA}
    write_event_part(open_root(root), "b1", dataset, conform(pa.Table.from_pydict(cols, schema=EVENT_SCHEMA)))
    with Catalog(root) as cat:
        cat.upsert_dataset(dataset, source_uri, fmt)
        cat.record_episodes(records)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    write_catalog(r, "mine", PRED, str(tmp_path / "gone"))
    return r


def cli_report(root: Path, truth: str | Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    from carve.cli.main import main as carve_main

    capsys.readouterr()
    rc = carve_main(["eval-segments", "--root", str(root), "--truth", str(truth), "--json", *extra])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def check_hand_counts(rep: dict[str, Any]) -> None:
    o = rep["overall"]
    assert o["episodes"] == 2
    assert (o["boundary_tp"], o["boundary_fp"], o["boundary_fn"]) == (3, 2, 2)
    assert o["boundary_precision"] == pytest.approx(3 / 5)
    assert o["boundary_recall"] == pytest.approx(3 / 5)
    assert o["boundary_f1"] == pytest.approx(3 / 5)
    assert o["segment_f1"] == pytest.approx(6 / 7)
    assert rep["missing_episodes"] == []


def plain_entries(with_length: bool) -> list[dict[str, Any]]:
    out = [{"episode_index": 0, "boundaries": TRUE[0], "phases": ["reach", "grasp", "move", "place"],
            "task": "put the cube in the tray"},
           {"episode_index": 1, "boundaries": [0, *TRUE[1]]}]  # a leading 0 is the first phase's start
    if with_length:
        out[0].update(length=80, fps=FPS)
        out[1].update(length=60, fps=FPS)
    return out


# --------------------------------------------------------------------------------------------
# (a) Carve's own file, unchanged


def test_carve_synth_file_scores_as_before(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"dataset": "mine", "fps": FPS, "generator": {"seed": 0},
           "episodes": [{"episode_index": i, "task_type": "pick_place", "length": n, "fps": FPS,
                         "boundaries": TRUE[i],
                         "phases": [{"name": "reach", "start": 0, "end": TRUE[i][0]}]}
                        for i, n in ((0, 80), (1, 60))]}
    gt = tmp_path / "ground_truth_events.json"
    gt.write_text(json.dumps(doc))
    truth = read_truth(gt)
    assert truth["form"] == "carve" and truth["dataset"] == "mine"
    assert truth["episodes"][0]["phases"] == doc["episodes"][0]["phases"]  # kept as written
    rep = cli_report(root, gt, capsys=capsys)
    check_hand_counts(rep)
    assert list(rep["per_task"]) == ["pick_place"]
    assert rep["truth"] == {"path": str(gt), "form": "carve", "episodes": 2}


# --------------------------------------------------------------------------------------------
# (b) JSON annotations


def test_plain_list_without_lengths_takes_them_and_fps_from_the_catalog(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "mine.json"
    gt.write_text(json.dumps(plain_entries(with_length=False)))
    truth = read_truth(gt)
    assert truth["form"] == "json"
    assert [e["boundaries"] for e in truth["episodes"]] == [[10, 30, 50], [20, 40]]  # frame 0 dropped
    assert [e["length"] for e in truth["episodes"]] == [None, None]
    check_hand_counts(cli_report(root, gt, capsys=capsys))
    # the fps came from the catalog too: 0.3 s is 3 frames at 10 fps, so 33 matches 30
    rep = cli_report(root, gt, "--tolerance-s", "0.3", capsys=capsys)
    assert rep["tolerance_frames"] == {"10": 3}
    o = rep["overall"]
    assert (o["boundary_tp"], o["boundary_fp"], o["boundary_fn"]) == (4, 1, 1)
    assert o["boundary_f1"] == pytest.approx(0.8)


def test_plain_list_with_lengths(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "mine.json"
    gt.write_text(json.dumps(plain_entries(with_length=True)))
    check_hand_counts(cli_report(root, gt, capsys=capsys))


def test_episodes_object_with_top_level_fps(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "mine.json"
    gt.write_text(json.dumps({"fps": 5, "episodes": plain_entries(with_length=False)}))
    truth = read_truth(gt)
    assert truth["form"] == "json" and truth["fps"] == 5.0
    check_hand_counts(cli_report(root, gt, capsys=capsys))
    # the file's own fps (5) wins over the catalog's (10): 0.3 s is round(1.5) = 2 frames, 33 misses
    rep = cli_report(root, gt, "--tolerance-s", "0.3", capsys=capsys)
    assert rep["tolerance_frames"] == {"5": 2}
    assert rep["overall"]["boundary_tp"] == 3


def test_json_lines(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "mine.jsonl"
    gt.write_text("\n".join(json.dumps(e) for e in plain_entries(with_length=False)) + "\n")
    assert read_truth(gt)["form"] == "json"
    check_hand_counts(cli_report(root, gt, capsys=capsys))


def test_episode_missing_from_the_catalog_is_reported_not_scored(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "mine.json"
    gt.write_text(json.dumps([*plain_entries(with_length=False), {"episode_index": 7, "boundaries": [5]}]))
    rep = cli_report(root, gt, capsys=capsys)
    check_hand_counts({**rep, "missing_episodes": []})
    assert rep["missing_episodes"] == [7]


# --------------------------------------------------------------------------------------------
# (c) LeRobot folders with per-frame subtask_index

SUBTASKS = ["reach", "grasp", "move", "place", "retreat"]
# per-frame subtask_index: ep 0 changes at 10, 30, 50; ep 1 at 20 and 40 (back to subtask 4)
FRAMES = {0: [0] * 10 + [1] * 20 + [2] * 20 + [3] * 30, 1: [4] * 20 + [1] * 20 + [4] * 20}


def _frames_table(eps: list[int], with_subtask: bool = True) -> pa.Table:
    cols: dict[str, list[int]] = {"episode_index": [], "frame_index": [], "subtask_index": []}
    for i in eps:
        n = len(FRAMES[i])
        cols["episode_index"] += [i] * n
        cols["frame_index"] += list(range(n))
        cols["subtask_index"] += FRAMES[i]
    if not with_subtask:
        del cols["subtask_index"]
    return pa.table({k: pa.array(v, pa.int64()) for k, v in cols.items()})


def make_lerobot(folder: Path, version: str = "v3.0", with_subtask: bool = True) -> Path:
    """A LeRobot folder holding only what the truth reader needs: info.json, frames, subtask texts."""
    (folder / "meta").mkdir(parents=True)
    (folder / "data" / "chunk-000").mkdir(parents=True)
    info = {"codebase_version": version, "fps": int(FPS), "total_episodes": 2}
    (folder / "meta" / "info.json").write_text(json.dumps(info))
    if version == "v3.0":
        # both episodes in one file, episode 1 first and its rows reversed: the reader sorts
        t = _frames_table([1, 0], with_subtask)
        t = pa.concat_tables([t.slice(0, 60).take(list(range(59, -1, -1))), t.slice(60)])
        pq.write_table(t, folder / "data" / "chunk-000" / "file-000.parquet")
        import pandas as pd

        pd.DataFrame({"subtask_index": range(len(SUBTASKS))},
                     index=pd.Index(SUBTASKS, name="subtask")).to_parquet(folder / "meta" / "subtasks.parquet")
    else:  # v2.1: one parquet per episode, no subtask texts
        for i in (0, 1):
            pq.write_table(_frames_table([i], with_subtask),
                           folder / "data" / "chunk-000" / f"episode_{i:06d}.parquet")
    return folder


def test_lerobot_v30_subtasks(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = make_lerobot(tmp_path / "annotated")
    truth = read_truth(ds)
    assert truth["form"] == "lerobot" and truth["fps"] == FPS
    eps = {e["episode_index"]: e for e in truth["episodes"]}
    assert eps[0]["boundaries"] == [10, 30, 50] and eps[1]["boundaries"] == [20, 40]
    assert eps[0]["length"] == 80 and eps[1]["length"] == 60
    assert eps[0]["phases"] == ["reach", "grasp", "move", "place"]
    assert eps[1]["phases"] == ["retreat", "grasp", "retreat"]
    rep = cli_report(root, ds, capsys=capsys)
    check_hand_counts(rep)
    assert rep["truth"]["form"] == "lerobot"


def test_lerobot_v21_subtasks_one_file_per_episode(root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ds = make_lerobot(tmp_path / "annotated21", version="v2.1")
    truth = read_truth(ds)
    eps = {e["episode_index"]: e for e in truth["episodes"]}
    assert eps[0]["boundaries"] == [10, 30, 50] and eps[1]["boundaries"] == [20, 40]
    assert eps[1]["phases"] == ["4", "1", "4"]  # no meta/subtasks.parquet: the indices
    check_hand_counts(cli_report(root, ds, capsys=capsys))


def test_lerobot_and_json_truth_on_s3(s3: Any, tmp_path: Path) -> None:
    uri = s3.upload(make_lerobot(tmp_path / "annotated"), "truth/annotated")
    truth = read_truth(uri)
    assert truth["form"] == "lerobot"
    assert {e["episode_index"]: e["boundaries"] for e in truth["episodes"]} == TRUE
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "mine.json").write_text(json.dumps(plain_entries(with_length=True)))
    head, _, query = s3.upload(tmp_path / "j", "json").partition("?")
    truth = read_truth(f"{head}/mine.json?{query}")
    assert truth["form"] == "json" and [e["length"] for e in truth["episodes"]] == [80, 60]
    preds = {i: b for i, (_, b) in PRED.items()}
    assert evaluate(truth, preds)["overall"]["boundary_f1"] == pytest.approx(3 / 5)


# --------------------------------------------------------------------------------------------
# Malformed truth: one error naming the file and the reason

BAD_JSON: list[tuple[str, Any, str]] = [
    ("number", 42, "is a JSON number"),
    ("strings", ["a", "b"], "entry 0 is a JSON string, not an object"),
    ("empty", [], "lists no episodes"),
    ("noepisodes", {"dataset": "x", "fps": 10}, "JSON object with no 'episodes' list"),
    ("episodes_not_list", {"episodes": {"0": [1]}}, "'episodes' is a JSON object, not a list"),
    ("no_index", [{"episode_index": 0, "boundaries": [5]}, {"boundaries": [5]}],
     "entry 1 has no 'episode_index'"),
    ("bad_index", [{"episode_index": "0", "boundaries": [5]}], "entry 0 has episode_index '0'"),
    ("no_bounds", [{"episode_index": 3}],
     "entry 0 (episode 3) has no 'boundaries' (expected a list of frame indices)"),
    ("no_bounds_obj", {"episodes": [{"episode_index": 0, "boundaries": []}, {"episode_index": 3}]},
     "episodes[1] (episode 3) has no 'boundaries'"),
    ("bounds_not_list", [{"episode_index": 0, "boundaries": 5}], "'boundaries' is a JSON number"),
    ("float_bound", [{"episode_index": 0, "boundaries": [10, 2.5]}], "boundary 2.5 is not an integer"),
    ("bool_bound", [{"episode_index": 0, "boundaries": [True]}], "boundary True is not an integer"),
    ("negative", [{"episode_index": 0, "boundaries": [-3, 10]}], "boundary -3 is negative"),
    ("unsorted", [{"episode_index": 0, "boundaries": [30, 10]}], "boundaries [30, 10] are not strictly increasing"),
    ("duplicate", [{"episode_index": 0, "boundaries": [10, 10]}], "boundaries [10, 10] are not strictly increasing"),
    ("dup_episode", [{"episode_index": 0, "boundaries": [1]}, {"episode_index": 0, "boundaries": [2]}],
     "entry 1 repeats episode_index 0 (already given by entry 0)"),
    ("beyond", [{"episode_index": 0, "boundaries": [10, 60], "length": 60}],
     "boundary 60 is not inside the episode's 60 frames"),
    ("bad_length", [{"episode_index": 0, "boundaries": [10], "length": 0}], "length 0 is not a positive integer"),
    ("bad_fps", [{"episode_index": 0, "boundaries": [10], "fps": "fast"}], "'fps' is 'fast'; expected a frame rate"),
    ("phases_count", [{"episode_index": 0, "boundaries": [10, 20], "phases": ["a", "b"]}],
     "2 phase names for 2 boundaries; expected 3"),
    ("phases_kind", [{"episode_index": 0, "boundaries": [10], "phases": [1, 2]}],
     "'phases' must be phase names"),
]


@pytest.mark.parametrize(("name", "doc", "reason"), BAD_JSON, ids=[c[0] for c in BAD_JSON])
def test_malformed_json_truth_names_the_file_and_the_forms(tmp_path: Path, name: str, doc: Any, reason: str) -> None:
    gt = tmp_path / f"{name}.json"
    gt.write_text(json.dumps(doc))
    with pytest.raises(TruthError) as e:
        read_truth(gt)
    msg = str(e.value)
    assert msg.startswith(f"ground truth {gt}: ")
    assert reason in msg, msg
    assert msg.endswith(FORMS_HELP)


def test_unreadable_truth_files(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.json": "does not exist",
        tmp_path / "broken.json": "is not valid JSON",
        tmp_path / "broken.jsonl": r"is neither JSON .* nor JSON Lines \(line 2: ",
        tmp_path / "scalars.jsonl": "JSON Lines line 1 is a JSON number",
        tmp_path / "folder": "is a folder without meta/info.json, so not a LeRobot dataset",
    }
    (tmp_path / "broken.json").write_text('[{"episode_index": 0, "boundaries": [1,}]')
    (tmp_path / "broken.jsonl").write_text('{"episode_index": 0, "boundaries": [1]}\n{"episode_index": 1,\n')
    (tmp_path / "scalars.jsonl").write_text("1\n2\n")
    (tmp_path / "folder").mkdir()
    for path, reason in cases.items():
        with pytest.raises(TruthError) as e:
            read_truth(path)
        assert str(e.value).startswith(f"ground truth {path}: ") and re.search(reason, str(e.value)), str(e.value)


def test_lerobot_dataset_without_subtask_index() -> None:
    fixture = Path(__file__).parent / "fixtures" / "lerobot" / "v30"
    with pytest.raises(TruthError) as e:
        read_truth(fixture)
    msg = str(e.value)
    assert msg.startswith(f"ground truth {fixture}: LeRobot v3.0 dataset without a per-frame 'subtask_index' "
                          "column (data/chunk-000/file-000.parquet has ")
    assert "observation.state" in msg and msg.endswith(FORMS_HELP)


def test_lerobot_folders_hand_made_without_subtasks_or_with_an_unknown_version(tmp_path: Path) -> None:
    ds = make_lerobot(tmp_path / "plain21", version="v2.1", with_subtask=False)
    with pytest.raises(TruthError, match=r"plain21: LeRobot v2\.1 dataset without a per-frame 'subtask_index' "
                                         r"column \(data/chunk-000/episode_000000\.parquet has episode_index, "
                                         r"frame_index\)"):
        read_truth(ds)
    odd = make_lerobot(tmp_path / "odd", version="v9")
    with pytest.raises(TruthError, match=r"odd: LeRobot codebase_version 'v9' is not one of v2\.0, v2\.1, v3\.0"):
        read_truth(odd)


def test_boundary_beyond_the_length_known_from_the_catalog(tmp_path: Path) -> None:
    gt = tmp_path / "long.json"
    gt.write_text(json.dumps([{"episode_index": 1, "boundaries": [20, 65]}]))
    truth = read_truth(gt)
    with pytest.raises(TruthError, match=r"long\.json: episode 1: boundary 65 is not inside the episode's 60 "
                                         r"frames \(length from the catalog of R\)"):
        complete_truth(truth, {1: {"length": 60, "fps": 10.0}}, "the catalog of R")


def test_cli_prints_the_error_without_a_traceback(root: Path, tmp_path: Path) -> None:
    from carve.cli.main import main as carve_main

    gt = tmp_path / "bad.json"
    gt.write_text(json.dumps([{"episode_index": 0, "boundaries": [10]}, {"episode_index": 1}]))
    want = (f"carve eval-segments: ground truth {gt}: entry 1 (episode 1) has no 'boundaries' "
            f"(expected a list of frame indices); {FORMS_HELP}")
    with pytest.raises(SystemExit) as e:
        carve_main(["eval-segments", "--root", str(root), "--truth", str(gt)])
    assert e.value.code == want
    # as a process: the message on stderr, exit status 1, no traceback
    p = subprocess.run([sys.executable, "-m", "carve.cli.main", "eval-segments", "--root", str(root),
                        "--truth", str(gt)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert p.stderr.strip() == want and "Traceback" not in p.stderr


# --------------------------------------------------------------------------------------------
# --baseline keyframes from --root alone


def test_baseline_from_root_names_the_recorded_source_when_it_is_gone(root: Path, tmp_path: Path) -> None:
    from carve.cli.main import main as carve_main

    gt = tmp_path / "mine.json"
    gt.write_text(json.dumps(plain_entries(with_length=False)))
    with pytest.raises(SystemExit) as e:
        carve_main(["eval-segments", "--root", str(root), "--truth", str(gt), "--baseline", "keyframes"])
    gone = tmp_path / "gone"
    assert e.value.code == (f"carve eval-segments: dataset 'mine' of the catalog of {root} was read from {gone} "
                            "(lerobot), which no longer exists; give the dataset with --source")
    # there, but no longer a dataset
    gone.mkdir()
    with pytest.raises(SystemExit) as e:
        carve_main(["eval-segments", "--root", str(root), "--truth", str(gt), "--baseline", "keyframes"])
    assert e.value.code == (f"carve eval-segments: dataset 'mine' of the catalog of {root} was read from {gone} "
                            f"(lerobot), which cannot be opened now (dataset {gone}: missing meta/info.json); "
                            "give the dataset with --source")
