"""The whole pipeline at scale: `carve run` (ingest to shards) against a plain PyAV decode.

Issue 12's benchmark. On one simulated LeRobot dataset of >= 1,000 episodes (make it with
`carve synth --out D --episodes 1000 --style blended --fps 30 --cameras 1 --noise 0.5`), in
one process and one session:

* `raw_decode`: plain PyAV decodes every frame of every video of the dataset to RGB (threaded,
  the same baseline as bench_decode) — the work any video pipeline must at least do;
* `carve run` as shipped (`ray.executor=auto`, pipeline/choose.py), ingest to shards:
  decode+segment, caption, embed (MiniLM), write parts, catalog, cluster, shard cut. Run as a
  subprocess of the real CLI, on the first `--small` episodes and on all of them, each into a
  fresh root; timed as a whole process (wall, start-up included; `bench_run_small.timed`), with
  the peak RSS of the driver, of the largest worker and of the whole process tree;
* the same stages in one process (`--executor local`) and on Ray with one CPU (`--executor ray
  --set ray.num_cpus=1`), `--repeats` times interleaved: the Ray overhead, like for like (one
  worker each), median with min and max.

Reported: frames/s of each; `ratio` = carve frames/s (whole process) / raw decode frames/s
(target >= 0.3); `ray_overhead_*` = Ray (1 CPU) wall / in-process wall - 1 on every episode
(target <= 0.30; `--overhead-at small` measures it on the subset);
`rss_ratio` = driver peak RSS at all episodes / at `--small` (target <= 1.3); part files vs
episodes (target >= 10x fewer).

    python -m bench.scale_pipeline --source D [--small 250] [--skip-overhead] [--out bench/out/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNNER = r"""
import json, sys, time
from carve.cli.main import main
t0 = time.perf_counter()
code = main(sys.argv[1:])
secs = time.perf_counter() - t0
hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1]) * 1024
print("SCALE_RESULT " + json.dumps({"code": code, "seconds": secs, "driver_peak_rss": hwm}), flush=True)
sys.exit(code)
"""


def raw_decode(paths: list[Path]) -> int:
    from bench.bench_decode import raw_pyav_decode

    return raw_pyav_decode(paths)


def subset_source(src: Path, n: int, out: Path) -> Path:
    """The first `n` episodes of a LeRobot v3.0 dataset as a dataset of its own (meta rewritten,
    data and video files hard-linked: the same bytes, no re-encode)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.mkdir(parents=True)
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if p.is_dir():
            (out / rel).mkdir(parents=True, exist_ok=True)
        elif rel.parts[0] == "meta" and rel.parts[1] == "episodes":
            t = pq.read_table(p)
            pq.write_table(t.filter(pc.less(t["episode_index"], n)), out / rel)
        elif rel.name == "info.json":
            info = json.loads(p.read_text())
            info["total_episodes"] = n
            (out / rel).write_text(json.dumps(info))
        else:
            os.link(p, out / rel)
    return out


