"""Trainer throughput: data-loader events/s against a plain pyarrow read, and training steps/s.

Data. Toy shards (`trainer.toydata.write_toy_shards`, schema v1, zstd, row groups of 64) are
written to a temp folder. The Carve path is one epoch of `trainer.data.EventStream` in event
view through the torch DataLoader with `collate` (shuffle buffer on, batches of 64 padded
tensors), in the main process (`workers=0`) and with 2 workers. The baseline reads the same
shards and columns with plain `pyarrow.parquet.ParquetFile.iter_batches` and materialises
the nested action/state lists as flat numpy arrays, with no shuffling, padding or tensors.
`ratio` = Carve loader events/s (main process) / baseline events/s.

Training. Steps/s of `trainer.train.train` for each mode on the same shards (CPU, d_model 64,
2 layers, batch 32, `--threads` torch threads), measured over the steps after a short warm-up
window.

    python -m bench.bench_trainer [--episodes 300] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def _baseline(shards: list[str], columns: list[str]) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for s in shards:
        for rb in pq.ParquetFile(s).iter_batches(batch_size=64, columns=columns):
            for name in ("action", "state"):
                rb.column(name).flatten().flatten().to_numpy()
            for name in ("emb_visual", "emb_text", "end_emb_visual"):
                rb.column(name).flatten().to_numpy()
            n += rb.num_rows
    return n, time.perf_counter() - t0


def _loader(manifest: Any, workers: int) -> tuple[int, float]:
    from carve.trainer.config import DataConfig
    from carve.trainer.data import EventStream, make_loader

    cfg = DataConfig(batch_size=64, holdout_frac=0.0, shuffle_buffer=512, num_workers=workers)
    ds = EventStream(manifest, cfg, view="event", split="all", infinite=False)
    t0 = time.perf_counter()
    n = sum(len(b["event_id"]) for b in make_loader(ds, cfg.batch_size, workers))
    return n, time.perf_counter() - t0


def _train_rate(manifest_path: Path, out: Path, mode: str, steps: int) -> float:
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
    train(cfg)
    recs = [json.loads(x) for x in (out / mode / "metrics.jsonl").read_text().splitlines()]
    return float(recs[-1]["steps_per_s"])  # the window after the warm-up steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for the training runs")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    from carve.sim.toydata import write_toy_shards
    from carve.trainer.data import READ_COLUMNS
    from carve.trainer.manifest import open_manifest

    with tempfile.TemporaryDirectory() as tmp:
        mpath = write_toy_shards(
            Path(tmp) / "v001", n_episodes=args.episodes, rows_per_shard=512, row_group_size=64
        )
        m = open_manifest(mpath)
        n_base, t_base = _baseline(m.shards, READ_COLUMNS)
        n0, t0 = _loader(m, 0)
        n2, t2 = _loader(m, 2)
        assert n0 == n2 == n_base == m.total_rows
        rates = {
            mode: _train_rate(mpath, Path(tmp) / "train", mode, args.steps)
            for mode in ("event", "unified", "chunk")
        }
    res: dict[str, Any] = {
        "description": "trainer data loader (one epoch, event view, batches of 64) vs plain pyarrow read of the same shards; CPU training steps/s",
        "command": f"python -m bench.bench_trainer --episodes {args.episodes} --steps {args.steps} --threads {args.threads}",
        "events": m.total_rows,
        "loader_events_per_s": n0 / t0,
        "loader_2workers_events_per_s": n2 / t2,
        "pyarrow_events_per_s": n_base / t_base,
        "ratio": (n0 / t0) / (n_base / t_base),
        **{f"train_steps_per_s_{k}": v for k, v in rates.items()},
    }
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
