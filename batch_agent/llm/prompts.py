"""What Claude is told at each step, and the tool schemas its answers must fit.

Every call of a job sends the same tools and the same system blocks (the
instructions, then the competition context marked for prompt caching), so the
cached prefix (tools → system) is shared by the plan, draft, repair and improve
calls; only the final user message changes.

Every prompt can be built at three levels of detail (``DETAILS``): when the API
finds a request too large, the author sends it again one level down, dropping
the data preview and cutting log tails, history and the change memory first,
then the description and the column list.

Stdlib and pydantic only: the plan/generate/repair Lambdas import this module.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

import batch_agent.solver.plan as plan_module
from batch_agent.llm.calls import tool_definition
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import InputError
from batch_agent.solver.metrics import get_metric
from batch_agent.solver.plan import AttemptResult, Plan, Program

# Bounds on what goes into a prompt, so a huge description or log cannot blow the context.
MAX_DESCRIPTION_CHARS = 20_000
MAX_FEATURES_LISTED = 200
MAX_LOG_TAIL_CHARS = 6_000
MAX_HISTORY_ROWS = 30

MAX_MEMORY_ROWS = 20
# A preview is made to a few KB by the solver; this only guards the prompt against a larger one.
PREVIEW_MAX_CHARS = 6_000

_LIBRARIES = ("pandas", "numpy", "scikit-learn", "lightgbm", "scipy")


@dataclass(frozen=True)
class Detail:
    """How much of each variable part a prompt keeps."""

    description_chars: int
    features_listed: int
    log_tail_chars: int
    history_rows: int
    memory_rows: int
    preview: bool


# Level 0 is the full prompt; each further level is what is sent after a "request too large".
DETAILS: tuple[Detail, ...] = (
    Detail(MAX_DESCRIPTION_CHARS, MAX_FEATURES_LISTED, MAX_LOG_TAIL_CHARS, MAX_HISTORY_ROWS, MAX_MEMORY_ROWS, True),
    Detail(6_000, 60, 1_500, 8, 8, False),
    Detail(1_500, 20, 400, 3, 3, False),
)


def detail(level: int) -> Detail:
    return DETAILS[min(max(level, 0), len(DETAILS) - 1)]


# ---------------------------------------------------------------- tool outputs


def _clean_code(code: str) -> str:
    """Strip a markdown fence the model sometimes wraps code in, and check that the code parses."""
    text = code.strip()
    if text.startswith("```"):
        lines = text.splitlines()[1:]
        if lines and lines[-1].strip().startswith("```"):
            lines = lines[:-1]
        text = "\n".join(lines)
    try:
        compile(text, "program.py", "exec")
    except SyntaxError as err:
        raise ValueError(f"the code does not parse: {err.msg} at line {err.lineno}: {err.text!r}") from err
    return text + "\n"


class _WithCode(BaseModel):
    # Each subclass declares ``code`` after its explanation field, so the model explains first.
    @field_validator("code", check_fields=False)
    @classmethod
    def _code_parses(cls, value: str) -> str:
        return _clean_code(value)


class ModelChoice(BaseModel):
    family: str = Field(description="Model family, e.g. lightgbm, logistic regression, extra trees, ridge")
    reason: str = Field(default="", description="Why it suits this data, in one sentence")


class PlanOutput(BaseModel):
    """The plan tool's input."""

    approach: str = Field(description="The overall approach in two or three sentences")
    features: list[str] = Field(description="Feature engineering steps, most valuable first")
    validation: str = Field(description="Validation scheme, e.g. 'stratified 5-fold on the target'")
    n_folds: int = Field(ge=2, le=10, description="Number of cross-validation folds")
    models: list[ModelChoice] = Field(min_length=1, max_length=5, description="Models to try, best bet first")
    compute: Literal["cpu", "gpu"] = Field(
        description="gpu only when a model needs it; the tabular stack is cpu"
    )
    draft_time_fraction: float = Field(
        ge=0.1, le=0.9, description="Share of the time limit for first drafts; the rest: repair and improve"
    )


