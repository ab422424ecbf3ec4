"""Starting and watching job executions: the outbox's starter and the sweep that ends every job.

``POST /run`` only records a job (one conditional PutItem); the job waits QUEUED
with no ``execution_started_at`` — the outbox. The starter starts its Step
Functions execution under the name drawn when the job was recorded, so a retried
start can never start two, and a start that timed out after AWS began it is found
by the next one (``ExecutionAlreadyExists`` for our own name). In AWS the jobs
table's stream invokes the starter Lambda for each new job; on the local stack a
thread reads the emulated stream. A schedule runs ``sweep`` over every unfinished
job: it starts jobs left in the outbox, marks FAILED a job whose execution ended
without recording a result, and stops and marks FAILED a job still unfinished past
its time limit plus a grace (a GPU job stuck RUNNABLE, a hung step).
Stdlib + boto3 + pydantic only (Lambdas import it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from batch_agent.service import jobs
from batch_agent.service.jobs import JobRecord
from batch_agent.service.settings import PipelineSettings

log = logging.getLogger(__name__)

# Every AWS call on the API path stays well inside API Gateway's 29 s: at most
# 2 attempts × (1 s to connect + 3 s to read) = 8 s, plus one short backoff. A call that
# takes that long fails the request (5xx) instead of outliving API Gateway's answer.
API_CALL_CONFIG = Config(
    connect_timeout=1,
    read_timeout=3,
    retries={"total_max_attempts": 2, "mode": "standard"},
)


@dataclass(frozen=True)
class PipelineClients:
    dynamodb: Any
    s3: Any
    stepfunctions: Any
    batch: Any


# Presigned URLs: SigV4 on the bucket's regional virtual-host endpoint (the bucket lives in the API's
# region). botocore's default for a bucket outside us-east-1 is the global endpoint, which S3
# redirects (a presigned GET then fails its signature) for buckets younger than a day or so.
PRESIGN_CONFIG = Config(
    signature_version="s3v4", s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
)


def pipeline_clients(max_connections: int = 64, config: Config = API_CALL_CONFIG) -> PipelineClients:
    # One pool shared by the request threads; boto3 reads AWS_ENDPOINT_URL itself.
    merged = config.merge(Config(max_pool_connections=max_connections))
    s3 = boto3.client("s3", config=merged.merge(Config(signature_version="s3v4")))
    if s3.meta.endpoint_url.endswith(".amazonaws.com"):
        # Virtual hosts exist only on AWS; an emulator (AWS_ENDPOINT_URL) is addressed by path.
        s3 = boto3.client("s3", config=merged.merge(PRESIGN_CONFIG))
    return PipelineClients(
        dynamodb=boto3.client("dynamodb", config=merged),
        s3=s3,
        stepfunctions=boto3.client("stepfunctions", config=merged),
        batch=boto3.client("batch", config=merged),
    )


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def start_execution(clients: PipelineClients, settings: PipelineSettings, record: JobRecord) -> bool:
    """Start the job's execution unless it runs already; True when it runs. A failure leaves the job queued.

    The name is the job's own (drawn when it was recorded): ExecutionAlreadyExists
    means an earlier start of this job got through, even one whose reply was lost.
    """
    if record.status != "QUEUED":
        return False
    try:
        clients.stepfunctions.start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=record.execution,
            input=json.dumps({"job_id": record.job_id}),
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            log.warning("job %s: could not start its execution: %s", record.job_id, exc)
            return False
    except BotoCoreError as exc:
        # A timeout may hide a start that happened: the next start finds it by its name.
        log.warning("job %s: starting its execution gave no answer: %s", record.job_id, exc)
        return False
    if not jobs.update_job(clients.dynamodb, settings.jobs_table, record.job_id, execution_started_at=jobs.now_iso()):
        # Cancelled between the read and the start: the execution must not run on.
        stop_job_execution(clients, settings, record, "the job was cancelled before it started")
        return False
    return True


def stop_job_execution(clients: PipelineClients, settings: PipelineSettings, record: JobRecord, cause: str) -> None:
    """Stop the execution and terminate its Batch job, running or still waiting (both may have ended already).

    The Batch job is the one the execution submitted last (its history holds the id,
    even for a job still RUNNABLE) or the one the container recorded on the job.
    """
    arn = execution_arn(settings.state_machine_arn, record.execution)
    batch_jobs = set(_submitted_batch_jobs(clients, arn))
    try:
        clients.stepfunctions.stop_execution(executionArn=arn, cause=cause[:32000])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
    current = jobs.get_job(clients.dynamodb, settings.jobs_table, record.job_id) or record
    if current.batch_job_id:
        batch_jobs.add(current.batch_job_id)
    for batch_job in sorted(batch_jobs):
        try:
            clients.batch.terminate_job(jobId=batch_job, reason=cause[:256])
        except ClientError as exc:
            log.warning("job %s: could not terminate Batch job %s: %s", record.job_id, batch_job, exc)


def _submitted_batch_jobs(clients: PipelineClients, arn: str) -> list[str]:
    """Batch job ids in the execution's recent TaskSubmitted events (newest first)."""
    try:
        events = clients.stepfunctions.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=50)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
        return []
    found = []
    for event in events.get("events", []):
        details = event.get("taskSubmittedEventDetails") or {}
        if details.get("resourceType") != "batch":
            continue
        try:
            output = json.loads(details.get("output") or "{}")
        except json.JSONDecodeError:
            continue
        job = output.get("JobId") or output.get("jobId")
        if job:
            found.append(str(job))
    return found


