"""Run the solver on every competition folder under DIR and grade what it writes.

    python benchmarks/quality.py ../shared/competitions --time-limit 120

A competition folder is DIR/<slug>/public (or DIR/<slug> itself when it holds
train.csv). When DIR has a grade.py (``python grade.py SLUG submission.csv`` →
JSON with "score"), each submission is graded with it; otherwise only the CV
score is shown. Each run is a real `kaggle-solver run` process, so the seconds
include start-up. Prints one table row per competition.

With --baselines, two more graded columns per competition, both written as
submissions and graded like the solver's: the best constant (the train labels'
mean, median, majority class or class prior, whichever the metric scores best on
train) and LightGBM with default parameters on the main table's own columns
(train.csv/test.csv as downloaded, text columns as pandas categories, dates as
day numbers), so a
competition whose signal is in other files shows what reading them was worth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def competition_folders(base: Path) -> list[tuple[str, Path]]:
    found = []
    for child in sorted(base.iterdir()):
        if (child / "public" / "train.csv").is_file():
            found.append((child.name, child / "public"))
        elif (child / "train.csv").is_file():
            found.append((child.name, child))
    return found


def run_one(slug: str, folder: Path, base: Path, time_limit: float, workroot: Path) -> dict[str, object]:
    output = workroot / f"{slug}.csv"
    command = [sys.executable, "-m", "batch_agent.cli", "run", str(folder), "--output", str(output),
               "--time-limit", str(time_limit), "--workdir", str(workroot / slug), "--json", "--quiet"]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - started
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else {"status": "failed", "error": proc.stderr.strip()[-300:]}
    row: dict[str, object] = {
        "slug": slug,
        "metric": summary.get("metric", "?"),
        "cv": summary.get("cv_score"),
        "score": None,
        "seconds": round(wall, 1),
        "first_valid": None,
        "attempts": summary.get("attempts"),
        "best": summary.get("best", summary.get("error", "")),
        "tokens": summary.get("tokens"),
        "cost_usd": summary.get("cost_usd"),
    }
    if summary.get("first_valid_seconds") is not None and summary.get("seconds") is not None:
        # Solver-measured time to the first valid attempt, plus this process's start-up and profiling.
        row["first_valid"] = round(float(summary["first_valid_seconds"]) + wall - float(summary["seconds"]), 1)
    if proc.returncode == 0:
        row["score"] = grade(base, slug, output)
    # Which programs ran and what each scored, for reading a row: the table has room for the final one only.
    ran = [f"{h['program']} {h['cv_score']:.5g} ({h['seconds']:.0f} s)" if h.get("ok") else f"{h['program']} failed"
           for h in summary.get("history", [])]
    if ran:
        print(f"{slug}: " + ", ".join(ran), file=sys.stderr, flush=True)
    return row


def grade(base: Path, slug: str, submission: Path) -> float | None:
    """The grader's score for ``submission``; None without a grader or for an invalid submission."""
    grader = base / "grade.py"
    if not grader.is_file():
        return None
    graded = subprocess.run([sys.executable, str(grader), slug, str(submission)], capture_output=True, text=True)
    try:
        score = json.loads(graded.stdout).get("score")
    except json.JSONDecodeError:
        return None
    return float(score) if score is not None else None


