"""LLM settings, the cost tally and the author's no-key path: no network."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from batch_agent.llm.author import ClaudeAuthor, choose_author
from batch_agent.llm.calls import CostTally, LLMAuthError, LLMSettings, make_client
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.templates import TemplateAuthor


def test_settings_read_the_anthropic_variables_and_prefixed_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_MODEL", "claude-other")
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_MAX_COST_USD", "1.5")
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_PRICE_OUTPUT", "20")
    settings = LLMSettings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-from-env"
    assert settings.base_url == "http://127.0.0.1:9"
    assert (settings.model, settings.max_cost_usd, settings.price_output) == ("claude-other", 1.5, 20.0)
    assert settings.enabled
    assert "sk-from-env" not in repr(settings)


def test_settings_default_to_sonnet_prices_and_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = LLMSettings()
    assert not settings.enabled
    assert settings.model.startswith("claude-sonnet")
    assert (settings.price_input, settings.price_output) == (3.0, 15.0)
    assert (settings.price_cache_write, settings.price_cache_read) == (3.75, 0.30)
    with pytest.raises(LLMAuthError, match="ANTHROPIC_API_KEY"):
        make_client(settings)


def test_negative_cost_ceiling_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_cost_usd"):
        LLMSettings(max_cost_usd=-1)


def test_tally_prices_every_usage_field_and_merges() -> None:
    settings = LLMSettings(price_input=3, price_output=15, price_cache_write=3.75, price_cache_read=0.3)
    tally = CostTally()
    cost = tally.add_usage(
        SimpleNamespace(
            input_tokens=1_000_000,
            output_tokens=100_000,
            cache_creation_input_tokens=200_000,
            cache_read_input_tokens=None,
        ),
        settings,
    )
    assert cost == pytest.approx(3 + 1.5 + 0.75)
    other = CostTally()
    other.add_usage(
        SimpleNamespace(input_tokens=0, output_tokens=0, cache_read_input_tokens=1_000_000), settings
    )
    tally.merge(other)
    assert (tally.calls, tally.cache_read_input_tokens, tally.total_tokens) == (2, 1_000_000, 2_300_000)
    assert tally.cost_usd == pytest.approx(5.25 + 0.3)
    assert "$5.5500" in tally.summary()


def test_without_a_key_the_author_runs_the_templates_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    profile = CompetitionProfile(
        data_dir="/data",
        id_column="id",
        target_columns=["y"],
        submission_columns=["y"],
        task="regression",
        prediction_format="value",
        metric="rmse",
        n_train=100,
        n_test=50,
    )
    author = choose_author(LLMSettings(), no_llm=False, fallback=TemplateAuthor())
    assert isinstance(author, ClaudeAuthor) and author.name == "templates"
    plan = author.plan(profile, 60)
    assert plan.source == "rules"
    assert all(p.origin == "template" for p in author.draft(profile, plan))
    assert author.summary() == (
        "templates only: fell back from Claude to the templates because no Anthropic API key is configured"
    )
    assert author.usage()["cost_usd"] == 0.0


def test_no_llm_switch_returns_the_template_author() -> None:
    fallback = TemplateAuthor()
    assert choose_author(LLMSettings(api_key="sk-x"), no_llm=True, fallback=fallback) is fallback  # type: ignore[arg-type]


def test_lambda_modules_load_without_numeric_libraries() -> None:
    code = (
        "import sys, batch_agent.llm.calls, batch_agent.llm.prompts, batch_agent.llm.author\n"
        "heavy = [m for m in ('pandas', 'numpy', 'sklearn', 'lightgbm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
