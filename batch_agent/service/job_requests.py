"""What the API does with a request: start a job, show its status, hand out its files and logs.

The FastAPI routes in ``lambdas/api`` parse HTTP and call one function here.
``POST /run`` writes the job's item (one conditional PutItem) and returns: the
starter (``job_starter``) starts its execution from the table's stream, under a
name drawn when the job was recorded. ``GET /status`` is one consistent GetItem:
the scheduled sweep, not the read path, reconciles unfinished jobs.
Stdlib + boto3 + pydantic only (the API Lambda imports it).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field

from batch_agent.kaggle.urls import competition_slug
from batch_agent.service import artifacts, job_starter, jobs
from batch_agent.service.job_starter import PipelineClients
from batch_agent.service.jobs import AttemptSummary, JobNotFoundError, JobRecord, JobStatus
from batch_agent.service.settings import ApiSettings
from batch_agent.solver.errors import InputError, SolverError

log = logging.getLogger(__name__)

# Job ids made from an idempotency key: the same key always names the same job.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("7b0f5d1e-2f43-4c8e-9a52-5f0d7c1b9e21")


class JobNotReadyError(SolverError):
    """The job has no submission yet (HTTP 409)."""


class IdempotencyConflictError(SolverError):
    """An idempotency key already used with another request body (HTTP 409)."""


class JobFinishedError(SolverError):
    """The job has already ended, so it cannot be cancelled (HTTP 409)."""


class JobStillRunningError(SolverError):
    """The job has not ended, so it cannot be purged (HTTP 409)."""


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
    cancelled_by: str | None = None
    cancelled_at: str | None = None


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


class AttemptDetail(BaseModel):
    """One training attempt: the program's source, how it did, its log tail and its submission."""

    job_id: str
    number: int
    program: str
    origin: str
    code: str
    ok: bool | None  # None: not run (or not validated) yet
    cv_score: float | None
    seconds: float
    reason: str | None
    log_tail: str
    submission_url: str | None


class JobPurged(BaseModel):
    job_id: str
    purged: bool
    deleted_objects: int


ApiClients = PipelineClients


def api_clients(max_connections: int = 64) -> ApiClients:
    return job_starter.pipeline_clients(max_connections)


def warm_up(clients: ApiClients, settings: ApiSettings) -> None:
    """One read of a key no job has, before the first request (Lambda's init phase, a server's start).

    The DynamoDB client's first call loads its operation models, resolves its endpoint and
    opens its connection (in AWS with a TLS handshake): on the local stack 25 ms (5 ms of
    CPU) against 17 ms (2 ms) for a later read. Otherwise the first request pays it, and
    under a burst every request that arrives before the first one finished. A failure is
    logged and the first request pays instead.
    """
    try:
        jobs.get_job(clients.dynamodb, settings.jobs_table, "warm-up")
    except (BotoCoreError, ClientError) as exc:
        log.warning("warming the DynamoDB client failed: %s", exc)


def request_digest(request: RunRequest) -> str:
    """What the request asks for, whatever its key: the same body twice gives the same digest."""
    body = request.model_dump_json(exclude={"idempotency_key"})
    return hashlib.sha256(body.encode()).hexdigest()


def job_id_for(idempotency_key: str | None) -> str:
    if idempotency_key:
        return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, idempotency_key).hex
    return uuid.uuid4().hex


def submit_job(clients: ApiClients, settings: ApiSettings, request: RunRequest) -> JobRecord:
    """Record the job in the outbox (the starter starts it); the same idempotency key returns the same job.

    A key reused with another body is refused; a retry of a request whose job was
    cancelled returns the cancelled job and starts nothing.
    """
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
    job_id = job_id_for(request.idempotency_key)
    digest = request_digest(request)
    record = JobRecord(
        job_id=job_id,
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
        # Names of executions stay reserved for 90 days: a job id reused after its record
        # expired must not collide with the closed execution of the old job.
        execution_name=f"{job_id}-{uuid.uuid4().hex[:8]}",
        request_digest=digest,
    )
    stored, created = jobs.create_job(clients.dynamodb, settings.jobs_table, record)
    if not created and stored.request_digest is not None and stored.request_digest != digest:
        raise IdempotencyConflictError(
            f"idempotency_key {request.idempotency_key!r} was already used for job {job_id} with another request body"
        )
    return stored


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


