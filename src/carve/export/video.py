"""Video for the LeRobot export (PyAV): re-encoding frames, stream-copying whole spans, PSNR.

* `pick_encoder(codec)`: the PyAV encoder for "av1" (libsvtav1, else libaom-av1) or "h264"
  (libx264) in this build; a clear error naming what was tried when there is none.
* `EncodedVideo`: one mp4 being encoded, episode after episode (yuv420p, the source's size
  and fps, a keyframe at every episode start and every `gop` frames as lerobot's g=2;
  libsvtav1 preset 10 crf 24 and libx264 crf 20, finer than lerobot's preset 12 / crf 30, so
  that every re-encoded frame stays >= 35 dB PSNR from the source's on the simulated data,
  where lerobot's settings reach 34.5 dB on the worst frames). `append(frames)` returns the
  episode's (from, to) seconds in the file.
* `span_packets(path, start_s, n, fps)`: the packets of n frames starting at `start_s` in a
  source video, if that span can be copied unchanged: it begins on a keyframe, its packets
  are one contiguous run in decode order (nothing outside the span is needed to decode it)
  and its frames sit one per 1/fps. Otherwise None (the caller re-encodes).
* `CopiedVideo`: one mp4 made of copied spans (same codec parameters; `compatible` says
  whether a span from another source file can join it). Copying needs no encoder: the output
  stream takes the source stream's codec parameters as they are, so a stream whose only
  codec in this build is a decoder (AV1 through libdav1d) copies like H.264 or HEVC.
* `stream_codec(stream)` / `canonical_codec(name)`: a codec's name as lerobot's
  `get_video_info` records it (the FFmpeg codec descriptor: "av1", "h264", "hevc"), never
  the name of the decoder or encoder that handles it ("libdav1d", "libx264", "libx265").
* `check_decodable(source)`: the codec of a source video, or an error naming the file and why
  Carve cannot decode it (missing, not a video, a codec this PyAV build has no decoder for).
* `psnr(a, b)`: peak signal-to-noise ratio in dB of two uint8 frame stacks.
* `open_input(source)`: a PyAV input container of a local video or of one on an object store
  (`s3://...`, read through pyarrow.fs, so copying a span fetches only the bytes it needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from carve.core import env
from carve.export.layout import CANONICAL_CODEC
from carve.storage.fs import is_uri, resolve

ENCODERS: dict[str, tuple[str, ...]] = {"av1": ("libsvtav1", "libaom-av1"), "h264": ("libx264",)}
DEFAULT_CRF = {"libsvtav1": 24, "libaom-av1": 24, "libx264": 20}
DEFAULT_GOP = 2  # lerobot's encode_video_frames default: a keyframe every 2 frames (fast random access)


class VideoExportError(RuntimeError):
    """A video that cannot be encoded or copied; the message names the file and the reason."""


def open_input(source: str) -> Any:
    """A PyAV input container for a local path or an object-store URI (see the module doc)."""
    import av

    if is_uri(source):
        fs, path = resolve(source)
        return av.open(fs.open_input_file(path), "r")
    return av.open(source, "r")


def pick_encoder(codec: str) -> str:
    """The PyAV encoder name for `codec` ("av1" or "h264") available in this build."""
    import av

    names = ENCODERS.get(codec)
    if names is None:
        raise VideoExportError(f"unknown codec {codec!r}; use one of {sorted(ENCODERS)}")
    for name in names:
        if name in av.codecs_available:
            try:
                av.Codec(name, "w")
                return name
            except Exception:  # listed but not usable as an encoder
                continue
    raise VideoExportError(
        f"this PyAV build (FFmpeg {av.library_versions.get('libavcodec')}) has no {codec} encoder "
        f"(tried {', '.join(names)}); use --codec h264 or install a PyAV wheel with {names[0]}"
    )


def canonical_codec(name: str) -> str:
    """The codec's descriptor name of an encoder, decoder or codec name ("libsvtav1" and
    "libdav1d" -> "av1", "libx265" -> "hevc"); the name itself when this build knows neither."""
    import av

    for mode in ("w", "r"):
        try:
            return str(av.Codec(name, mode).canonical_name)
        except Exception:  # not an encoder (or decoder) name in this build
            continue
    return CANONICAL_CODEC.get(name, name)


def stream_codec(stream: Any) -> str:
    """The codec of an input stream by its descriptor name (what lerobot writes in info.json),
    not `codec_context.name`, which is the decoder PyAV picked (e.g. "libdav1d" for AV1)."""
    cc = stream.codec_context
    if cc is None:
        raise VideoExportError(f"stream {stream.index} has no codec")
    return str(cc.codec.canonical_name)


def encoder_options(encoder: str, crf: int | None = None, gop: int = DEFAULT_GOP) -> dict[str, str]:
    opts = {"g": str(max(1, int(gop))), "crf": str(DEFAULT_CRF.get(encoder, 30) if crf is None else int(crf))}
    if encoder == "libsvtav1":
        opts["preset"] = "10"
    elif encoder == "libaom-av1":
        opts["cpu-used"] = "8"
        opts["row-mt"] = "1"
    elif encoder == "libx264":
        opts["preset"] = "veryfast"
    return opts


class EncodedVideo:
    """One mp4 being encoded frame by frame; several episodes are appended to it."""

    def __init__(self, path: Path, *, encoder: str, fps: int, width: int, height: int,
                 crf: int | None = None, gop: int = DEFAULT_GOP):
        import av

        if encoder == "libsvtav1":
            env.set_default("SVT_LOG", "1")  # SVT-AV1 prints its banner at INFO otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = int(fps)
        self.width, self.height = int(width), int(height)
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(encoder, rate=self.fps, options=encoder_options(encoder, crf, gop))
        self.stream.width = self.width
        self.stream.height = self.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = Fraction(1, self.fps)
        self.n_frames = 0
        self.bytes = 0

    def append(self, frames: np.ndarray) -> tuple[float, float]:
        """Encode (n, H, W, 3) RGB frames after those already written; their (from, to) seconds."""
        import av

        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise VideoExportError(f"{self.path}: frames of shape {frames.shape}, the file is "
                                   f"{self.height}x{self.width} RGB")
        start = self.n_frames
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = self.n_frames
            frame.time_base = Fraction(1, self.fps)
            if i == 0:  # every episode starts on a keyframe
                frame.pict_type = av.video.frame.PictureType.I
            self._mux(self.stream.encode(frame))
            self.n_frames += 1
        return start / self.fps, self.n_frames / self.fps

    def _mux(self, packets: list[Any]) -> None:
        for p in packets:
            self.bytes += p.size
            self.container.mux(p)

    def close(self) -> None:
        self._mux(self.stream.encode())
        self.container.close()


@dataclass
class SpanPackets:
    """The packets of one copyable span, in decode order, with pts/dts in frames from its start."""

    source: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    extradata: bytes
    packets: list[tuple[bytes, int, int, bool]]  # (payload, pts, dts, keyframe)
    template: Any = None  # the source stream, to create a CopiedVideo from

    @property
    def key(self) -> tuple[str, int, int, str, bytes]:
        return (self.codec, self.width, self.height, self.pix_fmt, self.extradata)


def _open_or_raise(source: str) -> Any:
    """`open_input(source)`, or `VideoExportError` naming the file: missing, or not a readable video."""
    import av

    try:
        return open_input(source)
    except (FileNotFoundError, av.error.FileNotFoundError):
        raise VideoExportError(f"video {source}: file not found") from None
    except av.error.FFmpegError as e:
        raise VideoExportError(f"video {source}: cannot open ({e}); the file may be truncated or not a video") from None


def check_decodable(source: str) -> str:
    """The codec of `source`'s first video stream ("av1", "h264", ...), after checking that this
    PyAV build has a decoder for it; `VideoExportError` naming the file and the reason when the
    file is missing, is not a video, or holds a codec Carve cannot decode."""
    import av

    with _open_or_raise(source) as container:
        if not container.streams.video:
            raise VideoExportError(f"video {source}: has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # FFmpeg knows no codec (or no decoder) for the stream's tag
            raise VideoExportError(
                f"video {source}: its video stream's codec is unknown to this PyAV {av.__version__} build "
                f"(FFmpeg libavcodec {'.'.join(map(str, av.library_versions.get('libavcodec', ())))}: "
                "no decoder), so Carve cannot decode it; re-encode it (e.g. to AV1 or H.264) first")
        return stream_codec(stream)


def span_packets(path: str, start_s: float, n: int, fps: float) -> SpanPackets | None:
    """The packets of frames [start_s, start_s + n/fps) of `path`, if the span copies cleanly."""
    container = _open_or_raise(path)
    try:
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        half = 0.5 / fps
        end_s = start_s + n / fps
        if start_s > half:
            container.seek(int((start_s - half) / tb), stream=stream, backward=True, any_frame=False)
        run: list[tuple[bytes, int, int, bool]] = []
        inside_done = False
        for p in container.demux(stream):
            if p.size == 0 or p.pts is None or p.dts is None:
                continue
            t, d = p.pts * tb, p.dts * tb
            if d >= end_s - half and t >= end_s - half:
                break
            inside = start_s - half <= t < end_s - half
            if inside:
                if inside_done:
                    return None  # span packets interleaved with others in decode order
                run.append((bytes(p), round((t - start_s) * fps), round((d - start_s) * fps), bool(p.is_keyframe)))
            elif run:
                inside_done = True
        if len(run) != n or not run[0][3]:
            return None
        if sorted(r[1] for r in run) != list(range(n)):
            return None  # not one frame per 1/fps
        cc = stream.codec_context
        return SpanPackets(source=path, codec=stream_codec(stream), width=cc.width, height=cc.height,
                           pix_fmt=str(cc.pix_fmt), extradata=bytes(cc.extradata or b""), packets=run)
    finally:
        container.close()


class CopiedVideo:
    """One mp4 made of stream-copied spans that share codec parameters."""

    def __init__(self, path: Path, first: SpanPackets, fps: int):
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = int(fps)
        self.key = first.key
        self.codec = first.codec
        with open_input(first.source) as src:
            self.container = av.open(str(path), "w")
            # opaque: keep the template's own codec object (the decoder) and its parameters; the
            # default builds an encoder from the decoder's name, which fails for decoder-only
            # codecs (libdav1d) and is never used for muxing copied packets anyway
            self.stream = self.container.add_stream_from_template(src.streams.video[0], opaque=True)
        self.stream.time_base = Fraction(1, self.fps * 1024)
        self.n_frames = 0
        self.bytes = 0

    def compatible(self, span: SpanPackets) -> bool:
        return span.key == self.key

    def append(self, span: SpanPackets) -> tuple[float, float]:
        import av

        if not self.compatible(span):
            raise VideoExportError(f"{self.path}: cannot append a {span.codec} span with other parameters "
                                   f"from {span.source}")
        start = self.n_frames
        tb = Fraction(1, self.fps)
        for payload, pts, dts, key in span.packets:
            p = av.Packet(payload)
            p.stream = self.stream
            p.time_base = tb
            p.pts = start + pts
            p.dts = start + dts
            p.duration = 1
            if key:
                p.is_keyframe = True
            self.bytes += p.size
            self.container.mux(p)
        self.n_frames += len(span.packets)
        return start / self.fps, self.n_frames / self.fps

    def close(self) -> None:
        self.container.close()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays of the same shape (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))
