"""The captioner factory: `make_captioner(cfg)` returns the backend `cfg.backend` names.

Backends are imported lazily, only the one asked for (the vLLM one needs a GPU install), and
this module sits above them: `captioners/base.py` (the contract every backend imports) imports
no backend, so there is no import cycle between the contract and its implementations.
"""

from __future__ import annotations

from carve.captioners.base import Captioner
from carve.core.config import CaptionConfig, SegmentConfig
from carve.core.errors import CarveError


def make_captioner(cfg: CaptionConfig, segment: SegmentConfig | None = None) -> Captioner:
    """The captioner `cfg.backend` names: "kinematic" | "openai" | "vllm"; `segment` is the run's
    segmentation config (how arms and grippers are found, the kinematic captioner's thresholds)."""
    backend = cfg.backend
    if backend == "kinematic":
        from carve.captioners.kinematic import KinematicCaptioner

        return KinematicCaptioner(cfg, segment)
    if backend == "openai":
        from carve.captioners.openai_http import OpenAICaptioner

        return OpenAICaptioner(cfg, segment)
    if backend == "vllm":
        from carve.captioners.vllm_engine import VLLMCaptioner

        return VLLMCaptioner(cfg, segment)
    raise CarveError(f"unknown caption backend {backend!r}; expected kinematic, openai or vllm")
