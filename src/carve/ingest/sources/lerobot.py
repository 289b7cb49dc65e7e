"""LeRobot dataset reader (codebase_version v3.0, and v2.0/v2.1), as the `lerobot` library writes them.

v3.0: `meta/info.json`, `meta/tasks.parquet`, `meta/episodes/chunk-XXX/file-XXX.parquet` (one
row per episode: `data/chunk_index`, `data/file_index`, `dataset_from_index`/`to_index`,
`videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}`, `tasks`, `length`),
`data/chunk-XXX/file-XXX.parquet` and `videos/<key>/chunk-XXX/file-XXX.mp4`, each holding
many episodes. An episode's rows are read with a filter on `episode_index` (one row group per
episode when written by lerobot or Carve's writer) and its frames are decoded from its span
of the shared mp4 only.

v2.x: `meta/episodes.jsonl`, `meta/tasks.jsonl`, one parquet and one mp4 per episode at the
paths given by info.json's `data_path` / `video_path` templates.

Cameras are the `video` features plus any `image` features (PNG/JPEG bytes embedded in the
data parquet, decoded on demand). Works on local paths, pyarrow.fs URIs and `hf://` Hub repos
(pinned by `sources/hub.py`; read with range requests through `storage/hub.py`'s block cache, so
a v3.0 file shared by many episodes is fetched once, and only the row groups and video spans
read). Problems with the dataset as a whole raise `SourceError`; problems with one episode raise
`EpisodeError` from `load_lerobot_episode`.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
STATE_KEY = "observation.state"
ACTION_KEY = "action"


def _read_json(fs: pafs.FileSystem, path: str, what: str, uri: str) -> Any:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except FileNotFoundError:
        raise SourceError(f"dataset {uri}: missing {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"dataset {uri}: {what} is not valid JSON ({e})") from None


def _read_jsonl(fs: pafs.FileSystem, path: str, what: str, uri: str) -> list[dict[str, Any]]:
    try:
        with fs.open_input_stream(path) as f:
            text = f.read().decode()
    except FileNotFoundError:
        raise SourceError(f"dataset {uri}: missing {what}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SourceError(f"dataset {uri}: {what} line {n} is not valid JSON ({e})") from None
    return rows


def feature_names(feat: dict[str, Any] | None, prefix: str) -> list[str]:
    """Per-dimension names of a feature: a list, or lerobot's older {"motors": [...]} form."""
    if not feat:
        return []
    names = feat.get("names")
    dim = int((feat.get("shape") or [0])[0])
    if isinstance(names, dict):
        names = next((v for v in names.values() if isinstance(v, list)), None)
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return default_names(prefix, dim)


