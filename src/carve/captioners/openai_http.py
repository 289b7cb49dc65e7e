"""Captions from any OpenAI-compatible chat-completions server (vLLM serve, SGLang, TGI, OpenAI).

`OpenAICaptioner(cfg)` uses the async `openai` client against `cfg.base_url` with the API key
from the environment variable `cfg.api_key_env` (a placeholder when unset, as local servers
accept any key). For every event it sends the prompt of `captioners/prompts/<version>.yaml`
with the episode's task, the robot's arms, the previous event's caption and the keyframes of
EVERY camera as base64 JPEG `image_url` data URIs, each camera's images after a text part
naming it ("Camera observation.images.front: start, middle, end"). A prompt with a
`response_schema` (v2) is sent with `response_format={"type": "json_schema", "json_schema":
...}`, which OpenAI's structured outputs and vLLM's / SGLang's guided decoding honour; the reply
goes through `captioners.replies.parse_reply` (validated JSON -> caption; plain text from a
server that ignores the schema -> cleaned caption; invalid JSON -> the readable part, else a
failed event with the reason). A server that REJECTS `response_format` (HTTP 400 naming it) is
asked again without it, and from then on for the rest of the run.

Concurrency: every captioner keeps at most `cfg.max_concurrency` requests in flight (an
`asyncio.Semaphore`; a request waiting to be retried keeps its slot), over all the events of
the block it is given. With `cfg.condition_on_previous` (the default) each request carries the
previous event's caption, so the events of one episode go in order and the episodes of a block
run concurrently; without it every event of the block is in flight at once (the prompt then
says the previous event is "not available"). Results come back in event order whatever order
the replies arrive in. The requests run on one event loop per captioner, on a daemon thread
that lives as long as the captioner (so the client, its connection pool and the resolved model
are reused across blocks); `caption_episodes` may be called from any thread, also from one
that runs its own event loop, and blocks until the block is done. Requests go through the
client's `post` (the body as it is; see `_post`). Retries are the `openai` client's own
(`AsyncOpenAI(max_retries=cfg.max_retries, timeout=cfg.timeout_s)`): timeouts, connection
errors, 408/409/429 and 5xx replies are retried with jittered exponential backoff, and a
server's `Retry-After` / `retry-after-ms` header sets the wait. Each event also has an overall
deadline (`event_deadline_s`) so a server that trickles bytes cannot hang the stage. An event
that still fails is kept with `caption_status="failed: <reason>"` and an empty caption. A reply
with no usable text is marked "empty". When `cfg.model` is empty the server's first listed
model is used. `max_tokens` is `cfg.max_tokens`, raised to the prompt's own floor.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import threading
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import numpy as np

from carve.captioners.base import Captioner, CaptionResult, EventView
from carve.captioners.prompts import Prompt, load_prompt
from carve.captioners.replies import MAX_CAPTION_WORDS, clean_caption, parse_reply
from carve.core import env
from carve.core.config import CaptionConfig, SegmentConfig
from carve.core.errors import CarveError
from carve.ingest.arms import SINGLE_ARM, arm_layouts

__all__ = ["MAX_CAPTION_WORDS", "OpenAICaptioner", "build_messages", "clean_caption", "parse_reply", "robot_arms"]

# the longest server-directed wait (Retry-After) the openai client honours between attempts
MAX_RETRY_WAIT_S = 120.0
T = TypeVar("T")
_SCHEMA_REJECTED = re.compile(r"response_format|json_schema|guided|structured", re.I)


def image_data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def robot_arms(view: EventView, cfg: SegmentConfig | None = None) -> list[str]:
    """The arm names of the robot ("left", "right"), from the event's column names as the run's
    `segment.*` finds them; [] for one arm."""
    names = view.state_names or []
    if not names:
        return []
    width = len(names)
    state = view.state if view.state.ndim == 2 and view.state.shape[1] == width else np.zeros((1, width))
    action = view.action if view.action.ndim == 2 and view.action.shape[1] == len(view.action_names) else None
    arms = [a.name for a in arm_layouts(names, view.action_names or None, state, action, cfg or SegmentConfig())]
    return [] if len(arms) <= 1 or arms == [SINGLE_ARM] else arms


def build_messages(prompt: Prompt, view: EventView, previous_caption: str,
                   arms: list[str] | None = None) -> list[dict[str, Any]]:
    """The chat messages for one event: system prompt, then text + every camera's keyframes, labelled."""
    views = view.camera_keyframes()
    named = [cam for cam, _ in views if cam]
    content: list[dict[str, Any]] = [
        {
            "type": "text",
            "text": prompt.user_text(
                task=view.task, previous_caption=previous_caption, event_index=view.event_index,
                num_events=view.num_events, duration_s=view.duration_s, num_images=len(view.keyframes),
                camera_names=named, robot_arms=robot_arms(view) if arms is None else arms,
            ),
        }
    ]
    for cam, jpegs in views:
        if cam:
            content.append({"type": "text", "text": f"Camera {cam}: {_frame_words(len(jpegs))}"})
        for jpeg in jpegs:
            content.append({"type": "image_url", "image_url": {"url": image_data_uri(jpeg)}})
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]


