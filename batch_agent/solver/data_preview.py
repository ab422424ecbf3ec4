"""A short, bounded text about a competition's data and the machine, for whoever writes its programs.

The profile says which columns exist; this says what is in them: a few sample
rows, numeric ranges, top categories, the target's distribution or class
balance, where test differs from train (shifted columns, unseen categories,
missing shares, ids present in both), the hardware (usable cores, GPU) and the
modelling libraries installed, and a short leakage checklist. Sections come in
order of value and the text is cut to ``max_chars``, so it always fits a prompt.

Runs where the data is (the CLI, the prepare Batch job): pandas is imported
only by ``data_preview`` itself, so importing this module stays light.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from batch_agent.solver.competition import CompetitionProfile

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 4_000
# Rows read from each file: enough for stable shares and ranges, bounded in time and memory.
MAX_ROWS_READ = 200_000
_SAMPLE_ROWS = 3
_SAMPLE_COLUMNS = 16
_CELL_CHARS = 24
_RANGE_COLUMNS = 20
_CATEGORY_COLUMNS = 12
_TOP_CATEGORIES = 4
_MAX_TARGETS = 4
# A numeric column whose test mean lies this many train standard deviations away is called shifted.
_SHIFT_STD = 0.25
# Share of test values never seen in train above which a categorical column is called shifted.
_UNSEEN_SHARE = 0.05
_MISSING_GAP = 0.10
_MIN_VALUES = 20
_LIBRARIES = (
    "lightgbm",
    "xgboost",
    "catboost",
    "scikit-learn",
    "torch",
    "pandas",
    "numpy",
    "scipy",
    "polars",
    "statsmodels",
)

LEAKAGE_CHECKLIST = """\
Leakage checklist:
- Fit every transform that learns from data (scaling, imputing, target or frequency encoding, feature
  selection) inside each fold, on that fold's training rows only.
- No feature may be the target in disguise: a column that predicts it almost perfectly, or is only known
  after the outcome, is a leak, not a signal.
- Rows that belong together (same id, customer, group or date) go in the same fold; time-ordered data is
  validated on later periods than it was trained on.
- Test rows never supply labels; their features may inform only unsupervised steps."""


def data_preview(profile: CompetitionProfile, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The preview of the competition in ``profile.data_dir``, at most ``max_chars`` characters."""
    import pandas as pd

    data_dir = Path(profile.data_dir)
    try:
        train = pd.read_csv(data_dir / profile.train_file, nrows=MAX_ROWS_READ, low_memory=False)
        test = pd.read_csv(data_dir / profile.test_file, nrows=MAX_ROWS_READ, low_memory=False)
    except (OSError, ValueError) as err:
        # The preview is extra context, never a reason to stop: the machine and the checklist still help.
        log.warning("no data preview: %s", err)
        return bounded(f"{environment_summary()}\n\n{LEAKAGE_CHECKLIST}", max_chars)
    features = [c.name for c in profile.features if c.name in train.columns]
    sections = [
        _target_section(train, profile),
        environment_summary(),
        _differences_section(train, test, features, profile.id_column),
        LEAKAGE_CHECKLIST,
        _ranges_section(train, features),
        _categories_section(train, features),
        _sample_section(train, profile.train_file),
    ]
    return bounded("\n\n".join(s for s in sections if s), max_chars)


def environment_summary() -> str:
    """The cores this process may use, any NVIDIA GPU, the memory and the modelling libraries installed."""
    lines = [f"Hardware: {usable_cores()} usable CPU cores; {_memory_text()}; GPU: {gpu_summary() or 'none'}"]
    installed = installed_libraries()
    lines.append("Installed: " + (", ".join(f"{n} {v}" for n, v in installed.items()) or "none of the usual"))
    missing = [name for name in _LIBRARIES if name not in installed]
    if missing:
        lines.append("Not installed (do not import): " + ", ".join(missing))
    return "\n".join(lines)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _memory_text() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return "memory unknown"
    return f"{total / 2**30:.0f} GiB memory"


