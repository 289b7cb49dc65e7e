"""Bad input: dataset-level problems raise SourceError naming the dataset, episode-level ones
raise EpisodeError naming the episode, and a bad episode does not spoil its neighbours."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from carve.core.errors import EpisodeError, SourceError
from carve.ingest.sources import load_episode, open_source
from carve.sim.formats import (
    INDEX_ACTION_NAMES,
    INDEX_STATE_NAMES,
    index_episodes,
    index_frames,
    write_dataset,
)
from carve.sim.lerobot_writer import write_video

CAM = "observation.images.front"
FPS = 10


def write(tmp_path: Path, fmt: str, lengths: list[int] = [8, 12, 10], **kw) -> Path:  # noqa: B006
    return write_dataset(
        tmp_path / fmt, index_episodes(lengths), format=fmt, fps=FPS,
        state_names=INDEX_STATE_NAMES, action_names=INDEX_ACTION_NAMES, **kw,
    )


def _load(path: Path, index: int, **kw):
    ref = next(r for r in open_source(str(path)).list_episodes() if r.episode_index == index)
    return load_episode(ref, **kw)


def _rewrite_column(path: Path, column: str, fn) -> None:
    table = pq.read_table(path)
    i = table.column_names.index(column)
    table = table.set_column(i, column, fn(table))
    pq.write_table(table, path)


def _episode_error(path: Path, index: int, match: str, **kw) -> EpisodeError:
    with pytest.raises(EpisodeError, match=match) as ei:
        _load(path, index, **kw)
    assert ei.value.episode.startswith(f"episode {index} of ")
    assert str(path) in str(ei.value)
    return ei.value


# ------------------------------------------------------------------------------ dataset level
def test_unknown_codebase_version(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0")
    info = json.loads((path / "meta/info.json").read_text())
    info["codebase_version"] = "v4.2"
    (path / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(SourceError, match=r"codebase_version 'v4.2'") as ei:
        open_source(str(path))
    assert str(path) in str(ei.value)


def test_missing_info_json(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0")
    (path / "meta/info.json").unlink()
    with pytest.raises(SourceError, match=r"missing meta/info\.json") as ei:
        open_source(str(path))
    assert str(path) in str(ei.value)


def test_missing_v30_episodes_meta(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0")
    for p in (path / "meta/episodes").rglob("*.parquet"):
        p.unlink()
    with pytest.raises(SourceError, match="meta/episodes"):
        open_source(str(path)).list_episodes()


def test_missing_v21_episodes_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v2.1")
    (path / "meta/episodes.jsonl").unlink()
    with pytest.raises(SourceError, match=r"missing meta/episodes\.jsonl"):
        open_source(str(path)).list_episodes()


def test_unreadable_layouts(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk/readme.txt").write_text("hello")
    with pytest.raises(SourceError, match="unreadable layout"):
        open_source(str(tmp_path / "junk"))
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nowhere"))
    (tmp_path / "h5").mkdir()
    with h5py.File(tmp_path / "h5/other.hdf5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(SourceError, match="neither robomimic"):
        open_source(str(tmp_path / "h5")).list_episodes()


# ------------------------------------------------------------------------------ bad values
def test_nan_in_one_v30_episode_of_a_shared_file(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", episodes_per_file=3)
    data = path / "data/chunk-000/file-000.parquet"

    def poison(table: pa.Table) -> pa.Array:
        state = table.column("observation.state").combine_chunks()
        flat = state.flatten().to_numpy().copy()
        rows = np.flatnonzero(table.column("episode_index").to_numpy() == 1)
        flat[rows[4] * 3 + 1] = np.nan
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), 3)

    _rewrite_column(data, "observation.state", poison)
    _episode_error(path, 1, r"state has 1 non-finite values \(first: NaN at frame 4, dim 1\)")
    assert _load(path, 0).length == 8 and _load(path, 2).length == 10


def test_inf_in_v21_action(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v2.1")
    data = path / "data/chunk-000/episode_000002.parquet"

    def poison(table: pa.Table) -> pa.Array:
        a = table.column("action").combine_chunks()
        flat = a.flatten().to_numpy().copy()
        flat[-1] = np.inf
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), 3)

    _rewrite_column(data, "action", poison)
    _episode_error(path, 2, r"action has 1 non-finite values \(first: inf at frame 9, dim 2\)")


def test_empty_and_mismatched_folder_episodes(tmp_path: Path) -> None:
    path = write(tmp_path, "folder-npz")
    z = dict(np.load(path / "episode_000000.npz"))
    np.savez(path / "episode_000000.npz", **{**z, "state": z["state"][:0], "action": z["action"][:0], "timestamps": z["timestamps"][:0]})
    _episode_error(path, 0, "episode is empty")
    z = dict(np.load(path / "episode_000001.npz"))
    np.savez(path / "episode_000001.npz", **{**z, "action": z["action"][:-2]})
    _episode_error(path, 1, "state has 12 frames but action has 10")


def test_v30_data_rows_disagree_with_episode_meta(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", episodes_per_file=3)
    data = path / "data/chunk-000/file-000.parquet"
    table = pq.read_table(data)
    keep = pc.invert(pc.and_(pc.equal(table.column("episode_index"), 1), pc.equal(table.column("frame_index"), 11)))
    pq.write_table(table.filter(keep), data)
    _episode_error(path, 1, "data file has 11 rows but the episodes metadata says 12")


# ------------------------------------------------------------------------------ video problems
def test_missing_video_v30_and_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", episodes_per_file=2)
    (path / f"videos/{CAM}/chunk-000/file-001.mp4").unlink()
    _episode_error(path, 2, "file not found")
    assert _load(path, 0).length == 8
    fpath = write(tmp_path, "folder-parquet")
    (fpath / "episode_000001.mp4").unlink()
    _episode_error(fpath, 1, r"video episode_000001.mp4 is missing")


def test_truncated_video(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v2.1")
    mp4 = path / f"videos/chunk-000/{CAM}/episode_000001.mp4"
    data = mp4.read_bytes()
    mp4.write_bytes(data[: len(data) * 2 // 3])
    _episode_error(path, 1, "episode_000001.mp4")


def test_truncated_faststart_video_detected_without_decoding(tmp_path: Path) -> None:
    """Index at the front (faststart), data cut: the container still promises every frame."""
    import av

    path = write(tmp_path, "folder-npz", lengths=[40])
    mp4 = path / "episode_000000.mp4"
    with av.open(str(mp4), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=FPS, options={"g": "5"})
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for img in index_frames(range(40)):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = mp4.read_bytes()
    mp4.write_bytes(data[: len(data) // 2])
    _episode_error(path, 0, f"camera {CAM}: video .*episode_000000.mp4: is truncated", video_backend="pyav")


def test_video_shorter_than_actions(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v2.1")
    mp4 = path / f"videos/chunk-000/{CAM}/episode_000001.mp4"
    write_video(mp4, index_frames(range(7)), FPS)  # 7 frames for 12 actions
    err = _episode_error(path, 1, r"video ends at 0\.70 s but actions run to 1\.20 s")
    assert CAM in str(err)
    fpath = write(tmp_path, "folder-npz")
    write_video(fpath / "episode_000002.mp4", index_frames(range(4)), FPS)
    _episode_error(fpath, 2, r"video ends at 0\.40 s but actions run to 1\.00 s")


def test_v30_episode_meta_video_span_too_short(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", episodes_per_file=3)
    meta = path / "meta/episodes/chunk-000/file-000.parquet"
    col = f"videos/{CAM}/to_timestamp"

    def shorten(table: pa.Table) -> pa.Array:
        v = table.column(col).to_numpy().copy()
        v[2] -= 0.5
        return pa.array(v)

    _rewrite_column(meta, col, shorten)
    _episode_error(path, 2, r"video ends at 0\.50 s but actions run to 1\.00 s")


def test_hdf5_images_shorter_than_actions(tmp_path: Path) -> None:
    path = write(tmp_path, "aloha")
    with h5py.File(path / "episode_1.hdf5", "a") as f:
        imgs = f["observations/images/front"][()]
        del f["observations/images/front"]
        f["observations/images"].create_dataset("front", data=imgs[:5])
    _episode_error(path, 1, r"camera front: video ends at 0\.50 s \(5 images\) but actions run to 1\.20 s")
    rpath = write(tmp_path, "robomimic")
    with h5py.File(rpath / "demos.hdf5", "a") as f:
        a = f["data/demo_0/actions"][()]
        a[3, 0] = np.nan
        f["data/demo_0/actions"][...] = a
    _episode_error(rpath, 0, "action has 1 non-finite values")


def test_unknown_camera(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0")
    with pytest.raises(SourceError, match=r"no video feature 'observation\.images\.top'"):
        open_source(str(path), camera="observation.images.top")
    _episode_error(path, 0, "no camera 'top'", camera="top")


def test_missing_v30_data_file(tmp_path: Path) -> None:
    path = write(tmp_path, "lerobot-v3.0", episodes_per_file=2)
    (path / "data/chunk-000/file-001.parquet").unlink()
    _episode_error(path, 2, r"data/chunk-000/file-001\.parquet")
    assert _load(path, 1).length == 12
