"""Every call to Claude goes through ``call_tool``: tool use, validated output, retries, cost.

One function for every model call keeps the policies in one place:

* structured output: the model must call one tool whose input is validated with
  a pydantic model; invalid input is sent back as an error tool result and the
  call is retried a bounded number of times before ``LLMOutputError``;
* an answer cut at ``max_tokens`` is asked again with a higher limit (up to the
  model's bound) and a request for a shorter answer, then ``LLMTruncatedError``;
* a request the API finds too large (413, or a prompt over the context window)
  raises ``LLMRequestTooLargeError`` at once, so the caller can send a shorter prompt;
* a timed-out request is retried once, then ``LLMTimeoutError``;
* transient failures (429, 5xx, 529 overloaded, connection errors, an overload
  announced mid-stream): the SDK's own retries (which honour ``retry-after``) plus
  a bounded backoff of our own, then ``LLMUnavailableError``;
* an authentication or permission error raises ``LLMAuthError`` at once;
* a cost ceiling is checked before each request (``LLMBudgetError``);
* every response's ``usage`` (input, output, cache write, cache read tokens) is
  added to a ``CostTally`` priced from the settings.

Responses are streamed by default: the SDK refuses long non-streaming requests
(above ~21k output tokens) and a stream lets the deadline cut a slow answer.
With ``thinking_budget`` set, extended thinking is on and the tool is offered with
tool choice ``auto`` (the API allows no thinking with a forced tool call).

Which of these failures should end Claude for a whole run is the author's
decision (``batch_agent.llm.author``): only ``LLMAuthError`` and ``LLMBudgetError``
say that no later call can succeed.

Lambdas import this module: stdlib, pydantic and the anthropic SDK only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from batch_agent.solver.errors import SolverError

if TYPE_CHECKING:
    # The SDK takes seconds to import; only runs that call Claude pay for it.
    import anthropic

log = logging.getLogger(__name__)

OutputT = TypeVar("OutputT", bound=BaseModel)

# Rough characters per token, used only to estimate a call's cost before it is made.
_CHARS_PER_TOKEN = 3.5
# The SDK refuses non-streaming requests whose max_tokens could take more than 10 minutes.
_NON_STREAMING_MAX_TOKENS = 21_000
# Error types the API can send inside a stream that has already answered 200.
_TRANSIENT_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


class LLMSettings(BaseSettings):
    """Claude settings of every deployable: the key and endpoint, the model, limits and prices."""

    model_config = SettingsConfigDict(env_prefix="KAGGLE_SOLVER_LLM_", extra="ignore", populate_by_name=True)

    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "api_key")
    )
    # None: the SDK's default endpoint.
    base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "base_url")
    )
    model: str = "claude-sonnet-5-5"
    # Output tokens of one answer (thinking excluded). Above ~21k the SDK refuses
    # non-streaming requests (they could pass 10 minutes): stream must then stay on.
    max_tokens: int = Field(default=16000, gt=0, le=128_000)
    # The model's output bound (thinking included): a cut answer is asked again with up to this limit.
    max_tokens_ceiling: int = Field(default=64_000, gt=0, le=128_000)
    # How many times an answer cut at the token limit is asked again.
    cut_retries: int = Field(default=1, ge=0)
    stream: bool = True
    # Extended thinking tokens per call; None: no thinking (and the tool call is forced).
    thinking_budget: int | None = Field(default=None, ge=1024)
    request_timeout: float = Field(default=300.0, gt=0)
    # How many times a request that timed out is sent again.
    timeout_retries: int = Field(default=1, ge=0)
    # Claude is dropped for the rest of a run after this many failed calls in a row.
    max_consecutive_failures: int = Field(default=3, ge=1)
    # Retries done by the SDK itself on 408/409/429/5xx and connection errors.
    sdk_max_retries: int = Field(default=2, ge=0)
    # Further attempts after the SDK has given up, with exponential backoff from backoff_seconds.
    backoff_attempts: int = Field(default=3, ge=0)
    backoff_seconds: float = Field(default=5.0, ge=0)
    # How many times an invalid tool input is sent back to be corrected.
    output_retries: int = Field(default=2, ge=0)
    # A call is not started with less time than this before its deadline.
    min_call_seconds: float = Field(default=15.0, ge=0)
    # Dollars per million tokens.
    price_input: float = Field(default=3.0, ge=0)
    price_output: float = Field(default=15.0, ge=0)
    price_cache_write: float = Field(default=3.75, ge=0)
    price_cache_read: float = Field(default=0.30, ge=0)
    # Spending ceiling for one job; None: no ceiling.
    max_cost_usd: float | None = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _fits_without_streaming(self) -> LLMSettings:
        if not self.stream and self.request_tokens(self.max_tokens) > _NON_STREAMING_MAX_TOKENS:
            raise ValueError(
                f"without streaming, max_tokens plus thinking_budget must stay under "
                f"{_NON_STREAMING_MAX_TOKENS} (the SDK refuses longer non-streaming requests)"
            )
        return self

    def request_tokens(self, answer_tokens: int) -> int:
        """The request's max_tokens: the answer's tokens plus the thinking budget, which counts within it."""
        return answer_tokens + (self.thinking_budget or 0)

    def answer_token_bound(self) -> int:
        """The most answer tokens a retry of a cut answer may ask for."""
        bound = self.max_tokens_ceiling if self.stream else min(self.max_tokens_ceiling, _NON_STREAMING_MAX_TOKENS)
        return max(self.max_tokens, bound - (self.thinking_budget or 0))

    @property
    def enabled(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


class LLMError(SolverError):
    """Claude could not be used for this step; the author falls back to the templates."""


class LLMAuthError(LLMError):
    """The key was refused (401/403)."""


class LLMBudgetError(LLMError):
    """The next call could take the job past its cost ceiling."""


class LLMOutputError(LLMError):
    """The model kept answering with output that does not fit the tool's schema."""


