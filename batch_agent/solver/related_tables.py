"""Related tables: extra CSVs that share a key with train/test, flattened into per-key features.

A competition whose train/test rows are customers (or stores, or sessions) often keeps most
of its signal in another table: one row per transaction, event or visit, linked by a key
column such as ``customer_id``; or a small lookup table keyed by a column of train
(``store_id`` → ``stores.csv``). Here each such table becomes columns of train/test:

* one-to-many: per-key aggregates, named ``<table>__<column>__<agg>``: the row count; for
  numeric columns mean/sum/min/max/std/last; for low-cardinality categoricals the count of
  each top level and the number of distinct values; for a date column the days from the
  first and the last event to the table's latest date, and the span, and the row count and
  numeric sums of the last 30 and 90 days. Keys without rows get count 0 and NaN aggregates
  (left join).
* one-to-one: a plain join, ``<table>__<column>``.

A table is related when it has a column of the same name as a train/test column whose
values are found among both train's and test's values. Target columns are never read from
a related table. Only CSV files: pandas would need pyarrow (not a dependency) for parquet.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from batch_agent.solver.competition import DataShape
from batch_agent.solver.errors import InputError
from batch_agent.solver.profiling import _find_files
from batch_agent.solver.shapes import keep_original
from batch_agent.solver.submission import normalise_value

log = logging.getLogger(__name__)

MAX_ROWS = 2_000_000  # rows read per related table; a larger one is sampled uniformly
MAX_COLUMNS = 300  # generated columns in all, shared fairly between the related tables
MAX_LEVELS = 10  # levels counted per low-cardinality column
WINDOWS_DAYS = (30, 90)  # recent windows, before the table's latest date, that get their own counts and sums
LOW_CARDINALITY = 30  # a categorical with at most this many levels gets per-level counts
MIN_OVERLAP = 0.05  # share of train's (and of test's) distinct key values a related table must hold
GROUP_NEW_KEYS = 0.9  # test keys unseen in train at least this often: rows of one key form a group
_CHUNK_ROWS = 500_000
_SKIP_WORDS = ("description", "dictionary", "readme", "sample", "submission", "solution", "answer")
_DATE_PATTERN = re.compile(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?")
_UNREADABLE = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError)
_ID_NAME = re.compile(r"(^|_)(id|key|code|no|number)$|id$", re.IGNORECASE)


@dataclass
class RelatedTable:
    """One related table as read: what the summary reports and what the features came from."""

    file: str
    name: str
    key: str
    rows: int  # in the file
    frame: pd.DataFrame  # the rows read (all, or a uniform sample above MAX_ROWS)
    keys: pd.Series  # the key column, normalised to text
    one_to_one: bool
    train_coverage: float  # share of train's distinct keys with rows in this table
    test_coverage: float
    features: list[str] = field(default_factory=list)


def flatten(data_dir: Path, out_dir: Path) -> tuple[Path, DataShape] | None:
    """A flat folder with the related tables' features joined onto train/test; None if there are none."""
    files = _main_files(data_dir)
    if files is None:
        return None
    train_path, test_path, sample_path = files
    candidates = _candidate_files(data_dir, files)
    if not candidates:
        return None  # the usual single table: nothing more is read
    train_header, test_header = _header(train_path), _header(test_path)
    shared = set(train_header) & set(test_header)
    headers = {path: _header(path) for path in candidates}
    if not any(shared & set(columns) for columns in headers.values()):
        return None

    # Text, exactly as written: the flat train/test keep every value of the downloaded files.
    train = pd.read_csv(train_path, dtype=str, keep_default_na=False, na_filter=False)
    test = pd.read_csv(test_path, dtype=str, keep_default_na=False, na_filter=False)
    sample_header = list(pd.read_csv(sample_path, nrows=0).columns)
    id_column = next((c for c in sample_header if c in test.columns), None)
    if id_column is None or train.empty or test.empty:
        return None  # profiling explains what is wrong with the main files
    # Never read from a related table: the target(s) and the submission's columns.
    protected = (set(train.columns) - set(test.columns)) | (set(sample_header) - {id_column})

    tables = []
    for path in candidates:
        try:
            table = _related(path, headers[path], train, test, protected)
        except _UNREADABLE as exc:
            # One bad extra file must not cost the competition: the others (and train/test) still count.
            log.warning("%s is not read as a related table: %s", path.name, str(exc).splitlines()[0])
            continue
        if table is not None:
            tables.append(table)
    if not tables:
        return None
    budget = max(1, MAX_COLUMNS // len(tables))
    new_train: dict[str, np.ndarray] = {}
    new_test: dict[str, np.ndarray] = {}
    for table in tables:
        features, zero = _table_features(table, protected, budget)
        train_keys = _key_text(train[table.key])
        test_keys = _key_text(test[table.key])
        for name in features.columns:
            column = features[name]
            # Rows without events: zero events, zero of each level; other aggregates stay NaN.
            fill = 0 if name in zero else np.nan
            new_train[name] = column.reindex(train_keys).fillna(fill).to_numpy()
            new_test[name] = column.reindex(test_keys).fillna(fill).to_numpy()
        table.features = list(features.columns)

    out_dir.mkdir(parents=True, exist_ok=True)
    flat_train = pd.concat([train, pd.DataFrame(new_train, index=train.index)], axis=1)
    flat_test = pd.concat([test, pd.DataFrame(new_test, index=test.index)], axis=1)
    flat_train.to_csv(out_dir / "train.csv", index=False)
    flat_test.to_csv(out_dir / "test.csv", index=False)
    shutil.copy(sample_path, out_dir / "sample_submission.csv")
    for text in [*data_dir.glob("*.md"), *data_dir.glob("*.txt")]:
        if text.is_file():
            shutil.copy(text, out_dir / text.name)
    # The flat train.csv holds train's columns: its original would hand programs the held-out labels.
    replaced = [train_path.name, test_path.name]
    original = keep_original(data_dir, out_dir, replaced)
    group = _group_column(tables, train, test, id_column)
    time_column = _time_split_column(train, test, protected | {id_column})
    shape = DataShape(kind="multi_table", original_dir=original, replaced_files=replaced,
                      summary=_summary(tables, (train_path.name, test_path.name), group, time_column, original),
                      group_column=group, time_column=time_column)
    return out_dir, shape


def _main_files(data_dir: Path) -> tuple[Path, Path, Path] | None:
    """train, test and sample submission, found as profiling finds them; None when they are not there."""
    try:
        return _find_files(data_dir)
    except InputError:
        return None


def _header(path: Path) -> list[str]:
    """The CSV's column names; none for a file pandas cannot read (profiling reports train/test's problems)."""
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except _UNREADABLE:
        return []


def _candidate_files(data_dir: Path, main: tuple[Path, Path, Path]) -> list[Path]:
    return sorted(
        p for p in data_dir.iterdir()
        if p.is_file() and p.suffix.lower() == ".csv" and p not in main
        and not any(word in p.name.lower() for word in _SKIP_WORDS)
    )


def _key_text(values: pd.Series) -> pd.Series:
    """Key values as canonical text, so "12", 12 and 12.0 join; missing keys become NA."""
    if pd.api.types.is_integer_dtype(values):
        return values.astype(str)
    if pd.api.types.is_float_dtype(values):
        present = values.dropna()
        if (present == present.round()).all():
            return values.astype("Int64").astype(str).where(values.notna())
    uniques = pd.unique(values.dropna())
    canonical = {u: normalise_value(str(u)) for u in uniques}
    out = values.map(canonical)
    return out.where(out.notna() & (out != ""))


def _count_rows(path: Path) -> int:
    """Data rows in a CSV by its newlines (quoted newlines make it approximate; only sampling uses it)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)


def _read_table(path: Path, usecols: list[str]) -> tuple[pd.DataFrame, int]:
    """The table's rows (a uniform, seeded sample when it has more than MAX_ROWS) and its row count."""
    rows = _count_rows(path)
    if rows <= MAX_ROWS:
        frame = pd.read_csv(path, usecols=usecols, low_memory=False)
        return frame, len(frame)
    fraction = MAX_ROWS / rows
    log.warning("%s has %d rows: reading a uniform sample of about %d (%.1f%%); per-key counts and sums "
                "describe the sample", path.name, rows, MAX_ROWS, 100 * fraction)
    rng = np.random.default_rng(0)
    parts = [chunk[rng.random(len(chunk)) < fraction]
             for chunk in pd.read_csv(path, usecols=usecols, chunksize=_CHUNK_ROWS, low_memory=False)]
    return pd.concat(parts, ignore_index=True), rows


def _related(path: Path, header: list[str], train: pd.DataFrame, test: pd.DataFrame,
             protected: set[str]) -> RelatedTable | None:
    shared = [c for c in header if c in train.columns and c in test.columns and c not in protected]
    if not shared:
        return None
    usecols = [c for c in header if c not in protected]
    frame, rows = _read_table(path, usecols)
    best: tuple[int, float, str, pd.Series, float, float] | None = None
    for column in shared:
        keys = _key_text(frame[column])
        in_table = set(keys.dropna())
        train_keys = set(_key_text(train[column]).dropna())
        test_keys = set(_key_text(test[column]).dropna())
        if len(train_keys) < 2 or not in_table:
            continue
        train_cover = len(train_keys & in_table) / len(train_keys)
        test_cover = len(test_keys & in_table) / max(1, len(test_keys))
        if train_cover < MIN_OVERLAP or test_cover < MIN_OVERLAP:
            continue
        # The most specific shared column is the key (customer_id over a shared region column).
        rank = (len(train_keys) + len(test_keys), train_cover + test_cover)
        if best is None or rank > best[:2]:
            best = (rank[0], rank[1], column, keys, train_cover, test_cover)
    if best is None:
        return None
    _, _, key, keys, train_cover, test_cover = best
    keep = keys.notna()
    frame, keys = frame[keep].reset_index(drop=True), keys[keep].reset_index(drop=True)
    return RelatedTable(file=path.name, name=_table_name(path), key=key, rows=rows, frame=frame, keys=keys,
                        one_to_one=bool(keys.is_unique), train_coverage=train_cover, test_coverage=test_cover)


def _table_name(path: Path) -> str:
    return _slug(path.stem) or "table"


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()


def _looks_like_dates(values: pd.Series) -> bool:
    if not (pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)):
        return False
    sample = values.dropna().astype(str).head(200)
    return len(sample) > 0 and all(_DATE_PATTERN.match(v.strip()) for v in sample)


