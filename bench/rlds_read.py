"""RLDS read throughput: Carve's TensorFlow-free reader against tensorflow-datasets, same build, same process.

Both sides read every episode of a TFDS build and hand back numpy arrays of every step: the
state and action vectors and every camera's decoded RGB frames.

* `tfds`: `tfds.builder_from_directory(build).as_dataset(split)`; each episode's `steps` dataset is
  batched whole (`steps.batch(4096)`: images decoded by TensorFlow, one tensor per feature) and
  converted with `.numpy()`. The per-step iteration RLDS users also write (`for step in
  ep["steps"]`) is timed too; the faster of the two is the reference.
* `carve`: `open_source(build, "rlds").list_episodes()` (timed apart: it walks the record headers),
  then `load_episode(ref)` (one record read, both CRCs checked, parsed with protobuf) and
  `ep.frames(cam)` for every camera (Pillow decodes the JPEGs).

Carve does not depend on TensorFlow; this bench runs only in an environment that has it, with
Carve importable (PYTHONPATH=src) and the packages Carve's reader needs:

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tensorflow-datasets \\
        pyarrow pillow google-crc32c av pydantic pyyaml
    /tmp/tfenv/bin/python tests/fixtures/rlds/make_rlds.py --bench --out /tmp/rlds_bench
    PYTHONPATH=src /tmp/tfenv/bin/python bench/rlds_read.py /tmp/rlds_bench/bridge_dataset/1.0.0 \\
        /tmp/rlds_bench/droid/1.0.0 --repeat 3

Prints one JSON line per build and side (steps/s, frames/s, MB/s of shard bytes, the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _shard_bytes(build: Path) -> int:
    return sum(f.stat().st_size for f in build.glob("*.tfrecord-*"))


def read_tfds(build: Path, per_step: bool) -> tuple[int, int]:
    """(steps, frames) read by tensorflow-datasets."""
    import tensorflow_datasets as tfds

    b = tfds.builder_from_directory(str(build))
    ds = b.as_dataset(split="train", shuffle_files=False)
    steps = frames = 0
    for ep in ds:
        if per_step:
            for step in ep["steps"]:
                obs = step["observation"]
                for v in obs.values():
                    a = v.numpy()
                    frames += int(a.ndim == 3)
                step["action"].numpy()
                steps += 1
        else:
            for batch in ep["steps"].batch(4096):
                obs = batch["observation"]
                for v in obs.values():
                    a = v.numpy()
                    frames += a.shape[0] if a.ndim == 4 else 0
                steps += int(batch["action"].numpy().shape[0])
    return steps, frames


def read_carve(build: Path) -> tuple[int, int, float]:
    """(steps, frames, listing seconds) read by Carve's RLDS source."""
    from carve.ingest.sources import load_episode, open_source

    t0 = time.perf_counter()
    refs = open_source(str(build), "rlds").list_episodes()
    listing = time.perf_counter() - t0
    steps = frames = 0
    for r in refs:
        ep = load_episode(r)
        for cam in ep.cameras:
            frames += ep.frames(cam).shape[0]
        steps += ep.length
    return steps, frames, listing


def _timed(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("builds", nargs="+", type=Path, help="TFDS build folders (with features.json)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N passes per side")
    args = ap.parse_args(argv)
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    for build in args.builds:
        mb = _shard_bytes(build) / 1e6
        read_tfds(build, per_step=False)  # warm-up: TF graph building, file cache
        t_batch, (steps, frames) = _timed(lambda b=build: read_tfds(b, per_step=False), args.repeat)
        t_step, _ = _timed(lambda b=build: read_tfds(b, per_step=True), max(1, args.repeat - 1))
        t_carve, (c_steps, c_frames, listing) = _timed(lambda b=build: read_carve(b), args.repeat)
        assert (c_steps, c_frames) == (steps, frames), ((c_steps, c_frames), (steps, frames))
        t_tf = min(t_batch, t_step)
        for side, t in (("tfds (batched steps)", t_batch), ("tfds (per step)", t_step), ("carve", t_carve)):
            print(json.dumps({"build": str(build), "side": side, "seconds": round(t, 3), "steps": steps,
                              "frames": frames, "steps_per_s": round(steps / t, 1), "frames_per_s": round(frames / t, 1),
                              "shard_MB_per_s": round(mb / t, 1),
                              **({"listing_s": round(listing, 4), "vs_best_tfds": round(t_tf / t, 2)}
                                 if side == "carve" else {})}))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
