"""Every reader round-trips the episodes its writer (sim/lerobot_writer.py, sim/formats.py) wrote."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from carve.ingest.sources import detect_format, load_episode, open_source
from carve.ingest.sources.base import EpisodeRef
from carve.sim.formats import (
    INDEX_ACTION_NAMES,
    INDEX_STATE_NAMES,
    index_episodes,
    index_frames,
    read_index,
    write_dataset,
)
from carve.sim.lerobot_writer import EpisodeArrays

FPS = 10
CAM = "observation.images.front"
WRIST = "observation.images.wrist"
STATE_NAMES = INDEX_STATE_NAMES
ACTION_NAMES = INDEX_ACTION_NAMES
LENGTHS = [9, 14, 11]


def make_episodes(lengths: list[int] = LENGTHS, cams: tuple[str, ...] = (CAM,)) -> list[EpisodeArrays]:
    """State dim 0 and every frame carry the global frame index, so the tests can check alignment."""
    return index_episodes(lengths, cams)


def write(tmp_path: Path, fmt: str, episodes: list[EpisodeArrays], **kw) -> Path:
    root = tmp_path / fmt
    return write_dataset(root, episodes, format=fmt, fps=FPS, state_names=STATE_NAMES, action_names=ACTION_NAMES, **kw)


def _check_roundtrip(path: Path, fmt: str, episodes: list[EpisodeArrays], expect_format: str) -> list[EpisodeRef]:
    assert detect_format(str(path)) == expect_format
    src = open_source(str(path))
    assert src.format == expect_format
    refs = src.list_episodes()
    assert [r.episode_index for r in refs] == list(range(len(episodes)))
    assert len({r.fingerprint for r in refs}) == len(refs)
    for ref, want in zip(refs, episodes, strict=True):
        # refs travel through Ray as rows/pickles
        ref2 = EpisodeRef.from_row(pickle.loads(pickle.dumps(ref.to_row())))
        ep = load_episode(ref2)
        assert ep.length == want.length
        assert ep.task == want.task
        assert ep.fps == pytest.approx(FPS)
        if fmt == "robomimic":  # gripper dims are stored first (robot0_gripper_qpos < robot0_joint_pos)
            np.testing.assert_allclose(ep.state, want.state[:, [2, 0, 1]])
            assert ep.state_names[0].startswith("robot0_gripper_qpos")
        else:
            np.testing.assert_allclose(ep.state, want.state)
        if fmt != "robomimic":
            assert ep.state_names == STATE_NAMES
            assert ep.action_names == ACTION_NAMES
        np.testing.assert_allclose(ep.action, want.action)
        first = want.state[0, 0].astype(int)
        frames = ep.frames()
        assert frames.shape == (want.length, 64, 64, 3)
        assert [read_index(f) for f in frames] == list(range(first, first + want.length))
        pick = [want.length - 1, 0, want.length // 2]
        assert [read_index(f) for f in ep.frames(None, pick)] == [first + i for i in pick]
    return refs


@pytest.mark.parametrize("fmt", ["lerobot-v3.0", "lerobot-v2.1"])
def test_lerobot_roundtrip_h264(tmp_path: Path, fmt: str) -> None:
    eps = make_episodes()
    path = write(tmp_path, fmt, eps, episodes_per_file=2)
    _check_roundtrip(path, fmt, eps, "lerobot")
    info = json.loads((path / "meta/info.json").read_text())
    assert info["codebase_version"] == fmt.split("-")[1]


def test_lerobot_v30_roundtrip_av1(tmp_path: Path) -> None:
    if not any(c in av.codecs_available for c in ("libsvtav1", "libaom-av1")):
        pytest.skip("no AV1 encoder (libsvtav1/libaom-av1) in this PyAV build")
    eps = make_episodes([6, 8])
    path = write(tmp_path, "lerobot-v3.0", eps, codec="av1", episodes_per_file=2)
    refs = _check_roundtrip(path, "lerobot-v3.0", eps, "lerobot")
    ep = load_episode(refs[1], video_backend="auto")
    assert ep._frame_fn is not None
    assert ep._frame_fn.videos.reader(CAM).backend == "pyav"  # decord cannot open AV1


def test_v30_layout_is_lerobots(tmp_path: Path) -> None:
    """The files and episode-meta columns the lerobot library itself reads."""
    path = write(tmp_path, "lerobot-v3.0", make_episodes(), episodes_per_file=2)
    for rel in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet",
                "data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
                f"videos/{CAM}/chunk-000/file-000.mp4", f"videos/{CAM}/chunk-000/file-001.mp4"):
        assert (path / rel).is_file(), rel
    meta = pq.read_table(path / "meta/episodes/chunk-000/file-000.parquet")
    for col in ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                "dataset_to_index", f"videos/{CAM}/chunk_index", f"videos/{CAM}/file_index",
                f"videos/{CAM}/from_timestamp", f"videos/{CAM}/to_timestamp"):
        assert col in meta.column_names, col
    tasks = pq.read_table(path / "meta/tasks.parquet").to_pandas()
    assert sorted(tasks.index) == ["task 0", "task 1"]


def test_v30_multi_camera_and_shared_file_mapping(tmp_path: Path) -> None:
    eps = make_episodes([7, 12, 5, 10], cams=(CAM, WRIST))
    path = write(tmp_path, "lerobot-v3.0", eps, episodes_per_file=3)
    refs = open_source(str(path)).list_episodes()
    assert refs[1].locator["videos"][CAM]["path"] == refs[2].locator["videos"][CAM]["path"]  # same shared file
    starts = np.cumsum([0, *[e.length for e in eps]])
    for ref, s, e in zip(refs, starts[:-1], eps, strict=True):
        for backend in ("pyav", "decord"):
            ep = load_episode(ref, camera=WRIST, video_backend=backend)
            assert ep.cameras == [CAM, WRIST]
            got = [read_index(f) for f in ep.frames(WRIST)]
            assert got == list(range(s + 1000, s + 1000 + e.length))
            assert [read_index(f) for f in ep.frames(CAM, [e.length - 1])] == [s + e.length - 1]


@pytest.mark.parametrize("fmt", ["folder-npz", "folder-parquet"])
def test_folder_roundtrip(tmp_path: Path, fmt: str) -> None:
    eps = make_episodes()
    path = write(tmp_path, fmt, eps)
    _check_roundtrip(path, fmt, eps, "folder")


def test_folder_without_sidecar_uses_timestamps_and_video_fps(tmp_path: Path) -> None:
    eps = make_episodes([8])
    path = write(tmp_path, "folder-npz", eps)
    (path / "episode_000000.json").unlink()
    ep = load_episode(open_source(str(path)).list_episodes()[0])
    assert ep.fps == pytest.approx(FPS)
    assert ep.state_names == ["state_0", "state_1", "state_2"]
    assert [read_index(f) for f in ep.frames("camera", [3])] == [3]


@pytest.mark.parametrize("fmt,kw", [("robomimic", {}), ("aloha", {}), ("aloha", {"compress": True})])
def test_hdf5_roundtrip(tmp_path: Path, fmt: str, kw: dict) -> None:
    eps = make_episodes()
    path = write(tmp_path, fmt, eps, **kw)
    refs = _check_roundtrip(path, fmt, eps, "hdf5")
    ep = load_episode(refs[0])
    assert ep.cameras == ["front"]
    assert ep.robot == ("aloha" if fmt == "aloha" else "robomimic")


def test_fingerprint_changes_only_for_the_touched_episode(tmp_path: Path) -> None:
    eps = make_episodes()
    path = write(tmp_path, "lerobot-v2.1", eps)
    before = [r.fingerprint for r in open_source(str(path)).list_episodes()]
    assert before == [r.fingerprint for r in open_source(str(path)).list_episodes()]
    target = path / "data/chunk-000/episode_000001.parquet"
    pq.write_table(pq.read_table(target), target, compression="zstd")
    after = [r.fingerprint for r in open_source(str(path)).list_episodes()]
    assert after[0] == before[0] and after[2] == before[2]
    assert after[1] != before[1]


def test_dataset_name_override_and_episode_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", make_episodes([5, 6]))
    src = open_source(str(path), dataset="panda")
    assert src.dataset == "panda"
    assert [r.episode_id for r in src.list_episodes()] == ["panda/000000", "panda/000001"]


def test_file_uri_and_explicit_format(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", make_episodes([6, 7]), episodes_per_file=2)
    src = open_source(f"file://{path}", "lerobot", video_backend="pyav")
    refs = src.list_episodes()
    ep = load_episode(refs[1], video_backend="pyav")
    assert [read_index(f) for f in ep.frames(CAM, [0, 6])] == [6, 12]


def test_plain_aloha_file_gets_the_aloha_joint_names(tmp_path: Path) -> None:
    """Real ALOHA files carry no names: 14-dim qpos/action get ALOHA's bimanual joint names."""
    from carve.sim.formats import write_aloha

    n = 6
    state = np.tile(np.arange(14, dtype=np.float32), (n, 1))
    ep = EpisodeArrays(task="fold", state=state, action=state * 2, frames={"cam_high": index_episodes([n])[0].frames[CAM]})
    path = write_aloha(tmp_path / "aloha", [ep], fps=50)
    loaded = load_episode(open_source(str(path)).list_episodes()[0])
    assert loaded.state_names[6] == "left_gripper" and loaded.state_names[13] == "right_gripper"
    assert loaded.action_names == loaded.state_names
    assert loaded.fps == 50 and loaded.cameras == ["cam_high"]
    assert [read_index(f) for f in loaded.frames("cam_high", [5, 1])] == [5, 1]


