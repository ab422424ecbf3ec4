"""`kaggle-solver run` end to end on the bundled example, and its answer to each kind of bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from batch_agent import cli
from batch_agent.solver.plan import Program
from batch_agent.solver.templates import TemplateAuthor

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "breast-cancer-diagnosis"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batch_agent.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=240)


def copy_example(dest: Path) -> Path:
    dest.mkdir()
    for name in ("train.csv", "test.csv", "sample_submission.csv", "description.md"):
        (dest / name).write_bytes((EXAMPLE / name).read_bytes())
    return dest


def test_run_on_the_bundled_example_writes_a_valid_submission_and_json_summary(tmp_path: Path) -> None:
    output = tmp_path / "submission.csv"
    proc = run_cli("run", str(EXAMPLE), "--output", str(output), "--time-limit", "25",
                   "--workdir", str(tmp_path / "work"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert summary["task"] == "binary" and summary["metric"] == "roc_auc" and summary["target"] == "malignant"
    assert 0.9 < summary["cv_score"] <= 1.0
    assert summary["seconds"] <= 25 * 1.1
    assert summary["attempts"] >= 1
    assert "attempt 1" in proc.stderr and "CV" in proc.stderr
    report = Path(summary["report"])
    assert report == tmp_path / "work" / "report.html"
    assert "scoreChartSvg" in report.read_text() and "malignant" in report.read_text()
    # Which isolation the programs got, for the run and each attempt (the probe decides; never empty).
    assert summary["isolation"].split(":")[0] in ("isolated", "partial", "none")
    assert [h["isolation"] for h in summary["history"]] == [summary["isolation"]] * len(summary["history"])
    assert f"isolation {summary['isolation']}" in proc.stderr
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    with (EXAMPLE / "test.csv").open() as handle:
        test_ids = [row["id"] for row in csv.DictReader(handle)]
    assert [r["id"] for r in rows] == test_ids
    assert all(0.0 <= float(r["malignant"]) <= 1.0 for r in rows)


def test_missing_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path / "nope"), "--time-limit", "10", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".kaggle-solver").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "train.csv").write_text(""), "train.csv is empty"),
        (lambda d: (d / "test.csv").unlink(), "cannot find test.csv"),
        (lambda d: (d / "sample_submission.csv").write_text("key,malignant\n1,0.5\n"), "no id column"),
        (lambda d: (d / "sample_submission.csv").write_text("id,malignant\n1,0.5\n"), "does not match the ids"),
        (lambda d: (d / "description.md").write_text("# Cells\nPredict it."), "pass --metric, one of"),
        (lambda d: (d / "train.csv").write_bytes(b"\xff\xfe\x00bad\x00"), "train.csv"),
    ],
    ids=["empty-csv", "missing-file", "no-id-column", "sample-mismatch", "unknown-metric", "unreadable-csv"],
)
def test_bad_input_exits_2_without_traceback(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = copy_example(tmp_path / "comp")
    damage(folder)
    proc = run_cli("run", str(folder), "--time-limit", "10", "--json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "failed"
    assert not (tmp_path / "submission.csv").exists()


def test_unwritable_output_folder_exits_2(tmp_path: Path) -> None:
    proc = run_cli("run", str(EXAMPLE), "--output", str(tmp_path / "no" / "dir" / "s.csv"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_every_attempt_failing_exits_1_with_the_last_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    crash = Program(name="crash", code="raise SystemExit('model exploded: out of ideas')")
    monkeypatch.setattr(TemplateAuthor, "draft", lambda self, profile, plan: [crash, crash.model_copy()])
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", str(EXAMPLE), "--time-limit", "20", "--workdir", str(tmp_path / "w"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "every attempt failed" in err
    assert "model exploded: out of ideas" in err
    assert not (tmp_path / "submission.csv").exists()
