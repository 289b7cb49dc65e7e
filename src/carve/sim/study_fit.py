"""In-memory training of one mode on episode-level data (`sim/study_episodes.py`), for the study.

`fit(mode, sampler, model_cfg, spec, stats, steps=..., train_seed=...)` trains the same
`WorldActionModel` as `trainer/train.py` (Muon for the backbone's 2-D matrices, AdamW for the
rest, warmup + cosine) on batches from a `Sampler`; the training seed initialises the weights
(and dropout) only, the sampler's own data seed fixes the batches. Returns the model and its
compute: tokens per training step (every backbone pass counted) and the mean supervised action
positions per step, as measured.

`matched_config(base, specs)` gives every mode a model of (nearly) the same parameter count:
the modes differ in their heads and query tokens, and the MLP width of each mode is chosen so
its count is closest to the reference mode's (event). `offline_metrics(model, episodes, ...)`
is the held-out action MSE per episode (normalised units, mean over the episode's supervised
positions), for an episode-level bootstrap.

For the equal-budget ablation, `actions_per_sample(sampler)` measures a mode's mean supervised
action positions per sample (so batch sizes can give every mode the same supervised actions per
optimiser step), and `fit(..., plateau=Plateau(batches))` trains until the validation loss on
fixed held-out batches stops falling, keeping the best evaluation's weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from carve.sim.study_episodes import EpisodeData, Sampler, TextCache
from carve.trainer.config import ModelConfig, OptimConfig, TrainConfig
from carve.trainer.data import NormStats
from carve.trainer.model import ModelSpec, WorldActionModel, count_parameters
from carve.trainer.train import cosine_schedule, make_optimizers


def tokens_per_sample(spec: ModelSpec) -> int:
    """Backbone tokens of one sample: 3 observation tokens, query tokens, action queries (both passes)."""
    if spec.mode == "chunk":
        return 3 + spec.horizon
    if spec.mode == "event":
        return 3 + 1 + spec.horizon
    return (3 + 1) + (3 + 2 + spec.horizon)


def n_params(cfg: ModelConfig, spec: ModelSpec) -> int:
    return count_parameters(WorldActionModel(cfg, spec))


def matched_config(base: ModelConfig, specs: dict[str, ModelSpec], reference: str = "event") -> dict[str, ModelConfig]:
    """Per mode, `base` with the MLP width whose parameter count is closest to the reference mode's."""
    target = n_params(base, specs[reference])
    out: dict[str, ModelConfig] = {}
    d = base.d_model
    for mode, spec in specs.items():
        if mode == reference:
            out[mode] = base
            continue
        fixed = n_params(base.model_copy(update={"mlp_ratio": 1.0 / d}), spec)  # hidden = 1
        per_unit = 2 * d * base.n_layers  # fc1 + fc2 columns per hidden unit
        hidden = max(1, round((target - fixed) / per_unit) + 1)
        out[mode] = base.model_copy(update={"mlp_ratio": hidden / d})
    return out


@dataclass
class Plateau:
    """Train until the validation loss stops falling. Every `every` steps the action loss is taken on
    `batches` (fixed held-out batches, eval mode; `val_loss`); training stops after `patience`
    evaluations in a row that do not improve the best by `min_rel` (relative), or at `max_steps`.
    The weights of the best evaluation are the ones returned. The learning-rate schedule is the
    usual warmup + cosine, laid over `max_steps`."""

    batches: list[dict[str, Any]] = field(repr=False)
    every: int = 100
    patience: int = 3
    min_rel: float = 0.01
    max_steps: int = 3000


@torch.no_grad()
def val_loss(model: WorldActionModel, batches: list[dict[str, Any]]) -> float:
    """Mean action loss (normalised MSE over the supervised positions, the part of the loss every mode
    has) over `batches`, in eval mode (the caller restores train mode). The other terms (event mode's
    length head, the world and latent terms) are mode-specific, so they are left out: every mode
    stops on the same measure."""
    model.eval()
    return float(np.mean([float(model.loss(b)[1]["action"]) for b in batches]))


def actions_per_sample(sampler: Sampler, n: int = 2048) -> float:
    """Mean supervised action positions per sample of `sampler`'s mode (draws `n` samples from it)."""
    return float(np.mean([float(sampler.sample()["mask"].sum()) for _ in range(n)]))


