"""What the tests need from outside Python, probed once, and the one skip-or-fail rule.

Some tests need a Debian package that `make install` cannot bring (pip installs no system
libraries or binaries):

| need       | Debian package(s)            | probe (the real thing, not a marker file)                    | variable                |
|------------|------------------------------|--------------------------------------------------------------|-------------------------|
| `ffmpeg`   | ffmpeg                       | torchcodec decodes a fixture frame (it loads FFmpeg's libs)   | CARVE_REQUIRE_FFMPEG    |
| `chromium` | chromium, fonts-dejavu-core  | chromium runs `--version`; a font is installed (text renders) | CARVE_REQUIRE_BROWSER   |
| `postgres` | postgresql                   | `initdb` and `pg_ctl` of a PostgreSQL server are found        | CARVE_REQUIRE_POSTGRES  |
| `lerobot`  | (pip: lerobot 0.4.4)         | `lerobot.datasets.lerobot_dataset` imports                    | CARVE_REQUIRE_LEROBOT   |

`require(need)` (or `require_ffmpeg()`, `require_chromium()`, `require_postgres()`,
`require_lerobot()`, or the marker `@pytest.mark.requires("chromium")`, which conftest.py
turns into a `require` call before the test) skips the test with a reason that names the
package and the command that installs it, unless the need's `CARVE_REQUIRE_*` variable is
"1" (CI sets them all, see .ci/run): then the test fails with the same reason.

`lerobot_video_backend()`: the video backend the lerobot conformance checks load datasets
with: "torchcodec" (lerobot's default) where it loads, else lerobot's own "pyav" backend, so
those checks still decode and compare frames on a machine without ffmpeg. lerobot 0.4.4's
"pyav" backend reads through `torchvision.io.VideoReader`, which recent torchvision releases
no longer have (0.29 here); where it is gone, `PyAVVideoReader` stands in for it with torchvision's PyAV semantics
(keyframe seek, then decode forward, RGB CHW uint8 tensors and pts in seconds), so lerobot's
own frame selection (its seek, nearest timestamp and tolerance check) runs as written.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
LEROBOT_REQUIREMENTS = "tests/fixtures/lerobot/requirements-lerobot044.txt"
PROBE_VIDEO = (Path(__file__).parent / "fixtures" / "lerobot" / "v30" / "videos" / "observation.images.top"
               / "chunk-000" / "file-000.mp4")  # AV1, written by lerobot 0.4.4


@dataclass(frozen=True)
class Need:
    """One outside requirement and the variable that makes its absence a failure."""

    name: str
    env: str
    probe: Callable[[], str | None]  # None when present, else the reason (package, what failed, install command)


# -- probes (each runs once per process; each reason names the package and how to install it) -----
def _short(e: BaseException) -> str:
    """The exception's type and the first line of its message (torchcodec's runs to a page)."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}".rstrip(": ")


def _probe_ffmpeg() -> str | None:
    """torchcodec imports without FFmpeg (it loads FFmpeg's libraries lazily): decode one frame
    of a fixture video with it, as lerobot would."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ModuleNotFoundError as e:
        return f"needs the Python package torchcodec ({_short(e)}): make install"
    try:
        frame = VideoDecoder(str(PROBE_VIDEO))[0]
        assert frame.ndim == 3, frame.shape
    except Exception as e:  # RuntimeError from its loader when no FFmpeg libavutil etc. is found
        return ("needs Debian package ffmpeg (torchcodec, lerobot's default video decoder, cannot load its "
                f"libavutil/libavcodec: {_short(e)}): apt-get install ffmpeg")
    return None


def chromium_path() -> str | None:
    """Debian's /usr/bin/chromium, else a `chromium` on PATH; None without both."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


def _probe_chromium() -> str | None:
    path = chromium_path()
    if path is None:
        return f"needs Debian package chromium (no {CHROMIUM}, no chromium on PATH): apt-get install chromium"
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        bad = None if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[:200]}"
    except (OSError, subprocess.SubprocessError) as e:
        bad = _short(e)
    if bad is not None:
        return f"needs Debian package chromium ({path} --version fails, {bad}): apt-get install chromium"
    if not _fonts():
        return (f"needs Debian package fonts-dejavu-core (no font under {', '.join(FONT_DIRS)}: headless "
                "Chromium renders the pages' text blank): apt-get install fonts-dejavu-core")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return f"needs the Python package playwright ({_short(e)}): make install"
    return None


def _fonts() -> bool:
    """Whether any font file is installed (chromium-common brings fonts-liberation; CI adds DejaVu)."""
    return any(next(glob.iglob(f"{d}/**/*.{ext}", recursive=True), None)
               for d in FONT_DIRS for ext in ("ttf", "otf", "ttc", "pfb"))