def test_folder_video_whose_first_pts_is_not_zero(tmp_path: Path) -> None:
    """Sample k of a folder episode is the k-th frame even when the stream starts at pts > 0."""
    from fractions import Fraction

    path = write(tmp_path, "folder-npz", make_episodes([10]))
    mp4 = path / "episode_000000.mp4"
    with av.open(str(mp4), "w") as c:
        s = c.add_stream("libx264", rate=FPS, options={"g": "4"})
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = Fraction(1, FPS)
        for k, img in enumerate(index_frames(range(10))):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k + 3
            frame.time_base = Fraction(1, FPS)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    ref = open_source(str(path)).list_episodes()[0]
    for backend in ("pyav", "decord"):
        ep = load_episode(ref, video_backend=backend)
        assert [read_index(f) for f in ep.frames()] == list(range(10))
        assert [read_index(f) for f in ep.frames(None, [9, 0])] == [9, 0]


def test_lerobot_image_features_stored_in_parquet(tmp_path: Path) -> None:
    """lerobot's `image` dtype: PNG bytes in the data parquet instead of an mp4."""
    import io

    import pyarrow as pa
    from PIL import Image

    eps = make_episodes([5, 7], cams=())
    path = write(tmp_path, "lerobot-v2.1", eps)
    info = json.loads((path / "meta/info.json").read_text())
    info["features"]["observation.image"] = {"dtype": "image", "shape": [64, 64, 3], "names": ["height", "width", "channel"]}
    (path / "meta/info.json").write_text(json.dumps(info))
    start = 0
    for i, ep in enumerate(eps):
        f = path / f"data/chunk-000/episode_{i:06d}.parquet"
        table = pq.read_table(f)
        pngs = []
        for img in index_frames(range(start, start + ep.length)):
            b = io.BytesIO()
            Image.fromarray(img).save(b, format="PNG")
            pngs.append({"bytes": b.getvalue(), "path": None})
        pq.write_table(table.append_column("observation.image", pa.array(pngs)), f)
        start += ep.length
    refs = open_source(str(path)).list_episodes()
    loaded = load_episode(refs[1])
    assert loaded.cameras == ["observation.image"]
    assert [read_index(f) for f in loaded.frames()] == list(range(5, 12))
    assert [read_index(f) for f in loaded.frames(None, [6, 0])] == [11, 5]


