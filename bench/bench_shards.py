"""Shard writing throughput (events/s) against a plain `pyarrow.parquet.write_table`.

Both write the same ordered table of schema-v1 event rows (state/action slices, three small
JPEG-sized keyframes, 64/384/32/480-d embeddings, cluster fields) with zstd and the same row
group size. The Carve path is `shard.write.write_shards` (conform to schema v1 with
emb_dims metadata, cut into `--rows-per-shard` parts, serialise in memory, sha256, atomic
temp+rename per part) followed by `shard.manifest.write_manifest`; the baseline writes the
whole table as one Parquet file with `pq.write_table`. `ratio` = Carve events/s / baseline
events/s (1.0 = no overhead).

    python -m bench.bench_shards [--events 10000] [--rows-per-shard 2048] [--repeat 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIMS = {"visual": 64, "text": 384, "motion": 32, "emb": 480, "end_visual": 64}


def make_events(n: int, seed: int = 0, frames: int = 12) -> pa.Table:
    """A table of `n` synthetic events with every column of the event schema a shard carries."""
    from carve.storage.schema import EVENT_SCHEMA, make_event_id

    rng = np.random.default_rng(seed)

    def emb(d: int) -> pa.Array:
        v = rng.standard_normal((n, d), dtype=np.float32)
        return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), pa.array(v.ravel()))

    def per_frame(d: int) -> pa.Array:
        inner = pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * frames * d + 1, d, dtype=np.int32)),
            pa.array(rng.standard_normal(n * frames * d, dtype=np.float32)),
        )
        return pa.ListArray.from_arrays(pa.array(np.arange(0, n * frames + 1, frames, dtype=np.int32)), inner)

    jpeg = bytes(rng.integers(0, 256, 3000, dtype=np.uint8))
    ep = [f"sim/{i // 8:06d}" for i in range(n)]
    k = np.arange(n) % 8
    cols: dict[str, Any] = {
        "event_id": [make_event_id(e, int(j) * 10, int(j) * 10 + 10) for e, j in zip(ep, k, strict=True)],
        "episode_id": ep, "dataset": ["sim"] * n, "source_uri": ["/data/sim"] * n, "camera": ["front"] * n,
        "robot": ["panda"] * n, "episode_index": np.arange(n, dtype=np.int32) // 8,
        "event_index": k.astype(np.int32), "num_events": np.full(n, 8, np.int32),
        "start_frame": (k * 10).astype(np.int32), "end_frame": (k * 10 + 10).astype(np.int32),
        "fps": np.full(n, 12.0, np.float32), "start_reason": ["pause"] * n, "boundary_reason": ["gripper_close"] * n,
        "source_file": [f"data/chunk-000/file-{i // 64:03d}.parquet" for i in range(n)],
        "source_key": [f"episode_index={i // 8}" for i in range(n)],
        "source_start_s": (k * 10 / 12.0).astype(np.float64), "source_end_s": ((k * 10 + 10) / 12.0).astype(np.float64),
        "task": ["put the red cube in the tray"] * n, "caption": ["reach toward the red cube"] * n,
        "next_caption": ["close the gripper on the red cube"] * n, "caption_model": ["kinematic"] * n,
        "caption_status": ["ok"] * n, "keyframes": [[jpeg, jpeg, jpeg]] * n,
        "state": per_frame(8), "action": per_frame(7),
        "gripper": emb(frames), "emb_visual": emb(64), "emb_text": emb(384), "emb_motion": emb(32),
        "emb": emb(480), "end_emb_visual": emb(64),
        "cluster_id": rng.integers(0, 100, n).astype(np.int32),
        "cluster_path": [[int(c) // 10, int(c)] for c in rng.integers(0, 100, n)],
        "cluster_dist": rng.random(n).astype(np.float32), "dup_of": [None] * n,
        "weight": np.ones(n, np.float32), "sampling_weight": np.ones(n, np.float32),
        "cameras": [["front"]] * n, "arms": [[""]] * n, "obs_stride": np.ones(n, np.int32),
        "state_names": [[f"s{i}" for i in range(8)]] * n, "action_names": [[f"a{i}" for i in range(7)]] * n,
    }
    # the columns a simulated single-camera dataset leaves empty (env_state, per-camera embeddings, ...)
    arrays = [cols[f.name] if isinstance(cols.get(f.name), pa.Array)
              else pa.array(cols[f.name], type=f.type) if f.name in cols else pa.nulls(n, f.type)
              for f in EVENT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


def run_carve(table: pa.Table, out: Path, rows_per_shard: int, row_group_size: int) -> float:
    from carve.shard.manifest import build_manifest, write_manifest
    from carve.shard.write import write_shards
    from carve.storage.root import open_root

    t0 = time.perf_counter()
    out_root = open_root(out)
    shards = write_shards(table, out_root, out_root.base, rows_per_shard=rows_per_shard, row_group_size=row_group_size,
                          compression="zstd", emb_dims=DIMS)
    write_manifest(str(out), build_manifest(
        version=1, clusters_version=1, policy={"name": "uniform"}, config={}, emb_dims=DIMS,
        shards=[s.as_dict() for s in shards], clusters={}, stats={}, sources=[], unique_events=table.num_rows,
    ))
    return time.perf_counter() - t0


def run_baseline(table: pa.Table, out: Path, row_group_size: int) -> float:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pq.write_table(table, str(out / "all.parquet"), row_group_size=row_group_size, compression="zstd")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rows-per-shard", type=int, default=2048)
    ap.add_argument("--row-group-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs of each")
    args = ap.parse_args(argv)
    table = make_events(args.events)
    carve, base = [], []
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        for r in range(args.repeat):
            base.append(run_baseline(table, Path(tmp) / f"base{r}", args.row_group_size))
            carve.append(run_carve(table, Path(tmp) / f"carve{r}", args.rows_per_shard, args.row_group_size))
    c, b = min(carve), min(base)
    out = {
        "events": args.events, "rows_per_shard": args.rows_per_shard, "row_group_size": args.row_group_size,
        "table_mb": round(table.nbytes / 2**20, 1),
        "carve_s": round(c, 3), "baseline_s": round(b, 3),
        "carve_events_per_s": round(args.events / c, 1), "baseline_events_per_s": round(args.events / b, 1),
        "ratio": round(b / c, 3),
    }
    print(out)
    return out


if __name__ == "__main__":
    main()
