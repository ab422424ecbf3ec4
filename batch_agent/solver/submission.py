"""Check a submission.csv against the competition before anyone trusts its score.

Stdlib only: the validate Lambda imports this module. Files are streamed with the
``csv`` module, so a large test set costs one pass and a set of its ids.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from batch_agent.solver.competition import CompetitionProfile

# Cells as wide as a long text field must not make the csv module give up.
csv.field_size_limit(2**31 - 1)

_NAN_STRINGS = frozenset({"nan", "-nan", "na", "n/a", "null", "none"})


def normalise_value(text: str) -> str:
    """A canonical form for comparing ids and labels: "12.0", "12" and " 12" are the same."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit() and (stripped[0] != "0" or len(stripped) == 1):
        return stripped  # the usual id or label is canonical already; parsing every cell as a Decimal is slow
    try:
        number = Decimal(stripped)
    except InvalidOperation:
        return stripped
    # Hex ids such as "12e45678" parse as huge numbers: an id is never a number that large.
    if not number.is_finite() or abs(number.adjusted()) > 40:
        return stripped
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_missing(text: str) -> bool:
    stripped = text.strip()
    return stripped == "" or stripped.lower() in _NAN_STRINGS


def _show_list(values: Iterable[str], limit: int = 10) -> str:
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    return f"[{shown}, ... {len(items) - limit} more]" if len(items) > limit else f"[{shown}]"


@dataclass
class _Tally:
    """How many cells broke one rule, with the first one as an example."""

    count: int = 0
    example: str = ""

    def add(self, example: str) -> None:
        if self.count == 0:
            self.example = example
        self.count += 1


@dataclass
class _Findings:
    problems: list[str] = field(default_factory=list)
    tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)

    def tally(self, rule: str, column: str, example: str) -> None:
        self.tallies.setdefault((rule, column), _Tally()).add(example)


def _read_header(path: Path) -> list[str] | None:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), None)


