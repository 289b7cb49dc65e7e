"""Episode-level training data for fair mode comparisons: episodes rebuilt from event rows, an
episode-level held-out split, training-only normalisation, and one sampler per mode.

The streaming loader (`trainer/data.py`) serves one row per event, so a chunk can never cross an
event boundary and its observation is the event-start keyframe. This module holds a (small)
catalog in memory as whole episodes instead:

* `episodes_from_rows(rows)` groups event rows by `episode_id`, drops repeated `event_id`s
  (balanced shards repeat events), orders events by `start_frame` and concatenates their
  per-frame `state` / `action` into the episode's signals. The optional per-step event
  columns (nullable, no schema version of their own) are used when present: `env_state` (per-frame privileged object state, appended to
  the state with `privileged=True`, the privileged-state pilot) and `obs_visual` (the visual
  descriptor every `obs_stride` frames). Each event keeps its caption, its sampling `weight`
  (the balance: `sampling_weight`, else `weight`, when the shard carries one) and `dup_of`.
* `split_episodes(ids, frac, seed)`: held-out episodes drawn at the episode level by the split
  seed (never the training or data seed), from the unique episodes, so no event of a held-out
  episode is seen in training, whatever the shard's balance did.
* `norm_stats(episodes)`: state / action mean and std of the given (training) episodes only.
* `Sampler(episodes, mode, ...)` draws batches with its own `data_seed` (independent of the
  training seed that initialises the weights):
  - `event`: an event (by weight), the observation at its start, its actions up to `max_len`
    with a mask and its length, the caption's text embedding, or (with probability
    `caption_dropout`) the task text's embedding. Dropout is per event and keeps the length
    target, so the stop head learns event lengths from the observation alone (captions-off
    inference; "length-aware": long and short events are dropped at the same rate);
  - `chunk` / `unified`: an event (by weight), then a frame `t` uniformly inside it; the
    chunk is the episode's actions `[t, t + H)`, crossing event boundaries (padded and masked
    only at the episode's end), the observation is the state (and visual) at `t`; unified's
    latent target is the caption of the event holding `t`.
  Every mode conditions on the same text encoder (`TextCache`): the task text for chunk and
  unified, the caption (or task) for event.
* `weights` is the balance hook: `"uniform"` (every event once per epoch, the unbalanced
  baseline), `"balanced"` (the rows' sampling weights, e.g. inverse cluster size), or a callable
  `(episodes) -> weights`. Events are drawn in weighted epochs by `shard.sampling.epoch_indices`
  (systematic sampling, deterministic by (data_seed, epoch); each epoch as many draws as events).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from carve.trainer.data import NormStats


@dataclass
class EpisodeData:
    """One episode's signals and its events (frames relative to the episode's first event)."""

    episode_id: str
    task: str
    state: np.ndarray  # (T, Ds) float32 (with the privileged object state appended in the pilot)
    action: np.ndarray  # (T, Da)
    starts: np.ndarray  # (E,) int
    ends: np.ndarray  # (E,) int, exclusive
    captions: list[str]
    weights: np.ndarray  # (E,) float: the shard's sampling weight (1 when absent)
    dup: np.ndarray  # (E,) bool: marked a near-duplicate
    visual: np.ndarray | None = None  # (ceil(T / stride), Dv) strided visual descriptors
    stride: int = 1
    event_ids: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.action.shape[0])

    def visual_at(self, t: int, dim: int) -> np.ndarray:
        if self.visual is None or dim == 0:
            return np.zeros(dim, np.float32)
        return self.visual[min(t // self.stride, len(self.visual) - 1)]

    def event_at(self, t: int) -> int:
        return int(np.searchsorted(self.starts, t, side="right") - 1)


def _get(row: Any, key: str, default: Any = None) -> Any:
    v = row.get(key, default) if isinstance(row, dict) else default
    return default if v is None else v


def episodes_from_rows(rows: Iterable[dict[str, Any]], privileged: bool = False) -> list[EpisodeData]:
    """Whole episodes from event rows (dicts, e.g. `table.to_pylist()`), sorted by episode id."""
    by_ep: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
    for r in rows:
        by_ep.setdefault(str(r["episode_id"]), {}).setdefault(str(r["event_id"]), r)
    out = []
    for eid in sorted(by_ep):
        evs = sorted(by_ep[eid].values(), key=lambda r: int(r["start_frame"]))
        states, actions, starts, ends, vis = [], [], [], [], []
        t = 0
        stride = int(_get(evs[0], "obs_stride", 1) or 1)
        for r in evs:
            a = np.asarray(r["action"], np.float32)
            s = np.asarray(r["state"], np.float32)
            if len(s) < len(a):
                s = np.concatenate([s, np.repeat(s[-1:], len(a) - len(s), 0)])
            s = s[: len(a)]
            if privileged:
                env = r.get("env_state")
                if env is None:
                    raise ValueError(f"event {r['event_id']}: privileged training needs the env_state column")
                s = np.concatenate([s, np.asarray(env, np.float32)[: len(a)]], 1)
            states.append(s)
            actions.append(a)
            starts.append(t)
            t += len(a)
            ends.append(t)
            if r.get("obs_visual") is not None:
                vis.append(np.asarray(r["obs_visual"], np.float32))
        out.append(EpisodeData(
            episode_id=eid, task=str(_get(evs[0], "task", "")), state=np.concatenate(states),
            action=np.concatenate(actions), starts=np.asarray(starts), ends=np.asarray(ends),
            captions=[str(_get(r, "caption", "")) for r in evs],
            weights=np.asarray([float(_get(r, "sampling_weight", _get(r, "weight", 1.0))) for r in evs], np.float64),
            dup=np.asarray([bool(r.get("dup_of")) for r in evs]),
            visual=np.concatenate(vis) if vis and len(vis) == len(evs) else None, stride=stride,
            event_ids=[str(r["event_id"]) for r in evs]))
    return out


def split_episodes(episode_ids: Sequence[str], holdout_frac: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) episode ids: a seeded permutation of the unique ids, the first
    `round(frac * n)` (at least one when frac > 0 and n > 1) held out."""
    ids = sorted(set(episode_ids))
    if holdout_frac <= 0 or len(ids) < 2:
        return ids, []
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_out = min(len(ids) - 1, max(1, round(holdout_frac * len(ids))))
    held = sorted(ids[i] for i in perm[:n_out])
    hs = set(held)
    return [i for i in ids if i not in hs], held


