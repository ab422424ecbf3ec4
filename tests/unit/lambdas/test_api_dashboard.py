"""The dashboard's page and files as the API serves them: keyless, nothing secret, only the listed files."""

from __future__ import annotations

from types import ModuleType

from fastapi.testclient import TestClient

from batch_agent.service.job_requests import ApiClients
from batch_agent.service.settings import ApiSettings
from lambdas.api.app import create_app
from tests.unit.lambdas.test_api_mangum import _Context, _event, handler_module

__all__ = ["handler_module"]

KEY = "s3cret-dashboard-key"


def _client(**kwargs: str) -> TestClient:
    settings = ApiSettings(jobs_table="t", artifacts_bucket="b", state_machine_arn="arn:aws:states:::x", api_key=KEY)
    clients = ApiClients(dynamodb=None, s3=None, stepfunctions=None, batch=None)
    return TestClient(create_app(settings, clients), **kwargs)


def test_page_and_its_files_load_without_the_key_and_contain_no_secret() -> None:
    client = _client()

    page = client.get("/")
    files = {name: client.get(f"/static/{name}") for name in ("dashboard.js", "dashboard.css", "score_chart.js")}

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<base href="/">' in page.text
    assert {name: r.status_code for name, r in files.items()} == dict.fromkeys(files, 200)
    assert files["dashboard.js"].headers["content-type"].startswith("text/javascript")
    assert files["dashboard.css"].headers["content-type"].startswith("text/css")
    assert all(KEY not in r.text for r in [page, *files.values()])
    assert client.get("/jobs").status_code == 401  # the data still needs the key


def test_static_route_serves_only_the_dashboard_files() -> None:
    client = _client()

    for name in ("index.html", "..%2Fapp.py", "../app.py", "handler.py", "%2E%2E%2F%2E%2E%2Fpyproject.toml"):
        assert client.get(f"/static/{name}").status_code == 404, name


def test_page_behind_the_api_gateway_stage_resolves_its_files_and_calls_under_the_stage(
    handler_module: ModuleType,
) -> None:
    event = _event("apigw_rest_get_jobs")
    event["headers"].pop("x-api-key")
    event["multiValueHeaders"].pop("x-api-key")
    event.update(path="/", resource="/", queryStringParameters=None, multiValueQueryStringParameters=None)
    event["requestContext"]["path"] = "/prod/"

    response = handler_module.handler(event, _Context())

    assert response["statusCode"] == 200
    assert '<base href="/prod/">' in response["body"]
