"""A binary competition folder, scored by ROC AUC, written from one frame of ids, features and "target"."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_auc_competition(folder: Path, frame: pd.DataFrame, n_train: int) -> Path:
    """The first ``n_train`` rows are train.csv; the rest, without the target, are test.csv."""
    folder.mkdir(parents=True)
    frame.iloc[:n_train].to_csv(folder / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns="target").to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": frame.iloc[n_train:]["id"], "target": 0.5}).to_csv(folder / "sample_submission.csv",
                                                                          index=False)
    (folder / "description.md").write_text("Submissions are evaluated on area under the ROC curve.\n")
    return folder