def action_offsets(ep: EpisodeData, relative: int, horizon: int) -> np.ndarray:
    """Every action of `ep` as a model with `relative_actions` = `relative` predicts it from each
    plan start t: (sum over t of min(horizon, T - t), A) values `action[t + k]` with the first `relative`
    dimensions minus `state[t]`'s first `relative` values (k < horizon)."""
    T = ep.length
    t = np.repeat(np.arange(T), np.minimum(horizon, T - np.arange(T)))
    k = np.concatenate([np.arange(min(horizon, T - i)) for i in range(T)])
    out = ep.action[t + k].copy()
    out[:, :relative] -= ep.state[t, :relative]
    return out


def norm_stats(episodes: Sequence[EpisodeData], relative: int = 0, horizon: int = 1) -> NormStats:
    """State / action mean and std (floored at 1e-3) over the frames of `episodes`. With `relative` > 0
    the action statistics are those of the offsets a model with `relative_actions` = `relative` predicts
    (`action_offsets`: every action up to `horizon` steps after each plan start, its first `relative`
    dimensions taken from that start's state)."""
    s = np.concatenate([e.state for e in episodes])
    a = (np.concatenate([action_offsets(e, relative, horizon) for e in episodes]) if relative
         else np.concatenate([e.action for e in episodes]))
    s, a = s[np.isfinite(s).all(1)], a[np.isfinite(a).all(1)]
    return NormStats(s.mean(0).astype(np.float32), np.maximum(s.std(0), 1e-3).astype(np.float32),
                     a.mean(0).astype(np.float32), np.maximum(a.std(0), 1e-3).astype(np.float32))


