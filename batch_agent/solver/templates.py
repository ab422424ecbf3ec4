"""The rule-based planner and template program writer: the author used when no LLM is configured.

Plans are chosen from the profile alone (size, feature kinds, metric); programs are
readable code in the terms of the toolkit (``toolkit.py``): a features block and a
model block whose parameters are literals, the same calls a model-written program
makes. The template author reads a program's model back from those calls to make
its lighter, tuned and reseeded variants. Stdlib + pydantic: the plan/generate/repair
Lambdas import this module.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path
from typing import Any

from batch_agent.solver import portfolio
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import AttemptResult, ModelSpec, Plan, Program

# What a program reads its competition from, written beside program.py (``write_program``).
PROFILE_FILE = "profile.json"

_PROGRAM = '''"""Training program for "{title}" ({metric}): model "{name}" from the {family} template.

Written by kaggle-solver in the terms of its toolkit (batch_agent.solver.toolkit, whose
docstring is the API). Run it as
    python program.py --data DATA_DIR --time-budget SECONDS
beside the profile.json the product writes. It writes submission.csv, oof.csv, metrics.json,
oof.npy and test_pred.npy to the current directory.
"""

import time

STARTED = time.monotonic()  # the time budget counts the imports below too

from batch_agent.solver import {imports}  # noqa: E402


def main() -> None:
    comp = toolkit.load(n_folds={n_folds}, fold_seed={fold_seed}, started=STARTED)

{features_note}
    {features}
{network}
{model_note}
    oof, test_pred = toolkit.{fit}(
{arguments}
    )

    toolkit.write_outputs(comp, oof, test_pred, name={name_literal}, family={family_literal})


if __name__ == "__main__":
    main()
'''

# family → (feature call, what the features are, fit function, what the model does)
_BLOCKS: dict[str, tuple[str, str, str, str]] = {
    "lightgbm": ("tree_features(comp, native_categorical=True{text})",
                 "numbers, date parts, words and TF-IDF components of text, categories as LightGBM "
                 "categories (frequency codes above 64 levels).",
                 "fit_lightgbm", "LightGBM, early stopping on each fold, averaged over the seeds."),
    "xgboost": ("tree_features(comp, native_categorical=True{text})",
                "numbers, date parts, text words and TF-IDF components, categories as XGBoost categories "
                "(frequency codes above 64 levels, plus in-fold target encodings inside fit_xgboost).",
                "fit_xgboost", "XGBoost, early stopping on each fold, averaged over the seeds."),
    "catboost": ("catboost_features(comp{text})",
                 "numbers, date parts, text words and TF-IDF components; categories stay strings for "
                 "CatBoost's ordered target statistics, with their counts.",
                 "fit_catboost", "CatBoost, early stopping on each fold, averaged over the seeds."),
    "linear": ("linear_features(comp)",
               "scaled numbers (+log of skewed ones, missing flags), one-hot codes, TF-IDF of text.",
               "fit_linear", "ridge or logistic regression, its strength chosen on the folds."),
    "extra_trees": ("tree_features(comp, native_categorical=False{text})",
                    "numbers, date parts, text words and TF-IDF components, categories as frequency codes.",
                    "fit_forest", "extra trees, as many as the time budget allows."),
    "random_forest": ("tree_features(comp, native_categorical=False{text})",
                      "numbers, date parts, text words and TF-IDF components, categories as frequency codes.",
                      "fit_forest", "a random forest, as many trees as the time budget allows."),
    "knn": ("linear_features(comp)",
            "scaled numbers, one-hot codes and TF-IDF of text: distances need comparable scales.",
            "fit_knn", "k nearest neighbours, weighted by distance."),
}
_FIT_FAMILY = {fit: family for family, (_, _, fit, _) in _BLOCKS.items() if family != "random_forest"}
_SEEDED = ("lightgbm", "xgboost", "catboost", "extra_trees", "random_forest")


def model_features(profile: CompetitionProfile) -> list[ColumnInfo]:
    """The columns models train on: all features but a column that names each row's file (images)."""
    return [c for c in profile.features if c.name != profile.shape.file_column]


def _size(profile: CompetitionProfile) -> int:
    """Cells of training data: the one number the time each model needs scales with."""
    return profile.n_train * max(1, len(model_features(profile))) * max(1, len(profile.target_columns))


# Features × classes (or targets) above which the first LightGBM model trades resolution for speed.
WIDE_CELLS = 1_000


def _wide(profile: CompetitionProfile) -> bool:
    n_outputs = len(profile.classes or []) if profile.task == "multiclass" else len(profile.target_columns)
    return len(model_features(profile)) * max(1, n_outputs) > WIDE_CELLS


def _table(profile: CompetitionProfile) -> portfolio.Table:
    """What the tuning portfolio's configurations depend on (``portfolio.configurations``)."""
    return portfolio.Table(rows=profile.n_train, features=len(model_features(profile)), wide=_wide(profile),
                           categorical=_categorical_heavy(profile))


def _candidates(profile: CompetitionProfile) -> list[ModelSpec]:
    small = profile.n_train < 3000
    large = _size(profile) > 20_000_000
    fast_params: dict[str, Any] = {"learning_rate": 0.1, "num_leaves": 15 if small else 31, "early_stopping": 50}
    if _wide(profile):
        # A round costs one tree per class, each scanning every feature's bins, and on such tables the
        # validation loss keeps creeping down for hundreds of rounds: on 224 image features × 10 classes
        # the first model boosted ~900 rounds per fold for 86 s. A round cap, fewer bins and half the
        # features per tree keep the first submission seconds away; the later models do the careful work.
        fast_params.update(max_bin=63, feature_fraction=0.5, n_rounds=120)
    lgbm_fast = ModelSpec(name="lgbm-fast", family="lightgbm", params=fast_params)
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
    twins: list[ModelSpec] = []
    low = profile.target_min
    if profile.task == "regression" and profile.metric in ("rmse", "mse", "r2") and low is not None and low >= 0:
        # Skewed non-negative targets (prices, counts) are often multiplicative: a Poisson objective fits
        # them through a log link, but its fit is the mean that squared error asks for, where a model of
        # log1p(target) fits something below it (the mean of the logs) and its early stopping watches the
        # log scale. The profile does not say whether the target is skewed, so CV decides.
        twins = [
            lgbm.model_copy(deep=True, update={"name": "lgbm-poisson",
                                               "params": {**lgbm.params, **POISSON["lightgbm"]}}),
            catboost.model_copy(deep=True, update={"name": "catboost-poisson",
                                                   "params": {**catboost.params, **POISSON["catboost"]}}),
        ]
    elif profile.task == "regression" and profile.metric in ("rmse", "mse", "r2", "mae") and (low is None or low > -1):
        # MAE asks for the median, which a model of log1p(target) fits near on a skewed target (squared
        # error on the log scale, beside the raw models' absolute error: ``training.absolute_loss``). A
        # target at -1 or below gets no twin: it would train on the raw scale, a copy of the raw model.
        twins = [lgbm.model_copy(deep=True, update={"name": "lgbm-log", "features": {"target": "log"}}),
                 catboost.model_copy(deep=True, update={"name": "catboost-log", "features": {"target": "log"}})]
    if large:
        return [lgbm_fast, lgbm, catboost, *twins[:1], linear]
    if _categorical_heavy(profile):
        # CatBoost's ordered target statistics are the strongest default on codes and names: train it
        # second, before time runs short, and give XGBoost (target-encoded codes) the next turn.
        return [lgbm_fast, catboost, lgbm, *twins, xgboost, linear, extra_trees, lgbm_shallow, random_forest]
    return [lgbm_fast, linear, lgbm, catboost, *twins, xgboost, extra_trees, lgbm_shallow, random_forest]


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
# Each booster's Poisson objective (log link, fits the mean), as the parameter its library reads.
POISSON: dict[str, dict[str, str]] = {
    "lightgbm": {"objective": "poisson"},
    "xgboost": {"objective": "count:poisson"},
    "catboost": {"loss_function": "Poisson"},
}
# How the names of a booster's tuned variants start (``lineage``).
_SHORT = {"lightgbm": "lgbm", "xgboost": "xgboost", "catboost": "catboost"}
# Seed rounds of the best model, after its family's portfolio.
SEED_ROUNDS = 3
# Bagging rounds after the seed rounds, while the run has time and attempts left (``TemplateAuthor.improve``).
BAG_ROUNDS = 6


