"""Job records in the DynamoDB jobs table: what `GET /status` shows and what each step updates.

One item per job (partition key ``job_id``). Status moves QUEUED → RUNNING →
SUCCEEDED | FAILED, or to CANCELLED from QUEUED or RUNNING on a user's request,
and never leaves a terminal state: stage updates are
conditional on the job still running, so a late update from a step that lost a
race cannot bring a failed job back to RUNNING. Stdlib + boto3 + pydantic only
(Lambdas import this module).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from batch_agent.service import names

JobStatus = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
Compute = Literal["auto", "cpu", "gpu"]

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


class AttemptSummary(BaseModel):
    """One training attempt as the job record keeps it (the full result lives in S3)."""

    number: int
    program: str
    origin: str
    ok: bool
    # The product's score of the attempt's oof.csv; the program's own claim (metrics.json) beside it.
    cv_score: float | None = None
    claimed_cv_score: float | None = None
    claim_disagrees: bool = False
    # Model-written programs: the score on labelled rows hidden in their test.csv, and its bootstrap noise.
    holdout_score: float | None = None
    holdout_noise: float | None = None
    holdout_rows: int = 0
    seconds: float = 0.0
    reason: str | None = None
    # What kept the program in (the sandbox's label), e.g. "isolated: own uid, no network, private filesystem".
    isolation: str = ""


class JobRecord(BaseModel):
    job_id: str
    url: str
    competition: str
    status: JobStatus = "QUEUED"
    stage: str = "queued"
    attempt: int = 0
    message: str = ""
    cv_score: float | None = None
    best_attempt: int | None = None
    created_at: str
    updated_at: str
    time_limit: int
    max_attempts: int
    compute: Compute = "auto"
    idempotency_key: str | None = None
    submission_key: str | None = None
    attempts: list[AttemptSummary] = Field(default_factory=list)
    # Where the best CV score would rank on the public leaderboard (RankEstimate fields + fetched_at).
    leaderboard: dict[str, Any] | None = None
    # The metric's direction, recorded at finish so the live rank needs no profile read.
    higher_is_better: bool | None = None
    # Wall-clock seconds the training programs ran, over all attempts.
    training_seconds: float = 0.0
    # ClaudeAuthor.usage() after the last LLM step: tokens, cost, fallback reason; None: templates only.
    llm_usage: dict[str, Any] | None = None
    # Batch job wall-clock (prepare + train) and its price when the container knows its hourly rate.
    compute_seconds: float = 0.0
    compute_cost_usd: float = 0.0
    # Weights of the blended programs when the published submission is a blend; None: a single attempt.
    blend_weights: dict[str, float] | None = None
    # Epoch seconds after which DynamoDB's TTL may delete the record; None: kept.
    expires_at: int | None = None
    # The Step Functions execution's name: the job id plus a suffix drawn when the job was created, so
    # an old execution of a reused job id (names stay reserved 90 days) never blocks a new job.
    execution_name: str | None = None
    # When the starter started (or found) the execution; None: waiting in the outbox.
    execution_started_at: str | None = None
    # A digest of the request body: a reused idempotency key with another body is refused.
    request_digest: str | None = None
    # The AWS Batch job running the job's current step (written by the container), so a cancel can stop it.
    batch_job_id: str | None = None
    cancelled_by: str | None = None
    cancelled_at: str | None = None

    @property
    def execution(self) -> str:
        """The execution's name (records written before execution_name existed used the job id)."""
        return self.execution_name or self.job_id


class JobNotFoundError(LookupError):
    """No job with this id."""


