"""What each step of the service pipeline does; the Lambda handlers and the Batch entrypoint call these.

The state machine carries a small state between steps::

    {"job_id": str, "compute": "cpu"|"gpu", "attempt": int, "attempt_label": str,
     "next": "repair"|"improve"|"train"|"finish", "status": ..., "error": {...}}

Everything else (profile, plan, programs, results) lives in S3 under
``jobs/{job_id}/`` and the job record in DynamoDB. Lambda steps (plan, generate,
validate, repair, finish, fail) import nothing heavy at module level; the Batch
steps (prepare, train) import pandas-based code inside their functions.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord
from batch_agent.service.settings import ContainerSettings, StepSettings
from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import SolverError
from batch_agent.solver.plan import AttemptResult, Plan, Program

log = logging.getLogger(__name__)

# An attempt shorter than this cannot train anything useful: no new attempt starts
# with less time left, and a started one always gets at least this much.
MIN_ATTEMPT_SECONDS = 10.0
# Time kept back from each attempt for validate and finish.
FINISH_RESERVE_SECONDS = 5.0
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class ServiceClients:
    """The AWS clients and resource names one deployable works with (built once per process)."""

    dynamodb: Any
    s3: Any
    table: str
    bucket: str


def service_clients(table: str, bucket: str) -> ServiceClients:
    # boto3 reads AWS_ENDPOINT_URL itself, so the same code talks to AWS, moto or LocalStack.
    return ServiceClients(dynamodb=boto3.client("dynamodb"), s3=boto3.client("s3"), table=table, bucket=bucket)


# ---------------------------------------------------------------- shared reads


def _job(clients: ServiceClients, job_id: str) -> JobRecord:
    return jobs.require_job(clients.dynamodb, clients.table, job_id)


def _profile(clients: ServiceClients, job_id: str, data_dir: Path | None = None) -> CompetitionProfile:
    profile = CompetitionProfile.model_validate(
        artifacts.get_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "profile.json"))
    )
    return profile.model_copy(update={"data_dir": str(data_dir)}) if data_dir else profile


def _plan(clients: ServiceClients, job_id: str) -> Plan:
    return Plan.model_validate(artifacts.get_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "plan.json")))


def _program(clients: ServiceClients, job_id: str, attempt: int) -> Program:
    key = artifacts.attempt_key(job_id, attempt, "program.json")
    return Program.model_validate(artifacts.get_json(clients.s3, clients.bucket, key))


def _result(clients: ServiceClients, job_id: str, attempt: int) -> AttemptResult | None:
    data = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.attempt_key(job_id, attempt, "result.json"))
    return AttemptResult.model_validate(data) if data is not None else None


def _queue(clients: ServiceClients, job_id: str) -> list[Program]:
    data = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.job_key(job_id, "queue.json")) or []
    return [Program.model_validate(p) for p in data]


def _save_queue(clients: ServiceClients, job_id: str, programs: list[Program]) -> None:
    key = artifacts.job_key(job_id, "queue.json")
    artifacts.put_json(clients.s3, clients.bucket, key, [p.model_dump() for p in programs])


def _save_program(clients: ServiceClients, job_id: str, attempt: int, program: Program) -> None:
    key = artifacts.attempt_key(job_id, attempt, "program.json")
    artifacts.put_json(clients.s3, clients.bucket, key, program.model_dump())


def seconds_left(job: JobRecord) -> float:
    return job.time_limit - jobs.seconds_since(job.created_at)


def higher_is_better(metric: str) -> bool:
    from batch_agent.solver.metrics import get_metric

    try:
        return get_metric(metric).higher_is_better
    except SolverError:
        log.warning("unknown metric %r: assuming higher scores are better", metric)
        return True


def best_attempt(attempts: list[AttemptSummary], higher: bool) -> AttemptSummary | None:
    scored = [a for a in attempts if a.ok]
    if not scored:
        return None

    def key(a: AttemptSummary) -> float:
        if a.cv_score is None:
            return float("-inf")
        return a.cv_score if higher else -a.cv_score

    return max(scored, key=key)


# ---------------------------------------------------------------- authors


def author_for(settings: StepSettings, job: JobRecord | None = None) -> ProgramAuthor:
    """The program author the settings name: Claude when a key is configured (auto), templates otherwise.

    A Claude author resumes the job's LLM usage (tally, cost ceiling, fallback) from
    its record, so the ceiling holds across steps in separate Lambda invocations.
    """
    choice = settings.author
    if ":" in choice:
        module, _, attr = choice.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        author: ProgramAuthor = factory()
        return author
    if choice == "claude" or (choice == "auto" and settings.anthropic_secret_arn):
        if not settings.anthropic_secret_arn:
            raise SolverError("author 'claude' needs KAGGLE_SOLVER_ANTHROPIC_SECRET_ARN")
        return _claude_author(_secret_string(settings.anthropic_secret_arn), job)
    from batch_agent.solver.templates import TemplateAuthor

    return TemplateAuthor()


def _record_llm_usage(clients: ServiceClients, job_id: str, author: ProgramAuthor) -> None:
    usage = getattr(author, "usage", None)
    if callable(usage):
        jobs.update_job(clients.dynamodb, clients.table, job_id, llm_usage=usage())


def _secret_string(secret_arn: str) -> str:
    value: str = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    # The secret holds the bare key or {"api_key": "..."}.
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        value = str(data.get("api_key") or data.get("ANTHROPIC_API_KEY") or "")
    return value.strip()


def _claude_author(api_key: str, job: JobRecord | None) -> ProgramAuthor:
    from pydantic import SecretStr

    from batch_agent.llm.author import resume_author
    from batch_agent.llm.calls import LLMSettings
    from batch_agent.solver.templates import TemplateAuthor

    return resume_author(
        LLMSettings(api_key=SecretStr(api_key)),
        fallback=TemplateAuthor(),
        usage=job.llm_usage if job else None,
        seconds_left=seconds_left(job) if job else None,
    )


# ---------------------------------------------------------------- competition files


def fetch_competition(clients: ServiceClients, settings: ContainerSettings, slug: str) -> Path:
    """A local folder with the competition's files: a local cache, else the S3 cache, else Kaggle.

    A Kaggle download is uploaded to ``cache/{slug}/`` so later jobs on the same
    competition (on any machine) skip the download.
    """
    prefix = artifacts.cache_prefix(slug)
    if settings.local_cache_dir:
        local = (Path(settings.local_cache_dir) / slug).resolve()
        if local.is_dir() and any(local.iterdir()):
            # The Lambda steps read the competition from S3: make sure it is there too.
            if not artifacts.list_keys(clients.s3, clients.bucket, prefix, limit=1):
                artifacts.upload_folder(clients.s3, clients.bucket, prefix, local)
            return local
    folder = Path(settings.work_dir) / "cache" / slug
    # The marker sits beside the folder: inside it, profiling would list it as a competition file.
    marker = folder.with_name(slug + _COMPLETE_MARKER)
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    if artifacts.download_prefix(clients.s3, clients.bucket, prefix, folder) == 0:
        from batch_agent.kaggle.client import download_competition

        downloaded = Path(download_competition(slug, folder))
        artifacts.upload_folder(clients.s3, clients.bucket, prefix, downloaded)
        if downloaded != folder:
            return downloaded
    marker.touch()
    return folder


# ---------------------------------------------------------------- Batch steps


def _save_leaderboard(clients: ServiceClients, slug: str) -> None:
    """Best effort: a snapshot of the public leaderboard, so finish can rank the CV score without Kaggle."""
    from batch_agent.kaggle.client import KaggleOptions, fetch_leaderboard_snapshot

    try:
        snapshot = fetch_leaderboard_snapshot(slug, options=KaggleOptions(max_attempts=2))
    except (SolverError, ValueError, OSError) as exc:
        log.info("no leaderboard snapshot for %s: %s", slug, exc)
        return
    artifacts.put_json(clients.s3, clients.bucket, artifacts.leaderboard_key(slug), snapshot.model_dump(mode="json"))


def record_compute(clients: ServiceClients, settings: ContainerSettings, job_id: str, seconds: float) -> None:
    """Add one Batch job's wall-clock (and its price, when the container knows its rate) to the job."""
    amounts = {"compute_seconds": round(seconds, 2)}
    if settings.usd_per_hour is not None:
        amounts["compute_cost_usd"] = round(seconds * settings.usd_per_hour / 3600, 6)
    jobs.add_to_job(clients.dynamodb, clients.table, job_id, **amounts)


