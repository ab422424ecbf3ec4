"""Generate the shape competitions (images, related tables, time series) with hidden answers.

    python examples/shapes/make_shapes.py [OUT_DIR]     (default: examples/shapes/generated)

Each competition is OUT_DIR/<slug>/public/ (what the solver sees) and OUT_DIR/<slug>/private/
(answers.csv and grading.json, for grade.py only). grade.py is copied into OUT_DIR, so

    python benchmarks/quality.py OUT_DIR --time-limit 120

runs and grades them all. Data come from scikit-learn or a seeded generator: no download.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import image_shapes  # noqa: E402
import table_shapes  # noqa: E402
import time_shapes  # noqa: E402


def make_all(out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "grade.py", out / "grade.py")
    slugs: list[str] = []
    for module in (image_shapes, table_shapes, time_shapes):
        slugs += module.make(out)
    return slugs


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "generated"
    for slug in make_all(target):
        print(target / slug)
