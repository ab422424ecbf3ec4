"""Turn the SOURCE a user gives (a folder, a zip, or a Kaggle competition URL) into a local data folder."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from batch_agent.solver.errors import InputError

_URL = re.compile(r"^(https?://|www\.|kaggle\.com/)", re.IGNORECASE)


def is_url(source: str) -> bool:
    return bool(_URL.match(source.strip()))


def resolve_source(
    source: str,
    workdir: Path,
    *,
    download: Callable[[str, Path, Callable[[str], None]], Path] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """The folder holding the competition's files; ``download`` fetches a URL (the CLI passes Kaggle's)."""
    if is_url(source):
        if download is None:
            raise InputError(f"{source}: URLs need a downloader; give a competition folder instead")
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        return download(source, workdir / "data", progress or (lambda _message: None))
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file() and path.suffix.lower() == ".zip":
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        return _extract(path, workdir / "data")
    if path.exists():
        raise InputError(f"{source} is not a folder, a .zip file or a Kaggle competition URL")
    raise InputError(f"{source}: no such folder (give a competition folder or a Kaggle competition URL)")


def _extract(archive: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise InputError(f"{archive} is not a readable zip file") from None
    # A zip that wraps everything in one folder: use that folder.
    entries = [p for p in dest.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest
