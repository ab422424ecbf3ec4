"""The plan and the programs it produces: data that both program authors share.

A *program* is a standalone Python file run in the sandbox as

    python program.py --data DATA_DIR --time-budget SECONDS

with its own working directory as cwd. It must write, in that directory:

* ``submission.csv`` in the format of sample_submission.csv;
* ``metrics.json`` with at least ``{"cv_score": <float>}``, the cross-validated
  score on the competition's metric;

and may write ``oof.npy`` / ``test_pred.npy`` (out-of-fold and test predictions in
prediction space, rows in train.csv / test.csv order) so the solver can blend
programs that share the plan's folds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# Training rows from which programs train on every core; below it, on one (benchmarks/threads.py).
PARALLEL_MIN_ROWS = 20_000

ModelFamily = Literal["lightgbm", "xgboost", "catboost", "linear", "extra_trees", "random_forest", "knn"]
Origin = Literal["template", "llm-draft", "llm-repair", "llm-improve"]


class ModelSpec(BaseModel):
    """One candidate model of the plan, trained with the plan's cross-validation."""

    name: str
    family: ModelFamily
    params: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    # Feature options for this candidate (e.g. text handling, target encoding).
    features: dict[str, Any] = Field(default_factory=dict)


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
    cv_score: float | None = None
    seconds: float
    reason: str | None = None
    log_tail: str = ""
    workdir: str
