"""benchmarks/llm_replay.py end to end, its scripted model sped up: a real `kaggle-solver run` per mode."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.llm_replay import run_one
from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic
from tests.integration.llm.auc_competition import write_auc_competition

__all__ = ["fake_anthropic"]


def make_competition(folder: Path) -> Path:
    rng = np.random.default_rng(8)
    n_train, n_test = 1200, 300
    x = rng.normal(size=(n_train + n_test, 3))
    colour = rng.choice(["red", "green", "blue"], n_train + n_test)
    y = (x[:, 0] + 0.5 * x[:, 1] + (colour == "red") + rng.normal(0, 0.8, n_train + n_test) > 0.3).astype(int)
    frame = pd.DataFrame({"id": np.arange(n_train + n_test), "x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2],
                          "colour": colour, "target": y})
    return write_auc_competition(folder, frame, n_train)


def test_the_replay_benchmark_counts_the_scripted_models_calls_leak_and_programs(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    base = tmp_path / "competitions"
    folder = make_competition(base / "made-up" / "public")
    args = argparse.Namespace(time_limit=45.0, slots=None, speed=0.02)
    row = run_one("made-up", folder, base, "model", args, tmp_path / "runs", fake_anthropic)

    assert row["status"] == "succeeded", row["error"]
    assert row["calls"] is not None and row["calls"] >= 4  # the plan and three drafts at least
    assert row["model_leaks"] == 1 and row["model_ok"] >= 1  # the leaky draft caught, a sound program valid
    assert row["first_valid"] is not None and 0.0 < row["busy"] <= 1.0
    assert row["score"] is None  # no grade.py beside these competitions
