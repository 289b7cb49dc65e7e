"""The benchmarks' synthetic inputs keep up with the event schema.

`make bench` is not part of `make test`, so a schema change (issue 26 added the provenance
columns) can break a benchmark's input maker silently. This builds each maker's table and writes
it through the shard writer, as the benchmark does.
"""

from __future__ import annotations

from pathlib import Path

from bench.bench_shards import make_events, run_carve
from carve.storage.schema import EVENT_SCHEMA


def test_bench_shards_input_has_every_event_column_and_writes(tmp_path: Path) -> None:
    t = make_events(40)
    assert t.schema.names == EVENT_SCHEMA.names
    assert t.column("source_file").null_count == 0 and t.column("cameras").null_count == 0
    run_carve(t, tmp_path / "out", rows_per_shard=16, row_group_size=8)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.parquet"))
