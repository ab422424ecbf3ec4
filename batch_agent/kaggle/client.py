"""The connection to Kaggle through the official client (kagglesdk), with timeouts and retries.

Every request goes through the official client's RPC layer; credentials are found the way
the official client finds them (KAGGLE_API_TOKEN, KAGGLE_USERNAME / KAGGLE_KEY, or kaggle.json
under KAGGLE_CONFIG_DIR); this module never reads them itself. HTTP 429, 5xx and dropped
connections are retried with bounded exponential backoff; other failures become KaggleError
subclasses.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter

from batch_agent.kaggle.errors import (
    KaggleAuthError,
    KaggleError,
    KaggleNotFoundError,
    KaggleQuotaError,
    KaggleRateLimitError,
    KaggleRulesNotAcceptedError,
    KaggleUnavailableError,
)
from batch_agent.kaggle.urls import competition_url

logger = logging.getLogger(__name__)


T = TypeVar("T")
CHUNK_BYTES = 1 << 16




NO_CREDENTIALS = (
    "No Kaggle credentials found. Create an API token at https://www.kaggle.com/settings/api and either "
    "set KAGGLE_API_TOKEN, or set KAGGLE_USERNAME and KAGGLE_KEY, or save kaggle.json in ~/.kaggle "
    "(or in the folder KAGGLE_CONFIG_DIR names)."
)
QUOTA_WORDS = ("quota", "limit", "exceeded", "maximum", "too many")




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
    # Least time between the starts of two Kaggle requests of this process (0: no spacing).
    # Kaggle rate-limits per account; a sync of many competitions spaces its calls.
    min_interval_s: float = Field(default=0.0, ge=0)
    # A 429's Retry-After is honoured up to this many seconds; a longer one fails the call at once.
    max_retry_after_s: float = Field(default=300.0, ge=0)




# --------------------------------------------------------------------------- client and retries


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, *args, **kwargs)


class Connection:
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


def _connect(options: KaggleOptions) -> Connection:
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
        raise KaggleAuthError(NO_CREDENTIALS)
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
    return Connection(client, username, options)


@contextlib.contextmanager
def connection(options: KaggleOptions | None) -> Iterator[Connection]:
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
    if any(word in detail.lower() for word in QUOTA_WORDS) and status in (400, 403, 409, 429):
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


TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
)


def backoff_seconds(options: KaggleOptions, attempt: int) -> float:
    return float(min(options.max_backoff_s, options.backoff_s * (2 ** (attempt - 1))))


class _Pacer:
    """Spaces the starts of requests made by this process, across threads and connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_start = 0.0

    def wait(self, min_interval_s: float) -> None:
        if min_interval_s <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + min_interval_s
        if start > now:
            time.sleep(start - now)

    def hold(self, seconds: float) -> None:
        """No request of this process starts in the next ``seconds`` (a Retry-After applies to the account)."""
        with self._lock:
            self._next_start = max(self._next_start, time.monotonic() + seconds)


PACER = _Pacer()


def call(options: KaggleOptions, fn: Callable[[], T], *, slug: str, what: str, kind: str = "competition") -> T:
    """Run one Kaggle request, retrying 429, 5xx and dropped connections with bounded exponential backoff.

    Requests start at least ``options.min_interval_s`` apart; a 429's Retry-After
    (up to ``options.max_retry_after_s``) is waited out before the retry.
    """
    last: Exception | None = None
    for attempt in range(1, options.max_attempts + 1):
        delay = backoff_seconds(options, attempt)
        PACER.wait(options.min_interval_s)
        try:
            return fn()
        except requests.HTTPError as error:
            status = _status(error)
            if status is None or (status != 429 and status < 500):
                raise _classify(error, slug=slug, what=what, kind=kind) from error
            last = error
            retry_after = _retry_after(error) if status in (429, 503) else None
            if retry_after is not None:
                if retry_after > options.max_retry_after_s:
                    raise KaggleRateLimitError(
                        f"Kaggle asked to wait {retry_after:.0f} s before trying to {what} again "
                        f"(more than {options.max_retry_after_s:.0f} s); try later."
                    ) from error
                delay = retry_after
                PACER.hold(retry_after)
        except TRANSIENT_ERRORS as error:
            last = error
        if attempt < options.max_attempts:
            logger.info("Kaggle: %s failed (%s); retry %d in %.1fs", what, last, attempt, delay)
            time.sleep(delay)
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


def parse_score(text: str | None) -> float | None:
    if text is None or not str(text).strip():
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