class ProgramOutput(_WithCode):
    """The write_program tool's input."""

    summary: str = Field(description="What the program does, in one or two sentences")
    code: str = Field(description="The complete Python program, no markdown fences")

    @field_validator("code")
    @classmethod
    def _follows_contract(cls, value: str) -> str:
        # A first draft is written anew, so it must visibly implement the contract: by hand, or with the
        # toolkit's load (which parses --data and --time-budget) and write_outputs (which writes the files).
        required = ["submission.csv", "oof.csv"] if "write_outputs(" not in value else []
        if "load(" not in value or "toolkit" not in value:
            required += ["--data", "--time-budget"]
        for name in required:
            if name not in value:
                raise ValueError(f"the program never mentions {name!r}; follow the program contract")
        return value


class RepairOutput(_WithCode):
    """The repair_program tool's input."""

    diagnosis: str = Field(description="What went wrong, in one sentence")
    code: str = Field(description="The complete Python program, no markdown fences")


class ImprovementOutput(_WithCode):
    """The improve_program tool's input."""

    change: str = Field(description="The one change made, in one sentence")
    code: str = Field(description="The complete Python program, no markdown fences")


PLAN_TOOL = "plan_solution"
PROGRAM_TOOL = "write_program"
REPAIR_TOOL = "repair_program"
IMPROVE_TOOL = "improve_program"

TOOL_DESCRIPTIONS: dict[str, str] = {
    PLAN_TOOL: "Record the plan for solving this competition.",
    PROGRAM_TOOL: "Submit a complete training program that follows the program contract.",
    REPAIR_TOOL: "Submit the fixed version of a program that failed.",
    IMPROVE_TOOL: "Submit the best program with exactly one change meant to raise its CV score.",
}
TOOL_OUTPUTS: dict[str, type[BaseModel]] = {
    PLAN_TOOL: PlanOutput,
    PROGRAM_TOOL: ProgramOutput,
    REPAIR_TOOL: RepairOutput,
    IMPROVE_TOOL: ImprovementOutput,
}


def all_tools() -> list[dict[str, Any]]:
    """Every tool, in a fixed order: the same list on every call keeps the cached prefix identical."""
    return [tool_definition(name, TOOL_DESCRIPTIONS[name], model) for name, model in TOOL_OUTPUTS.items()]


# ---------------------------------------------------------------- system blocks

INSTRUCTIONS = """\
You are the solver of a Kaggle competition. You plan an approach and write complete,
standalone Python training programs that produce a valid submission and an honest
cross-validated score. Each program is run for you; you see its CV score or its error.

The training-program contract:
{contract}
Rules for every program:
* Parse the arguments with argparse: --data (folder with the competition files) and
  --time-budget (seconds of wall-clock time; finish well within it, leaving 15% spare).
  Read every input from the --data folder; write outputs to the current directory.
* The submission must have exactly the columns of sample_submission.csv, in that order,
  one row per test row, with the test ids; no NaN or inf. Probabilities must lie in [0, 1];
  class-probability rows must sum to 1; labels must be written as they appear in train.csv.
* oof.csv holds, for every row of the train.csv in --data, a prediction from a model that
  did not train on that row (cross-validation), keyed by train.csv's id column, in exactly
  the submission's format (same columns, labels or probabilities as you would submit them).
  The product scores it against the labels itself; that score alone ranks your programs.
  A cv_score in metrics.json is shown beside it, never trusted. Use the fold count and seed
  of the plan.
* Fit preprocessing, encodings and any post-processing inside each fold: out-of-fold
  predictions that saw their own labels are caught by rows hidden in test.csv, and the
  attempt is rejected as a leak.
* Libraries available: {libraries}, and the Python standard library.
  Nothing else can be installed. pandas 3 is in use: strings have the string dtype, and chained assignment does
  not modify frames. There is no network and there are no credentials of any kind; never
  read environment variables, home-directory files or anything outside --data and the cwd.
* Do not write oof.npy or test_pred.npy yourself; toolkit.write_outputs writes them.
* Keep memory modest (a few GB at most) and use n_jobs=2 at most.
* Print short progress lines; the last lines of the output are shown to you on failure.

The toolkit: the product's own feature builders, folds, models, metric and file writer,
the ones its template programs use. Build on it (`from batch_agent.solver import toolkit`)
rather than from scratch, and spend your effort on what it lacks: features from domain
knowledge, other models, blends. A program built on it can be this short:
    comp = toolkit.load(n_folds=5, fold_seed=42)  # parses --data and --time-budget
    X, X_test = toolkit.tree_features(comp)
    oof, test_pred = toolkit.fit_lightgbm(comp, X, X_test, {{"learning_rate": 0.05}}, seeds=[0, 1])
    toolkit.write_outputs(comp, oof, test_pred, name="lgbm")
Its API:
{toolkit}
"""


