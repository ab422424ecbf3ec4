"""The toolkit training programs import: `from batch_agent.solver import toolkit`.

comp = toolkit.load(n_folds=5, fold_seed=42)
    Parses --data and --time-budget, reads profile.json (beside the program), train.csv and test.csv.
    comp.profile (task, metric, id_column, target_columns, classes, features with their kinds),
    comp.train / comp.test (DataFrames; train holds the labelled rows only), comp.y (encoded target:
    class indices, values, or an (n, T) matrix), comp.folds (list of (train_rows, valid_rows)),
    comp.deadline (.remaining(), .fraction_used(): seconds of the budget), comp.threads.
X, X_test = toolkit.tree_features(comp, native_categorical=True, text_tokens=24, text_svd=8)
    Numbers, date parts, words and TF-IDF components of text, categories (native or frequency codes).
X, X_test = toolkit.linear_features(comp)    scaled numerics, one-hot, TF-IDF: a sparse matrix.
X, X_test = toolkit.catboost_features(comp)  tree features with categories kept as strings.
Add columns of your own to these frames (computed without the labels, or in-fold).
oof, test_pred = toolkit.fit_lightgbm(comp, X, X_test, params, seeds=[0], target="raw")
    also fit_xgboost, fit_catboost, fit_linear (params {"strengths": [...]}), fit_forest(...,
    family="extra_trees" | "random_forest"; numeric X: tree_features(comp, native_categorical=False)),
    fit_knn (params {"n_neighbors": 25}, on linear_features),
    fit_sklearn(comp, make_model, X, X_test) with make_model(kind) -> any scikit-learn estimator.
    Boosters take n_rounds and early_stopping in params, and their library's own objective
    ({"objective": "poisson"}, CatBoost {"loss_function": "Poisson"}); target="log" trains on log1p(target).
    They return predictions in prediction space: class probabilities (n, K) in comp.profile.classes
    order, values (n,), or (n, T) for several targets; oof rows follow comp.train.
oof, test_pred = toolkit.cross_fit(comp, fit_fold, seeds=[0])  your own model, fold by fold:
    fit_fold(kind, target, train_rows, valid_rows, seed, stop_at) -> (valid_pred, test_pred), kind
    "binary" (return P(class 1)), "multiclass" (n, K) or "regression"; stop_at: time.monotonic() limit.
train_enc, valid_enc, test_enc = toolkit.target_encode(comp, column, train_rows, valid_rows)
    In-fold smoothed target means of a categorical column (rows × targets), for use inside fit_fold.
value = toolkit.score(comp, oof)  the competition's metric on out-of-fold predictions, after the
    decision fitting the metric rewards (threshold, class cut points, temperature).
toolkit.write_outputs(comp, oof, test_pred, name="my-model")
    Fits the decision, writes submission.csv, oof.csv, metrics.json, oof.npy and test_pred.npy; returns
    the CV score. Average several models' predictions (same shapes) before writing to blend them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from batch_agent.solver import boosters, training
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import ModelFamily, ModelSpec
from batch_agent.solver.predictions import cv_score, encode_target, fit_decision, is_classification, submission_frame
from batch_agent.solver.target_encoding import encode_fold, level_ids, target_matrix
from batch_agent.solver.templates import PROFILE_FILE, model_features
from batch_agent.solver.training import Deadline, Folds

Target = Literal["raw", "log"]
Prediction = tuple[np.ndarray, np.ndarray]

log = logging.getLogger("training")


@dataclass
class Competition:
    """A loaded competition: the profile, the frames, the encoded target, the folds and the time budget."""

    profile: CompetitionProfile
    data_dir: Path
    train: pd.DataFrame  # the labelled rows of train.csv, renumbered from 0
    test: pd.DataFrame
    y: np.ndarray  # the target of ``train``'s rows, encoded (predictions.encode_target)
    folds: Folds
    deadline: Deadline
    train_ids: pd.Series  # every train.csv id, in file order: the rows of oof.csv
    labelled: np.ndarray  # which train.csv rows ``train`` holds
    threads: int
    _limits: Any = field(default=None, repr=False)


def load(data_dir: Path | str | None = None, *, time_budget: float | None = None, n_folds: int = 5,
         fold_seed: int = 42, started: float | None = None, argv: Sequence[str] | None = None,
         profile_path: Path | str | None = None) -> Competition:
    """The competition a program trains on.

    Without ``data_dir`` the command line gives it (``--data DIR --time-budget SECONDS``). The profile is
    ``profile_path``, else the profile.json beside the program, in the working directory or in the data
    folder, else one profiled from the data folder. ``started`` (a ``time.monotonic()`` taken before the
    program's imports) makes the time budget count those imports too.
    """
    if data_dir is None:
        parser = argparse.ArgumentParser(description="kaggle-solver training program")
        parser.add_argument("--data", required=True, type=Path)
        parser.add_argument("--time-budget", type=float, default=600.0)
        args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
        data_dir, time_budget = args.data, time_budget if time_budget is not None else args.time_budget
    data = Path(data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    warnings.filterwarnings("ignore")
    deadline = Deadline(600.0 if time_budget is None else float(time_budget), started)
    profile = _read_profile(data, profile_path).model_copy(update={"data_dir": str(data)})
    # A column naming each row's image file is a path, not a feature: it stays in the frames for programs
    # that open the files, out of the feature builders.
    profile.features = model_features(profile)
    train = pd.read_csv(data / profile.train_file, low_memory=False)
    test = pd.read_csv(data / profile.test_file, low_memory=False)
    train.columns = [str(c).strip() for c in train.columns]
    test.columns = [str(c).strip() for c in test.columns]
    y_all = encode_target(profile, train)
    labelled = (y_all >= 0) if is_classification(profile) else ~np.isnan(y_all).reshape(len(y_all), -1).any(axis=1)
    labelled = np.asarray(labelled)
    train_ids = train[profile.id_column]
    train, y = train[labelled].reset_index(drop=True), y_all[labelled]
    threads = training.thread_count(len(train))
    from threadpoolctl import threadpool_limits

    # BLAS and OpenMP pools (linear models, TF-IDF SVD) follow the same thread rule as the model libraries.
    limits = threadpool_limits(limits=threads)
    log.info("%d train rows, %d test rows, metric %s, %d thread(s)", len(train), len(test), profile.metric, threads)
    folds = training.make_folds(profile, y, n_folds, fold_seed, train)
    return Competition(profile=profile, data_dir=data, train=train, test=test, y=y, folds=folds, deadline=deadline,
                       train_ids=train_ids, labelled=labelled, threads=threads, _limits=limits)


def _read_profile(data: Path, explicit: Path | str | None) -> CompetitionProfile:
    candidates = [Path(explicit)] if explicit is not None else [
        Path(sys.argv[0]).resolve().parent / PROFILE_FILE, Path.cwd() / PROFILE_FILE, data / PROFILE_FILE]
    for path in candidates:
        if path.is_file():
            return CompetitionProfile.model_validate_json(path.read_text())
    if explicit is not None:
        raise FileNotFoundError(f"{explicit}: no such profile")
    from batch_agent.solver.profiling import profile_competition

    log.warning("no %s beside the program: profiling %s", PROFILE_FILE, data)
    return profile_competition(data)


# ----------------------------------------------------------------------------- features


def tree_features(comp: Competition, *, native_categorical: bool = True, text_tokens: int = training.TEXT_TOKENS,
                  text_svd: int = training.TEXT_SVD) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features for tree models, one frame for train's labelled rows and one for test."""
    return training.tree_features(comp.train, comp.test, comp.profile, native_categorical,
                                  text_tokens=text_tokens, text_svd=text_svd)


def linear_features(comp: Competition) -> tuple[Any, Any]:
    """A sparse design matrix for linear models and neighbours: scaled numerics, one-hot codes, TF-IDF."""
    return training.linear_features(comp.train, comp.test, comp.profile)


def catboost_features(comp: Competition, *, text_tokens: int = training.TEXT_TOKENS,
                      text_svd: int = training.TEXT_SVD) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tree features with every categorical column kept as strings, for CatBoost to encode."""
    X, X_test, _ = boosters.catboost_features(comp.train, comp.test, comp.profile, text_tokens=text_tokens,
                                              text_svd=text_svd)
    return X, X_test


def target_encode(comp: Competition, column: str, train_rows: np.ndarray, valid_rows: np.ndarray,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-fold target encodings of ``column`` for the fold's training rows, its validation rows and test.

    The training rows' encodings come from an inner split, so no row sees its own label.
    """
    ids, test_ids, n_levels = level_ids(comp.train[column], comp.test[column])
    if comp.y.ndim == 2:  # several targets: one encoding per target column
        matrix = comp.y.astype(float)
    else:
        kind = training._columns_of(comp.profile, comp.y)[0][0]
        target = comp.y if kind != "regression" else training._model_target(comp.profile, comp.y)[0]
        matrix = target_matrix(kind, target, len(comp.profile.classes or []))
    return encode_fold(ids, test_ids, n_levels, matrix, train_rows, valid_rows, seed)


# ----------------------------------------------------------------------------- models


def _spec(family: ModelFamily, params: dict[str, Any] | None, seeds: Sequence[int], target: Target) -> ModelSpec:
    if target not in ("raw", "log"):
        raise ValueError(f"target must be 'raw' or 'log', not {target!r}")
    return ModelSpec(name=family, family=family, params=dict(params or {}), seeds=list(seeds) or [0],
                     features={"target": target} if target == "log" else {})


def _fit(comp: Competition, run: Callable[[], Prediction]) -> Prediction:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=comp.threads):
        return run()


