"""The fused event embedding `emb`: how the visual, text and motion parts are weighted and joined.

* `fuse(parts, weights)`: each part (an (N, d) array; d == 0 = disabled) is L2-normalised per
  row, scaled by `sqrt(w / sum(w))` over the enabled parts, concatenated and L2-normalised
  again. With every part present, `emb_a . emb_b = sum_k w_k cos_k / sum_k w_k`: the weights
  are each modality's share of the cosine similarity (and of the squared L2 distance k-means
  uses).
* `fusion_scales(weights, present)`: those per-part scales (validates `embed.weights`).
* `embedding_dims(cfg)`: the sizes of the embedding columns for an `EmbedConfig` (0 =
  disabled) and of the fused `emb`, without loading model weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from carve.core.config import EmbedConfig
from carve.embedding.embedders import text_dim, visual_dim
from carve.ingest.visual import l2_normalize

PARTS = ("visual", "text", "motion")  # order of the blocks in the fused `emb`


def fusion_scales(weights: Mapping[str, float], present: Sequence[str]) -> dict[str, float]:
    """Per-part scale `sqrt(w / sum w)` over the `present` parts (a part missing from `weights` counts
    1.0); a part with weight 0 is dropped."""
    unknown = sorted(set(weights) - set(PARTS))
    if unknown:
        raise ValueError(f"embed.weights has unknown parts {unknown}; expected some of {list(PARTS)}")
    ws = {p: float(weights.get(p, 1.0)) for p in present}
    bad = {p: w for p, w in ws.items() if not math.isfinite(w) or w < 0}
    if bad:
        raise ValueError(f"embed.weights must be finite and >= 0, got {bad}")
    total = sum(ws.values())
    if total <= 0:
        raise ValueError(f"embed.weights give zero total weight to the enabled parts {list(present)}")
    return {p: math.sqrt(w / total) for p, w in ws.items() if w > 0}


def fuse(parts: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted concatenation of per-part embeddings, L2-normalised per row.

    `parts` maps part name (visual/text/motion) to an (N, d) array; parts with d == 0 are
    disabled and skipped. Each part is row-normalised, scaled by `sqrt(w / sum w)` and the
    concatenation is normalised again (rows whose parts are all zero stay zero).
    """
    extra = sorted(set(parts) - set(PARTS))
    if extra:
        raise ValueError(f"fuse: unknown parts {extra}; expected some of {list(PARTS)}")
    arrays = {p: np.asarray(parts[p], dtype=np.float32) for p in PARTS if p in parts}
    for p, a in arrays.items():
        if a.ndim != 2:
            raise ValueError(f"fuse: part {p} must be an (N, d) array, got shape {a.shape}")
    rows = {a.shape[0] for a in arrays.values()}
    if len(rows) > 1:
        raise ValueError(f"fuse: parts have different row counts { {p: a.shape[0] for p, a in arrays.items()} }")
    present = [p for p, a in arrays.items() if a.shape[1] > 0]
    if not present:
        raise ValueError("fuse: no enabled embedding parts (visual, text and motion are all empty)")
    scales = fusion_scales(weights, present)
    blocks = [l2_normalize(arrays[p]) * scales[p] for p in present if p in scales]
    return l2_normalize(np.concatenate(blocks, axis=1))


def embedding_dims(cfg: EmbedConfig) -> dict[str, int]:
    """Sizes of the embedding columns for `cfg` (0 = disabled), without loading model weights."""
    visual = visual_dim(cfg)
    text = text_dim(cfg)
    dims = {"visual": visual, "text": text, "motion": cfg.motion_dim}
    present = [p for p in PARTS if dims[p] > 0]
    scales = fusion_scales(cfg.weights, present)
    return {**dims, "emb": sum(dims[p] for p in scales)}
