"""The rule-based planner and template program writer: the author used when no LLM is configured.

Plans are chosen from the profile alone (size, feature kinds, metric); programs
are a JSON config plus a call into ``batch_agent.solver.training``. Stdlib + pydantic:
the plan/generate/repair Lambdas import this module.
"""

from __future__ import annotations

import json
from typing import Any

from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import AttemptResult, ModelSpec, Plan, Program

_PROGRAM = '''"""Training program for "{title}" ({metric}), model "{name}".

Written by kaggle-solver from its {family} template.{about} Run it as
    python program.py --data DATA_DIR --time-budget SECONDS
It writes submission.csv, oof.csv, metrics.json, oof.npy and test_pred.npy to the current directory.
"""

import time

STARTED = time.monotonic()  # the time budget counts the imports below too

import json  # noqa: E402
import sys  # noqa: E402

from batch_agent.solver.{library} import main  # noqa: E402

CONFIG = json.loads(r"""
{config}
""")

if __name__ == "__main__":
    sys.exit(main(CONFIG, sys.argv[1:], started=STARTED))
'''


def model_features(profile: CompetitionProfile) -> list[ColumnInfo]:
    """The columns models train on: all features but a column that names each row's file (images)."""
    return [c for c in profile.features if c.name != profile.shape.file_column]


def _size(profile: CompetitionProfile) -> int:
    """Cells of training data: the one number the time each model needs scales with."""
    return profile.n_train * max(1, len(model_features(profile))) * max(1, len(profile.target_columns))


def _candidates(profile: CompetitionProfile) -> list[ModelSpec]:
    small = profile.n_train < 3000
    large = _size(profile) > 20_000_000
    lgbm_fast = ModelSpec(
        name="lgbm-fast",
        family="lightgbm",
        params={"learning_rate": 0.1, "num_leaves": 15 if small else 31, "early_stopping": 50},
    )
    linear = ModelSpec(name="linear", family="linear")
    lgbm = ModelSpec(
        name="lgbm",
        family="lightgbm",
        params={
            "learning_rate": 0.03,
            "num_leaves": 15 if small else 63,
            "min_data_in_leaf": 10 if small else 40,
            "feature_fraction": 0.6,
            "lambda_l2": 3.0,
        },
        seeds=[0, 1, 2],
    )
    lgbm_shallow = ModelSpec(
        name="lgbm-shallow",
        family="lightgbm",
        params={"learning_rate": 0.02, "num_leaves": 7, "min_data_in_leaf": 15, "feature_fraction": 0.5,
                "lambda_l2": 10.0, "extra_trees": True},
        seeds=[3, 4],
    )
    catboost = ModelSpec(
        name="catboost",
        family="catboost",
        params={"learning_rate": 0.08 if small else 0.06, "depth": 6, "l2_leaf_reg": 3.0},
    )
    xgboost = ModelSpec(
        name="xgboost",
        family="xgboost",
        params={"learning_rate": 0.05, "max_depth": 4 if small else 6, "reg_lambda": 5.0, "reg_alpha": 0.5,
                "subsample": 0.8, "colsample_bytree": 0.7},
    )
    extra_trees = ModelSpec(name="extra-trees", family="extra_trees",
                            params={"n_estimators": 300 if not large else 100})
    random_forest = ModelSpec(name="random-forest", family="random_forest",
                              params={"n_estimators": 300, "max_features": "sqrt", "min_samples_leaf": 1})
    if profile.task == "regression" and profile.metric in ("rmse", "mse", "r2"):
        # Skewed targets (prices, counts) often fit better on the log scale; the profile does not say
        # whether this one is skewed, so a log-target twin competes on CV (the program keeps the raw
        # scale when a target is -1 or below).
        lgbm_log = lgbm.model_copy(deep=True, update={"name": "lgbm-log", "features": {"target": "log"}})
        catboost_log = catboost.model_copy(deep=True, update={"name": "catboost-log", "features": {"target": "log"}})
        log_twins = [lgbm_log, catboost_log]
    else:
        log_twins = []
    if large:
        return [lgbm_fast, lgbm, catboost, *log_twins[:1], linear]
    if _categorical_heavy(profile):
        # CatBoost's ordered target statistics are the strongest default on codes and names: train it
        # second, before time runs short, and give XGBoost (target-encoded codes) the next turn.
        return [lgbm_fast, catboost, lgbm, *log_twins, xgboost, linear, extra_trees, lgbm_shallow, random_forest]
    return [lgbm_fast, linear, lgbm, catboost, *log_twins, xgboost, extra_trees, lgbm_shallow, random_forest]


def _categorical_heavy(profile: CompetitionProfile) -> bool:
    """Tables whose signal is likely in categories: a high-cardinality code, or mostly categorical columns."""
    features = model_features(profile)
    categorical = [c for c in features if c.kind == "categorical"]
    high_cardinality = any(c.n_unique > 64 for c in categorical)  # training.HIGH_CARDINALITY
    return high_cardinality or len(categorical) >= max(1, len(features)) / 3


_GPU_PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {"device_type": "gpu"},
    "xgboost": {"device": "cuda"},
    "catboost": {"task_type": "GPU"},
}
BOOSTERS = ("lightgbm", "xgboost", "catboost")


