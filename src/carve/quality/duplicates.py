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

import numpy as np

from carve.core.config import CheckConfig
from carve.quality.defects import Defect

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


def find(states: dict[int, np.ndarray], lengths: dict[int, int], cfg: CheckConfig) -> dict[int, Defect]:
    """episode_index -> its `duplicate_episode` defect (naming the earlier episode it copies)."""
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
    out: dict[int, Defect] = {}
    for j, kb in enumerate(keys):
        for i, ka in enumerate(keys[:j]):
            if not near[i, j]:
                continue
            a, b = np.nan_to_num(states[ka]) / scale, np.nan_to_num(states[kb]) / scale
            d = min(_as_copy(a, b), _as_copy(b, a))
            if d < cfg.duplicate_distance:
                out[kb] = Defect("duplicate_episode", 0, lengths[kb] - 1,
                                 f"a near-copy of episode {ka} (state RMS distance {d:.4f} of the dataset's spread)")
                break
    return out


def _as_copy(orig: np.ndarray, copy: np.ndarray) -> float:
    """RMS distance of `copy` to the stretch of `orig` it would have been cut from (scaled states)."""
    n = len(orig)
    w = max(2, int(MAX_TRIM * n) + 1)
    i0 = int(np.argmin(np.linalg.norm(orig[:w] - copy[0], axis=1)))
    i1 = n - w + int(np.argmin(np.linalg.norm(orig[-w:] - copy[-1], axis=1)))
    if i1 - i0 < 3:
        return float("inf")
    return _rms(signature(orig[i0 : i1 + 1]), signature(copy))


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))
