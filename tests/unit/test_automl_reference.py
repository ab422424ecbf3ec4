"""benchmarks/automl_reference.py without an AutoML library: metric mapping, fit specs, submissions, crash rows."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.metrics import METRICS
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.submission import validate_submission
from benchmarks.automl_fit import CUSTOM_METRICS, flaml_metric
from benchmarks.automl_reference import METRIC_MAP, fit_spec, run_one, submission_from_predictions

# FLAML 2.7's own metric names (flaml.automl.ml.sklearn_metric_name_set), written out: flaml is not installed here.
FLAML_NAMES = {"roc_auc", "micro_f1", "mae", "accuracy", "macro_f1", "roc_auc_ovr_weighted", "roc_auc_weighted",
               "mape", "r2", "ndcg", "roc_auc_ovo_weighted", "rmse", "ap", "roc_auc_ovo", "f1", "roc_auc_ovr",
               "mse", "log_loss"}


def competition(folder: Path, description: str, train: pd.DataFrame, test: pd.DataFrame,
                sample: pd.DataFrame) -> Path:
    folder.mkdir(parents=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / "sample_submission.csv", index=False)
    (folder / "description.md").write_text(
        f"# Made up\n\n## Evaluation\n\nSubmissions are evaluated on {description}.\n")
    return folder


def features(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(size=n),
        "colour": rng.choice(["red", "green", "blue"], size=n),
        "day": pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
    })


def binary_folder(tmp_path: Path, description: str, sample_value: object) -> Path:
    x = features(50)
    train = x.iloc[:40].assign(id=range(40), churn=["Yes", "No"] * 20)
    test = x.iloc[40:].assign(id=range(40, 50))
    sample = pd.DataFrame({"id": test["id"], "churn": sample_value})
    return competition(tmp_path / "binary", description, train, test, sample)


def test_every_single_target_metric_maps_to_names_both_libraries_know() -> None:
    single_target = {name for name in METRICS if name not in ("mean_auc", "mcrmse")}
    assert set(METRIC_MAP) == single_target
    for name, mapped in METRIC_MAP.items():
        custom = mapped.flaml.removeprefix("custom:")
        assert mapped.flaml in FLAML_NAMES or custom in CUSTOM_METRICS, name
    assert METRIC_MAP["rmsle"].log_target and METRIC_MAP["rmsle"].autogluon == "root_mean_squared_error"
    assert not any(m.log_target for name, m in METRIC_MAP.items() if name != "rmsle")


def test_custom_flaml_metrics_are_losses_to_minimise() -> None:
    class Fixed:
        def __init__(self, predicted: list[int]) -> None:
            self.predicted = predicted

        def predict(self, _: object) -> np.ndarray:
            return np.array(self.predicted)

    y = np.array([0, 1, 1, 0, 1])
    mcc = flaml_metric("custom:mcc")
    assert not isinstance(mcc, str)
    perfect, _ = mcc(None, y, Fixed([0, 1, 1, 0, 1]))
    wrong, _ = mcc(None, y, Fixed([1, 0, 0, 1, 0]))
    assert perfect == pytest.approx(-1.0) and wrong == pytest.approx(1.0)
    medae = flaml_metric("custom:medae")
    assert not isinstance(medae, str)
    loss, details = medae(None, np.array([1.0, 2.0, 3.0]), Fixed([1, 2, 5]))
    assert loss == pytest.approx(0.0) and details["val_score"] == pytest.approx(0.0)
    assert flaml_metric("log_loss") == "log_loss"


def test_fit_spec_takes_target_features_dates_and_log_target_from_the_profile(tmp_path: Path) -> None:
    x = features(30)
    train = x.iloc[:20].assign(Id=range(20), price=np.linspace(1e5, 3e5, 20))
    test = x.iloc[20:].assign(Id=range(20, 30))
    folder = competition(tmp_path / "houses", "the root mean squared logarithmic error (RMSLE)", train, test,
                         pd.DataFrame({"Id": test["Id"], "price": 0.0}))
    spec = fit_spec(profile_competition(folder), folder, "flaml", 30.0, tmp_path / "work")
    assert spec["target"] == "price"
    assert spec["features"] == ["x", "colour", "day"]
    assert spec["date_columns"] == ["day"]
    assert spec["problem_type"] == "regression"
    assert (spec["autogluon_metric"], spec["flaml_metric"], spec["log_target"]) == ("root_mean_squared_error",
                                                                                    "rmse", True)
    assert spec["num_cpus"] == 2


def test_binary_probability_submission_holds_the_positive_class_probability(tmp_path: Path) -> None:
    folder = binary_folder(tmp_path, "the area under the ROC curve", 0.5)
    profile = profile_competition(folder)
    ids = pd.read_csv(folder / "test.csv")["id"]
    predictions = pd.DataFrame({"label": ["Yes"] * 10, "proba:Yes": np.linspace(0.1, 1.0, 10),
                                "proba:No": 1 - np.linspace(0.1, 1.0, 10)})
    submission = submission_from_predictions(profile, ids, predictions)
    assert list(submission.columns) == ["id", "churn"]
    assert np.allclose(submission["churn"], np.linspace(0.1, 1.0, 10))
    path = tmp_path / "submission.csv"
    submission.to_csv(path, index=False)
    assert validate_submission(path, profile) == []


def test_label_submission_writes_the_systems_labels_as_train_spells_them(tmp_path: Path) -> None:
    x = features(30)
    train = x.iloc[:20].assign(PassengerId=range(20), Survived=[0, 1] * 10)
    test = x.iloc[20:].assign(PassengerId=range(20, 30))
    folder = competition(tmp_path / "labels", "accuracy", train, test,
                         pd.DataFrame({"PassengerId": test["PassengerId"], "Survived": 0}))
    profile = profile_competition(folder)
    ids = pd.read_csv(folder / "test.csv")["PassengerId"]
    # AutoGluon's predict() can hand back 1.0 for an integer label once a float crept into its pipeline.
    predictions = pd.DataFrame({"label": ["1.0", "0"] * 5, "proba:0": 0.5, "proba:1": 0.5})
    submission = submission_from_predictions(profile, ids, predictions)
    assert submission["Survived"].tolist() == ["1", "0"] * 5
    path = tmp_path / "submission.csv"
    submission.to_csv(path, index=False)
    assert validate_submission(path, profile) == []
    with pytest.raises(ValueError, match="not classes"):
        submission_from_predictions(profile, ids, predictions.assign(label="2"))


def test_class_probability_submission_follows_the_sample_columns_order(tmp_path: Path) -> None:
    x = features(40)
    weather = ["sun", "rain", "fog", "snow"]
    train = x.iloc[:30].assign(id=range(30), weather=[weather[i % 4] for i in range(30)])
    test = x.iloc[30:].assign(id=range(30, 40))
    sample = pd.DataFrame({"id": test["id"], "sun": 0.25, "fog": 0.25, "snow": 0.25, "rain": 0.25})
    folder = competition(tmp_path / "weather", "the multi-class logarithmic loss", train, test, sample)
    profile = profile_competition(folder)
    ids = pd.read_csv(folder / "test.csv")["id"]
    # The system saw no "snow" in its training rows: that column gets 0, the others renormalised.
    predictions = pd.DataFrame({"label": "rain", "proba:fog": 0.1, "proba:rain": 0.6, "proba:sun": 0.2},
                               index=range(10))
    submission = submission_from_predictions(profile, ids, predictions)
    assert list(submission.columns) == ["id", "sun", "fog", "snow", "rain"]
    assert np.allclose(submission.iloc[0, 1:].to_numpy(dtype=float), [2 / 9, 1 / 9, 0.0, 6 / 9])
    path = tmp_path / "submission.csv"
    submission.to_csv(path, index=False)
    assert validate_submission(path, profile) == []


def test_ranked_label_submission_lists_the_k_most_probable_classes(tmp_path: Path) -> None:
    x = features(40)
    train = x.iloc[:30].assign(id=range(30), shop=[["a", "b", "c", "d"][i % 4] for i in range(30)])
    test = x.iloc[30:].assign(id=range(30, 40))
    folder = competition(tmp_path / "ranked", "Mean Average Precision @ 2 (MAP@2)", train, test,
                         pd.DataFrame({"id": test["id"], "shop": "a b"}))
    profile = profile_competition(folder)
    ids = pd.read_csv(folder / "test.csv")["id"]
    predictions = pd.DataFrame({"label": "c", "proba:a": 0.1, "proba:b": 0.3, "proba:c": 0.4, "proba:d": 0.2},
                               index=range(10))
    assert submission_from_predictions(profile, ids, predictions)["shop"].tolist() == ["c b"] * 10


def test_a_prediction_count_that_misses_test_rows_is_refused(tmp_path: Path) -> None:
    folder = binary_folder(tmp_path, "the area under the ROC curve", 0.5)
    profile = profile_competition(folder)
    ids = pd.read_csv(folder / "test.csv")["id"]
    with pytest.raises(ValueError, match="9 predictions for 10"):
        submission_from_predictions(profile, ids, pd.DataFrame({"proba:Yes": [0.5] * 9, "proba:No": 0.5}))


def fake_python(path: Path, body: str) -> Path:
    """A stand-in for the AutoML venv's python: runs ``body`` with the spec path as sys.argv[1]."""
    script = path.with_suffix(".py")
    script.write_text(body)
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$2"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_system_that_crashes_is_a_failed_row_with_its_last_log_line(tmp_path: Path) -> None:
    folder = binary_folder(tmp_path / "base", "the area under the ROC curve", 0.5)
    python = fake_python(tmp_path / "crash", "import sys\nprint('fitting ...')\nsys.exit('MemoryError: no room')\n")
    row = run_one("binary", folder, tmp_path / "base", "autogluon-best", 5.0, python, tmp_path / "work")
    assert row["status"] == "failed: MemoryError: no room"
    assert row["score"] is None and row["metric"] == "roc_auc"


