"""Everything the product does with Kaggle, through the official ``kaggle`` client.

URL → slug, competition metadata, data download, the public leaderboard,
submissions and Kaggle kernels as a compute backend. Every request goes through
the official client's RPC layer (``kagglesdk``); credentials are found the way
the official client finds them (``KAGGLE_API_TOKEN``, ``KAGGLE_USERNAME`` /
``KAGGLE_KEY``, or ``kaggle.json`` under ``KAGGLE_CONFIG_DIR``); this module never
reads them itself. Failures become ``KaggleError`` subclasses (InputError, CLI
exit 2) with a message a person can act on; 429, 5xx and dropped connections
are retried with bounded exponential backoff.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import logging
import math
import os
import re
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter

from batch_agent.kaggle.leaderboard import (
    LeaderboardEntry,
    LeaderboardSnapshot,
    RankEstimate,
    infer_higher_is_better,
    rank_score,
)
from batch_agent.solver.errors import InputError

logger = logging.getLogger(__name__)

T = TypeVar("T")
_CHUNK = 1 << 16
_LEADERBOARD_PAGE = 100
_PACKAGE_DIR = Path(__file__).resolve().parents[1]

_KAGGLE_HOSTS = {"kaggle.com", "www.kaggle.com"}
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$|^[a-z0-9]$", re.IGNORECASE)


def competition_slug(url: str) -> str:
    """The competition slug of a Kaggle competition URL.

    Accepts ``https://www.kaggle.com/competitions/<slug>`` and ``/c/<slug>``, with
    or without ``www``, http or https, trailing paths (``/data``, ``/leaderboard``,
    ``/overview/evaluation``), query strings and fragments. A bare slug is not a
    URL: callers treat non-URL arguments as folders.
    """
    text = url.strip()
    if "://" not in text and text.lower().startswith(("kaggle.com/", "www.kaggle.com/")):
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"{url!r} is not a URL; give https://www.kaggle.com/competitions/<slug>")
    host = parts.hostname or ""
    if host.lower() not in _KAGGLE_HOSTS:
        raise InputError(f"{url!r} is not a Kaggle URL; give https://www.kaggle.com/competitions/<slug>")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2 or segments[0].lower() not in ("competitions", "c"):
        raise InputError(f"{url!r} is not a Kaggle competition URL; give https://www.kaggle.com/competitions/<slug>")
    slug = segments[1]
    if not _SLUG_RE.match(slug):
        raise InputError(f"{url!r} does not name a competition: {slug!r} is not a competition slug")
    return slug.lower()


# --------------------------------------------------------------------------- errors


class KaggleError(InputError):
    """Kaggle refused or could not serve a request; the message says what the person can do."""


class KaggleRulesNotAcceptedError(KaggleError):
    def __init__(self, slug: str, detail: str = "") -> None:
        self.rules_url = rules_url(slug)
        reason = f" (Kaggle said: {detail})" if detail else ""
        super().__init__(
            f"Kaggle refused access to competition '{slug}'{reason}. Accept the competition's rules at "
            f"{self.rules_url} while logged in as the account whose API credentials this run uses "
            "(the Kaggle API cannot accept rules), then run again."
        )


class KaggleNotFoundError(KaggleError):
    """The competition (or kernel) does not exist or is not visible to this account."""


class KaggleAuthError(KaggleError):
    """No Kaggle credentials, or Kaggle rejected them."""


class KaggleQuotaError(KaggleError):
    """A Kaggle quota or limit (daily submissions, GPU hours, concurrent sessions) is used up."""


class KaggleRateLimitError(KaggleError):
    """Kaggle kept answering HTTP 429 after every retry."""


class KaggleUnavailableError(KaggleError):
    """Kaggle could not be reached (connection errors or 5xx after every retry)."""


def rules_url(slug: str) -> str:
    return f"https://www.kaggle.com/competitions/{slug}/rules"


def competition_url(slug: str) -> str:
    return f"https://www.kaggle.com/competitions/{slug}"


_NO_CREDENTIALS = (
    "No Kaggle credentials found. Create an API token at https://www.kaggle.com/settings/api and either "
    "set KAGGLE_API_TOKEN, or set KAGGLE_USERNAME and KAGGLE_KEY, or save kaggle.json in ~/.kaggle "
    "(or in the folder KAGGLE_CONFIG_DIR names)."
)
_QUOTA_WORDS = ("quota", "limit", "exceeded", "maximum", "too many")


# --------------------------------------------------------------------------- settings and models


class KaggleOptions(BaseModel):
    """How to reach Kaggle: where kaggle.json lives and how hard to retry."""

    model_config = ConfigDict(frozen=True)

    # Folder holding kaggle.json; None lets the official client choose
    # (KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle).
    config_dir: Path | None = None
    max_attempts: int = Field(default=5, ge=1)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=30.0, ge=0)
    # Per connect/read timeout; the official client sets none, so a stalled socket would hang forever.
    request_timeout_s: float = Field(default=60.0, gt=0)


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


class SubmissionResult(BaseModel):
    ref: int
    status: Literal["complete", "error", "pending"]
    public_score: float | None = None
    message: str = ""
    error: str | None = None
    rank: RankEstimate | None = None


class KernelResult(BaseModel):
    ref: str
    url: str
    status: Literal["complete", "error", "cancelled", "timeout"]
    failure_message: str | None = None
    submission: Path | None = None
    log: Path | None = None
    files: list[Path] = Field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- client and retries


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, *args, **kwargs)


class _Connection:
    """An authenticated official Kaggle client plus the account name when it is known."""

    def __init__(self, client: Any, username: str | None, options: KaggleOptions) -> None:
        self.client = client
        self.username = username
        self.options = options

    @property
    def competitions(self) -> Any:
        return self.client.competitions.competition_api_client

    @property
    def kernels(self) -> Any:
        return self.client.kernels.kernels_api_client

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def _import_kaggle_api() -> Any:
    # Importing the kaggle package authenticates at import time and prints help
    # to stdout when no credentials exist; keep that out of the product's output.
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        from kaggle.api.kaggle_api_extended import KaggleApi
    if captured.getvalue().strip():
        logger.debug("kaggle import said: %s", captured.getvalue().strip())
    return KaggleApi


def _connect(options: KaggleOptions) -> _Connection:
    """Credentials exactly as the official client finds them, or KaggleAuthError."""
    from kagglesdk import KaggleClient
    from kagglesdk.kaggle_env import get_access_token_from_env, get_env

    kaggle_api_class = _import_kaggle_api()
    api = kaggle_api_class()
    if options.config_dir is not None:
        api.config_dir = str(options.config_dir)
        api.config = str(options.config_dir / "kaggle.json")
    with contextlib.redirect_stdout(io.StringIO()):
        values: dict[str, str] = api.read_config_environment(api.read_config_file(quiet=True))
    token, _source = get_access_token_from_env()
    token = token or values.get("api_token") or None
    username = values.get("username") or None
    key = values.get("key") or None
    if not token and not (username and key):
        raise KaggleAuthError(_NO_CREDENTIALS)
    client = KaggleClient(
        env=get_env(),
        username=username if not token else None,
        password=key if not token else None,
        api_token=token,
        user_agent="kaggle-solver",
    )
    client.__enter__()
    # The official client sends without a timeout; mount one so a stalled socket fails and is retried.
    session = client.http_client()._session
    adapter = _TimeoutAdapter(options.request_timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return _Connection(client, username, options)


@contextlib.contextmanager
def _connection(options: KaggleOptions | None) -> Iterator[_Connection]:
    conn = _connect(options or KaggleOptions())
    try:
        yield conn
    finally:
        conn.close()


def _kaggle_message(error: requests.HTTPError) -> str:
    response = error.response
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in ("message", "error", "detail"):
                if isinstance(body.get(key), str) and body[key]:
                    return str(body[key])
    text = str(error.args[0]) if error.args else str(error)
    return text.strip()


def _status(error: requests.HTTPError) -> int | None:
    return error.response.status_code if error.response is not None else None


def _classify(error: requests.HTTPError, *, slug: str, what: str, kind: str) -> KaggleError:
    """One place that turns an HTTP failure into a message a person can act on."""
    status = _status(error)
    detail = _kaggle_message(error)
    if status == 401:
        return KaggleAuthError(
            f"Kaggle rejected the API credentials while trying to {what} (HTTP 401: {detail}). "
            "Create a new token at https://www.kaggle.com/settings/api."
        )
    if status == 404:
        if kind == "kernel":
            return KaggleNotFoundError(f"Kaggle kernel '{slug}' was not found while trying to {what}: {detail}")
        return KaggleNotFoundError(
            f"Competition '{slug}' was not found on Kaggle ({competition_url(slug)}); "
            "check the URL, and that the competition is visible to this account."
        )
    if any(word in detail.lower() for word in _QUOTA_WORDS) and status in (400, 403, 409, 429):
        return KaggleQuotaError(f"Kaggle limit reached while trying to {what}: {detail}")
    if status == 403:
        if kind == "competition":
            return KaggleRulesNotAcceptedError(slug, detail)
        return KaggleAuthError(f"Kaggle refused to {what} (HTTP 403: {detail}).")
    if status == 429:
        return KaggleRateLimitError(f"Kaggle rate-limited every attempt to {what} (HTTP 429: {detail}).")
    return KaggleError(f"Kaggle failed to {what} (HTTP {status}: {detail}).")


def _retry_after(error: requests.HTTPError) -> float | None:
    if error.response is None:
        return None
    value = error.response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
)


def _backoff(options: KaggleOptions, attempt: int) -> float:
    return float(min(options.max_backoff_s, options.backoff_s * (2 ** (attempt - 1))))


def _call(options: KaggleOptions, fn: Callable[[], T], *, slug: str, what: str, kind: str = "competition") -> T:
    """Run one Kaggle request, retrying 429, 5xx and dropped connections with bounded exponential backoff."""
    last: Exception | None = None
    for attempt in range(1, options.max_attempts + 1):
        delay = _backoff(options, attempt)
        try:
            return fn()
        except requests.HTTPError as error:
            status = _status(error)
            if status is None or (status != 429 and status < 500):
                raise _classify(error, slug=slug, what=what, kind=kind) from error
            last = error
            retry_after = _retry_after(error) if status == 429 else None
            delay = retry_after if retry_after is not None else delay
        except _TRANSIENT as error:
            last = error
        if attempt < options.max_attempts:
            logger.info("Kaggle: %s failed (%s); retry %d in %.1fs", what, last, attempt, delay)
            time.sleep(min(delay, options.max_backoff_s))
    if isinstance(last, requests.HTTPError):
        if _status(last) == 429:
            raise KaggleRateLimitError(
                f"Kaggle rate-limited every attempt to {what} ({options.max_attempts} attempts); "
                "wait a few minutes and run again."
            ) from last
        raise KaggleUnavailableError(
            f"Kaggle kept failing to {what} (HTTP {_status(last)}, {options.max_attempts} attempts): "
            f"{_kaggle_message(last)}"
        ) from last
    raise KaggleUnavailableError(
        f"Could not reach Kaggle to {what} after {options.max_attempts} attempts: {last}"
    ) from last


# --------------------------------------------------------------------------- metadata


def _score(text: str | None) -> float | None:
    if text is None or not str(text).strip():
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _list_files(conn: _Connection, slug: str) -> list[DataFile]:
    from kagglesdk.competitions.types.competition_api_service import ApiListDataFilesRequest

    files: list[DataFile] = []
    token: str | None = None
    for _page in range(1000):
        request = ApiListDataFilesRequest()
        request.competition_name = slug
        request.page_size = 200
        request.page_token = token or ""
        response = _call(
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


def _pages(conn: _Connection, slug: str) -> dict[str, str]:
    """The competition's overview pages (description, evaluation, ...) when the API serves them."""
    from kagglesdk.competitions.types.competition_api_service import ApiListCompetitionPagesRequest

    request = ApiListCompetitionPagesRequest()
    request.competition_name = slug
    try:
        response = _call(
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


def _search_competition(conn: _Connection, slug: str) -> Any | None:
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
    response = _call(
        conn.options,
        lambda: conn.competitions.list_competitions(request),
        slug=slug,
        what="search the competitions",
    )
    for competition in response.competitions or []:
        if (competition.ref or "").rstrip("/").split("/")[-1].lower() == slug:
            return competition
    return None


def _competition(conn: _Connection, slug: str) -> Any:
    """GetCompetition, or the public competition list when that call is refused or finds nothing."""
    from kagglesdk.competitions.types.competition_api_service import ApiGetCompetitionRequest

    request = ApiGetCompetitionRequest()
    request.competition_name = slug
    try:
        return _call(
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


def _metadata(conn: _Connection, slug: str) -> CompetitionMetadata:
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
    with _connection(options) as conn:
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


def _stream_to(
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
            response = _call(options, start, slug=slug, what=what, kind=kind)
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
                for chunk in response.iter_content(_CHUNK):
                    out.write(chunk)
                    have += len(chunk)
                    if progress is not None and have >= next_report:
                        total = f" / {_human(size)}" if size else ""
                        progress(f"downloading {part.stem}: {_human(have)}{total}")
                        next_report = have + max(_CHUNK, (size or 0) // 10)
            if size is not None and have != size:
                raise _IncompleteDownloadError(f"got {have} of {size} bytes")
            marker.unlink(missing_ok=True)
            return
        except (*_TRANSIENT, _IncompleteDownloadError) as error:
            if attempt == options.max_attempts:
                raise KaggleUnavailableError(
                    f"Downloading '{slug}' kept failing ({error}); the partial file {part} is kept "
                    "and the next run resumes it."
                ) from error
            delay = _backoff(options, attempt)
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
                shutil.copyfileobj(src, dst, _CHUNK)
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

    with _connection(options) as conn:
        meta = _metadata(conn, slug)
        if progress is not None:
            total = sum(f.size for f in meta.files)
            progress(f"{meta.title}: {len(meta.files)} files, {_human(total)}")
        staging = dest / ".kaggle-download"
        staging.mkdir(exist_ok=True)
        part = staging / f"{slug}.zip.part"
        request = ApiDownloadDataFilesRequest()
        request.competition_name = slug
        _stream_to(
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


# --------------------------------------------------------------------------- leaderboard


def _parse_leaderboard_csv(text: str) -> list[LeaderboardEntry]:
    rows = csv.DictReader(io.StringIO(text))
    entries: list[LeaderboardEntry] = []
    for row in rows:
        lower = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if "score" not in lower:
            raise ValueError("leaderboard CSV has no Score column")
        team_id = lower.get("teamid", "")
        date_text = lower.get("submissiondate", "")
        try:
            date = datetime.fromisoformat(date_text) if date_text else None
        except ValueError:
            date = None
        entries.append(
            LeaderboardEntry(
                team_id=int(team_id) if team_id.isdigit() else len(entries) + 1,
                team_name=lower.get("teamname", ""),
                score=_score(lower.get("score")),
                submission_date=date,
            )
        )
    return entries


def _download_leaderboard_file(conn: _Connection, slug: str) -> list[LeaderboardEntry]:
    from kagglesdk.competitions.types.competition_api_service import ApiDownloadLeaderboardRequest

    request = ApiDownloadLeaderboardRequest()
    request.competition_name = slug
    response = _call(
        conn.options,
        lambda: conn.competitions.download_leaderboard(request),
        slug=slug,
        what="download the leaderboard",
    )
    try:
        body = response.content
    finally:
        response.close()
    if zipfile.is_zipfile(io.BytesIO(body)):
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ValueError("leaderboard archive holds no CSV")
            body = zf.read(names[0])
    return _parse_leaderboard_csv(body.decode("utf-8-sig"))


def _page_leaderboard(conn: _Connection, slug: str) -> list[LeaderboardEntry]:
    from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

    entries: list[LeaderboardEntry] = []
    token = ""
    for _page in range(10_000):
        request = ApiGetLeaderboardRequest()
        request.competition_name = slug
        request.page_size = _LEADERBOARD_PAGE
        request.page_token = token
        response = _call(
            conn.options,
            partial(conn.competitions.get_leaderboard, request),
            slug=slug,
            what="read the leaderboard",
        )
        for sub in response.submissions or []:
            entries.append(
                LeaderboardEntry(
                    team_id=int(sub.team_id or 0),
                    team_name=sub.team_name or "",
                    score=_score(sub.score),
                    submission_date=sub.submission_date,
                )
            )
        token = response.next_page_token or ""
        if not token:
            break
    return entries


def download_leaderboard(slug: str, *, options: KaggleOptions | None = None) -> list[LeaderboardEntry]:
    """The complete public leaderboard, best team first.

    Kaggle's leaderboard download (one CSV with every team) is tried first; when it
    is not served, the paged leaderboard is read to its last page.
    """
    with _connection(options) as conn:
        try:
            return _download_leaderboard_file(conn, slug)
        except (KaggleAuthError, KaggleRulesNotAcceptedError):
            raise
        except (KaggleError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as error:
            logger.info("Kaggle: leaderboard download for %s unavailable (%s); paging instead", slug, error)
        return _page_leaderboard(conn, slug)


def fetch_leaderboard_snapshot(slug: str, *, options: KaggleOptions | None = None) -> LeaderboardSnapshot:
    """The complete public leaderboard as a storable snapshot (for the scheduled sync)."""
    entries = download_leaderboard(slug, options=options)
    return LeaderboardSnapshot.from_entries(slug, entries, datetime.now(UTC))


def estimate_rank(
    slug: str,
    score: float,
    higher_is_better: bool | None,
    *,
    options: KaggleOptions | None = None,
) -> RankEstimate | None:
    """Where ``score`` would land on the public leaderboard, or None when Kaggle cannot say.

    Never raises: a local run must not fail because Kaggle is unreachable or no
    credentials are set. ``higher_is_better=None`` takes the direction from the
    leaderboard's own order.
    """
    options = options or KaggleOptions()
    # One retry at most: this is a bonus line in a report, not worth minutes of backoff.
    quick = options.model_copy(update={"max_attempts": min(options.max_attempts, 2)})
    try:
        entries = download_leaderboard(slug, options=quick)
        scores = [e.score for e in entries]
        direction = higher_is_better if higher_is_better is not None else infer_higher_is_better(scores)
        if direction is None:
            logger.info("Kaggle: cannot tell the direction of the %s leaderboard", slug)
            return None
        return rank_score(scores, score, direction)
    except (KaggleError, ValueError, OSError) as error:
        logger.info("Kaggle: no leaderboard estimate for %s: %s", slug, error)
        return None


# --------------------------------------------------------------------------- submit


def _submission_state(sub: Any) -> Literal["complete", "error", "pending"]:
    name = getattr(sub.status, "name", str(sub.status)).upper()
    if name.endswith("COMPLETE"):
        return "complete"
    if name.endswith("ERROR"):
        return "error"
    return "pending"


def submit(
    slug: str,
    submission: Path,
    message: str,
    *,
    poll_interval: float = 5.0,
    timeout: float = 600.0,
    higher_is_better: bool | None = None,
    options: KaggleOptions | None = None,
) -> SubmissionResult:
    """Upload a submission, poll until Kaggle scores it, and rank the public score.

    Returns status "pending" when scoring takes longer than ``timeout`` (the
    submission is in; its score appears on Kaggle later).
    """
    from kagglesdk.competitions.types.competition_api_service import (
        ApiCreateSubmissionRequest,
        ApiGetSubmissionRequest,
        ApiStartSubmissionUploadRequest,
    )

    options = options or KaggleOptions()
    if not submission.is_file():
        raise InputError(f"no submission file at {submission}")
    with _connection(options) as conn:
        start = ApiStartSubmissionUploadRequest()
        start.competition_name = slug
        start.file_name = submission.name
        start.content_length = submission.stat().st_size
        start.last_modified_epoch_seconds = int(submission.stat().st_mtime)
        upload = _call(
            options,
            lambda: conn.competitions.start_submission_upload(start),
            slug=slug,
            what="start the upload",
        )

        def put() -> requests.Response:
            with submission.open("rb") as body:
                response = requests.put(upload.create_url, data=body, timeout=options.request_timeout_s)
            response.raise_for_status()
            return response

        _call(options, put, slug=slug, what="upload the submission file")
        create = ApiCreateSubmissionRequest()
        create.competition_name = slug
        create.blob_file_tokens = upload.token
        create.submission_description = message
        created = _call(
            options,
            lambda: conn.competitions.create_submission(create),
            slug=slug,
            what="create the submission",
        )
        ref = int(created.ref or 0)
        result = SubmissionResult(ref=ref, status="pending", message=created.message or "")
        if not ref:
            return result
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            get = ApiGetSubmissionRequest()
            get.ref = ref
            sub = _call(options, partial(conn.competitions.get_submission, get), slug=slug, what="poll the score")
            state = _submission_state(sub)
            if state != "pending":
                result = SubmissionResult(
                    ref=ref,
                    status=state,
                    public_score=_score(sub.public_score),
                    message=created.message or "",
                    error=sub.error_description or None,
                )
                break
            if time.monotonic() + interval > deadline:
                return result
            time.sleep(interval)
            interval = min(interval * 1.5, 60.0)
    if result.public_score is not None:
        result.rank = estimate_rank(slug, result.public_score, higher_is_better, options=options)
    return result


# --------------------------------------------------------------------------- kernels

# The script Kaggle runs: it writes the bundled program (and the batch_agent
# package the template programs import) to a scratch folder, finds the
# competition's files under /kaggle/input, and runs the program with
# /kaggle/working as its working directory, so submission.csv and metrics.json
# become the kernel's output. --input/--working let the same script run locally.
_KERNEL_SCRIPT = '''\
"""kaggle-solver training run for {slug} (generated)."""
import argparse, base64, json, os, subprocess, sys, zlib
from pathlib import Path

SLUG = {slug!r}
TIME_BUDGET = {time_budget!r}
FILES = json.loads(zlib.decompress(base64.b64decode({payload!r})).decode("utf-8"))

parser = argparse.ArgumentParser()
parser.add_argument("--input", default="/kaggle/input")
parser.add_argument("--working", default="/kaggle/working")
parser.add_argument("--scratch", default="/tmp/kaggle-solver")
args, _ = parser.parse_known_args()
inputs, working, scratch = Path(args.input), Path(args.working), Path(args.scratch)

for name, text in FILES.items():
    target = scratch / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def find_data():
    for folder in (inputs / SLUG, inputs / "competitions" / SLUG):
        if (folder / "train.csv").exists() or (folder / "sample_submission.csv").exists():
            return folder
    for name in ("sample_submission.csv", "train.csv"):
        hits = sorted(inputs.rglob(name))
        if hits:
            return hits[0].parent
    return inputs / SLUG


data = find_data()
print("kaggle-solver: data in", data, flush=True)
working.mkdir(parents=True, exist_ok=True)
env = dict(os.environ, PYTHONPATH=str(scratch) + os.pathsep + os.environ.get("PYTHONPATH", ""))
command = [sys.executable, str(scratch / "program.py"), "--data", str(data)]
command += ["--time-budget", str(TIME_BUDGET)]
code = subprocess.call(command, cwd=str(working), env=env)
print("kaggle-solver: program exited with", code, flush=True)
sys.exit(code)
'''


def _bundle_files(program: Path, package_dir: Path | None) -> dict[str, str]:
    files = {"program.py": program.read_text(encoding="utf-8")}
    if package_dir is not None:
        for path in sorted(package_dir.rglob("*.py")):
            if "__pycache__" not in path.parts:
                rel = path.relative_to(package_dir.parent).as_posix()
                files[rel] = path.read_text(encoding="utf-8")
    return files


def kernel_script(slug: str, program: Path, *, time_budget: float, package_dir: Path | None) -> str:
    """The self-contained Python script pushed as the kernel's code."""
    blob = zlib.compress(json.dumps(_bundle_files(program, package_dir)).encode("utf-8"), 9)
    return _KERNEL_SCRIPT.format(slug=slug, time_budget=float(time_budget), payload=base64.b64encode(blob).decode())


def _kernel_log_text(raw: str) -> str:
    """Kaggle serves the log as a JSON list of {stream_name, time, data}; fall back to the raw text."""
    try:
        records = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(records, list) and all(isinstance(r, dict) for r in records):
        return "".join(str(r.get("data", "")) for r in records)
    return raw


def _owner_and_slug(ref: str) -> tuple[str, str]:
    segments = [s for s in urlsplit(ref).path.split("/") if s and s != "code"]
    if len(segments) < 2:
        raise KaggleError(f"Kaggle returned an unexpected kernel reference: {ref!r}")
    return segments[-2], segments[-1]


_ACCELERATORS = {"gpu": "NvidiaTeslaT4", "t4": "NvidiaTeslaT4", "p100": "NvidiaTeslaP100"}


def _account_name(conn: _Connection) -> str | None:
    if conn.username:
        return conn.username
    from kagglesdk.security.types.oauth_service import IntrospectTokenRequest

    token = conn.client.http_client()._api_token
    if not token:
        return None
    request = IntrospectTokenRequest()
    request.token = token
    try:
        response = _call(
            conn.options,
            lambda: conn.client.security.oauth_client.introspect_token(request),
            slug="",
            what="look up the account name",
            kind="account",
        )
    except KaggleError as error:
        logger.info("Kaggle: could not look up the account name: %s", error)
        return None
    return response.username or None


def _download_outputs(conn: _Connection, owner: str, kslug: str, workdir: Path) -> tuple[list[Path], Path | None]:
    from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

    files: list[Path] = []
    log_path: Path | None = None
    token = ""
    root = workdir.resolve()
    for _page in range(1000):
        request = ApiListKernelSessionOutputRequest()
        request.user_name = owner
        request.kernel_slug = kslug
        request.page_size = 100
        request.page_token = token
        response = _call(
            conn.options,
            partial(conn.kernels.list_kernel_session_output, request),
            slug=f"{owner}/{kslug}",
            what="list the kernel output",
            kind="kernel",
        )
        if response.log and log_path is None:
            log_path = workdir / "kernel.log"
            log_path.write_text(_kernel_log_text(response.log), encoding="utf-8")
        for item in response.files or []:
            if not item.url or not item.file_name:
                continue
            target = (workdir / item.file_name).resolve()
            if not target.is_relative_to(root):
                logger.warning("Kaggle: skipping kernel output with an unsafe name: %s", item.file_name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            url = item.url
            _stream_to(
                partial(_get_file, url, conn.options),
                part,
                conn.options,
                what=f"download kernel output {item.file_name}",
                slug=f"{owner}/{kslug}",
                progress=None,
                kind="kernel",
            )
            os.replace(part, target)
            files.append(target)
        token = response.next_page_token or ""
        if not token:
            break
    return files, log_path


def _get_file(url: str, options: KaggleOptions) -> requests.Response:
    response = requests.get(url, stream=True, timeout=options.request_timeout_s)
    response.raise_for_status()
    return response


def run_kernel(
    slug: str,
    program: Path,
    workdir: Path,
    *,
    timeout: float,
    accelerator: str = "gpu",
    time_budget: float | None = None,
    poll_interval: float = 10.0,
    max_poll_interval: float = 60.0,
    package_dir: Path | None = _PACKAGE_DIR,
    options: KaggleOptions | None = None,
) -> KernelResult:
    """Run a training program as a private Kaggle kernel with the competition attached.

    Pushes the program (with the batch_agent package, which template programs
    import) as a script kernel on ``accelerator`` ("gpu"/"t4", "p100" or "none"),
    polls its session with growing intervals until it ends or ``timeout`` seconds
    pass, then downloads its output files (submission.csv, metrics.json, ...) and
    its log into ``workdir``.
    """
    from kagglesdk.kernels.types.kernels_api_service import (
        ApiGetKernelSessionStatusRequest,
        ApiSaveKernelRequest,
    )

    options = options or KaggleOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    machine = _ACCELERATORS.get(accelerator.lower())
    if machine is None and accelerator.lower() not in ("none", "cpu"):
        raise InputError(f"unknown Kaggle accelerator {accelerator!r}; use gpu, t4, p100 or none")
    started = time.monotonic()
    budget = time_budget if time_budget is not None else max(60.0, timeout * 0.8)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    kslug = f"kaggle-solver-{slug}"[:35].rstrip("-") + f"-{stamp}"
    with _connection(options) as conn:
        owner = _account_name(conn)
        save = ApiSaveKernelRequest()
        save.slug = f"{owner}/{kslug}" if owner else None
        save.new_title = kslug
        save.text = kernel_script(slug, program, time_budget=budget, package_dir=package_dir)
        save.language = "python"
        save.kernel_type = "script"
        save.is_private = True
        save.enable_gpu = machine is not None
        save.enable_internet = False
        save.competition_data_sources = [slug]
        save.session_timeout_seconds = int(timeout)
        save.machine_shape = machine
        pushed = _call(options, lambda: conn.kernels.save_kernel(save), slug=slug, what="push the kernel")
        if pushed.error:
            if any(word in pushed.error.lower() for word in _QUOTA_WORDS):
                raise KaggleQuotaError(f"Kaggle would not start the kernel: {pushed.error}")
            raise KaggleError(f"Kaggle would not start the kernel: {pushed.error}")
        if pushed.invalid_competition_sources:
            raise KaggleRulesNotAcceptedError(slug, "the kernel could not attach the competition's data")
        ref = pushed.ref or pushed.url
        owner, kslug = _owner_and_slug(ref)
        url = pushed.url or f"https://www.kaggle.com/code/{owner}/{kslug}"
        logger.info("Kaggle: kernel %s/%s pushed (%s)", owner, kslug, url)

        interval = poll_interval
        status: Literal["complete", "error", "cancelled", "timeout"] = "timeout"
        failure: str | None = None
        while True:
            request = ApiGetKernelSessionStatusRequest()
            request.user_name = owner
            request.kernel_slug = kslug
            state = _call(
                options,
                partial(conn.kernels.get_kernel_session_status, request),
                slug=f"{owner}/{kslug}",
                what="poll the kernel status",
                kind="kernel",
            )
            name = getattr(state.status, "name", str(state.status)).upper()
            if name == "COMPLETE":
                status = "complete"
            elif name == "ERROR":
                status, failure = "error", state.failure_message or "the kernel failed"
            elif name.startswith("CANCEL"):
                status, failure = "cancelled", state.failure_message or "the kernel was cancelled"
            if status != "timeout":
                break
            if time.monotonic() - started + interval > timeout:
                failure = f"the kernel did not finish within {timeout:.0f}s (last status {name.lower()})"
                break
            time.sleep(interval)
            interval = min(interval * 1.5, max_poll_interval)
        files: list[Path] = []
        log_path: Path | None = None
        if status != "timeout":
            files, log_path = _download_outputs(conn, owner, kslug, workdir)
    submission = workdir / "submission.csv"
    return KernelResult(
        ref=f"{owner}/{kslug}",
        url=url,
        status=status,
        failure_message=failure,
        submission=submission if submission.exists() else None,
        log=log_path,
        files=files,
        seconds=round(time.monotonic() - started, 2),
    )
