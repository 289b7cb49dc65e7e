"""`duplicate_episode`: episodes that are near-copies of another episode of the same dataset.

A copy may be re-encoded, trimmed by a few frames, re-timed (another frame rate) or carry
sensor noise, so episodes are compared by their state trajectory over normalised time. The
copy's first and last states are looked up in the first and last `MAX_TRIM` of the other
episode (nearest state: where the copy was cut from it), that stretch and the copy are both
resampled to `POINTS` points, each dimension scaled by its spread across the dataset, and
their RMS distance taken (each episode tried as the copy of the other). Two episodes closer
than `check.duplicate_distance` are duplicates; the later one is reported.

Only pairs whose mean states are within `PREFILTER` are compared: found by a scan of every pair
(in blocks, so memory grows with the dataset) up to `GRID_FROM` episodes, and above it only among
the pairs where one episode's signature mean lies in the box that holds the signature means of
every stretch the other may be cut to (`_MeanBoxes`, found through a grid: the work grows with
such pairs, not with the square of the episodes; its fixed cost per episode does not pay below). Each episode's scaled states and signature,
and each stretch tried as an original, are made once; a pair whose matched end states alone put
it beyond the threshold (they are the first and last of the signatures' points, so they bound
the RMS from below) is not resampled, and a pair where neither episode's end states fall in the
boxes the other's first and last states span, so widened, is not looked at (`_EndBoxes`). The
answers are those of comparing every admitted pair in full (tests/test_duplicate_copies.py);
1,000 simulated episodes: 4.9 s -> 0.8 s (the bound) -> 0.3 s (the end-state boxes); 64,000
jittered copies of them: 85.8 s with the scan, 43.8 s through the grid (`bench.bench_copies`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pyarrow as pa

from carve.core.config import CheckConfig
from carve.quality.defects import Defect

K = TypeVar("K", bound=Hashable)

POINTS = 64
MAX_TRIM = 0.1
GRID_FROM = 16_000  # episodes in a dataset above which candidates come from the grid, not a scan of all pairs
STRETCHES = 4096  # stretch signatures kept for reuse (POINTS x dims floats each)
_MARGIN = 1.0 + 1e-6  # a lower bound must clear the threshold by this factor to skip a pair (rounding)
PREFILTER = 0.3  # mean-state distance (in the dataset's spread) beyond which two episodes are not compared


def _trim_window(n: int) -> int:
    """How many of an episode's first (and last) states a copy's first (last) state may match."""
    return max(2, int(MAX_TRIM * n) + 1)


def _within_prefilter(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether mean states `a` and `b` (broadcast, coordinates on the last axis) are within `PREFILTER` RMS."""
    return np.sqrt(((a - b) ** 2).mean(axis=-1)) < PREFILTER


