"""One buffer per batch for DataLoader workers: `pack` in the worker, `PackedBatch.unpack` in the trainer.

A DataLoader worker hands each tensor of a batch to the main process through its own shared
memory segment, whose file descriptor the main process fetches over a socket: for a batch of ten
small tensors that costs more than building the batch. `pack(arrays)` copies a batch's numeric
fields into one 64-byte-aligned uint8 numpy buffer (padded `[rows, T, D]` sequences as their real
frames only, re-padded by `unpack` from `mask`), which travels through the worker's result
queue as one pickled buffer (no segment, no descriptor), and `PackedBatch.unpack()` gives back
the dict of tensors (views of that buffer, the sequences re-padded). With `pin_memory=True` the
DataLoader's pin thread calls `PackedBatch.pin_memory()`, which unpacks and pins there, off the
training loop's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_ALIGN = 64
_RAGGED = "ragged:"  # a padded [rows, T, D] field sent as its frames under `mask` only

Layout = tuple[tuple[str, str, tuple[int, ...], int, int], ...]  # (name, numpy dtype, shape, byte offset, bytes)


@dataclass
class PackedBatch:
    """A batch's numeric fields in one uint8 buffer, plus its event ids."""

    buffer: np.ndarray
    layout: Layout  # (name, numpy dtype, shape, byte offset, bytes) per field
    event_id: list[str]

    def pin_memory(self, device: Any = None) -> dict[str, Any]:
        """The unpacked batch with page-locked tensors (the DataLoader's pin thread calls this)."""
        return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in self.unpack().items()}

    def unpack(self) -> dict[str, Any]:
        return unpack_buffer(self.buffer, self.layout, self.event_id)


def unpack_buffer(buffer: Any, layout: Layout, event_id: list[str]) -> dict[str, Any]:
    """The dict of tensors laid out in `buffer` (a uint8 array or any writable buffer; views of it,
    which keep it alive; sequences sent ragged are new arrays, re-padded from `mask`)."""
    arrays: dict[str, np.ndarray] = {}
    ragged = []
    for name, dtype, shape, off, _ in layout:
        a = np.ndarray(shape, dtype, buffer, off)
        if name.startswith(_RAGGED):
            ragged.append((name[len(_RAGGED) :], a))
        else:
            arrays[name] = a
    for name, frames in ragged:  # back to [rows, T, D], zeros where `mask` is False
        full = np.zeros((*arrays["mask"].shape, frames.shape[-1]), frames.dtype)
        full[arrays["mask"]] = frames
        arrays[name] = full
    return {"event_id": event_id, **{k: torch.from_numpy(v) for k, v in arrays.items()}}


def plan(arrays: dict[str, np.ndarray], ragged: bool = True) -> tuple[list[tuple[str, np.ndarray]], Layout, int]:
    """(the fields to write, their layout, the buffer's size in bytes) for the numeric fields of
    `arrays`; `ragged=False` keeps the padded sequences padded (no gather here, no re-padding in
    `unpack_buffer`: more bytes, less work, for a transport where bytes are cheap)."""
    layout = []
    off = 0
    mask = arrays.get("mask")
    fields = []
    for k, v in arrays.items():
        if k == "event_id":
            continue
        if ragged and mask is not None and v.ndim == 3 and v.shape[:2] == mask.shape:  # padded sequences: real frames only
            fields.append((_RAGGED + k, v[mask]))
        else:
            fields.append((k, np.ascontiguousarray(v)))
    for name, a in fields:
        layout.append((name, a.dtype.str, tuple(a.shape), off, a.nbytes))
        off += -(-a.nbytes // _ALIGN) * _ALIGN
    return fields, tuple(layout), off


def write(fields: list[tuple[str, np.ndarray]], layout: Layout, out: np.ndarray) -> None:
    """Copy `fields` into the uint8 buffer `out` (at least as large as `plan` said) at their offsets."""
    for (_, a), (_, _, _, o, _) in zip(fields, layout, strict=True):
        out[o : o + a.nbytes] = a.reshape(-1).view(np.uint8)


def pack(arrays: dict[str, np.ndarray]) -> PackedBatch:
    """`arrays` (float32 / int64 / bool fields, plus `event_id` strings) as one buffer."""
    fields, layout, size = plan(arrays)
    buffer = np.empty(size, np.uint8)
    write(fields, layout, buffer)
    return PackedBatch(buffer, layout, arrays["event_id"].tolist())
