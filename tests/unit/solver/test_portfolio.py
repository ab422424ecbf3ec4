"""Template tuning: each booster family's portfolio, walked before the seeds, scaled by the data and the time."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver import portfolio
from batch_agent.solver.boosters import fit_catboost, fit_xgboost
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import AttemptResult, ModelSpec, Plan, Program
from batch_agent.solver.solve import SolveOptions, solve
from batch_agent.solver.templates import BOOSTERS, TemplateAuthor, bagging_lineage, spec_of
from batch_agent.solver.training import (
    Deadline,
    fit_rate_to_budget,
    make_folds,
    rate_for_budget,
    train_lightgbm,
    tree_features,
)
from tests.unit.solver.test_toolkit import make_competition


def profile(n_train: int = 1000, n_features: int = 8, task: str = "binary") -> CompetitionProfile:
    regression = task == "regression"
    return CompetitionProfile(
        data_dir="/data", id_column="id", target_columns=["y"], submission_columns=["id", "y"], task=task,
        prediction_format="value" if regression else "probability", classes=None if regression else ["0", "1"],
        metric="rmse" if regression else "roc_auc", n_train=n_train, n_test=100,
        features=[ColumnInfo(name=f"f{i}", kind="numeric", dtype="float64", n_unique=50, missing_fraction=0.0)
                  for i in range(n_features)],
    )


def attempted(name: str, cv: float = 0.8) -> AttemptResult:
    return AttemptResult(number=1, program=name, origin="template", ok=True, cv_score=cv, seconds=2.0,
                         workdir="/tmp/x")


def walk(prof: CompetitionProfile, parent_name: str) -> list[Program]:
    """Every improvement the templates give for one parent, each recorded as tried before the next is asked."""
    author = TemplateAuthor()
    plan = author.plan(prof, 300)
    parent = next(p for p in author.draft(prof, plan) if p.name == parent_name)
    history: list[AttemptResult] = []
    programs = []
    while (program := author.improve(prof, plan, parent, history)) is not None:
        programs.append(program)
        history.append(attempted(program.name))
        assert len(programs) < 20, "improve never runs out"
    return programs


@pytest.mark.parametrize(("parent", "lineage", "family"),
                         [("lgbm", "lgbm", "lightgbm"), ("catboost", "catboost", "catboost"),
                          ("xgboost", "xgboost", "xgboost")])
def test_improve_walks_the_familys_portfolio_then_the_seeds_then_the_bagging_rounds_and_never_repeats_a_name(
        parent: str, lineage: str, family: str) -> None:
    prof = profile()
    programs = walk(prof, parent)
    configurations = portfolio.configurations(family, portfolio.Table(rows=1000, features=8))
    assert 3 <= len(configurations) <= 5
    names = [p.name for p in programs]
    assert names == ([f"{lineage}+p{i}" for i in range(1, len(configurations) + 1)]
                     + [f"{lineage}+seeds{i}" for i in range(1, 4)]
                     + [f"{lineage}+bag{i}" for i in range(1, 7)])
    assert len(set(names)) == len(names)
    for program, (label, params) in zip(programs, configurations, strict=False):
        found = spec_of(program.code)
        assert found is not None, program.name
        spec = found[0]
        assert spec.family == family and spec.name == program.name and spec.params == params
        assert label in program.note and program.parent == parent
    # The configurations differ from the parent's and from one another.
    first_pass = spec_of(next(p for p in TemplateAuthor().draft(prof, TemplateAuthor().plan(prof, 300))
                              if p.name == parent).code)
    assert first_pass is not None
    all_params = [first_pass[0].params] + [params for _, params in configurations]
    assert len({repr(sorted(p.items())) for p in all_params}) == len(all_params)


def test_seed_variants_reseed_the_best_tuned_configuration_with_the_rounds_its_lower_rate_needs() -> None:
    prof = profile()
    author = TemplateAuthor()
    plan = author.plan(prof, 300)
    tuned = walk(prof, "lgbm")[1]  # lgbm+p2: a 0.05 rate on a 1,000-row table
    spec = spec_of(tuned.code)
    assert spec is not None and spec[0].params["learning_rate"] == 0.05
    history = [attempted(f"lgbm+p{i}") for i in range(1, 6)]
    reseeded = author.improve(prof, plan, tuned, history)
    assert reseeded is not None and reseeded.name == "lgbm+seeds1"
    found = spec_of(reseeded.code)
    assert found is not None
    params = found[0].params
    assert params["learning_rate"] == 0.03 and params["num_leaves"] == spec[0].params["num_leaves"]
    assert params["budget_rounds"] == round(spec[0].params["budget_rounds"] * 0.05 / 0.03)
    assert found[0].seeds == [100, 101, 102]


def test_bagging_rounds_reseed_the_best_on_another_split_of_the_folds_each() -> None:
    prof = profile()
    author = TemplateAuthor()
    plan = author.plan(prof, 300)
    tuned = walk(prof, "lgbm")[1]  # lgbm+p2: a 0.05 rate
    spec = spec_of(tuned.code)
    assert spec is not None
    history = [attempted(name) for name in [f"lgbm+p{i}" for i in range(1, 6)] + ["lgbm+seeds1", "lgbm+seeds2",
                                                                                "lgbm+seeds3"]]
    splits, seeds = set(), []
    for round_ in range(1, 7):
        bagged = author.improve(prof, plan, tuned, history)
        assert bagged is not None and bagged.name == f"lgbm+bag{round_}"
        found = spec_of(bagged.code)
        assert found is not None
        bag_spec, n_folds, fold_seed = found
        assert n_folds == plan.n_folds and fold_seed != plan.fold_seed
        assert bag_spec.params["learning_rate"] == 0.03
        assert bag_spec.params["num_leaves"] == spec[0].params["num_leaves"]
        splits.add(fold_seed)
        seeds += bag_spec.seeds
        history.append(attempted(bagged.name))
    assert len(splits) == 6  # a new split each round
    assert len(set(seeds)) == len(seeds) and not set(seeds) & {100, 101, 102, 200, 201, 202, 300, 301, 302}
    assert author.improve(prof, plan, tuned, history) is None


def test_the_fast_and_the_regularised_lightgbm_share_one_lineage_and_the_log_twin_has_its_own() -> None:
    prof = profile(task="regression")
    assert walk(prof, "lgbm-fast")[0].name == "lgbm+p1"
    log_variants = walk(prof, "lgbm-log")
    assert log_variants[0].name == "lgbm-log+p1"
    found = spec_of(log_variants[0].code)
    assert found is not None and found[0].features == {"target": "log"}
    assert walk(prof, "linear") == []


def test_configurations_scale_with_the_rows_and_the_width() -> None:
    def lightgbm(rows: int, wide: bool = False) -> dict[str, dict[str, Any]]:
        return dict(portfolio.configurations("lightgbm", portfolio.Table(rows=rows, features=20, wide=wide)))

    small, medium, large = lightgbm(1_000), lightgbm(20_000), lightgbm(500_000)
    # Small tables start regularised and have the slow configuration; large ones start with capacity.
    assert next(iter(small)) == "regularised" and "slow" in small and "slow" not in large
    assert next(iter(large)) == "deep" and large["deep"]["num_leaves"] > small["deep"]["num_leaves"]
    # Minimum leaf sizes grow with the rows, within their bounds.
    for label in ("regularised", "shallow"):
        assert small[label]["min_data_in_leaf"] <= medium[label]["min_data_in_leaf"] <= \
            large[label]["min_data_in_leaf"]
        assert small[label]["min_data_in_leaf"] < large[label]["min_data_in_leaf"]
    # Wide tables sample fewer features per tree in every configuration.
    wide = lightgbm(20_000, wide=True)
    assert all(wide[label]["feature_fraction"] < medium[label]["feature_fraction"] for label in wide)
    xgb_small = dict(portfolio.configurations("xgboost", portfolio.Table(rows=1_000, features=20)))
    xgb_large = dict(portfolio.configurations("xgboost", portfolio.Table(rows=500_000, features=20)))
    assert xgb_small["shallow"]["min_child_weight"] < xgb_large["shallow"]["min_child_weight"]
    cat_small = dict(portfolio.configurations("catboost", portfolio.Table(rows=1_000, features=20)))
    cat_large = dict(portfolio.configurations("catboost", portfolio.Table(rows=500_000, features=20)))
    assert cat_small["deep"]["depth"] < cat_large["deep"]["depth"]
    # Every configuration says how many rounds its rate needs: more for a lower rate.
    for family in BOOSTERS:
        for _, params in portfolio.configurations(family, portfolio.Table(rows=1_000, features=20)):
            assert params["budget_rounds"] == round(portfolio.RATE_ROUNDS / params["learning_rate"])
    assert portfolio.configurations("linear", portfolio.Table(rows=1_000, features=20)) == []


def test_the_rate_rises_only_when_the_rounds_it_needs_do_not_fit() -> None:
    assert rate_for_budget(0.02, 1000, 100, affordable=5000) == (0.02, 100)
    rate, patience = rate_for_budget(0.02, 1000, 100, affordable=400)
    assert patience == 100 and rate == pytest.approx(0.02 * 1000 / 300)
    rate, patience = rate_for_budget(0.02, 1000, 100, affordable=100)
    assert patience == 25 and rate == pytest.approx(0.02 * 1000 / 75)
    assert rate_for_budget(0.01, 100_000, 100, affordable=50)[0] == 0.3  # never above the cap


def test_a_round_is_timed_without_the_fixed_cost_of_a_fit_over_more_rounds_until_it_shows() -> None:
    asked: list[int] = []

    def time_rounds(rounds: int) -> float:
        asked.append(rounds)
        return 2.0 + rounds / 128  # two seconds of set-up, 1/128 s a round

    params = {"learning_rate": 0.02}
    patience = fit_rate_to_budget(params, 1000, 100, time_rounds, lambda: 4.0)  # 512 rounds fit
    # 10 rounds (0.08 s) are under a sixteenth of the fold's 4 s; 40 rounds (0.31 s) are not.
    assert asked == [1, 11, 41] and patience == 100
    assert params["learning_rate"] == pytest.approx(0.02 * 1000 / 412)
    asked.clear()
    slow = {"learning_rate": 0.02}
    fit_rate_to_budget(slow, 1000, 100, lambda rounds: asked.append(rounds) or 0.01 + rounds, lambda: 400.0)
    assert asked == [1, 11, 41] and slow["learning_rate"] == pytest.approx(0.02 * 1000 / 300)  # 1 s a round
    untouched = {"learning_rate": 0.02}
    assert fit_rate_to_budget(untouched, None, 100, time_rounds, lambda: 4.0) == 100
    assert untouched == {"learning_rate": 0.02} and asked == [1, 11, 41]  # no budget_rounds: nothing probed


def test_rounds_whose_cost_grows_fit_fewer_than_their_first_rounds_cost_says() -> None:
    # Round n costs 1 ms + 0.1 ms × n (after 0.5 s of set-up): 10 s hold 437 rounds, not 10,000.
    params = {"learning_rate": 0.02}
    fit_rate_to_budget(params, 1000, 100, lambda n: 0.5 + 0.001 * n + 0.0001 * n * n / 2, lambda: 10.0)
    affordable = (math.sqrt(0.001**2 + 2 * 0.0001 * 10) - 0.001) / 0.0001
    assert affordable == pytest.approx(437.3, abs=0.1)
    assert params["learning_rate"] == pytest.approx(0.02 * 1000 / (affordable - 100), rel=1e-2)


def _table(tmp_path: Path) -> tuple[CompetitionProfile, pd.DataFrame, pd.DataFrame, np.ndarray]:
    from batch_agent.solver.predictions import encode_target
    from batch_agent.solver.profiling import profile_competition

    data = make_competition(tmp_path / "data", n_train=300, n_test=60)
    prof = profile_competition(data, metric="roc_auc")
    train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
    return prof, train, test, encode_target(prof, train)


@pytest.mark.parametrize("family", BOOSTERS)
def test_every_configuration_is_accepted_by_its_library(family: str, tmp_path: Path) -> None:
    prof, train, test, y = _table(tmp_path)
    folds = make_folds(prof, y, 2, 0)
    for label, params in portfolio.configurations(family, portfolio.Table(rows=300, features=6, categorical=True)):
        # A few rounds of each: the parameters are checked by the library, not the model's quality.
        spec = ModelSpec(name=label, family=family, params={**params, "n_rounds": 5, "budget_rounds": None})
        if family == "lightgbm":
            X, X_test = tree_features(train, test, prof, native_categorical=True)
            oof, _ = train_lightgbm(prof, spec, X, X_test, y, folds, Deadline(60))
        else:
            oof, _ = (fit_xgboost if family == "xgboost" else fit_catboost)(prof, spec, train, test, y, folds,
                                                                           Deadline(60))
        assert oof.shape == (len(y), 2) and np.isfinite(oof).all(), label


@pytest.mark.parametrize("family", BOOSTERS)
def test_a_configuration_whose_rounds_do_not_fit_its_budget_raises_its_rate(
        family: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    prof, train, test, y = _table(tmp_path)
    folds = make_folds(prof, y, 3, 0)
    # Far more rounds than any machine fits in three folds of two seconds.
    spec = ModelSpec(name="slow", family=family, params={"learning_rate": 0.001, "budget_rounds": 10**9})
    started = Deadline(6.0)
    with caplog.at_level(logging.INFO, logger="training"):
        if family == "lightgbm":
            X, X_test = tree_features(train, test, prof, native_categorical=True)
            oof, _ = train_lightgbm(prof, spec, X, X_test, y, folds, started)
        else:
            oof, _ = (fit_xgboost if family == "xgboost" else fit_catboost)(prof, spec, train, test, y, folds,
                                                                           started)
    assert "learning rate 0.001 → 0.300" in caplog.text
    assert np.isfinite(oof).all() and started.elapsed() < 20  # finished near its budget, not at 0.001's pace


class _TwoBoosters(TemplateAuthor):
    """The templates with a first pass of two quick boosters, so that tuning starts within seconds."""

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        plan = super().plan(profile, time_limit)
        first = {c.name: c for c in plan.candidates}
        quick = [first["lgbm-fast"],
                 first["catboost"].model_copy(update={"params": {**first["catboost"].params, "n_rounds": 100}})]
        return plan.model_copy(update={"candidates": quick, "n_folds": 3})


def test_a_run_tunes_the_two_best_families_with_their_portfolios_and_scores_the_variants(tmp_path: Path) -> None:
    data = make_competition(tmp_path / "data", n_train=300, n_test=60)
    # One slot: with two, whichever first-pass model finishes first decides what is asked next.
    options = SolveOptions(time_limit=150, workdir=tmp_path / "work", max_attempts=4, max_repairs=0,
                           memory_limit_mb=2048, metric="roc_auc", slots=1)
    result = solve(str(data), tmp_path / "submission.csv", options, _TwoBoosters())
    names = [h.program for h in result.history]
    assert names[:2] == ["lgbm-fast", "catboost"], names
    tuned = [h for h in result.history if "+p" in h.program]
    assert {h.program for h in tuned} >= {"lgbm+p1", "catboost+p1"}, names
    assert all(h.ok and h.cv_score is not None and h.cv_score > 0.7 for h in tuned), [
        (h.program, h.cv_score, h.reason) for h in tuned]


def test_a_bagging_round_trains_on_another_split_and_joins_the_blend(tmp_path: Path) -> None:
    from batch_agent.solver.blend import _load_predictions, blend_attempts
    from batch_agent.solver.profiling import profile_competition
    from batch_agent.solver.solve import run_attempt

    data = make_competition(tmp_path / "data", n_train=300, n_test=60)
    prof = profile_competition(data, metric="roc_auc")
    author = TemplateAuthor()
    plan = author.plan(prof, 60).model_copy(update={"n_folds": 3})
    first = next(p for p in author.draft(prof, plan) if p.name == "lgbm-fast")
    tried = [attempted(name) for name in [f"lgbm+p{i}" for i in range(1, 6)] + [f"lgbm+seeds{i}" for i in (1, 2, 3)]]
    bagged = author.improve(prof, plan, first, tried)
    assert bagged is not None and bagged.name == "lgbm+bag1"

    results = [run_attempt(prof, program, tmp_path / f"attempt-{n}", time_budget=60, memory_limit_mb=2048, number=n)
               for n, program in enumerate([first, bagged], start=1)]
    assert all(r.ok and r.cv_score is not None and r.cv_score > 0.7 for r in results), [
        (r.program, r.cv_score, r.reason) for r in results]
    assert "fold_seed=42" in first.code and "fold_seed=43" in bagged.code
    train, test = pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv")
    loaded = _load_predictions(prof, results, train["id"], test["id"])
    assert set(loaded) == {"lgbm-fast", "lgbm+bag1"} and not np.isnan(loaded["lgbm+bag1"][0]).any()
    final = blend_attempts(prof, results, tmp_path / "final", higher_is_better=True)
    assert pd.read_csv(final.submission).shape == (60, 2)


def test_bagging_rounds_are_told_apart_by_name_from_every_other_program() -> None:
    assert bagging_lineage("lgbm+bag3") == "lgbm"
    assert bagging_lineage("catboost-log+bag12") == "catboost-log"
    for other in ("lgbm", "lgbm+bags", "lgbm+seeds1", "lgbm+p2", "+bag1", "llm-draft-bag1", "lgbm+bagx"):
        assert bagging_lineage(other) is None, other


def test_the_last_lightgbm_configuration_is_additive_one_split_per_tree() -> None:
    import lightgbm as lgb

    for rows in (1_000, 20_000, 500_000):
        label, params = portfolio.configurations("lightgbm", portfolio.Table(rows=rows, features=20))[-1]
        assert label == "additive"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 5))
    y = X[:, 0] * X[:, 1] + np.sin(X[:, 2])  # an interaction stumps cannot fit, and an additive part
    booster = lgb.train({**{k: v for k, v in params.items() if k != "budget_rounds"}, "verbose": -1},
                        lgb.Dataset(X, y), num_boost_round=50)
    assert all(tree["num_leaves"] <= 2 for tree in booster.dump_model()["tree_info"])
