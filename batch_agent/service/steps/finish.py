"""The finish and fail steps (Lambdas): the job's final record, or its failure with a reason."""

from __future__ import annotations

import logging
from typing import Any

from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.context import (
    ServiceClients,
    best_attempt,
    failure_message,
    higher_is_better,
    load_job,
    load_profile,
)
from batch_agent.service.steps.validate import check_submission

__all__ = ["fail_step", "failure_message", "finish_step"]

log = logging.getLogger(__name__)


def finish_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    """Publish the best submission and mark the job SUCCEEDED, or FAILED when no attempt passed."""
    job_id = state["job_id"]
    job = load_job(clients, job_id)
    profile = load_profile(clients, job_id)
    best = best_attempt(job.attempts, higher_is_better(profile.metric))
    if best is None:
        last = job.attempts[-1].reason if job.attempts else "no attempt ran"
        message = f"all {len(job.attempts)} training attempts failed; last error: {last}"
        jobs.update_job(
            clients.dynamodb, clients.table, job_id, training_seconds=round(sum(a.seconds for a in job.attempts), 2)
        )
        jobs.mark_failed(clients.dynamodb, clients.table, job_id, message)
        return {"job_id": job_id, "status": "FAILED"}
    higher = higher_is_better(profile.metric)
    n_ok = sum(a.ok for a in job.attempts)
    source = artifacts.attempt_key(job_id, best.number, "submission.csv")
    cv_score = best.cv_score
    message = (
        f"best CV {profile.metric} {best.cv_score} from attempt {best.number} ({best.program}); "
        f"{n_ok} of {len(job.attempts)} attempts passed"
    )
    blend = _usable_blend(clients, job, best, higher)
    if blend is not None:
        source, cv_score = blend["submission_key"], float(blend["cv_score"])
        mix = ", ".join(f"{name} {weight:.2f}" for name, weight in blend["weights"].items())
        message = (
            f"best CV {profile.metric} {cv_score} from a blend of {mix} (best single: {best.cv_score}); "
            f"{n_ok} of {len(job.attempts)} attempts passed"
        )
    key = artifacts.job_key(job_id, "submission.csv")
    clients.s3.copy_object(Bucket=clients.bucket, Key=key, CopySource={"Bucket": clients.bucket, "Key": source})
    leaderboard = _rank_on_leaderboard(clients, job.competition, cv_score, higher)
    if leaderboard is not None:
        message += f"; {leaderboard.pop('description')}"
    jobs.update_job(
        clients.dynamodb,
        clients.table,
        job_id,
        status="SUCCEEDED",
        stage="done",
        submission_key=key,
        cv_score=cv_score,
        best_attempt=best.number,
        blend_weights=blend["weights"] if blend is not None else None,
        leaderboard=leaderboard,
        higher_is_better=higher,
        training_seconds=round(sum(a.seconds for a in job.attempts), 2),
        message=message,
    )
    return {"job_id": job_id, "status": "SUCCEEDED"}


def _usable_blend(clients: ServiceClients, job: JobRecord, best: AttemptSummary, higher: bool) -> dict[str, Any] | None:
    """The stored blend when it beats the best single attempt and its submission passes validation."""
    from batch_agent.solver.submission import validate_submission

    blend = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.job_key(job.job_id, "blend.json"))
    if blend is None or best.cv_score is None:
        return None
    if (float(blend["cv_score"]) - best.cv_score) * (1 if higher else -1) <= 0:
        return None
    problems = check_submission(clients, job, blend["submission_key"], validate_submission)
    if problems:
        log.warning("blend submission rejected: %s", "; ".join(problems))
        return None
    result: dict[str, Any] = blend
    return result


def _rank_on_leaderboard(
    clients: ServiceClients, slug: str, score: float | None, higher: bool
) -> dict[str, Any] | None:
    from batch_agent.kaggle.leaderboard import LeaderboardSnapshot, describe_rank

    data = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.leaderboard_key(slug))
    if data is None or score is None:
        return None
    snapshot = LeaderboardSnapshot.model_validate(data)
    estimate = snapshot.rank(score, higher)
    if estimate is None:
        return None
    return {
        **estimate.model_dump(),
        "fetched_at": snapshot.fetched_at.isoformat(),
        "description": describe_rank(score, estimate),
    }


def fail_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    """The Catch path: record FAILED with the cause. A reason a step already recorded is kept."""
    job_id = state["job_id"]
    jobs.mark_failed(clients.dynamodb, clients.table, job_id, failure_message(state.get("error")), keep_message=True)
    return {"job_id": job_id, "status": "FAILED"}