class LeRobotSource:
    """An opened LeRobot dataset (see the module docstring)."""

    format = "lerobot"

    def __init__(self, uri: str, *, dataset: str | None = None, camera: str | list[str] | None = None):
        self.uri = uri
        self.fs, self.root = resolve(uri)
        self.info = _read_json(self.fs, join(self.root, "meta/info.json"), "meta/info.json", uri)
        self.version = str(self.info.get("codebase_version", ""))
        if self.version not in SUPPORTED_VERSIONS:
            raise SourceError(
                f"dataset {uri}: unknown LeRobot codebase_version {self.version or '(none)'!r}; "
                f"supported: {', '.join(SUPPORTED_VERSIONS)}"
            )
        feats = self.info.get("features") or {}
        if ACTION_KEY not in feats or STATE_KEY not in feats:
            raise SourceError(f"dataset {uri}: meta/info.json features lack {STATE_KEY!r} and/or {ACTION_KEY!r}")
        if not self.info.get("fps"):
            raise SourceError(f"dataset {uri}: meta/info.json has no fps")
        self.video_keys = [k for k, f in feats.items() if f.get("dtype") == "video"]
        self.image_keys = [k for k, f in feats.items() if f.get("dtype") == "image"]
        self.cameras = self.video_keys + self.image_keys
        unknown = [c for c in camera_list(camera) or [] if c not in self.cameras]
        if unknown:
            raise SourceError(f"dataset {uri}: no video feature {unknown[0]!r}; cameras are {self.cameras}")
        self.camera = camera
        self.dataset = dataset or self.root.rstrip("/").rsplit("/", 1)[-1]

    # ------------------------------------------------------------------------------------------
    def _common_locator(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "fps": float(self.info["fps"]),
            "robot": self.info.get("robot_type") or "unknown",
            "cameras": self.cameras,
            "image_keys": self.image_keys,
            "state_names": feature_names(self.info["features"].get(STATE_KEY), "state"),
            "action_names": feature_names(self.info["features"].get(ACTION_KEY), "action"),
            "extra_features": extra_features(self.info["features"]),
        }

    def list_episodes(self) -> list[EpisodeRef]:
        rows = self._v30_rows() if self.version == "v3.0" else self._v2_rows()
        stamps: dict[str, list[Any]] = {}

        hub = self.uri.startswith("hf://")

        def stamp(rel: str) -> list[Any]:
            if rel not in stamps:
                if hub:  # no mtime on the Hub: the file's content id (LFS sha256 / git blob id)
                    from carve.storage.hub import hub_fsspec

                    try:
                        stamps[rel] = hub_fsspec().stamp(join(self.root, rel))
                    except FileNotFoundError:
                        stamps[rel] = [rel.rsplit("/", 1)[-1], None, None]
                else:
                    stamps[rel] = file_stamp(self.fs, join(self.root, rel))
            return stamps[rel]

        refs = []
        common = self._common_locator()
        for loc in rows:
            files = [loc["data_path"], *[v["path"] for v in loc["videos"].values()]]
            fp = fingerprint(
                self.version, loc["episode_index"], loc.get("from_index"), loc.get("to_index"),
                [loc["videos"][k].get("from_ts") for k in sorted(loc["videos"])],
                [stamp(f) for f in files],
            )
            refs.append(
                EpisodeRef(
                    source_uri=self.uri, format=self.format, dataset=self.dataset,
                    episode_index=int(loc["episode_index"]), locator={**common, **loc}, fingerprint=fp,
                )
            )
        return sorted(refs, key=lambda r: r.episode_index)

    def _v30_rows(self) -> list[dict[str, Any]]:
        ep_dir = join(self.root, "meta/episodes")
        if self.fs.get_file_info(ep_dir).type != pafs.FileType.Directory:
            raise SourceError(f"dataset {self.uri}: missing meta/episodes/ (a v3.0 dataset needs it)")
        files = sorted(
            i.path
            for i in self.fs.get_file_info(pafs.FileSelector(ep_dir, recursive=True))
            if i.type == pafs.FileType.File and i.path.endswith(".parquet")
        )
        if not files:
            raise SourceError(f"dataset {self.uri}: meta/episodes/ holds no parquet files")
        data_tpl = self.info.get("data_path")
        video_tpl = self.info.get("video_path")
        if not data_tpl or (self.video_keys and not video_tpl):
            raise SourceError(f"dataset {self.uri}: meta/info.json lacks data_path/video_path templates")
        out = []
        for path in files:
            try:
                schema = pq.read_schema(path, filesystem=self.fs)
                cols = [c for c in schema.names if not c.startswith("stats/")]
                table = pq.read_table(path, columns=cols, filesystem=self.fs)
            except (OSError, pa.ArrowInvalid) as e:
                raise SourceError(f"dataset {self.uri}: cannot read {path} ({e})") from None
            needed = {"episode_index", "data/chunk_index", "data/file_index", "dataset_from_index", "dataset_to_index"}
            for cam in self.video_keys:
                needed |= {f"videos/{cam}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")}
            missing = sorted(needed - set(table.column_names))
            if missing:
                raise SourceError(f"dataset {self.uri}: {path} lacks columns {missing}")
            for r in table.to_pylist():
                videos = {
                    cam: {
                        "path": video_tpl.format(
                            video_key=cam,
                            chunk_index=int(r[f"videos/{cam}/chunk_index"]),
                            file_index=int(r[f"videos/{cam}/file_index"]),
                        ),
                        "from_ts": float(r[f"videos/{cam}/from_timestamp"]),
                        "to_ts": float(r[f"videos/{cam}/to_timestamp"]),
                    }
                    for cam in self.video_keys
                }
                tasks = r.get("tasks") or []
                out.append(
                    {
                        "episode_index": int(r["episode_index"]),
                        "data_path": data_tpl.format(
                            chunk_index=int(r["data/chunk_index"]), file_index=int(r["data/file_index"])
                        ),
                        "from_index": int(r["dataset_from_index"]),
                        "to_index": int(r["dataset_to_index"]),
                        "length": int(r.get("length") or (r["dataset_to_index"] - r["dataset_from_index"])),
                        "task": str(tasks[0]) if len(tasks) else "",
                        "videos": videos,
                    }
                )
        return out

    def _v2_rows(self) -> list[dict[str, Any]]:
        eps = _read_jsonl(self.fs, join(self.root, "meta/episodes.jsonl"), "meta/episodes.jsonl", self.uri)
        if not eps:
            raise SourceError(f"dataset {self.uri}: meta/episodes.jsonl lists no episodes")
        data_tpl = self.info.get("data_path")
        video_tpl = self.info.get("video_path")
        if not data_tpl or (self.video_keys and not video_tpl):
            raise SourceError(f"dataset {self.uri}: meta/info.json lacks data_path/video_path templates")
        chunks = int(self.info.get("chunks_size") or 1000)
        out = []
        for e in eps:
            if "episode_index" not in e:
                raise SourceError(f"dataset {self.uri}: meta/episodes.jsonl row without episode_index: {e}")
            idx = int(e["episode_index"])
            chunk = idx // chunks
            tasks = e.get("tasks") or []
            out.append(
                {
                    "episode_index": idx,
                    "data_path": data_tpl.format(episode_chunk=chunk, episode_index=idx),
                    "length": int(e.get("length") or 0),
                    "task": str(tasks[0]) if tasks else "",
                    "videos": {
                        cam: {
                            "path": video_tpl.format(episode_chunk=chunk, video_key=cam, episode_index=idx),
                            "from_ts": 0.0,
                        }
                        for cam in self.video_keys
                    },
                }
            )
        return out


# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _tasks_table(uri: str, version: str) -> dict[int, str]:
    """task_index -> task text (used when an episode row does not carry its task)."""
    fs, root = resolve(uri)
    try:
        if version == "v3.0":
            df = pq.read_table(join(root, "meta/tasks.parquet"), filesystem=fs).to_pandas()
            if "task" in df.columns:
                return {int(i): str(t) for i, t in zip(df["task_index"], df["task"], strict=True)}
            return {int(i): str(t) for t, i in zip(df.index, df["task_index"], strict=True)}
        rows = _read_jsonl(fs, join(root, "meta/tasks.jsonl"), "meta/tasks.jsonl", uri)
        return {int(r["task_index"]): str(r["task"]) for r in rows}
    except (OSError, KeyError, SourceError, pa.ArrowInvalid):
        return {}


def _column(table: pa.Table, name: str, label: str) -> np.ndarray:
    if name not in table.column_names:
        raise EpisodeError(label, f"data file has no column {name!r}")
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        if col.null_count:
            raise EpisodeError(label, f"column {name!r} has {col.null_count} null rows")
        if pa.types.is_fixed_size_list(col.type):
            flat = col.flatten().to_numpy(zero_copy_only=False)
            return flat.reshape(len(col), col.type.list_size)
        return as_2d_float(np.asarray(col.to_pylist(), dtype=object), label, name)
    return col.to_numpy(zero_copy_only=False)


