"""Run AutoGluon and FLAML on every competition folder under DIR and grade what they write.

    python benchmarks/automl_reference.py ../shared/competitions --system autogluon-medium \
        autogluon-best flaml --time-limit 120

The reference systems for the quality table: AutoGluon-Tabular 1.6.3 with presets
"medium_quality" (autogluon-medium) or "best_quality" (autogluon-best), without its
torch models, and FLAML 2.7 with time_budget = the time limit; 2 CPUs each. They run
in their own venv (--automl-python, default .automl-venv/bin/python, made by
`make bench-automl` from benchmarks/automl-requirements.txt), one subprocess per
competition and system (benchmarks/automl_fit.py), so a crash or a time-out is a
row of the table.

What each system is told comes from the product's profiler on the public folder:
target, feature columns and which are dates, task, and the metric mapped to the
library's own (METRIC_MAP). The submission is written here from the system's
predictions in the sample submission's format (labels, one probability column or
one column per class, values) and graded with DIR/grade.py like benchmarks/quality.py.
Prints a markdown table; --json prints the raw rows instead; --keep DIR keeps each fit's
spec, log (the library's own output), predictions and submission.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_agent.solver.competition import CompetitionProfile  # noqa: E402
from batch_agent.solver.errors import InputError  # noqa: E402
from batch_agent.solver.profiling import normalise_id, profile_competition  # noqa: E402
from benchmarks.quality import competition_folders, grade, table_cell  # noqa: E402

SYSTEMS = ("autogluon-medium", "autogluon-best", "flaml")
DEFAULT_AUTOML_PYTHON = ROOT / ".automl-venv" / "bin" / "python"
FIT_SCRIPT = Path(__file__).resolve().parent / "automl_fit.py"
NUM_CPUS = 2


@dataclass(frozen=True)
class MetricMap:
    """A product metric as the libraries know it."""

    autogluon: str
    # A FLAML metric name, or "custom:<name>" for one benchmarks/automl_fit.py builds with scikit-learn.
    flaml: str
    # RMSLE: fit RMSE on log1p(y) (the usual way, and neither library trains on RMSLE directly).
    log_target: bool = False


# Keyed by the product's metric names (batch_agent.solver.metrics). Top-k (MAP@K) ranks by the classes'
# probabilities, so the systems fit for log loss. Multi-column targets (mean_auc, mcrmse) are not run.
METRIC_MAP: dict[str, MetricMap] = {
    "roc_auc": MetricMap("roc_auc", "roc_auc"),
    "gini": MetricMap("roc_auc", "roc_auc"),  # gini = 2·AUC − 1: the same ranking
    "log_loss": MetricMap("log_loss", "log_loss"),
    "accuracy": MetricMap("accuracy", "accuracy"),
    "f1": MetricMap("f1", "f1"),
    "f1_macro": MetricMap("f1_macro", "macro_f1"),
    "f1_micro": MetricMap("f1_micro", "micro_f1"),
    "f1_weighted": MetricMap("f1_weighted", "custom:f1_weighted"),
    "mcc": MetricMap("mcc", "custom:mcc"),
    "balanced_accuracy": MetricMap("balanced_accuracy", "custom:balanced_accuracy"),
    "qwk": MetricMap("quadratic_kappa", "custom:qwk"),
    "map_at_k": MetricMap("log_loss", "log_loss"),
    "rmse": MetricMap("root_mean_squared_error", "rmse"),
    "mse": MetricMap("mean_squared_error", "mse"),
    "rmsle": MetricMap("root_mean_squared_error", "rmse", log_target=True),
    "mae": MetricMap("mean_absolute_error", "mae"),
    "medae": MetricMap("median_absolute_error", "custom:medae"),
    "mape": MetricMap("mean_absolute_percentage_error", "mape"),
    "smape": MetricMap("symmetric_mean_absolute_percentage_error", "custom:smape"),
    "r2": MetricMap("r2", "r2"),
}

ProblemType = Literal["binary", "multiclass", "regression"]


class UnsupportedError(Exception):
    """A competition this benchmark cannot hand to the AutoML systems (its row says why)."""


def fit_spec(profile: CompetitionProfile, folder: Path, system: str, time_limit: float,
             workdir: Path) -> dict[str, object]:
    """What benchmarks/automl_fit.py is told, all of it from the product's profile of the public folder."""
    if len(profile.target_columns) != 1:
        raise UnsupportedError(f"{len(profile.target_columns)} target columns")
    if profile.metric not in METRIC_MAP:
        raise UnsupportedError(f"no mapping for metric {profile.metric}")
    mapped = METRIC_MAP[profile.metric]
    problem_type: ProblemType = "regression" if profile.task == "regression" else (
        "binary" if profile.task == "binary" else "multiclass")
    return {
        "system": system,
        "time_limit": time_limit,
        "train": str(folder / profile.train_file),
        "test": str(folder / profile.test_file),
        "target": profile.target_columns[0],
        "features": [f.name for f in profile.features],
        "date_columns": [f.name for f in profile.features if f.kind == "date"],
        "problem_type": problem_type,
        "autogluon_metric": mapped.autogluon,
        "flaml_metric": mapped.flaml,
        "log_target": mapped.log_target,
        "num_cpus": NUM_CPUS,
        "workdir": str(workdir),
        "output": str(workdir / "predictions.csv"),
    }


