"""Frame-accurate video decoding (PyAV or decord) by presentation timestamp.

Owns `VideoReader` and `VideoError`. A reader opens one video file (local path, `file://`,
or a pyarrow.fs URI such as `s3://...`, which only PyAV can stream) and returns RGB uint8
frames (or, for sparse sampling, their brightness only):

* `read_range(start_s, end_s)`: the frames whose pts fall in [start, end), decoded
  sequentially after at most one seek;
* `read_at(timestamps)`: for each timestamp the frame whose pts is nearest, which must lie
  within half a frame period. Targets are visited in time order; the decoder seeks only when
  going backwards or jumping more than `seek_gap_s` ahead, and decodes forward otherwise, so
  dense requests never reseek per frame. Only the selected frames are converted to RGB;
* `verify_span(start_s, end_s)`: checks without decoding that the container index reaches
  `end_s` and that the packets are really there (demuxes only the last GOP), so a video that
  is shorter than the action stream or truncated is caught before any decode.

Between episodes (`carve run` decodes many episodes of one LeRobot v3.0 file in turn):
`pooled_reader` keeps a reader per file open for the next episode (opening and indexing the file
once), and `read_at` keeps a copy of the frames it last decoded per file (`keep_recent`), which
the next `read_at` of the same span serves (`recent_frames`), whichever reader asks: an episode
decoded once for its keyframes is not decoded again for its quality check.

`set_decoder_threads(n)`: the threads each decoder opened from then on in this process may use
(0, the default: the library's own, a thread per core); a decode child beside others sets it
(`pipeline/ahead.py`).

Backend "auto" is PyAV (libdav1d for AV1, LeRobot's default codec) for every codec, its colour
conversions on one thread (`conversion_kwargs`): on H.264 that is faster than decord in `carve run`
(decode_segment 100-104 s against 51-61 s on 1,000 128-px episodes, 36-37 s against 24-26 s on
40 480-px ones; the same frames, BENCHMARKS.md issue 22). "decord" (local H.264 files; it cannot
open AV1) stays selectable. Missing, truncated and undecodable files raise `VideoError` naming the
file and the reason; readers turn it into an `EpisodeError` for the episode.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

from carve.core.errors import CarveError

Backend = Literal["auto", "decord", "pyav"]
_EPS = 1e-6


class VideoError(CarveError):
    """A video file that cannot be opened or decoded. The message names the file and the reason."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"video {path}: {reason}")


