"""Score predicted event boundaries against ground truth (`carve eval-segments`).

Owns the metrics and the predictions they score:

* `match_boundaries(pred, true, tol)`: one-to-one matching of boundary frames within +-tol
  (maximum matching, then minimum total distance; Hungarian assignment);
* `boundary_counts` / `prf`: true/false positives, misses, precision/recall/F1;
* `segment_counts`: segments matched one-to-one at IoU >= 0.5 (segment F1);
* `evaluate(truth, predicted, tol | tol_s=)`: per task type and overall (micro-averaged) report
  with the predicted/true event-count ratio and the per-episode counts. The boundary tolerance
  is `tol` frames, or `tol_s` seconds resolved per episode from its fps (round half up of
  tol_s x fps frames), so one tolerance means the same time at every frame rate;
  `bootstrap=N` adds 95% percentile confidence intervals of the F1s from N resamples of the
  episodes (seeded), and `paired_bootstrap` the interval of the F1 difference of two
  methods scored on the same episodes;
* predictions: from the event catalog (`catalog_episodes` / `predictions_from_catalog`), or
  by running a method on the dataset's signals (`run_methods` / `predictions_by_method`):
  `carve`, the segmenter (`ingest.segment.segment_episode`), or `keyframes`, the PerAct/RVT
  keyframe rule (`ingest.keyframes.perceiver_keyframes`), the peer baseline scored in the same
  run; both also give each scored episode's length and fps. `catalog_source(root, dataset)` is
  the dataset a catalog's events came from (what `carve run` recorded), so a method can run on
  it from `--root` alone;
* `format_report(report)`: the text table the CLI prints (`cli/segments.py`).

Ground truth (`evaluate`'s `truth`) is the normalised form of `carve.ingest.truth.read_truth`:
Carve's `ground_truth_events.json` from `carve synth`, JSON annotations of one's own, or a
LeRobot dataset with per-frame `subtask_index` (docs/FORMATS.md). `load_truth` reads only
Carve's own file, with its phases as written (what `carve eval-captions` needs).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from carve.storage.root import Root

DEFAULT_TOLERANCE = 2


# --------------------------------------------------------------------------------------------
# Metrics


def _assign(score: np.ndarray, valid: np.ndarray) -> list[tuple[int, int]]:
    """Maximum one-to-one matching over `valid` pairs, preferring low `score` among equals."""
    if score.size == 0 or not valid.any():
        return []
    big = float(score[valid].max() + 1.0) * (min(score.shape) + 1)
    cost = np.where(valid, score, big)
    from scipy.optimize import linear_sum_assignment  # here: every `carve` command imports this module

    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if valid[r, c]]


def match_boundaries(pred: Iterable[int], true: Iterable[int], tol: int = DEFAULT_TOLERANCE) -> list[tuple[int, int]]:
    """Pairs (pred_frame, true_frame) matched one-to-one with |pred - true| <= tol."""
    p = np.asarray(sorted(pred), dtype=np.int64)
    t = np.asarray(sorted(true), dtype=np.int64)
    if len(p) == 0 or len(t) == 0:
        return []
    dist = np.abs(p[:, None] - t[None, :]).astype(np.float64)
    return [(int(p[i]), int(t[j])) for i, j in _assign(dist, dist <= tol)]


def boundary_counts(pred: Iterable[int], true: Iterable[int], tol: int = DEFAULT_TOLERANCE) -> dict[str, int]:
    p, t = list(pred), list(true)
    tp = len(match_boundaries(p, t, tol))
    return {"tp": tp, "fp": len(p) - tp, "fn": len(t) - tp}


def prf(counts: dict[str, int]) -> dict[str, float]:
    """Precision, recall and F1 from tp/fp/fn (1.0 when there was nothing to find or predict)."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def segments_from_boundaries(bounds: Iterable[int], length: int) -> list[tuple[int, int]]:
    edges = [0, *sorted(b for b in set(bounds) if 0 < b < length), length]
    return list(itertools.pairwise(edges))


