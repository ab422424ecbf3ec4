"""The second-layer stacker: it fixes what averaging cannot, and its CV is its own out-of-fold score."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from batch_agent.solver.blend import blend_attempts
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.predictions import cv_score, fit_decision
from batch_agent.solver.stacking import stack

N_TRAIN, N_TEST = 2000, 300


def binary_competition(tmp_path: Path) -> tuple[CompetitionProfile, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=N_TRAIN + N_TEST)
    y = (signal + rng.normal(0, 0.7, len(signal)) > 0).astype(int)
    pd.DataFrame({"id": range(N_TRAIN), "y": y[:N_TRAIN]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"id": range(N_TRAIN, N_TRAIN + N_TEST)}).to_csv(tmp_path / "test.csv", index=False)
    profile = CompetitionProfile(data_dir=str(tmp_path), id_column="id", target_columns=["y"],
                                 submission_columns=["id", "y"], task="binary", prediction_format="probability",
                                 classes=["0", "1"], metric="log_loss", n_train=N_TRAIN, n_test=N_TEST)
    return profile, y, signal


def probabilities(logit: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-logit))
    return np.column_stack([1 - p, p])


def attempt(tmp_path: Path, profile: CompetitionProfile, y: np.ndarray, name: str, oof: np.ndarray,
            test: np.ndarray) -> AttemptResult:
    folder = tmp_path / name
    folder.mkdir()
    np.save(folder / "oof.npy", oof)
    np.save(folder / "test_pred.npy", test)
    pd.DataFrame({"id": range(N_TRAIN, N_TRAIN + N_TEST), "y": test[:, 1]}).to_csv(folder / "submission.csv",
                                                                                 index=False)
    score = cv_score(profile, y, oof, fit_decision(profile, y, oof))
    return AttemptResult(number=1, program=name, origin="template", ok=True, cv_score=score, seconds=1.0,
                         workdir=str(folder))


def test_stacker_recalibrates_two_badly_scaled_models_and_wins_over_the_blend(tmp_path: Path) -> None:
    profile, y, signal = binary_competition(tmp_path)
    rng = np.random.default_rng(1)
    # One model four times too confident, the other four times too timid: averaging keeps the error.
    a_logit, b_logit = signal + rng.normal(0, 0.4, len(signal)), signal + rng.normal(0, 0.4, len(signal))
    a = attempt(tmp_path, profile, y[:N_TRAIN], "a", probabilities(8 * a_logit[:N_TRAIN]),
                probabilities(8 * a_logit[N_TRAIN:]))
    b = attempt(tmp_path, profile, y[:N_TRAIN], "b", probabilities(0.5 * b_logit[:N_TRAIN]),
                probabilities(0.5 * b_logit[N_TRAIN:]))
    final = blend_attempts(profile, [a, b], tmp_path / "final", higher_is_better=False)
    assert final.name == "stack"
    assert final.cv_score < 0.95 * min(a.cv_score or 0, b.cv_score or 0)
    written = pd.read_csv(final.submission)["y"].to_numpy()
    # Graded on the held-out labels, the stacked submission beats both models too.
    graded = cv_score(profile, y[N_TRAIN:], np.column_stack([1 - written, written]), fit_decision(
        profile, y[N_TRAIN:], np.column_stack([1 - written, written])))
    for model_logit, scale in ((a_logit, 8), (b_logit, 0.5)):
        alone = probabilities(scale * model_logit[N_TRAIN:])
        assert graded < cv_score(profile, y[N_TRAIN:], alone, fit_decision(profile, y[N_TRAIN:], alone))


def test_stacker_cv_on_noise_predictions_is_no_better_than_the_prior(tmp_path: Path) -> None:
    profile, y, _ = binary_competition(tmp_path)
    rng = np.random.default_rng(2)
    noise = {f"m{i}": probabilities(rng.normal(size=N_TRAIN)) for i in range(8)}
    tests = {name: probabilities(rng.normal(size=N_TEST)) for name in noise}
    stacked = stack(profile, y[:N_TRAIN], noise, tests)
    assert stacked is not None
    prior = np.bincount(y[:N_TRAIN]) / N_TRAIN
    constant = cv_score(profile, y[:N_TRAIN], np.tile(prior, (N_TRAIN, 1)), fit_decision(
        profile, y[:N_TRAIN], np.tile(prior, (N_TRAIN, 1))))
    # Fitted in-sample, 8 noise columns would look better than the prior; out of fold they do not.
    assert stacked.cv_score >= constant - 1e-3


def test_multitarget_tasks_are_left_to_the_blend(tmp_path: Path) -> None:
    profile, y, _ = binary_competition(tmp_path)
    multilabel = profile.model_copy(update={"task": "multilabel"})
    oofs = {"a": np.zeros((N_TRAIN, 2)), "b": np.zeros((N_TRAIN, 2))}
    assert stack(multilabel, y[:N_TRAIN], oofs, oofs) is None


def test_stacker_gives_way_when_its_fits_would_outlast_the_time_left(tmp_path: Path) -> None:
    profile, y, signal = binary_competition(tmp_path)
    rng = np.random.default_rng(1)
    oofs = {n: probabilities(k * (signal[:N_TRAIN] + rng.normal(0, 0.4, N_TRAIN))) for n, k in (("a", 8), ("b", 0.5))}
    tests = {n: probabilities(signal[N_TRAIN:]) for n in oofs}
    assert stack(profile, y[:N_TRAIN], oofs, tests, stop_at=time.monotonic() + 600) is not None
    # The run's limit is the stacker's too: past it, the greedy blend (or the best single model) stands.
    assert stack(profile, y[:N_TRAIN], oofs, tests, stop_at=time.monotonic()) is None
