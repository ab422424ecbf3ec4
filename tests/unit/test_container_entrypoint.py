"""`python -m batch_agent`: bad arguments exit 2 before any AWS call or settings are read."""

from __future__ import annotations

import pytest

from batch_agent.__main__ import main


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--job-id", "j1", "--bucket", "b"],  # no attempt number
        ["train", "--job-id", "j1", "--bucket", "b", "--attempt", "0"],
        ["deploy", "--job-id", "j1", "--bucket", "b"],
        ["prepare", "--bucket", "b"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_SOLVER_JOBS_TABLE", raising=False)

    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
