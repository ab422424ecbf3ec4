"""Cancel, attempts and purge over HTTP on the whole emulated stack, its starter thread included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import jobs, names
from tests.integration.service.stack_helpers import (
    EXAMPLE,
    SLUG,
    URL,
    executions,
    free_port,
    wait_for_execution,
)

AUTHORS = "tests.integration.service.service_authors"
# ---------------------------------------------------------------- the whole service, starter included


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedStack]:
    options = StackOptions(work_dir=tmp_path_factory.mktemp("live"), memory_limit_mb=2048, sweep_interval_s=1.0)
    with EmulatedStack(options) as emulated:
        emulated.seed_competition(SLUG, EXAMPLE)
        yield emulated


@pytest.fixture(scope="module")
def api(stack: EmulatedStack) -> Iterator[httpx.Client]:
    with stack.api_server(free_port()) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def _wait_for(api: httpx.Client, job_id: str, done: Any, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = api.get(f"/status/{job_id}").json()
        if done(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never got there in {timeout_s} s: {status}")


def test_reused_key_with_another_body_is_409_over_http(api: httpx.Client) -> None:
    body = {"url": URL, "time_limit": 60, "max_attempts": 1, "idempotency_key": "http-body"}
    first = api.post("/run", json=body)
    changed = api.post("/run", json={**body, "max_attempts": 2})

    assert first.status_code == 202
    assert changed.status_code == 409 and "another request body" in changed.json()["detail"]
    api.delete(f"/jobs/{first.json()['job_id']}")


def test_cancel_during_training_ends_cancelled_with_nothing_left_running(
    stack: EmulatedStack, api: httpx.Client
) -> None:
    for step in (names.PLAN_FUNCTION, names.GENERATE_FUNCTION, names.REPAIR_FUNCTION):
        stack.set_step_environment(step, {names.ENV_AUTHOR: f"{AUTHORS}:SlowAuthor"})
    try:
        body = {"url": URL, "time_limit": 900, "max_attempts": 1, "idempotency_key": "cancel-me"}
        job_id = api.post("/run", json=body).json()["job_id"]
        _wait_for(api, job_id, lambda s: s["stage"] == "train", timeout_s=120)
    finally:
        for step in (names.PLAN_FUNCTION, names.GENERATE_FUNCTION, names.REPAIR_FUNCTION):
            stack.set_step_environment(step, {names.ENV_AUTHOR: "auto"})
    deadline = time.monotonic() + 30
    while stack.running_batch_processes() == 0:  # the training process is up
        assert time.monotonic() < deadline, "the training job never started"
        time.sleep(0.2)

    cancelled = api.delete(f"/jobs/{job_id}")

    assert cancelled.status_code == 200, cancelled.text
    view = cancelled.json()
    assert view["status"] == "CANCELLED" and view["cancelled_by"].startswith("client ")
    assert view["cancelled_at"] and "cancelled by" in view["message"]
    deadline = time.monotonic() + 15
    while stack.running_batch_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.running_batch_processes() == 0
    record = jobs.require_job(stack.client("dynamodb"), stack.table, job_id)
    wait_for_execution(stack, record, "ABORTED")
    # The original request again: the same cancelled job, and nothing restarts it.
    retried = api.post("/run", json=body)
    assert retried.status_code == 202 and retried.json() == {**retried.json(), "job_id": job_id, "status": "CANCELLED"}
    time.sleep(2.5)  # more than two sweeps
    assert api.get(f"/status/{job_id}").json()["status"] == "CANCELLED"
    assert [e["name"] for e in executions(stack) if e["name"].startswith(job_id)] == [record.execution]
    assert api.delete(f"/jobs/{job_id}").json()["status"] == "CANCELLED"  # cancelling twice is harmless


def test_attempt_route_hands_out_the_program_log_and_submission_then_purge_removes_the_job(
    stack: EmulatedStack, api: httpx.Client
) -> None:
    job_id = api.post("/run", json={"url": URL, "time_limit": 60, "max_attempts": 1}).json()["job_id"]
    done = _wait_for(api, job_id, lambda s: s["status"] in ("SUCCEEDED", "FAILED"), timeout_s=240)
    assert done["status"] == "SUCCEEDED", done["message"]
    assert api.delete(f"/jobs/{job_id}").status_code == 409  # finished: nothing to cancel

    attempt = api.get(f"/jobs/{job_id}/attempts/1").json()

    assert attempt["number"] == 1 and attempt["ok"] is True and attempt["cv_score"] == done["cv_score"]
    assert "submission.csv" in attempt["code"] and attempt["log_tail"]
    submission = httpx.get(attempt["submission_url"])
    assert submission.status_code == 200 and submission.text.splitlines()[0] == (
        (EXAMPLE / "sample_submission.csv").read_text().splitlines()[0]
    )
    assert api.get(f"/jobs/{job_id}/attempts/2").status_code == 404

    purged = api.delete(f"/jobs/{job_id}", params={"purge": "true"})

    assert purged.status_code == 200 and purged.json()["purged"] is True and purged.json()["deleted_objects"] > 0
    assert api.get(f"/status/{job_id}").status_code == 404
    s3 = stack.client("s3")
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"jobs/{job_id}/").get("KeyCount", 0) == 0


def test_purging_an_unfinished_job_is_refused(api: httpx.Client) -> None:
    job_id = api.post("/run", json={"url": URL, "time_limit": 60, "max_attempts": 1}).json()["job_id"]

    refused = api.delete(f"/jobs/{job_id}", params={"purge": "true"})

    assert refused.status_code == 409 and "cancel it" in refused.json()["detail"]
    assert api.delete(f"/jobs/{job_id}").json()["status"] == "CANCELLED"
