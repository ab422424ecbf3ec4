"""State machine task 'repair': see batch_agent.service.steps.repair.repair_step."""

from __future__ import annotations

from typing import Any

from batch_agent.service.steps.repair import repair_step
from lambdas.steps._runtime import CLIENTS, SETTINGS, seconds_left_in


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return repair_step(CLIENTS, SETTINGS, event, invocation_seconds_left=seconds_left_in(context))