def _is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _local_path(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


class _PyAVDecoder:
    """Sequential PyAV decoding with an explicit cursor (the last two decoded frames)."""

    def __init__(self, uri: str, threads: bool = True):
        import av

        self.uri = uri
        self._fileobj = None
        try:
            if _is_remote(uri):
                from carve.storage.fs import resolve

                fs, path = resolve(uri)
                self._fileobj = fs.open_input_file(path)
                self.container = av.open(self._fileobj, "r")
            else:
                self.container = av.open(_local_path(uri), "r")
        except FileNotFoundError:
            raise VideoError(uri, "file not found") from None
        except av.error.FFmpegError as e:
            raise VideoError(uri, f"cannot open ({_ff_reason(e)}); the file may be truncated or not a video") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(uri, "has no video stream")
        self.stream = self.container.streams.video[0]
        if threads:
            self.stream.thread_type = "AUTO"
        self.time_base = self.stream.time_base
        self.tb = float(self.time_base) if self.time_base else 1e-6  # float seconds per pts tick
        cc = self.stream.codec_context
        if cc is None:  # PyAV found no decoder for the stream's codec
            tag = getattr(self.stream, "codec_tag", "") or "?"
            self.container.close()
            raise VideoError(uri, f"its video codec (tag {tag!r}) has no decoder in this FFmpeg build (PyAV "
                                  f"{av.__version__}); re-encode it to AV1, H.264 or HEVC")
        if threads and _DECODER_THREADS:
            cc.thread_count = _DECODER_THREADS
        self.codec = str(cc.name)
        self.width = int(cc.width)
        self.height = int(cc.height)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        if not rate:
            raise VideoError(uri, "has no frame rate")
        self.fps = float(rate)
        if self.stream.duration is not None and self.time_base is not None:
            self.duration = float(self.stream.duration * self.time_base)
        elif self.container.duration is not None:
            self.duration = float(self.container.duration) / 1_000_000
        else:
            self.duration = 0.0
        start = self.stream.start_time
        self.start_time = float(start * self.time_base) if start is not None and self.time_base else 0.0
        self.num_frames = int(self.stream.frames) or round((self.duration - self.start_time) * self.fps)
        self._it: Iterator[Any] | None = None
        self.prev: tuple[float, Any] | None = None
        self.cur: tuple[float, Any] | None = None
        self.eof = False
        self.sought = False
        self.must_seek = False  # set after demux-only probing moved the read position

    # cursor ------------------------------------------------------------------------------
    def seek(self, t: float) -> None:
        """Seek to the keyframe at or before `t`; decoding resumes from there."""
        import av

        target = max(t, self.start_time)
        offset = int(target / float(self.time_base)) if self.time_base else int(target * 1_000_000)
        try:
            self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise VideoError(self.uri, f"seek to {t:.3f} s failed ({_ff_reason(e)})") from None
        self._it = None
        self.prev = self.cur = None
        self.eof = False
        self.sought = True
        self.must_seek = False

    def last_packet_time(self, near_s: float, stop_s: float | None = None) -> float | None:
        """Pts (seconds) of the last video packet, found by demuxing (not decoding) from the
        keyframe before `near_s`. None when no packet is found there. A file whose index
        promises more frames than its bytes hold shows up here as an early last packet.
        With `stop_s`, demuxing stops at the first packet at or after `stop_s` (its pts is
        returned): a file that many episodes share is not read to its end to verify one."""
        import av

        self.seek(max(near_s, self.start_time))
        last: float | None = None
        try:
            for packet in self.container.demux(self.stream):
                if packet.pts is None or packet.size == 0:
                    continue
                t = packet.pts * self.tb
                last = t if last is None else max(last, t)
                if stop_s is not None and last >= stop_s:
                    break
        except av.error.FFmpegError as e:
            raise VideoError(self.uri, f"file is truncated or corrupt near {near_s:.3f} s ({_ff_reason(e)})") from None
        self._it = None
        self.prev = self.cur = None
        self.must_seek = True
        return last

    def needs_seek(self, t: float, gap_s: float) -> bool:
        """Whether the frames at or after `t` can no longer (or not cheaply) be reached by decoding on.

        True when a frame at or after `t` was already passed (backwards request) or when `t`
        lies more than `gap_s` beyond the cursor.
        """
        if self.must_seek:
            return True
        if self.cur is None:
            return (not self.sought) and t - self.start_time > gap_s
        cur_t = self.cur[0]
        if self.prev is not None:
            if self.prev[0] >= t - _EPS:
                return True
        elif self.sought and cur_t > t + _EPS:
            return True  # the keyframe we landed on is after t
        return t - cur_t > gap_s

    def next_frame(self) -> tuple[float, Any] | None:
        """Decode the next frame without touching the cursor; None at end of stream."""
        import av

        if self.eof:
            return None
        if self._it is None:
            self._it = self.container.decode(self.stream)
        while True:
            try:
                frame = next(self._it)
            except StopIteration:
                self.eof = True
                return None
            except av.error.FFmpegError as e:
                after = f"{self.cur[0]:.3f} s" if self.cur is not None else "the start"
                raise VideoError(self.uri, f"decoding failed after {after} ({_ff_reason(e)})") from None
            if frame.pts is not None:
                return frame.pts * self.tb, frame

    def step(self) -> bool:
        """Decode the next frame into `cur` (moving `cur` to `prev`); False at end of stream."""
        nxt = self.next_frame()
        if nxt is None:
            return False
        self.prev = self.cur
        self.cur = nxt
        return True

    def close(self) -> None:
        self.container.close()
        if self._fileobj is not None:
            self._fileobj.close()


def _ff_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).strip()


@functools.cache
def conversion_kwargs() -> dict[str, int]:
    """One swscale thread per conversion where PyAV lets it be chosen (PyAV >= 17).

    PyAV 17 made `reformat` multithreaded by default (`threads=0`: one per core), and with FFmpeg 8's
    swscale each call starts and joins its threads again: two `clone3` per frame on a 2-core box,
    where a 128-px frame's conversion is a few microseconds of work. Decoding 17,293 such frames to
    RGB took 8.7 s that way and 2.2 s with `threads=1`, the same pixels (PyAV-Org/PyAV#2200; BENCHMARKS.md,
    issue 22). Carve already decodes one episode per core, so a thread per conversion is all it uses."""
    import av

    major = int(str(av.__version__).split(".")[0])
    return {"threads": 1} if major >= 17 else {}


