"""The scheduler with Claude on the fake Messages API: cores busy during calls, the wider search, the holdout.

Programs are real (scikit-learn in the sandbox); the model's answers are scripted, some slow on purpose.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.llm.prompts import IMPROVE_TOOL, PLAN_TOOL, PROGRAM_TOOL, REPAIR_TOOL
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Plan, Program
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.solve import SolveOptions, solve
from batch_agent.solver.submission import validate_submission
from batch_agent.solver.templates import TemplateAuthor
from tests.fakes.anthropic_server import FakeAnthropic, Recorded, Reply, error_reply, fake_anthropic, tool_reply
from tests.integration.llm.auc_competition import write_auc_competition
from tests.integration.llm.test_llm_solve import (
    PARITY,
    PLAN_INPUT,
    RAW,
    FirstTemplateOnly,
    by_tool,
    claude,
    competition,
)

__all__ = ["competition", "fake_anthropic"]

# Three digits whose parity, flipped for 15% of the rows, is the target: a parity feature scores about 0.85
# AUC out of fold and on held-out rows alike; the raw digits much less.
PROGRAM3 = """\
import argparse
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

LEAK = {leak}
parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
train = pd.read_csv(f"{{args.data}}/train.csv")
test = pd.read_csv(f"{{args.data}}/test.csv")
{bug}
def features(frame):
    return pd.DataFrame({{"parity": ((frame["a"] + frame["b"] + frame["c"]) % 2).astype(float)}})

x, x_test, y = features(train), features(test), train["target"].to_numpy()
if LEAK:
    # A target encoding of the id fitted on every row, outside the folds: each row's own label.
    means = pd.Series(y, index=train["id"].to_numpy()).groupby(level=0).mean()
    x["id_mean"] = train["id"].map(means).to_numpy()
    x_test["id_mean"] = y.mean()
oof, pred = np.zeros(len(train)), np.zeros(len(test))
for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
    model = LogisticRegression(C={c}).fit(x.iloc[fit], y[fit])
    oof[held] = model.predict_proba(x.iloc[held])[:, 1]
    pred += model.predict_proba(x_test)[:, 1] / 5
