"""The API warms its DynamoDB client before the first request, and a failed warm-up does not stop it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from batch_agent.service import job_requests
from batch_agent.service.job_requests import ApiClients
from batch_agent.service.settings import ApiSettings
from lambdas.api import app as api_app

SETTINGS = ApiSettings(jobs_table="jobs", artifacts_bucket="b", state_machine_arn="arn:aws:states:::x")


class _DynamoDB:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return {}


def _clients(dynamodb: _DynamoDB) -> ApiClients:
    return ApiClients(dynamodb=dynamodb, s3=None, stepfunctions=None, batch=None)


def test_an_app_that_builds_its_own_clients_reads_once_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    dynamodb = _DynamoDB()
    monkeypatch.setattr(job_requests, "api_clients", lambda: _clients(dynamodb))
    api_app.create_app(SETTINGS)
    assert [call["TableName"] for call in dynamodb.calls] == ["jobs"]


def test_an_app_given_clients_does_not_warm_them() -> None:
    dynamodb = _DynamoDB()
    api_app.create_app(SETTINGS, _clients(dynamodb))
    assert dynamodb.calls == []


def test_a_failed_warm_up_is_logged_and_the_app_still_starts(caplog: pytest.LogCaptureFixture) -> None:
    dynamodb = _DynamoDB(EndpointConnectionError(endpoint_url="http://dynamodb"))
    api_app.create_app(SETTINGS, _clients(dynamodb), warm=True)
    assert len(dynamodb.calls) == 1
    assert "warming the DynamoDB client failed" in caplog.text
