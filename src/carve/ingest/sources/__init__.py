"""Episode readers: LeRobot v2.1/v3.0, plain MP4+array folders, robomimic/ALOHA HDF5, RLDS (TFDS builds).

Owns the entry points the pipeline calls:

* `detect_format(uri)` -> "lerobot" | "folder" | "hdf5" | "rlds" (SourceError when nothing fits);
* `open_source(uri, format="auto", dataset=..., camera=..., video_backend=...)` -> a `Source`
  with `.dataset`, `.uri`, `.format` and `.list_episodes() -> list[EpisodeRef]`; an
  `hf://datasets/<org>/<name>[@<revision>]` URI opens a LeRobot dataset on the Hugging Face Hub
  pinned to a commit (`sources/hub.py`; its `.uri` names the commit);
* `load_episode(ref, camera=..., video_backend=...)` -> `Episode`, validated (NaN/inf,
  empty, mismatched lengths, missing/short/truncated video raise `EpisodeError`).

Refs are plain data (JSON locators), so they travel through Ray; everything heavy happens in
`load_episode` on the worker.
"""

from __future__ import annotations

from typing import Protocol

from carve.core.errors import SourceError
from carve.ingest.sources.base import Episode, EpisodeRef
from carve.ingest.sources.common import camera_list
from carve.storage.fs import resolve

FORMATS = ("lerobot", "folder", "hdf5", "rlds")


class Source(Protocol):
    """An opened dataset: its name, where it lives, its format and its episodes."""

    dataset: str
    uri: str
    format: str

    def list_episodes(self) -> list[EpisodeRef]: ...


def detect_format(uri: str) -> str:
    """Which reader fits `uri`: a LeRobot root (meta/info.json), an HDF5 file or a folder of
    HDF5 files, or a folder of mp4 + npz/parquet episodes."""
    import pyarrow.fs as pafs

    if uri.startswith("hf://"):  # the Hub serves LeRobot datasets only (sources/hub.py checks it)
        return "lerobot"
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise SourceError(f"dataset {uri}: path does not exist")
    if info.type == pafs.FileType.File:
        if path.endswith((".hdf5", ".h5", ".hdf")):
            return "hdf5"
        raise SourceError(f"dataset {uri}: a single file that is not HDF5 (.hdf5/.h5); cannot detect a format")
    if fs.get_file_info(path + "/meta/info.json").type == pafs.FileType.File or (
        fs.get_file_info(path + "/meta").type == pafs.FileType.Directory
    ):
        return "lerobot"
    from carve.ingest.sources.rlds import is_rlds

    if is_rlds(fs, path):
        return "rlds"
    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(path, recursive=False))]
    if any(n.endswith((".hdf5", ".h5")) for n in names):
        return "hdf5"
    if any(n.endswith((".npz", ".parquet", ".mp4")) for n in names):
        return "folder"
    raise SourceError(
        f"dataset {uri}: unreadable layout (no meta/info.json, no .hdf5 files, no mp4+npz/parquet episodes)"
    )


def open_source(
    uri: str,
    format: str = "auto",
    *,
    dataset: str | None = None,
    camera: str | list[str] | None = None,
    video_backend: str = "auto",
) -> Source:
    """Open a dataset for listing. Dataset-level problems raise `SourceError`."""
    if not uri:
        raise SourceError("no source uri given (set source.uri)")
    if uri.startswith("hf://"):
        from carve.ingest.sources.hub import open_hub_source

        return open_hub_source(uri, format, dataset=dataset, camera=camera)
    fmt = detect_format(uri) if format == "auto" else format
    if fmt == "lerobot":
        from carve.ingest.sources.lerobot import LeRobotSource

        return LeRobotSource(uri, dataset=dataset, camera=camera)
    if fmt == "folder":
        from carve.ingest.sources.folder import FolderSource

        return FolderSource(uri, dataset=dataset, camera=camera)
    if fmt == "hdf5":
        from carve.ingest.sources.hdf5 import HDF5Source

        return HDF5Source(uri, dataset=dataset, camera=camera)
    if fmt == "rlds":
        from carve.ingest.sources.rlds import RLDSSource

        return RLDSSource(uri, dataset=dataset, camera=camera)
    raise SourceError(f"dataset {uri}: unknown format {fmt!r}; use auto, {', '.join(FORMATS)}")


def load_episode(ref: EpisodeRef, *, camera: str | list[str] | None = None, video_backend: str = "auto",
                 strict: bool = True) -> Episode:
    """Load and validate one episode (frames stay on disk until `Episode.frames` is called).
    Every camera stays readable; `Episode.selected` records the caller's `camera` choice.

    `strict=False` (for `carve check`, which reports such defects itself) skips the checks of
    the signals' values (NaN/inf, timestamps) and of the videos' length and frame rate; a file
    that cannot be read still raises."""
    ep = _load(ref, camera, video_backend, strict)
    ep.selected = camera_list(camera)
    return ep


def _load(ref: EpisodeRef, camera: str | list[str] | None, video_backend: str, strict: bool) -> Episode:
    if ref.format == "lerobot":
        from carve.ingest.sources.lerobot import load_lerobot_episode

        return load_lerobot_episode(ref, camera=camera, video_backend=video_backend, strict=strict)
    if ref.format == "folder":
        from carve.ingest.sources.folder import load_folder_episode

        return load_folder_episode(ref, camera=camera, video_backend=video_backend, strict=strict)
    if ref.format == "hdf5":
        from carve.ingest.sources.hdf5 import load_hdf5_episode

        return load_hdf5_episode(ref, camera=camera, strict=strict)
    if ref.format == "rlds":
        from carve.ingest.sources.rlds import load_rlds_episode

        return load_rlds_episode(ref, camera=camera, strict=strict)
    raise SourceError(f"{ref.label}: unknown format {ref.format!r}")


__all__ = ["FORMATS", "Episode", "EpisodeRef", "Source", "detect_format", "load_episode", "open_source"]
