"""Kaggle competition URLs and slugs. Imports no HTTP library, so the API Lambda can read a slug cheaply."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from batch_agent.solver.errors import InputError

logger = logging.getLogger(__name__)

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


def checked_slug(text: str) -> str:
    """A bare competition slug, lower-cased; InputError when it is not one (it names S3 keys)."""
    slug = text.strip()
    if len(slug) > 100 or not _SLUG_RE.match(slug):
        raise InputError(f"{text!r} is not a competition slug (letters, digits and hyphens)")
    return slug.lower()


def rules_url(slug: str) -> str:
    return f"https://www.kaggle.com/competitions/{slug}/rules"


def competition_url(slug: str) -> str:
    return f"https://www.kaggle.com/competitions/{slug}"


