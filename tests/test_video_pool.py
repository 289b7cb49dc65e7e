"""Readers kept open between episodes (`ingest.video.pooled_reader`): same frames, reopened when
the file changes, and a removed file fails as a fresh open does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

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
