"""What the API does with a request: start a job, show its status, hand out its files and logs.

The FastAPI routes in ``lambdas/api`` parse HTTP and call one function here.
A job's DynamoDB item is written before its Step Functions execution starts (the
execution is named by the job id, so starting it again is harmless); when the
start fails, the job is marked FAILED with the reason, so no job is left QUEUED
without an execution. Stdlib + boto3 + pydantic only (the API Lambda imports it).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field

from batch_agent.kaggle.urls import competition_slug
from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord, JobStatus
from batch_agent.service.settings import ApiSettings
from batch_agent.solver.errors import InputError, SolverError

# Job ids made from an idempotency key: the same key always names the same job.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("7b0f5d1e-2f43-4c8e-9a52-5f0d7c1b9e21")


class JobNotReadyError(SolverError):
    """The job has no submission yet (HTTP 409)."""


class JobStartError(SolverError):
    """The job was recorded but its execution could not be started; it is now FAILED (HTTP 503)."""


class RunRequest(BaseModel):
    url: str = Field(description="Kaggle competition URL, e.g. https://www.kaggle.com/competitions/titanic")
    time_limit: int | None = Field(default=None, ge=10, description="seconds for the whole job")
    max_attempts: int | None = Field(default=None, ge=1, description="training attempts at most")
    compute: Literal["auto", "cpu", "gpu"] = "auto"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[\w.:-]+$")


class JobStarted(BaseModel):
    job_id: str
    status: JobStatus
    status_url: str = ""


class JobStatusView(BaseModel):
    job_id: str
    url: str
    competition: str
    status: JobStatus
    stage: str
    attempt: int
    message: str
    cv_score: float | None
    created_at: str
    updated_at: str
    time_limit: int
    max_attempts: int
    compute: str
    attempts: list[AttemptSummary]
    leaderboard: dict[str, Any] | None = None
    higher_is_better: bool | None = None
    training_seconds: float = 0.0
    blend_weights: dict[str, float] | None = None
    llm_usage: dict[str, Any] | None = None
    compute_seconds: float = 0.0
    compute_cost_usd: float = 0.0
    # compute_cost_usd + the LLM's cost; None while neither is priced.
    cost_usd: float | None = None
    submission_url: str | None = None


class AttemptLog(BaseModel):
    number: int
    program: str
    ok: bool
    reason: str | None
    log_tail: str


class JobLogs(BaseModel):
    job_id: str
    attempts: list[AttemptLog]


class JobPage(BaseModel):
    jobs: list[JobStatusView]
    next_cursor: str | None


@dataclass(frozen=True)
class ApiClients:
    dynamodb: Any
    s3: Any
    stepfunctions: Any


def api_clients(max_connections: int = 64) -> ApiClients:
    # One pool shared by the request threads; boto3 reads AWS_ENDPOINT_URL itself.
    config = Config(max_pool_connections=max_connections, retries={"max_attempts": 3, "mode": "standard"})
    return ApiClients(
        dynamodb=boto3.client("dynamodb", config=config),
        s3=boto3.client("s3", config=config),
        stepfunctions=boto3.client("stepfunctions", config=config),
    )


def job_id_for(idempotency_key: str | None) -> str:
    if idempotency_key:
        return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, idempotency_key).hex
    return uuid.uuid4().hex


def submit_job(clients: ApiClients, settings: ApiSettings, request: RunRequest) -> JobRecord:
    """Record the job and start its execution; the same idempotency key returns the same job."""
    slug = competition_slug(request.url)
    time_limit = request.time_limit or settings.default_time_limit
    if time_limit > settings.max_time_limit:
        raise InputError(f"time_limit {time_limit} s is above this deployment's limit of {settings.max_time_limit} s")
    max_attempts = request.max_attempts or settings.default_max_attempts
    if max_attempts > settings.max_attempts_limit:
        raise InputError(
            f"max_attempts {max_attempts} is above this deployment's limit of {settings.max_attempts_limit}"
        )
    now = jobs.now_iso()
    record = JobRecord(
        job_id=job_id_for(request.idempotency_key),
        url=request.url.strip(),
        competition=slug,
        created_at=now,
        updated_at=now,
        time_limit=time_limit,
        max_attempts=max_attempts,
        compute=request.compute,
        idempotency_key=request.idempotency_key,
        message="waiting to start",
        expires_at=(int(time.time()) + settings.job_retention_days * 86400 if settings.job_retention_days else None),
    )
    stored, created = jobs.create_job(clients.dynamodb, settings.jobs_table, record)
    if not created and stored.status != "QUEUED":
        return stored
    # A new job, or a repeated request for one whose first start may not have happened.
    _start_execution(clients, settings, stored)
    return stored


def _start_execution(clients: ApiClients, settings: ApiSettings, record: JobRecord) -> None:
    try:
        clients.stepfunctions.start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=record.job_id,
            input=json.dumps({"job_id": record.job_id}),
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
            return
        reason = f"could not start the pipeline: {exc.response['Error'].get('Message') or exc}"
        jobs.mark_failed(clients.dynamodb, settings.jobs_table, record.job_id, reason)
        raise JobStartError(reason) from exc
    except BotoCoreError as exc:
        reason = f"could not start the pipeline: {exc}"
        jobs.mark_failed(clients.dynamodb, settings.jobs_table, record.job_id, reason)
        raise JobStartError(reason) from exc


def status_view(clients: ApiClients, settings: ApiSettings, record: JobRecord) -> JobStatusView:
    url = None
    if record.status == "SUCCEEDED" and record.submission_key:
        url = artifacts.presigned_get(
            clients.s3,
            settings.artifacts_bucket,
            record.submission_key,
            settings.presign_expiry_s,
            filename=f"{record.competition}-submission.csv",
        )
    return JobStatusView(
        **record.model_dump(include=set(JobStatusView.model_fields) - {"submission_url", "cost_usd"}),
        cost_usd=_cost(record),
        submission_url=url,
    )


def _cost(record: JobRecord) -> float | None:
    llm = float((record.llm_usage or {}).get("cost_usd") or 0.0)
    if not llm and not record.compute_cost_usd:
        return None
    return round(llm + record.compute_cost_usd, 4)


def job_status(clients: ApiClients, settings: ApiSettings, job_id: str) -> JobStatusView:
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    if (
        record.status not in jobs.TERMINAL_STATUSES
        and jobs.seconds_since(record.updated_at) >= settings.reconcile_after_s
    ):
        record = reconcile_job(clients, settings, record)
    return status_view(clients, settings, record)


def execution_arn(state_machine_arn: str, job_id: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{job_id}"


def reconcile_job(clients: ApiClients, settings: ApiSettings, record: JobRecord) -> JobRecord:
    """Mark FAILED a job whose execution ended (timed out, aborted, failed) or never started.

    The state machine records failures itself; this covers what no Catch can:
    an execution-level timeout, a manual abort, a crash between recording the
    job and starting its execution.
    """
    try:
        execution = clients.stepfunctions.describe_execution(
            executionArn=execution_arn(settings.state_machine_arn, record.job_id)
        )
        ended = execution["status"] if execution["status"] in ("FAILED", "TIMED_OUT", "ABORTED") else None
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
        ended = "NOT_STARTED"
    if ended is None:
        return record
    reason = (
        "the pipeline was never started"
        if ended == "NOT_STARTED"
        else f"the pipeline execution ended {ended} without recording a result"
    )
    jobs.mark_failed(clients.dynamodb, settings.jobs_table, record.job_id, reason, keep_message=True)
    return jobs.require_job(clients.dynamodb, settings.jobs_table, record.job_id)


def submission_url(clients: ApiClients, settings: ApiSettings, job_id: str) -> str:
    """A short-lived download URL of the job's submission.csv; JobNotReadyError until it exists."""
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    if record.status == "FAILED":
        raise JobNotReadyError(f"job {job_id} failed and has no submission: {record.message}")
    if record.status != "SUCCEEDED" or not record.submission_key:
        raise JobNotReadyError(f"job {job_id} is {record.status} ({record.stage}); no submission yet")
    return artifacts.presigned_get(
        clients.s3,
        settings.artifacts_bucket,
        record.submission_key,
        settings.presign_expiry_s,
        filename=f"{record.competition}-submission.csv",
    )


