"""The starter Lambda: the jobs table's stream (new jobs) and a schedule (the sweep).

See batch_agent.service.job_starter.
"""

from __future__ import annotations

from typing import Any

from batch_agent.service import job_starter
from batch_agent.service.settings import StarterSettings

SETTINGS = StarterSettings()  # type: ignore[call-arg]  # fields come from the environment
CLIENTS = job_starter.pipeline_clients(max_connections=8)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    if "Records" in event:
        return job_starter.handle_stream_records(CLIENTS, SETTINGS, event["Records"])
    return {"swept": job_starter.sweep(CLIENTS, SETTINGS)}
