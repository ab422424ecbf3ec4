"""Score predictions on a competition's metric, the way Kaggle scores a submission.

Only training code imports this module (numpy + scikit-learn); the Lambdas use
``metrics.py`` for names and directions.

Shapes each metric expects (``metric`` may be a registry key or an alias):

* binary score metrics ``roc_auc``, ``gini``, ``log_loss``: ``y_true`` (n,) of 0/1,
  ``y_pred`` (n,) of P(class 1). ``roc_auc`` also takes ``y_pred`` (n, K) with
  ``y_true`` class indices (one-vs-rest macro AUC). ``gini`` is Kaggle's normalized
  Gini, which also accepts a real-valued ``y_true``; for 0/1 targets without tied
  predictions it equals 2·AUC − 1.
* multi-class ``log_loss``: ``y_true`` (n,) of class indices 0..K−1, ``y_pred`` (n, K);
  rows are rescaled to sum to 1, then clipped to [1e-15, 1 − 1e-15], as Kaggle does.
* label metrics ``accuracy``, ``f1*``, ``mcc``, ``balanced_accuracy``, ``qwk``:
  ``y_true`` and ``y_pred`` (n,) labels; ``f1`` is binary with positive label 1;
  ``qwk`` expects ordinal integers (Cohen's kappa with quadratic weights).
* value metrics ``rmse``, ``mse``, ``rmsle``, ``mae``, ``medae``, ``mape``, ``smape``,
  ``r2``: float arrays (n,). ``rmsle`` raises ValueError on negative values. ``mape``
  and ``smape`` are in percent (SMAPE 0..200, a pair of zeros scoring 0), as Kaggle
  reports them. ``mcrmse`` takes (n, T) arrays: the mean over columns of each
  column's RMSE.
* ``mean_auc``: (n, T) of 0/1 and (n, T) scores, the mean of the column-wise ROC AUCs
  (columns whose truth holds a single class have no AUC and are left out).
* ``map_at_k``: ``y_true`` (n,) labels, ``y_pred`` (n, k) ranked labels (object arrays
  fine) or (n,) strings of space-separated labels; K is ``k``, else the name's
  ("map@5"), else the number of columns. One true label per row, so a row scores
  1/rank of its first correct guess within the top K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm

from batch_agent.solver.metrics import get_metric, metric_k

LOG_LOSS_EPS = 1e-15


def _as_1d(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{what} must have shape (n,), got {array.shape}")
    return array


def _as_float(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} holds NaN or infinite values")
    return array


def _same_length(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("nothing to score: no rows")


def _values(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = _as_float(_as_1d(y_true, "y_true"), "y_true")
    p = _as_float(_as_1d(y_pred, "y_pred"), "y_pred")
    _same_length(t, p)
    return t, p


def _labels(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = _as_1d(y_true, "y_true")
    p = _as_1d(y_pred, "y_pred")
    _same_length(t, p)
    return t, p


def _roc_auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    p = np.asarray(y_pred)
    if p.ndim == 2 and p.shape[1] > 2:
        t = _as_1d(y_true, "y_true")
        _same_length(t, p)
        return float(skm.roc_auc_score(t, _as_float(p, "y_pred"), multi_class="ovr", average="macro"))
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    t, p = _values(y_true, p)
    return _roc_auc_binary(t, p)


def _gini_raw(actual: np.ndarray, pred: np.ndarray) -> float:
    n = len(actual)
    # Kaggle's reference sorts by prediction, descending, ties in row order.
    order = np.lexsort((np.arange(n), -pred))
    cumulative = np.cumsum(actual[order])
    if cumulative[-1] == 0:
        raise ValueError("normalized Gini is undefined when y_true sums to 0")
    return float((cumulative.sum() / cumulative[-1] - (n + 1) / 2.0) / n)


def _gini(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _values(y_true, y_pred)
    return _gini_raw(t, p) / _gini_raw(t, t)


def _log_loss(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    p = np.asarray(y_pred, dtype=float)
    if p.ndim == 2 and p.shape[1] > 1:
        p = _as_float(p, "y_pred")
        t = _as_1d(y_true, "y_true")
        _same_length(t, p)
        if not np.all(np.equal(np.mod(t.astype(float), 1), 0)):
            raise ValueError("multi-class log_loss needs y_true as integer class indices")
        index = t.astype(int)
        if index.min() < 0 or index.max() >= p.shape[1]:
            raise ValueError(f"y_true class indices must lie in 0..{p.shape[1] - 1}")
        if np.any(p < 0):
            raise ValueError("probabilities must be non-negative")
        sums = p.sum(axis=1, keepdims=True)
        if np.any(sums <= 0):
            raise ValueError("a row of class probabilities sums to 0")
        p = np.clip(p / sums, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
        return float(-np.mean(np.log(p[np.arange(len(index)), index])))
    t, q = _values(y_true, p)
    if not np.all(np.isin(t, (0.0, 1.0))):
        raise ValueError("binary log_loss needs y_true of 0/1")
    q = np.clip(q, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q)))


def _rmsle(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _values(y_true, y_pred)
    if np.any(p < 0):
        raise ValueError("rmsle cannot score negative predictions")
    if np.any(t < 0):
        raise ValueError("rmsle cannot score negative true values")
    return float(np.sqrt(np.mean((np.log1p(p) - np.log1p(t)) ** 2)))


def _mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _values(y_true, y_pred)
    return 100.0 * float(skm.mean_absolute_percentage_error(t, p))


def _smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _values(y_true, y_pred)
    denominator = np.abs(t) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - t), denominator, out=np.zeros_like(t), where=denominator != 0)
    return 100.0 * float(np.mean(ratio))


def _columns(y_true: np.ndarray, y_pred: np.ndarray, *, numeric_truth: bool = True) -> tuple[np.ndarray, ...]:
    t = np.asarray(y_true, dtype=float) if numeric_truth else np.asarray(y_true)
    p = _as_float(np.asarray(y_pred, dtype=float), "y_pred")
    if t.ndim == 1:
        t = t[:, None]
    if p.ndim == 1:
        p = p[:, None]
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has {p.shape}")
    _same_length(t, p)
    return t, p


def _mcrmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _columns(y_true, y_pred)
    _as_float(t, "y_true")
    return float(np.mean(np.sqrt(np.mean((t - p) ** 2, axis=0))))


def _mean_auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _columns(y_true, y_pred)
    scores = [_roc_auc_binary(t[:, j], p[:, j]) for j in range(t.shape[1]) if len(np.unique(t[:, j])) == 2]
    if not scores:
        raise ValueError("mean_auc is undefined: no column of y_true holds both classes")
    return float(np.mean(scores))


def _map_at_k(y_true: np.ndarray, y_pred: np.ndarray, k: int | None) -> float:
    truth = _as_1d(y_true, "y_true")
    predicted = np.asarray(y_pred, dtype=object)
    if predicted.ndim == 1:
        rows: list[list[Any]] = [str(v).split() for v in predicted]
        truth_keys = [str(v) for v in truth]
    else:
        rows = [list(r) for r in predicted]
        truth_keys = list(truth)
    _same_length(truth, predicted)
    if k is None:
        k = max((len(r) for r in rows), default=0) if predicted.ndim == 1 else predicted.shape[1]
    if k is None or k < 1:
        raise ValueError("map_at_k needs k >= 1")
    total = 0.0
    for actual, guesses in zip(truth_keys, rows, strict=True):
        # Only the first correct guess counts (a repeated label keeps its first rank, as in Kaggle's apk).
        for rank, guess in enumerate(guesses[:k], start=1):
            if guess == actual:
                total += 1.0 / rank
                break
    return total / len(truth_keys)


def _confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, counts): labels present in either array, counts[i, j] = rows true i, predicted j.

    One bincount instead of scikit-learn's checks: threshold and cut-point searches
    call the label metrics hundreds of times on the same out-of-fold rows.
    """
    t, p = _labels(y_true, y_pred)
    if t.dtype.kind in "iub" and p.dtype.kind in "iub":
        ti, pi = t.astype(np.int64), p.astype(np.int64)
        low = min(int(ti.min()), int(pi.min()))
        span = max(int(ti.max()), int(pi.max())) - low + 1
        # Small integer labels (the usual case) need no sort: offset them and count.
        if span <= 4096:
            grid = np.bincount((ti - low) * span + (pi - low), minlength=span * span).reshape(span, span)
            present = (grid.sum(axis=0) + grid.sum(axis=1)) > 0
            return np.arange(low, low + span)[present], grid[present][:, present].astype(float)
    labels, codes = np.unique(np.concatenate([t, p]), return_inverse=True)
    codes = codes.reshape(-1)
    size = len(labels)
    counts = np.bincount(codes[: len(t)] * size + codes[len(t) :], minlength=size * size)
    return labels, counts.reshape(size, size).astype(float)


