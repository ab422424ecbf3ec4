from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from batch_agent.solver.errors import InputError
from batch_agent.solver.metrics import METRICS
from batch_agent.solver.scoring import _SCORERS, is_better, score

RNG = np.random.default_rng(0)
N = 200
Y_BIN = RNG.integers(0, 2, N)
P_BIN = np.clip(Y_BIN * 0.3 + RNG.random(N) * 0.7, 0, 1)
Y_CLS = RNG.integers(0, 4, N)
P_CLS = RNG.random((N, 4)) + np.eye(4)[Y_CLS]
L_PRED = np.where(RNG.random(N) < 0.7, Y_CLS, RNG.integers(0, 4, N))
Y_REG = RNG.random(N) * 100
P_REG = Y_REG + RNG.normal(0, 10, N)


def test_every_registered_metric_can_be_scored() -> None:
    assert set(_SCORERS) | {"map_at_k"} == set(METRICS)


def test_roc_auc_matches_sklearn() -> None:
    assert score("roc_auc", Y_BIN, P_BIN) == pytest.approx(skm.roc_auc_score(Y_BIN, P_BIN))
    assert score("auc", Y_BIN, P_BIN) == pytest.approx(skm.roc_auc_score(Y_BIN, P_BIN))


def test_roc_auc_of_class_probabilities_is_one_vs_rest_macro() -> None:
    expected = skm.roc_auc_score(Y_CLS, P_CLS / P_CLS.sum(1, keepdims=True), multi_class="ovr")
    assert score("roc_auc", Y_CLS, P_CLS / P_CLS.sum(1, keepdims=True)) == pytest.approx(expected)


def test_gini_is_two_auc_minus_one_without_ties() -> None:
    p = RNG.random(N)
    assert score("gini", Y_BIN, p) == pytest.approx(2 * skm.roc_auc_score(Y_BIN, p) - 1)


def test_gini_of_perfect_and_reversed_order() -> None:
    y = np.array([0.0, 1, 0, 1, 1])
    assert score("gini", y, y) == pytest.approx(1.0)
    assert score("gini", y, -y + 0.5 * np.arange(5) * 1e-3) == pytest.approx(-1.0)


def test_binary_log_loss_matches_sklearn() -> None:
    assert score("log_loss", Y_BIN, P_BIN) == pytest.approx(skm.log_loss(Y_BIN, P_BIN))


def test_multiclass_log_loss_renormalises_rows_like_kaggle() -> None:
    normalised = P_CLS / P_CLS.sum(axis=1, keepdims=True)
    expected = skm.log_loss(Y_CLS, normalised, labels=[0, 1, 2, 3])
    assert score("log_loss", Y_CLS, P_CLS) == pytest.approx(expected)
    assert score("logloss", Y_CLS, normalised) == pytest.approx(expected)


def test_log_loss_clips_certain_wrong_predictions() -> None:
    value = score("log_loss", np.array([1, 0]), np.array([0.0, 0.0]))
    assert value == pytest.approx(-math.log(1e-15) / 2)
    multi = score("log_loss", np.array([0]), np.array([[0.0, 1.0, 0.0]]))
    assert multi == pytest.approx(-math.log(1e-15))


def test_multiclass_log_loss_rejects_out_of_range_class_index() -> None:
    with pytest.raises(ValueError, match="class indices"):
        score("log_loss", np.array([0, 3]), np.array([[0.5, 0.5], [0.5, 0.5]]))


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("accuracy", skm.accuracy_score),
        ("f1_macro", lambda t, p: skm.f1_score(t, p, average="macro")),
        ("f1_micro", lambda t, p: skm.f1_score(t, p, average="micro")),
        ("f1_weighted", lambda t, p: skm.f1_score(t, p, average="weighted")),
        ("mcc", skm.matthews_corrcoef),
        ("balanced_accuracy", skm.balanced_accuracy_score),
        ("qwk", lambda t, p: skm.cohen_kappa_score(t, p, weights="quadratic")),
    ],
)
def test_label_metrics_match_sklearn(metric: str, reference: object) -> None:
    assert callable(reference)
    assert score(metric, Y_CLS, L_PRED) == pytest.approx(reference(Y_CLS, L_PRED))


