"""Where a score lands on a Kaggle leaderboard: rank, percentile, median, medal.

Medal cut-offs follow Kaggle's progression rules as MLE-bench applies them
(DESIGN.md §5): with N teams, gold is the top 10% (N<100), the top 10 (100–249)
or the top 10 + 0.2%·N (N≥250); silver the top 20% (N<250), top 50 (250–999) or
top 5% (N≥1000); bronze the top 40% (N<250), top 100 (250–999) or top 10%
(N≥1000). A score earns a medal when it is at least as good as the score of the
last team inside the cut-off, so ties are resolved in the score's favour.

Stdlib + pydantic only: the status Lambda imports it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

Medal = Literal["gold", "silver", "bronze"]


class LeaderboardEntry(BaseModel):
    """One team on the public leaderboard, in the order Kaggle lists them (best first)."""

    team_id: int
    team_name: str
    score: float | None
    submission_date: datetime | None = None


class MedalCutoffs(BaseModel):
    """How many places earn each medal on a leaderboard of ``n_teams``."""

    gold: int
    silver: int
    bronze: int


class RankEstimate(BaseModel):
    """Where one score would land if it were on the leaderboard."""

    rank: int  # 1 + number of teams with a strictly better score
    n_teams: int  # teams on the leaderboard (the ranked score not counted)
    percentile: float  # % of leaderboard teams with a strictly worse score
    above_median: bool  # strictly better than the leaderboard's median score
    medal: Medal | None


class MedalLine(BaseModel):
    """A medal's cut-off: how many places earn it and the score of the last team inside it."""

    places: int
    score: float


class LeaderboardSummary(BaseModel):
    """A leaderboard in a few numbers: size, direction, best, median and the three medal lines."""

    slug: str
    fetched_at: datetime
    n_teams: int
    higher_is_better: bool | None
    best: float | None
    median: float | None
    gold: MedalLine | None
    silver: MedalLine | None
    bronze: MedalLine | None


class LeaderboardSnapshot(BaseModel):
    """A stored copy of a public leaderboard's scores, enough to rank without asking Kaggle.

    The scheduled sync writes one per competition (JSON in S3 or DynamoDB); the
    status Lambda ranks a job's CV score against it.
    """

    slug: str
    fetched_at: datetime
    n_teams: int
    # None when the leaderboard's order does not tell (fewer than two distinct scores).
    higher_is_better: bool | None
    scores: list[float]  # finite scores, best first

    @classmethod
    def from_entries(cls, slug: str, entries: Sequence[LeaderboardEntry], fetched_at: datetime) -> LeaderboardSnapshot:
        scores = _finite([e.score for e in entries])
        return cls(
            slug=slug,
            fetched_at=fetched_at,
            n_teams=len(scores),
            higher_is_better=infer_higher_is_better(scores),
            scores=scores,
        )

    def rank(self, score: float, higher_is_better: bool | None = None) -> RankEstimate | None:
        """Rank ``score`` (direction from the metric when given, else from the board); None if it cannot."""
        direction = higher_is_better if higher_is_better is not None else self.higher_is_better
        if direction is None or not self.scores or not math.isfinite(score):
            return None
        return rank_score(self.scores, score, direction)

    def summary(self) -> LeaderboardSummary:
        """Size, best, median and medal lines; no lines when the board is empty."""
        if not self.scores:
            ordered: list[float] = []
        elif self.higher_is_better is None:
            ordered = list(self.scores)  # flat or a single team: Kaggle's order is all there is
        else:
            ordered = sorted(self.scores, reverse=self.higher_is_better)
        lines: dict[str, MedalLine | None] = {"gold": None, "silver": None, "bronze": None}
        if ordered:
            cutoffs = medal_cutoffs(len(ordered))
            for name in lines:
                places = min(getattr(cutoffs, name), len(ordered))
                lines[name] = MedalLine(places=places, score=ordered[places - 1])
        return LeaderboardSummary(
            slug=self.slug,
            fetched_at=self.fetched_at,
            n_teams=self.n_teams,
            higher_is_better=self.higher_is_better,
            best=ordered[0] if ordered else None,
            median=statistics.median(ordered) if ordered else None,
            **lines,
        )