def prepare_job(clients: ServiceClients, settings: ContainerSettings, job_id: str) -> CompetitionProfile:
    """Fetch the competition and write jobs/{id}/profile.json. A SolverError marks the job FAILED."""
    job = _job(clients, job_id)
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "prepare", message="fetching and profiling the data")
    try:
        from batch_agent.solver.profiling import profile_competition

        data_dir = fetch_competition(clients, settings, job.competition)
        profile = profile_competition(data_dir)
    except SolverError as exc:
        jobs.mark_failed(clients.dynamodb, clients.table, job_id, str(exc))
        raise
    artifacts.put_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "profile.json"), profile.model_dump())
    _save_leaderboard(clients, job.competition)
    jobs.update_job(
        clients.dynamodb,
        clients.table,
        job_id,
        message=f"{profile.task} on {profile.n_train} rows, metric {profile.metric}",
    )
    return profile


def train_job(clients: ServiceClients, settings: ContainerSettings, job_id: str, attempt: int) -> AttemptResult:
    """Run attempt n's program in the sandbox and store its result and files under attempts/{n}/."""
    from batch_agent.solver.solve import run_attempt

    job = _job(clients, job_id)
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "train", attempt=attempt, message="training")
    data_dir = fetch_competition(clients, settings, job.competition)
    profile = _profile(clients, job_id, data_dir)
    program = _program(clients, job_id, attempt)
    attempt_dir = Path(settings.work_dir) / "jobs" / job_id / "attempts" / str(attempt)
    shutil.rmtree(attempt_dir, ignore_errors=True)
    attempt_dir.mkdir(parents=True)
    budget = max(seconds_left(job) - FINISH_RESERVE_SECONDS, MIN_ATTEMPT_SECONDS)
    result = run_attempt(
        profile,
        program,
        attempt_dir,
        time_budget=budget,
        memory_limit_mb=settings.memory_limit_mb,
        number=attempt,
    )
    prefix = artifacts.attempt_key(job_id, attempt, "")
    artifacts.upload_folder(clients.s3, clients.bucket, prefix, attempt_dir, skip_large=True)
    artifacts.put_json(clients.s3, clients.bucket, prefix + "result.json", result.model_dump())
    if result.ok:
        try:
            _blend_so_far(clients, settings, job, profile, result)
        except (ValueError, OSError, KeyError, IndexError, ArithmeticError) as exc:
            # A blend is a bonus over the best single attempt; its failure must not fail the attempt.
            log.warning("blending after attempt %d failed: %s", attempt, exc)
    return result


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
        if not (folder / "oof.npy").exists():
            artifacts.download_prefix(
                clients.s3, clients.bucket, artifacts.attempt_key(job.job_id, summary.number, ""), folder
            )
        result = _result(clients, job.job_id, summary.number)
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