@functools.cache
def toolkit_api() -> str:
    """The toolkit's docstring (its API in a few lines), read from its source: importing it needs pandas."""
    source = Path(plan_module.__file__).with_name("toolkit.py").read_text(encoding="utf-8")
    return ast.get_docstring(ast.parse(source)) or ""


def runtime_libraries() -> str:
    """The libraries programs may import, with versions where this environment has them installed."""
    parts = []
    for name in _LIBRARIES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(name)
    return ", ".join(parts)


def metric_direction(metric: str) -> str:
    """'higher is better' / 'lower is better' for a metric name, or a neutral phrase when unknown."""
    try:
        return "higher is better" if get_metric(metric).higher_is_better else "lower is better"
    except InputError:
        return "direction unknown: read the description"


def competition_context(profile: CompetitionProfile, *, level: int = 0, preview: str = "") -> str:
    """The profile as JSON, the metric, the files, the data preview and the description: the cached part."""
    limits = detail(level)
    data = profile.model_dump(exclude={"description", "features", "data_dir", "preview", "shape"})
    features = [f.model_dump() for f in profile.features[: limits.features_listed]]
    omitted = len(profile.features) - len(features)
    files = [profile.train_file, profile.test_file, profile.sample_submission_file, *profile.extra_files]
    description = profile.description[: limits.description_chars]
    if len(profile.description) > limits.description_chars:
        description += "\n[description truncated]"
    lines = [
        f"# Competition: {profile.title or '(untitled)'}",
        f"Metric: {profile.metric} ({metric_direction(profile.metric)})"
        + (f", K={profile.map_k}" if profile.map_k else ""),
        f"Task: {profile.task}; submission columns hold: {profile.prediction_format}",
        f"Files in the --data folder: {', '.join(files)}",
        "",
        *shape_section(profile),
        "## Data profile (JSON)",
        json.dumps(data, indent=1, default=str),
        "",
        f"## Feature columns of {profile.train_file} (JSON)"
        + (f" — first {len(features)}, {omitted} more omitted" if omitted > 0 else ""),
        json.dumps(features, separators=(",", ":")),
        "",
        *preview_section(preview if limits.preview else ""),
        "## Competition description",
        description or "(no description given)",
    ]
    return "\n".join(lines)


def shape_section(profile: CompetitionProfile) -> list[str]:
    """What the data is beyond one table (images, related tables, a time series), when it is."""
    shape = profile.shape
    if shape.kind == "table":
        return []
    lines = [f"## Data shape: {shape.kind.replace('_', ' ')}", shape.summary.strip()]
    if shape.original_dir:
        lines.append(f"The downloaded files are under {shape.original_dir}/ in the --data folder; "
                     f"{profile.train_file} and {profile.test_file} are the product's flat tables for "
                     "this shape (one row per id, features built from those files).")
    if shape.time_column:
        lines.append(f"Validate in time order by {shape.time_column}: never train on rows later than "
                     "the ones you predict.")
    if shape.group_column:
        lines.append(f"Rows sharing {shape.group_column} belong together: keep each group in one fold.")
    return [*lines, ""]


