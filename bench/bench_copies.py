"""The episode-copy check (`quality.duplicates.copies`) against a scan of every pair, as episodes grow.

The data: `--bases` random-walk episodes of `--frames` frames and `--dims` coordinates that all
start from one pose (as teleoperated episodes of one task do), and, for each size, that many
episodes made from them: a random base plus a constant offset of `--offset` of the spread per
coordinate and sensor noise; every `--copy-every`-th episode is instead a copy of an earlier one
trimmed by 0-2 frames at each end, with light noise, so there are copies to find. Timed in this
process:

* Carve: `duplicates.copies(states, CheckConfig())` as shipped (above `GRID_FROM` episodes the
  candidates come through the grid of signature-mean boxes; at or below, from the scan);
* the scan: the same per-pair work on the candidates of the mean-state prefilter over every pair
  (`duplicates._scan`: the n x n distances in blocks): `copies(..., grid=False)`, at every size.

Both must report the same copies (checked). `ratio` = scan seconds / Carve seconds at the largest
size both ran (> 1: Carve faster); the scan is skipped above `--scan-max` episodes (quadratic).

    python -m bench.bench_copies [--sizes 4000 32000] [--scan-max 32000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from carve.core.config import CheckConfig
from carve.quality import duplicates as du


def make_states(n: int, bases: int, frames: int, dims: int, offset: float, copy_every: int,
                seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    walks = [np.cumsum(rng.normal(size=(frames, dims)), axis=0) for _ in range(bases)]
    walks = [w - w[0] for w in walks]  # one start pose
    spread = np.concatenate(walks).std(axis=0)
    out: dict[int, np.ndarray] = {}
    for i in range(n):
        if copy_every and i % copy_every == copy_every - 1:
            src = out[int(rng.integers(0, i))]
            a, b = int(rng.integers(0, 3)), len(src) - int(rng.integers(0, 3))
            out[i] = src[a:b] + rng.normal(scale=1e-5, size=(b - a, dims)) * spread
        else:
            w = walks[int(rng.integers(0, bases))]
            out[i] = w + rng.normal(scale=offset, size=(1, dims)) * spread + rng.normal(scale=0.002, size=w.shape) * spread
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 32000])
    ap.add_argument("--scan-max", type=int, default=32000)
    ap.add_argument("--bases", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=110)
    ap.add_argument("--dims", type=int, default=8)
    ap.add_argument("--offset", type=float, default=0.2)
    ap.add_argument("--copy-every", type=int, default=50)
    args = ap.parse_args(argv)
    cfg = CheckConfig()
    rows: dict[str, Any] = {}
    ratio = None
    for n in args.sizes:
        states = make_states(n, args.bases, args.frames, args.dims, args.offset, args.copy_every)
        t = time.perf_counter()
        got = du.copies(states, cfg)
        carve_s = time.perf_counter() - t
        row: dict[str, Any] = {"carve_s": round(carve_s, 3), "copies_found": len(got),
                               "copies_made": n // args.copy_every if args.copy_every else 0}
        if n <= args.scan_max:
            t = time.perf_counter()
            want = du.copies(states, cfg, grid=False)
            row["scan_s"] = round(time.perf_counter() - t, 3)
            assert {k: (c.of, c.distance, c.span) for k, c in got.items()} == \
                {k: (c.of, c.distance, c.span) for k, c in want.items()}, f"{n} episodes: the two disagree"
            ratio = row["scan_s"] / max(carve_s, 1e-9)
        rows[str(n)] = row
    return {
        "description": "quality.duplicates.copies as shipped (above GRID_FROM episodes: the grid of signature-mean "
                       "boxes) vs the same per-pair work on a mean-prefilter scan of every pair; seconds per dataset "
                       "size (at or below GRID_FROM both are the scan); ratio = scan / carve at the largest size both ran",
        "command": "python -m bench.bench_copies " + " ".join(argv or []),
        "sizes": rows,
        "ratio": round(ratio, 3) if ratio is not None else None,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=1))
