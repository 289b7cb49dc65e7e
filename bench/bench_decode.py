"""Decode throughput: Carve's episode reader vs plain PyAV on the same video files.

Writes a small LeRobot v3.0 dataset (several episodes packed per mp4, textured moving frames),
then, in the same process, decodes every frame of every episode

* through Carve: `open_source` -> `load_episode` (validation included) -> `Episode.frames()`;
* through plain PyAV: open each mp4, `thread_type="AUTO"`, decode all frames to RGB arrays (one
  swscale thread per conversion, as Carve's reader);

and reports frames/s of each and `ratio` = carve / pyav (1.0 = as fast as raw PyAV).
Run: `python -m bench.bench_decode [--episodes 6 --frames 150 --size 224 --codec h264 --backend auto]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def textured_episodes(n: int, frames: int, size: int, seed: int = 0) -> list[Any]:
    """Episodes whose frames are a noise texture scrolling sideways (not trivially compressible)."""
    from carve.sim.formats import index_episodes

    rng = np.random.default_rng(seed)
    eps = index_episodes([frames] * n, cameras=(), size=size)
    base = rng.integers(0, 256, size=(size, size * 2, 3), dtype=np.uint8)
    base = ((base.astype(np.uint16) + np.roll(base, 1, axis=0) + np.roll(base, 1, axis=1)) // 3).astype(np.uint8)
    for e, ep in enumerate(eps):
        shift = (np.arange(frames) * 2 + e * 7) % size
        ep.frames = {"observation.images.front": np.stack([base[:, s : s + size] for s in shift])}
    return eps


def raw_pyav_decode(paths: list[Path]) -> int:
    """Every frame of every file, decoded to RGB with plain PyAV (threaded decoder), at its best:
    one swscale thread per conversion (`carve.ingest.video.conversion_kwargs`; PyAV >= 17 otherwise
    starts and joins a thread per core on every frame, 5x slower on 128-px frames here)."""
    import av

    from carve.ingest.video import conversion_kwargs

    kw = conversion_kwargs()
    n = 0
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for frame in c.decode(s):
                frame.to_ndarray(format="rgb24", **kw)
                n += 1
    return n


def carve_decode(uri: str, backend: str) -> int:
    """Every frame of every episode through open_source/load_episode/Episode.frames."""
    from carve.ingest.sources import load_episode, open_source

    n = 0
    for ref in open_source(uri).list_episodes():
        ep = load_episode(ref, video_backend=backend)
        frames = ep.frames()
        if frames.shape[0] != ep.length:
            raise RuntimeError(f"{ref.label}: decoded {frames.shape[0]} of {ep.length} frames")
        n += frames.shape[0]
    return n


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--codec", default="h264", choices=["h264", "av1"])
    ap.add_argument("--backend", default="auto", choices=["auto", "pyav", "decord"])
    ap.add_argument("--episodes-per-file", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--source", default=None, help="benchmark an existing LeRobot dataset instead")
    args = ap.parse_args(argv)

    from carve.sim.formats import INDEX_ACTION_NAMES, INDEX_STATE_NAMES
    from carve.sim.lerobot_writer import write_lerobot_dataset

    with tempfile.TemporaryDirectory() as tmp:
        if args.source:
            root = Path(args.source)
        else:
            root = write_lerobot_dataset(
                Path(tmp) / "ds", textured_episodes(args.episodes, args.frames, args.size), fps=15,
                state_names=INDEX_STATE_NAMES, action_names=INDEX_ACTION_NAMES, codec=args.codec,
                episodes_per_file=args.episodes_per_file,
            )
        videos = sorted(root.glob("videos/**/*.mp4"))
        if args.source:  # one camera, like the Carve path (which decodes the first camera)
            first_cam = sorted({p.relative_to(root).parts[1] for p in videos})[0]
            videos = [p for p in videos if f"/{first_cam}/" in str(p)]
        raw_pyav_decode(videos)  # warm the page cache and codecs
        carve_decode(str(root), args.backend)
        best = {"pyav": float("inf"), "carve": float("inf")}
        n_raw = n_carve = 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n_raw = raw_pyav_decode(videos)
            best["pyav"] = min(best["pyav"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_carve = carve_decode(str(root), args.backend)
            best["carve"] = min(best["carve"], time.perf_counter() - t0)
    res = {
        "description": "frames/s decoding every frame of every episode: load_episode+Episode.frames vs plain PyAV",
        "command": "python -m bench.bench_decode " + " ".join(argv or []),
        "episodes": args.episodes if not args.source else None,
        "frames_carve": n_carve,
        "frames_pyav": n_raw,
        "size": args.size,
        "codec": args.codec,
        "backend": args.backend,
        "carve_fps": round(n_carve / best["carve"], 1),
        "pyav_fps": round(n_raw / best["pyav"], 1),
    }
    res["ratio"] = round(res["carve_fps"] / res["pyav_fps"], 3)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