def segment_counts(pred: Iterable[int], true: Iterable[int], length: int, iou: float = 0.5) -> dict[str, int]:
    """Segments (from boundaries) matched one-to-one at IoU >= `iou`."""
    ps = np.asarray(segments_from_boundaries(pred, length), dtype=np.float64)
    ts = np.asarray(segments_from_boundaries(true, length), dtype=np.float64)
    inter = np.clip(np.minimum(ps[:, None, 1], ts[None, :, 1]) - np.maximum(ps[:, None, 0], ts[None, :, 0]), 0, None)
    union = (ps[:, None, 1] - ps[:, None, 0]) + (ts[None, :, 1] - ts[None, :, 0]) - inter
    ious = inter / np.maximum(union, 1e-9)
    tp = len(_assign(1.0 - ious, ious >= iou))
    return {"tp": tp, "fp": len(ps) - tp, "fn": len(ts) - tp}


def _add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def tolerance_frames(tol_s: float, fps: float) -> int:
    """`tol_s` seconds in frames at `fps`, rounded half up (0.1 s: 1 frame at 12 fps, 3 at 30, 5 at 50)."""
    if tol_s < 0 or fps <= 0:
        raise ValueError(f"tolerance {tol_s} s at {fps} fps: need tolerance >= 0 and fps > 0")
    return math.floor(tol_s * fps + 0.5 + 1e-9)


def _episode_fps(ep: dict[str, Any], truth: dict[str, Any]) -> float:
    fps = ep.get("fps") or truth.get("fps")
    if not fps or float(fps) <= 0:
        raise ValueError(f"episode {ep.get('episode_index')} of {truth.get('dataset', 'the ground truth')}: "
                         "no fps recorded, so a tolerance in seconds cannot be resolved; use frames (--tolerance)")
    return float(fps)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Vectorised `prf(...)["f1"]`."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
        r = np.where(tp + fn > 0, tp / (tp + fn), 1.0)
        return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)


