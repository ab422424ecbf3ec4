"""Time series: detection, lag features that never see a row's own (or a within-horizon) target,
time-ordered and grouped folds, the out-of-time rule for oof.csv, the holdout and the blend."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver import time_series
from batch_agent.solver.attempt_scores import ScoringError, judge_attempt, prediction_space, scored_rows
from batch_agent.solver.blend import blend_attempts
from batch_agent.solver.competition import CompetitionProfile, DataShape
from batch_agent.solver.holdout import holdout_size, prepare_holdout, remove_prepared
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.predictions import encode_target
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.shapes import flatten_competition
from batch_agent.solver.submission import validate_submission
from batch_agent.solver.training import fold_weights, group_folds, make_folds, predicted_rows, time_folds

ROOT = Path(__file__).resolve().parents[3]
# The development competitions sit beside the checkout (../shared), or beside its parent for a worktree.
SHARED = next((base / "shared" / "competitions" for base in (ROOT.parent, ROOT.parent.parent)
               if (base / "shared" / "competitions").is_dir()), ROOT.parent / "shared" / "competitions")


def _examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("time_shapes", ROOT / "examples" / "shapes" / "time_shapes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_sales(folder: Path, *, n_stores: int = 3, n_days: int = 200, horizon: int = 14,
                shuffle_test: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small multi-series competition: the last ``horizon`` days of every store are the test set."""
    frame = _examples().store_sales(np.random.default_rng(0), n_stores=n_stores, n_days=n_days, horizon=horizon)
    frame.insert(0, "id", np.arange(len(frame)))
    days = sorted(frame["date"].unique())
    if shuffle_test:  # a random split of the same days: not a time series
        is_test = np.random.default_rng(1).random(len(frame)) < 0.2
    else:
        is_test = (frame["date"] >= days[-horizon]).to_numpy()
    train, test = frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)
    folder.mkdir(parents=True)
    train.to_csv(folder / "train.csv", index=False)
    test.drop(columns=["sales"]).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "sales": 0.0}).to_csv(folder / "sample_submission.csv", index=False)
    (folder / "description.md").write_text("# Sales\n\nPredict sales. Evaluated on RMSE.\n")
    return train, test


# ----------------------------------------------------------------------------- detection


def test_a_table_split_by_time_with_stores_is_a_time_series_with_its_horizon_and_keys(tmp_path: Path) -> None:
    write_sales(tmp_path / "data", horizon=14)
    folder, shape = flatten_competition(tmp_path / "data", tmp_path / "flat")
    assert shape.kind == "time_series" and shape.time_column == "date"
    assert folder == tmp_path / "flat"
    assert "horizon 14 steps" in shape.summary and "keyed by store" in shape.summary
    assert "series: 3" in shape.summary
    train = pd.read_csv(folder / "train.csv")
    assert {"sales_lag14", "sales_mean7", "sales_std28", "sales_mean_all"} <= set(train.columns)
    assert not any(c.startswith("sales_lag") and int(c.removeprefix("sales_lag")) < 14 for c in train.columns)
    # The downloaded train.csv is not kept beside the flat one (it would show the holdout's labels).
    assert not (folder / shape.original_dir / "train.csv").exists()
    profile = profile_competition(folder)
    assert profile.target_columns == ["sales"] and profile.metric == "rmse"


def test_the_submission_column_is_the_target_when_train_has_other_columns_test_lacks(tmp_path: Path) -> None:
    write_sales(tmp_path / "data")
    train = pd.read_csv(tmp_path / "data" / "train.csv")
    train.assign(customers=(train["sales"] / 7).round()).to_csv(tmp_path / "data" / "train.csv", index=False)
    folder, shape = flatten_competition(tmp_path / "data", tmp_path / "flat")
    assert shape.kind == "time_series"
    columns = pd.read_csv(folder / "test.csv").columns
    assert "sales_lag14" in columns and not any(c.startswith("customers_") for c in columns)


