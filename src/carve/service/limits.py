"""Guards of the HTTP service: source-path confinement, request-size and rate limits.

`confine_source(uri, roots)` turns a submitted source into the canonical path a job may
read, or raises `SourceRejected` with the reason: no traversal (`..`), no symlink escape
(the real path, after resolving every link, must lie under the real path of an allowed
root), no other URI schemes unless the allow-list names that object-store prefix.

`BodyLimitMiddleware` refuses bodies over `max_body_bytes` with 413 (declared or streamed)
and `RateLimitMiddleware` is a per-client token bucket answering 429 with `Retry-After`. The
event media GETs (`/events/{id}/keyframes/{i}.jpg`, `keyframe.jpg`, `clip.mp4`, `clip.webm`:
a cluster grid shows 60 thumbnails and plays clips on hover) draw on a separate per-client
bucket, by default `MEDIA_FACTOR` x the API budget, so browsing media never uses up the API
budget and vice versa. Both are plain ASGI middlewares so they run before any parsing.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SourceRejected(ValueError):
    """A submitted source that may not be read; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def _scheme(uri: str) -> str | None:
    if "://" in uri:
        return uri.split("://", 1)[0].lower()
    return None


def confine_source(uri: str, allowed_roots: list[str]) -> str:
    """The canonical source path for `uri` if it lies under an allowed root, else SourceRejected."""
    if not allowed_roots:
        raise SourceRejected("this server has no allowed source roots configured (service.allowed_roots)")
    if "\x00" in uri:
        raise SourceRejected("source contains a NUL byte", 422)
    scheme = _scheme(uri)
    if scheme not in (None, "file"):
        return _confine_object_store(uri, allowed_roots)
    raw = uri[len("file://") :] if scheme == "file" else uri
    if not os.path.isabs(raw):
        raise SourceRejected(f"source {uri!r} must be an absolute path", 422)
    if ".." in Path(raw).parts:
        raise SourceRejected(f"source {uri!r} contains '..'; give a path without traversal")
    real = Path(os.path.realpath(raw))
    for root in allowed_roots:
        if _scheme(root) not in (None, "file"):
            continue
        root_raw = root[len("file://") :] if root.startswith("file://") else root
        real_root = Path(os.path.realpath(root_raw))
        if real == real_root or real.is_relative_to(real_root):
            if not real.exists():
                raise SourceRejected(f"source {uri!r} does not exist", 422)
            return str(real)
    if real != Path(os.path.abspath(raw)):
        raise SourceRejected(f"source {uri!r} resolves (through a symlink) to {real}, outside the allowed roots")
    raise SourceRejected(f"source {uri!r} is outside the allowed roots")


def _confine_object_store(uri: str, allowed_roots: list[str]) -> str:
    scheme, rest = uri.split("://", 1)
    if ".." in rest.split("/"):
        raise SourceRejected(f"source {uri!r} contains '..'; give a path without traversal")
    norm = f"{scheme.lower()}://{posixpath.normpath(rest)}"
    for root in allowed_roots:
        if _scheme(root) != scheme.lower():
            continue
        r_scheme, r_rest = root.split("://", 1)
        r_norm = f"{r_scheme.lower()}://{posixpath.normpath(r_rest)}"
        if norm == r_norm or norm.startswith(r_norm.rstrip("/") + "/"):
            return norm
    raise SourceRejected(f"source {uri!r} is outside the allowed roots")


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Refuse request bodies larger than `max_bytes` with 413 before the app parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = {"detail": f"request body larger than {self.max_bytes} bytes"}
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, too_big)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        buffered = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": buffered, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class TokenBucket:
    """Per-key token buckets: `per_min` requests a minute, bursts up to `per_min`."""

    def __init__(self, per_min: int, max_keys: int = 10_000):
        self.capacity = float(per_min)
        self.rate = per_min / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0.0 if a request is allowed now, else the seconds until one will be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > self.max_keys:  # forget the idlest clients
                for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[: self.max_keys // 10]:
                    self._buckets.pop(k, None)
            return wait


MEDIA_PATHS = re.compile(r"^/events/[^/]+/(keyframes/\d+\.jpg|keyframe\.jpg|clip\.mp4|clip\.webm)$")
MEDIA_FACTOR = 10  # the media budget per client, as a multiple of the API budget


class RateLimitMiddleware:
    """Answer 429 (with Retry-After) to a client that exceeds its request rate: `per_min` API
    requests a minute, and separately `media_per_min` (default MEDIA_FACTOR x per_min) GET/HEAD
    requests of event media (paths matching `media`)."""

    def __init__(self, app: ASGIApp, per_min: int, exempt: tuple[str, ...] = (), media_per_min: int | None = None,
                 media: re.Pattern[str] = MEDIA_PATHS):
        self.app = app
        self.bucket = TokenBucket(per_min)
        self.media_bucket = TokenBucket(media_per_min if media_per_min is not None else MEDIA_FACTOR * per_min)
        self.exempt = exempt
        self.media = media

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") or ""
        if scope["type"] != "http" or path in self.exempt:
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        is_media = scope.get("method") in ("GET", "HEAD") and self.media.match(path) is not None
        wait = (self.media_bucket if is_media else self.bucket).take(str(client[0]))
        if wait > 0:
            retry = str(max(1, math.ceil(wait)))
            what = "media rate limit" if is_media else "rate limit"
            await _send_json(
                send, 429, {"detail": f"{what} exceeded; retry in {retry} s"}, [(b"retry-after", retry.encode())]
            )
            return
        await self.app(scope, receive, send)
