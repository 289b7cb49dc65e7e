"""Cluster balancing: how many rows each cluster gets, which events fill them, in what order.

Policies (`BalancePolicy.name`):

* `uniform`: the same number of rows per cluster;
* `temperature`: cluster share p_c ∝ n_c^τ (τ=0 is uniform, τ=1 keeps the catalog's mix);
* `hierarchical`: top-down over the hierarchical k-means tree (Vo et al. 2024): the total is
  split equally between the top-level clusters, each share equally between its children, and
  so on down to the leaves.

Under every policy a cluster of n events yields at most `n * max_repeat` rows; what a capped
cluster cannot take is handed to the others (water-filling), so the total is kept whenever
the capacity allows. Inside a cluster, rows are drawn as successive seeded permutations of its
events (so repeats are spread evenly). `interleave` then orders all rows by stratified
positions (cluster c's j-th row sits at (j + u_c) / m_c), so every prefix of the stream, and
hence every shard, has each cluster's share to within one row. Everything is deterministic
given the seed. `balance_stats` reports the max/min cluster-share ratio and the normalised
entropy of a cluster distribution.

Two ways to apply a policy (`shard.mode`):

* `weigh` (mode "weights", the default): every eligible event exactly once, each with the
  sampling weight `target_c / n_c` of its cluster (the rows per event the policy gives that
  cluster), so the weights of a cluster add up to its target and an epoch of
  `round(sum(weights))` weighted draws (`carve.shard.sampling.epoch_indices`) has, in
  expectation, the cluster counts that `balance` would have written. Nothing is dropped;
* `balance` (mode "resample"): the rows themselves are drawn (capped clusters repeated,
  large ones downsampled), as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from carve.clustering.kmeans import ClusteringError

PolicyName = Literal["uniform", "temperature", "hierarchical"]
POLICIES: tuple[str, ...] = ("uniform", "temperature", "hierarchical")


@dataclass(frozen=True)
class BalancePolicy:
    name: PolicyName = "uniform"
    temperature: float = 0.5
    max_repeat: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ClusteringError(f"unknown balancing policy {self.name!r}; choose one of {list(POLICIES)}")
        if self.max_repeat < 1:
            raise ClusteringError(f"max_repeat must be >= 1, got {self.max_repeat}")
        if not 0.0 <= self.temperature <= 1.0:
            raise ClusteringError(f"temperature must be in [0, 1], got {self.temperature}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def allocate(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Integer split of `total` proportional to `weights`, none above its cap (water-filling).

    If the caps add up to less than `total`, every entry gets its cap. Rounding uses largest
    remainders, ties to the lower index, so the result is deterministic."""
    w = np.asarray(weights, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.int64)
    total = int(min(total, int(caps.sum())))
    alloc = np.zeros(len(w), dtype=np.float64)
    free = (caps > 0) & (w > 0)
    remaining = float(total)
    while remaining > 1e-9 and free.any():
        idx = np.flatnonzero(free)
        share = remaining * w[idx] / w[idx].sum()
        room = caps[idx] - alloc[idx]
        over = share >= room
        if over.any():
            alloc[idx[over]] = caps[idx[over]]
            remaining -= float(room[over].sum())
            free[idx[over]] = False
            continue
        alloc[idx] += share
        remaining = 0.0
    base = np.minimum(np.floor(alloc + 1e-9).astype(np.int64), caps)
    short = total - int(base.sum())
    if short > 0:
        frac = alloc - base
        order = sorted(np.flatnonzero(base < caps), key=lambda i: (-frac[i], i))
        for i in order[:short]:
            base[i] += 1
    return base


def plan_targets(
    sizes: Mapping[int, int],
    total: int,
    policy: BalancePolicy,
    leaf_paths: Mapping[int, tuple[int, ...]] | None = None,
) -> dict[int, int]:
    """Rows per cluster under `policy` (cluster id -> rows), summing to `total` if capacity allows."""
    clusters = sorted(c for c, n in sizes.items() if n > 0)
    if not clusters:
        return {}
    n = np.array([sizes[c] for c in clusters], dtype=np.int64)
    caps = n * policy.max_repeat
    if policy.name == "uniform":
        alloc = allocate(total, np.ones(len(n)), caps)
    elif policy.name == "temperature":
        alloc = allocate(total, n.astype(np.float64) ** policy.temperature, caps)
    else:
        if leaf_paths is None:
            raise ClusteringError("the hierarchical policy needs the clustering's hierarchy (leaf paths)")
        paths = [tuple(leaf_paths[c]) for c in clusters]
        alloc = np.zeros(len(n), dtype=np.int64)
        _split_tree(total, list(range(len(n))), paths, 0, caps, alloc)
    return {c: int(a) for c, a in zip(clusters, alloc, strict=True)}


def _split_tree(total: int, members: list[int], paths: list[tuple[int, ...]], depth: int,
                caps: np.ndarray, out: np.ndarray) -> None:
    """Split `total` equally (capacity permitting) between the children at `depth`, recursively."""
    if depth >= len(paths[members[0]]) - 1:  # leaf level: each member is one leaf cluster
        out[members] = allocate(total, np.ones(len(members)), caps[members])
        return
    groups: dict[int, list[int]] = {}
    for m in members:
        groups.setdefault(paths[m][depth], []).append(m)
    keys = sorted(groups)
    group_caps = np.array([int(caps[groups[g]].sum()) for g in keys], dtype=np.int64)
    shares = allocate(total, np.ones(len(keys)), group_caps)
    for g, s in zip(keys, shares, strict=True):
        _split_tree(int(s), groups[g], paths, depth + 1, caps, out)


