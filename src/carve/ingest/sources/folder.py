"""Plain-folder reader: one episode per `<name>`, as `<name>.mp4` + `<name>.npz` or `<name>.parquet`.

Arrays: `state` (T, Ds), `action` (T, Da), optional `timestamps` (T,) seconds (npz key
`timestamps`, parquet column `timestamp` or `timestamps`) and optional `task` (a string, or
a per-frame string column whose first value is used). An optional `<name>.json` sidecar may
give `task`, `fps`, `state_names`, `action_names`, `camera` and `robot`.

Episodes are numbered by the trailing integer of their names when every name has a distinct
one (`episode_000012` -> 12), else by sorted order; a name with an mp4 but no arrays
(or arrays but no mp4) is still listed, and fails in `load_folder_episode` with the reason.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from carve.core.errors import EpisodeError, SourceError
from carve.ingest.sources.base import Episode, EpisodeRef
from carve.ingest.sources.common import (
    VideoFrames,
    as_2d_float,
    camera_list,
    check_signals,
    default_names,
    file_stamp,
    fingerprint,
)
from carve.storage.fs import join, resolve, uri_with

ARRAY_EXTS = (".npz", ".parquet")
DEFAULT_CAMERA = "camera"


class FolderSource:
    """A directory of `<name>.mp4` + `<name>.npz|.parquet` (+ optional `<name>.json`) episodes."""

    format = "folder"

    def __init__(self, uri: str, *, dataset: str | None = None, camera: str | list[str] | None = None):
        self.uri = uri
        self.fs, self.root = resolve(uri)
        info = self.fs.get_file_info(self.root)
        if info.type != pafs.FileType.Directory:
            raise SourceError(f"dataset {uri}: not a directory")
        self.camera = camera
        self.dataset = dataset or self.root.rstrip("/").rsplit("/", 1)[-1]

    def list_episodes(self) -> list[EpisodeRef]:
        files = {
            i.base_name: i
            for i in self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
            if i.type == pafs.FileType.File and not i.base_name.startswith(".")
        }
        names = sorted(
            {n.rsplit(".", 1)[0] for n in files if n.endswith((".mp4", *ARRAY_EXTS))}
        )
        if not names:
            raise SourceError(f"dataset {self.uri}: unreadable layout: no <name>.mp4 + <name>.npz/.parquet files")
        refs = []
        for idx, name in zip(_episode_numbers(names), names, strict=True):
            arrays = next((name + e for e in ARRAY_EXTS if name + e in files), None)
            loc = {
                "name": name,
                "arrays": arrays,
                "video": name + ".mp4" if name + ".mp4" in files else None,
                "meta": name + ".json" if name + ".json" in files else None,
            }
            stamps = [file_stamp(self.fs, join(self.root, f)) for f in loc.values() if f and f != name]
            refs.append(
                EpisodeRef(
                    source_uri=self.uri, format=self.format, dataset=self.dataset, episode_index=idx,
                    locator=loc, fingerprint=fingerprint("folder", name, stamps),
                )
            )
        return sorted(refs, key=lambda r: r.episode_index)


def _episode_numbers(names: list[str]) -> list[int]:
    """Each name's trailing integer when all names have distinct ones (stable when episodes are
    added), else the position in sorted order."""
    nums = [re.search(r"(\d+)$", n) for n in names]
    if all(nums) and len({int(m.group(1)) for m in nums if m}) == len(names):
        return [int(m.group(1)) for m in nums if m]
    return list(range(len(names)))


def _read_arrays(fs: pafs.FileSystem, path: str, label: str) -> dict[str, Any]:
    try:
        with fs.open_input_file(path) as f:
            raw = f.read()
    except FileNotFoundError:
        raise EpisodeError(label, f"array file {path} is missing") from None
    if path.endswith(".npz"):
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError) as e:
            raise EpisodeError(label, f"cannot read {path} ({e})") from None
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (OSError, pa.ArrowInvalid) as e:
        raise EpisodeError(label, f"cannot read {path} ({e})") from None
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            out[name] = np.asarray(col.to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def _task_text(value: Any) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return str(arr.item())
    return str(arr.reshape(-1)[0]) if arr.size else ""


def load_folder_episode(ref: EpisodeRef, *, camera: str | list[str] | None = None,
                        video_backend: str = "auto", strict: bool = True) -> Episode:
    loc = ref.locator
    label = ref.label
    fs, root = resolve(ref.source_uri)
    if not loc.get("arrays"):
        raise EpisodeError(label, f"{loc['name']} has no array file ({loc['name']}.npz or .parquet)")
    arrays = _read_arrays(fs, join(root, loc["arrays"]), label)
    meta: dict[str, Any] = {}
    if loc.get("meta"):
        try:
            with fs.open_input_stream(join(root, loc["meta"])) as f:
                meta = json.loads(f.read().decode())
        except FileNotFoundError:
            raise EpisodeError(label, f"sidecar file {join(root, loc['meta'])} is missing") from None
        except (OSError, json.JSONDecodeError) as e:
            raise EpisodeError(label, f"cannot read {loc['meta']} ({e})") from None
    for key in ("state", "action"):
        if key not in arrays:
            raise EpisodeError(label, f"{loc['arrays']} has no {key!r} array (has {sorted(arrays)})")
    state = as_2d_float(arrays["state"], label, "state")
    action = as_2d_float(arrays["action"], label, "action")
    ts_raw = next((arrays[k] for k in ("timestamps", "timestamp") if k in arrays), None)
    fps = float(meta.get("fps") or 0.0)
    if ts_raw is not None:
        ts = np.asarray(ts_raw, dtype=np.float64).reshape(-1)
        if not fps and ts.size > 1 and np.all(np.isfinite(ts)):
            fps = float(round(1.0 / float(np.median(np.diff(ts))), 3))
    else:
        ts = None
    if loc.get("video") is None:
        raise EpisodeError(label, f"video {loc['name']}.mp4 is missing")
    cam = meta.get("camera") or DEFAULT_CAMERA
    video_uri = uri_with(ref.source_uri, join(root, loc["video"]))  # a URI the decoder opens again
    if not fps:  # no timestamps, no sidecar: the video's own rate
        from carve.ingest.video import VideoError, VideoReader

        try:
            with VideoReader(video_uri, backend="pyav") as r:
                fps = r.fps
        except VideoError as e:
            raise EpisodeError(label, str(e)) from None
    if ts is None:
        ts = np.arange(state.shape[0], dtype=np.float64) / fps
    if strict:
        check_signals(label, state, action, ts)
    for c in camera_list(camera) or []:
        if c != cam:
            raise EpisodeError(label, f"no camera {c!r}; this episode has [{cam!r}]")
    frames = VideoFrames(
        label, {cam: (video_uri, 0.0)}, ts - ts[0], fps, backend=video_backend,
        relative_to_stream_start=True, require_same_fps=False,
    )
    if strict:
        frames.verify(cam)
    task = str(meta.get("task") or (_task_text(arrays["task"]) if "task" in arrays else ""))
    state_names = list(meta.get("state_names") or default_names("state", state.shape[1]))
    action_names = list(meta.get("action_names") or default_names("action", action.shape[1]))
    if len(state_names) != state.shape[1]:
        raise EpisodeError(label, f"{loc['meta']} names {len(state_names)} state dims but state has {state.shape[1]}")
    if len(action_names) != action.shape[1]:
        raise EpisodeError(label, f"{loc['meta']} names {len(action_names)} action dims but action has {action.shape[1]}")
    return Episode(
        ref=ref, fps=fps, task=task, state=state, action=action, timestamps=ts - ts[0],
        state_names=state_names, action_names=action_names, cameras=[cam],
        robot=str(meta.get("robot") or "unknown"), _frame_fn=frames,
    )