class LLMUnavailableError(LLMError):
    """Rate limits, overload or server errors outlasted every retry."""


class LLMDeadlineError(LLMError):
    """Too little of the run's time is left for another call."""


class LLMRequestTooLargeError(LLMError):
    """The request is larger than the API accepts (413, or a prompt over the context window)."""


class LLMTruncatedError(LLMError):
    """Every answer was cut at the output token limit."""


class LLMTimeoutError(LLMError):
    """The request timed out, and so did its retry."""


class CostTally(BaseModel):
    """Tokens and dollars spent by one job, summed over every call."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0

    def add_usage(self, usage: Any, settings: LLMSettings) -> float:
        """Add one response's ``usage`` and return that call's cost in dollars."""
        input_tokens = int(getattr(usage, "input_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
        cache_write = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        cache_read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        cost = (
            input_tokens * settings.price_input
            + output_tokens * settings.price_output
            + cache_write * settings.price_cache_write
            + cache_read * settings.price_cache_read
        ) / 1_000_000
        self.calls += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cache_creation_input_tokens += cache_write
        self.cache_read_input_tokens += cache_read
        self.cost_usd += cost
        return cost

    def merge(self, other: CostTally) -> None:
        """Add another tally (e.g. one Lambda step's) into this one."""
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cost_usd += other.cost_usd

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def summary(self) -> str:
        """One line for the CLI summary and logs."""
        return (
            f"{self.calls} LLM calls, {self.input_tokens} input + {self.output_tokens} output tokens "
            f"({self.cache_creation_input_tokens} cache write, {self.cache_read_input_tokens} cache read), "
            f"${self.cost_usd:.4f}"
        )


def make_client(settings: LLMSettings) -> anthropic.Anthropic:
    """The SDK client for these settings; the key and endpoint come only from the settings."""
    import anthropic

    if not settings.enabled or settings.api_key is None:
        raise LLMAuthError("no Anthropic API key is configured (ANTHROPIC_API_KEY)")
    return anthropic.Anthropic(
        api_key=settings.api_key.get_secret_value(),
        base_url=settings.base_url,
        timeout=settings.request_timeout,
        max_retries=settings.sdk_max_retries,
    )


def tool_definition(name: str, description: str, output_model: type[BaseModel]) -> dict[str, Any]:
    """The Messages API tool whose input schema is the pydantic model's JSON schema."""
    return {"name": name, "description": description, "input_schema": output_model.model_json_schema()}


def estimate_call_cost(
    settings: LLMSettings,
    system: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    max_tokens: int | None = None,
) -> float:
    """An upper-leaning guess of one call's cost: the prompt at the input price, every output token used."""
    chars = sum(len(json.dumps(part, default=str)) for part in (system, messages, tools))
    input_tokens = chars / _CHARS_PER_TOKEN
    output_tokens = settings.request_tokens(max_tokens or settings.max_tokens)
    return (input_tokens * settings.price_input + output_tokens * settings.price_output) / 1_000_000


def call_tool(
    client: anthropic.Anthropic,
    settings: LLMSettings,
    *,
    system: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    tool_name: str,
    output_model: type[OutputT],
    tally: CostTally,
    tools: list[dict[str, Any]] | None = None,
    tool_description: str = "",
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> OutputT:
    """Ask Claude for one structured answer: the validated input of its call of ``tool_name``.

    ``system`` holds text blocks; put ``cache_control`` on the competition context
    block so repeated calls of a job read it from the prompt cache. ``tools`` lets
    every call of a job send the same tool list (tools come first in the cached
    prefix); by default only ``tool_name`` is sent. ``deadline`` (``time.monotonic()``
    seconds) bounds every request and retry: no request starts with less than
    ``min_call_seconds`` before it, and a streamed answer is abandoned at it.
    ``messages`` is not modified.
    """
    if tools is None:
        tools = [tool_definition(tool_name, tool_description, output_model)]
    if tool_name not in {t["name"] for t in tools}:
        raise ValueError(f"tool {tool_name!r} is not among the tools sent")
    conversation = list(messages)
    max_tokens = settings.max_tokens
    corrections = cuts = 0
    last_problem = ""
    while True:
        response = _create_with_backoff(
            client,
            settings,
            system=system,
            messages=conversation,
            tools=tools,
            tool_name=tool_name,
            max_tokens=max_tokens,
            tally=tally,
            deadline=deadline,
            sleep=sleep,
        )
        # The SDK builds responses leniently: a malformed body can lack content altogether.
        content = list(getattr(response, "content", None) or [])
        if getattr(response, "stop_reason", None) == "max_tokens":
            # A cut program is never run, even when what arrived happens to parse.
            if cuts >= settings.cut_retries:
                raise LLMTruncatedError(
                    f"the {tool_name} answer was cut at {max_tokens} output tokens "
                    f"{cuts + 1} times; the program asked for is too long"
                )
            cuts += 1
            max_tokens = min(max_tokens * 2, settings.answer_token_bound())
            conversation = _with_note(
                conversation,
                "Your previous answer was cut off at the output token limit. Answer again, shorter: "
                "a more compact program, no long comments or repeated code.",
            )
            log.warning("LLM answer for %s cut at the token limit; asking again (max_tokens %d)", tool_name, max_tokens)
            continue
        tool_use = next(
            (
                block
                for block in content
                if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == tool_name
            ),
            None,
        )
        if tool_use is None:
            last_problem = f"the answer did not call the tool {tool_name}"
            retry_turns: list[dict[str, Any]] = [
                {"role": "assistant", "content": _content_params(content) or "(no answer)"},
                {"role": "user", "content": f"Answer by calling the tool {tool_name} with its full input."},
            ]
        else:
            try:
                return output_model.model_validate(tool_use.input)
            except ValidationError as err:
                last_problem = _describe_validation_error(err)
            retry_turns = [
                {"role": "assistant", "content": _content_params(content)},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": tool_use.id,
                            "is_error": True,
                            "content": f"Invalid input: {last_problem}. Call {tool_name} again, fixed.",
                        }
                    ],
                },
            ]
        if corrections >= settings.output_retries:
            raise LLMOutputError(
                f"the model gave invalid {tool_name} output {corrections + 1} times: {last_problem}"
            )
        corrections += 1
        conversation = [*conversation, *retry_turns]
        log.warning("LLM output for %s invalid (%s); asking again", tool_name, last_problem)


