"""The conformance corpus measured in one run: one table per item (issue 18's "Must show").

For every item of tests/corpus_items.py (data other programs wrote: lerobot 0.4.4/0.3.3, Meta-World
and gym-aloha scripted experts, ManiSkill 3's motion-planning solutions on a Franka Panda, robomimic and
ACT HDF5 layouts, SO-100 conventions) this runs the
shipped configuration, with no per-item settings:

    carve run --source ITEM --format F --root OUT/ITEM/root --set source.dataset=ITEM
    carve eval-segments --root OUT/ITEM/root --truth TRUTH --tolerance-s 0.1 --baseline keyframes \\
        --bootstrap 1000 --json                       # the generator's truth, and truth_all.json
    carve eval-captions --root OUT/ITEM/root --truth truth_carve.json --json   # items with per-arm phases
    carve export --root OUT/ITEM/root --format lerobot --out OUT/ITEM/export --json   # LeRobot-video items

and then checks the export the way a LeRobot user would: it loads with the real lerobot 0.4.4
(`LeRobotDataset`) and every frame is read through it; for each stream-copied camera every
frame of every exported episode is decoded (PyAV) and compared with the source episode's frames,
bit for bit. Writes the "Conformance corpus" section of BENCHMARKS.md.

    python -m bench.corpus_quality             # about 10 min on 2 cores
    python -m bench.corpus_quality --only metaworld --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import fresh_dir
from bench.quality_segments import _carve, _ci, _rel, _run, _show
from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from corpus_items import ITEMS, CorpusItem, write_truth_list  # noqa: E402 - the registry lives beside the tests

BEGIN, END = "<!-- corpus:begin -->", "<!-- corpus:end -->"
HEADING = "## Conformance corpus (data Carve did not make)"
TOLERANCE_S = 0.1
BOOTSTRAP = 1000
MIN_F1 = 0.85  # issue 18's target on every third-party-simulator item


def segments(item: CorpusItem, root: Path, truth: Path, bootstrap: int) -> tuple[dict[str, Any], list[str]]:
    cmd = [_carve(), "eval-segments", "--root", _rel(root), "--truth", _rel(truth), "--tolerance-s",
           f"{TOLERANCE_S:g}", "--baseline", "keyframes", "--bootstrap", str(bootstrap), "--json"]
    text, _, _ = _run(cmd)
    return json.loads(text), cmd


def captions(root: Path, truth: Path) -> tuple[dict[str, Any], list[str]]:
    cmd = [_carve(), "eval-captions", "--root", _rel(root), "--truth", _rel(truth), "--json"]
    text, _, _ = _run(cmd)
    return json.loads(text), cmd


def lerobot_load(out: Path) -> dict[str, Any]:
    """Every frame of the export read through lerobot 0.4.4's own `LeRobotDataset`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from torchcodec.decoders import VideoDecoder  # noqa: F401 - lerobot's default decoder must load
    except Exception as e:  # report what is missing instead of failing the whole run
        return {"error": f"lerobot/torchcodec not usable here: {e}"}
    info = json.loads((out / "meta" / "info.json").read_text())
    ds = LeRobotDataset("carve/corpus-export", root=str(out))
    cams = [k for k, v in info["features"].items() if v["dtype"] == "video"]
    read = 0
    for i in range(len(ds)):
        item = ds[i]
        assert all(tuple(item[c].shape[-2:]) == tuple(info["features"][c]["shape"][:2]) for c in cams)
        read += 1
    return {"frames": int(info["total_frames"]), "lerobot_len": len(ds), "read": read,
            "episodes": int(info["total_episodes"]), "cameras": len(cams)}