def baseline_submissions(folder: Path, workroot: Path) -> dict[str, Path]:
    """Write the best-constant and the main-table LightGBM submissions; {column: path} of those made."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from batch_agent.solver.metrics import get_metric
    from batch_agent.solver.predictions import Decision, cv_score, encode_target, is_classification, submission_frame
    from batch_agent.solver.profiling import profile_competition
    from batch_agent.solver.shapes import flatten_competition

    # The flat folder's profile knows the task, metric and target even where train.csv alone has no features.
    flat, _ = flatten_competition(folder, workroot / "flat")
    profile = profile_competition(flat)
    train = pd.read_csv(folder / profile.train_file, low_memory=False)
    test = pd.read_csv(folder / profile.test_file, low_memory=False)
    y = encode_target(profile, train)
    labelled = ~np.isnan(y).any(axis=1) if y.ndim == 2 else (y >= 0 if is_classification(profile) else ~np.isnan(y))
    y = y[labelled]
    written: dict[str, Path] = {}

    def day_number(values: pd.Series) -> pd.Series:
        return (pd.to_datetime(values, errors="coerce", format="mixed") - pd.Timestamp(0)) / pd.Timedelta(days=1)

    if is_classification(profile):
        prior = np.bincount(y, minlength=len(profile.classes or [])) / len(y)
        constants = [prior, np.eye(len(prior))[int(np.argmax(prior))]]
    elif y.ndim == 2:
        constants = [y.mean(axis=0), np.median(y, axis=0)]
    else:
        constants = [np.array(y.mean()), np.array(np.median(y))]
        if (y >= 0).all():
            constants.append(np.array(np.expm1(np.log1p(y).mean())))  # the RMSLE-optimal constant

    def tiled(value: np.ndarray, n: int) -> np.ndarray:
        return np.tile(value, (n, 1)) if value.ndim else np.full(n, float(value))

    def train_score(value: np.ndarray) -> float:
        return cv_score(profile, y, tiled(value, len(y)), Decision())

    higher = get_metric(profile.metric).higher_is_better
    best = max(constants, key=lambda c: train_score(c) if higher else -train_score(c))
    ids = test[profile.id_column]
    path = workroot / "constant.csv"
    submission_frame(profile, ids, tiled(best, len(test)), Decision()).to_csv(path, index=False)
    written["constant"] = path

    columns = [c for c in train.columns if c in test.columns and c != profile.id_column
               and c not in profile.target_columns]
    if not columns:
        return written
    X, X_test = train.loc[labelled, columns].copy(), test[columns].copy()
    dates = {f.name for f in profile.features if f.kind == "date"}
    for column in columns:
        if column in dates:  # a date as a category has one level per row: as a day number it can split
            X[column], X_test[column] = day_number(X[column]), day_number(X_test[column])
        elif not pd.api.types.is_numeric_dtype(X[column]) or not pd.api.types.is_numeric_dtype(X_test[column]):
            levels = pd.unique(pd.concat([X[column], X_test[column]]).dropna().astype(str))
            X[column] = pd.Categorical(X[column].astype(str).where(X[column].notna()), categories=levels)
            X_test[column] = pd.Categorical(X_test[column].astype(str).where(X_test[column].notna()),
                                            categories=levels)
    params = {"verbose": -1, "n_jobs": 2}
    if is_classification(profile):
        model = lgb.LGBMClassifier(**params).fit(X, y)
        pred = np.zeros((len(X_test), len(profile.classes or [])))
        pred[:, model.classes_] = model.predict_proba(X_test)
    elif y.ndim == 2:
        pred = np.column_stack([
            lgb.LGBMClassifier(**params).fit(X, y[:, j]).predict_proba(X_test)[:, 1]
            if profile.task == "multilabel" else lgb.LGBMRegressor(**params).fit(X, y[:, j]).predict(X_test)
            for j in range(y.shape[1])
        ])
    else:
        pred = lgb.LGBMRegressor(**params).fit(X, y).predict(X_test)
    path = workroot / "lightgbm.csv"
    submission_frame(profile, ids, pred, Decision()).to_csv(path, index=False)
    written["lightgbm"] = path
    return written


def run_baselines(slug: str, folder: Path, base: Path, workroot: Path) -> dict[str, float | None]:
    """Graded scores of the two baselines ("constant", "lightgbm"); None where one could not be made."""
    scores: dict[str, float | None] = {"constant": None, "lightgbm": None}
    workroot.mkdir(parents=True, exist_ok=True)
    try:
        written = baseline_submissions(folder, workroot)
    except Exception as exc:  # a baseline that cannot be built is a "-" in the table, not a failed benchmark
        print(f"{slug}: no baselines ({type(exc).__name__}: {exc})", file=sys.stderr)
        return scores
    for column, path in written.items():
        scores[column] = grade(base, slug, path)
    return scores


def table_cell(value: object, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--only", nargs="*", help="slugs to run (default: all)")
    parser.add_argument("--baselines", action="store_true",
                        help="also grade the best constant and default LightGBM on train.csv/test.csv alone")
    parser.add_argument("--keep", type=Path, help="keep each run's folder (KEEP/SLUG) and submission (KEEP/SLUG.csv) "
                        "here, for benchmarks/reblend.py; default: a temporary folder")
    args = parser.parse_args()
    folders = [(s, f) for s, f in competition_folders(args.dir) if not args.only or s in args.only]
    if not folders:
        print(f"no competition folders under {args.dir}", file=sys.stderr)
        return 2
    if args.keep is not None:
        taken = [slug for slug, _ in folders if (args.keep / slug).exists()]
        if taken:
            print(f"{args.keep} already holds runs of {', '.join(taken)}: choose another --keep folder",
                  file=sys.stderr)
            return 2
        args.keep.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ks-quality-") as tmp:
        workroot = args.keep if args.keep is not None else Path(tmp)
        for slug, folder in folders:
            print(f"running {slug} ...", file=sys.stderr, flush=True)
            row = run_one(slug, folder, args.dir, args.time_limit, workroot)
            if args.baselines:
                row.update(run_baselines(slug, folder, args.dir, Path(tmp) / f"{slug}-baselines"))
            rows.append(row)
    with_llm = any(r["tokens"] for r in rows)
    header = ["slug", "metric", "CV", "graded score"]
    if args.baselines:
        header += ["best constant", "LightGBM on train.csv"]
    header += ["seconds", "first valid (s)", "attempts", "best"]
    if with_llm:
        header += ["tokens", "cost $"]
    print(f"time limit {args.time_limit:.0f} s per competition")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["slug"], r["metric"], table_cell(r["cv"]), table_cell(r["score"])]
        if args.baselines:
            cells += [table_cell(r["constant"]), table_cell(r["lightgbm"])]
        cells += [table_cell(r["seconds"], 1), table_cell(r["first_valid"], 1), table_cell(r["attempts"]),
                  str(r["best"])[:60]]
        if with_llm:
            cells += [table_cell(r["tokens"]), table_cell(r["cost_usd"], 3)]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
