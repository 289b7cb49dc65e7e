"""Write LeRobot datasets (v3.0 and v2.1) the way the `lerobot` library lays them out.

Owns `EpisodeArrays` (one episode in memory: task, state, action, per-camera frames),
`write_lerobot_dataset`, used by the simulator (`carve synth`) and by tests, and the video
helpers `pick_encoder` / `write_video` (also used by `sim/formats.py`).

v3.0 (lerobot's `CODEBASE_VERSION = "v3.0"`):
```
meta/info.json  meta/stats.json  meta/tasks.parquet  meta/episodes/chunk-000/file-000.parquet
data/chunk-000/file-000.parquet             several episodes per file (one row group each)
videos/<key>/chunk-000/file-000.mp4         the same episodes concatenated; the episodes meta
                                            holds each episode's from/to timestamp in the file
```
v2.1: one parquet and one mp4 per episode (`data/chunk-000/episode_000000.parquet`,
`videos/chunk-000/<key>/episode_000000.mp4`) and JSON-lines metas (`episodes.jsonl`,
`tasks.jsonl`, `episodes_stats.jsonl`).

Episodes are consumed as an iterator: only one episode's arrays are held at a time. The
dataset is written into a temporary sibling directory and renamed into place at the end, so
a crash never leaves a half-written dataset under the final name.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# lerobot's v3.0 paths and default features, as Carve's exporter writes them
from carve.core import env
from carve.export.layout import DEFAULT_DATA_PATH as V30_DATA_PATH
from carve.export.layout import DEFAULT_EPISODES_PATH as V30_EPISODES_PATH
from carve.export.layout import DEFAULT_FEATURES
from carve.export.layout import DEFAULT_VIDEO_PATH as V30_VIDEO_PATH
from carve.export.lerobot import swap_into_place

V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

_STAT_KEYS = ("min", "max", "mean", "std", "count")
_CODECS = {"h264": ("libx264",), "av1": ("libsvtav1", "libaom-av1"), "hevc": ("libx265",)}


@dataclass
class EpisodeArrays:
    """One episode to write. Frames are RGB uint8, one (T, H, W, 3) array per camera key."""

    task: str
    state: np.ndarray  # (T, Ds) float32
    action: np.ndarray  # (T, Da) float32
    frames: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    def validate(self, n_state: int, n_action: int, cameras: list[str], hw: tuple[int, int] | None) -> None:
        t = self.length
        if t == 0:
            raise ValueError("episode has 0 frames")
        if self.state.ndim != 2 or self.state.shape[1] != n_state:
            raise ValueError(f"state has shape {self.state.shape}, expected (T, {n_state})")
        if self.action.ndim != 2 or self.action.shape != (t, n_action):
            raise ValueError(f"action has shape {self.action.shape}, expected ({t}, {n_action})")
        if sorted(self.frames) != sorted(cameras):
            raise ValueError(f"cameras {sorted(self.frames)} differ from the dataset's {sorted(cameras)}")
        for key, fr in self.frames.items():
            if fr.dtype != np.uint8 or fr.ndim != 4 or fr.shape[0] != t or fr.shape[3] != 3:
                raise ValueError(f"frames[{key!r}] has shape {fr.shape} {fr.dtype}, expected ({t}, H, W, 3) uint8")
            if hw is not None and fr.shape[1:3] != hw:
                raise ValueError(f"frames[{key!r}] are {fr.shape[1:3]}, the dataset's are {hw}")


def pick_encoder(codec: str) -> str:
    """The PyAV encoder name for `codec` ("h264", "av1", "hevc") available in this build."""
    import av

    names = _CODECS.get(codec, (codec,))
    for name in names:
        if name in av.codecs_available:
            try:
                av.Codec(name, "w")
                return name
            except Exception:  # codec listed but not usable as an encoder
                continue
    raise ValueError(f"no encoder for codec {codec!r} in this PyAV build (tried {', '.join(names)})")


# --------------------------------------------------------------------------------------------
# Video encoding


class _VideoFile:
    """One mp4 being encoded frame by frame (several episodes may be appended to it)."""

    def __init__(self, path: Path, encoder: str, fps: int, width: int, height: int):
        import av

        if encoder == "libsvtav1":
            env.set_default("SVT_LOG", "1")  # SVT-AV1 prints its banner at INFO otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = fps
        self.container = av.open(str(path), "w")
        options = {"g": str(max(1, fps))}
        if encoder == "libx264":
            options.update({"crf": "18", "preset": "veryfast"})
        elif encoder == "libsvtav1":
            options.update({"crf": "30", "preset": "10"})
        elif encoder == "libaom-av1":
            options.update({"crf": "30", "cpu-used": "8"})
        self.stream = self.container.add_stream(encoder, rate=fps, options=options)
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = Fraction(1, fps)
        self.n_frames = 0

    def append(self, frames: np.ndarray) -> tuple[float, float]:
        """Encode frames after the ones already written; return their (from, to) seconds."""
        import av

        start = self.n_frames
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self.n_frames
            frame.time_base = Fraction(1, self.fps)
            if i == 0:  # each episode starts on a keyframe, as with lerobot's per-episode encodes
                frame.pict_type = av.video.frame.PictureType.I
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.n_frames += 1
        return start / self.fps, self.n_frames / self.fps

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def write_video(path: str | Path, frames: np.ndarray, fps: int, codec: str = "h264") -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames as one mp4 (yuv420p, keyframe every second)."""
    path = Path(path)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames have shape {frames.shape} {frames.dtype}, expected (T, H, W, 3) uint8")
    vf = _VideoFile(path, pick_encoder(codec), int(fps), int(frames.shape[2]), int(frames.shape[1]))
    try:
        vf.append(frames)
    finally:
        vf.close()
    return path


