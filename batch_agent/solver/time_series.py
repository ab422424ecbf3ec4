"""Time series: train and test split by time; lag and rolling features of the target per series.

Recognised when a date or time column in both train.csv and test.csv puts (nearly) every test row
after the last train row. Series keys are the fewest categorical columns (store, item) that make
(keys, time) unique in train; none when the times alone are unique (one series). The horizon is the
number of time steps from the last train time to the furthest test time.

With a numeric target, a regular time step and series keys found, the flat folder gets, for every
row of train and test, features of the same series' target at least ``horizon`` steps back: lags,
rolling means and standard deviations over windows that end ``horizon`` steps back, and the mean of
everything up to then. Each feature means the same thing for a train row as for the furthest test
row, test rows read only train's values (the target is known only there), and no row ever sees its
own target or one less than ``horizon`` steps before it. Without them (a class target, no series
structure, irregular times) the table stays as it is and only the validation changes: every shape
with a time column gets time-ordered folds (``training.make_folds``) and a hidden holdout of the
latest rows (``holdout.py``).
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from batch_agent.solver.competition import DataShape
from batch_agent.solver.shapes import keep_original

# Share of test rows that must come after the last train time: a split by time, not a random one.
MIN_AFTER_SHARE = 0.95
# Share of a column's values that must parse as times, in train and in test.
MIN_PARSED_SHARE = 0.99
MIN_TRAIN_TIMES = 10
# (keys, time) may repeat on at most this share of train rows and still be series keys.
MAX_DUPLICATE_SHARE = 0.01
MAX_KEY_COLUMNS = 3
MAX_KEY_CANDIDATES = 8
# The most common gap between consecutive times must account for this share of gaps: a regular step.
MIN_REGULAR_SHARE = 0.5
# Series × time steps of the grid the features are computed on: beyond it, no lag features.
MAX_GRID_CELLS = 5_000_000
SAMPLE_ROWS = 200
_DATE_LIKE = re.compile(r"\d{1,4}[-/.:]\d{1,2}")
_TIME_NAME = re.compile(r"date|time|day|week|month|year|period|step|timestamp", re.IGNORECASE)
_NANOSECONDS_PER_DAY = 86_400 * 10**9


@dataclass
class SeriesLayout:
    """What detection found: the time column, the series, the step and the horizon."""

    time_column: str
    is_datetime: bool
    keys: list[str] = field(default_factory=list)
    has_series: bool = False  # keys (possibly none: one series) make (keys, time) unique
    step: float | None = None  # in days for dates, in the column's units for numbers; None when irregular
    horizon: int = 0  # steps from the last train time to the furthest test time
    target: str | None = None  # numeric target whose lags become features


def time_values(values: pd.Series) -> np.ndarray:
    """A time column as floats that order like the times (days for dates); NaN where a value does not parse."""
    head = values.dropna().head(SAMPLE_ROWS)
    if len(head) and pd.to_numeric(head, errors="coerce").notna().all():  # numbers; dates skip the slow try
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() >= MIN_PARSED_SHARE * values.notna().sum():
            return numbers.to_numpy(dtype=float)
    present = values.notna()
    # One format inferred from the first value parses a million rows in a blink; "mixed" parses each value
    # on its own (slow) and is needed only when the column mixes formats.
    dates = pd.to_datetime(values, errors="coerce")
    if (dates.isna() & present).sum() > (1 - MIN_PARSED_SHARE) * max(1, present.sum()):
        dates = pd.to_datetime(values, errors="coerce", format="mixed")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    nanoseconds = dates.to_numpy(dtype="datetime64[ns]").astype("int64").astype(float)
    nanoseconds[dates.isna().to_numpy()] = np.nan
    return nanoseconds / _NANOSECONDS_PER_DAY


def _time_candidates(train: pd.DataFrame, test: pd.DataFrame, excluded: set[str]) -> list[tuple[str, bool]]:
    """Columns of both files that look like times in a sample: (name, is a date rather than a number)."""
    found = []
    for name in train.columns:
        if name not in test.columns or name in excluded:
            continue
        sample = pd.concat([train[name], test[name]]).dropna()
        if sample.empty:
            continue
        if pd.api.types.is_numeric_dtype(sample):
            # A number is a time only when its name says so (week, period, date_block): ids and amounts grow too.
            if _TIME_NAME.search(name) and (sample % 1 == 0).all():
                found.append((name, False))
            continue
        text = sample.astype(str)
        if text.str.contains(_DATE_LIKE).mean() < MIN_PARSED_SHARE:
            continue
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        if parsed.notna().mean() >= MIN_PARSED_SHARE:
            found.append((name, True))
    return found


def _not_times(sample_columns: list[str], test: pd.DataFrame) -> set[str]:
    """The submission's id (its first column) and targets: never the time index."""
    return (set(sample_columns) - set(test.columns)) | set(sample_columns[:1])


