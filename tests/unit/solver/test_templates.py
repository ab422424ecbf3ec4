"""The template author: plans from the profile, toolkit programs, bounded repair and improvement."""

from __future__ import annotations

import ast

from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import AttemptResult, ModelSpec
from batch_agent.solver.templates import TemplateAuthor, lineage_of, spec_of


def profile(n_train: int = 1000, n_features: int = 8) -> CompetitionProfile:
    return CompetitionProfile(
        data_dir="/data", id_column="id", target_columns=["y"], submission_columns=["id", "y"], task="binary",
        prediction_format="probability", classes=["0", "1"], metric="roc_auc", n_train=n_train, n_test=100,
        features=[ColumnInfo(name=f"f{i}", kind="numeric", dtype="float64", n_unique=50, missing_fraction=0.0)
                  for i in range(n_features)],
        description="a long description " * 100,
    )


def failure(name: str) -> AttemptResult:
    return AttemptResult(number=1, program=name, origin="template", ok=False, seconds=3.0,
                         reason="timed out after 3 s", workdir="/tmp/x")


def test_plan_starts_with_a_fast_model_and_includes_a_linear_one() -> None:
    plan = TemplateAuthor().plan(profile(), time_limit=120)
    names = [c.name for c in plan.candidates]
    assert names[0] == "lgbm-fast"
    assert "linear" in names
    assert plan.compute == "cpu"
    assert plan.n_folds == 5


def test_huge_data_plans_fewer_candidates_on_gpu_with_three_folds() -> None:
    plan = TemplateAuthor().plan(profile(n_train=5_000_000, n_features=40), time_limit=3600)
    assert plan.compute == "gpu"
    assert plan.n_folds == 3
    assert len(plan.candidates) < len(TemplateAuthor().plan(profile(), time_limit=3600).candidates)
    programs = TemplateAuthor().draft(profile(), plan)
    lgbm_programs = [p for p in programs if "lgbm" in p.name]
    assert lgbm_programs and all('"device_type": "gpu"' in p.code for p in lgbm_programs)
    assert all('"task_type": "GPU"' in p.code for p in programs if p.name == "catboost")
    assert all(spec_of(p.code) is not None for p in programs)


def test_plan_includes_catboost_and_xgboost_after_the_fast_model() -> None:
    names = [c.name for c in TemplateAuthor().plan(profile(), time_limit=120).candidates]
    assert names[0] == "lgbm-fast"
    assert "catboost" in names and "xgboost" in names


def test_gpu_programs_ask_xgboost_for_cuda() -> None:
    author = TemplateAuthor()
    plan = author.plan(profile(), time_limit=120).model_copy(update={"compute": "gpu"})
    xgb = next(p for p in author.draft(profile(), plan) if p.name == "xgboost")
    found = spec_of(xgb.code)
    assert found is not None and found[0].params["device"] == "cuda"


def test_drafts_are_valid_python_whose_model_and_folds_read_back_without_the_profile_inlined() -> None:
    author = TemplateAuthor()
    prof = profile()
    plan = author.plan(prof, 120)
    programs = author.draft(prof, plan)
    assert [p.name for p in programs] == [c.name for c in plan.candidates]
    for program, candidate in zip(programs, plan.candidates, strict=True):
        ast.parse(program.code)
        assert spec_of(program.code) == (candidate, plan.n_folds, plan.fold_seed)
        assert "a long description" not in program.code and '"f0"' not in program.code


def test_repair_gives_one_lighter_variant_and_then_stops() -> None:
    author = TemplateAuthor()
    prof = profile()
    program = author.draft(prof, author.plan(prof, 120))[2]  # "lgbm", three seeds
    fixed = author.repair(prof, program, failure(program.name))
    assert fixed is not None and fixed.name == "lgbm-light" and fixed.parent == "lgbm"
    found = spec_of(fixed.code)
    assert found is not None and found[0].seeds == [0] and found[0].params["learning_rate"] == 0.1
    assert author.repair(prof, fixed, failure(fixed.name)) is None


