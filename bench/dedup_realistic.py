"""Near-duplicate marking on realistic near-duplicates: re-recorded, trimmed, re-timed, re-encoded.

    .venv/bin/python -m bench.dedup_realistic --scenes 12 --seed 0 [--eval-seed 1] [--noise 0.3]

This module owns the realistic near-duplicate data set (`make_dataset`), the event pairs that
count as true near-duplicates (`true_pairs`), the scoring of one dedup setting (`score`) and the
sweep that picks a setting on development seeds and reports it on held-out ones (`run`).

Data (one task, `--task`, operator noise `--noise` on every recording). For each of `--scenes`
scenes (scene seed `episode_seed(seed, i)`):

* distinct demonstrations (the negatives): the source demo `A` and a second demo `B` of the same
  task in the same scene (`run_episode(..., plan_seed=...)`: same objects, tray and cameras,
  another plan and another take of the operator noise); other scenes' demos are negatives too;
* near-duplicates of `A`, one of each kind:
  `rerecord`  the same scene and plan recorded again with new operator noise (`noise_seed`);
  `trim`      A's video and signals with 2-5 frames cut at the start and 2-5 at the end;
  `retime`    A's video and signals resampled to 0.9x or 1.1x its length (alternating);
  `reencode`  A's signals with the video re-encoded (libx264 CRF 38 or MPEG-4 q8).

True pairs. Every episode has a map from its frames to the source's frames (identity for
re-encode, a shift for trim, a scale for re-time, and for a re-recording the piecewise-linear map
between the two recordings' ground-truth phase boundaries). An event of a near-duplicate is
mapped onto the source's time axis; its true partner is the source event with the largest
temporal IoU, if that IoU is >= 0.5. Recall of a kind: the fraction of its true pairs that end up
in one dedup group (a representative and the events marked `dup_of` it).

Negatives. False-flag rate: the fraction of distinct-demo events (A and B of every scene) that
share a group with an event recorded from another demo (another scene's, the same scene's other
demo, or a copy of either). `same_scene` counts only groups shared with the same scene's other
demo or its copies. Pair precision: of all cross-episode pairs inside a group, the fraction that
come from one demo (A with its copies, or two copies of A). 95% Wilson intervals throughout.

Settings. The event rule alone (`cluster_catalog` without the episode-copy gate) is swept over
`cluster.dedup_signal_tol` and `cluster.dedup_threshold` on the development seed; the setting
with the highest mean recall over the four kinds among those whose development false-flag rate
is at most `--max-false` or the shipped default's, whichever is larger, is picked. On the
held-out seed (`--eval-seed`) the shipped default and the picked setting are reported, each also
end to end: with the `duplicate_episode` copy gate of `carve run`
(`pipeline.copies.episode_copies`) applied as `carve run` applies it. The copy gate's distance
(`check.duplicate_distance`) is swept and picked the same way, end to end with the shipped event
rule; every swept distance is reported on the held-out seed too (the pick is made on development
only). For the room a larger distance has outside this simulator, the closest pairs of distinct
episodes of three third-party corpora (tests/corpus) are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.dedup_validation import _groups, reencode, wilson

KINDS = ("reencode", "trim", "retime", "rerecord")
TOLS: tuple[float | None, ...] = (None, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
THRESHOLDS = (0.97, 0.95, 0.9)
THIRD_PARTY = ("metaworld", "aloha_scripted", "so100_joint")  # tests/corpus datasets of distinct recordings
GATES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)  # check.duplicate_distance of the episode-copy gate
MIN_IOU = 0.5
_CODECS = (("libx264", 38), ("mpeg4", 0))


@dataclass
class Recording:
    """One episode of the data set: its kind, the demo it comes from and its frame map to it."""

    name: str  # episode number, zero-padded as in the episode ids
    kind: str  # "source" (A), "other" (B), or one of KINDS
    demo: str  # the distinct demo it records: "<scene>A" or "<scene>B"
    scene: int
    to_source: tuple[np.ndarray, np.ndarray]  # (own frame knots, the demo's frame knots): np.interp map


def _identity(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.array([0.0, float(n)])
    return k, k


def _resample(a: np.ndarray, m: int) -> np.ndarray:
    """`a` (T, D) linearly resampled to `m` frames over the same span; binary channels stay binary."""
    t = np.linspace(0.0, len(a) - 1, m)
    out = np.stack([np.interp(t, np.arange(len(a)), a[:, d]) for d in range(a.shape[1])], axis=1)
    binary = np.all(np.isin(a, (0.0, 1.0)), axis=0)
    out[:, binary] = np.round(out[:, binary])
    return out.astype(a.dtype)


def trimmed(arr: Any, start: int, end: int) -> Any:
    """EpisodeArrays with `start` frames cut at the start and `end` at the end (video and signals)."""
    from carve.sim.lerobot_writer import EpisodeArrays

    sl = slice(start, arr.length - end)
    return EpisodeArrays(task=arr.task, state=arr.state[sl], action=arr.action[sl],
                         frames={k: v[sl] for k, v in arr.frames.items()})


def retimed(arr: Any, factor: float) -> Any:
    """EpisodeArrays resampled to round(factor x length) frames: signals linearly, video by the
    nearest frame (a recording of the same motion at another speed)."""
    from carve.sim.lerobot_writer import EpisodeArrays

    n = arr.length
    m = round(n * factor)
    idx = np.rint(np.linspace(0.0, n - 1, m)).astype(np.int64)
    return EpisodeArrays(task=arr.task, state=_resample(arr.state, m), action=_resample(arr.action, m),
                         frames={k: v[idx] for k, v in arr.frames.items()})


def _phase_knots(ep: Any) -> np.ndarray:
    return np.array([float(p.start) for p in ep.phases] + [float(len(ep.state))])


def _recordings(task: str, scenes: int, seed: int, size: int, fps: int, noise: float
                ) -> Iterator[tuple[Recording, Any]]:
    """(Recording, EpisodeArrays) of every episode, in episode order (see the module docstring)."""
    from carve.sim.lerobot_writer import EpisodeArrays
    from carve.sim.synth import episode_seed
    from carve.sim.tasks import run_episode

    rng = np.random.default_rng([seed, 77])
    k = 0

    def rec(kind: str, demo: str, scene: int, ep_map: tuple[np.ndarray, np.ndarray]) -> Recording:
        nonlocal k
        k += 1
        return Recording(f"{k - 1:06d}", kind, demo, scene, ep_map)

    for i in range(scenes):
        s = episode_seed(seed, i)
        kw = {"fps": fps, "size": size, "operator_noise": noise}
        a = run_episode(task, s, plan_seed=s, noise_seed=s, **kw)
        b = run_episode(task, s, plan_seed=s + 1, noise_seed=s + 1, **kw)
        again = run_episode(task, s, plan_seed=s, noise_seed=s + 2, **kw)
        arr = EpisodeArrays(task=a.task, state=a.state, action=a.action, frames=a.frames)
        n = arr.length
        yield rec("source", f"{i}A", i, _identity(n)), arr
        yield rec("other", f"{i}B", i, _identity(len(b.state))), \
            EpisodeArrays(task=b.task, state=b.state, action=b.action, frames=b.frames)
        yield rec("reencode", f"{i}A", i, _identity(n)), arr
        t0, t1 = (int(v) for v in rng.integers(2, 6, size=2))
        yield rec("trim", f"{i}A", i, (np.array([0.0, n - t0 - t1]), np.array([t0, n - t1], dtype=float))), \
            trimmed(arr, t0, t1)
        f = 0.9 if i % 2 == 0 else 1.1
        r = retimed(arr, f)
        yield rec("retime", f"{i}A", i, (np.array([0.0, r.length - 1.0]), np.array([0.0, n - 1.0]))), r
        yield rec("rerecord", f"{i}A", i, (_phase_knots(again), _phase_knots(a))), \
            EpisodeArrays(task=again.task, state=again.state, action=again.action, frames=again.frames)


def make_dataset(folder: Path, task: str, scenes: int, seed: int, *, size: int = 64, fps: int = 12,
                 noise: float = 0.3) -> list[Recording]:
    """Write the folder data set; return its recordings in episode order."""
    from carve.sim.formats import write_folder
    from carve.sim.scene import action_names, state_names

    recs: list[Recording] = []

    def arrays() -> Iterator[Any]:
        for r, arr in _recordings(task, scenes, seed, size, fps, noise):
            recs.append(r)
            yield arr

    write_folder(folder, arrays(), fps=fps, state_names=state_names(1), action_names=action_names(1))
    source = {r.demo: r.name for r in recs if r.kind == "source"}
    for j, r in enumerate(x for x in recs if x.kind == "reencode"):
        codec, crf = _CODECS[j % len(_CODECS)]
        reencode(folder / f"episode_{source[r.demo]}.mp4", folder / f"episode_{r.name}.mp4", codec, crf)
    return recs


def _event_rows(events: Any) -> list[tuple[str, str, int, int]]:
    """(event_id, episode number, start_frame, end_frame) per event."""
    return [(e, ep.rsplit("/", 1)[-1], s, t) for e, ep, s, t in zip(
        events.column("event_id").to_pylist(), events.column("episode_id").to_pylist(),
        events.column("start_frame").to_pylist(), events.column("end_frame").to_pylist(), strict=True)]


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def true_pairs(events: Any, recs: list[Recording]) -> dict[str, list[tuple[str, str]]]:
    """kind -> (source event, near-duplicate event) pairs (see the module docstring)."""
    by_name = {r.name: r for r in recs}
    source = {r.demo: r.name for r in recs if r.kind == "source"}
    per_ep: dict[str, list[tuple[str, int, int]]] = {}
    for e, ep, s, t in _event_rows(events):
        per_ep.setdefault(ep, []).append((e, s, t))
    out: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for name, evs in per_ep.items():
        r = by_name[name]
        if r.kind not in KINDS:
            continue
        src = per_ep.get(source[r.demo], [])
        for e, s, t in evs:
            span = (float(np.interp(s, *r.to_source)), float(np.interp(t, *r.to_source)))
            best = max(src, key=lambda x: _iou(span, (x[1], x[2])), default=None)
            if best is not None and _iou(span, (best[1], best[2])) >= MIN_IOU:
                out[r.kind].append((best[0], e))
    return out


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [round(v, 4) for v in wilson(k, n)]}


def score(events: Any, groups: dict[str, str], recs: list[Recording], pairs: dict[str, list[tuple[str, str]]]
          ) -> dict[str, Any]:
    """Recall per kind, false-flag rates on distinct demos and pair precision of one grouping."""
    by_name = {r.name: r for r in recs}
    rec_of = {e: by_name[ep] for e, ep, _, _ in _event_rows(events)}
    members: dict[str, list[str]] = {}
    for e, g in groups.items():
        members.setdefault(g, []).append(e)
    distinct = [e for e, r in rec_of.items() if r.kind in ("source", "other")]
    false = sum(1 for e in distinct if any(rec_of[o].demo != rec_of[e].demo for o in members[groups[e]]))
    same = sum(1 for e in distinct if any(rec_of[o].demo != rec_of[e].demo and rec_of[o].scene == rec_of[e].scene
                                          for o in members[groups[e]]))
    good = bad = 0
    for m in members.values():
        for i, a in enumerate(m):
            for b in m[i + 1:]:
                if rec_of[a].name != rec_of[b].name:
                    good += rec_of[a].demo == rec_of[b].demo
                    bad += rec_of[a].demo != rec_of[b].demo
    out: dict[str, Any] = {k: _rate(sum(groups[a] == groups[b] for a, b in p), len(p)) for k, p in pairs.items()}
    out["false_flag"] = _rate(false, len(distinct))
    out["same_scene_false_flag"] = _rate(same, len(distinct))
    out["pair_precision"] = _rate(good, good + bad)
    return out


def diagnose(events: Any, recs: list[Recording], pairs: dict[str, list[tuple[str, str]]], threshold: float,
             tol: float) -> dict[str, Any]:
    """Why true pairs are missed by the event rule, per kind: the cosine is below `threshold`, the
    lengths differ by more than the rule allows (`signal_distance` is inf), the signal distance is
    above `tol`, or both checks pass (then the clustering or the greedy ranking split them); with
    the signal distances of true pairs (median, 90th percentile) and, for comparison, of event
    pairs of two distinct demos of the same scene whose cosine passes (1st, 5th percentile, median)."""
    from carve.clustering.dedup import event_fingerprints, signal_distance

    x = np.asarray(events.column("emb").to_pylist(), dtype=np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sig = event_fingerprints(events)
    row = {e: i for i, e in enumerate(events.column("event_id").to_pylist())}
    out: dict[str, Any] = {}

    def q(v: list[float], ps: tuple[float, ...]) -> list[float | None]:
        f = np.asarray([d for d in v if np.isfinite(d)])
        return [round(float(np.quantile(f, p)), 3) if len(f) else None for p in ps]

    for kind, ps in pairs.items():
        cos = np.array([x[row[a]] @ x[row[b]] for a, b in ps])
        dist = np.array([signal_distance(sig[row[a]], sig[row[b]][None])[0] for a, b in ps])
        out[kind] = {"pairs": len(ps), "cosine_below": int((cos < threshold).sum()),
                     "length_rejected": int(((cos >= threshold) & ~np.isfinite(dist)).sum()),
                     "distance_above_tol": int(((cos >= threshold) & np.isfinite(dist) & (dist > tol)).sum()),
                     "both_pass": int(((cos >= threshold) & (dist <= tol)).sum()),
                     "distance_p50_p90": q(list(dist), (0.5, 0.9))}
    by_name = {r.name: r for r in recs}
    rec = [by_name[ep.rsplit("/", 1)[-1]] for ep in events.column("episode_id").to_pylist()]
    a_rows = [i for i, r in enumerate(rec) if r.kind == "source"]
    b_rows = {r.scene: [] for r in recs}
    for i, r in enumerate(rec):
        if r.kind == "other":
            b_rows[r.scene].append(i)
    neg = []
    for i in a_rows:
        js = np.array([j for j in b_rows[rec[i].scene] if x[i] @ x[j] >= threshold], dtype=np.int64)
        if len(js):
            neg.extend(float(d) for d in signal_distance(sig[i], sig[js]))
    out["same_scene_distinct"] = {"pairs_passing_cosine": len(neg),
                                  "length_rejected": int(sum(not np.isfinite(d) for d in neg)),
                                  "distance_p01_p05_p50": q(neg, (0.01, 0.05, 0.5))}
    return out


def closest_distinct_episodes(uri: str, k: int = 3) -> list[float]:
    """The `k` smallest copy-gate distances (`quality.duplicates`, each episode tried as the copy
    of the other, the dataset's spread as the scale) between episodes of a LeRobot dataset whose
    episodes are all distinct recordings: how much room a larger `check.duplicate_distance` has."""
    from carve.ingest.sources import load_episode, open_source
    from carve.quality import duplicates

    refs = open_source(uri, "lerobot").list_episodes()
    states = [np.nan_to_num(np.asarray(load_episode(r).state, dtype=np.float64)) for r in refs]
    scale = np.concatenate([duplicates.signature(x) for x in states]).std(axis=0)
    scale[scale < 1e-9] = 1.0
    d = [min(duplicates._as_copy(a / scale, b / scale)[0], duplicates._as_copy(b / scale, a / scale)[0])
         for j, b in enumerate(states) for a in states[:j]]
    return [round(float(v), 4) for v in sorted(d)[:k]]


def _mean_recall(s: dict[str, Any]) -> float:
    return float(np.mean([s[k]["rate"] or 0.0 for k in KINDS]))


def pick(sweep: dict[str, dict[str, Any]], max_false: float, default: str) -> str:
    """The swept setting with the highest mean recall whose false-flag rate is at most `max_false`
    or the default's (no setting may flag more distinct-demo events than the shipped one does)."""
    cap = max(max_false, sweep[default]["false_flag"]["rate"] or 0.0)
    ok = {k: v for k, v in sweep.items() if (v["false_flag"]["rate"] or 0.0) <= cap}
    return max(ok, key=lambda k: (_mean_recall(ok[k]), -list(sweep).index(k))) if ok else ""


def _label(tol: float | None, thr: float) -> str:
    return f"cos>={thr},tol={'none' if tol is None else tol}"


def build_and_ingest(work: Path, task: str, scenes: int, seed: int, size: int, fps: int, noise: float
                     ) -> tuple[Any, Any, Any, list[Recording], dict[str, float]]:
    """Make the data set under `work`, run ingest (LocalExecutor); (root, cfg, events, recs, timings)."""
    from carve.core.config import CarveConfig
    from carve.pipeline.executor import LocalExecutor
    from carve.pipeline.run import run_pipeline
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    t0 = time.time()
    src = work / "raw" / "demos"
    recs = make_dataset(src, task, scenes, seed, size=size, fps=fps, noise=noise)
    t_sim = time.time() - t0
    cfg = CarveConfig().with_overrides({"root": str(work / "root"), "source": {"uri": str(src), "format": "folder"},
                                        "ray": {"progress": False}})
    t0 = time.time()
    run_pipeline(cfg, shard=False, executor=LocalExecutor())
    root = open_root(cfg.root)
    events = read_events(root, columns=["event_id", "episode_id", "start_frame", "end_frame", "state", "action",
                                        "emb"])
    return root, cfg, events, recs, {"sim_s": round(t_sim, 1), "pipeline_s": round(time.time() - t0, 1)}


def grouping(root: Any, cfg: Any, tol: float | None, thr: float, copies: dict[str, str] | None = None
             ) -> dict[str, str]:
    """event_id -> group after re-clustering with this dedup setting (and `copies`, if given)."""
    from carve.clustering.curate import cluster_catalog
    from carve.clustering.versions import read_assignments, unique_assignments

    c = cfg.with_overrides({"cluster": {"dedup_signal_tol": tol, "dedup_threshold": thr}})
    v = cluster_catalog(root, c, copies)
    return _groups(unique_assignments(read_assignments(root, v)))


def _gated(root: Any, cfg: Any, gate: float) -> tuple[dict[str, str], int]:
    """The copy gate's event pairs and copied-episode count at `check.duplicate_distance = gate`."""
    from carve.pipeline.copies import episode_copies

    return episode_copies(root, cfg.with_overrides({"check": {"duplicate_distance": gate}}).check)


def evaluate(work: Path, task: str, scenes: int, seed: int, size: int, fps: int, noise: float,
             settings: list[tuple[float | None, float]], gates: list[float]) -> dict[str, Any]:
    """Score every event-rule setting alone on one seed set, then end to end (copy gate at each
    distance in `gates`, then the event rule at the shipped setting)."""
    root, cfg, events, recs, timing = build_and_ingest(work, task, scenes, seed, size, fps, noise)
    pairs = true_pairs(events, recs)
    out: dict[str, Any] = {"seed": seed, "episodes": len(recs), "events": events.num_rows, **timing,
                           "true_pairs": {k: len(v) for k, v in pairs.items()}, "rule": {}, "with_copy_gate": {}}
    for tol, thr in settings:
        out["rule"][_label(tol, thr)] = score(events, grouping(root, cfg, tol, thr), recs, pairs)
    out["why_missed_at_default"] = diagnose(events, recs, pairs, cfg.cluster.dedup_threshold,
                                            cfg.cluster.dedup_signal_tol)
    tol, thr = cfg.cluster.dedup_signal_tol, cfg.cluster.dedup_threshold
    for gate in gates:
        copies, n_copied = _gated(root, cfg, gate)
        res = score(events, grouping(root, cfg, tol, thr, copies), recs, pairs)
        out["with_copy_gate"][_gate_label(gate)] = {**res, "copied_episodes": n_copied}
    return out


def _gate_label(gate: float) -> str:
    return f"gate={gate}"


def run(task: str, scenes: int, seed: int, eval_seed: int, *, size: int, fps: int, noise: float,
        max_false: float, keep: str | None = None) -> dict[str, Any]:
    """Sweep on the development seed, pick (event rule; copy-gate distance), report held out."""
    from carve.core.config import CarveConfig

    base = CarveConfig()
    default = (base.cluster.dedup_signal_tol, base.cluster.dedup_threshold)
    gate0 = base.check.duplicate_distance
    sweep = [(tol, thr) for thr in THRESHOLDS for tol in TOLS]
    gates = sorted({gate0, *GATES})
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="carve-dedup-real-"))
    try:
        dev = evaluate(work / "dev", task, scenes, seed, size, fps, noise, sweep, gates)
        chosen = pick(dev["rule"], max_false, _label(*default))
        picked = next(s for s in sweep if _label(*s) == chosen) if chosen else default
        chosen_gate = pick(dev["with_copy_gate"], max_false, _gate_label(gate0))
        picked_gate = next(g for g in gates if _gate_label(g) == chosen_gate) if chosen_gate else gate0
        held = evaluate(work / "heldout", task, scenes, eval_seed, size, fps, noise,
                        list(dict.fromkeys([default, picked])), gates)
        corpora = Path(__file__).resolve().parents[1] / "tests" / "corpus"
        closest = {name: closest_distinct_episodes(str(corpora / name / "dataset"))
                   for name in THIRD_PARTY if (corpora / name / "dataset").is_dir()}
        return {"third_party_closest_distinct": closest, "task": task, "scenes": scenes, "noise": noise, "size": size, "fps": fps, "max_false": max_false,
                "default": _label(*default), "picked": _label(*picked), "default_gate": _gate_label(gate0),
                "picked_gate": _gate_label(picked_gate), "dev": dev, "heldout": held}
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="pick_place")
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0, help="development seed")
    ap.add_argument("--eval-seed", type=int, default=1, help="held-out seed")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--max-false", type=float, default=0.01, help="largest development false-flag rate to pick")
    ap.add_argument("--keep", default=None, help="work folder to keep (default: a temp folder, removed)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    res = run(args.task, args.scenes, args.seed, args.eval_seed, size=args.size, fps=args.fps, noise=args.noise,
              max_false=args.max_false, keep=args.keep)
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