def fit(mode: str, sampler: Sampler, model_cfg: ModelConfig, spec: ModelSpec, stats: NormStats, *,
        steps: int = 300, batch_size: int = 64, train_seed: int = 0,
        optim: OptimConfig | None = None, plateau: Plateau | None = None) -> tuple[WorldActionModel, dict[str, Any]]:
    """Train one model; returns it (eval mode) and {"params", "tokens_per_step", "actions_per_step", ...}.
    With `plateau`, `steps` is ignored: training runs until the validation loss stops falling (`Plateau`)
    and the result also carries the validation curve, the best step and why training stopped."""
    if plateau is not None:
        steps = plateau.max_steps
    torch.manual_seed(train_seed)
    model = WorldActionModel(model_cfg, spec)
    model.set_norm_stats(stats.state_mean, stats.state_std, stats.action_mean, stats.action_std)
    cfg = TrainConfig(mode=mode, max_steps=steps, model=model_cfg, optim=optim or OptimConfig())
    muon, adamw = make_optimizers(model, cfg)
    o = cfg.optim
    scheds = [torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_schedule(s, min(o.warmup_steps, steps // 5), steps, o.min_lr_frac))
        for opt in (muon, adamw)]
    model.train()
    supervised, losses = 0.0, []
    curve: list[tuple[int, float]] = []
    best: tuple[float, int, dict[str, Any]] | None = None
    stale, stopped, done = 0, "max_steps", 0
    for step in range(1, steps + 1):
        batch = sampler.batch(batch_size)
        loss, _parts = model.loss(batch)
        muon.zero_grad(set_to_none=True)
        adamw.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        muon.step()
        adamw.step()
        for s in scheds:
            s.step()
        supervised += float(batch["mask"].sum())
        losses.append(float(loss.detach()))
        done = step
        if plateau is not None and (step % plateau.every == 0 or step == steps):
            v = val_loss(model, plateau.batches)
            model.train()
            curve.append((step, v))
            significant = best is None or v < best[0] * (1.0 - plateau.min_rel)
            if best is None or v < best[0]:
                best = (v, step, copy.deepcopy(model.state_dict()))
            stale = 0 if significant else stale + 1
            if stale >= plateau.patience:
                stopped = "plateau"
                break
    out = {"params": count_parameters(model), "tokens_per_step": tokens_per_sample(spec) * batch_size,
           "actions_per_step": supervised / max(1, done), "final_loss": float(np.mean(losses[-10:]))
           if losses else None, "steps": done, "batch_size": batch_size}
    if plateau is not None and best is not None:
        model.load_state_dict(best[2])
        out.update({"val_curve": curve, "best_step": best[1], "best_val_loss": best[0], "stopped": stopped})
    model.eval()
    return model, out


@torch.no_grad()
def offline_metrics(model: WorldActionModel, episodes: list[EpisodeData], text: TextCache, *,
                    stride: int | None = None) -> list[dict[str, Any]]:
    """Per held-out episode: action MSE (normalised units) of the model's prediction from each
    decision point. Event mode predicts from every event start (its caption), chunk / unified
    from every `stride` frames (default H) — the points inference re-plans at."""
    spec = model.spec
    H, visual_dim = spec.horizon, spec.visual_dim
    stride = stride or H
    out = []
    for ep in episodes:
        pts = ep.starts.tolist() if spec.mode == "event" else list(range(0, ep.length, stride))
        errs, n_act = [], 0
        for t in pts:
            k = ep.event_at(t)
            if spec.mode == "event":
                n = min(int(ep.ends[k]) - t, H)
            else:
                n = min(ep.length - t, H)
            batch = {"state": torch.from_numpy(ep.state[t])[None],
                     "visual": torch.from_numpy(ep.visual_at(t, visual_dim))[None],
                     "text": torch.from_numpy(text(ep.captions[k]))[None],
                     "task": torch.from_numpy(text(ep.task))[None]}
            pred = model(batch)["actions"][0, :n]
            target = model.normalize_actions(torch.from_numpy(ep.action[t:t + n])[None], batch["state"])[0]
            errs.append(float(((pred - target) ** 2).mean(-1).sum()))
            n_act += n
        out.append({"episode_id": ep.episode_id, "action_mse": sum(errs) / max(1, n_act), "actions": n_act})
    return out


def spec_for(mode: str, *, state_dim: int, action_dim: int, visual_dim: int, text_dim: int,
             max_len: int, chunk_len: int) -> ModelSpec:
    """The model spec of `mode` with the task conditioned through the same text encoder (task_dim = text_dim)."""
    horizon = max_len if mode == "event" else chunk_len
    return ModelSpec(mode, state_dim, action_dim, max(visual_dim, 1), text_dim, text_dim, horizon)

