"""A small `carve run`, whole process, against two plain baselines run the same way (issue 22).

On one simulated dataset (`carve synth --episodes 240 --workers 2`, short episodes), each
measured as a whole process (`python ...` from spawn to exit: interpreter start-up, imports and
everything the process does), interleaved `--repeats` times (default 3) so that a load change on
a shared machine touches every variant alike:

* `raw_all`: plain PyAV decodes every frame of every video to RGB (threaded), in a process of
  its own (`python -m bench.bench_run_small --decode-all D`);
* `raw_same`: plain PyAV decodes exactly the frames of the run's configuration (the event
  keyframes, start/middle/last of each event, and the quality check's sample frames, every
  `check.video_sample_s`), seeking to each episode and decoding forward, then reads the run's
  event Parquet parts: the same input and output work as Carve with no Carve code;
* `raw_all_cores` / `raw_same_cores`: the same two baselines at their best on this machine, the
  files (episodes) dealt to one process per usable core: on short 128-px videos the single
  process leaves a core idle (PyAV's threads get little to do), so `raw_all` alone flatters Carve;
* `raw_floor_cores`: the floor of the run's own output work, at its best (one process per usable
  core): the decode of `raw_same`, each event keyframe resized and JPEG-encoded as the run writes
  it (PIL), the run's distinct captions through MiniLM once (its leanest implementation at hand,
  torch's import included), and the run's event parts and shards written again (pyarrow, zstd;
  the seconds spent reading them back are taken off the wall time, all of them). Every other
  piece of the run (segmentation, quality check, captions, visual descriptors, clustering, dedup,
  catalog, start-up beyond those libraries') counts as free, so no implementation writing the
  same outputs can beat it: `ceiling` = raw_all / raw_floor_cores is the highest `ratio` any could
  reach, `ceiling_same` the highest `ratio_same`, `ceiling_all_cores` the highest
  `ratio_all_cores`;
* `carve_auto`: `carve run --source D --root R` as shipped (`ray.executor=auto`: without Ray for
  a run this small, pipeline/choose.py; the decode in one forked child, pipeline/ahead.py);
* `carve_ray`: the same with `--executor ray` (embedded Ray on this machine's CPUs).

Reported: medians (min, max) of each; `ratio` = raw_all seconds / carve_auto seconds (frames/s
of Carve over frames/s of the decode of every frame: same frames counted in both); `ratio_same`
= raw_same seconds / carve_auto seconds; `ratio_all_cores` / `ratio_same_cores` the same against
the all-cores baselines; `ray_overhead` = carve_ray / carve_auto - 1 per round,
median (min, max); the per-step seconds of the last auto run; peak RSS of the driver, of the
largest worker process (Ray's workers, raylet and GCS are the driver's descendants) and of the
whole process tree (sampled every 0.1 s from /proc).

With `--ray-head` Ray also runs the way a cluster user has it: a head started once, before the
rounds (`ray start --head --block` on 127.0.0.2 with this machine's CPUs, its idle workers kept a
minute as docs/CLUSTER.md's `ray start`, token authentication as Ray sets it up), and each round's
`carve_ray_head` joins it (`--ray-address`): no Ray start-up per run, but a new job each time
(Ray's workers belong to a job, so each run starts its own); `ray_head_overhead` = carve_ray_head /
carve_auto - 1 per round.

With `--before OTHER/src` another carve (a worktree of main, say) runs as one more variant
(`carve_before`, as shipped), and with `--before-ray` also on Ray (`carve_before_ray`; its Ray
overhead over its own in-process run, `ray_overhead_before`).

    python -m bench.bench_run_small [--source D | --episodes 240] [--repeats 3] [--ray-head]
                                    [--before OTHER/src [--before-ray]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import stop

ROOT = Path(__file__).resolve().parent.parent


# -- process-tree memory -------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the process tree under `pid`: each process's VmHWM (its own peak) and the tree's
    summed VmRSS, every `every` seconds, until stopped."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.hwm_kb: dict[int, int] = {}
        self.tree_peak_kb = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            kids, todo, tree = _children(), [self.pid], []
            while todo:
                p = todo.pop()
                tree.append(p)
                todo += kids.get(p, [])
            self.tree_peak_kb = max(self.tree_peak_kb, sum(_status_kb(p, "VmRSS") for p in tree))
            for p in tree:
                self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), _status_kb(p, "VmHWM"))
            self._halt.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        workers = [v for p, v in self.hwm_kb.items() if p != self.pid]
        return {"driver_mb": self.hwm_kb.get(self.pid, 0) / 1024, "largest_worker_mb": max(workers, default=0) / 1024,
                "tree_mb": self.tree_peak_kb / 1024, "processes": len(self.hwm_kb)}


def timed(cmd: list[str], src: Path = ROOT / "src") -> tuple[float, str, dict[str, float]]:
    """Run `cmd` as a process (with carve from `src`): (wall seconds from spawn to exit, its stdout,
    its tree's peak memory)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    mem = TreeMemory(proc.pid)
    mem.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    peaks = mem.stop()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-3000:]}")
    return wall, out, peaks


