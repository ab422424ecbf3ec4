"""The R-dataset benchmark's competitions: held-out answers kept apart, and its grader's MAE and RMSE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.r_regression import GRADER, make_competition


def _grade(base: Path, submission: pd.DataFrame, slug: str = "prices-mae") -> dict[str, object]:
    path = base / "submission.csv"
    submission.to_csv(path, index=False)
    graded = subprocess.run([sys.executable, str(base / "grade.py"), slug, str(path)], capture_output=True,
                            text=True, check=True)
    result: dict[str, object] = json.loads(graded.stdout)
    return result


def test_the_test_rows_lose_their_target_and_the_grader_scores_mae_against_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "source.csv"
    pd.DataFrame({"Unnamed: 0": range(400), "x": rng.normal(size=400), "price": rng.gamma(2.0, 100.0, 400)}).to_csv(
        source, index=False)
    make_competition(tmp_path, source, "prices-mae", "Prices", "price", "price", 300)
    (tmp_path / "grade.py").write_text(GRADER)

    public = tmp_path / "prices-mae" / "public"
    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    answers = pd.read_csv(tmp_path / "prices-mae" / "private" / "answers.csv")
    assert len(train) == 300 and len(test) == len(answers) == 100
    assert "price" not in test.columns and "Unnamed: 0" not in train.columns
    assert not set(train["id"]) & set(test["id"])
    assert "mean absolute error" in (public / "description.md").read_text()

    assert _grade(tmp_path, answers)["score"] == 0.0
    off_by_ten = answers.assign(price=answers["price"] + 10.0)
    assert abs(float(_grade(tmp_path, off_by_ten)["score"]) - 10.0) < 1e-9  # type: ignore[arg-type]
    assert _grade(tmp_path, answers.iloc[:50])["valid"] is False


def test_an_rmse_competition_drops_its_columns_keeps_a_source_id_and_is_graded_by_rmse(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    source = tmp_path / "source.csv"
    pd.DataFrame({"Unnamed: 0": range(400), "id": [f"p{i % 40}" for i in range(400)], "x": rng.normal(size=400),
                  "giveaway": rng.normal(size=400), "y": rng.normal(size=400)}).to_csv(source, index=False)
    make_competition(tmp_path, source, "scores-rmse", "Scores", "y", "score", 300, ("giveaway",))
    (tmp_path / "grade.py").write_text(GRADER)

    public = tmp_path / "scores-rmse" / "public"
    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    assert list(train.columns) == ["id", "source_id", "x", "y"] and "giveaway" not in test.columns
    assert train["id"].is_unique and "root mean squared error" in (public / "description.md").read_text()

    answers = pd.read_csv(tmp_path / "scores-rmse" / "private" / "answers.csv")
    errors = np.where(np.arange(len(answers)) % 2 == 0, 3.0, -1.0)  # MAE 2, RMSE sqrt(5)
    graded = _grade(tmp_path, answers.assign(y=answers["y"] + errors), "scores-rmse")
    assert abs(float(graded["score"]) - np.sqrt(5.0)) < 1e-9  # type: ignore[arg-type]
