"""Per-frame visual descriptors of RGB frames: Carve's one training-free image descriptor.

Segmentation (visual change points, `ingest.segment`) describes every frame of an episode with
it, and the offline visual embedder (`embedding.embedders.DescriptorEmbedder`,
`embed.visual=descriptor`) describes event keyframes with it. It is deterministic, needs no
model file and is cheap on CPU.

* `image_descriptors(images, size=64)` -> (N, DESCRIPTOR_DIM) float32, L2-normalised rows, for
  a (T, H, W, 3) frame array or a sequence of images (HxWx3 / HxWx4 / HxW; non-uint8 values
  are clipped to [0, 255]). Each image is resized to size x size (PIL bilinear) and described
  by four blocks, each L2-normalised and weighted before the final normalisation so no block
  dominates:
    - a joint HSV colour histogram (8 hue x 3 saturation x 3 value bins, Hellinger/sqrt),
    - a 4x4 colour layout (mean RGB per cell, centred at mid-grey): *where* colours are,
    - a 4x4 grid of 8-bin unsigned gradient-orientation histograms (HOG-like): shapes/edges,
    - an 8-bin grey-level histogram.
  A flat image has no gradients: that block is zero and stays zero (no NaN). Rows do not
  depend on which other images share the call (batched and one-by-one results are equal).
* `frame_descriptors(frames, size=32)`: the same descriptor for every frame of a (T, H, W, 3)
  clip, on frames first shrunk by an integer box filter (cheap enough for all frames of an
  episode: segmentation's visual change points).
* `l2_normalize(x)`: row-wise L2 normalisation that leaves zero rows at zero.

The numpy work is vectorised over all frames of a chunk. Cell sums add the pixels of a cell
one after the other in row-major order, so every float32 value is the same whatever the batch,
the chunking or the vectorisation (the embeddings in written event parts and shards are
reproducible bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

DESCRIPTOR_SIZE = 64  # images are resized to this square before describing
FRAME_DESCRIPTOR_SIZE = 32  # `frame_descriptors` (every frame of an episode) works at this size
_H_BINS, _S_BINS, _V_BINS = 8, 3, 3
_GRID = 4  # cells per side for colour layout and gradient grid
_ORIENT_BINS = 8
_GRAY_BINS = 8
_BLOCK_WEIGHTS = {"hsv": 1.0, "layout": 1.0, "hog": 1.0, "gray": 0.5}
_BLOCKS = ("hsv", "layout", "hog", "gray")

DESCRIPTOR_DIM = (
    _H_BINS * _S_BINS * _V_BINS + _GRID * _GRID * 3 + _GRID * _GRID * _ORIENT_BINS + _GRAY_BINS
)  # 72 + 48 + 128 + 8 = 256

_EPS = 1e-12
_CHUNK_PIXELS = 1 << 21  # described pixels per chunk (bounds the float32 temporaries to ~100 MB)
_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """L2-normalise along `axis`; all-zero vectors stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, _EPS)).astype(np.float32)


def image_descriptors(images: np.ndarray | Sequence[np.ndarray], size: int = DESCRIPTOR_SIZE) -> np.ndarray:
    """Describe RGB images (a (T, H, W, 3) array or a sequence of HxWx3 images); (N, DESCRIPTOR_DIM)
    float32 L2-normalised rows. `size` must be a positive multiple of 4."""
    if size <= 0 or size % _GRID:
        raise ValueError(f"descriptor size must be a positive multiple of {_GRID}, got {size}")
    n = len(images)
    out = np.zeros((n, DESCRIPTOR_DIM), dtype=np.float32)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for lo in range(0, n, chunk):
        batch = images[lo : lo + chunk]
        if isinstance(batch, np.ndarray) and batch.dtype == np.uint8 and batch.shape[1:] == (size, size, 3):
            rgb = np.ascontiguousarray(batch)  # already described-size frames: nothing to resize
        else:
            rgb = np.stack([_resized(im, size) for im in batch])
        out[lo : lo + len(rgb)] = _describe(rgb)
    return out