pd.DataFrame({{"id": train["id"], "target": oof}}).to_csv("oof.csv", index=False)
pd.DataFrame({{"id": test["id"], "target": pred}}).to_csv("submission.csv", index=False)
"""


def program3(*, c: float = 1.0, leak: bool = False, bug: bool = False) -> str:
    return PROGRAM3.format(leak=leak, c=c, bug='train["fare"] = train["fare"] * 2  # no such column' if bug else "")


@pytest.fixture
def three_digits(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    n_train, n_test = 1500, 300
    digits = rng.integers(0, 10, size=(n_train + n_test, 3))
    target = (digits.sum(axis=1) % 2) ^ (rng.random(n_train + n_test) < 0.15)
    frame = pd.DataFrame({"id": np.arange(n_train + n_test) + 100, "a": digits[:, 0], "b": digits[:, 1],
                          "c": digits[:, 2], "target": target.astype(int)})
    return write_auc_competition(tmp_path / "three-digits", frame, n_train)


class FirstTemplates:
    """The template author with its first ``n`` drafts and no improvements."""

    name = "templates"

    def __init__(self, n: int) -> None:
        self.n, self.templates = n, TemplateAuthor()

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        return self.templates.plan(profile, time_limit)

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return self.templates.draft(profile, plan)[: self.n]

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        return None

    def improve(self, profile: CompetitionProfile, plan: Plan, best: Program,
                history: list[AttemptResult]) -> Program | None:
        return None


def test_templates_keep_training_while_claude_writes_and_a_failed_draft_call_leaves_claude_on(
    fake_anthropic: FakeAnthropic, competition: Path, tmp_path: Path
) -> None:
    writing_seconds = 20.0
    answered: dict[str, float] = {}
    drafts: list[Reply] = [error_reply(529, "Overloaded"),
                           tool_reply(PROGRAM_TOOL, {"summary": "parity feature", "code": PARITY})]

    def respond(request: Recorded) -> Reply:
        if request.tool_name == PLAN_TOOL:
            return tool_reply(PLAN_TOOL, PLAN_INPUT)
        if request.tool_name == PROGRAM_TOOL:
            reply = drafts.pop(0)
            if reply.status == 200:
                time.sleep(writing_seconds)  # a model writing a program
                answered["draft"] = time.monotonic()
            return reply
        if request.tool_name == IMPROVE_TOOL:
            time.sleep(writing_seconds + 10)  # answered after the draft: max_attempts is reached by then
            return tool_reply(IMPROVE_TOOL, {"change": "raw digits", "code": RAW})
        return error_reply(500, f"nothing scripted for {request.tool_name}")

    fake_anthropic.responder = respond
    author = claude(fake_anthropic, FirstTemplateOnly())
    finished: list[tuple[float, str]] = []

    def progress(stage: str, message: str) -> None:
        if stage == "train" and " CV " in message:
            finished.append((time.monotonic(), message))

    options = SolveOptions(time_limit=120, workdir=tmp_path / "work", memory_limit_mb=4096, slots=2,
                           model_drafts=2, max_attempts=4)
    result = solve(str(competition), tmp_path / "submission.csv", options, author, progress=progress,
                   templates=FirstTemplates(3))

    # Template attempts trained and finished while the draft was being written.
    assert "draft" in answered
    before = [message for at, message in finished if at < answered["draft"]]
    assert len(before) >= 2, finished
    assert [h.origin for h in result.history] == ["template"] * 3 + ["llm-draft"]
    assert result.history[-1].ok and result.history[-1].cv_score == pytest.approx(1.0)
    # The 529 cost that call only.
    assert author.fallback_reason is None and author.failed_calls == 1
    assert result.first_valid_seconds is not None and result.first_valid_seconds < writing_seconds


def test_leaky_draft_is_rejected_by_the_holdout_and_repaired_and_sound_programs_enter_the_blend(
    fake_anthropic: FakeAnthropic, three_digits: Path, tmp_path: Path
) -> None:
    def program(tool: str, text: str, code: str) -> Reply:
        field = {PROGRAM_TOOL: "summary", REPAIR_TOOL: "diagnosis", IMPROVE_TOOL: "change"}[tool]
        return tool_reply(tool, {field: text, "code": code})

    scripted = by_tool({
        PLAN_TOOL: [tool_reply(PLAN_TOOL, PLAN_INPUT)],
        PROGRAM_TOOL: [program(PROGRAM_TOOL, "parity", program3()),
                       program(PROGRAM_TOOL, "parity and an id encoding", program3(leak=True)),
                       program(PROGRAM_TOOL, "parity and fares", program3(bug=True))],
        REPAIR_TOOL: [program(REPAIR_TOOL, "fixed", program3(c=0.5)), program(REPAIR_TOOL, "fixed", program3(c=2.0))],
    })
    strengths = itertools.count(1)

    def respond(request: Recorded) -> Reply:
        if request.tool_name == IMPROVE_TOOL:
            return program(IMPROVE_TOOL, "another strength", program3(c=0.1 * next(strengths)))
        return scripted(request)

    fake_anthropic.responder = respond
    author = claude(fake_anthropic, FirstTemplateOnly())
    options = SolveOptions(time_limit=150, workdir=tmp_path / "work", memory_limit_mb=4096, slots=2,
                           max_attempts=9)
    output = tmp_path / "submission.csv"
    result = solve(str(three_digits), output, options, author, templates=FirstTemplates(1))

    def code_of(attempt: AttemptResult) -> str:
        return (Path(attempt.workdir) / "program.py").read_text()

    by_name = {h.program: h for h in result.history}
    (leaky,) = [h for h in result.history if "LEAK = True" in code_of(h)]
    assert not leaky.ok and leaky.reason is not None and leaky.reason.startswith("leak:")
    assert leaky.cv_score == pytest.approx(1.0) and leaky.holdout_score is not None and leaky.holdout_score < 0.95
    (buggy,) = [h for h in result.history if "fare" in code_of(h)]
    assert not buggy.ok and "KeyError" in (buggy.reason or "") + buggy.log_tail
    # Each failed draft got its own repair, and both repairs ran and scored honestly.
    repairs = {r.parent: r.program for r in author.memory if r.kind == "repair"}
    assert set(repairs) == {leaky.program, buggy.program}
    assert all(by_name[name].ok and by_name[name].holdout_score is not None for name in repairs.values())
    leak_prompt = next(c for c in fake_anthropic.calls(REPAIR_TOOL) if "LEAK = True" in c.prompt_text)
    assert "leak: out-of-fold" in leak_prompt.prompt_text
    # Model-written programs entered the final submission; Claude stayed on throughout.
    origins = {h.program: h.origin for h in result.history}
    assert any(origins.get(name) != "template" for name in result.blend), result.blend
    template = next(h for h in result.history if h.origin == "template")
    assert template.cv_score is not None and result.cv_score > template.cv_score + 0.1
    assert author.fallback_reason is None
    assert validate_submission(output, profile_competition(three_digits)) == []

