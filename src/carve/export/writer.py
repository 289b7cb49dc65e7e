"""The one LeRobot v3.0 writer: `DatasetWriter` lays a dataset out in a folder, episode by episode.

Both the exporter (`carve export`, export/lerobot.py) and the simulator (`carve synth` and the
tests' fixtures, `carve.sim.lerobot_writer.write_lerobot_dataset`) write through it.

The caller hands over one episode at a time (`add_episode`: its frame table, built with
`frame_table`, its stats, and per camera the location of its video, placed beforehand as RGB
frames to encode (`encode_video`, or `begin_video` / `append_frames` for frames in chunks), a
copyable span of packets (`append_span`), or the location of an identical episode already
written); the writer packs episodes into `data/chunk-XXX/file-XXX.parquet` (one row group per
episode) and `videos/<key>/chunk-XXX/file-XXX.mp4`, rolling to the next file at
`episodes_per_file` episodes or at lerobot's size limits, and keeps the episodes meta rows and
stats. `write_meta(...)` closes the files and writes tasks (and subtasks, the Carve sidecar),
the episodes meta and `stats.json`; `write_info(...)` writes `info.json`, LAST. A dataset is
built in a staging folder beside its destination (`staging_folder`) and renamed into place
when complete (`swap_into_place`). Layout and names: export/layout.py; encoder settings
(`encoder`, `crf`, `gop`): export/video.py; stats: export/stats.py.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from carve.export import layout as L
from carve.export.stats import Stats, aggregate, flat_columns, jsonable
from carve.export.video import DEFAULT_GOP, CopiedVideo, EncodedVideo, SpanPackets, canonical_codec

MB = 1024 * 1024


@dataclass
class VideoLoc:
    """Where one episode of one camera sits: file indices and seconds in the file."""

    chunk: int
    file: int
    start: float
    end: float
    path: Path


@dataclass
class _CamState:
    video: EncodedVideo | CopiedVideo | None = None
    n_files: int = 0
    episodes_in_file: int = 0
    codec: str | None = None
    hw: tuple[int, int] | None = None


@dataclass
class DatasetWriter:
    """Writes one LeRobot v3.0 dataset into `folder` (see the module doc)."""

    folder: Path
    fps: int
    cameras: list[str]
    encoder: str
    crf: int | None = None
    gop: int = DEFAULT_GOP
    episodes_per_file: int | None = None
    chunks_size: int = L.DEFAULT_CHUNK_SIZE
    data_files_size_in_mb: int = L.DEFAULT_DATA_FILE_SIZE_IN_MB
    video_files_size_in_mb: int = L.DEFAULT_VIDEO_FILE_SIZE_IN_MB
    n_episodes: int = 0
    n_frames: int = 0
    episode_rows: list[dict[str, Any]] = field(default_factory=list)
    episode_stats: list[dict[str, Stats]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cams = {c: _CamState() for c in self.cameras}
        self._data: pq.ParquetWriter | None = None
        self._data_files = 0
        self._data_bytes = 0
        self._data_episodes = 0
        self._schema: pa.Schema | None = None

    # -- data files ------------------------------------------------------------------------
    def _data_target(self, table: pa.Table) -> tuple[int, int]:
        full = self._data is not None and (
            (self.episodes_per_file and self._data_episodes >= self.episodes_per_file)
            or self._data_bytes + table.nbytes >= self.data_files_size_in_mb * MB
        )
        if self._data is None or full:
            if self._data is not None:
                self._data.close()
            chunk, file = L.chunk_file(self._data_files, self.chunks_size)
            path = self.folder / L.DEFAULT_DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._schema = self._schema or table.schema
            self._data = pq.ParquetWriter(path, self._schema, compression="snappy")
            self._data_files += 1
            self._data_bytes = 0
            self._data_episodes = 0
        return L.chunk_file(self._data_files - 1, self.chunks_size)

    # -- video files -----------------------------------------------------------------------
    def _video_for(self, cam: str, *, frames: np.ndarray | None = None, span: SpanPackets | None = None) -> Any:
        st = self._cams[cam]
        v = st.video
        full = v is not None and (
            (self.episodes_per_file and st.episodes_in_file >= self.episodes_per_file)
            or v.bytes >= self.video_files_size_in_mb * MB
            or (span is not None and isinstance(v, CopiedVideo) and not v.compatible(span))
        )
        if v is None or full:
            if v is not None:
                v.close()
            chunk, file = L.chunk_file(st.n_files, self.chunks_size)
            path = self.folder / L.DEFAULT_VIDEO_PATH.format(video_key=cam, chunk_index=chunk, file_index=file)
            if span is not None:
                v = CopiedVideo(path, span, self.fps)
                codec = canonical_codec(span.codec)
                hw = (span.height, span.width)
            else:
                assert frames is not None
                v = EncodedVideo(path, encoder=self.encoder, fps=self.fps, width=frames.shape[2],
                                 height=frames.shape[1], crf=self.crf, gop=self.gop)
                codec = canonical_codec(self.encoder)
                hw = (int(frames.shape[1]), int(frames.shape[2]))
            if st.codec not in (None, codec) or st.hw not in (None, hw):
                raise ValueError(f"camera {cam}: {codec} {hw[0]}x{hw[1]} video cannot join {st.codec} "
                                 f"{st.hw} in one LeRobot feature")
            st.codec, st.hw = codec, hw
            st.video = v
            st.n_files += 1
            st.episodes_in_file = 0
        return v

    def begin_video(self, cam: str, *, frames: np.ndarray | None = None, span: SpanPackets | None = None) -> None:
        """Make sure the next episode of `cam` starts in a file that can take it."""
        self._video_for(cam, frames=frames, span=span)

    def append_frames(self, cam: str, frames: np.ndarray) -> tuple[float, float]:
        v = self._video_for(cam, frames=frames)
        assert isinstance(v, EncodedVideo)
        return v.append(frames)

    def append_span(self, cam: str, span: SpanPackets) -> tuple[float, float]:
        v = self._video_for(cam, span=span)
        assert isinstance(v, CopiedVideo)
        return v.append(span)

    def current_video(self, cam: str) -> tuple[int, int, Path]:
        st = self._cams[cam]
        assert st.video is not None
        chunk, file = L.chunk_file(st.n_files - 1, self.chunks_size)
        return chunk, file, st.video.path

    def end_video_episode(self, cam: str) -> None:
        self._cams[cam].episodes_in_file += 1

    def encode_video(self, cam: str, frames: np.ndarray) -> VideoLoc:
        """Encode one whole episode of `cam` ((T, H, W, 3) RGB frames); where it landed."""
        self.begin_video(cam, frames=frames)
        start, end = self.append_frames(cam, frames)
        chunk, file, path = self.current_video(cam)
        self.end_video_episode(cam)
        return VideoLoc(chunk, file, start, end, path)

    # -- episodes --------------------------------------------------------------------------
    def add_episode(self, table: pa.Table, tasks: list[str], videos: dict[str, VideoLoc],
                    stats: dict[str, Stats]) -> dict[str, Any]:
        """Append one episode's frame table (its video already placed, see `videos`)."""
        n = table.num_rows
        chunk, file = self._data_target(table)
        assert self._data is not None
        self._data.write_table(table.cast(self._schema) if self._schema is not None else table)
        self._data_bytes += table.nbytes
        self._data_episodes += 1
        row: dict[str, Any] = {
            "episode_index": self.n_episodes,
            "tasks": list(tasks),
            "length": n,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.n_frames,
            "dataset_to_index": self.n_frames + n,
        }
        for cam in self.cameras:
            loc = videos[cam]
            row[f"videos/{cam}/chunk_index"] = loc.chunk
            row[f"videos/{cam}/file_index"] = loc.file
            row[f"videos/{cam}/from_timestamp"] = loc.start
            row[f"videos/{cam}/to_timestamp"] = loc.end
        row.update(flat_columns(stats))
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        self.episode_rows.append(row)
        self.episode_stats.append(stats)
        self.n_episodes += 1
        self.n_frames += n
        return row

    # -- finishing -------------------------------------------------------------------------
    def close_files(self) -> None:
        if self._data is not None:
            self._data.close()
            self._data = None
        for st in self._cams.values():
            if st.video is not None:
                st.video.close()
                st.video = None

    def abort(self) -> None:
        try:
            self.close_files()
        except Exception:  # best effort: the folder is deleted anyway
            pass

    def camera_codec(self, cam: str) -> tuple[str | None, tuple[int, int] | None]:
        st = self._cams[cam]
        return st.codec, st.hw

    def write_meta(self, *, tasks: dict[str, int], subtasks: dict[str, int] | None = None,
                   sidecar: pa.Table | None = None) -> None:
        """tasks.parquet, subtasks.parquet and the Carve sidecar (when given), the episodes meta and
        stats.json (the episodes' stats aggregated); not info.json."""
        self.close_files()
        (self.folder / "meta").mkdir(parents=True, exist_ok=True)
        _index_frame(tasks, "task").to_parquet(self.folder / L.DEFAULT_TASKS_PATH)
        if subtasks is not None:
            _index_frame(subtasks, "subtask").to_parquet(self.folder / L.DEFAULT_SUBTASKS_PATH)
        ep_path = self.folder / L.DEFAULT_EPISODES_PATH.format(chunk_index=0, file_index=0)
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episode_rows), ep_path, compression="snappy")
        if sidecar is not None:
            pq.write_table(sidecar, self.folder / L.CARVE_EVENTS_PATH, compression="zstd")
        (self.folder / L.STATS_PATH).write_text(json.dumps(jsonable(aggregate(self.episode_stats)), indent=4))

    def write_info(self, info: dict[str, Any]) -> None:
        """`meta/info.json`: call last; a folder without it is an unfinished export."""
        (self.folder / L.INFO_PATH).write_text(json.dumps(info, indent=4, ensure_ascii=False))