def test_one_series_needs_no_keys(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    _examples().make(out)
    _, shape = flatten_competition(out / "daily-visitors" / "public", tmp_path / "flat")
    assert shape.kind == "time_series"
    assert "one series" in shape.summary and "horizon 14 steps" in shape.summary


def test_a_random_split_of_dated_rows_stays_a_table(tmp_path: Path) -> None:
    write_sales(tmp_path / "data", shuffle_test=True)
    folder, shape = flatten_competition(tmp_path / "data", tmp_path / "flat")
    assert shape == DataShape() and folder == tmp_path / "data"


def test_a_class_target_split_by_time_gets_time_ordered_validation_without_lag_features(tmp_path: Path) -> None:
    train, _ = write_sales(tmp_path / "sales")
    data = tmp_path / "data"
    data.mkdir()
    train = pd.read_csv(tmp_path / "sales" / "train.csv").assign(
        busy=lambda f: np.where(f["sales"] > f["sales"].median(), "yes", "no")).drop(columns=["sales"])
    train.to_csv(data / "train.csv", index=False)
    (tmp_path / "sales" / "test.csv").rename(data / "test.csv")
    test_ids = pd.read_csv(data / "test.csv")["id"]
    pd.DataFrame({"id": test_ids, "busy": "no"}).to_csv(data / "sample_submission.csv", index=False)
    folder, shape = flatten_competition(data, tmp_path / "flat")
    assert shape.kind == "time_series" and shape.time_column == "date"
    assert folder == data  # nothing added: the competition's own files
    assert "no lag features" in shape.summary


@pytest.mark.parametrize("slug", ["seattle-weather", "titanic-survival", "ames-house-prices",
                                  "telco-customer-churn"])
def test_the_shared_competitions_stay_tables(slug: str, tmp_path: Path) -> None:
    public = SHARED / slug / "public"
    if not public.is_dir():
        pytest.skip(f"{public} is not on this machine")
    folder, shape = flatten_competition(public, tmp_path / "flat")
    assert shape == DataShape() and folder == public


def test_the_example_competition_stays_a_table(tmp_path: Path) -> None:
    example = ROOT / "examples" / "breast-cancer-diagnosis"
    assert time_series.flatten(example, tmp_path / "flat") is None


# ----------------------------------------------------------------------------- features


def _features(frame: pd.DataFrame, target: np.ndarray, horizon: int) -> pd.DataFrame:
    layout = time_series.SeriesLayout(time_column="date", is_datetime=True, keys=["store"], has_series=True,
                                      step=1.0, horizon=horizon, target="sales")
    features = time_series.lag_features(layout, frame, time_series.time_values(frame["date"]), target)
    assert features is not None
    return features


def test_lag_features_never_read_a_rows_own_target_or_one_within_the_horizon() -> None:
    frame = _examples().store_sales(np.random.default_rng(3), n_stores=3, n_days=120, horizon=0)
    target = frame["sales"].to_numpy(dtype=float)
    horizon = 10
    features = _features(frame, target, horizon)
    times = time_series.time_values(frame["date"])
    rng = np.random.default_rng(4)
    for row in rng.choice(len(frame), size=25, replace=False):
        # Every target of the row's time and the horizon before it, in every series, replaced by noise.
        hidden = times > times[row] - horizon
        changed = target.copy()
        changed[hidden] = rng.normal(1e6, 1e5, size=hidden.sum())
        again = _features(frame, changed, horizon)
        pd.testing.assert_series_equal(features.iloc[row], again.iloc[row])
    # And the lag is what it says: the same store's sales `horizon` days earlier.
    by_key = frame.assign(t=times).set_index(["store", "t"])["sales"]
    row = int(np.flatnonzero(times == times.max())[0])
    expected = by_key[(frame["store"].iloc[row], times[row] - horizon)]
    assert features[f"sales_lag{horizon}"].iloc[row] == pytest.approx(expected)


def test_test_rows_features_come_from_the_train_tail_only(tmp_path: Path) -> None:
    train, test = write_sales(tmp_path / "data", horizon=14)
    folder, _ = flatten_competition(tmp_path / "data", tmp_path / "flat")
    flat_test = pd.read_csv(folder / "test.csv")
    lag_columns = [c for c in flat_test.columns if c.startswith("sales_")]
    # The furthest test day still has every lag feature: all of them reach back into train.
    last = flat_test[flat_test["date"] == flat_test["date"].max()]
    assert last["sales_lag14"].notna().all()
    expected = train.set_index(["store", "date"])["sales"]
    first_day = pd.Timestamp(test["date"].min())
    for _, row in flat_test[flat_test["date"] == test["date"].min()].iterrows():
        back = str((first_day - pd.Timedelta(days=14)).date())
        assert row["sales_lag14"] == pytest.approx(expected[(row["store"], back)])
    assert flat_test[lag_columns].notna().all().all()


# ----------------------------------------------------------------------------- folds


def test_time_ordered_folds_never_train_on_the_future_and_keep_one_time_in_one_block() -> None:
    rng = np.random.default_rng(0)
    times = np.repeat(np.arange(100.0), 7)[rng.permutation(700)]
    folds = time_folds(times, 5)
    assert len(folds) == 5
    for train, valid in folds:
        assert times[train].max() < times[valid].min()
    predicted = predicted_rows(len(times), folds)
    # The earliest block, about a sixth of the rows, is never predicted; everything after is, once.
    assert 0.1 < 1 - predicted.mean() < 0.25
    assert times[~predicted].max() < times[predicted].min()
    assert sum(len(v) for _, v in folds) == predicted.sum()


def test_make_folds_orders_by_the_shape_time_column_and_needs_the_train_rows() -> None:
    dates = pd.date_range("2024-01-01", periods=300, freq="D").strftime("%Y-%m-%d")
    train = pd.DataFrame({"date": np.random.default_rng(0).permutation(dates), "x": np.arange(300)})
    profile = _profile(time_column="date")
    y = np.arange(300, dtype=float)
    folds = make_folds(profile, y, 4, 0, train)
    times = time_series.time_values(train["date"])
    assert len(folds) == 4
    for fit, valid in folds:
        assert times[fit].max() < times[valid].min()
    with pytest.raises(ValueError, match="train rows"):
        make_folds(profile, y, 4, 0)
    weights = fold_weights(profile, folds)
    assert weights.tolist() == [0.0, 0.0, 0.0, 1.0]  # the last window: the most and the newest rows


def test_grouped_folds_never_split_a_group_and_stay_stratified() -> None:
    rng = np.random.default_rng(0)
    groups = pd.Series(rng.integers(0, 60, size=900)).map(lambda g: f"patient{g}")
    y = (rng.random(900) < 0.3).astype(int)
    profile = _profile(group_column="patient", task="binary")
    folds = make_folds(profile, y, 5, 0, pd.DataFrame({"patient": groups}))
    assert len(folds) == 5
    for fit, valid in folds:
        assert not set(groups.iloc[fit]) & set(groups.iloc[valid])
        assert 0.15 < y[valid].mean() < 0.45
    assert predicted_rows(900, folds).all()
    regression = group_folds(_profile(group_column="patient"), rng.normal(size=900), groups, 5, 0)
    for fit, valid in regression:
        assert not set(groups.iloc[fit]) & set(groups.iloc[valid])


# ----------------------------------------------------------------------------- oof.csv and scoring


def _profile(*, time_column: str | None = None, group_column: str | None = None, task: str = "regression",
             data_dir: str = ".") -> CompetitionProfile:
    classification = task == "binary"
    return CompetitionProfile(
        data_dir=data_dir, id_column="id", target_columns=["y"], submission_columns=["id", "y"],
        task=task, prediction_format="label" if classification else "value",  # type: ignore[arg-type]
        classes=["no", "yes"] if classification else None, metric="accuracy" if classification else "rmse",
        n_train=0, n_test=0, shape=DataShape(kind="time_series" if time_column else "table",
                                             time_column=time_column, group_column=group_column))


def _time_competition(folder: Path, n: int = 200) -> tuple[CompetitionProfile, pd.DataFrame]:
    folder.mkdir(parents=True)
    dates = pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d")
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"id": np.arange(n), "date": rng.permutation(dates), "y": rng.normal(size=n)})
    train.to_csv(folder / "train.csv", index=False)
    test = pd.DataFrame({"id": np.arange(n, n + 20), "date": pd.date_range("2025-01-01", periods=20).strftime(
        "%Y-%m-%d")})
    test.to_csv(folder / "test.csv", index=False)
    test.assign(y=0.0)[["id", "y"]].to_csv(folder / "sample_submission.csv", index=False)
    return _profile(time_column="date", data_dir=str(folder)), train


