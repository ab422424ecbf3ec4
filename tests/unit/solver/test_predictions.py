"""Decisions fitted on out-of-fold predictions, and the submission table they produce."""

from __future__ import annotations

import numpy as np
import pandas as pd

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.predictions import cv_score, decide, fit_decision, submission_frame


def profile(**changes: object) -> CompetitionProfile:
    base = CompetitionProfile(
        data_dir=".", id_column="id", target_columns=["y"], submission_columns=["id", "y"], task="binary",
        prediction_format="label", classes=["0", "1"], metric="accuracy", n_train=10, n_test=3,
    )
    return base.model_copy(update=changes)


def two_columns(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p, p])


def test_f1_threshold_is_tuned_below_one_half_for_a_rare_positive_class() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(0.05 + 0.3 * y + rng.normal(0, 0.08, size=2000), 0, 1)
    prof = profile(metric="f1")
    decision = fit_decision(prof, y, two_columns(p))
    assert decision.threshold is not None and decision.threshold < 0.5
    assert cv_score(prof, y, two_columns(p), decision) > cv_score(prof, y, two_columns(p), decision.model_copy(
        update={"threshold": None}))


def test_log_loss_temperature_sharpens_underconfident_probabilities() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=1500)
    logits = np.eye(3)[y] * 1.0 + rng.normal(0, 0.3, size=(1500, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    prof = profile(task="multiclass", classes=["a", "b", "c"], prediction_format="class_probabilities",
                   metric="log_loss", submission_columns=["id", "a", "b", "c"])
    decision = fit_decision(prof, y, probs)
    assert decision.temperature is not None and decision.temperature < 1.0
    assert cv_score(prof, y, probs, decision) < cv_score(prof, y, probs, decision.model_copy(
        update={"temperature": None}))


def test_qwk_cutpoints_never_score_worse_than_argmax_cuts() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, size=800)
    probs = np.full((800, 5), 0.05)
    probs[np.arange(800), np.clip(y + rng.integers(-1, 2, size=800), 0, 4)] += 0.8
    probs /= probs.sum(axis=1, keepdims=True)
    prof = profile(task="multiclass", classes=["1", "2", "3", "4", "5"], metric="qwk")
    decision = fit_decision(prof, y, probs)
    assert decision.cutpoints is not None and len(decision.cutpoints) == 4
    plain = cv_score(prof, y, probs, decision.model_copy(update={"cutpoints": [0.5, 1.5, 2.5, 3.5]}))
    assert cv_score(prof, y, probs, decision) >= plain


def test_rmsle_predictions_are_clipped_at_zero() -> None:
    prof = profile(task="regression", classes=None, prediction_format="value", metric="rmsle")
    decided = decide(prof, np.array([-3.0, 2.0]), fit_decision(prof, np.array([1.0, 2.0]), np.array([1.0, 2.0])))
    assert decided.tolist() == [0.0, 2.0]


def test_label_submission_writes_class_names_in_sample_column_order() -> None:
    prof = profile(classes=["No", "Yes"], submission_columns=["id", "y"])
    frame = submission_frame(prof, pd.Series([7, 8, 9]), two_columns(np.array([0.2, 0.9, 0.6])),
                             fit_decision(prof, np.array([0, 1]), two_columns(np.array([0.1, 0.9]))))
    assert frame.to_dict("list") == {"id": [7, 8, 9], "y": ["No", "Yes", "Yes"]}


def test_ranked_labels_submission_lists_top_k_classes() -> None:
    prof = profile(task="multiclass", classes=["a", "b", "c", "d"], prediction_format="ranked_labels",
                   metric="map_at_k", map_k=2)
    probs = np.array([[0.1, 0.5, 0.3, 0.1], [0.7, 0.1, 0.1, 0.1]])
    frame = submission_frame(prof, pd.Series([1, 2]), probs, fit_decision(prof, np.array([1, 0]), probs))
    assert frame["y"].tolist() == ["b c", "a b"]


def test_class_probability_submission_has_one_column_per_class() -> None:
    prof = profile(task="multiclass", classes=["sun", "fog", "rain"], prediction_format="class_probabilities",
                   metric="log_loss", submission_columns=["id", "sun", "fog", "rain"])
    probs = np.array([[0.2, 0.3, 0.5]])
    frame = submission_frame(prof, pd.Series([4]), probs, fit_decision(prof, np.array([0, 1, 2]), np.eye(3)))
    assert list(frame.columns) == ["id", "sun", "fog", "rain"]
    assert np.isclose(frame[["sun", "fog", "rain"]].to_numpy().sum(), 1.0)