def render_program(profile: CompetitionProfile, plan: Plan, spec: ModelSpec, *, network: str | None = None) -> str:
    """The program text for one candidate: its whole configuration inline, so the file runs alone.

    ``network``: the pretrained network whose image embeddings join the features (image competitions on
    the GPU queue; ``solver.image_network``), None for the tabular templates.
    """
    compact = profile.model_copy(update={"description": "", "features": model_features(profile)})
    if plan.compute == "gpu" and spec.family in _GPU_PARAMS:
        # Each family falls back to the CPU inside the program when its build has no GPU support.
        spec = spec.model_copy(update={"params": {**spec.params, **_GPU_PARAMS[spec.family]}})
    config: dict[str, Any] = {
        "profile": compact.model_dump(mode="json"),
        "model": spec.model_dump(mode="json"),
        "n_folds": plan.n_folds,
        "fold_seed": plan.fold_seed,
    }
    about = ""
    if network is not None:
        config["network"] = network
        about = (f"\nEach image's {network} embedding (ImageNet weights, on the GPU when there is one) joins the "
                 f"flat table's\nfeatures before the {spec.family} model.")
    return _PROGRAM.format(
        title=profile.title.replace('"', "'"),
        metric=profile.metric,
        name=spec.name,
        family=spec.family if network is None else f"pretrained-network ({network})",
        about=about,
        library="training" if network is None else "image_network",
        config=json.dumps(config, indent=1),
    )


NETWORK = "resnet18"
# Logistic or ridge regression on the embeddings: the usual head on a frozen network, fast on any size.
NETWORK_SPEC = ModelSpec(name=f"{NETWORK}-linear", family="linear",
                         params={"strengths": [0.01, 0.03, 0.1, 0.3, 1.0]})


def network_program(profile: CompetitionProfile, plan: Plan) -> Program | None:
    """The pretrained-network program, offered only to image competitions on a GPU plan."""
    if plan.compute != "gpu" or profile.shape.kind != "images" or not profile.shape.file_column:
        return None
    return Program(name=NETWORK_SPEC.name, code=render_program(profile, plan, NETWORK_SPEC, network=NETWORK),
                   origin="template", note=f"{NETWORK} image embeddings + {NETWORK_SPEC.family} model")


class TemplateAuthor:
    """Plans from rules and writes programs from the training-library templates."""

    name = "templates"

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        n_folds = 5 if _size(profile) < 5_000_000 and time_limit >= 60 else 3
        gpu_worthy = _size(profile) > 50_000_000
        candidates = _candidates(profile)
        return Plan(
            approach=(
                f"{profile.task} on {profile.n_train} rows × {len(model_features(profile))} features, "
                f"scored by {profile.metric}: {n_folds}-fold CV, "
                + ", ".join(c.name for c in candidates)
                + ", then a greedy blend of the out-of-fold predictions"
            ),
            compute="gpu" if gpu_worthy else "cpu",
            n_folds=n_folds,
            candidates=candidates,
            source="rules",
        )

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        programs = [
            Program(name=spec.name, code=render_program(profile, plan, spec), origin="template",
                    note=f"{spec.family} template")
            for spec in plan.candidates
        ]
        # On the GPU queue the network's embeddings are the strongest image features: they go first.
        network = network_program(profile, plan)
        return programs if network is None else [network, *programs]

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        """Template programs fail on time or memory, not on bugs: retry once with a lighter variant."""
        if program.name.endswith("-light"):
            return None
        config = _config_of(program)
        if config is None or "network" in config:
            # A network program fails for want of its libraries or weights: a lighter one would too.
            return None
        spec = ModelSpec.model_validate(config["model"])
        spec.seeds = spec.seeds[:1]
        if spec.family in BOOSTERS:
            spec.params.update(learning_rate=max(0.1, float(spec.params.get("learning_rate", 0.05))),
                               early_stopping=30, n_rounds=1500)
        elif spec.family in ("extra_trees", "random_forest"):
            spec.params["n_estimators"] = 100
        else:
            spec.params["strengths"] = [0.3]
        spec.name = f"{spec.name}-light"
        plan = Plan(approach="repair", n_folds=int(config["n_folds"]), fold_seed=int(config["fold_seed"]),
                    candidates=[spec])
        return Program(name=spec.name, code=render_program(profile, plan, spec), origin="template",
                       parent=program.name, note=f"lighter variant after: {failure.reason}")

    def improve(
        self, profile: CompetitionProfile, plan: Plan, best: Program, history: list[AttemptResult]
    ) -> Program | None:
        """More seeds of the best boosted model: a cheap, reliable gain while time remains."""
        config = _config_of(best)
        if config is None:
            return None
        spec = ModelSpec.model_validate(config["model"])
        if spec.family not in BOOSTERS:
            return None
        tried = {h.program for h in history}
        for round_ in range(1, 4):
            name = f"{spec.name.split('+')[0]}+seeds{round_}"
            if name not in tried:
                variant = spec.model_copy(deep=True)
                variant.name = name
                variant.seeds = [100 * round_ + s for s in range(3)]
                variant.params["learning_rate"] = min(float(spec.params.get("learning_rate", 0.05)), 0.03)
                return Program(name=name, code=render_program(profile, plan, variant), origin="template",
                               parent=best.name, note=f"the best {spec.family} model with new seeds")
        return None


def _config_of(program: Program) -> dict[str, Any] | None:
    """The CONFIG of a template program (None for programs written by other authors)."""
    start = program.code.find('CONFIG = json.loads(r"""')
    if start < 0:
        return None
    body = program.code[start:].split('"""', 2)[1]
    try:
        config = json.loads(body)
    except json.JSONDecodeError:
        return None
    return config if isinstance(config, dict) else None
