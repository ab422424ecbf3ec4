"""Competition metadata and the data download: resumable, extracted, cached by slug."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, Field

from batch_agent.kaggle.client import (
    CHUNK_BYTES,
    TRANSIENT_ERRORS,
    Connection,
    KaggleOptions,
    backoff_seconds,
    call,
    connection,
)
from batch_agent.kaggle.errors import (
    KaggleAuthError,
    KaggleError,
    KaggleNotFoundError,
    KaggleRateLimitError,
    KaggleRulesNotAcceptedError,
    KaggleUnavailableError,
)
from batch_agent.kaggle.urls import competition_url
from batch_agent.solver.errors import SolverError

logger = logging.getLogger(__name__)

class DataFile(BaseModel):
    name: str
    size: int


class CompetitionMetadata(BaseModel):
    slug: str
    title: str
    url: str
    evaluation_metric: str | None = None
    deadline: datetime | None = None
    description: str | None = None
    evaluation: str | None = None
    category: str | None = None
    team_count: int = 0
    user_has_entered: bool = False
    files: list[DataFile] = Field(default_factory=list)




# --------------------------------------------------------------------------- metadata


def _list_files(conn: Connection, slug: str) -> list[DataFile]:
    from kagglesdk.competitions.types.competition_api_service import ApiListDataFilesRequest

    files: list[DataFile] = []
    token: str | None = None
    for _page in range(1000):
        request = ApiListDataFilesRequest()
        request.competition_name = slug
        request.page_size = 200
        request.page_token = token or ""
        response = call(
            conn.options,
            partial(conn.competitions.list_data_files, request),
            slug=slug,
            what="list data files",
        )
        files.extend(DataFile(name=f.name or f.ref, size=int(f.total_bytes or 0)) for f in response.files or [])
        token = response.next_page_token or None
        if not token:
            break
    return files


def _pages(conn: Connection, slug: str) -> dict[str, str]:
    """The competition's overview pages (description, evaluation, ...) when the API serves them."""
    from kagglesdk.competitions.types.competition_api_service import ApiListCompetitionPagesRequest

    request = ApiListCompetitionPagesRequest()
    request.competition_name = slug
    try:
        response = call(
            conn.options,
            lambda: conn.competitions.list_competition_pages(request),
            slug=slug,
            what="read the competition pages",
        )
    except (KaggleAuthError, KaggleRateLimitError):
        raise
    except KaggleError as error:
        # Pages are a bonus: the title and metric come from GetCompetition.
        logger.info("Kaggle: no competition pages for %s: %s", slug, error)
        return {}
    return {p.name.lower(): p.content for p in response.pages or [] if p.name and p.content}


def _search_competition(conn: Connection, slug: str) -> Any | None:
    """The competition as the public list (``kaggle competitions list -s``) shows it, or None."""
    from kagglesdk.competitions.types.competition_api_service import ApiListCompetitionsRequest
    from kagglesdk.competitions.types.competition_enums import (
        CompetitionListTab,
        CompetitionSortBy,
        HostSegment,
    )

    request = ApiListCompetitionsRequest()
    request.group = CompetitionListTab.COMPETITION_LIST_TAB_EVERYTHING
    request.category = HostSegment.HOST_SEGMENT_UNSPECIFIED
    request.sort_by = CompetitionSortBy.COMPETITION_SORT_BY_BEST
    request.search = slug
    request.page = 1
    request.page_size = 50
    response = call(
        conn.options,
        lambda: conn.competitions.list_competitions(request),
        slug=slug,
        what="search the competitions",
    )
    for competition in response.competitions or []:
        if (competition.ref or "").rstrip("/").split("/")[-1].lower() == slug:
            return competition
    return None


def _competition(conn: Connection, slug: str) -> Any:
    """GetCompetition, or the public competition list when that call is refused or finds nothing."""
    from kagglesdk.competitions.types.competition_api_service import ApiGetCompetitionRequest

    request = ApiGetCompetitionRequest()
    request.competition_name = slug
    try:
        return call(
            conn.options,
            lambda: conn.competitions.get_competition(request),
            slug=slug,
            what="read the competition",
        )
    except (KaggleRulesNotAcceptedError, KaggleNotFoundError) as error:
        # A 403 here may mean the method is closed to non-hosts rather than
        # unaccepted rules: the download's own answer settles that.
        found = _search_competition(conn, slug)
        if found is None:
            raise
        logger.info("Kaggle: GetCompetition refused for %s (%s); using the competition list", slug, error)
        return found


