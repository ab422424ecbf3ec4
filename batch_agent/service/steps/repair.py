"""The repair step (a Lambda): a failed program's fix, or an improvement of the best one."""

from __future__ import annotations

from typing import Any

from batch_agent.service import jobs
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.authors import author_for, record_llm_usage
from batch_agent.service.steps.context import (
    ServiceClients,
    best_attempt,
    carried_state,
    higher_is_better,
    load_job,
    load_plan,
    load_profile,
    load_program,
    load_queue,
    load_result,
    save_program,
    save_queue,
)
from batch_agent.solver.plan import Program


def repair_step(
    clients: ServiceClients,
    settings: StepSettings,
    state: dict[str, Any],
    *,
    invocation_seconds_left: float | None = None,
) -> dict[str, Any]:
    """The next program: a repair of a failed attempt, a queued draft, or an improvement of the best."""
    job_id, attempt = state["job_id"], int(state["attempt"])
    job = load_job(clients, job_id)
    failed = state.get("next") == "repair"
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "repair" if failed else "improve", attempt=attempt)
    author = author_for(settings, job, invocation_seconds_left=invocation_seconds_left)
    profile = load_profile(clients, job_id)
    queue = load_queue(clients, job_id)
    program: Program | None = None
    if failed:
        last = load_result(clients, job_id, attempt)
        if last is not None:
            program = author.repair(profile, load_program(clients, job_id, attempt), last)
    if program is None and queue:
        program = queue.pop(0)
        save_queue(clients, job_id, queue)
    if program is None and not failed:
        best = best_attempt(job.attempts, higher_is_better(profile.metric))
        if best is not None:
            history = [r for r in (load_result(clients, job_id, a.number) for a in job.attempts) if r is not None]
            best_program = load_program(clients, job_id, best.number)
            program = author.improve(profile, load_plan(clients, job_id), best_program, history)
    record_llm_usage(clients, job_id, author)
    if program is None:
        return {**carried_state(state), "next": "finish"}
    save_program(clients, job_id, attempt + 1, program)
    return {**carried_state(state), "attempt": attempt + 1, "attempt_label": str(attempt + 1), "next": "train"}