def draw_rows(members: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """`target` picks from `members` as successive random permutations (each member repeats
    floor or ceil of target/len times)."""
    members = np.asarray(members, dtype=np.int64)
    if target <= 0 or len(members) == 0:
        return np.zeros(0, dtype=np.int64)
    passes = math.ceil(target / len(members))
    picks = np.concatenate([rng.permutation(members) for _ in range(passes)])
    return picks[:target]


def interleave(picks: Mapping[int, np.ndarray], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Order all picks so every prefix is balanced; returns (row indices, cluster ids) in order."""
    rng = np.random.default_rng([seed, 7919])
    pos, rows, cids, tie = [], [], [], []
    clusters = sorted(c for c, p in picks.items() if len(p))
    ties = rng.permutation(len(clusters))
    for c, t in zip(clusters, ties, strict=True):
        p = np.asarray(picks[c], dtype=np.int64)
        m = len(p)
        pos.append((np.arange(m) + rng.random()) / m)
        rows.append(p)
        cids.append(np.full(m, c, dtype=np.int64))
        tie.append(np.full(m, t, dtype=np.int64))
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pos_a, rows_a, cids_a, tie_a = (np.concatenate(a) for a in (pos, rows, cids, tie))
    order = np.lexsort((tie_a, pos_a))
    return rows_a[order], cids_a[order]


def balance(
    cluster_ids: np.ndarray,
    eligible: np.ndarray,
    total: int,
    policy: BalancePolicy,
    leaf_paths: Mapping[int, tuple[int, ...]] | None = None,
) -> tuple[np.ndarray, dict[int, int]]:
    """Row indices (into `cluster_ids`) of the balanced stream, in order, and the targets.

    Only rows with `eligible` true are drawn (e.g. near-duplicates are not)."""
    cluster_ids = np.asarray(cluster_ids, dtype=np.int64)
    by_cluster = _members_by_cluster(cluster_ids, eligible)
    targets = plan_targets({c: len(m) for c, m in by_cluster.items()}, total, policy, leaf_paths)
    picks = {
        c: draw_rows(by_cluster[c], t, np.random.default_rng([policy.seed, c])) for c, t in targets.items()
    }
    rows, _ = interleave(picks, policy.seed)
    return rows, targets


def _members_by_cluster(cluster_ids: np.ndarray, eligible: np.ndarray) -> dict[int, np.ndarray]:
    idx = np.flatnonzero(np.asarray(eligible, dtype=bool))
    by_cluster: dict[int, np.ndarray] = {}
    if idx.size:
        order = idx[np.argsort(cluster_ids[idx], kind="stable")]
        bounds = np.flatnonzero(np.diff(cluster_ids[order])) + 1
        for members in np.split(order, bounds):
            by_cluster[int(cluster_ids[members[0]])] = members
    return by_cluster


def weigh(
    cluster_ids: np.ndarray,
    eligible: np.ndarray,
    total: int,
    policy: BalancePolicy,
    leaf_paths: Mapping[int, tuple[int, ...]] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Every eligible row once, in interleaved order, with its sampling weight; and the targets.

    Returns (row indices into `cluster_ids`, float64 weights aligned with them, targets). A row
    of cluster c weighs `targets[c] / n_c` (n_c: eligible rows of c), the policy's rows per
    event, so a cluster's weights sum to its target and all of them to `total` (capacity
    permitting); a cluster the policy gives nothing weighs 0."""
    cluster_ids = np.asarray(cluster_ids, dtype=np.int64)
    by_cluster = _members_by_cluster(cluster_ids, eligible)
    targets = plan_targets({c: len(m) for c, m in by_cluster.items()}, total, policy, leaf_paths)
    picks = {c: np.random.default_rng([policy.seed, c]).permutation(m) for c, m in by_cluster.items()}
    rows, cids = interleave(picks, policy.seed)
    if not len(cids):
        return rows, np.zeros(0, dtype=np.float64), targets
    keys = np.array(sorted(by_cluster), dtype=np.int64)
    per = np.array([targets.get(int(c), 0) / len(by_cluster[int(c)]) for c in keys], dtype=np.float64)
    return rows, per[np.searchsorted(keys, cids)], targets


def balance_stats(counts: Mapping[Any, int], clusters: list[Any] | None = None) -> dict[str, float | None]:
    """max/min share ratio and entropy / log(K) over `clusters` (default: those with counts > 0).

    A listed cluster with zero rows makes the ratio undefined (None)."""
    keys = list(clusters) if clusters is not None else [c for c, v in counts.items() if v > 0]
    v = np.array([float(counts.get(c, 0)) for c in keys], dtype=np.float64)
    if len(v) == 0 or v.sum() <= 0:
        return {"max_min_ratio": None, "entropy": None}
    p = v / v.sum()
    nz = p[p > 0]
    h = float(-(nz * np.log(nz)).sum())
    ent = h / math.log(len(v)) if len(v) > 1 else 1.0
    ratio = float(v.max() / v.min()) if v.min() > 0 else None
    return {"max_min_ratio": ratio, "entropy": round(ent, 6)}