class _LeRobotFrames:
    """Frames of one episode: video keys via `VideoFrames`, image keys (PNG/JPEG bytes stored
    in the data parquet, lerobot's `image` dtype) decoded from the column on demand."""

    def __init__(self, label: str, videos: VideoFrames | None, images: dict[str, pa.Array]):
        self.label = label
        self.videos = videos
        self.images = images

    def video_spans(self) -> dict[str, tuple[str, float]]:
        return self.videos.video_spans() if self.videos is not None else {}

    def __call__(self, cam: str, indices: Sequence[int] | None) -> np.ndarray:
        if cam not in self.images:
            assert self.videos is not None
            return self.videos(cam, indices)
        col = self.images[cam]
        n = len(col)
        idx = range(n) if indices is None else [int(i) for i in indices]
        out = []
        for i in idx:
            if not -n <= i < n:
                raise EpisodeError(self.label, f"frame index {i} out of range 0..{n - 1}")
            out.append(_decode_image(col[i].as_py(), self.label, cam, i))
        return np.stack(out) if out else np.empty((0, 0, 0, 3), dtype=np.uint8)


def _decode_image(value: Any, label: str, cam: str, i: int) -> np.ndarray:
    from PIL import Image

    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise EpisodeError(label, f"camera {cam}: frame {i} has no embedded image bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise EpisodeError(label, f"camera {cam}: frame {i} is not a decodable image ({e})") from None


# per-frame columns every LeRobot dataset has, which Carve reads (or rebuilds) itself
_RESERVED = {STATE_KEY, ACTION_KEY, "timestamp", "frame_index", "episode_index", "index", "task_index"}
_NUMERIC = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}