def test_folder_episode_numbers_come_from_names(tmp_path: Path) -> None:
    path = write(tmp_path, "folder-npz", make_episodes([5, 6]))
    for old, new in (("episode_000000", "ep_12"), ("episode_000001", "ep_5")):
        for ext in ("mp4", "npz", "json"):
            (path / f"{old}.{ext}").rename(path / f"{new}.{ext}")
    refs = open_source(str(path)).list_episodes()
    assert [(r.episode_index, r.locator["name"]) for r in refs] == [(5, "ep_5"), (12, "ep_12")]
    assert load_episode(refs[0]).length == 6


def test_folder_arrays_sampled_faster_than_the_video(tmp_path: Path) -> None:
    """20 Hz arrays over a 10 fps video: each sample gets the nearest frame (no fps contract)."""
    path = write(tmp_path, "folder-npz", make_episodes([10]))
    z = dict(np.load(path / "episode_000000.npz"))
    n = 19  # 0.0 .. 0.9 s at 20 Hz
    np.savez(path / "episode_000000.npz", state=np.zeros((n, 3), np.float32), action=np.zeros((n, 3), np.float32),
             timestamps=np.arange(n) / 20.0, task=z["task"])
    meta = json.loads((path / "episode_000000.json").read_text())
    meta["fps"] = 20
    (path / "episode_000000.json").write_text(json.dumps(meta))
    ep = load_episode(open_source(str(path)).list_episodes()[0], video_backend="pyav")
    got = [read_index(f) for f in ep.frames()]
    assert len(got) == n
    assert got[::2] == list(range(10))  # samples at whole frame times hit those frames exactly
