"""Decode + segment throughput of the Carve ingest path against a raw PyAV decode.

The Carve path is `carve.pipeline.steps.DecodeSegment` on one worker, exactly the function the
Ray Data ingest stage maps over episodes: it opens each episode through the reader, decodes
its frames, segments it and encodes the keyframe JPEGs. Two configurations are measured:

* `full`: `segment.use_visual = True`, so every frame of every episode is decoded (the
  worst case; this is the number compared with the raw decode, target >= 0.7x);
* `default`: the shipped config (kinematic boundaries only; only keyframes are decoded).

The baseline decodes every frame of the same video files with plain PyAV in the same process
(`thread_type="AUTO"`, frames converted to RGB arrays), with no Carve code involved.
A Ray Data run of the same episodes (one decode task at a time) is reported separately so
that the orchestration overhead is visible.

    python -m bench.bench_pipeline [--episodes 8] [--frames 150] [--source DATASET]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any


def synthetic_dataset(out: Path, episodes: int, frames: int, size: int = 128, fps: int = 12) -> Path:
    """A LeRobot v3.0 dataset of moving-object episodes with gripper cycles and pauses."""
    from carve.sim.lerobot_writer import write_lerobot_dataset
    from carve.sim.toy import STATE_NAMES, toy_episode

    eps = (toy_episode(i, frames=frames, size=size) for i in range(episodes))
    return Path(write_lerobot_dataset(out, eps, fps=fps, state_names=STATE_NAMES, action_names=STATE_NAMES))


def raw_decode(paths: list[Path]) -> int:
    """Every frame of every file decoded to RGB by plain PyAV (the same baseline as bench_decode)."""
    from bench.bench_decode import raw_pyav_decode

    return raw_pyav_decode(paths)


def carve_decode_segment(refs: list[Any], use_visual: bool) -> tuple[int, int]:
    import pyarrow as pa

    from carve.core.config import SegmentConfig, SourceConfig
    from carve.pipeline.steps import DecodeSegment

    step = DecodeSegment(SegmentConfig(use_visual=use_visual), SourceConfig())
    events = 0
    for r in refs:
        out = step(pa.Table.from_pylist([r.to_row()]))
        errs = [e for e in out.column("_error").to_pylist() if e]
        if errs:
            raise RuntimeError(f"decode_segment quarantined an episode: {errs[0]}")
        events += out.num_rows
    return len(refs), events


def ray_data_run(refs: list[Any]) -> float:
    from carve.core.config import RayConfig, SegmentConfig, SourceConfig
    from carve.pipeline.executor import RayExecutor, StepSpec
    from carve.pipeline.ray_env import ensure_ray
    from carve.pipeline.steps import DecodeSegment

    cfg = RayConfig(num_cpus=2, object_store_memory_mb=256, progress=False)
    ensure_ray(cfg)
    t0 = time.perf_counter()
    spec = StepSpec(DecodeSegment, {"seg_cfg": SegmentConfig(use_visual=True), "src_cfg": SourceConfig()},
                    concurrency=1, batch_size=1)
    for _ in RayExecutor(cfg).run([r.to_row() for r in refs], [spec]):
        pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--source", default=None, help="benchmark an existing dataset instead of a synthetic one")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args(argv)

    from carve.ingest.sources import open_source

    with tempfile.TemporaryDirectory() as tmp:
        src_path = Path(args.source) if args.source else synthetic_dataset(Path(tmp) / "ds", args.episodes, args.frames)
        src = open_source(str(src_path))
        refs = src.list_episodes()
        videos = sorted(src_path.glob("videos/**/*.mp4"))

        raw_decode(videos)  # warm the page cache and the codec
        best: dict[str, float] = {"raw": float("inf"), "full": float("inf"), "default": float("inf")}
        n_raw = 0
        n_events = 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n_raw = raw_decode(videos)
            best["raw"] = min(best["raw"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            _, n_events = carve_decode_segment(refs, use_visual=True)
            best["full"] = min(best["full"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            carve_decode_segment(refs, use_visual=False)
            best["default"] = min(best["default"], time.perf_counter() - t0)
        frames = n_raw  # every frame of every episode (one camera)
        res: dict[str, Any] = {
            "description": "frames/s of decode+segment (one worker) vs plain PyAV decode of the same videos",
            "command": "python -m bench.bench_pipeline" + (f" --source {args.source}" if args.source else ""),
            "episodes": len(refs),
            "frames": frames,
            "events": n_events,
            "raw_decode_fps": frames / best["raw"],
            "carve_full_decode_segment_fps": frames / best["full"],
            "carve_default_config_fps": frames / best["default"],
            "ratio": best["raw"] / best["full"],
            "ratio_default_config": best["raw"] / best["default"],
        }
        if not args.no_ray:
            res["ray_data_1_worker_fps"] = frames / ray_data_run(refs)
    return res


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
