"""`carve export --format lerobot` stream-copies every codec lerobot writes: AV1, H.264, HEVC.

Sources, each ingested with `carve run` (one shards version):

* `av1`: `tests/fixtures/lerobot/v30` as lerobot 0.4.4 wrote it (AV1, decoded by libdav1d,
  whose decoder name is not the codec's: the stream copy must not name the stream after it);
* `h264` / `hevc`: the same dataset with every video re-encoded here with PyAV (libx264 /
  libx265; B-frames, closed GOPs, an IDR at every episode start and every event start of the
  AV1 run and every 15 frames otherwise), so whole episodes and single events both start on
  keyframes. (x265's default open GOPs put frames that precede a keyframe after it in decode
  order; lerobot's own random access trips on those, so the sources here close them.)

For each: `--unit episode` (and `--unit event` for H.264 / HEVC, whose events start on
keyframes; lerobot's AV1 has keyframes on even frames only) is stream-copied, every exported
frame decodes (PyAV, native pixel format) bit-identically to the source frame it came from, and
`meta/info.json` names the codec as lerobot's `get_video_info` reads it from the file;
`--reencode` (to another codec) works with every exported frame close to its source frame; the
copy loads in the real lerobot 0.4.4 with frames identical to the source's (torchcodec where it
loads, else lerobot's PyAV backend; the torchcodec-only check needs Debian's ffmpeg).

Bad input: a source video whose stream has a codec this PyAV cannot decode (its sample entry's
codec tag overwritten) gives an error naming the file and the reason, and leaves no output.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from corrupt import break_codec_tag
from test_export_lerobot import _cfg, _lerobot

from carve.cli.main import main
from carve.export.lerobot import ExportError, export_lerobot
from carve.export.video import psnr
from carve.storage.events import read_events
from carve.storage.root import open_root

pytestmark = pytest.mark.usefixtures("ray_local")

FIXTURE = Path(__file__).parent / "fixtures" / "lerobot" / "v30"
ENCODERS = {"h264": "libx264", "hevc": "libx265"}
ENCODER_OPTIONS = {
    "libx264": {"crf": "18", "preset": "veryfast", "forced-idr": "1"},
    "libx265": {"crf": "18", "preset": "veryfast", "forced-idr": "1", "x265-params": "log-level=error:open-gop=0"},
}
GOP = 15
REENCODE_TO = {"av1": "h264", "h264": "av1", "hevc": "av1"}  # --reencode to a codec other than the source's
MIN_REENCODE_PSNR_DB = 30.0


@dataclass
class Built:
    codec: str
    source: Path
    root: Path
    fps: int
    cameras: list[str]


# ------------------------------------------------------------------------------------------------
# sources


def _info(dataset: Path) -> dict[str, Any]:
    return json.loads((dataset / "meta" / "info.json").read_text())


def _episode_rows(dataset: Path) -> list[dict[str, Any]]:
    rows = pq.read_table(dataset / "meta" / "episodes").to_pylist()
    return sorted(rows, key=lambda r: r["episode_index"])


def _video_path(dataset: Path, row: dict[str, Any], cam: str) -> Path:
    info = _info(dataset)
    return dataset / info["video_path"].format(video_key=cam, chunk_index=row[f"videos/{cam}/chunk_index"],
                                               file_index=row[f"videos/{cam}/file_index"])


def _events(root: Path) -> list[tuple[int, int, int]]:
    t = read_events(open_root(root), columns=["episode_index", "start_frame", "end_frame"])
    return sorted((r["episode_index"], r["start_frame"], r["end_frame"]) for r in t.to_pylist())


def _reencode(path: Path, encoder: str, fps: int, keyframes: set[int]) -> None:
    """Re-encode `path` in place with `encoder`: same frames, sizes and timestamps, an IDR at
    each of `keyframes` (frame indices in the file) and every GOP frames."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(path)) as src, av.open(str(tmp), "w") as dst:
        sin = src.streams.video[0]
        out = dst.add_stream(encoder, rate=fps, options={"g": str(GOP), **ENCODER_OPTIONS[encoder]})
        out.width, out.height, out.pix_fmt = sin.codec_context.width, sin.codec_context.height, "yuv420p"
        out.codec_context.time_base = Fraction(1, fps)
        frames = sorted(src.decode(sin), key=lambda f: f.pts)
        for i, frame in enumerate(frames):
            assert round(float(frame.pts * frame.time_base) * fps) == i, f"{path}: frame {i} is not at {i}/{fps} s"
            frame.pts, frame.time_base = i, Fraction(1, fps)
            frame.pict_type = av.video.frame.PictureType.I if i in keyframes else av.video.frame.PictureType.NONE
            dst.mux(out.encode(frame))
        dst.mux(out.encode())
    tmp.replace(path)


