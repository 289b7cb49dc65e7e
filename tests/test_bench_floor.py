"""The floor baseline of `bench.bench_run_small`: it decodes exactly the planned frames of each
episode of a shared file and JPEG-encodes exactly the planned keyframes, at the run's size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.bench_run_small import floor_decode
from carve.sim.lerobot_writer import write_video


def test_floor_decodes_the_planned_frames_and_encodes_the_keyframes(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # frame i is a flat grey of level 6 * i, so a decoded frame names its own index
    frames = np.repeat(np.arange(40, dtype=np.uint8)[:, None, None, None] * 6, 128 * 160 * 3).reshape(40, 128, 160, 3)
    video = write_video(tmp_path / "two.mp4", frames, fps=10)
    saved: list[tuple[tuple[int, int], int]] = []
    real_save = Image.Image.save

    def save(self: Image.Image, fp: io.BytesIO, format: str | None = None, **kw: object) -> None:
        saved.append((self.size, round(float(np.asarray(self).mean()) / 6)))
        real_save(self, fp, format=format, **kw)

    monkeypatch.setattr(Image.Image, "save", save)
    # two episodes in one file (as LeRobot v3.0 writes them): frames 0-19 and 20-39
    plan = [(str(video), 0.0, 10.0, [0, 3, 7], [3]), (str(video), 2.0, 10.0, [1, 4, 9], [1, 9])]
    assert floor_decode(plan) == 6  # 3 + 3 planned frames converted
    # the planned keyframes (frames 3, 20 + 1 and 20 + 9 of the file), each resized so its short side
    # is the run's 96 px (160 x 128 -> 120 x 96)
    assert saved == [((120, 96), 3), ((120, 96), 21), ((120, 96), 29)]
