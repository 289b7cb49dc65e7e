"""Write `EpisodeArrays` in every layout Carve reads (used by tests and `carve synth --format`).

Formats (`FORMATS`):

* `lerobot-v3.0`, `lerobot-v2.1`: `sim.lerobot_writer.write_lerobot_dataset`;
* `folder-npz`, `folder-parquet`: `<root>/episode_NNNNNN.mp4` + `.npz` / `.parquet` (state,
  action, timestamps, task) + a `.json` sidecar (task, fps, state/action names, camera);
  the folder layout has one camera, the first one;
* `robomimic`: one HDF5 file `<root>` (if it ends in .hdf5) or `<root>/demos.hdf5` with
  `data/demo_N/{actions, obs/robot0_joint_pos, obs/robot0_gripper_qpos, obs/<cam>_image}`;
  state dims whose names contain "gripper" go to `robot0_gripper_qpos`, the rest to
  `robot0_joint_pos` (so a reader sees the state as [gripper dims, other dims]);
* `aloha`: `<root>/episode_N.hdf5` with `/observations/qpos`, `/observations/qvel`,
  `/observations/images/<cam>` (raw, or JPEG + zero padding with `compress=True`), `/action`.

Everything is written under a temporary sibling name and renamed into place when complete.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from carve.sim.lerobot_writer import EpisodeArrays, write_lerobot_dataset, write_video

FORMATS = ("lerobot-v3.0", "lerobot-v2.1", "folder-npz", "folder-parquet", "robomimic", "aloha")


def index_frames(indices: Iterable[int], size: int = 64) -> np.ndarray:
    """Test pattern: frames whose 4x4 grid of black/white blocks spells each index in binary
    (16 bits), robust to lossy coding; `read_index` recovers the index from a decoded frame."""
    idx = np.asarray(list(indices), dtype=np.int64)
    block = size // 4
    bits = (idx[:, None] >> np.arange(16)[None, :]) & 1  # (N, 16)
    grid = (bits.reshape(-1, 4, 4) * 255).astype(np.uint8)
    img = np.repeat(np.repeat(grid, block, axis=1), block, axis=2)  # (N, 4*block, 4*block)
    out = np.zeros((len(idx), size, size, 3), dtype=np.uint8)
    out[:, : 4 * block, : 4 * block, :] = img[..., None]
    return out


def read_index(frame: np.ndarray) -> int:
    """Inverse of `index_frames` for one decoded (H, W, 3) frame."""
    block = frame.shape[0] // 4
    m = block // 4
    value = 0
    for b in range(16):
        r, c = divmod(b, 4)
        cell = frame[r * block + m : (r + 1) * block - m, c * block + m : (c + 1) * block - m]
        if cell.mean() > 127:
            value |= 1 << b
    return value


INDEX_STATE_NAMES = ["frame", "joint_1", "gripper"]
INDEX_ACTION_NAMES = ["d_frame", "d_joint_1", "gripper_cmd"]


def index_episodes(
    lengths: Iterable[int], cameras: Iterable[str] = ("observation.images.front",), size: int = 64
) -> list[EpisodeArrays]:
    """Episodes for alignment tests and benchmarks: state dim 0 holds the global frame index
    and camera k's frames show `index + 1000 * k` (`index_frames`), so a reader's frames can
    be checked against its state. State/action names are `INDEX_STATE_NAMES`/`INDEX_ACTION_NAMES`."""
    cams = list(cameras)
    eps, start = [], 0
    for e, n in enumerate(lengths):
        g = np.arange(start, start + n, dtype=np.float32)
        state = np.stack([g, np.sin(g), (g % 5 < 2).astype(np.float32)], axis=1)
        frames = {c: index_frames(range(start + k * 1000, start + k * 1000 + n), size) for k, c in enumerate(cams)}
        eps.append(EpisodeArrays(task=f"task {e % 2}", state=state, action=state + np.float32(0.5), frames=frames))
        start += n
    return eps


def short_camera(key: str) -> str:
    """`observation.images.front` -> `front` (the camera name in HDF5 layouts)."""
    return key.rsplit(".", 1)[-1]


@contextmanager
def _atomic_dir(root: Path, overwrite: bool) -> Iterator[Path]:
    root = Path(root).absolute()
    if root.exists() and (root.is_file() or any(root.iterdir())) and not overwrite:
        raise FileExistsError(f"{root} already exists and is not empty (pass overwrite=True to replace it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".tmp-{uuid.uuid4().hex[:8]}-{root.name}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if root.exists():
            old = root.parent / f".old-{uuid.uuid4().hex[:8]}-{root.name}"
            os.rename(root, old)
        os.rename(tmp, root)
        if old is not None and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old is not None:
            old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check(ep: EpisodeArrays, i: int, n_state: int, n_action: int) -> None:
    cams = sorted(ep.frames)
    hw = tuple(ep.frames[cams[0]].shape[1:3]) if cams else None
    try:
        ep.validate(n_state, n_action, cams, hw)  # type: ignore[arg-type]
    except ValueError as e:
        raise ValueError(f"episode {i}: {e}") from None


# ------------------------------------------------------------------------------------------ folder
def write_folder(
    root: str | Path,
    episodes: Iterable[EpisodeArrays],
    *,
    fps: int,
    state_names: list[str],
    action_names: list[str],
    arrays: str = "npz",
    codec: str = "h264",
    robot_type: str = "unknown",
    overwrite: bool = False,
) -> Path:
    """`<root>/episode_NNNNNN.{mp4, npz|parquet, json}` per episode (first camera only)."""
    if arrays not in ("npz", "parquet"):
        raise ValueError(f"arrays must be 'npz' or 'parquet', not {arrays!r}")
    root = Path(root).absolute()
    n = 0
    with _atomic_dir(root, overwrite) as tmp:
        for i, ep in enumerate(episodes):
            _check(ep, i, len(state_names), len(action_names))
            name = f"episode_{i:06d}"
            ts = np.arange(ep.length, dtype=np.float64) / fps
            state, action = ep.state.astype(np.float32), ep.action.astype(np.float32)
            if arrays == "npz":
                np.savez(tmp / f"{name}.npz", state=state, action=action, timestamps=ts, task=np.array(ep.task))
            else:
                table = pa.table(
                    {
                        "state": pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), state.shape[1]),
                        "action": pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), action.shape[1]),
                        "timestamp": pa.array(ts),
                        "task": pa.array([ep.task] * ep.length),
                    }
                )
                pq.write_table(table, tmp / f"{name}.parquet")
            cams = sorted(ep.frames)
            meta: dict[str, Any] = {
                "task": ep.task, "fps": fps, "state_names": list(state_names),
                "action_names": list(action_names), "robot": robot_type,
            }
            if cams:
                meta["camera"] = cams[0]
                write_video(tmp / f"{name}.mp4", ep.frames[cams[0]], fps, codec)
            (tmp / f"{name}.json").write_text(json.dumps(meta, indent=2))
            n += 1
        if n == 0:
            raise ValueError("no episodes to write")
    return root


# ------------------------------------------------------------------------------------------ HDF5
def _jpeg_padded(frames: np.ndarray, quality: int = 90) -> np.ndarray:
    from PIL import Image

    bufs = []
    for img in frames:
        b = io.BytesIO()
        Image.fromarray(img).save(b, format="JPEG", quality=quality)
        bufs.append(np.frombuffer(b.getvalue(), dtype=np.uint8))
    width = max(len(b) for b in bufs)
    out = np.zeros((len(bufs), width), dtype=np.uint8)
    for i, b in enumerate(bufs):
        out[i, : len(b)] = b
    return out


def write_robomimic(
    root: str | Path,
    episodes: Iterable[EpisodeArrays],
    *,
    fps: int,
    state_names: list[str],
    action_names: list[str],
    env_name: str = "CarveSim",
    overwrite: bool = False,
) -> Path:
    """One robomimic HDF5 file (see the module docstring); returns the file's path."""
    import h5py

    root = Path(root).absolute()
    target = root if root.suffix in (".hdf5", ".h5") else root / "demos.hdf5"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{uuid.uuid4().hex[:8]}-{target.name}"
    grip = [i for i, nm in enumerate(state_names) if "gripper" in nm.lower()]
    rest = [i for i in range(len(state_names)) if i not in grip]
    total = 0
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            env_args = {"env_name": env_name, "type": 1, "env_kwargs": {"control_freq": fps}}
            data.attrs["env_args"] = json.dumps(env_args)
            n = 0
            for i, ep in enumerate(episodes):
                _check(ep, i, len(state_names), len(action_names))
                g = data.create_group(f"demo_{i}")
                g.attrs["num_samples"] = ep.length
                g.attrs["task"] = ep.task
                g.create_dataset("actions", data=ep.action.astype(np.float32))
                obs = g.create_group("obs")
                obs.create_dataset("robot0_joint_pos", data=ep.state[:, rest].astype(np.float32))
                if grip:
                    obs.create_dataset("robot0_gripper_qpos", data=ep.state[:, grip].astype(np.float32))
                for key, fr in ep.frames.items():
                    obs.create_dataset(f"{short_camera(key)}_image", data=fr, chunks=(1, *fr.shape[1:]))
                g.create_dataset("dones", data=np.eye(1, ep.length, ep.length - 1, dtype=np.int64)[0])
                total += ep.length
                n += 1
            if n == 0:
                raise ValueError("no episodes to write")
            data.attrs["total"] = total
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_aloha(
    root: str | Path,
    episodes: Iterable[EpisodeArrays],
    *,
    fps: int,
    state_names: list[str] | None = None,
    action_names: list[str] | None = None,
    compress: bool = False,
    overwrite: bool = False,
) -> Path:
    """`<root>/episode_N.hdf5`, one ALOHA file per episode (see the module docstring)."""
    import h5py

    root = Path(root).absolute()
    n = 0
    with _atomic_dir(root, overwrite) as tmp:
        for i, ep in enumerate(episodes):
            if state_names is not None and action_names is not None:
                _check(ep, i, len(state_names), len(action_names))
            with h5py.File(tmp / f"episode_{i}.hdf5", "w") as f:
                f.attrs["sim"] = True
                f.attrs["compress"] = bool(compress)
                f.attrs["fps"] = float(fps)
                f.attrs["task"] = ep.task
                if state_names is not None and action_names is not None:  # not in real ALOHA files
                    f.attrs["state_names"] = json.dumps(list(state_names))
                    f.attrs["action_names"] = json.dumps(list(action_names))
                obs = f.create_group("observations")
                obs.create_dataset("qpos", data=ep.state.astype(np.float32))
                obs.create_dataset("qvel", data=np.zeros_like(ep.state, dtype=np.float32))
                imgs = obs.create_group("images")
                for key, fr in ep.frames.items():
                    arr = _jpeg_padded(fr) if compress else fr
                    imgs.create_dataset(short_camera(key), data=arr, chunks=(1, *arr.shape[1:]))
                f.create_dataset("action", data=ep.action.astype(np.float32))
            n += 1
        if n == 0:
            raise ValueError("no episodes to write")
    return root