def job_logs(clients: ApiClients, settings: ApiSettings, job_id: str) -> JobLogs:
    """The training log tail of each attempt that has a result."""
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    logs = []
    for number in range(1, record.attempt + 1):
        key = artifacts.attempt_key(job_id, number, "result.json")
        data = artifacts.get_json_or_none(clients.s3, settings.artifacts_bucket, key)
        if data is None:
            continue
        logs.append(
            AttemptLog(
                number=number,
                program=data.get("program", ""),
                ok=bool(data.get("ok")),
                reason=data.get("reason"),
                log_tail=data.get("log_tail", ""),
            )
        )
    return JobLogs(job_id=job_id, attempts=logs)


def list_job_page(
    clients: ApiClients, settings: ApiSettings, *, status: str | None, limit: int, cursor: str | None
) -> JobPage:
    try:
        records, next_cursor = jobs.list_jobs(
            clients.dynamodb, settings.jobs_table, status=status, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":
            raise
        raise InputError("cursor is not one this API returned") from exc
    # Listing pages carry no presigned URLs: each would be a signature nobody asked for.
    fields = set(JobStatusView.model_fields) - {"submission_url", "cost_usd"}
    views = [JobStatusView(**r.model_dump(include=fields), cost_usd=_cost(r)) for r in records]
    return JobPage(jobs=views, next_cursor=next_cursor)
