"""call_tool against the fake Messages API: structured output, retries, errors, cost, budget."""

from __future__ import annotations

import time
from typing import Any

import pytest

from batch_agent.llm.calls import (
    CostTally,
    LLMAuthError,
    LLMBudgetError,
    LLMDeadlineError,
    LLMOutputError,
    LLMRequestTooLargeError,
    LLMSettings,
    LLMTimeoutError,
    LLMTruncatedError,
    LLMUnavailableError,
    call_tool,
    make_client,
)
from batch_agent.llm.prompts import PLAN_TOOL, PlanOutput, all_tools
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Recorded,
    Reply,
    error_reply,
    fake_anthropic,
    overloaded_mid_stream,
    text_reply,
    tool_reply,
    usage,
)

__all__ = ["fake_anthropic"]

VALID_PLAN: dict[str, Any] = {
    "approach": "Gradient boosting on raw features.",
    "features": ["log of fare"],
    "validation": "stratified 5-fold",
    "n_folds": 5,
    "models": [{"family": "lightgbm", "reason": "strong on tabular data"}],
    "compute": "cpu",
    "draft_time_fraction": 0.4,
}
SYSTEM: list[dict[str, Any]] = [
    {"type": "text", "text": "instructions"},
    {"type": "text", "text": "competition context", "cache_control": {"type": "ephemeral"}},
]
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Plan the solution."}]


def settings_for(server: FakeAnthropic, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "api_key": "sk-test-key",
        "base_url": server.url,
        "request_timeout": 10,
        "sdk_max_retries": 0,
        "backoff_attempts": 0,
        "backoff_seconds": 0.0,
        "max_cost_usd": None,
    }
    values.update(overrides)
    return LLMSettings(**values)


def ask_plan(settings: LLMSettings, tally: CostTally, sleeps: list[float] | None = None) -> PlanOutput:
    return call_tool(
        make_client(settings),
        settings,
        system=SYSTEM,
        messages=MESSAGES,
        tool_name=PLAN_TOOL,
        output_model=PlanOutput,
        tally=tally,
        tools=all_tools(),
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
    )


