"""The API's routes against in-process moto: job records, idempotency, errors, downloads, listing, keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from batch_agent.service import job_starter, jobs
from batch_agent.service.job_requests import api_clients
from batch_agent.service.settings import ApiSettings
from lambdas.api.app import create_app
from tests.unit.lambdas.api_backend import BUCKET, STATE_MACHINE_ARN, TABLE, offline_api_backend

URL = "https://www.kaggle.com/competitions/titanic"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSettings]:
    with offline_api_backend(monkeypatch) as api_settings:
        yield api_settings


@pytest.fixture
def client(settings: ApiSettings) -> TestClient:
    return TestClient(create_app(settings, api_clients()))


def _executions() -> list[dict[str, str]]:
    executions: list[dict[str, str]] = boto3.client("stepfunctions").list_executions(stateMachineArn=STATE_MACHINE_ARN)[
        "executions"
    ]
    return executions


def _new_job_stream(job_ids: list[str]) -> list[dict[str, Any]]:
    """The stream records DynamoDB would deliver for these jobs' inserts."""
    ddb = boto3.client("dynamodb")
    return [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "NewImage": ddb.get_item(TableName=TABLE, Key={"job_id": {"S": job_id}})["Item"],
                "SequenceNumber": str(n),
            },
        }
        for n, job_id in enumerate(job_ids)
    ]


def test_post_run_records_the_job_in_the_outbox_and_the_stream_starts_it(
    client: TestClient, settings: ApiSettings
) -> None:
    response = client.post("/run", json={"url": URL, "time_limit": 600, "max_attempts": 3, "compute": "cpu"})

    assert response.status_code == 202
    body = response.json()
    assert body["status_url"] == f"http://testserver/status/{body['job_id']}"
    record = jobs.get_job(boto3.client("dynamodb"), TABLE, body["job_id"])
    assert record is not None
    assert (record.status, record.competition, record.time_limit, record.max_attempts, record.compute) == (
        "QUEUED",
        "titanic",
        600,
        3,
        "cpu",
    )
    assert record.execution_started_at is None and _executions() == []  # the request path starts nothing

    result = job_starter.handle_stream_records(api_clients(), settings, _new_job_stream([body["job_id"]]))

    assert result == {"batchItemFailures": []}
    assert [e["name"] for e in _executions()] == [record.execution]
    assert record.execution.startswith(body["job_id"] + "-")
    started = jobs.require_job(boto3.client("dynamodb"), TABLE, body["job_id"])
    assert started.status == "QUEUED" and started.execution_started_at is not None
    # A redelivered stream record starts nothing twice.
    job_starter.handle_stream_records(api_clients(), settings, _new_job_stream([body["job_id"]]))
    assert len(_executions()) == 1


def test_job_records_expire_after_the_configured_retention(settings: ApiSettings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"job_retention_days": 7}), api_clients()))

    job_id = client.post("/run", json={"url": URL}).json()["job_id"]

    record = jobs.get_job(boto3.client("dynamodb"), TABLE, job_id)
    assert record is not None and record.expires_at is not None
    assert abs(record.expires_at - (time.time() + 7 * 86400)) < 60


def test_sweep_fails_a_job_whose_execution_ended_without_recording_it(
    client: TestClient, settings: ApiSettings
) -> None:
    running = client.post("/run", json={"url": URL}).json()["job_id"]
    aborted = client.post("/run", json={"url": URL}).json()["job_id"]
    job_starter.handle_stream_records(api_clients(), settings, _new_job_stream([running, aborted]))
    record = jobs.require_job(boto3.client("dynamodb"), TABLE, aborted)
    boto3.client("stepfunctions").stop_execution(
        executionArn=job_starter.execution_arn(STATE_MACHINE_ARN, record.execution)
    )

    swept = job_starter.sweep(api_clients(), settings.model_copy(update={"reconcile_after_s": 0}))

    assert swept == {"QUEUED": 1, "FAILED": 1}
    assert client.get(f"/status/{running}").json()["status"] == "QUEUED"
    status = client.get(f"/status/{aborted}").json()
    assert status["status"] == "FAILED"
    assert status["message"] == "the pipeline execution ended ABORTED without recording a result"