def frame_table(state: np.ndarray, action: np.ndarray, *, fps: int, episode_index: int, first_index: int,
                task_index: np.ndarray, extra: dict[str, pa.Array] | None = None) -> pa.Table:
    """One episode's rows of `data/...parquet`: `observation.state` and `action` (float32 fixed-size
    lists), lerobot's default columns (timestamp, frame_index, episode_index, index from
    `first_index`, task_index per frame), then the `extra` columns in their order."""
    n = int(state.shape[0])
    state = np.ascontiguousarray(state, dtype=np.float32)
    action = np.ascontiguousarray(action, dtype=np.float32)
    return pa.table({
        "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), state.shape[1]),
        "action": pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), action.shape[1]),
        "timestamp": pa.array((np.arange(n) / fps).astype(np.float32)),
        "frame_index": pa.array(np.arange(n, dtype=np.int64)),
        "episode_index": pa.array(np.full(n, episode_index, dtype=np.int64)),
        "index": pa.array(np.arange(first_index, first_index + n, dtype=np.int64)),
        "task_index": pa.array(np.asarray(task_index, dtype=np.int64)),
        **(extra or {}),
    })


def staging_folder(dest: Path) -> Path:
    """A new empty folder beside `dest` to build a dataset in (renamed onto `dest` when complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{uuid.uuid4().hex[:8]}-{dest.name}"
    tmp.mkdir()
    return tmp


def swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename a finished dataset folder `tmp` onto `dest`, replacing an old one only after the new one is in place."""
    old = None
    if dest.exists():
        old = dest.parent / f".old-{uuid.uuid4().hex[:8]}-{dest.name}"
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _index_frame(texts: dict[str, int], name: str) -> pd.DataFrame:
    """lerobot's tasks/subtasks table: indexed by the text, one `<name>_index` column, row i = index i."""
    order = sorted(texts.items(), key=lambda kv: kv[1])
    return pd.DataFrame({f"{name}_index": [i for _, i in order]},
                        index=pd.Index([t for t, _ in order], name=name))
