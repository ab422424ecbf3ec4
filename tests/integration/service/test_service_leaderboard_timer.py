"""The whole loop on the local stack: the sync timer, the fake Kaggle server, the API's leaderboard views."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import jobs, names
from batch_agent.service.job_requests import ApiClients
from batch_agent.service.jobs import JobRecord
from batch_agent.service.settings import ApiSettings
from lambdas.api.app import create_app
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]


@pytest.fixture
def stack(fake_kaggle: FakeKaggle, tmp_path: Path) -> Iterator[EmulatedStack]:
    # The fake server must exist before the timer's first run asks it anything.
    options = StackOptions(work_dir=tmp_path / "stack", leaderboard_sync_interval_s=0.5, kaggle_min_interval_s=0.0)
    with EmulatedStack(options) as emulated:
        yield emulated


def _wait_for(condition: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_timer_keeps_a_jobs_leaderboard_fresh_and_status_follows_it(
    stack: EmulatedStack, fake_kaggle: FakeKaggle
) -> None:
    competition = fake_kaggle.add(
        FakeCompetition(slug="live-board", files={}, leaderboard=[(f"t{k}", 0.95 - k / 100) for k in range(30)])
    )
    now = jobs.now_iso()
    record = JobRecord(
        job_id="live-job", url="https://www.kaggle.com/competitions/live-board", competition="live-board",
        status="SUCCEEDED", stage="done", created_at=now, updated_at=now, time_limit=600, max_attempts=2,
        cv_score=0.905, higher_is_better=True,
    )
    jobs.create_job(stack.client("dynamodb"), stack.table, record)
    settings = ApiSettings(
        jobs_table=stack.table, artifacts_bucket=stack.bucket, state_machine_arn=stack.state_machine_arn,
        leaderboard_cache_s=0.0,
    )
    clients = ApiClients(
        dynamodb=stack.client("dynamodb"), s3=stack.client("s3"), stepfunctions=stack.client("stepfunctions"),
        batch=stack.client("batch"),
    )
    api = TestClient(create_app(settings, clients))

    def synced_teams(n: int) -> bool:
        response = api.get("/leaderboards/live-board")
        return response.status_code == 200 and (response.json()["summary"] or {}).get("n_teams") == n

    _wait_for(lambda: synced_teams(30))
    assert api.get("/status/live-job").json()["leaderboard"]["rank"] == 6  # 0.95 .. 0.91 ahead

    competition.leaderboard = [(f"n{k}", 0.99 - k / 1000) for k in range(10)] + competition.leaderboard
    _wait_for(lambda: synced_teams(40))
    assert api.get("/status/live-job").json()["leaderboard"]["rank"] == 16
    history = api.get("/leaderboards/live-board").json()["history"]
    ranks = [p["job_ranks"]["live-job"] for p in history]
    assert ranks[0] == 6 and ranks[-1] == 16 and len(ranks) >= 2

    # A competition only a user asked for joins at the next run; one Kaggle does not know fails alone.
    fake_kaggle.add(FakeCompetition(slug="watched", files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    assert api.post("/leaderboards/watched").status_code == 202
    assert api.post("/leaderboards/no-such-competition").status_code == 202
    _wait_for(lambda: (api.get("/leaderboards/watched").json()["summary"] or {}).get("n_teams") == 2)
    missing = api.get("/leaderboards/no-such-competition").json()
    assert missing["summary"] is None and "not found" in missing["last_error"]
    assert stack.sync_timer is not None and stack.sync_timer.last_error is None

    # Every run reports the staleness metric to the (emulated) CloudWatch.
    stats = stack.client("cloudwatch").get_metric_statistics(
        Namespace=names.metrics_namespace("local"),
        MetricName=names.METRIC_OLDEST_SNAPSHOT_AGE,
        StartTime=datetime.now(UTC) - timedelta(minutes=10),
        EndTime=datetime.now(UTC) + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum", "SampleCount"],
    )
    assert stats["Datapoints"] and all(p["Maximum"] < 60 for p in stats["Datapoints"])
