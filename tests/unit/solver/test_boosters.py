"""The XGBoost and CatBoost families: what they learn, the shapes they return, and their time budget."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.boosters import catboost_features, fit_catboost, fit_xgboost
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import ModelSpec
from batch_agent.solver.scoring import score
from batch_agent.solver.target_encoding import encode_fold
from batch_agent.solver.training import Deadline, make_folds

N = 600
FITTERS = {"xgboost": fit_xgboost, "catboost": fit_catboost}


def profile(task: str, metric: str, classes: list[str] | None = None) -> CompetitionProfile:
    fmt = {"binary": "probability", "multiclass": "class_probabilities", "regression": "value"}[task]
    return CompetitionProfile(
        data_dir="/data", id_column="id", target_columns=["y"], submission_columns=["id", "y"], task=task,
        prediction_format=fmt, classes=classes, metric=metric, n_train=N, n_test=100,
        features=[
            ColumnInfo(name="a", kind="numeric", dtype="float64", n_unique=N, missing_fraction=0.0),
            ColumnInfo(name="code", kind="categorical", dtype="object", n_unique=150, missing_fraction=0.0),
        ],
    )


def tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A numeric feature and a 150-level code whose level carries most of the signal."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 150, size=N + 100)
    effect = rng.normal(0, 2, size=150)
    frame = pd.DataFrame({"a": rng.normal(size=N + 100), "code": [f"c{c}" for c in codes]})
    signal = effect[codes] + 0.5 * frame["a"].to_numpy()
    return frame.iloc[:N].reset_index(drop=True), frame.iloc[N:].reset_index(drop=True), signal


@pytest.mark.parametrize("family", list(FITTERS))
def test_regression_learns_a_high_cardinality_code_far_better_than_the_mean(family: str) -> None:
    train, test, signal = tables()
    y = signal[:N] + np.random.default_rng(1).normal(0, 0.3, N)
    prof = profile("regression", "rmse")
    folds = make_folds(prof, y, 5, 0)
    oof, test_pred = FITTERS[family](prof, ModelSpec(name=family, family=family), train, test, y, folds,
                                     Deadline(60))
    assert oof.shape == (N,) and test_pred.shape == (100,)
    constant = score("rmse", y, np.full(N, y.mean()))
    assert score("rmse", y, oof) < 0.6 * constant
    assert np.corrcoef(test_pred, signal[N:])[0, 1] > 0.8


@pytest.mark.parametrize("family", list(FITTERS))
def test_multiclass_returns_one_probability_column_per_class(family: str) -> None:
    train, test, signal = tables()
    y = np.digitize(signal[:N], [-1.0, 1.0])
    prof = profile("multiclass", "log_loss", classes=["low", "mid", "high"])
    folds = make_folds(prof, y, 4, 0)
    oof, test_pred = FITTERS[family](prof, ModelSpec(name=family, family=family), train, test, y, folds,
                                     Deadline(60))
    assert oof.shape == (N, 3) and test_pred.shape == (100, 3)
    assert np.allclose(oof.sum(axis=1), 1.0) and np.allclose(test_pred.sum(axis=1), 1.0)
    prior = np.bincount(y, minlength=3) / N
    assert score("log_loss", y, oof) < 0.8 * score("log_loss", y, np.tile(prior, (N, 1)))


@pytest.mark.parametrize("family", list(FITTERS))
def test_binary_returns_two_probability_columns_that_rank_the_positives(family: str) -> None:
    train, test, signal = tables()
    y = (signal[:N] > 0).astype(int)
    prof = profile("binary", "roc_auc", classes=["0", "1"])
    folds = make_folds(prof, y, 5, 0)
    oof, _ = FITTERS[family](prof, ModelSpec(name=family, family=family), train, test, y, folds, Deadline(60))
    assert oof.shape == (N, 2)
    assert score("roc_auc", y, oof[:, 1]) > 0.85


@pytest.mark.parametrize("family", list(FITTERS))
def test_boosting_stops_when_the_time_budget_is_spent(family: str) -> None:
    train, test, signal = tables()
    y = signal[:N]
    prof = profile("regression", "rmse")
    folds = make_folds(prof, y, 5, 0)
    # Tiny learning rate, no early stopping in reach: only the time guard ends boosting.
    rate = {"xgboost": {"learning_rate": 0.0005}, "catboost": {"learning_rate": 0.0005}}[family]
    spec = ModelSpec(name=family, family=family, params={**rate, "n_rounds": 1_000_000, "early_stopping": 10**6})
    started = time.monotonic()
    oof, _ = FITTERS[family](prof, spec, train, test, y, folds, Deadline(3.0))
    assert time.monotonic() - started < 20.0
    assert np.isfinite(oof).all()


def test_catboost_keeps_categoricals_as_strings_and_adds_their_counts() -> None:
    train, test, _ = tables()
    X, X_test, categorical = catboost_features(train, test, profile("regression", "rmse"))
    assert categorical == ["code"]
    assert X["code"].map(type).eq(str).all() and X_test["code"].str.startswith("c").all()
    assert "code_count" in X.columns and X["code_count"].min() >= 1


def test_target_encoding_of_training_rows_never_sees_their_own_label() -> None:
    # Every level unique: an encoding that used a row's own label would reproduce it.
    n = 200
    ids = np.arange(n)
    target = np.random.default_rng(0).normal(size=(n, 1))
    tr, va = np.arange(150), np.arange(150, 200)
    enc_tr, enc_va, enc_te = encode_fold(ids, np.arange(5), n, target, tr, va, seed=0)
    assert np.corrcoef(enc_tr[:, 0], target[tr, 0])[0, 1] < 0.2
    # Unseen levels (validation rows here) fall back to the prior of the fold's training rows.
    assert np.allclose(enc_va[:, 0], target[tr, 0].mean())
    assert enc_te.shape == (5, 1)


def test_target_encoding_of_repeated_levels_tracks_their_mean() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=2000)
    effect = rng.normal(0, 3, size=20)
    target = (effect[ids] + rng.normal(0, 0.5, size=2000)).reshape(-1, 1)
    tr, va = np.arange(1500), np.arange(1500, 2000)
    enc_tr, enc_va, _ = encode_fold(ids, ids[:10], 20, target, tr, va, seed=0)
    assert np.corrcoef(enc_va[:, 0], effect[ids[va]])[0, 1] > 0.99
    assert np.corrcoef(enc_tr[:, 0], effect[ids[tr]])[0, 1] > 0.99


def test_small_tables_train_on_one_thread_and_large_ones_on_every_core_unless_the_machine_is_busy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from batch_agent.solver import training

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert training.thread_count(3_500) == 1
    assert training.thread_count(200_000) == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    assert training.thread_count(200_000) == 1


def test_words_inside_high_cardinality_names_become_features_for_every_tree_family() -> None:
    from batch_agent.solver.training import tree_features

    rng = np.random.default_rng(0)
    titles = pd.Series([f"{rng.choice(['red', 'blue', 'green'])} model{i} {rng.choice(['deluxe', 'basic'])}"
                        for i in range(N + 100)])
    frame = pd.DataFrame({"a": rng.normal(size=N + 100), "code": titles})
    train, test = frame.iloc[:N].reset_index(drop=True), frame.iloc[N:].reset_index(drop=True)
    prof = profile("regression", "rmse")
    X, _ = tree_features(train, test, prof, native_categorical=True)
    assert "code_words_has_deluxe" in X.columns
    assert X["code_words_has_deluxe"].to_numpy().tolist() == titles[:N].str.contains("deluxe").astype(float).tolist()
    X_cat, _, _ = catboost_features(train, test, prof)
    assert "code_words_has_deluxe" in X_cat.columns
    # Short codes with one word each stay plain categories.
    assert not any("words" in c for c in tree_features(*tables()[:2], prof, native_categorical=True)[0].columns)
