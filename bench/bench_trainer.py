"""Trainer throughput: the shard loader against a plain pyarrow read, its scaling over workers, training steps/s.

Data. Toy shards (`sim.toydata.write_toy_shards`, zstd, 512 rows per shard, row groups of 64).

Loader vs pyarrow (`ratio`). One epoch of `trainer.data.EventStream` in event view (batches of
64 padded tensors, shuffle buffer of 512 rows, in the main process) against a plain pyarrow read
doing the same reading: the same shards, the same columns (`samples.VIEW_COLUMNS["event"]`), every
row once, batches of 64 rows (`ParquetFile.iter_batches`) turned into tensors (`torch.from_numpy`
of each column's flat values, event ids as a list). The baseline does no shuffling or padding.
The two alternate for `--rounds` rounds; `ratio` is the median of the rounds' wall-clock ratios,
`cpu_ratio` the median ratio of the CPU time each spent (all threads of the process: the
loader's read-ahead thread counts), which other processes on the machine disturb far less.

Scaling. Steady-state events/s of `make_loader(stream, num_workers)` for 0, 1 and 2 workers (an
infinite stream; `--warmup` batches, then `--batches` timed: 2,000 by default, about a second, since 400 (0.15 s) let one scheduler hiccup move a round by 10%), interleaved for `--rounds` rounds,
medians reported, with the load average while it ran (other processes share the machine), and
the best round of each (the least disturbed: what the loader does when it has the cores).
Batches reach the main process through the workers' shared-memory rings (`trainer.shmring`) with
`default_prefetch` batches per worker, `default_group` batches per DataLoader message
(`trainer.groups`); in the same rounds, `workers_2_one_batch_per_message_events_per_s` is 2 workers
with the ring but one batch per message (`group_batches=1`), and
`workers_2_pipe_prefetch_2_events_per_s` 2 workers the way they ran before the ring (each batch
pickled through the DataLoader's pipe, one per message, prefetch 2).
`workers_cores_used` (medians) is the CPU the main process and its workers got during the timed
window over its wall time: 2 workers can only beat 1 by as much as they get more CPU, and on a
busy box they may not get more (with the kernel's autogroup scheduling, on on the development
box, CPU is shared between sessions, not processes), so it tells a loader that stalls (few cores
used while cores are free) from a machine that is busy. `cores_available` is the control: the
cores two busy-looping child processes get together for 0.5 s at the start of each round
(medians; 2.0 on an idle box): about the most 2 workers can get then, so `workers_2_over_1` stays
near or below it (the load changes within a round, so not strictly). The
main process's CPU time per event with 2 workers bounds what any number of workers can deliver
(`main_ceiling_events_per_s`); a worker's CPU time per event in steady state (1 worker: its CPU
over a run, less that of a run that only starts up and warms up) gives its throughput on a core of its own
(`per_worker_events_per_cpu_s`); `projected_16_cores_events_per_s` = min(15 x that, the ceiling):
one core for the main process, one per worker, nothing else running. `projected_2_cores_2_over_1`
is the same arithmetic for this machine with both cores free: 2 / (worker + main CPU time per event)
over the 1-worker rate.

Training. Steps/s of `trainer.train.train` for each mode on the same shards (CPU, d_model 64, 2
layers, batch 32, `--threads` torch threads), over the steps after a short warm-up window, and
steps per CPU-second of the whole run (less disturbed by other processes on the machine).

    python -m bench.bench_trainer [--episodes 3000] [--rounds 7] [--steps 60] [--threads 1] [--batches 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def _baseline(shards: list[str], columns: list[str]) -> tuple[int, float, float]:
    import torch

    c0, t0 = time.process_time(), time.perf_counter()
    n = 0
    for s in shards:
        for rb in pq.ParquetFile(s).iter_batches(batch_size=64, columns=columns):
            batch: dict[str, Any] = {"event_id": rb.column("event_id").to_pylist()}
            for name in ("action", "state"):
                batch[name] = torch.from_numpy(rb.column(name).flatten().flatten().to_numpy())
            for name in ("emb_visual", "emb_text", "end_emb_visual"):
                batch[name] = torch.from_numpy(rb.column(name).flatten().to_numpy())
            n += len(batch["event_id"])
    return n, time.perf_counter() - t0, time.process_time() - c0


def _cfg(workers: int) -> Any:
    from carve.trainer.config import DataConfig

    return DataConfig(batch_size=64, holdout_frac=0.0, shuffle_buffer=512, num_workers=workers)


def _epoch(manifest: Any) -> tuple[int, float, float]:
    from carve.trainer.data import EventStream, make_loader

    ds = EventStream(manifest, _cfg(0), view="event", split="all", infinite=False)
    c0, t0 = time.process_time(), time.perf_counter()
    n = sum(len(b["event_id"]) for b in make_loader(ds, 0))
    return n, time.perf_counter() - t0, time.process_time() - c0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _cores_available(seconds: float = 0.5) -> float:
    """Cores two busy-looping child processes get together right now: what 2 workers could get."""
    import multiprocessing as mp

    k0, t0 = _children_cpu(), time.perf_counter()
    procs = [mp.get_context("fork").Process(target=_spin, args=(seconds,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return (_children_cpu() - k0) / (time.perf_counter() - t0)


def _live_children_cpu() -> float:
    """CPU seconds so far of this process's live children (the loader's workers), from /proc."""
    me, tick, total = os.getpid(), os.sysconf("SC_CLK_TCK"), 0.0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                f = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[1]) == me:  # fields after the name: state, ppid, ..., utime (12), stime (13)
                total += (int(f[11]) + int(f[12])) / tick
    return total


def _steady(manifest: Any, workers: int, warmup: int, batches: int, **kw: Any) -> tuple[float, float, float, float]:
    """(events/s over `batches` batches after `warmup`, main-process CPU seconds per event then,
    the workers' CPU seconds per event served over their whole life: start-up and warm-up included,
    the cores the main process and its workers used in the timed window: CPU seconds / wall seconds);
    `kw` goes to `make_loader`."""
    from carve.trainer.data import EventStream, make_loader

    ds = EventStream(manifest, _cfg(workers), view="event", split="all", infinite=True)
    k0 = _children_cpu()
    it = iter(make_loader(ds, workers, **kw))
    for _ in range(warmup):
        next(it)
    w0, c0, t0 = _live_children_cpu(), time.process_time(), time.perf_counter()
    n = sum(len(next(it)["event_id"]) for _ in range(batches))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    wcpu = _live_children_cpu() - w0
    del it  # the workers exit (and are reaped) here
    gc.collect()
    served = n + warmup * 64
    return n / max(wall, 1e-9), cpu / max(n, 1), (_children_cpu() - k0) / served, (cpu + wcpu) / max(wall, 1e-9)


def _train_rate(manifest_path: Path, out: Path, mode: str, steps: int) -> tuple[float, float]:
    """(steps/s after the warm-up window, steps per CPU-second of the whole run: probe, start-up and
    the in-process loader included)."""
    from carve.trainer.config import TrainConfig
    from carve.trainer.train import train

    warm = min(5, steps // 2)
    cfg = TrainConfig.from_dict(
        {
            "mode": mode,
            "max_steps": steps,
            "out_dir": str(out / mode),
            "log_every": steps - warm,
            "ckpt_every": 10**6,
            "progress": False,
            "tensorboard": False,
            "data": {"manifest": str(manifest_path), "batch_size": 32, "max_len": 48, "chunk_len": 16},
            "model": {"d_model": 64, "n_layers": 2, "n_heads": 4},
        }
    )
    c0 = time.process_time()
    train(cfg)
    cpu = time.process_time() - c0
    recs = [json.loads(x) for x in (out / mode / "metrics.jsonl").read_text().splitlines()]
    return float(recs[-1]["steps_per_s"]), steps / cpu  # the window after the warm-up steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=20, help="scaling: batches before timing")
    ap.add_argument("--batches", type=int, default=2000, help="scaling: batches timed")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the training runs")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    from carve.sim.toydata import write_toy_shards
    from carve.trainer.manifest import open_manifest
    from carve.trainer.samples import VIEW_COLUMNS

    med = statistics.median
    load: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        mpath = write_toy_shards(
            Path(tmp) / "v001", n_episodes=args.episodes, rows_per_shard=512, row_group_size=64
        )
        m = open_manifest(mpath)
        base, carve, ratios, cpu_ratios = [], [], [], []
        scale: dict[int, list[float]] = {0: [], 1: [], 2: []}
        main_cpu: list[float] = []
        worker_cpu: list[float] = []
        pipe2: list[float] = []
        ungrouped2: list[float] = []
        cores: dict[int, list[float]] = {0: [], 1: [], 2: []}
        available: list[float] = []
        for _ in range(args.rounds):
            load.append(os.getloadavg()[0])
            n_base, t_base, c_base = _baseline(m.shards, list(VIEW_COLUMNS["event"]))
            n0, t0, c0 = _epoch(m)
            assert n0 == n_base == m.total_rows
            base.append(n_base / t_base)
            carve.append(n0 / t0)
            ratios.append(carve[-1] / base[-1])
            cpu_ratios.append(c_base / c0)
            available.append(_cores_available())
            for w in (0, 1, 2):
                rate, cpu, wcpu, used = _steady(m, w, args.warmup, args.batches)
                scale[w].append(rate)
                cores[w].append(used)
                if w == 1:  # steady state: less a run that only starts up and warms up
                    _, _, wshort, _ = _steady(m, 1, args.warmup, 0)
                    n_long, n_short = (args.warmup + args.batches) * 64, args.warmup * 64
                    worker_cpu.append((wcpu * n_long - wshort * n_short) / (n_long - n_short))
                if w == 2:
                    main_cpu.append(cpu)
                    # the transport before the ring: each batch pickled through the pipe, prefetch 2
                    pipe2.append(_steady(m, 2, args.warmup, args.batches, ring=False, prefetch_factor=2,
                                         group_batches=1)[0])
                    ungrouped2.append(_steady(m, 2, args.warmup, args.batches, group_batches=1)[0])
        load.append(os.getloadavg()[0])
        rates = {
            mode: _train_rate(mpath, Path(tmp) / "train", mode, args.steps)
            for mode in ("event", "unified", "chunk")
        }
    one, two = med(scale[1]), med(scale[2])
    ceiling = 1.0 / med(main_cpu)
    per_worker = 1.0 / med(worker_cpu)
    res: dict[str, Any] = {
        "description": "trainer data loader (one epoch, event view, batches of 64) vs a plain pyarrow read of the "
        "same shards and columns to tensors (medians of interleaved rounds); loader scaling over 0/1/2 "
        "DataLoader workers (steady state); CPU training steps/s",
        "command": f"python -m bench.bench_trainer --episodes {args.episodes} --rounds {args.rounds} "
        f"--steps {args.steps} --threads {args.threads} --warmup {args.warmup} --batches {args.batches}",
        "events": m.total_rows,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_avg_1min_min_max": f"{min(load):.1f} / {max(load):.1f}",
        "loader_events_per_s": med(carve),
        "pyarrow_events_per_s": med(base),
        "ratio": med(ratios),
        "ratios_per_round": [round(r, 3) for r in ratios],
        "cpu_ratio": med(cpu_ratios),
        "workers_0_events_per_s": med(scale[0]),
        "workers_1_events_per_s": one,
        "workers_2_events_per_s": two,
        "workers_2_over_1": two / one,
        "workers_2_one_batch_per_message_events_per_s": med(ungrouped2),
        "workers_2_pipe_prefetch_2_events_per_s": med(pipe2),
        "workers_cores_used": {w: round(med(v), 2) for w, v in cores.items()},
        "cores_available": med(available),
        "cores_available_per_round": [round(x, 2) for x in available],
        "workers_best_round_events_per_s": {w: round(max(v)) for w, v in scale.items()},
        "workers_2_over_1_best_rounds": max(scale[2]) / max(scale[1]),
        "workers_rounds": {w: [round(x) for x in v] for w, v in scale.items()},
        "main_cpu_us_per_event_2_workers": med(main_cpu) * 1e6,
        "main_ceiling_events_per_s": ceiling,
        "worker_cpu_us_per_event": med(worker_cpu) * 1e6,
        "per_worker_events_per_cpu_s": per_worker,
        "projected_16_cores_events_per_s": min(15 * per_worker, ceiling),
        # both cores free: 1 worker runs on one core at the per-worker rate, 2 workers and the main process
        # share both cores (each event costs one worker's CPU time plus the main process's)
        "projected_2_cores_2_over_1": (2.0 / (med(worker_cpu) + med(main_cpu))) / min(per_worker, ceiling),
        **{f"train_steps_per_s_{k}": v[0] for k, v in rates.items()},
        **{f"train_steps_per_cpu_s_{k}": v[1] for k, v in rates.items()},
    }
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
