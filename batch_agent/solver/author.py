"""Who writes the training programs: the seam between the solver loop and its authors.

Two authors fill this role: the rule-and-template author (``templates.py``,
always available) and the Claude author (``llm_author.py``, used when an
Anthropic key is configured). The solver loop only talks to this protocol.
"""

from __future__ import annotations

from typing import Protocol

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Plan, Program


class ProgramAuthor(Protocol):
    name: str

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        """Choose approach, candidates and compute for the whole run."""
        ...

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        """First programs to run, most promising (and fastest) first."""
        ...

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        """A fixed version of a program that failed, or None when it cannot help."""
        ...

    def improve(
        self, profile: CompetitionProfile, plan: Plan, best: Program, history: list[AttemptResult]
    ) -> Program | None:
        """One change to the best program so far, or None when it has nothing left to try."""
        ...
