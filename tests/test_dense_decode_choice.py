"""When `carve run` decodes an episode's every frame once for its keyframes and its quality check
(`pipeline.steps.dense_pays`): only when the check's samples could not seek, i.e. the video's
keyframes lie further apart than the sampling interval. Real videos, encoded here with a known
group of pictures."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from carve.core.config import CheckConfig
from carve.export.video import pick_encoder
from carve.pipeline.steps import dense_pays

FPS = 20


def _video(path: Path, gop: int, frames: int = 60) -> str:
    name = pick_encoder("h264")  # the build's H.264 encoder; x264 would add keyframes at scene cuts
    with av.open(str(path), "w") as c:
        s = c.add_stream(name, rate=FPS, options={"sc_threshold": "0", "keyint_min": str(gop)} if name == "libx264" else {})
        s.width, s.height, s.pix_fmt, s.gop_size = 32, 32, "yuv420p", gop
        rng = np.random.default_rng(gop)
        for _ in range(frames):
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


class _Episode:
    def __init__(self, spans: dict[str, tuple[str, float]]) -> None:
        self.spans = spans

    def video_spans(self) -> dict[str, tuple[str, float]]:
        return self.spans


@pytest.mark.parametrize(("gops", "expected"), [
    ([2], False),  # a keyframe every 0.1 s: the 0.25 s samples seek to keyframes
    ([40], True),  # every 2 s: sampling would decode on through the frames anyway
    ([40, 2], False),  # one camera seekable: decode apart
])
def test_dense_decode_only_when_samples_cannot_seek(tmp_path: Path, gops: list[int], expected: bool) -> None:
    ep = _Episode({f"cam{i}": (_video(tmp_path / f"g{g}_{i}.mp4", g), 0.0) for i, g in enumerate(gops)})
    assert dense_pays(ep, CheckConfig(video_sample_s=0.25)) is expected


def test_no_video_or_an_unreadable_one_is_not_dense(tmp_path: Path) -> None:
    assert dense_pays(_Episode({}), CheckConfig()) is False
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert dense_pays(_Episode({"cam": (str(bad), 0.0)}), CheckConfig()) is False
