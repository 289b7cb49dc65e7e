"""Quality figures on simulated data, written to the "Quality" section of BENCHMARKS.md.

Runs the user-facing commands, in order, on a fresh simulated dataset and records what they
print, together with each command:

1. `carve synth` (all four tasks) and `carve run` (ingest -> ... -> shard, offline defaults);
2. `carve eval-segments` (boundary P/R/F1 at +-2 frames, segment F1@0.5, event-count ratio),
   also on smaller datasets simulated with teleoperation noise (`carve synth --noise`);
3. `carve eval-captions` (kinematic caption verb accuracy against the ground-truth phases);
4. the cluster histogram before/after balancing from the shard manifest (max/min share,
   normalised entropy);
5. `carve eval-model --compare` (event vs unified vs chunk models, same budget, held-out
   episodes);
6. `bench.quality_segments`: segmentation per condition (dwell / blended / noise / two arms /
   50 fps) at +-0.1 s beside the PerAct/RVT keyframe baseline, in its own section.

    python -m bench.quality                         # what `make quality` runs
    python -m bench.quality --episodes 24 --steps 100 --out bench/out/q   # smaller

The section lives between `<!-- quality:begin -->` and `<!-- quality:end -->`; the
benchmark section written by `bench.run_all` is left alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- quality:begin -->"
END = "<!-- quality:end -->"

TRAIN_YAML = """\
max_steps: {steps}
data:
  batch_size: 32
  max_len: 48
  chunk_len: 8
  holdout_frac: 0.2
model:
  d_model: 64
  n_layers: 2
  n_heads: 4
  block_size: 4
optim:
  warmup_steps: 20
