"""`kaggle-solver run` graded against held-out labels, and how soon a small competition has a submission.

The CV score is the product's own judgement; these tests keep the test labels of
generated competitions aside and grade the submission with them, so a change that
fools the cross-validation (a leak, a mis-aligned fold) cannot pass. Each table has
a known signal in numeric, low- and high-cardinality categorical columns; each
assertion asks for a clear margin over the best constant prediction.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.scoring import score

N_TRAIN, N_TEST = 1500, 500
CLASSES = ["ash", "birch", "cedar", "dogwood"]


def table(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and a latent signal: numeric terms, an interaction, a 3-level and a 200-level code."""
    codes = rng.integers(0, 200, size=n)
    code_effect = np.random.default_rng(99).normal(0, 1.0, size=200)
    shade = rng.choice(["light", "mid", "dark"], size=n)
    frame = pd.DataFrame({
        "id": np.arange(10_000, 10_000 + n),
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "c": rng.uniform(-2, 2, size=n),
        "shade": shade,
        "postcode": [f"P{c:03d}" for c in codes],
    })
    signal = (1.5 * frame["a"] + np.sin(2 * frame["c"]) + frame["a"] * frame["b"]
              + (shade == "dark") * 1.0 + code_effect[codes]).to_numpy()
    return frame, signal


def write_competition(folder: Path, frame: pd.DataFrame, target: pd.DataFrame, evaluation: str,
                      sample: pd.DataFrame) -> None:
    folder.mkdir()
    pd.concat([frame.iloc[:N_TRAIN], target.iloc[:N_TRAIN]], axis=1).to_csv(folder / "train.csv", index=False)
    frame.iloc[N_TRAIN:].to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / "sample_submission.csv", index=False)
    (folder / "description.md").write_text(f"# Generated task\n\n## Evaluation\n\n{evaluation}\n")


def run(folder: Path, tmp_path: Path, time_limit: int) -> tuple[dict[str, object], pd.DataFrame]:
    output = tmp_path / "submission.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "batch_agent.cli", "run", str(folder), "--output", str(output),
         "--time-limit", str(time_limit), "--workdir", str(tmp_path / "work"), "--json", "--quiet", "--no-llm"],
        capture_output=True, text=True, timeout=time_limit + 120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), pd.read_csv(output)


def test_binary_submission_grades_far_above_a_constant_on_held_out_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame, signal = table(rng, N_TRAIN + N_TEST)
    y = (signal + rng.normal(0, 1.0, len(signal)) > 0.5).astype(int)
    test_ids = frame["id"].iloc[N_TRAIN:]
    write_competition(tmp_path / "binary", frame, pd.DataFrame({"label": y}),
                      "Submissions are evaluated on area under the ROC curve.",
                      pd.DataFrame({"id": test_ids, "label": 0.5}))
    summary, submission = run(tmp_path / "binary", tmp_path, 30)
    assert summary["metric"] == "roc_auc"
    truth = y[N_TRAIN:]
    assert list(submission["id"]) == list(test_ids)
    graded = score("roc_auc", truth, submission["label"].to_numpy())
    # A constant scores 0.5; the Bayes rate on this noise is about 0.9.
    assert graded > 0.8, graded


def test_multiclass_submission_grades_far_below_the_prior_log_loss(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frame, signal = table(rng, N_TRAIN + N_TEST)
    index = np.digitize(signal + rng.normal(0, 0.7, len(signal)), [-1.0, 0.5, 2.0])
    labels = np.array(CLASSES)[index]
    test_ids = frame["id"].iloc[N_TRAIN:]
    sample = pd.DataFrame({"id": test_ids, **{c: 0.25 for c in CLASSES}})
    write_competition(tmp_path / "multiclass", frame, pd.DataFrame({"tree": labels}),
                      "Submissions are evaluated using the multi-class logarithmic loss.", sample)
    summary, submission = run(tmp_path / "multiclass", tmp_path, 30)
    assert summary["metric"] == "log_loss"
    truth = index[N_TRAIN:]
    graded = score("log_loss", truth, submission[CLASSES].to_numpy())
    prior = np.bincount(index[:N_TRAIN], minlength=4) / N_TRAIN
    constant = score("log_loss", truth, np.tile(prior, (N_TEST, 1)))
    assert graded < 0.75 * constant, (graded, constant)


def test_skewed_regression_submission_grades_far_below_a_constant_rmse(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame, signal = table(rng, N_TRAIN + N_TEST)
    price = np.exp(0.4 * signal + rng.normal(0, 0.2, len(signal))) * 1000  # right-skewed, like prices
    test_ids = frame["id"].iloc[N_TRAIN:]
    write_competition(tmp_path / "regression", frame, pd.DataFrame({"price": price}),
                      "Submissions are evaluated on Root-Mean-Squared-Error (RMSE).",
                      pd.DataFrame({"id": test_ids, "price": 0.0}))
    summary, submission = run(tmp_path / "regression", tmp_path, 40)
    assert summary["metric"] == "rmse"
    truth = price[N_TRAIN:]
    graded = score("rmse", truth, submission["price"].to_numpy())
    constant = score("rmse", truth, np.full(N_TEST, price[:N_TRAIN].mean()))
    assert graded < 0.75 * constant, (graded, constant)


def test_first_model_on_a_small_competition_is_ready_within_seconds(tmp_path: Path) -> None:
    """3,500 rows × 7 features, 4 classes: where two OpenMP threads with sleeping waits took 28 s."""
    rng = np.random.default_rng(4)
    n, n_train = 4500, 3500
    X = rng.normal(size=(n, 7))
    index = np.digitize(X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(0, 0.5, n), [-1.0, 0.0, 1.0])
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(7)])
    frame.insert(0, "id", np.arange(n))
    frame["tree"] = np.array(CLASSES)[index]
    folder = tmp_path / "small"
    folder.mkdir()
    frame.iloc[:n_train].to_csv(folder / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns="tree").to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": frame["id"].iloc[n_train:], **{c: 0.25 for c in CLASSES}}).to_csv(
        folder / "sample_submission.csv", index=False)
    (folder / "description.md").write_text("# Trees\n\n## Evaluation\n\nMulti-class logarithmic loss.\n")
    summary, _ = run(folder, tmp_path, 40)
    history = summary.get("history") or []
    first = summary["first_valid_seconds"]
    # Generous for a shared 2-core machine (14 s measured at load average 10); the defect took 28 s idle.
    assert first is not None and float(first) < 20.0, (first, history)


@pytest.fixture(autouse=True)
def _no_llm_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
