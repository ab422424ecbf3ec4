"""A fake Anthropic Messages API on 127.0.0.1, scripted per test.

The real ``anthropic`` SDK talks to it through ``base_url``. ``POST /v1/messages``
answers with the next scripted reply (a queue of replies or callables), or with
the ``responder`` when the queue is empty. Replies have the real wire shape:
``tool_use`` content blocks, ``usage`` with cache fields, and error bodies
``{"type": "error", "error": {"type": ..., "message": ...}}`` with headers such
as ``retry-after``. Every request (JSON body and headers) is recorded.
"""

from __future__ import annotations

import itertools
import json
import threading
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
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def tool_name(self) -> str | None:
        choice = self.body.get("tool_choice") or {}
        return choice.get("name")


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


def error_reply(status: int, message: str = "", *, headers: dict[str, str] | None = None) -> Reply:
    error_type = ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": message or error_type}}
    return Reply(status, body, dict(headers or {}))


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
                self._send(fake._answer(recorded))

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
            item: Reply | Responder | None = self.script.popleft() if self.script else self.responder
        if item is None:
            return error_reply(500, "fake Anthropic server: script exhausted")
        return item if isinstance(item, Reply) else item(recorded)

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
