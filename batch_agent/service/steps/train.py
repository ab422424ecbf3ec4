"""The train step (a Batch job): run one attempt's program, store its outputs, blend what succeeded so far."""

from __future__ import annotations

import logging
from pathlib import Path

from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import JobRecord
from batch_agent.service.settings import ContainerSettings
from batch_agent.service.steps.context import (
    FINISH_RESERVE_SECONDS,
    MIN_ATTEMPT_SECONDS,
    ServiceClients,
    higher_is_better,
    load_job,
    load_profile,
    load_program,
    load_result,
    seconds_left,
)
from batch_agent.service.steps.prepare import fetch_competition, training_folder
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import SolverError
from batch_agent.solver.plan import AttemptResult

log = logging.getLogger(__name__)

# Kept back from the Batch attempt timeout for fetching the data before training and storing results after.
ATTEMPT_TIMEOUT_MARGIN_SECONDS = 300.0


def train_job(clients: ServiceClients, settings: ContainerSettings, job_id: str, attempt: int) -> AttemptResult:
    """Run attempt n's program in the sandbox and store its result and files under attempts/{n}/.

    The result holds the product's scores, computed here after the program ended (``run_attempt``):
    oof.csv against the labels, and for a model-written program its hidden holdout.
    """
    from batch_agent.solver.solve import run_attempt

    job = load_job(clients, job_id)
    if not jobs.mark_stage(
        clients.dynamodb,
        clients.table,
        job_id,
        "train",
        attempt=attempt,
        message="training",
        batch_job_id=settings.batch_job_id,
    ):
        raise SolverError(f"job {job_id} has already ended ({load_job(clients, job_id).status}); nothing to train")
    original = fetch_competition(clients, settings, job.competition, download=False)
    profile = load_profile(clients, job_id)
    profile = profile.model_copy(update={"data_dir": str(
        training_folder(clients, settings, job.competition, profile, original))})
    program = load_program(clients, job_id, attempt)
    attempt_dir = Path(settings.work_dir) / "jobs" / job_id / "attempts" / str(attempt)
    budget = training_budget(seconds_left(job), settings.attempt_timeout_s)
    result = run_attempt(
        profile,
        program,
        attempt_dir,
        time_budget=budget,
        memory_limit_mb=settings.memory_limit_mb,
        number=attempt,
        allow_unisolated=settings.allow_unisolated,
    )
    log.info("attempt %d ran %s", attempt, result.isolation)
    prefix = artifacts.attempt_key(job_id, attempt, "")
    artifacts.upload_attempt_folder(clients.s3, clients.bucket, prefix, attempt_dir)
    artifacts.put_json(clients.s3, clients.bucket, prefix + "result.json", result.model_dump())
    if result.ok:
        try:
            _blend_so_far(clients, settings, job, profile, result)
        except (ValueError, OSError, KeyError, IndexError, ArithmeticError) as exc:
            # A blend is a bonus over the best single attempt; its failure must not fail the attempt.
            log.warning("blending after attempt %d failed: %s", attempt, exc)
    return result


def training_budget(job_seconds_left: float, attempt_timeout_s: int | None) -> float:
    """Seconds a program may train: the job's time left, and never past the Batch attempt timeout.

    Batch kills the container at its attempt timeout; the fetch before training and the
    upload and blend after it must fit inside that too, so a margin is kept back.
    """
    budget = job_seconds_left - FINISH_RESERVE_SECONDS
    if attempt_timeout_s is not None:
        margin = min(ATTEMPT_TIMEOUT_MARGIN_SECONDS, attempt_timeout_s * 0.25)
        budget = min(budget, attempt_timeout_s - margin)
    return max(budget, MIN_ATTEMPT_SECONDS)


def _blend_so_far(
    clients: ServiceClients,
    settings: ContainerSettings,
    job: JobRecord,
    profile: CompetitionProfile,
    latest: AttemptResult,
) -> None:
    """Blend every successful attempt so far (as `kaggle-solver run` does); keep the best blend in S3.

    Writes jobs/{id}/blend/{n}/submission.csv and jobs/{id}/blend.json
    ({"after_attempt", "cv_score", "weights", "submission_key"}) when a blend beats
    the best single attempt and the blend stored before it.
    """
    from batch_agent.solver.blend import blend_attempts

    others = [a for a in job.attempts if a.ok and a.number != latest.number]
    if not others:
        return
    results = [latest]
    for summary in others:
        folder = Path(settings.work_dir) / "jobs" / job.job_id / "attempts" / str(summary.number)
        if not (folder / "oof.csv").exists():
            artifacts.download_prefix(
                clients.s3, clients.bucket, artifacts.attempt_key(job.job_id, summary.number, ""), folder
            )
        result = load_result(clients, job.job_id, summary.number)
        if result is not None and result.ok:
            results.append(result.model_copy(update={"workdir": str(folder)}))
    higher = higher_is_better(profile.metric)
    outdir = Path(settings.work_dir) / "jobs" / job.job_id / "blend" / str(latest.number)
    budget = min(60.0, max(5.0, seconds_left(job) - FINISH_RESERVE_SECONDS))
    final = blend_attempts(profile, results, outdir, higher_is_better=higher, time_budget=budget)
    if final.name != "blend":
        return
    stored = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.job_key(job.job_id, "blend.json"))
    if stored is not None and (stored["cv_score"] - final.cv_score) * (1 if higher else -1) >= 0:
        return
    key = artifacts.job_key(job.job_id, "blend", latest.number, "submission.csv")
    clients.s3.upload_file(str(final.submission), clients.bucket, key)
    artifacts.put_json(
        clients.s3,
        clients.bucket,
        artifacts.job_key(job.job_id, "blend.json"),
        {"after_attempt": latest.number, "cv_score": final.cv_score, "weights": final.weights, "submission_key": key},
    )


