"""Submitting a submission.csv and waiting for its public score."""

from __future__ import annotations

import logging
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Literal

import requests
from pydantic import BaseModel

from batch_agent.kaggle.client import Connection, KaggleOptions, call, connection, parse_score
from batch_agent.kaggle.leaderboard import (
    RankEstimate,
)
from batch_agent.kaggle.leaderboard_download import estimate_rank
from batch_agent.solver.errors import InputError

logger = logging.getLogger(__name__)

class SubmissionResult(BaseModel):
    ref: int
    status: Literal["complete", "error", "pending"]
    public_score: float | None = None
    message: str = ""
    error: str | None = None
    rank: RankEstimate | None = None
    # The description the submission carries on Kaggle (the message plus a unique tag).
    description: str = ""


# --------------------------------------------------------------------------- submit


def _submission_state(sub: Any) -> Literal["complete", "error", "pending"]:
    name = getattr(sub.status, "name", str(sub.status)).upper()
    if name.endswith("COMPLETE"):
        return "complete"
    if name.endswith("ERROR"):
        return "error"
    return "pending"


def _find_submission(conn: Connection, slug: str, description: str) -> int | None:
    """The ref of this competition's newest submission carrying ``description``, if Kaggle has one."""
    from kagglesdk.competitions.types.competition_api_service import ApiListSubmissionsRequest

    request = ApiListSubmissionsRequest()
    request.competition_name = slug
    response = conn.competitions.list_submissions(request)
    for sub in response.submissions or []:
        if sub.description == description and sub.ref:
            return int(sub.ref)
    return None


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

    Creating the submission is idempotent: its description carries a unique tag,
    and before any retry of CreateSubmission (after a dropped connection or a 5xx,
    when Kaggle may have accepted the first one) the competition's submissions are
    searched for that tag, so one upload never spends two daily submissions.
    """
    from kagglesdk.competitions.types.competition_api_service import (
        ApiCreateSubmissionRequest,
        ApiGetSubmissionRequest,
        ApiStartSubmissionUploadRequest,
    )

    options = options or KaggleOptions()
    if not submission.is_file():
        raise InputError(f"no submission file at {submission}")
    with connection(options) as conn:
        start = ApiStartSubmissionUploadRequest()
        start.competition_name = slug
        start.file_name = submission.name
        start.content_length = submission.stat().st_size
        start.last_modified_epoch_seconds = int(submission.stat().st_mtime)
        upload = call(
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

        call(options, put, slug=slug, what="upload the submission file")
        description = f"{message} [{uuid.uuid4().hex[:12]}]"
        create = ApiCreateSubmissionRequest()
        create.competition_name = slug
        create.blob_file_tokens = upload.token
        create.submission_description = description
        tried = False

        def create_once() -> tuple[int, str]:
            nonlocal tried
            if tried:
                found = _find_submission(conn, slug, description)
                if found is not None:
                    logger.info("Kaggle: the first CreateSubmission went through (ref %d); not sending another", found)
                    return found, ""
            tried = True
            created = conn.competitions.create_submission(create)
            return int(created.ref or 0), created.message or ""

        ref, created_message = call(options, create_once, slug=slug, what="create the submission")
        result = SubmissionResult(ref=ref, status="pending", message=created_message, description=description)
        if not ref:
            return result
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            get = ApiGetSubmissionRequest()
            get.ref = ref
            sub = call(options, partial(conn.competitions.get_submission, get), slug=slug, what="poll the score")
            state = _submission_state(sub)
            if state != "pending":
                result = SubmissionResult(
                    ref=ref,
                    status=state,
                    public_score=parse_score(sub.public_score),
                    message=created_message,
                    error=sub.error_description or None,
                    description=description,
                )
                break
            if time.monotonic() + interval > deadline:
                return result
            time.sleep(interval)
            interval = min(interval * 1.5, 60.0)
    if result.public_score is not None:
        result.rank = estimate_rank(slug, result.public_score, higher_is_better, options=options)
    return result