def _per_class_f1(counts: np.ndarray) -> np.ndarray:
    tp = np.diag(counts)
    denominator = counts.sum(axis=0) + counts.sum(axis=1)
    # A class never predicted nor present scores 0, as scikit-learn's zero_division default does.
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _labels(y_true, y_pred)
    return float(np.mean(t == p))


def _f1_binary(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    labels, counts = _confusion(y_true, y_pred)
    try:
        binary = {float(v) for v in labels} <= {0.0, 1.0}
    except (TypeError, ValueError):
        binary = False
    if not binary:
        raise ValueError(f"binary f1 needs 0/1 labels, got {list(labels)[:5]}")
    positive = [i for i, v in enumerate(labels) if float(v) == 1.0]
    return float(_per_class_f1(counts)[positive[0]]) if positive else 0.0


def _f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    _, counts = _confusion(y_true, y_pred)
    return float(np.mean(_per_class_f1(counts)))


def _f1_weighted(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    _, counts = _confusion(y_true, y_pred)
    support = counts.sum(axis=1)
    return float(np.sum(_per_class_f1(counts) * support) / support.sum())


def _mcc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    _, counts = _confusion(y_true, y_pred)
    n = counts.sum()
    true_counts, pred_counts = counts.sum(axis=1), counts.sum(axis=0)
    covariance = np.trace(counts) * n - true_counts @ pred_counts
    denominator = np.sqrt((n * n - pred_counts @ pred_counts) * (n * n - true_counts @ true_counts))
    return float(covariance / denominator) if denominator > 0 else 0.0


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    _, counts = _confusion(y_true, y_pred)
    support = counts.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def _qwk(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kaggle's quadratic weighted kappa: ratings are the integers between the lowest and highest seen.

    Unlike scikit-learn's cohen_kappa_score, a rating nobody used still counts in
    the distance between its neighbours (labels 1 and 3 are two steps apart).
    """
    t, p = _labels(y_true, y_pred)
    t_float, p_float = _as_float(t, "y_true"), _as_float(p, "y_pred")
    if np.any(np.mod(t_float, 1) != 0) or np.any(np.mod(p_float, 1) != 0):
        raise ValueError("qwk needs integer ratings")
    ti, pi = t_float.astype(np.int64), p_float.astype(np.int64)
    low = min(ti.min(), pi.min())
    size = int(max(ti.max(), pi.max()) - low + 1)
    observed = np.bincount((ti - low) * size + (pi - low), minlength=size * size).reshape(size, size)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / len(ti)
    grid = np.arange(size)
    weights = (grid[:, None] - grid[None, :]) ** 2
    denominator = float(np.sum(weights * expected))
    # Both raters gave one and the same rating to every row: perfect agreement.
    return 1.0 - float(np.sum(weights * observed)) / denominator if denominator > 0 else 1.0


def _roc_auc_binary(t: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney form of the ROC AUC (ties count one half), without scikit-learn's overhead."""
    positives = t == 1
    n_pos = int(positives.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0 or not np.all((t == 0) | positives):
        raise ValueError("roc_auc needs y_true of 0/1 with both classes present")
    ranks = rankdata(p)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _value_metric(fn: Callable[[np.ndarray, np.ndarray], Any]) -> Callable[[np.ndarray, np.ndarray], float]:
    def scorer(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        t, p = _values(y_true, y_pred)
        return float(fn(t, p))

    return scorer


_SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": _roc_auc,
    "gini": _gini,
    "log_loss": _log_loss,
    "mean_auc": _mean_auc,
    "accuracy": _accuracy,
    "f1": _f1_binary,
    "f1_macro": _f1_macro,
    # With one label per row, micro-averaged F1 equals accuracy.
    "f1_micro": _accuracy,
    "f1_weighted": _f1_weighted,
    "mcc": _mcc,
    "balanced_accuracy": _balanced_accuracy,
    "qwk": _qwk,
    "rmse": _value_metric(lambda t, p: np.sqrt(np.mean((t - p) ** 2))),
    "mse": _value_metric(lambda t, p: np.mean((t - p) ** 2)),
    "rmsle": _rmsle,
    "mae": _value_metric(lambda t, p: np.mean(np.abs(t - p))),
    "medae": _value_metric(lambda t, p: np.median(np.abs(t - p))),
    "mape": _mape,
    "smape": _smape,
    "r2": _value_metric(skm.r2_score),
    "mcrmse": _mcrmse,
}


def score(metric: str, y_true: np.ndarray, y_pred: np.ndarray, *, k: int | None = None) -> float:
    """The value of ``metric`` for these predictions (shapes: see the module docstring).

    Raises ``InputError`` for an unknown metric and ``ValueError`` for predictions
    the metric cannot score (wrong shape, NaN, negative values for rmsle, ...).
    """
    name = get_metric(metric).name
    if name == "map_at_k":
        return _map_at_k(y_true, y_pred, k if k is not None else metric_k(metric))
    return _SCORERS[name](y_true, y_pred)


def is_better(metric: str, a: float, b: float) -> bool:
    """Whether score ``a`` is strictly better than ``b`` on ``metric``; NaN is never better."""
    if np.isnan(a):
        return False
    if np.isnan(b):
        return True
    return a > b if get_metric(metric).higher_is_better else a < b
