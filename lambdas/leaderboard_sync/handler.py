"""Scheduled (EventBridge, every 5 minutes): see batch_agent.service.leaderboard_sync.run_sync."""

from __future__ import annotations

from typing import Any

import boto3

from batch_agent.service.leaderboard_sync import SyncClients, run_sync
from batch_agent.service.settings import LeaderboardSyncSettings

SETTINGS = LeaderboardSyncSettings()  # type: ignore[call-arg]  # fields come from the environment
CLIENTS = SyncClients(
    s3=boto3.client("s3"),
    dynamodb=boto3.client("dynamodb"),
    cloudwatch=boto3.client("cloudwatch"),
    secretsmanager=boto3.client("secretsmanager"),
)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    report = run_sync(CLIENTS, SETTINGS)
    return {
        "updated": report.updated,
        "failed": {slug: why for slug, why in report.outcome.items() if why != "updated"},
        "skipped": report.skipped,
        "oldest_snapshot_age_s": report.oldest_snapshot_age_s,
        "seconds": report.seconds,
    }
