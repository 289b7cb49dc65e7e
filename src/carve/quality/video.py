"""Defects in one episode's videos: missing frames, the wrong frame rate, black or frozen images.

Counting frames reads the container's packets without decoding them (PyAV demuxing). Black and
frozen cameras are found on the brightness (luma) of frames decoded every `check.video_sample_s`
seconds only, read from the stored plane without a colour conversion, so a check costs a
fraction of decoding the videos: a constant image (`black_max_std`) for
`black_min_s`, or the same image (`frozen_max_diff`) for `frozen_min_s` while the robot moves.
Each sample moves to the nearest keyframe within half a sampling interval, when there is one:
a keyframe decodes on its own, where any other frame needs the frames before it in its group of
pictures (the way thumbnailers sample, `ffmpeg -skip_frame nokey`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from carve.core.config import CheckConfig
from carve.quality.defects import Defect, runs


@dataclass(frozen=True)
class Packets:
    """What demuxing one video file tells without decoding it."""

    times: np.ndarray  # presentation time of every video packet, seconds, sorted
    keys: np.ndarray  # presentation time of every keyframe packet, seconds, sorted
    fps: float  # the stream's frame rate

    @property
    def key_gap(self) -> float:
        """The longest stretch between two keyframes, seconds (the whole file with one keyframe)."""
        if len(self.keys) > 1:
            return float(np.diff(self.keys).max())
        return float(self.times[-1] - self.times[0]) if len(self.times) else 0.0


def packet_times(uri: str) -> Packets:
    """The packets of a video file. Cached per file and size: the episodes of a LeRobot v3.0 file
    share one demux."""
    from carve.storage.fs import resolve

    fs, path = resolve(uri)
    return _packet_times(uri, int(fs.get_file_info(path).size or 0))


@functools.lru_cache(maxsize=16)
def _packet_times(uri: str, size: int) -> Packets:
    import av

    from carve.storage.fs import resolve

    fs, path = resolve(uri)
    with fs.open_input_file(path) as raw, av.open(raw) as c:
        stream = c.streams.video[0]
        tb = float(stream.time_base)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        pts, keys = [], []
        for p in c.demux(stream):
            if p.pts is not None:
                pts.append(p.pts)
                if p.is_keyframe:
                    keys.append(p.pts)
    return Packets(np.sort(np.asarray(pts, dtype=np.float64) * tb), np.sort(np.asarray(keys, dtype=np.float64) * tb),
                   fps)


def length_and_rate(cam: str, uri: str, offset: float, n: int, fps: float,
                    cfg: CheckConfig) -> tuple[list[Defect], int, Packets | None]:
    """(`video_length_mismatch` when fewer frames than data rows lie in the episode's span of the
    file, `fps_mismatch` when the stream's rate differs from the dataset's; the number of video
    frames in the span; the file's packets, None when it cannot be read)."""
    try:
        pk = packet_times(uri)
    except Exception as e:  # OSError, VideoError, PyAV's own errors (InvalidDataError, ...)
        return [Defect("video_length_mismatch", 0, max(0, n - 1), f"camera {cam}: cannot read {uri} ({e})")], 0, None
    out = []
    t, rate = pk.times, pk.fps
    if rate and abs(rate - fps) > cfg.fps_tolerance * fps:
        out.append(Defect("fps_mismatch", 0, n - 1, f"camera {cam}: the video runs at {rate:.2f} fps, the data at {fps:g}"))
    if len(t) == 0:
        return [*out, Defect("video_length_mismatch", 0, n - 1, f"camera {cam}: {uri} holds no frames")], 0, pk
    half = 0.5 / fps
    start = _start(pk, offset)
    inside = int(np.sum((t >= start - half) & (t < start + n / fps - half)))
    if inside < n:
        out.append(Defect("video_length_mismatch", inside, n - 1,
                          f"camera {cam}: {inside} video frames for {n} data rows (the video ends at frame {inside})"))
    return out, inside, pk


def _start(pk: Packets, offset: float) -> float:
    """Where an episode's span starts in its file: a file of its own starts at its first frame."""
    return float(pk.times[0]) + offset if offset == 0 and len(pk.times) else offset


def sample_indices(n: int, fps: float, cfg: CheckConfig) -> np.ndarray:
    """Frame indices every `video_sample_s` seconds, the last frame included."""
    step = max(1, round(cfg.video_sample_s * fps))
    idx = np.arange(0, n, step)
    return np.unique(np.append(idx, n - 1)) if n else idx


def snap_to_keyframes(idx: np.ndarray, rel: np.ndarray, keys: np.ndarray, fps: float, cfg: CheckConfig) -> np.ndarray:
    """`idx` (sample frame indices, sorted) with each inner sample moved to the nearest keyframe
    within half a sampling interval; the first and last stay (they bound the spans). `rel`: each
    frame's time from the episode's first frame; `keys`: keyframe times on the same clock."""
    if len(idx) < 3 or not len(keys):
        return idx
    half = 0.5 / fps
    j = np.clip(np.searchsorted(rel, keys - half), 0, len(rel) - 1)
    kf = np.unique(j[np.abs(rel[j] - keys) <= half])  # the frames that are keyframes
    if not len(kf):
        return idx
    inner = idx[1:-1]
    lo = np.clip(np.searchsorted(kf, inner) - 1, 0, len(kf) - 1)  # the keyframes either side of each sample
    hi = np.minimum(lo + 1, len(kf) - 1)
    near = np.where(np.abs(kf[lo] - inner) <= np.abs(kf[hi] - inner), kf[lo], kf[hi])
    reach = max(1, round(cfg.video_sample_s * fps)) // 2
    snapped = np.where(np.abs(near - inner) <= reach, near, inner)
    return np.unique(np.concatenate([idx[:1], snapped, idx[-1:]]))


def images(cam: str, frames: np.ndarray, idx: np.ndarray, moving: np.ndarray, fps: float,
           cfg: CheckConfig) -> list[Defect]:
    """`black_video` and `frozen_video` from the brightness of the frames at `idx` (frame indices;
    `frames` (N, H, W) uint8 luma); `moving[k]`: some arm at its moving speed at frame k."""
    if len(idx) == 0:
        return []
    f = frames.astype(np.float32)
    std = f.reshape(len(f), -1).std(axis=1)
    out = []
    flat = std < cfg.black_max_std
    for a, b in runs(flat):
        first, last = int(idx[a]), int(idx[b])
        if (last - first + 1) / fps >= cfg.black_min_s:
            level = float(f[a].mean())
            out.append(Defect("black_video", first, last, f"camera {cam}: one constant image (mean {level:.0f}, "
                              f"std {float(std[a]):.1f}) from frame {first} to {last}"))
    if len(idx) > 1:
        same = np.abs(f[1:] - f[:-1]).reshape(len(f) - 1, -1).mean(axis=1) < cfg.frozen_max_diff
        moves = np.array([bool(moving[idx[k] : idx[k + 1] + 1].any()) for k in range(len(idx) - 1)])
        frozen = same & moves & ~flat[1:] & ~flat[:-1]
        for a, b in runs(frozen):
            first, last = int(idx[a]), int(idx[b + 1])
            if (last - first) / fps >= cfg.frozen_min_s:
                out.append(Defect("frozen_video", first, last, f"camera {cam}: the same image from frame {first} to "
                                  f"{last} while the robot moves"))
    return out


def check_cameras(ep: Any, moving: np.ndarray, cfg: CheckConfig) -> list[Defect]:
    """Every camera of a loaded episode (`ingest.sources.Episode`): its length and rate (video
    files), then black and frozen images on sampled frames (whatever stores them). A video file
    is read sample by sample, seeking whenever the next sample lies beyond the file's longest
    keyframe interval (so a short GOP costs a frame or two per sample, a long one a sequential
    read, never more than decoding it all). In `carve run` the episode's frames were just decoded
    for its keyframes, and the reader serves the samples from them (`ingest.video.recent_frames`)."""
    from carve.ingest.video import pooled_reader, rgb_to_luma

    out: list[Defect] = []
    n, fps = ep.length, float(ep.fps)
    spans = ep.video_spans()
    ts = np.asarray(ep.timestamps, dtype=np.float64)
    for cam in ep.selected_cameras:  # a run's camera selection (ingest/sources/base.py)
        idx = sample_indices(n, fps, cfg)
        try:
            if cam in spans:
                uri, offset = spans[cam]
                found, inside, pk = length_and_rate(cam, uri, offset, n, fps, cfg)
                out += found
                # sample only frames the video has (timestamps with gaps or at another rate run past it)
                idx = idx[np.isfinite(ts[idx]) & (ts[idx] - ts[0] < (inside - 0.5) / fps)]
                if len(idx) == 0 or pk is None:
                    continue
                t0 = _start(pk, offset)
                idx = snap_to_keyframes(idx, ts - ts[0], pk.keys - t0, fps, cfg)
                r = pooled_reader(uri, backend="pyav", seek_gap_s=max(pk.key_gap, 1.0 / fps), threads=False)
                frames = r.read_at(t0 + ts[idx] - ts[0], luma=True)
            elif len(idx):
                frames = rgb_to_luma(ep.frames(cam, idx))
            else:
                continue
        except Exception as e:  # a corrupt stream: the defect is that the video cannot be decoded
            out.append(Defect("video_length_mismatch", 0, n - 1, f"camera {cam}: frames cannot be decoded ({e})"))
            continue
        out += images(cam, frames, idx, moving, fps, cfg)
    return out
