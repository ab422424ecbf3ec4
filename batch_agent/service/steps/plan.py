"""The plan step (a Lambda): approach, compute and time split from the profile."""

from __future__ import annotations

from typing import Any

from batch_agent.service import artifacts, jobs
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.authors import author_for, record_llm_usage
from batch_agent.service.steps.context import ServiceClients, load_job, load_profile

# ---------------------------------------------------------------- Lambda steps


def plan_step(
    clients: ServiceClients,
    settings: StepSettings,
    state: dict[str, Any],
    *,
    invocation_seconds_left: float | None = None,
) -> dict[str, Any]:
    job_id = state["job_id"]
    job = load_job(clients, job_id)
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "plan", message="planning")
    profile = load_profile(clients, job_id)
    author = author_for(settings, job, invocation_seconds_left=invocation_seconds_left)
    plan = author.plan(profile, float(job.time_limit))
    record_llm_usage(clients, job_id, author)
    if job.compute in ("cpu", "gpu"):
        plan = plan.model_copy(update={"compute": job.compute})
    artifacts.put_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "plan.json"), plan.model_dump())
    jobs.update_job(clients.dynamodb, clients.table, job_id, message=f"plan: {plan.approach} on {plan.compute}")
    return {"job_id": job_id, "compute": plan.compute}