def _create_with_backoff(
    client: anthropic.Anthropic,
    settings: LLMSettings,
    *,
    system: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    tool_name: str,
    max_tokens: int,
    tally: CostTally,
    deadline: float | None,
    sleep: Callable[[float], None],
) -> Any:
    import anthropic

    request: dict[str, Any] = {
        "model": settings.model,
        "max_tokens": settings.request_tokens(max_tokens),
        "system": system,
        "messages": messages,
        "tools": tools,
    }
    if settings.thinking_budget is None:
        request["tool_choice"] = {"type": "tool", "name": tool_name}
    else:
        # Thinking is refused with a forced tool call; the prompt asks for the tool instead.
        request["tool_choice"] = {"type": "auto"}
        request["thinking"] = {"type": "enabled", "budget_tokens": settings.thinking_budget}
    timeouts = 0
    attempt = 0
    while True:
        _check_budget(settings, tally, system, messages, tools, max_tokens)
        timeout = settings.request_timeout
        requester = client
        if deadline is not None:
            left = deadline - time.monotonic()
            if left < settings.min_call_seconds:
                raise LLMDeadlineError(
                    f"only {max(left, 0):.1f} s of the run could go to a model call "
                    f"(at least {settings.min_call_seconds:.0f} s needed)"
                )
            timeout = min(timeout, left)
            # Hidden SDK retries could outlast the deadline; the loop here retries while time allows.
            requester = client.with_options(max_retries=0)
        try:
            response = _send(requester, settings, request, timeout=timeout, deadline=deadline)
        except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as err:
            raise LLMAuthError(
                f"Anthropic refused the key ({err.status_code}): {_error_message(err)}"
            ) from err
        except anthropic.APITimeoutError as err:
            no_time = deadline is not None and deadline - time.monotonic() < settings.min_call_seconds
            if timeouts >= settings.timeout_retries or no_time:
                raise LLMTimeoutError(
                    f"the {tool_name} request timed out {timeouts + 1} times (limit {timeout:.3g} s)"
                ) from err
            timeouts += 1
            log.warning("Anthropic request for %s timed out; sending it again", tool_name)
            continue
        except anthropic.APIStatusError as err:
            if _too_large(err):
                raise LLMRequestTooLargeError(
                    f"the {tool_name} request is too large ({err.status_code}): {_error_message(err)}"
                ) from err
            if not _transient(err):
                # 400/404...: the request itself is wrong; retrying cannot help.
                raise LLMUnavailableError(
                    f"Anthropic API error {err.status_code}: {_error_message(err)}"
                ) from err
            attempt = _back_off(settings, err, attempt, deadline, sleep)
            continue
        except anthropic.APIConnectionError as err:
            attempt = _back_off(settings, err, attempt, deadline, sleep)
            continue
        except anthropic.AnthropicError as err:
            # Anything else the SDK raises (an unreadable response...): this call fails.
            raise LLMUnavailableError(f"Anthropic SDK error: {type(err).__name__}: {err}") from err
        usage = getattr(response, "usage", None)
        cost = tally.add_usage(usage, settings)
        log.info("LLM call %s: %s ($%.4f)", tool_name, usage, cost)
        return response


