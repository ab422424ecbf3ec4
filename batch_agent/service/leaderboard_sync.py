"""Stored leaderboards: the scheduled sync writes them, the status view and the API read them.

Every ``sync_interval_s`` (5 minutes in AWS: an EventBridge rule invokes the sync
Lambda, whose reserved concurrency of 1 keeps runs from overlapping; a timer
thread on the local stack) the sync refreshes the complete public leaderboard
of every tracked competition: the competitions of jobs created in the last
``job_days`` days, plus those a user asked to track (``POST /leaderboards/{slug}``
writes ``tracked/{slug}.json``). Per competition, in the artifacts bucket:

* ``leaderboards/{slug}.json``: the latest ``LeaderboardSnapshot`` (every finite
  score), what a job's CV score is ranked against;
* ``leaderboards/{slug}.history.json``: a ``LeaderboardHistory``, the latest
  summary plus a short time series (teams, best, median, medal lines, the rank
  of each recent job) and the last failure, what ``GET /leaderboards/{slug}`` shows.

One competition failing (rules not accepted, not found, rate-limited, a dropped
connection) is recorded in its history and the others still sync; its previous
snapshot stays in place. Competitions whose snapshot is oldest go first, so a
run cut short by its time budget leaves the freshest ones for next time. The
leaderboard is downloaded into memory, so the sync leaves no temporary files.

Stdlib + boto3 + pydantic at import (the API Lambda imports this module); the
Kaggle client is imported only when syncing.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field, ValidationError

from batch_agent.kaggle.leaderboard import LeaderboardSnapshot, LeaderboardSummary, RankEstimate
from batch_agent.service import names

if TYPE_CHECKING:
    from batch_agent.kaggle.client import KaggleOptions
    from batch_agent.service.settings import LeaderboardSyncSettings

logger = logging.getLogger(__name__)

LEADERBOARDS_PREFIX = names.LEADERBOARD_PREFIX
_DESERIALIZER = TypeDeserializer()


def snapshot_key(slug: str) -> str:
    return f"{LEADERBOARDS_PREFIX}{slug}.json"


def history_key(slug: str) -> str:
    return f"{LEADERBOARDS_PREFIX}{slug}.history.json"


def tracked_key(slug: str) -> str:
    return f"{names.TRACKED_PREFIX}{slug}.json"


# ---------------------------------------------------------------------------- models


class HistoryPoint(BaseModel):
    """One successful sync of a competition, in a few numbers."""

    fetched_at: datetime
    n_teams: int
    best: float | None
    median: float | None
    gold: float | None  # score of the last team inside the gold line
    silver: float | None
    bronze: float | None
    # Rank of each recent job's CV score on this snapshot (job id → rank).
    job_ranks: dict[str, int] = Field(default_factory=dict)


class LeaderboardHistory(BaseModel):
    """What the sync knows about one competition: the latest summary, its history, the last failure."""

    slug: str
    summary: LeaderboardSummary | None = None
    points: list[HistoryPoint] = Field(default_factory=list)  # oldest first
    last_attempt_at: datetime | None = None
    # Why the last attempt failed; None when it succeeded.
    last_error: str | None = None


@dataclass(frozen=True)
class JobScore:
    job_id: str
    cv_score: float | None
    higher_is_better: bool | None


@dataclass
class SyncReport:
    """One sync run: each competition's outcome and the age of the stalest snapshot."""

    outcome: dict[str, str] = field(default_factory=dict)  # slug → "updated" or why not
    skipped: list[str] = field(default_factory=list)  # not reached within the time budget
    oldest_snapshot_age_s: float = 0.0  # over tracked competitions that have a snapshot
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(1 for result in self.outcome.values() if result != "updated")

    @property
    def updated(self) -> int:
        return sum(1 for result in self.outcome.values() if result == "updated")


# ---------------------------------------------------------------------------- what is tracked


def track(s3: Any, bucket: str, slug: str, now: datetime | None = None) -> None:
    """Ask the sync to keep this competition's leaderboard (idempotent)."""
    body = json.dumps({"slug": slug, "tracked_at": (now or datetime.now(UTC)).isoformat()}).encode()
    s3.put_object(Bucket=bucket, Key=tracked_key(slug), Body=body, ContentType="application/json")


def is_tracked(s3: Any, bucket: str, slug: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=tracked_key(slug))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return False
        raise
    return True


def user_tracked(s3: Any, bucket: str) -> list[str]:
    """Slugs users asked to track."""
    slugs: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=names.TRACKED_PREFIX):
        for item in page.get("Contents", []):
            name = item["Key"][len(names.TRACKED_PREFIX) :]
            if name.endswith(".json") and "/" not in name:
                slugs.append(name.removesuffix(".json"))
    return slugs