def test_binary_f1_uses_positive_label_one() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([1, 0, 0, 1, 1])
    # tp=2, fp=1, fn=1 -> 2*2 / (2*2 + 1 + 1)
    assert score("f1", y, p) == pytest.approx(4 / 6)


def test_accuracy_of_string_labels() -> None:
    assert score("accuracy", np.array(["a", "b", "c"]), np.array(["a", "b", "b"])) == pytest.approx(2 / 3)


def test_qwk_hand_computed() -> None:
    # Two raters disagreeing by one grade on one of four items, grades 0..2.
    y = np.array([0, 1, 2, 2])
    p = np.array([0, 1, 2, 1])
    assert score("qwk", y, p) == pytest.approx(skm.cohen_kappa_score(y, p, weights="quadratic"))
    assert score("qwk", y, y) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("rmse", lambda t, p: math.sqrt(skm.mean_squared_error(t, p))),
        ("mse", skm.mean_squared_error),
        ("mae", skm.mean_absolute_error),
        ("medae", skm.median_absolute_error),
        ("r2", skm.r2_score),
        ("mape", lambda t, p: 100 * skm.mean_absolute_percentage_error(t, p)),
    ],
)
def test_value_metrics_match_sklearn(metric: str, reference: object) -> None:
    assert callable(reference)
    assert score(metric, Y_REG, P_REG) == pytest.approx(reference(Y_REG, P_REG))


def test_rmsle_matches_sklearn() -> None:
    p = np.abs(P_REG)
    expected = math.sqrt(skm.mean_squared_log_error(Y_REG, p))
    assert score("rmsle", Y_REG, p) == pytest.approx(expected)


def test_rmsle_rejects_negative_predictions() -> None:
    with pytest.raises(ValueError, match="negative"):
        score("rmsle", np.array([1.0, 2.0]), np.array([1.0, -0.5]))


def test_smape_hand_computed_in_percent() -> None:
    y = np.array([100.0, 0.0, 50.0])
    p = np.array([110.0, 0.0, 0.0])
    # 2*10/210, 0 (both zero), 2*50/50 -> mean * 100
    assert score("smape", y, p) == pytest.approx(100 * (20 / 210 + 0 + 2) / 3)


def test_mcrmse_is_mean_of_column_rmses() -> None:
    y = np.array([[1.0, 0.0], [3.0, 0.0]])
    p = np.array([[2.0, 2.0], [3.0, 0.0]])
    # column 0: sqrt((1+0)/2); column 1: sqrt((4+0)/2)
    assert score("mcrmse", y, p) == pytest.approx((math.sqrt(0.5) + math.sqrt(2.0)) / 2)


def test_mean_auc_averages_column_aucs() -> None:
    y = RNG.integers(0, 2, (N, 3))
    p = RNG.random((N, 3)) + 0.5 * y
    expected = np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(3)])
    assert score("mean_auc", y, p) == pytest.approx(expected)


def test_map_at_k_hand_computed() -> None:
    y = np.array(["a", "b", "c", "d"], dtype=object)
    p = np.array([["a", "x", "y"], ["x", "b", "y"], ["x", "y", "c"], ["x", "y", "z"]], dtype=object)
    assert score("map_at_k", y, p) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)


def test_map_at_k_honours_k_from_argument_and_name() -> None:
    y = np.array([3, 1])
    p = np.array([[1, 2, 3], [1, 2, 3]])
    assert score("map_at_k", y, p, k=2) == pytest.approx((0 + 1) / 2)
    assert score("map@2", y, p) == pytest.approx((0 + 1) / 2)
    assert score("map@3", y, p) == pytest.approx((1 / 3 + 1) / 2)


def test_map_at_k_reads_space_separated_strings() -> None:
    y = np.array(["12", "7"])
    p = np.array(["7 12 3", "7"])
    assert score("map@3", y, p) == pytest.approx((1 / 2 + 1) / 2)


