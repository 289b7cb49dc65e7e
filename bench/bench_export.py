"""Export throughput: `carve export --format lerobot` vs a plain PyAV decode+encode of the same frames.

Writes a small LeRobot v3.0 dataset (textured moving frames, several episodes per mp4, H.264),
runs the pipeline over it once (embedded Ray, no text embedder) to get a shards version, then,
in the same process:

* Carve: `export_lerobot(unit="episode", video="reencode")`, the whole export: planning, loading
  and checking every episode, decoding, re-encoding (`--codec`, the exporter's settings),
  the data/meta files, stats and the PSNR check;
* plain PyAV: every source mp4 decoded (threaded) and encoded with the same encoder, options,
  pixel format and fps, frame by frame, into one mp4 per source file;

and reports frames/s of each and `ratio` = carve / pyav (target >= 0.7). Also reported: the
stream-copy export of the same version (`copy_fps`; H.264 sources, whole episodes).
Run: `python -m bench.bench_export [--episodes 6 --frames 150 --size 224 --codec av1 --repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def raw_pyav_transcode(paths: list[Path], out_dir: Path, encoder: str, fps: int) -> int:
    """Decode every frame of every file and encode it with plain PyAV (same codec settings)."""
    from fractions import Fraction

    import av

    from carve.export.video import encoder_options

    n = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        with av.open(str(p)) as src, av.open(str(out_dir / f"{i}.mp4"), "w") as dst:
            s = src.streams.video[0]
            s.thread_type = "AUTO"
            o = dst.add_stream(encoder, rate=fps, options=encoder_options(encoder))
            o.width, o.height, o.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv420p"
            o.codec_context.time_base = Fraction(1, fps)
            for k, frame in enumerate(src.decode(s)):
                frame.pts, frame.time_base = k, Fraction(1, fps)
                frame.pict_type = av.video.frame.PictureType.NONE
                for pkt in o.encode(frame):
                    dst.mux(pkt)
                n += 1
            for pkt in o.encode():
                dst.mux(pkt)
    return n


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--codec", default="av1", choices=["av1", "h264"])
    ap.add_argument("--episodes-per-file", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    from bench.bench_decode import textured_episodes
    from carve.core.config import CarveConfig
    from carve.export.lerobot import export_lerobot
    from carve.export.video import pick_encoder
    from carve.pipeline.run import run_pipeline
    from carve.sim.formats import INDEX_ACTION_NAMES, INDEX_STATE_NAMES
    from carve.sim.lerobot_writer import write_lerobot_dataset

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1's banner, for both paths
    fps = 15
    encoder = pick_encoder(args.codec)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_lerobot_dataset(
            Path(tmp) / "ds", textured_episodes(args.episodes, args.frames, args.size), fps=fps,
            state_names=INDEX_STATE_NAMES, action_names=INDEX_ACTION_NAMES, codec="h264",
            episodes_per_file=args.episodes_per_file,
        )
        root = Path(tmp) / "root"
        cfg = CarveConfig().with_overrides({
            "root": str(root), "source": {"uri": str(src), "format": "lerobot"},
            "ray": {"num_cpus": 2, "object_store_memory_mb": 256, "progress": False}, "embed": {"text": "none"},
        })
        s = run_pipeline(cfg)
        if s.shards_version is None or s.episodes_failed:
            raise RuntimeError(f"pipeline did not produce a shards version: {s.as_dict()}")
        videos = sorted(src.glob("videos/**/*.mp4"))
        best = {"pyav": float("inf"), "carve": float("inf"), "copy": float("inf")}
        n_raw = n_carve = n_copy = 0
        psnr_min = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n_raw = raw_pyav_transcode(videos, Path(tmp) / "raw", encoder, fps)
            best["pyav"] = min(best["pyav"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = export_lerobot(root, Path(tmp) / "out", unit="episode", codec=args.codec, video="reencode",
                               overwrite=True)
            best["carve"] = min(best["carve"], time.perf_counter() - t0)
            n_carve, psnr_min = r.frames, r.psnr_min_db
            t0 = time.perf_counter()
            c = export_lerobot(root, Path(tmp) / "copy", unit="episode", overwrite=True)
            best["copy"] = min(best["copy"], time.perf_counter() - t0)
            n_copy = c.frames
    res = {
        "description": "frames/s exporting a shards version to LeRobot v3.0 (re-encode) vs plain PyAV "
                       "decode+encode of the same frames",
        "command": "python -m bench.bench_export " + " ".join(argv or []),
        "episodes": args.episodes,
        "frames_carve": n_carve,
        "frames_pyav": n_raw,
        "size": args.size,
        "encoder": encoder,
        "carve_fps": round(n_carve / best["carve"], 1),
        "pyav_fps": round(n_raw / best["pyav"], 1),
        "copy_fps": round(n_copy / best["copy"], 1),
        "psnr_min_db": round(psnr_min, 2) if psnr_min is not None else None,
    }
    res["ratio"] = round(res["carve_fps"] / res["pyav_fps"], 3)
    print(json.dumps(res, indent=2))
    print(f"| export ({encoder}, {args.size}px, {n_carve} frames) | {res['carve_fps']} | {res['pyav_fps']} | "
          f"{res['ratio']} | copy {res['copy_fps']} fps, PSNR min {res['psnr_min_db']} dB |")
    return res


if __name__ == "__main__":
    main()
