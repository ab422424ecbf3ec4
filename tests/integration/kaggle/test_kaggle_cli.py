"""`kaggle-solver leaderboard` and the Kaggle lines of `kaggle-solver run` against the fake Kaggle server."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_agent.cli import main
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

BOARD = [(f"team-{k}", 0.5 + k / 1000) for k in range(120)]  # lower is better: best first


@pytest.fixture
def board(fake_kaggle: FakeKaggle) -> FakeKaggle:
    fake_kaggle.add(FakeCompetition(slug="cli-comp", files={"train.csv": b"id\n1\n"}, leaderboard=BOARD))
    return fake_kaggle


def test_leaderboard_command_summarises_and_ranks_a_score(
    board: FakeKaggle, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["leaderboard", "https://www.kaggle.com/competitions/cli-comp/leaderboard", "--score", "0.5035"])
    out = capsys.readouterr().out
    assert code == 0
    assert "cli-comp: 120 teams on the public leaderboard (lower is better)" in out
    # teams 0..3 score below 0.5035, so it would be 5th of 121: inside the top 10 -> gold
    assert "would rank 5 of 121" in out and "gold medal" in out


def test_leaderboard_command_accepts_a_bare_slug_and_an_explicit_direction(
    board: FakeKaggle, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["leaderboard", "cli-comp", "--higher-is-better", "--score", "0.7"]) == 0
    assert "would rank 1 of 121" in capsys.readouterr().out


def test_leaderboard_command_exits_2_with_kaggle_message(board: FakeKaggle, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "missing-comp"]) == 2
    assert "'missing-comp' was not found on Kaggle" in capsys.readouterr().err


def test_run_with_submit_and_a_folder_exits_2_before_solving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path), "--submit", "--quiet"]) == 2
    assert "--submit needs a Kaggle competition URL" in capsys.readouterr().err


@pytest.mark.slow
def test_run_from_url_downloads_solves_submits_and_ranks(
    fake_kaggle: FakeKaggle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path("examples/breast-cancer-diagnosis")
    files = {p.name: p.read_bytes() for p in example.iterdir() if p.name != "description.md"}
    # higher is better (roc_auc): 200 teams from 0.999 down to 0.800
    board = [(f"team-{k}", 0.999 - k * 0.001) for k in range(200)]
    fake_kaggle.add(
        FakeCompetition(
            slug="cancer",
            files=files,
            leaderboard=board,
            scorer=lambda _b: 0.9875,
            evaluation_metric="Area Under the ROC Curve",
        )
    )
    output = tmp_path / "submission.csv"
    code = main(
        [
            "run",
            "https://www.kaggle.com/competitions/cancer",
            "--submit",
            "--quiet",
            "--time-limit",
            "120",
            "--output",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert output.exists()
    assert "leaderboard (CV): score" in out
    assert "submitted: public score 0.98750" in out
    assert "leaderboard (public): score 0.9875 would rank 13 of 201" in out
    assert list(fake_kaggle.uploads.values()) == [output.read_bytes()]


@pytest.mark.slow
def test_run_with_kaggle_gpu_compute_trains_every_attempt_in_a_kernel(
    fake_kaggle: FakeKaggle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path("examples/breast-cancer-diagnosis")
    files = {p.name: p.read_bytes() for p in example.iterdir() if p.name != "description.md"}
    fake_kaggle.add(FakeCompetition(slug="cancer-gpu", files=files, evaluation_metric="Area Under the ROC Curve"))
    output = tmp_path / "submission.csv"
    code = main(["run", "https://www.kaggle.com/competitions/cancer-gpu", "--compute", "kaggle-gpu", "--quiet",
                 "--time-limit", "60", "--output", str(output), "--workdir", str(tmp_path / "work")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert output.exists()
    pushed = fake_kaggle.calls("SaveKernel")
    assert pushed, "no attempt was pushed as a kernel"
    attempts = sorted((tmp_path / "work").glob("attempt-*"))
    assert len(pushed) == len(attempts)


def test_kaggle_gpu_compute_with_a_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "examples/breast-cancer-diagnosis", "--compute", "kaggle-gpu", "--quiet",
                 "--workdir", str(tmp_path / "w"), "--output", str(tmp_path / "s.csv")])
    assert code == 2
    assert "--compute kaggle-gpu needs a Kaggle competition URL" in capsys.readouterr().err


def test_kaggle_gpu_compute_refuses_a_competition_that_is_not_one_table(
    fake_kaggle: FakeKaggle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Customers plus their transactions: a kernel would read these files, not the flat tables.
    files = {
        "train.csv": b"customer_id,age,churned\n1,30,0\n2,40,1\n3,50,0\n4,60,1\n",
        "test.csv": b"customer_id,age\n5,35\n6,45\n",
        "sample_submission.csv": b"customer_id,churned\n5,0.5\n6,0.5\n",
        "transactions.csv": b"customer_id,amount\n1,10\n1,20\n2,5\n5,7\n6,1\n6,3\n",
    }
    fake_kaggle.add(FakeCompetition(slug="churn-tables", files=files, evaluation_metric="Area Under the ROC Curve"))
    code = main(["run", "https://www.kaggle.com/competitions/churn-tables", "--compute", "kaggle-gpu", "--quiet",
                 "--time-limit", "60", "--output", str(tmp_path / "s.csv"), "--workdir", str(tmp_path / "work")])
    assert code == 2
    assert "--compute kaggle-gpu runs one-table competitions only; this one is multi_table" in capsys.readouterr().err
    assert not fake_kaggle.calls("SaveKernel")


def test_run_json_summary_carries_the_leaderboard_estimate_and_the_submissions_public_rank(
    board: FakeKaggle, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from batch_agent.solver import solve as solve_module
    from batch_agent.solver.solve import SolveResult

    board.competitions["cli-comp"].scorer = lambda _body: 0.5105
    board.competitions["cli-comp"].polls_before_scored = 1
    output = tmp_path / "submission.csv"

    def solved(source: str, out: Path, *args: object, **kwargs: object) -> SolveResult:
        # Solving is tested elsewhere; this test is about what the summary reports after it.
        out.write_text("id,y\n1,0.5\n")
        return SolveResult(
            competition="cli-comp", task="regression", target="y", metric="rmse", higher_is_better=False,
            cv_score=0.5035, seconds=1.0, attempts=1, output=str(out), best="ridge", author="template",
            workdir=str(tmp_path),
        )

    monkeypatch.setattr(solve_module, "solve", solved)
    code = main(["run", "https://www.kaggle.com/competitions/cli-comp", "--submit", "--json", "--quiet",
                 "--output", str(output), "--submit-wait", "30"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 0.5035: teams 0..3 are better (lower is better) -> 5th, top 10 of 120 -> gold
    assert summary["leaderboard"] == {
        "rank": 5, "n_teams": 120, "percentile": pytest.approx(96.67), "above_median": True, "medal": "gold",
        "score": 0.5035,
    }
    submission = summary["submission"]
    assert (submission["status"], submission["public_score"]) == ("complete", pytest.approx(0.5105))
    assert submission["ref"] == next(iter(board.submissions))
    assert submission["rank"]["rank"] == 12 and submission["rank"]["medal"] == "silver"


def test_run_help_says_the_kaggle_steps_come_after_the_time_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "come after it" in text and "--submit-wait" in text
