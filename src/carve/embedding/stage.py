"""The embed stage: visual, text and motion embeddings of events, and the fused `emb`.

`EmbedStage(cfg)` is the callable that the pipeline's Embed step runs inside a Ray actor over
a `pa.Table` of captioned schema-v1 event rows. It adds (all `list<float32>`):

* `emb_visual`     - visual embedding of the event's START keyframe; with several cameras
                     (`cameras`, keyframes camera-major) the unit mean over the cameras,
* `emb_visual_cameras` - the START keyframe embedding of each camera, in `cameras` order,
* `end_emb_visual` - the same for its LAST keyframe (future-observation target),
* `emb_text`       - text embedding of `caption`; each distinct caption is embedded once per
                     worker (captions repeat heavily) and on its own, so its vector is the
                     same whatever block, batch or executor it came in,
* `emb_motion`     - `motion.motion_descriptor` of the event's state/action/gripper slices,
* `emb`            - the fused vector (`fusion.fuse` with `cfg.weights`).

The embedders (`embedders.make_visual_embedder` / `make_text_embedder`) are built lazily, on
first use; images are encoded in batches of `cfg.batch_size`, texts one distinct text at a time. Events without keyframes get a zero visual
vector (counted in `EmbedStage.stats["missing_keyframes"]` and logged), empty captions a zero
text vector. A NaN/inf anywhere raises `EmbedError` naming the event. A disabled modality's
column is null.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from carve.core.config import EmbedConfig
from carve.core.log import get_logger, log_event
from carve.embedding.embedders import (
    Embedder,
    EmbedError,
    decode_image,
    make_text_embedder,
    make_visual_embedder,
)
from carve.embedding.fusion import embedding_dims, fuse
from carve.embedding.motion import frames_2d, motion_descriptor

OUTPUT_COLUMNS = ("emb_visual", "end_emb_visual", "emb_text", "emb_motion", "emb")
TEXT_CACHE_MAX = 200_000  # distinct captions kept per worker (about 300 MB of 384-d vectors); then started afresh

_log = get_logger("embed")


class EmbedStage:
    """Callable over a `pa.Table` of captioned event rows; returns it with the embedding columns set."""

    def __init__(self, cfg: EmbedConfig):
        self.cfg = cfg
        self.dims = embedding_dims(cfg)  # validates weights early
        self._visual: Embedder | None = None
        self._text: Embedder | None = None
        self._texts: dict[str, np.ndarray] = {}  # caption -> its text vector, for this worker's life
        self.stats = {"events": 0, "missing_keyframes": 0, "empty_captions": 0, "texts_embedded": 0}

    def warm_up(self) -> threading.Thread | None:
        """Load the text model in a background thread (importing torch and reading the weights
        take a second or more) so that it loads while the run decodes its first
        episodes; the first encode waits for it (`embedders._cached` holds the loading lock).
        A failure here is left to the first encode, which raises it where it is reported."""
        if not self.dims["text"]:
            return None

        def load() -> None:
            try:
                getattr(self.text, "model", None)
            except Exception:  # reported by the first real encode
                pass

        t = threading.Thread(target=load, name="carve-embed-warm-up", daemon=True)
        t.start()
        return t

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
        vis, end_vis, per_cam = self._visual_parts(table, where)
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
        if self.dims["visual"]:
            cams = pa.array([[v.astype(np.float32).tolist() for v in row] for row in per_cam],
                            pa.list_(pa.list_(pa.float32())))
            out = _set_column(out, "emb_visual_cameras", cams)
        return out

    # -- parts
    def _visual_parts(self, table: pa.Table, where: list[str]) -> tuple[np.ndarray, np.ndarray, list[list[np.ndarray]]]:
        """Start and end visual embeddings per event (the mean over its cameras, unit length when
        there are several) and the start embedding of each camera."""
        n = table.num_rows
        dim = self.dims["visual"]
        start = np.zeros((n, dim), dtype=np.float32)
        end = np.zeros((n, dim), dtype=np.float32)
        per_cam: list[list[np.ndarray]] = [[] for _ in range(n)]
        if dim == 0:
            return start, end, per_cam
        kfs = _column(table, "keyframes", n)
        cams = _column(table, "cameras", n) if "cameras" in table.column_names else [None] * n
        images: list[np.ndarray] = []
        slots: list[tuple[int, int, bool]] = []  # (row, camera, is_end)
        missing: list[str] = []
        for i, frames in enumerate(kfs):
            frames = [f for f in (frames or []) if f]
            if not frames:
                missing.append(where[i])
                continue
            n_cam = max(1, len(cams[i] or []))
            if len(frames) % n_cam:
                raise EmbedError(f"{where[i]}: {len(frames)} keyframes do not divide over {n_cam} cameras")
            k = len(frames) // n_cam
            for c in range(n_cam):
                own = frames[c * k : (c + 1) * k]
                first = decode_image(own[0], where[i])
                images.append(first)
                slots.append((i, c, False))
                images.append(decode_image(own[-1], where[i]) if len(own) > 1 else first)
                slots.append((i, c, True))
        if missing:
            self.stats["missing_keyframes"] += len(missing)
            log_event(_log, "missing_keyframes", logging.WARNING, count=len(missing), first=missing[0])
        if not images:
            return start, end, per_cam
        vecs = self.visual.encode(images)
        if vecs.shape != (len(images), dim):
            raise EmbedError(f"visual embedder {self.visual.name} returned {vecs.shape}, expected ({len(images)}, {dim})")
        ends: list[list[np.ndarray]] = [[] for _ in range(n)]
        for (row, _c, is_end), v in zip(slots, vecs, strict=True):
            (ends if is_end else per_cam)[row].append(v)
        for row in range(n):
            if per_cam[row]:
                start[row] = _camera_mean(per_cam[row])
                end[row] = _camera_mean(ends[row])
        return start, end, per_cam

    def _text_part(self, table: pa.Table) -> np.ndarray:
        n = table.num_rows
        dim = self.dims["text"]
        if dim == 0:
            return np.zeros((n, 0), dtype=np.float32)
        captions = [c or "" for c in _column(table, "caption", n)]
        self.stats["empty_captions"] += sum(1 for c in captions if not c.strip())
        new = sorted(set(captions) - self._texts.keys())
        if len(self._texts) + len(new) > TEXT_CACHE_MAX:
            self._texts.clear()
        with one_torch_thread():  # as in a one-CPU Ray worker: the same floats in this process and on Ray
            # a text's vector must not depend on what it was encoded with: all at once when the
            # embedder guarantees that (`batch_invariant`), else each distinct text alone
            groups = [new] if new and getattr(self.text, "batch_invariant", False) else [[t] for t in new]
            for group in groups:
                vecs = self.text.encode(group)
                if vecs.shape != (len(group), dim):
                    raise EmbedError(f"text embedder {self.text.name} returned {vecs.shape}, "
                                     f"expected ({len(group)}, {dim})")
                for text, vec in zip(group, vecs, strict=True):
                    self._texts[text] = vec.astype(np.float32)
        self.stats["texts_embedded"] += len(new)
        if not n:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self._texts[c] for c in captions])

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


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside the block (as a Ray worker reserving one CPU runs it),
    so that a text's vector is bit for bit the same in this process and on Ray."""
    try:
        import torch
    except ImportError:  # a text embedder without torch
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    arr = frames_2d(x)  # (T, D); a list<float> is one column
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
    field = pa.field(name, arr.type)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), field, arr)
    return table.append_column(field, arr)


def _camera_mean(vecs: list[np.ndarray]) -> np.ndarray:
    """One camera's vector as it is; several cameras' mean, scaled back to unit length."""
    if len(vecs) == 1:
        return vecs[0]
    m = np.mean(np.stack(vecs), axis=0)
    norm = float(np.linalg.norm(m))
    return m / norm if norm > 0 else m
