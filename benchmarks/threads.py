"""Thread count × OpenMP wait policy for the model families the templates train.

    python benchmarks/threads.py                    # every installed family, 3 repeats
    python benchmarks/threads.py --libs lightgbm --repeats 5

Each (family, wait policy) runs in a fresh interpreter, because OpenMP reads
OMP_WAIT_POLICY once, when its runtime loads. Inside it, every (table, thread
count) fit is repeated and the median wall-clock and CPU seconds of the fit alone
(no imports, no data generation) are reported, with the spread of the wall-clock
(max − min over the repeats) as the measure of noise. Two synthetic tables: a
small one (3,500 rows × 7 features, 4 classes, like a small competition) and a
larger one (200,000 rows × 9 features, regression). Load average is printed before
and after: on a shared machine the wall-clock of 2-thread fits is the noisiest
number here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("unset", "PASSIVE", "ACTIVE")
FAMILIES = ("lightgbm", "xgboost", "catboost", "extra_trees", "random_forest")
# (name, rows, features, task, boosting rounds / trees)
TABLES = (("small", 3_500, 7, "multiclass", 300), ("large", 200_000, 9, "regression", 100))


def _table(rows: int, features: int, task: str) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, features))
    signal = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + np.sin(X[:, 3])
    if task == "multiclass":
        y = np.digitize(signal + rng.normal(scale=0.5, size=rows), [-1.0, 0.0, 1.0])
    else:
        y = signal + rng.normal(scale=0.5, size=rows)
    return X, y


def _fit(family: str, X: Any, y: Any, task: str, rounds: int, threads: int) -> None:
    if family == "lightgbm":
        import lightgbm as lgb

        params = {"objective": task, "num_threads": threads, "verbosity": -1, "learning_rate": 0.05}
        if task == "multiclass":
            params["num_class"] = 4
        lgb.train(params, lgb.Dataset(X, y), num_boost_round=rounds)
    elif family == "xgboost":
        import xgboost as xgb

        params = {"tree_method": "hist", "nthread": threads, "eta": 0.05, "max_depth": 6,
                  "objective": "multi:softprob" if task == "multiclass" else "reg:squarederror"}
        if task == "multiclass":
            params["num_class"] = 4
        xgb.train(params, xgb.DMatrix(X, y, nthread=threads), num_boost_round=rounds)
    elif family == "catboost":
        import catboost

        model_class = catboost.CatBoostClassifier if task == "multiclass" else catboost.CatBoostRegressor
        model_class(iterations=rounds, thread_count=threads, verbose=False, allow_writing_files=False).fit(X, y)
    else:
        from sklearn import ensemble

        kind = "Classifier" if task == "multiclass" else "Regressor"
        name = ("ExtraTrees" if family == "extra_trees" else "RandomForest") + kind
        trees = rounds if task == "multiclass" else rounds // 4
        # The templates cap a forest's rows per tree at 50,000 on large tables.
        cap = {"max_samples": min(1.0, 50_000 / len(y)), "bootstrap": True} if len(y) > 50_000 else {}
        getattr(ensemble, name)(n_estimators=trees, n_jobs=threads, min_samples_leaf=2, max_features=0.5,
                                random_state=0, **cap).fit(X, y)


def child(family: str, threads: int, repeats: int, tables: list[str]) -> None:
    """Runs in the fresh interpreter: prints one JSON line per table with every repeat's times.

    One thread count per process, as in a training program: an OpenMP pool once started keeps its
    threads (spinning, under ACTIVE) even when later regions ask for fewer.
    """
    for name, rows, features, task, rounds in TABLES:
        if name not in tables:
            continue
        X, y = _table(rows, features, task)
        _fit(family, X[:200], y[:200], task, 5, threads)  # load the library and its pool outside the timing
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            _fit(family, X, y, task, rounds, threads)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        print(json.dumps({"table": name, "threads": threads, "wall": walls, "cpu": cpus}), flush=True)


def _installed(family: str) -> bool:
    module = {"extra_trees": "sklearn", "random_forest": "sklearn"}.get(family, family)
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--libs", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tables", nargs="*", default=[t[0] for t in TABLES], choices=[t[0] for t in TABLES])
    parser.add_argument("--timeout", type=float, default=90.0,
                        help="seconds per (family, table, policy, threads) process, imports and all repeats "
                             "included; slower ones show as over the limit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.repeats, args.tables)
        return 0
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, str, str, int, float, float, float]] = []
    for family in args.libs:
        if not _installed(family):
            print(f"{family}: not installed, skipped", file=sys.stderr)
            continue
        for table, policy, threads in [(tb, p, t) for tb in args.tables for p in POLICIES for t in (1, 2)]:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            if policy != "unset":
                env["OMP_WAIT_POLICY"] = policy
            print(f"{family} {table} {policy} {threads} thread(s) ...", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", family, "--threads", str(threads),
                     "--repeats", str(args.repeats), "--tables", table],
                    env=env, capture_output=True, text=True, cwd=ROOT, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rows.append((family, table, policy, threads, math.inf, math.nan, math.inf))
                continue
            if proc.returncode != 0:
                print(proc.stderr[-500:], file=sys.stderr)
                continue
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    rows.append((family, r["table"], policy, r["threads"], statistics.median(r["wall"]),
                                 max(r["wall"]) - min(r["wall"]), statistics.median(r["cpu"])))
    load_after = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after; "
          f"{os.cpu_count()} CPUs; {args.repeats} repeats, medians")
    print("| family | table | OMP_WAIT_POLICY | threads | wall s (median) | wall spread s | CPU s (median) |")
    print("|---|---|---|---|---|---|---|")
    for family, table, policy, threads, wall, spread, cpu in sorted(rows, key=lambda r: (r[0], r[1], r[3], r[2])):
        if math.isinf(wall):
            print(f"| {family} | {table} | {policy} | {threads} | over the {args.timeout:.0f} s limit | - | - |")
        else:
            print(f"| {family} | {table} | {policy} | {threads} | {wall:.2f} | {spread:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
