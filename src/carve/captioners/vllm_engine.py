"""In-process vLLM captioning through Ray Data LLM (`ray.data.llm`), for GPU machines.

`require_vllm()` checks that `vllm` and `ray.data.llm` import, else raises a CarveError that
says to `pip install carve[vllm]`. `build_vllm_caption_processor(cfg)` builds a Ray Data LLM
processor (`vLLMEngineProcessorConfig` + `build_processor`, called `build_llm_processor` in
older Ray) whose rows carry the same chat messages as the OpenAI backend (prompt file, task,
previous caption, keyframes as data URIs) and come back with a cleaned caption.

A prompt with a `response_schema` (v2) is decoded under vLLM's structured outputs
(`sampling_params["structured_outputs"] = {"json": schema}`, which Ray Data LLM turns into
`StructuredOutputsParams`), and every reply goes through `captioners.replies.parse_reply`, as
for the HTTP backend. Up to `MAX_IMAGES` images go into one prompt (keyframes of every camera).

`VLLMCaptioner` is the `Captioner` the caption stage uses for `caption.backend=vllm`: the
previous caption conditions the next one, so it runs one round per event position: round
k captions event k of every episode in the batch as one Ray dataset through the processor
(built once, so its engine actors are reused across rounds). Everything vLLM-related is
imported lazily; nothing here runs on a machine without vLLM except the clear error.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

from carve.captioners.base import Captioner, CaptionResult, EventView
from carve.captioners.openai_http import build_messages, max_tokens, robot_arms
from carve.captioners.prompts import Prompt, load_prompt
from carve.captioners.replies import parse_reply
from carve.core.config import CaptionConfig, SegmentConfig
from carve.core.errors import CarveError

INSTALL_HINT = "pip install carve[vllm]"
MAX_IMAGES = 12  # images per prompt: 3 keyframes x up to 4 cameras


def require_vllm() -> tuple[Any, Any]:
    """(vllm module, ray.data.llm module); CarveError with the install hint when missing."""
    try:
        vllm = importlib.import_module("vllm")
        llm = importlib.import_module("ray.data.llm")
    except ImportError as e:
        raise CarveError(
            f"caption.backend=vllm needs vLLM and Ray Data LLM, which are not installed ({e}); "
            f"install them with `{INSTALL_HINT}` on a GPU machine, or use caption.backend=openai "
            "against a running `vllm serve`"
        ) from e
    return vllm, llm


def build_vllm_caption_processor(cfg: CaptionConfig, concurrency: int = 1, batch_size: int = 16,
                                 prompt: Prompt | None = None) -> Any:
    """A Ray Data LLM processor: rows {_key, messages_json, arms_json} in, rows {_key, caption, caption_status} out.

    `messages_json` is the JSON of the OpenAI-format chat messages `build_messages` makes (a
    string column: the system and user messages' `content` differ in type, which Arrow cannot
    hold in one column); `_key` lets `VLLMCaptioner` put the results back in place.
    """
    _, llm = require_vllm()
    if not cfg.model:
        raise CarveError("caption.backend=vllm needs caption.model (a model path or hub id available locally)")
    build = getattr(llm, "build_processor", None) or llm.build_llm_processor
    base = dict(
        model_source=cfg.model,
        engine_kwargs={"max_model_len": 4096, "limit_mm_per_prompt": {"image": MAX_IMAGES}},
        concurrency=concurrency,
        batch_size=batch_size,
        should_continue_on_error=True,
    )
    try:
        proc_cfg = llm.vLLMEngineProcessorConfig(**base, prepare_multimodal_stage={"enabled": True})
    except Exception:  # older ray.data.llm: the multimodal switch is `has_image`
        proc_cfg = llm.vLLMEngineProcessorConfig(**base, has_image=True)

    prompt = prompt or load_prompt(cfg.prompt_version)
    sampling: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": max_tokens(cfg, prompt)}
    if prompt.response_schema:
        sampling["structured_outputs"] = {"json": prompt.response_schema["schema"]}

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        return dict(
            _key=row["_key"],
            arms_json=row.get("arms_json") or "[]",
            messages=json.loads(row["messages_json"]),
            sampling_params=json.loads(json.dumps(sampling)),
        )

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        err = row.get("__inference_error__")
        if err:
            return {"_key": row["_key"], "caption": "", "caption_status": f"failed: vLLM: {err}"[:300]}
        res = parse_reply(row.get("generated_text"), json.loads(row.get("arms_json") or "[]"))
        return {"_key": row["_key"], "caption": res.caption, "caption_status": res.status}

    return build(proc_cfg, preprocess=preprocess, postprocess=postprocess)


class VLLMCaptioner(Captioner):
    """`caption.backend=vllm`: rounds of Ray Data LLM inference, one per event position."""

    def __init__(self, cfg: CaptionConfig, segment: SegmentConfig | None = None):
        require_vllm()
        self.cfg = cfg
        self.segment = segment or SegmentConfig()
        self.prompt = load_prompt(cfg.prompt_version)
        self.processor = build_vllm_caption_processor(cfg, prompt=self.prompt)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"vllm:{self.cfg.model}@prompt-{self.prompt.version}"

    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        return self.caption_episodes([events])[0]

    def caption_episodes(self, episodes: Sequence[list[EventView]]) -> list[list[CaptionResult]]:
        import ray.data

        results: list[list[CaptionResult]] = [[] for _ in episodes]
        rounds = max((len(e) for e in episodes), default=0)
        arms = [robot_arms(evs[0], self.segment) if evs else [] for evs in episodes]
        for k in range(rounds):
            rows = []
            for i, evs in enumerate(episodes):
                if k < len(evs):
                    prev = results[i][k - 1].caption if k and results[i][k - 1].ok else ""
                    msgs = build_messages(self.prompt, evs[k], prev, arms[i])
                    rows.append({"_key": i, "messages_json": json.dumps(msgs), "arms_json": json.dumps(arms[i])})
            out = {r["_key"]: r for r in self.processor(ray.data.from_items(rows)).take_all()}
            for i, evs in enumerate(episodes):
                if k < len(evs):
                    r = out.get(i)
                    if r is None:
                        results[i].append(CaptionResult.failure(f"{evs[k].label}: no output from vLLM"))
                    else:
                        results[i].append(CaptionResult(caption=r["caption"], status=r["caption_status"]))
        return results
