"""The training loop (single process or DDP under torchrun).

`train(cfg)` streams the manifest's training split, optimises the 2-D hidden weight matrices
of the backbone with `torch.optim.Muon` and everything else (input projections/embeddings,
norms, biases, output heads) with AdamW, both under the same linear-warmup + cosine
schedule, clips gradients, uses bf16 autocast on CUDA only, logs metrics (window means,
averaged over ranks) to `<out_dir>/metrics.jsonl` and TensorBoard, and writes atomic
checkpoints every `ckpt_every` steps and at the end. A resume restores model, optimisers,
schedulers, RNG and the data position, so it continues bit-for-bit. A non-finite loss or
gradient stops the run with `TrainingDiverged` before the optimisers step; the last good
checkpoint is left in place.

    torchrun --nproc_per_node 2 -m carve.trainer.train --config cfg.yaml --manifest ROOT/shards/v001
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from carve.core import env
from carve.core.errors import CarveError
from carve.trainer.checkpoint import (
    check_compatible,
    ckpt_name,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from carve.trainer.config import TrainConfig, add_train_args
from carve.trainer.data import EventStream, make_loader, probe
from carve.trainer.manifest import Manifest, open_manifest
from carve.trainer.model import ModelSpec, WorldActionModel


class TrainingDiverged(CarveError):
    """The loss or gradient became NaN/inf; the message names the step and the last good checkpoint."""


def cosine_schedule(step: int, warmup: int, total: int, min_frac: float) -> float:
    """LR multiplier: linear warmup over `warmup` steps, then cosine decay to `min_frac` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * t))


