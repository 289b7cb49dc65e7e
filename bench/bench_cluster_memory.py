"""Peak memory of `cluster_catalog` at 64k and 1M events, against the size of the embedding matrix.

For each size a format-true root is fabricated (`fabricate_embedded_root`): event part files of
`--episodes-per-part` episodes x `--events-per-episode` events, `--dim`-d fused embeddings
around `--blobs` random directions (within-blob cosine ~0.85) plus 2% near-duplicate copies,
committed `ok` in the catalog, several parts per ingest batch. Then a child process runs
`carve.clustering.curate.cluster_catalog` with the shipped cluster config (k from the size
heuristic, `train_sample_per_centroid` 256, `niter` from `--niter`) and reports its peak RSS
(VmHWM from /proc/self/status, which includes the interpreter, numpy, pyarrow and faiss) and
the RSS right after the imports. The streaming clustering trains on the sample, assigns every
event in batches read from the part files and marks near-duplicates one cluster at a time from
a local spill (clustering/stream.py), so its peak should stay far below the full matrix.

The baseline (up to `--baseline-max` events, default 100k: it needs ~3x the matrix) is what the
clustering did before: read the `emb` column of every event into one Arrow table and one
L2-normalised float32 matrix (`read_events` + `embedding_matrix` + `as_unit_vectors`), nothing
else. `matrix_mb` = n x d x 4 bytes, the float32 matrix itself.

    python -m bench.bench_cluster_memory                       # 64k and 1M events, 672-d
    python -m bench.bench_cluster_memory --events 64000 --dim 384
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
TASKS = ("put the red cube in the tray", "stack the blue cube on the green cube", "push the yellow ball to the left",
         "open the drawer", "wipe the table")
ROBOTS = ("panda", "so100", "aloha")
CAPTIONS = ("reach toward the object", "close the gripper", "lift the object", "move over the tray",
            "open the gripper to release", "retreat")

_CHILD = """
import json, sys, time
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024.0
from carve.clustering.curate import cluster_catalog
from carve.core.config import CarveConfig
from carve.storage.root import open_root
root, cluster = sys.argv[1], json.loads(sys.argv[2])
cfg = CarveConfig.model_validate({"root": root, "ray": {"progress": False}, "cluster": cluster})
base = hwm()
t0 = time.perf_counter()
v = cluster_catalog(open_root(root), cfg)
print(json.dumps({"version": v, "seconds": time.perf_counter() - t0, "peak_rss_mb": hwm(), "import_rss_mb": base}))
"""

_BASELINE = """
import json, sys, time
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024.0
from carve.clustering.kmeans import as_unit_vectors, embedding_matrix
from carve.storage.events import read_events
from carve.storage.root import open_root
base = hwm()
t0 = time.perf_counter()
t = read_events(open_root(sys.argv[1]), columns=["event_id", "episode_id", "dataset", "emb"])
ids = t.column("event_id").to_pylist()
x = as_unit_vectors(embedding_matrix(t.column("emb"), ids), ids)
print(json.dumps({"rows": int(x.shape[0]), "seconds": time.perf_counter() - t0, "peak_rss_mb": hwm(),
                  "import_rss_mb": base}))
