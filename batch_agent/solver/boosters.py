"""XGBoost and CatBoost families of the training library, beside LightGBM in ``training.py``.

CatBoost reads categorical columns as strings and encodes them with ordered target
statistics (each row's encoding uses only the rows before it in a random order), which
suits high-cardinality codes and names that one-hot or frequency codes handle badly.
XGBoost grows depth-wise trees with stronger L1/L2 penalties than the LightGBM
templates: a differently-regularised third booster for the blend. Both train on the
plan's folds, stop early per fold on the fold's validation rows, and stop boosting when
the fold's share of the program's time budget is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import ModelSpec
from batch_agent.solver.target_encoding import encode_fold, level_ids, target_matrix
from batch_agent.solver.training import (
    HIGH_CARDINALITY,
    LOOP_PARAMS,
    TEXT_SVD,
    TEXT_TOKENS,
    Deadline,
    FitResult,
    Folds,
    _columns_of,
    _model_target,
    _stack,
    absolute_loss,
    fit_rate_to_budget,
    fold_weights,
    name_words,
    seed_means,
    thread_count,
    tree_features,
)

log = logging.getLogger("training")

# (kind, target, train rows, valid rows, seed, stop time) → (valid predictions, test predictions), 2-D.
FoldFit = Callable[[str, np.ndarray, np.ndarray, np.ndarray, int, float], tuple[np.ndarray, np.ndarray]]


def cross_fit(profile: CompetitionProfile, spec: ModelSpec, y: np.ndarray, folds: Folds, deadline: Deadline,
              n_test: int, fit_fold: FoldFit, *, fit_budget: BudgetFit | None = None) -> FitResult:
    """Out-of-fold and fold-averaged test predictions of ``fit_fold``, over target columns and seeds.

    Each remaining fold of the first seed gets an equal share of the time left; later seeds run only
    when the time used so far says they will finish. ``fit_budget`` (``rounds_budget``), when given, fits
    the booster's rate to that share before each target column's folds.
    """
    weights = fold_weights(profile, folds)
    oof_cols, test_cols = [], []
    columns = _columns_of(profile, y)
    for c, (kind, column) in enumerate(columns):
        target, inverse = _model_target(profile, column, spec) if kind == "regression" else (column, lambda p: p)
        if fit_budget is not None:
            fit_budget(kind, target, len(columns) - c)
        width = len(profile.classes or []) if kind == "multiclass" else 1
        oof_sum, test_sum, n_done = np.zeros((len(target), width)), np.zeros((n_test, width)), 0
        for s, seed in enumerate(spec.seeds):
            if s > 0 and deadline.fraction_used() * (s + 1) / s > 0.9:
                break
            oof, test_pred = np.zeros_like(oof_sum), np.zeros_like(test_sum)
            for i, (tr, va) in enumerate(folds):
                stop_at = time.monotonic() + max(1.0, 0.9 * deadline.remaining()) / (len(folds) - i)
                va_pred, fold_test = fit_fold(kind, target, tr, va, seed, stop_at)
                oof[va] = va_pred.reshape(len(va), width)
                test_pred += fold_test.reshape(n_test, width) * weights[i]
            oof_sum, test_sum, n_done = oof_sum + oof, test_sum + test_pred, n_done + 1
        oof_mean, test_mean = seed_means(kind, y, oof_sum, test_sum, n_done, inverse)
        oof_cols.append(oof_mean)
        test_cols.append(test_mean)
    return _stack(profile, oof_cols), _stack(profile, test_cols)


# (kind, target, target columns still to fit) → None: fits the booster's rate to the time a fold has.
BudgetFit = Callable[[str, np.ndarray, int], None]


def rounds_budget(spec: ModelSpec, params: dict[str, Any], loop: dict[str, int], folds: Folds, deadline: Deadline,
                  fit_fold: FoldFit) -> BudgetFit | None:
    """The ``fit_budget`` of a booster whose spec says how many rounds its rate needs (``budget_rounds``).

    It times short fits of the first fold (``fit_fold`` with ``loop["rounds"]`` lowered for the probe) and
    sets ``params["learning_rate"]`` and ``loop["patience"]`` (``training.fit_rate_to_budget``), starting
    from the spec's own rate and patience for each target column. None without ``budget_rounds``.
    """
    budget_rounds = spec.params.get("budget_rounds")
    if not budget_rounds:
        return None
    rate, patience = params["learning_rate"], loop["patience"]

    def fit_budget(kind: str, target: np.ndarray, columns_left: int) -> None:
        def time_rounds(rounds: int) -> float:
            saved = dict(loop)
            loop.update(rounds=rounds, patience=rounds)
            started = time.monotonic()
            try:
                fit_fold(kind, target, folds[0][0], folds[0][1], spec.seeds[0], float("inf"))
            finally:
                loop.update(saved)
            return time.monotonic() - started

        params["learning_rate"] = rate
        loop["patience"] = fit_rate_to_budget(
            params, int(budget_rounds), patience, time_rounds,
            lambda: 0.8 * deadline.remaining() / (len(folds) * columns_left))

    return fit_budget


# ----------------------------------------------------------------------------- XGBoost


def fit_xgboost(profile: CompetitionProfile, spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame,
                y: np.ndarray, folds: Folds, deadline: Deadline) -> FitResult:
    """XGBoost on the tree features, with in-fold target encoding of the high-cardinality codes."""
    X, X_test = tree_features(train, test, profile, native_categorical=True)
    return train_xgboost(profile, spec, X, X_test, y, folds, deadline,
                         encoded=high_cardinality_levels(profile, train, test))


def high_cardinality_levels(profile: CompetitionProfile, train: pd.DataFrame,
                            test: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Level ids of the categorical columns with too many levels for native categories (``level_ids``)."""
    return {c.name: level_ids(train[c.name], test[c.name]) for c in profile.features
            if c.kind == "categorical" and train[c.name].nunique() > HIGH_CARDINALITY}


