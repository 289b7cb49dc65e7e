"""The cut: the latest clustering's eligible events -> balance -> shard files -> manifest (last).

    cut_shards(root, cfg) -> shards version

Events not yet assigned are assigned first (`carve.clustering.curate.assign_new`); then the
events that may enter a version are chosen (near-duplicates out unless `shard.include_duplicates`,
events under an active review flag out, events an error finding of the quality gate touches out
unless a `keep` flag overrules), the policy (`carve.shard.balance`) weighs or resamples them,
the rows are gathered from the event part files into shards (`carve.shard.write`), and the
manifest is written last (`carve.shard.manifest`) and recorded in the catalog's `versions`
table. By default (`shard.mode` "weights") every eligible event is written once with its
`sampling_weight`; "resample" repeats/drops rows instead.

`root` is the opened root handle (`carve.storage.root.Root`): its filesystem and catalog are
used as they are, never resolved again here.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carve.clustering.curate import assign_new
from carve.clustering.kmeans import ClusteringError
from carve.clustering.summary import refresh_summary, summary_is_current
from carve.clustering.versions import (
    claim_version,
    load_clustering,
    read_assignments,
    unique_assignments,
    version_dir,
)
from carve.core.config import CarveConfig
from carve.core.log import get_logger, log_event
from carve.shard.balance import BalancePolicy, balance, balance_stats, weigh
from carve.shard.manifest import build_manifest, write_manifest
from carve.shard.write import write_shard_parts
from carve.storage.events import iter_events, read_events, snapshot
from carve.storage.flags import excluded_events
from carve.storage.gather import gather_parts
from carve.storage.manifest import ShardManifest
from carve.storage.root import Root
from carve.storage.schema import EVENT_SCHEMA

log = get_logger("shard.cut")


def _emb_dims(t: pa.Table) -> dict[str, int]:
    """Sizes of the embedding columns, keyed visual/text/motion/emb/end_visual (absent if empty)."""
    names = {"emb_visual": "visual", "emb_text": "text", "emb_motion": "motion", "emb": "emb",
             "end_emb_visual": "end_visual"}
    out = {}
    for col, key in names.items():
        if col in t.column_names and t.num_rows:
            mx = pc.max(pc.list_value_length(t.column(col))).as_py()
            if mx:
                out[key] = int(mx)
    return out


def _sources(root: Root, datasets: set[str]) -> list[dict[str, Any]]:
    cat = root.catalog
    out = []
    for d in cat.datasets():
        if d["name"] not in datasets:
            continue
        fps = sorted(f"{r.episode_id}:{r.fingerprint}" for r in cat.episodes(dataset=d["name"], status="ok"))
        out.append({
            "dataset": d["name"], "source_uri": d["source_uri"], "format": d["format"],
            "fingerprint": hashlib.sha256("\n".join(fps).encode()).hexdigest()[:32],
        })
    known = {s["dataset"] for s in out}
    out += [{"dataset": d, "source_uri": None, "fingerprint": None} for d in sorted(datasets - known)]
    return out


def _policy(cfg: CarveConfig, policy: str | BalancePolicy | None) -> BalancePolicy:
    if isinstance(policy, BalancePolicy):
        return policy
    sc = cfg.shard
    return BalancePolicy(name=policy or sc.policy, temperature=sc.temperature, max_repeat=sc.max_repeat, seed=sc.seed)


def cut_shards(root: Root, cfg: CarveConfig, policy: str | BalancePolicy | None = None, total: int | None = None,
               progress: bool = False) -> int:
    """Balance the catalog over the latest clustering and write a new shards version; return it.

    Events not yet assigned are assigned first (`assign_new`). Near-duplicates are left out
    unless `shard.include_duplicates`. `total` (default `shard.total_events`, else the number
    of eligible events) is the size of a balanced epoch. `shard.mode` "weights" (default):
    every eligible event is written once and the balance is its `sampling_weight` (weights
    summing to `total`; `carve.shard.balance.weigh`); "resample": `total` rows drawn by the
    policy (events repeated or left out), each `sampling_weight` 1. `progress`: a bar while writing
    a large version (over 50,000 rows)."""
    sc = cfg.shard
    pol = _policy(cfg, policy)
    cl = load_clustering(root)
    # the catalog as of now: every read below sees these rows in this order (another job may be
    # committing episodes meanwhile); assign_new runs after it, so all of them have assignments
    snap = snapshot(root)
    assign_new(root, cfg)
    if not summary_is_current(root, cl.version):  # a version written before summaries, or an interrupted one
        refresh_summary(root, cl.version)
    ids = read_events(root, columns=["event_id", "dataset", "episode_id", "start_frame", "end_frame"], snap=snap)
    if ids.num_rows == 0:
        raise ClusteringError(f"{root}: the event catalog has no committed events to shard")
    asg = unique_assignments(read_assignments(root, cl.version))
    found = pc.index_in(ids.column("event_id"), value_set=asg.column("event_id").combine_chunks())
    n_missing = found.null_count
    if n_missing:
        first = ids.column("event_id").filter(found.is_null())[0].as_py()
        raise ClusteringError(f"{root}: {n_missing} events have no cluster assignment in clusters "
                              f"v{cl.version:03d} (e.g. {first}); run `carve cluster` and retry")
    a = asg.take(found)
    cids = a.column("cluster_id").to_numpy(zero_copy_only=False).astype(np.int64)
    dup = np.asarray(a.column("dup_of").is_null().to_numpy(zero_copy_only=False), dtype=bool)
    eligible = np.ones(len(cids), dtype=bool) if sc.include_duplicates else dup
    flagged = excluded_events(root.catalog, a.column("event_id"), a.column("episode_id"))  # review flags
    n_flagged = int((eligible & flagged).sum())
    eligible &= ~flagged
    gated, gate_kinds, n_overruled = _quality_gate(root, ids, a.column("event_id"), eligible)
    n_gated = int(gated.sum())
    eligible &= ~gated
    n_eligible = int(eligible.sum())
    want = int(total or sc.total_events or n_eligible)
    leaf_paths = {int(c): tuple(int(v) for v in p) for c, p in enumerate(cl.hierarchy.leaf_paths())}
    resample = sc.mode == "resample"
    if resample:
        rows, targets = balance(cids, eligible, want, pol, leaf_paths)
    else:  # every eligible event once; the balance is in `sampling_weight`
        rows, _, targets = weigh(cids, eligible, want, pol, leaf_paths)
    if len(rows) == 0:
        raise ClusteringError(f"{root}: no events eligible for shards")
    kk = int(cids.max()) + 1 if len(cids) else 0
    target_of = np.zeros(kk, dtype=np.float64)
    for c, t in targets.items():
        if 0 <= int(c) < kk:
            target_of[int(c)] = t
    elig_of = np.bincount(cids[eligible], minlength=kk)
    weight = pa.array((target_of[cids] / np.maximum(np.where(elig_of > 0, elig_of, 1), 1)[cids]).astype(np.float32))
    sampling = pa.array(np.ones(len(cids), np.float32)) if resample else weight
    dims: dict[str, int] = {}

    def annotate(sub: pa.Table, g: np.ndarray) -> pa.Table:
        take = pa.array(g)
        for name, col in (
            ("cluster_id", a.column("cluster_id")), ("cluster_path", a.column("cluster_path")),
            ("cluster_dist", a.column("cluster_dist")), ("dup_of", a.column("dup_of")), ("weight", weight),
            ("sampling_weight", sampling),
        ):
            sub = sub.set_column(sub.schema.get_field_index(name), EVENT_SCHEMA.field(name), col.take(take))
        for k, v in _emb_dims(sub).items():
            dims[k] = max(dims.get(k, 0), v)
        return sub

    # one pass over the event files, spilling the selected rows; memory stays ~one part file + one shard
    parts = gather_parts(iter_events(root, snap=snap), rows, sc.rows_per_shard, annotate=annotate)
    first = next(parts)  # runs the spill pass, so `dims` is complete before any shard is written
    version = claim_version(root, "shards")
    vdir = version_dir(root, "shards", version)
    shards = write_shard_parts(itertools.chain([first], parts), root, vdir,
                               row_group_size=min(sc.row_group_size, sc.rows_per_shard),
                               compression=sc.compression, emb_dims=dims,
                               progress=progress and len(rows) > 50_000,
                               total=-(-len(rows) // sc.rows_per_shard))
    before = dict(zip(*(v.tolist() for v in np.unique(cids, return_counts=True)), strict=True))
    written = dict(zip(*(v.tolist() for v in np.unique(cids[rows], return_counts=True)), strict=True))
    after = written if resample else {int(c): int(t) for c, t in targets.items()}  # weights: expected per epoch
    keys = sorted(before)
    w_rows = np.asarray(sampling.to_numpy(zero_copy_only=False), dtype=np.float64)[rows]
    manifest = build_manifest(
        version=version,
        clusters_version=cl.version,
        policy=pol.as_dict(),
        config={**sc.model_dump(), "policy": pol.name},
        emb_dims=dims,
        shards=[s.as_dict() for s in shards],
        clusters={"before": {str(c): int(before[c]) for c in keys}, "after": {str(c): int(after.get(c, 0)) for c in keys},
                  "rows": {str(c): int(written.get(c, 0)) for c in keys}},
        stats={"before": balance_stats(before, keys), "after": balance_stats(after, keys)},
        sources=_sources(root, set(ids.column("dataset").to_pylist())),
        unique_events=len(set(rows.tolist())),
        extra={"requested_rows": want, "eligible_events": n_eligible,
               "duplicates_excluded": int((~eligible).sum()) - n_flagged - n_gated,
               "flagged_excluded": n_flagged, "mode": sc.mode,
               "quality_excluded": {"events": n_gated, "by_kind": gate_kinds, "kept_by_flag": n_overruled},
               "sampling": {"column": "sampling_weight", "epoch_samples": round(float(w_rows.sum()), 3),
                            "min": float(w_rows.min()), "max": float(w_rows.max()), "mean": float(w_rows.mean()),
                            "zero_rows": int((w_rows <= 0).sum())}},
    )
    write_manifest(root.uri_of(vdir), manifest)
    root.catalog.record_version("shards", version, vdir, {
        "clusters_version": cl.version, "policy": pol.name, "mode": sc.mode, "total_rows": manifest.total_rows,
        "shards": len(shards), "entropy_after": _entropy_after(manifest),
    })
    log_event(log, "sharded", version=version, rows=manifest.total_rows, shards=len(shards), policy=pol.name)
    return version


def _entropy_after(m: ShardManifest) -> float | None:
    return m.stats.after.entropy if m.stats is not None and m.stats.after is not None else None


def _quality_gate(root: Root, ids: pa.Table, event_ids: Any, eligible: np.ndarray
                  ) -> tuple[np.ndarray, dict[str, int], int]:
    """(mask of the eligible events that an error finding of the quality gate touches and no `keep`
    flag overrules, events left out per kind of finding, events a `keep` flag kept in). An event
    [start, end) is touched by a finding's span [s, e] (end inclusive) when they share a frame."""
    from carve.storage.defects import error_spans, touches
    from carve.storage.flags import kept_events

    spans = error_spans(root.catalog)
    gated = np.zeros(ids.num_rows, dtype=bool)
    kinds: list[str | None] = [None] * ids.num_rows
    if not spans:
        return gated, {}, 0
    eps = ids.column("episode_id").to_pylist()
    starts, ends = ids.column("start_frame").to_pylist(), ids.column("end_frame").to_pylist()
    for i, ep in enumerate(eps):
        for s, e, kind in spans.get(ep, ()):
            if eligible[i] and touches(starts[i], ends[i], s, e):
                gated[i], kinds[i] = True, kind
                break
    kept = kept_events(root.catalog, event_ids) & gated
    gated &= ~kept
    by_kind: dict[str, int] = {}
    for i in np.flatnonzero(gated):
        by_kind[kinds[i]] = by_kind.get(kinds[i], 0) + 1  # type: ignore[index]
    return gated, dict(sorted(by_kind.items())), int(kept.sum())