def medal_cutoffs(n_teams: int) -> MedalCutoffs:
    """The number of places that earn gold, silver and bronze with ``n_teams`` teams."""
    if n_teams < 1:
        raise ValueError("a leaderboard needs at least one team")
    if n_teams < 100:
        gold = max(1, int(n_teams * 0.1))
    elif n_teams < 250:
        gold = 10
    else:
        gold = 10 + int(n_teams * 0.002)
    if n_teams < 250:
        silver = max(1, int(n_teams * 0.2))
        bronze = max(1, int(n_teams * 0.4))
    elif n_teams < 1000:
        silver, bronze = 50, 100
    else:
        silver = max(1, int(n_teams * 0.05))
        bronze = max(1, int(n_teams * 0.1))
    return MedalCutoffs(gold=gold, silver=silver, bronze=bronze)


def _finite(scores: Sequence[float | None]) -> list[float]:
    return [s for s in scores if s is not None and math.isfinite(s)]


def rank_score(scores: Sequence[float | None], score: float, higher_is_better: bool) -> RankEstimate:
    """Rank ``score`` against a leaderboard's scores (any order; missing or non-finite ones ignored)."""
    board = _finite(scores)
    if not board:
        raise ValueError("the leaderboard has no scored teams")
    if not math.isfinite(score):
        raise ValueError(f"cannot rank a non-finite score: {score}")
    ordered = sorted(board, reverse=higher_is_better)  # best first

    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    def at_least_as_good(a: float, b: float) -> bool:
        return a >= b if higher_is_better else a <= b

    n = len(ordered)
    n_better = sum(1 for s in ordered if better(s, score))
    n_worse = sum(1 for s in ordered if better(score, s))
    cutoffs = medal_cutoffs(n)
    medal: Medal | None = None
    medals: tuple[tuple[Medal, int], ...] = (
        ("gold", cutoffs.gold),
        ("silver", cutoffs.silver),
        ("bronze", cutoffs.bronze),
    )
    for name, places in medals:
        if at_least_as_good(score, ordered[min(places, n) - 1]):
            medal = name
            break
    return RankEstimate(
        rank=n_better + 1,
        n_teams=n,
        percentile=round(100.0 * n_worse / n, 2),
        above_median=better(score, statistics.median(ordered)),
        medal=medal,
    )


def infer_higher_is_better(scores_in_board_order: Sequence[float | None]) -> bool | None:
    """The direction of a leaderboard from its order (Kaggle lists the best team first); None if flat."""
    board = _finite(scores_in_board_order)
    if len(board) < 2 or board[0] == board[-1]:
        return None
    return board[0] > board[-1]


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def summarize_leaderboard(
    slug: str,
    entries: Sequence[LeaderboardEntry],
    *,
    higher_is_better: bool | None = None,
    score: float | None = None,
) -> str:
    """A few lines about a leaderboard (and where ``score`` would land) for the terminal."""
    scores = [e.score for e in entries]
    board = _finite(scores)
    if not board:
        return f"{slug}: the public leaderboard has no scored teams yet."
    direction = higher_is_better if higher_is_better is not None else infer_higher_is_better(scores)
    if direction is None:
        direction = True
    ordered = sorted(board, reverse=direction)
    n = len(ordered)
    cutoffs = medal_cutoffs(n)
    lines = [
        f"{slug}: {n} teams on the public leaderboard ({'higher' if direction else 'lower'} is better)",
        f"  best {_fmt(ordered[0])}   median {_fmt(statistics.median(ordered))}   last {_fmt(ordered[-1])}",
        f"  gold   top {cutoffs.gold:>5}  needs {_fmt(ordered[cutoffs.gold - 1])}",
        f"  silver top {cutoffs.silver:>5}  needs {_fmt(ordered[cutoffs.silver - 1])}",
        f"  bronze top {cutoffs.bronze:>5}  needs {_fmt(ordered[cutoffs.bronze - 1])}",
    ]
    leaders = [e for e in entries if e.score is not None and math.isfinite(e.score)][:3]
    for place, entry in enumerate(leaders, start=1):
        lines.append(f"  #{place} {entry.team_name}: {_fmt(entry.score or 0.0)}")
    if score is not None:
        lines.append(describe_rank(score, rank_score(board, score, direction)))
    return "\n".join(lines)


def describe_rank(score: float, estimate: RankEstimate) -> str:
    """One line: where a score would land."""
    medal = f", {estimate.medal} medal" if estimate.medal else ", no medal"
    median = "above" if estimate.above_median else "not above"
    return (
        f"score {_fmt(score)} would rank {estimate.rank} of {estimate.n_teams + 1} "
        f"(beats {estimate.percentile:.1f}% of teams, {median} the median{medal})"
    )
