"""Decode + segment throughput of the Carve ingest path against a raw PyAV decode.

The Carve path is `carve.pipeline.steps.DecodeSegment` on one worker, exactly the function the
Ray Data ingest stage maps over episodes: it opens each episode through the reader, decodes
its frames, segments it and encodes the keyframe JPEGs. Two configurations are measured:

* `full`: `segment.use_visual = True`, so every frame of every episode is decoded (the
  worst case; this is the number compared with the raw decode of every frame, `ratio`,
  target >= 0.7x);
* `default`: the shipped config (kinematic boundaries only; only the keyframes of the events,
  start/middle/last of each, are decoded). It does less decoding, so it is compared like for
  like: episodes/s against a plain PyAV decode of the SAME frames (`raw_keyframe_decode`: per
  episode, seek to its first frame, decode forward to its last keyframe and convert exactly the
  keyframes the Carve run decoded to RGB), `ratio_default_config` = Carve episodes/s / that.

The baselines use plain PyAV in the same process (`thread_type="AUTO"`, frames converted to
RGB arrays on one swscale thread each), with no Carve code involved in decoding (the keyframe
indices come from one untimed Carve run). A Ray Data run of the same episodes (one decode task at a time) is
reported separately so that the orchestration overhead is visible.

    python -m bench.bench_pipeline [--episodes 8] [--frames 150] [--source DATASET]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


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


def carve_decode_segment(refs: list[Any], use_visual: bool,
                         spans: dict[int, list[tuple[int, int]]] | None = None) -> tuple[int, int]:
    """Run DecodeSegment over `refs`; (episodes, events). With `spans`, record each episode's
    event spans (start_frame, end_frame) in it."""
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
        if spans is not None:
            spans[r.episode_index] = list(zip(out.column("start_frame").to_pylist(),
                                              out.column("end_frame").to_pylist(), strict=True))
    return len(refs), events


def keyframe_plan(src_path: Path, refs: list[Any], spans: dict[int, list[tuple[int, int]]]) -> list[tuple[str, float, float, list[int]]]:
    """(video file, episode start in it (s), fps, sorted keyframe indices) per episode and camera:
    the frames the default config decodes (start, middle and last frame of every event)."""
    from carve.ingest.events import keyframe_indices

    plan = []
    for r in refs:
        wanted = sorted({i for s, e in spans[r.episode_index] for i in keyframe_indices(s, e)})
        for v in (r.locator.get("videos") or {}).values():
            plan.append((str(src_path / v["path"]), float(v.get("from_ts", 0.0)), float(r.locator["fps"]), wanted))
    return plan


def raw_keyframe_decode(plan: Sequence[tuple[Any, ...]],
                        on_frame: Callable[[tuple[Any, ...], int, np.ndarray], None] | None = None) -> int:
    """Plain PyAV: per episode (plan items `(video, start s, fps, sorted frame indices, ...)`), seek
    to its start, decode forward to its last planned frame, convert exactly the planned frames to
    RGB (each handed to `on_frame(item, index, rgb)` when given); returns the frames converted. A
    file holding several episodes in a row (LeRobot v3.0) is opened once for them, as Carve's
    pooled reader does."""
    from itertools import groupby

    import av

    from carve.ingest.video import conversion_kwargs

    kw = conversion_kwargs()  # one swscale thread per conversion, as bench_decode.raw_pyav_decode
    n = 0
    for path, items in groupby(plan, key=lambda p: p[0]):
        with av.open(path) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for item in items:
                from_ts, fps, wanted = item[1], item[2], item[3]
                want, last = set(wanted), wanted[-1]
                c.seek(int(from_ts / s.time_base), stream=s, backward=True, any_frame=False)
                for frame in c.decode(s):
                    i = round((frame.time - from_ts) * fps)
                    if i in want:
                        rgb = frame.to_ndarray(format="rgb24", **kw)
                        n += 1
                        if on_frame is not None:
                            on_frame(item, i, rgb)
                    if i >= last:
                        break
    return n


def ray_data_run(refs: list[Any]) -> float:
    from carve.core.config import RayConfig, SegmentConfig, SourceConfig
    from carve.pipeline.executor import RayExecutor, StepSpec
    from carve.pipeline.ray_env import ensure_ray
    from carve.pipeline.steps import DecodeSegment

    cfg = RayConfig(num_cpus=2, object_store_memory_mb=256, progress=False)
    ensure_ray(cfg)
    t0 = time.perf_counter()
    spec = StepSpec(DecodeSegment, {"seg_cfg": SegmentConfig(use_visual=True), "src_cfg": SourceConfig()},
                    concurrency=1)
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
        spans: dict[int, list[tuple[int, int]]] = {}
        carve_decode_segment(refs, use_visual=False, spans=spans)  # which keyframes the default config decodes
        plan = keyframe_plan(src_path, refs, spans)
        n_keyframes = sum(len(w) for *_, w in plan)
        best: dict[str, float] = {k: float("inf") for k in ("raw", "full", "raw_keyframes", "default")}
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
            got = raw_keyframe_decode(plan)
            best["raw_keyframes"] = min(best["raw_keyframes"], time.perf_counter() - t0)
            if got != n_keyframes:
                raise RuntimeError(f"plain PyAV decoded {got} of the {n_keyframes} planned keyframes")
            t0 = time.perf_counter()
            carve_decode_segment(refs, use_visual=False)
            best["default"] = min(best["default"], time.perf_counter() - t0)
        frames = n_raw  # every frame of every episode (one camera)
        n_eps = len(refs)
        res: dict[str, Any] = {
            "description": "decode+segment (one worker) vs plain PyAV: frames/s with every frame decoded (ratio), "
                           "episodes/s of the default config vs a plain decode of the same keyframes "
                           "(ratio_default_config)",
            "command": "python -m bench.bench_pipeline" + (f" --source {args.source}" if args.source else ""),
            "episodes": n_eps,
            "frames": frames,
            "events": n_events,
            "keyframes_decoded": n_keyframes,
            "raw_decode_fps": frames / best["raw"],
            "carve_full_decode_segment_fps": frames / best["full"],
            "ratio": best["raw"] / best["full"],
            "raw_keyframe_decode_episodes_s": n_eps / best["raw_keyframes"],
            "carve_default_config_episodes_s": n_eps / best["default"],
            "ratio_default_config": best["raw_keyframes"] / best["default"],
        }
        if not args.no_ray:
            res["ray_data_1_worker_fps"] = frames / ray_data_run(refs)
    return res


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