def preview_section(preview: str) -> list[str]:
    """The data preview's lines in the context (sample rows, ranges, hardware, libraries, checklist)."""
    if not preview.strip():
        return []
    return [
        "## Data preview and the machine that runs the programs",
        "(The preview's hardware and installed libraries override any general statement above.)",
        preview.strip()[:PREVIEW_MAX_CHARS],
        "",
    ]


def system_blocks(
    profile: CompetitionProfile, libraries: str | None = None, *, level: int = 0, preview: str = ""
) -> list[dict[str, Any]]:
    """The system prompt: instructions, then the competition context marked for prompt caching."""
    instructions = INSTRUCTIONS.format(
        contract=plan_module.__doc__ or "", libraries=libraries or runtime_libraries(), toolkit=toolkit_api()
    )
    return [
        {"type": "text", "text": instructions},
        {
            "type": "text",
            "text": competition_context(profile, level=level, preview=preview),
            "cache_control": {"type": "ephemeral"},
        },
    ]


# ---------------------------------------------------------------- step messages


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def plan_messages(time_limit: float, rules_plan: Plan) -> list[dict[str, Any]]:
    reference = json.dumps([c.model_dump() for c in rules_plan.candidates], separators=(",", ":"))
    return _user(
        f"Plan the solution. The whole run has {time_limit:.0f} seconds of wall-clock time for every "
        f"program together (drafts, repairs, improvements), on the machine the context describes.\n"
        f"For reference, the rule-based planner chose: approach {rules_plan.approach!r}, "
        f"{rules_plan.n_folds} folds, candidates {reference}. These template programs run anyway; "
        f"plan what a hand-written program should do better.\n"
        f"Call {PLAN_TOOL}."
    )


def describe_plan(plan_output: PlanOutput) -> str:
    """The LLM plan as the text of Plan.approach, so it travels with the Plan between steps."""
    models = "; ".join(f"{m.family} ({m.reason})" if m.reason else m.family for m in plan_output.models)
    features = "; ".join(plan_output.features) or "none"
    return (
        f"{plan_output.approach}\n"
        f"Features: {features}\n"
        f"Validation: {plan_output.validation}\n"
        f"Models: {models}\n"
        f"Time split: {plan_output.draft_time_fraction:.0%} drafts, the rest repair and improve"
    )


def draft_messages(plan: Plan) -> list[dict[str, Any]]:
    return _user(
        f"The plan:\n{plan.approach}\n"
        f"Cross-validation: {plan.n_folds} folds, seed {plan.fold_seed}.\n\n"
        f"Write the first complete training program for this plan. Prefer a robust, fast program "
        f"that surely produces a valid submission over an ambitious one. Call {PROGRAM_TOOL}."
    )


def repair_messages(program: Program, failure: AttemptResult, *, level: int = 0) -> list[dict[str, Any]]:
    tail = failure.log_tail[-detail(level).log_tail_chars :]
    return _user(
        f"This program failed after {failure.seconds:.0f} s.\n"
        f"Reason: {failure.reason or 'unknown'}\n\n"
        f"## Program\n```python\n{program.code}\n```\n\n"
        f"## Last lines of its output\n```\n{tail}\n```\n\n"
        f"Find the cause and fix it with as small a change as possible; if it ran out of time, make it "
        f"faster. Call {REPAIR_TOOL} with the complete fixed program."
    )