def _metadata(conn: Connection, slug: str) -> CompetitionMetadata:
    competition = _competition(conn, slug)
    pages = _pages(conn, slug)
    description = pages.get("description") or pages.get("overview") or competition.description or None
    evaluation = pages.get("evaluation") or None
    try:
        files = _list_files(conn, slug)
    except (KaggleRulesNotAcceptedError, KaggleNotFoundError) as error:
        # The file list is informative only; the download reports access problems itself.
        logger.info("Kaggle: no file list for %s: %s", slug, error)
        files = []
    return CompetitionMetadata(
        slug=slug,
        title=competition.title or slug,
        url=competition_url(slug),
        evaluation_metric=competition.evaluation_metric or None,
        deadline=competition.deadline,
        description=description,
        evaluation=evaluation,
        category=competition.category or None,
        team_count=int(competition.team_count or 0),
        user_has_entered=bool(competition.user_has_entered),
        files=files,
    )


def competition_metadata(slug: str, *, options: KaggleOptions | None = None) -> CompetitionMetadata:
    """Title, evaluation metric, deadline, description and file list of a competition."""
    with connection(options) as conn:
        return _metadata(conn, slug)


def description_markdown(meta: CompetitionMetadata) -> str:
    """description.md for a downloaded competition, with an Evaluation section the profiler reads."""
    parts = [f"# {meta.title}", "", meta.url, ""]
    if meta.description:
        parts += [meta.description.strip(), ""]
    parts += ["## Evaluation", ""]
    if meta.evaluation_metric:
        parts += [f"Submissions are evaluated on {meta.evaluation_metric}.", ""]
    if meta.evaluation:
        parts += [meta.evaluation.strip(), ""]
    if meta.deadline:
        parts += [f"Deadline: {meta.deadline.isoformat()}", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- download


class _IncompleteDownloadError(OSError):
    """The body ended before Content-Length bytes arrived (a dropped connection)."""


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def stream_to(
    start: Callable[[], requests.Response],
    part: Path,
    options: KaggleOptions,
    *,
    what: str,
    slug: str,
    progress: Callable[[str], None] | None,
    kind: str = "competition",
) -> None:
    """Stream a Kaggle file download into ``part``, resuming with HTTP Range after a dropped connection.

    ``start`` issues the official client's RPC (which redirects to the file); it is
    called again after each failure so an expired signed URL is replaced. The
    sidecar ``part.json`` records the object identity so a later run only appends
    to bytes that belong to the same object.
    """
    marker = part.with_name(part.name + ".json")
    for attempt in range(1, options.max_attempts + 1):
        response: requests.Response | None = None
        try:
            response = call(options, start, slug=slug, what=what, kind=kind)
            size_header = response.headers.get("Content-Length")
            size = int(size_header) if size_header else None
            identity = response.headers.get("ETag") or response.headers.get("Last-Modified")
            have = 0
            if part.exists() and marker.exists() and identity and size:
                saved = json.loads(marker.read_text())
                if saved == {"identity": identity, "size": size}:
                    have = part.stat().st_size
            mode = "wb"
            if 0 < have < (size or 0) and response.headers.get("Accept-Ranges") == "bytes":
                response.close()
                headers = {"Range": f"bytes={have}-", "If-Range": identity or ""}
                response = requests.get(response.url, headers=headers, stream=True, timeout=options.request_timeout_s)
                if response.status_code == 206:
                    mode = "ab"
                    logger.info("Kaggle: resuming %s at %d bytes", part.name, have)
                elif response.status_code == 200:
                    have = 0
                else:
                    response.raise_for_status()
            else:
                have = 0
            marker.write_text(json.dumps({"identity": identity, "size": size}))
            next_report = have
            with part.open(mode) as out:
                for chunk in response.iter_content(CHUNK_BYTES):
                    out.write(chunk)
                    have += len(chunk)
                    if progress is not None and have >= next_report:
                        total = f" / {_human(size)}" if size else ""
                        progress(f"downloading {part.stem}: {_human(have)}{total}")
                        next_report = have + max(CHUNK_BYTES, (size or 0) // 10)
            if size is not None and have != size:
                raise _IncompleteDownloadError(f"got {have} of {size} bytes")
            marker.unlink(missing_ok=True)
            return
        except (*TRANSIENT_ERRORS, _IncompleteDownloadError) as error:
            if attempt == options.max_attempts:
                raise KaggleUnavailableError(
                    f"Downloading '{slug}' kept failing ({error}); the partial file {part} is kept "
                    "and the next run resumes it."
                ) from error
            delay = backoff_seconds(options, attempt)
            logger.info("Kaggle: download of %s interrupted (%s); retry %d in %.1fs", slug, error, attempt, delay)
            time.sleep(delay)
        finally:
            if response is not None:
                response.close()


def _safe_extract(archive: Path, into: Path) -> list[Path]:
    """Extract a zip without letting member names escape ``into``; nested zips are extracted too."""
    out: list[Path] = []
    root = into.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (into / member.filename).resolve()
            if not target.is_relative_to(root):
                raise KaggleError(f"refusing to extract {member.filename!r} from {archive.name}: path escapes")
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
            out.append(target)
    for path in list(out):
        if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            out.extend(_safe_extract(path, path.parent))
            path.unlink()
            out.remove(path)
    return out


def _data_root(folder: Path) -> Path:
    """The folder that holds train.csv (Kaggle archives sometimes wrap files in one directory)."""
    if (folder / "train.csv").exists() or (folder / "sample_submission.csv").exists():
        return folder
    for name in ("train.csv", "sample_submission.csv"):
        hits = sorted(p.parent for p in folder.glob(f"*/{name}"))
        if len(hits) == 1:
            return hits[0]
    return folder


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _cache_filled(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() and not p.name.startswith(".") for p in folder.rglob("*"))


class NotEnoughDiskError(SolverError):
    """The competition's files would not fit in the space left where they are downloaded."""


# Besides the files: the zip being downloaded, and room for the programs' outputs.
DISK_HEADROOM_BYTES = 2 * 1024**3


def check_disk_space(meta: CompetitionMetadata, dest: Path) -> None:
    """Fail before downloading when the zip and its extracted files would not fit under dest.

    Kaggle reports each file's size; the download holds the zip (at most that size)
    and the extracted files at once.
    """
    total = sum(f.size for f in meta.files)
    needed = 2 * total + DISK_HEADROOM_BYTES
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise NotEnoughDiskError(
            f"{meta.slug} has {_human(total)} of files; downloading and extracting them needs about "
            f"{_human(needed)} but only {_human(free)} is free in {dest}"
        )


def download_competition(
    slug: str,
    dest: Path,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    options: KaggleOptions | None = None,
) -> Path:
    """Download every file of a competition into ``dest`` (zips extracted) and return the data folder.

    A filled ``cache_dir/<slug>/`` (from an earlier run, or filled by hand for
    offline use) is linked or copied instead of downloading. When the files carry
    no description.md, one is written from the competition's metadata so the
    profiler finds the evaluation metric.
    """
    options = options or KaggleOptions()
    dest.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / slug if cache_dir is not None else None
    if cached is not None and _cache_filled(cached):
        if progress is not None:
            progress(f"using cached files of {slug} from {cached}")
        shutil.copytree(cached, dest, copy_function=_link_or_copy, dirs_exist_ok=True)
        return _data_root(dest)

    from kagglesdk.competitions.types.competition_api_service import ApiDownloadDataFilesRequest

    with connection(options) as conn:
        meta = _metadata(conn, slug)
        check_disk_space(meta, dest)
        if progress is not None:
            total = sum(f.size for f in meta.files)
            progress(f"{meta.title}: {len(meta.files)} files, {_human(total)}")
        staging = dest / ".kaggle-download"
        staging.mkdir(exist_ok=True)
        part = staging / f"{slug}.zip.part"
        request = ApiDownloadDataFilesRequest()
        request.competition_name = slug
        stream_to(
            lambda: conn.competitions.download_data_files(request),
            part,
            options,
            what="download the competition files",
            slug=slug,
            progress=progress,
        )
    archive = part.with_name(f"{slug}.zip")
    os.replace(part, archive)
    extracted = staging / "files"
    shutil.rmtree(extracted, ignore_errors=True)
    extracted.mkdir()
    if zipfile.is_zipfile(archive):
        _safe_extract(archive, extracted)
    else:
        # A competition with a single file is served as that file, not as a zip.
        names = [f.name for f in meta.files]
        os.replace(archive, extracted / (names[0] if len(names) == 1 else f"{slug}.data"))
    # Only complete, extracted files are moved into place, so an interrupted run
    # never leaves a truncated train.csv where a good one was.
    for item in extracted.iterdir():
        target = dest / item.name
        if target.is_dir() and item.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    shutil.rmtree(staging, ignore_errors=True)
    root = _data_root(dest)
    if not (root / "description.md").exists():
        (root / "description.md").write_text(description_markdown(meta), encoding="utf-8")
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        shutil.copytree(dest, cached, copy_function=_link_or_copy, dirs_exist_ok=True)
    if progress is not None:
        progress(f"downloaded {slug} into {root}")
    return root