"""


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (40, 160, 40)).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def fabricate_embedded_root(
    root: str | Path,
    n_events: int,
    *,
    dim: int = 672,
    blobs: int = 1000,
    events_per_episode: int = 8,
    episodes_per_part: int = 256,
    parts_per_batch: int = 16,
    datasets: tuple[str, ...] = ("sim",),
    dup_fraction: float = 0.02,
    keyframes: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Write `n_events` committed events with `dim`-d embeddings (and captions, tasks, robots,
    optionally one small keyframe each) as multi-episode part files + catalog rows; return
    {"events", "episodes", "parts", "batches", "event_ids_sample"}. Episodes go round-robin to
    `datasets`. Memory: one part file at a time."""
    from carve.storage.events import write_event_part
    from carve.storage.root import open_root
    from carve.storage.schema import make_event_id

    r = open_root(root)
    cat = r.catalog
    for ds in datasets:
        cat.upsert_dataset(ds, f"/data/{ds}", "lerobot")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = float(np.sqrt(0.176 / dim))  # within-blob cosine ~0.85
    per_part = episodes_per_part * events_per_episode
    n_episodes = -(-n_events // events_per_episode)
    jpeg = _jpeg() if keyframes else None
    sample_ids: list[str] = []
    ep = 0
    part = 0
    written = 0
    while written < n_events:
        batch = f"20260101T000000-b{part // parts_per_batch:05d}"
        m = min(per_part, n_events - written)
        ev_ep = np.arange(m) // events_per_episode + ep
        ev_k = np.arange(m) % events_per_episode
        ds_of = [datasets[e % len(datasets)] for e in range(ep, int(ev_ep[-1]) + 1)]
        ep_ids = [f"{ds_of[e - ep]}/ep{e:07d}" for e in range(ep, int(ev_ep[-1]) + 1)]
        eids = [make_event_id(ep_ids[e - ep], int(k) * 10, int(k) * 10 + 10) for e, k in zip(ev_ep, ev_k, strict=True)]
        x = centres[rng.integers(blobs, size=m)] + sigma * rng.standard_normal((m, dim), dtype=np.float32)
        n_dup = int(m * dup_fraction)
        if n_dup:
            src = rng.choice(m, size=n_dup, replace=False)
            dst = (src + 1 + rng.integers(m - 1, size=n_dup)) % m
            x[dst] = x[src] + 0.001 * sigma * rng.standard_normal((n_dup, dim), dtype=np.float32)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim).cast(pa.list_(pa.float32()))
        eps_local = ev_ep - ep
        cols: dict[str, Any] = {
            "event_id": pa.array(eids, pa.string()),
            "episode_id": pa.array([ep_ids[i] for i in eps_local], pa.string()),
            "dataset": pa.array([ds_of[i] for i in eps_local], pa.string()),
            "source_uri": pa.array([f"/data/{ds_of[i]}" for i in eps_local], pa.string()),
            "robot": pa.array([ROBOTS[(ep + i) % len(ROBOTS)] for i in eps_local], pa.string()),
            "episode_index": pa.array(ev_ep.astype(np.int32)),
            "event_index": pa.array(ev_k.astype(np.int32)),
            "num_events": pa.array(np.full(m, events_per_episode, np.int32)),
            "start_frame": pa.array((ev_k * 10).astype(np.int32)),
            "end_frame": pa.array((ev_k * 10 + 10).astype(np.int32)),
            "fps": pa.array(np.full(m, 10.0, np.float32)),
            "task": pa.array([TASKS[(ep + i) % len(TASKS)] for i in eps_local], pa.string()),
            "caption": pa.array([CAPTIONS[k % len(CAPTIONS)] for k in ev_k], pa.string()),
            "caption_status": pa.array(["ok"] * m, pa.string()),
            "emb": emb,
        }
        if jpeg is not None:
            cols["keyframes"] = pa.array([[jpeg]] * m, pa.list_(pa.binary()))
        write_event_part(r, batch, f"chunk-{part:06d}", pa.table(cols))
        cat.record_episodes([
            {"episode_id": ep_ids[i], "dataset": ds_of[i], "episode_index": ep + i, "source_uri": f"/data/{ds_of[i]}",
             "fingerprint": f"fp{ep + i}", "status": "ok", "num_events": int((eps_local == i).sum()), "batch": batch}
            for i in range(len(ep_ids))
        ])
        if len(sample_ids) < 100_000:
            sample_ids += eids[:: max(1, m // 64)]
        ep += len(ep_ids)
        written += m
        part += 1
    r.close()
    return {"events": written, "episodes": n_episodes, "parts": part, "batches": -(-part // parts_per_batch),
            "event_ids_sample": sample_ids}


def _child(code: str, *args: str) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"child failed: {p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    root = Path(args.keep_roots or tmp) / f"root-{n}-{args.dim}"
    t0 = time.perf_counter()
    done = root / "fabricated.json"
    if args.keep_roots and done.exists():  # reuse a root fabricated by an earlier run (clustered again: a new version)
        fab = json.loads(done.read_text())
    else:
        fab = fabricate_embedded_root(root, n, dim=args.dim, blobs=args.blobs,
                                      events_per_episode=args.events_per_episode, episodes_per_part=args.episodes_per_part)
        done.write_text(json.dumps({k: v for k, v in fab.items() if k != "event_ids_sample"}))
    prep_s = time.perf_counter() - t0
    disk_mb = sum(f.stat().st_size for f in (root / "events").rglob("*.parquet")) / 2**20
    run = _child(_CHILD, str(root), json.dumps({"niter": args.niter}))
    meta = json.loads((root / "clusters" / f"v{run['version']:03d}" / "meta.json").read_text())
    matrix_mb = n * args.dim * 4 / 2**20
    res: dict[str, Any] = {
        "events": n, "dim": args.dim, "k": meta["k"], "train_sample": meta.get("train_sample"),
        "part_files": fab["parts"], "events_on_disk_mb": round(disk_mb, 1),
        "matrix_mb": round(matrix_mb, 1),
        "carve_peak_rss_mb": round(run["peak_rss_mb"], 1),
        "carve_import_rss_mb": round(run["import_rss_mb"], 1),
        "carve_over_imports_mb": round(run["peak_rss_mb"] - run["import_rss_mb"], 1),
        "carve_peak_over_matrix": round(run["peak_rss_mb"] / matrix_mb, 3),
        "carve_s": round(run["seconds"], 1),
        "duplicates": meta["n_duplicates"],
        "prep_s": round(prep_s, 1),
    }
    if n <= args.baseline_max:
        base = _child(_BASELINE, str(root))
        res["baseline_peak_rss_mb"] = round(base["peak_rss_mb"], 1)
        res["baseline_over_imports_mb"] = round(base["peak_rss_mb"] - base["import_rss_mb"], 1)
    if not args.keep_roots:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return res


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| events | dim | k | train sample | part files | float32 matrix MB | Carve peak RSS MB | of which imports MB "
            "| peak / matrix | baseline (load all emb) peak MB | cluster_catalog s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['events']:,} | {r['dim']} | {r['k']} | {r['train_sample']:,} | {r['part_files']:,} "
                     f"| {r['matrix_mb']:,.0f} | {r['carve_peak_rss_mb']:,.0f} | {r['carve_import_rss_mb']:,.0f} "
                     f"| {r['carve_peak_over_matrix']:.2f} | {r.get('baseline_peak_rss_mb', '–')} | {r['carve_s']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[64_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=672, help="fused embedding size (672 = descriptor + MiniLM + motion)")
    ap.add_argument("--blobs", type=int, default=1000)
    ap.add_argument("--events-per-episode", type=int, default=8)
    ap.add_argument("--episodes-per-part", type=int, default=256)
    ap.add_argument("--niter", type=int, default=10)
    ap.add_argument("--baseline-max", type=int, default=100_000, help="run the load-everything baseline up to this size")
    ap.add_argument("--tmp", default=None, help="where to fabricate the roots (needs ~2x n x d x 4 bytes)")
    ap.add_argument("--keep-roots", default=None, metavar="DIR",
                    help="fabricate the roots under DIR, keep them and reuse them on the next run")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="carve-bench-cluster-mem-", dir=args.tmp) as tmp:
        rows = [measure(n, args, Path(tmp)) for n in args.events]
    out: dict[str, Any] = {
        "description": "peak RSS of cluster_catalog (sample-trained k-means, streamed assignment and per-cluster "
                       "dedup) vs the float32 embedding matrix it no longer holds",
        "command": " ".join(["python -m bench.bench_cluster_memory", *(argv if argv is not None else sys.argv[1:])]),
    }
    for r in rows:  # flat keys, one group per size (bench/run_all.py renders a flat table)
        tag = f"{r['events'] // 1000}k" if r["events"] < 1_000_000 else f"{r['events'] / 1e6:g}M"
        out.update({f"{tag}_{k}": v for k, v in r.items() if k != "events"})
    print(markdown(rows))
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