def _is_id_like(name: str, values: pd.Series) -> bool:
    """An integer code such as merchant_id: its mean and sum mean nothing, its distinct count does."""
    return (bool(_ID_NAME.search(name)) and pd.api.types.is_integer_dtype(values)
            and values.nunique() > LOW_CARDINALITY)


def _table_features(table: RelatedTable, protected: set[str], budget: int) -> tuple[pd.DataFrame, set[str]]:
    """One row per key: the table's columns (one-to-one) or their aggregates (one-to-many), at most ``budget``;
    and the names of the counts (and recent sums), which are 0 for a key without rows."""
    frame = table.frame.drop(columns=[c for c in [table.key, *protected] if c in table.frame.columns])
    dates = [c for c in frame.columns if _looks_like_dates(frame[c])]
    prefix = table.name
    if table.one_to_one:
        out = frame.set_axis(table.keys.to_numpy(), axis=0)
        out.columns = [f"{prefix}__{c}" for c in out.columns]
        return _within_budget(out, budget, table.file), set()

    parsed = {c: pd.to_datetime(frame[c], errors="coerce", format="mixed") for c in dates}
    order = np.argsort(parsed[dates[0]].to_numpy(), kind="stable") if dates else np.arange(len(frame))
    frame = frame.iloc[order].reset_index(drop=True)
    keys = table.keys.iloc[order].reset_index(drop=True)
    parsed = {c: v.iloc[order].reset_index(drop=True) for c, v in parsed.items()}
    grouped = frame.groupby(keys, sort=False)

    parts: list[pd.DataFrame] = [grouped.size().rename(f"{prefix}__rows__count").to_frame()]
    zero = {f"{prefix}__rows__count"}
    numeric = [c for c in frame.columns if c not in parsed and pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c]) and not _is_id_like(c, frame[c])]
    if dates:
        # Recent activity often says more than the whole history (a customer who stopped buying lately).
        when = parsed[dates[0]]
        for days in WINDOWS_DAYS:
            recent = (when > when.max() - pd.Timedelta(days=days)).to_numpy()
            window = frame[recent].groupby(keys[recent], sort=False)
            sums = window[numeric].sum().add_suffix(f"__sum_{days}d")
            sums.columns = [f"{prefix}__{c}" for c in sums.columns]
            counts = window.size().rename(f"{prefix}__rows__count_{days}d").to_frame()
            recent_part = pd.concat([counts, sums], axis=1).reindex(grouped.size().index).fillna(0)
            zero |= set(recent_part.columns)
            parts.append(recent_part)
    for column, when in parsed.items():
        by_key = when.groupby(keys, sort=False)
        latest = when.max()
        first, last = by_key.min(), by_key.max()
        day = pd.Timedelta(days=1)
        parts.append(pd.DataFrame({
            f"{prefix}__{column}__days_since_first": (latest - first) / day,
            f"{prefix}__{column}__days_since_last": (latest - last) / day,
            f"{prefix}__{column}__span_days": (last - first) / day,
        }))
    rest = [c for c in frame.columns if c not in parsed]
    if numeric:
        stats = grouped[numeric].agg(["mean", "sum", "min", "max", "std", "last"])
        stats.columns = [f"{prefix}__{pair[0]}__{pair[1]}" for pair in stats.columns.to_flat_index()]
        parts.append(stats)
    for column in (c for c in rest if c not in numeric):
        values = frame[column]
        parts.append(grouped[column].nunique().rename(f"{prefix}__{column}__n_unique").to_frame())
        zero.add(f"{prefix}__{column}__n_unique")
        if values.nunique() <= LOW_CARDINALITY:
            top = values.value_counts().index[:MAX_LEVELS]
            counts = pd.DataFrame({
                f"{prefix}__{column}__{_slug(str(level)) or 'blank'}__count": (values == level).groupby(keys).sum()
                for level in top
            })
            parts.append(counts)
            zero |= set(counts.columns)
    return _within_budget(pd.concat(parts, axis=1), budget, table.file), zero


