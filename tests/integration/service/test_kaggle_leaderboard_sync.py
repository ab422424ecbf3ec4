"""The scheduled leaderboard sync into S3 (moto) from the fake Kaggle server, and ranking from the stored copy."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_agent.kaggle.client import KaggleOptions
from batch_agent.local.stack import jobs_table_definition
from batch_agent.service import jobs, names
from batch_agent.service.jobs import JobRecord
from batch_agent.service.leaderboard_sync import (
    SyncClients,
    history_key,
    kaggle_config_from_secret,
    load_history,
    load_snapshot,
    publish_metrics,
    run_sync,
    snapshot_key,
    stored_rank,
    sync_leaderboards,
    track,
)
from batch_agent.service.settings import LeaderboardSyncSettings
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

BUCKET = "local-kaggle-solver-artifacts"
TABLE = "local-kaggle-solver-jobs"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", region_name="us-east-1").create_table(**jobs_table_definition(TABLE))
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def options(tmp_path: Path) -> KaggleOptions:
    return KaggleOptions(config_dir=tmp_path / "kaggle-config", backoff_s=0.01, max_backoff_s=0.05, max_attempts=2)


def _settings(**overrides: Any) -> LeaderboardSyncSettings:
    return LeaderboardSyncSettings(
        jobs_table=TABLE, artifacts_bucket=BUCKET, metrics_namespace="local-kaggle-solver", **overrides
    )


def _job(job_id: str, slug: str, *, cv_score: float | None, created: datetime | None = None) -> None:
    stamp = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    record = JobRecord(
        job_id=job_id,
        url=f"https://www.kaggle.com/competitions/{slug}",
        competition=slug,
        status="SUCCEEDED" if cv_score is not None else "RUNNING",
        created_at=stamp,
        updated_at=stamp,
        time_limit=600,
        max_attempts=2,
        cv_score=cv_score,
        higher_is_better=False if cv_score is not None else None,
    )
    jobs.create_job(boto3.client("dynamodb"), TABLE, record)


def test_sync_stores_snapshots_and_reports_failures_per_competition(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    board = [(f"t{k}", 0.2 + k / 100) for k in range(150)]  # an error metric: smallest first
    fake_kaggle.add(FakeCompetition(slug="synced", files={}, leaderboard=board))
    report = sync_leaderboards(s3, BUCKET, ["synced", "gone", "synced"], options=options)
    assert report.outcome["synced"] == "updated"
    assert "'gone' was not found" in report.outcome["gone"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == sorted([snapshot_key("synced"), history_key("synced"), history_key("gone")])
    snapshot = load_snapshot(s3, BUCKET, "synced")
    assert snapshot is not None and snapshot.n_teams == 150 and snapshot.higher_is_better is False
    estimate, fetched_at = stored_rank(s3, BUCKET, "synced", 0.245, None)
    assert estimate is not None and estimate.rank == 6 and estimate.medal == "gold"
    assert fetched_at == snapshot.fetched_at
    gone = load_history(s3, BUCKET, "gone")
    assert gone is not None and gone.summary is None and gone.points == [] and "not found" in (gone.last_error or "")


def test_one_competition_failing_in_any_way_does_not_stop_the_others(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    for slug in ("b-rules", "c-limited", "d-dropped", "e-fine"):
        fake_kaggle.add(FakeCompetition(slug=slug, files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    # Scripted failures are served in request order: competitions go stalest first, then by name.
    fake_kaggle.fail_next("DownloadLeaderboard", 403, "You must accept this competition's rules")
    fake_kaggle.fail_next("DownloadLeaderboard", 429, "slow down", times=2, **{"Retry-After": "0"})
    fake_kaggle.fail_next("GetLeaderboard", 429, "slow down", times=2, **{"Retry-After": "0"})
    # d-dropped: every answer (the download, then the pages) is cut off, both attempts.
    fake_kaggle.drop_after_handling.extend(["DownloadLeaderboard"] * 2 + ["GetLeaderboard"] * 2)
    slugs = ["z-missing", "e-fine", "d-dropped", "c-limited", "b-rules"]
    report = sync_leaderboards(s3, BUCKET, slugs, options=options)
    assert list(report.outcome) == ["b-rules", "c-limited", "d-dropped", "e-fine", "z-missing"]
    assert "rules" in report.outcome["b-rules"]
    assert "rate-limited" in report.outcome["c-limited"]
    assert "Could not reach Kaggle" in report.outcome["d-dropped"]
    assert report.outcome["e-fine"] == "updated"
    assert "not found" in report.outcome["z-missing"]
    assert (report.updated, report.failed) == (1, 4)


def test_failed_refresh_keeps_the_previous_snapshot_and_records_why(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    fake_kaggle.add(FakeCompetition(slug="synced", files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    sync_leaderboards(s3, BUCKET, ["synced"], options=options)
    first = load_snapshot(s3, BUCKET, "synced")
    fake_kaggle.fail_next("DownloadLeaderboard", 401, "expired")
    report = sync_leaderboards(s3, BUCKET, ["synced"], options=options)
    assert "HTTP 401" in report.outcome["synced"]
    assert load_snapshot(s3, BUCKET, "synced") == first
    history = load_history(s3, BUCKET, "synced")
    assert history is not None and len(history.points) == 1 and "HTTP 401" in (history.last_error or "")
    assert history.summary is not None and history.summary.fetched_at == first.fetched_at  # type: ignore[union-attr]


def test_history_follows_the_board_and_each_recent_jobs_rank_across_syncs(
    fake_kaggle: FakeKaggle, aws: None, options: KaggleOptions
) -> None:
    competition = fake_kaggle.add(
        FakeCompetition(slug="moving", files={}, leaderboard=[(f"t{k}", 0.30 + k / 100) for k in range(20)])
    )
    _job("recent", "moving", cv_score=0.335)  # lower is better: 4 teams (0.30..0.33) are ahead
    _job("no-score-yet", "moving", cv_score=None)
    _job("old", "old-competition", cv_score=0.1, created=datetime.now(UTC) - timedelta(days=30))
    clients = SyncClients(s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"))

    first = run_sync(clients, _settings(), options=options)
    competition.leaderboard = [(f"new{k}", 0.10 + k / 1000) for k in range(10)] + competition.leaderboard
    second = run_sync(clients, _settings(), options=options)

    # Jobs older than job_days (7) are not tracked; their competition is not asked for.
    assert first.outcome == second.outcome == {"moving": "updated"}
    assert all(c.body["competitionName"] == "moving" for c in fake_kaggle.calls("DownloadLeaderboard"))
    history = load_history(clients.s3, BUCKET, "moving")
    assert history is not None
    assert [p.n_teams for p in history.points] == [20, 30]
    assert [p.job_ranks for p in history.points] == [{"recent": 5}, {"recent": 15}]
    assert history.points[0].best == pytest.approx(0.30) and history.points[1].best == pytest.approx(0.10)
    assert history.summary is not None and history.summary.n_teams == 30
    assert history.summary.gold is not None and history.summary.gold.places == 3
    assert history.summary.gold.score == pytest.approx(0.102)
    assert history.points[-1].fetched_at == history.summary.fetched_at


def test_history_keeps_only_the_newest_points(fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions) -> None:
    fake_kaggle.add(FakeCompetition(slug="short", files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    for _ in range(4):
        sync_leaderboards(s3, BUCKET, ["short"], options=options, history_points=3)
    history = load_history(s3, BUCKET, "short")
    assert history is not None and len(history.points) == 3
    assert history.points == sorted(history.points, key=lambda p: p.fetched_at)


def test_a_user_tracked_competition_is_synced_without_any_job(
    fake_kaggle: FakeKaggle, aws: None, options: KaggleOptions
) -> None:
    fake_kaggle.add(FakeCompetition(slug="watched", files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    clients = SyncClients(s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"))
    assert run_sync(clients, _settings(), options=options).outcome == {}
    track(clients.s3, BUCKET, "watched")
    assert run_sync(clients, _settings(), options=options).outcome == {"watched": "updated"}


def test_stalest_competitions_go_first_and_a_spent_budget_skips_the_rest(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    for slug in ("a-fresh", "b-new"):
        fake_kaggle.add(FakeCompetition(slug=slug, files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    sync_leaderboards(s3, BUCKET, ["a-fresh"], options=options)
    report = sync_leaderboards(s3, BUCKET, ["a-fresh", "b-new"], options=options)
    assert list(report.outcome) == ["b-new", "a-fresh"]  # never synced before the one synced a moment ago

    spent = sync_leaderboards(s3, BUCKET, ["a-fresh", "b-new"], options=options, deadline=time.monotonic())
    assert spent.outcome == {} and sorted(spent.skipped) == ["a-fresh", "b-new"]


def test_staleness_is_the_age_of_the_oldest_snapshot_and_reaches_cloudwatch(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    fake_kaggle.add(FakeCompetition(slug="aging", files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    assert sync_leaderboards(s3, BUCKET, ["aging"], options=options).oldest_snapshot_age_s < 60
    fake_kaggle.fail_next("DownloadLeaderboard", 404, "gone for now")
    fake_kaggle.fail_next("GetLeaderboard", 404, "gone for now")
    later = datetime.now(UTC) + timedelta(seconds=1000)
    report = sync_leaderboards(s3, BUCKET, ["aging"], options=options, clock=lambda: later)
    assert report.failed == 1
    assert 999 <= report.oldest_snapshot_age_s <= 1100

    cloudwatch = boto3.client("cloudwatch")
    publish_metrics(cloudwatch, "test-kaggle-solver", report)
    stats = cloudwatch.get_metric_statistics(
        Namespace="test-kaggle-solver",
        MetricName=names.METRIC_OLDEST_SNAPSHOT_AGE,
        StartTime=datetime.now(UTC) - timedelta(minutes=5),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=60,
        Statistics=["Maximum"],
    )
    assert [p["Maximum"] for p in stats["Datapoints"]] == [report.oldest_snapshot_age_s]


def test_no_snapshot_yet_means_no_rank(s3: Any) -> None:
    assert load_snapshot(s3, BUCKET, "never-synced") is None
    assert stored_rank(s3, BUCKET, "never-synced", 0.5, True) == (None, None)


def test_the_kaggle_secret_becomes_a_private_kaggle_json(aws: None, tmp_path: Path) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="kaggle", SecretString=json.dumps({"username": "u", "key": "k", "x": "y"}))["ARN"]
    folder = kaggle_config_from_secret(secrets, arn, tmp_path / "cfg")
    config = folder / "kaggle.json"
    assert json.loads(config.read_text()) == {"username": "u", "key": "k"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
