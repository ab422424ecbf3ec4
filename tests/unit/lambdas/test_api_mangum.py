"""The deployed entry point, lambdas/api/handler.py, driven with API Gateway REST proxy events."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from batch_agent.service import names
from tests.unit.lambdas.api_backend import AWS_ENV, BUCKET, STATE_MACHINE_ARN, TABLE, api_backend

EVENTS = Path(__file__).resolve().parents[2] / "events"


def _event(name: str, job_id: str = "") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text().replace("JOB_ID", job_id))
    return event


class _Context:
    function_name = "test-kaggle-solver-api"
    aws_request_id = "5f0c3b7e"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def handler_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    env = {
        **AWS_ENV,
        names.ENV_JOBS_TABLE: TABLE,
        names.ENV_ARTIFACTS_BUCKET: BUCKET,
        names.ENV_STATE_MACHINE_ARN: STATE_MACHINE_ARN,
        names.ENV_API_KEY: "test-api-key",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with api_backend():
        sys.modules.pop("lambdas.api.handler", None)  # settings and clients are built at import (cold start)
        yield importlib.import_module("lambdas.api.handler")
        sys.modules.pop("lambdas.api.handler", None)


def test_post_run_event_gives_202_with_a_stage_qualified_status_url(handler_module: ModuleType) -> None:
    response = handler_module.handler(_event("apigw_rest_post_run"), _Context())

    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    assert body["status_url"] == (
        f"https://k7x2q9p1ab.execute-api.us-east-1.amazonaws.com/prod/status/{body['job_id']}"
    )


def test_status_result_and_jobs_events_follow_the_job(handler_module: ModuleType) -> None:
    job_id = json.loads(handler_module.handler(_event("apigw_rest_post_run"), _Context())["body"])["job_id"]

    status = handler_module.handler(_event("apigw_rest_get_status", job_id), _Context())
    result = handler_module.handler(_event("apigw_rest_get_result", job_id), _Context())
    listing = handler_module.handler(_event("apigw_rest_get_jobs"), _Context())

    assert status["statusCode"] == 200
    assert json.loads(status["body"])["status"] == "QUEUED"
    assert result["statusCode"] == 409
    assert [j["job_id"] for j in json.loads(listing["body"])["jobs"]] == [job_id]


def test_docs_page_loads_the_openapi_document_under_the_stage(handler_module: ModuleType) -> None:
    event = _event("apigw_rest_get_jobs")
    event.update(path="/docs", queryStringParameters=None, multiValueQueryStringParameters=None)
    event["requestContext"]["path"] = "/prod/docs"

    response = handler_module.handler(event, _Context())

    assert response["statusCode"] == 200
    assert "'/prod/openapi.json'" in response["body"] or '"/prod/openapi.json"' in response["body"]


def test_bad_url_event_gives_422_with_the_reason(handler_module: ModuleType) -> None:
    response = handler_module.handler(_event("apigw_rest_post_run_bad_url"), _Context())

    assert response["statusCode"] == 422
    assert "not a Kaggle URL" in json.loads(response["body"])["detail"]


def test_event_without_the_api_key_is_401(handler_module: ModuleType) -> None:
    event = _event("apigw_rest_get_jobs")
    event["headers"].pop("x-api-key")
    event["multiValueHeaders"].pop("x-api-key")

    assert handler_module.handler(event, _Context())["statusCode"] == 401
