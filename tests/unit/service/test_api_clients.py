"""The API's AWS clients: every call ends well inside API Gateway's 29 s, and presigned URLs work in any region."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from batch_agent.service import artifacts
from batch_agent.service.job_starter import API_CALL_CONFIG, pipeline_clients

API_GATEWAY_LIMIT_S = 29


def test_the_slowest_api_call_with_its_retries_ends_well_inside_api_gateways_limit() -> None:
    attempts = API_CALL_CONFIG.retries["total_max_attempts"]
    worst = attempts * (API_CALL_CONFIG.connect_timeout + API_CALL_CONFIG.read_timeout)
    # Standard-mode backoff before the one retry is at most 1 s (base 1 s, exponent 0).
    assert worst + 1 <= API_GATEWAY_LIMIT_S / 2


def test_every_client_the_api_builds_uses_those_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    clients = pipeline_clients()
    for client in (clients.dynamodb, clients.s3, clients.stepfunctions, clients.batch):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (1, 3)
        assert config.retries["total_max_attempts"] == 2


@pytest.mark.parametrize("region", ["eu-west-2", "us-east-1", "ap-southeast-4"])
def test_presigned_urls_are_sigv4_on_the_buckets_regional_endpoint(
    monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    url = artifacts.presigned_get(pipeline_clients().s3, "my-bucket", "jobs/1/submission.csv", 300)

    parsed = urlparse(url)
    assert parsed.netloc == f"my-bucket.s3.{region}.amazonaws.com"
    query = parse_qs(parsed.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].split("/")[2] == region