def now_iso() -> str:
    """UTC time with microseconds: sorts as text, so it is the listing sort key."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds_since(iso: str) -> float:
    started = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - started).total_seconds()


def _to_dynamo(value: Any) -> Any:
    # DynamoDB numbers must be Decimal; None attributes are left out of the item.
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def _item(record: JobRecord) -> dict[str, Any]:
    data = _to_dynamo(record.model_dump())
    data["listing"] = names.JOBS_LISTING_VALUE
    return {k: _SERIALIZER.serialize(v) for k, v in data.items()}


def record_from_item(item: dict[str, Any]) -> JobRecord:
    """A job from its DynamoDB item (a GetItem's Item or a stream record's NewImage)."""
    return _record(item)


def _record(item: dict[str, Any]) -> JobRecord:
    data = {k: _from_dynamo(_DESERIALIZER.deserialize(v)) for k, v in item.items()}
    data.pop("listing", None)
    return JobRecord.model_validate(data)


def create_job(dynamodb: Any, table: str, record: JobRecord) -> tuple[JobRecord, bool]:
    """Store a new job; returns (the stored job, created). An existing id returns that job unchanged."""
    try:
        dynamodb.put_item(
            TableName=table,
            Item=_item(record),
            ConditionExpression="attribute_not_exists(job_id)",
        )
        return record, True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    existing = get_job(dynamodb, table, record.job_id)
    if existing is None:  # deleted between the two calls
        raise JobNotFoundError(record.job_id)
    return existing, False


def get_job(dynamodb: Any, table: str, job_id: str) -> JobRecord | None:
    response = dynamodb.get_item(TableName=table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
    item = response.get("Item")
    return _record(item) if item else None


def require_job(dynamodb: Any, table: str, job_id: str) -> JobRecord:
    record = get_job(dynamodb, table, job_id)
    if record is None:
        raise JobNotFoundError(job_id)
    return record


def update_job(dynamodb: Any, table: str, job_id: str, *, only_if_running: bool = True, **fields: Any) -> bool:
    """Set fields (and updated_at); False when the job had already finished and nothing changed."""
    fields = {**fields, "updated_at": now_iso()}
    if "attempts" in fields:
        fields["attempts"] = [a.model_dump() if isinstance(a, AttemptSummary) else a for a in fields["attempts"]]
    sets, removes = [], []
    values: dict[str, Any] = {}
    attr_names: dict[str, str] = {}
    for i, (key, value) in enumerate(fields.items()):
        attr_names[f"#f{i}"] = key
        if value is None:
            removes.append(f"#f{i}")
        else:
            sets.append(f"#f{i} = :v{i}")
            values[f":v{i}"] = _SERIALIZER.serialize(_to_dynamo(value))
    expression = "SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    condition = "attribute_exists(job_id)"
    if only_if_running:
        attr_names["#status_now"] = "status"
        values[":queued"] = {"S": "QUEUED"}
        values[":running"] = {"S": "RUNNING"}
        condition += " AND #status_now IN (:queued, :running)"
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=attr_names,
            ExpressionAttributeValues=values,
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def add_to_job(dynamodb: Any, table: str, job_id: str, **amounts: float) -> None:
    """Add to numeric fields (atomic, whatever the status: accounting of a step that already ran)."""
    names_, values = {}, {}
    parts = []
    for i, (key, amount) in enumerate(amounts.items()):
        names_[f"#a{i}"] = key
        values[f":a{i}"] = _SERIALIZER.serialize(_to_dynamo(float(amount)))
        parts.append(f"#a{i} :a{i}")
    dynamodb.update_item(
        TableName=table,
        Key={"job_id": {"S": job_id}},
        UpdateExpression="ADD " + ", ".join(parts),
        ConditionExpression="attribute_exists(job_id)",
        ExpressionAttributeNames=names_,
        ExpressionAttributeValues=values,
    )


def mark_stage(dynamodb: Any, table: str, job_id: str, stage: str, **fields: Any) -> bool:
    """The job is RUNNING in this stage (unless it has already finished)."""
    return update_job(dynamodb, table, job_id, status="RUNNING", stage=stage, **fields)


def mark_cancelled(dynamodb: Any, table: str, job_id: str, requested_by: str) -> bool:
    """CANCELLED, when the job is still QUEUED or RUNNING; False when it had already ended."""
    now = now_iso()
    return update_job(
        dynamodb,
        table,
        job_id,
        status="CANCELLED",
        stage="cancelled",
        message=f"cancelled by {requested_by} at {now}",
        cancelled_by=requested_by,
        cancelled_at=now,
    )


def delete_job(dynamodb: Any, table: str, job_id: str) -> None:
    """Remove a finished job's record (a job still QUEUED or RUNNING is left alone)."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"job_id": {"S": job_id}},
            ConditionExpression="attribute_exists(job_id) AND NOT #s IN (:q, :r)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":q": {"S": "QUEUED"}, ":r": {"S": "RUNNING"}},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise JobNotFoundError(job_id) from exc


def mark_failed(dynamodb: Any, table: str, job_id: str, message: str, *, keep_message: bool = False) -> None:
    """FAILED with a reason. With keep_message, a job that already FAILED keeps its (more specific) reason."""
    if update_job(dynamodb, table, job_id, status="FAILED", stage="failed", message=message):
        return
    current = get_job(dynamodb, table, job_id)
    if current is None or current.status in ("SUCCEEDED", "CANCELLED"):
        return
    if current.status == "FAILED" and (keep_message and current.message):
        return
    update_job(dynamodb, table, job_id, only_if_running=False, status="FAILED", stage="failed", message=message)


def _encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API returned") from exc
    if not isinstance(key, dict):
        raise ValueError("cursor is not one this API returned")
    return key


def list_jobs(
    dynamodb: Any, table: str, *, status: str | None = None, limit: int = 20, cursor: str | None = None
) -> tuple[list[JobRecord], str | None]:
    """Jobs newest first, optionally of one status; returns (page, cursor of the next page or None)."""
    if status:
        index, partition, value = names.JOBS_BY_STATUS_INDEX, "status", status
    else:
        index, partition, value = names.JOBS_BY_CREATED_INDEX, "listing", names.JOBS_LISTING_VALUE
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#p = :p",
        "ExpressionAttributeNames": {"#p": partition},
        "ExpressionAttributeValues": {":p": {"S": value}},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if cursor:
        kwargs["ExclusiveStartKey"] = _decode_cursor(cursor)
    response = dynamodb.query(**kwargs)
    records = [_record(item) for item in response.get("Items", [])]
    return records, _encode_cursor(response.get("LastEvaluatedKey"))
