"""carve.storage.gather: the bounded-memory ordered gather used to cut shards."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from carve.storage.gather import gather_parts
from carve.storage.root import open_root


def _sources(sizes: list[int]) -> list[pa.Table]:
    out, start = [], 0
    for n in sizes:
        g = np.arange(start, start + n)
        out.append(pa.table({"g": pa.array(g, pa.int64()), "name": pa.array([f"row{i}" for i in g], pa.string()),
                             "vec": pa.array([[float(i), float(-i)] for i in g], pa.list_(pa.float32()))}))
        start += n
    return out


@pytest.mark.parametrize("flush_bytes", [1, 64 << 20])  # spill after every source table, or once
@pytest.mark.parametrize("max_open", [1, 3, 128])
def test_parts_equal_take_of_concatenation_with_repeats(tmp_path, max_open, flush_bytes):
    srcs = _sources([7, 0, 13, 5, 21])
    total = sum(t.num_rows for t in srcs)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, total, size=101)  # repeats and any order
    ref = pa.concat_tables(srcs).take(pa.array(rows))
    parts = list(gather_parts(iter(srcs), rows, 16, spill_dir=str(tmp_path), max_open=max_open,
                              flush_bytes=flush_bytes))
    assert [p.num_rows for p in parts] == [16] * 6 + [5]
    assert pa.concat_tables(parts).equals(ref)
    assert list(tmp_path.iterdir()) == []  # the spill directory is removed


def test_annotate_sees_global_rows(tmp_path):
    srcs = _sources([4, 4, 4])
    rows = np.array([11, 0, 5, 5, 3])
    extra = pa.array(np.arange(12) * 10, pa.int64())

    def annotate(sub: pa.Table, g: np.ndarray) -> pa.Table:
        return sub.append_column("x", extra.take(pa.array(g)))

    (part,) = list(gather_parts(srcs, rows, 10, annotate=annotate, spill_dir=str(tmp_path)))
    assert part.column("g").to_pylist() == rows.tolist()
    assert part.column("x").to_pylist() == (rows * 10).tolist()


def test_rows_beyond_the_source_and_bad_sizes_are_errors(tmp_path):
    with pytest.raises(ValueError, match="requested but the source has 8 rows"):
        list(gather_parts(_sources([4, 4]), np.array([1, 8]), 4, spill_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="must be >= 1"):
        list(gather_parts(_sources([4]), np.array([1]), 0))
    assert list(gather_parts(_sources([4]), np.array([], dtype=np.int64), 4)) == []


def test_snapshot_reads_ignore_episodes_committed_later(tmp_path):
    from carve.storage.catalog import Catalog
    from carve.storage.events import iter_events, read_events, snapshot, write_event_part
    from carve.storage.schema import events_to_table, make_event_id

    def commit(i: int) -> str:
        ep = f"d/{i:06d}"
        rows = [{"event_id": make_event_id(ep, 0, 10), "episode_id": ep, "dataset": "d", "episode_index": i,
                 "event_index": 0, "num_events": 1, "start_frame": 0, "end_frame": 10, "fps": 10.0, "task": "t",
                 "state": [[0.0]], "action": [[0.0]]}]
        write_event_part(open_root(tmp_path), f"b{i}", ep, events_to_table(rows))
        with Catalog(tmp_path) as cat:
            cat.record_episodes([{"episode_id": ep, "dataset": "d", "episode_index": i, "source_uri": "/s",
                                  "status": "ok", "num_events": 1, "batch": f"b{i}"}])
        return rows[0]["event_id"]

    first = [commit(0), commit(1)]
    snap = snapshot(open_root(tmp_path))
    later = commit(2)
    assert read_events(open_root(tmp_path), columns=["event_id"], snap=snap).column("event_id").to_pylist() == first
    streamed = [e for t in iter_events(open_root(tmp_path), columns=["event_id"], snap=snap)
                for e in t.column("event_id").to_pylist()]
    assert streamed == first
    assert later in read_events(open_root(tmp_path), columns=["event_id"]).column("event_id").to_pylist()