def handle_stream_records(
    clients: PipelineClients, settings: PipelineSettings, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Start the execution of every job a DynamoDB stream batch inserted.

    Returns Lambda's partial batch response: the records whose start failed are
    retried by the stream (and, failing that, by the sweep).
    """
    failures = []
    for record in records:
        if record.get("eventName") != "INSERT":
            continue
        image = record.get("dynamodb", {}).get("NewImage")
        if not image:
            continue
        job = jobs.record_from_item(image)
        if job.execution_started_at is None and not start_execution(clients, settings, job):
            current = jobs.get_job(clients.dynamodb, settings.jobs_table, job.job_id)
            if current is not None and current.status == "QUEUED" and current.execution_started_at is None:
                failures.append({"itemIdentifier": record.get("dynamodb", {}).get("SequenceNumber", "")})
    return {"batchItemFailures": failures}


def reconcile_job(clients: PipelineClients, settings: PipelineSettings, record: JobRecord) -> JobRecord:
    """Bring an unfinished job's record in line with its execution; returns the record as it is now.

    * past its time limit plus the grace: stop it and mark it FAILED with the stage it was stuck in;
    * still in the outbox after ``start_after_s``: start it;
    * not updated for ``reconcile_after_s`` and its execution ended (timed out, aborted,
      failed) without recording a result: FAILED with that reason.
    """
    if record.status in jobs.TERMINAL_STATUSES:
        return record
    table = settings.jobs_table
    age = jobs.seconds_since(record.created_at)
    if age > record.time_limit + settings.deadline_grace_s:
        reason = (
            f"the job did not end within its time limit of {record.time_limit} s plus {settings.deadline_grace_s} s; "
            f"it was {record.status} in stage {record.stage}"
            + (" (waiting for compute capacity)" if record.status == "QUEUED" and record.execution_started_at else "")
        )
        stop_job_execution(clients, settings, record, reason)
        jobs.mark_failed(clients.dynamodb, table, record.job_id, reason)
        return jobs.require_job(clients.dynamodb, table, record.job_id)
    if record.execution_started_at is None:
        if age >= settings.start_after_s:
            start_execution(clients, settings, record)
            return jobs.require_job(clients.dynamodb, table, record.job_id)
        return record
    if jobs.seconds_since(record.updated_at) < settings.reconcile_after_s:
        return record
    try:
        execution = clients.stepfunctions.describe_execution(
            executionArn=execution_arn(settings.state_machine_arn, record.execution)
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
        # Recorded as started but gone: start it again (the name is the job's own).
        jobs.update_job(clients.dynamodb, table, record.job_id, execution_started_at=None)
        start_execution(clients, settings, record.model_copy(update={"execution_started_at": None}))
        return jobs.require_job(clients.dynamodb, table, record.job_id)
    if execution["status"] not in ("FAILED", "TIMED_OUT", "ABORTED"):
        return record
    reason = f"the pipeline execution ended {execution['status']} without recording a result"
    jobs.mark_failed(clients.dynamodb, table, record.job_id, reason, keep_message=True)
    return jobs.require_job(clients.dynamodb, table, record.job_id)


def sweep(clients: PipelineClients, settings: PipelineSettings) -> dict[str, int]:
    """Reconcile every QUEUED and RUNNING job; returns how many ended up in each status."""
    counts: dict[str, int] = {}
    for status in ("QUEUED", "RUNNING"):
        cursor: str | None = None
        while True:
            page, cursor = jobs.list_jobs(
                clients.dynamodb, settings.jobs_table, status=status, limit=100, cursor=cursor
            )
            for record in page:
                try:
                    now = reconcile_job(clients, settings, record)
                except (ClientError, BotoCoreError) as exc:
                    log.warning("job %s: reconcile failed: %s", record.job_id, exc)
                    continue
                counts[now.status] = counts.get(now.status, 0) + 1
            if cursor is None:
                break
    return counts