def lineage(spec: ModelSpec) -> str | None:
    """What template tuning tunes: a booster family on one target scale or objective (``lgbm``,
    ``catboost-log``, ``lgbm-poisson``...).

    Every model of a lineage draws on one portfolio and one set of variant names, so the fast, the
    regularised and the shallow LightGBM never each try the same configurations. None for other families.
    """
    if spec.family not in BOOSTERS:
        return None
    if spec.features.get("target") == "log":
        return _SHORT[spec.family] + "-log"
    if _poisson_objective(spec):
        return _SHORT[spec.family] + "-poisson"
    return _SHORT[spec.family]


def _poisson_objective(spec: ModelSpec) -> dict[str, Any]:
    """A booster's Poisson objective parameter when it has it (kept by its tuned variants), else {}."""
    poisson = POISSON.get(spec.family, {})
    return dict(poisson) if poisson and all(spec.params.get(k) == v for k, v in poisson.items()) else {}


def bagging_lineage(name: str) -> str | None:
    """The lineage a bagging round (``lgbm+bag3``) belongs to; None for every other program name."""
    key, sep, number = name.rpartition("+bag")
    return key if sep and key and number.isdigit() else None


def lineage_of(code: str) -> str | None:
    """The ``lineage`` of a program in the templates' form; None for other programs and other families."""
    found = spec_of(code)
    return None if found is None else lineage(found[0])


def render_program(profile: CompetitionProfile, plan: Plan, spec: ModelSpec, *, network: str | None = None) -> str:
    """The program text for one candidate: toolkit calls with the spec's parameters as literals.

    ``network``: the pretrained network whose image embeddings join the features (image competitions on
    the GPU queue; ``solver.image_network``), None for the tabular templates.
    """
    if plan.compute == "gpu" and spec.family in _GPU_PARAMS:
        # Each family falls back to the CPU inside the program when its build has no GPU support.
        spec = spec.model_copy(update={"params": {**spec.params, **_GPU_PARAMS[spec.family]}})
    features_call, features_note, fit, model_note = _BLOCKS[spec.family]
    text = "".join(f", {key}={_literal(spec.features[key])}" for key in ("text_tokens", "text_svd")
                   if key in spec.features)
    features_call = features_call.format(text=text)
    arguments = ["comp, X, X_test,"]
    if spec.params:
        arguments.append(f"params={_literal(spec.params, indent=8)},")
    if spec.family in ("extra_trees", "random_forest"):
        arguments.append(f"family={_literal(spec.family)},")
    if spec.family in _SEEDED:
        arguments.append(f"seeds={_literal(spec.seeds)},")
    if spec.features.get("target") == "log":
        arguments.append('target="log",  # trained on log1p(target), predictions mapped back')
    title = "".join(ch for ch in profile.title if ch.isprintable() and ch not in '"\\')
    network_block = "" if network is None else (
        "\n" + _comment(f"Each image's {network} embedding (ImageNet weights, on the GPU when there is one) "
                         "joins the features.") + "\n    X, X_test = image_network.with_embeddings(comp, X, X_test)\n")
    return _PROGRAM.format(
        imports="toolkit" if network is None else "image_network, toolkit",
        network=network_block,
        title=title,
        metric=profile.metric,
        name=spec.name,
        family=spec.family if network is None else f"pretrained-network ({network})",
        n_folds=int(plan.n_folds),
        fold_seed=int(plan.fold_seed),
        features_note=_comment(f"Features: {features_note}"),
        features=f"X, X_test = toolkit.{features_call}",
        model_note=_comment(f"Model: {model_note}"),
        fit=fit,
        arguments="\n".join(" " * 8 + line for line in arguments),
        name_literal=_literal(spec.name),
        family_literal=_literal(spec.family),
    )


