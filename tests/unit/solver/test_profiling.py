"""Profiling: which columns are id and target, what the task and submission format are, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.errors import InputError
from batch_agent.solver.profiling import profile_competition

AUC_TEXT = "## Evaluation\n\nSubmissions are evaluated on the area under the ROC curve.\n"


def write_competition(folder: Path, train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame,
                      description: str | None = AUC_TEXT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    sample.to_csv(folder / "sample_submission.csv", index=False)
    if description is not None:
        (folder / "description.md").write_text("# A Competition\n\n" + description)
    return folder


def frames(n_train: int = 60, n_test: int = 20, target: object = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = n_train + n_test
    full = pd.DataFrame({
        "row_id": np.arange(n),
        "x": rng.normal(size=n),
        "colour": rng.choice(["red", "green", "blue"], size=n),
        "when": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "note": [f"the quick brown fox number {i} jumps" for i in range(n)],
        "flat": 1,
    })
    train = full.iloc[:n_train].copy()
    train["y"] = target if target is not None else rng.integers(0, 2, size=n_train)
    return train, full.iloc[n_train:].copy()


def test_binary_auc_competition_is_probability_of_positive_class(tmp_path: Path) -> None:
    train, test = frames()
    sample = pd.DataFrame({"row_id": test["row_id"], "y": 0.5})
    profile = profile_competition(write_competition(tmp_path, train, test, sample))
    assert profile.id_column == "row_id"
    assert profile.target_columns == ["y"]
    assert profile.task == "binary"
    assert profile.prediction_format == "probability"
    assert profile.classes == ["0", "1"]
    assert profile.metric == "roc_auc"
    assert profile.title == "A Competition"
    assert (profile.n_train, profile.n_test) == (60, 20)
    assert profile.target_min is None  # only regression targets get one


def test_feature_kinds_are_detected(tmp_path: Path) -> None:
    train, test = frames()
    sample = pd.DataFrame({"row_id": test["row_id"], "y": 0.5})
    profile = profile_competition(write_competition(tmp_path, train, test, sample))
    kinds = {c.name: c.kind for c in profile.features}
    assert kinds == {"x": "numeric", "colour": "categorical", "when": "date", "note": "text", "flat": "constant"}


def test_string_labels_with_accuracy_are_labels_and_positive_word_goes_last(tmp_path: Path) -> None:
    train, test = frames(target=["Yes", "No"] * 30)
    sample = pd.DataFrame({"row_id": test["row_id"], "y": "No"})
    desc = "## Evaluation\nSubmissions are scored on categorization accuracy."
    profile = profile_competition(write_competition(tmp_path, train, test, sample, desc))
    assert profile.prediction_format == "label"
    assert profile.classes == ["No", "Yes"]
    assert profile.metric == "accuracy"


def test_one_column_per_class_is_multiclass_probabilities_in_submission_order(tmp_path: Path) -> None:
    train, test = frames(target=["sun", "rain", "fog"] * 20)
    sample = pd.DataFrame({"row_id": test["row_id"], "sun": 0.3, "fog": 0.3, "rain": 0.4})
    desc = "## Evaluation\nSubmissions are evaluated using the multi-class logarithmic loss."
    profile = profile_competition(write_competition(tmp_path, train, test, sample, desc))
    assert profile.task == "multiclass"
    assert profile.prediction_format == "class_probabilities"
    assert profile.classes == ["sun", "fog", "rain"]
    assert profile.metric == "log_loss"


def test_prefixed_class_columns_map_to_target_values(tmp_path: Path) -> None:
    train, test = frames(target=["C", "CL", "D"] * 20)
    train = train.rename(columns={"y": "Status"})
    sample = pd.DataFrame({"row_id": test["row_id"], "Status_C": 0.3, "Status_CL": 0.3, "Status_D": 0.4})
    desc = "## Evaluation\nSubmissions are evaluated using the multi-class logarithmic loss."
    profile = profile_competition(write_competition(tmp_path, train, test, sample, desc))
    assert profile.target_columns == ["Status"]
    assert profile.classes == ["C", "CL", "D"]


def test_regression_with_renamed_submission_column(tmp_path: Path) -> None:
    train, test = frames(target=np.linspace(1, 100, 60))
    sample = pd.DataFrame({"row_id": test["row_id"], "prediction": 50.0})
    desc = "## Evaluation\nSubmissions are scored on the root mean squared logarithmic error."
    profile = profile_competition(write_competition(tmp_path, train, test, sample, desc))
    assert profile.task == "regression"
    assert profile.target_columns == ["y"]
    assert profile.prediction_format == "value"
    assert profile.metric == "rmsle"
    assert profile.target_min == 1.0  # what decides whether log-target models are planned


def test_several_numeric_targets_are_multitarget_regression(tmp_path: Path) -> None:
    train, test = frames()
    train["a"], train["b"] = np.linspace(0, 1, 60), np.linspace(5, 9, 60)
    train = train.drop(columns="y")
    sample = pd.DataFrame({"row_id": test["row_id"], "a": 0.0, "b": 0.0})
    desc = "## Evaluation\nMean columnwise root mean squared error (MCRMSE)."
    profile = profile_competition(write_competition(tmp_path, train, test, sample, desc))
    assert profile.task == "multitarget_regression"
    assert profile.target_columns == ["a", "b"]


def test_metric_option_overrides_the_description(tmp_path: Path) -> None:
    train, test = frames()
    sample = pd.DataFrame({"row_id": test["row_id"], "y": 0})
    profile = profile_competition(write_competition(tmp_path, train, test, sample), metric="accuracy")
    assert profile.metric == "accuracy"
    assert profile.metric_source == "option"
    assert profile.prediction_format == "label"


def test_missing_train_file_is_an_input_error(tmp_path: Path) -> None:
    train, test = frames()
    folder = write_competition(tmp_path, train, test, pd.DataFrame({"row_id": test["row_id"], "y": 0.5}))
    (folder / "train.csv").unlink()
    with pytest.raises(InputError, match=r"cannot find train\.csv"):
        profile_competition(folder)


def test_empty_csv_is_an_input_error(tmp_path: Path) -> None:
    train, test = frames()
    folder = write_competition(tmp_path, train, test, pd.DataFrame({"row_id": test["row_id"], "y": 0.5}))
    (folder / "test.csv").write_text("")
    with pytest.raises(InputError, match=r"test\.csv is empty"):
        profile_competition(folder)


def test_sample_without_a_test_column_has_no_id(tmp_path: Path) -> None:
    train, test = frames()
    folder = write_competition(tmp_path, train, test, pd.DataFrame({"key": test["row_id"], "y": 0.5}))
    with pytest.raises(InputError, match="no id column"):
        profile_competition(folder)


def test_sample_ids_that_do_not_match_test_ids_are_rejected(tmp_path: Path) -> None:
    train, test = frames()
    folder = write_competition(tmp_path, train, test, pd.DataFrame({"row_id": test["row_id"] + 1000, "y": 0.5}))
    with pytest.raises(InputError, match="does not match the ids"):
        profile_competition(folder)


def test_unknown_metric_lists_the_known_ones(tmp_path: Path) -> None:
    train, test = frames()
    folder = write_competition(tmp_path, train, test, pd.DataFrame({"row_id": test["row_id"], "y": 0.5}),
                               description="Predict y. Good luck!")
    with pytest.raises(InputError, match=r"pass --metric, one of: .*roc_auc"):
        profile_competition(folder)


def test_regression_metric_on_text_target_is_rejected(tmp_path: Path) -> None:
    train, test = frames(target=["a", "b"] * 30)
    folder = write_competition(tmp_path, train, test, pd.DataFrame({"row_id": test["row_id"], "y": 0.5}))
    with pytest.raises(InputError, match="needs a numeric target"):
        profile_competition(folder, metric="rmse")
