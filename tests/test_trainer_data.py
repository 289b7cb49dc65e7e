"""Trainer data path: manifest validation, disjoint splitting, determinism, resume skipping, collation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from carve.sim.toydata import write_toy_shards
from carve.storage.schema import META_VERSION, event_schema
from carve.trainer.config import DataConfig
from carve.trainer.data import DataError, EventStream, in_holdout, make_loader, task_embedding
from carve.trainer.manifest import ManifestError, open_manifest


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_shards(tmp_path_factory.mktemp("toy") / "shards" / "v001", n_episodes=24)


def _ids(ds: EventStream, n: int | None = None) -> list[str]:
    out: list[str] = []
    for b in ds:
        out += b["event_id"]
        if n is not None and len(out) >= n:
            return out[:n]
    return out


def _rows(ds: EventStream) -> list[dict]:
    """The stream's samples one by one (row i of each batch)."""
    return [{k: v[i] for k, v in b.items()} for b in ds for i in range(len(b["event_id"]))]


def _all_ids(manifest_path: Path) -> list[str]:
    m = json.loads(manifest_path.read_text())
    ids: list[str] = []
    for s in m["shards"]:
        ids += pq.read_table(manifest_path.parent / s["path"], columns=["event_id"]).column(0).to_pylist()
    return ids


# ------------------------------------------------------------------ manifest validation
def test_open_manifest_finds_latest_version_under_root(toy: Path) -> None:
    root = toy.parent.parent.parent
    m = open_manifest(root)
    assert Path(m.path) == toy
    assert m.total_rows == len(_all_ids(toy))
    assert sum(u.rows for u in m.units) == m.total_rows


def _rewrite_manifest(src: Path, dst_dir: Path, **changes: object) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    raw = json.loads(src.read_text())
    raw.update(changes)
    for s in raw["shards"]:
        (dst_dir / s["path"]).write_bytes((src.parent / s["path"]).read_bytes())
    (dst_dir / "manifest.json").write_text(json.dumps(raw))
    return dst_dir / "manifest.json"