def recent_jobs(dynamodb: Any, table: str, *, since: datetime) -> dict[str, list[JobScore]]:
    """Jobs created since ``since``, by competition (the by-created index, newest first)."""
    cutoff = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kwargs: dict[str, Any] = {
        "TableName": table,
        "IndexName": names.JOBS_BY_CREATED_INDEX,
        "KeyConditionExpression": "#p = :p AND #c >= :c",
        "ExpressionAttributeNames": {
            "#p": "listing",
            "#c": names.JOBS_SORT_ATTRIBUTE,
            "#j": names.JOBS_TABLE_KEY,
            "#s": "competition",
            "#v": "cv_score",
            "#h": "higher_is_better",
        },
        "ExpressionAttributeValues": {":p": {"S": names.JOBS_LISTING_VALUE}, ":c": {"S": cutoff}},
        "ProjectionExpression": "#j, #s, #v, #h",
        "ScanIndexForward": False,
    }
    by_slug: dict[str, list[JobScore]] = {}
    while True:
        response = dynamodb.query(**kwargs)
        for item in response.get("Items", []):
            data = {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}
            score = data.get("cv_score")
            by_slug.setdefault(str(data["competition"]), []).append(
                JobScore(
                    job_id=str(data[names.JOBS_TABLE_KEY]),
                    cv_score=float(score) if score is not None else None,
                    higher_is_better=data.get("higher_is_better"),
                )
            )
        if not response.get("LastEvaluatedKey"):
            return by_slug
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def tracked_competitions(
    dynamodb: Any, table: str, s3: Any, bucket: str, *, job_days: int, now: datetime
) -> dict[str, list[JobScore]]:
    """Every competition to sync, with its recent jobs: jobs of the last ``job_days`` days + user-tracked."""
    tracked = recent_jobs(dynamodb, table, since=now - timedelta(days=job_days))
    for slug in user_tracked(s3, bucket):
        tracked.setdefault(slug, [])
    return tracked


# ---------------------------------------------------------------------------- reading


