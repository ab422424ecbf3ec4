"""The tabular training library under the toolkit (``toolkit.py``) that programs call inside the sandbox.

Feature builders (tree and linear design matrices from the profile's column kinds),
the plan's cross-validation folds, and one trainer per model family: each takes
features, the encoded target and the folds, and returns out-of-fold and test
predictions in prediction space (``predictions.py``), within a time budget.
Programs use these through ``toolkit.py``, which loads the competition and
writes the contract's files.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import PARALLEL_MIN_ROWS, ModelSpec
from batch_agent.solver.predictions import is_classification

log = logging.getLogger("training")

Folds = list[tuple[np.ndarray, np.ndarray]]
# Categorical columns with more distinct values than this are count/rank encoded
# instead of one-hot (linear) or native categorical (LightGBM), which overfit them.
HIGH_CARDINALITY = 64
TEXT_TOKENS = 24
FOREST_MAX_ROWS = 50_000
TEXT_SVD = 8


def thread_count(n_rows: int) -> int:
    """Threads for one model fit: one for small tables, every core for large ones on a quiet machine.

    On small tables a second thread saves nothing and its waits cost up to 10×. Large tables get every
    core with spinning waits (``solve.program_environment``), which pay only while nothing else wants
    the cores: when the load average already exceeds the cores, spinning threads stall each other
    (LightGBM on 200,000 rows: over 90 s instead of 3-6 s; README, benchmarks), so one thread it is.
    """
    if n_rows < PARALLEL_MIN_ROWS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > 1 and os.getloadavg()[0] > cores + 0.5:
        return 1
    return max(1, cores)


# Keys of a booster's params that steer its training loop rather than the library: never passed on.
LOOP_PARAMS = ("n_rounds", "early_stopping", "budget_rounds")
# Rounds of the probe fits that time a round before a rate is fitted to the budget (``fit_rate_to_budget``).
PROBE_ROUNDS = 10
# The highest learning rate a tight time budget may raise a configuration's rate to.
MAX_BUDGET_RATE = 0.3


def rate_for_budget(rate: float, budget_rounds: int, patience: int, affordable: float) -> tuple[float, int]:
    """The learning rate and early-stopping patience that fit ``budget_rounds`` rounds at ``rate`` in
    ``affordable`` rounds.

    Boosting trades rate for rounds: a model needing R rounds at rate r needs about R·r/r' at rate r'. When R
    plus the patience fit, nothing changes; otherwise the patience shrinks to a quarter of what fits (at
    least 10 rounds) and the rate rises so that the rest holds the model's rounds, at most to MAX_BUDGET_RATE.
    """
    if budget_rounds + patience <= affordable:
        return rate, patience
    patience = int(min(patience, max(10, affordable // 4)))
    room = max(1.0, affordable - patience)
    return min(MAX_BUDGET_RATE, max(rate, rate * budget_rounds / room)), patience


def affordable_rounds(seconds: float, early: float, growth: float) -> float:
    """Rounds that fit in ``seconds`` when round n costs ``early + growth * n`` seconds."""
    if growth <= 0:
        return seconds / early
    return (math.sqrt(early * early + 2 * growth * seconds) - early) / growth


def fit_rate_to_budget(params: dict[str, Any], budget_rounds: int | None, patience: int,
                       time_rounds: Callable[[int], float], seconds: Callable[[], float]) -> int:
    """Fit ``params["learning_rate"]`` to the time a fold has; returns the early-stopping patience to use.

    ``time_rounds(n)``: the seconds of one fold's fit with ``n`` rounds; ``seconds()``: the time one fold's
    fit may take. A fit of one round gives the fixed cost of a fit; fits of 1 + r rounds, r = PROBE_ROUNDS
    and then 4× more, give what r rounds cost, until they take a sixteenth of the fold's time (or r reaches
    ``budget_rounds``): at most about a third of one fold's time in all. A round's cost is not constant:
    CatBoost's grew from 7 ms over its first 10 rounds to 28 ms over rounds 100-300 (its combinations of
    categories grow with the trees), so the last two probes fit a cost that grows linearly with the
    rounds, and the rounds that fit follow from it (``affordable_rounds``). Without ``budget_rounds``
    nothing is probed.
    """
    if not budget_rounds:
        return patience
    one = time_rounds(1)
    probes: list[tuple[int, float]] = []
    rounds = PROBE_ROUNDS
    while True:
        probes.append((rounds, max(time_rounds(1 + rounds) - one, 1e-6)))
        if probes[-1][1] >= seconds() / 16 or rounds >= budget_rounds:
            break
        rounds *= 4
    (r1, t1), (r2, t2) = probes[-2:] if len(probes) > 1 else (probes[0], probes[0])
    # Round n costing early + growth·n, r rounds cost r·early + growth·r²/2: two probes give both.
    growth = max(0.0, 2 * (t2 / r2 - t1 / r1) / (r2 - r1)) if r2 > r1 else 0.0
    early = max(1e-6, t2 / r2 - growth * r2 / 2)
    affordable = affordable_rounds(max(0.0, seconds()), early, growth)
    rate, fitted = rate_for_budget(float(params["learning_rate"]), int(budget_rounds), patience, affordable)
    log.info("%.0f rounds fit in a fold's time (a round %.4f s + %.6f s per round before it; probed up to %d): "
             "learning rate %.3f → %.3f, patience %d", affordable, early, growth, r2, params["learning_rate"],
             rate, fitted)
    params["learning_rate"] = rate
    return fitted


class Deadline:
    """Wall-clock budget of this program, so optional work (extra seeds, grid points) stops in time."""

    def __init__(self, seconds: float, start: float | None = None) -> None:
        self.start = time.monotonic() if start is None else start
        self.seconds = seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fraction_used(self) -> float:
        return self.elapsed() / self.seconds if self.seconds > 0 else 1.0

    def remaining(self) -> float:
        return self.seconds - self.elapsed()


# ----------------------------------------------------------------------------- folds


def make_folds(profile: CompetitionProfile, y: np.ndarray, n_folds: int, seed: int,
               train: pd.DataFrame | None = None) -> Folds:
    """The plan's cross-validation folds over the labelled train rows ``y`` (and ``train``, the same rows).

    With ``profile.shape.time_column``: expanding-window folds in time (``time_folds``), where rows of
    the earliest block are in no validation fold. With ``profile.shape.group_column``: folds that keep
    each group on one side. Otherwise shuffled folds, stratified by class or by target quantile.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    index = np.arange(n)
    shape = profile.shape
    if shape.time_column is not None or shape.group_column is not None:
        if train is None or len(train) != n:
            raise ValueError("time-ordered and grouped folds need the train rows of y")
        if shape.time_column is not None:
            from batch_agent.solver.time_series import time_values

            folds = time_folds(time_values(train[shape.time_column]), n_folds)
        else:
            assert shape.group_column is not None
            folds = group_folds(profile, y, train[shape.group_column], n_folds, seed)
        if folds:
            return folds
        # One time or one group for every row: nothing to order or keep apart, so ordinary folds.
    if is_classification(profile):
        counts = np.bincount(y)
        if counts[counts > 0].min() >= n_folds:
            return list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(index, y))
    elif profile.task == "regression":
        # Stratify on target quantiles: folds with similar target ranges give steadier scores.
        bins = pd.qcut(pd.Series(y).rank(method="first"), q=min(10, max(2, n // (n_folds * 5))), labels=False)
        return list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(index, bins.to_numpy()))
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(index))


def time_folds(times: np.ndarray, n_folds: int) -> Folds:
    """Expanding-window folds: the rows, ordered by time, cut into ``n_folds + 1`` blocks of about equal size.

    Fold i validates block i on a model trained on blocks 0..i-1, so no model ever trains on a row later
    than one it predicts. Rows of one time stay in one block; rows without a time count as the earliest.
    Block 0 is never predicted: programs leave those rows empty in oof.csv, and the product scores the
    rows that have predictions (``attempt_scores``). Empty when the times make fewer than two blocks.
    """
    order_times = np.where(np.isnan(times), -np.inf, times)
    distinct, inverse, counts = np.unique(order_times, return_inverse=True, return_counts=True)
    if len(distinct) < 2:
        return []
    # Each time's block from where its rows' middle falls in the time-ordered row sequence.
    middle = np.cumsum(counts) - counts / 2.0
    block_of_time = np.minimum((middle * (n_folds + 1) / len(times)).astype(int), n_folds)
    block = block_of_time[inverse]
    folds = []
    for b in np.unique(block)[1:]:
        folds.append((np.flatnonzero(block < b), np.flatnonzero(block == b)))
    return folds


def group_folds(profile: CompetitionProfile, y: np.ndarray, groups: pd.Series, n_folds: int, seed: int) -> Folds:
    """Folds that never split a group; stratified by class where every class has enough groups. Empty
    when there is only one group."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    codes = groups.astype("string").fillna("__missing__").factorize()[0]
    n_splits = min(n_folds, len(np.unique(codes)))
    if n_splits < 2:
        return []
    index = np.arange(len(y))
    if is_classification(profile) and y.ndim == 1 and np.bincount(y)[np.bincount(y) > 0].min() >= n_splits:
        return list(StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(index, y, codes))
    return list(GroupKFold(n_splits, shuffle=True, random_state=seed).split(index, groups=codes))


def predicted_rows(n: int, folds: Folds) -> np.ndarray:
    """Mask of the rows some fold validates: the rows that get an out-of-fold prediction."""
    mask = np.zeros(n, dtype=bool)
    for _, valid in folds:
        mask[valid] = True
    return mask


def fold_weights(profile: CompetitionProfile, folds: Folds) -> np.ndarray:
    """Weights of the fold models in the test prediction: equal, or the last fold's alone for time-ordered folds.

    An expanding window's last model trained on the most rows and the newest; the earlier ones
    forecast from further back than the test needs (on the generated daily-visitors series, boosters
    averaged over folds by training size scored an MAE of 205-243 on test; the last model alone 108-118).
    """
    if profile.shape.time_column is None:
        return np.full(len(folds), 1.0 / len(folds))
    weights = np.zeros(len(folds))
    weights[-1] = 1.0
    return weights


# ----------------------------------------------------------------------------- features


def _feature_kinds(profile: CompetitionProfile) -> dict[str, str]:
    return {c.name: c.kind for c in profile.features if c.kind != "constant"}


def _date_parts(values: pd.Series) -> pd.DataFrame:
    dates = pd.to_datetime(values, errors="coerce", format="mixed")
    parts = pd.DataFrame(
        {
            "year": dates.dt.year,
            "month": dates.dt.month,
            "day": dates.dt.day,
            "dayofweek": dates.dt.day_of_week,
            "dayofyear": dates.dt.day_of_year,
            "ordinal": (dates - pd.Timestamp("1970-01-01")).dt.days,
        }
    )
    if (dates.dt.hour.fillna(0) != 0).any():
        parts["hour"] = dates.dt.hour
    return parts.astype(float)


def _text_features(values: pd.Series, n_tokens: int, n_svd: int) -> pd.DataFrame:
    """Length, word count, indicators of the most frequent words, and a few TF-IDF SVD components."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    text = values.fillna("").astype(str)
    out = pd.DataFrame({"len": text.str.len(), "words": text.str.count(r"\S+")}, index=values.index)
    try:
        counts = CountVectorizer(max_features=n_tokens, binary=True, min_df=5).fit(text)
        tokens = counts.transform(text).toarray()
        for j, token in enumerate(counts.get_feature_names_out()):
            out[f"has_{token}"] = tokens[:, j]
    except ValueError:  # empty vocabulary
        pass
    try:
        tfidf = TfidfVectorizer(min_df=2, max_features=20_000, sublinear_tf=True).fit_transform(text)
        k = min(n_svd, tfidf.shape[1] - 1)
        if k >= 1:
            svd = TruncatedSVD(k, random_state=0).fit_transform(tfidf)
            for j in range(k):
                out[f"svd{j}"] = svd[:, j]
    except ValueError:
        pass
    return out.astype(float)


def name_words(values: pd.Series, n_unique: int) -> pd.DataFrame | None:
    """Word features of a high-cardinality column of short phrases (names, titles, models), else None.

    Such a column is too short to be profiled as text, and as a category most of its levels are rare;
    the words inside ("deluxe", "Jr", a brand) are shared by many rows and carry the signal.
    """
    if n_unique <= HIGH_CARDINALITY or values.fillna("").astype(str).str.count(r"\S+").mean() < 1.5:
        return None
    return _text_features(values, TEXT_TOKENS, TEXT_SVD)


def tree_features(train: pd.DataFrame, test: pd.DataFrame, profile: CompetitionProfile,
                  native_categorical: bool, *, text_tokens: int = TEXT_TOKENS,
                  text_svd: int = TEXT_SVD) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features for tree models; categoricals stay pandas categories when ``native_categorical``.

    Each text column gives its length, word count, indicators of its ``text_tokens`` most frequent
    words and ``text_svd`` TF-IDF SVD components.
    """
    both = pd.concat([train, test], ignore_index=True)
    n_train = len(train)
    parts: list[pd.DataFrame] = []
    for name, kind in _feature_kinds(profile).items():
        col = both[name]
        if kind == "numeric":
            parts.append(pd.DataFrame({name: pd.to_numeric(col, errors="coerce").astype(float)}))
        elif kind == "date":
            parts.append(_date_parts(col).add_prefix(f"{name}_"))
        elif kind == "text":
            parts.append(_text_features(col, text_tokens, text_svd).add_prefix(f"{name}_"))
        else:
            text = col.astype("string")
            counts = text.map(text.value_counts(dropna=False)).astype(float)
            frame = pd.DataFrame({f"{name}_count": counts.to_numpy()})
            n_unique = text.nunique(dropna=True)
            words = name_words(text, n_unique)
            if words is not None:
                parts.append(words.add_prefix(f"{name}_words_").reset_index(drop=True))
            if native_categorical and n_unique <= HIGH_CARDINALITY:
                frame[name] = pd.Categorical(text.to_numpy(dtype=object))
            else:
                # Codes ordered by frequency keep rare levels together at one end.
                order = {v: i for i, v in enumerate(text.value_counts().index)}
                frame[name] = text.map(order).astype(float).to_numpy()
            parts.append(frame)
    features = pd.concat([p.reset_index(drop=True) for p in parts], axis=1)
    features.columns = _unique_names(features.columns)
    return features.iloc[:n_train].reset_index(drop=True), features.iloc[n_train:].reset_index(drop=True)


def linear_features(train: pd.DataFrame, test: pd.DataFrame,
                    profile: CompetitionProfile) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """A sparse design matrix for linear models: scaled numerics (+log, +missing flags), one-hot, TF-IDF."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import OneHotEncoder

    both = pd.concat([train, test], ignore_index=True)
    n_train = len(train)
    dense: list[pd.DataFrame] = []
    one_hot: list[pd.Series] = []
    blocks: list[sparse.spmatrix] = []
    for name, kind in _feature_kinds(profile).items():
        col = both[name]
        if kind == "numeric":
            values = pd.to_numeric(col, errors="coerce").astype(float)
            frame = pd.DataFrame({name: values})
            finite = values.dropna()
            if len(finite) and float(finite.to_numpy().min()) >= 0 and float(finite.skew()) > 1.0:  # type: ignore[arg-type]
                frame[f"{name}_log"] = np.log1p(values)
            if values.isna().any():
                frame[f"{name}_missing"] = values.isna().astype(float)
            dense.append(frame)
            if values.nunique() <= 12:
                one_hot.append(values.astype("string").rename(name))
        elif kind == "date":
            parts = _date_parts(col)
            dense.append(parts.add_prefix(f"{name}_"))
            one_hot.append(parts["month"].astype("string").rename(f"{name}_month"))
            one_hot.append(parts["dayofweek"].astype("string").rename(f"{name}_dow"))
        elif kind == "text":
            try:
                vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20_000, sublinear_tf=True)
                blocks.append(vectorizer.fit_transform(col.fillna("").astype(str)))
            except ValueError:
                pass
            dense.append(_text_features(col, 0, 0).add_prefix(f"{name}_"))
        else:
            one_hot.append(col.astype("string").fillna("__missing__").rename(name))
    if dense:
        numeric = pd.concat(dense, axis=1)
        numeric = numeric.fillna(numeric.iloc[:n_train].median()).fillna(0.0)
        mean, std = numeric.iloc[:n_train].mean(), numeric.iloc[:n_train].std().replace(0, 1).fillna(1)
        scaled = ((numeric - mean) / std).clip(-8, 8)
        blocks.append(sparse.csr_matrix(scaled.to_numpy(dtype=float)))
    if one_hot:
        cats = pd.concat(one_hot, axis=1).fillna("__missing__").astype(str)
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=3, max_categories=200)
        blocks.append(encoder.fit(cats.iloc[:n_train]).transform(cats))
    # No usable column (every one constant): an empty matrix, to which a program may add its own columns.
    matrix = sparse.hstack(blocks).tocsr() if blocks else sparse.csr_matrix((len(both), 0))
    return matrix[:n_train], matrix[n_train:]


