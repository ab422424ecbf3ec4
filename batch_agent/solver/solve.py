"""The solver loop on one machine: profile → plan → programs in the sandbox → validate → blend → submission.csv.

Every program runs as a child process (``sandbox.py``); the loop keeps the
parent in charge of the time limit. It is a small scheduler (``_Loop``): a queue
of ready programs feeds one or two training slots (``training_slots``) while the
author's calls (plan, drafts, repairs, improvements: minutes for a model) run in
the background; failures are repaired a bounded number of times per lineage,
improvements are asked of the best few while time remains, and the successful
attempts' out-of-fold predictions are blended at the end.
"""

from __future__ import annotations

import bisect
import importlib
import itertools
import os
import shutil
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import AttemptsExhaustedError, InputError
from batch_agent.solver.holdout import Holdout, prepare_holdout, remove_prepared
from batch_agent.solver.isolation import Isolation, kill_leftovers, probe_isolation
from batch_agent.solver.metrics import get_metric
from batch_agent.solver.plan import PARALLEL_MIN_ROWS, AttemptResult, Plan, Program
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.sandbox import TERM_GRACE_SECONDS, run_sandboxed
from batch_agent.solver.shapes import flatten_competition
from batch_agent.solver.source import resolve_source
from batch_agent.solver.submission import validate_submission
from batch_agent.solver.templates import TemplateAuthor, lineage_of, write_program

Progress = Callable[[str, str], None]
# Fetches a competition URL into a folder and returns the folder with its files (the CLI passes Kaggle's).
Download = Callable[[str, Path, Callable[[str], None]], Path]
# Runs one program elsewhere (a Kaggle kernel): (profile, program, attempt folder, time budget, number).
RemoteAttempt = Callable[[CompetitionProfile, Program, Path, float, int], AttemptResult]
# An attempt needs at least this long to start Python, read the data and fit one model.
MIN_ATTEMPT_SECONDS = 6.0
# The folder that holds the batch_agent package this solver runs from.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Programs get a soft budget below their hard limit, so they wrap up instead of being killed.
SOFT_BUDGET_FRACTION = 0.8
# Author calls at once: two keep a model-written program coming while another is being written.
MAX_CALLS_IN_FLIGHT = 2
# A model's first call waits for the first attempt's outcome, but never longer than this.
FIRST_CALL_WAIT_SECONDS = 10.0
# Improvements are asked of this many of the best programs in turn (the templates: of the best lineages).
IMPROVE_FROM_TOP = 3
# A model whose programs all lose gets one training turn in this many at the least (``_Loop._model_turn_gap``).
MAX_MODEL_TURN_GAP = 4


class SolveOptions(BaseModel):
    time_limit: float = 300.0
    metric: str | None = None
    workdir: Path | None = None
    memory_limit_mb: int = 8192
    # Safety nets, not the budget: the time limit bounds a run. Template programs at most: the first pass
    # (8-9 templates) and the tuning of three lineages (portfolio and seeds: 7 each) come to 29-30; a cap of
    # 20 ended 600 s runs on small tables after ~200 s with time and tuning steps left.
    max_template_attempts: int = 40
    # A model's programs at most (drafts, repairs, improvements), counted apart from the templates' so that a
    # model adds programs to theirs: under one cap of 40, 300 s runs on telco stopped at the cap with 30-75 s
    # left, and the model's 8-9 programs had left the templates 31-32 of the 40.
    max_model_attempts: int = 20
    # All programs at most, the model's included: a hard bound on a run; None: only the two caps above.
    max_attempts: int | None = None
    # Repairs per lineage (a failed program, its repair, the repair's repair...), not one count for the run.
    max_repairs: int = 2
    # First drafts a model-backed author is asked for (a call each, at most MAX_CALLS_IN_FLIGHT at once).
    model_drafts: int = 3
    # Programs that train at once; None: ``training_slots`` decides from the data, the cores and the sandbox.
    slots: int | None = Field(default=None, ge=1, le=8)
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
    # Programs that trained at once (``training_slots``).
    slots: int = 1


def _quiet(stage: str, message: str) -> None:
    del stage, message


def training_slots(profile: CompetitionProfile, options: SolveOptions, isolation: Isolation) -> int:
    """How many programs train at once: two single-threaded ones on small tables, else one.

    Below ``PARALLEL_MIN_ROWS`` a program fits on one thread (``training.thread_count``), so a second core
    would idle while one program trains; two at once finished more attempts per minute here (README,
    ``benchmarks/llm_replay.py --slots``). Large tables train on every core, a GPU or a remote kernel take one
    program at a time, and the ``uid`` sandbox (no PID namespace, one shared uid) cannot keep two programs
    apart: its cleanup kills every process of that uid.
    """
    if options.slots is not None:
        return options.slots
    if options.compute in ("gpu", "kaggle-gpu") or isolation.mechanism == "uid":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if profile.n_train < PARALLEL_MIN_ROWS and cores >= 2 else 1


def slot_cpus(slot: int, slots: int) -> frozenset[int] | None:
    """The cores of training slot ``slot`` of ``slots``: this process's cores split evenly; None for one slot.

    A model's program that takes every core (scikit-learn's histogram boosting does by default) would
    otherwise slow the single-threaded template in the other slot.
    """
    if slots < 2 or not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    share = len(cores) // slots
    if share == 0:
        return None
    return frozenset(cores[slot * share:(slot + 1) * share])


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
    cpus: frozenset[int] | None = None,
) -> AttemptResult:
    """Run one program in the sandbox and score what it wrote; a failure is a result, never an exception.

    ``time_budget`` is the hard limit; the program is told ``soft_budget`` (default: a fraction of the
    hard limit) so that it wraps up before it would be killed. A model-written program reads its own
    copy of the data with a hidden holdout (``holdout.py``), next to its folder; templates read the data.
    A model-written program is refused where the sandbox cannot give it at least its own uid (or user
    namespace), unless ``allow_unisolated``. ``cpus``: the cores of the program's training slot.
    ``attempt_dir`` is emptied first.
    """
    # Outputs of an earlier run in the same folder would be scored as this program's if it wrote none, and
    # the sandbox's user could not overwrite them: every program starts from an empty folder.
    shutil.rmtree(attempt_dir, ignore_errors=True)
    attempt_dir.mkdir(parents=True)
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
            cpus=cpus,
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
    templates: ProgramAuthor | None = None,
) -> SolveResult:
    """Solve the competition at ``source`` and write the best valid submission to ``output``.

    ``started`` is the ``time.monotonic()`` at which the caller's clock started (the CLI's start-up
    counts against the time limit too); default: now. ``templates`` writes the programs that train while
    a model-backed ``author`` plans and drafts (default: ``TemplateAuthor``).
    """
    started = time.monotonic() if started is None else started
    deadline = started + options.time_limit
    # The first attempt's scores need scipy.stats (0.7 s of imports here, more on a busy machine); imported
    # while the data is read and the first program trains, they are off the first submission's path.
    threading.Thread(target=importlib.import_module, args=("batch_agent.solver.attempt_scores",), daemon=True,
                     name="import-scoring").start()
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
    slots = training_slots(profile, options, isolation)
    loop = _Loop(profile, options, author, workdir, deadline, progress, metric.higher_is_better, remote_attempt,
                 slots=slots, templates=templates)
    model = author.name != TemplateAuthor.name
    # A model-backed author spends its first seconds, or minutes, planning and drafting. The templates train
    # meanwhile (the fastest first), so the first valid submission does not wait for the model; the model's
    # plan replaces the rules' when it comes, and its programs join the queue as they arrive.
    plan, drafts = _plan_and_draft((templates or TemplateAuthor()) if model else author, profile, options)
    (workdir / "plan.json").write_text(plan.model_dump_json(indent=2))
    if not model:
        progress("plan", plan.approach)
    loop.run(drafts, plan, model=model)
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
        slots=slots,
    )
    (workdir / "summary.json").write_text(result.model_dump_json(indent=2))
    return result