def _send(
    requester: anthropic.Anthropic,
    settings: LLMSettings,
    request: dict[str, Any],
    *,
    timeout: float,
    deadline: float | None,
) -> Any:
    """One request: streamed (abandoned at the deadline) or plain."""
    import anthropic

    # Plain dicts are the wire format; the SDK's TypedDicts describe the same shapes.
    if not settings.stream:
        return requester.messages.create(**request, timeout=timeout)  # type: ignore[call-overload]
    with requester.messages.stream(**request, timeout=timeout) as stream:
        # The SDK wraps transport errors of the request, not those of reading the stream after it.
        transport = sys.modules[type(stream.response).__module__.split(".")[0]]
        finished = False
        try:
            # The timeout bounds each read; the deadline bounds the whole answer.
            for event in stream:
                finished = finished or event.type == "message_stop"
                if deadline is not None and time.monotonic() > deadline:
                    raise anthropic.APITimeoutError(request=stream.response.request)
        except transport.TimeoutException as err:
            raise anthropic.APITimeoutError(request=stream.response.request) from err
        except transport.TransportError as err:
            raise anthropic.APIConnectionError(
                message=f"the stream broke off: {type(err).__name__}", request=stream.response.request
            ) from err
        if not finished:
            # The connection closed before message_stop: what arrived may be a program cut anywhere.
            raise anthropic.APIConnectionError(
                message="the stream ended before the answer did", request=stream.response.request
            )
        return stream.get_final_message()


