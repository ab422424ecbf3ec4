"""The whole public leaderboard (one CSV download, or page by page) and the rank estimate."""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from datetime import UTC, datetime
from functools import partial

from batch_agent.kaggle.client import Connection, KaggleOptions, call, connection, parse_score
from batch_agent.kaggle.errors import KaggleAuthError, KaggleError, KaggleRulesNotAcceptedError
from batch_agent.kaggle.leaderboard import (
    LeaderboardEntry,
    LeaderboardSnapshot,
    RankEstimate,
    infer_higher_is_better,
    rank_score,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- leaderboard

_LEADERBOARD_PAGE = 100


def _parse_leaderboard_csv(text: str) -> list[LeaderboardEntry]:
    rows = csv.DictReader(io.StringIO(text))
    entries: list[LeaderboardEntry] = []
    for row in rows:
        lower = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if "score" not in lower:
            raise ValueError("leaderboard CSV has no Score column")
        team_id = lower.get("teamid", "")
        date_text = lower.get("submissiondate", "")
        try:
            date = datetime.fromisoformat(date_text) if date_text else None
        except ValueError:
            date = None
        entries.append(
            LeaderboardEntry(
                team_id=int(team_id) if team_id.isdigit() else len(entries) + 1,
                team_name=lower.get("teamname", ""),
                score=parse_score(lower.get("score")),
                submission_date=date,
            )
        )
    return entries


def _download_leaderboard_file(conn: Connection, slug: str) -> list[LeaderboardEntry]:
    from kagglesdk.competitions.types.competition_api_service import ApiDownloadLeaderboardRequest

    request = ApiDownloadLeaderboardRequest()
    request.competition_name = slug
    response = call(
        conn.options,
        lambda: conn.competitions.download_leaderboard(request),
        slug=slug,
        what="download the leaderboard",
    )
    try:
        body = response.content
    finally:
        response.close()
    if zipfile.is_zipfile(io.BytesIO(body)):
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ValueError("leaderboard archive holds no CSV")
            body = zf.read(names[0])
    return _parse_leaderboard_csv(body.decode("utf-8-sig"))


def _page_leaderboard(conn: Connection, slug: str) -> list[LeaderboardEntry]:
    from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

    entries: list[LeaderboardEntry] = []
    token = ""
    for _page in range(10_000):
        request = ApiGetLeaderboardRequest()
        request.competition_name = slug
        request.page_size = _LEADERBOARD_PAGE
        request.page_token = token
        response = call(
            conn.options,
            partial(conn.competitions.get_leaderboard, request),
            slug=slug,
            what="read the leaderboard",
        )
        for sub in response.submissions or []:
            entries.append(
                LeaderboardEntry(
                    team_id=int(sub.team_id or 0),
                    team_name=sub.team_name or "",
                    score=parse_score(sub.score),
                    submission_date=sub.submission_date,
                )
            )
        token = response.next_page_token or ""
        if not token:
            break
    return entries


def download_leaderboard(slug: str, *, options: KaggleOptions | None = None) -> list[LeaderboardEntry]:
    """The complete public leaderboard, best team first.

    Kaggle's leaderboard download (one CSV with every team) is tried first; when it
    is not served, the paged leaderboard is read to its last page.
    """
    with connection(options) as conn:
        try:
            return _download_leaderboard_file(conn, slug)
        except (KaggleAuthError, KaggleRulesNotAcceptedError):
            raise
        except (KaggleError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as error:
            logger.info("Kaggle: leaderboard download for %s unavailable (%s); paging instead", slug, error)
        return _page_leaderboard(conn, slug)


def fetch_leaderboard_snapshot(slug: str, *, options: KaggleOptions | None = None) -> LeaderboardSnapshot:
    """The complete public leaderboard as a storable snapshot (for the scheduled sync)."""
    entries = download_leaderboard(slug, options=options)
    return LeaderboardSnapshot.from_entries(slug, entries, datetime.now(UTC))


def estimate_rank(
    slug: str,
    score: float,
    higher_is_better: bool | None,
    *,
    options: KaggleOptions | None = None,
) -> RankEstimate | None:
    """Where ``score`` would land on the public leaderboard, or None when Kaggle cannot say.

    Never raises: a local run must not fail because Kaggle is unreachable or no
    credentials are set. ``higher_is_better=None`` takes the direction from the
    leaderboard's own order.
    """
    options = options or KaggleOptions()
    # One retry at most: this is a bonus line in a report, not worth minutes of backoff.
    quick = options.model_copy(update={"max_attempts": min(options.max_attempts, 2)})
    try:
        entries = download_leaderboard(slug, options=quick)
        scores = [e.score for e in entries]
        direction = higher_is_better if higher_is_better is not None else infer_higher_is_better(scores)
        if direction is None:
            logger.info("Kaggle: cannot tell the direction of the %s leaderboard", slug)
            return None
        return rank_score(scores, score, direction)
    except (KaggleError, ValueError, OSError) as error:
        logger.info("Kaggle: no leaderboard estimate for %s: %s", slug, error)
        return None


