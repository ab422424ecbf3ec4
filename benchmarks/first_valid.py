"""How soon a run has its first valid submission, and where those seconds go.

    python benchmarks/first_valid.py ../shared/competitions --repeats 3
    python benchmarks/first_valid.py ../shared/competitions --only telco-customer-churn --repeats 5
    python benchmarks/first_valid.py ../shared/competitions --modes no-llm model   # beside a scripted model

Each run is a real ``kaggle-solver run`` process with a short time limit (the first attempt is
what is measured; the rest of the run is cut short): ``--no-llm``, and with ``--modes ... model``
also with a key pointed at ``llm_replay.py``'s scripted model on loopback (the same fake Messages
API; the modes take turns within each repeat). Read from its progress lines,
in seconds since the process started:

* first attempt started: start-up, reading the data, profiling, probing the sandbox;
* first program: the first attempt's own wall time in the sandbox (what the solver reports);
* first valid: when the first attempt's product-computed CV score was printed, i.e. the first
  valid submission exists.

First valid minus the other two is the solver's own work on the path: writing the program and
scoring what it wrote. Prints the median and range over the repeats. The process is stopped at
its first valid submission.
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

from benchmarks.llm_replay import scripted_model_env  # noqa: E402
from benchmarks.quality import competition_folders  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropic  # noqa: E402

STARTED = re.compile(r"attempt 1: \S+ \(template\), budget")
SCORED = re.compile(r"attempt 1: \S+ CV \S+ .* in ([0-9.]+) s")


def run_one(folder: Path, time_limit: float, server: FakeAnthropic | None = None) -> dict[str, float | None]:
    """One run's seconds; with ``server``, beside the scripted model it answers for."""
    with tempfile.TemporaryDirectory(prefix="first-valid-") as tmp:
        command = [sys.executable, "-m", "batch_agent.cli", "run", str(folder), "--output", f"{tmp}/submission.csv",
                   "--time-limit", str(time_limit), "--workdir", f"{tmp}/work"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if server is None:
            command.append("--no-llm")
        else:
            env.update(scripted_model_env(server, folder, 1.0))
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env=env)
        assert proc.stderr is not None
        row: dict[str, float | None] = {"started": None, "program": None, "valid": None}
        for line in proc.stderr:
            if row["started"] is None and STARTED.search(line):
                row["started"] = time.monotonic() - started
            scored = SCORED.search(line)
            if row["valid"] is None and scored:
                row["valid"] = time.monotonic() - started
                row["program"] = float(scored.group(1))
                proc.kill()  # the rest of the run is not measured
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
    parser.add_argument("--modes", nargs="+", choices=("no-llm", "model"), default=["no-llm"])
    args = parser.parse_args()
    folders = [(slug, folder) for slug, folder in competition_folders(args.dir) if not args.only or slug in args.only]
    if not folders:
        print(f"no competitions under {args.dir}", file=sys.stderr)
        return 2
    server = FakeAnthropic() if "model" in args.modes else None
    if server is not None:
        server.start()
    rows: dict[tuple[str, str], list[dict[str, float | None]]] = {}
    try:
        for repeat in range(args.repeats):
            for slug, folder in folders:
                for mode in args.modes:
                    print(f"run {repeat + 1} {slug} {mode} ...", file=sys.stderr, flush=True)
                    rows.setdefault((slug, mode), []).append(
                        run_one(folder, args.time_limit, server if mode == "model" else None))
    finally:
        if server is not None:
            server.stop()
    print(f"time limit {args.time_limit:g} s, {args.repeats} runs each; median (low–high), seconds "
          "since the process started")
    print()
    print("| competition | mode | first attempt started | first program | first valid "
          "| solver's own work on the path |")
    print("|---|---|---|---|---|---|")
    for (slug, mode), runs in rows.items():
        own = [own_work(r) for r in runs]
        print(f"| {slug} | {mode} | {cell([r['started'] for r in runs])} | {cell([r['program'] for r in runs])} | "
              f"{cell([r['valid'] for r in runs])} | {cell(own)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