class _LossModule(nn.Module):
    """Wraps the model so DDP sees the loss computation as its forward."""

    def __init__(self, model: WorldActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.loss(batch)


def view_for(mode: str) -> str:
    return "event" if mode == "event" else "chunk"


def make_spec(cfg: TrainConfig, manifest: Manifest) -> tuple[ModelSpec, Any]:
    dims, stats = probe(manifest, cfg.data)
    horizon = cfg.data.max_len if cfg.mode == "event" else cfg.data.chunk_len
    spec = ModelSpec(cfg.mode, dims.state, dims.action, dims.visual, dims.text, dims.task, horizon)
    return spec, stats


def make_optimizers(
    model: WorldActionModel, cfg: TrainConfig
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    o = cfg.optim
    muon = torch.optim.Muon(model.muon_parameters(), lr=o.muon_lr, weight_decay=o.muon_weight_decay)
    adamw = torch.optim.AdamW(
        model.adamw_parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
    )
    return muon, adamw


def _position(cfg: TrainConfig, world: int) -> dict[str, Any]:
    d = cfg.data
    return {
        "world_size": world,
        "num_workers": d.num_workers,
        "batch_size": d.batch_size,
        "seed": d.seed,
        "shuffle": d.shuffle,
        "shuffle_buffer": d.shuffle_buffer,
        "holdout_frac": d.holdout_frac,
    }


def _dist_info() -> tuple[int, int, int]:
    return env.dist_world()


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training as configured; return a summary (steps, last losses, checkpoint paths)."""
    cfg.check()
    rank, world, local_rank = _dist_info()
    own_pg = False
    device = _device(cfg, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        own_pg = True
    try:
        return _train(cfg, rank, world, device)
    finally:
        if own_pg:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> dict[str, Any]:
    if cfg.model.relative_actions:
        raise ValueError(f"model.relative_actions {cfg.model.relative_actions}: the streaming trainer's statistics "
                         "are of absolute actions (`data.probe`); relative actions are the closed-loop study's "
                         "(carve eval-sim --study --actions relative)")
    if not cfg.data.manifest:
        raise CarveError("no manifest given: pass --manifest or set data.manifest in the config")
    manifest = open_manifest(cfg.data.manifest)
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    resume_path: Path | None = None
    if cfg.resume == "auto":
        resume_path = latest_checkpoint(out)
    elif cfg.resume:
        resume_path = Path(cfg.resume)

    spec, stats = make_spec(cfg, manifest)
    state = None
    if resume_path is not None:
        state = load_checkpoint(resume_path)
        check_compatible(state, str(resume_path), spec, cfg.model.model_dump(), _position(cfg, world))

    torch.manual_seed(cfg.data.seed if cfg.seed is None else cfg.seed)  # train.seed, separate from data.seed
    model = WorldActionModel(cfg.model, spec).to(device)
    model.set_norm_stats(stats.state_mean, stats.state_std, stats.action_mean, stats.action_std)
    muon, adamw = make_optimizers(model, cfg)
    o = cfg.optim

    def lr_lambda(step: int) -> float:
        return cosine_schedule(step, o.warmup_steps, cfg.max_steps, o.min_lr_frac)

    scheds = [torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) for opt in (muon, adamw)]
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        muon.load_state_dict(state["muon"])
        adamw.load_state_dict(state["adamw"])
        for s, sd in zip(scheds, state["schedulers"], strict=True):
            s.load_state_dict(sd)
        step = int(state["step"])

    wrapped: nn.Module = _LossModule(model)
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None
        )

    ds = EventStream(
        manifest,
        cfg.data,
        view=view_for(cfg.mode),
        split="train",
        rank=rank,
        world_size=world,
        start_batch=step,
    )
    loader = iter(
        make_loader(ds, cfg.data.num_workers, pin_memory=device.type == "cuda")
    )
    if state is not None:  # after the loader iterator drew its worker seeds, as in an uninterrupted run
        rngs = state["rng"]
        set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])

    writer = None
    metrics_f = None
    ids_f = None
    if rank == 0:
        metrics_f = (out / "metrics.jsonl").open("a")
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"))
    if cfg.log_event_ids:
        out.mkdir(parents=True, exist_ok=True)
        ids_f = (out / f"event_ids.rank{rank}.txt").open("a")

    autocast = device.type == "cuda"
    last_ckpt = resume_path
    losses: list[float] = []
    window: dict[str, float] = {}
    n_window = 0
    t_window = time.perf_counter()
    bar = tqdm(
        total=cfg.max_steps, initial=step, disable=not (cfg.progress and rank == 0), desc=f"train[{cfg.mode}]"
    )
    try:
        while step < cfg.max_steps:
            batch = next(loader)
            if ids_f is not None:
                ids_f.write("\n".join(f"{step}\t{e}" for e in batch["event_id"]) + "\n")
            batch = _to(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                loss, parts = wrapped(batch)
            if _any_rank(not bool(torch.isfinite(loss)), world, device):
                raise TrainingDiverged(_diverged_msg("loss", step, last_ckpt))
            muon.zero_grad(set_to_none=True)
            adamw.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            if _any_rank(not bool(torch.isfinite(gnorm)), world, device):
                raise TrainingDiverged(_diverged_msg("gradient norm", step, last_ckpt))
            muon.step()
            adamw.step()
            for s in scheds:
                s.step()
            step += 1
            lv = float(loss.detach())
            losses.append(lv)
            for k, v in {
                "loss": lv,
                **{k: float(v) for k, v in parts.items()},
                "grad_norm": float(gnorm),
            }.items():
                window[k] = window.get(k, 0.0) + v
            n_window += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                if world > 1:  # log the mean over ranks
                    keys = sorted(window)
                    t = torch.tensor([window[k] for k in keys], dtype=torch.float64, device=device)
                    dist.all_reduce(t)
                    window = dict(zip(keys, (t / world).tolist(), strict=True))
                if rank == 0:
                    dt = time.perf_counter() - t_window
                    rec = {"step": step, **{k: v / n_window for k, v in window.items()}}
                    rec.update(
                        {
                            "lr": adamw.param_groups[0]["lr"],
                            "muon_lr": muon.param_groups[0]["lr"],
                            "steps_per_s": n_window / dt if dt > 0 else None,
                            "events_per_s": n_window * cfg.data.batch_size * world / dt if dt > 0 else None,
                            "time": time.time(),
                        }
                    )
                    assert metrics_f is not None
                    metrics_f.write(json.dumps(rec) + "\n")
                    metrics_f.flush()
                    if writer is not None:
                        for k, v in rec.items():
                            if k not in ("step", "time") and v is not None:
                                writer.add_scalar(f"train/{k}", v, step)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                window, n_window, t_window = {}, 0, time.perf_counter()
            if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
                last_ckpt = _checkpoint(cfg, model, muon, adamw, scheds, step, rank, world, manifest, spec)
    finally:
        bar.close()
        if metrics_f is not None:
            metrics_f.close()
        if writer is not None:
            writer.close()
        if ids_f is not None:
            ids_f.close()
    return {
        "step": step,
        "losses": losses,
        "checkpoint": str(last_ckpt) if last_ckpt else None,
        "spec": asdict(spec),
    }


def _diverged_msg(what: str, step: int, last: Path | None) -> str:
    keep = f"the last good checkpoint is {last}" if last else "no checkpoint was written before this step"
    return f"{what} became NaN/inf at step {step + 1}; training stopped without applying the update; {keep}"


def _checkpoint(
    cfg: TrainConfig,
    model: WorldActionModel,
    muon: torch.optim.Optimizer,
    adamw: torch.optim.Optimizer,
    scheds: list[Any],
    step: int,
    rank: int,
    world: int,
    manifest: Manifest,
    spec: ModelSpec,
) -> Path:
    rngs: list[Any] = [rng_state()]
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, rngs[0])
        rngs = gathered
    path = Path(cfg.out_dir) / ckpt_name(step)
    if rank == 0:
        state = {
            "step": step,
            "mode": cfg.mode,
            "spec": asdict(spec),
            "model_cfg": cfg.model.model_dump(),
            "config": cfg.model_dump(),
            "model": model.state_dict(),
            "muon": muon.state_dict(),
            "adamw": adamw.state_dict(),
            "schedulers": [s.state_dict() for s in scheds],
            "data": {
                "batch": step,
                **_position(cfg, world),
                "manifest": manifest.path,
                "manifest_version": manifest.version,
            },
            "rng": rngs,
        }
        save_checkpoint(state, path)
        for old in list_checkpoints(cfg.out_dir)[: -cfg.keep_last] if cfg.keep_last > 0 else []:
            old.unlink()
    if world > 1:
        dist.barrier()
    return path


def load_model(path: str | Path, device: str = "cpu") -> tuple[WorldActionModel, dict[str, Any]]:
    """A trained model (eval mode) and its checkpoint dict."""
    state = load_checkpoint(path)
    cfg = TrainConfig.from_dict(state["config"])
    model = WorldActionModel(cfg.model, ModelSpec(**state["spec"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


# ------------------------------------------------------------------ command line
def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = list(getattr(args, "overrides", None) or [])
    cfg = TrainConfig.load(getattr(args, "config", None), overrides)
    root = getattr(args, "root", None)
    if args.manifest:
        cfg.data.manifest = args.manifest
    elif root and not cfg.data.manifest:
        cfg.data.manifest = root
    if args.mode:
        cfg.mode = args.mode
    if args.out_dir:
        cfg.out_dir = args.out_dir
    if args.steps:
        cfg.max_steps = args.steps
    if args.resume:
        cfg.resume = args.resume
    return cfg.check()


def summary_json(res: dict[str, Any]) -> str:
    """The one-line JSON a finished run prints: last step, last loss, checkpoint path."""
    return json.dumps(
        {"step": res["step"], "final_loss": res["losses"][-1] if res["losses"] else None, "checkpoint": res["checkpoint"]}
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="carve.trainer.train", description="Train the event-grounded world-action model."
    )
    ap.add_argument("--config", "-c", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--root", default=None)
    add_train_args(ap)
    args = ap.parse_args(argv)
    try:
        cfg = config_from_args(args)
        res = train(cfg)
    except CarveError as e:
        print(f"trainer: error: {e}", file=sys.stderr)
        return 2
    if _dist_info()[0] == 0:
        print(summary_json(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
