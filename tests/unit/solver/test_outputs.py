"""Reading a program's outputs: links, special files and oversize files are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_agent.solver.outputs import OutputError, copy_output, read_output


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "submission.csv").write_text("id,y\n1,0\n")

    assert read_output(tmp_path, "submission.csv") == b"id,y\n1,0\n"


def test_a_symlink_to_a_secret_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("aws_secret_access_key = abc")
    attempt = tmp_path / "attempt"
    attempt.mkdir()
    (attempt / "submission.csv").symlink_to(secret)

    with pytest.raises(OutputError, match="links are never followed"):
        read_output(attempt, "submission.csv")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "oof.csv")

    with pytest.raises(OutputError, match="not a regular file"):
        read_output(tmp_path, "oof.csv")


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_bytes(b"x" * 2000)

    with pytest.raises(OutputError, match="more than the 1000 bytes"):
        read_output(tmp_path, "metrics.json", max_bytes=1000)


def test_names_with_a_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="plain file names"):
        read_output(tmp_path, "../outside.csv")


def test_copy_refuses_a_link_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "submission.csv").symlink_to(tmp_path / "target")
    destination = tmp_path / "copy.csv"

    with pytest.raises(OutputError):
        copy_output(tmp_path, "submission.csv", destination)
    assert not destination.exists()