# ------------------------------------------------------------------------------------------ dispatch
def _dir_of(written: Path, root: str | Path) -> Path:
    """`root` itself when it is the directory the file was written into, else the file."""
    return written.parent if written.parent == Path(root).absolute() else written


def write_dataset(
    root: str | Path,
    episodes: Iterable[EpisodeArrays],
    *,
    format: str,
    fps: int,
    state_names: list[str],
    action_names: list[str],
    robot_type: str = "panda",
    codec: str = "h264",
    overwrite: bool = False,
    **kwargs: Any,
) -> Path:
    """Write `episodes` in `format` (one of `FORMATS`); returns the path to open as a source
    (`root` as an absolute path, except robomimic with a `root` ending in .hdf5: that file)."""
    common = {"fps": fps, "state_names": state_names, "action_names": action_names, "overwrite": overwrite}
    writers: dict[str, Callable[[], Path]] = {
        "lerobot-v3.0": lambda: write_lerobot_dataset(
            root, episodes, version="v3.0", robot_type=robot_type, codec=codec, **common, **kwargs
        ),
        "lerobot-v2.1": lambda: write_lerobot_dataset(
            root, episodes, version="v2.1", robot_type=robot_type, codec=codec, **common, **kwargs
        ),
        "folder-npz": lambda: write_folder(root, episodes, arrays="npz", codec=codec, robot_type=robot_type, **common),
        "folder-parquet": lambda: write_folder(
            root, episodes, arrays="parquet", codec=codec, robot_type=robot_type, **common
        ),
        "robomimic": lambda: _dir_of(write_robomimic(root, episodes, **common, **kwargs), root),
        "aloha": lambda: write_aloha(root, episodes, **common, **kwargs),
    }
    if format not in writers:
        raise ValueError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    return writers[format]()
