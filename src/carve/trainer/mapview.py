"""A shard version as a map-style `torch.utils.data.Dataset` (`ShardDataset`), for code written for LeRobot datasets.

Item `i` is row `i` of the version (shards in manifest order, rows in file order): one event, as
a plain dict of tensors and language, named the LeRobot way where a LeRobot name exists:

    observation.state         [S]     float32  state at the event's first frame
    observation.states        [T, S]  float32  the event's states, padded to T = max_len (last frame repeated
                                               up to the event's length, zeros after)
    action                    [T, A]  float32  the event's actions, zero-padded to T
    action_is_pad             [T]     bool     True on padding (LeRobot's convention for action chunks)
    length                    []      int64    real steps (<= T)
    observation.visual_embedding      [V] float32  start-keyframe embedding
    next.visual_embedding             [V] float32  end-of-event embedding
    caption_embedding                 [D] float32  the caption's text embedding
    index, episode_index, event_index []  int64    row in the version, episode and event of the source
    task, caption, next_caption       str          the episode's instruction, this event's and the next
                                                   event's description ("" when missing)
    event_id, episode_id              str

The default collate stacks the tensors and lists the strings. `sampling_weights()` is the
version's `sampling_weight` column (the cluster balance of a weights-mode version, 1.0 where
absent) and `sampler(seed)` the shard package's weighted epoch over it
(`carve.shard.sampling.WeightedEpochSampler`: each row floor/ceil of its expected count per
epoch, `set_epoch(e)` between epochs, `rank`/`world_size` for DDP), a drop-in `sampler=` for a
DataLoader; torch's `WeightedRandomSampler(ds.sampling_weights(), len(ds))` works too.

Reading. A row group is read once (only the columns above) and decoded in bulk
(`trainer.rowgroups`), then kept in a small LRU cache (`cache_row_groups`); `__getitems__` (which
the DataLoader calls with a batch's indices) builds all indices of a row group at once. Random
access over a large version therefore decodes a row group per distinct one touched; a sampler
that visits rows in row-group order (or the streaming `trainer.data.EventStream`) reads less.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from carve.shard.sampling import WeightedEpochSampler
from carve.trainer.manifest import Manifest, open_manifest
from carve.trainer.rowgroups import Block, ShardFiles, read_units
from carve.trainer.samples import build

COLUMNS = ("event_id", "episode_id", "episode_index", "event_index", "task", "caption", "next_caption",
           "state", "action", "emb_visual", "emb_text", "end_emb_visual")


class ShardDataset(Dataset):
    """Map-style view of a shard version (module docstring)."""

    def __init__(self, manifest: str | Path | Manifest, max_len: int = 64, cache_row_groups: int = 8) -> None:
        self.manifest = manifest if isinstance(manifest, Manifest) else open_manifest(manifest)
        self.max_len = max_len
        self.cache_row_groups = max(1, cache_row_groups)
        self._starts = np.cumsum([0] + [u.rows for u in self.manifest.units])
        self._files: ShardFiles | None = None
        self._cache: OrderedDict[int, Block] = OrderedDict()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict[str, Any]:  # open files and decoded blocks stay in their process
        return {**self.__dict__, "_files": None, "_cache": OrderedDict()}

    def _block(self, u: int) -> Block:
        blk = self._cache.get(u)
        if blk is None:
            self._files = self._files or ShardFiles()
            blk = self._cache[u] = read_units(self.manifest.units, [u], COLUMNS, self._files)
            while len(self._cache) > self.cache_row_groups:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(u)
        return blk

    def _locate(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad][0])} out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        unit = np.searchsorted(self._starts, idx, side="right") - 1
        return unit, idx - self._starts[unit]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        unit, row = self._locate(indices)
        out: list[dict[str, Any] | None] = [None] * len(unit)
        for u in np.unique(unit).tolist():
            at = np.flatnonzero(unit == u)
            blk = self._block(u)
            rows = row[at]
            s = build(blk, rows, "event", max_len=self.max_len, chunk_len=self.max_len, task_dim=1, seed=0, epoch=0)
            lang = {k: blk.strings[k][rows] for k in ("task", "caption", "next_caption", "event_id", "episode_id")}
            for j, k in enumerate(at.tolist()):
                out[k] = {
                    "observation.state": torch.from_numpy(s["state"][j]),
                    "observation.states": torch.from_numpy(s["states"][j]),
                    "action": torch.from_numpy(s["actions"][j]),
                    "action_is_pad": torch.from_numpy(~s["mask"][j]),
                    "length": torch.tensor(int(s["length"][j])),
                    "observation.visual_embedding": torch.from_numpy(s["visual"][j]),
                    "next.visual_embedding": torch.from_numpy(s["end_visual"][j]),
                    "caption_embedding": torch.from_numpy(s["text"][j]),
                    "index": torch.tensor(int(self._starts[u] + rows[j])),
                    "episode_index": torch.tensor(int(blk.ints["episode_index"][rows[j]])),
                    "event_index": torch.tensor(int(blk.ints["event_index"][rows[j]])),
                    **{k: "" if v[j] is None else str(v[j]) for k, v in lang.items()},
                }
        return [o for o in out if o is not None]

    def sampling_weights(self) -> torch.Tensor:
        """Every row's `sampling_weight` (float64, item order; null or absent: 1.0), read alone."""
        files = ShardFiles()
        out = []
        for unit in self.manifest.units:
            if "sampling_weight" not in files.get(unit.shard).schema_arrow.names:
                out.append(np.ones(unit.rows))
                continue
            w = files.read(unit, ["sampling_weight"]).column(0).to_numpy(zero_copy_only=False).astype(np.float64)
            out.append(np.where(np.isnan(w), 1.0, w))
        return torch.from_numpy(np.concatenate(out))

    def sampler(self, seed: int = 0, num_samples: int | None = None, rank: int = 0,
                world_size: int = 1) -> WeightedEpochSampler:
        """The weighted epoch over `sampling_weights()` (call `set_epoch` between epochs)."""
        return WeightedEpochSampler(self.sampling_weights().numpy(), seed=seed, num_samples=num_samples,
                                    rank=rank, world_size=world_size)