# ---------------------------------------------------------------- Lambda steps


def plan_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    job_id = state["job_id"]
    job = _job(clients, job_id)
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "plan", message="planning")
    profile = _profile(clients, job_id)
    author = author_for(settings, job)
    plan = author.plan(profile, float(job.time_limit))
    _record_llm_usage(clients, job_id, author)
    if job.compute in ("cpu", "gpu"):
        plan = plan.model_copy(update={"compute": job.compute})
    artifacts.put_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "plan.json"), plan.model_dump())
    jobs.update_job(clients.dynamodb, clients.table, job_id, message=f"plan: {plan.approach} on {plan.compute}")
    return {"job_id": job_id, "compute": plan.compute}


def generate_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    job_id = state["job_id"]
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "generate", message="writing the training program")
    author = author_for(settings, _job(clients, job_id))
    programs = author.draft(_profile(clients, job_id), _plan(clients, job_id))
    _record_llm_usage(clients, job_id, author)
    if not programs:
        raise SolverError("the author wrote no program for this competition")
    _save_program(clients, job_id, 1, programs[0])
    _save_queue(clients, job_id, programs[1:])
    return {**_carry(state), "attempt": 1, "attempt_label": "1"}


def validate_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    """Check the attempt's submission against the competition, record the attempt, decide what comes next."""
    from batch_agent.solver.submission import validate_submission

    job_id, attempt = state["job_id"], int(state["attempt"])
    job = _job(clients, job_id)
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "validate", attempt=attempt)
    result = _result(clients, job_id, attempt)
    if result is None:
        program = _program(clients, job_id, attempt)
        result = AttemptResult(
            number=attempt,
            program=program.name,
            origin=program.origin,
            ok=False,
            seconds=0.0,
            reason="the training job wrote no result",
            workdir="",
        )
    elif result.ok:
        key = artifacts.attempt_key(job_id, attempt, "submission.csv")
        problems = _check_submission(clients, job, key, validate_submission)
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
        seconds=result.seconds,
        reason=result.reason,
    )
    attempts = [a for a in job.attempts if a.number != attempt] + [summary]
    profile = _profile(clients, job_id)
    best = best_attempt(attempts, higher_is_better(profile.metric))
    message = (
        f"attempt {attempt} scored {result.cv_score}" if result.ok else f"attempt {attempt} failed: {result.reason}"
    )
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
    return {**_carry(state), "next": next_step}


