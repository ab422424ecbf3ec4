"""What a sandboxed program is told about its runtime: its own training library and OpenMP's wait policy."""

from __future__ import annotations

from pathlib import Path

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.solve import program_environment


def profile(n_train: int) -> CompetitionProfile:
    return CompetitionProfile(data_dir="/data", id_column="id", target_columns=["y"], submission_columns=["id", "y"],
                              task="regression", prediction_format="value", metric="rmse", n_train=n_train,
                              n_test=10)


def test_programs_import_the_training_library_of_the_solver_that_wrote_them() -> None:
    env = program_environment(profile(100))
    assert (Path(env["PYTHONPATH"]) / "batch_agent" / "solver" / "training.py").is_file()
    assert Path(env["PYTHONPATH"]) == Path(__file__).resolve().parents[3]


def test_small_tables_sleep_while_waiting_and_large_ones_spin() -> None:
    assert program_environment(profile(3_500))["OMP_WAIT_POLICY"] == "PASSIVE"
    assert program_environment(profile(200_000))["OMP_WAIT_POLICY"] == "ACTIVE"