def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server binaries (`initdb`, `pg_ctl`): Debian's newest
    /usr/lib/postgresql/<v>/bin, else the folder of an `initdb` on PATH; None without both."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    candidates = [Path(p).parent for p in reversed(found)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for d in candidates:
        if os.access(d / "initdb", os.X_OK) and os.access(d / "pg_ctl", os.X_OK):
            return d
    return None


def _probe_postgres() -> str | None:
    if postgres_bindir() is None:
        return ("needs Debian package postgresql (no initdb and pg_ctl in /usr/lib/postgresql/*/bin or on "
                "PATH): apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        return f"needs the Python package psycopg ({_short(e)}): make install"
    return None


def _probe_lerobot() -> str | None:
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401
    except ImportError as e:
        return f"needs the Python package lerobot 0.4.4 ({_short(e)}): pip install --no-deps -r {LEROBOT_REQUIREMENTS}"
    return None


NEEDS: dict[str, Need] = {
    "ffmpeg": Need("ffmpeg", "CARVE_REQUIRE_FFMPEG", _probe_ffmpeg),
    "chromium": Need("chromium", "CARVE_REQUIRE_BROWSER", _probe_chromium),
    "postgres": Need("postgres", "CARVE_REQUIRE_POSTGRES", _probe_postgres),
    "lerobot": Need("lerobot", "CARVE_REQUIRE_LEROBOT", _probe_lerobot),
}


@functools.cache
def missing(name: str) -> str | None:
    """None when `name` ("ffmpeg", "chromium", "postgres", "lerobot") is here, else the reason."""
    if name not in NEEDS:
        raise KeyError(f"unknown need {name!r}; one of {sorted(NEEDS)}")
    return NEEDS[name].probe()


def required(name: str) -> bool:
    """Whether the need's CARVE_REQUIRE_* variable makes its absence a failure."""
    return os.environ.get(NEEDS[name].env) == "1"


def require(name: str) -> None:
    """Skip the calling test when `name` is missing (fail it when its CARVE_REQUIRE_* is 1)."""
    reason = missing(name)
    if reason is None:
        return
    if required(name):
        pytest.fail(f"{NEEDS[name].env}=1 but this {reason}", pytrace=False)
    pytest.skip(f"{reason} (with {NEEDS[name].env}=1 this is a failure)")


def require_ffmpeg() -> None:
    require("ffmpeg")


def require_chromium() -> None:
    require("chromium")


def require_postgres() -> None:
    require("postgres")


def require_lerobot() -> Any:
    """`LeRobotDataset` (skips or fails like `require` when lerobot is missing)."""
    require("lerobot")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset


# -- lerobot's video backend ----------------------------------------------------------------------
def lerobot_video_backend() -> str:
    """"torchcodec" where it loads; else "pyav" (lerobot's PyAV backend, made usable by
    `PyAVVideoReader` where torchvision lost its VideoReader). Fails instead under
    CARVE_REQUIRE_FFMPEG=1 when torchcodec cannot load."""
    if missing("ffmpeg") is None:
        return "torchcodec"
    if required("ffmpeg"):
        require("ffmpeg")  # fails
    provide_torchvision_video_reader()
    return "pyav"


def provide_torchvision_video_reader() -> None:
    """Give `torchvision.io` a PyAV `VideoReader` when this torchvision has none (see module doc)."""
    import torchvision.io

    if not hasattr(torchvision.io, "VideoReader"):
        torchvision.io.VideoReader = PyAVVideoReader  # type: ignore[attr-defined]


class PyAVVideoReader:
    """torchvision's `VideoReader` with its "pyav" backend, as far as lerobot's
    `decode_video_frames_torchvision` uses it: `seek`, iteration, `container`."""

    def __init__(self, src: str, stream: str = "video", num_threads: int = 0):
        import av

        kind, _, index = stream.partition(":")
        if kind != "video":
            raise ValueError(f"PyAVVideoReader reads video streams only, not {stream!r}")
        self.container = av.open(str(src), metadata_errors="ignore")
        self._index = int(index or 0)
        self._frames: Iterator[Any] = self.container.decode(video=self._index)

    def __iter__(self) -> PyAVVideoReader:
        return self

    def __next__(self) -> dict[str, Any]:
        import torch

        frame = next(self._frames)  # StopIteration at the end of the stream
        pts = float(frame.pts * frame.time_base)
        return {"data": torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1), "pts": pts}

    def seek(self, time_s: float, keyframes_only: bool = False) -> PyAVVideoReader:
        """To the keyframe at or before `time_s` (PyAV cannot seek exactly; neither could torchvision's)."""
        stream = self.container.streams.video[self._index]
        offset = round(max(0.0, time_s) / stream.time_base)
        self.container.seek(offset, backward=True, any_frame=False, stream=stream)
        self._frames = self.container.decode(video=self._index)
        return self
