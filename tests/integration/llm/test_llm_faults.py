"""How ClaudeAuthor lives through faults of the Messages API, scripted on the fake server.

Each fault costs the call it hit (that step gets the templates' answer) and
leaves Claude on for the next call; only a refused key, the cost ceiling or
``max_consecutive_failures`` failures in a row drop Claude for the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from batch_agent.llm.author import ClaudeAuthor, resume_author
from batch_agent.llm.calls import LLMSettings
from batch_agent.llm.prompts import IMPROVE_TOOL, PLAN_TOOL, PROGRAM_TOOL
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Program
from batch_agent.solver.templates import TemplateAuthor
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Recorded,
    Reply,
    error_reply,
    fake_anthropic,
    overloaded_mid_stream,
    tool_reply,
)

__all__ = ["fake_anthropic"]

PLAN_INPUT: dict[str, Any] = {
    "approach": "LightGBM on raw columns.",
    "features": ["(a + b) % 2"],
    "validation": "stratified 4-fold",
    "n_folds": 4,
    "models": [{"family": "lightgbm"}],
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
DRAFT = {"summary": "logistic regression on parity", "code": PROGRAM_CODE}


def _profile(data_dir: str = "/data/parity", **overrides: Any) -> CompetitionProfile:
    values: dict[str, Any] = {
        "title": "Parity",
        "data_dir": data_dir,
        "id_column": "id",
        "target_columns": ["target"],
        "submission_columns": ["target"],
        "task": "binary",
        "prediction_format": "probability",
        "classes": ["0", "1"],
        "metric": "roc_auc",
        "n_train": 400,
        "n_test": 200,
        "features": [
            ColumnInfo(name="a", kind="numeric", dtype="int64", n_unique=10, missing_fraction=0.0),
            ColumnInfo(name="b", kind="categorical", dtype="str", n_unique=3, missing_fraction=0.0),
        ],
        "description": "Predict the parity. " + "Long rules. " * 1000,
    }
    values.update(overrides)
    return CompetitionProfile.model_validate(values)


@pytest.fixture
def profile() -> CompetitionProfile:
    return _profile()


def settings_for(server: FakeAnthropic, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "api_key": "sk-test",
        "base_url": server.url,
        "sdk_max_retries": 0,
        "backoff_attempts": 0,
        "backoff_seconds": 0.0,
        "output_retries": 1,
        "max_cost_usd": None,
    }
    values.update(overrides)
    return LLMSettings(**values)


def author_for(server: FakeAnthropic, **overrides: Any) -> ClaudeAuthor:
    return ClaudeAuthor(settings_for(server, **overrides), fallback=TemplateAuthor())


def _slow(_r: Recorded) -> Reply:
    time.sleep(1.5)
    return tool_reply(PLAN_TOOL, PLAN_INPUT)


CUT = tool_reply(PLAN_TOOL, {"approach": "LightGBM on"}, stop_reason="max_tokens")
INVALID = tool_reply(PLAN_TOOL, {**PLAN_INPUT, "n_folds": 1})
TOO_LARGE = error_reply(413, "Request exceeds the maximum allowed number of bytes")
OVERLOADED = error_reply(529, "Overloaded")

# Each fault as the fake answers the plan call until that call gives up.
FAULTS: dict[str, list[Reply | Any]] = {
    "413 at every level of detail": [TOO_LARGE, TOO_LARGE, TOO_LARGE],
    "answer cut at max_tokens twice": [CUT, CUT],
    "invalid output twice": [INVALID, INVALID],
    "a timeout and its retry": [_slow, _slow],
    "a 529 burst": [OVERLOADED, OVERLOADED, overloaded_mid_stream(tool_reply(PLAN_TOOL, PLAN_INPUT))],
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_costs_only_its_call_and_claude_writes_the_next_program(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile, fault: str
) -> None:
    fake_anthropic.push(*FAULTS[fault], tool_reply(PROGRAM_TOOL, DRAFT))
    author = author_for(fake_anthropic, request_timeout=0.5, backoff_attempts=2, cut_retries=1)
    plan = author.plan(profile, 600)
    drafts = author.draft(profile, plan)

    assert plan.source == "rules"  # the failed plan call gave way to the rules planner
    assert author.using_llm and author.fallback_reason is None
    assert [p.origin for p in drafts][:2] == ["template", "llm-draft"]
    assert (author.failed_calls, author.consecutive_failures) == (1, 0)
    assert fake_anthropic.requests[-1].tool_name == PROGRAM_TOOL
    assert "Claude (" in author.summary() and "fell back" not in author.summary()
    assert "1 calls failed (the last: LLM" in author.summary()


def test_a_request_too_large_is_sent_again_without_preview_and_with_a_shorter_context(
    fake_anthropic: FakeAnthropic,
) -> None:
    profile = _profile(preview="Target target class balance: 0 50.0%, 1 50.0%")
    fake_anthropic.push(TOO_LARGE, tool_reply(PLAN_TOOL, PLAN_INPUT))
    author = author_for(fake_anthropic)
    plan = author.plan(profile, 600)

    assert plan.source == "llm" and author.failed_calls == 0
    full, shorter = (r.body["system"][1]["text"] for r in fake_anthropic.requests)
    assert "class balance: 0 50.0%" in full and "class balance" not in shorter
    assert len(shorter) < len(full) - 5_000
    assert "[description truncated]" in shorter


def test_failures_in_a_row_drop_claude_for_the_rest_of_the_run(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: error_reply(500, "boom")
    author = author_for(fake_anthropic, max_consecutive_failures=3)
    plan = author.plan(profile, 600)
    author.draft(profile, plan)
    assert author.using_llm and author.consecutive_failures == 2

    best = Program(name="lgbm", code=PROGRAM_CODE, origin="template")
    author.improve(profile, plan, best, [])
    assert not author.using_llm
    assert author.fallback_reason is not None
    assert author.fallback_reason.startswith("3 model calls failed in a row; the last: LLMUnavailableError")
    requests = len(fake_anthropic.requests)
    author.improve(profile, plan, best, [])
    assert len(fake_anthropic.requests) == requests == 3
    assert "fell back from Claude to the templates because 3 model calls failed" in author.summary()


def test_a_success_resets_the_count_of_failures_in_a_row(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.push(
        error_reply(500, "boom"),
        tool_reply(PROGRAM_TOOL, DRAFT),
        error_reply(500, "boom"),
        error_reply(500, "boom"),
        error_reply(500, "boom"),
    )
    author = author_for(fake_anthropic, max_consecutive_failures=2)
    plan = author.plan(profile, 600)  # fails: 1 in a row
    author.draft(profile, plan)  # succeeds: 0 in a row
    best = Program(name="lgbm", code=PROGRAM_CODE, origin="template")
    author.improve(profile, plan, best, [])  # fails: 1 in a row
    assert author.using_llm
    author.improve(profile, plan, best, [])  # fails: 2 in a row, the limit
    assert not author.using_llm and author.failed_calls == 3


def test_a_refused_key_drops_claude_at_once(fake_anthropic: FakeAnthropic, profile: CompetitionProfile) -> None:
    fake_anthropic.responder = lambda _r: error_reply(403, "key disabled")
    author = author_for(fake_anthropic, max_consecutive_failures=5)
    plan = author.plan(profile, 600)
    drafts = author.draft(profile, plan)

    assert not author.using_llm and len(fake_anthropic.requests) == 1
    assert author.fallback_reason is not None and author.fallback_reason.startswith("LLMAuthError")
    assert all(p.origin == "template" for p in drafts)


def test_failures_in_a_row_carry_across_steps_in_separate_processes(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda _r: error_reply(500, "boom")
    settings = settings_for(fake_anthropic, max_consecutive_failures=2)
    plan_step = resume_author(settings, fallback=TemplateAuthor(), usage=None, seconds_left=600)
    plan = plan_step.plan(profile, 600)
    generate_step = resume_author(settings, fallback=TemplateAuthor(), usage=plan_step.usage(), seconds_left=500)
    assert generate_step.consecutive_failures == 1 and generate_step.using_llm
    generate_step.draft(profile, plan)
    assert not generate_step.using_llm and "2 model calls failed in a row" in str(generate_step.fallback_reason)


def _attempt(number: int, program: str, score: float | None, reason: str | None = None) -> AttemptResult:
    return AttemptResult(
        number=number,
        program=program,
        origin="llm-improve" if program.startswith("llm") else "template",
        ok=score is not None,
        cv_score=score,
        seconds=5,
        reason=reason,
        workdir="/tmp",
    )


def test_the_improve_prompt_links_each_change_to_its_score_change_and_failure(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    changes = iter(["add the parity feature", "deeper trees", "bagging"])
    fake_anthropic.responder = lambda _r: tool_reply(
        IMPROVE_TOOL, {"change": next(changes), "code": PROGRAM_CODE + f"# {len(fake_anthropic.requests)}\n"}
    )
    author = author_for(fake_anthropic)
    plan = TemplateAuthor().plan(profile, 600)
    best = Program(name="lgbm", code=PROGRAM_CODE, origin="template")
    history = [_attempt(1, "lgbm", 0.71)]
    first = author.improve(profile, plan, best, history)
    assert first is not None
    history.append(_attempt(2, first.name, 0.93))
    second = author.improve(profile, plan, first, history)
    assert second is not None
    history.append(_attempt(3, second.name, None, reason="timed out after 120 s"))
    author.improve(profile, plan, first, history)

    text = fake_anthropic.requests[2].body["messages"][0]["content"]
    assert f"- add the parity feature (improve, {first.name}): CV 0.93 from 0.71 (+0.22, better)" in text
    assert f"- deeper trees (improve, {second.name}): failed: timed out after 120 s" in text
    stored = author.usage()["memory"]
    assert [m["change"] for m in stored] == ["add the parity feature", "deeper trees", "bagging"]
    resumed = resume_author(
        settings_for(fake_anthropic), fallback=TemplateAuthor(), usage=author.usage(), seconds_left=60
    )
    assert resumed.memory == author.memory


def _write_competition(folder: Path, rows: int = 300) -> None:
    train = ["id,a,b,target"] + [f"{i},{i % 10},{'xyz'[i % 3]},{(i % 10) % 2}" for i in range(rows)]
    test = ["id,a,b"] + [f"{rows + i},{i % 10 + 5},{'xyz'[i % 3]}" for i in range(rows // 2)]
    (folder / "train.csv").write_text("\n".join(train) + "\n")
    (folder / "test.csv").write_text("\n".join(test) + "\n")


def test_the_data_preview_made_from_local_files_is_in_every_prompts_cached_context(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    _write_competition(tmp_path)
    profile = _profile(str(tmp_path))
    fake_anthropic.push(tool_reply(PLAN_TOOL, PLAN_INPUT), tool_reply(PROGRAM_TOOL, DRAFT))
    author = author_for(fake_anthropic)
    author.draft(profile, author.plan(profile, 600))

    contexts = [r.body["system"][1] for r in fake_anthropic.requests]
    assert contexts[0] == contexts[1] and contexts[0]["cache_control"] == {"type": "ephemeral"}
    text = contexts[0]["text"]
    start = text.index("## Data preview")
    preview = text[start : text.index("## Competition description")]
    assert "Target target class balance: 0 50.0%, 1 50.0%" in preview
    assert "a (mean 4.5 in train, 9.5 in test)" in preview  # the shifted column
    assert "usable CPU cores" in preview and "Leakage checklist" in preview
    assert len(preview) < 4_500  # the preview's own bound (4,000) plus its heading


def test_thinking_runs_through_the_author_with_tool_choice_auto(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    fake_anthropic.responder = lambda r: tool_reply(
        PLAN_TOOL if r.tool_name == PLAN_TOOL else PROGRAM_TOOL,
        PLAN_INPUT if r.tool_name == PLAN_TOOL else DRAFT,
    )
    author = author_for(fake_anthropic, thinking_budget=4096)
    drafts = author.draft(profile, author.plan(profile, 600))

    assert author.failed_calls == 0 and "llm-draft" in [p.origin for p in drafts]
    assert all(r.body["tool_choice"] == {"type": "auto"} for r in fake_anthropic.requests)
    assert all(r.body["thinking"]["budget_tokens"] == 4096 for r in fake_anthropic.requests)


def test_answers_cut_by_the_runs_own_deadline_never_drop_claude(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile
) -> None:
    def slower_than_the_run(_r: Recorded) -> Reply:
        time.sleep(3.0)
        return tool_reply(PLAN_TOOL, PLAN_INPUT)

    fake_anthropic.responder = slower_than_the_run
    author = ClaudeAuthor(settings_for(fake_anthropic, min_call_seconds=0.1, max_consecutive_failures=2),
                          fallback=TemplateAuthor(), call_time_share=0.5)
    for _ in range(3):
        author.deadline = time.monotonic() + 2.0  # each call may take 1 s of it
        plan = author.plan(profile, 600)
        assert plan.source == "rules"

    assert author.using_llm and author.fallback_reason is None
    assert (author.failed_calls, author.consecutive_failures) == (0, 0)
    assert author.last_error is not None and "at the call's deadline" in author.last_error


def test_calls_skipped_for_lack_of_time_warn_once_and_drop_nothing(
    fake_anthropic: FakeAnthropic, profile: CompetitionProfile, caplog: pytest.LogCaptureFixture
) -> None:
    author = ClaudeAuthor(settings_for(fake_anthropic, min_call_seconds=30.0), fallback=TemplateAuthor(),
                          deadline=time.monotonic() + 10.0)  # half of it, 5 s, is under the 30 s a call needs
    with caplog.at_level("DEBUG", logger="batch_agent.llm.author"):
        for _ in range(4):
            assert author.plan(profile, 600).source == "rules"

    skips = [r for r in caplog.records if "Claude skipped for" in r.getMessage()]
    assert len(skips) == 4 and [r.levelname for r in skips] == ["WARNING", "DEBUG", "DEBUG", "DEBUG"]
    assert not fake_anthropic.requests and author.using_llm and author.failed_calls == 0
