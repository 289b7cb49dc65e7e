"""Training samples built in bulk: a decoded `Block` plus selected rows -> padded numpy arrays.

`build(block, sel, view, ...)` turns the rows `sel` of a block (repeats allowed) into one array
per field, all rows at once (numpy gathers, no per-row Python):

* `view="event"`: one sample per event: the event's start visual embedding (`visual`), end visual
  embedding (`end_visual`), caption text embedding (`text`), start state (`state`), and the action
  and state sequences padded to `T = max_len` (`actions`, `states`) with `mask`, `length` (real
  steps) and `offset` (0).
* `view="chunk"`: one chunk of `H = chunk_len` actions per event, at an offset inside the event's
  first `max_len` steps drawn from a stateless hash of (seed, epoch, unit, row) (`chunk_offsets`);
  the state is the one at the chunk's first frame.

`task` (the hashed task embedding) is there when the block holds the `task` column: the chunk
view reads it, the event view only when asked (evaluating a unified or chunk model on events).

Events with fewer state frames than actions repeat their last state frame. `event_id` stays an
object array of strings.

Task text. The chunk baseline and the unified model condition on the episode's task: a hashed
bag-of-words embedding of the `task` string (signed feature hashing of unigrams and bigrams into
`task_dim` slots, L2-normalised), computed from the row itself (`task_embedding`), so it needs no
model and no lookup of the episode's first event, which may live in another shard.
"""

from __future__ import annotations

import hashlib
import itertools
from functools import lru_cache

import numpy as np

from carve.trainer.rowgroups import Block

# the columns each view reads (column projection)
VIEW_COLUMNS: dict[str, tuple[str, ...]] = {
    "event": ("event_id", "state", "action", "emb_visual", "emb_text", "end_emb_visual"),
    "chunk": ("event_id", "task", "state", "action", "emb_visual", "emb_text", "end_emb_visual"),
}

_U64 = np.uint64


@lru_cache(maxsize=4096)
def task_embedding(task: str, dim: int) -> np.ndarray:
    """Signed hashed bag of unigrams + bigrams of `task`, L2-normalised (zeros for an empty task)."""
    words = [w for w in "".join(c.lower() if c.isalnum() else " " for c in task or "").split() if w]
    feats = words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]
    v = np.zeros(dim, np.float32)
    for f in feats:
        h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def task_embeddings(tasks: np.ndarray, dim: int) -> np.ndarray:
    """[n, dim] task embeddings of an object array of strings (None -> ""), one hash per distinct task."""
    names, inverse = np.unique(np.array(["" if t is None else t for t in tasks], dtype=object),
                               return_inverse=True)
    table = np.stack([task_embedding(str(t), dim) for t in names]) if len(names) else np.zeros((0, dim), np.float32)
    return table[inverse.reshape(-1)]


def mix(*xs: np.ndarray | int) -> np.ndarray:
    """splitmix64 over the inputs, elementwise (uint64; the same value for the same inputs, any shape)."""
    with np.errstate(over="ignore"):
        z = np.asarray(0x9E3779B97F4A7C15, _U64)
        for x in xs:
            z = (z ^ np.asarray(x).astype(np.int64).astype(_U64)) * _U64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
            z = z ^ (z >> _U64(31))
    return z


def chunk_offsets(seed: int, epoch: int, unit: np.ndarray, row: np.ndarray, lengths: np.ndarray,
                  max_len: int, chunk_len: int) -> np.ndarray:
    """Where each event's chunk starts: uniform by hash over [0, min(L, max_len) - H] (0 if shorter)."""
    span = np.minimum(lengths, max_len)
    room = np.maximum(span - chunk_len + 1, 1).astype(_U64)
    off = (mix(seed, epoch, unit, row) % room).astype(np.int64)
    return np.where(span > chunk_len, off, 0)


def _gather(frames: np.ndarray, idx: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """frames[idx] where valid, zeros elsewhere (padding reads an appended zero frame)."""
    padded = np.concatenate([frames, np.zeros((1, frames.shape[1]), frames.dtype)])
    return np.take(padded, np.where(valid, idx, len(frames)), axis=0)


def build(block: Block, sel: np.ndarray, view: str, *, max_len: int, chunk_len: int, task_dim: int,
          seed: int, epoch: int) -> dict[str, np.ndarray]:
    """The samples of rows `sel` of `block`, one array per field (module docstring)."""
    ao, so = block.offsets["action"], block.offsets["state"]
    a0, L = ao[sel], ao[sel + 1] - ao[sel]
    s0, Ls = so[sel], so[sel + 1] - so[sel]
    if view == "event":
        T, off = max_len, np.zeros(len(sel), np.int64)
    else:
        T = chunk_len
        off = chunk_offsets(seed, epoch, block.unit[sel], block.row[sel], L, max_len, chunk_len)
    n = np.minimum(L - off, T)
    t = np.arange(T)
    valid = t[None, :] < n[:, None]
    states = block.frames["state"]
    out: dict[str, np.ndarray] = {
        "event_id": block.strings["event_id"][sel],
        "visual": block.vectors["emb_visual"][sel],
        "end_visual": block.vectors["end_emb_visual"][sel],
        "text": block.vectors["emb_text"][sel],
        "state": states[s0 + np.minimum(off, Ls - 1)],
        "actions": _gather(block.frames["action"], a0[:, None] + off[:, None] + t, valid),
        "mask": valid,
        "length": n.astype(np.int64),
        "offset": off.astype(np.int64),
    }
    if view == "event":
        out["states"] = _gather(states, s0[:, None] + np.minimum(t[None, :], Ls[:, None] - 1), valid)
    if "task" in block.strings:
        out["task"] = task_embeddings(block.strings["task"][sel], task_dim)
    return out
