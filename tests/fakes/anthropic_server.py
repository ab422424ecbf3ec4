"""A fake Anthropic Messages API on 127.0.0.1, scripted per test.

The real ``anthropic`` SDK talks to it through ``base_url``. ``POST /v1/messages``
answers with the next scripted reply (a queue of replies or callables), or with
the ``responder`` when the queue is empty. Replies have the real wire shape:
``tool_use`` content blocks, ``usage`` with cache fields, and error bodies
``{"type": "error", "error": {"type": ..., "message": ...}}`` with headers such
as ``retry-after``. A request with ``"stream": true`` gets the same message as
server-sent events (message_start, content_block_start/delta/stop with text,
input_json, thinking and signature deltas, message_delta, message_stop), paced by
``Reply.event_delay`` and optionally broken off by an ``error`` event. Like the
real API, a request that enables thinking and forces a tool call is refused with
400, and a thinking request's answer starts with a signed thinking block. Every
request (JSON body and headers) is recorded.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # Streamed replies only: seconds between events, and an error event sent after the first content block.
    event_delay: float = 0.0
    stream_error: dict[str, Any] | None = None
    # Streamed replies only: the connection is closed after the first content block, with no message_stop.
    stream_cut: bool = False


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def tool_name(self) -> str | None:
        """The tool the request forces, or the one its last user message asks for (tool choice auto)."""
        choice = self.body.get("tool_choice") or {}
        if choice.get("name"):
            return str(choice["name"])
        tool_names = [t["name"] for t in self.body.get("tools", [])]
        text = _text_of(self.body.get("messages", [])[-1:])
        asked = [name for name in tool_names if name in text]
        return max(asked, key=text.rfind) if asked else None

    @property
    def prompt_text(self) -> str:
        """Every text of the system prompt and the messages, joined."""
        system = self.body.get("system") or []
        system_text = system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system)
        return system_text + "\n" + _text_of(self.body.get("messages", []))


def _text_of(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content or []:
            if block.get("type") == "text":
                parts.append(block["text"])
            elif block.get("type") == "tool_result" and isinstance(block.get("content"), str):
                parts.append(block["content"])
    return "\n".join(parts)


Responder = Callable[[Recorded], Reply]
_ids = itertools.count(1)


def usage(
    input_tokens: int = 100, output_tokens: int = 50, cache_write: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def tool_reply(
    name: str,
    tool_input: dict[str, Any],
    *,
    usage_fields: dict[str, Any] | None = None,
    stop_reason: str = "tool_use",
    model: str = "claude-sonnet-5-5",
) -> Reply:
    n = next(_ids)
    return Reply(
        200,
        {
            "id": f"msg_fake{n:06d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "tool_use", "id": f"toolu_fake{n:06d}", "name": name, "input": tool_input}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage_fields or usage(),
        },
    )


def text_reply(text: str, *, usage_fields: dict[str, Any] | None = None) -> Reply:
    n = next(_ids)
    return Reply(
        200,
        {
            "id": f"msg_fake{n:06d}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5-5",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage_fields or usage(),
        },
    )


def overloaded_mid_stream(reply: Reply) -> Reply:
    """The reply, streamed, broken off after its first block by an overloaded_error event."""
    return Reply(
        reply.status,
        reply.body,
        reply.headers,
        stream_error={"type": "overloaded_error", "message": "Overloaded"},
    )


def error_reply(status: int, message: str = "", *, headers: dict[str, str] | None = None) -> Reply:
    error_type = ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": message or error_type}}
    return Reply(status, body, dict(headers or {}))


def _with_thinking(reply: Reply) -> Reply:
    content = list(reply.body.get("content") or [])
    if content and content[0].get("type") == "thinking":
        return reply
    block = {"type": "thinking", "thinking": "Weighing the data first.", "signature": f"sig{next(_ids):06d}"}
    return Reply(reply.status, {**reply.body, "content": [block, *content]}, reply.headers, reply.event_delay)


def stream_events(message: dict[str, Any], *, error: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """A message as the Messages API streams it; ``error`` breaks the stream off after the first block."""
    content = list(message.get("content") or [])
    final_usage = dict(message.get("usage") or usage())
    start: dict[str, Any]
    delta: dict[str, Any]
    start_usage = {**final_usage, "output_tokens": 1}
    yield {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": start_usage}}
    for index, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            yield {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            for piece in _pieces(block["text"]):
                yield {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            yield {"type": "content_block_start", "index": index, "content_block": start}
            for piece in _pieces(block["thinking"]):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield {"type": "content_block_delta", "index": index, "delta": delta}
            delta = {"type": "signature_delta", "signature": block["signature"]}
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        elif kind == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield {"type": "content_block_start", "index": index, "content_block": start}
            for piece in _pieces(json.dumps(block["input"])):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}
        if error is not None:
            yield {"type": "error", "error": error}
            return
    delta = {"stop_reason": message.get("stop_reason"), "stop_sequence": None}
    yield {"type": "message_delta", "delta": delta, "usage": final_usage}
    yield {"type": "message_stop"}


def _pieces(text: str, size: int = 400) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeAnthropic:
    """The server and its script. Use ``push`` for fixed sequences, ``responder`` for the rest."""

    def __init__(self) -> None:
        self.script: deque[Reply | Responder] = deque()
        self.responder: Responder | None = None
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.split("?")[0] != "/v1/messages":
                    self._send(
                        Reply(
                            404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}}
                        )
                    )
                    return
                recorded = Recorded(json.loads(raw or b"{}"), {k.lower(): v for k, v in self.headers.items()})
                reply = fake._answer(recorded)
                if recorded.body.get("stream") and reply.status == 200:
                    self._stream(reply, thinking="thinking" in recorded.body)
                else:
                    self._send(reply)

            def _stream(self, reply: Reply, *, thinking: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("request-id", f"req_fake{next(_ids):06d}")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for event in stream_events(reply.body, error=reply.stream_error):
                        if reply.stream_cut and event["type"] == "content_block_stop":
                            return
                        if reply.event_delay:
                            time.sleep(reply.event_delay)
                        self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up on the stream (its deadline); nothing more to send.
                    return

            def _send(self, reply: Reply) -> None:
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_fake{next(_ids):06d}")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def push(self, *replies: Reply | Responder) -> None:
        self.script.extend(replies)

    def calls(self, tool_name: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if tool_name is None or r.tool_name == tool_name]

    def _answer(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
        if "thinking" in recorded.body and (recorded.body.get("tool_choice") or {}).get("type") in {"tool", "any"}:
            # The real API's answer to thinking with a forced tool call (the script is not consumed).
            return error_reply(400, "Thinking may not be enabled when tool_choice forces tool use.")
        with self._lock:
            item: Reply | Responder | None = self.script.popleft() if self.script else self.responder
        if item is None:
            return error_reply(500, "fake Anthropic server: script exhausted")
        reply = item if isinstance(item, Reply) else item(recorded)
        if "thinking" in recorded.body and reply.status == 200:
            reply = _with_thinking(reply)
        return reply

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    server.start()
    try:
        yield server
    finally:
        server.stop()