def _run(source: Path, root: Path) -> None:
    from carve.pipeline.run import run_pipeline

    s = run_pipeline(_cfg(root, source))
    assert s.episodes_failed == 0 and s.shards_version == 1


_BUILT: dict[str, Built] = {}


def _build(codec: str, base: Path) -> Built:
    """The source dataset in `codec` and its Carve root (see the module doc); built once."""
    if codec in _BUILT:
        return _BUILT[codec]
    info = _info(FIXTURE)
    fps = int(info["fps"])
    cams = sorted(k for k, f in info["features"].items() if f["dtype"] == "video")
    src, root = base / codec / "source", base / codec / "root"
    if codec != "av1":
        import av

        encoder = ENCODERS[codec]
        if encoder not in av.codecs_available:
            pytest.skip(f"this PyAV {av.__version__} wheel has no {encoder} encoder (not in av.codecs_available), "
                        f"so no {codec} source dataset can be made")
    shutil.copytree(FIXTURE, src)
    if codec != "av1":
        ref = _build("av1", base)
        events = _events(ref.root)
        for cam in cams:
            starts: dict[Path, set[int]] = {}
            for row in _episode_rows(src):
                first = round(row[f"videos/{cam}/from_timestamp"] * fps)
                keys = starts.setdefault(_video_path(src, row, cam), set())
                keys.add(first)
                keys.update(first + a for e, a, _ in events if e == row["episode_index"])
            for path, keys in starts.items():
                _reencode(path, encoder, fps, keys)
        for cam in cams:  # the fixture's info.json, as lerobot would have written it for this codec
            info["features"][cam]["info"]["video.codec"] = codec
        (src / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    _run(src, root)
    _BUILT[codec] = Built(codec, src, root, fps, cams)
    return _BUILT[codec]


@pytest.fixture(scope="module", params=["av1", "h264", "hevc"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return _build(request.param, tmp_path_factory.getbasetemp() / "export-codecs")


# ------------------------------------------------------------------------------------------------
# frames


def _decode(path: Path, fps: int, fmt: str | None) -> list[np.ndarray]:
    """Every frame of `path` in presentation order: the native pixel planes (fmt None) or RGB."""
    import av

    with av.open(str(path)) as c:
        frames = sorted(c.decode(c.streams.video[0]), key=lambda f: f.pts)
        times = [round(float(f.pts * f.time_base) * fps) for f in frames]
        assert times == list(range(len(frames))), f"{path}: frames not one per 1/{fps} s from 0"
        return [f.to_ndarray() if fmt is None else f.to_ndarray(format=fmt) for f in frames]


def _pairs(out: Path, b: Built, cam: str, fmt: str | None) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(exported frame, the source frame it was made from, label) for every exported frame of `cam`:
    the sidecar gives each exported episode's source episode and frame offset, the episodes
    meta of both datasets where those frames sit in their video files."""
    side = pq.read_table(out / "meta" / "carve_events.parquet").to_pylist()
    origin: dict[int, set[tuple[int, int]]] = {}
    for r in side:
        origin.setdefault(r["episode_index"], set()).add(
            (r["source_episode_index"], r["source_start_frame"] - r["frame_from"]))
    src_rows = {r["episode_index"]: r for r in _episode_rows(b.source)}
    cache: dict[Path, list[np.ndarray]] = {}

    def frames(p: Path) -> list[np.ndarray]:
        return cache[p] if p in cache else cache.setdefault(p, _decode(p, b.fps, fmt))

    pairs = []
    for row in _episode_rows(out):
        k = row["episode_index"]
        assert len(origin[k]) == 1, f"exported episode {k} comes from {origin[k]}"
        (src_ep, offset), = origin[k]
        s_row = src_rows[src_ep]
        got = frames(_video_path(out, row, cam))
        want = frames(_video_path(b.source, s_row, cam))
        g0 = round(row[f"videos/{cam}/from_timestamp"] * b.fps)
        s0 = round(s_row[f"videos/{cam}/from_timestamp"] * b.fps) + offset
        assert round(row[f"videos/{cam}/to_timestamp"] * b.fps) - g0 == row["length"]
        for f in range(row["length"]):
            pairs.append((got[g0 + f], want[s0 + f], f"{cam} exported episode {k} frame {f}"))
    return pairs


def _item_frame(x: Any) -> np.ndarray:
    """lerobot's (3, H, W) float frame in [0, 1] as (H, W, 3) uint8."""
    return np.round(x.permute(1, 2, 0).numpy() * 255.0).clip(0, 255).astype(np.uint8)


def _check_codec_field(out: Path, cam: str, want: str) -> None:
    """info.json's codec is `want` and what lerobot's own `get_video_info` reads from the exported file."""
    info = _info(out)
    assert info["features"][cam]["info"]["video.codec"] == want
    try:
        from lerobot.datasets.video_utils import get_video_info
    except ImportError:
        return  # lerobot is optional here; test_copied_export_loads_in_lerobot reports its absence
    row = _episode_rows(out)[0]
    assert get_video_info(_video_path(out, row, cam))["video.codec"] == want


def _export_copy(b: Built, out: Path, unit: str) -> None:
    s = export_lerobot(b.root, out, version=1, unit=unit)
    assert s.cameras == {cam: f"copy ({b.codec})" for cam in b.cameras}
    total = 0
    for cam in b.cameras:
        _check_codec_field(out, cam, b.codec)
        pairs = _pairs(out, b, cam, None)
        for got, want, label in pairs:
            assert got.shape == want.shape and np.array_equal(got, want), label
        total += len(pairs)
    assert total == s.frames * len(b.cameras)


# ------------------------------------------------------------------------------------------------
# tests


def test_episode_export_stream_copies_and_every_frame_is_bit_identical(built: Built, tmp_path: Path):
    _export_copy(built, tmp_path / "episode", "episode")


@pytest.mark.parametrize("built", ["h264", "hevc"], indirect=True)
def test_event_export_stream_copies_and_every_frame_is_bit_identical(built: Built, tmp_path: Path):
    # the premise: the same events as the AV1 run (they come from state and action), whose starts
    # the source was given IDRs at
    assert _events(built.root) == _events(_BUILT["av1"].root)
    _export_copy(built, tmp_path / "event", "event")


def test_reencoded_export_to_another_codec(built: Built, tmp_path: Path):
    to = REENCODE_TO[built.codec]
    out = tmp_path / "reencode"
    s = export_lerobot(built.root, out, version=1, unit="event", video="reencode", codec=to)
    assert all(not d.startswith("copy") for d in s.cameras.values()), s.cameras
    worst, n = float("inf"), 0
    for cam in built.cameras:
        _check_codec_field(out, cam, to)
        for got, want, label in _pairs(out, built, cam, "rgb24"):
            p = psnr(got, want)
            assert p >= MIN_REENCODE_PSNR_DB, f"{label}: {p:.1f} dB"
            worst, n = min(worst, p), n + 1
    assert n == s.frames * len(built.cameras) and np.isfinite(worst)


def test_copied_export_loads_in_lerobot(built: Built, tmp_path: Path):
    LeRobotDataset = _lerobot()
    out = tmp_path / "lerobot"
    s = export_lerobot(built.root, out, version=1, unit="episode")
    assert s.cameras == {cam: f"copy ({built.codec})" for cam in built.cameras}
    ds = LeRobotDataset(f"carve/export-{built.codec}", root=out)
    assert len(ds) == s.frames
    checked = 0
    for cam in built.cameras:
        pairs = _pairs(out, built, cam, "rgb24")
        assert len(pairs) == len(ds)
        for i in sorted({*range(0, len(ds), 4), len(ds) - 1}):
            got, want, label = _item_frame(ds[i][cam]), pairs[i][1], pairs[i][2]
            assert np.array_equal(got, want), f"{label} ({ds.video_backend})"
            checked += 1
    assert checked > 0


@pytest.mark.requires("lerobot", "ffmpeg")
def test_lerobot_default_decoder_torchcodec_reads_the_copied_export(built: Built, tmp_path: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "torchcodec"
    export_lerobot(built.root, out, version=1, unit="episode")
    ds = LeRobotDataset(f"carve/export-{built.codec}-tc", root=out)
    assert ds.video_backend == "torchcodec"
    cam = built.cameras[0]
    pairs = _pairs(out, built, cam, "rgb24")
    for i in (0, len(ds) // 2, len(ds) - 1):
        assert np.array_equal(_item_frame(ds[i][cam]), pairs[i][1]), pairs[i][2]


def test_source_video_in_a_codec_carve_cannot_decode_is_a_clear_error_and_leaves_no_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import av

    src, root = tmp_path / "source", tmp_path / "root"
    shutil.copytree(FIXTURE, src)
    _run(src, root)
    row = _episode_rows(src)[0]
    cam = sorted(k for k, f in _info(src)["features"].items() if f["dtype"] == "video")[0]
    bad = _video_path(src, row, cam)
    assert break_codec_tag(bad) == b"av01"
    with av.open(str(bad)) as c:  # the premise: PyAV sees the stream but has no decoder for it
        assert c.streams.video[0].codec_context is None

    out = tmp_path / "out"
    for unit, video in (("episode", "auto"), ("event", "reencode")):
        with pytest.raises(ExportError) as e:
            export_lerobot(root, out, version=1, unit=unit, video=video)
        msg = str(e.value)
        assert str(bad) in msg and "cannot decode" in msg and cam in msg and "episode 0" in msg, msg
        assert not out.exists()
    assert main(["export", "--root", str(root), "--out", str(out), "--unit", "event"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot decode" in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "source"]  # no temp folder left beside it
