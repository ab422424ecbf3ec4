"""A competition that is not one table, through the whole service: training jobs use the flat tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import artifacts
from batch_agent.solver.competition import CompetitionProfile
from tests.integration.service.stack_helpers import free_port

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "examples" / "shapes"))
import grade  # noqa: E402
import table_shapes  # noqa: E402

SLUG = "customer-churn-transactions"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    assert SLUG in table_shapes.make(out)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, generated: Path) -> Iterator[EmulatedStack]:
    with EmulatedStack(StackOptions(work_dir=tmp_path_factory.mktemp("stack"), memory_limit_mb=2048)) as emulated:
        emulated.seed_competition(SLUG, generated / SLUG / "public")
        yield emulated


def _wait(api: httpx.Client, job_id: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = api.get(f"/status/{job_id}").json()
        if status["status"] in ("SUCCEEDED", "FAILED"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {status}")


def test_related_tables_job_trains_on_the_flat_tables_and_its_submission_grades_well(
    stack: EmulatedStack, generated: Path, tmp_path: Path
) -> None:
    with stack.api_server(free_port()) as base, httpx.Client(base_url=base, timeout=30) as api:
        response = api.post("/run", json={"url": f"https://www.kaggle.com/competitions/{SLUG}",
                                          "time_limit": 60, "max_attempts": 1})
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        status = _wait(api, job_id)
        assert status["status"] == "SUCCEEDED", status["message"]
        download = api.get(f"/result/{job_id}/submission.csv")
        submission = httpx.get(download.headers["location"])
    s3 = stack.client("s3")
    profile = CompetitionProfile.model_validate_json(
        s3.get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/profile.json")["Body"].read())
    assert profile.shape.kind == "multi_table"
    assert any("transactions" in c.name for c in profile.features)  # the aggregates are the features
    flat_keys = artifacts.list_keys(s3, stack.bucket, artifacts.flat_prefix(SLUG))
    assert artifacts.flat_prefix(SLUG) + "train.csv" in flat_keys
    assert not any("/original/" in key for key in flat_keys)  # the cache already holds the downloaded files
    (tmp_path / "submission.csv").write_bytes(submission.content)
    graded = grade.grade(generated, SLUG, tmp_path / "submission.csv")
    assert graded["valid"], graded["error"]
    # The signal is in transactions.csv: the main table alone grades about 0.58 (README).
    assert isinstance(graded["score"], float) and graded["score"] > 0.75
