"""Training checkpoints: atomic save, validated load, compatibility checks, RNG capture.

A checkpoint is one `torch.save`d dict (`format = "carve.trainer.ckpt"`, `ckpt_version = 1`)
holding the model, both optimisers and schedulers, the data position (global batch index
plus the loader layout it is valid for), every RNG state and the full trainer config. It is
written to a temporary name in the same folder and renamed into place, so a crash never
leaves a half-written `ckpt-XXXXXXXX.pt`.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carve.core.errors import CarveError
from carve.trainer.model import ModelSpec

CKPT_FORMAT = "carve.trainer.ckpt"
CKPT_VERSION = 1
# model-config keys that change parameter shapes or the computation
SHAPE_KEYS = ("d_model", "n_layers", "n_heads", "mlp_ratio", "block_size")
# data keys the saved data position is only valid for
POSITION_KEYS = (
    "world_size",
    "num_workers",
    "batch_size",
    "seed",
    "shuffle",
    "shuffle_buffer",
    "holdout_frac",
)


class CheckpointError(CarveError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def ckpt_name(step: int) -> str:
    return f"ckpt-{step:08d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    d = Path(out_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if re.fullmatch(r"ckpt-\d{8}\.pt", p.name))


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        torch.save({"format": CKPT_FORMAT, "ckpt_version": CKPT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{p}: cannot read checkpoint: {e}") from e
    if not isinstance(state, dict) or state.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{p}: not a Carve trainer checkpoint")
    if int(state.get("ckpt_version", 0)) > CKPT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {state['ckpt_version']} is newer than this trainer reads"
        )
    return state


def check_compatible(
    state: dict[str, Any],
    where: str,
    spec: ModelSpec | None,
    model_cfg: dict[str, Any],
    position: dict[str, Any],
) -> None:
    """Raise CheckpointError listing every difference that makes an exact resume impossible."""
    problems: list[str] = []
    saved_spec = state.get("spec", {})
    if spec is not None:
        for k, v in asdict(spec).items():
            if saved_spec.get(k) != v:
                problems.append(f"{k}: checkpoint has {saved_spec.get(k)!r}, this run has {v!r}")
    saved_cfg = state.get("model_cfg", {})
    for k in SHAPE_KEYS:
        if saved_cfg.get(k) != model_cfg.get(k):
            problems.append(
                f"model.{k}: checkpoint has {saved_cfg.get(k)!r}, this run has {model_cfg.get(k)!r}"
            )
    saved_pos = state.get("data", {})
    for k in POSITION_KEYS:
        if k in position and saved_pos.get(k) != position[k]:
            problems.append(f"data {k}: checkpoint has {saved_pos.get(k)!r}, this run has {position[k]!r}")
    if problems:
        raise CheckpointError(f"{where}: incompatible with this run: " + "; ".join(problems))
