"""One buffer per batch for DataLoader workers: `pack` in the worker, `PackedBatch.unpack` in the trainer.

A DataLoader worker hands each tensor of a batch to the main process through its own shared
memory segment, whose file descriptor the main process fetches over a socket: for a batch of ten
small tensors that costs more than building the batch. `pack(arrays)` copies a batch's numeric
fields into one 64-byte-aligned uint8 numpy buffer, which travels through the worker's result
queue as one pickled buffer (no segment, no descriptor), and `PackedBatch.unpack()` gives back
the dict of tensors as views of that buffer. `PackedBatch.pin_memory()` pins the one buffer (the
DataLoader's `pin_memory=True` calls it), so the unpacked tensors are page-locked too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_ALIGN = 64
_TORCH = {np.dtype(np.float32): torch.float32, np.dtype(np.int64): torch.int64, np.dtype(np.bool_): torch.bool}


@dataclass
class PackedBatch:
    """A batch's numeric fields in one uint8 buffer, plus its event ids."""

    buffer: torch.Tensor | np.ndarray
    layout: tuple[tuple[str, str, tuple[int, ...], int], ...]  # (name, numpy dtype, shape, byte offset)
    event_id: list[str]

    def tensor(self) -> torch.Tensor:
        b = self.buffer
        return torch.from_numpy(b) if isinstance(b, np.ndarray) else b

    def pin_memory(self, device: Any = None) -> PackedBatch:
        return PackedBatch(self.tensor().pin_memory(), self.layout, self.event_id)

    def unpack(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event_id": self.event_id}
        buf = self.tensor()
        for name, dtype, shape, off in self.layout:
            dt = np.dtype(dtype)
            nbytes = int(np.prod(shape)) * dt.itemsize
            out[name] = buf[off : off + nbytes].view(_TORCH[dt]).view(shape)
        return out


def pack(arrays: dict[str, np.ndarray]) -> PackedBatch:
    """`arrays` (float32 / int64 / bool fields, plus `event_id` strings) as one buffer."""
    layout = []
    off = 0
    fields = [(k, np.ascontiguousarray(v)) for k, v in arrays.items() if k != "event_id"]
    for name, a in fields:
        layout.append((name, a.dtype.str, tuple(a.shape), off))
        off += -(-a.nbytes // _ALIGN) * _ALIGN
    view = np.empty(off, np.uint8)
    for (_, a), (_, _, _, o) in zip(fields, layout, strict=True):
        view[o : o + a.nbytes] = a.reshape(-1).view(np.uint8)
    return PackedBatch(view, tuple(layout), arrays["event_id"].tolist())