def _resample_weights(n_episodes: int, n: int, seed: int) -> np.ndarray:
    """(n, E) how often each episode is drawn in each of `n` bootstrap resamples."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_episodes, np.full(n_episodes, 1.0 / n_episodes), size=n)


def _counts_matrix(episodes: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.asarray([[e[key]["tp"], e[key]["fp"], e[key]["fn"]] for e in episodes], dtype=np.float64)


def _f1_draws(episodes: list[dict[str, Any]], key: str, weights: np.ndarray) -> np.ndarray:
    sums = weights @ _counts_matrix(episodes, key)
    return _f1(sums[:, 0], sums[:, 1], sums[:, 2])


def bootstrap_ci(episodes: list[dict[str, Any]], n: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, list[float]]:
    """Percentile intervals of the micro-averaged boundary and segment F1 over `n` resamples
    of the episodes (the `per_episode` records of an `evaluate` report)."""
    if not episodes or n <= 0:
        return {}
    w = _resample_weights(len(episodes), n, seed)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {f"{key}_f1_ci": [float(x) for x in np.percentile(_f1_draws(episodes, key, w), q)]
            for key in ("boundary", "segment")}


def paired_bootstrap(a: dict[str, Any], b: dict[str, Any], n: int = 1000, seed: int = 0, level: float = 0.95,
                     key: str = "boundary") -> dict[str, Any]:
    """F1(a) - F1(b) of two reports scored on the same episodes, with its percentile interval
    and the share of resamples in which `a` is not better (the same resamples for both)."""
    ea = {e["episode_index"]: e for e in a["per_episode"]}
    eb = {e["episode_index"]: e for e in b["per_episode"]}
    common = sorted(set(ea) & set(eb))
    if not common:
        raise ValueError("the two reports share no episode")
    ca, cb = [ea[i] for i in common], [eb[i] for i in common]
    point = float(_f1(*_counts_matrix(ca, key).sum(0)) - _f1(*_counts_matrix(cb, key).sum(0)))
    out: dict[str, Any] = {"metric": f"{key}_f1", "episodes": len(common), "diff": point}
    if n > 0:
        w = _resample_weights(len(common), n, seed)
        d = _f1_draws(ca, key, w) - _f1_draws(cb, key, w)
        q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
        out.update(ci=[float(x) for x in np.percentile(d, q)], p_not_better=float(np.mean(d <= 0)),
                   resamples=n, seed=seed)
    return out


def evaluate(
    truth: dict[str, Any],
    predicted: dict[int, list[int]],
    tol: int = DEFAULT_TOLERANCE,
    iou: float = 0.5,
    *,
    tol_s: float | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Score `predicted` (episode_index -> internal boundary frames) against `truth` (the
    ground_truth_events.json dict, or any form `carve.ingest.truth.read_truth` returns, its
    entries' lengths known: see `complete_truth`), with a boundary tolerance of `tol` frames or, when `tol_s`
    is given, `tol_s` seconds resolved per episode from its fps. Episodes missing from
    `predicted` are reported and not scored. Returns {"overall": {...}, "per_task":
    {task_type: {...}}, "per_episode": [...], "tolerance": frames | None, "tolerance_s":
    seconds | None, "tolerance_frames": {fps: frames}, ...}; with `bootstrap` > 0 the overall
    entry carries 95% intervals (`boundary_f1_ci`, `segment_f1_ci`)."""
    groups: dict[str, dict[str, Any]] = {}
    missing = []
    per_episode: list[dict[str, Any]] = []
    resolved: dict[str, int] = {}
    for ep in truth.get("episodes", []):
        idx = int(ep["episode_index"])
        if idx not in predicted:
            missing.append(idx)
            continue
        if ep.get("length") is None:
            raise ValueError(f"episode {idx} of {truth.get('path') or truth.get('dataset') or 'the ground truth'}: "
                             "no length given, and none known from the episodes scored")
        length = int(ep["length"])
        if tol_s is not None:
            fps = _episode_fps(ep, truth)
            ep_tol = tolerance_frames(tol_s, fps)
            resolved[f"{fps:g}"] = ep_tol
        else:
            ep_tol = int(tol)
        pred = sorted(b for b in predicted[idx] if 0 < b < length)
        true = sorted(int(b) for b in ep["boundaries"])
        rec = {"episode_index": idx, "task_type": str(ep.get("task_type", "unknown")), "length": length,
               "tolerance_frames": ep_tol, "boundary": boundary_counts(pred, true, ep_tol),
               "segment": segment_counts(pred, true, length, iou), "pred_events": len(pred) + 1,
               "true_events": len(true) + 1}
        per_episode.append(rec)
        for key in ("__overall__", rec["task_type"]):
            g = groups.setdefault(key, {"boundary": {}, "segment": {}, "pred_events": 0, "true_events": 0,
                                        "episodes": 0})
            _add(g["boundary"], rec["boundary"])
            _add(g["segment"], rec["segment"])
            g["pred_events"] += rec["pred_events"]
            g["true_events"] += rec["true_events"]
            g["episodes"] += 1

    def summarise(g: dict[str, Any]) -> dict[str, Any]:
        b, s = prf(g["boundary"]), prf(g["segment"])
        return {
            "episodes": g["episodes"],
            "boundary_precision": b["precision"],
            "boundary_recall": b["recall"],
            "boundary_f1": b["f1"],
            "segment_f1": s["f1"],
            "pred_events": g["pred_events"],
            "true_events": g["true_events"],
            "count_ratio": g["pred_events"] / g["true_events"] if g["true_events"] else float("nan"),
            **{f"boundary_{k}": v for k, v in g["boundary"].items()},
        }

    overall = groups.pop("__overall__", None)
    summary = summarise(overall) if overall else None
    if summary is not None and bootstrap > 0:
        summary.update(bootstrap_ci(per_episode, bootstrap, seed))
        summary["bootstrap"] = {"resamples": bootstrap, "seed": seed, "level": 0.95}
    return {
        "tolerance": None if tol_s is not None else int(tol),
        "tolerance_s": tol_s,
        "tolerance_frames": resolved if tol_s is not None else {},
        "iou": iou,
        "overall": summary,
        "per_task": {k: summarise(v) for k, v in sorted(groups.items())},
        "per_episode": per_episode,
        "missing_episodes": missing,
    }


# --------------------------------------------------------------------------------------------
# Predictions


