"""RLDS / Open X-Embodiment sources (`--format rlds`), read without TensorFlow.

The builds under tests/fixtures/rlds/ were written by the real tensorflow-datasets
(tests/fixtures/rlds/make_rlds.py, which says how to rerun it): a Bridge-like build (end-effector
state, 7-d delta action, one camera, two shards) and a DROID-like one (joint + Cartesian state,
gripper position, three cameras, three language instructions). Shown here:

* the TFRecord framing and both CRCs, and `tf.train.Example` parsing, without TensorFlow;
* `carve run --format rlds` over both builds ingests every episode, sees every camera and has the
  task text; its events are those of a run over the same episodes written as a LeRobot dataset
  (the project's writer), column for column but for provenance and pixels (the LeRobot copy is
  video-encoded);
* a truncated shard and a corrupt record (CRC mismatch) are errors naming the shard and the record,
  and only those episodes are quarantined; a build with a feature Carve cannot map is an error
  naming the feature; a re-run ingests nothing new; `carve export --format lerobot` works from an
  RLDS-sourced root.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carve.core.config import CarveConfig
from carve.core.errors import EpisodeError, SourceError
from carve.ingest.sources import detect_format, load_episode, open_source
from carve.ingest.sources.tfrecord import (
    TFRecordError,
    _crc32c_py,
    frame,
    iter_records,
    masked_crc32c,
    parse_example,
    read_record,
    scan_records,
)
from carve.pipeline.executor import LocalExecutor
from carve.pipeline.run import RunSummary, run_pipeline
from carve.storage.events import read_events
from carve.storage.root import open_root

FIXTURES = Path(__file__).parent / "fixtures" / "rlds"
BRIDGE = FIXTURES / "bridge_dataset" / "1.0.0"
DROID = FIXTURES / "droid"  # the dataset folder above its version folder: the highest version is read
BUILDS = {"bridge": (BRIDGE, 5, ["image"]),
          "droid": (DROID, 4, ["exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"])}
# columns that name where an event came from, or depend on the pixels (the LeRobot copy is
# H.264-encoded: same frames, other pixel values), or on the clustering
NOT_COMPARED = {"source_uri", "source_file", "source_key", "emb", "emb_visual", "emb_visual_cameras", "end_emb_visual",
                "obs_visual",
                "cluster_id", "cluster_dist", "cluster_path", "dup_of", "weight", "sampling_weight"}


def _cfg(root: Path, source: Path | str, fmt: str = "rlds", dataset: str | None = None) -> CarveConfig:
    return CarveConfig().with_overrides({
        "root": str(root), "source": {"uri": str(source), "format": fmt, "dataset": dataset},
        "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False},
        "embed": {"text": "none"},
    })


def _run(root: Path, source: Path | str, fmt: str = "rlds", dataset: str | None = None, shard: bool = False) -> RunSummary:
    return run_pipeline(_cfg(root, source, fmt, dataset), shard=shard, executor=LocalExecutor())


def _events(root: Path) -> list[dict[str, Any]]:
    with open_root(str(root)) as r:
        rows = read_events(r).to_pylist()
    return sorted(rows, key=lambda e: (e["episode_index"], e["start_frame"]))


# -- the TFRecord reader -------------------------------------------------------------------------

def test_tfrecord_framing_crcs_and_example_without_tensorflow(tmp_path: Path):
    assert masked_crc32c(b"") == 0xA282EAD8  # masked CRC32C of nothing (TensorFlow's value)
    assert _crc32c_py(b"123456789") == 0xE3069283  # the CRC32C check value: fallback == google-crc32c
    assert masked_crc32c(b"123456789") == ((((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
    shard = sorted(BRIDGE.glob("*.tfrecord-*"))[0]
    with shard.open("rb") as f:
        index, err = scan_records(f, shard.name, shard.stat().st_size)
        assert err is None and len(index) == 2
        data = read_record(f, *index[1], shard.name, 1)
    with shard.open("rb") as f:
        assert list(iter_records(f, shard.name))[1] == data
    ex = parse_example(data)
    t = len(ex["steps/is_first"])
    assert ex["steps/observation/state"].shape == (7 * t,) and len(ex["steps/observation/image"]) == t
    assert ex["steps/observation/image"][0][:2] == b"\xff\xd8"  # JPEG bytes, as TFDS encoded them
    assert int(ex["steps/is_first"][0]) == 1 and ex["steps/language_instruction"][0]

    # a record written here reads back; one flipped data byte is a CRC mismatch naming file and record
    p = tmp_path / "x.tfrecord"
    p.write_bytes(frame(b"hello") + frame(b"world"))
    with p.open("rb") as f:
        assert list(iter_records(f, "x.tfrecord")) == [b"hello", b"world"]
    raw = bytearray(p.read_bytes())
    raw[len(frame(b"hello")) + 12] ^= 0xFF
    p.write_bytes(bytes(raw))
    with p.open("rb") as f, pytest.raises(TFRecordError, match=r"x\.tfrecord: record 1 at byte 21: data CRC mismatch"):
        list(iter_records(f, "x.tfrecord"))
    # a corrupt length header ends the header scan with an error naming the record; the ones before it stand
    raw = bytearray(frame(b"hello") + frame(b"world"))
    raw[21 + 2] ^= 0x01
    p.write_bytes(bytes(raw))
    with p.open("rb") as f:
        index, err = scan_records(f, "x.tfrecord", len(raw))
    assert index == [(0, 5)] and err and "record 1 at byte 21: the CRC of its length does not match" in err


# -- mapping ---------------------------------------------------------------------------------

def test_both_layouts_map_state_action_cameras_task_and_fps():
    assert detect_format(str(BRIDGE)) == detect_format(str(DROID)) == "rlds"
    b = open_source(str(BRIDGE))
    assert (b.format, b.dataset, b.mapping.layout, b.mapping.fps) == ("rlds", "bridge_dataset", "bridge_dataset", 5.0)
    assert b.mapping.state_names == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    assert b.mapping.action_names == ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    assert list(b.mapping.cameras) == ["image"]
    assert "steps/language_embedding" in b.mapping.skipped
    d = open_source(str(DROID), "rlds")
    assert (d.dataset, d.mapping.layout, d.mapping.fps, d.mapping.robot) == ("droid", "droid", 15.0, "franka")
    assert d.mapping.state_names == [*(f"joint_{i}" for i in range(7)), "gripper", "x", "y", "z", "roll", "pitch", "yaw"]
    assert sorted(d.mapping.cameras) == BUILDS["droid"][2]
    refs = d.list_episodes()
    assert [r.episode_index for r in refs] == [0, 1, 2, 3]
    ep = load_episode(refs[0])
    assert ep.state.shape == (ep.length, 14) and ep.action.shape == (ep.length, 7) and ep.fps == 15.0
    assert ep.task and ep.cameras == BUILDS["droid"][2]
    frames = ep.frames("wrist_image_left", [0, ep.length - 1])
    assert frames.shape == (2, 36, 64, 3) and frames.dtype == np.uint8
    # DROID's gripper_position is 0 open .. 1 closed: read as the opening, open at the start
    assert ep.state[0, 7] > 0.9 and ep.state[:, 7].min() < 0.1
    # a camera selection is recorded; every camera stays readable
    one = load_episode(refs[0], camera="exterior_image_2_left")
    assert one.selected_cameras == ["exterior_image_2_left"] and one.cameras == BUILDS["droid"][2]
    with pytest.raises(SourceError, match="no camera 'front'"):
        open_source(str(DROID), "rlds", camera="front")


def test_generic_mapping_names_columns_from_the_feature_descriptions(tmp_path: Path):
    from carve.ingest.sources.oxe import description_names

    assert description_names("Robot state, consists of [7x robot joint angles, 2x gripper position, "
                             "1x door opening angle].", 10) == [
        *(f"joint_angles_{i}" for i in range(7)), "gripper_position_0", "gripper_position_1", "door_opening_angle"]
    assert description_names("Robot action, consists of [7x delta end-effector: 3x pos, 3x rot, 1x gripper].", 7) == [
        "pos_0", "pos_1", "pos_2", "rot_0", "rot_1", "rot_2", "gripper"]
    assert description_names("no brackets", 3) is None
    # the same Bridge records under a name no layout knows: mapped by the generic rules
    build = tmp_path / "my_lab_dataset" / "1.0.0"
    shutil.copytree(BRIDGE, build)
    info = json.loads((build / "dataset_info.json").read_text())
    info["name"] = "my_lab_dataset"
    (build / "dataset_info.json").write_text(json.dumps(info))
    for f in build.glob("bridge_dataset-*"):
        f.rename(build / f.name.replace("bridge_dataset", "my_lab_dataset"))
    src = open_source(str(build), "rlds")
    assert src.mapping.layout == "generic" and src.mapping.fps == 10.0
    assert src.mapping.state_names == ["end_effector_state_0", "end_effector_state_1", "end_effector_state_2",
                                       "end_effector_state_3", "end_effector_state_4", "end_effector_state_5",
                                       "gripper_position"]
    assert src.mapping.action_names == ["pos_0", "pos_1", "pos_2", "rot_0", "rot_1", "rot_2", "gripper"]
    ep = load_episode(src.list_episodes()[0])
    assert ep.task and ep.cameras == ["image"]


def _with_feature(tmp_path: Path, key: str, node: dict[str, Any]) -> Path:
    build = tmp_path / "bad"
    shutil.copytree(BRIDGE, build)
    doc = json.loads((build / "features.json").read_text())
    obs = doc["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"]["features"]["observation"]
    obs["featuresDict"]["features"][key] = node
    (build / "features.json").write_text(json.dumps(doc))
    return build


def test_a_feature_carve_cannot_map_is_an_error_naming_it(tmp_path: Path):
    cloud = {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
             "tensor": {"dtype": "float32", "encoding": "none", "shape": {"dimensions": ["-1", "3"]}}}
    with pytest.raises(SourceError, match=r"cannot map .*steps/observation/point_cloud: a tensor of shape \[-1, 3\]"):
        open_source(str(_with_feature(tmp_path / "a", "point_cloud", cloud)), "rlds")
    video = {"pythonClassName": "tensorflow_datasets.core.features.video_feature.Video",
             "sequence": {"feature": {"image": {"shape": {"dimensions": ["64", "64", "3"]}, "dtype": "uint8"}}}}
    with pytest.raises(SourceError, match=r"cannot map feature steps/observation/clip .*video_feature.Video"):
        open_source(str(_with_feature(tmp_path / "b", "clip", video)), "rlds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no features\.json"):
        open_source(str(tmp_path / "empty"), "rlds")


# -- runs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, RunSummary]]:
    base = tmp_path_factory.mktemp("rlds-runs")
    out = {}
    for name, (build, _, _) in BUILDS.items():
        root = base / name
        out[name] = (root, _run(root, build))
    return out


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_run_ingests_every_episode_with_every_camera_and_the_task(runs, name: str):
    root, s = runs[name]
    _, n, cams = BUILDS[name]
    assert (s.episodes_total, s.episodes_ok, s.episodes_failed) == (n, n, 0)
    events = _events(root)
    assert {e["episode_index"] for e in events} == set(range(n))
    assert all(e["cameras"] == cams for e in events)
    assert all(e["task"] and "red block" in e["task"] for e in events)
    assert all(e["source_file"].endswith(tuple(f"-of-0000{k}" for k in (1, 2))) and e["source_key"].startswith("record=")
               for e in events)
    # the build's own episode id (episode_metadata: Bridge's episode_id, else DROID's file_path) rides along
    own = {e["episode_index"]: e["source_key"].split(" episode_id=", 1)[1] for e in events}
    if name.startswith("bridge"):
        assert sorted(own.values()) == [str(1000 + i) for i in range(n)]  # make_rlds.py: episode_id = 1000 + i
    else:
        assert len(set(own.values())) == n and all(v.endswith("/trajectory.h5") for v in own.values())
    # each episode is a pick-and-place: a grasp and a release are found in every one
    for i in range(n):
        reasons = [e["boundary_reason"] for e in events if e["episode_index"] == i]
        assert "gripper_close" in reasons and "gripper_open" in reasons, (i, reasons)
    # an incremental re-run lists the same episodes and ingests none
    again = _run(root, BUILDS[name][0])
    assert (again.episodes_total, again.episodes_skipped, again.events) == (n, n, 0)


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_run_equals_a_run_over_the_same_episodes_written_as_lerobot(runs, tmp_path: Path, name: str):
    from carve.sim.lerobot_writer import EpisodeArrays, write_lerobot_dataset

    build, n, _ = BUILDS[name]
    src = open_source(str(build), "rlds")
    refs = src.list_episodes()
    first = load_episode(refs[0])

    def arrays():
        for r in refs:
            ep = load_episode(r)
            yield EpisodeArrays(task=ep.task, state=ep.state, action=ep.action,
                                frames={c: ep.frames(c) for c in ep.cameras})

    lerobot = write_lerobot_dataset(tmp_path / "lerobot", arrays(), fps=int(first.fps), state_names=first.state_names,
                                    action_names=first.action_names, robot_type=first.robot, codec="h264")
    s = _run(tmp_path / "root", lerobot, fmt="lerobot", dataset=src.dataset)
    assert (s.episodes_ok, s.episodes_failed) == (n, 0)
    want, got = _events(runs[name][0]), _events(tmp_path / "root")
    assert len(want) == len(got) > 2 * n
    differ = set()
    for a, b in zip(want, got, strict=True):
        assert len(a["keyframes"]) == len(b["keyframes"])  # the same keyframes (their JPEGs differ in pixels)
        for col in sorted(set(a) - NOT_COMPARED - {"keyframes"}):
            va, vb = a[col], b[col]
            if isinstance(va, float) or (isinstance(va, list) and va and isinstance(va[0], float | list)):
                same = np.allclose(np.asarray(va, dtype=np.float64), np.asarray(vb, dtype=np.float64), atol=1e-5)
            else:
                same = va == vb
            if not same:
                differ.add(col)
    assert not differ, sorted(differ)


def test_run_with_one_camera_selected(tmp_path: Path):
    cfg = _cfg(tmp_path / "root", DROID).with_overrides({"source": {"camera": "wrist_image_left"}})
    s = run_pipeline(cfg, shard=False, executor=LocalExecutor())
    assert (s.episodes_ok, s.episodes_failed) == (4, 0)
    assert {tuple(e["cameras"]) for e in _events(tmp_path / "root")} == {("wrist_image_left",)}


def test_run_over_a_build_on_s3(s3, tmp_path: Path):
    """The same build on an S3 server (loopback): listed by ranged header reads, loaded record by record."""
    uri = s3.upload(DROID, "oxe/droid")
    src = open_source(uri)
    assert src.format == "rlds" and src.dataset == "droid"
    s = _run(tmp_path / "root", uri)
    assert (s.episodes_ok, s.episodes_failed) == (4, 0)
    events = _events(tmp_path / "root")
    assert len({e["episode_index"] for e in events}) == 4 and len(events) > 8
    assert all(e["source_file"] == "1.0.0/droid-train.tfrecord-00000-of-00001" for e in events)


# -- bad input -----------------------------------------------------------------------------

def test_truncated_and_corrupt_records_are_quarantined_and_the_job_continues(tmp_path: Path):
    build = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(BRIDGE, build)
    shards = sorted(build.glob("*.tfrecord-*"))
    # the last shard is cut in the middle of its last record
    with shards[1].open("rb") as f:
        index, _ = scan_records(f, shards[1].name)
    size = shards[1].stat().st_size
    off, length = index[-1]
    with shards[1].open("r+b") as f:
        f.truncate(off + length // 2)
    # one byte of the first shard's first record is flipped: its data CRC no longer matches
    raw = bytearray(shards[0].read_bytes())
    raw[100] ^= 0x5A
    shards[0].write_bytes(bytes(raw))
    assert shards[1].stat().st_size < size

    src = open_source(str(build), "rlds")
    refs = src.list_episodes()
    assert len(refs) == 5  # dataset_info.json's shardLengths: the cut record is still listed
    with pytest.raises(EpisodeError, match=r"bridge_dataset-train.tfrecord-00000-of-00002: record 0 at byte 0: data CRC mismatch"):
        load_episode(refs[0])
    with pytest.raises(EpisodeError, match=rf"{shards[1].name}: record {len(index) - 1} at byte {off} is truncated"):
        load_episode(refs[-1])

    s = _run(tmp_path / "root", build)
    assert (s.episodes_total, s.episodes_ok, s.episodes_failed) == (5, 3, 2)
    errors = dict(s.failures)
    assert "data CRC mismatch" in errors["bridge_dataset/000000"]
    assert "is truncated" in errors["bridge_dataset/000004"] and shards[1].name in errors["bridge_dataset/000004"]
    assert {e["episode_index"] for e in _events(tmp_path / "root")} == {1, 2, 3}


# -- export ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("ray_local")
def test_export_lerobot_from_an_rlds_sourced_root(tmp_path: Path):
    from carve.export.lerobot import export_lerobot

    root = tmp_path / "root"
    s = _run(root, DROID, shard=True)
    assert s.episodes_ok == 4 and s.shards_version == 1
    out = tmp_path / "lerobot"
    e = export_lerobot(root, out, version=1, codec="h264")
    assert e.episodes == 4 and sorted(e.cameras) == BUILDS["droid"][2] and e.fps == 15
    back = open_source(str(out), "lerobot")
    refs = back.list_episodes()
    assert len(refs) == 4
    src_eps = [load_episode(r) for r in open_source(str(DROID), "rlds").list_episodes()]
    for r, want in zip(refs, src_eps, strict=True):
        ep = load_episode(r)
        assert ep.length == want.length and ep.task == want.task
        assert np.allclose(ep.state, want.state, atol=1e-6) and sorted(ep.cameras) == sorted(want.cameras)
    assert "subtask_index" in json.loads((out / "meta" / "info.json").read_text())["features"]


@pytest.mark.usefixtures("ray_local")
def test_cli_run_format_rlds(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """`carve run --format rlds` on the embedded Ray (the runs above use the in-process executor)."""
    from carve.cli.main import main

    root = tmp_path / "root"
    assert main(["run", "--source", str(DROID), "--format", "rlds", "--root", str(root), "--no-shard",
                 "--set", "embed.text=none", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["episodes_ok"], summary["episodes_failed"]) == (4, 0)
    events = _events(root)
    assert {e["dataset"] for e in events} == {"droid"} and len({e["episode_index"] for e in events}) == 4
    assert {c for e in events for c in e["cameras"]} == set(BUILDS["droid"][2])
