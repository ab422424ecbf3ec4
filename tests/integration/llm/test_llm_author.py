"""ClaudeAuthor against the fake Messages API: plan, draft, repair, and every way it falls back."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import SecretStr

from batch_agent.llm.author import ClaudeAuthor, resume_author
from batch_agent.llm.calls import LLMSettings
from batch_agent.llm.prompts import IMPROVE_TOOL, PLAN_TOOL, PROGRAM_TOOL, REPAIR_TOOL
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Program
from batch_agent.solver.templates import TemplateAuthor
from tests.fakes.anthropic_server import FakeAnthropic, error_reply, fake_anthropic, tool_reply, usage

__all__ = ["fake_anthropic"]

PLAN_INPUT: dict[str, Any] = {
    "approach": "LightGBM on raw columns plus a parity feature.",
    "features": ["(a + b) % 2"],
    "validation": "stratified 4-fold on target",
    "n_folds": 4,
    "models": [{"family": "lightgbm", "reason": "fast"}, {"family": "logistic regression"}],
    "compute": "cpu",
    "draft_time_fraction": 0.5,
}
PROGRAM_CODE = """\
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
# writes submission.csv and oof.csv
"""


@pytest.fixture
def profile() -> CompetitionProfile:
    return CompetitionProfile(
        title="Parity",
        data_dir="/data/parity",
        id_column="id",
        target_columns=["target"],
        submission_columns=["target"],
        task="binary",
        prediction_format="probability",
        classes=["0", "1"],
        metric="roc_auc",
        n_train=400,
        n_test=200,
        features=[
            ColumnInfo(name="a", kind="numeric", dtype="int64", n_unique=10, missing_fraction=0.0),
            ColumnInfo(name="b", kind="numeric", dtype="int64", n_unique=10, missing_fraction=0.0),
        ],
        description="Submissions are evaluated on area under the ROC curve. Predict the parity.",
    )


def author_for(server: FakeAnthropic, **overrides: Any) -> ClaudeAuthor:
    values: dict[str, Any] = {
        "api_key": "sk-test",
        "base_url": server.url,
        "sdk_max_retries": 0,
        "backoff_attempts": 0,
        "output_retries": 1,
        "max_cost_usd": None,
    }
    values.update(overrides)
    return ClaudeAuthor(LLMSettings(**values), fallback=TemplateAuthor())


def test_plan_from_claude_keeps_the_template_candidates_and_carries_its_choices(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.push(tool_reply(PLAN_TOOL, PLAN_INPUT))
    author = author_for(fake_anthropic)
    plan = author.plan(profile, 600)

    rules = TemplateAuthor().plan(profile, 600)
    assert plan.source == "llm" and plan.n_folds == 4
    assert [c.name for c in plan.candidates] == [c.name for c in rules.candidates]
    assert "(a + b) % 2" in plan.approach and "logistic regression" in plan.approach
    context = fake_anthropic.requests[0].body["system"][1]
    assert context["cache_control"] == {"type": "ephemeral"}
    assert "roc_auc (higher is better)" in context["text"]
    assert "Predict the parity." in context["text"]
    assert '"id_column": "id"' in context["text"]
    assert "--time-budget SECONDS" in fake_anthropic.requests[0].body["system"][0]["text"]
    assert author.fallback_reason is None


def test_draft_puts_claudes_program_after_the_first_template(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.push(
        tool_reply(PLAN_TOOL, PLAN_INPUT), tool_reply(PROGRAM_TOOL, {"summary": "s", "code": PROGRAM_CODE})
    )
    author = author_for(fake_anthropic)
    drafts = author.draft(profile, author.plan(profile, 600))

    templates = TemplateAuthor().draft(profile, TemplateAuthor().plan(profile, 600))
    assert [p.origin for p in drafts] == ["template", "llm-draft"] + ["template"] * (len(templates) - 1)
    assert drafts[1].code == PROGRAM_CODE
    assert "stratified 4-fold" in fake_anthropic.requests[1].body["messages"][0]["content"]


def test_every_call_sends_the_same_cacheable_prefix(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.push(
        tool_reply(PLAN_TOOL, PLAN_INPUT), tool_reply(PROGRAM_TOOL, {"summary": "s", "code": PROGRAM_CODE})
    )
    author = author_for(fake_anthropic)
    author.draft(profile, author.plan(profile, 600))

    first, second = fake_anthropic.requests
    assert first.tool_name == PLAN_TOOL and second.tool_name == PROGRAM_TOOL
    assert json.dumps(first.body["tools"]) == json.dumps(second.body["tools"])
    assert json.dumps(first.body["system"]) == json.dumps(second.body["system"])


def test_malformed_output_costs_that_call_and_claude_writes_the_next_program(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    bad_plan = tool_reply(PLAN_TOOL, {"approach": "missing every other field"})
    fake_anthropic.push(bad_plan, bad_plan, bad_plan, tool_reply(PROGRAM_TOOL, {"summary": "s", "code": PROGRAM_CODE}))
    author = author_for(fake_anthropic, output_retries=2)
    plan = author.plan(profile, 600)
    drafts = author.draft(profile, plan)

    assert plan.source == "rules"
    assert len(fake_anthropic.requests) == 4  # the first answer, two corrections, then the draft call
    assert author.using_llm and author.fallback_reason is None
    assert "llm-draft" in [p.origin for p in drafts]
    assert author.failed_calls == 1 and author.consecutive_failures == 0
    assert author.last_error is not None and author.last_error.startswith("LLMOutputError")


def test_refused_key_falls_back_and_says_why(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: error_reply(401, "invalid x-api-key")
    author = author_for(fake_anthropic)
    plan = author.plan(profile, 600)
    author.draft(profile, plan)

    assert plan.source == "rules"
    assert len(fake_anthropic.requests) == 1
    assert author.fallback_reason is not None
    assert author.fallback_reason.startswith("LLMAuthError") and "invalid x-api-key" in author.fallback_reason


def test_cost_ceiling_stops_claude_and_templates_take_over(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(
        PLAN_TOOL if _r.tool_name == PLAN_TOOL else PROGRAM_TOOL,
        PLAN_INPUT if _r.tool_name == PLAN_TOOL else {"summary": "s", "code": PROGRAM_CODE},
        usage_fields=usage(20_000, 4_000),
    )
    # The plan call fits under $0.18; then $0.12 is spent and a draft could cost up to $0.06 + the prompt.
    author = author_for(fake_anthropic, max_tokens=4000, max_cost_usd=0.18)
    plan = author.plan(profile, 600)
    drafts = author.draft(profile, plan)

    assert plan.source == "llm"
    assert len(fake_anthropic.requests) == 1
    assert author.tally.cost_usd == pytest.approx((20_000 * 3 + 4_000 * 15) / 1e6)
    assert author.fallback_reason is not None and author.fallback_reason.startswith("LLMBudgetError")
    assert all(p.origin == "template" for p in drafts)
    assert author.usage()["cost_usd"] == pytest.approx(0.12)


def test_template_failures_are_repaired_by_the_templates_without_a_call(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    author = author_for(fake_anthropic)
    plan = TemplateAuthor().plan(profile, 600)
    program = TemplateAuthor().draft(profile, plan)[0]
    failure = AttemptResult(
        number=1,
        program=program.name,
        origin="template",
        ok=False,
        seconds=50,
        reason="timed out",
        workdir="/tmp",
    )
    fixed = author.repair(profile, program, failure)
    assert fixed is not None and fixed.name.endswith("-light")
    assert fake_anthropic.requests == []


def test_repairs_per_failed_program_are_bounded(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(
        REPAIR_TOOL, {"diagnosis": "typo", "code": PROGRAM_CODE + f"# fix {len(fake_anthropic.requests)}\n"}
    )
    author = ClaudeAuthor(
        LLMSettings(
            api_key=SecretStr("sk"), base_url=fake_anthropic.url, sdk_max_retries=0, max_cost_usd=None
        ),
        fallback=TemplateAuthor(),
        max_repairs=2,
    )
    failing: Program | None = Program(name="llm-draft-1", code=PROGRAM_CODE, origin="llm-draft")
    repaired: list[Program] = []
    while failing is not None:
        failure = AttemptResult(
            number=len(repaired) + 1,
            program=failing.name,
            origin=failing.origin,
            ok=False,
            seconds=1,
            reason="exit status 1",
            log_tail="NameError: name 'pd' is not defined",
            workdir="/tmp",
        )
        failing = author.repair(profile, failing, failure)
        if failing is not None:
            repaired.append(failing)

    assert [p.origin for p in repaired] == ["llm-repair", "llm-repair"]
    assert repaired[1].parent == repaired[0].name
    assert len(fake_anthropic.calls(REPAIR_TOOL)) == 2
    assert "NameError" in fake_anthropic.requests[0].body["messages"][0]["content"]


def test_improve_sends_best_code_history_and_tried_changes(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(
        IMPROVE_TOOL, {"change": f"change {len(fake_anthropic.requests)}", "code": PROGRAM_CODE}
    )
    author = author_for(fake_anthropic)
    plan = TemplateAuthor().plan(profile, 600)
    best = Program(name="llm-draft-abc", code=PROGRAM_CODE, origin="llm-draft")
    history = [
        AttemptResult(
            number=1,
            program="llm-draft-abc",
            origin="llm-draft",
            ok=True,
            cv_score=0.71,
            seconds=3,
            workdir="/tmp",
        ),
    ]
    first = author.improve(profile, plan, best, history)
    second = author.improve(profile, plan, best, history)

    assert first is not None and first.origin == "llm-improve" and first.parent == "llm-draft-abc"
    assert second is not None
    text = fake_anthropic.requests[1].body["messages"][0]["content"]
    assert "CV roc_auc = 0.71 (higher is better)" in text
    assert "- change 1" in text
    assert "| 1 | llm-draft-abc | llm-draft | True | 0.71 |" in text


def test_near_the_end_of_the_run_claude_is_not_called(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    author = ClaudeAuthor(
        LLMSettings(api_key=SecretStr("sk"), base_url=fake_anthropic.url, min_call_seconds=15),
        fallback=TemplateAuthor(),
        deadline=time.monotonic() + 20,  # half of it, 10 s, is all a call may use
    )
    plan = author.plan(profile, 20)
    assert plan.source == "rules"
    assert fake_anthropic.requests == []
    # Skipping a call for lack of time is no failure: a later step with more time may still call.
    assert author.using_llm and author.consecutive_failures == 0
    assert author.last_error is not None and author.last_error.startswith("LLMDeadlineError")


def test_plan_sets_the_run_deadline_from_the_time_limit(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.push(tool_reply(PLAN_TOOL, PLAN_INPUT))
    author = author_for(fake_anthropic)
    before = time.monotonic()
    author.plan(profile, 600)
    assert author.deadline is not None and before + 600 <= author.deadline <= time.monotonic() + 600


def test_steps_in_separate_processes_share_one_tally_and_ceiling(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(
        PLAN_TOOL if _r.tool_name == PLAN_TOOL else PROGRAM_TOOL,
        PLAN_INPUT if _r.tool_name == PLAN_TOOL else {"summary": "s", "code": PROGRAM_CODE},
        usage_fields=usage(20_000, 4_000),
    )
    settings = LLMSettings(
        api_key=SecretStr("sk"),
        base_url=fake_anthropic.url,
        sdk_max_retries=0,
        max_tokens=4000,
        max_cost_usd=0.18,
    )
    plan_step = resume_author(settings, fallback=TemplateAuthor(), usage=None, seconds_left=600)
    plan = plan_step.plan(profile, 600)
    stored = json.loads(json.dumps(plan_step.usage()))  # as a job record would keep it

    generate_step = resume_author(settings, fallback=TemplateAuthor(), usage=stored, seconds_left=500)
    drafts = generate_step.draft(profile, plan)

    assert plan.source == "llm" and generate_step.tally.calls == 1
    assert generate_step.tally.cost_usd == pytest.approx(0.12)
    assert generate_step.fallback_reason is not None and "LLMBudgetError" in generate_step.fallback_reason
    assert all(p.origin == "template" for p in drafts)
    repair_step = resume_author(
        settings, fallback=TemplateAuthor(), usage=generate_step.usage(), seconds_left=400
    )
    assert not repair_step.using_llm and repair_step.fallback_reason == generate_step.fallback_reason
    assert len(fake_anthropic.requests) == 1
