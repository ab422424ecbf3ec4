"""What the API does with leaderboards: show one, start tracking one, rank a job on the latest snapshot.

The routes in ``lambdas/api`` call these functions; the scheduled sync
(``leaderboard_sync``) writes what they read. Stdlib + boto3 + pydantic only
(the API Lambda imports it).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from batch_agent.kaggle.leaderboard import LeaderboardSnapshot, LeaderboardSummary
from batch_agent.kaggle.urls import checked_slug
from batch_agent.service import leaderboard_sync
from batch_agent.service.job_requests import JobStatusView
from batch_agent.service.leaderboard_sync import HistoryPoint


class LeaderboardNotFoundError(LookupError):
    """Nobody tracks this competition and the sync never saw it (HTTP 404)."""


class LeaderboardView(BaseModel):
    """``GET /leaderboards/{slug}``: the latest snapshot's summary and the history behind it."""

    slug: str
    # A user asked to track it (competitions of recent jobs are synced without being asked).
    tracked: bool
    # None until the first successful sync.
    summary: LeaderboardSummary | None
    # Seconds since the summary's snapshot was fetched; None without one.
    age_s: float | None
    # Oldest first, one point per successful sync.
    history: list[HistoryPoint]
    last_attempt_at: datetime | None
    # Why the last sync of this competition failed; None when it succeeded.
    last_error: str | None


def leaderboard_view(s3: Any, bucket: str, slug: str) -> LeaderboardView:
    slug = checked_slug(slug)
    history = leaderboard_sync.load_history(s3, bucket, slug)
    tracked = leaderboard_sync.is_tracked(s3, bucket, slug)
    if history is None and not tracked:
        raise LeaderboardNotFoundError(
            f"no leaderboard of {slug!r} is tracked; POST /leaderboards/{slug} to track it"
        )
    summary = history.summary if history else None
    return LeaderboardView(
        slug=slug,
        tracked=tracked,
        summary=summary,
        age_s=round((datetime.now(UTC) - summary.fetched_at).total_seconds(), 1) if summary else None,
        history=history.points if history else [],
        last_attempt_at=history.last_attempt_at if history else None,
        last_error=history.last_error if history else None,
    )


def track_leaderboard(s3: Any, bucket: str, slug: str) -> LeaderboardView:
    """Track a competition (idempotent); the next sync fetches its leaderboard."""
    slug = checked_slug(slug)
    leaderboard_sync.track(s3, bucket, slug)
    return leaderboard_view(s3, bucket, slug)


class SnapshotCache:
    """Latest snapshots per competition, each reused for ``ttl_s`` (a sync writes one every few minutes)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, LeaderboardSnapshot | None]] = {}

    def get(self, s3: Any, bucket: str, slug: str) -> LeaderboardSnapshot | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(slug)
        if entry is not None and now - entry[0] < self.ttl_s:
            return entry[1]
        snapshot = leaderboard_sync.load_snapshot(s3, bucket, slug)
        with self._lock:
            self._entries[slug] = (now, snapshot)
        return snapshot


def with_live_rank(view: JobStatusView, snapshot: LeaderboardSnapshot | None) -> JobStatusView:
    """The job's CV score ranked on the latest snapshot: rank, percentile, medal and medal lines, as of when.

    Without a snapshot (or a CV score) the view keeps the rank its job recorded when it finished.
    """
    if snapshot is None or view.cv_score is None:
        return view
    estimate = snapshot.rank(view.cv_score, view.higher_is_better)
    if estimate is None:
        return view
    summary = snapshot.summary()
    lines = {
        name: line.model_dump() if line is not None else None
        for name, line in (("gold", summary.gold), ("silver", summary.silver), ("bronze", summary.bronze))
    }
    leaderboard = {
        **estimate.model_dump(),
        "score": view.cv_score,
        "lines": lines,
        "median": summary.median,
        "as_of": snapshot.fetched_at.isoformat(),
    }
    return view.model_copy(update={"leaderboard": leaderboard})