def test_newer_manifest_version_refused(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m", manifest_version=2)
    with pytest.raises(ManifestError, match="manifest_version 2 is newer"):
        open_manifest(p)


def test_newer_schema_version_in_manifest_refused(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m", schema_version=7)
    with pytest.raises(ManifestError, match="schema_version 7"):
        open_manifest(p)


def test_shard_with_newer_schema_metadata_refused(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m")
    shard = p.parent / "part-00000.parquet"
    t = pq.read_table(shard)
    meta = dict(t.schema.metadata)
    meta[META_VERSION] = b"9"
    pq.write_table(t.replace_schema_metadata(meta), shard)
    with pytest.raises(ManifestError, match=r"part-00000\.parquet.*schema v9"):
        open_manifest(p)


def test_shard_missing_columns_refused(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m")
    shard = p.parent / "part-00001.parquet"
    t = pq.read_table(shard).drop_columns(["emb_text", "action"])
    pq.write_table(t, shard)
    with pytest.raises(ManifestError, match=r"part-00001\.parquet: missing required columns.*action"):
        open_manifest(p)


def test_empty_manifest_refused(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m", shards=[], total_rows=0)
    with pytest.raises(ManifestError, match="no shards with rows"):
        open_manifest(p)


def test_missing_shard_and_no_manifest(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m")
    (p.parent / "part-00000.parquet").unlink()
    with pytest.raises(ManifestError, match=r"part-00000\.parquet is missing"):
        open_manifest(p)
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        open_manifest(tmp_path / "nothing")


def test_null_embedding_names_event(toy: Path, tmp_path: Path) -> None:
    p = _rewrite_manifest(toy, tmp_path / "m", shards=[json.loads(toy.read_text())["shards"][0]])
    shard = p.parent / "part-00000.parquet"
    t = pq.read_table(shard)
    col = t.column("emb_visual").to_pylist()
    col[3] = None
    bad_id = t.column("event_id")[3].as_py()
    t = t.set_column(
        t.schema.get_field_index("emb_visual"), "emb_visual", pa.array(col, pa.list_(pa.float32()))
    )
    pq.write_table(t.cast(event_schema(json.loads(p.read_text())["emb_dims"])), shard, row_group_size=16)
    ds = EventStream(open_manifest(p), DataConfig(holdout_frac=0.0), infinite=False)
    with pytest.raises(DataError, match=f"event {bad_id} has no emb_visual"):
        _ids(ds)


# ------------------------------------------------------------------ splitting + order
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_see_disjoint_rows_covering_the_epoch(toy: Path, world: int) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=8)
    per_rank = [
        _ids(EventStream(m, cfg, split="all", rank=r, world_size=world, infinite=False)) for r in range(world)
    ]
    flat = [i for ids in per_rank for i in ids]
    assert all(per_rank)
    assert len(flat) == len(set(flat))  # no row twice, across ranks
    assert sorted(flat) == sorted(_all_ids(toy))  # and nothing lost


def test_dataloader_workers_and_ranks_do_not_overlap(toy: Path) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=4, batch_size=4)
    per_rank = []
    for rank in range(2):
        ds = EventStream(m, cfg, split="all", rank=rank, world_size=2, infinite=False)
        per_rank.append([e for b in make_loader(ds, 2) for e in b["event_id"]])
    flat = per_rank[0] + per_rank[1]
    assert per_rank[0] and per_rank[1]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(_all_ids(toy))


def test_order_is_deterministic_per_seed_and_changes_per_epoch(toy: Path) -> None:
    m = open_manifest(toy)
    n = m.total_rows
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=16, seed=3)
    a = _ids(EventStream(m, cfg, split="all"), 2 * n)
    b = _ids(EventStream(m, cfg, split="all"), 2 * n)
    assert a == b
    assert sorted(a[:n]) == sorted(a[n:])  # each epoch is a permutation of all rows
    assert a[:n] != a[n:]
    c = _ids(EventStream(m, DataConfig(holdout_frac=0.0, shuffle_buffer=16, seed=4), split="all"), n)
    assert c != a[:n]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_batch_skips_exactly(toy: Path, workers: int) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=8, batch_size=5, num_workers=workers)

    def batches(start: int, n: int) -> list[list[str]]:
        ds = EventStream(m, cfg, split="all", start_batch=start)
        it = iter(make_loader(ds, workers))
        return [next(it)["event_id"] for _ in range(n)]

    full = batches(0, 40)  # crosses the epoch boundary (128 rows / 5)
    assert batches(29, 11) == full[29:]


def test_holdout_split_is_by_episode(toy: Path) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.3, shuffle=False)
    train = _ids(EventStream(m, cfg, split="train", infinite=False))
    held = _ids(EventStream(m, cfg, split="eval", infinite=False))
    assert held and train
    assert not (set(train) & set(held))
    assert sorted(train + held) == sorted(_all_ids(toy))
    t = pq.read_table(toy.parent / "part-00000.parquet", columns=["event_id", "episode_id"]).to_pylist()
    ep_of = {r["event_id"]: r["episode_id"] for r in t}
    for e in held:
        if e in ep_of:
            assert in_holdout(ep_of[e], 0.3)
    for e in train:
        if e in ep_of:
            assert not in_holdout(ep_of[e], 0.3)


# ------------------------------------------------------------------ views + collation
def test_event_view_pads_and_masks(toy: Path) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.0, shuffle=False, max_len=12)
    rows = pq.read_table(toy.parent / "part-00000.parquet", columns=["event_id", "action", "state"]).to_pylist()
    lens = {r["event_id"]: len(r["action"]) for r in rows}
    batches = list(EventStream(m, cfg, split="all", infinite=False))
    assert all(b["actions"].shape[1:] == (12, 6) and b["states"].shape[1:] == (12, 6) for b in batches)
    samples = [s for s in _rows(EventStream(m, cfg, split="all", infinite=False)) if s["event_id"] in lens]
    assert len(samples) == len(lens)
    assert {min(n, 12) for n in lens.values()} - {12}  # some events are shorter than max_len: padded
    for s in samples:
        eid = s["event_id"]
        n = min(lens[eid], 12)
        assert int(s["mask"].sum()) == n == int(s["length"])
        assert torch.all(s["actions"][n:] == 0) and torch.all(s["states"][n:] == 0)
        src = next(r for r in rows if r["event_id"] == eid)
        np.testing.assert_allclose(s["actions"][:n].numpy(), np.array(src["action"][:n], np.float32))
        st = np.array(src["state"], np.float32)
        np.testing.assert_allclose(s["states"][:n].numpy(), st[np.minimum(np.arange(n), len(st) - 1)])
        np.testing.assert_allclose(s["state"].numpy(), st[0])


