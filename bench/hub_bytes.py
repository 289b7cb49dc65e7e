"""Bytes a `carve run` over `hf://` fetches, measured at the server, against the repo's bytes.

A LeRobot dataset folder (default: tests/corpus/metaworld/dataset, written by lerobot 0.4.4: 24
episodes sharing one AV1 file per camera) is served by the loopback Hub double
(tests/hub_server.py); `carve run --source hf://datasets/lab/<name>` runs in a subprocess with
`HF_ENDPOINT` pointing at it and a fresh `HF_HOME` (so an empty block cache). Printed: one JSON
line per run with the repo's bytes, the bytes the server sent from `resolve` (per file too),
their ratio and the run's seconds. `--camera NAME` selects one camera; extra `--set` overrides
pass through (e.g. `--set check.in_run=false`).

    .venv/bin/python bench/hub_bytes.py
    .venv/bin/python bench/hub_bytes.py --camera observation.images.corner
    .venv/bin/python bench/hub_bytes.py --camera observation.images.corner --set check.in_run=false
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hub_server import HubServer  # noqa: E402 - the Hub double lives beside the tests

SETTINGS = ["--set", "ray.num_cpus=2", "--set", "ray.object_store_memory_mb=256", "--set", "ray.progress=false",
            "--set", "cluster.k=3", "--set", "shard.rows_per_shard=16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", nargs="?", default=str(ROOT / "tests/corpus/metaworld/dataset"))
    ap.add_argument("--camera", default=None)
    ap.add_argument("--block-kb", default="1024")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    folder = Path(args.dataset)
    name = folder.name if folder.name != "dataset" else folder.parent.name
    srv = HubServer()
    try:
        srv.add_repo(f"lab/{name}", folder)
        with tempfile.TemporaryDirectory(prefix="carve-hub-bytes-") as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CARVE_HUB"))}
            env.update(HF_ENDPOINT=srv.endpoint, HF_HOME=f"{tmp}/hf", HF_HUB_OFFLINE="0",
                       CARVE_HUB_BLOCK_KB=args.block_kb)
            extra = [x for o in args.overrides for x in ("--set", o)]
            if args.camera:
                extra += ["--set", f"source.camera={args.camera}"]
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "carve", "run", "--source", f"hf://datasets/lab/{name}",
                                "--root", f"{tmp}/root", *SETTINGS, *extra], env=env, cwd=ROOT,
                               capture_output=True, text=True)
            seconds = time.perf_counter() - t0
        if r.returncode:
            sys.exit(f"carve run failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        repo = srv.repos[f"lab/{name}"].size
        print(json.dumps({"dataset": name, "camera": args.camera, "overrides": args.overrides,
                          "block_kb": int(args.block_kb), "repo_bytes": repo, "fetched_bytes": srv.bytes_served,
                          "ratio": round(srv.bytes_served / repo, 3), "seconds": round(seconds, 1),
                          "per_file": srv.served}))
    finally:
        srv.close()


if __name__ == "__main__":
    main()
