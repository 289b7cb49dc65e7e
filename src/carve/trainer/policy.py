"""A trained world-action model as a policy: `select_action(observation) -> action` with an action queue.

    policy = Policy.load("runs/event/policy")          # or Policy.from_checkpoint("runs/event/ckpt-....pt")
    policy.reset()                                      # at the start of every episode
    action = policy.select_action(obs)                  # obs: {"state", "images", "task"}

Observation (what `carve.sim.env` returns, and what a robot would give): `state` (the dataset's
state vector), `images` ({camera: HxWx3 uint8}), `task` (the episode's instruction). It becomes
the model's inputs as the pipeline made its training rows: the visual token is the visual
embedder's vector of each camera's image (the unit mean over cameras when there are several, as
`embedding.stage` does for keyframes; with the "pixels" encoder the images one after another, one
per camera the model has, `ModelConfig.visual_cameras`), the state is normalised by the model's statistics, the
task token is `trainer.data.task_embedding` (`task_encoder="hash"`, the streaming trainer's)
or the text encoder's vector of the task text (`task_encoder="text"`: one text encoder for
every mode, as `sim.study_episodes` trains them), and event mode's text token is the text
encoder's vector of the next event's description: the task text itself (`text_source="task"`,
captions off), or what a `planner(observation) -> str` returns (`text_source="planner"`, e.g.
`trainer.planner.CaptionPlanner`'s caption templates; it is called once per plan, i.e. once per
predicted event, and `reset()` resets it). A `CaptionPlanner` saved in the settings
(`extra["planner"]`) is rebuilt on load. Text vectors are cached per string. With `privileged_state` the state is
followed by the simulator's privileged object poses (`observation["privileged"]["object_state"]`),
for the privileged-state pilot.

Action queue. When the queue is empty the policy observes, runs the model once (a "plan") and
queues actions (denormalised to the dataset's units); every call pops one.
* event mode queues the event's *predicted* length (argmax of the stop distribution + 1,
  capped by `max_event_steps`), so it re-observes exactly when it predicts the event to end;
* chunk and unified modes queue the first `n_action_steps` of their H-action chunk, so they
  re-plan every `n_action_steps` calls;
* with `temporal_ensemble=m` (chunk / unified; ACT's temporal ensembling, Zhao et al. 2023) they
  plan at every call instead and act the weighted mean of every still-open chunk's action for
  this step, with weight exp(-m * i) for the i-th oldest chunk (ACT uses m = 0.01: the oldest
  prediction weighs most); `n_action_steps` is then ignored.
`plans` counts model calls and `last_plan` describes the latest one (mode, queued, predicted
length).

Save / load (`save(dir)` / `Policy.load(dir)`): a directory holding `model.safetensors` (the
weights, without the normalisation buffers), `normalization.json` (state/action mean and std:
the one source of those numbers) and `config.json` (written last: format, model spec, model
config, policy settings). A directory round trip gives the same actions bit for bit.

Encoders are named in the policy settings (`visual`: "descriptor" | "open_clip" | "pixels" | "zeros";
"pixels" is the image itself at 3 x S x S (per camera) for a model with the conv visual stem, `model.ConvStem`;
`text`: "minilm" | "open_clip" | "hashed" | "zeros"; "hashed" is the task embedding's feature
hashing at the text size, "zeros" a constant) and built on first use; objects with `dim` and
`encode(items) -> (N, dim)` can be passed instead (not saved).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carve.core.errors import CarveError
from carve.trainer.config import ModelConfig
from carve.trainer.data import task_embedding
from carve.trainer.model import ModelSpec, WorldActionModel

POLICY_FORMAT = "carve.policy"
POLICY_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
NORM_FILE = "normalization.json"
NORM_KEYS = ("state_mean", "state_std", "action_mean", "action_std")
VISUAL_ENCODERS = ("descriptor", "open_clip", "pixels", "zeros")
TEXT_ENCODERS = ("minilm", "open_clip", "hashed", "zeros")


class PolicyError(CarveError):
    """A policy that cannot be built, loaded or run; the message names the file or the input."""


@dataclass
class PolicySettings:
    """How a model is run as a policy (saved in `config.json` under "policy")."""

    n_action_steps: int | None = None  # chunk / unified: actions executed per plan (default: H)
    temporal_ensemble: float | None = None  # chunk / unified: ACT's m; plan every step, average open chunks
    max_event_steps: int | None = None  # event: cap on the executed predicted length (default: max_len)
    visual: str = "descriptor"
    text: str = "minilm"
    text_source: str = "task"  # event mode: "task" (captions off) or "planner"
    open_clip_model: str = "ViT-B-32"
    open_clip_pretrained: str | None = None
    cameras: list[str] | None = None  # image keys used, in order (None: every image, sorted by name)
    privileged_state: bool = False  # the state is the observation's state + privileged["object_state"]
    task_encoder: str = "hash"  # the task token: "hash" (trainer.data.task_embedding) or "text" (the text encoder)
    state_names: list[str] | None = None  # informational: the dataset's columns
    action_names: list[str] | None = None
    fps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, spec: ModelSpec) -> PolicySettings:
        if self.visual not in VISUAL_ENCODERS:
            raise PolicyError(f"policy visual encoder must be one of {VISUAL_ENCODERS}, got {self.visual!r}")
        if self.text not in TEXT_ENCODERS:
            raise PolicyError(f"policy text encoder must be one of {TEXT_ENCODERS}, got {self.text!r}")
        if self.task_encoder not in ("hash", "text"):
            raise PolicyError(f"policy task_encoder must be 'hash' or 'text', got {self.task_encoder!r}")
        if self.text_source not in ("task", "planner"):
            raise PolicyError(f"policy text_source must be 'task' or 'planner', got {self.text_source!r}")
        n = self.n_action_steps
        if spec.mode != "event" and n is not None and not 1 <= n <= spec.horizon:
            raise PolicyError(f"n_action_steps must be in [1, {spec.horizon}] (the chunk length), got {n}")
        if self.temporal_ensemble is not None and (spec.mode == "event" or self.temporal_ensemble < 0):
            raise PolicyError(f"temporal_ensemble needs chunk or unified mode and m >= 0, got m="
                              f"{self.temporal_ensemble} in {spec.mode} mode")
        m = self.max_event_steps
        if m is not None and m < 1:
            raise PolicyError(f"max_event_steps must be >= 1, got {m}")
        return self


class _Zeros:
    name = "zeros"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        return np.zeros((len(items), self.dim), np.float32)


class _Pixels:
    """Images -> the image itself, (3, S, S) in [-1, 1] flattened channel-major, for a model with the conv
    visual stem (`ModelConfig.visual_stem="conv"`, `model.ConvStem`): a PIL box-filter resize of the RGB
    image to S x S, no learned weights here (the model learns them). `dim` is the model's whole visual
    vector, `cameras` images of 3 S^2 values; `visual_vector` puts the cameras' images one after another
    (`concat`) instead of averaging them."""

    name = "pixels"
    concat = True

    def __init__(self, dim: int, cameras: int = 1) -> None:
        from carve.trainer.model import image_side

        self.cameras, self.side = cameras, image_side(dim, cameras)
        self.dim = 3 * self.side * self.side  # one camera's image

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        from PIL import Image

        out = np.zeros((len(items), self.dim), np.float32)
        for i, im in enumerate(items):
            rgb = np.asarray(im)[..., :3].astype(np.uint8)
            small = np.asarray(Image.fromarray(rgb).resize((self.side, self.side), Image.Resampling.BOX), np.float32)
            out[i] = (small.transpose(2, 0, 1).reshape(-1) / 127.5 - 1.0)
        return out


class _Hashed:
    """Text -> the task embedding's signed feature hashing, at `dim` slots."""

    name = "hashed"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        return np.stack([task_embedding(str(t or ""), self.dim) for t in items]).astype(np.float32)