# -- the baselines, each run in a process of its own ------------------------------------------
def decode_all(source: Path) -> int:
    from bench.bench_decode import raw_pyav_decode

    return raw_pyav_decode(sorted(source.glob("videos/**/*.mp4")))


def _shares(items: list[Any], weights: list[float], n: int) -> list[list[Any]]:
    """`items` dealt to `n` workers, heaviest first to the lightest share (greedy balance)."""
    shares: list[list[Any]] = [[] for _ in range(n)]
    load = [0.0] * n
    for w, item in sorted(zip(weights, items, strict=True), key=lambda p: -p[0]):
        k = load.index(min(load))
        shares[k].append(item)
        load[k] += w
    return [s for s in shares if s]


def decode_all_cores(source: Path) -> int:
    """`decode_all` at its best on this machine: the files dealt by size to one process per usable
    core (the single-process decode leaves a core idle: 128-px frames give PyAV's threads little)."""
    from concurrent.futures import ProcessPoolExecutor

    from bench.bench_decode import raw_pyav_decode

    paths = sorted(source.glob("videos/**/*.mp4"))
    shares = _shares(paths, [p.stat().st_size for p in paths], len(os.sched_getaffinity(0)))
    with ProcessPoolExecutor(max_workers=len(shares)) as pool:
        return sum(pool.map(raw_pyav_decode, shares))


def _read_parts(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.read_table(path).num_rows


def decode_same_cores(plan_file: Path, root: Path) -> int:
    """`decode_same` at its best: the planned episodes dealt by frames to one process per usable
    core, and the event parts read on them too."""
    from concurrent.futures import ProcessPoolExecutor

    from bench.bench_pipeline import raw_keyframe_decode

    plan = [tuple(p) for p in json.loads(plan_file.read_text())]
    cores = len(os.sched_getaffinity(0))
    shares = _shares(plan, [float(p[3][-1] + 1) for p in plan], cores)  # frames decoded forward
    parts = [str(p) for p in sorted((root / "events").glob("**/*.parquet"))]
    with ProcessPoolExecutor(max_workers=len(shares)) as pool:
        n = sum(pool.map(raw_keyframe_decode, shares))
        sum(pool.map(_read_parts, parts))
    return n


def frames_plan(source: Path, root: Path) -> list[tuple[str, float, float, list[int], list[int]]]:
    """(video, episode start in it (s), fps, sorted frame indices, sorted event keyframes) per
    episode and camera: the frames the run in `root` decodes (its event keyframes and the quality
    check's samples), then the keyframes alone (the frames it writes as JPEG); computed, not timed."""
    import pyarrow.parquet as pq

    from carve.core.config import CheckConfig
    from carve.ingest.events import keyframe_indices
    from carve.ingest.sources import open_source
    from carve.quality.video import sample_indices

    t = pq.read_table(root / "events", columns=["episode_index", "start_frame", "end_frame"])
    keys: dict[int, set[int]] = {}
    for e, s, f in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True):
        keys.setdefault(e, set()).update(keyframe_indices(s, f))
    check = CheckConfig()
    plan = []
    for r in open_source(str(source)).list_episodes():
        fps, n = float(r.locator["fps"]), int(r.locator["length"])
        mine = keys.get(r.episode_index, set())
        wanted = mine | (set(sample_indices(n, fps, check).tolist()) if check.in_run else set())
        for v in (r.locator.get("videos") or {}).values():
            plan.append((str(source / v["path"]), float(v.get("from_ts", 0.0)), fps, sorted(wanted), sorted(mine)))
    return plan


def decode_same(plan_file: Path, root: Path) -> int:
    """Plain PyAV over the planned frames, then a read of the run's event parts."""
    import pyarrow.parquet as pq

    from bench.bench_pipeline import raw_keyframe_decode

    plan = [tuple(p) for p in json.loads(plan_file.read_text())]
    n = raw_keyframe_decode(plan)  # type: ignore[arg-type]
    pq.read_table(root / "events")
    return n


