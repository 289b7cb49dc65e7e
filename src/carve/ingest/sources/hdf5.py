"""HDF5 episode reader (h5py): robomimic and ALOHA layouts.

* robomimic: one file, `data/demo_N/actions` (T, A), low-dimensional observations
  `data/demo_N/obs/<key>` (T, D) concatenated (sorted by key) into the state, and images
  `data/demo_N/obs/<cam>_image` (T, H, W, 3) uint8. `data.attrs["env_args"]` (JSON) names the
  environment, used as the task unless a `task` attribute is present; fps from an `fps`
  attribute, else the env's `control_freq`, else 20.
* ALOHA: one file per episode, `/observations/qpos` (T, 14) as the state, `/action`, and
  `/observations/images/<cam>` either raw (T, H, W, 3) or JPEG-compressed and zero-padded
  (T, N) uint8 when the file's `compress` attribute is set. fps from an `fps` attribute, else 50.

The source is a single .hdf5 file or a directory of them. Frames are read from the HDF5
datasets on demand (only the requested indices).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from carve.core.errors import EpisodeError, SourceError
from carve.ingest.sources.base import Episode, EpisodeRef
from carve.ingest.sources.common import (
    as_2d_float,
    camera_list,
    check_signals,
    default_names,
    file_number,
    file_stamp,
    fingerprint,
    natural_key,
)
from carve.storage.fs import is_local, join, resolve

H5_EXTS = (".hdf5", ".h5", ".hdf")
ALOHA_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper"]
ALOHA_NAMES = [f"{side}_{j}" for side in ("left", "right") for j in ALOHA_JOINTS]
ROBOMIMIC_FPS = 20.0
# robomimic's actions are robosuite OSC_POSE commands, 7 per robot: a position and a rotation delta
# and the gripper (-1 open .. +1 close)
OSC_POSE = ["dpos_x", "dpos_y", "dpos_z", "drot_x", "drot_y", "drot_z", "gripper"]
ALOHA_FPS = 50.0


@contextlib.contextmanager
def _open_h5(fs: pafs.FileSystem, path: str) -> Iterator[Any]:
    import h5py

    if is_local(fs):
        with h5py.File(path, "r") as f:
            yield f
    else:
        with fs.open_input_file(path) as raw, h5py.File(raw, "r") as f:
            yield f


def _demo_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of files and robomimic demo keys: `episode_2.hdf5` before `episode_10.hdf5`,
    `demo_9` before `demo_10` (the numbers in the name, then the text; `natural_key`)."""
    return natural_key(name)


def _kind(f: Any) -> str | None:
    if "data" in f and any(k.startswith("demo") for k in f["data"]):
        return "robomimic"
    if "action" in f and "observations/qpos" in f:
        return "aloha"
    return None


class HDF5Source:
    """An HDF5 file or a directory of HDF5 files (robomimic or ALOHA)."""

    format = "hdf5"

    def __init__(self, uri: str, *, dataset: str | None = None, camera: str | list[str] | None = None):
        self.uri = uri
        self.fs, self.root = resolve(uri)
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.File:
            self.base, self.files = self.root.rsplit("/", 1)[0], [info.base_name]
            default_name = info.base_name.rsplit(".", 1)[0]
        elif info.type == pafs.FileType.Directory:
            self.base = self.root
            self.files = sorted(
                i.base_name
                for i in self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
                if i.type == pafs.FileType.File and i.base_name.endswith(H5_EXTS)
            )
            default_name = self.root.rstrip("/").rsplit("/", 1)[-1]
        else:
            raise SourceError(f"dataset {uri}: path does not exist")
        if not self.files:
            raise SourceError(f"dataset {uri}: no .hdf5 files")
        self.camera = camera
        self.dataset = dataset or default_name

    def _tasks(self) -> dict[str, str]:
        """Task texts from a `tasks.json` beside the files: {"episode_3.hdf5": "...", "*": "..."}
        (a file name, `file#demo_N`, or `*` for every episode), or one string for all. A file's own
        `task` attribute wins over it; {} when there is none."""
        path = join(self.base, "tasks.json")
        try:
            with self.fs.open_input_file(path) as f:
                data = json.loads(f.read().decode())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise SourceError(f"dataset {self.uri}: cannot read tasks.json ({e})") from None
        if isinstance(data, str):
            return {"*": data}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise SourceError(f"dataset {self.uri}: tasks.json must map file names (or '*') to task texts")
        return data

    def list_episodes(self) -> list[EpisodeRef]:
        """Episodes in natural order of their files and demo keys. ALOHA/ACT files hold one episode
        each: when every file name carries its own number (`episode_N.hdf5`), that number is the
        episode index, so adding or re-listing files never renumbers the others; otherwise an
        episode's index is its position in that order."""
        refs: list[EpisodeRef] = []
        tasks = self._tasks()
        files = sorted(self.files, key=_demo_key) if len(self.files) > 1 else self.files
        numbers = [file_number(n) for n in files]
        numbered = len(files) > 1 and None not in numbers and len(set(numbers)) == len(files)
        for name, number in zip(files, numbers, strict=True):
            path = join(self.base, name)
            stamp = file_stamp(self.fs, path)
            try:
                with _open_h5(self.fs, path) as f:
                    kind = _kind(f)
                    if kind is None:
                        raise SourceError(
                            f"dataset {self.uri}: {name} is neither robomimic (data/demo_N) nor ALOHA "
                            "(/observations/qpos + /action)"
                        )
                    demos = sorted(f["data"].keys(), key=_demo_key) if kind == "robomimic" else [None]
            except OSError as e:
                raise SourceError(f"dataset {self.uri}: cannot open {name} as HDF5 ({e})") from None
            for demo in demos:
                loc = {"file": name, "kind": kind, "demo": demo}
                task = tasks.get(name, tasks.get(f"{name}#{demo}", tasks.get("*")))
                if task:
                    loc["task"] = task
                index = number if numbered and kind == "aloha" and number is not None else len(refs)
                refs.append(
                    EpisodeRef(
                        source_uri=self.uri, format=self.format, dataset=self.dataset,
                        episode_index=index, locator=loc, fingerprint=fingerprint("hdf5", loc, stamp),
                    )
                )
        if len({r.episode_index for r in refs}) != len(refs):  # numbered ALOHA files mixed with demos
            refs = [dataclasses.replace(r, episode_index=i) for i, r in enumerate(refs)]
        return sorted(refs, key=lambda r: r.episode_index)


