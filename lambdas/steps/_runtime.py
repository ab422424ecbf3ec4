"""Settings and AWS clients of a step Lambda, built once per container (cold start) and validated there."""

from __future__ import annotations

from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.context import ServiceClients, service_clients

SETTINGS = StepSettings()  # type: ignore[call-arg]  # fields come from the environment
CLIENTS: ServiceClients = service_clients(SETTINGS.jobs_table, SETTINGS.artifacts_bucket)


def seconds_left_in(context: object) -> float | None:
    """Seconds before Lambda stops this invocation (None outside Lambda)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else None
