"""Helpers shared by the episode readers: fingerprints, signal validation, lazy video frames.

* `fingerprint(*parts)` / `file_stamp(fs, path)`: a cheap stable hash of an episode's inputs
  (file sizes, mtimes, index ranges), never of the bytes themselves.
* `check_signals(label, state, action, timestamps)`: empty episodes, mismatched lengths,
  NaN/inf values and non-increasing timestamps raise `EpisodeError`.
* `VideoFrames`: the `Episode` frame loader for episodes stored in video files, possibly at
  an offset inside a file shared with other episodes (LeRobot v3.0). `verify()` checks from
  the container, without decoding, that the video covers the whole action stream.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from carve.core.errors import EpisodeError
from carve.ingest.video import VideoError, VideoReader, pooled_reader


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:20]


def file_stamp(fs: pafs.FileSystem, path: str) -> list[Any]:
    """[basename, size, mtime_ns] of a file, or [basename, None, None] when it is missing."""
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return [info.base_name, None, None]
    mtime = info.mtime_ns if info.mtime_ns is not None else None
    return [info.base_name, int(info.size or 0), mtime]


def as_2d_float(x: Any, label: str, what: str, length: int | None = None) -> np.ndarray:
    """`x` as a (T, D) float32 array (a 1-D signal becomes one column)."""
    arr = np.asarray(x)
    if arr.dtype == object:
        try:
            arr = np.stack([np.asarray(v, dtype=np.float32) for v in arr]) if len(arr) else arr.astype(np.float32)
        except ValueError as e:
            raise EpisodeError(label, f"{what} rows have different lengths ({e})") from None
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if length is None or arr.shape[0] == length else arr.reshape(1, -1)
    if arr.ndim != 2:
        raise EpisodeError(label, f"{what} has shape {arr.shape}, expected (frames, dims)")
    return arr.astype(np.float32, copy=False)


def check_signals(label: str, state: np.ndarray, action: np.ndarray, timestamps: np.ndarray) -> None:
    """Raise `EpisodeError` for an empty episode, mismatched lengths, NaN/inf or bad timestamps."""
    t = state.shape[0]
    if t == 0 or action.shape[0] == 0:
        raise EpisodeError(label, f"episode is empty ({state.shape[0]} state rows, {action.shape[0]} action rows)")
    if action.shape[0] != t:
        raise EpisodeError(label, f"state has {t} frames but action has {action.shape[0]}")
    if timestamps.shape[0] != t:
        raise EpisodeError(label, f"state has {t} frames but there are {timestamps.shape[0]} timestamps")
    for name, arr in (("state", state), ("action", action)):
        bad = ~np.isfinite(arr)
        if bad.any():
            frame, dim = (int(v) for v in np.argwhere(bad)[0])
            kind = "NaN" if np.isnan(arr[frame, dim]) else "inf"
            raise EpisodeError(label, f"{name} has {int(bad.sum())} non-finite values (first: {kind} at frame {frame}, dim {dim})")
    if not np.all(np.isfinite(timestamps)):
        raise EpisodeError(label, "timestamps contain NaN/inf")
    if t > 1 and np.any(np.diff(timestamps) <= 0):
        k = int(np.argmax(np.diff(timestamps) <= 0))
        raise EpisodeError(label, f"timestamps are not increasing at frame {k + 1} ({timestamps[k]} -> {timestamps[k + 1]})")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key ordering names by the numbers in them (`episode_2` before `episode_10`, `demo_9`
    before `demo_10`); between numbers the text compares case-insensitively, and names without
    numbers fall back to lexical order."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p != "")


def file_number(name: str) -> int | None:
    """The last number in a file name, its extension aside (`episode_12.hdf5` -> 12)."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    m = re.search(r"(\d+)(?!.*\d)", stem)
    return int(m.group(1)) if m else None


def default_names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}_{i}" for i in range(n)]


