"""Competition files are fetched from Kaggle once per slug, then served from the S3 cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import artifacts
from batch_agent.service.settings import ContainerSettings
from batch_agent.service.steps.context import ServiceClients
from batch_agent.service.steps.prepare import fetch_competition
from batch_agent.solver.errors import InputError
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

TRAIN = b"id,x,target\n" + b"".join(f"{i},{i * 0.1},{i % 2}\n".encode() for i in range(200))
TEST = b"id,x\n" + b"".join(f"{i},{i * 0.1}\n".encode() for i in range(200, 260))
SAMPLE = b"id,target\n" + b"".join(f"{i},0\n".encode() for i in range(200, 260))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatedStack]:
    with EmulatedStack(StackOptions(work_dir=tmp_path / "stack")) as emulated:
        yield emulated


def _clients(stack: EmulatedStack) -> ServiceClients:
    return ServiceClients(
        dynamodb=stack.client("dynamodb"), s3=stack.client("s3"), table=stack.table, bucket=stack.bucket
    )


def _settings(stack: EmulatedStack, work_dir: Path, local_cache_dir: Path | None = None) -> ContainerSettings:
    return ContainerSettings(
        jobs_table=stack.table,
        artifacts_bucket=stack.bucket,
        work_dir=str(work_dir),
        local_cache_dir=str(local_cache_dir) if local_cache_dir else None,
    )


def test_second_fetch_on_another_machine_uses_the_s3_cache_not_kaggle(
    stack: EmulatedStack, fake_kaggle: FakeKaggle, tmp_path: Path
) -> None:
    fake_kaggle.add(
        FakeCompetition(
            slug="cache-demo",
            title="Cache Demo",
            files={"train.csv": TRAIN, "test.csv": TEST, "sample_submission.csv": SAMPLE},
        )
    )
    clients = _clients(stack)

    first = fetch_competition(clients, _settings(stack, tmp_path / "machine-a"), "cache-demo")
    second = fetch_competition(clients, _settings(stack, tmp_path / "machine-b"), "cache-demo")

    assert len(fake_kaggle.calls("DownloadDataFiles")) == 1
    assert (first / "train.csv").read_bytes() == (second / "train.csv").read_bytes() == TRAIN
    cached = artifacts.list_keys(clients.s3, clients.bucket, artifacts.cache_prefix("cache-demo"))
    assert {k.rsplit("/", 1)[-1] for k in cached} >= {"train.csv", "test.csv", "sample_submission.csv"}


def test_rules_not_accepted_is_an_input_error_and_caches_nothing(
    stack: EmulatedStack, fake_kaggle: FakeKaggle, tmp_path: Path
) -> None:
    fake_kaggle.add(
        FakeCompetition(
            slug="rules-demo",
            files={"train.csv": TRAIN, "test.csv": TEST, "sample_submission.csv": SAMPLE},
            rules_accepted=False,
        )
    )
    clients = _clients(stack)

    with pytest.raises(InputError, match="rules"):
        fetch_competition(clients, _settings(stack, tmp_path / "machine-a"), "rules-demo")
    assert artifacts.list_keys(clients.s3, clients.bucket, artifacts.cache_prefix("rules-demo")) == []


def test_a_cache_filled_by_hand_is_used_offline_and_copied_to_s3(stack: EmulatedStack, tmp_path: Path) -> None:
    by_hand = tmp_path / "competitions" / "offline-demo"
    by_hand.mkdir(parents=True)
    for name, body in (("train.csv", TRAIN), ("test.csv", TEST), ("sample_submission.csv", SAMPLE)):
        (by_hand / name).write_bytes(body)
    clients = _clients(stack)

    folder = fetch_competition(clients, _settings(stack, tmp_path / "work", tmp_path / "competitions"), "offline-demo")

    assert folder == by_hand.resolve()
    cached = artifacts.list_keys(clients.s3, clients.bucket, artifacts.cache_prefix("offline-demo"))
    assert sorted(k.rsplit("/", 1)[-1] for k in cached) == ["sample_submission.csv", "test.csv", "train.csv"]


def test_a_machine_copy_that_outlived_the_bucket_refills_the_s3_cache(stack: EmulatedStack, tmp_path: Path) -> None:
    # A restarted local stack: the Batch work folder still holds the competition, the emulated S3 is empty.
    work = tmp_path / "batch"
    folder = work / "cache" / "restart-demo"
    folder.mkdir(parents=True)
    for name, body in {"train.csv": TRAIN, "test.csv": TEST, "sample_submission.csv": SAMPLE}.items():
        (folder / name).write_bytes(body)
    (work / "cache" / "restart-demo.complete").touch()
    clients = _clients(stack)
    assert artifacts.list_keys(clients.s3, clients.bucket, artifacts.cache_prefix("restart-demo")) == []

    found = fetch_competition(clients, _settings(stack, work), "restart-demo")

    assert found == folder
    cached = artifacts.list_keys(clients.s3, clients.bucket, artifacts.cache_prefix("restart-demo"))
    assert {k.rsplit("/", 1)[-1] for k in cached} == {"train.csv", "test.csv", "sample_submission.csv"}