def _plan_and_draft(
    author: ProgramAuthor, profile: CompetitionProfile, options: SolveOptions
) -> tuple[Plan, list[Program]]:
    plan = _plan_only(author, profile, options)
    return plan, author.draft(profile, plan)


CallKind = Literal["plan", "draft", "repair", "improve"]
# Where a ready program waits: repairs first, then the model's programs and the template drafts in turn, and
# last the templates' improvements (asked only when a slot would otherwise idle). First come, first served
# within a rank.
_RANKS: dict[str, int] = {"repair": 0, "model": 1, "template": 2, "template-improve": 3}


@dataclass
class _Ready:
    rank: int
    order: int
    program: Program
    kind: Literal["draft", "repair", "improve"]


@dataclass
class _Call:
    """One author call on a daemon thread (an interrupted run must not wait for it)."""

    kind: CallKind
    subject: Program | None = None  # the program repaired or improved
    failure: AttemptResult | None = None  # the subject's failed attempt, for a repair
    outcome: Any = None
    error: BaseException | None = None


@dataclass
class _Training:
    number: int
    program: Program
    slot: int = 0
    result: AttemptResult | None = None
    error: BaseException | None = None


class _Loop:
    """A small scheduler: training slots fed from a queue of ready programs, author calls in the background.

    Every decision is taken on the calling thread, under one condition variable: which program trains
    next, which author call starts, what a finished attempt or an answer changes. Attempts (a sandboxed
    child process each) and author calls (seconds to minutes for a model) run on daemon threads and only
    hand their outcome back. So the cores keep training while a model plans, drafts, repairs or improves,
    and a model's program joins the queue the moment it arrives.

    The search, as AIDE runs it, widened: ``model_drafts`` first drafts, a repair budget per lineage,
    improvements asked of the best few programs in turn (each program asked at most as often as the
    others), and the final blend of everything valid (``solve``).
    """

    def __init__(self, profile: CompetitionProfile, options: SolveOptions, author: ProgramAuthor,
                 workdir: Path, deadline: float, progress: Progress, higher_is_better: bool,
                 remote_attempt: RemoteAttempt | None = None, *, slots: int = 1,
                 templates: ProgramAuthor | None = None) -> None:
        self.profile, self.options, self.author = profile, options, author
        self.remote_attempt = remote_attempt
        self.workdir, self.deadline, self.progress = workdir, deadline, progress
        self.higher_is_better = higher_is_better
        self.slots = slots
        # Finishing (blend, validation, copy) must fit inside the limit too.
        self.reserve = max(3.0, 0.05 * options.time_limit)
        self.history: list[AttemptResult] = []
        self.best: tuple[Program, AttemptResult] | None = None
        self.first_valid_at: float | None = None
        self.plan: Plan | None = None
        self._cond = threading.Condition()
        self._ready: list[_Ready] = []
        self._order = itertools.count()
        # Template programs started since the model's last one; the model's first program is due at once.
        self._template_turns = MAX_MODEL_TURN_GAP
        self._training: dict[int, _Training] = {}
        self._trained: list[_Training] = []
        self._calls: list[_Call] = []
        self._answered: list[_Call] = []
        self._started = 0
        self._started_by_model: Counter[bool] = Counter()  # programs started, by whether a model wrote them
        self._seen: set[str] = set()
        self._programs: dict[str, Program] = {}
        self._lineages: dict[str, str | None] = {}  # ``lineage_of`` each program, by name
        # Repairs per lineage: each program's first ancestor that failed, and that root's repairs so far.
        self._root: dict[str, str] = {}
        self._repairs: Counter[str] = Counter()
        self._to_repair: deque[tuple[Program, AttemptResult]] = deque()
        # Improvements asked of each parent; a parent that gave nothing new rests until the history grows.
        self._improvements: Counter[str] = Counter()
        self._resting: dict[str, int] = {}
        self._model = False
        # With a model writing, the templates keep tuning their best lineages from their own plan, inline (a
        # template's improvement is rendered, not written), with their own counts.
        self._templates: ProgramAuthor = templates or TemplateAuthor()
        self._template_plan: Plan | None = None
        self._template_tuned: Counter[str] = Counter()
        self._template_resting: dict[str, int] = {}
        self._plan_pending = False
        self._drafts_asked = 0
        self._loop_started = time.monotonic()

    def remaining(self) -> float:
        return self.deadline - self.reserve - time.monotonic()

    def run(self, programs: list[Program], plan: Plan, *, model: bool) -> None:
        """Train ``programs`` (the fastest first) and whatever the author adds, until time or attempts run out.

        ``model``: the author is slow (a model): its plan and ``model_drafts`` first drafts are asked in
        the background while ``programs`` train, and improvements are asked ahead of need, so the
        queue never runs dry while the author writes.
        """
        self.plan, self._model, self._plan_pending = plan, model, model
        self._template_plan = plan
        self._loop_started = time.monotonic()
        for program in programs:
            self._enqueue(program, "draft")
        try:
            with self._cond:
                while True:
                    self._collect()
                    if not self._training and not self._can_start():
                        return
                    self._start_training()
                    self._start_calls()
                    if not self._training and not self._calls and not self._ready:
                        return
                    self._cond.wait(timeout=1.0)
        except BaseException:
            # An interruption never reaches the threads that wait on programs. Bubblewrap stops its program
            # when this process ends (--die-with-parent); the uid sandbox's programs are stopped here.
            kill_leftovers(probe_isolation())
            raise

    # ------------------------------------------------------------ deciding

    def _can_start(self) -> bool:
        return self._room(model=False) or self._room(model=True)

    def _room(self, *, model: bool) -> bool:
        """A program of the model's (or of the templates') may still start: its side's cap, the run's and time allow."""
        options = self.options
        cap = options.max_model_attempts if model else options.max_template_attempts
        return (self._started_by_model[model] < cap
                and (options.max_attempts is None or self._started < options.max_attempts)
                and self.remaining() >= MIN_ATTEMPT_SECONDS)

    def _enqueue(self, program: Program, kind: Literal["draft", "repair", "improve"]) -> bool:
        # A side at its cap takes nothing new: a model that fell back to the templates answers with template
        # programs, and asking on for programs that could never train would keep the run going to its limit.
        if program.name in self._seen or not self._room(model=program.origin != "template"):
            return False
        self._seen.add(program.name)
        if kind == "repair":
            rank = _RANKS["repair"]
        elif program.origin != "template":
            rank = _RANKS["model"]
        else:
            rank = _RANKS["template-improve" if kind == "improve" else "template"]
        self._ready.append(_Ready(rank, next(self._order), program, kind))
        self._ready.sort(key=lambda waiting: (waiting.rank, waiting.order))
        return True

    def _start_training(self) -> None:
        # One program at a time until the first success: a second one beside it would share the machine
        # with it and delay the first valid submission (measured: README, benchmarks/llm_replay.py).
        slots = self.slots if self.best is not None else 1
        while len(self._training) < slots and self._can_start():
            # Per slot: when the model's turn is not due, a free slot takes the templates' next tuning step.
            self._add_template_improvement()
            # A side at its cap never trains again: its waiting programs would hold the loop open.
            self._ready = [w for w in self._ready if self._room(model=w.program.origin != "template")]
            if not self._ready:
                return
            waiting = self._ready.pop(self._next_ready())
            self._template_turns = self._template_turns + 1 if waiting.program.origin == "template" else 0
            self._started += 1
            self._started_by_model[waiting.program.origin != "template"] += 1
            number = self._started
            busy = {running.slot for running in self._training.values()}
            training = _Training(number, waiting.program, slot=min(set(range(self.slots)) - busy))
            self._training[number] = training
            self._programs[waiting.program.name] = waiting.program
            budget = self._budget(waiting.kind, model=waiting.program.origin != "template")
            program = waiting.program
            self.progress("train", f"attempt {number}: {program.name} ({program.origin}), budget {budget:.0f} s")
            thread = threading.Thread(target=self._train, args=(training, budget), daemon=True,
                                      name=f"attempt-{number}")
            thread.start()

    def _next_ready(self) -> int:
        """Which waiting program trains next: the first by rank, but the model's programs and the templates' in turn.

        Taking turns keeps the templates' portfolio (reliable, and the blend's backbone) training beside
        the model's programs (the chance of something better) instead of one crowding out the other. The
        model's turn comes after ``_model_turn_gap`` template programs, and its repairs wait for it too. When
        only one side has programs waiting, it trains: a slot never idles for a turn.
        """
        model_due = self._template_turns >= self._model_turn_gap()
        for index, waiting in enumerate(self._ready):
            if (waiting.program.origin != "template") == model_due:
                return index
        return 0

    def _model_turn_gap(self) -> int:
        """Template programs to train per model program: one while the model keeps up, more while it loses.

        Measured with the scripted model on seattle: weak model programs, taking one turn in two, cost the
        templates 3-6 of their 30 attempts and the run graded worse than without a model. So each model
        program trained without one of the model's ranking among the best few widens the gap by one, up to
        ``MAX_MODEL_TURN_GAP``; the first that ranks among them brings it back to one turn in two.
        """
        trained = sum(1 for attempt in self.history if attempt.origin != "template")
        if trained == 0:
            return 1
        best_few = self._ranked_programs(by_lineage=True)[:IMPROVE_FROM_TOP]
        if any(self._programs[name].origin != "template" for name in best_few):
            return 1
        return min(1 + trained, MAX_MODEL_TURN_GAP)

    def _add_template_improvement(self) -> None:
        """With a model writing, queue the templates' next tuning step when no template program is waiting.

        Without it the portfolio's tuning (``templates.improve``) never ran beside a model, whose
        improvements it asks instead: measured with the scripted model, a run with the model then
        finished fewer, weaker attempts than the same run without one. The tuning step takes turns
        with the model's programs (``_next_ready``), so neither crowds the other out.
        """
        if not self._model or self.best is None or self._template_plan is None or not self._room(model=False):
            return
        if any(waiting.program.origin == "template" for waiting in self._ready):
            return
        # Under a run's cap (``max_attempts``) the attempts left go first to the model's programs, waiting or
        # being written: a run capped at a few attempts tries what the model writes rather than tuning.
        coming = sum(1 for waiting in self._ready if waiting.program.origin != "template") + len(self._calls)
        if self.options.max_attempts is not None and self._started + coming + 1 > self.options.max_attempts:
            return
        parent = self._next_parent(templates=True)
        if parent is None:
            return
        self._template_tuned[parent.name] += 1
        improved = self._templates.improve(self.profile, self._template_plan, parent, list(self.history))
        if not (isinstance(improved, Program) and self._enqueue(improved, "improve")):
            self._template_resting[parent.name] = len(self.history)

    def _budget(self, kind: str, *, model: bool = False) -> float:
        """The soft budget of the next attempt: all the time left until a first success, then a fair share.

        Programs are only killed when the run's time is up; the budget is what they are asked to fit in.
        A share is the time left times the slots over the programs still to come (those waiting, this one,
        and for a model's program those the model is writing). An improvement always counts one more to
        come, so it never gets all of the time left: the next improvement needs some too.

        The templates' shares do not shrink while a model writes: a template given less time drops seeds,
        rounds and trees (``training.py``), so counting programs that may never arrive made every template
        of a run with a model weaker than the same template without one.
        """
        remaining = self.remaining()
        if self.best is None:
            return remaining
        to_come = len(self._ready) + 1 + (len(self._calls) if model else 0)
        if kind == "improve":
            return min(remaining, max(remaining * self.slots / max(to_come, self.slots + 1), MIN_ATTEMPT_SECONDS))
        return min(remaining, max(remaining * self.slots / to_come * 1.5, 20.0))

    def _start_calls(self) -> None:
        while len(self._calls) < MAX_CALLS_IN_FLIGHT:
            call = self._next_call()
            if call is None:
                return
            self._calls.append(call)
            thread = threading.Thread(target=self._ask, args=(call, self._call_function(call)), daemon=True,
                                      name=f"author-{call.kind}")
            thread.start()

    def _next_call(self) -> _Call | None:
        """The next author call worth making now, or None."""
        if not self._room(model=self._model):
            return None  # nothing it wrote could run
        if self._plan_pending:
            # The drafts are written from the plan: nothing else is asked before it. The plan itself waits
            # for the first attempt's outcome (at most FIRST_CALL_WAIT_SECONDS): a model call's start-up in
            # this process (the SDK, the data preview) delayed the first valid submission by 1-3 s.
            waited = time.monotonic() - self._loop_started
            if self._calls or (not self.history and waited < FIRST_CALL_WAIT_SECONDS):
                return None
            return _Call("plan")
        if self._model and self._drafts_asked < self.options.model_drafts:
            self._drafts_asked += 1
            return _Call("draft")
        if self._to_repair:
            program, failure = self._to_repair.popleft()
            return _Call("repair", program, failure)
        if self.best is None:
            return None
        if self._model:
            # Ask ahead: keep a model program coming for each slot while the templates train.
            waiting = sum(1 for w in self._ready if w.program.origin != "template")
            if waiting + len(self._calls) >= self.slots:
                return None
        elif self._ready or len(self._training) >= self.slots:
            return None  # the templates' improvement only when a slot would otherwise idle
        parent = self._next_parent()
        if parent is None:
            return None
        self._improvements[parent.name] += 1
        return _Call("improve", parent)

    def _next_parent(self, *, templates: bool = False) -> Program | None:
        """The program to improve next: among the best few, the one asked least so far (the better on ties).

        The templates tune lineages (a booster family on one target scale, ``templates.lineage``): their
        best few are the best program of each of the best few lineages, so the second-best family is tuned
        too rather than three programs of the best one; programs they cannot tune are not among them.
        """
        ranked = self._ranked_programs(by_lineage=templates or not self._model, tunable_only=True)[:IMPROVE_FROM_TOP]
        asked, resting = ((self._template_tuned, self._template_resting) if templates
                          else (self._improvements, self._resting))
        awake = [name for name in ranked if resting.get(name) != len(self.history)]
        if not awake:
            return None
        return self._programs[min(awake, key=lambda name: (asked[name], ranked.index(name)))]

    def _ranked_programs(self, *, by_lineage: bool, tunable_only: bool = False) -> list[str]:
        """The programs with a valid CV score, best first.

        ``by_lineage``: a template lineage counts once, by its best program, so a few near-copies of one
        booster (seeds, bagging rounds) do not fill the ranking. ``tunable_only`` leaves out the programs
        that belong to no lineage (the model's own), which the templates cannot tune.
        """
        sign = 1.0 if self.higher_is_better else -1.0
        scores: dict[str, float] = {}
        for attempt in self.history:
            if attempt.ok and attempt.cv_score is not None and attempt.program in self._programs:
                scores[attempt.program] = max(scores.get(attempt.program, float("-inf")), sign * attempt.cv_score)
        ranked = sorted(scores, key=lambda name: -scores[name])
        if not by_lineage:
            return ranked
        for name in ranked:
            if name not in self._lineages:  # parsing a program's code takes ~2 ms; its lineage never changes
                self._lineages[name] = lineage_of(self._programs[name].code)
        lineages = {name: self._lineages[name] for name in ranked}
        best_of = {key: name for name, key in reversed(list(lineages.items())) if key is not None}
        return [name for name in ranked
                if best_of.get(lineages[name] or "") == name or (lineages[name] is None and not tunable_only)]

    def _call_function(self, call: _Call) -> Callable[[], Any]:
        profile, plan = self.profile, self.plan
        assert plan is not None
        if call.kind == "plan":
            return lambda: _plan_only(self.author, profile, self.options)
        if call.kind == "draft":
            return lambda: self.author.draft(profile, plan)
        subject = call.subject
        assert subject is not None
        if call.kind == "repair":
            failure = call.failure
            assert failure is not None
            return lambda: self.author.repair(profile, subject, failure)
        history = list(self.history)
        return lambda: self.author.improve(profile, plan, subject, history)

    # ------------------------------------------------------------ background work

    def _train(self, training: _Training, budget: float) -> None:
        try:
            training.result = self._run_one(training.program, training.number, budget,
                                            slot_cpus(training.slot, self.slots))
        except BaseException as exc:  # handed to the deciding thread, which raises it
            training.error = exc
        with self._cond:
            self._trained.append(training)
            self._cond.notify_all()

    def _run_one(self, program: Program, number: int, budget: float, cpus: frozenset[int] | None) -> AttemptResult:
        attempt_dir = self.workdir / f"attempt-{number:02d}-{_slug(program.name)}"
        if self.options.compute == "kaggle-gpu" and self.remote_attempt is not None:
            # Kaggle errors (quota, rules, credentials) propagate: every later attempt would hit them too.
            return self.remote_attempt(self.profile, program, attempt_dir, budget, number)
        # The hard limit leaves room for the sandbox's SIGTERM grace before the run's own deadline.
        hard = max(1.0, self.remaining() - TERM_GRACE_SECONDS)
        return run_attempt(self.profile, program, attempt_dir, time_budget=hard, soft_budget=budget,
                           memory_limit_mb=self.options.memory_limit_mb, number=number,
                           allow_unisolated=self.options.allow_unisolated, cpus=cpus)

    def _ask(self, call: _Call, function: Callable[[], Any]) -> None:
        try:
            call.outcome = function()
        except BaseException as exc:  # handed to the deciding thread, which raises it
            call.error = exc
        with self._cond:
            self._answered.append(call)
            self._cond.notify_all()

    # ------------------------------------------------------------ outcomes

    def _collect(self) -> None:
        trained, self._trained = self._trained, []
        for training in trained:
            del self._training[training.number]
            if training.error is not None:
                raise training.error
            assert training.result is not None
            self._record(training.program, training.result)
        answered, self._answered = self._answered, []
        for call in answered:
            self._calls.remove(call)
            if call.error is not None:
                raise call.error
            self._take(call)

    def _record(self, program: Program, result: AttemptResult) -> None:
        number = result.number
        # In attempt order: with two slots a later attempt can finish first.
        bisect.insort(self.history, result, key=lambda attempt: attempt.number)
        if not result.ok:
            self.progress("train", f"attempt {number}: {program.name} failed: {result.reason}{_claim(result)}")
            root = self._root.get(program.name, program.name)
            if self._repairs[root] < self.options.max_repairs:
                self._repairs[root] += 1
                self._to_repair.append((program, result))
            return
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

    def _take(self, call: _Call) -> None:
        if call.kind == "plan":
            plan = call.outcome
            assert isinstance(plan, Plan)
            self.plan, self._plan_pending = plan, False
            (self.workdir / "plan.json").write_text(plan.model_dump_json(indent=2))
            self.progress("plan", plan.approach)
        elif call.kind == "draft":
            for program in call.outcome or []:
                self._enqueue(program, "draft")
        elif call.kind == "repair":
            broken, fixed = call.subject, call.outcome
            assert broken is not None
            if isinstance(fixed, Program):
                self._root[fixed.name] = self._root.get(broken.name, broken.name)
                if self._enqueue(fixed, "repair"):
                    self.progress("repair", f"{broken.name} → {fixed.name}")
        else:
            parent, improved = call.subject, call.outcome
            assert parent is not None
            if not (isinstance(improved, Program) and self._enqueue(improved, "improve")):
                self._resting[parent.name] = len(self.history)

    def _better(self, a: float, b: float | None) -> bool:
        if b is None:
            return True
        return a > b if self.higher_is_better else a < b


def _plan_only(author: ProgramAuthor, profile: CompetitionProfile, options: SolveOptions) -> Plan:
    plan = author.plan(profile, options.time_limit)
    if options.compute in ("cpu", "gpu"):
        plan.compute = options.compute
    elif options.compute == "kaggle-gpu":
        plan.compute = "gpu"
    return plan


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
