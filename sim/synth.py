"""`carve synth`: generate a simulated LeRobot v3.0 dataset plus its ground-truth events.

`synthesize(out, episodes, workers, seed, fps, size, codec, tasks, operator_noise=...)` runs
the scripted pybullet episodes of `sim/tasks.py` in parallel worker processes (each with its
own pybullet DIRECT client), streams them in episode order into
`sim.lerobot_writer.write_lerobot_dataset`, and writes `<out>/ground_truth_events.json`
(format in docs/FORMATS.md) from the controllers' own phase schedules. Task types are
assigned round-robin so every requested type is covered; each episode's randomness comes
from (seed, episode index) only, so a dataset is reproducible regardless of the number of
workers.

`operator_noise` (0..1, `carve synth --noise`) switches on the teleoperation-noise model of
`sim.tasks.OperatorNoise` (hand drift, per-motion speed variation, mid-motion hesitations,
variable dwells); 0 reproduces the clean scripted operator exactly. The level is recorded
as `generator.operator_noise` in the ground truth, whose boundaries are always the frames
where the executed phase changes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from carve.sim.lerobot_writer import EpisodeArrays, write_lerobot_dataset
from carve.sim.scene import ACTION_NAMES, STATE_NAMES
from carve.sim.tasks import TASK_TYPES, SimEpisode, run_episode
from carve.storage.fs import atomic_write_bytes
from tqdm import tqdm

CAMERA_KEY = "observation.images.front"
GROUND_TRUTH_FILE = "ground_truth_events.json"


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode `index` of a dataset generated with `seed`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


Job = tuple[str, int, int, int, float]  # task type, episode seed, fps, size, operator noise


def _simulate(job: Job) -> SimEpisode:
    task_type, ep_seed, fps, size, noise = job
    return run_episode(task_type, ep_seed, fps=fps, size=size, operator_noise=noise)


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
    fps: int = 12,
    size: int = 128,
    codec: str = "h264",
    tasks: list[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    operator_noise: float = 0.0,
) -> Path:
    """Simulate `episodes` episodes and write them as a LeRobot v3.0 dataset at `out`, with
    `<out>/ground_truth_events.json`. `operator_noise` in [0, 1] is the teleoperation-noise
    level (0 = the clean scripted operator). Returns the dataset path."""
    task_types = list(tasks) if tasks else list(TASK_TYPES)
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown:
        raise ValueError(f"unknown task type(s) {unknown}; use {', '.join(TASK_TYPES)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not 1 <= fps <= 60:
        raise ValueError(f"fps must be in [1, 60], got {fps}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number of pixels >= 16, got {size}")
    if not 0.0 <= operator_noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {operator_noise}")
    noise = float(operator_noise)
    jobs = [(task_types[i % len(task_types)], episode_seed(seed, i), fps, size, noise) for i in range(episodes)]
    truth: list[dict[str, Any]] = []

    def arrays() -> Iterator[EpisodeArrays]:
        for i, ep in enumerate(_episodes(jobs, workers, progress)):
            truth.append(ep.ground_truth(i))
            yield EpisodeArrays(task=ep.task, state=ep.state, action=ep.action, frames={CAMERA_KEY: ep.frames})

    root = write_lerobot_dataset(
        out, arrays(), fps=fps, state_names=STATE_NAMES, action_names=ACTION_NAMES, robot_type="panda",
        version="v3.0", codec=codec, overwrite=overwrite,
    )
    gt = {
        "dataset": root.name,
        "fps": fps,
        "generator": {"seed": seed, "size": size, "codec": codec, "tasks": task_types, "camera": CAMERA_KEY,
                      "operator_noise": noise},
        "episodes": truth,
    }
    atomic_write_bytes(json.dumps(gt, indent=1).encode(), str(root / GROUND_TRUTH_FILE))
    return root
