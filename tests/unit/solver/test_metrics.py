from __future__ import annotations

import pytest

from batch_agent.solver.errors import InputError
from batch_agent.solver.metrics import METRICS, get_metric, known_metrics, metric_k, parse_metric

REQUIRED = [
    "roc_auc", "gini", "log_loss", "accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "mcc",
    "balanced_accuracy", "qwk", "map_at_k", "rmse", "mse", "rmsle", "mae", "medae", "mape", "smape",
    "r2", "mcrmse", "mean_auc",
]  # fmt: skip


def test_registry_holds_every_required_metric_under_its_own_key() -> None:
    assert set(REQUIRED) <= set(known_metrics())
    for name, metric in METRICS.items():
        assert metric.name == name


@pytest.mark.parametrize(
    ("name", "higher", "needs"),
    [
        ("roc_auc", True, "score"),
        ("log_loss", False, "score"),
        ("accuracy", True, "label"),
        ("qwk", True, "label"),
        ("map_at_k", True, "top_k"),
        ("rmsle", False, "value"),
        ("r2", True, "value"),
    ],
)
def test_metric_direction_and_prediction_kind(name: str, higher: bool, needs: str) -> None:
    metric = get_metric(name)
    assert metric.higher_is_better is higher
    assert metric.needs == needs


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("auc", "roc_auc"),
        ("AUC", "roc_auc"),
        ("roc-auc", "roc_auc"),
        ("logloss", "log_loss"),
        ("log-loss", "log_loss"),
        ("RMSLE", "rmsle"),
        ("qwk", "qwk"),
        ("map@5", "map_at_k"),
        ("MAP@K", "map_at_k"),
        ("f1-macro", "f1_macro"),
        ("macro_f1", "f1_macro"),
        ("R2", "r2"),
        ("balanced accuracy", "balanced_accuracy"),
    ],
)
def test_get_metric_accepts_common_aliases(alias: str, key: str) -> None:
    assert get_metric(alias).name == key


def test_map_alias_carries_its_k() -> None:
    assert metric_k("map@5") == 5
    assert metric_k("MAP@K") is None
    assert metric_k("rmse") is None


def test_unknown_metric_raises_input_error_listing_known_names() -> None:
    with pytest.raises(InputError) as info:
        get_metric("banana_score")
    assert "banana_score" in str(info.value)
    assert "roc_auc" in str(info.value) and "rmsle" in str(info.value)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (
            "Submissions are evaluated on area under the ROC curve between the predicted probability",
            "roc_auc",
        ),
        (
            "Submissions are evaluated on the area under the receiver operating characteristic curve.",
            "roc_auc",
        ),
        ("The metric is AUC.", "roc_auc"),
        ("Scored by ROC AUC.", "roc_auc"),
        ("Submissions are evaluated using the multi-class logarithmic loss.", "log_loss"),
        ("Evaluated with log loss.", "log_loss"),
        ("Submissions are scored on the logarithmic loss.", "log_loss"),
        ("The metric is binary cross-entropy.", "log_loss"),
        ("Submissions are evaluated on Root Mean Squared Logarithmic Error (RMSLE).", "rmsle"),
        ("The metric is RMSLE.", "rmsle"),
        ("Submissions are scored on the root mean squared error.", "rmse"),
        ("Submissions are evaluated on RMSE between predicted and observed.", "rmse"),
        ("Submissions are evaluated on mean absolute error (MAE).", "mae"),
        ("Submissions are evaluated on their categorization accuracy.", "accuracy"),
        ("Your score is the percentage of passengers you correctly predict, known as accuracy.", "accuracy"),
        ("Submissions are evaluated using the F1 score.", "f1"),
        ("Submissions are evaluated using the Mean F1-Score.", "f1"),
        ("Submissions are evaluated on macro F1.", "f1_macro"),
        ("Evaluated with the macro-averaged F1 score across classes.", "f1_macro"),
        ("Scored with micro-averaged F1.", "f1_micro"),
        ("The metric is the weighted F1 score.", "f1_weighted"),
        ("Submissions are evaluated on the Matthews correlation coefficient (MCC).", "mcc"),
        ("Submissions are scored based on the quadratic weighted kappa.", "qwk"),
        ("The metric is Cohen's kappa.", "qwk"),
        ("Submissions are evaluated on balanced accuracy.", "balanced_accuracy"),
        ("Submissions are evaluated using the mean column-wise root mean squared error (MCRMSE).", "mcrmse"),
        ("Submissions are evaluated on the coefficient of determination.", "r2"),
        ("The metric is R^2.", "r2"),
        ("Submissions are evaluated using the mean absolute percentage error.", "mape"),
        ("Submissions are evaluated on SMAPE, the symmetric mean absolute percentage error.", "smape"),
        ("Submissions are evaluated using the Normalized Gini Coefficient.", "gini"),
        ("The metric is Gini.", "gini"),
        ("Submissions are evaluated on the median absolute error.", "medae"),
        ("Submissions are evaluated on mean squared error.", "mse"),
        ("Submissions are evaluated on the mean column-wise ROC AUC.", "mean_auc"),
        ("Submissions are evaluated using Mean Columnwise Root Mean Squared Error (MCRMSE).", "mcrmse"),
        ("Submissions are evaluated with the F1-score with macro averaging.", "f1_macro"),
        ("The metric is the F1 score (weighted).", "f1_weighted"),
    ],
)
def test_parse_metric_reads_kaggle_wordings(text: str, name: str) -> None:
    match = parse_metric(text)
    assert match is not None
    assert match.name == name