def _attempt(folder: Path, train: pd.DataFrame, oof: np.ndarray, name: str = "p") -> AttemptResult:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": train["id"], "y": oof}).to_csv(folder / "oof.csv", index=False)
    pd.DataFrame({"id": np.arange(len(train), len(train) + 20), "y": 0.0}).to_csv(folder / "submission.csv",
                                                                                  index=False)
    return AttemptResult(number=1, program=name, origin="llm-draft", ok=False, seconds=1.0, workdir=str(folder))


def test_oof_may_leave_the_earliest_rows_empty_under_time_ordered_folds(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data")
    times = time_series.time_values(train["date"])
    oof = train["y"].to_numpy() + 0.1
    oof[times < np.quantile(times, 0.2)] = np.nan
    result = judge_attempt(profile, _attempt(tmp_path / "a", train, oof), ran="the program")
    assert result.ok, result.reason
    assert result.cv_score == pytest.approx(0.1)  # scored on the predicted rows only


def test_oof_may_not_leave_later_rows_empty(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data")
    times = time_series.time_values(train["date"])
    oof = train["y"].to_numpy() + 0.1
    oof[times < np.quantile(times, 0.1)] = np.nan
    oof[np.argmax(times)] = np.nan  # a hard row at the end, left out
    result = judge_attempt(profile, _attempt(tmp_path / "a", train, oof), ran="the program")
    assert not result.ok and "later" in (result.reason or "")


def test_oof_may_not_leave_most_rows_empty(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data")
    times = time_series.time_values(train["date"])
    oof = train["y"].to_numpy().copy()
    oof[times < np.quantile(times, 0.7)] = np.nan
    result = judge_attempt(profile, _attempt(tmp_path / "a", train, oof), ran="the program")
    assert not result.ok and "at most 50%" in (result.reason or "")


def test_without_a_time_column_every_oof_row_needs_a_prediction(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data")
    table = profile.model_copy(update={"shape": DataShape()})
    oof = train["y"].to_numpy().copy()
    oof[:5] = np.nan
    result = judge_attempt(table, _attempt(tmp_path / "a", train, oof), ran="the program")
    assert not result.ok and "empty or NaN" in (result.reason or "")
    assert validate_submission(tmp_path / "a" / "oof.csv", table, against="train")
    assert not validate_submission(tmp_path / "a" / "oof.csv", table, against="train", allow_empty_rows=True)


def test_scored_rows_refuse_a_partly_empty_row_and_label_rows_read_as_nan() -> None:
    profile = _profile(time_column="date", task="binary")
    frame = pd.DataFrame({"id": ["1", "2", "3"], "y": ["", "yes", "no"]})
    space = prediction_space(profile, frame)
    assert np.isnan(space[0]).all() and space[1].tolist() == [0.0, 1.0]
    train = pd.DataFrame({"id": ["1", "2", "3"], "date": ["2024-01-01", "2024-01-02", "2024-01-03"],
                          "y": ["no", "yes", "no"]})
    y = encode_target(profile, train)
    frame = pd.DataFrame({"id": ["1", "2", "3"], "y": [np.nan, "yes", "no"]})
    assert scored_rows(profile, train, frame, y).tolist() == [False, True, True]
    with pytest.raises(ScoringError, match="later"):
        scored_rows(profile, train, frame.iloc[[1, 0, 2]].reset_index(drop=True).assign(id=["1", "2", "3"]), y)


# ----------------------------------------------------------------------------- holdout and blend


def test_the_hidden_holdout_of_a_time_series_is_its_latest_rows(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data", n=1200)
    holdout = prepare_holdout(profile, tmp_path / "prepared", seed=0)
    assert holdout is not None
    try:
        times = time_series.time_values(train["date"])
        assert len(holdout.train_rows) == holdout_size(1200)
        assert times[holdout.train_rows].min() > times[holdout.seen_train_rows].max()
    finally:
        remove_prepared(tmp_path / "prepared")


def test_the_hidden_holdout_of_grouped_rows_takes_whole_groups(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data", n=1200)
    groups = [f"g{i % 40}" for i in range(1200)]
    train.assign(patient=groups).to_csv(tmp_path / "data" / "train.csv", index=False)
    test = pd.read_csv(tmp_path / "data" / "test.csv").assign(patient="g0")
    test.to_csv(tmp_path / "data" / "test.csv", index=False)
    grouped = profile.model_copy(update={"shape": DataShape(group_column="patient")})
    holdout = prepare_holdout(grouped, tmp_path / "prepared", seed=0)
    assert holdout is not None
    try:
        held = {groups[i] for i in holdout.train_rows}
        seen = {groups[i] for i in holdout.seen_train_rows}
        assert held and not held & seen
    finally:
        remove_prepared(tmp_path / "prepared")


def test_the_blend_of_time_ordered_attempts_uses_the_rows_all_of_them_predicted(tmp_path: Path) -> None:
    profile, train = _time_competition(tmp_path / "data")
    times = time_series.time_values(train["date"])
    y = train["y"].to_numpy()
    rng = np.random.default_rng(1)
    attempts = []
    for name, cut in (("early", 0.1), ("late", 0.3)):
        oof = y + rng.normal(0, 0.5, size=len(y))
        oof[times < np.quantile(times, cut)] = np.nan
        attempt = judge_attempt(profile, _attempt(tmp_path / name, train, oof, name), ran="the program")
        assert attempt.ok, attempt.reason
        attempts.append(attempt)
    final = blend_attempts(profile, attempts, tmp_path / "final", higher_is_better=False)
    # Two independent noisy copies of y: their average is clearly better than either on the common rows.
    assert final.name == "blend"  # no stacker on time-ordered folds
    assert final.cv_score < min(a.cv_score or np.inf for a in attempts) * 0.85
    assert json.loads(json.dumps(final.weights))


# ----------------------------------------------------------------------------- model-written programs

PROGRAM = """\
import argparse
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.linear_model import Ridge
from batch_agent.solver.time_series import time_values
from batch_agent.solver.training import time_folds

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
train = pd.read_csv(Path(args.data) / "train.csv")
test = pd.read_csv(Path(args.data) / "test.csv")
{body}
pd.DataFrame({{"id": train["id"], "sales": oof}}).to_csv("oof.csv", index=False)
pd.DataFrame({{"id": test["id"], "sales": pred}}).to_csv("submission.csv", index=False)
"""
# Lag features and the product's time-ordered folds: the earliest block stays empty.
TIME_ORDERED = PROGRAM.format(body="""\
COLUMNS = ["sales_mean28", "promo"]
X, X_test, y = train[COLUMNS].fillna(0).to_numpy(), test[COLUMNS].fillna(0).to_numpy(), train["sales"].to_numpy()
oof = np.full(len(train), np.nan)
for fit, valid in time_folds(time_values(train["date"]), 5):
    oof[valid] = Ridge().fit(X[fit], y[fit]).predict(X[valid])
pred = Ridge().fit(X, y).predict(X_test)
""")


def _flat_profile(tmp_path: Path) -> CompetitionProfile:
    write_sales(tmp_path / "data", n_stores=3, n_days=400, horizon=14)
    folder, shape = flatten_competition(tmp_path / "data", tmp_path / "flat")
    profile = profile_competition(folder)
    profile.shape = shape
    return profile


def _run(profile: CompetitionProfile, code: str, folder: Path) -> AttemptResult:
    from batch_agent.solver.plan import Program
    from batch_agent.solver.solve import run_attempt

    program = Program(name=folder.name, code=code, origin="llm-draft")
    return run_attempt(profile, program, folder, time_budget=90, memory_limit_mb=2048, holdout_seed=1)


def test_a_model_written_program_with_time_ordered_folds_is_scored_on_its_predicted_rows(tmp_path: Path) -> None:
    profile = _flat_profile(tmp_path)
    result = _run(profile, TIME_ORDERED, tmp_path / "ordered")
    assert result.ok, (result.reason, result.log_tail[-1500:])
    assert result.holdout_rows == holdout_size(profile.n_train)
    # Scored on the rows it predicted, and its predictions for the latest rows, hidden in test.csv, scored too.
    assert result.cv_score is not None and result.holdout_score is not None
    oof = pd.read_csv(tmp_path / "ordered" / "oof.csv")
    assert 0.1 < oof["sales"].isna().mean() < 0.3


def test_one_time_or_one_group_for_every_row_falls_back_to_ordinary_folds() -> None:
    y = np.arange(50, dtype=float)
    same = pd.DataFrame({"date": ["2024-01-01"] * 50, "patient": ["p"] * 50})
    for profile in (_profile(time_column="date"), _profile(group_column="patient")):
        folds = make_folds(profile, y, 5, 0, same)
        assert len(folds) == 5 and predicted_rows(50, folds).all()


def test_an_early_window_without_a_class_still_gives_every_class_a_column() -> None:
    from sklearn.linear_model import LogisticRegression

    from batch_agent.solver.training import _oof_predictions

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    target = np.where(np.arange(300) < 150, rng.integers(0, 2, 300), rng.integers(0, 3, 300))
    folds = time_folds(np.arange(300.0), 5)
    assert 2 not in set(target[folds[0][0]])  # the first window never saw class 2
    oof = _oof_predictions(LogisticRegression(), X, target, folds, "multiclass")
    assert oof.shape == (300, 3)
    first_valid = folds[0][1]
    assert np.allclose(oof[first_valid, 2], 0.0) and np.allclose(oof[first_valid].sum(axis=1), 1.0)
    later = folds[-1][1]
    assert (oof[later, 2] > 0).all()
