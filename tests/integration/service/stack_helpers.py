"""What the service tests on the whole emulated stack share: the example competition and reads of executions."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from batch_agent.local.stack import EmulatedStack
from batch_agent.service import job_starter, jobs
from batch_agent.service.settings import ApiSettings

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "breast-cancer-diagnosis"
SLUG = "breast-cancer-diagnosis"
URL = f"https://www.kaggle.com/competitions/{SLUG}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def api_settings(stack: EmulatedStack, **overrides: Any) -> ApiSettings:
    values = {k.removeprefix("KAGGLE_SOLVER_").lower(): v for k, v in stack.pipeline_environment().items()}
    return ApiSettings.model_validate({**values, **overrides})


def executions(stack: EmulatedStack) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = stack.client("stepfunctions").list_executions(
        stateMachineArn=stack.state_machine_arn
    )["executions"]
    return found


def execution_of(stack: EmulatedStack, record: jobs.JobRecord) -> dict[str, Any]:
    arn = job_starter.execution_arn(stack.state_machine_arn, record.execution)
    description: dict[str, Any] = stack.client("stepfunctions").describe_execution(executionArn=arn)
    return description


def wait_for_execution(stack: EmulatedStack, record: jobs.JobRecord, status: str, timeout_s: float = 15) -> None:
    # A stopped execution is ABORTED once its worker sees the stop (the emulator checks every few seconds).
    deadline = time.monotonic() + timeout_s
    while (found := execution_of(stack, record)["status"]) != status:
        assert time.monotonic() < deadline, f"execution {record.execution} is {found}, not {status}"
        time.sleep(0.2)
