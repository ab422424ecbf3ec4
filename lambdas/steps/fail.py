"""State machine task 'fail': see batch_agent.service.steps.finish.fail_step."""

from __future__ import annotations

from typing import Any

from batch_agent.service.steps.finish import fail_step
from lambdas.steps._runtime import CLIENTS, SETTINGS


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return fail_step(CLIENTS, SETTINGS, event)