def test_sweep_starts_a_job_the_stream_never_started(client: TestClient, settings: ApiSettings) -> None:
    job_id = client.post("/run", json={"url": URL}).json()["job_id"]

    assert job_starter.sweep(api_clients(), settings) == {"QUEUED": 1}  # younger than start_after_s: left
    assert _executions() == []
    job_starter.sweep(api_clients(), settings.model_copy(update={"start_after_s": 0}))

    record = jobs.require_job(boto3.client("dynamodb"), TABLE, job_id)
    assert record.status == "QUEUED" and record.execution_started_at is not None
    assert [e["name"] for e in _executions()] == [record.execution]


def test_status_is_one_read_that_never_calls_step_functions(client: TestClient) -> None:
    job_id = client.post("/run", json={"url": URL}).json()["job_id"]
    boto3.client("stepfunctions").delete_state_machine(stateMachineArn=STATE_MACHINE_ARN)

    assert client.get(f"/status/{job_id}").json()["status"] == "QUEUED"


def test_run_accepts_the_url_as_a_query_parameter(client: TestClient) -> None:
    response = client.post("/run", params={"url": URL})

    assert response.status_code == 202
    status = client.get(f"/status/{response.json()['job_id']}").json()
    assert (status["url"], status["status"], status["stage"]) == (URL, "QUEUED", "queued")


def test_same_idempotency_key_returns_the_same_job_and_one_execution(
    client: TestClient, settings: ApiSettings
) -> None:
    first = client.post("/run", json={"url": URL, "idempotency_key": "nightly-titanic"}).json()
    second = client.post("/run", json={"url": URL, "idempotency_key": "nightly-titanic"}).json()
    other = client.post("/run", json={"url": URL, "idempotency_key": "other"}).json()
    job_starter.handle_stream_records(api_clients(), settings, _new_job_stream([first["job_id"], other["job_id"]]))
    job_starter.sweep(api_clients(), settings.model_copy(update={"start_after_s": 0}))

    assert first["job_id"] == second["job_id"] != other["job_id"]
    assert sorted(e["name"][:32] for e in _executions()) == sorted([first["job_id"], other["job_id"]])


def test_same_idempotency_key_with_another_body_is_409(client: TestClient) -> None:
    first = client.post("/run", json={"url": URL, "idempotency_key": "k-409"})
    other = client.post("/run", json={"url": URL, "idempotency_key": "k-409", "compute": "gpu"})

    assert first.status_code == 202 and other.status_code == 409
    assert "another request body" in other.json()["detail"]


def test_failed_start_leaves_the_job_queued_for_the_next_sweep(client: TestClient, settings: ApiSettings) -> None:
    job_id = client.post("/run", json={"url": URL, "idempotency_key": "k1"}).json()["job_id"]
    broken = settings.model_copy(update={"state_machine_arn": STATE_MACHINE_ARN + "-missing"})

    result = job_starter.handle_stream_records(api_clients(), broken, _new_job_stream([job_id]))

    assert result == {"batchItemFailures": [{"itemIdentifier": "0"}]}  # the stream delivers it again
    record = jobs.require_job(boto3.client("dynamodb"), TABLE, job_id)
    assert (record.status, record.execution_started_at) == ("QUEUED", None)
    job_starter.handle_stream_records(api_clients(), settings, _new_job_stream([job_id]))
    assert [e["name"] for e in _executions()] == [record.execution]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "https://www.kaggle.com/datasets/x/y"}, "not a Kaggle competition URL"),
        ({"url": "ftp://kaggle.com/competitions/titanic"}, "not a URL"),
        ({"url": URL, "time_limit": 10**9}, "above this deployment's limit"),
        ({"url": URL, "max_attempts": 0}, "max_attempts"),
        ({"url": URL, "idempotency_key": "has spaces"}, "idempotency_key"),
        ({}, "url"),
    ],
)
def test_bad_requests_are_422_and_start_nothing(client: TestClient, body: dict[str, object], fragment: str) -> None:
    response = client.post("/run", json=body)

    assert response.status_code == 422
    assert fragment in response.text
    assert _executions() == []