def _comment(text: str) -> str:
    return "\n".join(textwrap.wrap(text, width=100, initial_indent="    # ", subsequent_indent="    # "))


def _literal(value: Any, indent: int = 0) -> str:
    """A Python literal for ``value`` (JSON-like data); a dict of several entries takes one line per key."""
    if isinstance(value, dict) and len(value) > 1:
        pad = " " * (indent + 4)
        items = "".join(f"{pad}{_literal(k)}: {_literal(v, indent + 4)},\n" for k, v in value.items())
        return "{\n" + items + " " * indent + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise TypeError(f"no literal for {type(value).__name__}")


def write_program(folder: Path, program: Program, profile: CompetitionProfile) -> Path:
    """Write ``program.py`` and the ``profile.json`` it reads into ``folder``; returns the program's path.

    The profile carries no description or preview (the program does not need them) and no path of the
    product's own data: the program reads the folder it is given with --data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    compact = profile.model_copy(update={"description": "", "preview": "", "data_dir": ""})
    (folder / PROFILE_FILE).write_text(compact.model_dump_json(indent=1))
    path = folder / "program.py"
    path.write_text(program.code)
    return path


def spec_of(code: str) -> tuple[ModelSpec, int, int] | None:
    """The model, fold count and fold seed of a program in the templates' form, read back from its calls.

    None when the code is not in that form: no single toolkit fit call, or arguments that are not literals.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    calls: dict[str, list[ast.Call]] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "toolkit"):
            calls.setdefault(node.func.attr, []).append(node)
    fits = [(name, call) for name, found in calls.items() if name in _FIT_FAMILY for call in found]
    loads, writes = calls.get("load", []), calls.get("write_outputs", [])
    if len(fits) != 1 or len(loads) != 1 or len(writes) != 1:
        return None
    fit_name, fit = fits[0]
    try:
        arguments = {k.arg: ast.literal_eval(k.value) for k in fit.keywords if k.arg is not None}
        if len(fit.args) > 3:
            arguments["params"] = ast.literal_eval(fit.args[3])
        folds = {k.arg: ast.literal_eval(k.value) for k in loads[0].keywords if k.arg in ("n_folds", "fold_seed")}
        name = next(ast.literal_eval(k.value) for k in writes[0].keywords if k.arg == "name")
        features: dict[str, Any] = {}
        for builder in ("tree_features", "catboost_features"):
            for call in calls.get(builder, []):
                features.update({k.arg: ast.literal_eval(k.value) for k in call.keywords
                                 if k.arg in ("text_tokens", "text_svd")})
    except (ValueError, TypeError, SyntaxError, StopIteration):
        return None
    if arguments.get("target", "raw") == "log":
        features["target"] = "log"
    family = arguments.get("family", "extra_trees") if fit_name == "fit_forest" else _FIT_FAMILY[fit_name]
    try:
        spec = ModelSpec.model_validate({"name": str(name), "family": family, "params": arguments.get("params") or {},
                                         "seeds": list(arguments.get("seeds", [0])), "features": features})
    except (ValueError, TypeError):
        return None
    return spec, int(folds.get("n_folds", 5)), int(folds.get("fold_seed", 42))


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
    """Plans from rules and writes programs from the toolkit templates."""

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
        found = spec_of(program.code)
        if found is None or "image_network" in program.code:
            # A network program fails for want of its libraries or weights: a lighter one would too.
            return None
        spec, n_folds, fold_seed = found
        spec.seeds = spec.seeds[:1]
        if spec.family in BOOSTERS:
            spec.params.update(learning_rate=max(0.1, float(spec.params.get("learning_rate", 0.05))),
                               early_stopping=30, n_rounds=1500)
        elif spec.family in ("extra_trees", "random_forest"):
            spec.params["n_estimators"] = 100
        elif spec.family == "linear":
            spec.params["strengths"] = [0.3]
        else:
            return None  # k nearest neighbours have no lighter setting worth a retry
        spec.name = f"{spec.name}-light"
        plan = Plan(approach="repair", n_folds=n_folds, fold_seed=fold_seed, candidates=[spec])
        return Program(name=spec.name, code=render_program(profile, plan, spec), origin="template",
                       parent=program.name, note=f"lighter variant after: {failure.reason}")

    def improve(
        self, profile: CompetitionProfile, plan: Plan, best: Program, history: list[AttemptResult]
    ) -> Program | None:
        """The next untried variant of a boosted model's lineage: its family's portfolio, then new seeds.

        Each configuration of ``portfolio.configurations`` once (``lgbm+p1``, ``lgbm+p2``...), then
        SEED_ROUNDS reseeded copies of ``best`` (``lgbm+seeds1``...) at a learning rate of at most 0.03,
        then BAG_ROUNDS more on other splits of the folds (``lgbm+bag1``...), which only long runs reach.
        A variant keeps ``best``'s features, target scale and objective; the blend and the holdout decide what is kept.
        """
        found = spec_of(best.code)
        if found is None:
            return None
        spec = found[0]
        key = lineage(spec)
        if key is None:
            return None
        tried = {h.program for h in history}
        for number, (label, params) in enumerate(portfolio.configurations(spec.family, _table(profile)), start=1):
            name = f"{key}+p{number}"
            if name not in tried:
                variant = ModelSpec(name=name, family=spec.family, params={**params, **_poisson_objective(spec)},
                                    seeds=[number], features=dict(spec.features))
                return Program(name=name, code=render_program(profile, plan, variant), origin="template",
                               parent=best.name, note=f"{spec.family} tuning: the {label} configuration")
        for round_ in range(1, SEED_ROUNDS + BAG_ROUNDS + 1):
            bagging = round_ > SEED_ROUNDS
            name = f"{key}+bag{round_ - SEED_ROUNDS}" if bagging else f"{key}+seeds{round_}"
            if name in tried:
                continue
            variant = spec.model_copy(deep=True)
            variant.name = name
            variant.seeds = [100 * round_ + s for s in range(3)]
            rate = float(spec.params.get("learning_rate", 0.05))
            variant.params["learning_rate"] = min(rate, 0.03)
            if "budget_rounds" in spec.params:  # a tuned configuration: a lower rate needs more rounds
                variant.params["budget_rounds"] = round(int(spec.params["budget_rounds"]) * rate / min(rate, 0.03))
            if not bagging:
                return Program(name=name, code=render_program(profile, plan, variant), origin="template",
                               parent=best.name, note=f"the best {spec.family} model with new seeds")
            # Once the portfolio and the seed rounds are tried, a longer run keeps bagging the lineage's best:
            # new seeds on another split of the rows into folds, so its fold models train on other subsets of
            # the rows (AutoGluon's repeated bagging). The blend averages a lineage's rounds into one member
            # (blend._merge_bagging_rounds). Time-ordered folds do not depend on the seed: there a round only
            # reseeds.
            split = plan.model_copy(update={"fold_seed": int(plan.fold_seed) + round_ - SEED_ROUNDS})
            return Program(name=name, code=render_program(profile, split, variant), origin="template",
                           parent=best.name, note=f"the best {spec.family} model bagged again: new seeds, "
                           "another split of the folds")
        return None
