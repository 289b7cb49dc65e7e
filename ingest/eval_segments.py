"""Score predicted event boundaries against ground truth (`carve eval-segments`).

Owns the metrics and the CLI:

* `match_boundaries(pred, true, tol)`: one-to-one matching of boundary frames within +-tol
  (maximum matching, then minimum total distance; Hungarian assignment);
* `boundary_counts` / `prf`: true/false positives, misses, precision/recall/F1;
* `segment_counts`: segments matched one-to-one at IoU >= 0.5 (segment F1);
* `evaluate(truth, predicted, tol)`: per task type and overall (micro-averaged) report with
  the predicted/true event-count ratio;
* `register(subparsers)`: `carve eval-segments --truth GT.json [--root ROOT | --source DATASET]`.

Ground truth is `<dataset>/ground_truth_events.json` as written by `carve synth` (see
docs/FORMATS.md). Predictions come from the event catalog (`--root`) or from running
`pipeline.segment` directly on the dataset (`--source`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

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


def evaluate(
    truth: dict[str, Any], predicted: dict[int, list[int]], tol: int = DEFAULT_TOLERANCE, iou: float = 0.5
) -> dict[str, Any]:
    """Score `predicted` (episode_index -> internal boundary frames) against `truth` (the
    ground_truth_events.json dict). Episodes missing from `predicted` are reported and not
    scored. Returns {"overall": {...}, "per_task": {task_type: {...}}, "episodes": n, ...}."""
    groups: dict[str, dict[str, Any]] = {}
    missing = []
    for ep in truth.get("episodes", []):
        idx = int(ep["episode_index"])
        if idx not in predicted:
            missing.append(idx)
            continue
        pred = sorted(b for b in predicted[idx] if 0 < b < int(ep["length"]))
        true = sorted(int(b) for b in ep["boundaries"])
        for key in ("__overall__", str(ep.get("task_type", "unknown"))):
            g = groups.setdefault(key, {"boundary": {}, "segment": {}, "pred_events": 0, "true_events": 0,
                                        "episodes": 0})
            _add(g["boundary"], boundary_counts(pred, true, tol))
            _add(g["segment"], segment_counts(pred, true, int(ep["length"]), iou))
            g["pred_events"] += len(pred) + 1
            g["true_events"] += len(true) + 1
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
    return {
        "tolerance": tol,
        "iou": iou,
        "overall": summarise(overall) if overall else None,
        "per_task": {k: summarise(v) for k, v in sorted(groups.items())},
        "missing_episodes": missing,
    }


# --------------------------------------------------------------------------------------------
# Predictions


def load_truth(path: str | Path) -> dict[str, Any]:
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


def predictions_from_catalog(root: Root, dataset: str | None = None, hint: str | None = None) -> dict[int, list[int]]:
    """episode_index -> internal boundaries, from the events in `<root>/events/`.

    `dataset` picks one dataset of the catalog (an error lists the choices); without it the
    `hint` (the truth's dataset name) is used when present, else the catalog's only dataset."""
    from carve.storage.events import read_events

    table = read_events(root, columns=["dataset", "episode_index", "start_frame", "end_frame"])
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
    for ds, idx, start in zip(cols["dataset"], cols["episode_index"], cols["start_frame"], strict=True):
        if ds != dataset:
            continue
        lst = out.setdefault(int(idx), [])
        if start > 0:
            lst.append(int(start))
    return {k: sorted(set(v)) for k, v in out.items()}


def predictions_from_source(uri: str, seg_cfg: Any, src_cfg: Any | None = None,
                            progress: bool = True) -> dict[int, list[int]]:
    """episode_index -> internal boundaries, by running the segmenter on the dataset's signals."""
    from tqdm import tqdm

    from carve.ingest.segment import segment_episode
    from carve.ingest.sources import load_episode, open_source

    src = open_source(uri, getattr(src_cfg, "format", "auto") if src_cfg else "auto")
    refs = src.list_episodes()
    out: dict[int, list[int]] = {}
    for ref in tqdm(refs, desc="segment", unit="ep", disable=not progress):
        ep = load_episode(ref)
        segs = segment_episode(ep.state, ep.action, ep.fps, seg_cfg, ep.state_names, ep.action_names)
        out[int(ref.episode_index)] = [s.start for s in segs[1:]]
    return out


# --------------------------------------------------------------------------------------------
# CLI


def format_report(report: dict[str, Any]) -> str:
    head = f"{'task':<12} {'eps':>4} {'P':>6} {'R':>6} {'F1':>6} {'segF1':>6} {'pred/true':>10}"
    lines = [f"boundary tolerance +-{report['tolerance']} frames, segment IoU >= {report['iou']}", head]

    def row(name: str, r: dict[str, Any]) -> str:
        return (f"{name:<12} {r['episodes']:>4} {r['boundary_precision']:>6.3f} {r['boundary_recall']:>6.3f} "
                f"{r['boundary_f1']:>6.3f} {r['segment_f1']:>6.3f} {r['count_ratio']:>10.3f}")

    for name, r in report["per_task"].items():
        lines.append(row(name, r))
    if report["overall"]:
        lines.append(row("overall", report["overall"]))
    if report["missing_episodes"]:
        lines.append(f"episodes without predictions: {report['missing_episodes']}")
    return "\n".join(lines)
