"""An image competition end to end: `kaggle-solver run` on digits written as PNG files, graded on hidden labels.

The competition comes from examples/shapes/image_shapes.py (scikit-learn's digits, shifted, rescaled
and noised at 32×32); its labels for the test images stay aside and grade.py scores the submission.
The bar is both baselines of the shape: the best constant, and a model on train.csv's own columns
(the table alone, here only the id), trained and graded on the same split.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "examples" / "shapes"))

import image_shapes  # noqa: E402
from grade import grade  # noqa: E402


def table_alone_accuracy(public: Path, answers: pd.DataFrame) -> float:
    """LightGBM on train.csv's own columns (no image), graded on the hidden labels."""
    import lightgbm

    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    columns = [c for c in train.columns if c != "label"]
    model = lightgbm.LGBMClassifier(n_estimators=100, n_jobs=1, verbose=-1).fit(train[columns], train["label"])
    predicted = pd.DataFrame({"id": test["id"], "predicted": model.predict(test[columns])})
    merged = answers.merge(predicted, on="id")
    return float((merged["label"] == merged["predicted"]).mean())


def test_digit_images_get_a_valid_submission_far_above_a_constant_and_the_table_alone(tmp_path: Path) -> None:
    base = tmp_path / "shapes"
    assert "digits-png" in image_shapes.make(base)
    public = base / "digits-png" / "public"
    answers = pd.read_csv(base / "digits-png" / "private" / "answers.csv")
    train = pd.read_csv(public / "train.csv")
    constant = float((answers["label"] == train["label"].mode()[0]).mean())
    table_alone = table_alone_accuracy(public, answers)

    output = tmp_path / "submission.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "batch_agent.cli", "run", str(public), "--output", str(output),
         "--time-limit", "60", "--workdir", str(tmp_path / "work"), "--json", "--quiet", "--no-llm"],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["metric"] == "accuracy"
    profile = json.loads((tmp_path / "work" / "profile.json").read_text())
    assert profile["shape"]["kind"] == "images" and profile["shape"]["file_column"] == "image_file"

    graded = grade(base, "digits-png", output)
    assert graded["valid"], graded["error"]
    # Measured: about 0.85 (README); the constant and the table alone sit near 0.1.
    score = float(graded["score"])  # type: ignore[arg-type]
    assert max(constant, table_alone) < 0.2, (constant, table_alone)
    assert score > max(constant, table_alone) + 0.45, (score, constant, table_alone)