def detect(train: pd.DataFrame, test: pd.DataFrame, sample_columns: list[str]) -> SeriesLayout | None:
    """The time-series layout of a train/test pair, or None when test is not after train in time."""
    excluded = _not_times(sample_columns, test)
    for name, is_datetime in _time_candidates(train.head(SAMPLE_ROWS), test.head(SAMPLE_ROWS), excluded):
        train_times, test_times = time_values(train[name]), time_values(test[name])
        if np.isnan(train_times).mean() > 1 - MIN_PARSED_SHARE or np.isnan(test_times).mean() > 1 - MIN_PARSED_SHARE:
            continue
        if len(np.unique(train_times[~np.isnan(train_times)])) < MIN_TRAIN_TIMES:
            continue
        after = np.mean(test_times > np.nanmax(train_times))
        if after < MIN_AFTER_SHARE:
            continue
        layout = SeriesLayout(time_column=name, is_datetime=is_datetime)
        _find_series(layout, train, test, train_times, test_times, sample_columns)
        return layout
    return None


def _find_series(layout: SeriesLayout, train: pd.DataFrame, test: pd.DataFrame, train_times: np.ndarray,
                 test_times: np.ndarray, sample_columns: list[str]) -> None:
    """Fill in the keys, the step, the horizon and the target of ``layout``."""
    n = len(train)
    id_column = sample_columns[0] if sample_columns else None
    # The submission's columns that train has and test lacks; else every such column of train.
    targets = ([c for c in sample_columns[1:] if c in train.columns and c not in test.columns]
               or [c for c in train.columns if c not in test.columns and c != id_column])
    numeric = [c for c in targets if pd.to_numeric(train[c], errors="coerce").notna().mean() > 0.9]
    if len(targets) == 1 and numeric:
        layout.target = targets[0]
    ranked: list[tuple[int, str]] = []
    for name in test.columns:
        if name in (layout.time_column, id_column) or name not in train.columns:
            continue
        column = train[name]
        n_unique = column.nunique()
        if not 2 <= n_unique <= max(2, n // MIN_TRAIN_TIMES):
            continue
        if pd.api.types.is_float_dtype(column) and not (column.dropna() % 1 == 0).all():
            continue  # a measurement, not a key
        ranked.append((n_unique, name))
    candidates = [name for _, name in sorted(ranked)[:MAX_KEY_CANDIDATES]]
    codes = {name: pd.factorize(train[name].astype(str))[0].astype(np.uint64) for name in candidates}
    time_code = pd.factorize(pd.Series(train_times))[0].astype(np.uint64)
    if _duplicate_share([time_code]) <= MAX_DUPLICATE_SHARE:
        layout.has_series = True
    else:
        for size in range(1, MAX_KEY_COLUMNS + 1):
            fits: list[tuple[int, list[str]]] = []
            for combination in combinations(candidates, size):
                parts = [codes[name] for name in combination]
                if _duplicate_share([*parts, time_code]) <= MAX_DUPLICATE_SHARE:
                    fits.append((len(np.unique(_combined(parts))), list(combination)))
            if fits:
                n_series, keys = min(fits)
                # Each series must repeat over time, or these columns are a row id, not series keys.
                if n_series * 3 <= n:
                    layout.keys, layout.has_series = keys, True
                break
    unique = np.unique(train_times[~np.isnan(train_times)])
    gaps = np.diff(unique)
    values, counts = np.unique(np.round(gaps, 6), return_counts=True)
    if len(counts) and counts.max() >= MIN_REGULAR_SHARE * len(gaps) and values[counts.argmax()] > 0:
        layout.step = float(values[counts.argmax()])
        layout.horizon = max(1, math.ceil((np.nanmax(test_times) - unique[-1]) / layout.step - 1e-9))


def _combined(codes: list[np.ndarray]) -> np.ndarray:
    """One 64-bit code per row for a combination of columns' codes (a hash: collisions are negligible)."""
    out = np.zeros(len(codes[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in codes:
            out = out * np.uint64(1_000_003) + part + np.uint64(1)
    return out


def _duplicate_share(codes: list[np.ndarray]) -> float:
    combined = _combined(codes)
    return 1.0 - len(np.unique(combined)) / max(1, len(combined))


def _seasons(step: float, is_datetime: bool) -> tuple[list[int], list[int]]:
    """Seasonal periods and rolling windows, in steps, for the step's unit."""
    if is_datetime and step == 1.0:  # daily: weeks and 52-week years (same weekday)
        return [7, 364], [7, 28, 91]
    if is_datetime and abs(step - 1 / 24) < 1e-6:  # hourly: days and weeks
        return [24, 168], [24, 168]
    if is_datetime and step == 7.0:
        return [52], [4, 13, 52]
    if is_datetime and 28 <= step <= 31:
        return [12], [3, 12]
    return [], [4, 12]


def lag_features(layout: SeriesLayout, both: pd.DataFrame, times: np.ndarray, target: np.ndarray
                 ) -> pd.DataFrame | None:
    """Features of each row from its series' ``target`` at least ``layout.horizon`` steps back.

    ``both`` holds train and test rows, ``target`` is NaN where unknown (test rows). None when the
    grid of series × steps would be too large. Reads only cells ``horizon`` or more steps before a
    row's own, so a row's own target, and any within the horizon, never enter its features.
    """
    assert layout.step is not None and layout.target is not None
    horizon = layout.horizon
    series = (both[layout.keys].astype(str).groupby(layout.keys, sort=False).ngroup().to_numpy()
              if layout.keys else np.zeros(len(both), dtype=int))
    known = ~np.isnan(times)
    start = np.nanmin(times)
    steps = np.zeros(len(both), dtype=int)
    steps[known] = np.round((times[known] - start) / layout.step).astype(int)
    n_steps, n_series = int(steps.max()) + 1, int(series.max()) + 1
    if n_steps * n_series > MAX_GRID_CELLS:
        return None
    # The grid: mean target per (step, series) over the rows that have one (a repeated cell is averaged).
    sums = np.zeros((n_steps, n_series))
    counts = np.zeros((n_steps, n_series))
    labelled = known & ~np.isnan(target)
    np.add.at(sums, (steps[labelled], series[labelled]), target[labelled])
    np.add.at(counts, (steps[labelled], series[labelled]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = pd.DataFrame(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    seasons, windows = _seasons(layout.step, layout.is_datetime)
    lags = {horizon, horizon + 1, horizon + 2}
    for season in seasons:
        first = season * math.ceil(horizon / season)
        lags |= {first, first + season}
    name = layout.target
    columns: dict[str, pd.DataFrame] = {}
    for lag in sorted(lag for lag in lags if lag < 0.75 * n_steps):
        columns[f"{name}_lag{lag}"] = grid.shift(lag)
    back = grid.shift(horizon)
    for window in windows:
        if window < 0.75 * n_steps:
            rolling = back.rolling(window, min_periods=1)
            columns[f"{name}_mean{window}"] = rolling.mean()
            columns[f"{name}_std{window}"] = rolling.std()
    columns[f"{name}_mean_all"] = back.expanding(min_periods=1).mean()
    out = pd.DataFrame(index=both.index)
    rows, cols = steps, series
    for column, values in columns.items():
        picked = values.to_numpy()[rows, cols]
        picked[~known] = np.nan
        out[column] = picked
    return out


def _format_time(value: float, is_datetime: bool) -> str:
    if not is_datetime:
        return f"{value:g}"
    stamp = pd.Timestamp(round(value * _NANOSECONDS_PER_DAY))
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


def _format_step(step: float, is_datetime: bool) -> str:
    if not is_datetime:
        return f"{step:g}"
    return str(pd.Timedelta(days=step)).replace(" 00:00:00", "").replace("1 days", "1 day")


def summarise(layout: SeriesLayout, train: pd.DataFrame, test: pd.DataFrame, features: list[str]) -> str:
    """A few lines for the plan and the model's prompt: time ranges, series, horizon, what was added."""
    tr, te = time_values(train[layout.time_column]), time_values(test[layout.time_column])
    fmt = layout.is_datetime
    lines = [
        f"time column {layout.time_column!r}: train {len(train):,} rows from {_format_time(np.nanmin(tr), fmt)} "
        f"to {_format_time(np.nanmax(tr), fmt)}; test {len(test):,} rows from {_format_time(np.nanmin(te), fmt)} "
        f"to {_format_time(np.nanmax(te), fmt)} ({np.mean(te > np.nanmax(tr)):.0%} after train's last time)",
    ]
    if layout.has_series:
        n_series = len(train[layout.keys].drop_duplicates()) if layout.keys else 1
        keyed = f"keyed by {', '.join(layout.keys)}" if layout.keys else "one series"
        lines.append(f"series: {n_series:,} ({keyed})")
    else:
        lines.append("series: none found (rows share times without keys that make them unique)")
    if layout.step is not None:
        lines.append(f"step {_format_step(layout.step, fmt)}; horizon {layout.horizon} steps "
                     "(last train time to furthest test time)")
    else:
        lines.append("step: irregular")
    if features:
        lines.append(f"added features of {layout.target!r} at least {layout.horizon} steps back, per series "
                     f"(test rows read train's tail only): {', '.join(features)}")
    else:
        lines.append("no lag features (" + ("target not numeric" if layout.target is None else
                                            "no regular series") + "); the table is used as it is")
    lines.append(f"validation: expanding-window folds ordered by {layout.time_column!r} (the earliest block "
                 "is never predicted out of fold); the hidden holdout takes the latest train rows")
    return "\n".join(lines)


def flatten(data_dir: Path, out_dir: Path) -> tuple[Path, DataShape] | None:
    """The flat folder and shape of a time-series competition; None when ``data_dir`` is not one."""
    train_path, test_path, sample_path = (data_dir / n for n in ("train.csv", "test.csv", "sample_submission.csv"))
    if not (train_path.is_file() and test_path.is_file() and sample_path.is_file()):
        return None
    try:
        sample_columns = [str(c).strip() for c in pd.read_csv(sample_path, nrows=0).columns]
        head_train = _read(train_path, nrows=SAMPLE_ROWS)
        head_test = _read(test_path, nrows=SAMPLE_ROWS)
    except (ValueError, OSError, UnicodeDecodeError):
        return None  # profiling reports unreadable files in its own words
    if not _time_candidates(head_train, head_test, _not_times(sample_columns, head_test)):
        return None  # the cheap exit of every ordinary table: no column looks like a time
    train, test = _read(train_path), _read(test_path)
    layout = detect(train, test, sample_columns)
    if layout is None:
        return None
    features = None
    if layout.has_series and layout.step is not None and layout.target is not None:
        both = pd.concat([train.drop(columns=[layout.target]), test], ignore_index=True)
        times = np.concatenate([time_values(train[layout.time_column]), time_values(test[layout.time_column])])
        target = np.concatenate([pd.to_numeric(train[layout.target], errors="coerce").to_numpy(dtype=float),
                                 np.full(len(test), np.nan)])
        features = lag_features(layout, both, times, target)
    names = [] if features is None else list(features.columns)
    summary = summarise(layout, train, test, names)
    if features is None:
        # Nothing to add: the competition's own folder, with validation ordered by time.
        return data_dir, DataShape(kind="time_series", summary=summary, time_column=layout.time_column)
    # About seven significant digits of the target's scale: half the time to write a large table.
    scale = float(np.nanmax(np.abs(target))) if np.isfinite(target).any() else 1.0
    features = features.round(max(0, 6 - math.floor(math.log10(max(scale, 1e-12)))))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    pd.concat([train, features.iloc[:len(train)].reset_index(drop=True)], axis=1).to_csv(
        out_dir / "train.csv", index=False)
    pd.concat([test, features.iloc[len(train):].reset_index(drop=True)], axis=1).to_csv(
        out_dir / "test.csv", index=False)
    shutil.copyfile(sample_path, out_dir / "sample_submission.csv")
    for description in [*data_dir.glob("*.md"), *data_dir.glob("*.txt")]:
        shutil.copyfile(description, out_dir / description.name)
    # The flat train.csv and test.csv hold every downloaded column: the originals add nothing.
    replaced = [train_path.name, test_path.name]
    original = keep_original(data_dir, out_dir, replaced)
    return out_dir, DataShape(kind="time_series", original_dir=original, summary=summary,
                              time_column=layout.time_column, replaced_files=replaced)


def _read(path: Path, nrows: int | None = None) -> pd.DataFrame:
    frame = pd.read_csv(path, nrows=nrows, low_memory=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame
