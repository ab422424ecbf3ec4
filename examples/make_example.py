"""Rebuild examples/breast-cancer-diagnosis from the Wisconsin data set that ships with scikit-learn.

    python examples/make_example.py

The folder is committed, so the demo needs no download; this script documents
how it was made and regenerates it byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

HERE = Path(__file__).resolve().parent / "breast-cancer-diagnosis"

DESCRIPTION = """# Breast Cancer Diagnosis

## Overview

Each row describes the cell nuclei in a digitised image of a fine needle aspirate of a
breast mass (Wisconsin Diagnostic Breast Cancer data, as shipped with scikit-learn).
Predict the **probability that the mass is malignant**.

This is a binary classification problem on tabular data.

## Evaluation

Submissions are evaluated on the **area under the ROC curve** between the predicted
probability and the observed target `malignant` (higher is better).

## Submission File

For every `id` in the test set, predict the probability that `malignant` is 1:

```
id,malignant
455,0.5
456,0.5
etc.
```

## Dataset Description

- **train.csv** - {n_train} rows: `id`, 30 measurements, and the target `malignant` (1 = malignant, 0 = benign).
- **test.csv** - {n_test} rows, the same columns without `malignant`.
- **sample_submission.csv** - a sample submission in the correct format.
"""


def main() -> None:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["malignant"] = 1 - frame.pop("target")  # scikit-learn codes benign as 1
    frame.insert(0, "id", np.arange(len(frame)))
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    shuffled["id"] = np.arange(len(shuffled))
    n_test = len(shuffled) // 5
    train, test = shuffled.iloc[:-n_test], shuffled.iloc[-n_test:]
    HERE.mkdir(exist_ok=True)
    train.to_csv(HERE / "train.csv", index=False)
    test.drop(columns="malignant").to_csv(HERE / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "malignant": 0.5}).to_csv(HERE / "sample_submission.csv", index=False)
    (HERE / "description.md").write_text(DESCRIPTION.format(n_train=len(train), n_test=len(test)))


if __name__ == "__main__":
    main()