def fit_lightgbm(comp: Competition, X: pd.DataFrame, X_test: pd.DataFrame, params: dict[str, Any] | None = None,
                 *, seeds: Sequence[int] = (0,), target: Target = "raw") -> Prediction:
    """LightGBM with early stopping on each fold, averaged over ``seeds``."""
    spec = _spec("lightgbm", params, seeds, target)
    return _fit(comp, lambda: training.train_lightgbm(comp.profile, spec, X, X_test, comp.y, comp.folds,
                                                      comp.deadline))


def fit_xgboost(comp: Competition, X: pd.DataFrame, X_test: pd.DataFrame, params: dict[str, Any] | None = None,
                *, seeds: Sequence[int] = (0,), target: Target = "raw") -> Prediction:
    """XGBoost; categorical columns with more than 64 levels also get in-fold target encodings."""
    spec = _spec("xgboost", params, seeds, target)
    encoded = boosters.high_cardinality_levels(comp.profile, comp.train, comp.test)
    return _fit(comp, lambda: boosters.train_xgboost(comp.profile, spec, X, X_test, comp.y, comp.folds,
                                                     comp.deadline, encoded=encoded))


def fit_catboost(comp: Competition, X: pd.DataFrame, X_test: pd.DataFrame, params: dict[str, Any] | None = None,
                 *, seeds: Sequence[int] = (0,), target: Target = "raw",
                 categorical: Sequence[str] | None = None) -> Prediction:
    """CatBoost; ``categorical`` defaults to every non-numeric column of ``X`` (see ``catboost_features``)."""
    spec = _spec("catboost", params, seeds, target)
    if categorical is None:
        categorical = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    columns = list(categorical)
    return _fit(comp, lambda: boosters.train_catboost(comp.profile, spec, X, X_test, comp.y, comp.folds,
                                                      comp.deadline, categorical=columns))