def train_xgboost(profile: CompetitionProfile, spec: ModelSpec, X: pd.DataFrame, X_test: pd.DataFrame,
                  y: np.ndarray, folds: Folds, deadline: Deadline, *,
                  encoded: dict[str, tuple[np.ndarray, np.ndarray, int]] | None = None) -> FitResult:
    """XGBoost on the given features; each column of ``encoded`` gains in-fold target encodings."""
    import xgboost as xgb

    params: dict[str, Any] = {
        "tree_method": "hist",
        "learning_rate": 0.05,
        "max_depth": 6,
        "min_child_weight": 2.0,
        "subsample": 0.8,
        "colsample_bytree": 0.7,
        "reg_lambda": 5.0,
        "reg_alpha": 0.5,
        "max_cat_to_onehot": 8,
        "nthread": thread_count(len(X)),
        "verbosity": 0,
    }
    params.update({k: v for k, v in spec.params.items() if k not in LOOP_PARAMS})
    absolute = absolute_loss(profile, y, spec)
    # Rounds and early-stopping patience, which a probe of the time budget may change (``rounds_budget``).
    loop = {"rounds": int(spec.params.get("n_rounds", 5000)), "patience": int(spec.params.get("early_stopping", 100))}
    # Columns with too many levels for native categories: frequency codes plus in-fold target encoding.
    encoded = encoded or {}
    n_classes = len(profile.classes or [])

    def fit_fold(kind: str, target: np.ndarray, tr: np.ndarray, va: np.ndarray, seed: int,
                 stop_at: float) -> tuple[np.ndarray, np.ndarray]:
        X_tr, X_va, X_te = X.iloc[tr].copy(), X.iloc[va].copy(), X_test.copy()
        for name, (ids, test_ids, n_levels) in encoded.items():
            enc_tr, enc_va, enc_te = encode_fold(ids, test_ids, n_levels, target_matrix(kind, target, n_classes),
                                                 tr, va, seed)
            for j in range(enc_tr.shape[1]):
                column = f"{name}_te{j}"
                X_tr[column], X_va[column], X_te[column] = enc_tr[:, j], enc_va[:, j], enc_te[:, j]
        task = dict(params, seed=seed)
        if kind == "binary":
            task["objective"] = "binary:logistic"
        elif kind == "multiclass":
            task.update(objective="multi:softprob", num_class=len(profile.classes or []))
        else:
            task.setdefault("objective", "reg:absoluteerror" if absolute else "reg:squarederror")
        dtrain = xgb.DMatrix(X_tr, target[tr], enable_categorical=True, nthread=params["nthread"])
        dvalid = xgb.DMatrix(X_va, target[va], enable_categorical=True, nthread=params["nthread"])
        dtest = xgb.DMatrix(X_te, enable_categorical=True, nthread=params["nthread"])
        try:
            booster = xgb.train(task, dtrain, num_boost_round=loop["rounds"], evals=[(dvalid, "valid")],
                                callbacks=_xgboost_callbacks(xgb, loop["patience"], stop_at), verbose_eval=False)
        except xgb.core.XGBoostError as exc:
            if task.get("device", "cpu") == "cpu":
                raise
            # An XGBoost build without CUDA: the same model on the CPU rather than a failed attempt.
            log.warning("XGBoost GPU training unavailable (%s); using the CPU", exc)
            params["device"] = task["device"] = "cpu"
            booster = xgb.train(task, dtrain, num_boost_round=loop["rounds"], evals=[(dvalid, "valid")],
                                callbacks=_xgboost_callbacks(xgb, loop["patience"], stop_at), verbose_eval=False)
        best = getattr(booster, "best_iteration", None)
        rounds = (0, int(best) + 1) if best is not None else (0, 0)
        return booster.predict(dvalid, iteration_range=rounds), booster.predict(dtest, iteration_range=rounds)

    return cross_fit(profile, spec, y, folds, deadline, len(X_test), fit_fold,
                     fit_budget=rounds_budget(spec, params, loop, folds, deadline, fit_fold))


