"""Job records and attempt results written straight into an emulated stack, for the dashboard's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from batch_agent.local.stack import EmulatedStack
from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord

SUBMISSION_CSV = "id,malignant\n1,0.9\n2,0.1\n"
ATTEMPTS = [
    AttemptSummary(number=1, program="lightgbm", origin="template", ok=True, cv_score=0.981, seconds=12.0),
    AttemptSummary(number=2, program="catboost", origin="llm-draft", ok=False, seconds=4.0,
                   reason="the program exited with status 1: ModuleNotFoundError"),
    AttemptSummary(number=3, program="lightgbm-tuned", origin="llm-improve", ok=True, cv_score=0.992, seconds=20.0),
]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def put_job(stack: EmulatedStack, competition: str, *, created: datetime | None = None, **fields: Any) -> JobRecord:
    created_at = iso(created or datetime.now(UTC))
    record = JobRecord(
        job_id=uuid.uuid4().hex,
        url=f"https://www.kaggle.com/competitions/{competition}",
        competition=competition,
        created_at=created_at,
        updated_at=fields.pop("updated_at", created_at),
        time_limit=fields.pop("time_limit", 600),
        max_attempts=fields.pop("max_attempts", 5),
        **fields,
    )
    stored, created_now = jobs.create_job(stack.client("dynamodb"), stack.table, record)
    assert created_now
    return stored


def put_attempt_logs(stack: EmulatedStack, job_id: str, attempts: list[AttemptSummary]) -> None:
    for attempt in attempts:
        artifacts.put_json(
            stack.client("s3"), stack.bucket, artifacts.attempt_key(job_id, attempt.number, "result.json"),
            {"program": attempt.program, "ok": attempt.ok, "reason": attempt.reason,
             "log_tail": f"fold 5/5 done ({attempt.program})"},
        )


def put_finished_job(stack: EmulatedStack, competition: str) -> JobRecord:
    """A SUCCEEDED job with three attempts (one failed), logs, a submission in S3 and a rank."""
    record = put_job(
        stack, competition, status="SUCCEEDED", stage="done", attempt=3, cv_score=0.992, best_attempt=3,
        message="best CV roc_auc 0.99200 from lightgbm-tuned", attempts=ATTEMPTS,
        training_seconds=36.0, compute_seconds=50.0, compute_cost_usd=0.005,
        llm_usage={"total_tokens": 12000, "cost_usd": 0.04},
        leaderboard={"rank": 3, "n_teams": 120, "percentile": 98.3, "above_median": True, "medal": "gold",
                     "fetched_at": iso(datetime.now(UTC) - timedelta(minutes=4))},
    )
    key = artifacts.job_key(record.job_id, "submission.csv")
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=SUBMISSION_CSV.encode())
    jobs.update_job(stack.client("dynamodb"), stack.table, record.job_id, only_if_running=False,
                    submission_key=key)
    put_attempt_logs(stack, record.job_id, ATTEMPTS)
    return record