def fit_linear(comp: Competition, X: Any, X_test: Any, params: dict[str, Any] | None = None, *,
               target: Target = "raw") -> Prediction:
    """Ridge (regression) or logistic regression; the strength (``params["strengths"]``) chosen on the folds."""
    spec = _spec("linear", params, (0,), target)
    return _fit(comp, lambda: training.train_linear(comp.profile, spec, X, X_test, comp.y, comp.folds,
                                                    comp.deadline))


def fit_forest(comp: Competition, X: pd.DataFrame, X_test: pd.DataFrame, params: dict[str, Any] | None = None,
               *, family: Literal["extra_trees", "random_forest"] = "extra_trees", seeds: Sequence[int] = (0,),
               target: Target = "raw") -> Prediction:
    """Extra trees or a random forest (scikit-learn parameters), as many trees as the budget allows."""
    spec = _spec(family, params, seeds, target)
    return _fit(comp, lambda: training.train_forest(comp.profile, spec, X, X_test, comp.y, comp.folds,
                                                    comp.deadline))


def fit_knn(comp: Competition, X: Any, X_test: Any, params: dict[str, Any] | None = None, *,
            target: Target = "raw") -> Prediction:
    """k nearest neighbours (scikit-learn parameters) on scaled features such as ``linear_features``."""
    spec = _spec("knn", params, (0,), target)
    return _fit(comp, lambda: training.train_knn(comp.profile, spec, X, X_test, comp.y, comp.folds))


