"""GET /status of an ended job is answered from the reading process's cache; changes show within its time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from batch_agent.service import job_requests, jobs
from batch_agent.service.job_requests import FinishedJobCache, RunRequest, api_clients
from batch_agent.service.jobs import JobNotFoundError
from batch_agent.service.settings import ApiSettings
from lambdas.api.app import create_app
from tests.unit.lambdas.api_backend import offline_api_backend

URL = "https://www.kaggle.com/competitions/titanic"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSettings]:
    with offline_api_backend(monkeypatch) as api_settings:
        yield api_settings


def _job(settings: ApiSettings, status: str) -> str:
    clients = api_clients()
    record = job_requests.submit_job(clients, settings, RunRequest(url=URL))
    jobs.update_job(clients.dynamodb, settings.jobs_table, record.job_id, status=status, stage="done", message="m")
    return record.job_id


def test_an_ended_jobs_status_is_reused_until_the_cache_time_runs_out(settings: ApiSettings) -> None:
    clients, clock = api_clients(), _Clock()
    cache = FinishedJobCache(10, clock=clock)
    job_id = _job(settings, "CANCELLED")
    assert job_requests.job_status(clients, settings, job_id, cache).compute_seconds == 0.0
    # The accounting of a step that was still running when the job was cancelled arrives later.
    jobs.add_to_job(clients.dynamodb, settings.jobs_table, job_id, compute_seconds=12.5)

    clock.now += 9
    assert job_requests.job_status(clients, settings, job_id, cache).compute_seconds == 0.0  # no read: cached
    clock.now += 2
    assert job_requests.job_status(clients, settings, job_id, cache).compute_seconds == 12.5


def test_an_unfinished_job_is_read_on_every_poll(settings: ApiSettings) -> None:
    clients, cache = api_clients(), FinishedJobCache(60, clock=_Clock())
    job_id = _job(settings, "RUNNING")
    assert job_requests.job_status(clients, settings, job_id, cache).stage == "done"
    jobs.mark_stage(clients.dynamodb, settings.jobs_table, job_id, "train")
    assert job_requests.job_status(clients, settings, job_id, cache).stage == "train"
    jobs.mark_failed(clients.dynamodb, settings.jobs_table, job_id, "boom")
    assert job_requests.job_status(clients, settings, job_id, cache).status == "FAILED"


def test_a_purge_drops_the_cached_record_at_once(settings: ApiSettings) -> None:
    clients, cache = api_clients(), FinishedJobCache(60, clock=_Clock())
    job_id = _job(settings, "FAILED")
    assert job_requests.job_status(clients, settings, job_id, cache).status == "FAILED"
    job_requests.purge_job(clients, settings, job_id, cache)
    with pytest.raises(JobNotFoundError):
        job_requests.job_status(clients, settings, job_id, cache)


def test_a_zero_cache_time_reads_every_poll(settings: ApiSettings) -> None:
    clients, cache = api_clients(), FinishedJobCache(0, clock=_Clock())
    job_id = _job(settings, "SUCCEEDED")
    job_requests.job_status(clients, settings, job_id, cache)
    jobs.add_to_job(clients.dynamodb, settings.jobs_table, job_id, compute_seconds=3.0)
    assert job_requests.job_status(clients, settings, job_id, cache).compute_seconds == 3.0


def test_the_cache_keeps_at_most_its_number_of_records() -> None:
    clock = _Clock()
    cache = FinishedJobCache(60, max_entries=2, clock=clock)
    records = [
        jobs.JobRecord(
            job_id=f"j{i}", url=URL, competition="titanic", created_at="t", updated_at="t", time_limit=60,
            max_attempts=1, compute="auto", status="SUCCEEDED",
        )
        for i in range(3)
    ]
    for record in records:
        cache.put(record)
    assert cache.get("j0") is None and cache.get("j1") is not None and cache.get("j2") is not None


def test_the_api_forgets_a_purged_job_it_had_served(settings: ApiSettings) -> None:
    client = TestClient(create_app(settings.model_copy(update={"finished_job_cache_s": 3600}), api_clients()))
    job_id = _job(settings, "SUCCEEDED")
    assert client.get(f"/status/{job_id}").json()["status"] == "SUCCEEDED"
    assert client.delete(f"/jobs/{job_id}", params={"purge": "true"}).json()["purged"] is True
    assert client.get(f"/status/{job_id}").status_code == 404
