"""Lambda's execution environments on one machine: warm worker processes per function configuration."""


from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from batch_agent.local.batch_runner import Environment, lower_priority


class _Worker:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.used = 0


class LambdaWorkers:
    """Warm worker processes per function configuration, like Lambda's execution environments."""

    def __init__(self, environment: Environment, log_dir: Path, max_per_function: int, *, cwd: Path) -> None:
        self.environment = environment
        self.cwd = cwd
        self.log_dir = log_dir
        self.max_per_function = max_per_function
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, ...], list[_Worker]] = {}
        self._slots: dict[tuple[str, ...], threading.BoundedSemaphore] = {}
        self._all: list[_Worker] = []

    def invoke(self, fn: Any, body: Any) -> tuple[bytes, bool]:
        env_vars = dict(fn.environment_vars or {})
        key = (fn.function_name, fn.handler, json.dumps(env_vars, sort_keys=True))
        with self._lock:
            slots = self._slots.setdefault(key, threading.BoundedSemaphore(self.max_per_function))
        event = json.loads(body) if body else {}
        with slots:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                worker = idle.pop() if idle else None
            if worker is None or worker.process.poll() is not None:
                worker = self._spawn(fn, env_vars)
            reply = self._call(worker, event, float(fn.timeout or 900))
            if worker.process.poll() is None:
                with self._lock:
                    self._idle.setdefault(key, []).append(worker)
        return json.dumps(reply["payload"]).encode(), not reply["ok"]

    def _spawn(self, fn: Any, env_vars: dict[str, str]) -> _Worker:
        env = self.environment(
            {
                **env_vars,
                "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout or 900),
            }
        )
        log_file = open(self.log_dir / f"lambda-{fn.function_name}.log", "ab")  # noqa: SIM115 - lives with the worker
        process = subprocess.Popen(
            [sys.executable, "-m", "batch_agent.local.lambda_worker", fn.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            cwd=self.cwd,
            text=True,
            # Below the API and the emulator, as the Batch jobs are.
            preexec_fn=lower_priority,
        )
        log_file.close()  # the child holds its own descriptor
        worker = _Worker(process)
        with self._lock:
            self._all.append(worker)
        return worker

    @staticmethod
    def _call(worker: _Worker, event: Any, timeout_s: float) -> dict[str, Any]:
        process = worker.process
        assert process.stdin is not None and process.stdout is not None
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        try:
            process.stdin.write(json.dumps({"event": event}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        finally:
            timer.cancel()
        worker.used += 1
        if not line:
            process.kill()
            message = f"the function's process exited (code {process.wait()}) before it replied"
            if process.returncode == -signal.SIGKILL:
                message = f"Task timed out after {timeout_s:.0f} seconds"
            return {"ok": False, "payload": {"errorMessage": message, "errorType": "Runtime.ExitError"}}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], {}
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