class FinishedJobCache:
    """Records of ended jobs (SUCCEEDED, FAILED, CANCELLED), kept ``ttl_s`` by the process that read them.

    A poll of an ended job is then answered without a read; its view is still built per
    request, so a presigned link is always fresh. An ended record can still change: the
    accounting of a step that was running when the job was cancelled is added, a purge
    deletes it. This process's own cancel and purge drop the entry at once; a change made
    elsewhere shows after at most ``ttl_s``. Unfinished jobs are never kept.
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._records: OrderedDict[str, tuple[float, JobRecord]] = OrderedDict()

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            entry = self._records.get(job_id)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._records[job_id]
                return None
            return entry[1]

    def put(self, record: JobRecord) -> None:
        if self.ttl_s <= 0 or record.status not in jobs.TERMINAL_STATUSES:
            return
        with self._lock:
            self._records[record.job_id] = (self._clock() + self.ttl_s, record)
            self._records.move_to_end(record.job_id)
            while len(self._records) > self.max_entries:
                self._records.popitem(last=False)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._records.pop(job_id, None)


def job_status(
    clients: ApiClients, settings: ApiSettings, job_id: str, cache: FinishedJobCache | None = None
) -> JobStatusView:
    # One GetItem (none for an ended job read within the cache's time): the sweep, not the
    # read path, reconciles unfinished jobs.
    record = cache.get(job_id) if cache else None
    if record is None:
        record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
        if cache:
            cache.put(record)
    return status_view(clients, settings, record)


def cancel_job(
    clients: ApiClients,
    settings: ApiSettings,
    job_id: str,
    requested_by: str,
    cache: FinishedJobCache | None = None,
) -> JobStatusView:
    """CANCELLED with who and when; its execution stops and its running Batch job is terminated."""
    if cache:
        cache.drop(job_id)
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    if record.status == "CANCELLED":
        return status_view(clients, settings, record)
    if not jobs.mark_cancelled(clients.dynamodb, settings.jobs_table, job_id, requested_by):
        current = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
        raise JobFinishedError(f"job {job_id} has already ended {current.status}; nothing to cancel")
    job_starter.stop_job_execution(clients, settings, record, f"cancelled by {requested_by}")
    return status_view(clients, settings, jobs.require_job(clients.dynamodb, settings.jobs_table, job_id))


def purge_job(
    clients: ApiClients, settings: ApiSettings, job_id: str, cache: FinishedJobCache | None = None
) -> JobPurged:
    """Delete a finished job's files (jobs/{id}/...) and then its record."""
    if cache:
        cache.drop(job_id)
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    if record.status not in jobs.TERMINAL_STATUSES:
        raise JobStillRunningError(f"job {job_id} is {record.status}; cancel it before purging it")
    keys = artifacts.list_keys(clients.s3, settings.artifacts_bucket, artifacts.job_key(job_id, ""))
    for start in range(0, len(keys), 1000):
        clients.s3.delete_objects(
            Bucket=settings.artifacts_bucket,
            Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
        )
    jobs.delete_job(clients.dynamodb, settings.jobs_table, job_id)
    if cache:
        cache.drop(job_id)  # a poll that came in meanwhile may have kept it again
    return JobPurged(job_id=job_id, purged=True, deleted_objects=len(keys))


def attempt_detail(clients: ApiClients, settings: ApiSettings, job_id: str, number: int) -> AttemptDetail:
    """Attempt n's program source, result, log tail and a presigned link to its submission.csv."""
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    bucket = settings.artifacts_bucket
    program = artifacts.get_json_or_none(clients.s3, bucket, artifacts.attempt_key(job_id, number, "program.json"))
    if program is None:
        raise JobNotFoundError(f"job {job_id} has no attempt {number}")
    result = artifacts.get_json_or_none(clients.s3, bucket, artifacts.attempt_key(job_id, number, "result.json"))
    summary = next((a for a in record.attempts if a.number == number), None)
    submission_key = artifacts.attempt_key(job_id, number, "submission.csv")
    url = None
    if summary is not None and summary.ok and artifacts.exists(clients.s3, bucket, submission_key):
        url = artifacts.presigned_get(
            clients.s3,
            bucket,
            submission_key,
            settings.presign_expiry_s,
            filename=f"{record.competition}-attempt-{number}-submission.csv",
        )
    return AttemptDetail(
        job_id=job_id,
        number=number,
        program=str(program.get("name", "")),
        origin=str(program.get("origin", "")),
        code=str(program.get("code", "")),
        ok=summary.ok if summary is not None else None,
        cv_score=summary.cv_score if summary is not None else None,
        seconds=float((result or {}).get("seconds") or 0.0),
        reason=(summary.reason if summary is not None else (result or {}).get("reason")),
        log_tail=str((result or {}).get("log_tail", "")),
        submission_url=url,
    )


def submission_url(clients: ApiClients, settings: ApiSettings, job_id: str) -> str:
    """A short-lived download URL of the job's submission.csv; JobNotReadyError until it exists."""
    record = jobs.require_job(clients.dynamodb, settings.jobs_table, job_id)
    if record.status in ("FAILED", "CANCELLED"):
        raise JobNotReadyError(f"job {job_id} is {record.status} and has no submission: {record.message}")
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