def _back_off(
    settings: LLMSettings,
    err: anthropic.APIError,
    attempt: int,
    deadline: float | None,
    sleep: Callable[[float], None],
) -> int:
    """Sleep before the next try of a transient failure and return the next attempt number, or raise."""
    if attempt >= settings.backoff_attempts:
        raise LLMUnavailableError(f"Anthropic API unavailable after retries: {_error_text(err)}") from err
    # The server's retry-after, when it gives one, beats our own schedule.
    delay = max(settings.backoff_seconds * (2**attempt), _retry_after(err) or 0.0)
    if deadline is not None and time.monotonic() + delay + settings.min_call_seconds > deadline:
        raise LLMUnavailableError(
            f"Anthropic API unavailable and no time left to retry: {_error_text(err)}"
        ) from err
    log.warning("Anthropic API error (%s); retrying in %.1fs", _error_text(err), delay)
    sleep(delay)
    return attempt + 1


def _error_type(err: anthropic.APIStatusError) -> str | None:
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        value = body["error"].get("type")
        return value if isinstance(value, str) else None
    return None


def _transient(err: anthropic.APIStatusError) -> bool:
    """429, 5xx and 529, or one of their error types sent inside a stream that began with 200."""
    return err.status_code == 429 or err.status_code >= 500 or _error_type(err) in _TRANSIENT_ERROR_TYPES


def _too_large(err: anthropic.APIStatusError) -> bool:
    if err.status_code == 413 or _error_type(err) == "request_too_large":
        return True
    return err.status_code == 400 and "prompt is too long" in _error_message(err).lower()


def _with_note(conversation: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """The conversation with a text note added to its last (user) message."""
    *head, last = conversation
    content = last["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    return [*head, {**last, "content": [*blocks, {"type": "text", "text": note}]}]


def _check_budget(
    settings: LLMSettings,
    tally: CostTally,
    system: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    max_tokens: int,
) -> None:
    if settings.max_cost_usd is None:
        return
    estimate = estimate_call_cost(settings, system, messages, tools, max_tokens)
    if tally.cost_usd + estimate > settings.max_cost_usd:
        raise LLMBudgetError(
            f"cost ceiling ${settings.max_cost_usd:.2f} reached (spent ${tally.cost_usd:.4f}, "
            f"next call could cost up to ${estimate:.4f})"
        )


def _content_params(content: list[Any]) -> list[dict[str, Any]]:
    """Response content blocks as request params, to echo the assistant turn back.

    Thinking blocks go back unchanged (with their signature): the API requires them
    before a tool_use block that a tool_result answers.
    """
    params: list[dict[str, Any]] = []
    for block in content:
        kind = getattr(block, "type", None)
        if kind == "thinking":
            params.append({"type": "thinking", "thinking": block.thinking, "signature": block.signature})
        elif kind == "redacted_thinking":
            params.append({"type": "redacted_thinking", "data": block.data})
        elif kind == "text":
            params.append({"type": "text", "text": block.text})
        elif kind == "tool_use":
            params.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return params


def _describe_validation_error(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'input'}: {e['msg']}" for e in err.errors()[:5]
    )


def _retry_after(err: anthropic.APIError) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms or retry-after), if it said."""
    import anthropic

    if not isinstance(err, anthropic.APIStatusError):
        return None
    headers = err.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _error_message(err: anthropic.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return str(err.message)


def _error_text(err: anthropic.APIError) -> str:
    import anthropic

    if isinstance(err, anthropic.APIStatusError):
        return f"{err.status_code} {_error_message(err)}"
    return type(err).__name__
