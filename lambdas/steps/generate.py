"""State machine task 'generate': see batch_agent.service.steps.generate.generate_step."""

from __future__ import annotations

from typing import Any

from batch_agent.service.steps.generate import generate_step
from lambdas.steps._runtime import CLIENTS, SETTINGS, seconds_left_in


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return generate_step(CLIENTS, SETTINGS, event, invocation_seconds_left=seconds_left_in(context))
