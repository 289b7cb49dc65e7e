"""VideoReader: frame-accurate decoding by timestamp with PyAV and decord, H.264 and AV1."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from carve.export.video import pick_encoder
from carve.ingest.video import VideoError, VideoReader
from carve.sim.formats import index_frames, read_index
from carve.sim.lerobot_writer import open_video, write_video

FPS = 10
AV1_ENCODERS = [c for c in ("libsvtav1", "libaom-av1", "librav1e") if c in av.codecs_available]


def _encoder(codec: str) -> str:
    if codec == "av1" and not AV1_ENCODERS:
        pytest.skip(f"no AV1 encoder in this PyAV build (looked for libsvtav1, libaom-av1, librav1e; "
                    f"have {sorted(c for c in av.codecs_available if 'av1' in c)})")
    return pick_encoder(codec)


def _shared_file(tmp_path: Path, codec: str, lengths: list[int]) -> tuple[Path, list[tuple[float, float]]]:
    """One mp4 holding several 'episodes' back to back (the LeRobot v3.0 layout)."""
    path = tmp_path / f"shared_{codec}.mp4"
    vf = open_video(path, _encoder(codec), FPS, 64, 64)
    spans, start = [], 0
    for n in lengths:
        spans.append(vf.append(index_frames(range(start, start + n))))
        start += n
    vf.close()
    return path, spans


@pytest.mark.parametrize("codec", ["h264", "av1"])
@pytest.mark.parametrize("backend", ["pyav", "decord", "auto"])
def test_read_at_returns_exact_indices(tmp_path: Path, codec: str, backend: str) -> None:
    path, _ = _shared_file(tmp_path, codec, [37, 23])
    if codec == "av1" and backend == "decord":
        with pytest.raises(VideoError, match="decord cannot open"):
            VideoReader(str(path), backend="decord")
        return
    with VideoReader(str(path), backend=backend) as r:
        assert r.num_frames == 60
        expected_backend = {"auto": "pyav"}.get(backend, backend)
        assert r.backend == expected_backend
        wanted = [5, 3, 59, 58, 0, 31, 31, 44, 12, 2]
        frames = r.read_at(np.array(wanted) / FPS)
        assert [read_index(f) for f in frames] == wanted
        # a dense forward run after a backward jump
        frames = r.read_at(np.arange(20, 30) / FPS)
        assert [read_index(f) for f in frames] == list(range(20, 30))


@pytest.mark.parametrize("codec", ["h264", "av1"])
def test_episode_in_middle_of_shared_file(tmp_path: Path, codec: str) -> None:
    lengths = [14, 25, 9]
    path, spans = _shared_file(tmp_path, codec, lengths)
    start_idx = lengths[0]
    from_ts, to_ts = spans[1]
    assert to_ts - from_ts == pytest.approx(lengths[1] / FPS)
    for backend in (["pyav", "decord"] if codec == "h264" else ["pyav"]):
        with VideoReader(str(path), backend=backend) as r:
            half = 0.5 / FPS
            full = r.read_range(from_ts - half, to_ts - half)
            assert [read_index(f) for f in full] == list(range(start_idx, start_idx + lengths[1]))
            local = [24, 0, 7]
            got = r.read_at(from_ts + np.array(local) / FPS)
            assert [read_index(f) for f in got] == [start_idx + i for i in local]


def test_timestamp_beyond_end_is_an_error(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", index_frames(range(12)), FPS)
    for backend in ("pyav", "decord"):
        with VideoReader(str(path), backend=backend) as r, pytest.raises(VideoError, match="no frame within"):
            r.read_at([1.5])


def test_verify_span_reports_where_the_video_ends(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", index_frames(range(12)), FPS)
    with VideoReader(str(path), backend="pyav") as r:
        r.verify_span(0.0, 1.2)
        with pytest.raises(VideoError, match=r"ends at 1\.200 s"):
            r.verify_span(0.0, 2.0)
        # the reader still decodes correctly after the demux-only probe moved the position
        assert [read_index(f) for f in r.read_range(0.0, 0.35)] == [0, 1, 2, 3]


def test_missing_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"missing\.mp4.*file not found"):
        VideoReader(str(tmp_path / "missing.mp4"))
    path = write_video(tmp_path / "v.mp4", index_frames(range(30)), FPS)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut\.mp4"):
        r = VideoReader(str(cut), backend="pyav")
        r.verify_span(0.0, 3.0)
        r.read_range(0.0, 3.0)


def test_unknown_backend_rejected(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", index_frames(range(3)), FPS)
    with pytest.raises(ValueError, match="unknown video backend"):
        VideoReader(str(path), backend="opencv")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_one_reader_serves_interleaved_ranges_and_points(tmp_path: Path, backend: str) -> None:
    path, spans = _shared_file(tmp_path, "h264", [10, 15, 12])
    half = 0.5 / FPS
    with VideoReader(str(path), backend=backend) as r:
        last = r.read_range(spans[2][0] - half, spans[2][1] - half)  # to the end of the file
        assert [read_index(f) for f in last] == list(range(25, 37))
        assert [read_index(f) for f in r.read_at([0.0, 3.6, 1.0])] == [0, 36, 10]
        mid = r.read_range(spans[1][0] - half, spans[1][1] - half)
        assert [read_index(f) for f in mid] == list(range(10, 25))
        assert [read_index(f) for f in r.read_at([2.5, 2.4])] == [25, 24]
        first = r.read_range(spans[0][0] - half, spans[0][1] - half)
        assert [read_index(f) for f in first] == list(range(10))


@pytest.mark.parametrize("codec", ["h264", "av1"])
@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_read_at_luma_is_the_brightness_of_the_frame(tmp_path: Path, codec: str, backend: str) -> None:
    """`read_at(..., luma=True)` gives each frame's brightness on the studio-range scale an 8-bit
    YUV video stores (BT.601: 16 + 219 * level / 255 for a gray level), whichever backend reads."""
    path = tmp_path / f"gray_{codec}.mp4"
    levels = [0, 40, 90, 128, 200, 255, 60, 10]
    with av.open(str(path), "w") as c:
        s = c.add_stream(_encoder(codec), rate=FPS)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for v in levels:
            rgb = np.full((48, 64, 3), v, dtype=np.uint8)
            rgb[:, :32, 0] = 255 - v  # colour on the left half: the right half stays gray
            for p in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    wanted = [3, 0, 5, 7, 1]
    with VideoReader(str(path), backend=backend) as r:
        y = r.read_at(np.array(wanted) / FPS, luma=True)
    assert y.shape == (len(wanted), 48, 64) and y.dtype == np.uint8
    right = y[:, 8:40, 40:60].reshape(len(wanted), -1)
    expected = [16 + 219 * levels[i] / 255 for i in wanted]
    assert np.allclose(right.mean(axis=1), expected, atol=3.0), (right.mean(axis=1), expected)
    assert (right.std(axis=1) < 1.5).all()


class _SpyFrame:
    """A decoded PyAV frame that records the keyword arguments of its conversions."""

    def __init__(self, frame: av.VideoFrame, calls: list[dict[str, object]]):
        self._frame, self._calls = frame, calls

    def __getattr__(self, name: str) -> object:
        return getattr(self._frame, name)

    def to_ndarray(self, **kw: object) -> np.ndarray:
        self._calls.append(kw)
        return self._frame.to_ndarray(**kw)


def test_colour_conversions_ask_swscale_for_one_thread(tmp_path: Path) -> None:
    """PyAV >= 17 converts a frame on a thread per core unless told otherwise, and starts and joins
    those threads on every call (PyAV-Org/PyAV#2200): on small frames that costs several times the
    conversion itself. The reader asks for one thread, and gets PyAV's default pixels."""
    from carve.ingest import video

    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "v.mp4", rng.integers(0, 256, size=(6, 48, 64, 3), dtype=np.uint8), fps=FPS)
    calls: list[dict[str, object]] = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            np.testing.assert_array_equal(video._to_rgb(_SpyFrame(frame, calls)), frame.to_ndarray(format="rgb24"))
            rgb_frame = frame.reformat(format="rgb24")  # not YUV: brightness through swscale's gray
            np.testing.assert_array_equal(video._to_luma(_SpyFrame(rgb_frame, calls)),
                                          rgb_frame.to_ndarray(format="gray"))
    assert len(calls) == 12
    one_thread = int(av.__version__.split(".")[0]) >= 17  # older PyAV has no `threads` and one thread
    assert all(kw.get("threads") == (1 if one_thread else None) for kw in calls), calls