def test_forced_tool_call_is_parsed_into_the_output_model(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(tool_reply(PLAN_TOOL, VALID_PLAN))
    plan = ask_plan(settings_for(fake_anthropic, model="claude-test-model"), CostTally())

    assert plan.n_folds == 5 and plan.models[0].family == "lightgbm"
    (request,) = fake_anthropic.requests
    assert request.body["tool_choice"] == {"type": "tool", "name": PLAN_TOOL}
    assert request.body["model"] == "claude-test-model"
    assert [t["name"] for t in request.body["tools"]] == [t["name"] for t in all_tools()]
    assert request.body["system"][1]["cache_control"] == {"type": "ephemeral"}
    # SDK 2.x sends the key as a bearer token; 0.x sent x-api-key.
    sent_key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix(
        "Bearer "
    )
    assert sent_key == "sk-test-key"


def test_invalid_tool_input_is_sent_back_with_the_error_and_retried(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(
        tool_reply(PLAN_TOOL, {**VALID_PLAN, "n_folds": 1}), tool_reply(PLAN_TOOL, VALID_PLAN)
    )
    plan = ask_plan(settings_for(fake_anthropic, output_retries=1), CostTally())

    assert plan.n_folds == 5
    retry = fake_anthropic.requests[1].body["messages"]
    assert retry[1]["role"] == "assistant" and retry[1]["content"][0]["type"] == "tool_use"
    feedback = retry[2]["content"][0]
    assert feedback["type"] == "tool_result" and feedback["is_error"] is True
    assert "n_folds" in feedback["content"]
    assert feedback["tool_use_id"] == retry[1]["content"][0]["id"]


def test_text_instead_of_tool_call_is_asked_again(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(text_reply("Here is my plan: boost."), tool_reply(PLAN_TOOL, VALID_PLAN))
    plan = ask_plan(settings_for(fake_anthropic, output_retries=1), CostTally())
    assert plan.approach.startswith("Gradient boosting")
    assert PLAN_TOOL in fake_anthropic.requests[1].body["messages"][-1]["content"]


def test_invalid_output_every_time_raises_output_error_after_bounded_retries(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(PLAN_TOOL, {"approach": "no fields"})
    with pytest.raises(LLMOutputError, match="invalid plan_solution output 3 times"):
        ask_plan(settings_for(fake_anthropic, output_retries=2), CostTally())
    assert len(fake_anthropic.requests) == 3


def test_rate_limit_429_with_retry_after_is_retried_by_the_sdk(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(
        error_reply(429, "slow down", headers={"retry-after-ms": "20"}), tool_reply(PLAN_TOOL, VALID_PLAN)
    )
    tally = CostTally()
    plan = ask_plan(settings_for(fake_anthropic, sdk_max_retries=2), tally)
    assert plan.n_folds == 5
    assert len(fake_anthropic.requests) == 2
    assert tally.calls == 1


def test_overloaded_529_after_sdk_retries_gets_own_backoff_then_succeeds(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.push(error_reply(529, "Overloaded"), tool_reply(PLAN_TOOL, VALID_PLAN))
    sleeps: list[float] = []
    plan = ask_plan(
        settings_for(fake_anthropic, sdk_max_retries=0, backoff_attempts=2, backoff_seconds=1.5),
        CostTally(),
        sleeps,
    )
    assert plan.n_folds == 5
    assert sleeps == [1.5]


def test_server_errors_outlasting_every_retry_raise_unavailable(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.responder = lambda _r: error_reply(500, "boom", headers={"retry-after-ms": "1"})
    sleeps: list[float] = []
    with pytest.raises(LLMUnavailableError, match="500 boom"):
        ask_plan(
            settings_for(fake_anthropic, sdk_max_retries=1, backoff_attempts=2, backoff_seconds=1.0),
            CostTally(),
            sleeps,
        )
    # (1 + 1 SDK retry) per attempt, 3 attempts; backoff doubles.
    assert len(fake_anthropic.requests) == 6
    assert sleeps == [1.0, 2.0]


def test_refused_key_raises_auth_error_without_retrying(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(error_reply(401, "invalid x-api-key"))
    with pytest.raises(LLMAuthError, match="invalid x-api-key"):
        ask_plan(settings_for(fake_anthropic, sdk_max_retries=2, backoff_attempts=2), CostTally())
    assert len(fake_anthropic.requests) == 1


def test_cost_is_tallied_exactly_from_the_usage_fields(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(
        tool_reply(PLAN_TOOL, VALID_PLAN, usage_fields=usage(1200, 800, cache_write=5000, cache_read=0)),
        tool_reply(PLAN_TOOL, VALID_PLAN, usage_fields=usage(300, 1000, cache_write=0, cache_read=5000)),
    )
    settings = settings_for(
        fake_anthropic, price_input=3.0, price_output=15.0, price_cache_write=3.75, price_cache_read=0.30
    )
    tally = CostTally()
    ask_plan(settings, tally)
    ask_plan(settings, tally)

    assert (tally.calls, tally.input_tokens, tally.output_tokens) == (2, 1500, 1800)
    assert (tally.cache_creation_input_tokens, tally.cache_read_input_tokens) == (5000, 5000)
    expected = (1500 * 3.0 + 1800 * 15.0 + 5000 * 3.75 + 5000 * 0.30) / 1_000_000
    assert tally.cost_usd == pytest.approx(expected, rel=1e-12)


def test_call_that_could_pass_the_cost_ceiling_is_not_made(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(PLAN_TOOL, VALID_PLAN, usage_fields=usage(1000, 1000))
    # One call may cost up to max_tokens * $15/MTok = $0.015 plus the prompt; the second would pass $0.03.
    settings = settings_for(fake_anthropic, max_tokens=1000, max_cost_usd=0.03)
    tally = CostTally()
    ask_plan(settings, tally)
    with pytest.raises(LLMBudgetError, match="cost ceiling"):
        ask_plan(settings, tally)
    assert len(fake_anthropic.requests) == 1


def test_unknown_model_404_is_not_retried_and_raises_unavailable(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(error_reply(404, "model: claude-nope"))
    with pytest.raises(LLMUnavailableError, match="error 404: model: claude-nope"):
        ask_plan(settings_for(fake_anthropic, sdk_max_retries=2, backoff_attempts=2), CostTally())
    assert len(fake_anthropic.requests) == 1


def test_response_without_content_counts_as_invalid_output(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.responder = lambda _r: Reply(200, {"id": "msg_x", "type": "message", "role": "assistant"})
    with pytest.raises(LLMOutputError, match="did not call the tool"):
        ask_plan(settings_for(fake_anthropic, output_retries=1), CostTally())
    assert len(fake_anthropic.requests) == 2


def test_no_call_starts_too_close_to_the_deadline(fake_anthropic: FakeAnthropic) -> None:
    settings = settings_for(fake_anthropic, min_call_seconds=15)
    with pytest.raises(LLMDeadlineError, match="could go to a model call"):
        call_tool(
            make_client(settings),
            settings,
            system=SYSTEM,
            messages=MESSAGES,
            tool_name=PLAN_TOOL,
            output_model=PlanOutput,
            tally=CostTally(),
            deadline=time.monotonic() + 10,
        )
    assert fake_anthropic.requests == []


def test_a_slow_server_cannot_hold_a_call_past_its_deadline(fake_anthropic: FakeAnthropic) -> None:
    def slow(_r: Recorded) -> Reply:
        time.sleep(3.0)
        return tool_reply(PLAN_TOOL, VALID_PLAN)

    fake_anthropic.responder = slow
    settings = settings_for(fake_anthropic, min_call_seconds=0.2, sdk_max_retries=3, backoff_attempts=3)
    client = make_client(settings)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        call_tool(
            client,
            settings,
            system=SYSTEM,
            messages=MESSAGES,
            tool_name=PLAN_TOOL,
            output_model=PlanOutput,
            tally=CostTally(),
            deadline=started + 0.8,
            sleep=lambda _s: None,
        )
    # A call held until the answer would take 3 s; the bound leaves room for a loaded CI machine.
    assert time.monotonic() - started < 2.5


def test_own_backoff_waits_as_long_as_retry_after_asks(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(
        error_reply(429, "slow down", headers={"retry-after": "7"}), tool_reply(PLAN_TOOL, VALID_PLAN)
    )
    sleeps: list[float] = []
    ask_plan(
        settings_for(fake_anthropic, sdk_max_retries=0, backoff_attempts=1, backoff_seconds=1.0),
        CostTally(),
        sleeps,
    )
    assert sleeps == [7.0]


def test_answers_are_streamed_by_default_and_plain_requests_still_work(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(tool_reply(PLAN_TOOL, VALID_PLAN), tool_reply(PLAN_TOOL, VALID_PLAN))
    tally = CostTally()
    assert ask_plan(settings_for(fake_anthropic), tally).n_folds == 5
    assert ask_plan(settings_for(fake_anthropic, stream=False), tally).n_folds == 5

    assert [r.body.get("stream") for r in fake_anthropic.requests] == [True, None]
    # The streamed usage (message_start, then message_delta) is tallied like the plain one.
    assert (tally.calls, tally.input_tokens, tally.output_tokens) == (2, 200, 100)


def test_request_too_large_413_is_not_retried_and_says_so(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(error_reply(413, "Request exceeds the maximum allowed number of bytes"))
    with pytest.raises(LLMRequestTooLargeError, match="too large \\(413\\)"):
        ask_plan(settings_for(fake_anthropic, sdk_max_retries=2, backoff_attempts=2), CostTally())
    assert len(fake_anthropic.requests) == 1


def test_prompt_over_the_context_window_counts_as_too_large(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(error_reply(400, "prompt is too long: 215000 tokens > 200000 maximum"))
    with pytest.raises(LLMRequestTooLargeError, match="prompt is too long"):
        ask_plan(settings_for(fake_anthropic), CostTally())


def test_answer_cut_at_max_tokens_is_asked_again_shorter_with_a_higher_limit(
    fake_anthropic: FakeAnthropic,
) -> None:
    cut = tool_reply(PLAN_TOOL, {"approach": "Gradient boo"}, stop_reason="max_tokens")
    fake_anthropic.push(cut, tool_reply(PLAN_TOOL, VALID_PLAN))
    plan = ask_plan(settings_for(fake_anthropic, max_tokens=3000, max_tokens_ceiling=5000), CostTally())

    assert plan.n_folds == 5
    first, second = fake_anthropic.requests
    assert (first.body["max_tokens"], second.body["max_tokens"]) == (3000, 5000)
    # The cut answer is not echoed back; the same question is asked with a note to be shorter.
    assert [m["role"] for m in second.body["messages"]] == ["user"]
    assert "cut off at the output token limit" in second.body["messages"][0]["content"][-1]["text"]


def test_answers_cut_every_time_raise_truncated_after_the_bounded_retries(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(PLAN_TOOL, VALID_PLAN, stop_reason="max_tokens")
    with pytest.raises(LLMTruncatedError, match="cut at 2000 output tokens 2 times"):
        ask_plan(settings_for(fake_anthropic, max_tokens=1000, cut_retries=1), CostTally())
    # Even a cut answer that happens to validate is never used.
    assert len(fake_anthropic.requests) == 2


def test_a_timed_out_request_is_sent_once_more(fake_anthropic: FakeAnthropic) -> None:
    def slow(_r: Recorded) -> Reply:
        time.sleep(1.5)
        return tool_reply(PLAN_TOOL, VALID_PLAN)

    fake_anthropic.push(slow, tool_reply(PLAN_TOOL, VALID_PLAN))
    plan = ask_plan(settings_for(fake_anthropic, request_timeout=0.5, backoff_attempts=2), CostTally())
    assert plan.n_folds == 5
    assert len(fake_anthropic.requests) == 2


def test_a_request_timing_out_twice_raises_timeout(fake_anthropic: FakeAnthropic) -> None:
    def slow(_r: Recorded) -> Reply:
        time.sleep(1.5)
        return tool_reply(PLAN_TOOL, VALID_PLAN)

    fake_anthropic.responder = slow
    with pytest.raises(LLMTimeoutError, match="timed out 2 times"):
        ask_plan(settings_for(fake_anthropic, request_timeout=0.5, backoff_attempts=3), CostTally())
    assert len(fake_anthropic.requests) == 2


def test_overload_announced_inside_a_stream_is_retried_with_backoff(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.push(overloaded_mid_stream(tool_reply(PLAN_TOOL, VALID_PLAN)), tool_reply(PLAN_TOOL, VALID_PLAN))
    sleeps: list[float] = []
    plan = ask_plan(settings_for(fake_anthropic, backoff_attempts=1, backoff_seconds=2.0), CostTally(), sleeps)
    assert plan.n_folds == 5
    assert sleeps == [2.0]


def test_a_stream_trickling_past_the_deadline_is_abandoned(fake_anthropic: FakeAnthropic) -> None:
    trickle = tool_reply(PLAN_TOOL, {**VALID_PLAN, "approach": "x" * 16000})
    trickle.event_delay = 0.1  # each event arrives well within the read timeout; the whole takes > 4 s
    fake_anthropic.responder = lambda _r: trickle
    settings = settings_for(fake_anthropic, min_call_seconds=0.2, request_timeout=5)
    client = make_client(settings)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        call_tool(
            client,
            settings,
            system=SYSTEM,
            messages=MESSAGES,
            tool_name=PLAN_TOOL,
            output_model=PlanOutput,
            tally=CostTally(),
            deadline=started + 1.0,
        )
    assert time.monotonic() - started < 2.5


def test_thinking_offers_the_tool_with_auto_choice_and_echoes_signed_thinking(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.push(
        tool_reply(PLAN_TOOL, {**VALID_PLAN, "n_folds": 1}), tool_reply(PLAN_TOOL, VALID_PLAN)
    )
    settings = settings_for(fake_anthropic, thinking_budget=2048, max_tokens=4000, output_retries=1)
    plan = ask_plan(settings, CostTally())

    assert plan.n_folds == 5
    first, second = fake_anthropic.requests
    assert first.body["tool_choice"] == {"type": "auto"}
    assert first.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert first.body["max_tokens"] == 4000 + 2048
    # The correction keeps the signed thinking block before the tool call it answers.
    echoed = second.body["messages"][1]["content"]
    assert [b["type"] for b in echoed] == ["thinking", "tool_use"]
    assert echoed[0]["signature"].startswith("sig")


def test_the_fake_api_refuses_thinking_with_a_forced_tool_like_the_real_one(
    fake_anthropic: FakeAnthropic,
) -> None:
    # Guards the fake itself: the behaviour call_tool avoids by choosing tool_choice auto.
    import anthropic

    client = make_client(settings_for(fake_anthropic))
    with pytest.raises(anthropic.BadRequestError, match="Thinking may not be enabled"):
        client.messages.create(
            model="m",
            max_tokens=3000,
            messages=[{"role": "user", "content": "hi"}],
            tools=all_tools(),
            tool_choice={"type": "tool", "name": PLAN_TOOL},
            thinking={"type": "enabled", "budget_tokens": 2048},
        )


def test_settings_refuse_a_long_non_streaming_request() -> None:
    with pytest.raises(ValueError, match="without streaming"):
        LLMSettings(api_key="k", stream=False, max_tokens=20_000, thinking_budget=4096)


def test_a_stream_that_stalls_between_events_is_a_timeout_and_retried_once(fake_anthropic: FakeAnthropic) -> None:
    stalled = tool_reply(PLAN_TOOL, VALID_PLAN)
    stalled.event_delay = 1.0  # headers arrive at once, then each event takes longer than the read timeout
    fake_anthropic.push(stalled, tool_reply(PLAN_TOOL, VALID_PLAN))
    plan = ask_plan(settings_for(fake_anthropic, request_timeout=0.4), CostTally())
    assert plan.n_folds == 5
    assert len(fake_anthropic.requests) == 2


def test_a_stream_that_ends_before_the_answer_does_is_never_used(fake_anthropic: FakeAnthropic) -> None:
    cut = tool_reply(PLAN_TOOL, VALID_PLAN)
    cut.stream_cut = True  # the whole tool input arrived, but no message_delta / message_stop
    fake_anthropic.push(cut, tool_reply(PLAN_TOOL, {**VALID_PLAN, "n_folds": 7}))
    sleeps: list[float] = []
    plan = ask_plan(settings_for(fake_anthropic, backoff_attempts=1, backoff_seconds=1.0), CostTally(), sleeps)
    assert plan.n_folds == 7
    assert sleeps == [1.0]
