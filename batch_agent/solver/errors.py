"""Errors the product reports to a person, each mapped to an exit code or HTTP status in one place."""

from __future__ import annotations


class SolverError(Exception):
    """Base class: a failure with a message meant for the user, never a traceback."""

    exit_code = 1


class InputError(SolverError):
    """The competition or the options given cannot be used as they are (CLI exit 2, HTTP 422)."""

    exit_code = 2


class AttemptsExhaustedError(SolverError):
    """Every training attempt failed; the message carries the last error (CLI exit 1)."""

    exit_code = 1