# The grader reports the mean submitted probability, so the row's score shows what was written.
MEAN_GRADER = ("import json, sys\nimport pandas as pd\n"
               "print(json.dumps({'score': float(pd.read_csv(sys.argv[2])['churn'].mean())}))\n")
# A system that predicts "No" with probability 0.75 for every test row.
CONSTANT_FIT = ("import json, sys\nimport pandas as pd\n"
                "spec = json.load(open(sys.argv[1]))\n"
                "n = len(pd.read_csv(spec['test']))\n"
                "pd.DataFrame({'label': 'No', 'proba:No': [0.75] * n, 'proba:Yes': 0.25}).to_csv(spec['output'], "
                "index=False)\n")


def test_a_system_that_predicts_is_graded_by_the_folders_grader(tmp_path: Path) -> None:
    base = tmp_path / "base"
    folder = binary_folder(base, "the area under the ROC curve", 0.5)
    (base / "grade.py").write_text(MEAN_GRADER)
    python = fake_python(tmp_path / "fit", CONSTANT_FIT)
    row = run_one("binary", folder, base, "flaml", 5.0, python, tmp_path / "work")
    assert row["status"] == "ok"
    assert row["score"] == pytest.approx(0.25)
    spec = json.loads((tmp_path / "work" / "binary-flaml" / "spec.json").read_text())
    assert (spec["system"], spec["autogluon_metric"], spec["flaml_metric"]) == ("flaml", "roc_auc", "roc_auc")


def test_relative_paths_work_as_make_bench_automl_passes_them(tmp_path: Path) -> None:
    # The Makefile passes the competitions folder and the venv's python relative to the repository, and
    # every fit runs in a working folder of its own.
    base = tmp_path / "base"
    binary_folder(base, "the area under the ROC curve", 0.5)
    (base / "grade.py").write_text(MEAN_GRADER)
    fake_python(tmp_path / "fit", CONSTANT_FIT)
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "automl_reference.py"

    done = subprocess.run([sys.executable, str(script), "base", "--system", "flaml", "--time-limit", "5",
                           "--automl-python", "fit", "--keep", "kept"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(script.parents[1])})

    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| binary "))
    assert "| 0.2500 |" in row and row.rstrip().endswith("| ok |"), row
    assert (tmp_path / "kept" / "5s" / "binary-flaml" / "submission.csv").is_file()