def _xgboost_callbacks(xgb: Any, patience: int, stop_at: float) -> list[Any]:
    """Early stopping on the fold's validation rows, and a stop when the fold's time is up."""

    class TimeGuard(xgb.callback.TrainingCallback):  # type: ignore[misc]
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return time.monotonic() > stop_at  # True stops boosting

    return [xgb.callback.EarlyStopping(rounds=patience, save_best=False), TimeGuard()]


# ----------------------------------------------------------------------------- CatBoost


def catboost_features(train: pd.DataFrame, test: pd.DataFrame, profile: CompetitionProfile, *,
                      text_tokens: int = TEXT_TOKENS,
                      text_svd: int = TEXT_SVD) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Tree features, except that every categorical column stays a string column for CatBoost to encode."""
    categorical = [c.name for c in profile.features if c.kind == "categorical"]
    others = profile.model_copy(update={"features": [c for c in profile.features if c.kind != "categorical"]})
    if any(c.kind != "constant" for c in others.features):
        X, X_test = tree_features(train, test, others, native_categorical=False, text_tokens=text_tokens,
                                  text_svd=text_svd)
    else:
        X, X_test = pd.DataFrame(index=range(len(train))), pd.DataFrame(index=range(len(test)))
    names = []
    for name in categorical:
        column = f"{name}__cat" if name in X.columns else name
        both = pd.concat([train[name], test[name]], ignore_index=True).astype("string")
        counts = both.map(both.value_counts(dropna=False)).astype(float).to_numpy()
        strings = both.fillna("<missing>").astype(str).to_numpy()
        X[column], X_test[column] = strings[: len(train)], strings[len(train):]
        X[f"{column}_count"], X_test[f"{column}_count"] = counts[: len(train)], counts[len(train):]
        words = name_words(both, int(both.nunique(dropna=True)))
        if words is not None:
            for word_column in words.columns:
                values = words[word_column].to_numpy()
                X[f"{column}_words_{word_column}"] = values[: len(train)]
                X_test[f"{column}_words_{word_column}"] = values[len(train):]
        names.append(column)
    return X, X_test, names


def fit_catboost(profile: CompetitionProfile, spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame,
                 y: np.ndarray, folds: Folds, deadline: Deadline) -> FitResult:
    """CatBoost on ``catboost_features``."""
    X, X_test, categorical = catboost_features(train, test, profile)
    return train_catboost(profile, spec, X, X_test, y, folds, deadline, categorical=categorical)


def train_catboost(profile: CompetitionProfile, spec: ModelSpec, X: pd.DataFrame, X_test: pd.DataFrame,
                   y: np.ndarray, folds: Folds, deadline: Deadline, *, categorical: list[str]) -> FitResult:
    """CatBoost on the given features; the ``categorical`` columns (strings) get its ordered target statistics."""
    import catboost

    params: dict[str, Any] = {
        "learning_rate": 0.06,
        "depth": 6,
        "l2_leaf_reg": 3.0,
        "thread_count": thread_count(len(X)),
        "verbose": False,
        "allow_writing_files": False,
    }
    params.update({k: v for k, v in spec.params.items() if k not in LOOP_PARAMS})
    absolute = absolute_loss(profile, y, spec)
    loop = {"rounds": int(spec.params.get("n_rounds", 5000)), "patience": int(spec.params.get("early_stopping", 100))}
    test_pool = catboost.Pool(X_test, cat_features=categorical)
    n_classes = len(profile.classes or [])

    def fit_fold(kind: str, target: np.ndarray, tr: np.ndarray, va: np.ndarray, seed: int,
                 stop_at: float) -> tuple[np.ndarray, np.ndarray]:
        task = dict(params, random_seed=seed, iterations=loop["rounds"], od_type="Iter", od_wait=loop["patience"],
                    use_best_model=True)
        if kind == "regression":
            task.setdefault("loss_function", "MAE" if absolute else "RMSE")
            model: Any = catboost.CatBoostRegressor(**task)
        else:
            task.setdefault("loss_function", "MultiClass" if kind == "multiclass" else "Logloss")
            if kind == "multiclass":
                task["class_names"] = list(range(n_classes))  # every class's column, even if a fold lacks one
            model = catboost.CatBoostClassifier(**task)
        train_pool = catboost.Pool(X.iloc[tr], target[tr], cat_features=categorical)
        valid_pool = catboost.Pool(X.iloc[va], target[va], cat_features=categorical)
        try:
            model.fit(train_pool, eval_set=valid_pool, callbacks=[_CatBoostTimeGuard(stop_at)])
        except catboost.CatBoostError as exc:
            if task.get("task_type", "CPU") == "CPU":
                raise
            log.warning("CatBoost GPU training unavailable (%s); using the CPU", exc)
            params["task_type"] = "CPU"
            task["task_type"] = "CPU"
            model = type(model)(**task)
            model.fit(train_pool, eval_set=valid_pool, callbacks=[_CatBoostTimeGuard(stop_at)])
        if kind == "regression":
            return model.predict(valid_pool), model.predict(test_pool)
        if kind == "binary":
            return model.predict_proba(valid_pool)[:, 1], model.predict_proba(test_pool)[:, 1]
        return model.predict_proba(valid_pool), model.predict_proba(test_pool)

    return cross_fit(profile, spec, y, folds, deadline, len(X_test), fit_fold,
                     fit_budget=rounds_budget(spec, params, loop, folds, deadline, fit_fold))


class _CatBoostTimeGuard:
    """Stops boosting when the fold's time is up (CatBoost's callbacks return False to stop)."""

    def __init__(self, stop_at: float) -> None:
        self.stop_at = stop_at

    def after_iteration(self, info: Any) -> bool:
        return time.monotonic() <= self.stop_at