# -- the floor: the output work any implementation of the run must do, in plain libraries -------
def floor_decode(plan: list[tuple[str, float, float, list[int], list[int]]]) -> int:
    """`bench_pipeline.raw_keyframe_decode`'s decode of the planned frames, with each event keyframe
    (an item's fifth entry) resized to the run's short side and JPEG-encoded at its quality, as the
    run's keyframes are (`ingest.events.encode_jpeg`: PIL); returns the frames converted."""
    import numpy as np

    from bench.bench_pipeline import raw_keyframe_decode
    from carve.core.config import SegmentConfig
    from carve.ingest.events import encode_jpeg

    seg = SegmentConfig()

    def jpeg(item: tuple[Any, ...], i: int, rgb: np.ndarray) -> None:
        if i in item[4]:
            encode_jpeg(rgb, seg.keyframe_size, seg.keyframe_quality)

    return raw_keyframe_decode([(*p[:4], frozenset(p[4])) for p in plan], on_frame=jpeg)


def _rewrite_part(paths: tuple[str, str]) -> float:
    """Read one Parquet file of the run and write it again (pyarrow, zstd); returns the seconds the
    read took (the run holds its rows in memory: `floor_cores` takes them off)."""
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    table = pq.read_table(paths[0])
    read_s = time.perf_counter() - t0
    pq.write_table(table, paths[1], compression="zstd")
    return read_s


def floor_texts(events: str) -> tuple[int, float]:
    """The run's text vectors: each distinct caption of its events through all-MiniLM-L6-v2 once,
    on one torch thread, with the leanest implementation at hand (`carve.embedding.minilm`, plain
    torch; importing torch and reading the weights included); returns (the texts encoded, the
    seconds reading the captions took)."""
    import pyarrow.parquet as pq
    import torch

    from carve.embedding.embedders import minilm_path
    from carve.embedding.minilm import LeanMiniLM

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    texts = sorted({c for c in pq.read_table(events, columns=["caption"]).column("caption").to_pylist() if c})
    read_s = time.perf_counter() - t0
    LeanMiniLM.load(minilm_path()).encode_many(texts)
    return len(texts), read_s


def floor_cores(plan_file: Path, root: Path) -> tuple[int, float]:
    """The floor of a run's work (`raw_floor_cores`), at its best on this machine, in processes of
    one pool of one per usable core: the run's text vectors (`floor_texts`), `floor_decode` over
    the planned episodes (in shares by frames, two per core, so the pool balances them), and the
    Parquet the run must write, its event parts and its shards (each read, then written again with
    pyarrow, zstd). No segmentation, quality check, caption, visual descriptor, clustering, dedup or
    catalog: everything else Carve does counts as free. Returns (frames converted, seconds spent
    reading the Parquet back). The run holds those rows in memory, so the bench takes the reads off
    the floor's wall time, all of it as if no read overlapped other work: a lower bound, so no
    implementation of the run can be faster."""
    from concurrent.futures import ProcessPoolExecutor

    plan = [tuple(p) for p in json.loads(plan_file.read_text())]
    cores = len(os.sched_getaffinity(0))
    shares = _shares(plan, [float(p[3][-1] + 1) for p in plan], 2 * cores)
    parts = sorted((root / "events").glob("**/*.parquet")) + sorted((root / "shards").glob("**/*.parquet"))
    with tempfile.TemporaryDirectory(prefix="carve-floor-") as out, \
            ProcessPoolExecutor(max_workers=cores) as pool:
        texts = pool.submit(floor_texts, str(root / "events"))
        n = sum(pool.map(floor_decode, shares))
        read_s = sum(pool.map(_rewrite_part, [(str(p), f"{out}/{k}.parquet") for k, p in enumerate(parts)]))
    return n, read_s + texts.result()[1]


