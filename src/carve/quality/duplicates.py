"""`duplicate_episode`: episodes that are near-copies of another episode of the same dataset.

A copy may be re-encoded, trimmed by a few frames, re-timed (another frame rate) or carry
sensor noise, so episodes are compared by their state trajectory over normalised time. The
copy's first and last states are looked up in the first and last `MAX_TRIM` of the other
episode (nearest state: where the copy was cut from it), that stretch and the copy are both
resampled to `POINTS` points, each dimension scaled by its spread across the dataset, and
their RMS distance taken (each episode tried as the copy of the other). Two episodes closer
than `check.duplicate_distance` are duplicates; the later one is reported.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import NamedTuple, TypeVar

import numpy as np
import pyarrow as pa

from carve.core.config import CheckConfig
from carve.quality.defects import Defect

K = TypeVar("K", bound=Hashable)

POINTS = 64
MAX_TRIM = 0.1
PREFILTER = 0.3  # mean-state distance (in the dataset's spread) beyond which two episodes are not compared


def signature(state: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """The state over the fraction [lo, hi] of the episode's duration, at `POINTS` points."""
    x = np.nan_to_num(np.asarray(state, dtype=np.float64))
    n = len(x)
    if n == 0:
        return np.zeros((POINTS, x.shape[1] if x.ndim == 2 else 1))
    src = np.linspace(0.0, 1.0, n)
    dst = np.linspace(lo, hi, POINTS)
    return np.stack([np.interp(dst, src, x[:, d]) for d in range(x.shape[1])], axis=1)


class Copy(NamedTuple):
    """One episode found to be a near-copy of an earlier one."""

    of: Hashable  # the episode it copies (the earlier key)
    distance: float  # RMS distance of the states, in the dataset's spread
    span: tuple[float, float]  # the stretch of `of` it covers, as fractions of its duration


def copies(states: dict[K, np.ndarray], cfg: CheckConfig) -> dict[K, Copy]:
    """key -> the earlier episode (in key order) it is a near-copy of, for every duplicate."""
    keys = sorted(k for k, s in states.items() if s.ndim == 2 and len(s) >= 4)
    if len(keys) < 2:
        return {}
    dims = {states[k].shape[1] for k in keys}
    if len(dims) != 1:
        return {}
    whole = {k: signature(states[k]) for k in keys}
    scale = np.concatenate([whole[k] for k in keys]).std(axis=0)
    scale[scale < 1e-9] = 1.0
    base = {k: whole[k] / scale for k in keys}
    # candidates first: a copy's mean state (over its normalised time) is close to the original's
    means = np.stack([base[k].mean(axis=0) for k in keys])
    near = np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).mean(axis=2)) < PREFILTER
    out: dict[K, Copy] = {}
    for j, kb in enumerate(keys):
        for i, ka in enumerate(keys[:j]):
            if not near[i, j]:
                continue
            a, b = np.nan_to_num(states[ka]) / scale, np.nan_to_num(states[kb]) / scale
            (d_ab, span), (d_ba, _) = _as_copy(a, b), _as_copy(b, a)
            if min(d_ab, d_ba) < cfg.duplicate_distance:
                # b cut from a: it covers `span` of a; a cut from b: b covers all of a
                out[kb] = Copy(ka, min(d_ab, d_ba), span if d_ab <= d_ba else (0.0, 1.0))
                break
    return out


def find(states: dict[int, np.ndarray], lengths: dict[int, int], cfg: CheckConfig) -> dict[int, Defect]:
    """episode_index -> its `duplicate_episode` defect (naming the earlier episode it copies)."""
    return {kb: duplicate_defect(c, lengths[kb]) for kb, c in copies(states, cfg).items()}


def duplicate_defect(c: Copy, length: int) -> Defect:
    """The `duplicate_episode` finding of an episode of `length` frames found to be the copy `c`."""
    return Defect("duplicate_episode", 0, length - 1,
                  f"a near-copy of episode {c.of} (state RMS distance {c.distance:.4f} of the dataset's spread)")


def _as_copy(orig: np.ndarray, copy: np.ndarray) -> tuple[float, tuple[float, float]]:
    """(RMS distance of `copy` to the stretch of `orig` it would have been cut from (scaled
    states), that stretch as fractions of `orig`'s duration)."""
    n = len(orig)
    w = max(2, int(MAX_TRIM * n) + 1)
    i0 = int(np.argmin(np.linalg.norm(orig[:w] - copy[0], axis=1)))
    i1 = n - w + int(np.argmin(np.linalg.norm(orig[-w:] - copy[-1], axis=1)))
    if i1 - i0 < 3:
        return float("inf"), (0.0, 1.0)
    return _rms(signature(orig[i0 : i1 + 1]), signature(copy)), (i0 / (n - 1), i1 / (n - 1))


def episode_states(parts: Iterable[pa.Table], max_points: int = 512) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(episode_id -> its state trajectory, episode_id -> its length in frames) rebuilt from event
    rows (`episode_id`, `start_frame`, `end_frame`, `state`: each event's per-frame states), one
    part table at a time (a part holds its episodes' every event, `storage.parts`); a trajectory
    longer than `max_points` is kept at `max_points` evenly spaced frames, so the driver holds a
    bounded signature per episode, never the recordings."""
    out: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    for t in parts:
        cols = t.select(["episode_id", "start_frame", "end_frame", "state"]).to_pydict()
        pieces: dict[str, list[tuple[int, np.ndarray]]] = {}
        for ep, start, end, st in zip(cols["episode_id"], cols["start_frame"], cols["end_frame"], cols["state"],
                                      strict=True):
            if st:
                pieces.setdefault(ep, []).append((int(start), np.asarray(st, dtype=np.float64)))
            lengths[ep] = max(lengths.get(ep, 0), int(end))
        for ep, ps in pieces.items():
            if any(p[1].ndim != 2 for p in ps) or len({p[1].shape[1] for p in ps}) != 1:
                continue
            x = np.concatenate([p[1] for p in sorted(ps, key=lambda p: p[0])])
            out[ep] = x[np.linspace(0, len(x) - 1, max_points).round().astype(int)] if len(x) > max_points else x
    return out, lengths


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))