def _to_rgb(frame: Any) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", **conversion_kwargs())


_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"})


def _to_luma(frame: Any) -> np.ndarray:
    """The frame's brightness (H, W) uint8. For 8-bit YUV, its first plane as stored: no colour
    conversion, only a copy (on 96x72 AV1 frames a third of the cost of `_to_rgb`); any other
    pixel format through swscale's gray conversion."""
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(frame.height, plane.line_size)
        return rows[:, : frame.width].copy()
    return frame.to_ndarray(format="gray", **conversion_kwargs())


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """Brightness of RGB uint8 images (..., H, W, 3) as uint8 (..., H, W): ITU-R BT.601 luma in
    studio range (16-235), what an 8-bit YUV video encoded from those images stores, so frames
    from PyAV's plane and from RGB sources (decord, HDF5 images) are on one scale."""
    y = 16.0 + rgb[..., :3].astype(np.float32) @ (np.array([65.481, 128.553, 24.966], dtype=np.float32) / 255.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


class VideoReader:
    """Open one video and decode frames by timestamp. See the module docstring."""

    def __init__(self, path_or_uri: str, backend: Backend = "auto", seek_gap_s: float = 1.0, threads: bool = True):
        self.path = str(path_or_uri)
        if backend not in ("auto", "decord", "pyav"):
            raise ValueError(f"unknown video backend {backend!r}; use auto, decord or pyav")
        if not _is_remote(self.path) and not os.path.exists(_local_path(self.path)):
            raise VideoError(self.path, "file not found")
        self.seek_gap_s = float(seek_gap_s)
        # frame threading hides a decoder's latency on sequential reads; a reader that seeks for
        # every frame it wants (sparse sampling) decodes fewer frames per seek without it
        self._av = _PyAVDecoder(self.path, threads=threads)
        try:
            self._init_backend(backend)
        except BaseException:
            self._av.close()
            raise

    def _init_backend(self, backend: Backend) -> None:
        self.codec: str = self._av.codec
        self.fps: float = self._av.fps
        self.duration: float = self._av.duration
        self.num_frames: int = self._av.num_frames
        self.width: int = self._av.width
        self.height: int = self._av.height
        self.start_time: float = self._av.start_time  # pts of the first frame, seconds
        self._decord: Any = None
        self._decord_ts: np.ndarray | None = None
        if backend == "auto":
            backend = "pyav"
        elif backend == "decord":
            if _is_remote(self.path):
                raise VideoError(self.path, "decord cannot read remote URIs; use the pyav backend")
            self._open_decord()
        self.backend: str = backend

    # properties / lifecycle ------------------------------------------------------------------
    @property
    def frame_period(self) -> float:
        return 1.0 / self.fps

    def close(self) -> None:
        if getattr(self, "_pooled", False):  # kept open by `pooled_reader` for the next episode of its file
            return
        self._close()

    def _close(self) -> None:
        if self._av is not None:
            self._av.close()
            self._av = None  # type: ignore[assignment]
        self._decord = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoReader({self.path!r}, backend={self.backend}, codec={self.codec}, fps={self.fps:g}, "
            f"frames={self.num_frames}, {self.width}x{self.height})"
        )

    # public API --------------------------------------------------------------------------------
    @property
    def end_time(self) -> float:
        """End of the last frame according to the container index (start + duration)."""
        dec = self._require_av()
        if self.duration > 0:
            return dec.start_time + self.duration
        return dec.start_time + self.num_frames / self.fps

    def verify_span(self, start_s: float, end_s: float) -> None:
        """Check, without decoding, that frames cover [start_s, end_s): the container index must
        reach `end_s` and the packets must really be there (a truncated file whose index is
        intact ends early). Raises `VideoError` saying where the video ends."""
        period = 1.0 / self.fps
        tol = 0.5 * period + 1e-4
        if self.end_time + tol < end_s:
            raise VideoError(
                self.path,
                f"ends at {self.end_time:.3f} s ({self.num_frames} frames) but frames are needed up to {end_s:.3f} s",
            )
        last_needed = max(start_s, end_s - period)
        last = self._require_av().last_packet_time(last_needed, stop_s=last_needed - tol)
        if last is None or last + tol < last_needed:
            where = "no packets" if last is None else f"the last packet is at {last:.3f} s"
            raise VideoError(
                self.path, f"is truncated: {where} but the frame at {last_needed:.3f} s is needed"
            )

    def read_range(self, start_s: float, end_s: float) -> np.ndarray:
        """Frames whose pts fall in [start_s, end_s), in order, as (N, H, W, 3) uint8."""
        if end_s <= start_s:
            return self._empty()
        if self.backend == "decord":
            ts = self._decord_times()
            lo, hi = np.searchsorted(ts, [start_s - _EPS, end_s - _EPS], side="left")
            return self._decord_batch(list(range(int(lo), int(hi))))
        dec = self._require_av()
        if dec.needs_seek(start_s, self.seek_gap_s):
            dec.seek(start_s)
        lo, hi = start_s - _EPS, end_s - _EPS
        out: list[np.ndarray] = []
        if dec.cur is not None and lo <= dec.cur[0] < hi:
            out.append(_to_rgb(dec.cur[1]))
        # Hold no reference to frames already converted: with frame threading, every frame kept
        # alive pins a decoder buffer and measurably slows decoding down.
        dec.prev = None
        while (nxt := dec.next_frame()) is not None:
            dec.cur = nxt
            if nxt[0] >= hi:
                break
            if nxt[0] >= lo:
                out.append(_to_rgb(nxt[1]))
                dec.cur = (nxt[0], None)
            del nxt
        if dec.cur is not None and dec.cur[1] is None:  # cursor frame was consumed: refetch on demand
            dec.cur = None
            dec.must_seek = True
        return np.stack(out) if out else self._empty()

    def read_at(self, timestamps: Sequence[float] | np.ndarray, luma: bool = False) -> np.ndarray:
        """For each timestamp, the frame with the nearest pts (within half a frame period): RGB
        (N, H, W, 3), or with `luma` the brightness only (N, H, W), which PyAV reads from the
        stored plane without a colour conversion."""
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        shape = (self.height, self.width) if luma else (self.height, self.width, 3)
        if ts.size == 0:
            return np.empty((0, *shape), dtype=np.uint8)
        if not np.all(np.isfinite(ts)):
            raise VideoError(self.path, "requested a non-finite timestamp")
        tol = 0.5 / self.fps + 1e-4
        hit = recent_frames(self.path, ts, tol)
        if hit is not None:
            return rgb_to_luma(hit) if luma else hit
        if self.backend == "decord":
            got = self._decord_read_at(ts, tol)
            return rgb_to_luma(got) if luma else got
        convert = _to_luma if luma else _to_rgb
        dec = self._require_av()
        order = np.argsort(ts, kind="stable")
        out = np.empty((ts.size, *shape), dtype=np.uint8)
        pts = np.empty(ts.size, dtype=np.float64)
        last_t: float | None = None
        last_img: np.ndarray | None = None
        last_pts = 0.0
        for i in order:
            target = float(ts[i])
            if last_t is not None and target == last_t and last_img is not None:
                out[i] = last_img
                pts[i] = last_pts
                continue
            if dec.needs_seek(target - tol, self.seek_gap_s):
                # to the keyframe at or before the target itself (a frame before it is nearer only
                # when it lies after that keyframe): a sample on a keyframe decodes that frame alone
                dec.seek(target + 1e-4)
            # advance until the cursor is at or past the target
            while dec.cur is None or dec.cur[0] < target:
                if not dec.step():
                    break
            best = self._nearest(dec, target)
            if best is None or abs(best[0] - target) > tol:
                where = "no frame" if best is None else f"nearest frame at {best[0]:.3f} s"
                raise VideoError(
                    self.path,
                    f"no frame within half a frame period of {target:.3f} s ({where}; "
                    f"video has {self.num_frames} frames, {self.duration:.3f} s)",
                )
            img = convert(best[1])
            if img.shape != out.shape[1:]:
                raise VideoError(self.path, f"frame at {best[0]:.3f} s is {img.shape}, expected {out.shape[1:]}")
            out[i] = img
            pts[i] = best[0]
            last_t, last_img, last_pts = target, img, best[0]
        if not luma:  # the recent frames are RGB
            keep_recent(self.path, pts, out)
        return out

    # pyav helpers -------------------------------------------------------------------------------
    def _require_av(self) -> _PyAVDecoder:
        if self._av is None:
            raise VideoError(self.path, "reader is closed")
        return self._av

    @staticmethod
    def _nearest(dec: _PyAVDecoder, target: float) -> tuple[float, Any] | None:
        cands = [c for c in (dec.prev, dec.cur) if c is not None]
        if not cands:
            return None
        return min(cands, key=lambda c: abs(c[0] - target))

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.height, self.width, 3), dtype=np.uint8)

    # decord helpers ----------------------------------------------------------------------------
    def _open_decord(self) -> None:
        try:
            import decord

            self._decord = decord.VideoReader(_local_path(self.path), ctx=decord.cpu(0), num_threads=_DECODER_THREADS)
        except Exception as e:  # decord raises its own DECORDError / RuntimeError
            raise VideoError(self.path, f"decord cannot open it ({str(e).splitlines()[0][:200]})") from None

    def _decord_times(self) -> np.ndarray:
        if self._decord_ts is None:
            n = len(self._decord)
            ts = np.asarray(self._decord.get_frame_timestamp(np.arange(n)))[:, 0].astype(np.float64) if n else np.zeros(0)
            # decord counts from the first frame; PyAV (and LeRobot's from_timestamp) use stream pts
            self._decord_ts = ts + (self.start_time - ts[0]) if n else ts
        return self._decord_ts

    def _decord_batch(self, idx: list[int]) -> np.ndarray:
        if not idx:
            return self._empty()
        try:
            return np.asarray(self._decord.get_batch(idx).asnumpy(), dtype=np.uint8)
        except Exception as e:
            raise VideoError(self.path, f"decoding failed ({str(e).splitlines()[0][:200]})") from None

    def _decord_read_at(self, ts: np.ndarray, tol: float) -> np.ndarray:
        times = self._decord_times()
        if times.size == 0:
            raise VideoError(self.path, "has no decodable frames")
        right = np.clip(np.searchsorted(times, ts), 0, times.size - 1)
        left = np.clip(right - 1, 0, times.size - 1)
        pick = np.where(np.abs(times[left] - ts) <= np.abs(times[right] - ts), left, right)
        err = np.abs(times[pick] - ts)
        if np.any(err > tol):
            bad = int(np.argmax(err > tol))
            raise VideoError(
                self.path,
                f"no frame within half a frame period of {ts[bad]:.3f} s (nearest frame at "
                f"{times[pick[bad]]:.3f} s; video has {times.size} frames, {self.duration:.3f} s)",
            )
        uniq, inverse = np.unique(pick, return_inverse=True)
        frames = self._decord_batch(uniq.tolist())
        keep_recent(self.path, times[uniq], frames)
        return frames[inverse]


