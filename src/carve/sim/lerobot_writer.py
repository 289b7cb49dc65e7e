"""The simulator's side of writing LeRobot datasets (v3.0 and v2.1), on the house's one writer.

Owns `EpisodeArrays` (one episode in memory: task, state, action, per-camera frames),
`write_lerobot_dataset`, used by the simulator (`carve synth`) and by tests, the simulator's
video settings (`SIM_CRF`, a keyframe every second: `open_video`, `write_video`, also used by
`sim/formats.py`) and the v2.1 layout, which only the simulator writes.

v3.0 goes through `carve.export.writer.DatasetWriter`, the writer `carve export` uses (paths:
`carve.export.layout`; stats: `carve.export.stats`, without quantiles here; video:
`carve.export.video.EncodedVideo`), with `episodes_per_file` episodes to a data parquet and mp4.
v2.1: one parquet and one mp4 per episode (`data/chunk-000/episode_000000.parquet`,
`videos/chunk-000/<key>/episode_000000.mp4`) and JSON-lines metas (`episodes.jsonl`,
`tasks.jsonl`, `episodes_stats.jsonl`).

Episodes are consumed as an iterator: only one episode's arrays are held at a time. The
dataset is written into a temporary sibling directory and renamed into place at the end, so
a crash never leaves a half-written dataset under the final name.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from carve.export import layout as L
from carve.export.stats import Stats, aggregate, image_stats, jsonable, sample_indices, vector_stats
from carve.export.video import EncodedVideo, VideoExportError, canonical_codec, pick_encoder
from carve.export.writer import DatasetWriter, frame_table, staging_folder, swap_into_place

V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V21_EPISODES_PATH = "meta/episodes.jsonl"
V21_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
V21_TASKS_PATH = "meta/tasks.jsonl"

# the simulator's encodes: finer than the export's re-encodes, a keyframe every second (gop = fps)
SIM_CRF = {"libx264": 18, "libsvtav1": 30, "libaom-av1": 30}
IMAGE_SAMPLES = 64  # frames per episode sampled for a camera's stats
VIDEO_FILES_SIZE_IN_MB = 500  # the v3.0 video file size limit the simulator's info.json records


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


def sim_encoder(codec: str) -> str:
    """`carve.export.video.pick_encoder`, raising ValueError (the simulator's argument errors)."""
    try:
        return pick_encoder(codec)
    except VideoExportError as e:
        raise ValueError(str(e)) from None


def open_video(path: Path, encoder: str, fps: int, width: int, height: int) -> EncodedVideo:
    """An mp4 to append episodes to, with the simulator's settings (`SIM_CRF`, keyframe every second)."""
    return EncodedVideo(path, encoder=encoder, fps=int(fps), width=int(width), height=int(height),
                        crf=SIM_CRF.get(encoder), gop=max(1, int(fps)))


def write_video(path: str | Path, frames: np.ndarray, fps: int, codec: str = "h264") -> Path:
    """Encode (T, H, W, 3) uint8 RGB frames as one mp4 (yuv420p, keyframe every second)."""
    path = Path(path)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames have shape {frames.shape} {frames.dtype}, expected (T, H, W, 3) uint8")
    vf = open_video(path, sim_encoder(codec), int(fps), int(frames.shape[2]), int(frames.shape[1]))
    try:
        vf.append(frames)
    finally:
        vf.close()
    return path


def _episode_stats(ep: EpisodeArrays, table_stats: dict[str, Stats]) -> dict[str, Stats]:
    """lerobot's per-episode stats, in the simulator's order: state, action, cameras, index columns."""
    stats = {"observation.state": vector_stats(ep.state, quantiles=False),
             "action": vector_stats(ep.action, quantiles=False)}
    for key, fr in ep.frames.items():
        stats[key] = image_stats(fr[sample_indices(len(fr), IMAGE_SAMPLES)], quantiles=False)
    stats.update(table_stats)
    return stats


def _index_stats(table: pa.Table) -> dict[str, Stats]:
    return {k: vector_stats(table.column(k).to_numpy(), quantiles=False) for k in L.DEFAULT_FEATURES}


class _Writer:
    """Validates the episodes and numbers their tasks; `_V30` and `_V21` lay them out."""

    def __init__(self, tmp: Path, *, fps: int, state_names: list[str], action_names: list[str],
                 robot_type: str, codec: str, episodes_per_file: int, chunks_size: int):
        self.tmp = tmp
        self.fps = int(fps)
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.robot_type = robot_type
        self.encoder = sim_encoder(codec)
        self.episodes_per_file = max(1, int(episodes_per_file))
        self.chunks_size = max(1, int(chunks_size))
        self.cameras: list[str] = []
        self.hw: tuple[int, int] | None = None
        self.tasks: dict[str, int] = {}
        self.n_episodes = 0
        self.n_frames = 0

    def add(self, ep: EpisodeArrays) -> None:
        if self.n_episodes == 0:
            self.cameras = sorted(ep.frames)
            if self.cameras:
                self.hw = tuple(ep.frames[self.cameras[0]].shape[1:3])  # type: ignore[assignment]
            self.start()
        try:
            ep.validate(len(self.state_names), len(self.action_names), self.cameras, self.hw)
        except ValueError as e:
            raise ValueError(f"episode {self.n_episodes}: {e}") from None
        task_index = self.tasks.setdefault(ep.task, len(self.tasks))
        table = frame_table(ep.state, ep.action, fps=self.fps, episode_index=self.n_episodes,
                            first_index=self.n_frames, task_index=np.full(ep.length, task_index, dtype=np.int64))
        self.write_episode(ep, table, _episode_stats(ep, _index_stats(table)))
        self.n_episodes += 1
        self.n_frames += ep.length

    def features(self) -> dict[str, Any]:
        """state, action and the cameras (video.fps as a float, as the simulator always wrote it)."""
        feats: dict[str, Any] = {
            "observation.state": L.vector_feature(len(self.state_names), self.state_names),
            "action": L.vector_feature(len(self.action_names), self.action_names),
        }
        h, w = self.hw or (0, 0)
        for key in self.cameras:
            feats[key] = L.video_feature(h, w, float(self.fps), canonical_codec(self.encoder))
        return feats

    def _write_json(self, rel: str, obj: Any) -> None:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(obj, indent=4, ensure_ascii=False))

    # per layout
    def start(self) -> None:
        """Called once the first episode has set the cameras."""

    def write_episode(self, ep: EpisodeArrays, table: pa.Table, stats: dict[str, Stats]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Close what is open (best effort: the temp dir is deleted anyway)."""


class _V30(_Writer):
    """v3.0 through the house's `DatasetWriter`."""

    writer: DatasetWriter | None = None

    def start(self) -> None:
        self.writer = DatasetWriter(self.tmp, fps=self.fps, cameras=list(self.cameras), encoder=self.encoder,
                                    crf=SIM_CRF.get(self.encoder), gop=max(1, self.fps),
                                    episodes_per_file=self.episodes_per_file, chunks_size=self.chunks_size,
                                    video_files_size_in_mb=VIDEO_FILES_SIZE_IN_MB)

    def write_episode(self, ep: EpisodeArrays, table: pa.Table, stats: dict[str, Stats]) -> None:
        assert self.writer is not None
        videos = {cam: self.writer.encode_video(cam, ep.frames[cam]) for cam in self.cameras}
        self.writer.add_episode(table, [ep.task], videos, stats)

    def finish(self) -> None:
        assert self.writer is not None
        self.writer.write_meta(tasks=self.tasks)
        self.writer.write_info(L.info_json(
            fps=self.fps, robot_type=self.robot_type, features=self.features(), total_episodes=self.n_episodes,
            total_frames=self.n_frames, total_tasks=len(self.tasks), has_videos=bool(self.cameras),
            chunks_size=self.chunks_size, video_files_size_in_mb=VIDEO_FILES_SIZE_IN_MB,
        ))

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class _V21(_Writer):
    """v2.1 (lerobot 0.3.x): one parquet and one mp4 per episode, JSON-lines metas."""

    def __init__(self, tmp: Path, **kw: Any):
        super().__init__(tmp, **kw)
        self.rows: list[dict[str, Any]] = []
        self.stats: list[dict[str, Stats]] = []

    def write_episode(self, ep: EpisodeArrays, table: pa.Table, stats: dict[str, Stats]) -> None:
        idx = self.n_episodes
        chunk = idx // self.chunks_size
        path = self.tmp / V21_DATA_PATH.format(episode_chunk=chunk, episode_index=idx)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="snappy")
        h, w = self.hw or (0, 0)
        for key in self.cameras:
            vpath = self.tmp / V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=idx)
            vf = open_video(vpath, self.encoder, self.fps, w, h)
            vf.append(ep.frames[key])
            vf.close()
        self.rows.append({"episode_index": idx, "tasks": [ep.task], "length": ep.length})
        self.stats.append(stats)

    def _write_jsonl(self, rel: str, rows: list[dict[str, Any]]) -> None:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def finish(self) -> None:
        self._write_jsonl(V21_EPISODES_PATH, self.rows)
        self._write_jsonl(V21_EPISODES_STATS_PATH, [{"episode_index": r["episode_index"], "stats": jsonable(s)}
                                                        for r, s in zip(self.rows, self.stats, strict=True)])
        self._write_jsonl(V21_TASKS_PATH, [{"task_index": i, "task": t} for t, i in self.tasks.items()])
        self._write_json(L.INFO_PATH, {
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
            "features": {**self.features(), **copy.deepcopy(L.DEFAULT_FEATURES)},
        })
        self._write_json(L.STATS_PATH, jsonable(aggregate(self.stats)))


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
    tmp = staging_folder(root)
    writer: _Writer | None = None
    try:
        writer = (_V30 if version == "v3.0" else _V21)(
            tmp, fps=fps, state_names=state_names, action_names=action_names, robot_type=robot_type,
            codec=codec, episodes_per_file=episodes_per_file, chunks_size=chunks_size,
        )
        for ep in episodes:
            writer.add(ep)
        if writer.n_episodes == 0:
            raise ValueError("no episodes to write")
        writer.finish()
        swap_into_place(tmp, root)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
