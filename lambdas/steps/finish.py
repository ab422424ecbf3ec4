"""State machine task 'finish': see batch_agent.service.steps.finish.finish_step."""

from __future__ import annotations

from typing import Any

from batch_agent.service.steps.finish import finish_step
from lambdas.steps._runtime import CLIENTS, SETTINGS


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return finish_step(CLIENTS, SETTINGS, event)