# -- decoder threads ----------------------------------------------------------------------------
_DECODER_THREADS = 0  # per decoder opened from now on in this process; 0: the library's own choice


def set_decoder_threads(n: int) -> None:
    """The threads each video decoder opened from now on in this process may use (decord's
    `num_threads`, PyAV's `thread_count` where frame threading is on); 0 (the default): the
    library's choice, a thread per core. A process that is one of several decoding side by side,
    one per core (`pipeline/ahead.py`'s children), sets 1: each decoder's own threads then only
    contend with the other processes for the same cores (2 cores, 1,000 short episodes: 38.7 s
    against 42.5 s, medians of 3; the same frames, BENCHMARKS.md)."""
    global _DECODER_THREADS
    if n < 0:
        raise ValueError(f"decoder threads must be >= 0, got {n}")
    _DECODER_THREADS = int(n)


def decoder_threads() -> int:
    """What `set_decoder_threads` set in this process (0: the library's choice)."""
    return _DECODER_THREADS


# -- readers kept open from one episode to the next ------------------------------------------
_POOL = threading.local()
POOL_SIZE = 8  # open readers per worker thread (a reader per camera for the frames and one for the check)


def pooled_reader(path_or_uri: str, backend: Backend = "auto", seek_gap_s: float = 1.0,
                  threads: bool = True) -> VideoReader:
    """A `VideoReader` of a local file that stays open for the next episode of the same file.

    LeRobot v3.0 packs many episodes into one video file; opening it (PyAV's probe, decord's
    index of the whole file) is then paid once per file and worker thread instead of once per
    episode. The reader is keyed by the file's size and modification time, so a file rewritten
    or removed is opened afresh (and a removed one fails as a fresh open does); the least
    recently used of `POOL_SIZE` is closed. `close()` on a pooled reader does nothing. Remote
    URIs get a reader of their own. Frames do not depend on what the reader read before
    (`read_at` seeks or decodes forward to the same frame).
    """
    if _is_remote(path_or_uri):
        return VideoReader(path_or_uri, backend=backend, seek_gap_s=seek_gap_s, threads=threads)
    pool: OrderedDict[tuple[Any, ...], VideoReader] = _POOL.__dict__.setdefault("readers", OrderedDict())
    try:
        st = os.stat(_local_path(path_or_uri))
    except OSError:
        return VideoReader(path_or_uri, backend=backend, seek_gap_s=seek_gap_s, threads=threads)  # says why
    key = (path_or_uri, backend, seek_gap_s, threads, _DECODER_THREADS, st.st_size, st.st_mtime_ns, st.st_ino)
    r = pool.get(key)
    if r is not None:
        pool.move_to_end(key)
        return r
    for stale in [k for k in pool if k[:5] == key[:5]]:  # the same file before it changed
        pool.pop(stale)._close()
    r = VideoReader(path_or_uri, backend=backend, seek_gap_s=seek_gap_s, threads=threads)
    r._pooled = True
    pool[key] = r
    while len(pool) > POOL_SIZE:
        pool.popitem(last=False)[1]._close()
    return r