def fit_sklearn(comp: Competition, make_model: Callable[[str], Any], X: Any, X_test: Any, *,
                target: Target = "raw") -> Prediction:
    """Any scikit-learn estimator ``make_model(kind)`` (kind: "regression", "binary" or "multiclass")."""
    spec = _spec("linear", None, (0,), target)
    return _fit(comp, lambda: training.train_sklearn(comp.profile, spec, X, X_test, comp.y, comp.folds,
                                                     make_model))


def cross_fit(comp: Competition, fit_fold: boosters.FoldFit, *, seeds: Sequence[int] = (0,),
              target: Target = "raw") -> Prediction:
    """Predictions of your own per-fold model in prediction space (one call per target column, fold and seed)."""
    spec = _spec("linear", None, seeds, target)
    return _fit(comp, lambda: boosters.cross_fit(comp.profile, spec, comp.y, comp.folds, comp.deadline,
                                                 len(comp.test), fit_fold))


# ----------------------------------------------------------------------------- scores and files


def score(comp: Competition, oof: np.ndarray) -> float:
    """The competition's metric on out-of-fold predictions, after fitting the decision the metric rewards.

    Rows no fold predicts (the earliest block of time-ordered folds) are left out.
    """
    rows = training.predicted_rows(len(comp.y), comp.folds)
    y, oof = comp.y[rows], np.asarray(oof)[rows]
    return cv_score(comp.profile, y, oof, fit_decision(comp.profile, y, oof))


def write_outputs(comp: Competition, oof: np.ndarray, test_pred: np.ndarray, *, name: str = "model",
                  family: str = "", folder: Path | str = ".") -> float:
    """Write the contract's files to ``folder`` (submission.csv, oof.csv, metrics.json, oof.npy, test_pred.npy).

    Returns the CV score of ``oof``; the product computes its own from oof.csv.
    """
    out = Path(folder)
    profile = comp.profile
    oof, test_pred = np.asarray(oof, dtype=float), np.asarray(test_pred, dtype=float)
    if len(oof) != len(comp.train) or len(test_pred) != len(comp.test):
        raise ValueError(f"oof has {len(oof)} rows for {len(comp.train)} labelled train rows and test_pred "
                         f"{len(test_pred)} for {len(comp.test)} test rows")
    # Time-ordered folds leave the earliest rows unpredicted: they are scored nowhere and written empty.
    predicted = training.predicted_rows(len(comp.y), comp.folds)
    decision = fit_decision(profile, comp.y[predicted], oof[predicted])
    value = cv_score(profile, comp.y[predicted], oof[predicted], decision)
    log.info("%s: CV %s = %.6f on %d rows in %.1f s", name, profile.metric, value, int(predicted.sum()),
             comp.deadline.elapsed())
    # Out-of-fold rows that were dropped (unlabelled) or not predicted are NaN so every program's oof
    # aligns with train.csv.
    oof = oof.copy()
    oof[~predicted] = np.nan
    full_oof = np.full((len(comp.labelled), *oof.shape[1:]), np.nan)
    full_oof[comp.labelled] = oof
    np.save(out / "oof.npy", full_oof)
    np.save(out / "test_pred.npy", test_pred)
    submission_frame(profile, comp.test[profile.id_column], test_pred, decision).to_csv(
        out / "submission.csv", index=False)
    # oof.csv, the contract's file the product scores: the same format; unlabelled rows (not scored) get
    # the mean test prediction so that every cell is valid; rows no fold predicted stay empty.
    unpredicted = np.zeros(len(comp.labelled), dtype=bool)
    unpredicted[np.flatnonzero(comp.labelled)[~predicted]] = True
    full_oof[~comp.labelled] = test_pred.mean(axis=0)
    full_oof[unpredicted] = test_pred.mean(axis=0)  # any valid value: the cells are emptied below
    oof_frame = submission_frame(profile, comp.train_ids, full_oof, decision)
    if unpredicted.any():
        value_columns = [c for c in oof_frame.columns if c != profile.id_column]
        oof_frame[value_columns] = oof_frame[value_columns].astype(object)
        oof_frame.loc[unpredicted, value_columns] = None
    oof_frame.to_csv(out / "oof.csv", index=False)
    (out / "metrics.json").write_text(json.dumps({
        "cv_score": value,
        "metric": profile.metric,
        "model": name,
        "family": family,
        "seconds": round(comp.deadline.elapsed(), 2),
        "decision": decision.model_dump(),
    }, indent=2))
    return value