def signature(state: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """The state over the fraction [lo, hi] of the episode's duration, at `POINTS` points."""
    x = np.nan_to_num(np.asarray(state, dtype=np.float64))
    n = len(x)
    if n == 0:
        return np.zeros((POINTS, x.shape[1] if x.ndim == 2 else 1))
    src = np.linspace(0.0, 1.0, n)
    dst = np.linspace(lo, hi, POINTS)
    return np.stack([np.interp(dst, src, x[:, d]) for d in range(x.shape[1])], axis=1)


class Copy(NamedTuple):
    """One episode found to be a near-copy of an earlier one."""

    of: Hashable  # the episode it copies (the earlier key)
    distance: float  # RMS distance of the states, in the dataset's spread
    span: tuple[float, float]  # the stretch of `of` it covers, as fractions of its duration


def copies(states: dict[K, np.ndarray], cfg: CheckConfig, *, grid: bool | None = None) -> dict[K, Copy]:
    """key -> the earlier episode (in key order) it is a near-copy of, for every duplicate. The
    candidates come from the grid above `GRID_FROM` episodes, else from the scan (`grid` forces
    one way: the same answers, `bench.bench_copies` times both)."""
    keys = sorted(k for k, s in states.items() if s.ndim == 2 and len(s) >= 4)
    if len(keys) < 2:
        return {}
    dims = {states[k].shape[1] for k in keys}
    if len(dims) != 1:
        return {}
    whole = {k: signature(states[k]) for k in keys}
    scale = np.concatenate([whole[k] for k in keys]).std(axis=0)
    scale[scale < 1e-9] = 1.0
    # candidates first: a copy's mean state (over its normalised time) is close to the original's
    means = np.stack([(whole[k] / scale).mean(axis=0) for k in keys])
    scaled = _Scaled(states, scale)
    xs = [scaled.x(k) for k in keys]
    ends = _EndBoxes(xs, cfg.duplicate_distance)
    if grid if grid is not None else len(keys) > GRID_FROM:
        pairs = _MeanBoxes(xs, means, cfg.duplicate_distance).pairs()
        candidates = _candidates(means, pairs)
    else:
        candidates = _scan(means)
    out: dict[K, Copy] = {}
    for j, near in candidates:
        kb = keys[j]
        for i in ends.either_way(j, near):
            ka = keys[i]
            (d_ab, span), (d_ba, _) = scaled.as_copy(ka, kb, cfg.duplicate_distance), \
                scaled.as_copy(kb, ka, cfg.duplicate_distance)
            if min(d_ab, d_ba) < cfg.duplicate_distance:
                # b cut from a: it covers `span` of a; a cut from b: b covers all of a
                out[kb] = Copy(ka, min(d_ab, d_ba), span if d_ab <= d_ba else (0.0, 1.0))
                break
    return out


def _scan(means: np.ndarray, budget_bytes: int = 64 * 2**20) -> Iterator[tuple[int, np.ndarray]]:
    """(j, the earlier indices i < j in order whose mean states are within `PREFILTER` RMS of j's),
    for every j with any: every pair's distance, in blocks of rows sized so one block's differences
    fit in `budget_bytes` (memory grows with the dataset, not with its square)."""
    n, d = means.shape
    rows = max(1, budget_bytes // max(1, n * d * means.itemsize))
    for lo in range(0, n, rows):
        block = means[lo : lo + rows]
        near = _within_prefilter(block[:, None, :], means[None, : lo + len(block), :])
        for r in range(len(block)):
            i = np.flatnonzero(near[r, : lo + r])
            if len(i):
                yield lo + r, i


def _candidates(means: np.ndarray, pairs: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(j, the earlier indices i < j, in order, of the `pairs` (i, j) whose mean states are also
    within `PREFILTER` RMS of each other), for every j with any."""
    if len(pairs) == 0:
        return
    i, j = pairs[:, 0], pairs[:, 1]
    keep = _within_prefilter(means[i], means[j])
    i, j = i[keep], j[keep]
    order = np.lexsort((i, j))
    i, j = i[order], j[order]
    cuts = np.flatnonzero(np.diff(j)) + 1
    for gi, gj in zip(np.split(i, cuts), np.split(j, cuts), strict=True):
        if len(gj):
            yield int(gj[0]), gi


class _MeanBoxes:
    """Each episode's signature mean (as a copy: `means`, the prefilter's, equal to its scaled
    signature's mean but for rounding far inside the boxes' `eps`) and a box that holds the
    signature mean of every stretch `_Scaled.as_copy` may take of it (as an original), widened by
    sqrt(D) x `bound`: the
    RMS distance of two signatures is at least their means' distance over sqrt(D), so a copy closer
    than `bound` has its mean in its original's box. A stretch starts in the first `MAX_TRIM` and
    ends in the last, so its k-th signature point lies on the path between two frame positions;
    the box is the mean over the points of the path's least and greatest value there. `pairs()`
    finds every (original, copy) pair so placed through a grid on the three most spread
    coordinates: the work grows with the pairs, not with the square of the episodes."""

    def __init__(self, xs: list[np.ndarray], means: np.ndarray, bound: float):
        d = xs[0].shape[1]
        self.means = means
        lo, hi = [], []
        for x in xs:
            mins, maxs = _path_extremes(x)
            eps = 1e-9 * (1.0 + float(np.abs(x).max()))
            lo.append(mins.mean(axis=0) - eps)
            hi.append(maxs.mean(axis=0) + eps)
        r = bound * _MARGIN * np.sqrt(d) * (1 + 1e-9)
        self.lo, self.hi = np.array(lo) - r, np.array(hi) + r

    def pairs(self) -> np.ndarray:
        """(i, j) with i < j, one episode's mean in the other's box (either way); (m, 2) ints."""
        n, d = self.means.shape
        dims = np.argsort(-self.means.std(axis=0))[: min(3, d)]
        cell = np.maximum(np.median(self.hi[:, dims] - self.lo[:, dims], axis=0), 1e-12)
        origin = self.means[:, dims].min(axis=0)
        home = np.floor((self.means[:, dims] - origin) / cell).astype(np.int64)
        grid: dict[tuple[int, ...], list[int]] = {}
        for p, c in enumerate(map(tuple, home.tolist())):
            grid.setdefault(c, []).append(p)
        found: list[np.ndarray] = []
        for a in range(n):
            first = np.floor((self.lo[a, dims] - origin) / cell).astype(np.int64)
            last = np.floor((self.hi[a, dims] - origin) / cell).astype(np.int64)
            if int(np.prod(last - first + 1)) > len(grid):
                near = np.arange(n)  # a box wider than the grid has cells: look at every episode
            else:
                ids = [grid.get(c, ()) for c in itertools.product(*(range(f, t + 1) for f, t in zip(first, last, strict=True)))]
                near = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64)
            if len(near) == 0:
                continue
            inside = np.all((self.means[near] >= self.lo[a]) & (self.means[near] <= self.hi[a]), axis=1)
            copies_of_a = near[inside & (near != a)]
            if len(copies_of_a):
                found.append(np.stack([np.minimum(copies_of_a, a), np.maximum(copies_of_a, a)], axis=1))
        if not found:
            return np.zeros((0, 2), dtype=np.int64)
        return np.unique(np.concatenate(found), axis=0)


def _path_extremes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per signature point k (of `POINTS`), the least and greatest value of the piecewise-linear path
    through the frames of `x` between the positions point k takes in the shortest and the longest
    stretch `as_copy` may cut: (POINTS, D) each."""
    n = len(x)
    w = _trim_window(n)
    k = np.arange(POINTS) / (POINTS - 1)
    a = np.clip(k * (n - w), 0, n - 1)
    b = np.clip((w - 1) * (1 - k) + (n - 1) * k, 0, n - 1)

    def at(pos: np.ndarray) -> np.ndarray:
        j = np.minimum(np.floor(pos).astype(np.int64), n - 2)
        f = (pos - j)[:, None]
        return x[j] * (1 - f) + x[j + 1] * f

    ends = np.stack([at(a), at(b)])  # (2, POINTS, D)
    first, last = np.ceil(a).astype(np.int64), np.floor(b).astype(np.int64)
    span = np.arange(w + 1)
    idx = np.minimum(first[:, None] + span[None, :], n - 1)  # (POINTS, w + 1) frames inside
    inside = (first[:, None] + span[None, :]) <= last[:, None]
    vals = x[idx]  # (POINTS, w + 1, D)
    big = np.where(inside[..., None], vals, np.inf).min(axis=1)
    small = np.where(inside[..., None], vals, -np.inf).max(axis=1)
    return np.minimum(ends.min(axis=0), big), np.maximum(ends.max(axis=0), small)


class _EndBoxes:
    """Each episode's first and last states, and the boxes its first and last `MAX_TRIM` of states
    span widened by the most a matched end state may differ from them with the pair still under
    `bound` (`_Scaled.as_copy`'s lower bound: each of the two end distances is at most
    bound x sqrt(POINTS x D), and so is each coordinate's difference). A pair is resampled only
    when one episode's end states lie in the other's boxes; the others' distances are surely at or
    above `bound` both ways. On 1,000 simulated episodes this keeps 3,695 of 30,115 pairs."""

    def __init__(self, xs: list[np.ndarray], bound: float):
        d = xs[0].shape[1]
        r = bound * _MARGIN * np.sqrt(POINTS * d) * (1 + 1e-9) + 1e-12
        lo, hi, ends = [], [], []
        for x in xs:
            w = _trim_window(len(x))
            head, tail = x[:w], x[-w:]
            lo.append(np.concatenate([head.min(axis=0), tail.min(axis=0)]) - r)
            hi.append(np.concatenate([head.max(axis=0), tail.max(axis=0)]) + r)
            ends.append(np.concatenate([x[0], x[-1]]))
        self.lo, self.hi, self.ends = np.array(lo), np.array(hi), np.array(ends)

    def either_way(self, j: int, near: np.ndarray) -> np.ndarray:
        """The indices among `near` that could be the original of j, or its copy."""
        copy_of = np.all((self.ends[j] >= self.lo[near]) & (self.ends[j] <= self.hi[near]), axis=1)
        origin_of = np.all((self.ends[near] >= self.lo[j]) & (self.ends[near] <= self.hi[j]), axis=1)
        return near[copy_of | origin_of]


class _Scaled:
    """The episodes' states scaled by the dataset's spread, each worked out once: the scaled array,
    its whole signature (as a copy) and the signatures of the stretches tried as an original."""

    def __init__(self, states: dict[Any, np.ndarray], scale: np.ndarray):
        self.states, self.scale = states, scale
        self._x: dict[Any, np.ndarray] = {}
        self._sig: dict[Any, np.ndarray] = {}
        self._stretch: OrderedDict[tuple[Any, int, int], np.ndarray] = OrderedDict()  # the last STRETCHES

    def x(self, k: Any) -> np.ndarray:
        if k not in self._x:
            self._x[k] = np.nan_to_num(self.states[k]) / self.scale
        return self._x[k]

    def sig(self, k: Any) -> np.ndarray:
        if k not in self._sig:
            self._sig[k] = signature(self.x(k))
        return self._sig[k]

    def as_copy(self, ka: Any, kb: Any, bound: float = float("inf")) -> tuple[float, tuple[float, float]]:
        """`_as_copy(x(ka), x(kb))`, with the stretch signatures reused; a distance surely at or
        above `bound` (its lower bound from the two matched end states alone is above it) comes
        back as inf without the signatures being made."""
        orig, copy = self.x(ka), self.x(kb)
        n = len(orig)
        w = _trim_window(n)
        d0 = np.linalg.norm(orig[:w] - copy[0], axis=1)
        d1 = np.linalg.norm(orig[-w:] - copy[-1], axis=1)
        # among equally near states (an arm at rest), the stretch takes the widest: the first of the
        # head's, the last of the tail's (the first of a rest at the end cut the stretch short, and an
        # exact copy of an episode ending in a rest measured far from its original)
        i0, i1 = int(np.argmin(d0)), n - 1 - int(np.argmin(d1[::-1]))
        if i1 - i0 < 3:
            return float("inf"), (0.0, 1.0)
        # the first and last of the POINTS x D squared differences are these two (signature's end
        # points are the stretch's and the copy's end states): a lower bound of the mean square
        if (float(d0[i0]) ** 2 + float(d1[i1 - (n - w)]) ** 2) / (POINTS * orig.shape[1]) > (bound * _MARGIN) ** 2:
            return float("inf"), (i0 / (n - 1), i1 / (n - 1))
        key = (ka, i0, i1)
        if key in self._stretch:
            self._stretch.move_to_end(key)
        else:
            self._stretch[key] = signature(orig[i0 : i1 + 1])
            if len(self._stretch) > STRETCHES:
                self._stretch.popitem(last=False)
        return _rms(self._stretch[key], self.sig(kb)), (i0 / (n - 1), i1 / (n - 1))


def find(states: dict[int, np.ndarray], lengths: dict[int, int], cfg: CheckConfig) -> dict[int, Defect]:
    """episode_index -> its `duplicate_episode` defect (naming the earlier episode it copies)."""
    return {kb: duplicate_defect(c, lengths[kb]) for kb, c in copies(states, cfg).items()}


def duplicate_defect(c: Copy, length: int) -> Defect:
    """The `duplicate_episode` finding of an episode of `length` frames found to be the copy `c`."""
    return Defect("duplicate_episode", 0, length - 1,
                  f"a near-copy of episode {c.of} (state RMS distance {c.distance:.4f} of the dataset's spread)")


def _as_copy(orig: np.ndarray, copy: np.ndarray) -> tuple[float, tuple[float, float]]:
    """(RMS distance of `copy` to the stretch of `orig` it would have been cut from (scaled
    states), that stretch as fractions of `orig`'s duration)."""
    return _Scaled({0: orig, 1: copy}, np.float64(1.0)).as_copy(0, 1)


def episode_states(parts: Iterable[pa.Table], max_points: int = 512) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """(episode_id -> its state trajectory, episode_id -> its length in frames) rebuilt from event
    rows (`episode_id`, `start_frame`, `end_frame`, `state`: each event's per-frame states), one
    part table at a time (a part holds its episodes' every event, `storage.parts`); a trajectory
    longer than `max_points` is kept at `max_points` evenly spaced frames, so the driver holds a
    bounded signature per episode, never the recordings."""
    out: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    for t in parts:
        cols = t.select(["episode_id", "start_frame", "end_frame", "state"]).to_pydict()
        pieces: dict[str, list[tuple[int, np.ndarray]]] = {}
        for ep, start, end, st in zip(cols["episode_id"], cols["start_frame"], cols["end_frame"], cols["state"],
                                      strict=True):
            if st:
                pieces.setdefault(ep, []).append((int(start), np.asarray(st, dtype=np.float64)))
            lengths[ep] = max(lengths.get(ep, 0), int(end))
        for ep, ps in pieces.items():
            if any(p[1].ndim != 2 for p in ps) or len({p[1].shape[1] for p in ps}) != 1:
                continue
            x = np.concatenate([p[1] for p in sorted(ps, key=lambda p: p[0])])
            out[ep] = x[np.linspace(0, len(x) - 1, max_points).round().astype(int)] if len(x) > max_points else x
    return out, lengths


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))