@pytest.mark.parametrize(
    ("text", "k"),
    [
        ("Submissions are evaluated according to the Mean Average Precision @ 3 (MAP@3).", 3),
        ("The metric is MAP@5.", 5),
        ("Submissions are evaluated on MAP@K.", None),
        ("Scored with mean average precision at 12.", 12),
    ],
)
def test_parse_metric_reads_map_at_k_with_its_k(text: str, k: int | None) -> None:
    match = parse_metric(text)
    assert match is not None
    assert (match.name, match.k) == ("map_at_k", k)


def test_rmsle_wins_over_rmse_it_contains() -> None:
    text = "Submissions are evaluated on the Root-Mean-Squared-Logarithmic-Error between log(1+y) values."
    match = parse_metric(text)
    assert match is not None and match.name == "rmsle"


def test_mean_column_wise_auc_wins_over_plain_auc() -> None:
    text = (
        "Submissions are now evaluated on the mean column-wise ROC AUC. In other words, the score is "
        "the average of the individual AUCs of each predicted column."
    )
    match = parse_metric(text)
    assert match is not None and match.name == "mean_auc"


def test_multiclass_log_loss_is_log_loss_and_phrase_is_reported() -> None:
    match = parse_metric("Submissions are evaluated using the **multi-class logarithmic loss**.")
    assert match is not None
    assert match.name == "log_loss"
    assert match.phrase == "multi-class logarithmic loss"


def test_evaluation_section_wins_over_metrics_mentioned_elsewhere() -> None:
    description = (
        "# Predict churn\n\n## Description\n\nOld models reached 80% accuracy and an RMSE of 3.\n\n"
        "## Evaluation\n\nSubmissions are evaluated on the **area under the ROC curve**.\n\n"
        "## Submission File\n\nid,Churn\n"
    )
    match = parse_metric(description)
    assert match is not None and match.name == "roc_auc"


def test_evaluation_subheadings_stay_in_the_section() -> None:
    description = (
        "## Overview\n\nWe want accuracy.\n\n## Evaluation\n\n### Metric\n\n"
        "Submissions are evaluated with the mean absolute error.\n\n## Timeline\n\nSoon.\n"
    )
    match = parse_metric(description)
    assert match is not None and match.name == "mae"


def test_plain_text_evaluation_heading_is_recognised() -> None:
    description = (
        "Overview\nImprove accuracy of forecasts.\n\nEvaluation\n"
        "Submissions are evaluated on the root mean squared error.\n\nSubmission File\nid,y\n"
    )
    match = parse_metric(description)
    assert match is not None and match.name == "rmse"


def test_metric_in_evaluation_sentence_beats_one_mentioned_in_passing() -> None:
    text = "Accuracy matters to the hospital. Submissions are evaluated on the F1 score of the positive class."
    match = parse_metric(text)
    assert match is not None and match.name == "f1"


def test_description_without_metric_in_section_falls_back_to_whole_text() -> None:
    description = "## Evaluation\n\nSee below.\n\n## Details\n\nWe score submissions by RMSE.\n"
    match = parse_metric(description)
    assert match is not None and match.name == "rmse"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Predict the price of each house. Good luck and have fun!",
        "## Evaluation\n\nSubmissions are compared with the true answers.\n",
        "Use a lightgbm model with early stopping on the map of the city.",
    ],
)
def test_description_without_any_metric_gives_none(text: str) -> None:
    assert parse_metric(text) is None


def test_rmse_between_logarithms_is_rmsle() -> None:
    text = (
        "Submissions are evaluated on Root-Mean-Squared-Error (RMSE) between the logarithm of the "
        "predicted value and the logarithm of the observed sales price."
    )
    match = parse_metric(text)
    assert match is not None and match.name == "rmsle"
    plain = parse_metric("Submissions are evaluated on the RMSE between the predicted and observed values.")
    assert plain is not None and plain.name == "rmse"