def copied_identical(item: CorpusItem, out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Decode every frame of every stream-copied camera of the export and of the source; count equal frames."""
    import pyarrow.parquet as pq

    from carve.ingest.sources import load_episode, open_source

    copied = [c for c, how in summary["cameras"].items() if "copy" in str(how)]
    if not copied:
        return {"copied": [], "frames": 0, "identical": 0}
    src = {int(r.episode_index): r for r in open_source(str(item.source), item.format).list_episodes()}
    side = pq.read_table(out / "meta" / "carve_events.parquet").to_pylist()
    first: dict[int, int] = {}
    for r in side:
        first.setdefault(int(r["episode_index"]), int(r["source_episode_index"]))
    frames = identical = 0
    for ref in open_source(str(out), "lerobot").list_episodes():
        exp = load_episode(ref)
        orig = load_episode(src[first[int(ref.episode_index)]])
        for cam in copied:
            a, b = exp.frames(cam), orig.frames(cam)
            n = min(len(a), len(b))
            frames += max(len(a), len(b))
            identical += int(sum(np.array_equal(a[k], b[k]) for k in range(n)))
    return {"copied": copied, "frames": frames, "identical": identical}


def measure(item: CorpusItem, out: Path, bootstrap: int) -> dict[str, Any]:
    base = out / item.name
    root = base / "root"
    base.mkdir(parents=True, exist_ok=True)
    truth = write_truth_list(item, base / "truth.json")  # the plain list form, also for the fixtures' own files
    res: dict[str, Any] = {"item": item, "commands": []}
    run = [_carve(), "run", "--source", _rel(item.source), "--format", item.format, "--root", _rel(root),
           "--set", f"source.dataset={item.name}", "--set", "ray.progress=false", "--json"]
    text, res["t_run"], _ = _run(run)
    res["run"] = json.loads(text[text.index("{"):])
    res["commands"].append(run)
    res["seg"], cmd = segments(item, root, truth, bootstrap)
    res["commands"].append(cmd)
    full = item.truth.with_name("truth_all.json")
    if full.exists():
        res["seg_all"], cmd = segments(item, root, full, bootstrap)
        res["commands"].append(cmd)
    ct = item.truth.with_name("truth_carve.json")
    if item.arms > 1 and ct.exists():
        res["cap"], cmd = captions(root, ct)
        res["commands"].append(cmd)
    if item.video == "mp4":
        exp = base / "export"
        cmd = [_carve(), "export", "--root", _rel(root), "--format", "lerobot", "--out", _rel(exp), "--json"]
        text, res["t_export"], _ = _run(cmd)
        res["commands"].append(cmd)
        res["export"] = json.loads(text)
        res["load"] = lerobot_load(exp)
        res["copy"] = copied_identical(item, exp, res["export"])
    return res


def item_table(res: dict[str, Any]) -> str:
    item: CorpusItem = res["item"]
    seg = res["seg"]
    c, k, d = seg["overall"], seg["baselines"]["keyframes"]["overall"], seg["comparison"]["keyframes"]
    frames = ", ".join(f"{f} fr" for f in sorted(set(seg["tolerance_frames"].values())))
    rows = [
        f"### `{item.name}`: {item.written_by}\n",
        f"Conventions: {item.conventions}. Source `{_rel(item.source)}`, truth `{_rel(item.truth)}`.\n",
        "| measure | value |", "|---|---|",
        f"| episodes ingested / quarantined | {res['run'].get('episodes_ok', '?')} / "
        f"{res['run'].get('episodes_failed', '?')} (`carve run` {res['t_run']:.0f} s) |",
        f"| boundary F1 at +-{TOLERANCE_S:g} s ({frames}) [95% CI] | {_ci(c, 'boundary_f1')} "
        f"(P {c['boundary_precision']:.3f}, R {c['boundary_recall']:.3f}, count ratio {c['count_ratio']:.2f}) |",
        f"| keyframe rule (PerAct/RVT) F1 [95% CI] | {_ci(k, 'boundary_f1')} |",
        f"| Carve - keyframes [95% CI] | {d['diff']:+.3f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}] |",
    ]
    if item.third_party_sim:
        ok = c["boundary_f1"] >= MIN_F1
        rows.append(f"| target F1 >= {MIN_F1} (third-party simulator) | **{'met' if ok else 'NOT met'}** |")
    if "seg_all" in res:
        a = res["seg_all"]["overall"]
        ka = res["seg_all"]["baselines"]["keyframes"]["overall"]
        rows.append(f"| on every expert phase change (`truth_all.json`, phases < 0.15 s included) | "
                    f"{_ci(a, 'boundary_f1')}; keyframes {ka['boundary_f1']:.3f} |")
    if "cap" in res:
        cap = res["cap"]["overall"] if isinstance(res["cap"].get("overall"), dict) else res["cap"]
        vals = [f"{key.replace('_', ' ')} {v:.3f}" for key, v in cap.items()
                if "accuracy" in key and isinstance(v, float)]
        rows.append(f"| captions against per-arm phases (`eval-captions`) | {', '.join(vals)} |")
    if "export" in res:
        e, ld, cp = res["export"], res["load"], res["copy"]
        how = ", ".join(f"{cam.split('.')[-1]}: {h}" for cam, h in e["cameras"].items())
        rows.append(f"| export (`--unit episode`) | {e['episodes']} episodes, {e['frames']} frames; {how}; "
                    f"{res['t_export']:.0f} s |")
        if "error" in ld:
            rows.append(f"| loads in lerobot 0.4.4 | not checked: {ld['error']} |")
        else:
            rows.append(f"| loads in lerobot 0.4.4 | {ld['lerobot_len']} of {ld['frames']} frames, every one read "
                        f"through `LeRobotDataset[i]` ({ld['read']}) |")
        if cp["copied"]:
            rows.append(f"| stream-copied frames bit-identical to the source | {cp['identical']} of {cp['frames']} |")
    return "\n".join(rows) + "\n"


def run(args: argparse.Namespace) -> str:
    out = fresh_dir(args.out, args.keep)
    t0 = time.perf_counter()
    items = [it for it in ITEMS if not args.only or it.name in args.only]
    results = []
    for it in items:
        print(f"[corpus] {it.name} ...", file=sys.stderr)
        results.append(measure(it, out, args.bootstrap))
    total = time.perf_counter() - t0
    cmd = "python -m bench.corpus_quality" + (f" --only {' '.join(args.only)}" if args.only else "")
    head = (f"{BEGIN}\n_Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by `{cmd}` on "
            f"{platform.machine()}, {os.cpu_count()} CPUs in {total / 60:.1f} min (one run, every item)._\n\n"
            "The shipped configuration for every item (no per-item setting). Truth is each generator's own "
            "(tests/corpus/*/README.md says how): an expert's sub-goals or waypoints, the fixture script's "
            "phases. `truth.json` keeps the expert's phases of at least 0.15 s (tests/corpus/min_phase.py: a "
            "phase under 0.15 s between two of the same sub-goal is one phase with them, runs of such phases "
            "are one compound phase); `truth_all.json` has every change. Intervals: 95% percentile bootstrap "
            f"over episodes ({args.bootstrap} resamples, seed 0); the difference resamples both methods "
            "together.\n")
    body = "\n".join(item_table(r) for r in results)
    cmds = "Commands:\n\n```\n" + "\n".join(_show(c) for r in results for c in r["commands"]) + "\n```\n"
    return f"{head}\n{body}\n{cmds}\n{END}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus_quality", description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, choices=[it.name for it in ITEMS])
    ap.add_argument("--bootstrap", type=int, default=BOOTSTRAP)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "corpus"))
    ap.add_argument("--keep", action="store_true", help="do not delete --out first")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = ap.parse_args(argv)
    section = run(args)
    if not args.no_write:
        write_section(section, BEGIN, END, HEADING)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
