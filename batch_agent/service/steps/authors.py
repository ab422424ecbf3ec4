"""Which author writes a job's programs (Claude when its secret holds a key, templates otherwise), and its usage."""

from __future__ import annotations

import importlib
import json

import boto3

from batch_agent.service import jobs
from batch_agent.service.jobs import JobRecord
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.context import ServiceClients, seconds_left
from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.errors import SolverError

# Kept back from the Lambda invocation's time: the fallback's work, storing the usage and the reply.
LAMBDA_END_MARGIN_SECONDS = 30.0

# ---------------------------------------------------------------- authors


def author_for(
    settings: StepSettings, job: JobRecord | None = None, *, invocation_seconds_left: float | None = None
) -> ProgramAuthor:
    """The program author the settings name: Claude when a key is configured (auto), templates otherwise.

    A Claude author resumes the job's LLM usage (tally, cost ceiling, fallback) from
    its record, so the ceiling holds across steps in separate Lambda invocations.
    Its model calls end before the job's time runs out and before the Lambda
    invocation's does (``invocation_seconds_left`` less a margin for recording the
    usage and answering): a call that would not fit is not made, and the author
    falls back to the templates.
    """
    choice = settings.author
    if ":" in choice:
        module, _, attr = choice.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        author: ProgramAuthor = factory()
        return author
    if choice == "claude" or (choice == "auto" and settings.anthropic_secret_arn):
        if not settings.anthropic_secret_arn:
            raise SolverError("author 'claude' needs KAGGLE_SOLVER_ANTHROPIC_SECRET_ARN")
        return _claude_author(_secret_string(settings.anthropic_secret_arn), job, invocation_seconds_left)
    from batch_agent.solver.templates import TemplateAuthor

    return TemplateAuthor()


def record_llm_usage(clients: ServiceClients, job_id: str, author: ProgramAuthor) -> None:
    usage = getattr(author, "usage", None)
    if callable(usage):
        jobs.update_job(clients.dynamodb, clients.table, job_id, llm_usage=usage())


def _secret_string(secret_arn: str) -> str:
    value: str = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    # The secret holds the bare key or {"api_key": "..."}.
    if value.lstrip().startswith("{"):
        data = json.loads(value)
        value = str(data.get("api_key") or data.get("ANTHROPIC_API_KEY") or "")
    return value.strip()


def _claude_author(api_key: str, job: JobRecord | None, invocation_seconds_left: float | None) -> ProgramAuthor:
    from pydantic import SecretStr

    from batch_agent.llm.author import resume_author
    from batch_agent.llm.calls import LLMSettings
    from batch_agent.solver.templates import TemplateAuthor

    limits = [seconds_left(job)] if job else []
    if invocation_seconds_left is not None:
        limits.append(invocation_seconds_left - LAMBDA_END_MARGIN_SECONDS)
    return resume_author(
        LLMSettings(api_key=SecretStr(api_key)),
        fallback=TemplateAuthor(),
        usage=job.llm_usage if job else None,
        seconds_left=max(0.0, min(limits)) if limits else None,
    )


