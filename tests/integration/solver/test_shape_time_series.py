"""`kaggle-solver run` on a generated multi-series sales forecast, graded against the hidden answers.

The submission must be clearly better than both baselines: the best constant (the mean of the
test answers, which no submission can know) and LightGBM on train.csv's own columns (calendar
parts of the date, store, promotion), the model a single-table solver would fit.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[3]
SHAPES = ROOT / "examples" / "shapes"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SHAPES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _calendar(frame: pd.DataFrame, stores: list[str]) -> pd.DataFrame:
    dates = pd.to_datetime(frame["date"])
    return pd.DataFrame({
        "year": dates.dt.year, "month": dates.dt.month, "day": dates.dt.day,
        "dayofweek": dates.dt.day_of_week, "dayofyear": dates.dt.day_of_year,
        "ordinal": (dates - pd.Timestamp("1970-01-01")).dt.days,
        "store": pd.Categorical(frame["store"], categories=stores), "promo": frame["promo"],
    })


def main_table_baseline(public: Path) -> np.ndarray:
    """LightGBM on train.csv's own columns, no lags: what the solver would do without the time-series shape."""
    import lightgbm as lgb

    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    stores = sorted(train["store"].unique())
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "verbosity": -1,
              "num_threads": 1, "seed": 0}
    model = lgb.train(params, lgb.Dataset(_calendar(train, stores), train["sales"]), num_boost_round=500)
    return np.asarray(model.predict(_calendar(test, stores)))


def test_a_sales_forecast_beats_the_constant_and_the_main_table_model(tmp_path: Path) -> None:
    generated = tmp_path / "generated"
    slug = _module("time_shapes").make(generated)[0]
    public = generated / slug / "public"
    output = tmp_path / "submission.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "batch_agent.cli", "run", str(public), "--output", str(output), "--time-limit", "60",
         "--workdir", str(tmp_path / "work"), "--json", "--quiet", "--no-llm"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    profile = json.loads((tmp_path / "work" / "profile.json").read_text())
    assert profile["shape"]["kind"] == "time_series" and profile["shape"]["time_column"] == "date"

    # The template programs' oof.csv leaves the earliest block empty, and only it.
    first = sorted((tmp_path / "work").glob("attempt-01-*"))[0]
    oof = pd.read_csv(first / "oof.csv").merge(pd.read_csv(public / "train.csv")[["id", "date"]], on="id")
    empty = oof["sales"].isna()
    assert 0.1 < empty.mean() < 0.3
    assert oof.loc[empty, "date"].max() < oof.loc[~empty, "date"].min()

    graded = _module("grade").grade(generated, slug, output)
    assert graded["valid"], graded["error"]
    answers = pd.read_csv(generated / slug / "private" / "answers.csv")
    test = pd.read_csv(public / "test.csv")
    truth = answers.set_index("id").loc[test["id"], "sales"].to_numpy()
    constant = float(np.sqrt(np.mean((truth - truth.mean()) ** 2)))
    table_model = float(np.sqrt(np.mean((truth - main_table_baseline(public)) ** 2)))
    score = float(graded["score"])  # type: ignore[arg-type]
    # Measured here: about 28 against 54 (main table) and 108 (constant).
    assert score < 0.6 * table_model, (score, table_model, summary)
    assert score < 0.4 * constant, (score, constant)
