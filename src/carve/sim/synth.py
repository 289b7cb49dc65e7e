"""`carve synth`: generate a simulated LeRobot v3.0 dataset plus its ground-truth events.

`synthesize(out, episodes, workers, seed, fps, size, codec, tasks, operator_noise=..., style=...,
arms=..., cameras=...)` runs the pybullet episodes of `sim/tasks.py` (physics-driven arms,
scripted teleoperator of `sim/operator.py`) in parallel worker processes (each with its own
pybullet DIRECT clients), streams them in episode order into
`sim.lerobot_writer.write_lerobot_dataset` (one video feature per camera; the house's LeRobot
writer, `carve.export.writer`, lays it out), and writes
`<out>/ground_truth_events.json` (format in docs/FORMATS.md) from the operator's own phase
schedules. Task types are assigned round-robin so every requested type is covered; each
episode's randomness comes from (seed, episode index) only, so a dataset is reproducible
regardless of the number of workers, and its motion (in seconds) regardless of the fps.

Conditions: `style` ("dwell" or "blended"), `fps` (10..50), `arms` (1, or 2 with ALOHA-style
`left_*` / `right_*` names), `cameras` (views per frame), `operator_noise` (0..1: speed
variation, tremor, hesitations, gripper-sensor noise). The defaults are the historical
dataset (`LEGACY`: dwell, 12 fps, one camera, one arm); other styles / arm counts default to
30 fps and two cameras. Every condition is recorded under `generator` in the ground truth,
and per episode (`fps`, `style`, `arms`, `cameras`).
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from carve.sim.lerobot_writer import EpisodeArrays, write_lerobot_dataset
from carve.sim.scene import action_names, camera_names, state_names
from carve.sim.tasks import FPS_RANGE, STYLES, SimEpisode, run_episode, task_types_for
from carve.storage.fs import atomic_write_bytes

GROUND_TRUTH_FILE = "ground_truth_events.json"
LEGACY = {"style": "dwell", "fps": 12, "cameras": 1, "arms": 1}  # the historical `carve synth` dataset


def default_fps(style: str, arms: int) -> int:
    """12 fps for the historical configuration (dwell, one arm), 30 fps (teleoperation rate) otherwise."""
    return LEGACY["fps"] if (style, arms) == (LEGACY["style"], LEGACY["arms"]) else 30


def default_cameras(style: str, arms: int) -> int:
    """1 camera for the historical configuration (dwell, one arm), 2 otherwise."""
    return LEGACY["cameras"] if (style, arms) == (LEGACY["style"], LEGACY["arms"]) else 2


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode `index` of a dataset generated with `seed`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


@dataclass(frozen=True)
class Job:
    task_type: str
    seed: int
    fps: int
    size: int
    noise: float
    style: str
    arms: int
    cameras: int


def _simulate(job: Job) -> SimEpisode:
    return run_episode(job.task_type, job.seed, fps=job.fps, size=job.size, operator_noise=job.noise,
                       style=job.style, arms=job.arms, cameras=job.cameras)


def _episodes(jobs: list[Job], workers: int, progress: bool) -> Iterator[SimEpisode]:
    bar = tqdm(total=len(jobs), desc="simulate", unit="ep", disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                yield _simulate(job)
                bar.update(1)
            return
        ctx = mp.get_context("spawn")  # a clean interpreter per worker: no inherited threads or clients
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for ep in pool.map(_simulate, jobs):
                yield ep
                bar.update(1)
    finally:
        bar.close()


def synthesize(
    out: str,
    episodes: int,
    workers: int = 2,
    seed: int = 0,
    fps: int | None = None,
    size: int = 128,
    codec: str = "h264",
    tasks: list[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    operator_noise: float = 0.0,
    style: str = "dwell",
    arms: int = 1,
    cameras: int | None = None,
) -> Path:
    """Simulate `episodes` episodes and write them as a LeRobot v3.0 dataset at `out`, with
    `<out>/ground_truth_events.json`. `operator_noise` in [0, 1] is the teleoperation-noise
    level (0 = the clean scripted operator); `style` "dwell" or "blended"; `arms` 1 or 2;
    `fps` / `cameras` default to `default_fps` / `default_cameras`. Returns the dataset path."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; use one of {', '.join(STYLES)}")
    if arms not in (1, 2):
        raise ValueError(f"arms must be 1 or 2, got {arms}")
    fps = default_fps(style, arms) if fps is None else int(fps)
    n_cams = default_cameras(style, arms) if cameras is None else int(cameras)
    allowed = task_types_for(arms)
    task_types = list(tasks) if tasks else list(allowed)
    unknown = [t for t in task_types if t not in allowed]
    if unknown:
        raise ValueError(f"unknown task type(s) {unknown} for {arms} arm(s); use {', '.join(allowed)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise ValueError(f"fps must be in [{FPS_RANGE[0]}, {FPS_RANGE[1]}], got {fps}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number of pixels >= 16, got {size}")
    if not 0.0 <= operator_noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {operator_noise}")
    cam_keys = [f"observation.images.{c}" for c in camera_names(arms, n_cams)]  # validates the count
    noise = float(operator_noise)
    jobs = [Job(task_types[i % len(task_types)], episode_seed(seed, i), fps, size, noise, style, arms, n_cams)
            for i in range(episodes)]
    truth: list[dict[str, Any]] = []

    def arrays() -> Iterator[EpisodeArrays]:
        for i, ep in enumerate(_episodes(jobs, workers, progress)):
            truth.append(ep.ground_truth(i))
            yield EpisodeArrays(task=ep.task, state=ep.state, action=ep.action, frames=ep.frames)

    root = write_lerobot_dataset(
        out, arrays(), fps=fps, state_names=state_names(arms), action_names=action_names(arms),
        robot_type="panda" if arms == 1 else "bimanual_panda", version="v3.0", codec=codec, overwrite=overwrite,
    )
    gt = {
        "dataset": root.name,
        "fps": fps,
        "generator": {"seed": seed, "size": size, "codec": codec, "tasks": task_types, "camera": cam_keys[0],
                      "cameras": cam_keys, "style": style, "arms": arms, "operator_noise": noise},
        "episodes": truth,
    }
    atomic_write_bytes(json.dumps(gt, indent=1).encode(), str(root / GROUND_TRUTH_FILE))
    return root