def _within_budget(features: pd.DataFrame, budget: int, file: str) -> pd.DataFrame:
    features = features.loc[:, ~features.columns.duplicated()]
    if features.shape[1] > budget:
        log.warning("%s gives %d feature columns; keeping the first %d", file, features.shape[1], budget)
        features = features.iloc[:, :budget]
    features.index = features.index.astype(str)
    return features


def _group_column(tables: list[RelatedTable], train: pd.DataFrame, test: pd.DataFrame, id_column: str) -> str | None:
    """A key (not the id) that repeats in train while test's values are new: folds must not split its rows."""
    for table in tables:
        if table.key == id_column:
            continue
        train_keys = _key_text(train[table.key])
        test_keys = set(_key_text(test[table.key]).dropna())
        repeats = len(train_keys) >= 2 * train_keys.nunique()
        new = len(test_keys - set(train_keys.dropna())) / max(1, len(test_keys))
        if repeats and new >= GROUP_NEW_KEYS:
            return table.key
    return None


def _time_split_column(train: pd.DataFrame, test: pd.DataFrame, skip: set[str]) -> str | None:
    """A date column of train and test where test starts where train ends: folds must be time-ordered."""
    for column in (c for c in train.columns if c in test.columns and c not in skip):
        if not (_looks_like_dates(train[column]) and _looks_like_dates(test[column])):
            continue
        train_dates = pd.to_datetime(train[column], errors="coerce", format="mixed")
        test_dates = pd.to_datetime(test[column], errors="coerce", format="mixed")
        if train_dates.notna().any() and test_dates.notna().any() and test_dates.min() >= train_dates.max():
            return column
    return None