def _get_or_none(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return body


def load_snapshot(s3: Any, bucket: str, slug: str) -> LeaderboardSnapshot | None:
    """The stored snapshot of a competition, or None when there is none (yet) or it is unreadable."""
    body = _get_or_none(s3, bucket, snapshot_key(slug))
    if body is None:
        return None
    try:
        return LeaderboardSnapshot.model_validate_json(body)
    except ValidationError as error:
        logger.warning("leaderboard snapshot for %s is unreadable: %s", slug, error)
        return None


def load_history(s3: Any, bucket: str, slug: str) -> LeaderboardHistory | None:
    """The stored history of a competition, or None when the sync never tried it (or it is unreadable)."""
    body = _get_or_none(s3, bucket, history_key(slug))
    if body is None:
        return None
    try:
        return LeaderboardHistory.model_validate_json(body)
    except ValidationError as error:
        logger.warning("leaderboard history for %s is unreadable: %s", slug, error)
        return None


def stored_rank(
    s3: Any, bucket: str, slug: str, score: float, higher_is_better: bool | None
) -> tuple[RankEstimate | None, datetime | None]:
    """Where ``score`` lands on the stored leaderboard, and when that leaderboard was fetched."""
    snapshot = load_snapshot(s3, bucket, slug)
    if snapshot is None:
        return None, None
    return snapshot.rank(score, higher_is_better), snapshot.fetched_at


# ---------------------------------------------------------------------------- syncing


def _put_json(s3: Any, bucket: str, key: str, body: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")


def _point(snapshot: LeaderboardSnapshot, summary: LeaderboardSummary, jobs: Iterable[JobScore]) -> HistoryPoint:
    ranks: dict[str, int] = {}
    for job in jobs:
        if job.cv_score is None:
            continue
        estimate = snapshot.rank(job.cv_score, job.higher_is_better)
        if estimate is not None:
            ranks[job.job_id] = estimate.rank
    return HistoryPoint(
        fetched_at=summary.fetched_at,
        n_teams=summary.n_teams,
        best=summary.best,
        median=summary.median,
        gold=summary.gold.score if summary.gold else None,
        silver=summary.silver.score if summary.silver else None,
        bronze=summary.bronze.score if summary.bronze else None,
        job_ranks=ranks,
    )


def _last_success(history: LeaderboardHistory | None) -> float:
    if history is None or history.summary is None:
        return 0.0  # never synced: first in line
    return history.summary.fetched_at.timestamp()


def sync_leaderboards(
    s3: Any,
    bucket: str,
    slugs: Iterable[str] | Mapping[str, Iterable[JobScore]],
    *,
    options: KaggleOptions | None = None,
    history_points: int = 2016,
    deadline: float | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SyncReport:
    """Refresh the snapshot and history of each competition, stalest first; never raises for one of them.

    ``slugs`` may map each competition to its recent jobs, whose ranks go into the
    history. ``deadline`` (``time.monotonic()`` value) stops starting new
    competitions; those left are listed in ``report.skipped``.
    """
    from batch_agent.kaggle.leaderboard_download import fetch_leaderboard_snapshot

    started = time.monotonic()
    jobs_by_slug: dict[str, list[JobScore]] = (
        {slug: list(jobs) for slug, jobs in slugs.items()} if isinstance(slugs, Mapping) else {s: [] for s in slugs}
    )
    histories = {slug: load_history(s3, bucket, slug) for slug in jobs_by_slug}
    order = sorted(jobs_by_slug, key=lambda slug: (_last_success(histories[slug]), slug))
    report = SyncReport()
    for slug in order:
        if deadline is not None and time.monotonic() >= deadline:
            report.skipped.append(slug)
            continue
        history = histories[slug] or LeaderboardHistory(slug=slug)
        history.last_attempt_at = clock()
        try:
            snapshot = fetch_leaderboard_snapshot(slug, options=options)
            _put_json(s3, bucket, snapshot_key(slug), snapshot.model_dump_json())
        except Exception as error:  # one competition's failure must not stop the others
            reason = str(error) or type(error).__name__
            logger.warning("leaderboard sync: %s: %s", slug, reason)
            report.outcome[slug] = reason
            history.last_error = reason
        else:
            summary = snapshot.summary()
            history.summary = summary
            history.last_error = None
            history.points = [*history.points, _point(snapshot, summary, jobs_by_slug[slug])][-history_points:]
            report.outcome[slug] = "updated"
        histories[slug] = history
        try:
            _put_json(s3, bucket, history_key(slug), history.model_dump_json())
        except ClientError as error:
            logger.warning("leaderboard sync: could not store the history of %s: %s", slug, error)
    now = clock().timestamp()
    ages = [now - h.summary.fetched_at.timestamp() for h in histories.values() if h is not None and h.summary]
    report.oldest_snapshot_age_s = round(max(ages), 1) if ages else 0.0
    report.seconds = round(time.monotonic() - started, 3)
    return report


# ---------------------------------------------------------------------------- one scheduled run


@dataclass(frozen=True)
class SyncClients:
    s3: Any
    dynamodb: Any
    cloudwatch: Any | None = None  # None: no metrics (the local stack)
    secretsmanager: Any | None = None  # None: Kaggle credentials as the official client finds them


def kaggle_config_from_secret(secretsmanager: Any, secret_arn: str, folder: Path) -> Path:
    """Write the Kaggle secret ({"username", "key"} or {"api_token"}) as ``folder/kaggle.json`` (mode 600)."""
    value = json.loads(secretsmanager.get_secret_value(SecretId=secret_arn)["SecretString"])
    config = {k: str(value[k]) for k in ("username", "key", "api_token") if value.get(k)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kaggle.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(config, file)
    return folder


def sync_options(settings: LeaderboardSyncSettings, config_dir: Path | None) -> KaggleOptions:
    from batch_agent.kaggle.client import KaggleOptions

    return KaggleOptions(
        config_dir=config_dir,
        max_attempts=settings.kaggle_max_attempts,
        min_interval_s=settings.kaggle_min_interval_s,
        max_retry_after_s=settings.kaggle_max_retry_after_s,
    )


def run_sync(
    clients: SyncClients, settings: LeaderboardSyncSettings, *, options: KaggleOptions | None = None
) -> SyncReport:
    """One scheduled run: find what is tracked, sync it within the budget, publish the staleness metric."""
    started = time.monotonic()
    if options is None:
        config_dir = None
        if settings.kaggle_secret_arn and clients.secretsmanager is not None:
            config_dir = kaggle_config_from_secret(
                clients.secretsmanager, settings.kaggle_secret_arn, Path(settings.kaggle_config_dir)
            )
        options = sync_options(settings, config_dir)
    now = datetime.now(UTC)
    tracked = tracked_competitions(
        clients.dynamodb, settings.jobs_table, clients.s3, settings.artifacts_bucket,
        job_days=settings.job_days, now=now,
    )
    report = sync_leaderboards(
        clients.s3,
        settings.artifacts_bucket,
        tracked,
        options=options,
        history_points=settings.history_points,
        deadline=started + settings.budget_s,
    )
    if clients.cloudwatch is not None and settings.metrics_namespace:
        publish_metrics(clients.cloudwatch, settings.metrics_namespace, report)
    logger.info(
        "leaderboard sync: %d updated, %d failed, %d skipped in %.1f s; oldest snapshot %.0f s old",
        report.updated, report.failed, len(report.skipped), report.seconds, report.oldest_snapshot_age_s,
    )
    return report


def publish_metrics(cloudwatch: Any, namespace: str, report: SyncReport) -> None:
    """The staleness metric the alarm watches, plus the run's counts."""
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": names.METRIC_OLDEST_SNAPSHOT_AGE, "Value": report.oldest_snapshot_age_s, "Unit": "Seconds"},
            {"MetricName": names.METRIC_SYNC_FAILURES, "Value": float(report.failed), "Unit": "Count"},
            {"MetricName": names.METRIC_SYNC_UPDATED, "Value": float(report.updated), "Unit": "Count"},
        ],
    )
