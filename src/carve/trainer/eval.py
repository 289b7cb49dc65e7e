"""Held-out evaluation of trained models, and the event / unified / chunk comparison.

`evaluate(model, manifest, data_cfg)` scores a model on the held-out episodes of a manifest
(`split="eval"`: episodes whose id hashes into `holdout_frac`), one pass, in order. Every
mode is scored on whole events, truncated to `max_len` steps, in normalised action units:

* event mode predicts the whole sequence at once from the event's start;
* unified and chunk modes are rolled out chunk by chunk at offsets 0, H, 2H, ... of the
  event, each chunk conditioned on the recorded state at its first frame (the visual input
  stays the event-start embedding, as in training).

Metrics: `mse_per_timestep` (list over t, averaged over events that reach t),
`mse_frame` (all valid steps pooled), `mse_event` (per-event mean, then averaged),
`len_acc` (event mode: predicted length within 2 steps of the truth) and `len_mae`,
`future_cos_err` (1 - cosine between predicted and true end-of-event visual embedding,
event and unified modes), `latent_cos_err` (unified: predicted vs caption embedding).
Metrics a mode cannot produce are None.

`compare(cfg)` trains the three modes with the same config and step budget and returns the
results plus a markdown table.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from carve.trainer.config import DataConfig, TrainConfig
from carve.trainer.data import DataError, EventStream, make_loader
from carve.trainer.manifest import Manifest, open_manifest
from carve.trainer.model import WorldActionModel, count_parameters
from carve.trainer.train import load_model, train

LEN_TOL = 2


@torch.no_grad()
def _predict(model: WorldActionModel, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Actions [B, max_len, A] (normalised) plus optional length / end-visual / latent predictions."""
    spec = model.spec
    if spec.mode == "event":
        out = model(batch)
        return {
            "actions": out["actions"],
            "length": out["stop_logits"].argmax(-1) + 1,
            "end_visual": out["end_visual"],
        }
    B, T, _ = batch["actions"].shape
    H = spec.horizon
    acts = torch.zeros(B, T, spec.action_dim)
    res: dict[str, torch.Tensor] = {}
    for k in range(0, T, H):
        if not bool((batch["length"] > k).any()):
            break
        sub = dict(batch)
        sub["state"] = batch["states"][:, k]
        out = model(sub)
        n = min(H, T - k)
        acts[:, k : k + n] = out["actions"][:, :n].float()
        if k == 0:
            for key in ("end_visual", "latent"):
                if key in out:
                    res[key] = out[key]
    res["actions"] = acts
    return res


def evaluate(
    model: WorldActionModel, manifest: Manifest, data_cfg: DataConfig, batch_size: int = 64
) -> dict[str, Any]:
    dcfg = copy.deepcopy(data_cfg)
    dcfg.shuffle = False
    dcfg.batch_size = batch_size
    ds = EventStream(manifest, dcfg, view="event", split="eval", infinite=False, task=model.spec.mode != "event")
    model.eval()
    T = dcfg.max_len
    se_t = np.zeros(T)
    n_t = np.zeros(T)
    ev_mse: list[float] = []
    len_ok: list[bool] = []
    len_err: list[float] = []
    fut: list[float] = []
    lat: list[float] = []
    for batch in make_loader(ds):
        pred = _predict(model, batch)
        target = model.normalize_actions(batch["actions"], batch["state"])
        mask = batch["mask"].float()
        se = ((pred["actions"].float() - target) ** 2).mean(-1) * mask
        se_t += se.sum(0).numpy()
        n_t += mask.sum(0).numpy()
        ev_mse.extend((se.sum(1) / mask.sum(1).clamp_min(1)).tolist())
        if "length" in pred:
            d = (pred["length"] - batch["length"]).abs().float()
            len_ok.extend((d <= LEN_TOL).tolist())
            len_err.extend(d.tolist())
        if "end_visual" in pred:
            fut.extend(
                (1 - F.cosine_similarity(pred["end_visual"].float(), model.world_target(batch["end_visual"]),
                                         dim=-1)).tolist()
            )
        if "latent" in pred:
            lat.extend((1 - F.cosine_similarity(pred["latent"].float(), batch["text"], dim=-1)).tolist())
    if not ev_mse:
        raise DataError(
            f"{manifest.path}: no held-out events (holdout_frac={dcfg.holdout_frac}); raise data.holdout_frac"
        )
    valid = n_t > 0

    def mean(xs: list[float]) -> float | None:
        return float(np.mean(xs)) if xs else None

    return {
        "mode": model.spec.mode,
        "events": len(ev_mse),
        "mse_frame": float(se_t[valid].sum() / n_t[valid].sum()),
        "mse_event": float(np.mean(ev_mse)),
        "mse_per_timestep": (se_t[valid] / n_t[valid]).round(5).tolist(),
        "len_acc": mean([float(x) for x in len_ok]),
        "len_mae": mean(len_err),
        "future_cos_err": mean(fut),
        "latent_cos_err": mean(lat),
    }


def evaluate_checkpoint(path: str | Path, manifest: str | None = None) -> dict[str, Any]:
    model, state = load_model(path)
    cfg = TrainConfig.from_dict(state["config"])
    m = open_manifest(manifest or cfg.data.manifest)
    res = evaluate(model, m, cfg.data)
    res.update({"checkpoint": str(path), "step": int(state["step"]), "params": count_parameters(model)})
    return res


def compare(
    cfg: TrainConfig, modes: tuple[str, ...] = ("event", "unified", "chunk")
) -> tuple[list[dict[str, Any]], str]:
    """Train each mode with the same budget from `cfg`, evaluate each on held-out episodes."""
    results = []
    for mode in modes:
        c = copy.deepcopy(cfg)
        c.mode = mode
        c.out_dir = str(Path(cfg.out_dir) / mode)
        c.resume = None
        summary = train(c)
        res = evaluate_checkpoint(summary["checkpoint"])
        res["train_loss_last"] = float(np.mean(summary["losses"][-10:]))
        results.append(res)
    return results, markdown_table(results)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def markdown_table(results: list[dict[str, Any]]) -> str:
    cols = [
        ("mode", "mode"),
        ("params", "params"),
        ("step", "steps"),
        ("events", "held-out events"),
        ("mse_event", "action MSE / event"),
        ("mse_frame", "action MSE / step"),
        ("early", "MSE t<8"),
        ("late", "MSE t>=8"),
        ("len_acc", "length acc (±2)"),
        ("future_cos_err", "future-obs cos err"),
        ("latent_cos_err", "latent cos err"),
    ]
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        per_t = r.get("mse_per_timestep") or []
        row = dict(r)
        row["early"] = float(np.mean(per_t[:8])) if per_t else None
        row["late"] = float(np.mean(per_t[8:])) if len(per_t) > 8 else None
        lines.append("| " + " | ".join(_fmt(row.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines)
