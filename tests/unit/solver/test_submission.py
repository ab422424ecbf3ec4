from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.submission import normalise_value, validate_submission


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _profile(tmp_path: Path, sample_header: str = "id,target", n_test: int = 4, **overrides: Any) -> CompetitionProfile:
    _write(tmp_path / "test.csv", "id,x\n" + "".join(f"{i},0.5\n" for i in range(1, n_test + 1)))
    _write(tmp_path / "sample_submission.csv", sample_header + "\n")
    fields: dict[str, Any] = {
        "data_dir": str(tmp_path),
        "id_column": "id",
        "target_columns": ["target"],
        "submission_columns": sample_header.split(","),
        "task": "binary",
        "prediction_format": "probability",
        "metric": "roc_auc",
        "n_train": 10,
        "n_test": n_test,
    }
    fields.update(overrides)
    return CompetitionProfile(**fields)


def _submission(tmp_path: Path, text: str) -> Path:
    return _write(tmp_path / "submission.csv", text)


def test_valid_probability_submission_has_no_problems(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,target\n1,0.1\n2,0.9\n3,0\n4,1\n")
    assert validate_submission(path, profile) == []


def test_columns_in_another_order_and_float_ids_are_accepted(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "target,id\n0.1,1.0\n0.9,2\n0.2,3.0\n0.3,4\n")
    assert validate_submission(path, profile) == []


def test_missing_file_is_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    problems = validate_submission(tmp_path / "nope.csv", profile)
    assert len(problems) == 1 and "not found" in problems[0]


def test_empty_file_is_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    problems = validate_submission(_submission(tmp_path, ""), profile)
    assert problems == ["submission is empty: no header row"]


def test_binary_garbage_is_reported_as_unreadable(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = tmp_path / "submission.csv"
    path.write_bytes(b"id,target\n\xff\xfe\x00\x81,1\n")
    problems = validate_submission(path, profile)
    assert any("not a readable CSV" in p for p in problems)


def test_missing_and_extra_columns_are_named(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,prediction\n1,0.1\n2,0.9\n3,0\n4,1\n")
    problems = validate_submission(path, profile)
    assert any("missing columns ['target']" in p for p in problems)
    assert any("unexpected columns ['prediction']" in p for p in problems)


def test_missing_ids_are_counted_with_an_example(tmp_path: Path) -> None:
    profile = _profile(tmp_path, n_test=20)
    rows = "".join(f"{i},0.5\n" for i in range(1, 18))
    problems = validate_submission(_submission(tmp_path, "id,target\n" + rows), profile)
    assert "submission has 17 rows, expected 20 (one per test id)" in problems
    assert "3 test ids missing, e.g. 18" in problems


def test_duplicate_and_unknown_ids_are_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,target\n1,0.1\n2,0.9\n2,0.3\n99,0.4\n")
    problems = validate_submission(path, profile)
    assert "1 rows repeat an earlier id, e.g. 2" in problems
    assert "1 ids are not in the test set, e.g. 99" in problems
    assert any("test ids missing" in p for p in problems)


@pytest.mark.parametrize("bad", ["", "nan", "NaN"])
def test_empty_or_nan_predictions_are_reported(tmp_path: Path, bad: str) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, f"id,target\n1,0.1\n2,{bad}\n3,0\n4,1\n")
    assert validate_submission(path, profile) == ["column 'target' has 1 empty or NaN values, e.g. for id 2"]


def test_infinite_values_are_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path, prediction_format="value", metric="rmse", task="regression")
    path = _submission(tmp_path, "id,target\n1,inf\n2,-Infinity\n3,0\n4,1\n")
    assert validate_submission(path, profile) == ["column 'target' has 2 infinite values, e.g. 'inf'"]


def test_probability_outside_unit_interval_is_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,target\n1,1.3\n2,-0.1\n3,0\n4,1\n")
    assert validate_submission(path, profile) == ["column 'target' has 2 values outside [0, 1], e.g. '1.3'"]


def test_non_numeric_probability_is_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,target\n1,yes\n2,0.5\n3,0\n4,1\n")
    assert validate_submission(path, profile) == ["column 'target' has 1 non-numeric values, e.g. 'yes'"]


def test_labels_outside_the_classes_are_reported(tmp_path: Path) -> None:
    profile = _profile(
        tmp_path,
        sample_header="id,Survived",
        prediction_format="label",
        metric="accuracy",
        classes=["0", "1"],
    )
    path = _submission(tmp_path, "id,Survived\n1,1.0\n2,0\n3,2\n4,1\n")
    assert validate_submission(path, profile) == ["column 'Survived' has values outside ['0', '1'], e.g. '2'"]


def test_string_labels_are_compared_exactly(tmp_path: Path) -> None:
    profile = _profile(
        tmp_path,
        sample_header="id,weather",
        task="multiclass",
        prediction_format="label",
        metric="accuracy",
        classes=["rain", "sun", "NA"],
    )
    assert validate_submission(_submission(tmp_path, "id,weather\n1,rain\n2,sun\n3,NA\n4,sun\n"), profile) == []
    problems = validate_submission(_submission(tmp_path, "id,weather\n1,Rain\n2,sun\n3,NA\n4,sun\n"), profile)
    assert problems == ["column 'weather' has values outside ['rain', 'sun', 'NA'], e.g. 'Rain'"]


def test_class_probability_rows_summing_to_zero_are_reported(tmp_path: Path) -> None:
    profile = _profile(
        tmp_path,
        sample_header="id,a,b",
        task="multiclass",
        prediction_format="class_probabilities",
        metric="log_loss",
        classes=["a", "b"],
    )
    ok = _submission(tmp_path, "id,a,b\n1,0.2,0.8\n2,0.5,0.5\n3,1,0\n4,0.3,0.3\n")
    assert validate_submission(ok, profile) == []
    bad = _submission(tmp_path, "id,a,b\n1,0.2,0.8\n2,0,0\n3,1.5,0\n4,0.3,0.3\n")
    assert set(validate_submission(bad, profile)) == {
        "column 'a' has 1 values outside [0, 1], e.g. '1.5'",
        "1 rows have class probabilities that sum to 0, e.g. id 2",
    }


def test_negative_values_are_rejected_only_for_rmsle(tmp_path: Path) -> None:
    text = "id,target\n1,-3.5\n2,10\n3,0\n4,1\n"
    rmse = _profile(tmp_path, prediction_format="value", metric="rmse", task="regression")
    assert validate_submission(_submission(tmp_path, text), rmse) == []
    rmsle = _profile(tmp_path, prediction_format="value", metric="rmsle", task="regression")
    assert validate_submission(_submission(tmp_path, text), rmsle) == [
        "column 'target' has 1 negative values, which rmsle cannot score, e.g. '-3.5'"
    ]


def test_ranked_labels_are_checked_for_count_and_membership(tmp_path: Path) -> None:
    profile = _profile(
        tmp_path,
        sample_header="id,labels",
        task="multiclass",
        prediction_format="ranked_labels",
        metric="map_at_k",
        map_k=3,
        classes=["a", "b", "c", "d"],
    )
    ok = _submission(tmp_path, "id,labels\n1,a b c\n2,d\n3,b a\n4,c d a\n")
    assert validate_submission(ok, profile) == []
    bad = _submission(tmp_path, "id,labels\n1,a b c d\n2,d\n3,b z\n4,c d a\n")
    assert validate_submission(bad, profile) == [
        "column 'labels' has 1 rows with too many labels, e.g. id 1",
        "column 'labels' has values outside ['a', 'b', 'c', 'd'], e.g. 'z'",
    ]


def test_rows_with_the_wrong_number_of_fields_are_reported(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,target\n1,0.1,7\n2,0.9\n3,0\n4,1\n")
    assert validate_submission(path, profile) == ["1 rows have more or fewer fields than the header, e.g. line 2"]


def test_problem_list_is_capped(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    path = _submission(tmp_path, "id,wrong,target\n1,x,nan\n1,x,2\n9,x,abc\n")
    problems = validate_submission(path, profile, max_problems=3)
    assert len(problems) == 3
    assert len(validate_submission(path, profile, max_problems=20)) > 3


def test_large_submission_is_validated_in_one_pass(tmp_path: Path) -> None:
    n = 200_000
    profile = _profile(tmp_path, n_test=n)
    _write(tmp_path / "test.csv", "id,x\n" + "".join(f"{i},1\n" for i in range(n)))
    path = _submission(tmp_path, "id,target\n" + "".join(f"{i},0.5\n" for i in range(n)))
    assert validate_submission(path, profile) == []


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("12", "12"),
        ("12.0", "12"),
        (" 12 ", "12"),
        ("1e2", "100"),
        ("0.50", "0.5"),
        ("abc", "abc"),
        ("nan", "nan"),
    ],
)
def test_ids_and_labels_are_normalised_numerically(raw: str, canonical: str) -> None:
    assert normalise_value(raw) == canonical


def test_validator_metric_registry_and_sandbox_load_without_numeric_libraries() -> None:
    code = (
        "import sys, batch_agent.solver.submission, batch_agent.solver.metrics, batch_agent.solver.sandbox\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'sklearn', 'lightgbm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_hex_ids_that_read_as_huge_numbers_stay_text() -> None:
    # "12e45678" is 12 × 10^45678 as a number; as an id it is the text itself.
    assert normalise_value("12e45678") == "12e45678"
    assert normalise_value("3E7") == "30000000"
