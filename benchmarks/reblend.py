"""Blend kept runs again with the current blend code and grade both answers.

    python benchmarks/quality.py DIR --time-limit 600 --keep KEEP     # runs, keeping their folders
    python benchmarks/reblend.py DIR KEEP                              # the same attempts, blended now

A change to the blend is judged on the same attempts as the run it changes: KEEP/SLUG is a run's
folder (its profile.json, summary.json and the attempts' outputs) and KEEP/SLUG.csv the submission
it wrote. Each row shows what the run chose and what ``blend_attempts`` chooses now from the same
successful attempts, both graded with DIR's ``grade.py``. Nothing is trained: a row takes seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.quality import grade, table_cell  # noqa: E402

HEADER = ["slug", "metric", "attempts", "run's answer", "CV then", "graded then", "answer now", "CV now",
          "graded now", "blend seconds"]


def kept_runs(keep: Path) -> list[Path]:
    """The run folders under KEEP: those holding a summary.json."""
    return sorted(child for child in keep.iterdir() if (child / "summary.json").is_file())


def describe(name: str, weights: dict[str, float]) -> str:
    if name not in ("blend", "stack"):
        return name
    return f"{name} of {len(weights)}"


def reblend_one(run: Path, base: Path, outdir: Path) -> dict[str, object]:
    from batch_agent.solver.blend import blend_attempts
    from batch_agent.solver.competition import CompetitionProfile
    from batch_agent.solver.plan import AttemptResult

    slug = run.name
    summary = json.loads((run / "summary.json").read_text())
    profile = CompetitionProfile.model_validate_json((run / "profile.json").read_text())
    attempts = [AttemptResult.model_validate(h) for h in summary.get("history", []) if h.get("ok")]
    started = time.monotonic()
    final = blend_attempts(profile, attempts, outdir / slug, higher_is_better=bool(summary["higher_is_better"]),
                           time_budget=600.0)
    seconds = time.monotonic() - started
    submitted = run.parent / f"{slug}.csv"
    return {
        "slug": slug,
        "metric": summary.get("metric", "?"),
        "attempts": len(attempts),
        "then": describe(str(summary.get("best")), dict(summary.get("blend") or {})),
        "cv_then": summary.get("cv_score"),
        "graded_then": grade(base, slug, submitted) if submitted.is_file() else None,
        "now": describe(final.name, final.weights),
        "cv_now": final.cv_score,
        "graded_now": grade(base, slug, final.submission),
        "seconds": round(seconds, 1),
    }


def table(rows: list[dict[str, object]]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = [r["slug"], r["metric"], r["attempts"], r["then"], table_cell(r["cv_then"], 5),
                 table_cell(r["graded_then"], 5), r["now"], table_cell(r["cv_now"], 5), table_cell(r["graded_now"], 5),
                 table_cell(r["seconds"], 1)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="the competitions folder, with grade.py")
    parser.add_argument("keep", type=Path, help="the folder benchmarks/quality.py --keep wrote")
    parser.add_argument("--only", nargs="*", help="slugs to blend again (default: all)")
    args = parser.parse_args()
    if not args.keep.is_dir():
        print(f"{args.keep}: no such folder", file=sys.stderr)
        return 2
    runs = [run for run in kept_runs(args.keep) if not args.only or run.name in args.only]
    if not runs:
        print(f"no kept runs (SLUG/summary.json) under {args.keep}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ks-reblend-") as tmp:
        for run in runs:
            print(f"blending {run.name} ...", file=sys.stderr, flush=True)
            rows.append(reblend_one(run, args.dir, Path(tmp)))
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
