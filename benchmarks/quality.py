"""Run the solver on every competition folder under DIR and grade what it writes.

    python benchmarks/quality.py ../shared/competitions --time-limit 120

A competition folder is DIR/<slug>/public (or DIR/<slug> itself when it holds
train.csv). When DIR has a grade.py (``python grade.py SLUG submission.csv`` →
JSON with "score"), each submission is graded with it; otherwise only the CV
score is shown. Each run is a real `kaggle-solver run` process, so the seconds
include start-up. Prints one table row per competition.
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
    grader = base / "grade.py"
    if proc.returncode == 0 and grader.is_file():
        graded = subprocess.run([sys.executable, str(grader), slug, str(output)], capture_output=True, text=True)
        try:
            result = json.loads(graded.stdout)
            row["score"] = result.get("score")
        except json.JSONDecodeError:
            row["score"] = None
    return row


def _fmt(value: object, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--only", nargs="*", help="slugs to run (default: all)")
    args = parser.parse_args()
    folders = [(s, f) for s, f in competition_folders(args.dir) if not args.only or s in args.only]
    if not folders:
        print(f"no competition folders under {args.dir}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ks-quality-") as tmp:
        for slug, folder in folders:
            print(f"running {slug} ...", file=sys.stderr, flush=True)
            rows.append(run_one(slug, folder, args.dir, args.time_limit, Path(tmp)))
    with_llm = any(r["tokens"] for r in rows)
    header = ["slug", "metric", "CV", "graded score", "seconds", "first valid (s)", "attempts", "best"]
    if with_llm:
        header += ["tokens", "cost $"]
    print(f"time limit {args.time_limit:.0f} s per competition")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["slug"], r["metric"], _fmt(r["cv"]), _fmt(r["score"]), _fmt(r["seconds"], 1),
                 _fmt(r["first_valid"], 1), _fmt(r["attempts"]), str(r["best"])[:60]]
        if with_llm:
            cells += [_fmt(r["tokens"]), _fmt(r["cost_usd"], 3)]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
