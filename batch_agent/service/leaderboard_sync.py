"""Stored leaderboard snapshots: the scheduled sync writes them, the status view ranks against them.

Each competition that has jobs gets ``leaderboards/{slug}.json`` in the artifacts
bucket, a ``LeaderboardSnapshot`` refreshed by the sync (EventBridge schedule,
every 5 minutes by default). The status Lambda reads it to say where a job's CV
score would land, without Kaggle credentials or a Kaggle call per request. The
leaderboard is downloaded into memory, so the sync leaves no temporary files.

Stdlib + boto3 + pydantic at import (the status Lambda imports this module); the
Kaggle client is imported only when syncing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from batch_agent.kaggle.leaderboard import LeaderboardSnapshot, RankEstimate
from batch_agent.solver.errors import SolverError

if TYPE_CHECKING:
    from batch_agent.kaggle.client import KaggleOptions

logger = logging.getLogger(__name__)

LEADERBOARDS_PREFIX = "leaderboards/"


def snapshot_key(slug: str) -> str:
    return f"{LEADERBOARDS_PREFIX}{slug}.json"


def sync_leaderboards(
    s3: Any,
    bucket: str,
    slugs: Iterable[str],
    *,
    options: KaggleOptions | None = None,
) -> dict[str, str]:
    """Refresh the stored snapshot of each competition; ``{slug: "updated" or why not}``.

    One competition's failure (rules, not found, Kaggle down) is reported and the
    others still sync; the previous snapshot stays in place.
    """
    from batch_agent.kaggle.leaderboard_download import fetch_leaderboard_snapshot

    outcome: dict[str, str] = {}
    for slug in sorted(set(slugs)):
        try:
            snapshot = fetch_leaderboard_snapshot(slug, options=options)
        except SolverError as error:
            logger.warning("leaderboard sync: %s: %s", slug, error)
            outcome[slug] = str(error)
            continue
        s3.put_object(
            Bucket=bucket,
            Key=snapshot_key(slug),
            Body=snapshot.model_dump_json().encode(),
            ContentType="application/json",
        )
        outcome[slug] = "updated"
    return outcome


def load_snapshot(s3: Any, bucket: str, slug: str) -> LeaderboardSnapshot | None:
    """The stored snapshot of a competition, or None when there is none (yet) or it is unreadable."""
    try:
        body = s3.get_object(Bucket=bucket, Key=snapshot_key(slug))["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        return LeaderboardSnapshot.model_validate_json(body)
    except ValidationError as error:
        logger.warning("leaderboard snapshot for %s is unreadable: %s", slug, error)
        return None


def stored_rank(
    s3: Any, bucket: str, slug: str, score: float, higher_is_better: bool | None
) -> tuple[RankEstimate | None, datetime | None]:
    """Where ``score`` lands on the stored leaderboard, and when that leaderboard was fetched."""
    snapshot = load_snapshot(s3, bucket, slug)
    if snapshot is None:
        return None, None
    return snapshot.rank(score, higher_is_better), snapshot.fetched_at