_INHERITED: list[Any] = []  # readers a forked child inherited: never used, never closed (see below)


def forget_inherited_readers() -> None:
    """In a child just forked (pipeline/ahead.py): set aside the readers the forking thread kept
    open (`pooled_reader`). Their decoder threads live in the parent, so the child must neither
    read from them nor close them (closing joins those threads); they are kept referenced, unused,
    and the child opens its own."""
    readers = _POOL.__dict__.pop("readers", None)
    if readers:
        _INHERITED.extend(readers.values())


# -- the frames an episode decoded, for the next reader of the same span -----------------------
_RECENT = threading.local()
RECENT_MAX_BYTES = 128 * 2**20  # decoded frames kept per worker thread (the latest reads first)
RECENT_FILES = 4  # files whose last read is kept (one per camera of the episode being decoded)


def _file_key(path: str) -> tuple[int, int, int] | None:
    if _is_remote(path):
        return None
    try:
        st = os.stat(_local_path(path))
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def keep_recent(path: str, pts: np.ndarray, frames: np.ndarray) -> None:
    """Keep a copy of the frames a `read_at` just decoded (with their pts) for the next read of
    the same file: `carve run` decodes an episode's frames once for its keyframes and its quality
    check (pipeline/steps.py `DecodeSegment`), through two readers. Bounded by
    `RECENT_FILES` files and `RECENT_MAX_BYTES` per thread, the oldest dropped first; a file that
    changed is not served."""
    key = _file_key(path)
    if key is None or not len(pts) or frames.nbytes > RECENT_MAX_BYTES:
        return
    order = np.argsort(pts, kind="stable")
    recent: OrderedDict[str, tuple[Any, np.ndarray, np.ndarray]] = _RECENT.__dict__.setdefault("frames", OrderedDict())
    recent.pop(path, None)
    recent[path] = (key, np.asarray(pts, dtype=np.float64)[order], frames[order])  # indexing by an array copies
    while len(recent) > RECENT_FILES or sum(f.nbytes for _, _, f in recent.values()) > RECENT_MAX_BYTES:
        recent.popitem(last=False)


def recent_frames(path: str, ts: np.ndarray, tol: float) -> np.ndarray | None:
    """The frames nearest to `ts` from what the last `read_at` of this file decoded (`keep_recent`),
    when every target has one within `tol` (the nearest in pts, the earlier on a tie, as both
    backends pick); None otherwise, and the caller decodes."""
    recent = _RECENT.__dict__.get("frames")
    if not recent or path not in recent:
        return None
    key, pts, frames = recent[path]
    if key != _file_key(path):
        recent.pop(path, None)
        return None
    right = np.clip(np.searchsorted(pts, ts), 0, pts.size - 1)
    left = np.clip(right - 1, 0, pts.size - 1)
    pick = np.where(np.abs(pts[left] - ts) <= np.abs(pts[right] - ts), left, right)
    if np.any(np.abs(pts[pick] - ts) > tol):
        return None
    recent.move_to_end(path)
    return frames[pick]