def test_improve_tunes_the_best_lightgbm_then_adds_seed_and_bagging_rounds_then_runs_out() -> None:
    author = TemplateAuthor()
    prof = profile()
    plan = author.plan(prof, 120)
    best = author.draft(prof, plan)[0]
    history: list[AttemptResult] = []
    names = []
    while (program := author.improve(prof, plan, best, history)) is not None:
        names.append(program.name)
        history.append(failure(program.name).model_copy(update={"program": program.name}))
    tuned = [name for name in names if "+p" in name]
    assert tuned == [f"lgbm+p{i}" for i in range(1, len(tuned) + 1)] and len(tuned) >= 3
    assert names[len(tuned):] == ["lgbm+seeds1", "lgbm+seeds2", "lgbm+seeds3"] + [f"lgbm+bag{i}" for i in range(1, 7)]


def test_improve_adds_seeds_to_the_best_catboost_too() -> None:
    author = TemplateAuthor()
    prof = profile()
    plan = author.plan(prof, 120)
    best = next(p for p in author.draft(prof, plan) if p.name == "catboost")
    tuned = [f"catboost+p{i}" for i in range(1, 6)]
    program = author.improve(prof, plan, best, [failure(name) for name in tuned])
    assert program is not None and program.name == "catboost+seeds1"
    found = spec_of(program.code)
    assert found is not None and found[0].family == "catboost" and len(found[0].seeds) == 3


def test_programs_from_other_authors_are_not_repaired_by_templates() -> None:
    author = TemplateAuthor()
    prof = profile()
    foreign = author.draft(prof, author.plan(prof, 120))[0].model_copy(update={"code": "print('hi')"})
    assert author.repair(prof, foreign, failure(foreign.name)) is None


def test_regression_twins_are_poisson_for_non_negative_rmse_targets_and_log_scale_for_mae() -> None:
    rmse = profile().model_copy(update={"task": "regression", "metric": "rmse", "classes": None,
                                        "prediction_format": "value"})

    def twins(prof: CompetitionProfile) -> list[ModelSpec]:
        return [c for c in TemplateAuthor().plan(prof, 120).candidates if c.name.endswith(("-log", "-poisson"))]

    poisson = twins(rmse.model_copy(update={"target_min": 0.0}))
    assert [c.name for c in poisson] == ["lgbm-poisson", "catboost-poisson"]
    assert poisson[0].params["objective"] == "poisson" and poisson[1].params["loss_function"] == "Poisson"
    assert not any(c.features for c in poisson)  # the raw scale: the objective's log link does the rest
    # MAE wants the median, which the log scale fits near; an RMSE target with negative values, or one whose
    # range is unknown, keeps the log twins too.
    for metric, target_min in (("mae", 0.0), ("rmse", -0.9), ("rmse", None)):
        found = twins(rmse.model_copy(update={"metric": metric, "target_min": target_min}))
        assert [(c.name, c.features) for c in found] == [("lgbm-log", {"target": "log"}),
                                                         ("catboost-log", {"target": "log"})], metric
    # RMSLE trains every model on the log scale already; classification has no target scale; a target at -1
    # or below cannot go on it (its twins would be copies of the raw models).
    for other in (rmse.model_copy(update={"metric": "rmsle", "target_min": 0.0}), profile(),
                  rmse.model_copy(update={"target_min": -3.6})):
        assert not twins(other)


