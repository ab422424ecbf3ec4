"""The leaderboard routes and the live rank in GET /status, against in-process moto with stored snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from fastapi.testclient import TestClient

from batch_agent.kaggle.leaderboard import LeaderboardEntry, LeaderboardSnapshot
from batch_agent.service import jobs
from batch_agent.service.job_requests import api_clients
from batch_agent.service.jobs import JobRecord
from batch_agent.service.leaderboard_sync import HistoryPoint, LeaderboardHistory, history_key, snapshot_key
from batch_agent.service.settings import ApiSettings
from lambdas.api.app import create_app
from tests.unit.lambdas.api_backend import BUCKET, TABLE, offline_api_backend

SLUG = "house-prices"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSettings]:
    with offline_api_backend(monkeypatch) as api_settings:
        yield api_settings.model_copy(update={"leaderboard_cache_s": 0.0})


@pytest.fixture
def client(settings: ApiSettings) -> TestClient:
    return TestClient(create_app(settings, api_clients()))


def _store(scores: list[float], fetched_at: datetime) -> LeaderboardSnapshot:
    """What a sync leaves behind: the snapshot and a history whose last point is its summary."""
    entries = [LeaderboardEntry(team_id=i, team_name=f"t{i}", score=s) for i, s in enumerate(scores)]
    snapshot = LeaderboardSnapshot.from_entries(SLUG, entries, fetched_at)
    summary = snapshot.summary()
    point = HistoryPoint(
        fetched_at=fetched_at, n_teams=summary.n_teams, best=summary.best, median=summary.median,
        gold=summary.gold.score if summary.gold else None, silver=None, bronze=None, job_ranks={"j1": 3},
    )
    history = LeaderboardHistory(slug=SLUG, summary=summary, points=[point], last_attempt_at=fetched_at)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=snapshot_key(SLUG), Body=snapshot.model_dump_json().encode())
    s3.put_object(Bucket=BUCKET, Key=history_key(SLUG), Body=history.model_dump_json().encode())
    return snapshot


def _finished_job(cv_score: float, higher_is_better: bool) -> None:
    now = jobs.now_iso()
    record = JobRecord(
        job_id="j1", url=f"https://www.kaggle.com/competitions/{SLUG}", competition=SLUG, status="SUCCEEDED",
        stage="done", created_at=now, updated_at=now, time_limit=600, max_attempts=2, cv_score=cv_score,
        higher_is_better=higher_is_better,
    )
    jobs.create_job(boto3.client("dynamodb"), TABLE, record)


def test_an_untracked_leaderboard_is_404_until_posted_then_tracked_without_a_summary(client: TestClient) -> None:
    assert client.get(f"/leaderboards/{SLUG}").status_code == 404
    posted = client.post(f"/leaderboards/{SLUG}")
    assert posted.status_code == 202
    assert posted.json() == {
        "slug": SLUG, "tracked": True, "summary": None, "age_s": None, "history": [],
        "last_attempt_at": None, "last_error": None,
    }
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [f"tracked/{SLUG}.json"]
    assert client.post(f"/leaderboards/{SLUG}").status_code == 202  # tracking twice is harmless
    assert client.get(f"/leaderboards/{SLUG}").json()["tracked"] is True


@pytest.mark.parametrize("slug", ["Bad..Slug", "-leading", "a" * 101, "dots.json", "under_score"])
def test_a_slug_that_is_not_one_is_422_and_writes_nothing(client: TestClient, slug: str) -> None:
    assert client.post(f"/leaderboards/{slug}").status_code == 422
    assert client.get(f"/leaderboards/{slug}").status_code == 422
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_leaderboard_shows_the_latest_summary_and_its_history(client: TestClient) -> None:
    fetched = datetime.now(UTC) - timedelta(seconds=120)
    _store([0.9 - k / 100 for k in range(50)], fetched)
    body = client.get(f"/leaderboards/{SLUG}").json()
    assert body["tracked"] is False  # synced because a job uses it, not because a user asked
    summary = body["summary"]
    assert (summary["n_teams"], summary["higher_is_better"]) == (50, True)
    assert summary["best"] == pytest.approx(0.9) and summary["median"] == pytest.approx(0.655)
    assert summary["gold"] == {"places": 5, "score": pytest.approx(0.86)}
    assert summary["bronze"] == {"places": 20, "score": pytest.approx(0.71)}
    assert 119 <= body["age_s"] < 200
    assert [p["job_ranks"] for p in body["history"]] == [{"j1": 3}]


def test_status_ranks_the_cv_score_on_the_latest_snapshot(client: TestClient) -> None:
    _finished_job(cv_score=0.875, higher_is_better=True)
    assert client.get("/status/j1").json()["leaderboard"] is None  # nothing synced yet

    fetched = datetime.now(UTC) - timedelta(minutes=3)
    _store([0.9 - k / 100 for k in range(50)], fetched)
    board = client.get("/status/j1").json()["leaderboard"]
    assert (board["rank"], board["n_teams"], board["medal"]) == (4, 50, "gold")  # 0.90, 0.89, 0.88 ahead
    assert board["percentile"] == pytest.approx(94.0)
    assert board["lines"]["silver"] == {"places": 10, "score": pytest.approx(0.81)}
    assert datetime.fromisoformat(board["as_of"]) == fetched

    # Others submit: the next snapshot moves the job down without the job changing.
    _store([0.99 - k / 1000 for k in range(200)] + [0.9 - k / 100 for k in range(50)], datetime.now(UTC))
    moved = client.get("/status/j1").json()["leaderboard"]
    assert (moved["rank"], moved["n_teams"], moved["medal"]) == (119, 250, None)  # 115 + 3 ahead, bronze: top 100


def test_status_ranks_with_the_jobs_metric_direction_not_the_boards_guess(client: TestClient) -> None:
    _finished_job(cv_score=0.455, higher_is_better=False)
    _store([0.40 + k / 100 for k in range(10)], datetime.now(UTC))  # lower is better, best first
    board = client.get("/status/j1").json()["leaderboard"]
    assert board["rank"] == 7  # 0.40 .. 0.45 are better
