"""The Claude author: plans and writes training programs with an LLM, the templates as its safety net.

``ClaudeAuthor`` implements ``ProgramAuthor`` in the draft / debug / improve
manner of AIDE: draft a program from the plan, repair a failed program from its
code and log tail, and improve the best program one change at a time (the solver
keeps a change only when the CV score rises). The template author's drafts are
always returned too, so the templates' result stays a candidate.

One failed call costs that call, not Claude for the run: the step it served
gets the template author's answer instead. A request the API finds too large is
sent again with a shorter context (preview, log tail, history and memory first);
cut answers, timeouts and invalid output are retried inside ``call_tool``.
Claude is dropped for the rest of the run, with the reason in
``fallback_reason``, only when no later call can succeed (no key, the key
refused, the cost ceiling reached) or after ``max_consecutive_failures`` failed
calls in a row. A call skipped for lack of time drops nothing.

The search's memory links each program Claude wrote to the change it made and
to its parent's score then; the improve prompt shows each change beside the
score it led to, or why it failed (a leak the holdout caught included).

The solver calls an author from background threads, up to two calls at once
(``solve._Loop``): each ``draft`` call writes the next of several diverse first
drafts, and the author's state (failure counts, memory, the cost tally) is
updated under a lock. With two calls in flight the cost ceiling can be passed
by at most the other call's cost: each call checks it against what was spent
before it started.

Lambdas import this module: no pandas, numpy, scikit-learn or LightGBM here.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from batch_agent.llm import prompts
from batch_agent.llm.calls import (
    CostTally,
    LLMAuthError,
    LLMBudgetError,
    LLMDeadlineError,
    LLMError,
    LLMRequestTooLargeError,
    LLMSettings,
    LLMTimeoutError,
    call_tool,
    make_client,
)
from batch_agent.llm.prompts import ChangeRecord
from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Origin, Plan, Program

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

OutputT = TypeVar("OutputT", bound=BaseModel)
# Messages for one step at a level of detail (0: full); a too-large request is built again one level down.
Compose = Callable[[int], list[dict[str, Any]]]
# Changes kept in the memory (and in a job's stored usage).
MAX_MEMORY = 40
# A timeout this close to a call's deadline is the deadline's doing (the request's timeout is the time left).
_DEADLINE_SLACK_SECONDS = 2.0
# What makes each first draft after the first differ from the others, in turn: the search starts wide.
DRAFT_DIRECTIONS = (
    "Use a different model family from the plan's first choice (for example a linear model on well-prepared "
    "features, or another gradient-boosting library), keeping the plan's validation.",
    "Put the effort into the feature engineering the description and the preview suggest (interactions, "
    "text or date parts, group statistics fitted inside the folds), with a fast and robust model.",
)


class ClaudeAuthor:
    """Programs written by Claude, with the template author as candidate source and fallback."""

    name = "claude"

    def __init__(
        self,
        settings: LLMSettings,
        *,
        fallback: ProgramAuthor,
        client: anthropic.Anthropic | None = None,
        tally: CostTally | None = None,
        fallback_reason: str | None = None,
        max_repairs: int = 3,
        deadline: float | None = None,
        call_time_share: float = 0.5,
    ) -> None:
        self.settings = settings
        self.fallback = fallback
        self.tally = tally if tally is not None else CostTally()
        # A step in another process (a Lambda) passes the reason on so the switch sticks.
        self.fallback_reason = fallback_reason
        self._client = client
        self.max_repairs = max_repairs
        # The run's end (time.monotonic()); set by plan() from the time limit when not given.
        # A model call may use at most call_time_share of the time left, so the program
        # it writes still has time to run.
        self.deadline = deadline
        self.call_time_share = call_time_share
        # Failed calls since the last success; reaching settings.max_consecutive_failures drops Claude.
        self.consecutive_failures = 0
        self.failed_calls = 0
        self.last_error: str | None = None
        self.memory: list[ChangeRecord] = []
        self._preview: str | None = None
        # The solver calls from background threads: every update of the state above goes through this lock.
        self._lock = threading.RLock()
        self._skips = 0  # calls skipped because too little of the run was left for them
        # First drafts asked for so far, and the summaries of those written.
        self._drafts_asked = 0
        self._draft_summaries: list[str] = []
        # Repairs made per originally failed program, and each repair's original.
        self._repairs: dict[str, int] = {}
        self._repair_roots: dict[str, str] = {}
        if self.fallback_reason is None and client is None and not settings.enabled:
            self.fallback_reason = "no Anthropic API key is configured"
        # Named after who writes the programs: the templates alone when Claude is out from the start.
        self.name = "claude" if self.fallback_reason is None else fallback.name

    @property
    def using_llm(self) -> bool:
        return self.fallback_reason is None

    # ------------------------------------------------------------ ProgramAuthor

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        if self.deadline is None:
            self.deadline = time.monotonic() + time_limit
        rules_plan = self.fallback.plan(profile, time_limit)
        output = self._ask(
            profile,
            lambda _level: prompts.plan_messages(time_limit, rules_plan),
            prompts.PLAN_TOOL,
            prompts.PlanOutput,
        )
        if output is None:
            return rules_plan
        # The candidates stay the rules planner's: the template drafts run from them
        # whichever author planned; Claude's model choices travel in the approach text.
        return rules_plan.model_copy(
            update={
                "approach": prompts.describe_plan(output),
                "compute": output.compute,
                "n_folds": output.n_folds,
                "source": "llm",
            }
        )

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        """The template drafts and Claude's next first draft: each call asks for one unlike the others."""
        templates = self.fallback.draft(profile, plan)
        with self._lock:
            index = self._drafts_asked
            self._drafts_asked += 1
            earlier = list(self._draft_summaries)
        output = self._ask(
            profile,
            lambda _level: draft_request(prompts.draft_messages(plan), index, earlier),
            prompts.PROGRAM_TOOL,
            prompts.ProgramOutput,
        )
        if output is None:
            return templates
        program = _program(output.code, "llm-draft", parent=None, note=output.summary)
        with self._lock:
            self._draft_summaries.append(output.summary)
        self._remember(ChangeRecord(program=program.name, kind="draft", change=output.summary))
        # The fastest template first guarantees a valid submission early; Claude's draft next.
        return [*templates[:1], program, *templates[1:]]

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        if program.origin == "template" or not self.using_llm:
            return self.fallback.repair(profile, program, failure)
        with self._lock:
            root = self._repair_roots.get(program.name, program.name)
            if self._repairs.get(root, 0) >= self.max_repairs:
                return None
            self._repairs[root] = self._repairs.get(root, 0) + 1
        output = self._ask(
            profile,
            lambda level: prompts.repair_messages(program, failure, level=level),
            prompts.REPAIR_TOOL,
            prompts.RepairOutput,
        )
        if output is None:
            return None
        repaired = _program(output.code, "llm-repair", parent=program.name, note=output.diagnosis)
        with self._lock:
            self._repair_roots[repaired.name] = root
        self._remember(
            ChangeRecord(
                program=repaired.name, kind="repair", change=f"fix: {output.diagnosis}", parent=program.name
            )
        )
        return repaired

    def improve(
        self, profile: CompetitionProfile, plan: Plan, best: Program, history: list[AttemptResult]
    ) -> Program | None:
        if not self.using_llm:
            return self.fallback.improve(profile, plan, best, history)
        best_score = next(
            (
                a.cv_score
                for a in reversed(history)
                if a.program == best.name and a.ok and a.cv_score is not None
            ),
            None,
        )
        with self._lock:
            memory = list(self.memory)
        output = self._ask(
            profile,
            lambda level: prompts.improve_messages(
                profile.metric, best, best_score, history, memory, level=level
            ),
            prompts.IMPROVE_TOOL,
            prompts.ImprovementOutput,
        )
        if output is None:
            # This call failed or Claude is out: the templates may still have a change to offer.
            return self.fallback.improve(profile, plan, best, history)
        improved = _program(output.code, "llm-improve", parent=best.name, note=output.change)
        self._remember(
            ChangeRecord(
                program=improved.name,
                kind="improve",
                change=output.change,
                parent=best.name,
                parent_score=best_score,
            )
        )
        return improved

    # ------------------------------------------------------------ reporting

    def summary(self) -> str:
        """One line for the CLI summary: who wrote the programs, tokens and cost, and any fallback."""
        spent = self.tally.summary()
        if self.failed_calls:
            spent += f"; {self.failed_calls} calls failed (the last: {self.last_error})"
        if self.fallback_reason is None:
            return f"Claude ({self.settings.model}): {spent}"
        fell_back = f"fell back from Claude to the templates because {self.fallback_reason}"
        if self.tally.calls == 0:
            return f"templates only: {fell_back}"
        return f"Claude ({self.settings.model}), then {fell_back}; {spent}"

    def usage(self) -> dict[str, Any]:
        """Tokens, cost, failures, fallback state and the change memory.

        For the CLI summary, job status and benchmarks; a job's steps in separate
        processes resume from it (``resume_author``).
        """
        return {
            "author": self.name,
            "llm_used": self.tally.calls > 0,
            "fallback_reason": self.fallback_reason,
            **self.tally.model_dump(),
            "total_tokens": self.tally.total_tokens,
            "failed_calls": self.failed_calls,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "memory": [record.model_dump() for record in self.memory],
        }

    # ------------------------------------------------------------ internals

    def _ask(
        self,
        profile: CompetitionProfile,
        compose: Compose,
        tool_name: str,
        output_model: type[OutputT],
    ) -> OutputT | None:
        """One structured call, or None when it failed (the step falls back) or Claude is out."""
        if not self.using_llm:
            return None
        level = 0
        while True:
            with self._lock:
                # Each call counts on its own copy (two may run at once); what it spent is added after.
                spent_before = self.tally.model_copy()
            tally = spent_before.model_copy()
            deadline = self._call_deadline()
            try:
                with self._lock:
                    if self._client is None:
                        self._client = make_client(self.settings)
                    client = self._client
                output = call_tool(
                    client,
                    self.settings,
                    system=prompts.system_blocks(profile, level=level, preview=self._data_preview(profile)),
                    messages=compose(level),
                    tool_name=tool_name,
                    output_model=output_model,
                    tally=tally,
                    tools=prompts.all_tools(),
                    deadline=deadline,
                )
            except LLMRequestTooLargeError as err:
                self._spent(tally, spent_before)
                if level + 1 < len(prompts.DETAILS):
                    level += 1
                    log.warning("%s; sending a shorter prompt (detail level %d)", err, level)
                    continue
                self._failed(err)
                return None
            except (LLMAuthError, LLMBudgetError) as err:
                self._spent(tally, spent_before)
                # No later call can succeed: the rest of the run is the templates'.
                self._drop(f"{type(err).__name__}: {err}")
                return None
            except LLMDeadlineError as err:
                self._spent(tally, spent_before)
                # Nothing was sent; a later step (another Lambda, more time) may still call.
                with self._lock:
                    self.last_error = f"{type(err).__name__}: {err}"
                    first_skip, self._skips = self._skips == 0, self._skips + 1
                # Near the end every step is skipped in turn: one warning says so, the rest go to the debug log.
                if first_skip:
                    log.warning("Claude skipped for %s: %s (later skips for lack of time are not reported)",
                                tool_name, err)
                else:
                    log.debug("Claude skipped for %s: %s", tool_name, err)
                return None
            except LLMTimeoutError as err:
                self._spent(tally, spent_before)
                if deadline is not None and time.monotonic() >= deadline - _DEADLINE_SLACK_SECONDS:
                    # Cut by the run's own time limit, not a fault of the model: nothing is dropped.
                    with self._lock:
                        self.last_error = f"{type(err).__name__}: {err} (at the call's deadline)"
                    log.warning("Claude's answer for %s did not come within the run's time: %s", tool_name, err)
                    return None
                self._failed(err)
                return None
            except LLMError as err:
                self._spent(tally, spent_before)
                self._failed(err)
                return None
            self._spent(tally, spent_before)
            with self._lock:
                self.consecutive_failures = 0
            return output

    def _spent(self, after: CostTally, before: CostTally) -> None:
        """Add what one call spent (its copy of the tally, less what the copy started from)."""
        fields = ("calls", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens", "cost_usd")
        spent = CostTally.model_validate({name: getattr(after, name) - getattr(before, name) for name in fields})
        with self._lock:
            self.tally.merge(spent)

    def _failed(self, err: LLMError) -> None:
        with self._lock:
            self.failed_calls += 1
            self.consecutive_failures += 1
            self.last_error = f"{type(err).__name__}: {err}"
            failures, last = self.consecutive_failures, self.last_error
        limit = self.settings.max_consecutive_failures
        if failures >= limit:
            self._drop(f"{failures} model calls failed in a row; the last: {last}")
        else:
            log.warning(
                "Claude call failed (%d in a row of %d allowed); this step uses the templates: %s",
                failures,
                limit,
                last,
            )

    def _drop(self, reason: str) -> None:
        with self._lock:
            if self.fallback_reason is not None:
                return  # another call dropped Claude first; its reason stands
            self.fallback_reason = reason
        log.warning("Claude dropped for the rest of the run, falling back to the templates: %s", reason)

    def _remember(self, record: ChangeRecord) -> None:
        with self._lock:
            self.memory = [*self.memory, record][-MAX_MEMORY:]

    def _data_preview(self, profile: CompetitionProfile) -> str:
        """The profile's preview, or one made here when the competition's files are on this machine."""
        if profile.preview:
            return profile.preview
        with self._lock:
            if self._preview is None:
                preview = ""
                if (Path(profile.data_dir) / profile.train_file).is_file():
                    # pandas only here: steps without the files (Lambdas) never import it.
                    from batch_agent.solver.data_preview import data_preview

                    preview = data_preview(profile)
                self._preview = preview
            return self._preview

    def _call_deadline(self) -> float | None:
        if self.deadline is None:
            return None
        now = time.monotonic()
        return now + max(0.0, self.deadline - now) * self.call_time_share


def draft_request(messages: list[dict[str, Any]], index: int, earlier: list[str]) -> list[dict[str, Any]]:
    """The draft messages for first draft ``index`` (0-based): after the first, ask for a different one.

    Drafts are asked in parallel, so a draft's siblings may not be written yet: each after the first gets
    a direction of its own (``DRAFT_DIRECTIONS``) beside the summaries of those already written.
    """
    if index == 0:
        return messages
    written = "\n".join(f"- {summary}" for summary in earlier) or "- (being written at the same time)"
    direction = DRAFT_DIRECTIONS[(index - 1) % len(DRAFT_DIRECTIONS)]
    note = (
        f"\n\nThis is first draft number {index + 1}; the search starts from several unlike drafts. "
        f"Other drafts:\n{written}\nMake this one clearly different from them. {direction}"
    )
    *before, last = messages
    return [*before, {**last, "content": str(last["content"]) + note}]


def _program(code: str, origin: Origin, *, parent: str | None, note: str) -> Program:
    # Named by content: stable across processes (Lambda steps) and unique per program.
    digest = hashlib.sha1(code.encode()).hexdigest()[:8]
    return Program(name=f"{origin}-{digest}", code=code, origin=origin, parent=parent, note=note)


def choose_author(settings: LLMSettings, *, no_llm: bool, fallback: ProgramAuthor) -> ProgramAuthor:
    """The template author when the LLM is switched off; otherwise the Claude author.

    Without a key the Claude author is still returned: it runs the templates and
    its ``fallback_reason`` says that no key was configured, so the run can say so.
    """
    if no_llm:
        return fallback
    # On one machine the templates keep training while Claude writes (solve._Loop), so a call may use
    # three quarters of the time left; the program it writes still gets the rest.
    return ClaudeAuthor(settings, fallback=fallback, call_time_share=0.75)


def resume_author(
    settings: LLMSettings,
    *,
    fallback: ProgramAuthor,
    usage: Mapping[str, Any] | None,
    seconds_left: float | None,
) -> ClaudeAuthor:
    """The Claude author for one step of a job whose steps run in separate processes (Lambda steps).

    ``usage`` is what the previous step stored from ``ClaudeAuthor.usage()`` (None
    for the first step): the job's tally carries on, so the cost ceiling holds for
    the whole job; a fallback stays in force, failures in a row keep counting and
    the change memory carries on. ``seconds_left`` is the job's
    remaining time, which bounds every model call of this step.
    """
    saved = dict(usage or {})
    author = ClaudeAuthor(
        settings,
        fallback=fallback,
        tally=CostTally.model_validate(saved),
        fallback_reason=saved.get("fallback_reason"),
        deadline=None if seconds_left is None else time.monotonic() + seconds_left,
    )
    author.failed_calls = int(saved.get("failed_calls") or 0)
    author.consecutive_failures = int(saved.get("consecutive_failures") or 0)
    author.last_error = saved.get("last_error")
    author.memory = [ChangeRecord.model_validate(record) for record in saved.get("memory") or []]
    return author

