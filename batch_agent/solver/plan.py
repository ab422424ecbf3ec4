"""The plan and the programs it produces: data that both program authors share.

A *program* is a standalone Python file run in the sandbox as

    python program.py --data DATA_DIR --time-budget SECONDS

with its own working directory as cwd. It must write, in that directory:

* ``submission.csv`` in the format of sample_submission.csv: its columns, one row per
  test.csv id;
* ``oof.csv``: out-of-fold predictions in the same format (the same columns, values
  as they would be submitted), one row per train.csv row keyed by train.csv's id
  column, each predicted by a model that did not train on that row.

The product computes the CV score itself from oof.csv, the labels and the
competition's metric; programs following the contract join the final blend.
``metrics.json`` with ``{"cv_score": <float>}`` is optional: the claim is shown
next to the product's score and flagged when the two disagree. A program also finds
``profile.json`` (the competition's profile) beside it; programs written with the
toolkit (``batch_agent.solver.toolkit``) read it and write every file above, plus
``oof.npy`` / ``test_pred.npy`` (predictions in prediction space) for the blend.
A model-written program may see a train.csv with some labelled rows moved into
test.csv under new ids (the product's hidden holdout, which catches leaks).

Validation follows the profile's ``shape``. With ``shape.time_column`` (test comes after
train in time) folds must be time-ordered, never training on rows later than those they
predict; the product's expanding-window folds (the toolkit's ``comp.folds`` already follow the shape) are
``batch_agent.solver.training.time_folds(time_values(train[time_column]), n_folds)``
(``time_values`` from ``batch_agent.solver.time_series``), a list of (train rows, validation
rows) index arrays. The earliest block of such folds has no model to predict it: leave
those rows' prediction cells empty in oof.csv. The product scores the rows that have predictions and accepts
empty rows only when none is later than a predicted row and they are at most half of the
labelled rows. With ``shape.group_column`` rows of one group must never be split across
a fold's training and validation rows. The hidden holdout takes the latest rows of a time
series and whole groups of a grouped table.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

# Training rows from which programs train on every core; below it, on one (benchmarks/threads.py).
PARALLEL_MIN_ROWS = 20_000

ModelFamily = Literal["lightgbm", "xgboost", "catboost", "linear", "extra_trees", "random_forest", "knn"]
Origin = Literal["template", "llm-draft", "llm-repair", "llm-improve"]


# What ModelSpec.features may set: "target": "log" trains on log1p(target) (predictions mapped back);
# "text_tokens" / "text_svd": word indicators and TF-IDF components per text column of the tree features.
FEATURE_OPTIONS = ("target", "text_tokens", "text_svd")


class ModelSpec(BaseModel):
    """One candidate model of the plan, trained with the plan's cross-validation."""

    name: str
    family: ModelFamily
    params: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    # Feature options for this candidate (FEATURE_OPTIONS); the template programs pass each one on.
    features: dict[str, Any] = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _known_feature_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(FEATURE_OPTIONS))
        if unknown:
            raise ValueError(f"unknown feature options {unknown}; known: {list(FEATURE_OPTIONS)}")
        if value.get("target", "log") not in ("log", "raw"):
            raise ValueError(f"features.target must be 'log' or 'raw', not {value['target']!r}")
        return value


class Plan(BaseModel):
    approach: str
    compute: Literal["cpu", "gpu"] = "cpu"
    n_folds: int = 5
    fold_seed: int = 42
    candidates: list[ModelSpec]
    source: Literal["rules", "llm"] = "rules"


class Program(BaseModel):
    name: str
    code: str
    origin: Origin = "template"
    parent: str | None = None
    note: str = ""


class AttemptResult(BaseModel):
    """The outcome of running one program: what the solver and the authors learn from it."""

    number: int
    program: str
    origin: Origin
    ok: bool
    # The product's score of oof.csv; the program's own claim (metrics.json) is only recorded.
    cv_score: float | None = None
    claimed_cv_score: float | None = None
    claim_disagrees: bool = False
    # Model-written programs: the score of their predictions for the labelled rows hidden in test.csv
    # and its bootstrap standard deviation (None without a holdout), and how many rows were hidden.
    holdout_score: float | None = None
    holdout_noise: float | None = None
    holdout_rows: int = 0
    holdout: str = ""
    seconds: float
    reason: str | None = None
    log_tail: str = ""
    workdir: str
    # What kept the program in, e.g. "isolated: own uid, no network, private filesystem" (Isolation.label).
    isolation: str = ""
