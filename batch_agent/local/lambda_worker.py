"""A warm Lambda container for the emulated stack: ``python -m batch_agent.local.lambda_worker HANDLER``.

Imports the handler once (the cold start), then answers one invocation per line:
reads ``{"event": ...}`` on stdin and writes ``{"ok": true, "payload": ...}`` or
``{"ok": false, "payload": {"errorMessage", "errorType", "stackTrace"}}`` (the
shape AWS Lambda gives an unhandled error) on the original stdout. Anything the
handler prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, TextIO


class _Context:
    """The parts of the Lambda context object handlers and Mangum read."""

    def __init__(self, function_name: str, timeout_s: float) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.aws_request_id = uuid.uuid4().hex
        self.invoked_function_arn = ""
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_exception(exc)[-20:],
    }


def _load(handler_path: str) -> Callable[[Any, Any], Any]:
    module, _, attr = handler_path.rpartition(".")
    handler: Callable[[Any, Any], Any] = getattr(importlib.import_module(module), attr)
    return handler


def serve(handler_path: str, requests: TextIO, replies: TextIO) -> None:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", handler_path)
    timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "900"))
    handler: Callable[[Any, Any], Any] | None = None
    init_error: dict[str, Any] | None = None
    try:
        handler = _load(handler_path)
    except Exception as exc:  # an import or settings error: every invocation reports it, as Lambda does
        init_error = _error(exc, "Runtime.ImportModuleError" if isinstance(exc, ImportError) else None)
    for line in requests:
        if not line.strip():
            continue
        event = json.loads(line)["event"]
        if handler is None:
            reply = {"ok": False, "payload": init_error}
        else:
            try:
                reply = {"ok": True, "payload": handler(event, _Context(function_name, timeout_s))}
            except Exception as exc:  # the handler raised: an unhandled function error
                reply = {"ok": False, "payload": _error(exc)}
        replies.write(json.dumps(reply, default=str) + "\n")
        replies.flush()


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    # From here on, fd 1 and sys.stdout are stderr: handler output cannot reach the protocol.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(sys.argv[1], sys.stdin, replies)


if __name__ == "__main__":
    main()
