"""Kaggle kernels as a compute backend: push, poll, output, through the official client and the fake server.

The fake runs the pushed script itself (competition files under input/<slug>),
so these tests also prove the generated kernel script runs the program.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_agent.kaggle.client import KaggleOptions
from batch_agent.kaggle.errors import KaggleQuotaError, KaggleRulesNotAcceptedError
from batch_agent.kaggle.kernel_attempts import run_attempt_on_kaggle
from batch_agent.kaggle.kernels import run_kernel
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import Program
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

SAMPLE = b"id,target\n10,0\n11,0\n12,0\n"
TRAIN = b"id,x,target\n1,2,1\n2,3,2\n"

PROGRAM = """
import argparse, json
from pathlib import Path

import batch_agent.kaggle.leaderboard as lb

parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
rows = Path(args.data, "sample_submission.csv").read_text().splitlines()
Path("submission.csv").write_text("\\n".join([rows[0]] + [r.replace(",0", ",1") for r in rows[1:]]) + "\\n")
train_ids = [r.split(",")[0] for r in Path(args.data, "train.csv").read_text().splitlines()[1:]]
Path("oof.csv").write_text("id,target\\n" + "".join(f"{i},1\\n" for i in train_ids))
Path("metrics.json").write_text(json.dumps({"cv_score": 0.75, "budget": args.time_budget}))
print("bundle at", lb.__file__)
"""

FAILING_PROGRAM = 'raise SystemExit("no features found")\n'


@pytest.fixture
def options(tmp_path: Path) -> KaggleOptions:
    return KaggleOptions(config_dir=tmp_path / "kaggle-config", backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture
def competition(fake_kaggle: FakeKaggle) -> FakeCompetition:
    return fake_kaggle.add(
        FakeCompetition(slug="gpu-comp", files={"sample_submission.csv": SAMPLE, "train.csv": TRAIN})
    )


def _program(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "program.py"
    path.write_text(code)
    return path


def test_kernel_runs_program_on_gpu_and_brings_back_submission_and_log(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    result = run_kernel(
        "gpu-comp",
        _program(tmp_path, PROGRAM),
        tmp_path / "out",
        timeout=600,
        time_budget=300,
        poll_interval=0.01,
        options=options,
    )
    assert result.status == "complete", result.failure_message
    assert result.submission == tmp_path / "out" / "submission.csv"
    assert result.submission.read_text() == "id,target\n10,1\n11,1\n12,1\n"
    assert '"cv_score": 0.75' in (tmp_path / "out" / "metrics.json").read_text()
    assert result.log is not None
    log = result.log.read_text()
    assert "kaggle-solver: data in" in log
    assert "scratch/batch_agent/kaggle/leaderboard.py" in log  # the program imported the bundled package
    push = fake_kaggle.calls("SaveKernel")[0].body
    assert push["competitionDataSources"] == ["gpu-comp"]
    assert push["enableGpu"] is True and push["machineShape"] == "NvidiaTeslaT4"
    assert push["isPrivate"] is True and push["kernelType"] == "script" and push["language"] == "python"
    assert push["sessionTimeoutSeconds"] == 600
    assert push["slug"].startswith("solver-user/kaggle-solver-gpu-comp-")
    assert result.ref == push["slug"]
    # queued, running, then complete: the status was polled until the session ended
    assert len(fake_kaggle.calls("GetKernelSessionStatus")) == 3


def test_failed_kernel_reports_error_with_log(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    result = run_kernel(
        "gpu-comp",
        _program(tmp_path, FAILING_PROGRAM),
        tmp_path / "out",
        timeout=600,
        poll_interval=0.01,
        options=options,
    )
    assert result.status == "error"
    assert result.failure_message == "script exited with 1"
    assert result.submission is None
    assert result.log is not None and "no features found" in result.log.read_text()


def test_gpu_quota_error_is_reported_as_quota(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.kernel_error = "Maximum weekly GPU quota of 30.00 hours reached."
    with pytest.raises(KaggleQuotaError, match="GPU quota"):
        run_kernel("gpu-comp", _program(tmp_path, PROGRAM), tmp_path / "out", timeout=60, options=options)


def test_kernel_without_accepted_rules_names_rules_url(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    competition.rules_accepted = False
    with pytest.raises(KaggleRulesNotAcceptedError, match="gpu-comp/rules"):
        run_kernel("gpu-comp", _program(tmp_path, PROGRAM), tmp_path / "out", timeout=60, options=options)


def test_kernel_still_running_at_timeout_returns_timeout(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.run_kernels = False
    fake_kaggle.kernel_statuses = ["RUNNING"]
    result = run_kernel(
        "gpu-comp",
        _program(tmp_path, PROGRAM),
        tmp_path / "out",
        # The clock starts before the push, so the timeout leaves room for a
        # slow push on a loaded machine and still several polls after it.
        timeout=3.0,
        poll_interval=0.05,
        options=options,
    )
    assert result.status == "timeout"
    assert result.failure_message is not None and "did not finish" in result.failure_message
    assert len(fake_kaggle.calls("GetKernelSessionStatus")) >= 2


def test_token_credentials_look_up_the_account_for_the_kernel_slug(
    fake_kaggle: FakeKaggle,
    competition: FakeCompetition,
    options: KaggleOptions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "solver-token")
    result = run_kernel(
        "gpu-comp",
        _program(tmp_path, PROGRAM),
        tmp_path / "out",
        timeout=600,
        accelerator="none",
        poll_interval=0.01,
        options=options,
    )
    assert result.status == "complete"
    assert len(fake_kaggle.calls("IntrospectToken")) == 1
    push = fake_kaggle.calls("SaveKernel")[0].body
    assert push["slug"].startswith("solver-user/")
    assert push["enableGpu"] is False and "machineShape" not in push


def _profile(data_dir: Path) -> CompetitionProfile:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "sample_submission.csv").write_bytes(SAMPLE)
    (data_dir / "test.csv").write_text("id,x\n10,1\n11,2\n12,3\n")
    (data_dir / "train.csv").write_bytes(TRAIN)
    return CompetitionProfile(
        data_dir=str(data_dir),
        id_column="id",
        target_columns=["target"],
        submission_columns=["target"],
        task="regression",
        prediction_format="value",
        metric="rmse",
        n_train=2,
        n_test=3,
    )


def test_attempt_on_kaggle_is_ok_with_cv_score_when_submission_is_valid(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    profile = _profile(tmp_path / "data")
    result = run_attempt_on_kaggle(
        profile,
        Program(name="tiny", code=PROGRAM),
        tmp_path / "attempt-01",
        slug="gpu-comp",
        time_budget=100,
        poll_interval=0.01,
        options=options,
    )
    assert result.ok, result.reason
    # The product's RMSE of oof.csv (predictions 1, 1 for labels 1, 2), not the program's claim.
    assert result.cv_score == pytest.approx(0.5**0.5)
    assert result.claimed_cv_score == 0.75 and result.claim_disagrees
    assert "kaggle-solver: data in" in result.log_tail
    # the program was told 80% of the attempt's budget, like the local sandbox does
    assert '"budget": 80.0' in (tmp_path / "attempt-01" / "metrics.json").read_text()


def test_attempt_on_kaggle_failure_is_a_result_with_the_kernel_message(
    fake_kaggle: FakeKaggle, competition: FakeCompetition, options: KaggleOptions, tmp_path: Path
) -> None:
    result = run_attempt_on_kaggle(
        _profile(tmp_path / "data"),
        Program(name="broken", code=FAILING_PROGRAM),
        tmp_path / "attempt-01",
        slug="gpu-comp",
        time_budget=100,
        poll_interval=0.01,
        options=options,
    )
    assert not result.ok
    assert result.reason is not None and "error: script exited with 1" in result.reason
    assert "no features found" in result.log_tail
