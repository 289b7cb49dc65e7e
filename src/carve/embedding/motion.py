"""The motion descriptor of one event: a fixed-size vector of its state/action/gripper slices.

* `motion_descriptor(state, action, gripper, dim)` -> (dim,) float32, L2-normalised (zeros for
  an event without frames): duration, gripper opening at start and its change, the action
  trajectory's net change, mean, mean absolute speed and its shape (3 interior points relative
  to the start), and the state's net change. The raw features (`motion_features`) are
  zero-padded to `dim` when they fit; otherwise they go through a fixed seeded Gaussian
  projection (Johnson-Lindenstrauss), so any state/action width gives a `dim`-sized vector
  deterministically. NaN/inf in the inputs propagate into the result (`EmbedStage` checks and
  names the event).
* `frames_2d(x)`: per-frame vectors as they come out of an event row (list<list<float>>,
  possibly None/empty, or a 1-D per-frame signal) as a (T, D) float64 array.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from carve.ingest.visual import l2_normalize

_MOTION_POINTS = (0.25, 0.5, 0.75)  # interior resampling points of the trajectory shape
_MAX_LOG_LEN = float(np.log1p(1024.0))  # duration feature scale: log1p(frames) / this


def frames_2d(x: Any) -> np.ndarray:
    """(T, D) float64 of per-frame vectors; (0, 0) when there are none. A 1-D signal is one column.

    Rows of different widths raise ValueError (a None row counts as width 0).
    """
    if x is None or len(x) == 0:
        return np.zeros((0, 0), dtype=np.float64)
    if not isinstance(x, np.ndarray) and all(r is None or isinstance(r, (list, tuple, np.ndarray)) for r in x):
        widths = {0 if r is None else len(r) for r in x}
        if len(widths) > 1:
            raise ValueError(f"ragged per-frame vectors: widths {sorted(widths)}")
        x = [[] if r is None else r for r in x]
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 0), dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"expected a (frames, dims) array, got shape {arr.shape}")
    return arr


def _resample(traj: np.ndarray, points: Sequence[float]) -> np.ndarray:
    """Linear interpolation of a (T, D) trajectory at fractional positions in [0, 1]."""
    t = traj.shape[0]
    if t == 1:
        return np.repeat(traj, len(points), axis=0)
    pos = np.asarray(points) * (t - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None]
    return traj[lo] * (1 - w) + traj[hi] * w


@lru_cache(maxsize=64)
def _projection(n_in: int, n_out: int) -> np.ndarray:
    """Fixed Gaussian projection (seeded by its shape) with unit-norm rows."""
    rng = np.random.default_rng(1_000_003 * n_in + n_out)
    m = rng.standard_normal((n_in, n_out))
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def motion_features(state: Any, action: Any, gripper: Any = None) -> np.ndarray:
    """The raw (variable-length) motion features that `motion_descriptor` packs into `dim`."""
    s = frames_2d(state)
    a = frames_2d(action)
    traj = a if a.shape[0] > 0 else s  # actions when present, else proprioception
    t = max(a.shape[0], s.shape[0])
    if t == 0:
        return np.zeros(0, dtype=np.float64)
    g = np.asarray(gripper, dtype=np.float64).ravel() if gripper is not None else np.zeros(0)
    feats = [
        np.array([np.log1p(t) / _MAX_LOG_LEN]),
        np.array([g[0], g[-1] - g[0]]) if g.size else np.zeros(2),
    ]
    if traj.shape[0] > 0:
        feats += [
            traj[-1] - traj[0],
            traj.mean(axis=0),
            np.abs(np.diff(traj, axis=0)).mean(axis=0) if traj.shape[0] > 1 else np.zeros(traj.shape[1]),
            (_resample(traj, _MOTION_POINTS) - traj[0]).ravel(),
        ]
    if s.shape[0] > 0 and traj is not s:
        feats.append(s[-1] - s[0])
    return np.concatenate(feats)


def motion_descriptor(state: Any, action: Any, gripper: Any, dim: int) -> np.ndarray:
    """Fixed-size (dim,) float32 L2-normalised motion descriptor of one event; zeros if it has no frames.

    `state`/`action` are per-frame vectors and `gripper` the per-frame opening (each may be
    None or empty). NaN/inf in the inputs propagate into the result (the caller checks and
    names the event).
    """
    if dim < 4:
        raise ValueError(f"motion descriptor dim must be >= 4, got {dim}")
    raw = motion_features(state, action, gripper)
    if raw.size == 0:
        return np.zeros(dim, dtype=np.float32)
    if raw.size <= dim:
        out = np.zeros(dim, dtype=np.float64)
        out[: raw.size] = raw
    else:
        out = raw @ _projection(raw.size, dim)
    return l2_normalize(out.astype(np.float32))
