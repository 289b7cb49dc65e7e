"""The pipeline's steps: one failure mechanism, per-step stats, declared dependencies, executors.

A step that raises quarantines exactly the episodes of its batch, with the step's name and the
reason; rows quarantined earlier pass through untouched; the seconds and failures of each step
add up on the driver from their float seconds columns; a missing optional dependency fails where
the step is built (and its spec, on the driver) with an install hint; every step works through
`process` and the one `__call__`; and the in-process executor produces the same event rows as
the Ray one.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from test_e2e_pipeline import _cfg, folder_dataset  # noqa: F401  (fixture)

from carve.core.config import CaptionConfig, EmbedConfig
from carve.core.errors import EpisodeError
from carve.pipeline.step import (
    MissingDependency,
    PipelineStep,
    RunStats,
    check_requirements,
    rows_to_stage_table,
    stage_schema,
    step_seconds,
)
from carve.pipeline.steps import Caption, DecodeSegment, Embed, WriteEvents


def _rows(episodes: dict[str, int], failed: tuple[str, ...] = ()) -> pa.Table:
    rows = []
    for ep, n in episodes.items():
        for k in range(n):
            rows.append({"event_id": f"{ep}:{k}", "episode_id": ep, "dataset": "d", "source_uri": "/s",
                         "episode_index": 0, "event_index": k, "num_events": n, "start_frame": k,
                         "end_frame": k + 1, "fps": 10.0, "_fingerprint": "fp", "_error": None})
    for ep in failed:
        rows.append({"event_id": f"failed:{ep}", "episode_id": ep, "dataset": "d", "source_uri": "/s",
                     "episode_index": 0, "event_index": -1, "num_events": 0, "start_frame": 0, "end_frame": 0,
                     "fps": 0.0, "_fingerprint": "fp", "_error": "decode_segment failed: bad video",
                     "_failed_at": "decode_segment"})
    return rows_to_stage_table(rows)


class Upper(PipelineStep):
    name = "upper"

    def process(self, events: pa.Table) -> pa.Table:
        return events.set_column(events.schema.get_field_index("caption"), "caption",
                                 pa.array([e.upper() for e in events.column("event_id").to_pylist()]))


class Broken(PipelineStep):
    name = "broken"

    def process(self, events: pa.Table) -> pa.Table:
        raise EpisodeError("episode 3 of /s", "the model refused this batch")


def test_a_step_fills_good_rows_and_passes_quarantined_ones_through():
    out = Upper()(_rows({"a": 2, "b": 1}, failed=("c",)))
    assert out.schema == stage_schema("upper")
    by_id = {r["event_id"]: r for r in out.to_pylist()}
    assert by_id["a:0"]["caption"] == "A:0" and by_id["b:0"]["caption"] == "B:0"
    assert by_id["failed:c"]["caption"] is None and by_id["failed:c"]["_error"].startswith("decode_segment failed")
    assert by_id["a:0"]["_seconds_upper"] is not None and by_id["failed:c"]["_seconds_upper"] is None


def test_a_failing_step_quarantines_its_episodes_with_its_name_and_reason():
    out = Broken()(_rows({"a": 2, "b": 1}, failed=("c",)))
    errors = {r["episode_id"]: r["_error"] for r in out.to_pylist()}
    assert errors["a"] == errors["b"] == "broken failed: episode 3 of /s: the model refused this batch"
    assert errors["c"].startswith("decode_segment failed")  # the earlier reason is kept
    stats = RunStats(["decode_segment", "broken"])
    seen = set()
    for r in out.to_pylist():
        if r["episode_id"] not in seen:
            seen.add(r["episode_id"])
            stats.add_episode(step_seconds(r), r["_failed_at"], 0)
    assert stats.steps["broken"].failures == 2 and stats.steps["decode_segment"].failures == 1


def test_run_stats_add_up_seconds_events_and_failures():
    stats = RunStats(["decode_segment", "caption"])
    stats.add_episode({"decode_segment": 1.5, "caption": 0.5}, None, 4)
    stats.add_episode({"decode_segment": 0.5, "caption": 0.25}, None, 2)
    stats.add_episode({"decode_segment": 0.1}, "caption", 0)
    d = stats.as_dict()
    assert d["decode_segment"] == {"episodes": 3, "events": 6, "seconds": 2.1, "failures": 0}
    assert d["caption"] == {"episodes": 3, "events": 6, "seconds": 0.75, "failures": 1}


def test_missing_optional_dependency_fails_early_with_an_install_hint():
    with pytest.raises(MissingDependency, match=r"step demo needs no_such_module_xyz.*pip install no-such-pkg"):
        check_requirements("demo", {"no_such_module_xyz": "no-such-pkg", "json": "json"})
    # the vLLM captioner's extra is never installed here (it would replace torch)
    with pytest.raises(MissingDependency, match="pip install"):
        Caption.check(CaptionConfig(backend="vllm"))
    Caption.check(CaptionConfig(backend="kinematic"))  # nothing optional
    assert Embed.requires(EmbedConfig(visual="open_clip", text="minilm")) == {
        "open_clip": "open_clip_torch", "sentence_transformers": "sentence-transformers"}


class NeedsGhost(PipelineStep):
    name = "ghost"
    dependencies = {"no_such_module_xyz": "no-such-pkg"}

    def process(self, rows: pa.Table) -> pa.Table:
        return rows


def test_a_step_with_a_missing_dependency_fails_where_it_is_built(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path):
    import importlib.util

    from carve.core.config import CarveConfig
    from carve.pipeline.executor import StepSpec
    from carve.pipeline.run import build_steps
    from carve.storage.root import open_root

    with pytest.raises(MissingDependency, match=r"step ghost needs no_such_module_xyz.*pip install no-such-pkg"):
        NeedsGhost()
    with pytest.raises(MissingDependency, match=r"step ghost needs .*pip install no-such-pkg"):
        StepSpec(NeedsGhost)  # the spec, built on the driver, checks before any worker builds the step
    # a config-dependent one: open_clip "uninstalled" fails the Embed step as it is built, before any model
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a))
    with pytest.raises(MissingDependency, match=r"step embed needs open_clip.*pip install open_clip_torch"):
        Embed(EmbedConfig(visual="open_clip"))
    cfg = CarveConfig().with_overrides({"root": str(tmp_path / "r"), "embed": {"visual": "open_clip"}})
    with pytest.raises(MissingDependency, match="pip install open_clip_torch"):
        build_steps(cfg, open_root(tmp_path / "r"), "b")
    with pytest.raises(MissingDependency, match="pip install vllm"):
        StepSpec(Caption, {"cfg": CaptionConfig(backend="vllm"), "segment": None})


def test_a_block_travels_through_ray_data_whole_as_one_row():
    """On Ray Data a block is one row (so `batch_size=1` is one whole block, GPUs or not)."""
    from carve.pipeline.executor import pack, unpack

    block = Upper()(_rows({"a": 2, "b": 1}, failed=("c",)))
    row = pack(block, {"node:decode_segment": "n1"})
    assert row.num_rows == 1
    [(back, nodes)] = list(unpack(pa.concat_tables([row])))
    assert back.equals(block) and back.schema.metadata == block.schema.metadata
    assert nodes == {"node:decode_segment": "n1"}


def test_every_step_works_through_process_and_the_one_call():
    for cls in (DecodeSegment, Caption, Embed, WriteEvents):
        assert cls.__call__ is PipelineStep.__call__, cls
        assert "process" in cls.__dict__ and not getattr(cls.process, "__isabstractmethod__", False), cls


def test_decode_segment_quarantines_each_failing_episode_alone_with_its_reason(tmp_path: Path):
    from carve.core.config import SegmentConfig, SourceConfig
    from carve.ingest.sources.base import EpisodeRef

    refs = [EpisodeRef(source_uri=str(tmp_path / "nowhere"), format="folder", dataset="d", episode_index=i,
                       locator={"stem": f"ep{i}"}, fingerprint=f"fp{i}") for i in range(2)]
    out = DecodeSegment(SegmentConfig(), SourceConfig())(pa.Table.from_pylist([r.to_row() for r in refs]))
    assert out.schema == stage_schema("decode_segment")
    rows = out.to_pylist()
    assert [r["event_id"] for r in rows] == [f"failed:{r.episode_id}" for r in refs]
    assert all(r["_error"] and r["_failed_at"] == "decode_segment" and r["_seconds_decode_segment"] >= 0
               for r in rows)


def test_write_events_fails_the_run_when_a_part_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A disk that refuses the part is the run's failure, not the episodes': nothing is quarantined."""
    import carve.storage.events as events
    import carve.storage.parts  # noqa: F401  (imports write_event_part by name: bound before the patch, not to it)
    from carve.storage.root import open_root

    def refuse(*a: object, **k: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(events, "write_event_part", refuse)
    with pytest.raises(OSError, match="No space left"):
        WriteEvents(open_root(tmp_path / "r"), "b1")(_rows({"a": 2}))


@pytest.mark.usefixtures("ray_local")
def test_local_and_ray_executors_write_the_same_event_rows_and_shards(folder_dataset: Path, tmp_path: Path):  # noqa: F811
    """The in-process executor (what `auto` picks for a small run) and Ray write identical event
    rows, embeddings included bit for bit, and identical shards."""
    import hashlib

    from carve.audit.data import load_audit
    from carve.pipeline.run import run_pipeline
    from carve.report.render import render_report
    from carve.storage.events import read_events
    from carve.storage.root import open_root

    tables, shards = [], []
    for name in ("ray", "local"):
        root = tmp_path / name
        s = run_pipeline(_cfg(root, folder_dataset).with_overrides({"ray": {"executor": name}}))
        assert s.executor == name
        assert s.episodes_ok == 4 and s.episodes_failed == 5
        assert s.stages["decode_segment"]["failures"] == 5 and s.stages["embed"]["episodes"] == 4
        assert s.stages["write"]["events"] == s.events
        with open_root(root) as r:
            events = read_events(r)
            tables.append(events.drop_columns(["batch"] if "batch" in events.column_names else []).sort_by("event_id"))
            assert r.catalog.runs()[0]["summary"]["stages"]["decode_segment"]["episodes"] == 9
            page, _ = render_report(load_audit(r))
            assert "id='last-run'" in page and "<td>decode_segment</td><td>9</td>" in page
        files = sorted((root / "shards").rglob("*.parquet"))
        assert files
        shards.append([(f.relative_to(root).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest()) for f in files])
    ray_t, local_t = tables
    assert ray_t.num_rows > 0
    assert ray_t.column_names == local_t.column_names
    for col in ray_t.column_names:
        assert ray_t.column(col).to_pylist() == local_t.column(col).to_pylist(), col
    assert shards[0] == shards[1]


def test_decode_segment_adds_strided_observations_when_asked(folder_dataset: Path):  # noqa: F811
    """`segment.obs_every_s` turns on the per-step observation columns, at a stride in frames
    resolved from each episode's fps; off by default."""
    from carve.core.config import SegmentConfig, SourceConfig
    from carve.ingest.sources import open_source
    from carve.pipeline.steps import DecodeSegment

    plain = DecodeSegment(SegmentConfig(), SourceConfig())
    for ref in open_source(str(folder_dataset)).list_episodes():  # the fixture also holds bad episodes
        batch = pa.Table.from_pylist([ref.to_row()])
        off = plain(batch).to_pylist()
        if all(r["_error"] is None for r in off):
            break
    assert off and all(r["_error"] is None for r in off)
    assert all(r["obs_visual"] is None and not r["obs_stride"] for r in off)
    on = DecodeSegment(SegmentConfig(obs_every_s=0.25), SourceConfig())(batch).to_pylist()
    stride = max(1, round(0.25 * on[0]["fps"]))
    assert [(r["start_frame"], r["end_frame"]) for r in on] == [(r["start_frame"], r["end_frame"]) for r in off]
    for r in on:
        assert r["obs_stride"] == stride
        assert len(r["obs_visual"]) == len(range(r["start_frame"], r["end_frame"], stride))
