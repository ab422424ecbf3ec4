"""Reading what an untrusted program left in its folder: regular files only, never through a link, size-capped.

A program controls every name in its folder. It can plant ``submission.csv -> /root/.aws/credentials``,
a FIFO that blocks the reader forever, or a file of many gigabytes. Everything the product reads or
copies out of an attempt's folder goes through ``read_output``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Caps per file: generous for real predictions (a 10M-row submission is ~200 MB), small for side files.
MAX_OUTPUT_BYTES = 1 << 30
MAX_SIDE_FILE_BYTES = 8 << 20


class OutputError(OSError):
    """A file a program left is missing, not a regular file, reached through a link, or too large."""


def read_output(folder: Path, name: str, *, max_bytes: int = MAX_OUTPUT_BYTES) -> bytes:
    """The bytes of ``folder/name``, refusing links (in ``name`` itself), non-regular files and oversize files."""
    if "/" in name or name in ("", ".", ".."):
        raise OutputError(f"{name!r}: only plain file names inside the attempt's folder are read")
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot open the attempt's folder ({exc.strerror})") from None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            raise OutputError(f"{name} is missing") from None
        except OSError as exc:
            # ELOOP: the name is a symbolic link.
            raise OutputError(f"{name}: not read ({exc.strerror}); links are never followed") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OutputError(f"{name} is not a regular file")
            if info.st_size > max_bytes:
                raise OutputError(f"{name} is {info.st_size} bytes, more than the {max_bytes} bytes allowed")
            chunks, total = [], 0
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
                if total > max_bytes:  # it grew while being read
                    raise OutputError(f"{name} is more than the {max_bytes} bytes allowed")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def copy_output(folder: Path, name: str, destination: Path, *, max_bytes: int = MAX_OUTPUT_BYTES) -> None:
    """Copy ``folder/name`` to ``destination`` under the same rules as ``read_output``."""
    destination.write_bytes(read_output(folder, name, max_bytes=max_bytes))