def test_chunk_view_takes_h_steps_from_inside_the_event(toy: Path) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.0, shuffle=False, chunk_len=4)
    rows = {
        r["event_id"]: r
        for r in pq.read_table(
            toy.parent / "part-00000.parquet", columns=["event_id", "action", "state"]
        ).to_pylist()
    }
    offsets = set()
    for s in _rows(EventStream(m, cfg, view="chunk", split="all", infinite=False)):
        r = rows.get(s["event_id"])
        if r is None:
            continue
        o = int(s["offset"])
        offsets.add(o)
        assert s["actions"].shape == (4, len(r["action"][0]))
        np.testing.assert_allclose(
            s["actions"][: s["length"]], np.array(r["action"][o : o + 4], np.float32)[: s["length"]]
        )
        np.testing.assert_allclose(s["state"], np.array(r["state"][o], np.float32))
    assert len(offsets) > 1  # chunks are not all at the event start


def test_task_embedding_is_stable_and_discriminative() -> None:
    a = task_embedding("put the red cube in the tray", 64)
    assert np.allclose(a, task_embedding("Put the red cube in the tray!", 64))
    assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    b = task_embedding("push the green block to the left", 64)
    assert float(a @ b) < 0.9
    assert not task_embedding("", 64).any()


def test_more_streams_than_row_groups_is_a_clear_error(toy: Path) -> None:
    m = open_manifest(toy)
    ds = EventStream(m, DataConfig(holdout_frac=0.0), split="all", rank=0, world_size=len(m.units) + 1)
    with pytest.raises(
        DataError, match=rf"{len(m.units)} row groups cannot feed {len(m.units) + 1} loader streams"
    ):
        next(iter(ds))


# ------------------------------------------------------------------ cluster balance as weights
def _weighted_copy(toy: Path, dst: Path) -> tuple[Path, dict[str, float]]:
    """The toy version with a `sampling_weight` column: 0, 0.5, 1 or 3 by row position."""
    p = _rewrite_manifest(toy, dst)
    weights: dict[str, float] = {}
    for shard in sorted(dst.glob("*.parquet")):
        pf = pq.ParquetFile(shard)
        t = pf.read()
        w = [(0.0, 0.5, 1.0, 3.0)[i % 4] for i in range(t.num_rows)]
        weights.update(zip(t.column("event_id").to_pylist(), w, strict=True))
        col = pa.array(w, pa.float32())
        i = t.schema.get_field_index("sampling_weight")
        t = t.set_column(i, "sampling_weight", col) if i >= 0 else t.append_column("sampling_weight", col)
        pq.write_table(t, shard,
                       row_group_size=pf.metadata.row_group(0).num_rows)
    return p, weights


def test_train_epochs_draw_rows_by_their_sampling_weight(toy: Path, tmp_path: Path) -> None:
    from collections import Counter

    p, weights = _weighted_copy(toy, tmp_path / "w")
    m = open_manifest(p)
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=8, seed=5)
    counts = Counter(_ids(EventStream(m, cfg, split="train", infinite=False)))
    assert all(counts[e] == 0 for e, w in weights.items() if w == 0.0)  # left out by the balance
    assert all(counts[e] == 1 for e, w in weights.items() if w == 1.0)
    assert all(counts[e] == 3 for e, w in weights.items() if w == 3.0)  # repeated, as a resample cut would
    halves = [counts[e] for e, w in weights.items() if w == 0.5]
    assert set(halves) <= {0, 1} and 0 < sum(halves) < len(halves)
    again = Counter(_ids(EventStream(m, cfg, split="train", infinite=False)))
    assert again == counts  # deterministic by seed
    other = Counter(_ids(EventStream(m, DataConfig(holdout_frac=0.0, shuffle_buffer=8, seed=6), split="train",
                                     infinite=False)))
    assert other != counts  # the fractional draws follow the seed
    off = Counter(_ids(EventStream(m, DataConfig(holdout_frac=0.0, sampling_weights=False), split="train",
                                   infinite=False)))
    assert set(off.values()) == {1} and set(off) == set(weights)  # every row once without weights
    every = Counter(_ids(EventStream(m, cfg, split="all", infinite=False)))
    assert set(every.values()) == {1}  # only the train split is weighted


