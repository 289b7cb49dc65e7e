"""Concurrent captioning against an OpenAI-compatible server on a real socket (carve.sim.service_fakes.ChatServer).

The server answers each request after a random latency with a caption read back from the
prompt ("echo <task> event <k>") and records the most requests it had in flight. Checked: the
caption step keeps exactly up to `caption.max_concurrency` requests in flight across the
episodes and events of a block, captions land on their own rows in the block's row order and
`next_caption` links the right events although replies complete out of order; with
`condition_on_previous` each request carries its predecessor's caption; the bound holds per
captioner also when blocks come from several threads at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_captioners_helpers import event_rows, script_episode

from carve.captioners.stage import CaptionStage
from carve.core.config import CaptionConfig
from carve.ingest.sources.base import EpisodeRef
from carve.pipeline.step import quarantine_row, rows_to_stage_table, stage_schema
from carve.pipeline.steps import Caption
from carve.sim.service_fakes import ChatServer


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(latency_s=(0.05, 0.25), seed=7) as s:
        yield s


def event_table(events_per_episode: list[int], seed: int = 0) -> pa.Table:
    """Event rows of episodes "ep<i>" (task "task-<i>"), in a shuffled row order."""
    rows: list[dict[str, Any]] = []
    for i, n in enumerate(events_per_episode):
        state, grip, _ = script_episode([("reach", 6, None, None)] * n, dwell=0)
        rows += event_rows(f"ep{i}", f"task-{i}", state, grip, [(k * 6, (k + 1) * 6) for k in range(n)],
                           episode_index=i)
    order = np.random.default_rng(seed).permutation(len(rows))
    return rows_to_stage_table([{**rows[j], "_fingerprint": "fp"} for j in order])


def cfg_for(server: ChatServer, **kw: Any) -> CaptionConfig:
    base: dict[str, Any] = dict(backend="openai", base_url=server.base_url, model="fake-vlm", timeout_s=10.0,
                                max_retries=0, max_concurrency=4)
    return CaptionConfig(**(base | kw))


def expected(row: dict[str, Any]) -> str:
    return f"echo {row['task']} event {row['event_index'] + 1}"


def check_captions(out: pa.Table, table: pa.Table) -> None:
    """Each row kept in place with its own caption, and its episode's next event's caption as next_caption."""
    assert out.column("event_id").to_pylist() == table.column("event_id").to_pylist()
    rows = out.to_pylist()
    by_key = {(r["episode_id"], r["event_index"]): r for r in rows}
    for r in rows:
        assert r["caption_status"] == "ok"
        assert r["caption"] == expected(r)
        nxt = by_key.get((r["episode_id"], r["event_index"] + 1))
        assert r["next_caption"] == (expected(nxt) if nxt else "")


def completed_out_of_order(server: ChatServer) -> bool:
    """Whether some reply (server.calls is in reply order) finished before an earlier event of its episode."""
    last: dict[str, int] = {}
    for c in server.calls:
        if c["event"] < last.get(c["task"], 0):
            return True
        last[c["task"]] = max(last.get(c["task"], 0), c["event"])
    return False


def test_fan_out_keeps_max_concurrency_in_flight_within_episodes(server: ChatServer) -> None:
    table = event_table([7, 6])  # 13 events over 2 episodes: only fan-out within episodes can reach 4
    ref = EpisodeRef(source_uri="/data/test", format="lerobot", dataset="test", episode_index=9, fingerprint="fp")
    quarantined = rows_to_stage_table([quarantine_row(ref, "decode failed", "decode_segment")])
    step = Caption(cfg_for(server, condition_on_previous=False))
    out = step(pa.concat_tables([table, quarantined]))
    step.stage.close()
    assert server.max_inflight == 4  # reached, never more
    assert len(server.calls) == 13
    assert completed_out_of_order(server)  # the case this test is about did happen
    good = out.filter(pc.is_null(out.column("_error")))
    check_captions(good, table)
    assert out.num_rows == 14 and out.column("_error").to_pylist()[-1] == "decode failed"
    assert out.schema.equals(stage_schema("caption"))
    # no request waited for a previous caption: later events say theirs is not available
    assert {c["previous"] for c in server.calls if c["event"] > 1} == {"(not available)"}


def test_chained_episodes_run_concurrently_and_carry_the_previous_caption(server: ChatServer) -> None:
    table = event_table([3, 2, 2, 3, 2, 2])  # 14 events over 6 episodes
    stage = CaptionStage(cfg_for(server))  # condition_on_previous is the default
    out = stage(table)
    stage.close()
    assert server.max_inflight == 4
    assert len(server.calls) == 14
    check_captions(out, table)
    for c in server.calls:  # each request carried its predecessor's caption
        prev = f"echo {c['task']} event {c['event'] - 1}" if c["event"] > 1 else "(none, this is the first event)"
        assert c["previous"] == prev


def test_failed_events_keep_their_rows_and_links_when_fanned_out() -> None:
    def fail(call: dict[str, Any]) -> bool:
        return call["task"] == "task-0" and call["event"] == 3

    with ChatServer(latency_s=(0.02, 0.1), seed=1, fail=fail) as server:
        table = event_table([5, 4])
        stage = CaptionStage(cfg_for(server, condition_on_previous=False))
        out = stage(table)
        stage.close()
    rows = {(r["episode_id"], r["event_index"]): r for r in out.to_pylist()}
    bad = rows[("ep0", 2)]
    assert bad["caption"] == "" and bad["caption_status"].startswith("failed: ")
    assert "HTTP 500" in bad["caption_status"] and "event 2 of episode ep0" in bad["caption_status"]
    assert rows[("ep0", 1)]["next_caption"] == ""  # linked to the failed event's empty caption
    assert bad["next_caption"] == "echo task-0 event 4"
    others = [r for k, r in rows.items() if k != ("ep0", 2)]
    assert all(r["caption_status"] == "ok" and r["caption"] == expected(r) for r in others)
    assert out.column("event_id").to_pylist() == table.column("event_id").to_pylist()


def test_bound_is_per_captioner_across_threads_and_loops(server: ChatServer) -> None:
    """Blocks from two threads (one running its own event loop) share the captioner's max_concurrency."""
    stage = CaptionStage(cfg_for(server, max_concurrency=3, condition_on_previous=False))
    tables = [event_table([5, 4], seed=1), event_table([4, 5], seed=2)]
    outs: dict[int, pa.Table] = {}
    errors: list[BaseException] = []

    def plain(i: int) -> None:
        try:
            outs[i] = stage(tables[i])
        except BaseException as e:  # reported below
            errors.append(e)

    def in_a_loop(i: int) -> None:
        async def caller() -> None:
            outs[i] = stage(tables[i])

        try:
            asyncio.run(caller())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=plain, args=(0,)), threading.Thread(target=in_a_loop, args=(1,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert server.max_inflight == 3
    assert len(server.calls) == 18
    for i in (0, 1):
        check_captions(outs[i], tables[i])
    # the loop thread outlives a block and stops on close
    thread = stage.captioner._runner._thread
    assert thread is not None and thread.is_alive()
    stage.close()
    assert not thread.is_alive()


def test_a_captioner_nobody_closes_stops_its_loop_when_collected(server: ChatServer) -> None:
    import gc

    stage = CaptionStage(cfg_for(server))
    out = stage(event_table([2]))
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    thread = stage.captioner._runner._thread
    assert thread is not None and thread.is_alive()
    del stage, out
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
