"""State machine task 'validate': see batch_agent.service.steps.validate.validate_step."""

from __future__ import annotations

from typing import Any

from batch_agent.service.steps.validate import validate_step
from lambdas.steps._runtime import CLIENTS, SETTINGS


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return validate_step(CLIENTS, SETTINGS, event)
