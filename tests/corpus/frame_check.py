"""The corpus writers' check of a decoded frame against what the simulator rendered.

Each `make_dataset.py` loads its dataset back with lerobot's own `LeRobotDataset` and, for a
few frames per episode, compares every camera's decoded image with the rendered frames of that
episode: the mean absolute error must stay under 12/255 (lossy AV1), and the decoded image must
be (one of) the closest rendered frames, which catches an off-by-N frame (idle stretches render
identical frames, hence the 0.5/255 tolerance).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_frame(img: Any, rendered: np.ndarray, i: int, where: tuple[Any, ...]) -> float:
    """`img`: lerobot's decoded CHW float tensor of frame `i`; `rendered`: the episode's (T, H, W, 3)
    uint8 frames. Returns the frame's mean absolute error (0..255); raises on a mismatch."""
    ref = rendered.astype(np.float32)
    assert tuple(img.shape) == (3, *ref.shape[1:3]), (where, tuple(img.shape))
    decoded = img.permute(1, 2, 0).numpy() * 255.0
    errs = np.abs(decoded[None] - ref).mean(axis=(1, 2, 3))
    assert errs[i] < 12.0, (*where, i, float(errs[i]))
    assert errs[i] - errs.min() < 0.5, (*where, i, int(errs.argmin()), float(errs[i]))
    return float(errs[i])
