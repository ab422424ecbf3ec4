"""From model outputs to scored, submittable predictions.

Training programs and the solver's blender share this module so that a CV
score means the same thing everywhere. Predictions live in one "prediction
space" per task:

* binary / multiclass: class probabilities, shape (n, K), columns in ``profile.classes`` order;
* regression: values on the target's own scale, shape (n,);
* multi-target regression and multilabel: shape (n, T), columns in ``profile.target_columns`` order.

A :class:`Decision` holds what is fitted on out-of-fold predictions to turn
them into what the metric scores: a threshold for F1/MCC, cut points for
quadratic weighted kappa, a temperature for log loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.profiling import normalise_id
from batch_agent.solver.scoring import score

EPS = 1e-15
_TEMPERATURES = np.exp(np.linspace(np.log(0.4), np.log(2.5), 41))


class Decision(BaseModel):
    threshold: float | None = None
    cutpoints: list[float] | None = None
    temperature: float | None = None
    prior_correction: list[float] | None = None


def encode_target(profile: CompetitionProfile, train: pd.DataFrame) -> np.ndarray:
    """The target as the models see it: class indices (int), values, or an (n, T) matrix."""
    if profile.task in ("multilabel", "multitarget_regression"):
        return train[profile.target_columns].to_numpy(dtype=float)
    column = train[profile.target_columns[0]]
    if profile.classes is None:
        return column.to_numpy(dtype=float)
    index = {c: i for i, c in enumerate(profile.classes)}
    codes = column.map(lambda v: index.get(normalise_id(v), -1) if pd.notna(v) else -1)
    return codes.to_numpy(dtype=int)


def is_classification(profile: CompetitionProfile) -> bool:
    return profile.task in ("binary", "multiclass")


def _with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    logp = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def _ordinal_values(profile: CompetitionProfile) -> np.ndarray:
    try:
        return np.array([float(c) for c in profile.classes or []])
    except ValueError:
        return np.arange(len(profile.classes or []), dtype=float)


def _apply_cutpoints(expected: np.ndarray, cutpoints: list[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(cutpoints), expected).astype(int)


def fit_decision(profile: CompetitionProfile, y: np.ndarray, oof: np.ndarray) -> Decision:
    """Fit the post-processing the metric rewards on out-of-fold predictions."""
    metric, fmt = profile.metric, profile.prediction_format
    if not is_classification(profile):
        return Decision()
    if metric == "log_loss":
        losses = [score("log_loss", y, _with_temperature(oof, t)) for t in _TEMPERATURES]
        return Decision(temperature=float(_TEMPERATURES[int(np.argmin(losses))]))
    if fmt != "label":
        return Decision()
    if metric in ("f1", "mcc") and profile.task == "binary":
        candidates = np.unique(np.quantile(oof[:, 1], np.linspace(0.02, 0.98, 97)))
        scores = [score(metric, y, (oof[:, 1] >= t).astype(int)) for t in candidates]
        return Decision(threshold=float(candidates[int(np.argmax(scores))]))
    if metric == "balanced_accuracy":
        prior = np.bincount(y, minlength=oof.shape[1]) / len(y)
        return Decision(prior_correction=[float(1.0 / max(p, EPS)) for p in prior])
    if metric == "qwk":
        return Decision(cutpoints=_fit_cutpoints(y, oof @ np.arange(oof.shape[1], dtype=float), oof.shape[1]))
    return Decision()


def _fit_cutpoints(y: np.ndarray, expected: np.ndarray, n_classes: int) -> list[float]:
    """Coordinate search of the cut points between ordinal classes, starting at k + 0.5."""
    cuts = np.arange(n_classes - 1, dtype=float) + 0.5
    best = score("qwk", y, _apply_cutpoints(expected, list(cuts)))
    for _ in range(3):
        for i in range(len(cuts)):
            low = cuts[i - 1] if i > 0 else expected.min()
            high = cuts[i + 1] if i + 1 < len(cuts) else expected.max()
            for candidate in np.linspace(low, high, 21)[1:-1]:
                trial = cuts.copy()
                trial[i] = candidate
                value = score("qwk", y, _apply_cutpoints(expected, list(trial)))
                if value > best:
                    best, cuts = value, trial
    return [float(c) for c in cuts]


def decide(profile: CompetitionProfile, pred: np.ndarray, decision: Decision) -> np.ndarray:
    """Prediction space → what is scored and submitted (indices of labels, probabilities, values)."""
    fmt = profile.prediction_format
    if is_classification(profile):
        probs = pred if decision.temperature is None else _with_temperature(pred, decision.temperature)
        if fmt == "class_probabilities":
            return probs
        if fmt == "probability":
            return probs[:, 1]
        if fmt == "ranked_labels":
            k = profile.map_k or min(3, probs.shape[1])
            return np.argsort(-probs, axis=1)[:, :k]
        if decision.threshold is not None:
            return (probs[:, 1] >= decision.threshold).astype(int)
        if decision.cutpoints is not None:
            return _apply_cutpoints(probs @ np.arange(probs.shape[1], dtype=float), decision.cutpoints)
        if decision.prior_correction is not None:
            return np.argmax(probs * np.asarray(decision.prior_correction), axis=1)
        return np.argmax(probs, axis=1)
    if profile.metric in ("rmsle",) or (profile.task == "multilabel"):
        return np.clip(pred, 0.0, 1.0) if profile.task == "multilabel" else np.clip(pred, 0.0, None)
    return pred


def cv_score(profile: CompetitionProfile, y: np.ndarray, oof: np.ndarray, decision: Decision) -> float:
    """The competition metric on out-of-fold predictions, after the decision."""
    decided = decide(profile, oof, decision)
    metric = profile.metric
    if profile.task == "multilabel":
        if metric == "mean_auc":
            return score("mean_auc", y, decided)
        per_column = metric if metric in ("log_loss", "roc_auc") else "roc_auc"
        return float(np.mean([score(per_column, y[:, j], decided[:, j]) for j in range(y.shape[1])]))
    if profile.task == "multitarget_regression":
        if metric == "mcrmse":
            return score("mcrmse", y, decided)
        return float(np.mean([score(metric, y[:, j], decided[:, j]) for j in range(y.shape[1])]))
    if not is_classification(profile):
        return score(metric, y, decided)
    fmt = profile.prediction_format
    if fmt == "class_probabilities":
        if metric == "log_loss":
            return score("log_loss", y, decided)
        if profile.task == "binary":
            return score(metric, y, decided[:, 1])
        return score("log_loss", y, decided)
    if fmt == "probability":
        return score(metric, y, decided)
    if fmt == "ranked_labels":
        return score("map_at_k", y, decided, k=decided.shape[1])
    if metric == "qwk":
        values = _ordinal_values(profile)
        return score("qwk", values[y].astype(int), values[decided].astype(int))
    return score(metric, y, decided)


def submission_frame(
    profile: CompetitionProfile, ids: pd.Series, pred: np.ndarray, decision: Decision
) -> pd.DataFrame:
    """The submission table for test predictions ``pred``, columns in sample_submission order."""
    decided = decide(profile, pred, decision)
    columns: dict[str, Any] = {profile.id_column: ids.to_numpy()}
    value_columns = [c for c in profile.submission_columns if c != profile.id_column]
    classes = profile.classes or []
    fmt = profile.prediction_format
    if fmt == "class_probabilities":
        for j, column in enumerate(value_columns):
            columns[column] = decided[:, j]
    elif fmt == "label":
        columns[value_columns[0]] = [classes[i] for i in decided]
    elif fmt == "ranked_labels":
        columns[value_columns[0]] = [" ".join(classes[i] for i in row) for row in decided]
    elif decided.ndim == 2:
        for j, column in enumerate(profile.target_columns):
            columns[column] = decided[:, j]
    else:
        columns[value_columns[0]] = decided
    return pd.DataFrame(columns)[profile.submission_columns]
