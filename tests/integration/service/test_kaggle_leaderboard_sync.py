"""The scheduled leaderboard sync into S3 (moto) from the fake Kaggle server, and ranking from the stored copy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_agent.kaggle.client import KaggleOptions
from batch_agent.service.leaderboard_sync import load_snapshot, snapshot_key, stored_rank, sync_leaderboards
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

BUCKET = "local-kaggle-solver-artifacts"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def options(tmp_path: Path) -> KaggleOptions:
    return KaggleOptions(config_dir=tmp_path / "kaggle-config", backoff_s=0.01, max_backoff_s=0.05)


def test_sync_stores_snapshots_and_reports_failures_per_competition(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    board = [(f"t{k}", 0.2 + k / 100) for k in range(150)]  # an error metric: smallest first
    fake_kaggle.add(FakeCompetition(slug="synced", files={}, leaderboard=board))
    outcome = sync_leaderboards(s3, BUCKET, ["synced", "gone", "synced"], options=options)
    assert outcome["synced"] == "updated"
    assert "'gone' was not found" in outcome["gone"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [snapshot_key("synced")]
    snapshot = load_snapshot(s3, BUCKET, "synced")
    assert snapshot is not None and snapshot.n_teams == 150 and snapshot.higher_is_better is False
    estimate, fetched_at = stored_rank(s3, BUCKET, "synced", 0.245, None)
    assert estimate is not None and estimate.rank == 6 and estimate.medal == "gold"
    assert fetched_at == snapshot.fetched_at


def test_failed_refresh_keeps_the_previous_snapshot(
    fake_kaggle: FakeKaggle, s3: Any, options: KaggleOptions
) -> None:
    fake_kaggle.add(FakeCompetition(slug="synced", files={}, leaderboard=[("a", 0.9), ("b", 0.8)]))
    sync_leaderboards(s3, BUCKET, ["synced"], options=options)
    first = load_snapshot(s3, BUCKET, "synced")
    fake_kaggle.fail_next("DownloadLeaderboard", 401, "expired")
    outcome = sync_leaderboards(s3, BUCKET, ["synced"], options=options)
    assert "HTTP 401" in outcome["synced"]
    assert load_snapshot(s3, BUCKET, "synced") == first


def test_no_snapshot_yet_means_no_rank(s3: Any) -> None:
    assert load_snapshot(s3, BUCKET, "never-synced") is None
    assert stored_rank(s3, BUCKET, "never-synced", 0.5, True) == (None, None)
