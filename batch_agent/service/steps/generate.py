"""The generate step (a Lambda): the queue of programs to train."""

from __future__ import annotations

from typing import Any

from batch_agent.service import jobs
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.authors import author_for, record_llm_usage
from batch_agent.service.steps.context import (
    ServiceClients,
    carried_state,
    load_job,
    load_plan,
    load_profile,
    save_program,
    save_queue,
)
from batch_agent.solver.errors import SolverError


def generate_step(
    clients: ServiceClients,
    settings: StepSettings,
    state: dict[str, Any],
    *,
    invocation_seconds_left: float | None = None,
) -> dict[str, Any]:
    job_id = state["job_id"]
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "generate", message="writing the training program")
    author = author_for(settings, load_job(clients, job_id), invocation_seconds_left=invocation_seconds_left)
    programs = author.draft(load_profile(clients, job_id), load_plan(clients, job_id))
    record_llm_usage(clients, job_id, author)
    if not programs:
        raise SolverError("the author wrote no program for this competition")
    save_program(clients, job_id, 1, programs[0])
    save_queue(clients, job_id, programs[1:])
    return {**carried_state(state), "attempt": 1, "attempt_label": "1"}


