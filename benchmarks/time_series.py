"""The generated time-series competitions, solved as time series and as one table, beside two baselines.

    python benchmarks/time_series.py [--time-limit 60]

For each competition of ``examples/shapes/time_shapes.py`` (generated into a temporary folder):

* ``time series``: ``kaggle-solver run --no-llm`` as it is (lag features, time-ordered folds);
* ``one table``: the same run with shape detection off (the table as downloaded, shuffled folds);
* ``constant``: the best constant for the metric, computed from the hidden answers (their mean for
  RMSE, their median for MAE), which no submission can know;
* ``main-table LightGBM``: LightGBM on train.csv's own columns (calendar parts of the date, the other
  columns), 500 rounds, no lags.

Prints one table: the graded score of each (lower is better for both metrics) and each run's CV
score, which shows how far shuffled folds flatter a forecast.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "examples" / "shapes"
# The CLI with shape detection replaced by "one table", in a child process like the real run.
AS_TABLE = (
    "import sys\n"
    "from batch_agent.solver import solve\n"
    "from batch_agent.solver.competition import DataShape\n"
    "solve.flatten_competition = lambda data_dir, out_dir: (data_dir, DataShape())\n"
    "from batch_agent.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SHAPES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solve(public: Path, work: Path, time_limit: float, as_table: bool) -> tuple[Path, float | None]:
    output = work.with_suffix(".csv")
    entry = ["-c", AS_TABLE] if as_table else ["-m", "batch_agent.cli"]
    proc = subprocess.run([sys.executable, *entry, "run", str(public), "--output", str(output), "--time-limit",
                           str(time_limit), "--workdir", str(work), "--json", "--quiet", "--no-llm"],
                          capture_output=True, text=True, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    return output, summary.get("cv_score")


def _features(frame: pd.DataFrame, target: str, categories: dict[str, list[str]]) -> pd.DataFrame:
    dates = pd.to_datetime(frame["date"])
    out = pd.DataFrame({"year": dates.dt.year, "month": dates.dt.month, "day": dates.dt.day,
                        "dayofweek": dates.dt.day_of_week, "dayofyear": dates.dt.day_of_year,
                        "ordinal": (dates - pd.Timestamp("1970-01-01")).dt.days})
    for column in frame.columns:
        if column in ("id", "date", target):
            continue
        if column in categories:
            out[column] = pd.Categorical(frame[column], categories=categories[column])
        else:
            out[column] = frame[column]
    return out


def main_table_lightgbm(public: Path, target: str) -> np.ndarray:
    import lightgbm as lgb

    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    categories = {c: sorted(train[c].astype(str).unique()) for c in train.columns
                  if not pd.api.types.is_numeric_dtype(train[c]) and c not in ("date", target)}
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "verbosity": -1,
              "num_threads": 1, "seed": 0}
    model = lgb.train(params, lgb.Dataset(_features(train, target, categories), train[target]), 500)
    return np.asarray(model.predict(_features(test, target, categories)))


def loss(metric: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if metric == "rmse":
        return float(np.sqrt(np.mean((truth - predicted) ** 2)))
    return float(np.mean(np.abs(truth - predicted)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-limit", type=float, default=60.0)
    args = parser.parse_args()
    grade = _module("grade").grade
    rows = []
    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp:
        base = Path(tmp)
        for slug in _module("time_shapes").make(base):
            spec = json.loads((base / slug / "private" / "grading.json").read_text())
            metric, target = spec["metric"], spec["target_column"]
            public = base / slug / "public"
            print(f"running {slug} ...", file=sys.stderr, flush=True)
            answers = pd.read_csv(base / slug / "private" / "answers.csv")
            test_ids = pd.read_csv(public / "test.csv")["id"]
            truth = answers.set_index("id").loc[test_ids, target].to_numpy(dtype=float)
            best_constant = truth.mean() if metric == "rmse" else np.median(truth)
            row: dict[str, object] = {
                "slug": slug, "metric": metric, "constant": loss(metric, truth, np.full(len(truth), best_constant)),
                "main-table LightGBM": loss(metric, truth, main_table_lightgbm(public, target)),
            }
            for name, as_table in (("time series", False), ("one table", True)):
                output, cv = solve(public, base / f"{slug}-{'table' if as_table else 'series'}", args.time_limit,
                                   as_table)
                graded = grade(base, slug, output) if output.is_file() else {"score": None}
                row[name], row[f"{name} CV"] = graded["score"], cv
            rows.append(row)
    columns = ["slug", "metric", "time series", "time series CV", "one table", "one table CV", "main-table LightGBM",
               "constant"]
    print(f"time limit {args.time_limit:g} s per run; graded scores, lower is better")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else ("-" if row[c] is None else str(row[c]))
                 for c in columns]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
