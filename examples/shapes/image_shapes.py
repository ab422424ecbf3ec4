"""Image competitions: a label CSV and folders of PNG/JPEG files, generated without a download.

* ``digits-png``: scikit-learn's 1,797 handwritten digits (8×8) upscaled to 32×32 grey PNGs, each
  shifted, rescaled in contrast and noised so that no pixel column is the digit's own pixel;
  train.csv ``id,label``, ``train/<id>.png``, test.csv ``id``, ``test/<id>.png``; accuracy.
* ``colour-shapes``: 1,200 generated 40×40 colour JPEGs of a circle or a square (random colour,
  size, place, noisy background); the label is whether the shape is a circle. train.csv names
  the file in a column ``image`` (``images/<name>.jpg``, test and train in one folder) and has a
  weak table column ``camera``; area under the ROC curve.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def make(out: Path) -> list[str]:
    """Write this shape's competitions under ``out``; their slugs."""
    return [_digits(out), _colour_shapes(out)]


def _write_private(folder: Path, answers: pd.DataFrame, metric: str, id_column: str, target: str) -> None:
    private = folder / "private"
    private.mkdir(parents=True, exist_ok=True)
    answers.to_csv(private / "answers.csv", index=False)
    (private / "grading.json").write_text(json.dumps({"metric": metric, "id_column": id_column,
                                                      "target_column": target}))


def _digits(out: Path) -> str:
    from PIL import Image
    from sklearn.datasets import load_digits

    slug = "digits-png"
    public = out / slug / "public"
    for sub in ("train", "test"):
        (public / sub).mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rng = np.random.default_rng(16)
    n = len(digits.target)
    order = rng.permutation(n)
    ids = rng.choice(np.arange(10_000, 100_000), size=n, replace=False)
    n_train = int(0.8 * n)
    rows = []
    for rank, k in enumerate(order):
        split = "train" if rank < n_train else "test"
        glyph = Image.fromarray((digits.images[k] / 16.0 * 255).astype(np.uint8))
        size = int(rng.integers(20, 29))
        glyph = glyph.resize((size, size), Image.Resampling.BILINEAR)
        canvas = np.zeros((32, 32), dtype=np.float64)
        dx, dy = rng.integers(0, 32 - size + 1, size=2)
        canvas[dy:dy + size, dx:dx + size] = np.asarray(glyph, dtype=np.float64)
        canvas = canvas * rng.uniform(0.6, 1.0) + rng.uniform(0, 40) + rng.normal(0, 12, canvas.shape)
        Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="L").save(public / split / f"{ids[k]}.png")
        rows.append({"id": int(ids[k]), "label": int(digits.target[k]), "split": split})
    frame = pd.DataFrame(rows)
    train, test = frame[frame.split == "train"], frame[frame.split == "test"]
    train[["id", "label"]].to_csv(public / "train.csv", index=False)
    test[["id"]].to_csv(public / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "label": 0}).to_csv(public / "sample_submission.csv", index=False)
    (public / "description.md").write_text(
        "# Handwritten digits as images\n\n"
        "Each image in train/ and test/ (a PNG named by its id) shows one handwritten digit, 0 to 9. "
        "train.csv gives the digit of each training image. Predict the digit of each test image.\n\n"
        "## Evaluation\n\nSubmissions are evaluated on classification accuracy: the share of test "
        "images whose predicted label is correct.\n\n"
        "## Submission format\n\nA CSV with a header and columns id,label, one row per id of test.csv.\n"
    )
    _write_private(out / slug, test[["id", "label"]], "accuracy", "id", "label")
    return slug


def _colour_shapes(out: Path) -> str:
    from PIL import Image, ImageDraw

    slug = "colour-shapes"
    public = out / slug / "public"
    (public / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(61)
    n, n_train = 1200, 900
    cameras = np.array(["north", "south", "east", "west"])
    rows = []
    for _ in range(n):
        circle = bool(rng.random() < 0.5)
        # A weak table signal: one camera sees more circles than the others.
        camera = cameras[rng.integers(0, 4)] if rng.random() < 0.7 else ("north" if circle else "south")
        background = rng.integers(0, 256, size=3)
        pixels = np.clip(background + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, mode="RGB")
        draw = ImageDraw.Draw(image)
        size = int(rng.integers(12, 26))
        x, y = (int(v) for v in rng.integers(1, 40 - size, size=2))
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if circle:
            draw.ellipse((x, y, x + size, y + size), fill=fill)
        else:
            draw.rectangle((x, y, x + size, y + size), fill=fill)
        name = f"s{rng.integers(16**7, 16**8):08x}"
        image.save(public / "images" / f"{name}.jpg", quality=90)
        rows.append({"image": f"images/{name}.jpg", "camera": camera, "is_circle": int(circle)})
    frame = pd.DataFrame(rows)
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(public / "train.csv", index=False)
    test[["image", "camera"]].to_csv(public / "test.csv", index=False)
    pd.DataFrame({"image": test["image"], "is_circle": 0.5}).to_csv(public / "sample_submission.csv", index=False)
    (public / "description.md").write_text(
        "# Circles or squares\n\n"
        "Each JPEG in images/ shows one filled shape, a circle or a square, of any colour, on a noisy "
        "background; the column image of train.csv and test.csv names the file, camera says which camera "
        "took it. Predict the probability that a test image shows a circle.\n\n"
        "## Evaluation\n\nSubmissions are evaluated on area under the ROC curve between the predicted "
        "probability and the observed target.\n\n"
        "## Submission format\n\nA CSV with columns image,is_circle, one row per test image.\n"
    )
    _write_private(out / slug, test[["image", "is_circle"]], "auc", "image", "is_circle")
    return slug