def _column_values(path: Path, column: str) -> Iterator[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        index = header.index(column)
        for row in reader:
            if row and index < len(row):
                yield row[index]


def _check_columns(header: list[str], expected: list[str], findings: _Findings) -> None:
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        findings.problems.append(f"duplicate columns: {_show_list(duplicates)}")
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    if missing:
        findings.problems.append(f"missing columns {_show_list(missing)} (expected {_show_list(expected)})")
    if extra:
        findings.problems.append(f"unexpected columns {_show_list(extra)} (expected {_show_list(expected)})")


def _check_cell(
    value: str, column: str, row_id: str, profile: CompetitionProfile, classes: set[str] | None, f: _Findings
) -> float | None:
    """Records what is wrong with one prediction cell; returns its number for row-sum checks."""
    fmt = profile.prediction_format
    # A class may be spelled like a missing value ("NA", "None"); it is then a label, not a gap.
    is_class = classes is not None and normalise_value(value) in classes
    if value.strip() == "" or (_is_missing(value) and not is_class):
        f.tally("missing", column, row_id)
        return None
    if fmt == "label":
        if classes is not None and not is_class:
            f.tally("not_a_class", column, value)
        return None
    if fmt == "ranked_labels":
        labels = value.split()
        if profile.map_k is not None and len(labels) > profile.map_k:
            f.tally("too_many_labels", column, row_id)
        if classes is not None:
            for label in labels:
                if normalise_value(label) not in classes:
                    f.tally("not_a_class", column, label)
                    break
        return None
    number = _number(value)
    if number is None:
        f.tally("not_numeric", column, value)
        return None
    if not math.isfinite(number):
        f.tally("not_finite", column, value)
        return None
    if fmt in ("probability", "class_probabilities") and not 0.0 <= number <= 1.0:
        f.tally("not_probability", column, value)
    if fmt == "value" and profile.metric == "rmsle" and number < 0:
        f.tally("negative", column, value)
    return number


def _tally_messages(findings: _Findings, classes: list[str] | None, metric: str) -> list[str]:
    messages: list[str] = []
    for (rule, column), t in findings.tallies.items():
        n = t.count
        if rule == "missing":
            messages.append(f"column {column!r} has {n} empty or NaN values, e.g. for id {t.example}")
        elif rule == "not_a_class":
            messages.append(f"column {column!r} has values outside {_show_list(classes or [])}, e.g. {t.example!r}")
        elif rule == "too_many_labels":
            messages.append(f"column {column!r} has {n} rows with too many labels, e.g. id {t.example}")
        elif rule == "not_numeric":
            messages.append(f"column {column!r} has {n} non-numeric values, e.g. {t.example!r}")
        elif rule == "not_finite":
            messages.append(f"column {column!r} has {n} infinite values, e.g. {t.example!r}")
        elif rule == "not_probability":
            messages.append(f"column {column!r} has {n} values outside [0, 1], e.g. {t.example!r}")
        elif rule == "negative":
            messages.append(
                f"column {column!r} has {n} negative values, which {metric} cannot score, e.g. {t.example!r}"
            )
        elif rule == "zero_row_sum":
            messages.append(f"{n} rows have class probabilities that sum to 0, e.g. id {t.example}")
        elif rule == "ragged":
            messages.append(f"{n} rows have more or fewer fields than the header, e.g. line {t.example}")
    return messages


def _test_ids(profile: CompetitionProfile, findings: _Findings, against: str) -> set[str] | None:
    name = profile.test_file if against == "test" else profile.train_file
    test_path = Path(profile.data_dir) / name
    try:
        header = _read_header(test_path) or []
        if profile.id_column not in header:
            findings.problems.append(f"{against} file {name} has no id column {profile.id_column!r}")
            return None
        return {normalise_value(v) for v in _column_values(test_path, profile.id_column)}
    except OSError as exc:
        findings.problems.append(f"cannot read the {against} file {test_path}: {exc.strerror or exc}")
        return None


def validate_submission(submission_path: Path, profile: CompetitionProfile, *, max_problems: int = 5,
                        against: Literal["test", "train"] = "test", allow_empty_rows: bool = False) -> list[str]:
    """Human-readable problems with a submission; an empty list means it is valid.

    ``against="train"`` checks out-of-fold predictions (oof.csv): the same format, one row per train id.
    ``allow_empty_rows`` accepts rows whose every prediction cell is empty (oof.csv of time-ordered folds,
    whose earliest rows no model predicts; ``attempt_scores`` checks which rows they are).

    Checks: the file parses as CSV; its columns are those of sample_submission.csv
    (any order); one row per test id, each exactly once and none unknown (ids
    compared after numeric normalisation, "12.0" == "12"); no empty/NaN/inf
    predictions; and the values suit ``profile.prediction_format``.
    """
    findings = _Findings()
    submission_path = Path(submission_path)
    if not submission_path.is_file():
        return [f"submission file not found: {submission_path}"]
    sample_path = Path(profile.data_dir) / profile.sample_submission_file
    try:
        expected = _read_header(sample_path)
    except OSError as exc:
        return [f"cannot read the sample submission {sample_path}: {exc.strerror or exc}"]
    if not expected:
        return [f"the sample submission {sample_path} has no header row"]

    try:
        _scan_submission(submission_path, profile, expected, findings, against, allow_empty_rows)
    except (csv.Error, UnicodeDecodeError) as exc:
        findings.problems.append(f"submission is not a readable CSV file: {exc}")
    except OSError as exc:
        findings.problems.append(f"cannot read the submission {submission_path}: {exc.strerror or exc}")
    problems = findings.problems + _tally_messages(findings, profile.classes, profile.metric)
    return problems[:max_problems]


def _scan_submission(
    path: Path, profile: CompetitionProfile, expected: list[str], findings: _Findings, against: str,
    allow_empty_rows: bool = False,
) -> None:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            findings.problems.append("submission is empty: no header row")
            return
        header = [c.strip() for c in header]
        _check_columns(header, expected, findings)

        id_column = profile.id_column if profile.id_column in expected else expected[0]
        id_index = header.index(id_column) if id_column in header else None
        prediction_columns = [(i, c) for i, c in enumerate(header) if c in expected and c != id_column]
        classes = {normalise_value(c) for c in profile.classes} if profile.classes is not None else None
        test_ids = _test_ids(profile, findings, against) if id_index is not None else None

        seen: set[str] = set()
        duplicates = _Tally()
        unknown = _Tally()
        n_rows = 0
        for row in reader:
            if not row:
                continue
            n_rows += 1
            if len(row) != len(header):
                findings.tally("ragged", "", str(reader.line_num))
            has_id = id_index is not None and id_index < len(row)
            row_id = row[id_index].strip() if has_id and id_index is not None else f"row {n_rows}"
            if id_index is not None:
                key = normalise_value(row_id)
                if key in seen:
                    duplicates.add(row_id)
                seen.add(key)
                if test_ids is not None and key not in test_ids:
                    unknown.add(row_id)
            if allow_empty_rows and prediction_columns and all(
                    (row[index] if index < len(row) else "").strip() == "" for index, _ in prediction_columns):
                continue
            numbers: list[float] = []
            for index, column in prediction_columns:
                value = row[index] if index < len(row) else ""
                number = _check_cell(value, column, row_id, profile, classes, findings)
                if number is not None:
                    numbers.append(number)
            # Only a row whose cells are all numbers can be judged by its sum; others are reported already.
            if (
                profile.prediction_format == "class_probabilities"
                and prediction_columns
                and len(numbers) == len(prediction_columns)
                and sum(numbers) <= 0.0
            ):
                findings.tally("zero_row_sum", "", row_id)

    if test_ids is not None:
        if n_rows != len(test_ids):
            want = len(test_ids)
            what = "submission" if against == "test" else "oof.csv"
            findings.problems.append(f"{what} has {n_rows} rows, expected {want} (one per {against} id)")
        missing_ids = test_ids - seen
        if missing_ids:
            example = min(missing_ids, key=lambda v: (len(v), v))
            findings.problems.append(f"{len(missing_ids)} {against} ids missing, e.g. {example}")
        if unknown.count:
            findings.problems.append(f"{unknown.count} ids are not in the {against} set, e.g. {unknown.example}")
    if duplicates.count:
        findings.problems.append(f"{duplicates.count} rows repeat an earlier id, e.g. {duplicates.example}")
