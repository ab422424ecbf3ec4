"""How soon a run has its first valid submission, and where those seconds go.

    python benchmarks/first_valid.py ../shared/competitions --repeats 3
    python benchmarks/first_valid.py ../shared/competitions --only telco-customer-churn --repeats 5

Each run is a real ``kaggle-solver run --no-llm`` process with a short time limit (the first
attempt is what is measured; the rest of the run is cut short). Read from its progress lines,
in seconds since the process started:

* first attempt started: start-up, reading the data, profiling, probing the sandbox;
* first program: the first attempt's own wall time in the sandbox (what the solver reports);
* first valid: when the first attempt's product-computed CV score was printed, i.e. the first
  valid submission exists.

First valid minus the other two is the solver's own work on the path: writing the program and
scoring what it wrote. Prints the median and range over the repeats.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.quality import competition_folders  # noqa: E402

STARTED = re.compile(r"attempt 1: \S+ \(template\), budget")
SCORED = re.compile(r"attempt 1: \S+ CV \S+ .* in ([0-9.]+) s")


def run_one(folder: Path, time_limit: float) -> dict[str, float | None]:
    with tempfile.TemporaryDirectory(prefix="first-valid-") as tmp:
        command = [sys.executable, "-m", "batch_agent.cli", "run", str(folder), "--output", f"{tmp}/submission.csv",
                   "--time-limit", str(time_limit), "--workdir", f"{tmp}/work", "--no-llm"]
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stderr is not None
        row: dict[str, float | None] = {"started": None, "program": None, "valid": None}
        for line in proc.stderr:
            if row["started"] is None and STARTED.search(line):
                row["started"] = time.monotonic() - started
            scored = SCORED.search(line)
            if row["valid"] is None and scored:
                row["valid"] = time.monotonic() - started
                row["program"] = float(scored.group(1))
        proc.wait()
    return row


def own_work(row: dict[str, float | None]) -> float | None:
    valid, started, program = row["valid"], row["started"], row["program"]
    if valid is None or started is None or program is None:
        return None
    return valid - started - program


def cell(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    return f"{statistics.median(known):.2f} ({min(known):.2f}–{max(known):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="a folder of competitions (SLUG/train.csv or SLUG/public/train.csv)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=12.0)
    parser.add_argument("--only", nargs="*", help="slugs to run (default: all)")
    args = parser.parse_args()
    folders = [(slug, folder) for slug, folder in competition_folders(args.dir) if not args.only or slug in args.only]
    if not folders:
        print(f"no competitions under {args.dir}", file=sys.stderr)
        return 2
    rows: dict[str, list[dict[str, float | None]]] = {}
    for repeat in range(args.repeats):
        for slug, folder in folders:
            print(f"run {repeat + 1} {slug} ...", file=sys.stderr, flush=True)
            rows.setdefault(slug, []).append(run_one(folder, args.time_limit))
    print(f"--no-llm, time limit {args.time_limit:g} s, {args.repeats} runs each; median (low–high), seconds "
          "since the process started")
    print()
    print("| competition | first attempt started | first program | first valid | solver's own work on the path |")
    print("|---|---|---|---|---|")
    for slug, runs in rows.items():
        own = [own_work(r) for r in runs]
        print(f"| {slug} | {cell([r['started'] for r in runs])} | {cell([r['program'] for r in runs])} | "
              f"{cell([r['valid'] for r in runs])} | {cell(own)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