class _H5Frames:
    """Lazy frame loader: reads only the requested rows of the image datasets."""

    def __init__(self, label: str, file_uri: str, datasets: dict[str, str], compressed: bool, length: int):
        self.label = label
        self.file_uri = file_uri
        self.datasets = datasets
        self.compressed = compressed
        self.length = length

    def __call__(self, cam: str, indices: Sequence[int] | None) -> np.ndarray:
        fs, path = resolve(self.file_uri)
        idx = np.arange(self.length) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.length):
            raise EpisodeError(self.label, f"frame index out of range 0..{self.length - 1}")
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            with _open_h5(fs, path) as f:
                ds = f[self.datasets[cam]]
                rows = ds[uniq.tolist()] if uniq.size else ds[0:0]
        except (OSError, KeyError) as e:
            raise EpisodeError(self.label, f"camera {cam}: cannot read images ({e})") from None
        if self.compressed:
            rows = np.stack([_decode_jpeg(r, self.label, cam) for r in rows]) if len(rows) else rows
        rows = np.asarray(rows, dtype=np.uint8)
        return rows[inverse] if idx.size else rows


def _decode_jpeg(buf: np.ndarray, label: str, cam: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(np.asarray(buf, dtype=np.uint8).tobytes())) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise EpisodeError(label, f"camera {cam}: undecodable compressed image ({e})") from None


def _attr(obj: Any, key: str) -> Any:
    v = obj.attrs.get(key)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0]
    return v


def _robomimic(f: Any, demo: str, label: str) -> dict[str, Any]:
    if demo not in f["data"]:
        raise EpisodeError(label, f"data/{demo} is missing")
    g = f["data"][demo]
    if "actions" not in g or "obs" not in g:
        raise EpisodeError(label, f"data/{demo} lacks actions or obs")
    action = as_2d_float(g["actions"][()], label, "actions")
    low, cams = [], {}
    for key in sorted(g["obs"].keys()):
        ds = g["obs"][key]
        if key.endswith("_image") or (ds.ndim == 4 and ds.dtype == np.uint8):
            cams[key[: -len("_image")] if key.endswith("_image") else key] = ds.name
        elif ds.ndim in (1, 2):
            low.append((key, as_2d_float(ds[()], label, f"obs/{key}")))
    if not low:
        raise EpisodeError(label, f"data/{demo}/obs has no low-dimensional observations for the state")
    lengths = {k: a.shape[0] for k, a in low}
    if len(set(lengths.values())) > 1:
        raise EpisodeError(label, f"observations have different lengths: {lengths}")
    state = np.concatenate([a for _, a in low], axis=1)
    names = [f"{k}_{i}" for k, a in low for i in range(a.shape[1])]
    action_names = _names_attr(f["data"], "action_names", action.shape[1]) or robomimic_action_names(
        [k for k, _ in low], action.shape[1])
    env_args: dict[str, Any] = {}
    with contextlib.suppress(TypeError, ValueError):
        env_args = json.loads(_attr(f["data"], "env_args") or "{}")
    fps = _attr(g, "fps") or _attr(f["data"], "fps") or (env_args.get("env_kwargs") or {}).get("control_freq")
    task = _attr(g, "task") or _attr(f["data"], "task") or env_args.get("env_name") or ""
    return {
        "state": state, "action": action, "state_names": names, "action_names": action_names, "cams": cams,
        "compressed": False, "fps": float(fps or ROBOMIMIC_FPS), "task": str(task),
        "robot": str(_attr(f["data"], "robot") or "robomimic"),
    }


