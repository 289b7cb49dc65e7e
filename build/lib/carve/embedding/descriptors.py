"""Offline, training-free descriptors: the visual keyframe descriptor and the motion descriptor.

These are what Carve embeds with when no CLIP weights are available (nothing can be
downloaded at run time): they are deterministic, need no model file, and are cheap on CPU.

* `image_descriptors(images)` → (N, DESCRIPTOR_DIM) float32, L2-normalised. Each RGB uint8
  image is resized to 64×64 and described by four blocks, each L2-normalised and weighted
  before the final normalisation so no block dominates:
    - a joint HSV colour histogram (8 hue × 3 saturation × 3 value bins, Hellinger/sqrt),
    - a 4×4 colour layout (mean RGB per cell, centred at mid-grey): *where* colours are,
    - a 4×4 grid of 8-bin unsigned gradient-orientation histograms (HOG-like): shapes/edges,
    - an 8-bin grey-level histogram.
  A flat image has no gradients: that block is zero and stays zero (no NaN).
* `motion_descriptor(state, action, dim, gripper=None)` → (dim,) float32, L2-normalised:
  duration, gripper opening at start and its change, the action trajectory's net change,
  mean, mean absolute speed and its shape (3 interior points relative to the start), and the
  state's net change. The raw features are zero-padded to `dim` when they fit; otherwise
  they go through a fixed seeded Gaussian projection (Johnson–Lindenstrauss), so any
  state/action width gives a `dim`-sized vector deterministically.
* `l2_normalize(x)`: row-wise L2 normalisation that leaves zero rows at zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

DESCRIPTOR_SIZE = 64  # images are resized to this square before describing
_H_BINS, _S_BINS, _V_BINS = 8, 3, 3
_GRID = 4  # cells per side for colour layout and gradient grid
_ORIENT_BINS = 8
_GRAY_BINS = 8
_BLOCK_WEIGHTS = {"hsv": 1.0, "layout": 1.0, "hog": 1.0, "gray": 0.5}

DESCRIPTOR_DIM = (
    _H_BINS * _S_BINS * _V_BINS + _GRID * _GRID * 3 + _GRID * _GRID * _ORIENT_BINS + _GRAY_BINS
)  # 72 + 48 + 128 + 8 = 256

_EPS = 1e-12
_MOTION_POINTS = (0.25, 0.5, 0.75)  # interior resampling points of the trajectory shape
_MAX_LOG_LEN = float(np.log1p(1024.0))  # duration feature scale: log1p(frames) / this


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """L2-normalise along `axis`; all-zero vectors stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, _EPS)).astype(np.float32)


# ----------------------------------------------------------------------------- visual


def _to_square_rgb(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize one RGB uint8 image to size×size; return (rgb uint8, hsv uint8)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected an RGB image of shape HxWx3, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr[:, :, :3], mode="RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(pil, dtype=np.uint8), np.asarray(pil.convert("HSV"), dtype=np.uint8)


def _hsv_hist(hsv: np.ndarray) -> np.ndarray:
    n = hsv.shape[0]
    h = hsv[..., 0].astype(np.int64) * _H_BINS // 256
    s = hsv[..., 1].astype(np.int64) * _S_BINS // 256
    v = hsv[..., 2].astype(np.int64) * _V_BINS // 256
    nb = _H_BINS * _S_BINS * _V_BINS
    idx = (h * _S_BINS + s) * _V_BINS + v + (np.arange(n)[:, None, None] * nb)
    hist = np.bincount(idx.ravel(), minlength=n * nb).reshape(n, nb).astype(np.float32)
    hist /= float(hsv.shape[1] * hsv.shape[2])
    return np.sqrt(hist)


def _cell_sum(x: np.ndarray) -> np.ndarray:
    """(N, S, S, ...) → (N, G, G, ...) sums over G×G square cells."""
    n, s = x.shape[0], x.shape[1]
    c = s // _GRID
    return x.reshape(n, _GRID, c, _GRID, c, *x.shape[3:]).sum(axis=(2, 4))


def _colour_layout(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32) / 255.0
    c = rgb.shape[1] // _GRID
    means = _cell_sum(f) / float(c * c)  # (N, G, G, 3)
    return (means - 0.5).reshape(rgb.shape[0], -1)


def _gradient_grid(gray: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
    gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation in [0, pi)
    b = np.minimum((ang / np.pi * _ORIENT_BINS).astype(np.int64), _ORIENT_BINS - 1)
    onehot = np.zeros((*gray.shape, _ORIENT_BINS), dtype=np.float32)
    np.put_along_axis(onehot, b[..., None], mag[..., None], axis=-1)
    cells = _cell_sum(onehot)  # (N, G, G, B)
    return np.sqrt(cells).reshape(gray.shape[0], -1)


def _gray_hist(gray: np.ndarray) -> np.ndarray:
    n = gray.shape[0]
    b = np.minimum((gray * _GRAY_BINS).astype(np.int64), _GRAY_BINS - 1)
    idx = b + np.arange(n)[:, None, None] * _GRAY_BINS
    hist = np.bincount(idx.ravel(), minlength=n * _GRAY_BINS).reshape(n, _GRAY_BINS).astype(np.float32)
    return np.sqrt(hist / float(gray.shape[1] * gray.shape[2]))


def image_descriptors(images: Sequence[np.ndarray], size: int = DESCRIPTOR_SIZE) -> np.ndarray:
    """Describe RGB uint8 HxWx3 images; (N, DESCRIPTOR_DIM) float32 L2-normalised rows."""
    if len(images) == 0:
        return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
    pairs = [_to_square_rgb(im, size) for im in images]
    rgb = np.stack([p[0] for p in pairs])
    hsv = np.stack([p[1] for p in pairs])
    gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0
    blocks = {
        "hsv": _hsv_hist(hsv),
        "layout": _colour_layout(rgb),
        "hog": _gradient_grid(gray),
        "gray": _gray_hist(gray),
    }
    parts = [l2_normalize(blocks[k]) * _BLOCK_WEIGHTS[k] for k in ("hsv", "layout", "hog", "gray")]
    return l2_normalize(np.concatenate(parts, axis=1))


# ----------------------------------------------------------------------------- motion


def _as_2d(x: np.ndarray | Sequence | None) -> np.ndarray:
    if x is None:
        return np.zeros((0, 0), dtype=np.float64)
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


def motion_features(
    state: np.ndarray | None, action: np.ndarray | None, gripper: np.ndarray | None = None
) -> np.ndarray:
    """The raw (variable-length) motion features that `motion_descriptor` packs into `dim`."""
    s = _as_2d(state)
    a = _as_2d(action)
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


def motion_descriptor(
    state: np.ndarray | None, action: np.ndarray | None, dim: int, gripper: np.ndarray | None = None
) -> np.ndarray:
    """Fixed-size (dim,) L2-normalised motion descriptor of one event; zeros if it has no frames.

    NaN/inf in the inputs propagate into the result (the caller checks and names the event).
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
