"""The configurations each booster family is tuned with once the first-pass models have trained.

The first pass trains one configuration per family (``templates._candidates``): moderate trees, mild
regularisation, the defaults that win most often. What wins on a given table is often a different
*kind* of model (deeper or shallower trees, much stronger or weaker regularisation, more randomness),
so tuning walks a short ordered list of configurations that each differ from the first pass in one of
those directions, rather than nudging its numbers. The choices follow from what each knob does:

* Leaf sizes scale with the rows: a leaf of 20 rows is noise-fitting on 1,000 rows' coarse splits but
  a fine split of 1,000,000 rows, so minimum leaf sizes are a fraction of the rows, within bounds.
* Small tables (under ``SMALL_ROWS``) overfit before they underfit: their list starts with the strongly
  regularised and the depth-limited configurations, and has a slow, low-rate one, which costs little on
  few rows. Large tables underfit with small trees: their list starts with the high-capacity one.
* Wide tables (features × outputs above ``templates.WIDE_CELLS``) sample fewer features per tree, which
  decorrelates the trees and keeps each round affordable.
* Learning rates sit between 0.01 and 0.05; every configuration says, as ``budget_rounds``, how many
  rounds its rate is expected to need (boosting trades rate for rounds: about ``RATE_ROUNDS`` / rate).
  The program measures what a round costs and raises the rate when those rounds would not fit in the
  time it is given (``training.rate_for_budget``), so a configuration converges in the share of the
  run the scheduler gives it instead of being cut off half-trained.

Stdlib only: the template author (imported by the Lambdas) builds programs from these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Rows below which a table counts as small: leaf sizes of a few rows, the slow configuration.
SMALL_ROWS = 5_000
# Rows above which a table counts as large: the high-capacity configuration first.
LARGE_ROWS = 100_000
# Rounds × learning rate at which a booster typically stops improving on tabular data (0.05 → 400 rounds).
RATE_ROUNDS = 20.0


@dataclass(frozen=True)
class Table:
    """What the configurations depend on: the training rows, the model's features, and the data's kind."""

    rows: int
    features: int
    # Features × classes (or targets) above templates.WIDE_CELLS.
    wide: bool = False
    # Signal likely in categories (templates._categorical_heavy).
    categorical: bool = False


def _rows_fraction(rows: int, fraction: float, low: int, high: int) -> int:
    """A leaf size: ``fraction`` of the rows, within [low, high]."""
    return int(min(high, max(low, round(rows * fraction))))


def _rated(rate: float, params: dict[str, Any]) -> dict[str, Any]:
    return {"learning_rate": rate, **params, "budget_rounds": round(RATE_ROUNDS / rate)}


def configurations(family: str, table: Table) -> list[tuple[str, dict[str, Any]]]:
    """The family's configurations in the order tuning tries them, each as (what it is, its params).

    Empty for a family without a portfolio (the linear model, forests, neighbours).
    """
    if family == "lightgbm":
        found = _lightgbm(table)
    elif family == "xgboost":
        found = _xgboost(table)
    elif family == "catboost":
        found = _catboost(table)
    else:
        return []
    small, large = table.rows < SMALL_ROWS, table.rows >= LARGE_ROWS
    order = (["regularised", "shallow", "slow", "deep", "additive"] if small else
             ["deep", "regularised", "shallow", "randomised", "additive"] if large else
             ["regularised", "deep", "shallow", "randomised", "additive"])
    return [(label, found[label]) for label in order if label in found]


def _lightgbm(table: Table) -> dict[str, dict[str, Any]]:
    n = table.rows
    sample = 0.3 if table.wide else None
    categories: dict[str, Any] = (
        # Native categories split on target statistics of their levels: smooth them harder.
        {"cat_smooth": 30.0, "cat_l2": 20.0, "max_cat_threshold": 16} if table.categorical else {})
    found = {
        # Strong L1/L2 penalties, leaves of ~1% of the rows, half the features and 70% of the rows per tree.
        "regularised": _rated(0.03, {
            "num_leaves": 31, "min_data_in_leaf": _rows_fraction(n, 0.01, 20, 300),
            "feature_fraction": sample or 0.5, "bagging_fraction": 0.7, "bagging_freq": 1,
            "lambda_l1": 1.0, "lambda_l2": 10.0, **categories}),
        # Many leaves, small minimum leaf, light penalties: capacity for interactions on enough rows.
        "deep": _rated(0.05, {
            "num_leaves": 255 if n >= LARGE_ROWS else 63 if n >= SMALL_ROWS else 31,
            "min_data_in_leaf": _rows_fraction(n, 0.001, 3, 50), "feature_fraction": sample or 0.8,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0}),
        # Depth-limited trees with leaf values smoothed towards their parents': additive, low-variance.
        "shallow": _rated(0.05, {
            "max_depth": 3 if n < SMALL_ROWS else 5, "num_leaves": 7 if n < SMALL_ROWS else 31,
            "min_data_in_leaf": _rows_fraction(n, 0.005, 10, 100), "path_smooth": 10.0,
            "feature_fraction": sample or 0.7, "lambda_l2": 5.0}),
        # Extremely randomised split points over many leaves: a different bias, decorrelated from the rest.
        "randomised": _rated(0.05, {
            "extra_trees": True, "num_leaves": 127 if n >= LARGE_ROWS else 63,
            "min_data_in_leaf": _rows_fraction(n, 0.0005, 5, 100), "feature_fraction": sample or 0.7,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 2.0}),
        # Stumps: one split per tree, so the model is a sum of one-feature functions (a boosted additive
        # model, as explainable boosting machines are). Where the target is close to additive, as churn
        # tables often are, it has the least variance of all; it is last because on most tables it loses
        # to trees with interactions, and a stump round costs little.
        "additive": _rated(0.05, {
            "max_depth": 1, "num_leaves": 2, "min_data_in_leaf": _rows_fraction(n, 0.005, 10, 100),
            "feature_fraction": sample or 0.8, "lambda_l2": 1.0}),
    }
    if n < SMALL_ROWS:
        # A low rate with many rounds: on few rows a round costs little, and smaller steps generalise better.
        found["slow"] = _rated(0.01, {
            "num_leaves": 15, "min_data_in_leaf": _rows_fraction(n, 0.01, 5, 50),
            "feature_fraction": sample or 0.6, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 3.0})
    return found


def _xgboost(table: Table) -> dict[str, dict[str, Any]]:
    n = table.rows
    columns = 0.4 if table.wide else None
    found = {
        # Deep depth-wise trees, light penalties, row and column sampling against their variance.
        "deep": _rated(0.05, {
            "max_depth": 8 if n >= SMALL_ROWS else 6, "min_child_weight": _rows_fraction(n, 0.0005, 1, 20),
            "subsample": 0.7, "colsample_bytree": columns or 0.6, "reg_lambda": 2.0, "reg_alpha": 0.0}),
        # Stumps-and-a-bit with heavy penalties and per-split feature sampling.
        "shallow": _rated(0.05, {
            "max_depth": 3, "min_child_weight": _rows_fraction(n, 0.002, 2, 50), "subsample": 0.8,
            "colsample_bytree": 1.0, "colsample_bynode": columns or 0.6, "reg_lambda": 20.0, "reg_alpha": 2.0}),
        # Best-first (leaf-wise) growth, as LightGBM grows trees, under heavy penalties and leaf weights.
        "regularised": _rated(0.04, {
            "grow_policy": "lossguide", "max_depth": 0,
            "max_leaves": 15 if n < SMALL_ROWS else 127 if n >= LARGE_ROWS else 31,
            "min_child_weight": _rows_fraction(n, 0.002, 2, 50), "subsample": 0.8,
            "colsample_bytree": columns or 0.7, "reg_lambda": 10.0, "reg_alpha": 1.0}),
        # Half the rows and columns per tree: strong bagging, a different variance/bias balance.
        "randomised": _rated(0.04, {
            "max_depth": 6, "min_child_weight": _rows_fraction(n, 0.001, 1, 20), "subsample": 0.5,
            "colsample_bytree": columns or 0.5, "reg_lambda": 5.0}),
    }
    if n < SMALL_ROWS:
        found["slow"] = _rated(0.015, {
            "max_depth": 4, "min_child_weight": 3, "subsample": 0.6, "colsample_bytree": columns or 0.5,
            "reg_lambda": 5.0, "reg_alpha": 0.5})
    return found


def _catboost(table: Table) -> dict[str, dict[str, Any]]:
    n = table.rows
    # A level deeper doubles a symmetric tree's leaves and its cost per round: wide tables go one level only.
    deep = 8 if n >= SMALL_ROWS and not table.wide else 7
    found = {
        # The first pass's depth with a much stronger leaf penalty and noisier split scores.
        "regularised": _rated(0.04, {"depth": 6, "l2_leaf_reg": 15.0, "random_strength": 2.0}),
        # Deeper symmetric trees with a stronger leaf penalty: more feature (and category) interactions.
        "deep": _rated(0.05, {"depth": deep, "l2_leaf_reg": 5.0}),
        # Shallow symmetric trees: nearly additive, the low-variance end.
        "shallow": _rated(0.05, {"depth": 4, "l2_leaf_reg": 5.0}),
        # Bernoulli row sampling and noisy split scores: more randomness than the default bootstrap.
        "randomised": _rated(0.05, {
            "bootstrap_type": "Bernoulli", "subsample": 0.66, "random_strength": 3.0, "l2_leaf_reg": 3.0}),
    }
    if n < SMALL_ROWS:
        found["slow"] = _rated(0.02, {"depth": 6, "l2_leaf_reg": 5.0})
    return found