def _embed_config(settings: PolicySettings, visual: str, text: str) -> Any:
    from carve.core.config import EmbedConfig

    return EmbedConfig(visual=visual, text=text, open_clip_model=settings.open_clip_model,
                       open_clip_pretrained=settings.open_clip_pretrained)


def visual_vector(encoder: Any, images: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """One observation's visual token: `encoder`'s vector of each camera's image, the unit mean over
    cameras when there are several (as `embedding.stage` does for keyframes), or with an encoder that
    says `concat` (the "pixels" images) the cameras' vectors one after another. The policy and any code
    that records training observations (the study's pixel recordings) share it, so both see one encoder."""
    vecs = np.asarray(encoder.encode(list(images)), np.float32)
    if getattr(encoder, "concat", False):
        if vecs.ndim != 2 or vecs.size != dim:
            want = getattr(encoder, "cameras", "?")
            raise PolicyError(f"the model takes {want} camera image(s) ({dim} values); the observation gives "
                              f"{len(images)} image(s) of {vecs.shape[-1] if vecs.ndim == 2 else '?'} values "
                              f"(choose the cameras, in the training order, with the policy's `cameras` setting)")
        return vecs.reshape(-1)
    if vecs.shape != (len(images), dim):
        raise PolicyError(f"visual encoder gives {vecs.shape[1:]} vectors, the model takes {dim}")
    if len(images) == 1:
        return vecs[0]
    m = vecs.mean(0)
    norm = float(np.linalg.norm(m))
    return (m / norm).astype(np.float32) if norm > 0 else m


def make_visual_encoder(settings: PolicySettings, dim: int, cameras: int = 1) -> Any:
    """The settings' visual encoder for a model whose visual vector has `dim` values (`cameras` images
    of them with "pixels")."""
    if settings.visual == "zeros":
        return _Zeros(dim)
    if settings.visual == "pixels":
        return _Pixels(dim, cameras)
    from carve.embedding.embedders import make_visual_embedder

    return make_visual_embedder(_embed_config(settings, settings.visual, "none"))


def make_text_encoder(settings: PolicySettings, dim: int) -> Any:
    if settings.text == "zeros":
        return _Zeros(dim)
    if settings.text == "hashed":
        return _Hashed(dim)
    from carve.embedding.embedders import make_text_embedder

    return make_text_embedder(_embed_config(settings, "none", settings.text))


class Policy:
    """A `WorldActionModel` plus its normalisation and encoders, acting one step at a time."""

    def __init__(self, model: WorldActionModel, settings: PolicySettings | None = None, *,
                 visual_encoder: Any = None, text_encoder: Any = None,
                 planner: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.model = model.eval()
        self.spec: ModelSpec = model.spec
        self.settings = (settings or PolicySettings()).check(self.spec)
        self._visual = visual_encoder
        self._text = text_encoder
        if planner is None and self.settings.text_source == "planner" and self.settings.extra.get("planner"):
            from carve.trainer.planner import CaptionPlanner

            planner = CaptionPlanner.from_dict(self.settings.extra["planner"])
        self.planner = planner
        self._text_cache: dict[str, np.ndarray] = {}
        self.queue: deque[np.ndarray] = deque()
        self.open_chunks: list[tuple[int, np.ndarray]] = []  # temporal ensembling: (steps since planned, chunk)
        self.plans = 0
        self.last_plan: dict[str, Any] = {}

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, settings: PolicySettings | None = None, **kw: Any) -> Policy:
        """A policy from a trainer checkpoint (`ckpt-XXXXXXXX.pt`; its buffers hold the statistics)."""
        from carve.trainer.train import load_model

        model, _ = load_model(path)
        return cls(model, settings, **kw)

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def n_action_steps(self) -> int:
        """Actions executed per plan in chunk / unified mode."""
        return self.settings.n_action_steps or self.spec.horizon

    @property
    def visual_encoder(self) -> Any:
        if self._visual is None:
            self._visual = make_visual_encoder(self.settings, self.spec.visual_dim, self.model.cfg.visual_cameras)
        return self._visual

    @property
    def text_encoder(self) -> Any:
        if self._text is None:
            self._text = make_text_encoder(self.settings, self.spec.text_dim)
        return self._text

    def norm_stats(self) -> dict[str, list[float]]:
        return {k: getattr(self.model, k).detach().cpu().float().tolist() for k in NORM_KEYS}

    # --- acting ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget queued actions (call at the start of every episode)."""
        self.queue.clear()
        self.open_chunks.clear()
        self.last_plan = {}
        if self.planner is not None and hasattr(self.planner, "reset"):
            self.planner.reset()

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        """The next action (float32, the dataset's units); plans when the queue is empty."""
        if self.settings.temporal_ensemble is not None:
            return self._ensembled(observation)
        if not self.queue:
            self._plan(observation)
        return self.queue.popleft()

    def _encode_visual(self, images: dict[str, np.ndarray]) -> np.ndarray:
        dim = self.spec.visual_dim
        names = self.settings.cameras or sorted(images)
        missing = [n for n in names if n not in images]
        if missing:
            raise PolicyError(f"observation has no image for camera(s) {missing} (has {sorted(images)})")
        if not names:
            if isinstance(self.visual_encoder, _Zeros):
                return np.zeros(dim, np.float32)
            raise PolicyError("observation has no images (render them, or use visual='zeros')")
        return visual_vector(self.visual_encoder, [images[n] for n in names], dim)

    def _encode_text(self, text: str) -> np.ndarray:
        v = self._text_cache.get(text)
        if v is None:
            enc = np.asarray(self.text_encoder.encode([text]), np.float32)
            if enc.shape != (1, self.spec.text_dim):
                raise PolicyError(f"text encoder gives {enc.shape[1:]} vectors, the model takes {self.spec.text_dim}")
            v = self._text_cache[text] = enc[0]
        return v

    def _event_text(self, observation: dict[str, Any]) -> str:
        if self.settings.text_source == "planner":
            if self.planner is None:
                raise PolicyError("text_source='planner' needs a planner(observation) -> str")
            return str(self.planner(observation))
        return str(observation.get("task") or "")

    def inputs(self, observation: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The model's batch (of one) for `observation`."""
        spec = self.spec
        state = np.asarray(observation["state"], np.float32).reshape(-1)
        if self.settings.privileged_state:
            priv = observation.get("privileged")
            if not priv or "object_state" not in priv:
                raise PolicyError("privileged_state needs observation['privileged']['object_state'] "
                                  "(SimEnv(privileged=True))")
            state = np.concatenate([state, np.asarray(priv["object_state"], np.float32).reshape(-1)])
        if state.shape != (spec.state_dim,):
            raise PolicyError(f"observation state has {state.size} values, the model takes {spec.state_dim}")
        task = str(observation.get("task") or "")
        batch = {
            "state": state,
            "visual": self._encode_visual(observation.get("images") or {}),
            "task": (self._encode_text(task) if self.settings.task_encoder == "text"
                     else task_embedding(task, spec.task_dim)),
        }
        if spec.mode == "event":
            batch["text"] = self._encode_text(self._event_text(observation))
        else:
            batch["text"] = np.zeros(spec.text_dim, np.float32)
        return {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in batch.items()}

    @torch.no_grad()
    def predict(self, observation: dict[str, Any]) -> dict[str, Any]:
        """One model call: {"actions": (horizon, A) float32 in dataset units, "length": int | None}."""
        m = self.model
        inputs = self.inputs(observation)
        out = m(inputs)
        acts = m.denormalize_actions(out["actions"].float(), inputs["state"])[0]
        length = int(out["stop_logits"][0].argmax().item()) + 1 if "stop_logits" in out else None
        return {"actions": acts.cpu().numpy().astype(np.float32), "length": length}

    def _ensembled(self, observation: dict[str, Any]) -> np.ndarray:
        """Plan now, then the exp(-m * i)-weighted mean (i = 0 the oldest) of this step's action in
        every chunk that still covers it."""
        acts = self.predict(observation)["actions"]
        self.plans += 1
        self.open_chunks.append((0, acts))
        here = np.stack([c[k] for k, c in self.open_chunks])
        w = np.exp(-float(self.settings.temporal_ensemble or 0.0) * np.arange(len(here)))
        out = (w[:, None] * here).sum(0) / w.sum()
        self.open_chunks = [(k + 1, c) for k, c in self.open_chunks if k + 1 < len(c)]
        self.last_plan = {"mode": self.mode, "queued": 1, "length": None, "ensembled": len(here)}
        return out.astype(np.float32)

    def _plan(self, observation: dict[str, Any]) -> None:
        pred = self.predict(observation)
        acts = pred["actions"]
        if self.mode == "event":
            n = int(pred["length"] or 1)
            if self.settings.max_event_steps is not None:
                n = min(n, self.settings.max_event_steps)
        else:
            n = self.n_action_steps
        n = max(1, min(n, len(acts)))
        self.queue.extend(acts[:n])
        self.plans += 1
        self.last_plan = {"mode": self.mode, "queued": n, "length": pred["length"]}

    # --- save / load ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the policy directory (see the module docstring); returns its path."""
        from safetensors.torch import save_file

        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items() if k not in NORM_KEYS}
        tmp = d / f".tmp-{uuid.uuid4().hex[:8]}-{WEIGHTS_FILE}"
        save_file(weights, str(tmp), metadata={"format": POLICY_FORMAT})
        os.replace(tmp, d / WEIGHTS_FILE)
        _write_json(d / NORM_FILE, self.norm_stats())
        config = {
            "format": POLICY_FORMAT,
            "version": POLICY_VERSION,
            "mode": self.mode,
            "spec": asdict(self.spec),
            "model": self.model.cfg.model_dump(),
            "policy": asdict(self.settings),
        }
        _write_json(d / CONFIG_FILE, config)  # last: a directory with a config is complete
        return d

    @classmethod
    def load(cls, path: str | Path, **kw: Any) -> Policy:
        """A policy from a directory written by `save` (keyword arguments as for `Policy`)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        d = Path(path)
        config = _read_json(d / CONFIG_FILE)
        if config.get("format") != POLICY_FORMAT:
            raise PolicyError(f"{d / CONFIG_FILE}: not a Carve policy (format {config.get('format')!r})")
        if int(config.get("version", 0)) > POLICY_VERSION:
            raise PolicyError(f"{d / CONFIG_FILE}: policy version {config['version']} is newer than this reads")
        try:
            spec = ModelSpec(**config["spec"])
            model = WorldActionModel(ModelConfig(**config["model"]), spec)
            settings = PolicySettings(**config.get("policy", {}))
        except (TypeError, ValueError, KeyError) as e:
            raise PolicyError(f"{d / CONFIG_FILE}: bad policy config: {e}") from e
        try:
            weights = load_file(str(d / WEIGHTS_FILE))
        except (OSError, SafetensorError) as e:
            raise PolicyError(f"{d / WEIGHTS_FILE}: cannot read the weights: {e}") from e
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if k not in NORM_KEYS]
        if missing or unexpected:
            raise PolicyError(f"{d / WEIGHTS_FILE}: weights do not fit the config (missing {missing[:5]}, "
                              f"unexpected {list(unexpected)[:5]})")
        norm = _read_json(d / NORM_FILE)
        try:
            stats = [np.asarray(norm[k], np.float32) for k in NORM_KEYS]
        except KeyError as e:
            raise PolicyError(f"{d / NORM_FILE}: missing {e}") from e
        for k, v, n in zip(NORM_KEYS, stats, (spec.state_dim, spec.state_dim, spec.action_dim, spec.action_dim),
                           strict=True):
            if v.shape != (n,):
                raise PolicyError(f"{d / NORM_FILE}: {k} has {v.size} values, the model needs {n}")
        model.set_norm_stats(*stats)
        return cls(model, settings, **kw)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        out = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise PolicyError(f"{path}: does not exist (not a policy directory?)") from e
    except (OSError, json.JSONDecodeError) as e:
        raise PolicyError(f"{path}: cannot read: {e}") from e
    if not isinstance(out, dict):
        raise PolicyError(f"{path}: not a JSON object")
    return out