def _json_of(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    start = lines.index("{")
    return json.loads("\n".join(lines[start:]))


def ray_head(work: Path, cpus: int) -> tuple[subprocess.Popen[bytes], str]:
    """A Ray head of `cpus` CPUs started once (`ray start --head --block`, loopback only), its idle
    workers kept a minute as docs/CLUSTER.md starts one; (process, GCS address) once it answers."""
    import socket

    from carve.sim.service_fakes import free_port

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "RAY_idle_worker_killing_time_threshold_ms": "60000", "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).with_name("ray"))
    with open(work / "ray-head.log", "w") as log:  # the head writes to its own copy of the descriptor
        p = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address=127.0.0.2", f"--port={port}",
                              f"--num-cpus={cpus}", "--object-store-memory=536870912", "--include-dashboard=false",
                              f"--temp-dir={work / 'ray-head'}", f"--ray-client-server-port={free_port()}",
                              f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.2", port), timeout=1).close()
            break
        except OSError:
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the Ray head did not start: {(work / 'ray-head.log').read_text()[-2000:]}") from None
            time.sleep(0.5)
    time.sleep(3.0)  # the head's raylet registers after its GCS answers
    return p, f"127.0.0.2:{port}"


def _stat(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=None, help="an existing dataset (else one is simulated)")
    ap.add_argument("--episodes", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", type=Path, default=None,
                    help="the src/ folder of another carve (e.g. main's) to run as one more variant, carve_before")
    ap.add_argument("--before-ray", action="store_true",
                    help="with --before: also run it with --executor ray (carve_before_ray)")
    ap.add_argument("--ray-head", action="store_true",
                    help="also run on a Ray head started once before the rounds (carve_ray_head)")
    ap.add_argument("--decode-all", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--decode-same", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--all-cores", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--floor", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.decode_all:
        print((decode_all_cores if args.all_cores else decode_all)(args.decode_all))
        return {}
    if args.floor:
        n, read_s = floor_cores(*args.floor)
        print(f"{read_s:.4f} {n}")
        return {}
    if args.decode_same:
        print((decode_same_cores if args.all_cores else decode_same)(*args.decode_same))
        return {}
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="carve-small-") as tmp:
        work = Path(tmp)
        source = args.source
        if source is None:
            source = work / "synth"
            subprocess.run([py, "-m", "carve", "synth", "--out", str(source), "--episodes", str(args.episodes),
                            "--workers", "2"], check=True, capture_output=True,
                           env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"})
        source = source.resolve()
        me = [py, "-m", "bench.bench_run_small"]
        timed([*me, "--decode-all", str(source)])  # warm the page cache and the codec
        variants: list[tuple[str, list[str], Path]] = [("carve_auto", [], ROOT / "src"),
                                                       ("carve_ray", ["--executor", "ray"], ROOT / "src")]
        head = None
        if args.ray_head:
            head, address = ray_head(work, len(os.sched_getaffinity(0)))
            variants.append(("carve_ray_head", ["--ray-address", address], ROOT / "src"))
        if args.before:
            variants.append(("carve_before", [], args.before.resolve()))
            if args.before_ray:
                variants.append(("carve_before_ray", ["--executor", "ray"], args.before.resolve()))
        runs: dict[str, list[float]] = {k: [] for k in ("raw_all", "raw_same", "raw_all_cores", "raw_same_cores",
                                                        "raw_floor_cores",
                                                        *(v[0] for v in variants))}
        mem: dict[str, dict[str, float]] = {}
        floor_reads: list[float] = []  # seconds the floor spent reading the run's Parquet back
        frames = decoded_same = 0
        summary: dict[str, Any] = {}
        try:
            for i in range(args.repeats):
                wall, out, _ = timed([*me, "--decode-all", str(source)])
                runs["raw_all"].append(wall)
                frames = int(out.split()[-1])
                wall, out, _ = timed([*me, "--decode-all", str(source), "--all-cores"])
                runs["raw_all_cores"].append(wall)
                if int(out.split()[-1]) != frames:
                    raise RuntimeError(f"the all-cores decode decoded {out.split()[-1]} frames, not {frames}")
                for variant, extra, src in variants:
                    root = work / f"root-{variant}-{i}"
                    wall, out, peaks = timed([py, "-m", "carve", "run", "--source", str(source), "--root", str(root),
                                              "--json", "--set", "ray.progress=false", *extra], src)
                    runs[variant].append(wall)
                    mem[variant] = peaks
                    if variant == "carve_auto":
                        summary = _json_of(out)
                        # one plan: the baselines' files (video, start, fps, frames), the floor's with the keyframes
                        plan = frames_plan(source, root)
                        plan_file, floor_file = work / "plan.json", work / "floor.json"
                        plan_file.write_text(json.dumps([p[:4] for p in plan]))
                        floor_file.write_text(json.dumps(plan))
                        wall, out, _ = timed([*me, "--decode-same", str(plan_file), str(root)])
                        runs["raw_same"].append(wall)
                        decoded_same = int(out.split()[-1])
                        wall, out, _ = timed([*me, "--decode-same", str(plan_file), str(root), "--all-cores"])
                        runs["raw_same_cores"].append(wall)
                        if int(out.split()[-1]) != decoded_same:
                            raise RuntimeError(f"the all-cores planned decode decoded {out.split()[-1]} frames, "
                                               f"not {decoded_same}")
                        wall, out, _ = timed([*me, "--floor", str(floor_file), str(root)])
                        floor_reads.append(float(out.split()[-2]))
                        runs["raw_floor_cores"].append(wall - floor_reads[-1])  # less its reads
                        if int(out.split()[-1]) != decoded_same:
                            raise RuntimeError(f"the floor decoded {out.split()[-1]} frames, not {decoded_same}")
        finally:
            if head is not None:
                stop([head], timeout=60)  # `ray start --block` stops the processes it started
        med = {k: statistics.median(v) for k, v in runs.items()}
        overhead = [r / a - 1.0 for r, a in zip(runs["carve_ray"], runs["carve_auto"], strict=True)]
        return {
            "description": "whole-process wall time of a small carve run (start-up included) vs a plain PyAV decode "
                           "of every frame (ratio) and vs a plain decode of the same frames plus a read of the same "
                           f"Parquet (ratio_same); {args.repeats} interleaved rounds, medians (min, max)",
            "command": f"python -m bench.bench_run_small --repeats {args.repeats}"
                       + (f" --source {args.source}" if args.source else f" --episodes {args.episodes}")
                       + (" --ray-head" if args.ray_head else ""),
            "cpus": len(os.sched_getaffinity(0)),
            "load_average_1m_at_end": os.getloadavg()[0],
            "episodes": summary.get("episodes_total"),
            "events": summary.get("events"),
            "frames": frames,
            "frames_decoded_same": decoded_same,
            "executor_auto_chose": summary.get("executor"),
            "raw_all_s": _stat(runs["raw_all"]),
            "raw_same_s": _stat(runs["raw_same"]),
            "carve_auto_s": _stat(runs["carve_auto"]),
            "carve_ray_s": _stat(runs["carve_ray"]),
            "raw_all_fps": frames / med["raw_all"],
            "carve_auto_fps": frames / med["carve_auto"],
            "ratio": med["raw_all"] / med["carve_auto"],
            "ratio_same": med["raw_same"] / med["carve_auto"],
            # the same two baselines at their best here, one process per usable core
            "raw_all_cores_s": _stat(runs["raw_all_cores"]),
            "raw_same_cores_s": _stat(runs["raw_same_cores"]),
            "ratio_all_cores": med["raw_all_cores"] / med["carve_auto"],
            "ratio_same_cores": med["raw_same_cores"] / med["carve_auto"],
            # the floor (`floor_cores`): the highest ratio any implementation of the run could reach
            "raw_floor_cores_s": _stat(runs["raw_floor_cores"]),
            "raw_floor_reads_s": _stat(floor_reads),
            "ceiling": med["raw_all"] / med["raw_floor_cores"],
            "ceiling_same": med["raw_same"] / med["raw_floor_cores"],
            "ceiling_all_cores": med["raw_all_cores"] / med["raw_floor_cores"],
            "ray_overhead": _stat(overhead),
            **({"carve_ray_head_s": _stat(runs["carve_ray_head"]),
                "ray_head_overhead": _stat([r / a - 1.0 for r, a in zip(runs["carve_ray_head"], runs["carve_auto"],
                                                                        strict=True)])} if args.ray_head else {}),
            "step_seconds_auto": {k: v.get("seconds") for k, v in (summary.get("stages") or {}).items()},
            **({"carve_before_s": _stat(runs["carve_before"]),
                "ratio_before": med["raw_all"] / med["carve_before"]} if args.before else {}),
            **({"carve_before_ray_s": _stat(runs["carve_before_ray"]),
                "ray_overhead_before": _stat([r / a - 1.0 for r, a in zip(runs["carve_before_ray"], runs["carve_before"],
                                                                          strict=True)]),
                "peak_rss_before_ray_mb": mem.get("carve_before_ray")} if args.before and args.before_ray else {}),
            "peak_rss_auto_mb": mem.get("carve_auto"),
            "peak_rss_ray_mb": mem.get("carve_ray"),
        }


if __name__ == "__main__":
    res = main()
    if res:
        print(json.dumps(res, indent=2))
