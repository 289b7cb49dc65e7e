"""The OpenAI-compatible captioner against a local chat-completions server on a real socket.

The server (`http.server`, threaded) implements POST /v1/chat/completions and GET /v1/models
with the real response JSON shape, records every request (and when it arrived) and misbehaves
on demand, keyed by the episode's task text: "FAIL-ALWAYS" answers 500 forever, "FAIL-ONCE"
answers 500 to the first request of each event, "RATE-LIMIT-ONCE" answers 429 with
`Retry-After: 1` to the first request of each event, "SLOW-ONCE" stalls past the client
timeout once per event, "EMPTY" answers with no text, "BAD-REQUEST" answers 400. Retries are
the openai client's own (Retry-After honoured, jittered exponential backoff otherwise).

By default the server ignores `response_format` and answers in plain text, as a server without
structured outputs does. "JSON-REPLY" makes it honour the schema (a JSON object, "FENCED-JSON"
inside a ```json fence), "BROKEN-JSON" answers truncated JSON whose first fields are still readable,
"GARBAGE-JSON" JSON that cannot be read, "WRONG-SCHEMA" a JSON object of the wrong field types,
and "REJECT-SCHEMA" answers 400 to any request that carries `response_format`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa
import pytest
from test_captioners_helpers import event_rows, script_episode

from carve.captioners.openai_http import clean_caption
from carve.captioners.prompts import load_prompt
from carve.captioners.replies import parse_reply
from carve.captioners.stage import CaptionStage
from carve.core.config import CaptionConfig
from carve.storage.schema import events_to_table


class FakeChatServer:
    """A minimal OpenAI-compatible server running in a thread on 127.0.0.1."""

    def __init__(self, delay_s: float = 0.0, slow_s: float = 2.0):
        self.requests: list[dict[str, Any]] = []
        self.attempts: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}  # event key -> monotonic arrival time of each attempt
        self.inflight = 0
        self.max_inflight = 0
        self.delay_s = delay_s
        self.slow_s = slow_s
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": "served-model", "object": "model", "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                    body["_auth"] = self.headers.get("Authorization")
                    server.requests.append(body)
                try:
                    server.respond(self, body)
                finally:
                    with server.lock:
                        server.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def respond(self, h: Any, body: dict[str, Any]) -> None:
        text = user_text(body)
        task = re.search(r'Task of the whole episode: "(.*?)"', text).group(1)
        event = int(re.search(r"This is event (\d+) of", text).group(1))
        key = f"{task}#{event}"
        with self.lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            self.arrivals.setdefault(key, []).append(time.monotonic())
        if self.delay_s:
            time.sleep(self.delay_s)
        if "FAIL-ALWAYS" in task or ("FAIL-ONCE" in task and attempt == 1):
            h._send(500, {"error": {"message": "engine crashed", "type": "server_error"}})
            return
        if "RATE-LIMIT-ONCE" in task and attempt == 1:
            h._send(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, {"Retry-After": "1"})
            return
        if "BAD-REQUEST" in task:
            h._send(400, {"error": {"message": "image too large", "type": "invalid_request_error"}})
            return
        if "SLOW-ONCE" in task and attempt == 1:
            time.sleep(self.slow_s)
        if "REJECT-SCHEMA" in task and "response_format" in body:
            h._send(400, {"error": {"message": "response_format json_schema is not supported by this server",
                                    "type": "invalid_request_error"}})
            return
        reply = {"verb": "grasp", "object": "the red cube", "target": "", "arm": "left",
                 "caption": f"Grasp the red cube, step {event}."}
        if "EMPTY" in task:
            content = ""
        elif "FENCED-JSON" in task:
            content = "```json\n" + json.dumps(reply) + "\n```"
        elif "JSON-REPLY" in task:
            content = json.dumps(reply)
        elif "BROKEN-JSON" in task:
            content = json.dumps(reply)[:-25]  # cut inside the caption: verb and object still readable
        elif "GARBAGE-JSON" in task:
            content = '{"verb": grasp, "object": [the red'
        elif "WRONG-SCHEMA" in task:
            content = json.dumps({"verb": 5, "object": ["the red cube"], "caption": 7})
        else:
            content = f"Caption: Move the cube, step {event}.\nExtra chatter here."
        h._send(200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })


def user_text(body: dict[str, Any]) -> str:
    user = next(m for m in body["messages"] if m["role"] == "user")
    return "".join(p["text"] for p in user["content"] if p["type"] == "text")


def images(body: dict[str, Any]) -> list[str]:
    user = next(m for m in body["messages"] if m["role"] == "user")
    return [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    s = FakeChatServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def make_table(tasks: list[str], n_events: int = 3) -> pa.Table:
    rows = []
    state, grip, _ = script_episode([("reach", 6, None, None)] * n_events, dwell=0)
    for i, task in enumerate(tasks):
        bounds = [(k * 6, (k + 1) * 6) for k in range(n_events)]
        rows += event_rows(f"ep{i}", task, state, grip, bounds, episode_index=i)
    return events_to_table(rows)


def cfg_for(server: FakeChatServer, **kw: Any) -> CaptionConfig:
    base: dict[str, Any] = dict(backend="openai", base_url=server.base_url, model="test-vlm", timeout_s=5.0,
                                max_retries=2,
                max_concurrency=4, api_key_env="CARVE_TEST_CAPTION_KEY")
    base.update(kw)
    return CaptionConfig(**base)


def test_requests_carry_images_task_previous_caption_and_model(server: FakeChatServer, monkeypatch) -> None:
    monkeypatch.setenv("CARVE_TEST_CAPTION_KEY", "sk-test-123")
    table = make_table(["put the red cube in the tray"])
    out = CaptionStage(cfg_for(server))(table)
    assert len(server.requests) == 3
    reqs = sorted(server.requests, key=lambda b: user_text(b))
    for k, body in enumerate(reqs):
        assert body["model"] == "test-vlm"
        assert body["_auth"] == "Bearer sk-test-123"
        assert body["messages"][0]["role"] == "system" and "reach" in body["messages"][0]["content"]
        urls = images(body)
        sent = table.column("keyframes")[k].as_py()
        assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == sent
        assert all(u.startswith("data:image/jpeg;base64,") for u in urls)
        assert "put the red cube in the tray" in user_text(body)
    # events of an episode go in order, each with the previous event's (cleaned) caption
    assert "first event" in user_text(server.requests[0])
    assert "Previous event: move the cube, step 1" in user_text(server.requests[1])
    assert "Previous event: move the cube, step 2" in user_text(server.requests[2])
    caps = out.column("caption").to_pylist()
    assert caps == ["move the cube, step 1", "move the cube, step 2", "move the cube, step 3"]
    assert out.column("next_caption").to_pylist() == [*caps[1:], ""]
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    assert out.column("caption_model").to_pylist()[0].startswith("test-vlm@prompt-v3")


def test_retries_on_500(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server))(make_table(["FAIL-ONCE put it in the tray"], n_events=2))
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    assert all(v == 2 for v in server.attempts.values()) and len(server.attempts) == 2


def test_429_waits_for_retry_after(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server))(make_table(["RATE-LIMIT-ONCE put it in the tray"], n_events=1))
    assert out.column("caption_status").to_pylist() == ["ok"]
    assert out.column("caption").to_pylist() == ["move the cube, step 1"]
    (first, second), = server.arrivals.values()  # the 429, then the retry
    # the client waited for the server's Retry-After (1 s), not its own 0.5 s backoff
    assert second - first >= 0.9


def test_persistent_500_fails_after_max_retries_plus_one_attempts(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server, max_retries=2))(make_table(["FAIL-ALWAYS put it in the tray"], n_events=1))
    assert out.num_rows == 1 and out.column("caption").to_pylist() == [""]
    (status,) = out.column("caption_status").to_pylist()
    assert status.startswith("failed: ") and "HTTP 500" in status and "after 3 attempts" in status
    assert dict(server.attempts) == {"FAIL-ALWAYS put it in the tray#1": 3}


def test_no_retries_when_max_retries_is_zero(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server, max_retries=0))(make_table(["FAIL-ONCE put it in the tray"], n_events=1))
    (status,) = out.column("caption_status").to_pylist()
    assert status.startswith("failed: ") and "500" in status and "attempts" not in status
    assert list(server.attempts.values()) == [1]


def test_retries_after_timeout() -> None:
    srv = FakeChatServer(slow_s=3.0)
    srv.thread.start()
    try:
        out = CaptionStage(cfg_for(srv, timeout_s=0.5))(make_table(["SLOW-ONCE push it"], n_events=1))
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
    assert out.column("caption_status").to_pylist() == ["ok"]
    assert out.column("caption").to_pylist() == ["move the cube, step 1"]
    assert list(srv.attempts.values()) == [2]


def test_permanent_failure_is_marked_not_dropped(server: FakeChatServer) -> None:
    table = make_table(["put the red cube in the tray", "FAIL-ALWAYS stack it", "BAD-REQUEST push it"], n_events=2)
    out = CaptionStage(cfg_for(server, max_retries=1))(table)
    assert out.num_rows == table.num_rows
    rows = out.select(["episode_id", "caption", "caption_status", "next_caption"]).to_pylist()
    good = [r for r in rows if r["episode_id"] == "ep0"]
    bad = [r for r in rows if r["episode_id"] == "ep1"]
    rejected = [r for r in rows if r["episode_id"] == "ep2"]
    assert all(r["caption_status"] == "ok" and r["caption"] for r in good)
    for r in bad:
        assert r["caption"] == "" and r["caption_status"].startswith("failed: ")
        assert "500" in r["caption_status"] and "episode ep1" in r["caption_status"]
    # 5xx is retried (2 attempts each), a 400 is not
    assert server.attempts["FAIL-ALWAYS stack it#1"] == 2
    assert server.attempts["BAD-REQUEST push it#1"] == 1
    assert all("400" in r["caption_status"] for r in rejected)
    # a failed predecessor is reported as unknown, not as "first event"
    second = [b for b in server.requests if "FAIL-ALWAYS" in user_text(b) and "event 2 of" in user_text(b)]
    assert second and "not available" in user_text(second[0])


def test_empty_reply_marked_empty(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server))(make_table(["EMPTY put it in the tray"], n_events=2))
    assert out.column("caption_status").to_pylist() == ["empty", "empty"]
    assert out.column("caption").to_pylist() == ["", ""]


def test_concurrency_limit_respected() -> None:
    srv = FakeChatServer(delay_s=0.3)
    srv.thread.start()
    try:
        tasks = [f"put cube {i} in the tray" for i in range(6)]
        out = CaptionStage(cfg_for(srv, max_concurrency=2))(make_table(tasks, n_events=2))
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    assert len(srv.requests) == 12
    assert 1 <= srv.max_inflight <= 2


def test_model_discovered_when_not_configured(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server, model=""))(make_table(["put the red cube in the tray"], n_events=1))
    assert server.requests[0]["model"] == "served-model"
    assert out.column("caption_model").to_pylist()[0].startswith("served-model")


def test_unreachable_server_marks_events_failed() -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = CaptionConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1,
                        timeout_s=2.0)
    out = CaptionStage(cfg)(make_table(["put it in the tray"], n_events=2))
    statuses = out.column("caption_status").to_pylist()
    assert all(s.startswith("failed: ") and "connect" in s for s in statuses)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Caption: Grasp the red cube.", "grasp the red cube"),
        ('"Lift the red cube"\nBecause the gripper closed.', "lift the red cube"),
        ("<think>hmm</think>\n1. Place the cube in the tray. Then more.", "place the cube in the tray"),
        ("**Release the cube**", "release the cube"),
        ("...", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_caption(reply: str | None, expected: str) -> None:
    assert clean_caption(reply) == expected


# ------------------------------------------------------------------ structured output (prompt v2, v3 the default)


def test_request_carries_the_json_schema_response_format(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server, max_tokens=32))(make_table(["put the red cube in the tray"], n_events=2))
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    for body in server.requests:
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        spec = fmt["json_schema"]
        assert spec["name"] == "event_caption" and spec["strict"] is True
        assert spec["schema"]["required"] == ["verb", "verb_class", "object", "target", "arm", "caption"]
        assert spec["schema"]["additionalProperties"] is False
        assert spec["schema"] == load_prompt("v3").response_schema["schema"]
        assert body["max_tokens"] >= 180  # the prompt's floor: room for the JSON object
        assert '"verb"' in body["messages"][0]["content"] and "open vocabulary" in body["messages"][0]["content"]
    # this server ignored the schema and answered in plain text: still captions, status ok
    assert out.column("caption").to_pylist() == ["move the cube, step 1", "move the cube, step 2"]


def test_prompt_v3_offers_the_parsed_instruction_and_the_verb_classes(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server))(make_table(["open the drawer"], n_events=1))
    assert out.column("caption_model").to_pylist() == ["test-vlm@prompt-v3"]
    text = user_text(server.requests[0])
    assert "The instruction parsed: verb open (class pull); object the drawer; result open." in text
    assert "pull (pull, open, slide" in text and "push (push, press, close" in text
    classes = server.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["verb_class"]["enum"]
    assert {"pull", "push", "insert", "turn", "other"} <= set(classes)


def test_prompt_names_the_tool_the_instruction_works_with(server: FakeChatServer) -> None:
    CaptionStage(cfg_for(server))(make_table(["push the thermos to the goal with the stick"], n_events=1))
    text = user_text(server.requests[0])
    assert ("The instruction parsed: verb push (class push); object the thermos; target the goal; "
            "manner with the stick; tool the stick.") in text


def test_prompt_v1_sends_no_response_format(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server, prompt_version="v1"))(make_table(["put the red cube in the tray"], 1))
    assert "response_format" not in server.requests[0] and server.requests[0]["max_tokens"] == 64
    assert out.column("caption_model").to_pylist() == ["test-vlm@prompt-v1"]


@pytest.mark.parametrize("task", ["JSON-REPLY put it in the tray", "FENCED-JSON put it in the tray"])
def test_schema_honouring_server_reply_becomes_the_caption(server: FakeChatServer, task: str) -> None:
    out = CaptionStage(cfg_for(server))(make_table([task], n_events=2))
    assert out.column("caption").to_pylist() == ["grasp the red cube, step 1", "grasp the red cube, step 2"]
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    # one arm: the arm the reply names is not appended
    assert "Previous event: grasp the red cube, step 1" in user_text(server.requests[1])


def test_json_reply_names_the_arm_of_a_two_arm_robot(server: FakeChatServer) -> None:
    from test_captioners_helpers import segmented_rows, two_arm_episode

    state, names, _, _ = two_arm_episode(seed=1)
    rows = segmented_rows("t", "JSON-REPLY put the red cube in the tray with the left arm", state, names, 30.0)[:2]
    out = CaptionStage(cfg_for(server))(events_to_table(rows))
    assert out.column("caption").to_pylist() == ["grasp the red cube, step 1 with the left arm",
                                                 "grasp the red cube, step 2 with the left arm"]
    assert "two arms: left, right" in user_text(server.requests[0])


def test_invalid_json_is_read_where_possible_else_failed(server: FakeChatServer) -> None:
    tasks = ["BROKEN-JSON put it in the tray", "GARBAGE-JSON put it in the tray", "WRONG-SCHEMA put it in the tray"]
    out = CaptionStage(cfg_for(server))(make_table(tasks, n_events=1))
    rows = {r["task"].split()[0]: r for r in out.select(["task", "caption", "caption_status"]).to_pylist()}
    assert rows["BROKEN-JSON"]["caption"] == "grasp the red cube"  # from the verb and object
    assert rows["BROKEN-JSON"]["caption_status"] == "ok"
    garbage = rows["GARBAGE-JSON"]
    assert garbage["caption"] == "" and garbage["caption_status"].startswith("failed: ")
    assert "invalid JSON" in garbage["caption_status"] and "episode ep1" in garbage["caption_status"]
    wrong = rows["WRONG-SCHEMA"]
    assert wrong["caption"] == "" and "does not match the schema" in wrong["caption_status"]
    assert out.num_rows == 3  # failed events are kept
    assert all(v == 1 for v in server.attempts.values())  # a bad reply is not an HTTP error: no retries


def test_server_rejecting_response_format_is_asked_again_without_it(server: FakeChatServer) -> None:
    out = CaptionStage(cfg_for(server, max_concurrency=1))(make_table(["REJECT-SCHEMA put it in the tray"], 3))
    assert set(out.column("caption_status").to_pylist()) == {"ok"}
    assert out.column("caption").to_pylist()[0] == "move the cube, step 1"
    with_schema = ["response_format" in b for b in server.requests]
    assert with_schema[0] and not any(with_schema[1:]) and len(server.requests) == 4


def test_every_camera_is_sent_labelled_by_name(server: FakeChatServer) -> None:
    from test_captioners_helpers import tiny_jpeg

    table = make_table(["put the red cube in the tray"], n_events=1)
    rows = table.to_pylist()
    rows[0]["cameras"] = ["observation.images.front", "observation.images.side"]
    rows[0]["keyframes"] = [tiny_jpeg(v) for v in range(6)]
    CaptionStage(cfg_for(server))(events_to_table(rows))
    (body,) = server.requests
    user = next(m for m in body["messages"] if m["role"] == "user")["content"]
    kinds = [p["type"] if p["type"] == "image_url" else p["text"].split(":")[0] for p in user[1:]]
    assert kinds == ["Camera observation.images.front", *["image_url"] * 3,
                     "Camera observation.images.side", *["image_url"] * 3]
    sent = [base64.b64decode(u.split(",", 1)[1]) for u in images(body)]
    assert sent == rows[0]["keyframes"]
    assert "2 camera(s) (observation.images.front, observation.images.side)" in user_text(body)


@pytest.mark.parametrize(
    ("reply", "arms", "caption", "status"),
    [
        ('{"verb": "wipe", "object": "the table", "target": "", "arm": "", "caption": "Wipe the table."}', [],
         "wipe the table", "ok"),
        ('{"verb": "fold", "object": "the towel", "target": "", "arm": "right", "caption": "fold the towel"}',
         ["left", "right"], "fold the towel with the right arm", "ok"),
        ('{"verb": "pour", "object": "the water", "target": "the cup", "arm": "Left arm", "caption": ""}',
         ["left", "right"], "pour the water to the cup with the left arm", "ok"),
        ('{"verb": "lift", "object": "", "target": "", "arm": "both", "caption": "lift the box"}',
         ["left", "right"], "lift the box with both arms", "ok"),
        ('{"verb": "press", "arm": "the elbow", "caption": "press the button with the left arm"}',
         ["left", "right"], "press the button with the left arm", "ok"),
        ('Sure! {"verb": "open", "object": "the drawer", "target": "", "arm": "", "caption": "open the drawer"}',
         [], "open the drawer", "ok"),
        ('{"caption": "insert the peg into the hole", "verb": "ins', [], "insert the peg into the hole", "ok"),
        ("Insert the peg into the hole.", [], "insert the peg into the hole", "ok"),
        ('"close the lid"', [], "close the lid", "ok"),
        ('{"verb": "", "object": "", "target": "", "arm": "", "caption": ""}', [], "", "empty"),
        ("", [], "", "empty"),
        ('{"verb": ', [], "", "failed"),
        ('["grasp"]', [], "", "failed"),
        ('{"verb": 3, "caption": null}', [], "", "failed"),
    ],
)
def test_parse_reply(reply: str, arms: list[str], caption: str, status: str) -> None:
    res = parse_reply(reply, arms)
    assert res.caption == caption
    assert res.status.split(":")[0] == status


@pytest.mark.parametrize(
    ("reply", "verb", "verb_class"),
    [
        ('{"verb": "open", "verb_class": "pull", "caption": "open the drawer"}', "open", "pull"),
        ('{"verb": "presses", "verb_class": "push", "caption": "press the button"}', "press", "push"),
        # the declared class is not trusted over the verb read in its caption: "open the gripper" lets go
        ('{"verb": "open", "verb_class": "pull", "caption": "open the gripper"}', "open gripper", "release"),
        ('{"verb": "", "verb_class": "", "caption": "open the gripper"}', "open gripper", "release"),
        ('{"verb": "wave", "verb_class": "other", "caption": "wave the flag"}', "wave", "open vocabulary"),
        ('{"verb": "wave", "verb_class": "push", "caption": "wave the flag"}', "wave", "open vocabulary"),
        ('{"verb": "wipe", "verb_class": "other", "caption": "wipe the table"}', "wipe", "wipe"),
        ('{"verb": "insert", "verb_class": "insert", "caption": "insert the peg into the hole"}', "insert", "insert"),
        ("Insert the peg into the hole.", "", ""),  # plain text: no structured verb to check
    ],
)
def test_structured_verb_is_checked_against_the_verb_classes(reply: str, verb: str, verb_class: str) -> None:
    res = parse_reply(reply, [])
    assert res.status == "ok" and (res.verb, res.verb_class) == (verb, verb_class)