def load_truth(path: str | Path) -> dict[str, Any]:
    """Carve's own `ground_truth_events.json` (from `carve synth`) as written; the other forms
    `carve eval-segments` takes are read by `carve.ingest.truth.read_truth`."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"ground truth {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"ground truth {p} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise ValueError(f"ground truth {p} has no 'episodes' list")
    return data


def catalog_episodes(root: Root, dataset: str | None = None, hint: str | None = None
                     ) -> tuple[str, dict[int, list[int]], dict[int, dict[str, Any]]]:
    """(dataset, episode_index -> internal boundaries, episode_index -> {"length", "fps"}) from
    the events in `<root>/events/`; an episode's length is its last event's end frame.

    `dataset` picks one dataset of the catalog (an error lists the choices); without it the
    `hint` (the truth's dataset name) is used when present, else the catalog's only dataset."""
    from carve.ingest.truth import episode_info
    from carve.storage.events import read_events

    table = read_events(root, columns=["dataset", "episode_index", "start_frame", "end_frame", "fps"])
    if table.num_rows == 0:
        raise ValueError(f"catalog {root} has no events")
    cols = table.to_pydict()
    names = sorted(set(cols["dataset"]))
    if dataset is None and hint in names:
        dataset = hint
    if dataset is None:
        if len(names) > 1:
            raise ValueError(f"catalog {root} holds datasets {names}; pick one with --dataset")
        dataset = names[0]
    elif dataset not in names:
        raise ValueError(f"catalog {root} has no dataset {dataset!r} (it has {names})")
    out: dict[int, list[int]] = {}
    rows = []
    for ds, idx, start, end, fps in zip(cols["dataset"], cols["episode_index"], cols["start_frame"],
                                        cols["end_frame"], cols["fps"], strict=True):
        if ds != dataset:
            continue
        lst = out.setdefault(int(idx), [])
        if start > 0:
            lst.append(int(start))
        rows.append((idx, end, fps))
    return dataset, {k: sorted(set(v)) for k, v in out.items()}, episode_info(rows)


def predictions_from_catalog(root: Root, dataset: str | None = None, hint: str | None = None) -> dict[int, list[int]]:
    """episode_index -> internal boundaries, from the events in `<root>/events/` (`catalog_episodes`)."""
    return catalog_episodes(root, dataset, hint)[1]


def catalog_source(root: Root, dataset: str) -> tuple[str, str]:
    """(source URI, format) of `dataset` as `carve run` recorded it in the catalog of `root`,
    checked to open; ValueError naming the URI when it is not recorded or cannot be opened."""
    import pyarrow.fs as pafs

    from carve.core.errors import SourceError
    from carve.ingest.sources import open_source
    from carve.storage.fs import resolve

    rec = root.catalog.dataset(dataset)
    if rec is None or not rec.get("source_uri"):
        raise ValueError(f"the catalog of {root} records no source for dataset {dataset!r}; "
                         "give the dataset with --source")
    uri, fmt = str(rec["source_uri"]), str(rec.get("format") or "auto")
    try:
        fs, path = resolve(uri)
        gone = fs.get_file_info(path).type == pafs.FileType.NotFound
    except (OSError, ValueError):
        gone = False  # open_source below says what is wrong
    if gone:
        raise ValueError(f"dataset {dataset!r} of the catalog of {root} was read from {uri} ({fmt}), which no "
                         "longer exists; give the dataset with --source")
    try:
        open_source(uri, fmt)
    except (SourceError, OSError) as e:
        raise ValueError(f"dataset {dataset!r} of the catalog of {root} was read from {uri} ({fmt}), which "
                         f"cannot be opened now ({e}); give the dataset with --source") from None
    return uri, fmt


METHODS = ("carve", "keyframes")  # what `predictions_by_method` can run on a dataset's signals


def run_methods(uri: str, seg_cfg: Any, methods: Iterable[str] = ("carve",), fmt: str = "auto",
                progress: bool = True) -> tuple[dict[str, dict[int, list[int]]], dict[int, dict[str, Any]]]:
    """(method -> episode_index -> internal boundaries, episode_index -> {"length", "fps"}),
    running each method on the signals of the dataset at `uri` (one pass over the episodes):
    `carve` is the segmenter with `seg_cfg`, `keyframes` the PerAct/RVT keyframe rule
    (`ingest.keyframes`; `seg_cfg` only locates the grippers)."""
    from tqdm import tqdm

    from carve.ingest.keyframes import perceiver_keyframes
    from carve.ingest.segment import segment_episode
    from carve.ingest.sources import load_episode, open_source

    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; use {', '.join(METHODS)}")
    src = open_source(uri, fmt or "auto")
    refs = src.list_episodes()
    out: dict[str, dict[int, list[int]]] = {m: {} for m in methods}
    info: dict[int, dict[str, Any]] = {}
    for ref in tqdm(refs, desc="segment", unit="ep", disable=not progress):
        ep = load_episode(ref)
        idx = int(ref.episode_index)
        info[idx] = {"length": ep.length, "fps": float(ep.fps)}
        if "carve" in out:
            segs = segment_episode(ep.state, ep.action, ep.fps, seg_cfg, ep.state_names, ep.action_names)
            out["carve"][idx] = [s.start for s in segs[1:]]
        if "keyframes" in out:
            out["keyframes"][idx] = perceiver_keyframes(ep.state, ep.action, ep.fps, ep.state_names,
                                                        ep.action_names, cfg=seg_cfg)
    return out, info


def predictions_by_method(uri: str, seg_cfg: Any, src_cfg: Any | None = None, methods: Iterable[str] = ("carve",),
                          progress: bool = True) -> dict[str, dict[int, list[int]]]:
    """method -> episode_index -> internal boundaries (`run_methods`; the format from `src_cfg`)."""
    fmt = getattr(src_cfg, "format", "auto") if src_cfg else "auto"
    return run_methods(uri, seg_cfg, methods, fmt, progress)[0]


# --------------------------------------------------------------------------------------------
# CLI


def _tolerance_text(report: dict[str, Any]) -> str:
    if report.get("tolerance_s") is not None:
        per_fps = ", ".join(f"{f} frames at {fps} fps" for fps, f in sorted(report["tolerance_frames"].items(),
                                                                           key=lambda kv: float(kv[0])))
        return f"+-{report['tolerance_s']:g} s ({per_fps or 'no episode scored'})"
    return f"+-{report['tolerance']} frames"


def format_report(report: dict[str, Any], title: str | None = None) -> str:
    head = f"{'task':<12} {'eps':>4} {'P':>6} {'R':>6} {'F1':>6} {'segF1':>6} {'pred/true':>10}"
    lines = [f"{title + ': ' if title else ''}boundary tolerance {_tolerance_text(report)}, "
             f"segment IoU >= {report['iou']}", head]

    def row(name: str, r: dict[str, Any]) -> str:
        return (f"{name:<12} {r['episodes']:>4} {r['boundary_precision']:>6.3f} {r['boundary_recall']:>6.3f} "
                f"{r['boundary_f1']:>6.3f} {r['segment_f1']:>6.3f} {r['count_ratio']:>10.3f}")

    for name, r in report["per_task"].items():
        lines.append(row(name, r))
    overall = report["overall"]
    if overall:
        lines.append(row("overall", overall))
        if "boundary_f1_ci" in overall:
            b, s = overall["boundary_f1_ci"], overall["segment_f1_ci"]
            lines.append(f"95% bootstrap intervals over episodes ({overall['bootstrap']['resamples']} resamples, "
                         f"seed {overall['bootstrap']['seed']}): F1 [{b[0]:.3f}, {b[1]:.3f}], "
                         f"segF1 [{s[0]:.3f}, {s[1]:.3f}]")
    if report["missing_episodes"]:
        lines.append(f"episodes without predictions: {report['missing_episodes']}")
    return "\n".join(lines)


def format_comparison(name: str, cmp: dict[str, Any]) -> str:
    """One line: Carve's F1 minus a baseline's, with its interval when bootstrapped."""
    text = f"carve - {name}: boundary F1 {cmp['diff']:+.3f} over {cmp['episodes']} episodes"
    if "ci" in cmp:
        text += (f", 95% paired bootstrap interval [{cmp['ci'][0]:+.3f}, {cmp['ci'][1]:+.3f}], "
                 f"{name} at least as good in {100 * cmp['p_not_better']:.1f}% of resamples")
    return text
