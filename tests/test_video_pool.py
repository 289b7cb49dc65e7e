"""Readers kept open between episodes (`ingest.video.pooled_reader`): same frames, reopened when
the file changes, and a removed file fails as a fresh open does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from corrupt import break_codec_tag

from carve.ingest.video import VideoError, VideoReader, pooled_reader
from carve.sim.lerobot_writer import write_video


def _frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(n)])


def test_a_pooled_reader_is_reused_and_reads_what_a_fresh_reader_reads(tmp_path: Path):
    path = write_video(tmp_path / "v.mp4", _frames(48, 0), fps=12)
    first = pooled_reader(str(path))
    ts_late = np.array([30, 31, 40]) / 12.0
    ts_early = np.array([0, 5, 11]) / 12.0
    late = first.read_at(ts_late)
    first.close()  # a no-op for a pooled reader: the next episode of the file reuses it
    again = pooled_reader(str(path))
    assert again is first
    early = again.read_at(ts_early)  # backwards from where the last read ended
    with VideoReader(str(path)) as fresh:
        np.testing.assert_array_equal(early, fresh.read_at(ts_early))
        np.testing.assert_array_equal(late, fresh.read_at(ts_late))


def test_a_changed_file_is_reopened_and_a_removed_one_fails(tmp_path: Path):
    path = tmp_path / "v.mp4"
    write_video(path, _frames(24, 1), fps=12)
    old = pooled_reader(str(path))
    tmp = write_video(tmp_path / "w.mp4", _frames(36, 2), fps=12)
    os.replace(tmp, path)  # rewritten in place (another inode, another size)
    new = pooled_reader(str(path))
    assert new is not old and new.num_frames == 36
    path.unlink()
    with pytest.raises(VideoError, match="file not found"):
        pooled_reader(str(path))


def test_decoders_opened_with_one_thread_read_the_same_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`set_decoder_threads(1)` (a decode child beside others, pipeline/ahead.py): decord and PyAV
    decoders opened from then on get one thread, a pooled reader opened before is not handed out
    for it, and every frame read equals the default decoders' frames."""
    from carve.ingest import video

    path = str(write_video(tmp_path / "v.mp4", _frames(60, 3), fps=12))
    ts = np.array([0, 7, 8, 30, 59, 2]) / 12.0
    with VideoReader(path, backend="pyav") as r:
        auto_av = r.read_at(ts)
    auto = pooled_reader(path)  # PyAV
    want = auto.read_at(ts)
    np.testing.assert_array_equal(want, auto_av)
    opened: list[dict[str, object]] = []
    try:
        import decord

        real = decord.VideoReader

        def spy(*a: object, **k: object) -> object:
            opened.append(k)
            return real(*a, **k)

        monkeypatch.setattr(decord, "VideoReader", spy)
    except ImportError:
        decord = None
    monkeypatch.setattr(video, "_DECODER_THREADS", 0)
    video.set_decoder_threads(1)
    one = pooled_reader(path)
    assert one is not auto
    with VideoReader(path, backend="pyav") as r:
        assert r._av.stream.codec_context.thread_count == 1
        np.testing.assert_array_equal(r.read_at(ts), want)
    np.testing.assert_array_equal(one.read_at(ts), want)
    if decord is not None:
        one_decord = pooled_reader(path, backend="decord")
        np.testing.assert_array_equal(one_decord.read_at(ts), want)
        assert opened and all(k.get("num_threads") == 1 for k in opened)
    with pytest.raises(ValueError):
        video.set_decoder_threads(-1)


def test_a_codec_no_decoder_knows_is_named_with_one_decoder_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A decode child's one-thread setting must not hide the unknown-codec error (PyAV gives such a
    stream no codec context to set threads on)."""
    from carve.ingest import video

    path = write_video(tmp_path / "v.mp4", _frames(12, 4), fps=12)
    break_codec_tag(Path(path))
    monkeypatch.setattr(video, "_DECODER_THREADS", 1)
    with pytest.raises(VideoError, match="has no decoder"):
        VideoReader(str(path), backend="pyav")
