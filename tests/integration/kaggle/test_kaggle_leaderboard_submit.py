"""Full leaderboard, rank estimates and submissions through the official client against the fake server."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest

from batch_agent.kaggle.client import KaggleOptions
from batch_agent.kaggle.errors import (
    KaggleAuthError,
    KaggleQuotaError,
    KaggleRateLimitError,
    KaggleRulesNotAcceptedError,
)
from batch_agent.kaggle.leaderboard_download import download_leaderboard, estimate_rank, fetch_leaderboard_snapshot
from batch_agent.kaggle.submit import submit
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

# 260 teams, best first, higher is better: team k (0-based) scores 1.0 - k/1000.
BOARD = [(f"team-{k}", 1.0 - k / 1000) for k in range(260)]


@pytest.fixture
def options(tmp_path: Path) -> KaggleOptions:
    return KaggleOptions(config_dir=tmp_path / "kaggle-config", backoff_s=0.01, max_backoff_s=0.05)


def _competition(**kwargs: object) -> FakeCompetition:
    return FakeCompetition(slug="board-comp", files={"train.csv": b"id,y\n1,2\n"}, leaderboard=BOARD, **kwargs)  # type: ignore[arg-type]


def test_leaderboard_download_returns_every_team(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    entries = download_leaderboard("board-comp", options=options)
    assert len(entries) == 260
    assert entries[0].team_name == "team-0" and entries[0].score == pytest.approx(1.0)
    assert entries[-1].score == pytest.approx(1.0 - 259 / 1000)
    assert len(fake_kaggle.calls("DownloadLeaderboard")) == 1
    assert fake_kaggle.calls("GetLeaderboard") == []


def test_paged_leaderboard_is_read_past_the_first_page_when_download_is_unavailable(
    fake_kaggle: FakeKaggle, options: KaggleOptions
) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.leaderboard_download_enabled = False
    entries = download_leaderboard("board-comp", options=options)
    assert [e.team_name for e in entries] == [name for name, _ in BOARD]
    pages = fake_kaggle.calls("GetLeaderboard")
    assert len(pages) == 6  # the fake serves at most 50 rows a page
    assert pages[1].body["pageToken"] == "50"


def test_snapshot_for_the_sync_holds_every_score_best_first(
    fake_kaggle: FakeKaggle, options: KaggleOptions
) -> None:
    fake_kaggle.add(_competition())
    snapshot = fetch_leaderboard_snapshot("board-comp", options=options)
    assert snapshot.n_teams == 260 and snapshot.higher_is_better is True
    assert snapshot.scores[0] == pytest.approx(1.0)
    estimate = snapshot.rank(0.9605)
    assert estimate is not None and estimate.rank == 41


def test_estimate_rank_places_a_score_with_medal(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    # 260 teams: gold = top 10, silver = top 50, bronze = top 100 places.
    estimate = estimate_rank("board-comp", 0.9605, True, options=options)
    assert estimate is not None
    assert estimate.rank == 41  # teams 0..39 score above it
    assert estimate.n_teams == 260
    assert estimate.medal == "silver"
    assert estimate.above_median is True


def test_estimate_rank_infers_direction_from_leaderboard_order(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    estimate = estimate_rank("board-comp", 0.995, None, options=options)
    assert estimate is not None and estimate.rank == 6 and estimate.medal == "gold"


def test_estimate_rank_returns_none_without_credentials(
    fake_kaggle: FakeKaggle, options: KaggleOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert estimate_rank("board-comp", 0.5, True, options=options) is None


def test_estimate_rank_returns_none_when_kaggle_is_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kagglesdk import kaggle_env

    # A loopback port nobody listens on: connection refused, retried once, then None.
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, "http://127.0.0.1:9")
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    options = KaggleOptions(config_dir=tmp_path, backoff_s=0.01)
    assert estimate_rank("board-comp", 0.5, True, options=options) is None


def test_submit_uploads_polls_until_scored_and_ranks(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    seen: list[bytes] = []

    def scorer(body: bytes) -> float:
        seen.append(body)
        return 0.9915

    fake_kaggle.add(_competition(scorer=scorer, polls_before_scored=2))
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,2.5\n")
    result = submit("board-comp", path, "kaggle-solver cv=0.99", poll_interval=0.01, options=options)
    assert seen == [b"id,y\n1,2.5\n"]
    assert result.status == "complete"
    assert result.public_score == pytest.approx(0.9915)
    assert len(fake_kaggle.calls("GetSubmission")) == 3
    sent = fake_kaggle.calls("CreateSubmission")[0].body["submissionDescription"]
    assert sent == result.description and re.fullmatch(r"kaggle-solver cv=0\.99 \[[0-9a-f]{12}\]", sent)
    assert result.rank is not None and result.rank.rank == 10 and result.rank.medal == "gold"


def test_submit_reports_scoring_error(fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path) -> None:
    fake_kaggle.add(_competition(scorer=lambda _body: None, polls_before_scored=0))
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,oops\n")
    result = submit("board-comp", path, "bad", poll_interval=0.01, options=options)
    assert result.status == "error"
    assert result.error == "Submission could not be scored"
    assert result.public_score is None and result.rank is None


def test_submit_still_pending_at_timeout_returns_pending(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition(polls_before_scored=1000))
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,2\n")
    result = submit("board-comp", path, "slow", poll_interval=0.01, timeout=0.1, options=options)
    assert result.status == "pending"
    assert result.ref >= 1000


def test_submit_before_accepting_rules_names_rules_url(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition(rules_accepted=False))
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,2\n")
    with pytest.raises(KaggleRulesNotAcceptedError, match="competitions/board-comp/rules"):
        submit("board-comp", path, "x", options=options)


def test_daily_submission_limit_is_a_quota_error(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.fail_next("CreateSubmission", 400, "You have exceeded your daily submission limit")
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,2\n")
    with pytest.raises(KaggleQuotaError, match="daily submission limit"):
        submit("board-comp", path, "x", options=options)


def test_leaderboard_with_rejected_credentials_raises_auth_error(
    fake_kaggle: FakeKaggle, options: KaggleOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kaggle.add(_competition())
    monkeypatch.setenv("KAGGLE_KEY", "nope")
    with pytest.raises(KaggleAuthError):
        download_leaderboard("board-comp", options=options)


def test_a_dropped_answer_to_create_submission_does_not_submit_twice(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition(scorer=lambda _body: 0.95, polls_before_scored=0))
    fake_kaggle.drop_after_handling.append("CreateSubmission")  # Kaggle takes it; the answer is lost
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,2\n")
    result = submit("board-comp", path, "once", poll_interval=0.01, options=options)
    assert len(fake_kaggle.submissions) == 1
    assert len(fake_kaggle.calls("CreateSubmission")) == 1
    assert len(fake_kaggle.calls("ListSubmissions")) == 1
    assert result.ref == next(iter(fake_kaggle.submissions)) and result.status == "complete"
    assert result.public_score == pytest.approx(0.95)


def test_a_create_submission_that_never_arrived_is_sent_again(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition(polls_before_scored=0))
    fake_kaggle.fail_next("CreateSubmission", 503, "unavailable")  # refused before doing anything
    path = tmp_path / "submission.csv"
    path.write_text("id,y\n1,2\n")
    result = submit("board-comp", path, "again", poll_interval=0.01, options=options)
    assert len(fake_kaggle.submissions) == 1 and result.status == "complete"
    assert len(fake_kaggle.calls("CreateSubmission")) == 2
    assert len(fake_kaggle.calls("ListSubmissions")) == 1  # looked first, found nothing, sent again


def test_requests_are_spaced_by_the_minimum_interval(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    spaced = options.model_copy(update={"min_interval_s": 0.3})
    for _ in range(3):
        download_leaderboard("board-comp", options=spaced)
    times = [r.at for r in fake_kaggle.calls("DownloadLeaderboard")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2 and min(gaps) >= 0.28


def test_retry_after_is_waited_out_even_beyond_the_backoff_cap(
    fake_kaggle: FakeKaggle, options: KaggleOptions
) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.fail_next("DownloadLeaderboard", 429, "slow down", **{"Retry-After": "0.6"})
    started = time.monotonic()
    assert len(download_leaderboard("board-comp", options=options)) == 260  # max_backoff_s is 0.05
    first, second = (r.at for r in fake_kaggle.calls("DownloadLeaderboard"))
    assert second - first >= 0.55 and time.monotonic() - started < 5


def test_a_retry_after_longer_than_allowed_fails_at_once(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.leaderboard_download_enabled = False
    fake_kaggle.fail_next("GetLeaderboard", 429, "slow down", **{"Retry-After": "3600"})
    with pytest.raises(KaggleRateLimitError, match="asked to wait 3600 s"):
        download_leaderboard("board-comp", options=options.model_copy(update={"max_retry_after_s": 60}))
    assert len(fake_kaggle.calls("GetLeaderboard")) == 1