def test_mismatched_lengths_and_nan_are_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        score("rmse", np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        score("roc_auc", np.array([0, 1]), np.array([0.5, np.nan]))


def test_unknown_metric_is_an_input_error() -> None:
    with pytest.raises(InputError):
        score("nope", Y_BIN, P_BIN)


def test_is_better_follows_the_metric_direction() -> None:
    assert is_better("roc_auc", 0.9, 0.8)
    assert not is_better("roc_auc", 0.8, 0.8)
    assert is_better("rmse", 1.0, 2.0)
    assert not is_better("log_loss", 0.7, 0.6)
    assert is_better("rmse", 5.0, float("nan"))
    assert not is_better("accuracy", float("nan"), 0.1)


def _kaggle_qwk(actual: list[int], predicted: list[int]) -> float:
    """Kaggle's reference quadratic weighted kappa, written out loop by loop."""
    low, high = min(actual + predicted), max(actual + predicted)
    size = high - low + 1
    observed = [[0.0] * size for _ in range(size)]
    for a, b in zip(actual, predicted, strict=True):
        observed[a - low][b - low] += 1
    rows = [sum(r) for r in observed]
    cols = [sum(observed[i][j] for i in range(size)) for j in range(size)]
    n = len(actual)
    numerator = denominator = 0.0
    for i in range(size):
        for j in range(size):
            weight = (i - j) ** 2 / (size - 1) ** 2
            numerator += weight * observed[i][j]
            denominator += weight * rows[i] * cols[j] / n
    return 1.0 - numerator / denominator


def test_qwk_counts_unused_ratings_in_distances_like_kaggle() -> None:
    actual = [0, 1, 3, 3, 1, 0]
    predicted = [0, 3, 1, 3, 1, 1]
    assert score("qwk", np.array(actual), np.array(predicted)) == pytest.approx(_kaggle_qwk(actual, predicted))
    # scikit-learn closes the gap at rating 2, so it disagrees here.
    assert _kaggle_qwk(actual, predicted) != pytest.approx(
        skm.cohen_kappa_score(actual, predicted, weights="quadratic")
    )


def test_qwk_rejects_fractional_ratings() -> None:
    with pytest.raises(ValueError, match="integer"):
        score("qwk", np.array([1, 2]), np.array([1.5, 2]))


def test_roc_auc_with_tied_scores_matches_sklearn() -> None:
    p = np.round(P_BIN, 1)
    assert score("roc_auc", Y_BIN, p) == pytest.approx(skm.roc_auc_score(Y_BIN, p))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_label_metrics_count_labels_only_predicted_like_sklearn() -> None:
    y = np.array(["cat", "dog", "dog", "cat"])
    p = np.array(["cat", "dog", "bird", "dog"])
    assert score("f1_macro", y, p) == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert score("f1_weighted", y, p) == pytest.approx(skm.f1_score(y, p, average="weighted", zero_division=0))
    assert score("balanced_accuracy", y, p) == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert score("mcc", y, p) == pytest.approx(skm.matthews_corrcoef(y, p))


def test_binary_f1_and_mcc_match_sklearn_on_thresholded_scores() -> None:
    decided = (P_BIN >= 0.5).astype(int)
    assert score("f1", Y_BIN, decided) == pytest.approx(skm.f1_score(Y_BIN, decided))
    assert score("mcc", Y_BIN, decided) == pytest.approx(skm.matthews_corrcoef(Y_BIN, decided))
    assert score("mcc", Y_BIN, np.zeros(N, dtype=int)) == 0.0
    as_bool = decided.astype(bool)
    assert score("f1", Y_BIN.astype(bool), as_bool) == pytest.approx(skm.f1_score(Y_BIN, decided))


def test_binary_f1_rejects_labels_other_than_zero_and_one() -> None:
    with pytest.raises(ValueError, match="0/1"):
        score("f1", np.array(["yes", "no"]), np.array(["yes", "yes"]))
