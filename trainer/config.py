"""The trainer's configuration: plain dataclasses (nanoGPT style), loaded from YAML plus overrides.

`TrainConfig` has three sections, `data`, `model` and `optim`, plus run-level fields (mode,
steps, output folder, checkpoint cadence). A YAML file may hold the trainer config at its top
level or under a `train:` key (so one file can also carry the pipeline's `CarveConfig`
sections). Overrides are `dotted.key=value` strings parsed as YAML scalars
(`model.d_model=64`, `mode=unified`); an unknown key is an error, not a silent default.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from carve.core.errors import CarveError

Mode = Literal["event", "unified", "chunk"]
MODES: tuple[str, ...] = ("event", "unified", "chunk")


class TrainConfigError(CarveError):
    """A trainer config that cannot be used; the message names the key and the reason."""


@dataclass
class DataConfig:
    manifest: str = ""  # manifest.json, its folder, or a root holding shards/vNNN (latest used)
    batch_size: int = 32
    num_workers: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 1024
    seed: int = 0
    holdout_frac: float = 0.1  # fraction of episodes held out for eval (hash of episode_id)
    task_dim: int = 128  # size of the hashed task-text embedding
    max_len: int = 64  # event mode: longest action sequence predicted (longer events are truncated)
    chunk_len: int = 16  # unified / chunk modes: H
    norm_rows: int = 4096  # rows read to estimate state/action normalisation


@dataclass
class ModelConfig:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    block_size: int = 8  # action positions per staircase block
    latent_loss_weight: float = 1.0  # unified: language-head loss weight
    length_loss_weight: float = 0.1  # event: stop/length loss weight
    world_loss_weight: float = 0.5  # event / unified: end-observation head loss weight


@dataclass
class OptimConfig:
    lr: float = 3e-3  # AdamW (embeddings, norms, biases, heads)
    muon_lr: float = 0.02  # Muon (2-D hidden weight matrices)
    weight_decay: float = 0.01
    muon_weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    mode: str = "event"
    max_steps: int = 1000
    out_dir: str = "./carve-train"
    log_every: int = 10
    ckpt_every: int = 200
    keep_last: int = 3
    resume: str | None = None  # checkpoint path, or "auto" for the latest in out_dir
    tensorboard: bool = True
    progress: bool = True
    log_event_ids: bool = False  # write the event ids each rank trained on (audit / DDP tests)
    device: str = "auto"  # auto = cuda if available else cpu
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> TrainConfig:
        if self.mode not in MODES:
            raise TrainConfigError(f"mode: must be one of {list(MODES)}, got {self.mode!r}")
        checks = [
            ("max_steps", self.max_steps >= 1),
            ("data.batch_size", self.data.batch_size >= 1),
            ("data.num_workers", self.data.num_workers >= 0),
            ("data.shuffle_buffer", self.data.shuffle_buffer >= 1),
            ("data.max_len", self.data.max_len >= 1),
            ("data.chunk_len", 1 <= self.data.chunk_len <= self.data.max_len),
            ("data.holdout_frac", 0.0 <= self.data.holdout_frac < 1.0),
            ("model.d_model", self.model.d_model % self.model.n_heads == 0),
            ("model.block_size", self.model.block_size >= 1),
            ("log_every", self.log_every >= 1),
            ("ckpt_every", self.ckpt_every >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise TrainConfigError(f"{name}: invalid value {_get(self, name)!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        cfg = cls()
        _merge(cfg, data, "")
        return cfg.validate()

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            if not p.exists():
                raise TrainConfigError(f"config file {p} does not exist")
            try:
                loaded = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise TrainConfigError(f"config file {p} is not valid YAML: {e}") from e
            if not isinstance(loaded, dict):
                raise TrainConfigError(f"config file {p} must hold a mapping")
            # a combined carve config keeps the trainer's section under `train:`
            data = loaded["train"] if isinstance(loaded.get("train"), dict) else loaded
        cfg = cls()
        _merge(cfg, data, "")
        for item in overrides or []:
            apply_override(cfg, item)
        return cfg.validate()


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _coerce(current: Any, value: Any, key: str) -> Any:
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise TrainConfigError(f"{key}: expected true/false, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TrainConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(current, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise TrainConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(current, tuple):
        if isinstance(value, list | tuple):
            return tuple(float(v) for v in value)
        raise TrainConfigError(f"{key}: expected a list, got {value!r}")
    if value is not None and not isinstance(value, str):
        raise TrainConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise TrainConfigError(f"unknown trainer config key {key!r} (known: {sorted(names)})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise TrainConfigError(f"{key}: must be a mapping")
            _merge(cur, v, key + ".")
        else:
            setattr(obj, k, _coerce(cur, v, key))


def apply_override(cfg: TrainConfig, item: str) -> None:
    """Apply `a.b=value` (value parsed as a YAML scalar) to `cfg` in place."""
    if "=" not in item:
        raise TrainConfigError(f"override {item!r} must look like key=value or section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key.startswith("train."):
        key = key[len("train.") :]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    nested: dict[str, Any] = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        nested = {p: nested}
    _merge(cfg, nested, "")


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", default=None, help="manifest.json, a shards/vNNN folder, or a Carve root")
    p.add_argument("--mode", choices=("event", "unified", "chunk"), default=None)
    p.add_argument("--out-dir", default=None, help="checkpoints, metrics.jsonl, tb/")
    p.add_argument("--steps", type=int, default=None, help="max_steps")
    p.add_argument("--resume", default=None, help="checkpoint path, or 'auto' for the latest in --out-dir")
