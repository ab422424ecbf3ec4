from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from batch_agent.kaggle.leaderboard import (
    LeaderboardEntry,
    LeaderboardSnapshot,
    infer_higher_is_better,
    medal_cutoffs,
    rank_score,
    summarize_leaderboard,
)


@pytest.mark.parametrize(
    ("n_teams", "gold", "silver", "bronze"),
    [
        (1, 1, 1, 1),
        (9, 1, 1, 3),
        (50, 5, 10, 20),
        (99, 9, 19, 39),
        (100, 10, 20, 40),
        (249, 10, 49, 99),
        (250, 10, 50, 100),
        (999, 11, 50, 100),
        (1000, 12, 50, 100),
        (5000, 20, 250, 500),
    ],
)
def test_medal_cutoffs_follow_the_progression_rules_at_each_band_edge(
    n_teams: int, gold: int, silver: int, bronze: int
) -> None:
    cutoffs = medal_cutoffs(n_teams)
    assert (cutoffs.gold, cutoffs.silver, cutoffs.bronze) == (gold, silver, bronze)


def _board(n: int) -> list[float]:
    """Scores 1..n, higher is better: the k-th best team has score n - k + 1."""
    return [float(s) for s in range(1, n + 1)]


@pytest.mark.parametrize(
    ("n", "kth_best", "medal"),
    [
        # N < 100: gold 10%, silver 20%, bronze 40%
        (50, 5, "gold"),
        (50, 6, "silver"),
        (50, 10, "silver"),
        (50, 11, "bronze"),
        (50, 20, "bronze"),
        (50, 21, None),
        # 100-249: gold is 10th place
        (200, 10, "gold"),
        (200, 11, "silver"),
        (200, 40, "silver"),
        (200, 80, "bronze"),
        (200, 81, None),
        # 250-999: gold 10 + 0.2%, silver 50th, bronze 100th place
        (500, 11, "gold"),
        (500, 12, "silver"),
        (500, 50, "silver"),
        (500, 51, "bronze"),
        (500, 100, "bronze"),
        (500, 101, None),
        # >= 1000: silver top 5%, bronze top 10%
        (2000, 14, "gold"),
        (2000, 15, "silver"),
        (2000, 100, "silver"),
        (2000, 101, "bronze"),
        (2000, 200, "bronze"),
        (2000, 201, None),
    ],
)
def test_score_equal_to_the_kth_best_team_earns_the_medal_of_that_place(
    n: int, kth_best: int, medal: str | None
) -> None:
    score = float(n - kth_best + 1)
    estimate = rank_score(_board(n), score, higher_is_better=True)
    assert estimate.medal == medal
    assert estimate.rank == kth_best
    assert estimate.n_teams == n


def test_rank_counts_only_strictly_better_teams_so_ties_share_the_better_place() -> None:
    estimate = rank_score([0.9, 0.8, 0.8, 0.8, 0.5], 0.8, higher_is_better=True)
    assert estimate.rank == 2
    assert estimate.percentile == pytest.approx(20.0)  # beats only the 0.5 team


def test_tie_with_the_leader_is_first_and_gold() -> None:
    estimate = rank_score([10.0, 10.0, 10.0, 5.0], 10.0, higher_is_better=True)
    assert estimate.rank == 1
    assert estimate.medal == "gold"


def test_lower_is_better_ranks_small_errors_first() -> None:
    rmse = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.00]
    best = rank_score(rmse, 0.05, higher_is_better=False)
    assert best.rank == 1
    assert best.medal == "gold"
    assert best.percentile == 100.0
    worst = rank_score(rmse, 2.0, higher_is_better=False)
    assert worst.rank == 11
    assert worst.medal is None
    assert worst.above_median is False


def test_above_median_is_strict() -> None:
    scores = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert rank_score(scores, 3.0, higher_is_better=True).above_median is False
    assert rank_score(scores, 3.01, higher_is_better=True).above_median is True
    assert rank_score(scores, 2.99, higher_is_better=False).above_median is True


def test_missing_and_non_finite_scores_are_ignored() -> None:
    estimate = rank_score([None, math.nan, 3.0, 2.0, math.inf, 1.0], 2.5, higher_is_better=True)
    assert estimate.n_teams == 3
    assert estimate.rank == 2


def test_empty_leaderboard_cannot_rank() -> None:
    with pytest.raises(ValueError, match="no scored teams"):
        rank_score([None], 1.0, higher_is_better=True)


def test_direction_is_inferred_from_kaggle_order() -> None:
    assert infer_higher_is_better([0.99, 0.95, 0.5]) is True
    assert infer_higher_is_better([0.1, 0.2, 0.9]) is False
    assert infer_higher_is_better([0.5, 0.5]) is None
    assert infer_higher_is_better([0.5]) is None


def test_summary_names_teams_cutoffs_and_where_a_score_lands() -> None:
    entries = [
        LeaderboardEntry(team_id=i, team_name=f"team {i}", score=float(100 - i)) for i in range(300)
    ]
    text = summarize_leaderboard("demo-comp", entries, score=95.0)
    assert "demo-comp: 300 teams" in text
    assert "higher is better" in text
    assert "#1 team 0: 100" in text
    assert "gold   top    10  needs 91" in text
    assert "would rank 6 of 301" in text
    assert "gold medal" in text


def test_summary_of_an_unscored_leaderboard_says_so() -> None:
    text = summarize_leaderboard("x", [LeaderboardEntry(team_id=1, team_name="a", score=None)])
    assert "no scored teams" in text


def test_snapshot_round_trips_as_json_and_ranks_like_the_live_board() -> None:
    entries = [LeaderboardEntry(team_id=i, team_name=f"t{i}", score=0.1 * (i + 1)) for i in range(30)]
    entries.append(LeaderboardEntry(team_id=99, team_name="unscored", score=None))
    snapshot = LeaderboardSnapshot.from_entries("lower-comp", entries, datetime(2026, 1, 1, tzinfo=UTC))
    assert snapshot.n_teams == 30
    assert snapshot.higher_is_better is False  # best (smallest) listed first
    restored = LeaderboardSnapshot.model_validate_json(snapshot.model_dump_json())
    assert restored.rank(0.25) == rank_score([e.score for e in entries], 0.25, higher_is_better=False)
    assert restored.rank(0.25, higher_is_better=True) == rank_score(
        [e.score for e in entries], 0.25, higher_is_better=True
    )


def test_snapshot_without_direction_or_scores_cannot_rank() -> None:
    flat = LeaderboardSnapshot.from_entries(
        "flat", [LeaderboardEntry(team_id=1, team_name="a", score=1.0)], datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert flat.rank(0.5) is None
    assert flat.rank(0.5, higher_is_better=True) is not None
    assert flat.rank(math.nan, higher_is_better=True) is None
