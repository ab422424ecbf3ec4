"""`kaggle-solver run` end to end on each kind of task and submission format, on small made-up data."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.submission import validate_submission

N_TRAIN, N_TEST = 400, 100
Builder = Callable[[np.random.Generator, pd.DataFrame], tuple[pd.DataFrame, list[str], str]]


def features(rng: np.random.Generator) -> pd.DataFrame:
    n = N_TRAIN + N_TEST
    return pd.DataFrame({
        "id": np.arange(1000, 1000 + n),
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "shade": rng.choice(["light", "dark", "mid"], size=n),
        # Days in random order: train and test are a random split, not a forecast (solver.time_series).
        "day": np.random.default_rng(7).permutation(pd.date_range("2021-01-01", periods=n, freq="D").strftime(
            "%Y-%m-%d")),
        "review": [" ".join(rng.choice(["good", "bad", "fine", "great", "awful", "ok"], size=6)) for _ in range(n)],
    })


def multiclass_labels(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    y = np.select([x.a > 0.5, x.a < -0.5], ["setosa", "virginica"], "versicolor")
    return pd.DataFrame({"species": y}), ["species"], "Submissions are scored on categorization accuracy."


def regression_mae(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    y = 3 * x.a + (x.shade == "dark") * 2 + rng.normal(0, 0.3, len(x))
    return pd.DataFrame({"value": y}), ["value"], "Submissions are evaluated on the mean absolute error."


def multilabel(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    frame = pd.DataFrame({"toxic": (x.a > 0).astype(int), "rude": (x.b + rng.normal(0, 0.5, len(x)) > 0).astype(int)})
    return frame, ["toxic", "rude"], "Submissions are evaluated on the mean column-wise ROC AUC."


def map_at_3(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    y = np.select([x.a > 0.7, x.a > 0, x.a > -0.7], ["w", "x", "y"], "z")
    evaluation = "Submissions are evaluated according to the Mean Average Precision @ 3 (MAP@3)."
    return pd.DataFrame({"label": y}), ["label"], evaluation


def qwk(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    y = np.clip(np.round(2 + 1.5 * x.a + rng.normal(0, 0.4, len(x))), 0, 4).astype(int)
    return pd.DataFrame({"rating": y}), ["rating"], "Submissions are scored based on the quadratic weighted kappa."


def multitarget(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    frame = pd.DataFrame({"cohesion": x.a + rng.normal(0, 0.2, len(x)), "syntax": x.b * 2})
    evaluation = "Submissions are scored using MCRMSE, mean columnwise root mean squared error."
    return frame, ["cohesion", "syntax"], evaluation


def binary_f1_strings(rng: np.random.Generator, x: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    y = np.where(x.a + rng.normal(0, 0.5, len(x)) > 1.0, "Yes", "No")
    return pd.DataFrame({"churn": y}), ["churn"], "Submissions are evaluated on the F1 score."


# Each case with a CV bound far better than a constant prediction would score (constant predictions:
# accuracy ~0.38, MAE ~2.5, mean AUC 0.5, MAP@3 ~0.6, QWK 0, MCRMSE ~1.4, F1 ~0.3), so a run that
# writes a valid but useless file fails.
CASES: dict[str, tuple[Builder, Callable[[float], bool]]] = {
    "multiclass-labels-accuracy": (multiclass_labels, lambda cv: cv > 0.9),
    "regression-mae": (regression_mae, lambda cv: cv < 0.6),
    "multilabel-mean-auc": (multilabel, lambda cv: cv > 0.85),
    "ranked-labels-map3": (map_at_3, lambda cv: cv > 0.9),
    "ordinal-qwk": (qwk, lambda cv: cv > 0.8),
    "multitarget-mcrmse": (multitarget, lambda cv: cv < 0.4),
    "binary-string-labels-f1": (binary_f1_strings, lambda cv: cv > 0.5),
}


def make_competition(folder: Path, build: Builder) -> None:
    rng = np.random.default_rng(7)
    x = features(rng)
    targets, names, evaluation = build(rng, x)
    full = pd.concat([x, targets], axis=1)
    folder.mkdir()
    full.iloc[:N_TRAIN].to_csv(folder / "train.csv", index=False)
    full.iloc[N_TRAIN:][list(x.columns)].to_csv(folder / "test.csv", index=False)
    sample = pd.DataFrame({"id": full.iloc[N_TRAIN:]["id"]})
    for name in names:
        sample[name] = full[name].iloc[0]
    sample.to_csv(folder / "sample_submission.csv", index=False)
    (folder / "description.md").write_text(f"# Made-up task\n\n## Evaluation\n\n{evaluation}\n")


@pytest.mark.parametrize("case", list(CASES))
def test_each_task_kind_ends_with_a_valid_and_useful_submission(tmp_path: Path, case: str) -> None:
    build, good_enough = CASES[case]
    folder = tmp_path / case
    make_competition(folder, build)
    output = tmp_path / "submission.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "batch_agent.cli", "run", str(folder), "--output", str(output), "--time-limit", "20",
         "--workdir", str(tmp_path / "work"), "--json", "--quiet", "--no-llm"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert good_enough(summary["cv_score"]), (summary["metric"], summary["cv_score"])
    # The product's score of each template's oof.csv, in the submission's format, is what the template measured.
    scored = [a for a in summary["history"] if a["ok"]]
    assert scored and all(a["claim_disagrees"] is False for a in scored), scored
    assert validate_submission(output, profile_competition(folder)) == []
