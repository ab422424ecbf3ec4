"""In-fold target encoding of high-cardinality categorical columns.

A level's encoding is the smoothed mean target of the rows that carry it. Computed on
the rows a model trains on, it would leak each row's own label into its feature, so
the training rows of a fold get the encoding from an inner split (each inner part
encoded by the other parts), while the fold's validation rows and the test rows get
the encoding from all of the fold's training rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A level seen this many times gets half its own mean and half the overall mean.
SMOOTHING = 10.0
INNER_FOLDS = 5


def level_ids(train: pd.Series, test: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer ids of the levels of one column, shared by train and test (missing is a level too)."""
    both = pd.concat([train, test], ignore_index=True).astype("string").fillna("<missing>")
    ids, levels = pd.factorize(both)
    return ids[: len(train)], ids[len(train):], len(levels)


def _means(ids: np.ndarray, target: np.ndarray, n_levels: int) -> np.ndarray:
    """Smoothed mean target per level, one column per target column (levels × targets)."""
    prior = target.mean(axis=0)
    counts = np.bincount(ids, minlength=n_levels)[:, None]
    sums = np.column_stack([np.bincount(ids, weights=target[:, j], minlength=n_levels)
                            for j in range(target.shape[1])])
    return (sums + SMOOTHING * prior) / (counts + SMOOTHING)


def encode_fold(ids: np.ndarray, test_ids: np.ndarray, n_levels: int, target: np.ndarray, tr: np.ndarray,
                va: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encodings (rows × targets) of the fold's training rows, its validation rows and the test rows.

    ``target`` is 2-D: one column for regression or binary targets, one per class for multiclass.
    """
    fold_target = target[tr]
    outer = _means(ids[tr], fold_target, n_levels)
    inner = np.zeros((len(tr), target.shape[1]))
    order = np.random.default_rng(seed).permutation(len(tr))
    for part in np.array_split(order, min(INNER_FOLDS, len(tr))):
        rest = np.setdiff1d(order, part, assume_unique=True)
        inner[part] = _means(ids[tr][rest], fold_target[rest], n_levels)[ids[tr][part]]
    return inner, outer[ids[va]], outer[test_ids]


def target_matrix(kind: str, target: np.ndarray, n_classes: int) -> np.ndarray:
    """The columns to encode: the target itself, or one indicator per class for multiclass."""
    if kind == "multiclass":
        return np.eye(n_classes)[target.astype(int)]
    return target.reshape(-1, 1).astype(float)
