"""The solver loop on one machine: profile → plan → programs in the sandbox → validate → blend → submission.csv.

Every program runs as a child process (``sandbox.py``); the loop keeps the
parent in charge of the time limit: it gives each attempt what is left, repairs
failures a bounded number of times, asks the author for improvements while
time remains, and blends the successful attempts' out-of-fold predictions.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import AttemptsExhaustedError, InputError
from batch_agent.solver.holdout import Holdout, prepare_holdout, remove_prepared
from batch_agent.solver.isolation import Isolation, probe_isolation
from batch_agent.solver.metrics import get_metric
from batch_agent.solver.plan import PARALLEL_MIN_ROWS, AttemptResult, Plan, Program
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.sandbox import TERM_GRACE_SECONDS, run_sandboxed
from batch_agent.solver.shapes import flatten_competition
from batch_agent.solver.source import resolve_source
from batch_agent.solver.submission import validate_submission
from batch_agent.solver.templates import TemplateAuthor, write_program

Progress = Callable[[str, str], None]
# Fetches a competition URL into a folder and returns the folder with its files (the CLI passes Kaggle's).
Download = Callable[[str, Path, Callable[[str], None]], Path]
# Runs one program elsewhere (a Kaggle kernel): (profile, program, attempt folder, time budget, number).
RemoteAttempt = Callable[[CompetitionProfile, Program, Path, float, int], AttemptResult]
T = TypeVar("T")
# An attempt needs at least this long to start Python, read the data and fit one model.
MIN_ATTEMPT_SECONDS = 6.0
# The folder that holds the batch_agent package this solver runs from.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Programs get a soft budget below their hard limit, so they wrap up instead of being killed.
SOFT_BUDGET_FRACTION = 0.8


class SolveOptions(BaseModel):
    time_limit: float = 300.0
    metric: str | None = None
    workdir: Path | None = None
    memory_limit_mb: int = 8192
    max_attempts: int = 20
    max_repairs: int = 2
    # "auto" keeps the plan's choice; "kaggle-gpu" runs each program through solve()'s remote_attempt.
    compute: Literal["auto", "cpu", "gpu", "kaggle-gpu"] = "auto"
    # Run model-written programs even where no uid separation is available (the user accepts the risk).
    allow_unisolated: bool = False


class SolveResult(BaseModel):
    status: Literal["succeeded"] = "succeeded"
    competition: str
    task: str
    target: str
    metric: str
    higher_is_better: bool
    cv_score: float
    seconds: float
    first_valid_seconds: float | None = None
    attempts: int
    output: str
    best: str
    blend: dict[str, float] = Field(default_factory=dict)
    author: str
    workdir: str
    isolation: str = ""
    history: list[AttemptResult] = Field(default_factory=list)
    rank: dict[str, Any] | None = None


def _quiet(stage: str, message: str) -> None:
    del stage, message


def run_attempt(
    profile: CompetitionProfile,
    program: Program,
    attempt_dir: Path,
    *,
    time_budget: float,
    memory_limit_mb: int,
    number: int = 1,
    soft_budget: float | None = None,
    holdout_seed: int | None = None,
    allow_unisolated: bool = False,
) -> AttemptResult:
    """Run one program in the sandbox and score what it wrote; a failure is a result, never an exception.

    ``time_budget`` is the hard limit; the program is told ``soft_budget`` (default: a fraction of the
    hard limit) so that it wraps up before it would be killed. A model-written program reads its own
    copy of the data with a hidden holdout (``holdout.py``), next to its folder; templates read the data.
    A model-written program is refused where the sandbox cannot give it at least its own uid (or user
    namespace), unless ``allow_unisolated``.
    """
    attempt_dir.mkdir(parents=True, exist_ok=True)
    isolation = probe_isolation()
    refusal = unisolated_refusal(program, isolation, allow_unisolated=allow_unisolated)
    if refusal is not None:
        return AttemptResult(number=number, program=program.name, origin=program.origin, ok=False, seconds=0.0,
                             reason=refusal, workdir=str(attempt_dir), isolation=isolation.label)
    write_program(attempt_dir, program, profile)
    soft = max(1.0, min(soft_budget or time_budget, time_budget) * SOFT_BUDGET_FRACTION)
    holdout, note = None, "none: a template program (the product's own code)"
    prepared = attempt_dir.with_name(attempt_dir.name + "-data")
    if program.origin != "template":
        try:
            holdout = prepare_holdout(profile, prepared, seed=holdout_seed)
        except (OSError, ValueError) as exc:
            # Without its holdout a model-written program's score could not be trusted: it does not run.
            remove_prepared(prepared)
            return AttemptResult(number=number, program=program.name, origin=program.origin, ok=False,
                                 seconds=0.0, workdir=str(attempt_dir), isolation=isolation.label,
                                 reason=f"could not prepare the program's copy of the data: {exc}")
        if holdout is not None:
            write_program(attempt_dir, program, holdout.profile)  # the profile of the data it sees
        note = (f"{len(holdout.fresh_ids)} labelled rows hidden in test.csv" if holdout is not None else
                "none: train.csv is too small to spare labelled rows for one")
    try:
        data_dir = holdout.profile.data_dir if holdout is not None else profile.data_dir
        outcome = run_sandboxed(
            [sys.executable, "program.py", "--data", data_dir, "--time-budget", f"{soft:.1f}"],
            workdir=attempt_dir,
            time_limit=time_budget,
            memory_limit_mb=memory_limit_mb,
            env=program_environment(profile),
            read_only=[Path(data_dir)],
            isolation=isolation,
        )
        result = AttemptResult(
            number=number,
            program=program.name,
            origin=program.origin,
            ok=False,
            seconds=round(outcome.seconds, 2),
            log_tail=outcome.log_tail,
            workdir=str(attempt_dir),
            holdout=note,
            isolation=outcome.isolation,
        )
        if not outcome.ok:
            result.reason = outcome.reason
            return result
        return check_outputs(profile, result, ran="the program", holdout=holdout)
    finally:
        if holdout is not None:
            remove_prepared(prepared)


def unisolated_refusal(program: Program, isolation: Isolation, *, allow_unisolated: bool) -> str | None:
    """Why ``program`` may not run under ``isolation``, or None: model-written code needs uid separation."""
    if program.origin == "template" or isolation.separated or allow_unisolated:
        return None
    return (f"not run: a model-written program needs at least its own uid, and this machine gives "
            f"\"{isolation.label}\" (run as root, or where user namespaces work; --allow-unisolated accepts the risk)")


def program_environment(profile: CompetitionProfile) -> dict[str, str]:
    """What a program is told about its runtime, beyond the sandbox's allow-list.

    * The training library it imports is this solver's own copy (the one that wrote its config), not
      whichever ``batch_agent`` the interpreter would find first.
    * OpenMP's wait policy follows the thread rule of the templates (``training.thread_count``): small
      tables train on one thread, where sleeping waits cost nothing and keep stray BLAS pools quiet;
      large ones on every core of a quiet machine, where sleeping waits between LightGBM's many short
      parallel regions made 2 threads slower than 1, so threads spin instead (and a program that finds
      the machine busy falls back to one thread, where the policy does not matter).
    """
    policy = "ACTIVE" if profile.n_train >= PARALLEL_MIN_ROWS else "PASSIVE"
    return {"PYTHONPATH": str(PACKAGE_ROOT), "OMP_WAIT_POLICY": policy}


def check_outputs(profile: CompetitionProfile, result: AttemptResult, *, ran: str,
                  holdout: Holdout | None = None) -> AttemptResult:
    """Judge what a finished program left in ``result.workdir``: a valid submission and oof.csv, scored here.

    ``ran`` names what ran it, for the message when nothing was written ("the program", "Kaggle kernel X").
    """
    from batch_agent.solver.attempt_scores import judge_attempt

    return judge_attempt(profile, result, ran=ran, holdout=holdout)


def default_workdir(source: str) -> Path:
    name = source.rstrip("/").split("/")[-1].split("?")[0] or "competition"
    return Path.cwd() / ".kaggle-solver" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def solve(
    source: str,
    output: Path,
    options: SolveOptions,
    author: ProgramAuthor,
    *,
    progress: Progress = _quiet,
    started: float | None = None,
    download: Download | None = None,
    remote_attempt: RemoteAttempt | None = None,
) -> SolveResult:
    """Solve the competition at ``source`` and write the best valid submission to ``output``.

    ``started`` is the ``time.monotonic()`` at which the caller's clock started (the CLI's start-up
    counts against the time limit too); default: now.
    """
    started = time.monotonic() if started is None else started
    deadline = started + options.time_limit
    workdir = (options.workdir or default_workdir(source)).resolve()

    progress("prepare", f"reading {source}")
    data_dir = resolve_source(source, workdir, download=download,
                              progress=lambda message: progress("download", message))
    workdir.mkdir(parents=True, exist_ok=True)
    # Features of images are worth part of the run, not all of it: training needs the rest.
    data_dir, shape = flatten_competition(data_dir, workdir / "flat",
                                          time_budget=max(5.0, 0.25 * (deadline - time.monotonic())))
    if shape.kind != "table":
        progress("shape", f"{shape.kind}: {shape.summary}")
    profile = profile_competition(data_dir, metric=options.metric)
    profile.shape = shape
    (workdir / "profile.json").write_text(profile.model_dump_json(indent=2))
    metric = get_metric(profile.metric)
    isolation = probe_isolation()
    progress("isolation", isolation.label + (f" ({isolation.why_not_stronger})" if isolation.why_not_stronger else ""))
    if not isolation.separated and author.name != TemplateAuthor.name and not options.allow_unisolated:
        progress("isolation", "model-written programs need at least their own uid, which this machine does not "
                 "give; using the templates only (--allow-unisolated accepts the risk)")
        author = TemplateAuthor()
    if not isolation.separated:
        # Such a program can write where Python finds modules: the solver imports all it will need first.
        # Isolated programs cannot (code and venv are read-only or out of reach), so the import (seconds of
        # pandas and scikit-learn on a busy machine) waits until the blend, off the first submission's path.
        importlib.import_module("batch_agent.solver.blend")
    progress(
        "profile",
        f"{profile.task}, target {', '.join(profile.target_columns)}, metric {profile.metric} "
        f"({'higher' if metric.higher_is_better else 'lower'} is better), "
        f"{profile.n_train} train / {profile.n_test} test rows, {len(profile.features)} features",
    )

    if options.compute == "kaggle-gpu" and remote_attempt is None:
        raise InputError("--compute kaggle-gpu needs a Kaggle competition URL as the source")
    if options.compute == "kaggle-gpu" and profile.shape.kind != "table":
        # A kernel reads the competition as Kaggle mounts it, not the flat folder its programs would need.
        raise InputError(f"--compute kaggle-gpu runs one-table competitions only; this one is {profile.shape.kind}"
                         " (use --compute gpu on a GPU machine, or the default CPU run)")
    loop = _Loop(profile, options, author, workdir, deadline, progress, metric.higher_is_better, remote_attempt)
    if author.name == TemplateAuthor.name:
        plan, drafts = _plan_and_draft(author, profile, options)
    else:
        # A model-backed author spends its first seconds, or minutes, planning and drafting. The fastest
        # template trains meanwhile, so the first valid submission does not wait for the model.
        templates = TemplateAuthor()
        starter = templates.draft(profile, templates.plan(profile, options.time_limit))[0]
        drafting = _InBackground(lambda: _plan_and_draft(author, profile, options))
        loop.attempt(starter, n_waiting=1)
        plan, drafts = drafting.result()
        drafts = [d for d in drafts if not (d.origin == "template" and d.name == starter.name)]
    (workdir / "plan.json").write_text(plan.model_dump_json(indent=2))
    progress("plan", plan.approach)
    loop.run(deque(drafts), plan)
    if loop.best is None:
        last = loop.history[-1].reason if loop.history else "no time to run any program"
        raise AttemptsExhaustedError(f"every attempt failed ({len(loop.history)} attempts); last error: {last}")

    from batch_agent.solver.blend import blend_attempts

    progress("blend", f"combining {sum(h.ok for h in loop.history)} successful attempts")
    final = blend_attempts(profile, [h for h in loop.history if h.ok], workdir / "final",
                           higher_is_better=metric.higher_is_better,
                           time_budget=max(1.0, deadline - time.monotonic() - 1.0))
    problems = validate_submission(final.submission, profile)
    if problems:
        raise AttemptsExhaustedError("the final submission failed validation: " + "; ".join(problems))
    _write_atomically(final.submission, output)

    result = SolveResult(
        competition=profile.title,
        task=profile.task,
        target=", ".join(profile.target_columns),
        metric=profile.metric,
        higher_is_better=metric.higher_is_better,
        cv_score=final.cv_score,
        seconds=round(time.monotonic() - started, 1),
        first_valid_seconds=None if loop.first_valid_at is None else round(loop.first_valid_at - started, 1),
        attempts=len(loop.history),
        output=str(output),
        best=final.name,
        blend=final.weights,
        author=author.name,
        workdir=str(workdir),
        history=loop.history,
        isolation=isolation.label,
    )
    (workdir / "summary.json").write_text(result.model_dump_json(indent=2))
    return result


def _plan_and_draft(
    author: ProgramAuthor, profile: CompetitionProfile, options: SolveOptions
) -> tuple[Plan, list[Program]]:
    plan = author.plan(profile, options.time_limit)
    if options.compute in ("cpu", "gpu"):
        plan.compute = options.compute
    elif options.compute == "kaggle-gpu":
        plan.compute = "gpu"
    return plan, author.draft(profile, plan)


class _InBackground(Generic[T]):
    """One call on a daemon thread (an interrupted run must not wait for it), its outcome collected later."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._value = call()
        except BaseException as exc:  # handed to the caller of result(), in its own thread
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class _Loop:
    """Draft, repair and improve while the time limit allows, remembering the best attempt."""

    def __init__(self, profile: CompetitionProfile, options: SolveOptions, author: ProgramAuthor,
                 workdir: Path, deadline: float, progress: Progress, higher_is_better: bool,
                 remote_attempt: RemoteAttempt | None = None) -> None:
        self.profile, self.options, self.author = profile, options, author
        self.remote_attempt = remote_attempt
        self.workdir, self.deadline, self.progress = workdir, deadline, progress
        self.higher_is_better = higher_is_better
        # Finishing (blend, validation, copy) must fit inside the limit too.
        self.reserve = max(3.0, 0.05 * options.time_limit)
        self.history: list[AttemptResult] = []
        self.best: tuple[Program, AttemptResult] | None = None
        self.first_valid_at: float | None = None

    def remaining(self) -> float:
        return self.deadline - self.reserve - time.monotonic()

    def run(self, queue: deque[Program], plan: Any) -> None:
        repairs = 0
        while len(self.history) < self.options.max_attempts and self.remaining() >= MIN_ATTEMPT_SECONDS:
            if queue:
                program = queue.popleft()
            else:
                best_program = self.best[0] if self.best else None
                improved = (self.author.improve(self.profile, plan, best_program, self.history)
                            if best_program is not None else None)
                if improved is None:
                    return
                program = improved
            result = self.attempt(program, n_waiting=len(queue) + 1)
            if result.ok:
                continue
            if repairs < self.options.max_repairs and self.remaining() >= MIN_ATTEMPT_SECONDS:
                fixed = self.author.repair(self.profile, program, result)
                if fixed is not None:
                    repairs += 1
                    self.progress("repair", f"{program.name} → {fixed.name}")
                    queue.appendleft(fixed)

    def attempt(self, program: Program, n_waiting: int) -> AttemptResult:
        number = len(self.history) + 1
        remaining = self.remaining()
        # The first success matters most: it gets all the time there is. Later attempts are asked to
        # fit in a fair share (their soft budget), but are only killed when the run's time is up.
        budget = remaining if self.best is None else min(remaining, max(remaining / n_waiting * 1.5, 20.0))
        self.progress("train", f"attempt {number}: {program.name} ({program.origin}), budget {budget:.0f} s")
        attempt_dir = self.workdir / f"attempt-{number:02d}-{_slug(program.name)}"
        if self.options.compute == "kaggle-gpu" and self.remote_attempt is not None:
            # Kaggle errors (quota, rules, credentials) propagate: every later attempt would hit them too.
            result = self.remote_attempt(self.profile, program, attempt_dir, budget, number)
        else:
            # The hard limit leaves room for the sandbox's SIGTERM grace before the run's own deadline.
            hard = max(1.0, remaining - TERM_GRACE_SECONDS)
            result = run_attempt(self.profile, program, attempt_dir, time_budget=hard, soft_budget=budget,
                                 memory_limit_mb=self.options.memory_limit_mb, number=number,
                                 allow_unisolated=self.options.allow_unisolated)
        self.history.append(result)
        if not result.ok:
            self.progress("train", f"attempt {number}: {program.name} failed: {result.reason}{_claim(result)}")
            return result
        assert result.cv_score is not None
        improved = self.best is None or self._better(result.cv_score, self.best[1].cv_score)
        if improved:
            self.best = (program, result)
        if self.first_valid_at is None:
            self.first_valid_at = time.monotonic()
        best_score = self.best[1].cv_score if self.best else result.cv_score
        self.progress(
            "train",
            f"attempt {number}: {program.name} CV {result.cv_score:.5f}{_claim(result)} in {result.seconds:.1f} s"
            f" (best {best_score:.5f}{', new best' if improved else ''})",
        )
        return result

    def _better(self, a: float, b: float | None) -> bool:
        if b is None:
            return True
        return a > b if self.higher_is_better else a < b


def _claim(result: AttemptResult) -> str:
    """The program's own claim and the holdout's score, for the progress line, when there are any."""
    parts = []
    if result.cv_score is None:
        return ""
    if result.holdout_score is not None:
        parts.append(f"holdout {result.holdout_score:.5f} ± {result.holdout_noise or 0.0:.5f}")
    if result.claimed_cv_score is not None:
        verdict = "DISAGREES with the product's score" if result.claim_disagrees else "agrees"
        parts.append(f"program claims {result.claimed_cv_score:.5f}, {verdict}")
    return f" [{'; '.join(parts)}]" if parts else ""


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40]


def _write_atomically(source: Path, dest: Path) -> None:
    dest = dest.expanduser()
    if dest.parent and not dest.parent.exists():
        raise InputError(f"cannot write {dest}: folder {dest.parent} does not exist")
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(dest)