def class_probabilities(profile: CompetitionProfile, predictions: pd.DataFrame) -> np.ndarray:
    """(n, K) probabilities in ``profile.classes`` order from the "proba:<class>" columns."""
    by_class = {normalise_id(c.removeprefix("proba:")): c for c in predictions.columns if c.startswith("proba:")}
    classes = profile.classes or []
    missing = [c for c in classes if c not in by_class]
    if len(missing) == len(classes):
        raise ValueError(f"the predictions have none of the classes {classes}")
    # A class the system never saw in training gets probability 0.
    return np.column_stack([
        predictions[by_class[c]].to_numpy(dtype=float) if c in by_class else np.zeros(len(predictions))
        for c in classes
    ])


def submission_from_predictions(profile: CompetitionProfile, ids: pd.Series, predictions: pd.DataFrame) -> pd.DataFrame:
    """The submission in sample_submission's columns and format, from automl_fit.py's predictions frame."""
    if len(predictions) != len(ids):
        raise ValueError(f"{len(predictions)} predictions for {len(ids)} test rows")
    value_columns = [c for c in profile.submission_columns if c != profile.id_column]
    columns: dict[str, object] = {profile.id_column: ids.to_numpy()}
    classes = profile.classes or []
    fmt = profile.prediction_format
    if fmt == "value":
        columns[value_columns[0]] = predictions["value"].to_numpy(dtype=float)
    elif fmt == "label":
        labels = predictions["label"].map(lambda v: normalise_id(str(v)))
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"predicted labels {unknown[:3]} are not classes of train.csv")
        columns[value_columns[0]] = labels.to_numpy()
    else:
        proba = np.clip(class_probabilities(profile, predictions), 0.0, 1.0)
        if fmt == "probability":  # one column: P(the positive class), the profile's last class
            columns[value_columns[0]] = proba[:, -1]
        elif fmt == "class_probabilities":  # one column per class, in the sample's order
            proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-15)
            for j, column in enumerate(value_columns):
                columns[column] = proba[:, j]
        else:  # ranked_labels: the k most probable classes, best first
            top = np.argsort(-proba, axis=1, kind="stable")[:, : profile.map_k or len(classes)]
            columns[value_columns[0]] = [" ".join(classes[i] for i in row) for row in top]
    return pd.DataFrame(columns)[profile.submission_columns]


