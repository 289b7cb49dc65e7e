"""Captions from any OpenAI-compatible chat-completions server (vLLM serve, SGLang, TGI, OpenAI).

`OpenAICaptioner(cfg)` uses the async `openai` client against `cfg.base_url` with the API key
from the environment variable `cfg.api_key_env` (a placeholder when unset, as local servers
accept any key). For every event it sends the prompt of `captioners/prompts/<version>.yaml`
with the episode's task, the previous event's caption and the event's keyframes as base64
JPEG `image_url` data URIs. The events of one episode are captioned in order (each request
carries the previous caption); episodes run concurrently, with at most `cfg.max_concurrency`
requests in flight (a request waiting to be retried keeps its slot). Retries are the `openai`
client's own (`AsyncOpenAI(max_retries=cfg.max_retries, timeout=cfg.timeout_s)`): timeouts,
connection errors, 408/409/429 and 5xx replies are retried with jittered exponential backoff,
and a server's `Retry-After` / `retry-after-ms` header sets the wait. Each event also has an
overall deadline (`event_deadline_s`) so a server that trickles bytes cannot hang the stage.
An event that still fails is kept with `caption_status="failed: <reason>"` and an empty
caption. A reply with no usable text is marked "empty"; chatty replies are cleaned to one
phrase. When `cfg.model` is empty the server's first listed model is used.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from carve.captioners.base import STATUS_EMPTY, Captioner, CaptionResult, EventView
from carve.captioners.prompts import Prompt, load_prompt
from carve.core.config import CaptionConfig
from carve.core.errors import CarveError

MAX_CAPTION_WORDS = 24
# the longest server-directed wait (Retry-After) the openai client honours between attempts
MAX_RETRY_WAIT_S = 120.0

_PREFIX_RE = re.compile(r"^\s*(?:caption|answer|description|action|event(?:\s*\d+)?)\s*[:\-–]\s*", re.I)


def clean_caption(text: str | None) -> str:
    """One short caption phrase from a model reply ("" when the reply has no words)."""
    if not text:
        return ""
    # drop reasoning blocks some models emit, markdown and list markers
    t = re.sub(r"<think>.*?</think>", " ", str(text), flags=re.S | re.I)
    lines = [ln.strip() for ln in t.splitlines() if re.search(r"[A-Za-z]", ln)]
    if not lines:
        return ""
    t = lines[0]
    t = re.sub(r"^[\s>*#`\-•\d.)]+", "", t)
    t = _PREFIX_RE.sub("", t)
    t = t.replace("**", "").replace("`", "")
    t = t.strip().strip("\"'“”‘’ ").strip()
    t = re.sub(r"\s+", " ", t)
    t = re.split(r"(?<=[a-z0-9])[.!?;](?:\s|$)", t, maxsplit=1)[0]  # first sentence
    t = t.rstrip(" .!?;:,")
    words = t.split()
    if len(words) > MAX_CAPTION_WORDS:
        t = " ".join(words[:MAX_CAPTION_WORDS])
    if not re.search(r"[A-Za-z]{2,}", t):
        return ""
    return t[:1].lower() + t[1:] if t[:2].isalpha() and not t[:2].isupper() else t


def image_data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def build_messages(prompt: Prompt, view: EventView, previous_caption: str) -> list[dict[str, Any]]:
    """The chat messages for one event: system prompt, then text + keyframe images."""
    content: list[dict[str, Any]] = [
        {
            "type": "text",
            "text": prompt.user_text(
                task=view.task, previous_caption=previous_caption, event_index=view.event_index,
                num_events=view.num_events, duration_s=view.duration_s, num_images=len(view.keyframes),
            ),
        }
    ]
    for jpeg in view.keyframes:
        content.append({"type": "image_url", "image_url": {"url": image_data_uri(jpeg)}})
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]


def event_deadline_s(cfg: CaptionConfig) -> float:
    """The most one event may take over all its attempts: 1.5 x the timeout per attempt plus the waits."""
    return (cfg.max_retries + 1) * cfg.timeout_s * 1.5 + cfg.max_retries * MAX_RETRY_WAIT_S


def _retryable(exc: BaseException) -> bool:
    """Whether the openai client retries this error (so a failure means every attempt was used)."""
    import openai

    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _describe(exc: BaseException) -> str:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from the caption server: {exc.message}"
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect to the caption server: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _run_coro(coro: Any) -> Any:
    """Run a coroutine to completion, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class OpenAICaptioner(Captioner):
    """Captions via an OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(self, cfg: CaptionConfig):
        try:
            import openai  # noqa: F401
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            raise CarveError("caption.backend=openai needs the `openai` package: pip install openai") from e
        self.cfg = cfg
        self.prompt = load_prompt(cfg.prompt_version)
        self.model = cfg.model
        self.api_key = os.environ.get(cfg.api_key_env) or "EMPTY"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.model or 'openai'}@prompt-{self.prompt.version}"

    # ------------------------------------------------------------------ public API
    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        return self.caption_episodes([events])[0]

    def caption_episodes(self, episodes: Sequence[list[EventView]]) -> list[list[CaptionResult]]:
        if not episodes:
            return []
        return _run_coro(self._caption_all([list(e) for e in episodes]))

    # ------------------------------------------------------------------ async core
    def _client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(
            base_url=self.cfg.base_url, api_key=self.api_key, timeout=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
        )

    async def _resolve_model(self, client: Any) -> str:
        if self.model:
            return self.model
        try:
            page = await client.models.list()
        except Exception as e:
            raise CarveError(
                f"caption.model is empty and the models of {self.cfg.base_url} could not be listed: {_describe(e)}"
            ) from e
        ids = [m.id for m in page.data]
        if not ids:
            raise CarveError(f"caption.model is empty and {self.cfg.base_url} lists no models")
        self.model = ids[0]
        return self.model

    async def _caption_all(self, episodes: list[list[EventView]]) -> list[list[CaptionResult]]:
        client = self._client()
        try:
            await self._resolve_model(client)
            sem = asyncio.Semaphore(self.cfg.max_concurrency)
            return list(await asyncio.gather(*(self._episode(client, sem, evs) for evs in episodes)))
        finally:
            await client.close()

    async def _episode(self, client: Any, sem: asyncio.Semaphore, events: list[EventView]) -> list[CaptionResult]:
        out: list[CaptionResult] = []
        previous = ""
        for view in events:
            res = await self._event(client, sem, view, previous)
            out.append(res)
            previous = res.caption if res.ok else ""
        return out

    async def _event(self, client: Any, sem: asyncio.Semaphore, view: EventView, previous: str) -> CaptionResult:
        messages = build_messages(self.prompt, view, previous)
        attempts = self.cfg.max_retries + 1
        deadline = event_deadline_s(self.cfg)
        try:
            async with sem:
                resp = await asyncio.wait_for(
                    client.chat.completions.create(
                        model=self.model, messages=messages, max_tokens=self.cfg.max_tokens,
                        temperature=self.cfg.temperature,
                    ),
                    timeout=deadline,
                )
        except TimeoutError:  # our overall deadline, not the client's per-request timeout
            return CaptionResult.failure(f"{view.label}: no reply within {deadline:g} s over {attempts} attempts")
        except Exception as e:
            tries = f" after {attempts} attempts" if _retryable(e) and attempts > 1 else ""
            return CaptionResult.failure(f"{view.label}: {_describe(e)}{tries}")
        return self._result(resp)

    @staticmethod
    def _result(resp: Any) -> CaptionResult:
        choices = getattr(resp, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message is not None else None
        caption = clean_caption(text)
        if not caption:
            return CaptionResult(caption="", status=STATUS_EMPTY)
        return CaptionResult(caption=caption)
