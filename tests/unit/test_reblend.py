"""benchmarks/reblend.py: kept runs blended again with the current code, both answers graded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.competition import CompetitionProfile
from benchmarks.reblend import main

N_TRAIN, N_TEST = 300, 40
# Grades a submission by its mean prediction's distance from 2.0, so the test knows each answer's grade.
GRADER = """
import json, sys
import pandas as pd
print(json.dumps({"score": abs(float(pd.read_csv(sys.argv[2])["y"].mean()) - 2.0)}))
"""


def kept_run(base: Path, keep: Path) -> None:
    """A finished run of 'toy' whose answer was its single best attempt, as quality.py --keep leaves it."""
    data = base / "toy" / "public"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y = rng.normal(size=N_TRAIN)
    pd.DataFrame({"id": range(N_TRAIN), "x": 0.0, "y": y}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": range(N_TRAIN, N_TRAIN + N_TEST), "x": 0.0}).to_csv(data / "test.csv", index=False)
    (base / "grade.py").write_text(GRADER)
    profile = CompetitionProfile(data_dir=str(data), id_column="id", target_columns=["y"],
                                 submission_columns=["id", "y"], task="regression", prediction_format="value",
                                 metric="rmse", n_train=N_TRAIN, n_test=N_TEST)
    run = keep / "toy"
    run.mkdir(parents=True)
    (run / "profile.json").write_text(profile.model_dump_json())
    history = []
    # Two equally good models with independent errors: any blend of them beats either.
    for number, (name, test_value) in enumerate([("a", 1.0), ("b", 3.0)], start=1):
        folder = run / name
        folder.mkdir()
        oof = y + rng.normal(0, 0.5, N_TRAIN)
        np.save(folder / "oof.npy", oof)
        np.save(folder / "test_pred.npy", np.full(N_TEST, test_value))
        pd.DataFrame({"id": range(N_TRAIN, N_TRAIN + N_TEST), "y": test_value}).to_csv(folder / "submission.csv",
                                                                                       index=False)
        history.append({"number": number, "program": name, "origin": "template", "ok": True,
                        "cv_score": float(np.sqrt(np.mean((oof - y) ** 2))), "seconds": 1.0,
                        "workdir": str(folder)})
    summary = {"metric": "rmse", "higher_is_better": False, "best": "a", "blend": {"a": 1.0},
               "cv_score": history[0]["cv_score"], "history": history}
    (run / "summary.json").write_text(json.dumps(summary))
    (keep / "toy.csv").write_bytes((run / "a" / "submission.csv").read_bytes())


def test_a_kept_run_is_blended_again_and_both_answers_are_graded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base, keep = tmp_path / "competitions", tmp_path / "keep"
    kept_run(base, keep)
    monkeypatch.setattr(sys, "argv", ["reblend.py", str(base), str(keep)])
    assert main() == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| toy "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["toy", "rmse", "2", "a"]
    assert float(cells[5]) == pytest.approx(1.0)  # the kept answer: a's test predictions, all 1.0
    assert cells[6] in ("blend of 2", "stack of 2")
    assert float(cells[7]) < float(cells[4])  # the blend's CV beats the single attempt's
    assert float(cells[8]) < 0.9  # its predictions lie between a's 1.0 and b's 3.0


def test_a_folder_without_kept_runs_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["reblend.py", str(tmp_path), str(tmp_path)])
    assert main() == 2
    assert "no kept runs" in capsys.readouterr().err


def test_quality_keep_refuses_a_folder_that_already_holds_a_run_of_the_same_competition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import quality

    base, keep = tmp_path / "competitions", tmp_path / "keep"
    kept_run(base, keep)
    monkeypatch.setattr(sys, "argv", ["quality.py", str(base), "--keep", str(keep)])
    monkeypatch.setattr(quality, "run_one", lambda *args: pytest.fail("a run started over a kept one"))
    assert quality.main() == 2
    assert "already holds runs of toy" in capsys.readouterr().err
    assert (keep / "toy" / "summary.json").is_file()