def run_one(slug: str, folder: Path, base: Path, system: str, time_limit: float, automl_python: Path,
            workroot: Path) -> dict[str, object]:
    row: dict[str, object] = {"slug": slug, "system": system, "time_limit": time_limit, "metric": None,
                              "score": None, "seconds": None, "status": "ok"}
    workdir = workroot / f"{slug}-{system}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        profile = profile_competition(folder)
        row["metric"] = profile.metric
        spec = fit_spec(profile, folder, system, time_limit, workdir)
    except (InputError, UnsupportedError) as exc:
        row["status"] = f"not run: {exc}"
        return row
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    log_path = workdir / "fit.log"
    # Past this the system is stuck rather than slow: best_quality's refit and prediction take time too.
    deadline = 2 * time_limit + 300
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the libraries' own thread policy
    started = time.monotonic()
    try:
        with log_path.open("w") as log:
            proc = subprocess.run([str(automl_python), str(FIT_SCRIPT), str(spec_path)], stdout=log,
                                  stderr=subprocess.STDOUT, timeout=deadline, env=env, cwd=workdir)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        returncode = None
    except OSError as exc:
        row["status"] = f"failed: cannot start {automl_python}: {exc.strerror}"
        return row
    row["seconds"] = round(time.monotonic() - started, 1)
    if returncode is None:
        row["status"] = f"timed out after {deadline:.0f} s"
        return row
    if returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        row["status"] = f"failed: {lines[-1].strip()[:120] if lines else f'exit {returncode}'}"
        return row
    try:
        test = pd.read_csv(folder / profile.test_file, low_memory=False)
        predictions = pd.read_csv(workdir / "predictions.csv")
        submission = submission_from_predictions(profile, test[profile.id_column], predictions)
    except (ValueError, KeyError, OSError) as exc:
        row["status"] = f"failed: cannot write the submission: {exc}"
        return row
    path = workdir / "submission.csv"
    submission.to_csv(path, index=False)
    row["score"] = grade(base, slug, path)
    if row["score"] is None and (base / "grade.py").is_file():
        row["status"] = "graded invalid"
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--system", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--time-limit", type=float, nargs="+", default=[120.0],
                        help="seconds per fit; several run each system at each")
    parser.add_argument("--only", nargs="*", help="slugs to run (default: all)")
    parser.add_argument("--automl-python", type=Path, default=DEFAULT_AUTOML_PYTHON)
    parser.add_argument("--json", action="store_true", help="print the raw rows as JSON lines")
    parser.add_argument("--keep", type=Path, help="keep each fit's spec, log, predictions and submission here "
                        "(default: a temporary folder, removed at the end)")
    args = parser.parse_args()
    # Each fit runs in its own working folder, where relative paths would not be found; absolute()
    # (not resolve()) keeps the venv's own python link, which is what makes it the venv's.
    args.automl_python = args.automl_python.absolute()
    args.dir = args.dir.absolute()
    args.keep = args.keep.absolute() if args.keep else None
    if not args.automl_python.is_file():
        print(f"no AutoML python at {args.automl_python}: run `make bench-automl` to create the venv",
              file=sys.stderr)
        return 2
    folders = [(s, f) for s, f in competition_folders(args.dir) if not args.only or s in args.only]
    if not folders:
        print(f"no competition folders under {args.dir}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ks-automl-") as tmp:
        for slug, folder in folders:
            for time_limit in args.time_limit:
                for system in args.system:
                    print(f"running {system} on {slug} ({time_limit:.0f} s) ...", file=sys.stderr, flush=True)
                    workroot = (args.keep or Path(tmp)) / f"{time_limit:.0f}s"
                    rows.append(run_one(slug, folder, args.dir, system, time_limit, args.automl_python, workroot))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    header = ["competition", "metric", "system", "time limit (s)", "graded score", "wall (s)", "status"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["slug"], r["metric"], r["system"], table_cell(r["time_limit"], 0), table_cell(r["score"]),
                 table_cell(r["seconds"], 1), r["status"]]
        print("| " + " | ".join(table_cell(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
