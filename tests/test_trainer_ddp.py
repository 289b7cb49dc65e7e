"""Two-process DDP training on CPU (gloo) through torchrun: each rank trains on disjoint events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch

from carve.sim.toydata import write_toy_shards
from carve.trainer.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def test_torchrun_two_ranks_see_disjoint_events(tmp_path: Path) -> None:
    manifest = write_toy_shards(tmp_path / "shards" / "v001", n_episodes=24)
    out = tmp_path / "run"
    steps, batch = 4, 8
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "carve.trainer.train",
        "--manifest",
        str(manifest),
        "--out-dir",
        str(out),
        "--steps",
        str(steps),
        "--set",
        f"data.batch_size={batch}",
        "--set",
        "data.max_len=24",
        "--set",
        "data.holdout_frac=0",
        "--set",
        "model.d_model=16",
        "--set",
        "model.n_layers=1",
        "--set",
        "model.n_heads=2",
        "--set",
        "progress=false",
        "--set",
        "tensorboard=false",
        "--set",
        "log_event_ids=true",
        "--set",
        "ckpt_every=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = []
    for rank in range(2):
        lines = (out / f"event_ids.rank{rank}.txt").read_text().split()
        ids = lines[1::2]
        assert len(ids) == steps * batch
        seen.append(set(ids))
    assert seen[0] and seen[1]
    assert not (seen[0] & seen[1])
    all_ids = set()
    for s in json.loads(manifest.read_text())["shards"]:
        all_ids |= set(pq.read_table(manifest.parent / s["path"], columns=["event_id"]).column(0).to_pylist())
    assert seen[0] | seen[1] <= all_ids
    state = load_checkpoint(out / f"ckpt-{steps:08d}.pt")
    assert state["data"]["world_size"] == 2 and len(state["rng"]) == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == steps
