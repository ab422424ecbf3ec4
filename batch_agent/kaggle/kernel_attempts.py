"""One training attempt on a Kaggle kernel instead of the local sandbox.

Same contract as ``solve.run_attempt``: the program runs with the competition's
data and a time budget, and the result says whether it wrote a valid
submission.csv and a finite CV score. A kernel that fails, times out or writes
a bad submission is a failed result; Kaggle refusing to start one (quota,
rules, credentials) raises the KaggleError, since every later attempt would
meet the same refusal.
"""

from __future__ import annotations

from pathlib import Path

from batch_agent.kaggle.client import KaggleOptions
from batch_agent.kaggle.kernels import run_kernel
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Program
from batch_agent.solver.solve import SOFT_BUDGET_FRACTION, check_outputs
from batch_agent.solver.templates import write_program

# Kernels wait in Kaggle's queue before they start; allow for it on top of the budget.
QUEUE_ALLOWANCE_S = 900.0
_LOG_TAIL_CHARS = 4000


def run_attempt_on_kaggle(
    profile: CompetitionProfile,
    program: Program,
    attempt_dir: Path,
    *,
    slug: str,
    time_budget: float,
    number: int = 1,
    accelerator: str = "gpu",
    poll_interval: float = 10.0,
    options: KaggleOptions | None = None,
) -> AttemptResult:
    """Run ``program`` as a private Kaggle kernel on ``accelerator`` and check what it wrote."""
    attempt_dir.mkdir(parents=True, exist_ok=True)
    program_path = write_program(attempt_dir, program, profile)
    kernel = run_kernel(
        slug,
        program_path,
        attempt_dir,
        timeout=time_budget + QUEUE_ALLOWANCE_S,
        accelerator=accelerator,
        time_budget=max(1.0, time_budget * SOFT_BUDGET_FRACTION),
        poll_interval=poll_interval,
        options=options,
    )
    log_tail = kernel.log.read_text(errors="replace")[-_LOG_TAIL_CHARS:] if kernel.log else ""
    result = AttemptResult(
        number=number,
        program=program.name,
        origin=program.origin,
        ok=False,
        seconds=kernel.seconds,
        log_tail=log_tail,
        workdir=str(attempt_dir),
        holdout="none: a Kaggle kernel reads the competition's own data",
    )
    if kernel.status != "complete":
        result.reason = f"Kaggle kernel {kernel.ref} {kernel.status}: {kernel.failure_message or 'no message'}"
        return result
    return check_outputs(profile, result, ran=f"Kaggle kernel {kernel.ref}")