def _summary(tables: list[RelatedTable], main: tuple[str, str], group: str | None, time_column: str | None,
             original: str) -> str:
    lines = [f"{main[0]} and {main[1]} have related tables, joined by key as features named "
             "<table>__<column>__<agg> (one-to-many) or <table>__<column> (one-to-one):"]
    for t in tables:
        columns = ", ".join(map(str, t.frame.columns[:20])) + (" ..." if t.frame.shape[1] > 20 else "")
        sampled = f" (features from a uniform sample of {len(t.frame):,})" if len(t.frame) < t.rows else ""
        if t.one_to_one:
            kind = "one-to-one lookup"
        else:
            kind = f"one-to-many, {len(t.frame) / max(1, t.keys.nunique()):.1f} rows per key"
        lines.append(
            f"- {t.file}: key {t.key}, {kind}, {t.rows:,} rows{sampled}; rows for {t.train_coverage:.0%} of "
            f"train's and {t.test_coverage:.0%} of test's keys; columns: {columns}; {len(t.features)} features"
        )
    if group:
        lines.append(f"Rows of train share {group} and test's {group} values are new: folds group by {group}.")
    if time_column:
        lines.append(f"test follows train in time ({time_column}): folds are time-ordered.")
    lines.append(f"The downloaded files are under {original}/.")
    return "\n".join(lines)
