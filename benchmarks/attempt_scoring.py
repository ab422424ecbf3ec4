"""What the product's own scoring costs per attempt: checking and scoring oof.csv, and the hidden holdout.

Builds a made-up binary competition (roc_auc) of N train rows and N/4 test rows, writes the
files an honest program would (no program runs: only the product's side is timed) and
prints one row per size:

    python benchmarks/attempt_scoring.py [--sizes 10000 100000]

prepare: writing the program's data copy with a hidden holdout (model-written programs only);
judge: validating submission.csv and oof.csv, scoring oof.csv, and for the holdout run scoring
the held rows with a 200-resample bootstrap and writing the stripped submission.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from batch_agent.solver.attempt_scores import judge_attempt
from batch_agent.solver.holdout import prepare_holdout, remove_prepared
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.profiling import profile_competition


def make_competition(folder: Path, n_train: int) -> None:
    rng = np.random.default_rng(0)
    n = n_train + n_train // 4
    x = rng.normal(size=(n, 5)).round(4)
    y = (x[:, 0] + x[:, 1] + rng.normal(size=n) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame.insert(0, "id", np.arange(n))
    frame["target"] = y
    folder.mkdir(parents=True)
    frame.iloc[:n_train].to_csv(folder / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns="target").to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": frame.iloc[n_train:]["id"], "target": 0.5}).to_csv(folder / "sample_submission.csv",
                                                                         index=False)
    (folder / "description.md").write_text("Submissions are evaluated on area under the ROC curve.\n")


def honest_outputs(data: Path, attempt: Path) -> None:
    """What an honest program leaves: noisy predictions of the signal for every train and test row."""
    rng = np.random.default_rng(1)
    attempt.mkdir(parents=True)
    for source, name in (("train.csv", "oof.csv"), ("test.csv", "submission.csv")):
        rows = pd.read_csv(data / source)
        signal = rows["f0"] + rows["f1"] + rng.normal(size=len(rows))
        pd.DataFrame({"id": rows["id"], "target": 1 / (1 + np.exp(-signal))}).to_csv(attempt / name, index=False)


def measure(root: Path, n_train: int) -> tuple[float, float, float]:
    data = root / f"comp-{n_train}"
    make_competition(data, n_train)
    profile = profile_competition(data)

    plain = root / f"plain-{n_train}"
    honest_outputs(data, plain)
    started = time.perf_counter()
    result = judge_attempt(profile, _result(plain), ran="the program")
    judge_plain = time.perf_counter() - started
    assert result.ok, result.reason

    started = time.perf_counter()
    holdout = prepare_holdout(profile, root / f"prepared-{n_train}", seed=0)
    prepare = time.perf_counter() - started
    assert holdout is not None
    with_holdout = root / f"holdout-{n_train}"
    honest_outputs(Path(holdout.profile.data_dir), with_holdout)
    started = time.perf_counter()
    result = judge_attempt(profile, _result(with_holdout), ran="the program", holdout=holdout)
    judge_holdout = time.perf_counter() - started
    assert result.ok, result.reason
    remove_prepared(Path(holdout.profile.data_dir))
    return judge_plain, prepare, judge_holdout


def _result(folder: Path) -> AttemptResult:
    return AttemptResult(number=1, program="p", origin="llm-draft", ok=False, seconds=0.0, workdir=str(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="attempt-scoring-"))
    try:
        print("| train rows | judge, no holdout (s) | prepare holdout (s) | judge with holdout (s) |")
        print("|---:|---:|---:|---:|")
        for n in args.sizes:
            plain, prepare, held = measure(root, n)
            print(f"| {n:,} | {plain:.2f} | {prepare:.2f} | {held:.2f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
