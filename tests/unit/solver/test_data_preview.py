"""The data preview: what it says about values, target, train/test shift and the machine, within its bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_agent.solver import data_preview as preview_module
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.data_preview import bounded, data_preview, environment_summary, gpu_summary


def _profile(folder: Path, task: str = "binary", features: list[str] | None = None) -> CompetitionProfile:
    names = features or ["age", "city"]
    return CompetitionProfile(
        data_dir=str(folder),
        id_column="id",
        target_columns=["target"],
        submission_columns=["target"],
        task=task,  # type: ignore[arg-type]
        prediction_format="value" if task == "regression" else "probability",
        metric="rmse" if task == "regression" else "roc_auc",
        n_train=10,
        n_test=5,
        features=[
            ColumnInfo(name=n, kind="numeric", dtype="float64", n_unique=5, missing_fraction=0.0) for n in names
        ],
    )


def _write(folder: Path, train: list[str], test: list[str]) -> None:
    (folder / "train.csv").write_text("\n".join(train) + "\n")
    (folder / "test.csv").write_text("\n".join(test) + "\n")


def test_preview_gives_class_balance_ranges_categories_and_sample_rows(tmp_path: Path) -> None:
    train = ["id,age,city,target"] + [f"{i},{20 + i},{'AB'[i % 4 == 0]},{int(i % 4 == 0)}" for i in range(40)]
    test = ["id,age,city"] + [f"{100 + i},{20 + i},{'AB'[i % 2]}" for i in range(40)]
    _write(tmp_path, train, test)
    text = data_preview(_profile(tmp_path))

    assert "Target target class balance: 0 75.0%, 1 25.0%" in text
    assert "- age: 20 .. 59, median 39.5, 40 distinct" in text
    assert "- city: A 75%, B 25%" in text
    assert "First rows of train.csv:\nid | age | city | target\n0 | 20 | B | 1" in text
    assert "Ids in both train and test: 0" in text
    assert "No feature's test distribution differs markedly" in text
    assert "Leakage checklist" in text


def test_preview_names_shifted_columns_unseen_categories_and_shared_ids(tmp_path: Path) -> None:
    train = ["id,age,city,target"] + [f"{i},{i % 10},{'AB'[i % 2]},{i * 1.5}" for i in range(100)]
    test = ["id,age,city"] + [f"{i + 90},{i % 10 + 8},{'ABC'[i % 3]}" for i in range(60)]
    _write(tmp_path, train, test)
    text = data_preview(_profile(tmp_path, task="regression"))

    assert "Target target (regression): min 0, p25 37.12" in text
    assert "Ids in both train and test: 10" in text
    assert "age (mean 4.5 in train, 12.5 in test)" in text
    assert "city (33% of test values never seen in train)" in text


def test_preview_respects_its_size_bound_on_a_wide_table(tmp_path: Path) -> None:
    columns = [f"feature_{i:03d}" for i in range(300)]
    header = "id," + ",".join(columns) + ",target"
    train = [header] + [f"{r}," + ",".join(f"v{(r * i) % 7}" for i in range(300)) + f",{r % 2}" for r in range(30)]
    test = ["id," + ",".join(columns)] + [f"{100 + r}," + ",".join("v1" for _ in range(300)) for r in range(10)]
    _write(tmp_path, train, test)
    profile = _profile(tmp_path, features=columns)
    text = data_preview(profile, max_chars=2_000)

    assert len(text) <= 2_000
    assert text.endswith("[preview truncated]")
    # The most valuable sections come first, so a cut keeps them.
    assert text.startswith("Target target class balance") and "usable CPU cores" in text
    assert len(data_preview(profile)) <= 4_000


def test_unreadable_files_leave_the_machine_and_the_checklist(tmp_path: Path) -> None:
    text = data_preview(_profile(tmp_path))  # no CSVs at all
    assert "usable CPU cores" in text and "Leakage checklist" in text and "Target" not in text


def test_environment_lists_installed_libraries_with_versions_and_the_missing_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(preview_module, "installed_libraries", lambda: {"lightgbm": "4.7.0", "pandas": "3.1.1"})
    monkeypatch.setattr(preview_module, "usable_cores", lambda: 7)
    monkeypatch.setattr(preview_module, "gpu_summary", lambda: "NVIDIA H200, 143771 MiB")
    text = environment_summary()
    assert text.startswith("Hardware: 7 usable CPU cores;")
    assert "GPU: NVIDIA H200, 143771 MiB" in text
    assert "Installed: lightgbm 4.7.0, pandas 3.1.1" in text
    assert "Not installed (do not import): xgboost, catboost, scikit-learn, torch" in text


def test_the_real_environment_reports_this_machines_libraries() -> None:
    installed = preview_module.installed_libraries()
    assert "pandas" in installed and "scikit-learn" in installed
    assert preview_module.usable_cores() >= 1


def test_gpu_summary_is_none_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preview_module.shutil, "which", lambda _name: None)
    assert gpu_summary() is None


def test_gpu_summary_reads_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771 MiB'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(preview_module.shutil, "which", lambda _name: str(fake))
    assert gpu_summary() == "NVIDIA H200, 143771 MiB"


def test_a_failing_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    monkeypatch.setattr(preview_module.shutil, "which", lambda _name: str(fake))
    assert gpu_summary() is None


def test_bounded_cuts_at_a_line_and_says_so() -> None:
    assert bounded("short", 100) == "short"
    cut = bounded("line one\nline two\nline three\nline four", 30)
    assert cut == "line one\n[preview truncated]" and len(cut) <= 30
