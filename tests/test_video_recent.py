"""`ingest.video.keep_recent` / `recent_frames`: what one `read_at` decoded serves the next read of the same
file, and nothing a caller does to the frames it was given changes what is served. Real H.264 videos, both
backends; the expected frames come from a reader that keeps nothing (a fresh decode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carve.ingest import video
from carve.sim.lerobot_writer import write_video

FPS = 10


def _video(path: Path, frames: int = 30) -> str:
    rng = np.random.default_rng(3)
    return str(write_video(path, rng.integers(0, 255, (frames, 32, 32, 3), dtype=np.uint8), FPS))


def _backends() -> list[str]:
    try:
        import decord  # noqa: F401
    except ImportError:
        return ["pyav"]
    return ["pyav", "decord"]


@pytest.fixture(autouse=True)
def _forget() -> None:
    video._RECENT.__dict__.pop("frames", None)


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("backwards", [False, True])  # in pts order, or not (the kept copy is sorted)
def test_served_frames_equal_a_fresh_decode_after_the_caller_writes_over_its_own(tmp_path: Path, backend: str,
                                                                               backwards: bool) -> None:
    path = _video(tmp_path / "v.mp4")
    ts = np.arange(30) / FPS
    asked = ts[::-1] if backwards else ts
    r = video.VideoReader(path, backend=backend)
    got = r.read_at(asked)
    want = (got[::-1] if backwards else got).copy()  # in pts order
    got[:] = 0  # the caller owns what it was given
    served = video.recent_frames(path, ts[[3, 17, 4]], 0.5 / FPS)
    assert served is not None, "the frames just decoded were not kept"
    assert np.array_equal(served, want[[3, 17, 4]])
    served[:] = 7  # nor may a served copy change what is kept
    assert np.array_equal(video.recent_frames(path, ts[[3]], 0.5 / FPS), want[[3]])
    # what was kept is what a reader that keeps nothing decodes
    video._RECENT.__dict__.pop("frames", None)
    fresh = video.VideoReader(path, backend=backend).read_at(ts[[3, 17, 4]])
    video._RECENT.__dict__.pop("frames", None)
    assert np.array_equal(fresh, want[[3, 17, 4]])


def test_a_target_not_decoded_is_not_served(tmp_path: Path) -> None:
    path = _video(tmp_path / "v.mp4")
    video.VideoReader(path, backend="pyav").read_at(np.array([0.0, 0.1, 0.2]))
    assert video.recent_frames(path, np.array([0.1]), 0.5 / FPS) is not None
    assert video.recent_frames(path, np.array([0.1, 2.0]), 0.5 / FPS) is None