def history_table(history: list[AttemptResult], max_rows: int = MAX_HISTORY_ROWS) -> str:
    # cv_score is the product's score of the program's oof.csv; claimed is what its metrics.json said.
    rows = ["| # | program | origin | ok | cv_score | claimed | seconds | reason |",
            "|---|---|---|---|---|---|---|---|"]
    for attempt in history[-max_rows:] if max_rows > 0 else []:
        cv = f"{attempt.cv_score:.6g}" if attempt.cv_score is not None else "-"
        claimed = f"{attempt.claimed_cv_score:.6g}" if attempt.claimed_cv_score is not None else "-"
        reason = (attempt.reason or "").replace("|", "/").replace("\n", " ")[:160]
        rows.append(
            f"| {attempt.number} | {attempt.program} | {attempt.origin} | {attempt.ok} | {cv} | {claimed} "
            f"| {attempt.seconds:.0f} | {reason} |"
        )
    return "\n".join(rows)


TEMPLATE_NOTE = """\
This program is a template written with the toolkit: a features block and a model block.
You may change any call or literal (the model's params, seeds, target="log", the feature
builder's options), add features to X and X_test, fit a second model and average the two
predictions before write_outputs, or write a different program on the toolkit.
"""


class ChangeRecord(BaseModel):
    """One program Claude wrote, the change it made and its parent's score then: the search's memory."""

    program: str
    kind: Literal["draft", "repair", "improve"]
    change: str
    parent: str | None = None
    parent_score: float | None = None


def change_memory(
    changes: Sequence[ChangeRecord], history: list[AttemptResult], metric: str, max_rows: int = MAX_MEMORY_ROWS
) -> str:
    """Each change with the score it led to, beside its parent's, or why its program failed."""
    if max_rows <= 0 or not changes:
        return "- (none yet)"
    higher = _higher_is_better(metric)
    rows = []
    for record in list(changes)[-max_rows:]:
        attempt = next((a for a in reversed(history) if a.program == record.program), None)
        rows.append(f"- {record.change} ({record.kind}, {record.program}): {_outcome(record, attempt, higher)}")
    omitted = len(changes) - max_rows
    if omitted > 0:
        rows.insert(0, f"({omitted} earlier changes not shown)")
    return "\n".join(rows)


def _outcome(record: ChangeRecord, attempt: AttemptResult | None, higher: bool | None) -> str:
    if attempt is None:
        return "not run yet"
    if not attempt.ok or attempt.cv_score is None:
        reason = (attempt.reason or "no score").replace("\n", " ")[:160]
        return f"failed: {reason}"
    text = f"CV {attempt.cv_score:.6g}"
    if record.parent_score is None:
        return text
    delta = attempt.cv_score - record.parent_score
    verdict = "no change"
    if delta != 0 and higher is not None:
        verdict = "better" if (delta > 0) == higher else "worse"
    return f"{text} from {record.parent_score:.6g} ({delta:+.4g}, {verdict})"


def _higher_is_better(metric: str) -> bool | None:
    try:
        return get_metric(metric).higher_is_better
    except InputError:
        return None


def improve_messages(
    metric: str,
    best: Program,
    best_score: float | None,
    history: list[AttemptResult],
    changes: Sequence[ChangeRecord],
    *,
    level: int = 0,
) -> list[dict[str, Any]]:
    limits = detail(level)
    score = f"{best_score:.6g}" if best_score is not None else "unknown"
    template_note = TEMPLATE_NOTE + "\n" if best.origin == "template" else ""
    return _user(
        f"The best program so far is {best.name!r} with CV {metric} = {score} "
        f"({metric_direction(metric)}).\n\n"
        f"## Program\n```python\n{best.code}\n```\n{template_note}\n"
        f"## Attempts so far\n{history_table(history, limits.history_rows)}\n\n"
        f"## Changes tried so far and what each did to the CV score\n"
        f"{change_memory(changes, history, metric, limits.memory_rows)}\n\n"
        f"Make exactly one change likely to improve the CV score (a feature, a model setting, a "
        f"different model, an ensemble of two models...), not one already tried; learn from what "
        f"helped and what did not. Keep the run time within the time budget. Call {IMPROVE_TOOL} "
        f"with the complete changed program."
    )
