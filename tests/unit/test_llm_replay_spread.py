"""The replay benchmark's timing of the first valid attempt, and its spread table (mean and range per
competition and mode, the model against --no-llm)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from benchmarks.llm_replay import ProgressClock, print_pairs, print_spread, spread


def _row(slug: str, mode: str, score: float | None, first_valid: float) -> dict[str, Any]:
    # The grader's verdict says which way is better; here "down" is a loss and anything else a gain.
    return {"slug": slug, "mode": mode, "score": score, "first_valid": first_valid,
            "higher_is_better": None if score is None else slug != "down"}


def test_spread_is_the_mean_lowest_and_highest_of_the_rows_that_have_a_value() -> None:
    rows = [_row("a", "no-llm", 0.5, 3.0), _row("a", "no-llm", None, 4.0), _row("a", "no-llm", 0.7, 5.0)]

    assert spread(rows, "score") == pytest.approx((0.6, 0.5, 0.7))
    assert spread(rows, "first_valid") == pytest.approx((4.0, 3.0, 5.0))
    assert spread([_row("a", "model", None, 1.0)], "score") is None


def test_the_model_column_is_signed_so_that_plus_is_better_for_either_direction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [_row("up", "no-llm", 0.80, 3.0), _row("up", "no-llm", 0.82, 3.0),
            _row("up", "model", 0.83, 3.5), _row("up", "model", 0.83, 4.5),
            _row("down", "no-llm", 0.50, 3.0), _row("down", "no-llm", 0.52, 3.0),
            _row("down", "model", 0.53, 3.0), _row("down", "model", 0.53, 3.0)]

    print_spread(rows)

    lines = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
             for line in capsys.readouterr().out.splitlines()[2:]}
    assert "0.8300 (0.8300–0.8300)" in lines[("up", "model")]
    assert "4.0 (3.5–4.5)" in lines[("up", "model")]
    assert "+0.0200 (no-llm spread 0.0200)" in lines[("up", "model")]  # higher is better: 0.83 vs 0.81
    assert "-0.0200 (no-llm spread 0.0200)" in lines[("down", "model")]  # lower is better: 0.53 vs 0.51
    assert lines[("up", "no-llm")].rstrip().endswith("| - |")


def test_equal_means_print_as_no_difference_whatever_the_float_rounding(capsys: pytest.CaptureFixture[str]) -> None:
    # The model's 0.30000000000000004 is worse than 0.3 by a rounding error, which once printed as -0.0000.
    rows = [_row("down", "no-llm", 0.3, 3.0), _row("down", "model", 0.1 + 0.2, 3.0)]

    print_spread(rows)

    assert "+0.0000 (no-llm spread 0.0000)" in capsys.readouterr().out


def test_pairs_compare_each_repeat_with_the_no_llm_run_of_the_same_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{**_row("down", "no-llm", 0.50, 4.0), "repeat": 1}, {**_row("down", "model", 0.48, 3.5), "repeat": 1},
            {**_row("down", "no-llm", 0.40, 4.0), "repeat": 2}, {**_row("down", "model", 0.43, 5.0), "repeat": 2},
            {**_row("up", "no-llm", 0.80, 3.0), "repeat": 1}, {**_row("up", "model", 0.80, 3.0), "repeat": 1},
            {**_row("up", "no-llm", 0.80, 3.0), "repeat": 2}, {**_row("up", "model", None, 3.0), "repeat": 2}]

    print_pairs(rows)

    lines = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()[2:]}
    # Lower is better: 0.48 against the same repeat's 0.50 is a gain, 0.43 against 0.40 a loss.
    assert "| +0.0200, first valid 0.5 s earlier | -0.0300, first valid 1.0 s later |" in lines["down"]
    assert "| equal, first valid as early | - |" in lines["up"]  # an ungraded run pairs with nothing


def test_the_first_valid_attempt_is_timed_from_the_progress_line_not_from_the_process_exit() -> None:
    script = (
        "import sys, time\n"
        "print('[   0.2s] train    attempt 1: broken failed: it crashed', file=sys.stderr, flush=True)\n"
        "time.sleep(0.6)\n"
        "print('[   0.8s] train    attempt 2: lgbm-fast CV 0.84362 [agrees] in 0.5 s', file=sys.stderr, flush=True)\n"
        "time.sleep(1.5)\n"  # a slow exit must not move the first valid time
    )
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    clock = ProgressClock(proc, started)
    proc.wait()
    clock.join()

    assert clock.first_valid is not None and 0.6 <= clock.first_valid < 1.9
    assert "attempt 1: broken failed" in clock.tail