def _video_info(fps: int, height: int, width: int, codec_name: str) -> dict[str, Any]:
    return {
        "video.height": height,
        "video.width": width,
        "video.codec": codec_name,
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": float(fps),
        "video.channels": 3,
        "has_audio": False,
    }


# --------------------------------------------------------------------------------------------
# Statistics (lerobot's per-episode stats and their aggregate)


def _array_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    return {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": x.mean(axis=0),
        "std": x.std(axis=0),
        "count": np.array([x.shape[0]]),
    }


def _image_stats(frames: np.ndarray, max_samples: int = 64) -> dict[str, np.ndarray]:
    idx = np.linspace(0, len(frames) - 1, num=min(len(frames), max_samples)).round().astype(int)
    x = frames[idx].astype(np.float64) / 255.0  # (N, H, W, 3)
    per_c = x.reshape(-1, 3)
    return {
        "min": per_c.min(axis=0).reshape(3, 1, 1),
        "max": per_c.max(axis=0).reshape(3, 1, 1),
        "mean": per_c.mean(axis=0).reshape(3, 1, 1),
        "std": per_c.std(axis=0).reshape(3, 1, 1),
        "count": np.array([len(idx)]),
    }


def _episode_stats(ep: EpisodeArrays, index_cols: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    stats = {"observation.state": _array_stats(ep.state), "action": _array_stats(ep.action)}
    for key, fr in ep.frames.items():
        stats[key] = _image_stats(fr)
    for key, col in index_cols.items():
        stats[key] = _array_stats(col.reshape(-1, 1))
    return stats


def _aggregate(total: dict[str, dict[str, np.ndarray]] | None, new: dict[str, dict[str, np.ndarray]]):
    if total is None:
        return {k: dict(v) for k, v in new.items()}
    out = {}
    for key, a in total.items():
        b = new[key]
        na, nb = float(a["count"][0]), float(b["count"][0])
        n = na + nb
        mean = (a["mean"] * na + b["mean"] * nb) / n
        var = ((a["std"] ** 2 + (a["mean"] - mean) ** 2) * na + (b["std"] ** 2 + (b["mean"] - mean) ** 2) * nb) / n
        out[key] = {
            "min": np.minimum(a["min"], b["min"]),
            "max": np.maximum(a["max"], b["max"]),
            "mean": mean,
            "std": np.sqrt(var),
            "count": np.array([int(n)]),
        }
    return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


# --------------------------------------------------------------------------------------------
# Frame table


def _frames_table(
    ep: EpisodeArrays, episode_index: int, global_start: int, task_index: int, fps: int
) -> tuple[pa.Table, dict[str, np.ndarray]]:
    t = ep.length
    ds, da = ep.state.shape[1], ep.action.shape[1]
    cols = {
        "timestamp": (np.arange(t) / fps).astype(np.float32),
        "frame_index": np.arange(t, dtype=np.int64),
        "episode_index": np.full(t, episode_index, dtype=np.int64),
        "index": np.arange(global_start, global_start + t, dtype=np.int64),
        "task_index": np.full(t, task_index, dtype=np.int64),
    }
    state = pa.FixedSizeListArray.from_arrays(pa.array(ep.state.astype(np.float32).reshape(-1)), ds)
    action = pa.FixedSizeListArray.from_arrays(pa.array(ep.action.astype(np.float32).reshape(-1)), da)
    table = pa.table(
        {"observation.state": state, "action": action, **{k: pa.array(v) for k, v in cols.items()}}
    )
    return table, cols


# --------------------------------------------------------------------------------------------
# The writer


class _DatasetWriter:
    """Shared bookkeeping of both layouts; `_write_episode` is per version."""

    def __init__(self, tmp: Path, *, fps: int, state_names, action_names, robot_type, version, codec,
                 episodes_per_file: int, chunks_size: int):
        self.tmp = tmp
        self.fps = int(fps)
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.robot_type = robot_type
        self.version = version
        self.encoder = pick_encoder(codec)
        self.episodes_per_file = max(1, int(episodes_per_file))
        self.chunks_size = max(1, int(chunks_size))
        self.cameras: list[str] = []
        self.hw: tuple[int, int] | None = None
        self.tasks: dict[str, int] = {}
        self.n_episodes = 0
        self.n_frames = 0
        self.stats: dict[str, dict[str, np.ndarray]] | None = None
        self.episode_rows: list[dict[str, Any]] = []
        # v3.0 open files
        self._data_writer: pq.ParquetWriter | None = None
        self._videos: dict[str, _VideoFile] = {}
        self._file_counter = -1

    # -- common --------------------------------------------------------------------------
    def add(self, ep: EpisodeArrays) -> None:
        if self.n_episodes == 0:
            self.cameras = sorted(ep.frames)
            if self.cameras:
                self.hw = tuple(ep.frames[self.cameras[0]].shape[1:3])  # type: ignore[assignment]
        try:
            ep.validate(len(self.state_names), len(self.action_names), self.cameras, self.hw)
        except ValueError as e:
            raise ValueError(f"episode {self.n_episodes}: {e}") from None
        task_index = self.tasks.setdefault(ep.task, len(self.tasks))
        table, index_cols = _frames_table(ep, self.n_episodes, self.n_frames, task_index, self.fps)
        ep_stats = _episode_stats(ep, index_cols)
        self.stats = _aggregate(self.stats, ep_stats)
        if self.version == "v3.0":
            self._add_v30(ep, table, ep_stats)
        else:
            self._add_v21(ep, table, ep_stats)
        self.n_episodes += 1
        self.n_frames += ep.length

    def features(self) -> dict[str, Any]:
        feats: dict[str, Any] = {
            "observation.state": {"dtype": "float32", "shape": [len(self.state_names)], "names": self.state_names},
            "action": {"dtype": "float32", "shape": [len(self.action_names)], "names": self.action_names},
        }
        codec_name = {"libx264": "h264", "libsvtav1": "av1", "libaom-av1": "av1", "libx265": "hevc"}.get(
            self.encoder, self.encoder
        )
        for key in self.cameras:
            h, w = self.hw or (0, 0)
            feats[key] = {
                "dtype": "video",
                "shape": [h, w, 3],
                "names": ["height", "width", "channels"],
                "info": _video_info(self.fps, h, w, codec_name),
            }
        feats.update(json.loads(json.dumps(DEFAULT_FEATURES)))
        return feats

    def _write_json(self, rel: str, obj: Any) -> None:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(obj, indent=4, ensure_ascii=False))

    def _write_jsonl(self, rel: str, rows: list[dict[str, Any]]) -> None:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    # -- v3.0 ------------------------------------------------------------------------------
    def _chunk_file(self) -> tuple[int, int]:
        return divmod(self._file_counter, self.chunks_size)

    def _roll_files(self) -> None:
        self._close_files()
        self._file_counter += 1
        chunk, file = self._chunk_file()
        for key in self.cameras:
            path = self.tmp / V30_VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            h, w = self.hw or (0, 0)
            self._videos[key] = _VideoFile(path, self.encoder, self.fps, w, h)

    def _close_files(self) -> None:
        if self._data_writer is not None:
            self._data_writer.close()
            self._data_writer = None
        for vf in self._videos.values():
            vf.close()
        self._videos = {}

    def _add_v30(self, ep: EpisodeArrays, table: pa.Table, ep_stats) -> None:
        if self.n_episodes % self.episodes_per_file == 0:
            self._roll_files()
        chunk, file = self._chunk_file()
        if self._data_writer is None:
            path = self.tmp / V30_DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._data_writer = pq.ParquetWriter(path, table.schema, compression="snappy")
        self._data_writer.write_table(table)  # one row group per episode
        row: dict[str, Any] = {
            "episode_index": self.n_episodes,
            "tasks": [ep.task],
            "length": ep.length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.n_frames,
            "dataset_to_index": self.n_frames + ep.length,
        }
        for key in self.cameras:
            start, end = self._videos[key].append(ep.frames[key])
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = start
            row[f"videos/{key}/to_timestamp"] = end
        for feat, st in ep_stats.items():
            for s in _STAT_KEYS:
                row[f"stats/{feat}/{s}"] = np.asarray(st[s]).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self.episode_rows.append(row)

    def _finish_v30(self) -> None:
        self._close_files()
        tasks = pd.DataFrame(
            {"task_index": list(self.tasks.values())}, index=pd.Index(list(self.tasks.keys()), name="task")
        )
        (self.tmp / "meta").mkdir(parents=True, exist_ok=True)
        tasks.to_parquet(self.tmp / "meta/tasks.parquet")
        ep_path = self.tmp / V30_EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), ep_path, compression="snappy")
        info = {
            "codebase_version": "v3.0",
            "robot_type": self.robot_type,
            "total_episodes": self.n_episodes,
            "total_frames": self.n_frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": self.fps,
            "splits": {"train": f"0:{self.n_episodes}"},
            "data_path": V30_DATA_PATH,
            "video_path": V30_VIDEO_PATH if self.cameras else None,
            "features": {  # v3.0 records the rate on every non-video feature too
                k: (f if f["dtype"] == "video" else {**f, "fps": self.fps}) for k, f in self.features().items()
            },
        }
        self._write_json("meta/info.json", info)

    # -- v2.1 ------------------------------------------------------------------------------
    def _add_v21(self, ep: EpisodeArrays, table: pa.Table, ep_stats) -> None:
        idx = self.n_episodes
        chunk = idx // self.chunks_size
        path = self.tmp / V21_DATA_PATH.format(episode_chunk=chunk, episode_index=idx)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="snappy")
        for key in self.cameras:
            vpath = self.tmp / V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=idx)
            h, w = self.hw or (0, 0)
            vf = _VideoFile(vpath, self.encoder, self.fps, w, h)
            vf.append(ep.frames[key])
            vf.close()
        self.episode_rows.append(
            {"episode_index": idx, "tasks": [ep.task], "length": ep.length, "_stats": _jsonable(ep_stats)}
        )

    def _finish_v21(self) -> None:
        self._write_jsonl(
            "meta/episodes.jsonl",
            [{k: v for k, v in r.items() if k != "_stats"} for r in self.episode_rows],
        )
        self._write_jsonl(
            "meta/episodes_stats.jsonl",
            [{"episode_index": r["episode_index"], "stats": r["_stats"]} for r in self.episode_rows],
        )
        self._write_jsonl("meta/tasks.jsonl", [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        info = {
            "codebase_version": "v2.1",
            "robot_type": self.robot_type,
            "total_episodes": self.n_episodes,
            "total_frames": self.n_frames,
            "total_tasks": len(self.tasks),
            "total_videos": self.n_episodes * len(self.cameras),
            "total_chunks": (max(self.n_episodes - 1, 0) // self.chunks_size) + 1,
            "chunks_size": self.chunks_size,
            "fps": self.fps,
            "splits": {"train": f"0:{self.n_episodes}"},
            "data_path": V21_DATA_PATH,
            "video_path": V21_VIDEO_PATH if self.cameras else None,
            "features": self.features(),
        }
        self._write_json("meta/info.json", info)

    def finish(self) -> None:
        if self.n_episodes == 0:
            raise ValueError("no episodes to write")
        if self.version == "v3.0":
            self._finish_v30()
        else:
            self._finish_v21()
        self._write_json("meta/stats.json", _jsonable(self.stats or {}))

    def abort(self) -> None:
        try:
            self._close_files()
        except Exception:  # best effort: the temp dir is deleted anyway
            pass


def write_lerobot_dataset(
    root: str | Path,
    episodes: Iterable[EpisodeArrays],
    *,
    fps: int,
    state_names: list[str],
    action_names: list[str],
    robot_type: str = "panda",
    version: str = "v3.0",
    codec: str = "h264",
    episodes_per_file: int = 8,
    chunks_size: int = 1000,
    overwrite: bool = False,
) -> Path:
    """Write `episodes` as a LeRobot dataset at `root` and return its path.

    `version` is "v3.0" (episodes packed `episodes_per_file` to a data parquet and mp4) or
    "v2.1" (one file per episode). `codec` is "h264" (libx264) or "av1" (libsvtav1, else
    libaom-av1); yuv420p with a keyframe every second and at every episode start.
    The dataset appears at `root` only when complete. An existing non-empty `root` is an
    error unless `overwrite=True`.
    """
    if version not in ("v3.0", "v2.1"):
        raise ValueError(f"unsupported LeRobot version {version!r}; use 'v3.0' or 'v2.1'")
    root = Path(root).absolute()
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} already exists and is not empty (pass overwrite=True to replace it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".tmp-{uuid.uuid4().hex[:8]}-{root.name}"
    tmp.mkdir()
    writer = _DatasetWriter(
        tmp,
        fps=fps,
        state_names=state_names,
        action_names=action_names,
        robot_type=robot_type,
        version=version,
        codec=codec,
        episodes_per_file=episodes_per_file,
        chunks_size=chunks_size,
    )
    try:
        for ep in episodes:
            writer.add(ep)
        writer.finish()
        swap_into_place(tmp, root)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
