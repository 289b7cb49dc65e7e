"""Peak memory of `carve shard` (streaming cut) against loading the event catalog in memory.

A format-true Carve root (`pipeline.service.testing.fabricate_root`: events with keyframes,
embeddings and action slices; catalog) is written with `--episodes` x 8 events and clustered
with `carve recluster`. Then two child processes run, each measured by its peak RSS:

* Carve: `carve shard --root ROOT --set shard.include_duplicates=true` (so every event is
  eligible and the cut writes as many rows as the catalog holds): one pass over the event part
  files spilling the selected rows to local Arrow IPC, then one shard at a time
  (`storage/gather.py`);
* baseline: a plain `pyarrow` read of every event part file into one table (what an
  in-memory cut needs before it can reorder rows), nothing else.

`ratio` = baseline peak RSS / Carve peak RSS (> 1: the streaming cut needs less memory).
Both include the interpreter and imports (~150-200 MB).

    python -m bench.bench_cut_memory [--episodes 8000]
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

REPO = Path(__file__).resolve().parent.parent

_BASELINE = """
import sys
import pyarrow as pa, pyarrow.parquet as pq
files = sorted(__import__('pathlib').Path(sys.argv[1]).glob('events/**/*.parquet'))
t = pa.concat_tables([pq.read_table(f) for f in files], promote_options='default')
print(t.num_rows, t.nbytes)
"""


def _peak_rss_mb(cmd: list[str]) -> tuple[float, str]:
    """Run `cmd` as a child (via a fresh measuring parent) and return its peak RSS in MB."""
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(p.stdout)\n"
        "sys.stderr.write(p.stderr[-2000:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(p.returncode)\n"
    )
    p = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
    lines = p.stdout.strip().splitlines()
    return int(lines[-1]) / 1024.0, "\n".join(lines[:-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8000)
    args = ap.parse_args(argv)
    from carve.sim.service_fakes import fabricate_root

    carve = str(Path(sys.executable).with_name("carve"))
    with tempfile.TemporaryDirectory(prefix="carve-bench-cut-") as tmp:
        root = Path(tmp) / "root"
        t0 = time.perf_counter()
        fabricate_root(root, episodes=args.episodes, events_per_episode=8, k=16, manifest=False, failed_episodes=0)
        subprocess.run([carve, "recluster", "--root", str(root)], check=True, capture_output=True, cwd=REPO)
        prep_s = time.perf_counter() - t0
        base_mb, out = _peak_rss_mb([sys.executable, "-c", _BASELINE, str(root)])
        rows, nbytes = (int(x) for x in out.split()[-2:])
        t0 = time.perf_counter()
        carve_mb, _ = _peak_rss_mb([carve, "shard", "--root", str(root), "--set", "ray.progress=false",
                                    "--set", "shard.include_duplicates=true"])
        cut_s = time.perf_counter() - t0
        disk_mb = sum(f.stat().st_size for f in (root / "events").rglob("*.parquet")) / 2**20
    return {
        "description": "peak RSS of `carve shard` (streaming cut) vs reading the event catalog into one "
                       "pyarrow table; ratio = baseline / Carve",
        "command": f"python -m bench.bench_cut_memory --episodes {args.episodes}",
        "events": rows,
        "catalog_on_disk_mb": disk_mb,
        "catalog_in_memory_mb": nbytes / 2**20,
        "baseline_peak_rss_mb": base_mb,
        "carve_shard_peak_rss_mb": carve_mb,
        "carve_shard_s": cut_s,
        "prep_s": prep_s,
        "ratio": base_mb / carve_mb,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
