"""Every job ends, and ends the way AWS would end it: starts that time out, reused names and keys, stuck
jobs, cancels. The real ASL on the emulated stack; the starter and the sweep are the service's own code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import job_requests, job_starter, jobs
from batch_agent.service.job_requests import RunRequest
from batch_agent.service.job_starter import PipelineClients
from tests.integration.service.stack_helpers import (
    URL,
    api_settings,
    execution_of,
    executions,
    wait_for_execution,
)

# ---------------------------------------------------------------- a stack where nothing runs by itself


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedStack]:
    # No Batch capacity (jobs wait RUNNABLE, as GPU jobs do when capacity is short) and no starter:
    # the tests call the starter's functions themselves.
    options = StackOptions(work_dir=tmp_path_factory.mktemp("idle"), max_batch_jobs=0, run_starter=False)
    with EmulatedStack(options) as emulated:
        yield emulated


class _StartThenTimeOut:
    """A Step Functions client whose StartExecution reaches AWS, then loses the reply."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def start_execution(self, **kwargs: Any) -> Any:
        self._client.start_execution(**kwargs)
        raise ReadTimeoutError(endpoint_url="https://states.us-east-1.amazonaws.com")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_start_that_times_out_after_starting_leaves_the_job_queued_and_the_retry_finds_it(
    idle_stack: EmulatedStack,
) -> None:
    clients, settings = idle_stack.pipeline_clients(), api_settings(idle_stack)
    record = job_requests.submit_job(clients, settings, RunRequest(url=URL, idempotency_key="timeout-after-start"))
    flaky = PipelineClients(clients.dynamodb, clients.s3, _StartThenTimeOut(clients.stepfunctions), clients.batch)

    assert job_starter.start_execution(flaky, settings, record) is False
    after_timeout = jobs.require_job(clients.dynamodb, settings.jobs_table, record.job_id)
    assert (after_timeout.status, after_timeout.execution_started_at) == ("QUEUED", None)
    assert execution_of(idle_stack, record)["status"] == "RUNNING"

    # The sweep's retry: the same name, so AWS answers ExecutionAlreadyExists and nothing starts twice.
    assert job_starter.start_execution(clients, settings, after_timeout) is True
    started = jobs.require_job(clients.dynamodb, settings.jobs_table, record.job_id)
    assert started.status == "QUEUED" and started.execution_started_at is not None
    assert [e["name"] for e in executions(idle_stack)].count(record.execution) == 1


def test_a_job_id_whose_old_execution_is_closed_gets_a_new_execution_not_queued_forever(
    idle_stack: EmulatedStack,
) -> None:
    clients, settings = idle_stack.pipeline_clients(), api_settings(idle_stack)
    request = RunRequest(url=URL, idempotency_key="nightly-reused")
    old = job_requests.submit_job(clients, settings, request)
    assert job_starter.start_execution(clients, settings, old)
    job_starter.stop_job_execution(clients, settings, old, "an old job")
    # Its record expires (TTL) long before the 90 days an execution name stays reserved.
    clients.dynamodb.delete_item(TableName=settings.jobs_table, Key={"job_id": {"S": old.job_id}})
    # Today's old executions were named by the job id alone: that name is taken too.
    clients.stepfunctions.start_execution(stateMachineArn=settings.state_machine_arn, name=old.job_id, input="{}")

    new = job_requests.submit_job(clients, settings, request)

    assert new.job_id == old.job_id and new.execution != old.execution != old.job_id
    assert job_starter.start_execution(clients, settings, new) is True
    assert execution_of(idle_stack, new)["status"] == "RUNNING"


def test_a_job_stuck_runnable_past_its_time_limit_is_failed_with_the_reason_by_the_sweep(
    idle_stack: EmulatedStack,
) -> None:
    clients = idle_stack.pipeline_clients()
    settings = api_settings(idle_stack, deadline_grace_s=2)
    record = job_requests.submit_job(clients, settings, RunRequest(url=URL, time_limit=10))
    assert job_starter.start_execution(clients, settings, record)
    deadline = time.monotonic() + 30
    batch = idle_stack.client("batch")
    queue = idle_stack.name("cpu")
    while not (
        waiting := [
            j
            for j in batch.list_jobs(jobQueue=queue, jobStatus="RUNNABLE")["jobSummaryList"]
            if j["jobName"] == f"prepare-{record.job_id}"
        ]
    ):
        assert time.monotonic() < deadline, "the prepare job was never submitted"
        time.sleep(0.2)

    assert job_starter.sweep(clients, settings).get("FAILED", 0) == 0  # within its time limit: left alone
    time.sleep(max(0.0, 12.5 - jobs.seconds_since(record.created_at)))
    job_starter.sweep(clients, settings)

    ended = jobs.require_job(clients.dynamodb, settings.jobs_table, record.job_id)
    assert ended.status == "FAILED"
    assert ended.message == (
        "the job did not end within its time limit of 10 s plus 2 s; "
        "it was QUEUED in stage queued (waiting for compute capacity)"
    )
    wait_for_execution(idle_stack, record, "ABORTED")
    (prepare,) = batch.describe_jobs(jobs=[waiting[0]["jobId"]])["jobs"]
    assert prepare["status"] == "FAILED"  # terminated while RUNNABLE: it will never take capacity


def test_a_key_reused_with_another_body_is_refused(idle_stack: EmulatedStack) -> None:
    clients, settings = idle_stack.pipeline_clients(), api_settings(idle_stack)
    first = job_requests.submit_job(clients, settings, RunRequest(url=URL, time_limit=60, idempotency_key="k-body"))
    again = job_requests.submit_job(clients, settings, RunRequest(url=URL, time_limit=60, idempotency_key="k-body"))

    with pytest.raises(job_requests.IdempotencyConflictError, match="another request body"):
        job_requests.submit_job(clients, settings, RunRequest(url=URL, time_limit=120, idempotency_key="k-body"))
    assert first.job_id == again.job_id