def _frame_words(n: int) -> str:
    return "start, middle, end" if n == 3 else f"{n} frame(s) in time order"


def max_tokens(cfg: CaptionConfig, prompt: Prompt) -> int:
    """`cfg.max_tokens`, raised to the prompt's floor (a structured reply needs room for its JSON)."""
    return max(cfg.max_tokens, prompt.max_tokens)


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


class LoopThread:
    """One asyncio event loop on a daemon thread; `run(coro)` from any other thread blocks for its result.

    The loop starts on first use and again after a fork (a child process inherits no thread); it
    stops on `close()`, or when this object is garbage-collected (a captioner nobody closed).
    """

    def __init__(self, name: str = "carve-caption-loop"):
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
        with self._lock:
            if self._loop is None or self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=self._serve, args=(loop,), name=self.name, daemon=True)
                thread.start()
                weakref.finalize(self, _stop_loop, loop)
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop, self._thread

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop, thread = self._ensure()
        if threading.current_thread() is thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop: it would wait for itself")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self, last: Coroutine[Any, Any, Any] | None = None, timeout_s: float = 10.0) -> None:
        """Run `last` (e.g. closing a client) on the loop, then stop the loop and its thread."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop, self._thread = None, None
        if loop is None or thread is None or pid != os.getpid() or not thread.is_alive():
            if last is not None:
                last.close()
            return
        if last is not None:
            try:
                asyncio.run_coroutine_threadsafe(last, loop).result(timeout=timeout_s)
            except Exception:  # closing is best effort
                pass
        _stop_loop(loop)
        thread.join(timeout=timeout_s)


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Ask a loop running on another thread to stop (its thread then closes it); no-op once closed."""
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # already closed
        pass