class VideoFrames:
    """Lazy frame access for one episode: camera -> (video uri, offset of the episode in it).

    Frame k of the episode is the frame whose pts is nearest to `offset + timestamps[k]`.
    Readers are opened on first use and kept for the life of this object.
    """

    def __init__(
        self,
        label: str,
        videos: dict[str, tuple[str, float]],
        timestamps: np.ndarray,
        fps: float,
        backend: str = "auto",
        relative_to_stream_start: bool = False,
        require_same_fps: bool = True,
    ):
        self.label = label
        self.relative = relative_to_stream_start  # offsets count from the first frame's pts
        self.require_same_fps = require_same_fps  # else each sample takes the nearest frame
        self.videos = dict(videos)
        self._base = dict(videos)
        self.timestamps = np.asarray(timestamps, dtype=np.float64)
        self.fps = float(fps)
        self.backend = backend
        self._readers: dict[str, VideoReader] = {}

    def reader(self, cam: str) -> VideoReader:
        if cam not in self._readers:
            uri, _ = self.videos[cam]
            try:
                r = pooled_reader(uri, backend=self.backend)  # type: ignore[arg-type]
            except VideoError as e:
                raise EpisodeError(self.label, f"camera {cam}: {e}") from None
            if self.relative and r.start_time:
                self.videos[cam] = (uri, self._base[cam][1] + r.start_time)
            self._readers[cam] = r
        return self._readers[cam]

    def video_spans(self) -> dict[str, tuple[str, float]]:
        """camera -> (video URI, the episode's start in it, seconds) (for `carve check`)."""
        return {cam: (uri, off) for cam, (uri, off) in self._base.items()}

    def verify(self, cam: str) -> None:
        """The video of `cam` exists, opens, and covers every frame of the action stream."""
        r = self.reader(cam)
        uri, offset = self.videos[cam]
        start = offset + float(self.timestamps[0])
        end = offset + float(self.timestamps[-1]) + 1.0 / self.fps
        if self.require_same_fps and abs(r.fps - self.fps) > 0.01 * self.fps:
            raise EpisodeError(self.label, f"camera {cam}: video runs at {r.fps:g} fps but the data at {self.fps:g} fps")
        if r.end_time + 0.5 / r.fps < end:
            raise EpisodeError(
                self.label,
                f"camera {cam}: video ends at {r.end_time - offset:.2f} s but actions run to {end - offset:.2f} s "
                f"({r.num_frames} frames in {uri})",
            )
        try:
            r.verify_span(start, end)
        except VideoError as e:
            raise EpisodeError(self.label, f"camera {cam}: {e}") from None

    def __call__(self, cam: str, indices: Sequence[int] | None) -> np.ndarray:
        r = self.reader(cam)
        _, offset = self.videos[cam]
        n = self.timestamps.shape[0]
        try:
            if indices is None:
                half = 0.5 / r.fps
                frames = r.read_range(offset + self.timestamps[0] - half, offset + self.timestamps[-1] + half)
                if frames.shape[0] == n:
                    return frames
                return r.read_at(offset + self.timestamps)  # irregular timestamps: match each one
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise EpisodeError(self.label, f"frame index out of range 0..{n - 1}: {idx.min()}..{idx.max()}")
            return r.read_at(offset + self.timestamps[idx])
        except VideoError as e:
            raise EpisodeError(self.label, f"camera {cam}: {e}") from None

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers = {}

    def __del__(self) -> None:  # readers hold file handles
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict[str, Any]:  # picklable: readers are reopened on use
        d = dict(self.__dict__)
        d["_readers"] = {}
        d["videos"] = dict(self._base)
        return d


def camera_list(camera: str | list[str] | None) -> list[str] | None:
    """A camera selection (one name, "a,b", or a list) as a list; None = every camera."""
    if camera is None or camera == "" or camera == []:
        return None
    names = [c.strip() for c in camera.split(",")] if isinstance(camera, str) else [str(c) for c in camera]
    return [c for c in names if c]