def _unique_names(columns: pd.Index) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for raw in columns:
        name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(raw))
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


# ----------------------------------------------------------------------------- targets


def _model_target(profile: CompetitionProfile, y: np.ndarray,
                  spec: ModelSpec | None = None) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Targets trained on a transformed scale and the inverse for predictions.

    Log for RMSLE always; for other metrics when the candidate asks for it (``features["target"] ==
    "log"``: the plan pairs a log-target model with a raw-target one and CV decides between them).
    """
    if on_log_scale(profile, y, spec):
        return np.log1p(y), np.expm1
    return y, lambda p: p


def on_log_scale(profile: CompetitionProfile, y: np.ndarray, spec: ModelSpec | None = None) -> bool:
    """Whether a regression target is trained as log1p(target) (``_model_target``)."""
    wants_log = profile.metric == "rmsle" or (spec is not None and spec.features.get("target") == "log")
    return bool(wants_log and np.nanmin(y) > -1)


def absolute_loss(profile: CompetitionProfile, y: np.ndarray, spec: ModelSpec | None = None) -> bool:
    """Whether a regression booster minimises absolute error: for MAE metrics, on the raw scale only.

    On the log scale the squared loss is the one to use: its fit (the mean of the logs) is near the median
    of a skewed target, which is what MAE asks for, and it converges faster than the absolute loss, whose
    gradient is only a sign. So an MAE competition's log-target twin is a squared-loss model that CV
    weighs against the raw-scale absolute-loss ones.
    """
    return profile.metric in ("mae", "medae") and not on_log_scale(profile, y, spec)


def _n_outputs(profile: CompetitionProfile, y: np.ndarray) -> int:
    if is_classification(profile):
        return len(profile.classes or [])
    return y.shape[1] if y.ndim == 2 else 1


# ----------------------------------------------------------------------------- model families

FitResult = tuple[np.ndarray, np.ndarray]


def _columns_of(profile: CompetitionProfile, y: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """One learning problem per target column (multi-target tasks train one model per column)."""
    if y.ndim == 2:
        kind = "binary" if profile.task == "multilabel" else "regression"
        return [(kind, y[:, j]) for j in range(y.shape[1])]
    if is_classification(profile):
        return [("binary" if profile.task == "binary" else "multiclass", y)]
    return [("regression", y)]


def _stack(profile: CompetitionProfile, outputs: list[np.ndarray]) -> np.ndarray:
    if len(outputs) == 1:
        return outputs[0]
    return np.column_stack(outputs)


def train_lightgbm(profile: CompetitionProfile, spec: ModelSpec, X: pd.DataFrame, X_test: pd.DataFrame,
                   y: np.ndarray, folds: Folds, deadline: Deadline) -> FitResult:
    """LightGBM on the given features: early stopping on each fold, averaged over the spec's seeds."""
    import lightgbm as lgb

    params: dict[str, Any] = {
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_bin": 255,
        "cat_smooth": 10.0,
        "min_data_per_group": 20,
        "verbosity": -1,
        "num_threads": thread_count(len(X)),
    }
    params.update({k: v for k, v in spec.params.items() if k not in LOOP_PARAMS})
    n_rounds = int(spec.params.get("n_rounds", 5000))
    weights = fold_weights(profile, folds)
    oof_cols, test_cols = [], []
    columns = _columns_of(profile, y)
    for c, (kind, target) in enumerate(columns):
        target, inverse = _model_target(profile, target, spec) if kind == "regression" else (target, lambda p: p)
        task_params = dict(params)
        if kind == "binary":
            task_params["objective"] = "binary"
        elif kind == "multiclass":
            task_params.update(objective="multiclass", num_class=len(profile.classes or []))
        else:
            task_params.setdefault("objective", "l1" if absolute_loss(profile, y, spec) else "regression")

        def time_rounds(rounds: int, task_params: dict[str, Any] = task_params, target: np.ndarray = target) -> float:
            tr, va = folds[0]
            started = time.monotonic()
            dtrain = lgb.Dataset(X.iloc[tr], target[tr])
            _train_booster(lgb, task_params, dtrain, lgb.Dataset(X.iloc[va], target[va], reference=dtrain),
                           rounds, rounds, float("inf"))
            return time.monotonic() - started

        def fold_seconds(fits_left: int = len(folds) * (len(columns) - c)) -> float:
            return 0.8 * deadline.remaining() / fits_left  # this column's folds and the other columns' after it

        patience = fit_rate_to_budget(task_params, spec.params.get("budget_rounds"),
                                      int(spec.params.get("early_stopping", 100)), time_rounds, fold_seconds)
        oof_sum: np.ndarray | None = None
        test_sum: np.ndarray | None = None
        for s, seed in enumerate(spec.seeds):
            if s > 0 and deadline.fraction_used() * (s + 1) / s > 0.9:
                break  # another seed would not finish in time
            task_params["seed"] = seed
            oof = np.zeros((len(target), task_params.get("num_class", 1)))
            test_pred = np.zeros((len(X_test), task_params.get("num_class", 1)))
            for i, (tr, va) in enumerate(folds):
                dtrain = lgb.Dataset(X.iloc[tr], target[tr])
                dvalid = lgb.Dataset(X.iloc[va], target[va], reference=dtrain)
                # Each remaining fold of the first seed gets an equal share of the time left, so a
                # slow model stops boosting early instead of being killed without output.
                stop_at = time.monotonic() + max(1.0, 0.9 * deadline.remaining()) / (len(folds) - i)
                booster = _train_booster(lgb, task_params, dtrain, dvalid, n_rounds, patience, stop_at)
                oof[va] = booster.predict(X.iloc[va], num_iteration=booster.best_iteration).reshape(len(va), -1)
                test_pred += booster.predict(X_test, num_iteration=booster.best_iteration).reshape(
                    len(X_test), -1) * weights[i]
            oof_sum = oof if oof_sum is None else oof_sum + oof
            test_sum = test_pred if test_sum is None else test_sum + test_pred
            n_done = s + 1
        assert oof_sum is not None and test_sum is not None
        oof_mean, test_mean = seed_means(kind, y, oof_sum, test_sum, n_done, inverse)
        oof_cols.append(oof_mean)
        test_cols.append(test_mean)
    return _stack(profile, oof_cols), _stack(profile, test_cols)


