"""A training program's budget ends before Batch kills its container."""

from __future__ import annotations

from batch_agent.service.steps.train import ATTEMPT_TIMEOUT_MARGIN_SECONDS, training_budget


def test_budget_is_the_job_time_left_when_the_attempt_timeout_is_far() -> None:
    assert training_budget(600.0, 3600) == 595.0


def test_budget_stops_short_of_the_batch_attempt_timeout_in_a_long_job() -> None:
    # A 24 h job on a 60 min attempt timeout: "all the time left" would be killed by Batch.
    assert training_budget(24 * 3600.0, 3600) == 3600 - ATTEMPT_TIMEOUT_MARGIN_SECONDS


def test_short_attempt_timeouts_keep_a_quarter_back() -> None:
    assert training_budget(10_000.0, 600) == 450.0


def test_budget_without_a_known_timeout_is_the_time_left() -> None:
    assert training_budget(10_000.0, None) == 9995.0
