"""Single pipeline steps against the emulated stack: the finish step's rank on the synced leaderboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import artifacts, jobs
from batch_agent.service.jobs import AttemptSummary, JobRecord
from batch_agent.service.leaderboard_sync import sync_leaderboards
from batch_agent.service.settings import StepSettings
from batch_agent.service.steps.context import ServiceClients
from batch_agent.service.steps.finish import failure_message, finish_step
from batch_agent.solver.competition import CompetitionProfile
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[ServiceClients]:
    with EmulatedStack(StackOptions(work_dir=tmp_path / "stack")) as stack:
        yield ServiceClients(
            dynamodb=stack.client("dynamodb"), s3=stack.client("s3"), table=stack.table, bucket=stack.bucket
        )


def _job_with_attempts(clients: ServiceClients, slug: str, attempts: list[AttemptSummary]) -> str:
    now = jobs.now_iso()
    record = JobRecord(
        job_id="j1",
        url=f"https://www.kaggle.com/competitions/{slug}",
        competition=slug,
        status="RUNNING",
        created_at=now,
        updated_at=now,
        time_limit=600,
        max_attempts=3,
        attempts=attempts,
    )
    jobs.create_job(clients.dynamodb, clients.table, record)
    profile = CompetitionProfile(
        data_dir="/data",
        id_column="id",
        target_columns=["y"],
        submission_columns=["id", "y"],
        task="binary",
        prediction_format="probability",
        metric="roc_auc",
        n_train=100,
        n_test=10,
    )
    artifacts.put_json(clients.s3, clients.bucket, artifacts.job_key("j1", "profile.json"), profile.model_dump())
    for a in attempts:
        if a.ok:
            key = artifacts.attempt_key("j1", a.number, "submission.csv")
            clients.s3.put_object(Bucket=clients.bucket, Key=key, Body=f"id,y\n1,{a.number}\n".encode())
    return "j1"


def test_finish_publishes_the_best_attempt_and_ranks_it_on_the_stored_leaderboard(
    clients: ServiceClients, fake_kaggle: FakeKaggle
) -> None:
    board = [(f"team{i}", 0.99 - i * 0.01) for i in range(20)]  # best first, higher is better
    fake_kaggle.add(FakeCompetition(slug="rank-demo", files={"train.csv": b"id\n"}, leaderboard=board))
    assert sync_leaderboards(clients.s3, clients.bucket, ["rank-demo"]).outcome == {"rank-demo": "updated"}
    job_id = _job_with_attempts(
        clients,
        "rank-demo",
        [
            AttemptSummary(number=1, program="a", origin="template", ok=True, cv_score=0.905, seconds=3.0),
            AttemptSummary(number=2, program="b", origin="template", ok=False, reason="boom", seconds=1.5),
            AttemptSummary(number=3, program="c", origin="template", ok=True, cv_score=0.955, seconds=4.0),
        ],
    )
    settings = StepSettings(jobs_table=clients.table, artifacts_bucket=clients.bucket)

    assert finish_step(clients, settings, {"job_id": job_id}) == {"job_id": job_id, "status": "SUCCEEDED"}

    record = jobs.require_job(clients.dynamodb, clients.table, job_id)
    assert (record.status, record.best_attempt, record.cv_score) == ("SUCCEEDED", 3, 0.955)
    body = clients.s3.get_object(Bucket=clients.bucket, Key="jobs/j1/submission.csv")["Body"].read()
    assert body == b"id,y\n1,3\n"
    assert record.leaderboard is not None
    assert (record.leaderboard["rank"], record.leaderboard["n_teams"]) == (5, 20)
    assert "would rank 5 of 21" in record.message
    assert record.training_seconds == 8.5
    assert record.higher_is_better is True


def test_finish_without_a_passing_attempt_fails_the_job_with_the_last_error(clients: ServiceClients) -> None:
    job_id = _job_with_attempts(
        clients, "x", [AttemptSummary(number=1, program="a", origin="template", ok=False, reason="OOM killed")]
    )
    settings = StepSettings(jobs_table=clients.table, artifacts_bucket=clients.bucket)

    assert finish_step(clients, settings, {"job_id": job_id})["status"] == "FAILED"
    record = jobs.require_job(clients.dynamodb, clients.table, job_id)
    assert record.status == "FAILED" and record.message.endswith("last error: OOM killed")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {
                "Error": "States.TaskFailed",
                "Cause": '{"JobName": "train-j1-2", "StatusReason": "Essential container'
                ' in task exited", "Container": {"ExitCode": 137}}',
            },
            "train job failed: Essential container in task exited (exit code 137)",
        ),
        (
            {"Error": "KeyError", "Cause": '{"errorMessage": "\'profile\'", "errorType": "KeyError"}'},
            "KeyError: 'profile'",
        ),
        ({"Error": "States.Timeout", "Cause": ""}, "States.Timeout"),
        (None, "the pipeline failed"),
    ],
)
def test_failure_message_reads_step_functions_errors(error: object, expected: str) -> None:
    assert failure_message(error) == expected
