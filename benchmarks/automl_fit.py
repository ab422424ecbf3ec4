"""Fit one AutoML system on one competition and write its raw test predictions.

    .automl-venv/bin/python benchmarks/automl_fit.py SPEC.json

Runs in the AutoML venv (benchmarks/automl-requirements.txt), started by
benchmarks/automl_reference.py, which writes SPEC.json from the product's profile
and turns the predictions into a submission. This script imports only pandas,
numpy, scikit-learn and the AutoML library, never the product.

SPEC.json: system (autogluon-medium | autogluon-best | flaml), time_limit (s),
train, test (CSV paths), target, features, date_columns, problem_type (binary |
multiclass | regression), autogluon_metric, flaml_metric (a FLAML metric name, or
"custom:<name>" for one of CUSTOM_METRICS), log_target (fit on log1p(y), predict
expm1), num_cpus, workdir, output.

The output CSV has one row per test row, in test.csv's order: for classification
"label" (the system's own predict()) and "proba:<class>" per class (predict_proba);
for regression "value".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def _smape(y: np.ndarray, p: np.ndarray) -> float:
    denominator = np.abs(y) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - y), denominator, out=np.zeros_like(denominator, dtype=float),
                      where=denominator > 0)
    return float(100 * np.mean(ratio))


# Metrics FLAML has no name for: (function of labels and predicted labels/values, higher is better).
CUSTOM_METRICS: dict[str, tuple[Callable[[Any, Any], float], bool]] = {
    "f1_weighted": (lambda y, p: skm.f1_score(y, p, average="weighted"), True),
    "mcc": (skm.matthews_corrcoef, True),
    "balanced_accuracy": (skm.balanced_accuracy_score, True),
    "qwk": (lambda y, p: skm.cohen_kappa_score(y, p, weights="quadratic"), True),
    "medae": (skm.median_absolute_error, False),
    "smape": (lambda y, p: _smape(np.asarray(y, dtype=float), np.asarray(p, dtype=float)), False),
}


def load(spec: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    train = pd.read_csv(spec["train"], low_memory=False)
    test = pd.read_csv(spec["test"], low_memory=False)
    train = train[train[spec["target"]].notna()].reset_index(drop=True)
    features = spec["features"]
    X, X_test = train[features].copy(), test[features].copy()
    for column in spec["date_columns"]:
        # The product's profiler found these are dates; as datetimes both libraries expand them into parts.
        X[column] = pd.to_datetime(X[column], errors="coerce", format="mixed")
        X_test[column] = pd.to_datetime(X_test[column], errors="coerce", format="mixed")
    y = train[spec["target"]]
    if spec["log_target"]:
        y = np.log1p(y.astype(float))
    return X, y, X_test


def predictions_frame(labels: Any, proba: Any, classes: list[Any], values: Any) -> pd.DataFrame:
    if values is not None:
        return pd.DataFrame({"value": np.asarray(values, dtype=float)})
    frame = pd.DataFrame({"label": [str(v) for v in labels]})
    proba = np.asarray(proba, dtype=float)
    for j, name in enumerate(classes):
        frame[f"proba:{name}"] = proba[:, j]
    return frame


def fit_autogluon(spec: dict[str, Any], X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame) -> pd.DataFrame:
    from autogluon.tabular import TabularPredictor

    target = spec["target"]
    predictor = TabularPredictor(
        label=target,
        problem_type=spec["problem_type"],
        eval_metric=spec["autogluon_metric"],
        path=str(Path(spec["workdir"]) / "autogluon"),
        verbosity=1,
    )
    preset = "best_quality" if spec["system"] == "autogluon-best" else "medium_quality"
    predictor.fit(X.assign(**{target: y.to_numpy()}), presets=preset, time_limit=spec["time_limit"],
                  num_cpus=spec["num_cpus"], num_gpus=0)
    if spec["problem_type"] == "regression":
        return predictions_frame(None, None, [], predictor.predict(X_test).to_numpy())
    proba = predictor.predict_proba(X_test, as_multiclass=True)
    return predictions_frame(predictor.predict(X_test).to_numpy(), proba.to_numpy(), list(proba.columns), None)


def flaml_metric(name: str) -> str | Callable[..., tuple[float, dict[str, float]]]:
    if not name.startswith("custom:"):
        return name
    function, higher = CUSTOM_METRICS[name.removeprefix("custom:")]

    def metric(X_val: Any, y_val: Any, estimator: Any, *_: Any, **__: Any) -> tuple[float, dict[str, float]]:
        value = function(y_val, estimator.predict(X_val))
        return (-value if higher else value), {"val_score": value}  # FLAML minimises

    return metric


def fit_flaml(spec: dict[str, Any], X: pd.DataFrame, y: pd.Series, X_test: pd.DataFrame) -> pd.DataFrame:
    from flaml import AutoML

    automl = AutoML()
    task = "regression" if spec["problem_type"] == "regression" else "classification"
    automl.fit(X, y, task=task, metric=flaml_metric(spec["flaml_metric"]), time_budget=spec["time_limit"],
               n_jobs=spec["num_cpus"], verbose=0, seed=0,
               log_file_name=str(Path(spec["workdir"]) / "flaml.log"))
    if task == "regression":
        return predictions_frame(None, None, [], automl.predict(X_test))
    return predictions_frame(automl.predict(X_test), automl.predict_proba(X_test), list(automl.classes_), None)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)
    X, y, X_test = load(spec)
    fit = fit_flaml if spec["system"] == "flaml" else fit_autogluon
    predictions = fit(spec, X, y, X_test)
    if spec["log_target"]:
        predictions["value"] = np.expm1(predictions["value"])
    predictions.to_csv(spec["output"], index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
