"""The validate step (a Lambda): check an attempt's submission and decide what comes next."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.context import (
    FINISH_RESERVE_SECONDS,
    MIN_ATTEMPT_SECONDS,
    ServiceClients,
    best_attempt,
    carried_state,
    failure_message,
    higher_is_better,
    load_job,
    load_profile,
    load_program,
    load_result,
    seconds_left,
)
from batch_agent.solver.errors import SolverError
from batch_agent.solver.plan import AttemptResult


def validate_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    """Check the attempt's submission against the competition, record the attempt, decide what comes next."""
    from batch_agent.solver.submission import validate_submission

    job_id, attempt = state["job_id"], int(state["attempt"])
    job = load_job(clients, job_id)
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "validate", attempt=attempt)
    result = load_result(clients, job_id, attempt)
    if result is None:
        program = load_program(clients, job_id, attempt)
        result = AttemptResult(
            number=attempt,
            program=program.name,
            origin=program.origin,
            ok=False,
            seconds=0.0,
            reason=(
                failure_message(state["train_error"])
                if state.get("train_error")
                else "the training job wrote no result"
            ),
            workdir="",
        )
    elif result.ok:
        key = artifacts.attempt_key(job_id, attempt, "submission.csv")
        problems = check_submission(clients, job, key, validate_submission)
        if problems:
            result = result.model_copy(update={"ok": False, "reason": "invalid submission: " + "; ".join(problems)})
    artifacts.put_json(
        clients.s3, clients.bucket, artifacts.attempt_key(job_id, attempt, "result.json"), result.model_dump()
    )
    summary = AttemptSummary(
        number=attempt,
        program=result.program,
        origin=result.origin,
        ok=result.ok,
        cv_score=result.cv_score,
        claimed_cv_score=result.claimed_cv_score,
        claim_disagrees=result.claim_disagrees,
        holdout_score=result.holdout_score,
        holdout_noise=result.holdout_noise,
        holdout_rows=result.holdout_rows,
        seconds=result.seconds,
        reason=result.reason,
        isolation=result.isolation,
    )
    attempts = [a for a in job.attempts if a.number != attempt] + [summary]
    profile = load_profile(clients, job_id)
    best = best_attempt(attempts, higher_is_better(profile.metric))
    message = (
        f"attempt {attempt} scored {result.cv_score}" if result.ok else f"attempt {attempt} failed: {result.reason}"
    )
    if result.claim_disagrees:
        message += f" (the program claimed {result.claimed_cv_score}, which disagrees)"
    jobs.update_job(
        clients.dynamodb,
        clients.table,
        job_id,
        attempts=attempts,
        message=message,
        cv_score=best.cv_score if best else None,
        best_attempt=best.number if best else None,
    )
    if len(attempts) >= job.max_attempts or seconds_left(job) < MIN_ATTEMPT_SECONDS + FINISH_RESERVE_SECONDS:
        next_step = "finish"
    else:
        next_step = "improve" if result.ok else "repair"
    return {**carried_state(state), "next": next_step}


def check_submission(clients: ServiceClients, job: JobRecord, key: str, validate: Any) -> list[str]:
    profile = load_profile(clients, job.job_id)
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        folder = Path(tmp)
        for name in (profile.sample_submission_file, profile.test_file):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            prefix = (artifacts.cache_prefix(job.competition) if profile.shape.kind == "table"
                      else artifacts.flat_prefix(job.competition))
            cached = prefix + name
            if not artifacts.exists(clients.s3, clients.bucket, cached):
                raise SolverError(
                    f"the competition's {name} is missing from the cache s3://{clients.bucket}/{cached}; "
                    "the prepare step should have put it there"
                )
            clients.s3.download_file(clients.bucket, cached, str(target))
        submission = folder / "submission.csv"
        if not artifacts.exists(clients.s3, clients.bucket, key):
            return ["the program wrote no submission.csv"]
        clients.s3.download_file(clients.bucket, key, str(submission))
        problems: list[str] = validate(submission, profile.model_copy(update={"data_dir": str(folder)}))
        return problems