class OpenAICaptioner(Captioner):
    """Captions via an OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(self, cfg: CaptionConfig, segment: SegmentConfig | None = None):
        try:
            import openai  # noqa: F401
        except ImportError as e:  # pragma: no cover - openai is a core dependency
            raise CarveError("caption.backend=openai needs the `openai` package: pip install openai") from e
        self.cfg = cfg
        self.segment = segment or SegmentConfig()
        self.prompt = load_prompt(cfg.prompt_version)
        self.model = cfg.model
        self.api_key = env.get(cfg.api_key_env) or "EMPTY"
        self.use_schema = self.prompt.response_format is not None  # False once a server rejects it
        self._runner = LoopThread()
        self._session: tuple[asyncio.AbstractEventLoop, Any, asyncio.Semaphore] | None = None

    def __getstate__(self) -> dict[str, Any]:  # the loop thread and the client stay in their process
        state = self.__dict__.copy()
        state["_runner"], state["_session"] = LoopThread(), None
        return state

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.model or 'openai'}@prompt-{self.prompt.version}"

    # ------------------------------------------------------------------ public API
    def caption_episode(self, events: list[EventView]) -> list[CaptionResult]:
        return self.caption_episodes([events])[0]

    def caption_episodes(self, episodes: Sequence[list[EventView]]) -> list[list[CaptionResult]]:
        if not episodes:
            return []
        return self._runner.run(self._caption_all([list(e) for e in episodes]))

    def close(self) -> None:
        session, self._session = self._session, None
        self._runner.close(session[1].close() if session is not None else None)

    # ------------------------------------------------------------------ async core (on the loop thread)
    def _client(self) -> Any:
        import openai

        return openai.AsyncOpenAI(
            base_url=self.cfg.base_url, api_key=self.api_key, timeout=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
        )

    def _open(self) -> tuple[Any, asyncio.Semaphore]:
        """The client and the in-flight semaphore of this captioner, made once per event loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session[0] is not loop:
            self._session = (loop, self._client(), asyncio.Semaphore(self.cfg.max_concurrency))
        return self._session[1], self._session[2]

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
        client, sem = self._open()
        await self._resolve_model(client)
        one = self._episode if self.cfg.condition_on_previous else self._episode_at_once
        return list(await asyncio.gather(*(one(client, sem, evs) for evs in episodes)))

    async def _episode(self, client: Any, sem: asyncio.Semaphore, events: list[EventView]) -> list[CaptionResult]:
        """The events in order, each request carrying the previous event's caption."""
        out: list[CaptionResult] = []
        previous = ""
        arms = robot_arms(events[0], self.segment) if events else []
        for view in events:
            res = await self._event(client, sem, view, previous, arms)
            out.append(res)
            previous = res.caption if res.ok else ""
        return out

    async def _episode_at_once(self, client: Any, sem: asyncio.Semaphore,
                               events: list[EventView]) -> list[CaptionResult]:
        """Every event in flight at once (bounded by `sem`), without the previous caption; results in order."""
        arms = robot_arms(events[0], self.segment) if events else []
        return list(await asyncio.gather(*(self._event(client, sem, v, "", arms) for v in events)))

    @staticmethod
    async def _post(client: Any, body: dict[str, Any]) -> Any:
        """POST /chat/completions through the client (its retries, Retry-After, timeout, errors).

        `client.post`, the openai client's documented call for raw requests, sends the plain-JSON
        body as it is; `chat.completions.create` would first walk it against the request's
        TypedDicts, ~3 ms of CPU per request with images, which bounds one loop's throughput.
        """
        from openai.types.chat import ChatCompletion

        return await client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    async def _create(self, client: Any, messages: list[dict[str, Any]], deadline: float) -> Any:
        kwargs: dict[str, Any] = dict(model=self.model, messages=messages, max_tokens=max_tokens(self.cfg, self.prompt),
                                      temperature=self.cfg.temperature)
        schema = self.use_schema
        if schema:
            kwargs["response_format"] = self.prompt.response_format
        try:
            return await asyncio.wait_for(self._post(client, kwargs), timeout=deadline)
        except Exception as e:
            import openai

            if not (schema and isinstance(e, openai.BadRequestError) and _SCHEMA_REJECTED.search(str(e))):
                raise
        # the server does not take response_format: ask again without it (and from now on)
        self.use_schema = False
        kwargs.pop("response_format", None)
        return await asyncio.wait_for(self._post(client, kwargs), timeout=deadline)

    async def _event(self, client: Any, sem: asyncio.Semaphore, view: EventView, previous: str,
                     arms: list[str]) -> CaptionResult:
        attempts = self.cfg.max_retries + 1
        deadline = event_deadline_s(self.cfg)
        async with sem:  # messages built in the slot: a block's images are not all encoded up front
            messages = build_messages(self.prompt, view, previous, arms)
            try:
                resp = await self._create(client, messages, deadline)
            except TimeoutError:  # our overall deadline, not the client's per-request timeout
                return CaptionResult.failure(f"{view.label}: no reply within {deadline:g} s over {attempts} attempts")
            except Exception as e:
                tries = f" after {attempts} attempts" if _retryable(e) and attempts > 1 else ""
                return CaptionResult.failure(f"{view.label}: {_describe(e)}{tries}")
        res = self._result(resp, arms)
        if res.status.startswith("failed"):
            return CaptionResult.failure(f"{view.label}: {res.status.removeprefix('failed: ')}")
        return res

    @staticmethod
    def _result(resp: Any, arms: list[str] | None = None) -> CaptionResult:
        choices = getattr(resp, "choices", None) or []
        message = choices[0].message if choices else None
        if message is not None and getattr(message, "refusal", None):
            return CaptionResult.failure(f"the model refused: {message.refusal}")
        return parse_reply(message.content if message is not None else None, arms)
