#!/usr/bin/env python
"""Grade one submission of a generated shape competition (images, related tables, time series).

    python grade.py <slug> <submission.csv>

Prints {"slug", "metric", "score", "higher_is_better", "valid", "error"} like the
development competitions' grader, so benchmarks/quality.py reads both. The answers
and the metric live in <slug>/private/ (answers.csv, grading.json), next to this file
or in the folder the generator wrote. Needs only numpy and pandas.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EPS = 1e-15


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    y = y.astype(int)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


METRICS = {
    # name: (score(y, p), higher_is_better); y and p are the target column's values as arrays.
    "accuracy": (lambda y, p: float(np.mean(y.astype(str) == p.astype(str))), True),
    "auc": (lambda y, p: _auc(y.astype(float), p.astype(float)), True),
    "rmse": (lambda y, p: float(np.sqrt(np.mean((y.astype(float) - p.astype(float)) ** 2))), False),
    "mae": (lambda y, p: float(np.mean(np.abs(y.astype(float) - p.astype(float)))), False),
    "logloss": (lambda y, p: float(-np.mean(y * np.log(np.clip(p, EPS, 1 - EPS))
                                            + (1 - y) * np.log(np.clip(1 - p, EPS, 1 - EPS)))), False),
}


def grade(base: Path, slug: str, submission: Path) -> dict[str, object]:
    spec = json.loads((base / slug / "private" / "grading.json").read_text())
    answers = pd.read_csv(base / slug / "private" / "answers.csv")
    score_of, higher = METRICS[spec["metric"]]
    result: dict[str, object] = {"slug": slug, "metric": spec["metric"], "score": None,
                                 "higher_is_better": higher, "valid": False, "error": None}
    id_column, target = spec["id_column"], spec["target_column"]
    try:
        sub = pd.read_csv(submission)
    except Exception as exc:  # any unreadable file is an invalid submission, not a grader crash
        result["error"] = f"unreadable: {exc}"
        return result
    if sorted(sub.columns) != sorted([id_column, target]):
        result["error"] = f"columns {list(sub.columns)}, expected {[id_column, target]}"
        return result
    if sub[id_column].duplicated().any() or set(sub[id_column].astype(str)) != set(answers[id_column].astype(str)):
        result["error"] = "ids do not match the test set one for one"
        return result
    merged = answers.astype({id_column: str}).merge(sub.astype({id_column: str}), on=id_column,
                                                     suffixes=("_true", "_pred"))
    predicted = merged[f"{target}_pred"]
    if predicted.isna().any() or (spec["metric"] != "accuracy" and not np.isfinite(predicted.astype(float)).all()):
        result["error"] = "missing or non-finite predictions"
        return result
    result["score"] = score_of(merged[f"{target}_true"].to_numpy(), predicted.to_numpy())
    result["valid"] = True
    return result


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(grade(HERE, sys.argv[1], Path(sys.argv[2]))))
