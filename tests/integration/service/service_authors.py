"""Test-only program authors and a raising step, loaded by the emulated Lambda steps by import path.

The step Lambdas take ``KAGGLE_SOLVER_AUTHOR=module:attr`` (a ProgramAuthor
factory); these authors script failures so the pipeline's repair loop and its
failure paths can be driven through the real state machine.
"""

from __future__ import annotations

from typing import Any

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Plan, Program
from batch_agent.solver.templates import TemplateAuthor

BROKEN_CODE = "raise RuntimeError('deliberate failure in the first program')\n"


class FailOnceAuthor(TemplateAuthor):
    """The first program crashes; its repair is the template's first program; no improvements."""

    name = "fail-once"

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return [Program(name="broken", code=BROKEN_CODE, origin="template")]

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        plan = self.plan(profile, 60.0)
        first = super().draft(profile, plan)[0]
        return first.model_copy(update={"name": "repaired", "parent": program.name})

    def improve(
        self, profile: CompetitionProfile, plan: Plan, best: Program, history: list[AttemptResult]
    ) -> Program | None:
        return None


class AlwaysFailAuthor(FailOnceAuthor):
    """Every program crashes, repairs included."""

    name = "always-fail"

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        return Program(name=f"{program.name}+fix", code=BROKEN_CODE, origin="template", parent=program.name)


def raising_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    raise ValueError(f"plan step exploded for job {event.get('job_id')}")


SLOW_CODE = "import time\ntime.sleep(600)\n"


class SlowAuthor(FailOnceAuthor):
    """A program that trains (sleeps) for ten minutes: long enough to cancel it mid-training."""

    name = "slow"

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return [Program(name="slow", code=SLOW_CODE, origin="template")]
