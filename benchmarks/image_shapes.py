"""Image competitions: the solver's graded score beside the two baselines of the shape.

    python benchmarks/image_shapes.py [--time-limit 60]
    python benchmarks/image_shapes.py --decode 500      (how fast the image features are, by size and format)

Generates examples/shapes/image_shapes.py's competitions in a temporary folder, then for each:
the best constant, a model on train.csv's own columns (LightGBM, no image: "the table alone"),
both graded on the hidden test labels, and a real `kaggle-solver run --no-llm` graded the same
way, with the seconds the image features took (solver.image_folders.flatten on its own).
Prints one table row per competition. With ``--decode N``: N generated images per size and format
(smooth colour gradients plus noise) through solver.image_folders.flatten, images per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "shapes"))

import image_shapes  # noqa: E402
from grade import METRICS  # noqa: E402

from batch_agent.solver.image_folders import flatten  # noqa: E402


def baselines(base: Path, slug: str) -> tuple[float, float]:
    """(best constant, LightGBM on train.csv's columns) graded on the hidden answers."""
    import lightgbm

    spec = json.loads((base / slug / "private" / "grading.json").read_text())
    answers = pd.read_csv(base / slug / "private" / "answers.csv")
    public = base / slug / "public"
    train, test = pd.read_csv(public / "train.csv"), pd.read_csv(public / "test.csv")
    id_column, target, metric = spec["id_column"], spec["target_column"], spec["metric"]
    truth = answers.set_index(id_column).loc[test[id_column], target].to_numpy()
    score_of, _ = METRICS[metric]
    if metric == "accuracy":
        constant = score_of(truth, np.full(len(truth), train[target].mode()[0]))
    else:
        constant = score_of(truth, np.full(len(truth), float(train[target].mean())))
    columns = [c for c in train.columns if c != target]
    features = pd.concat([train[columns], test[columns]], ignore_index=True)
    for column in columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            features[column] = features[column].astype("category")
    x_train, x_test = features.iloc[: len(train)], features.iloc[len(train):]
    model = lightgbm.LGBMClassifier(n_estimators=100, n_jobs=1, verbose=-1).fit(x_train, train[target])
    predicted = model.predict(x_test) if metric == "accuracy" else model.predict_proba(x_test)[:, 1]
    return constant, score_of(truth, np.asarray(predicted))


def solve(base: Path, slug: str, time_limit: int, work: Path) -> tuple[dict[str, object], dict[str, object], float]:
    from grade import grade

    work.mkdir(parents=True, exist_ok=True)
    output = work / f"{slug}.csv"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "batch_agent.cli", "run", str(base / slug / "public"), "--output", str(output),
         "--time-limit", str(time_limit), "--workdir", str(work / slug), "--json", "--quiet", "--no-llm"],
        capture_output=True, text=True, cwd=ROOT,
    )
    wall = time.monotonic() - started
    summary = (json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0
               else {"error": proc.stderr.strip()[-200:]})
    graded = grade(base, slug, output) if proc.returncode == 0 else {"valid": False, "score": None}
    return summary, graded, wall


def decode_rates(n: int) -> None:
    from PIL import Image

    print("| images | size | format | features in | images / s |")
    print("| ---: | --- | --- | ---: | ---: |")
    rng = np.random.default_rng(0)
    for size, suffix in ((64, ".png"), (256, ".jpg"), (256, ".png"), (1024, ".jpg")):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            (data / "train").mkdir(parents=True)
            ramp = np.linspace(0, 255, size)
            for i in range(n):
                base = np.stack([np.add.outer(ramp, ramp * (i % 7) / 7) / 2] * 3, axis=2)
                pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="RGB").save(data / "train" / f"{i}{suffix}")
            ids = np.arange(n)
            pd.DataFrame({"id": ids[: n - 10], "y": ids[: n - 10] % 2}).to_csv(data / "train.csv", index=False)
            (data / "test").mkdir()
            for i in ids[n - 10:]:
                (data / "train" / f"{i}{suffix}").rename(data / "test" / f"{i}{suffix}")
            pd.DataFrame({"id": ids[n - 10:]}).to_csv(data / "test.csv", index=False)
            pd.DataFrame({"id": ids[n - 10:], "y": 0}).to_csv(data / "sample_submission.csv", index=False)
            started = time.monotonic()
            assert flatten(data, Path(tmp) / "flat") is not None
            seconds = time.monotonic() - started
            print(f"| {n} | {size}×{size} | {suffix[1:].upper()} | {seconds:.1f} s | {n / seconds:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=int, default=60)
    parser.add_argument("--decode", type=int, default=0, help="measure feature speed on this many images instead")
    args = parser.parse_args()
    if args.decode:
        decode_rates(args.decode)
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "shapes"
        slugs = image_shapes.make(base)
        print(f"| competition | metric | constant | table alone | solver (graded) | CV | images: features in | "
              f"run (limit {args.time_limit} s) | best |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for slug in slugs:
            constant, table_alone = baselines(base, slug)
            started = time.monotonic()
            flatten(base / slug / "public", Path(tmp) / "flat" / slug)
            features_seconds = time.monotonic() - started
            summary, graded, wall = solve(base, slug, args.time_limit, Path(tmp) / "work")
            score = graded.get("score")
            cv = summary.get("cv_score")
            print(f"| {slug} | {json.loads((base / slug / 'private' / 'grading.json').read_text())['metric']} | "
                  f"{constant:.3f} | {table_alone:.3f} | "
                  f"{'invalid' if score is None else f'{float(score):.3f}'} | "  # type: ignore[arg-type]
                  f"{'-' if cv is None else f'{float(cv):.3f}'} | {features_seconds:.1f} s | "  # type: ignore[arg-type]
                  f"{wall:.0f} s | {summary.get('best', summary.get('error', ''))} |", flush=True)


if __name__ == "__main__":
    main()
