"""AWS Batch on one machine: each submitted job's container command runs as a local process."""


from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The environment of a Batch job's or Lambda worker's process, from the variables it sets.
Environment = Callable[[dict[str, str]], dict[str, str]]


class LocalBatch:
    """Runs each submitted job's container command as a local process; the exit code decides its status."""

    def __init__(self, environment: Environment, log_dir: Path, capacity: int, *, cwd: Path) -> None:
        self.environment = environment
        self.cwd = cwd
        self.log_dir = log_dir
        self._capacity = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped: dict[str, threading.Event] = {}
        self._terminated: dict[str, str] = {}
        self._waiting: dict[str, Any] = {}
        self._closed = False

    def running(self) -> int:
        with self._lock:
            return sum(p.poll() is None for p in self._processes.values())

    def wait_until_stopped(self, job_id: str, timeout_s: float) -> None:
        with self._lock:
            stopped = self._stopped.get(job_id)
        if stopped is not None:
            stopped.wait(timeout_s)

    def terminate(self, job_id: str, reason: str) -> None:
        """TerminateJob: a waiting job never starts, a running one's process group is killed."""
        with self._lock:
            self._terminated[job_id] = reason
            process = self._processes.get(job_id)
            waiting = self._waiting.pop(job_id, None)
        if process is not None and process.poll() is None:
            kill_group(process)
        elif waiting is not None:
            # Batch fails a RUNNABLE job at once; it never takes capacity.
            waiting.exit_code, waiting.job_stopped_reason = None, reason
            waiting._mark_stopped(success=False)
            self._finished(job_id)

    def submit(self, backend: Any, job: Any) -> None:
        with self._lock:
            self._stopped[job.job_id] = threading.Event()
            self._waiting[job.job_id] = job
        backend._jobs[job.job_id] = job
        job.log_stream_name = job._stream_name
        job.status = "RUNNABLE"
        threading.Thread(target=self._run, args=(job,), name=f"batch-{job.job_id}", daemon=True).start()

    def command_of(self, job: Any) -> list[str]:
        definition = job.job_definition.container_properties or {}
        command = list(job.container_overrides.get("command") or definition.get("command") or [])
        parameters = {**job.job_definition.parameters, **job.parameters}
        resolved = []
        for part in command:
            if part.startswith("Ref::") and part[5:] in parameters:
                part = str(parameters[part[5:]])
            resolved.append(part)
        if resolved and resolved[0] in ("python", "python3"):
            resolved[0] = sys.executable  # the image's python is this interpreter here
        return resolved

    def environment_of(self, job: Any) -> dict[str, str]:
        definition = job.job_definition.container_properties or {}
        env = {e["name"]: e["value"] for e in definition.get("environment", [])}
        env.update({e["name"]: e["value"] for e in job.container_overrides.get("environment", [])})
        env["AWS_BATCH_JOB_ID"] = job.job_id
        return self.environment(env)

    def _timeout_of(self, job: Any) -> float:
        timeout = job.timeout or job.job_definition.timeout or {}
        return float(timeout.get("attemptDurationSeconds") or 24 * 3600)

    def _run(self, job: Any) -> None:
        import datetime

        with self._capacity:
            if self._closed:
                return
            with self._lock:
                if job.job_id in self._terminated:
                    return  # terminated while it waited: already marked FAILED
                self._waiting.pop(job.job_id, None)
            command, env = self.command_of(job), self.environment_of(job)
            log_path = self.log_dir / f"batch-{job.job_name}-{job.job_id[:8]}.log"
            job.job_started_at = datetime.datetime.now()
            job._start_attempt()
            job.status = "RUNNING"
            reason = "Essential container in task exited"
            try:
                with open(log_path, "ab") as log_file:
                    process = subprocess.Popen(
                        command,
                        env=env,
                        cwd=self.cwd,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        # A process group of its own (killed as one), in the stack's session: Linux's
                        # autogroup scheduler gives every new session an equal share of the CPU
                        # whatever its nice value, so a job in a session of its own would take as
                        # much as the API and the emulator together.
                        process_group=0,
                        # Below the API and the emulator: a training job must not slow the requests.
                        preexec_fn=lower_priority,
                    )
                with self._lock:
                    self._processes[job.job_id] = process
                try:
                    code = process.wait(timeout=self._timeout_of(job))
                except subprocess.TimeoutExpired:
                    kill_group(process)
                    code = process.wait()
                    reason = "Job attempt duration exceeded timeout"
            except OSError as exc:
                code, reason = 127, f"CannotStartContainerError: {exc}"
            with self._lock:
                reason = self._terminated.get(job.job_id, reason)
            # Docker reports death by signal N as exit code 128+N.
            job.exit_code = 128 - code if code < 0 else code
            if code != 0:
                job.job_stopped_reason = reason
            log.info("batch job %s (%s) exited with %s", job.job_name, job.job_id, job.exit_code)
            job._mark_stopped(success=code == 0)
            self._finished(job.job_id)

    def _finished(self, job_id: str) -> None:
        with self._lock:
            self._processes.pop(job_id, None)
            stopped = self._stopped.pop(job_id, None)
        if stopped is not None:
            stopped.set()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            if process.poll() is None:
                kill_group(process)


# Nice value of the emulated pipeline's processes and threads (Batch jobs, Lambda workers,
# executions, the starter): CFS gives a nice-0 thread ~9 times the CPU of a nice-10 one.
BACKGROUND_NICE = 10


def lower_priority() -> None:
    os.nice(BACKGROUND_NICE)


def lower_thread_priority() -> None:
    """Lower the calling thread (Linux: priorities are per thread; threads it starts inherit it)."""
    with suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)