def seed_means(kind: str, y: np.ndarray, oof_sum: np.ndarray, test_sum: np.ndarray, n_seeds: int,
               inverse: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One target column's booster outputs (summed over seeds, 2-D) as predictions in prediction space."""
    oof_mean, test_mean = oof_sum / n_seeds, test_sum / n_seeds
    if kind == "binary":
        oof_mean, test_mean = oof_mean[:, 0], test_mean[:, 0]
        if y.ndim == 1:  # a binary task: two probability columns
            oof_mean = np.column_stack([1 - oof_mean, oof_mean])
            test_mean = np.column_stack([1 - test_mean, test_mean])
    elif kind == "regression":
        oof_mean, test_mean = inverse(oof_mean[:, 0]), inverse(test_mean[:, 0])
    return oof_mean, test_mean


def _time_guard(lgb: Any, stop_at: float) -> Callable[[Any], None]:
    def callback(env: Any) -> None:
        if time.monotonic() > stop_at:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    callback.order = 40  # type: ignore[attr-defined]  # after LightGBM's own early stopping (30)
    return callback


def _train_booster(lgb: Any, params: dict[str, Any], dtrain: Any, dvalid: Any, n_rounds: int, patience: int,
                   stop_at: float) -> Any:
    callbacks = [lgb.early_stopping(patience, verbose=False), _time_guard(lgb, stop_at)]
    try:
        return lgb.train(params, dtrain, num_boost_round=n_rounds, valid_sets=[dvalid], callbacks=callbacks)
    except lgb.basic.LightGBMError as exc:
        if params.get("device_type") in ("gpu", "cuda"):
            # A LightGBM build without GPU support: same model on the CPU rather than a failed attempt.
            log.warning("LightGBM GPU training unavailable (%s); using the CPU", exc)
            params["device_type"] = "cpu"
            return lgb.train(params, dtrain, num_boost_round=n_rounds, valid_sets=[dvalid], callbacks=callbacks)
        raise


def train_linear(profile: CompetitionProfile, spec: ModelSpec, X: Any, X_test: Any, y: np.ndarray, folds: Folds,
                 deadline: Deadline) -> FitResult:
    """Ridge or logistic regression on a (sparse) design matrix, its strength chosen on the folds."""
    from sklearn.linear_model import LogisticRegression, Ridge

    X, X_test = _matrix(X), _matrix(X_test)
    strengths = [float(c) for c in spec.params.get("strengths", [0.03, 0.1, 0.3, 1.0, 3.0])]
    oof_cols, test_cols = [], []
    for kind, target in _columns_of(profile, y):
        target, inverse = _model_target(profile, target, spec) if kind == "regression" else (target, lambda p: p)

        def model_for(strength: float, kind: str = kind) -> Any:
            if kind == "regression":
                return Ridge(alpha=1.0 / strength)
            return LogisticRegression(C=strength, max_iter=3000)

        best: tuple[float, np.ndarray, float] | None = None
        scored = predicted_rows(len(target), folds)
        for i, strength in enumerate(strengths):
            if i > 0 and deadline.fraction_used() > 0.7:
                break
            oof = _oof_predictions(model_for(strength), X, target, folds, kind)
            loss = _selection_loss(kind, target[scored], oof[scored])
            if best is None or loss < best[0]:
                best = (loss, oof, strength)
        assert best is not None
        _, oof, strength = best
        model = model_for(strength).fit(X, target)
        test_pred = model.predict_proba(X_test) if kind != "regression" else model.predict(X_test)
        oof_cols.append(_finish(kind, y, oof, inverse))
        test_cols.append(_finish(kind, y, test_pred, inverse))
    return _stack(profile, oof_cols), _stack(profile, test_cols)


def _matrix(X: Any) -> Any:
    """Rows indexable by position: a frame becomes a float array; arrays and sparse matrices stay."""
    return X.to_numpy(dtype=float) if isinstance(X, pd.DataFrame) else X


def _oof_predictions(model: Any, X: Any, target: np.ndarray, folds: Folds, kind: str) -> np.ndarray:
    from sklearn.base import clone

    width = len(np.unique(target)) if kind != "regression" else 1
    oof = np.zeros((len(target), width)) if kind != "regression" else np.zeros(len(target))
    for tr, va in folds:
        oof[va] = _predict_fold(clone(model).fit(X[tr], target[tr]), X[va], kind, width)
    return oof


def _predict_fold(fitted: Any, X: Any, kind: str, width: int) -> np.ndarray:
    """A fold model's predictions; class probabilities in all ``width`` columns even when the fold's
    training rows lacked a class (an early window of time-ordered folds)."""
    if kind == "regression":
        return np.asarray(fitted.predict(X))
    proba = np.zeros((X.shape[0], width))
    proba[:, np.asarray(fitted.classes_, dtype=int)] = fitted.predict_proba(X)
    return proba


def _forest_oof_predictions(model: Any, X: np.ndarray, target: np.ndarray, folds: Folds, kind: str,
                            deadline: Deadline) -> tuple[np.ndarray, int]:
    """Out-of-fold predictions with as many trees as the time budget allows (at most the model's own)."""
    from sklearn.base import clone

    wanted = int(model.n_estimators)
    probe_trees = min(10, wanted)
    tr, va = folds[0]
    first = clone(model).set_params(n_estimators=probe_trees, warm_start=True)
    started = time.monotonic()
    first.fit(X[tr], target[tr])
    per_tree = (time.monotonic() - started) / probe_trees
    # len(folds) fold fits plus the final fit on all rows, within most of the time left.
    affordable = 0.8 * deadline.remaining() / (per_tree * (len(folds) + 1) + 1e-9)
    n_trees = int(max(probe_trees, min(wanted, affordable)))
    if n_trees > probe_trees:
        first.set_params(n_estimators=n_trees).fit(X[tr], target[tr])
    width = len(np.unique(target)) if kind != "regression" else 1
    oof = np.zeros((len(target), width)) if kind != "regression" else np.zeros(len(target))
    oof[va] = _predict_fold(first, X[va], kind, width)
    for tr, va in folds[1:]:
        oof[va] = _predict_fold(clone(model).set_params(n_estimators=n_trees).fit(X[tr], target[tr]), X[va], kind,
                                width)
    return oof, n_trees


def _selection_loss(kind: str, target: np.ndarray, oof: np.ndarray) -> float:
    """Log loss for classifiers, squared error for regressors: smooth losses to pick a strength."""
    if kind == "regression":
        return float(np.mean((oof - target) ** 2))
    probs = np.clip(oof[np.arange(len(target)), target.astype(int)], 1e-15, 1)
    return float(-np.mean(np.log(probs)))


def _finish(kind: str, y: np.ndarray, pred: np.ndarray, inverse: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    if kind == "regression":
        return inverse(pred)
    if kind == "binary" and y.ndim == 2:
        return pred[:, 1]
    return pred


def train_forest(profile: CompetitionProfile, spec: ModelSpec, X: pd.DataFrame, X_test: pd.DataFrame,
                 y: np.ndarray, folds: Folds, deadline: Deadline) -> FitResult:
    """Extra trees or a random forest (``spec.family``), as many trees as the time budget allows."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    fill = X.median(numeric_only=True)
    X_arr, X_test_arr = X.fillna(fill).fillna(0).to_numpy(), X_test.fillna(fill).fillna(0).to_numpy()
    extra = spec.family == "extra_trees"
    params: dict[str, Any] = {"n_estimators": 400, "min_samples_leaf": 2, "max_features": 0.5,
                              "n_jobs": thread_count(len(X_arr))}
    if len(X_arr) > FOREST_MAX_ROWS:
        # Each tree sees a bootstrap sample of at most FOREST_MAX_ROWS rows: deep trees on all rows of a
        # large table cost minutes, and averaging many trees on samples loses little.
        params.update(bootstrap=True, max_samples=FOREST_MAX_ROWS / len(X_arr))
    params.update(spec.params)
    oof_cols, test_cols = [], []
    for kind, target in _columns_of(profile, y):
        target, inverse = _model_target(profile, target, spec) if kind == "regression" else (target, lambda p: p)
        if kind == "regression":
            model: Any = (ExtraTreesRegressor if extra else RandomForestRegressor)(random_state=spec.seeds[0], **params)
        else:
            model = (ExtraTreesClassifier if extra else RandomForestClassifier)(random_state=spec.seeds[0], **params)
        oof, n_trees = _forest_oof_predictions(model, X_arr, target, folds, kind, deadline)
        fitted = model.set_params(n_estimators=n_trees).fit(X_arr, target)
        test_pred = fitted.predict_proba(X_test_arr) if kind != "regression" else fitted.predict(X_test_arr)
        oof_cols.append(_finish(kind, y, oof, inverse))
        test_cols.append(_finish(kind, y, test_pred, inverse))
    return _stack(profile, oof_cols), _stack(profile, test_cols)


def train_sklearn(profile: CompetitionProfile, spec: ModelSpec, X: Any, X_test: Any, y: np.ndarray,
                  folds: Folds, make_model: Callable[[str], Any]) -> FitResult:
    """Any scikit-learn estimator: out-of-fold predictions, and test predictions of a fit on every row.

    ``make_model(kind)`` returns a fresh estimator for ``kind`` ("regression", "binary", "multiclass");
    classifiers must have ``predict_proba``.
    """
    X, X_test = _matrix(X), _matrix(X_test)
    oof_cols, test_cols = [], []
    for kind, target in _columns_of(profile, y):
        target, inverse = _model_target(profile, target, spec) if kind == "regression" else (target, lambda p: p)
        oof = _oof_predictions(make_model(kind), X, target, folds, kind)
        model = make_model(kind).fit(X, target)
        test_pred = model.predict_proba(X_test) if kind != "regression" else model.predict(X_test)
        oof_cols.append(_finish(kind, y, oof, inverse))
        test_cols.append(_finish(kind, y, test_pred, inverse))
    return _stack(profile, oof_cols), _stack(profile, test_cols)


def train_knn(profile: CompetitionProfile, spec: ModelSpec, X: Any, X_test: Any, y: np.ndarray,
              folds: Folds) -> FitResult:
    """k nearest neighbours on a scaled design matrix (``linear_features``): a model unlike the trees, for blends."""
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    params: dict[str, Any] = {"n_neighbors": 25, "weights": "distance", "n_jobs": thread_count(X.shape[0])}
    params.update(spec.params)

    def make_model(kind: str) -> Any:
        return KNeighborsRegressor(**params) if kind == "regression" else KNeighborsClassifier(**params)

    return train_sklearn(profile, spec, X, X_test, y, folds, make_model)