class TextCache:
    """One text encoder for every mode; each distinct string is encoded once."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.dim = int(encoder.dim)
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, text: str) -> np.ndarray:
        v = self._cache.get(text)
        if v is None:
            v = self._cache[text] = np.asarray(self.encoder.encode([text]), np.float32)[0]
        return v

    def warm(self, texts: Iterable[str]) -> None:
        new = sorted({t for t in texts if t not in self._cache})
        if new:
            vecs = np.asarray(self.encoder.encode(new), np.float32)
            self._cache.update(zip(new, vecs, strict=True))


WeightRule = str | Callable[[Sequence[EpisodeData]], np.ndarray]


def event_weights(episodes: Sequence[EpisodeData], rule: WeightRule = "uniform") -> np.ndarray:
    """Per-event sampling weights over all events of `episodes` (flattened, episode-major).

    The balance hook: "uniform" is the unbalanced baseline, "balanced" the rows' `weight`
    column; a callable (e.g. a weighted-epoch sampler's weights) gets the episodes."""
    if callable(rule):
        w = np.asarray(rule(episodes), np.float64)
    elif rule == "uniform":
        w = np.ones(sum(len(e.starts) for e in episodes))
    elif rule == "balanced":
        w = np.concatenate([e.weights for e in episodes])
    else:
        raise ValueError(f"weights must be 'uniform', 'balanced' or a callable, got {rule!r}")
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    if w.sum() <= 0:
        raise ValueError("every event has weight 0")
    return w / w.sum()


class Sampler:
    """Batches for one mode (see the module docstring); deterministic given `data_seed`."""

    def __init__(self, episodes: Sequence[EpisodeData], mode: str, text: TextCache, *, max_len: int = 48,
                 chunk_len: int = 8, caption_dropout: float = 0.0, weights: WeightRule = "uniform",
                 data_seed: int = 0, visual_dim: int = 0) -> None:
        if mode not in ("event", "unified", "chunk"):
            raise ValueError(f"unknown mode {mode!r}")
        self.episodes = list(episodes)
        self.mode, self.text = mode, text
        self.max_len, self.chunk_len = max_len, chunk_len
        self.caption_dropout = caption_dropout
        self.visual_dim = visual_dim or 1  # models take a 1-d zero visual token when there is none (spec_for)
        self.rng = np.random.default_rng(data_seed)
        self.data_seed = data_seed
        self.index = [(i, k) for i, e in enumerate(self.episodes) for k in range(len(e.starts))]
        self.p = event_weights(self.episodes, weights)
        self.epoch, self._order, self._pos = 0, np.zeros(0, np.int64), 0
        text.warm([e.task for e in self.episodes] + [c for e in self.episodes for c in e.captions])

    @property
    def horizon(self) -> int:
        return self.max_len if self.mode == "event" else self.chunk_len

    def _next_event(self) -> int:
        """The next event of the current weighted epoch (`shard.sampling.epoch_indices`: every
        epoch draws as many events as there are, each about `n * p_i` times, seeded by
        (data_seed, epoch)); then the next epoch."""
        from carve.shard.sampling import epoch_indices

        while self._pos >= len(self._order):
            self._order = epoch_indices(self.p, self.epoch, self.data_seed, num_samples=len(self.index))
            self.epoch, self._pos = self.epoch + 1, 0
        self._pos += 1
        return int(self._order[self._pos - 1])

    def sample(self) -> dict[str, np.ndarray]:
        i, k = self.index[self._next_event()]
        ep = self.episodes[i]
        s0, s1 = int(ep.starts[k]), int(ep.ends[k])
        T = self.horizon
        if self.mode == "event":
            t, n = s0, min(s1 - s0, T)
            drop = self.caption_dropout > 0 and self.rng.random() < self.caption_dropout
            text = self.text(ep.task if drop else ep.captions[k])
            end_t = s0 + n - 1
        else:
            t = int(self.rng.integers(s0, s1))
            n = min(ep.length - t, T)
            text = self.text(ep.captions[k])
            end_t = t + n - 1
        act = np.zeros((T, ep.action.shape[1]), np.float32)
        act[:n] = ep.action[t:t + n]
        mask = np.zeros(T, bool)
        mask[:n] = True
        return {"state": ep.state[t], "visual": ep.visual_at(t, self.visual_dim),
                "end_visual": ep.visual_at(end_t + 1 if end_t + 1 < ep.length else end_t, self.visual_dim),
                "text": text, "task": self.text(ep.task), "actions": act, "mask": mask,
                "length": np.int64(n)}

    def batch(self, size: int) -> dict[str, Any]:
        import torch

        samples = [self.sample() for _ in range(size)]
        return {k: torch.from_numpy(np.stack([np.asarray(s[k]) for s in samples])) for k in samples[0]}
