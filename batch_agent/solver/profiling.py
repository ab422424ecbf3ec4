"""Work out what a competition asks: files, id column, target(s), task, metric, feature kinds.

Runs where the data is (the CLI, the prepare Batch job); it reads the CSVs with
pandas. Every problem a person can fix becomes an InputError with one clear line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from batch_agent.solver.competition import ColumnInfo, ColumnKind, CompetitionProfile, PredictionFormat, TaskType
from batch_agent.solver.errors import InputError
from batch_agent.solver.metrics import get_metric, known_metrics, parse_metric
from batch_agent.solver.submission import normalise_value

log = logging.getLogger(__name__)

# Words that mark the positive class of a binary target, so P(positive) is what a
# one-column probability submission holds.
_POSITIVE_WORDS = ("1", "true", "yes", "y", "t", "positive", "pos")
_DATE_PATTERN = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?|^\d{1,2}/\d{1,2}/\d{4}$")
_MAX_DESCRIPTION_CHARS = 20_000


def profile_competition(data_dir: Path, *, metric: str | None = None) -> CompetitionProfile:
    """Profile the competition in ``data_dir``; ``metric`` overrides the one in the description."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir} is not a folder")
    train_path, test_path, sample_path = _find_files(data_dir)
    train = _read_csv(train_path)
    test = _read_csv(test_path)
    sample = _read_csv(sample_path)
    description, title = _read_description(data_dir)

    id_column = _id_column(sample, test, sample_path.name)
    _check_ids(sample, test, id_column, sample_path.name, test_path.name)
    prediction_columns = [c for c in sample.columns if c != id_column]
    if not prediction_columns:
        raise InputError(f"{sample_path.name} has only the id column '{id_column}': nothing to predict")
    targets, class_columns = _targets(train, test, id_column, prediction_columns)

    metric_name, k, source = _metric(metric, description)
    metric_info = get_metric(metric_name)
    task, fmt, classes = _task(train, targets, class_columns, prediction_columns, metric_name,
                               metric_info.needs, metric_info.task_family)
    features = [
        _column_info(train[c], test[c])
        for c in train.columns
        if c in test.columns and c != id_column and c not in targets
    ]
    if not features:
        raise InputError(f"{train_path.name} and {test_path.name} share no feature columns besides the id")
    extra = sorted(
        p.name for p in data_dir.iterdir()
        if p.is_file() and p not in (train_path, test_path, sample_path) and not p.name.endswith(".md")
    )
    return CompetitionProfile(
        title=title or data_dir.name,
        data_dir=str(data_dir.resolve()),
        train_file=train_path.name,
        test_file=test_path.name,
        sample_submission_file=sample_path.name,
        id_column=id_column,
        target_columns=targets,
        submission_columns=list(sample.columns),
        task=task,
        prediction_format=fmt,
        classes=classes,
        metric=metric_name,
        metric_source=source,
        map_k=k,
        n_train=len(train),
        n_test=len(test),
        target_min=_target_min(train, targets) if task == "regression" else None,
        features=features,
        description=description[:_MAX_DESCRIPTION_CHARS],
        extra_files=extra,
    )


def _target_min(train: pd.DataFrame, targets: list[str]) -> float | None:
    values = train[targets].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return float(np.nanmin(values)) if np.isfinite(values).any() else None


def _find_files(data_dir: Path) -> tuple[Path, Path, Path]:
    csvs = sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    by_name = {p.name.lower(): p for p in csvs}

    def pick(exact: str, pattern: str, what: str) -> Path:
        if exact in by_name:
            return by_name[exact]
        found = [p for p in csvs if re.search(pattern, p.name.lower())]
        if len(found) == 1:
            return found[0]
        names = ", ".join(p.name for p in csvs) or "no CSV files"
        raise InputError(f"cannot find {what} in {data_dir} (found: {names})")

    train = pick("train.csv", r"^train", "train.csv")
    test = pick("test.csv", r"^test", "test.csv")
    sample = pick("sample_submission.csv", r"sample|submission", "sample_submission.csv")
    return train, test, sample


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path.name} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"cannot read {path.name}: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise InputError(f"{path.name} has a header but no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_description(data_dir: Path) -> tuple[str, str]:
    candidates = [data_dir / "description.md", *sorted(data_dir.glob("*.md")), *sorted(data_dir.glob("*.txt"))]
    for path in candidates:
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            heading = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
            return text, heading.group(1).strip() if heading else ""
    return "", ""


def normalise_id(value: object) -> str:
    """Ids and labels compare as text, with numeric forms unified ('12', '12.0' and 12 are one id)."""
    return normalise_value(str(value))


def _id_column(sample: pd.DataFrame, test: pd.DataFrame, sample_name: str) -> str:
    for column in sample.columns:
        if column in test.columns:
            return str(column)
    raise InputError(
        f"no id column: none of the columns of {sample_name} ({', '.join(map(str, sample.columns))}) "
        "is in test.csv"
    )


def _check_ids(sample: pd.DataFrame, test: pd.DataFrame, id_column: str, sample_name: str, test_name: str) -> None:
    test_ids = test[id_column].map(normalise_id)
    if test_ids.duplicated().any():
        duplicate = test_ids[test_ids.duplicated()].iloc[0]
        raise InputError(f"{test_name} has duplicate ids in '{id_column}', e.g. {duplicate}")
    sample_ids = set(sample[id_column].map(normalise_id))
    missing = set(test_ids) - sample_ids
    extra = sample_ids - set(test_ids)
    if missing or extra or len(sample) != len(test):
        example = sorted(missing or extra)[:1]
        raise InputError(
            f"{sample_name} does not match the ids of {test_name}: {len(sample)} rows vs {len(test)}, "
            f"{len(missing)} test ids missing, {len(extra)} unknown ids"
            + (f" (e.g. {example[0]})" if example else "")
        )


