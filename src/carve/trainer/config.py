"""The trainer's configuration: pydantic sections loaded from YAML plus overrides, like `CarveConfig`.

`TrainConfig` has three sections, `data`, `model` and `optim`, plus run-level fields (mode,
steps, output folder, checkpoint cadence). It is loaded by core's `load_config` (the same
override syntax, validation and error format as the pipeline's `CarveConfig`): a YAML file may
hold the trainer config at its top level or under a `train:` key (so one file can also carry the
pipeline's sections), and overrides are `dotted.key=value` strings parsed as YAML scalars
(`model.d_model=64`, `mode=unified`, `train.max_steps=7`). An unknown key or a wrong type is a
`TrainConfigError` naming the key, not a silent default. Sections reject unknown keys and
validate every assignment; the checks that span two fields (`data.chunk_len <= data.max_len`,
`model.d_model % model.n_heads == 0`, `model.visual_shift` only with the conv stem) run when a `TrainConfig` is built and in `check()`.
`model_dump()` is what a checkpoint stores and `from_dict` reads it back. Torch-free: `carve
<anything>` imports this module at startup.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from carve.core.config import ConfigError, load_config, validate_config
from carve.core.errors import CarveError

Mode = Literal["event", "unified", "chunk"]
MODES: tuple[str, ...] = ("event", "unified", "chunk")


class TrainConfigError(ConfigError, CarveError):
    """A trainer config that cannot be used; the message names the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """What the loader streams from the manifest and how."""

    manifest: str = ""  # manifest.json, its folder, or a root holding shards/vNNN (latest used)
    batch_size: int = Field(default=32, ge=1)
    num_workers: int = Field(default=0, ge=0)  # DataLoader workers per rank (each owns whole row groups)
    shuffle: bool = True
    shuffle_buffer: int = Field(default=1024, ge=1)  # rows: whole row groups are buffered until they hold this many
    seed: int = 0  # data order (shuffles, chunk offsets); the weights' initialisation is train.seed
    holdout_frac: float = Field(default=0.1, ge=0.0, lt=1.0)  # episodes held out for eval (hash of episode_id)
    task_dim: int = 128  # size of the hashed task-text embedding
    max_len: int = Field(default=64, ge=1)  # event mode: longest action sequence predicted (longer truncated)
    chunk_len: int = Field(default=16, ge=1)  # unified / chunk modes: H (<= max_len)
    norm_rows: int = 4096  # rows read to estimate state/action normalisation
    # train split: draw each row floor(w) or ceil(w) times per epoch, w its shard `sampling_weight`
    # (the cluster balance of a weights-mode shard version); False: every row once
    sampling_weights: bool = True


class ModelConfig(_Section):
    """The world-action transformer (`trainer/model.py`)."""

    d_model: int = 128  # a multiple of n_heads
    n_layers: int = 4
    n_heads: int = Field(default=4, ge=1)
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    block_size: int = Field(default=8, ge=1)  # action positions per block of the block-causal (pi0-style) mask
    latent_loss_weight: float = 1.0  # unified: language-head loss weight
    length_loss_weight: float = 0.1  # event: stop/length loss weight
    world_loss_weight: float = 0.5  # event / unified: end-observation head loss weight
    # how the visual input becomes a token: "linear" (a vector such as the descriptor) or "conv" (the vector is
    # a (3, S, S) image, `policy`'s "pixels" encoder: convolutions + spatial softmax, model.ConvStem)
    visual_stem: Literal["linear", "conv"] = "linear"
    # conv stem only: while training, each image is shifted by up to this many pixels in x and y (edges
    # replicated; DrQ's random shift, Kostrikov et al. 2021; Diffusion Policy's random crop). 0: off
    visual_shift: int = Field(default=0, ge=0)
    # conv stem only: the visual vector is this many (3, S, S) images, one per camera, concatenated in the
    # policy's camera order; each camera has its own convolutions and spatial softmax, and their keypoints
    # together make the one image token (robomimic's multi-camera observation encoder)
    visual_cameras: int = Field(default=1, ge=1)
    # relative actions: the first N action dimensions are predicted as offsets from the first N state values
    # (the same joints, in the same order) at the plan's start, normalised by the offsets' statistics
    # (`action_mean` / `action_std` are then those of the offsets); the rest stay absolute. The action
    # representation of openpi's DeltaActions and UMI's relative trajectories. 0: every dimension absolute
    relative_actions: int = Field(default=0, ge=0)


class OptimConfig(_Section):
    """Muon for the 2-D hidden weight matrices, AdamW for the rest, warmup + cosine schedule."""

    lr: float = 3e-3  # AdamW (embeddings, norms, biases, heads)
    muon_lr: float = 0.02  # Muon (2-D hidden weight matrices)
    weight_decay: float = 0.01
    muon_weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0


class TrainConfig(_Section):
    """Everything one training run needs."""

    mode: Mode = "event"
    seed: int | None = None  # train.seed: weight initialisation / dropout (None: data.seed, as before)
    max_steps: int = Field(default=1000, ge=1)
    out_dir: str = "./carve-train"
    log_every: int = Field(default=10, ge=1)
    ckpt_every: int = Field(default=200, ge=1)
    keep_last: int = 3
    resume: str | None = None  # checkpoint path, or "auto" for the latest in out_dir
    tensorboard: bool = True
    progress: bool = True
    log_event_ids: bool = False  # write the event ids each rank trained on (audit / DDP tests)
    device: str = "auto"  # auto = cuda if available else cpu
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainConfig:
        d, m = self.data, self.model
        if d.chunk_len > d.max_len:
            raise ValueError(f"data.chunk_len: must be at most data.max_len ({d.max_len}), got {d.chunk_len}")
        if m.d_model % m.n_heads:
            raise ValueError(f"model.d_model: must be a multiple of model.n_heads ({m.n_heads}), got {m.d_model}")
        if m.visual_shift and m.visual_stem != "conv":
            raise ValueError(f"model.visual_shift: shifts the images of model.visual_stem 'conv', "
                             f"got {m.visual_shift} with {m.visual_stem!r}")
        if m.visual_cameras > 1 and m.visual_stem != "conv":
            raise ValueError(f"model.visual_cameras: {m.visual_cameras} camera images need model.visual_stem 'conv', "
                             f"got {m.visual_stem!r}")
        return self

    def check(self) -> TrainConfig:
        """Re-run every check (also the cross-field ones after in-place edits of a section); return self."""
        self.from_dict(self.model_dump())
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A validated config from a plain dict (a checkpoint's `config`); TrainConfigError names bad keys."""
        return validate_config(cls, data, error=TrainConfigError, what="trainer config")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
        """YAML (top level or its `train:` section) plus `key=value` overrides, through core's loader."""
        return load_config(cls, path, overrides, section="train", error=TrainConfigError, what="trainer config")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The trainer's own flags (`--config`/`--set`/`--root` come from the caller's parser)."""
    p.add_argument("--manifest", default=None, help="manifest.json, a shards/vNNN folder, or a Carve root")
    p.add_argument("--mode", choices=("event", "unified", "chunk"), default=None)
    p.add_argument("--out-dir", default=None, help="checkpoints, metrics.jsonl, tb/")
    p.add_argument("--steps", type=int, default=None, help="max_steps")
    p.add_argument("--resume", default=None, help="checkpoint path, or 'auto' for the latest in --out-dir")