# ------------------------------------------------------------------ 2 workers x 2 ranks
def _epoch_over_ranks_and_workers(m, cfg: DataConfig, split: str) -> list[list[str]]:
    """One epoch of each of 2 ranks, each through a DataLoader with 2 workers."""
    out = []
    for rank in range(2):
        ds = EventStream(m, cfg, split=split, rank=rank, world_size=2, infinite=False)
        out.append([e for b in make_loader(ds, 2) for e in b["event_id"]])
    return out


def test_weighted_epoch_over_two_workers_and_two_ranks_draws_each_row_floor_or_ceil(toy: Path, tmp_path: Path) -> None:
    from collections import Counter

    p, weights = _weighted_copy(toy, tmp_path / "w")
    m = open_manifest(p)
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=20, batch_size=3, seed=2)
    per_rank = _epoch_over_ranks_and_workers(m, cfg, "train")
    assert per_rank[0] and per_rank[1]
    assert not (set(per_rank[0]) & set(per_rank[1]))  # no row on both ranks
    counts = Counter(per_rank[0] + per_rank[1])
    assert set(counts) <= set(weights)
    for e, w in weights.items():  # every row its weight's floor or ceil count, none lost
        assert int(np.floor(w)) <= counts[e] <= int(np.ceil(w)), (e, w, counts[e])
    halves = [counts[e] for e, w in weights.items() if w == 0.5]
    assert 0 < sum(halves) < len(halves)


def test_worker_batches_equal_in_process_batches(toy: Path) -> None:
    m = open_manifest(toy)
    cfg = DataConfig(holdout_frac=0.0, shuffle_buffer=24, batch_size=7, seed=9)
    for view in ("event", "chunk"):
        here = list(EventStream(m, cfg, view=view, split="all", infinite=False))
        there = list(make_loader(EventStream(m, cfg, view=view, split="all", infinite=False), 1))
        assert len(here) == len(there) and sum(len(b["event_id"]) for b in here) == m.total_rows
        for a, b in zip(here, there, strict=True):
            assert a.keys() == b.keys()
            assert a["event_id"] == b["event_id"]
            for k in a:
                if k != "event_id":
                    assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), (view, k)


def test_reads_only_the_views_columns(toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from carve.trainer import rowgroups

    asked: list[tuple[str, ...]] = []
    real = rowgroups.ShardFiles.read

    def spy(self, unit, columns, use_threads=True):  # type: ignore[no-untyped-def]
        asked.append(tuple(columns))
        return real(self, unit, columns, use_threads)

    monkeypatch.setattr(rowgroups.ShardFiles, "read", spy)
    m = open_manifest(toy)
    _ids(EventStream(m, DataConfig(holdout_frac=0.0), view="event", split="all", infinite=False))
    assert set(asked) == {("event_id", "state", "action", "emb_visual", "emb_text", "end_emb_visual")}
    asked.clear()
    _ids(EventStream(m, DataConfig(holdout_frac=0.3), view="chunk", split="train", infinite=False))
    # the plan reads the held-out split's episode ids and the weights (null in the toy shards), the batches the view
    assert set(asked) == {("episode_id", "sampling_weight"),
                          ("event_id", "task", "state", "action", "emb_visual", "emb_text", "end_emb_visual")}


def test_s3_shards_stream_like_the_local_copy(toy: Path, s3) -> None:  # type: ignore[no-untyped-def]
    uri = s3.upload(toy.parent, "shards/v001")
    cfg = DataConfig(holdout_frac=0.2, shuffle_buffer=40, batch_size=8, seed=1)
    local = list(EventStream(open_manifest(toy), cfg, view="chunk", infinite=False))
    remote_m = open_manifest(uri)
    assert all(s.startswith("s3://") for s in remote_m.shards)
    remote = list(make_loader(EventStream(remote_m, cfg, view="chunk", infinite=False, read_ahead=2), 1))
    assert [b["event_id"] for b in remote] == [b["event_id"] for b in local]
    for a, b in zip(local, remote, strict=True):
        for k in a:
            if k != "event_id":
                assert torch.equal(a[k], b[k]), k