def extra_features(features: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dataset's other numeric per-frame features (e.g. observation.velocity, next.done)."""
    out = {}
    for key, spec in features.items():
        if key in _RESERVED or not isinstance(spec, dict) or spec.get("dtype") not in _NUMERIC:
            continue
        out[key] = {"dtype": spec["dtype"], "shape": list(spec.get("shape") or [1]), "names": spec.get("names")}
    return out


def _extras(table: pa.Table, specs: dict[str, dict[str, Any]], label: str) -> dict[str, np.ndarray]:
    out = {}
    for key, spec in specs.items():
        if key not in table.column_names:
            continue
        col = table.column(key).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            arr = np.asarray(col.to_pylist(), dtype=spec["dtype"])
        else:
            arr = col.to_numpy(zero_copy_only=False).astype(spec["dtype"])
        if arr.shape[0] != table.num_rows:
            raise EpisodeError(label, f"feature {key} has {arr.shape[0]} rows for {table.num_rows} frames")
        out[key] = arr
    return out


# a v3.0 data file at most this large (on disk) is read whole once and kept for its next episodes
WHOLE_FILE_MAX_BYTES = 16 * 2**20
_WHOLE_FILES = 2  # files kept (a block's episodes are consecutive: one file, or the end of one and the next)
_whole: OrderedDict[tuple[str, str, int, int], pa.Table] = OrderedDict()
_whole_lock = threading.Lock()  # the service runs jobs on threads of one process


def episode_rows(fs: pafs.FileSystem, path: str, episode_index: int) -> pa.Table:
    """The rows of one episode in a v3.0 data file (many episodes per file). A file of at most
    `WHOLE_FILE_MAX_BYTES` is read whole once and kept (keyed on its size and modification time)
    while the next episodes come from it: one read per file, not one filtered read per episode
    (on 1,000 short episodes, 8 per file, the per-episode reads were 2.9 s of the decode step's
    36 s). Larger files: a filtered read, which touches only the row groups holding the episode."""
    wanted = pc.field("episode_index") == episode_index
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(path)
    if info.size is None or info.size > WHOLE_FILE_MAX_BYTES:
        return pq.read_table(path, filesystem=fs, filters=wanted)
    key = (fs.type_name, path, int(info.size), int(info.mtime_ns or 0))
    with _whole_lock:
        whole = _whole.get(key)
        if whole is not None:
            _whole.move_to_end(key)
    if whole is None:
        whole = pq.read_table(path, filesystem=fs)
        with _whole_lock:
            _whole[key] = whole
            while len(_whole) > _WHOLE_FILES:
                _whole.popitem(last=False)
    # a mask from one compute kernel: `Table.filter(expression)` plans an Acero query for each
    # episode (~3 ms; 3 s of 1,000 episodes), for the same rows in the same order
    return whole.filter(pc.equal(whole.column("episode_index"), episode_index))


def load_lerobot_episode(ref: EpisodeRef, *, camera: str | list[str] | None = None,
                         video_backend: str = "auto", strict: bool = True) -> Episode:
    loc = ref.locator
    label = ref.label
    fs, root = resolve(ref.source_uri)
    data_path = join(root, loc["data_path"])
    try:
        if loc["version"] == "v3.0":
            table = episode_rows(fs, data_path, ref.episode_index)
        else:
            table = pq.read_table(data_path, filesystem=fs)
    except FileNotFoundError:
        raise EpisodeError(label, f"data file {loc['data_path']} is missing") from None
    except (OSError, pa.ArrowInvalid) as e:
        raise EpisodeError(label, f"cannot read data file {loc['data_path']} ({e})") from None
    if "index" in table.column_names and table.num_rows > 1:
        table = table.sort_by("index")
    n = table.num_rows
    expected = (loc["to_index"] - loc["from_index"]) if "to_index" in loc else loc.get("length") or n
    if n == 0:
        raise EpisodeError(label, f"episode is empty: no rows in {loc['data_path']}")
    if n != expected:
        raise EpisodeError(label, f"data file has {n} rows but the episodes metadata says {expected}")
    state = as_2d_float(_column(table, STATE_KEY, label), label, STATE_KEY)
    action = as_2d_float(_column(table, ACTION_KEY, label), label, ACTION_KEY)
    fps = float(loc["fps"])
    if "timestamp" in table.column_names:
        ts = table.column("timestamp").to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        ts = np.arange(n) / fps
    if strict:
        check_signals(label, state, action, ts)
    task = loc.get("task") or ""
    if not task and "task_index" in table.column_names:
        task = _tasks_table(ref.source_uri, loc["version"]).get(int(table.column("task_index")[0].as_py()), "")

    cameras = list(loc.get("cameras") or [])
    image_keys = [k for k in loc.get("image_keys") or [] if k in cameras]
    frame_fn = None
    if cameras:
        # URIs, not paths on `fs`: the decoder resolves them again (the source's endpoint query kept)
        videos = {cam: (uri_with(ref.source_uri, join(root, v["path"])), float(v["from_ts"]))
                  for cam, v in loc["videos"].items()}
        vf = VideoFrames(label, videos, ts, fps, backend=video_backend) if videos else None
        images = {}
        for key in image_keys:
            if key not in table.column_names:
                raise EpisodeError(label, f"data file has no image column {key!r}")
            images[key] = table.column(key).combine_chunks()
            if images[key].null_count:
                raise EpisodeError(label, f"camera {key}: {images[key].null_count} frames have no image")
        frame_fn = _LeRobotFrames(label, vf, images)
        for cam in camera_list(camera) or cameras:
            if cam not in cameras:
                raise EpisodeError(label, f"no camera {cam!r}; the dataset has {cameras}")
            if cam not in loc["videos"] or not strict:
                continue
            vmeta = loc["videos"][cam]
            if "to_ts" in vmeta:
                span = vmeta["to_ts"] - vmeta["from_ts"]
                needed = float(ts[-1]) + 1.0 / fps
                if span + 0.5 / fps < needed:
                    raise EpisodeError(
                        label, f"camera {cam}: video ends at {span:.2f} s but actions run to {needed:.2f} s"
                    )
            assert vf is not None
            vf.verify(cam)
    state_names = list(loc.get("state_names") or [])
    action_names = list(loc.get("action_names") or [])
    if len(state_names) != state.shape[1]:
        state_names = default_names("state", state.shape[1])
    if len(action_names) != action.shape[1]:
        action_names = default_names("action", action.shape[1])
    return Episode(
        ref=ref, fps=fps, task=task, state=state, action=action, timestamps=ts,
        state_names=state_names, action_names=action_names, cameras=cameras,
        robot=str(loc.get("robot") or "unknown"), _frame_fn=frame_fn,
        extras=_extras(table, loc.get("extra_features") or {}, label),
        extra_features=dict(loc.get("extra_features") or {}),
    )