def test_run_without_body_or_url_is_422(client: TestClient) -> None:
    response = client.post("/run")

    assert response.status_code == 422
    assert "give the competition URL" in response.json()["detail"]


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/status/0123").status_code == 404
    assert client.get("/logs/0123").status_code == 404
    assert client.get("/result/0123/submission.csv").status_code == 404


def test_result_is_409_until_succeeded_then_307_to_a_presigned_url(client: TestClient, settings: ApiSettings) -> None:
    job_id = client.post("/run", json={"url": URL}).json()["job_id"]
    assert client.get(f"/result/{job_id}/submission.csv").status_code == 409

    s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
    key = f"jobs/{job_id}/submission.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"PassengerId,Survived\n892,0\n")
    jobs.update_job(ddb, TABLE, job_id, status="SUCCEEDED", stage="done", submission_key=key, cv_score=0.81)
    response = client.get(f"/result/{job_id}/submission.csv", follow_redirects=False)

    assert response.status_code == 307
    location = response.headers["location"]
    assert key in location and "Signature=" in location and "Expires=" in location
    status = client.get(f"/status/{job_id}").json()
    assert status["status"] == "SUCCEEDED" and status["cv_score"] == 0.81
    assert key in status["submission_url"]


def test_finished_job_ignores_late_stage_updates(client: TestClient) -> None:
    job_id = client.post("/run", json={"url": URL}).json()["job_id"]
    ddb = boto3.client("dynamodb")
    jobs.mark_failed(ddb, TABLE, job_id, "prepare job failed: Essential container in task exited (exit code 137)")

    assert jobs.mark_stage(ddb, TABLE, job_id, "train", attempt=1) is False
    jobs.mark_failed(ddb, TABLE, job_id, "States.TaskFailed", keep_message=True)
    status = client.get(f"/status/{job_id}").json()
    assert (status["status"], status["stage"]) == ("FAILED", "failed")
    assert status["message"].endswith("(exit code 137)")


def test_jobs_lists_newest_first_by_status_with_a_cursor(client: TestClient) -> None:
    ids = [client.post("/run", json={"url": URL}).json()["job_id"] for _ in range(5)]
    jobs.mark_failed(boto3.client("dynamodb"), TABLE, ids[0], "boom")

    page1 = client.get("/jobs", params={"limit": 2}).json()
    page2 = client.get("/jobs", params={"limit": 2, "cursor": page1["next_cursor"]}).json()
    queued = client.get("/jobs", params={"status": "QUEUED"}).json()
    failed = client.get("/jobs", params={"status": "FAILED"}).json()

    assert [j["job_id"] for j in page1["jobs"] + page2["jobs"]] == ids[::-1][:4]
    assert [j["job_id"] for j in queued["jobs"]] == ids[1:][::-1]
    assert [j["job_id"] for j in failed["jobs"]] == [ids[0]]
    assert client.get("/jobs", params={"cursor": "not-a-cursor"}).status_code == 422
    assert client.get("/jobs", params={"status": "DONE"}).status_code == 422


def test_api_key_is_required_when_the_deployment_sets_one(settings: ApiSettings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"api_key": "s3cret"}), api_clients()))

    assert client.get("/health").status_code == 200
    assert client.post("/run", json={"url": URL}).status_code == 401
    assert client.post("/run", json={"url": URL}, headers={"x-api-key": "wrong"}).status_code == 401
    assert client.get("/jobs").status_code == 401
    assert client.post("/run", json={"url": URL}, headers={"x-api-key": "s3cret"}).status_code == 202


def test_openapi_describes_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {
        "/run",
        "/status/{job_id}",
        "/result/{job_id}/submission.csv",
        "/logs/{job_id}",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/attempts/{number}",
        "/health",
    } <= set(paths)
    assert "delete" in paths["/jobs/{job_id}"]
    assert client.get("/docs").status_code == 200
