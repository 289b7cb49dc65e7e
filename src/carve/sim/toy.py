"""Physics-free toy episodes for tests and benchmarks.

`toy_episode` builds an `EpisodeArrays` whose signals have the structure the segmenter looks
for (a gripper that closes and opens, short pauses between phases) and whose video shows a
coloured block sliding across a textured background. It is orders of magnitude faster to
make than a pybullet rollout (`sim/synth.py`), which is what the demo and the segmentation
evaluation use. `write_toy_folder` writes a plain-folder dataset of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from carve.sim.lerobot_writer import EpisodeArrays, write_video

STATE_NAMES = [f"joint_{j}" for j in range(7)] + ["gripper"]
CAMERA = "observation.images.front"


def toy_episode(seed: int, frames: int = 96, size: int = 64, task: str = "put the red cube in the tray") -> EpisodeArrays:
    """Four phases of equal length (reach, grasp+lift, move, release) with a 4-frame dwell at each."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    quarter = max(frames // 4, 1)
    phase = np.minimum(t // quarter, 3)
    vel = rng.normal(0, 0.02, size=(frames, 7)).astype(np.float32)
    vel[(t % quarter) < 4] = 0.0  # dwell at the start of each phase
    joints = np.cumsum(vel, axis=0).astype(np.float32)
    grip = np.where((phase == 1) | (phase == 2), 0.0, 0.04).astype(np.float32)
    state = np.concatenate([joints, grip[:, None]], axis=1)
    action = np.concatenate([np.roll(joints, -1, axis=0), grip[:, None]], axis=1).astype(np.float32)
    img = np.empty((frames, size, size, 3), dtype=np.uint8)
    img[..., 0] = 30
    img[..., 1] = 90
    img[..., 2] = rng.integers(0, 40, size=(1, size, size), dtype=np.uint8)
    cx = (size // 8 + (t * (size - size // 2)) // frames).astype(int)
    for k in range(frames):
        img[k, size // 3 : size // 3 + size // 4, cx[k] : cx[k] + size // 4] = (220, 40, 40)
    return EpisodeArrays(task=task, state=state, action=action, frames={CAMERA: img})


TOY_TASKS = ("put the red cube in the tray", "stack the red cube on the blue cube", "push the green cube to the left")


def write_toy_folder(folder: str | Path, episodes: int, frames: int = 96, fps: int = 12,
                     tasks: Sequence[str] = TOY_TASKS) -> Path:
    """A plain-folder dataset of toy episodes: `ep<i>.mp4` (H.264) + `ep<i>.npz` + `ep<i>.json`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(episodes):
        ep = toy_episode(i, frames=frames, task=tasks[i % len(tasks)])
        write_video(folder / f"ep{i}.mp4", next(iter(ep.frames.values())), fps)
        np.savez(folder / f"ep{i}.npz", state=ep.state, action=ep.action,
                 timestamps=np.arange(frames, dtype=np.float64) / fps)
        (folder / f"ep{i}.json").write_text(json.dumps({"task": ep.task, "fps": fps}))
    return folder