def _targets(
    train: pd.DataFrame, test: pd.DataFrame, id_column: str, prediction_columns: list[str]
) -> tuple[list[str], dict[str, str] | None]:
    """Target column(s) in train.csv; for one-column-per-class submissions also the column→class map."""
    in_train = [c for c in prediction_columns if c in train.columns and c not in test.columns]
    if len(in_train) == len(prediction_columns):
        return in_train, None
    train_only = [c for c in train.columns if c not in test.columns and c != id_column]
    if len(prediction_columns) == 1 and len(train_only) == 1:
        return train_only, None
    # One column per class: find the train-only column whose values name the submission columns,
    # as plain values ("sun") or prefixed with the target name ("Status_C").
    for target in train_only:
        values = {normalise_id(v) for v in train[target].dropna().unique()}
        mapping: dict[str, str] = {}
        for column in prediction_columns:
            for candidate in (column, column.removeprefix(f"{target}_")):
                if normalise_id(candidate) in values:
                    mapping[column] = normalise_id(candidate)
                    break
        if len(mapping) == len(prediction_columns):
            return [target], mapping
    raise InputError(
        "cannot work out the target: the submission columns "
        f"({', '.join(prediction_columns)}) are not columns of train.csv, and train.csv has "
        f"{len(train_only)} column(s) missing from test.csv ({', '.join(train_only) or 'none'})"
    )


def _metric(
    option: str | None, description: str
) -> tuple[str, int | None, Literal["option", "description"]]:
    if option:
        metric = get_metric(option)
        k = _k_from(option)
        return metric.name, k, "option"
    match = parse_metric(description)
    if match is None:
        raise InputError(
            "cannot infer the evaluation metric from the description; pass --metric, one of: "
            + ", ".join(known_metrics())
        )
    return get_metric(match.name).name, match.k, "description"


def _k_from(option: str) -> int | None:
    found = re.search(r"@\s*(\d+)", option)
    return int(found.group(1)) if found else None


def _task(
    train: pd.DataFrame,
    targets: list[str],
    class_columns: dict[str, str] | None,
    prediction_columns: list[str],
    metric: str,
    needs: str,
    family: str,
) -> tuple[TaskType, PredictionFormat, list[str] | None]:
    if len(targets) > 1:
        frame = train[targets]
        if not all(pd.api.types.is_numeric_dtype(frame[c]) for c in targets):
            raise InputError(f"targets {', '.join(targets)} must all be numeric for a multi-column submission")
        if family == "classification" or set(pd.unique(frame.to_numpy().ravel())) <= {0, 1}:
            return "multilabel", "probability", None
        return "multitarget_regression", "value", None

    target = targets[0]
    y = train[target]
    if y.isna().all():
        raise InputError(f"target column '{target}' is empty")
    if class_columns is not None:
        classes = [class_columns[c] for c in prediction_columns]
        return ("binary" if len(classes) == 2 else "multiclass"), "class_probabilities", classes

    if family == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            raise InputError(f"metric '{metric}' needs a numeric target, but '{target}' holds text")
        return "regression", "value", None

    classes = _ordered_classes(y)
    if len(classes) < 2:
        raise InputError(f"target column '{target}' has a single value: nothing to learn")
    task: TaskType = "binary" if len(classes) == 2 else "multiclass"
    if needs == "score":
        if task == "multiclass":
            raise InputError(
                f"metric '{metric}' scores probabilities, but the submission has one column for "
                f"{len(classes)} classes; pass --metric with a label metric such as accuracy"
            )
        return task, "probability", classes
    if needs == "top_k":
        return task, "ranked_labels", classes
    return task, "label", classes


def _ordered_classes(y: pd.Series) -> list[str]:
    values = pd.unique(y.dropna())
    if pd.api.types.is_numeric_dtype(y):
        ordered = [normalise_id(v) for v in sorted(values)]
    else:
        ordered = sorted(normalise_id(v) for v in values)
    if len(ordered) == 2:
        # The positive class goes last: a one-column probability is P(classes[1]).
        first_positive = ordered[0].lower() in _POSITIVE_WORDS and ordered[1].lower() not in _POSITIVE_WORDS
        if first_positive:
            ordered.reverse()
    return ordered


def _column_info(train_col: pd.Series, test_col: pd.Series) -> ColumnInfo:
    both = pd.concat([train_col, test_col], ignore_index=True)
    n_unique = int(both.nunique(dropna=True))
    missing = float(both.isna().mean())
    return ColumnInfo(
        name=str(train_col.name),
        kind=_column_kind(both, n_unique),
        dtype=str(train_col.dtype),
        n_unique=n_unique,
        missing_fraction=round(missing, 4),
    )


def _column_kind(values: pd.Series, n_unique: int) -> ColumnKind:
    if n_unique <= 1:
        return "constant"
    if pd.api.types.is_bool_dtype(values):
        return "categorical"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    text = values.dropna().astype(str)
    sample = text.sample(min(len(text), 500), random_state=0) if len(text) else text
    if len(sample) and sample.str.match(_DATE_PATTERN).mean() > 0.95:
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().mean() > 0.95:
            return "date"
    words = sample.str.count(r"\S+")
    if len(sample) and words.mean() >= 3 and n_unique > 0.3 * len(values.dropna()):
        return "text"
    return "categorical"
