"""The map-style view of a shard version (`trainer.mapview.ShardDataset`): items, language, weighted sampler."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from carve.sim.toydata import write_toy_shards
from carve.trainer.mapview import ShardDataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_shards(tmp_path_factory.mktemp("toy") / "shards" / "v001", n_episodes=12)


def _rows(manifest: Path) -> list[dict]:
    out: list[dict] = []
    for s in json.loads(manifest.read_text())["shards"]:
        out += pq.read_table(manifest.parent / s["path"]).to_pylist()
    return out


def test_items_are_the_versions_rows_in_order_with_language(toy: Path) -> None:
    rows = _rows(toy)
    ds = ShardDataset(toy, max_len=10, cache_row_groups=2)
    assert len(ds) == len(rows)
    for i in (0, 5, 17, len(rows) - 1, -1):
        item, src = ds[i], rows[i]
        assert item["event_id"] == src["event_id"] and item["episode_id"] == src["episode_id"]
        assert (item["task"], item["caption"], item["next_caption"]) == (src["task"], src["caption"],
                                                                         src["next_caption"])
        n = min(len(src["action"]), 10)
        assert item["action"].shape == (10, 6) and int(item["length"]) == n
        assert item["action_is_pad"].tolist() == [False] * n + [True] * (10 - n)
        np.testing.assert_allclose(item["action"][:n].numpy(), np.array(src["action"][:n], np.float32))
        assert torch.all(item["action"][n:] == 0)
        np.testing.assert_allclose(item["observation.state"].numpy(), np.array(src["state"][0], np.float32))
        np.testing.assert_allclose(item["next.visual_embedding"].numpy(), np.array(src["end_emb_visual"], np.float32))
        assert int(item["episode_index"]) == src["episode_index"] and int(item["event_index"]) == src["event_index"]
        assert int(item["index"]) == i % len(rows)
    assert any(r["next_caption"] for r in rows) and any(not r["next_caption"] for r in rows)
    with pytest.raises(IndexError):
        ds[len(rows)]


def test_a_dataloader_batches_items_and_language(toy: Path) -> None:
    ds = ShardDataset(toy, max_len=8)
    batch = next(iter(DataLoader(ds, batch_size=6, shuffle=False, num_workers=1)))
    rows = _rows(toy)[:6]
    assert batch["action"].shape == (6, 8, 6) and batch["action_is_pad"].dtype == torch.bool
    assert batch["task"] == [r["task"] for r in rows] and batch["next_caption"] == [r["next_caption"] for r in rows]
    assert batch["index"].tolist() == list(range(6))


def test_the_weighted_sampler_draws_rows_by_sampling_weight(toy: Path, tmp_path: Path) -> None:
    d = tmp_path / "w"
    d.mkdir()
    raw = json.loads(toy.read_text())
    weights: dict[str, float] = {}
    for s in raw["shards"]:
        t = pq.read_table(toy.parent / s["path"])
        w = [(0.0, 2.0, 1.0)[i % 3] for i in range(t.num_rows)]
        weights.update(zip(t.column("event_id").to_pylist(), w, strict=True))
        t = t.set_column(t.schema.get_field_index("sampling_weight"), "sampling_weight", pa.array(w, pa.float32()))
        pq.write_table(t, d / s["path"], row_group_size=16)
    (d / "manifest.json").write_text(toy.read_text())
    ds = ShardDataset(d / "manifest.json")
    assert sorted(set(ds.sampling_weights().tolist())) == [0.0, 1.0, 2.0]
    sampler = ds.sampler(seed=4)
    sampler.set_epoch(1)
    got = Counter(e for b in DataLoader(ds, batch_size=16, sampler=sampler) for e in b["event_id"])
    assert got == Counter({e: int(w) for e, w in weights.items() if w > 0})  # integer weights: exact counts