def carve_run(source: Path, root: Path, extra: list[str]) -> dict[str, Any]:
    """`carve run --source --root` in a subprocess: its seconds inside the process (imports
    excluded), the whole process's wall time (`wall`, start-up included), the driver's peak RSS
    and the peak RSS of the largest worker and of the whole process tree (bench_run_small.timed)."""
    from bench.bench_run_small import timed

    cmd = [sys.executable, "-c", RUNNER, "run", "--source", str(source), "--root", str(root), *extra]
    wall, out, peaks = timed(cmd)
    line = next((ln for ln in out.splitlines() if ln.startswith("SCALE_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"carve run printed no result: {out[-3000:]}")
    res = json.loads(line[len("SCALE_RESULT "):])
    res.update({"wall": wall, "largest_worker_rss": peaks["largest_worker_mb"] * 2**20,
                "tree_rss": peaks["tree_mb"] * 2**20})
    parts = list((root / "events").rglob("*.parquet"))
    res["part_files"] = len(parts)
    return res


def frames_of(source: Path) -> int:
    import pyarrow.parquet as pq

    return sum(int(sum(pq.read_table(p, columns=["length"]).column("length").to_pylist()))
               for p in (source / "meta" / "episodes").rglob("*.parquet"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="a LeRobot v3.0 dataset of >= 1,000 episodes")
    ap.add_argument("--small", type=int, default=250, help="episodes of the small run (RSS, overhead)")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--overhead-at", choices=["all", "small"], default="all",
                    help="measure the Ray overhead on every episode (default) or on the --small subset")
    ap.add_argument("--only-overhead", action="store_true", help="skip the decode baseline and the two runs")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved in-process / Ray runs for the overhead")
    ap.add_argument("--out", default=None, help="write the JSON result here too")
    args = ap.parse_args(argv)
    src = Path(args.source).resolve()
    info = json.loads((src / "meta" / "info.json").read_text())
    n_all = int(info["total_episodes"])
    videos = sorted(src.glob("videos/**/*.mp4"))
    with tempfile.TemporaryDirectory(prefix="carve-scale-") as tmp:
        small = subset_source(src, args.small, Path(tmp) / "small")
        res: dict[str, Any] = {}
        if not args.only_overhead:
            raw_decode(videos)  # warm the page cache and the codec
            t0 = time.perf_counter()
            n_raw = raw_decode(videos)
            t_raw = time.perf_counter() - t0
            frames_all = frames_of(src)
            big = carve_run(src, Path(tmp) / "root-all", [])
            little = carve_run(small, Path(tmp) / "root-small", [])
            res.update({
                "description": "carve run (ingest to shards, shipped config, embedded Ray) vs plain PyAV decode "
                               "of every frame of the same videos; Ray overhead and driver RSS",
                "command": f"python -m bench.scale_pipeline --source D --small {args.small}  "
                           f"(D: carve synth --episodes {n_all} --style blended --fps 30 --cameras 1 --noise 0.5)",
                "episodes": n_all,
                "frames": frames_all,
                "decoded_frames": n_raw,
                "raw_decode_fps": n_raw / t_raw,
                "carve_run_seconds": big["seconds"],
                "carve_run_wall_seconds": big["wall"],
                "carve_run_fps": frames_all / big["wall"],
                "ratio": (frames_all / big["wall"]) / (n_raw / t_raw),
                "ratio_imports_excluded": (frames_all / big["seconds"]) / (n_raw / t_raw),
                "largest_worker_peak_rss_mb": big["largest_worker_rss"] / 2**20,
                "process_tree_peak_rss_mb": big["tree_rss"] / 2**20,
                "part_files": big["part_files"],
                "episodes_per_part_file": n_all / max(big["part_files"], 1),
                "driver_peak_rss_mb_all": big["driver_peak_rss"] / 2**20,
                f"driver_peak_rss_mb_{args.small}": little["driver_peak_rss"] / 2**20,
                "rss_ratio": big["driver_peak_rss"] / max(little["driver_peak_rss"], 1),
                f"carve_run_seconds_{args.small}": little["seconds"],
            })
        if not args.skip_overhead:
            import statistics

            on, tag = (src, "all") if args.overhead_at == "all" else (small, str(args.small))
            local, ray1 = [], []
            for i in range(args.repeats):  # interleaved: a load change touches both alike
                local.append(carve_run(on, Path(tmp) / f"root-local-{i}", ["--executor", "local"])["wall"])
                ray1.append(carve_run(on, Path(tmp) / f"root-ray1-{i}",
                                      ["--executor", "ray", "--set", "ray.num_cpus=1"])["wall"])
            over = [r / a - 1.0 for r, a in zip(ray1, local, strict=True)]
            res.update({
                f"overhead_episodes_{tag}": n_all if tag == "all" else args.small,
                "in_process_wall_seconds_median": statistics.median(local),
                "ray_1cpu_wall_seconds_median": statistics.median(ray1),
                "ray_overhead_median": statistics.median(over),
                "ray_overhead_min": min(over),
                "ray_overhead_max": max(over),
                "in_process_fps": frames_of(on) / statistics.median(local),
            })
            if args.only_overhead:
                two = carve_run(on, Path(tmp) / "root-ray2", ["--executor", "ray"])
                res["ray_default_wall_seconds"] = two["wall"]
                res["ray_default_vs_in_process"] = two["wall"] / statistics.median(local) - 1.0
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
