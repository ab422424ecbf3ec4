"""Greedy blending of attempts' out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.blend import blend_attempts
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.predictions import Decision, cv_score, decide, fit_decision
from batch_agent.solver.stacking import Stacked

N_TRAIN, N_TEST = 400, 50


def competition(tmp_path: Path) -> tuple[CompetitionProfile, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.normal(size=N_TRAIN)
    pd.DataFrame({"id": range(N_TRAIN), "x": rng.normal(size=N_TRAIN), "y": y}).to_csv(tmp_path / "train.csv",
                                                                                        index=False)
    pd.DataFrame({"id": range(N_TRAIN, N_TRAIN + N_TEST), "x": 0.0}).to_csv(tmp_path / "test.csv", index=False)
    profile = CompetitionProfile(data_dir=str(tmp_path), id_column="id", target_columns=["y"],
                                 submission_columns=["id", "y"], task="regression", prediction_format="value",
                                 metric="rmse", n_train=N_TRAIN, n_test=N_TEST)
    return profile, y


def attempt(tmp_path: Path, profile: CompetitionProfile, y: np.ndarray, name: str, oof: np.ndarray,
            test: np.ndarray | None = None) -> AttemptResult:
    folder = tmp_path / name
    folder.mkdir()
    test = np.full(N_TEST, 0.5) if test is None else test
    np.save(folder / "oof.npy", oof)
    np.save(folder / "test_pred.npy", test)
    ids = pd.Series(range(N_TRAIN, N_TRAIN + N_TEST))
    pd.DataFrame({"id": ids, "y": test if test.ndim == 1 else test[:, 0]}).to_csv(folder / "submission.csv",
                                                                                  index=False)
    score = cv_score(profile, y, oof, fit_decision(profile, y, oof)) if oof.ndim == 1 else 9.0
    return AttemptResult(number=1, program=name, origin="template", ok=True, cv_score=score, seconds=1.0,
                         workdir=str(folder))


def test_two_models_with_independent_errors_blend_to_a_better_score(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(1)
    a = attempt(tmp_path, profile, y, "a", y + rng.normal(0, 0.5, N_TRAIN), np.full(N_TEST, 1.0))
    b = attempt(tmp_path, profile, y, "b", y + rng.normal(0, 0.5, N_TRAIN), np.full(N_TEST, 3.0))
    final = blend_attempts(profile, [a, b], tmp_path / "final", higher_is_better=False)
    assert final.name in ("blend", "stack")
    assert set(final.weights) == {"a", "b"} and min(final.weights.values()) > 0.3
    assert final.cv_score < min(a.cv_score or 0, b.cv_score or 0)
    written = pd.read_csv(final.submission)
    assert written["y"].between(1.0, 3.0).all() and not written["y"].isin([1.0, 3.0]).any()


def test_a_useless_second_model_leaves_the_best_single_model(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(2)
    good = attempt(tmp_path, profile, y, "good", y + rng.normal(0, 0.1, N_TRAIN))
    bad = attempt(tmp_path, profile, y, "bad", rng.normal(5, 1, N_TRAIN))
    final = blend_attempts(profile, [bad, good], tmp_path / "final", higher_is_better=False)
    assert final.weights.get("bad", 0.0) < 0.02
    assert final.cv_score <= (good.cv_score or 0)
    if final.name != "stack":  # a stacker may shrink "good" a little and win; a blend never includes "bad"
        assert final.name == "good" and final.weights == {"good": 1.0} and final.cv_score == good.cv_score


def test_predictions_in_another_shape_are_left_out_of_the_blend(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(3)
    a = attempt(tmp_path, profile, y, "a", y + rng.normal(0, 0.5, N_TRAIN))
    b = attempt(tmp_path, profile, y, "b", y + rng.normal(0, 0.5, N_TRAIN))
    odd = attempt(tmp_path, profile, y, "odd", np.column_stack([y, y]), np.zeros((N_TEST, 2)))
    final = blend_attempts(profile, [a, b, odd], tmp_path / "final", higher_is_better=False)
    assert final.name in ("blend", "stack")
    assert "odd" not in final.weights
    assert np.isfinite(decide(profile, pd.read_csv(final.submission)["y"].to_numpy(), fit_decision(
        profile, y, y))).all()


def test_bagging_rounds_enter_the_blend_only_together_averaged_never_the_luckiest_alone(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(4)
    base = attempt(tmp_path, profile, y, "lgbm", y + rng.normal(0, 0.6, N_TRAIN), np.full(N_TEST, 1.0))
    other = attempt(tmp_path, profile, y, "xgboost", y + rng.normal(0, 0.6, N_TRAIN), np.full(N_TEST, 2.0))
    # Three rounds; the first by far the best out of fold, as a lucky split can be.
    rounds = [attempt(tmp_path, profile, y, f"lgbm+bag{i}", y + rng.normal(0, noise, N_TRAIN), np.full(N_TEST, t))
              for i, (noise, t) in enumerate([(0.2, 3.0), (0.6, 4.0), (0.6, 5.0)], start=1)]
    final = blend_attempts(profile, [base, other, *rounds], tmp_path / "final", higher_is_better=False)

    assert not {"lgbm+bag1", "lgbm+bag2", "lgbm+bag3"} & set(final.weights)  # no round alone, however lucky
    assert "lgbm+bags" in final.weights  # the average of the three, as one member
    # The average of the rounds' test predictions (4.0) is what that member brings to the submission.
    written = pd.read_csv(final.submission)["y"]
    expected = sum(w * {"lgbm": 1.0, "xgboost": 2.0, "lgbm+bags": 4.0}[n] for n, w in final.weights.items())
    if final.name == "blend":
        assert np.allclose(written, expected)


def test_a_lucky_bagging_round_is_never_the_best_single_attempt(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(5)
    base = attempt(tmp_path, profile, y, "lgbm", y + rng.normal(0, 0.3, N_TRAIN), np.full(N_TEST, 1.0))
    lucky = attempt(tmp_path, profile, y, "lgbm+bag1", y + rng.normal(0, 0.1, N_TRAIN), np.full(N_TEST, 9.0))
    final = blend_attempts(profile, [base, lucky], tmp_path / "final", higher_is_better=False)
    assert "lgbm+bag1" not in final.weights
    if final.name not in ("blend", "stack"):
        assert final.name == "lgbm" and final.cv_score == base.cv_score


@pytest.fixture
def greedy_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No stacker: it could win by weights of its own and hide what the greedy selection chose."""
    monkeypatch.setattr("batch_agent.solver.blend.stack", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("greedy_only")
def test_averaged_bagging_rounds_alone_are_the_answer_when_they_beat_every_single_attempt(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(6)
    errors = rng.normal(0, 0.4, (3, N_TRAIN))
    rounds = [attempt(tmp_path, profile, y, f"lgbm+bag{i}", y + errors[i - 1], np.full(N_TEST, t))
              for i, t in enumerate([3.0, 4.0, 5.0], start=1)]
    # The single model errs as the rounds' average does and more, so no share of it can help that average.
    base = attempt(tmp_path, profile, y, "lgbm", y + errors.mean(axis=0) + rng.normal(0, 0.6, N_TRAIN),
                   np.full(N_TEST, 1.0))
    final = blend_attempts(profile, [base, *rounds], tmp_path / "final", higher_is_better=False)

    assert final.name == "blend" and final.weights == {"lgbm+bags": 1.0}
    assert final.cv_score < (base.cv_score or 0.0)
    assert np.allclose(pd.read_csv(final.submission)["y"], 4.0)  # the rounds' average, not the single lgbm's 1.0


@pytest.mark.usefixtures("greedy_only")
def test_selection_goes_on_past_a_round_without_gain_and_keeps_the_best_prefix(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(7)
    # Half of a model twice as noisy makes the good one worse; a third or a quarter of each makes it better.
    good = attempt(tmp_path, profile, y, "good", y + rng.normal(0, 0.3, N_TRAIN), np.full(N_TEST, 1.0))
    second = attempt(tmp_path, profile, y, "second", y + rng.normal(0, 0.6, N_TRAIN), np.full(N_TEST, 2.0))
    third = attempt(tmp_path, profile, y, "third", y + rng.normal(0, 0.6, N_TRAIN), np.full(N_TEST, 3.0))
    final = blend_attempts(profile, [good, second, third], tmp_path / "final", higher_is_better=False)

    assert final.name == "blend" and set(final.weights) == {"good", "second", "third"}
    assert final.weights["good"] > 0.4
    assert final.cv_score < (good.cv_score or 0.0) * 0.95


def test_a_stacker_whose_cv_gain_comes_from_one_folds_rows_is_not_chosen(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    profile, y = competition(tmp_path)
    y = y.copy()
    y[0] = 60.0  # one heavy-tailed row, as a price column can hold
    pd.DataFrame({"id": range(N_TRAIN), "y": y}).to_csv(tmp_path / "train.csv", index=False)
    rng = np.random.default_rng(7)
    oof = y + rng.normal(0, 0.3, N_TRAIN)
    oof[0] = 10.0
    single = attempt(tmp_path, profile, y, "lgbm", oof)
    other = attempt(tmp_path, profile, y, "xgboost", oof + rng.normal(0, 0.6, N_TRAIN))
    folds = np.array_split(rng.permutation(N_TRAIN), 5)
    holding = next(k for k, rows in enumerate(folds) if 0 in rows)

    def one_fold_stacker(*args: object, **kwargs: object) -> Stacked:
        # Exact on the fold holding the big row, worse than the single model on the other four.
        stacked = oof + 0.2
        stacked[folds[holding]] = y[folds[holding]]
        return Stacked(cv_score=float(np.sqrt(np.mean((stacked - y) ** 2))), test_pred=np.zeros(N_TEST),
                       decision=Decision(), weights={"lgbm": 0.5, "xgboost": 0.5}, oof=stacked, folds=folds)

    monkeypatch.setattr("batch_agent.solver.blend.stack", one_fold_stacker)
    assert one_fold_stacker().cv_score < 0.5 * (single.cv_score or 0)
    final = blend_attempts(profile, [single, other], tmp_path / "final", higher_is_better=False)
    assert final.name != "stack"

    def most_folds_stacker(*args: object, **kwargs: object) -> Stacked:
        stacked = one_fold_stacker()
        better, rest = oof.copy(), np.concatenate(folds[1:])
        better[rest] = y[rest] + 0.1 * (oof - y)[rest]
        return stacked.model_copy(update={"oof": better, "cv_score": float(np.sqrt(np.mean((better - y) ** 2)))})

    monkeypatch.setattr("batch_agent.solver.blend.stack", most_folds_stacker)
    assert blend_attempts(profile, [single, other], tmp_path / "again", higher_is_better=False).name == "stack"


def model_attempt(tmp_path: Path, profile: CompetitionProfile, y: np.ndarray, name: str, oof: np.ndarray,
                  test: np.ndarray) -> AttemptResult:
    """A model-written program's outputs as the contract has them: oof.csv and submission.csv."""
    folder = tmp_path / name
    folder.mkdir()
    pd.DataFrame({"id": range(N_TRAIN), "y": oof}).to_csv(folder / "oof.csv", index=False)
    pd.DataFrame({"id": range(N_TRAIN, N_TRAIN + N_TEST), "y": test}).to_csv(folder / "submission.csv", index=False)
    score = cv_score(profile, y, oof, fit_decision(profile, y, oof))
    return AttemptResult(number=3, program=name, origin="llm-draft", ok=True, cv_score=score, seconds=1.0,
                         workdir=str(folder))


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


@pytest.mark.usefixtures("greedy_only")
def test_a_model_program_that_adds_a_rounding_to_the_templates_answer_is_left_out(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(8)
    a_oof, b_oof = y + rng.normal(0, 0.5, N_TRAIN), y + rng.normal(0, 0.5, N_TRAIN)
    a = attempt(tmp_path, profile, y, "a", a_oof, np.full(N_TEST, 1.0))
    b = attempt(tmp_path, profile, y, "b", b_oof, np.full(N_TEST, 3.0))
    # The templates' own blend, right on one row more: the best single attempt, by a rounding.
    close = (a_oof + b_oof) / 2
    typical = np.argsort(np.abs(close - y))[N_TRAIN // 2]
    close[typical] = y[typical]
    model = model_attempt(tmp_path, profile, y, "model", close, np.full(N_TEST, 9.0))
    assert (model.cv_score or 0.0) < rmse(y, (a_oof + b_oof) / 2) < (model.cv_score or 0.0) * 1.001

    final = blend_attempts(profile, [a, b, model], tmp_path / "final", higher_is_better=False)
    without = blend_attempts(profile, [a, b], tmp_path / "without", higher_is_better=False)

    assert final.name == "blend" and final.weights == without.weights == {"a": 0.5, "b": 0.5}
    assert np.allclose(pd.read_csv(final.submission)["y"], 2.0)


@pytest.mark.usefixtures("greedy_only")
def test_a_model_program_whose_gain_comes_from_a_few_rows_is_left_out(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    y = y.copy()
    y[0] = 60.0  # one heavy-tailed row
    pd.DataFrame({"id": range(N_TRAIN), "y": y}).to_csv(tmp_path / "train.csv", index=False)
    rng = np.random.default_rng(9)
    a_oof, b_oof = y + rng.normal(0, 0.5, N_TRAIN), y + rng.normal(0, 0.5, N_TRAIN)
    a_oof[0] = b_oof[0] = 10.0
    a = attempt(tmp_path, profile, y, "a", a_oof, np.full(N_TEST, 1.0))
    b = attempt(tmp_path, profile, y, "b", b_oof, np.full(N_TEST, 3.0))
    # Exact on the big row, noisier than the templates' blend on every other one.
    lucky = y + rng.normal(0, 0.6, N_TRAIN)
    lucky[0] = y[0]
    model = model_attempt(tmp_path, profile, y, "model", lucky, np.full(N_TEST, 9.0))
    assert (model.cv_score or 0.0) < 0.5 * rmse(y, (a_oof + b_oof) / 2)

    final = blend_attempts(profile, [a, b, model], tmp_path / "final", higher_is_better=False)

    assert "model" not in final.weights and final.weights == {"a": 0.5, "b": 0.5}


@pytest.mark.usefixtures("greedy_only")
def test_a_model_program_better_on_most_rows_enters_the_blend(tmp_path: Path) -> None:
    profile, y = competition(tmp_path)
    rng = np.random.default_rng(10)
    a = attempt(tmp_path, profile, y, "a", y + rng.normal(0, 0.5, N_TRAIN), np.full(N_TEST, 1.0))
    b = attempt(tmp_path, profile, y, "b", y + rng.normal(0, 0.5, N_TRAIN), np.full(N_TEST, 3.0))
    model = model_attempt(tmp_path, profile, y, "model", y + rng.normal(0, 0.4, N_TRAIN), np.full(N_TEST, 9.0))

    final = blend_attempts(profile, [a, b, model], tmp_path / "final", higher_is_better=False)
    without = blend_attempts(profile, [a, b], tmp_path / "without", higher_is_better=False)

    assert final.name == "blend" and final.weights["model"] > 0.3
    assert final.cv_score < 0.9 * without.cv_score
