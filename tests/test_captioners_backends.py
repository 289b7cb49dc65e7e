"""Backend selection, the vLLM install error, prompt files and the stage's column contract."""

from __future__ import annotations

import importlib

import pyarrow as pa
import pytest
from test_captioners_helpers import episode_table, pick_place_script

from carve.captioners.base import Captioner, CaptionResult, EventView, failed
from carve.captioners.kinematic import KinematicCaptioner
from carve.captioners.prompts import available_versions, load_prompt
from carve.captioners.registry import make_captioner
from carve.captioners.stage import CaptionStage
from carve.core.config import CaptionConfig
from carve.core.errors import CarveError


def test_vllm_backend_missing_gives_install_hint() -> None:
    try:
        importlib.import_module("vllm")
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(CarveError, match=r"pip install carve\[vllm\]"):
        make_captioner(CaptionConfig(backend="vllm", model="some/vlm"))
    with pytest.raises(CarveError, match=r"pip install carve\[vllm\]"):
        CaptionStage(CaptionConfig(backend="vllm", model="some/vlm"))


def test_make_captioner_kinematic_and_openai() -> None:
    assert isinstance(make_captioner(CaptionConfig()), KinematicCaptioner)
    c = make_captioner(CaptionConfig(backend="openai", model="m"))
    assert c.name == "m@prompt-v3"  # v3 is the default prompt
    assert make_captioner(CaptionConfig(backend="openai", model="m", prompt_version="v1")).name == "m@prompt-v1"


def test_prompt_v1_loads_and_fills() -> None:
    assert "v1" in available_versions()
    p = load_prompt("v1")
    first = p.user_text(task="stack it", previous_caption="", event_index=0, num_events=3, duration_s=1.0,
                        num_images=3)
    later = p.user_text(task="stack it", previous_caption="grasp the cube", event_index=1, num_events=3,
                        duration_s=1.0, num_images=3)
    assert "stack it" in first and "first event" in first
    assert "grasp the cube" in later and "event 2 of 3" in later
    assert load_prompt("v1").response_format is None and load_prompt("v1").max_tokens == 0
    with pytest.raises(CarveError, match="v99"):
        load_prompt("v99")
    with pytest.raises(CarveError, match="not a valid name"):
        load_prompt("../etc")


def test_prompt_v2_asks_for_structured_open_vocabulary_output() -> None:
    p = load_prompt("v2")
    fmt = p.response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    props = fmt["json_schema"]["schema"]["properties"]
    assert set(props) == {"verb", "object", "target", "arm", "caption"}
    assert all(v["type"] == "string" for v in props.values()) and "enum" not in props["verb"]
    assert all(v in p.system for v in ("open", "fold", "wipe", "pour", "insert", "press"))
    text = p.user_text(task="fold the towel", previous_caption="", event_index=0, num_events=2, duration_s=1.5,
                       num_images=6, camera_names=["front", "wrist"], robot_arms=["left", "right"])
    assert "fold the towel" in text and "two arms: left, right" in text and "(front, wrist)" in text
    assert "one arm" in p.user_text(task="t", previous_caption="", event_index=0, num_events=1, duration_s=1.0,
                                    num_images=3)
    assert p.max_tokens >= 128


class _FlakyCaptioner(Captioner):
    """Fails every second event, to check how the stage fills the columns."""

    name = "flaky"

    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        return [CaptionResult(f"step {v.event_index}") if v.event_index % 2 == 0 else CaptionResult.failure("x")
                for v in events]


def test_stage_fills_columns_and_keeps_failed_rows() -> None:
    table, _ = episode_table(pick_place_script(0), "put the red cube in the tray")
    table = table.drop_columns(["caption", "next_caption", "caption_model", "caption_status"])
    out = CaptionStage(CaptionConfig(), captioner=_FlakyCaptioner())(table)
    assert out.num_rows == table.num_rows
    caps = out.column("caption").to_pylist()
    assert caps[0] == "step 0" and caps[1] == ""
    assert out.column("caption_status").to_pylist()[:2] == ["ok", failed("x")]
    assert out.column("next_caption").to_pylist()[:2] == ["", "step 2"]
    assert set(out.column("caption_model").to_pylist()) == {"flaky"}


def test_stage_on_empty_table() -> None:
    table, _ = episode_table(pick_place_script(0), "t")
    out = CaptionStage(CaptionConfig())(table.slice(0, 0))
    assert out.num_rows == 0 and "caption_status" in out.column_names


def test_caption_step_in_pipeline_stage_passes_through() -> None:
    from carve.pipeline.step import STAGE_SCHEMA
    from carve.pipeline.steps import Caption
    from carve.storage.schema import conform

    table, _ = episode_table(pick_place_script(0), "put the red cube in the tray")
    ev = conform(table)
    batch = pa.Table.from_arrays(
        [*ev.columns, pa.array(["fp"] * ev.num_rows), pa.nulls(ev.num_rows, pa.string()),
         pa.nulls(ev.num_rows, pa.string()), pa.nulls(ev.num_rows, pa.string())], schema=STAGE_SCHEMA
    )
    out = Caption(CaptionConfig())(batch)
    assert out.column("_error").null_count == out.num_rows
    assert all(out.column("caption").to_pylist())