def frame_descriptors(frames: np.ndarray, size: int = FRAME_DESCRIPTOR_SIZE) -> np.ndarray:
    """Descriptors of every frame of a (T, H, W, 3) clip (an episode's camera), (T, DESCRIPTOR_DIM).

    The same descriptor as `image_descriptors(frames, size)`, computed on frames first shrunk by
    integer factors with a box filter (PIL `reduce`, one call over the stacked frames; the last
    H % factor rows and W % factor columns are dropped) to about size x size. That is several
    times cheaper than a bilinear resize of every full frame, so all frames of an episode can be
    described for visual change points; the values are close to, not equal to, those of
    `image_descriptors` of the same frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    n, h, w, _ = frames.shape
    fh, fw = max(1, h // size), max(1, w // size)
    oh, ow = h // fh, w // fw
    if fh == fw == 1 or n == 0:
        return image_descriptors(frames, size)
    out = np.zeros((n, DESCRIPTOR_DIM), dtype=np.float32)
    chunk = max(1, 4 * _CHUNK_PIXELS // (h * w))
    for lo in range(0, n, chunk):
        x = np.ascontiguousarray(frames[lo : lo + chunk, : oh * fh, : ow * fw])
        k = x.shape[0]
        tall = Image.fromarray(x.reshape(k * oh * fh, ow * fw, 3))  # frame rows stay in their own blocks
        small = np.asarray(tall.reduce((fw, fh)), dtype=np.uint8).reshape(k, oh, ow, 3)
        out[lo : lo + k] = image_descriptors(small, size)
    return out


# ----------------------------------------------------------------------------- internals


def _resized(img: np.ndarray, size: int) -> np.ndarray:
    """One image as size x size RGB uint8 (PIL bilinear; unchanged when already that size)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected an RGB image of shape HxWx3, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[:2] == (size, size):
        return np.ascontiguousarray(arr[:, :, :3])
    pil = Image.fromarray(np.ascontiguousarray(arr[:, :, :3]))
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _describe(rgb: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, DESCRIPTOR_DIM) float32 descriptors."""
    n, s = rgb.shape[0], rgb.shape[1]
    # PIL's HSV conversion is per pixel: one call over the frames stacked vertically
    hsv = np.asarray(Image.fromarray(rgb.reshape(n * s, s, 3)).convert("HSV"), dtype=np.uint8)
    gray = (rgb.astype(np.float32) @ _GRAY_WEIGHTS) / 255.0
    blocks = {
        "hsv": _hsv_hist(hsv.reshape(n, s, s, 3)),
        "layout": _colour_layout(rgb),
        "hog": _gradient_grid(gray),
        "gray": _gray_hist(gray),
    }
    parts = [l2_normalize(blocks[k]) * _BLOCK_WEIGHTS[k] for k in _BLOCKS]
    return l2_normalize(np.concatenate(parts, axis=1))


# each channel's share of the joint HSV bin, by its 8-bit value: bin = (h * S + s) * V + v
_LEVELS = np.arange(256, dtype=np.intp)
_H_PART = (_LEVELS * _H_BINS // 256 * _S_BINS * _V_BINS).astype(np.uint8)
_S_PART = (_LEVELS * _S_BINS // 256 * _V_BINS).astype(np.uint8)
_V_PART = (_LEVELS * _V_BINS // 256).astype(np.uint8)


def _hsv_hist(hsv: np.ndarray) -> np.ndarray:
    n = hsv.shape[0]
    nb = _H_BINS * _S_BINS * _V_BINS  # < 256: a pixel's bin fits a byte
    joint = _H_PART[hsv[..., 0]]
    joint += _S_PART[hsv[..., 1]]
    joint += _V_PART[hsv[..., 2]]
    idx = joint.astype(np.intp) + np.arange(n, dtype=np.intp)[:, None, None] * nb
    hist = np.bincount(idx.ravel(), minlength=n * nb).reshape(n, nb).astype(np.float32)
    hist /= float(hsv.shape[1] * hsv.shape[2])
    return np.sqrt(hist)


def _cell_sum(x: np.ndarray) -> np.ndarray:
    """(N, S, S, C) -> (N, G, G, C) float sums over G x G square cells.

    The c x c pixels of a cell are added one after the other in row-major order: the cell
    offsets are moved to a leading axis and reduced there, so each output is a sequential sum
    (the same order, and so the same float32 rounding, as summing the reshaped cell axes).
    """
    n, s, ch = x.shape[0], x.shape[1], x.shape[3]
    c = s // _GRID
    cells = np.ascontiguousarray(x.reshape(n, _GRID, c, _GRID, c, ch).transpose(2, 4, 0, 1, 3, 5))
    return np.add.reduce(cells.reshape(c * c, -1), axis=0).reshape(n, _GRID, _GRID, ch)


def _colour_layout(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32) / 255.0
    c = rgb.shape[1] // _GRID
    means = _cell_sum(f) / float(c * c)  # (N, G, G, 3)
    return (means - 0.5).reshape(rgb.shape[0], -1)


def _gradient_grid(gray: np.ndarray) -> np.ndarray:
    n, size = gray.shape[0], gray.shape[1]
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, :, 1:-1] = gray[:, :, 2:] - gray[:, :, :-2]
    gy[:, 1:-1, :] = gray[:, 2:, :] - gray[:, :-2, :]
    mag = np.hypot(gx, gy)
    ang = _unsigned(np.arctan2(gy, gx))  # unsigned orientation in [0, pi)
    b = np.minimum((ang / np.pi * _ORIENT_BINS).astype(np.intp), _ORIENT_BINS - 1)
    # each pixel's magnitude goes to (frame, cell row, cell col, orientation bin); np.add.at adds
    # in pixel order, so every cell/bin is the row-major sequential float32 sum of its pixels
    cell = np.arange(size, dtype=np.intp) // (size // _GRID)
    cell_bin = (cell[:, None] * _GRID + cell[None, :]) * _ORIENT_BINS  # (S, S)
    frame = np.arange(n, dtype=np.intp)[:, None, None] * (_GRID * _GRID * _ORIENT_BINS)
    cells = np.zeros(n * _GRID * _GRID * _ORIENT_BINS, dtype=np.float32)
    np.add.at(cells, (b + cell_bin + frame).ravel(), mag.ravel())
    return np.sqrt(cells).reshape(n, -1)


_PI32 = np.float32(np.pi)


def _unsigned(ang: np.ndarray) -> np.ndarray:
    """`np.mod(ang, np.pi)` for float32 angles from `np.arctan2` (in [-pi, pi]), in place and ~3x
    faster: a negative angle gets pi added (the same float32 sum), an angle of exactly pi becomes 0
    (`fmod(pi, pi)`). Equal to `np.mod` for every float32 in [-pi, pi], checked value by value over
    all 2,157,060,024 of them (`tests/test_visual_unsigned.py` checks a sample and the edges)."""
    top = ang == _PI32
    np.add(ang, _PI32, out=ang, where=ang < 0)
    np.copyto(ang, np.float32(0), where=top)
    return ang


def _gray_hist(gray: np.ndarray) -> np.ndarray:
    n = gray.shape[0]
    b = np.minimum((gray * _GRAY_BINS).astype(np.intp), _GRAY_BINS - 1)
    idx = b + np.arange(n, dtype=np.intp)[:, None, None] * _GRAY_BINS
    hist = np.bincount(idx.ravel(), minlength=n * _GRAY_BINS).reshape(n, _GRAY_BINS).astype(np.float32)
    return np.sqrt(hist / float(gray.shape[1] * gray.shape[2]))
