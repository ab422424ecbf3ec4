"""What every step of the service pipeline shares: clients, reads of the job's state, the state's shape.

The state machine carries a small state between steps::

    {"job_id": str, "compute": "cpu"|"gpu", "attempt": int, "attempt_label": str,
     "next": "repair"|"improve"|"train"|"finish", "status": ..., "error": {...}}

Everything else (profile, plan, programs, results) lives in S3 under
``jobs/{job_id}/`` and the job record in DynamoDB. Lambda steps (plan, generate,
validate, repair, finish, fail) import nothing heavy at module level; the Batch
steps (prepare, train) import pandas-based code inside their functions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import SolverError
from batch_agent.solver.plan import AttemptResult, Plan, Program

log = logging.getLogger(__name__)

# An attempt shorter than this cannot train anything useful: no new attempt starts
# with less time left, and a started one always gets at least this much.
MIN_ATTEMPT_SECONDS = 10.0
# Time kept back from each attempt for validate and finish.
FINISH_RESERVE_SECONDS = 5.0
COMPLETE_MARKER = ".complete"


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


def load_job(clients: ServiceClients, job_id: str) -> JobRecord:
    return jobs.require_job(clients.dynamodb, clients.table, job_id)


def load_profile(clients: ServiceClients, job_id: str, data_dir: Path | None = None) -> CompetitionProfile:
    profile = CompetitionProfile.model_validate(
        artifacts.get_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "profile.json"))
    )
    return profile.model_copy(update={"data_dir": str(data_dir)}) if data_dir else profile


def load_plan(clients: ServiceClients, job_id: str) -> Plan:
    return Plan.model_validate(artifacts.get_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "plan.json")))


def load_program(clients: ServiceClients, job_id: str, attempt: int) -> Program:
    key = artifacts.attempt_key(job_id, attempt, "program.json")
    return Program.model_validate(artifacts.get_json(clients.s3, clients.bucket, key))


def load_result(clients: ServiceClients, job_id: str, attempt: int) -> AttemptResult | None:
    data = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.attempt_key(job_id, attempt, "result.json"))
    return AttemptResult.model_validate(data) if data is not None else None


def load_queue(clients: ServiceClients, job_id: str) -> list[Program]:
    data = artifacts.get_json_or_none(clients.s3, clients.bucket, artifacts.job_key(job_id, "queue.json")) or []
    return [Program.model_validate(p) for p in data]


def save_queue(clients: ServiceClients, job_id: str, programs: list[Program]) -> None:
    key = artifacts.job_key(job_id, "queue.json")
    artifacts.put_json(clients.s3, clients.bucket, key, [p.model_dump() for p in programs])


def save_program(clients: ServiceClients, job_id: str, attempt: int, program: Program) -> None:
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




def state_value(data: dict[str, Any], key: str) -> Any:
    # Step Functions reports Batch's describe-jobs output with PascalCase keys; accept both spellings.
    return data.get(key, data.get(key[:1].upper() + key[1:]))


def carried_state(state: dict[str, Any]) -> dict[str, Any]:
    keep = ("job_id", "compute", "attempt", "attempt_label")
    return {k: state[k] for k in keep if k in state}


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
    if isinstance(cause, dict) and state_value(cause, "jobName"):  # a Batch job failed
        container = state_value(cause, "container") or {}
        exit_code = state_value(container, "exitCode")
        reason = state_value(cause, "statusReason") or state_value(container, "reason") or "the job failed"
        step = str(state_value(cause, "jobName")).split("-")[0]
        return f"{step} job failed: {reason}" + (f" (exit code {exit_code})" if exit_code is not None else "")
    return f"{name}: {cause_text}"[:1000] if cause_text else name