def test_a_poisson_lineage_is_tuned_with_its_objective() -> None:
    author = TemplateAuthor()
    prof = profile().model_copy(update={"task": "regression", "metric": "rmse", "classes": None,
                                        "prediction_format": "value", "target_min": 0.0})
    plan = author.plan(prof, 120)
    for name, key, objective in (("lgbm-poisson", "lgbm-poisson", {"objective": "poisson"}),
                                 ("catboost-poisson", "catboost-poisson", {"loss_function": "Poisson"})):
        best = next(p for p in author.draft(prof, plan) if p.name == name)
        assert lineage_of(best.code) == key
        tuned = author.improve(prof, plan, best, [])
        assert tuned is not None and tuned.name == f"{key}+p1"
        found = spec_of(tuned.code)
        assert found is not None and objective.items() <= found[0].params.items()
    assert lineage_of(next(p for p in author.draft(prof, plan) if p.name == "lgbm").code) == "lgbm"


def test_mae_boosters_fit_absolute_error_on_the_raw_scale_and_squared_error_on_the_log_scale() -> None:
    import numpy as np

    from batch_agent.solver.plan import ModelSpec
    from batch_agent.solver.training import absolute_loss

    mae = profile().model_copy(update={"task": "regression", "metric": "mae", "classes": None,
                                       "prediction_format": "value"})
    raw, log = ModelSpec(name="lgbm", family="lightgbm"), ModelSpec(name="lgbm-log", family="lightgbm",
                                                                    features={"target": "log"})
    prices = np.array([120.0, 80.0, 3000.0])
    assert absolute_loss(mae, prices, raw) and not absolute_loss(mae, prices, log)
    # A target at -1 or below stays on the raw scale, so the twin keeps the absolute loss there.
    assert absolute_loss(mae, np.array([-5.0, 2.0]), log)
    assert not absolute_loss(mae.model_copy(update={"metric": "rmse"}), prices, raw)


def test_categorical_heavy_tables_train_catboost_right_after_the_fast_model() -> None:
    codes = profile(n_features=3)
    codes.features.append(ColumnInfo(name="postcode", kind="categorical", dtype="object", n_unique=900,
                                     missing_fraction=0.0))
    names = [c.name for c in TemplateAuthor().plan(codes, 120).candidates]
    assert names[:2] == ["lgbm-fast", "catboost"]
    plain = [c.name for c in TemplateAuthor().plan(profile(), 120).candidates]
    assert plain[1] == "linear"


def test_improve_builds_on_a_parameter_edited_in_the_programs_code() -> None:
    author = TemplateAuthor()
    prof = profile()
    plan = author.plan(prof, 120)
    best = author.draft(prof, plan)[0]
    edited = best.model_copy(update={"code": best.code.replace('"num_leaves": 15', '"num_leaves": 12')})
    assert edited.code != best.code
    tuned = [failure(f"lgbm+p{i}") for i in range(1, 6)]  # the portfolio done: the seeds copy the program
    program = author.improve(prof, plan, edited, tuned)
    found = spec_of(program.code) if program is not None else None
    assert found is not None and found[0].params["num_leaves"] == 12


def test_the_first_model_of_a_wide_many_class_table_caps_its_rounds_and_bins() -> None:
    def first_spec(n_features: int, classes: list[str]) -> dict[str, object]:
        columns = [ColumnInfo(name=f"px{i}", kind="numeric", dtype="float64", n_unique=50, missing_fraction=0.0)
                   for i in range(n_features)]
        profile = CompetitionProfile(data_dir="/d", id_column="id", target_columns=["label"],
                                     submission_columns=["id", "label"], task="multiclass", prediction_format="label",
                                     classes=classes, metric="accuracy", n_train=1400, n_test=360, features=columns)
        spec = TemplateAuthor().plan(profile, 120).candidates[0]
        assert spec.name == "lgbm-fast"
        return spec.params

    wide = first_spec(224, [str(c) for c in range(10)])  # image thumbnails × digits
    assert wide["n_rounds"] == 120 and wide["max_bin"] == 63 and wide["feature_fraction"] == 0.5
    narrow = first_spec(12, ["a", "b", "c"])
    assert "n_rounds" not in narrow and "max_bin" not in narrow
