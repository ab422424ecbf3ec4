"""A second-layer model on the attempts' out-of-fold predictions, beside the greedy blend.

Logistic regression on the models' log-odds (binary) or log-probabilities
(multiclass), ridge regression on their predictions (regression). Its CV score comes
from its own cross-validation over the out-of-fold rows (each row's stacked
prediction is made by a stacker that did not see that row), so it is compared with
the greedy blend on equal terms; the caller uses it only when it scores better.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.predictions import Decision, cv_score, fit_decision

STACK_FOLDS = 5
# Above this many rows the stacker's own cross-validation costs more than it is likely to gain.
MAX_ROWS = 300_000
EPS = 1e-6


class Stacked(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    cv_score: float
    test_pred: np.ndarray
    decision: Decision
    weights: dict[str, float]
    oof: np.ndarray
    # The rows of each of the stacker's own validation folds.
    folds: list[np.ndarray]


def _design(profile: CompetitionProfile, preds: list[np.ndarray]) -> np.ndarray:
    if profile.task == "binary":
        p = np.clip(np.column_stack([pred[:, 1] for pred in preds]), EPS, 1 - EPS)
        return np.log(p / (1 - p))
    if profile.task == "multiclass":
        return np.column_stack([np.log(np.clip(pred, EPS, 1.0)) for pred in preds])
    return np.column_stack(preds)


def _model(profile: CompetitionProfile) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    if profile.task == "regression":
        return Ridge(alpha=1.0)
    return LogisticRegression(C=1.0, max_iter=2000)


def _predict(profile: CompetitionProfile, model: Any, X: np.ndarray) -> np.ndarray:
    if profile.task == "regression":
        return np.asarray(model.predict(X))
    return np.asarray(model.predict_proba(X))


def stack(profile: CompetitionProfile, y: np.ndarray, oofs: dict[str, np.ndarray],
          tests: dict[str, np.ndarray], seed: int = 17, stop_at: float | None = None) -> Stacked | None:
    """The stacker's honest CV score and test predictions; None where it does not apply.

    Single-target binary, multiclass and regression tasks with at least two models; ``y`` holds the
    encoded labels of the rows of ``oofs``. ``stop_at`` (a ``time.monotonic()``): None as soon as the
    fits left would not end by then (the run's time limit comes first; the greedy blend stands).
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    if profile.task not in ("binary", "multiclass", "regression") or len(oofs) < 2 or len(y) > MAX_ROWS:
        return None
    names = sorted(oofs)
    X = _design(profile, [oofs[n] for n in names])
    X_test = _design(profile, [tests[n] for n in names])
    if not (np.isfinite(X).all() and np.isfinite(X_test).all()):
        return None
    # Standardised inputs: a program's near-zero probabilities (log 1e-6 = -13.8) otherwise keep lbfgs
    # from converging for minutes (seattle-weather: 128 s instead of a few with one such program).
    center, scale = X.mean(axis=0), X.std(axis=0) + 1e-12
    X, X_test = (X - center) / scale, (X_test - center) / scale
    if profile.task == "regression":
        splits = KFold(STACK_FOLDS, shuffle=True, random_state=seed).split(X)
    else:
        if np.bincount(y).min() < STACK_FOLDS or len(np.unique(y)) != len(profile.classes or []):
            return None
        splits = StratifiedKFold(STACK_FOLDS, shuffle=True, random_state=seed).split(X, y)
    width = len(profile.classes or []) if profile.task != "regression" else 0
    stacked = np.zeros((len(y), width)) if width else np.zeros(len(y))
    folds = []
    for done, (tr, va) in enumerate(splits):
        started = time.monotonic()
        folds.append(va)
        stacked[va] = _predict(profile, _model(profile).fit(X[tr], y[tr]), X[va])
        # The folds left and the final fit on every row take about as long as this one each.
        if stop_at is not None and time.monotonic() + (time.monotonic() - started) * (STACK_FOLDS - done) > stop_at:
            return None
    decision = fit_decision(profile, y, stacked)
    score = cv_score(profile, y, stacked, decision)
    final = _model(profile).fit(X, y)
    coef = np.abs(np.asarray(final.coef_)).reshape(-1, len(names)) if profile.task != "multiclass" else \
        np.abs(np.asarray(final.coef_)).reshape(len(profile.classes or []), len(names), -1).sum(axis=2)
    importance = coef.sum(axis=0)
    weights = {n: float(w / importance.sum()) for n, w in zip(names, importance, strict=True)} \
        if importance.sum() > 0 else {n: 1.0 / len(names) for n in names}
    return Stacked(cv_score=float(score), test_pred=_predict(profile, final, X_test), decision=decision,
                   weights=weights, oof=stacked, folds=folds)


def folds_won(profile: CompetitionProfile, y: np.ndarray, stacked: Stacked, rival: np.ndarray,
              rival_decision: Decision, sign: float) -> int:
    """On how many of the stacker's folds it scores better than ``rival``'s out-of-fold predictions.

    A stacker's free weights can buy its whole CV gain on a few rows: on a heavy-tailed price (one
    training row at 130,021 where the standard deviation is 4,588) ridge put weights of -4.5 to +3.6 on
    its models, won CV 3081 against 3248 on the two folds holding the largest prices, lost on the other
    three, and graded 0.72 of a constant's RMSE where the best single model graded 0.47.
    """
    return sum(
        (cv_score(profile, y[va], stacked.oof[va], stacked.decision)
         - cv_score(profile, y[va], rival[va], rival_decision)) * sign > 0
        for va in stacked.folds)