"""


def _carve() -> str:
    exe = Path(sys.executable).with_name("carve")
    return str(exe) if exe.exists() else "carve"


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout, wall


def _show(cmd: list[str]) -> str:
    return " ".join(c if c != _carve() else "carve" for c in cmd)


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def cluster_stats(root: Path) -> dict:
    manifests = sorted((root / "shards").glob("v*/manifest.json"))
    if not manifests:
        raise SystemExit(f"{root}: no shard manifest was written")
    m = json.loads(manifests[-1].read_text())
    before, after = m["clusters"]["before"], m["clusters"]["after"]

    def shares(h: dict) -> tuple[float, float]:
        tot = sum(h.values()) or 1
        vals = [v / tot for v in h.values()]
        return max(vals), min(vals)

    return {
        "manifest": _rel(manifests[-1]),
        "policy": m["policy"]["name"],
        "clusters": len(before),
        "rows": m["total_rows"],
        "before": {"max_share": shares(before)[0], "min_share": shares(before)[1], **m["stats"]["before"]},
        "after": {"max_share": shares(after)[0], "min_share": shares(after)[1], **m["stats"]["after"]},
    }


def run(args: argparse.Namespace) -> str:
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    src, root, runs = out / "sim", out / "carve", out / "runs"
    carve = _carve()
    parts: list[str] = []

    synth = [carve, "synth", "--out", _rel(src), "--episodes", str(args.episodes), "--workers", str(args.workers),
             "--seed", str(args.seed), "-q"]
    _, t_synth = _run(synth)
    run_cmd = [carve, "run", "--source", _rel(src), "--root", _rel(root),
               "--set", "shard.row_group_size=32", "--set", "shard.rows_per_shard=128"]
    run_out, t_run = _run(run_cmd, env={"RAY_DEDUP_LOGS": "1"})
    summary = [ln for ln in run_out.splitlines() if ln.startswith("dataset ")]
    parts.append(
        f"Dataset: `{_show(synth)}` ({t_synth:.0f} s), then `{_show(run_cmd)}` ({t_run:.0f} s):\n"
        + "".join(f"`{s}`\n" for s in summary)
    )

    truth = _rel(src / "ground_truth_events.json")
    seg_cmd = [carve, "eval-segments", "--root", _rel(root), "--truth", truth]
    seg_out, _ = _run(seg_cmd)
    parts.append(f"### Segmentation\nCommand: `{_show(seg_cmd)}`\n\n```\n{seg_out.rstrip()}\n```\n")

    for level in args.noise_levels:
        nsrc, nroot = out / f"sim-noise{level:g}", out / f"carve-noise{level:g}"
        nsynth = [carve, "synth", "--out", _rel(nsrc), "--episodes", str(args.noise_episodes), "--workers",
                  str(args.workers), "--seed", str(args.seed + 1), "--noise", f"{level:g}", "-q"]
        _run(nsynth)
        _run([carve, "run", "--source", _rel(nsrc), "--root", _rel(nroot), "--no-shard"])
        nseg = [carve, "eval-segments", "--root", _rel(nroot), "--truth", _rel(nsrc / "ground_truth_events.json")]
        nout, _ = _run(nseg)
        ncap = [carve, "eval-captions", "--root", _rel(nroot), "--truth", _rel(nsrc / "ground_truth_events.json")]
        ncap_out, _ = _run(ncap)
        parts.append(
            f"#### Segmentation and captions with teleoperation noise {level:g}\n"
            f"`{_show(nsynth)}`, `carve run --source {_rel(nsrc)} --root {_rel(nroot)} --no-shard`, then "
            f"`{_show(nseg)}` and `{_show(ncap)}`:\n\n```\n{nout.rstrip()}\n\n"
            f"{ncap_out.splitlines()[0] if ncap_out else ''}\n```\n"
        )

    cap_cmd = [carve, "eval-captions", "--root", _rel(root), "--truth", truth]
    cap_out, _ = _run(cap_cmd)
    parts.append(f"### Kinematic captions\nCommand: `{_show(cap_cmd)}`\n\n```\n{cap_out.rstrip()}\n```\n")

    st = cluster_stats(root)
    b, a = st["before"], st["after"]
    parts.append(
        "### Cluster balancing\n"
        f"From `{st['manifest']}` (policy `{st['policy']}`, {st['clusters']} clusters, {st['rows']} rows):\n\n"
        "| | max share | min share | max/min | normalised entropy |\n|---|---|---|---|---|\n"
        f"| before (all events) | {b['max_share']:.3f} | {b['min_share']:.3f} | {b['max_min_ratio']:.2f} | {b['entropy']:.4f} |\n"
        f"| after (shards) | {a['max_share']:.3f} | {a['min_share']:.3f} | {a['max_min_ratio']:.2f} | {a['entropy']:.4f} |\n"
    )

    if args.steps > 0:
        cfg_path = out / "train.yaml"
        cfg_path.write_text(TRAIN_YAML.format(steps=args.steps))
        cmp_cmd = [carve, "eval-model", "--compare", "--config", _rel(cfg_path), "--manifest", _rel(root),
                   "--out-dir", _rel(runs), "--json", _rel(out / "compare.json")]
        cmp_out, t_cmp = _run(cmp_cmd, env={"OMP_NUM_THREADS": "1"})
        table = "\n".join(ln for ln in cmp_out.splitlines() if ln.startswith("|"))
        parts.append(
            "### World-action model: event vs unified vs chunk\n"
            f"Command: `OMP_NUM_THREADS=1 {_show(cmp_cmd)}` ({t_cmp:.0f} s), with `{_rel(cfg_path)}`:\n\n"
            f"```yaml\n{cfg_path.read_text().rstrip()}\n```\n\n{table}\n"
        )

    head = (
        f"{BEGIN}\n_Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by "
        f"`python -m bench.quality --episodes {args.episodes} --steps {args.steps} --seed {args.seed} "
        f"--noise-levels {' '.join(f'{x:g}' for x in args.noise_levels)} --noise-episodes {args.noise_episodes}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs._\n\n"
    )
    return head + "\n".join(parts) + f"\n{END}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300, help="training steps per mode (0 skips the model comparison)")
    ap.add_argument("--noise-levels", type=float, nargs="*", default=[0.5, 1.0],
                    help="also score segmentation on datasets simulated with this operator noise")
    ap.add_argument("--noise-episodes", type=int, default=24)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "quality"))
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    ap.add_argument("--condition-episodes", type=int, default=24,
                    help="episodes per condition of the segmentation-across-conditions table (bench.quality_segments)")
    ap.add_argument("--no-conditions", action="store_true", help="skip bench.quality_segments")
    args = ap.parse_args(argv)
    section = run(args)
    if args.no_write:
        print(section)
    else:
        write_section(section, BEGIN, END, "## Quality on simulated data")
        print(section)
    if not args.no_conditions:  # its own section of BENCHMARKS.md, after this one
        from bench import quality_segments

        quality_segments.main(["--episodes", str(args.condition_episodes), "--workers", str(args.workers),
                               "--out", str(Path(args.out) / "conditions"), *(["--no-write"] if args.no_write else [])])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