def gpu_summary() -> str | None:
    """The NVIDIA GPUs nvidia-smi reports (name and memory), or None when there is none or no nvidia-smi."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not names:
        return None
    return "; ".join(names)


def installed_libraries() -> dict[str, str]:
    """Versions of the modelling libraries that are installed, by distribution name."""
    found: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def bounded(text: str, max_chars: int) -> str:
    """``text`` cut at a line boundary to at most ``max_chars`` characters, saying so when cut."""
    if len(text) <= max_chars:
        return text
    marker = "\n[preview truncated]"
    head = text[: max(0, max_chars - len(marker))]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + marker


# ---------------------------------------------------------------- sections


def _target_section(train: pd.DataFrame, profile: CompetitionProfile) -> str:
    lines = []
    for target in profile.target_columns[:_MAX_TARGETS]:
        if target not in train.columns:
            continue
        values = train[target]
        missing = f", {values.isna().mean():.1%} missing" if values.isna().any() else ""
        if profile.task in ("regression", "multitarget_regression"):
            lines.append(f"Target {target} (regression{missing}): {_numeric_summary(values)}")
        else:
            shares = values.astype("string").value_counts(normalize=True, dropna=True)
            top = ", ".join(f"{_cell(k)} {v:.1%}" for k, v in shares.head(8).items())
            more = f" (+{len(shares) - 8} more classes)" if len(shares) > 8 else ""
            lines.append(f"Target {target} class balance{missing}: {top}{more}")
    omitted = len(profile.target_columns) - _MAX_TARGETS
    if omitted > 0:
        lines.append(f"({omitted} more target columns)")
    return "\n".join(lines)


def _numeric_summary(values: pd.Series) -> str:
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce").dropna().astype("float64")
    if numbers.empty:
        return "no numeric values"
    q = numbers.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).tolist()
    array = numbers.to_numpy(dtype="float64")
    spread = float(array.std())
    skew = float(((array - array.mean()) ** 3).mean() / spread**3) if spread > 0 else 0.0
    return (
        f"min {q[0]:.4g}, p25 {q[1]:.4g}, median {q[2]:.4g}, p75 {q[3]:.4g}, max {q[4]:.4g}, "
        f"mean {numbers.mean():.4g}, std {numbers.std():.4g}, skew {skew:.2f}"
    )


def _differences_section(train: pd.DataFrame, test: pd.DataFrame, features: list[str], id_column: str) -> str:
    import pandas as pd

    lines = []
    if id_column in train.columns and id_column in test.columns:
        shared = len(set(train[id_column].astype("string")) & set(test[id_column].astype("string")))
        lines.append(f"Ids in both train and test: {shared}")
    shifted = []
    for name in features:
        if name not in test.columns:
            continue
        a, b = train[name], test[name]
        gap = b.isna().mean() - a.isna().mean()
        if abs(gap) > _MISSING_GAP:
            shifted.append(f"{name} (missing {a.isna().mean():.0%} in train, {b.isna().mean():.0%} in test)")
            continue
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            std = float(a.std()) if a.notna().sum() > 1 else 0.0
            if std > 0 and abs(float(b.mean()) - float(a.mean())) / std > _SHIFT_STD:
                shifted.append(f"{name} (mean {a.mean():.4g} in train, {b.mean():.4g} in test)")
        else:
            seen = set(a.dropna().astype("string"))
            test_values = b.dropna().astype("string")
            unseen = float((~test_values.isin(seen)).mean()) if len(test_values) else 0.0
            # Free text and ids are unseen by nature; a handful of values proves nothing.
            categorical = a.nunique() < 0.5 * max(len(a), 1)
            if unseen > _UNSEEN_SHARE and categorical and len(test_values) >= _MIN_VALUES:
                shifted.append(f"{name} ({unseen:.0%} of test values never seen in train)")
    if shifted:
        lines.append("Columns whose test distribution differs from train: " + "; ".join(shifted[:12]))
        if len(shifted) > 12:
            lines[-1] += f" (+{len(shifted) - 12} more)"
    else:
        lines.append("No feature's test distribution differs markedly from train (means, unseen values, missing).")
    return "Train/test differences:\n" + "\n".join(lines)


def _ranges_section(train: pd.DataFrame, features: list[str]) -> str:
    import pandas as pd

    numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]
    if not numeric:
        return ""
    lines = ["Numeric ranges (train):"]
    for name in numeric[:_RANGE_COLUMNS]:
        column = train[name].dropna()
        if column.empty:
            continue
        lines.append(
            f"- {name}: {column.min():.4g} .. {column.max():.4g}, median {column.median():.4g}, "
            f"{column.nunique()} distinct"
        )
    if len(numeric) > _RANGE_COLUMNS:
        lines.append(f"({len(numeric) - _RANGE_COLUMNS} more numeric columns)")
    return "\n".join(lines)


def _categories_section(train: pd.DataFrame, features: list[str]) -> str:
    import pandas as pd

    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    if not categorical:
        return ""
    lines = ["Top categories (train):"]
    for name in categorical[:_CATEGORY_COLUMNS]:
        shares = train[name].astype("string").value_counts(normalize=True, dropna=True)
        if len(shares) > 0.5 * max(len(train), 1):
            example = _cell(shares.index[0]) if len(shares) else ""
            lines.append(f"- {name}: mostly distinct text ({len(shares)} values), e.g. {example!r}")
            continue
        top = ", ".join(f"{_cell(k)} {v:.0%}" for k, v in shares.head(_TOP_CATEGORIES).items())
        more = f" (+{len(shares) - _TOP_CATEGORIES} more)" if len(shares) > _TOP_CATEGORIES else ""
        lines.append(f"- {name}: {top}{more}")
    if len(categorical) > _CATEGORY_COLUMNS:
        lines.append(f"({len(categorical) - _CATEGORY_COLUMNS} more categorical columns)")
    return "\n".join(lines)


def _sample_section(train: pd.DataFrame, train_file: str) -> str:
    columns = list(train.columns[:_SAMPLE_COLUMNS])
    rows = [" | ".join(_cell(c) for c in columns)]
    for _, row in train.head(_SAMPLE_ROWS).iterrows():
        rows.append(" | ".join(_cell(row[c]) for c in columns))
    hidden = len(train.columns) - _SAMPLE_COLUMNS
    more = f" ({hidden} more columns not shown)" if hidden > 0 else ""
    return f"First rows of {train_file}{more}:\n" + "\n".join(rows)


def _cell(value: object) -> str:
    text = str(value).replace("\n", " ").replace("|", "/")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"