def _check_submission(clients: ServiceClients, job: JobRecord, key: str, validate: Any) -> list[str]:
    profile = _profile(clients, job.job_id)
    with tempfile.TemporaryDirectory(prefix="validate-") as tmp:
        folder = Path(tmp)
        for name in (profile.sample_submission_file, profile.test_file):
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            clients.s3.download_file(clients.bucket, artifacts.cache_prefix(job.competition) + name, str(target))
        submission = folder / "submission.csv"
        if not artifacts.exists(clients.s3, clients.bucket, key):
            return ["the program wrote no submission.csv"]
        clients.s3.download_file(clients.bucket, key, str(submission))
        problems: list[str] = validate(submission, profile.model_copy(update={"data_dir": str(folder)}))
        return problems


def repair_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    """The next program: a repair of a failed attempt, a queued draft, or an improvement of the best."""
    job_id, attempt = state["job_id"], int(state["attempt"])
    job = _job(clients, job_id)
    failed = state.get("next") == "repair"
    jobs.mark_stage(clients.dynamodb, clients.table, job_id, "repair" if failed else "improve", attempt=attempt)
    author = author_for(settings, job)
    profile = _profile(clients, job_id)
    queue = _queue(clients, job_id)
    program: Program | None = None
    if failed:
        last = _result(clients, job_id, attempt)
        if last is not None:
            program = author.repair(profile, _program(clients, job_id, attempt), last)
    if program is None and queue:
        program = queue.pop(0)
        _save_queue(clients, job_id, queue)
    if program is None and not failed:
        best = best_attempt(job.attempts, higher_is_better(profile.metric))
        if best is not None:
            history = [r for r in (_result(clients, job_id, a.number) for a in job.attempts) if r is not None]
            program = author.improve(profile, _plan(clients, job_id), _program(clients, job_id, best.number), history)
    _record_llm_usage(clients, job_id, author)
    if program is None:
        return {**_carry(state), "next": "finish"}
    _save_program(clients, job_id, attempt + 1, program)
    return {**_carry(state), "attempt": attempt + 1, "attempt_label": str(attempt + 1), "next": "train"}


def finish_step(clients: ServiceClients, settings: StepSettings, state: dict[str, Any]) -> dict[str, Any]:
    """Publish the best submission and mark the job SUCCEEDED, or FAILED when no attempt passed."""
    job_id = state["job_id"]
    job = _job(clients, job_id)
    profile = _profile(clients, job_id)
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
    problems = _check_submission(clients, job, blend["submission_key"], validate_submission)
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


def failure_message(error: Any) -> str:
    """A one-line reason from a Step Functions error object {"Error": ..., "Cause": ...}."""
    if not isinstance(error, dict):
        return "the pipeline failed"
    name = str(error.get("Error") or "Error")
    cause_text = error.get("Cause") or ""
    try:
        cause = json.loads(cause_text) if cause_text else {}
    except json.JSONDecodeError:
        cause = {}
    if isinstance(cause, dict) and "errorMessage" in cause:  # a Lambda step raised
        return f"{cause.get('errorType', name)}: {cause['errorMessage']}"[:1000]
    if isinstance(cause, dict) and _get(cause, "jobName"):  # a Batch job failed
        container = _get(cause, "container") or {}
        exit_code = _get(container, "exitCode")
        reason = _get(cause, "statusReason") or _get(container, "reason") or "the job failed"
        step = str(_get(cause, "jobName")).split("-")[0]
        return f"{step} job failed: {reason}" + (f" (exit code {exit_code})" if exit_code is not None else "")
    return f"{name}: {cause_text}"[:1000] if cause_text else name


def _get(data: dict[str, Any], key: str) -> Any:
    # Step Functions reports Batch's describe-jobs output with PascalCase keys; accept both spellings.
    return data.get(key, data.get(key[:1].upper() + key[1:]))


def _carry(state: dict[str, Any]) -> dict[str, Any]:
    keep = ("job_id", "compute", "attempt", "attempt_label")
    return {k: state[k] for k in keep if k in state}