def robomimic_action_names(obs_keys: list[str], dim: int) -> list[str]:
    """robomimic's action columns by its convention: OSC_POSE per robot (`robot0_dpos_x` ...
    `robot0_gripper`), for the robots its observation keys name (`robot0_*`, `robot1_*`), when
    the action has 7 columns per robot; else `action_i`."""
    robots = sorted({m.group(1) for k in obs_keys if (m := re.match(r"(robot\d+)_", k))}) or ["robot0"]
    if dim != len(OSC_POSE) * len(robots):
        return default_names("action", dim)
    return [f"{r}_{n}" for r in robots for n in OSC_POSE]


def _names_attr(f: Any, key: str, dim: int) -> list[str] | None:
    """Optional JSON list of per-dimension names stored as a file attribute (Carve's writer adds it)."""
    try:
        names = json.loads(_attr(f, key) or "null")
    except (TypeError, ValueError):
        return None
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return names
    return None


def _aloha(f: Any, label: str) -> dict[str, Any]:
    state = as_2d_float(f["observations/qpos"][()], label, "observations/qpos")
    action = as_2d_float(f["action"][()], label, "action")
    cams = {}
    if "observations/images" in f:
        cams = {k: f["observations/images"][k].name for k in sorted(f["observations/images"].keys())}
    names = _names_attr(f, "state_names", state.shape[1]) or (
        ALOHA_NAMES if state.shape[1] == len(ALOHA_NAMES) else default_names("qpos", state.shape[1])
    )
    action_names = _names_attr(f, "action_names", action.shape[1]) or (
        ALOHA_NAMES if action.shape[1] == len(ALOHA_NAMES) else default_names("action", action.shape[1])
    )
    return {
        "state": state, "action": action, "state_names": names, "action_names": action_names, "cams": cams,
        "compressed": bool(_attr(f, "compress")), "fps": float(_attr(f, "fps") or ALOHA_FPS),
        "task": str(_attr(f, "task") or ""), "robot": "aloha",
    }


def load_hdf5_episode(ref: EpisodeRef, *, camera: str | list[str] | None = None, strict: bool = True) -> Episode:
    loc = ref.locator
    label = ref.label
    fs, root = resolve(ref.source_uri)
    single = fs.get_file_info(root).type == pafs.FileType.File
    path = root if single else join(root, loc["file"])
    try:
        with _open_h5(fs, path) as f:
            d = _robomimic(f, loc["demo"], label) if loc["kind"] == "robomimic" else _aloha(f, label)
            t = d["state"].shape[0]
            if strict:
                check_signals(label, d["state"], d["action"], np.arange(t, dtype=np.float64) / d["fps"])
            cams = list(d["cams"])
            for c in camera_list(camera) or []:
                if c not in cams:
                    raise EpisodeError(label, f"no camera {c!r}; the episode has {cams}")
            for cam in camera_list(camera) or cams:
                n = f[d["cams"][cam]].shape[0]
                if n < t and strict:
                    raise EpisodeError(
                        label, f"camera {cam}: video ends at {n / d['fps']:.2f} s ({n} images) "
                        f"but actions run to {t / d['fps']:.2f} s ({t} steps)",
                    )
    except FileNotFoundError:
        raise EpisodeError(label, f"file {loc['file']} is missing") from None
    except OSError as e:
        raise EpisodeError(label, f"cannot read {loc['file']} ({e})") from None
    file_uri = ref.source_uri if single else join(ref.source_uri, loc["file"])
    frames = _H5Frames(label, file_uri, d["cams"], d["compressed"], t) if cams else None
    return Episode(
        ref=ref, fps=d["fps"], task=d["task"] or loc.get("task") or "", state=d["state"], action=d["action"],
        timestamps=np.arange(t, dtype=np.float64) / d["fps"], state_names=d["state_names"],
        action_names=d.get("action_names") or default_names("action", d["action"].shape[1]),
        cameras=cams, robot=d["robot"], _frame_fn=frames,
    )
