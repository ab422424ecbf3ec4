"""The artifacts bucket: where each job's files live and how steps read and write them.

Layout::

    cache/{slug}/...                         competition files, fetched once per slug
    jobs/{job_id}/profile.json               CompetitionProfile (prepare)
    jobs/{job_id}/plan.json                  Plan (plan)
    jobs/{job_id}/queue.json                 programs drafted but not run yet (generate, repair)
    jobs/{job_id}/attempts/{n}/program.json  Program to run as attempt n
    jobs/{job_id}/attempts/{n}/result.json   AttemptResult (train, then validate)
    jobs/{job_id}/attempts/{n}/...           program outputs (submission.csv, oof.csv, metrics.json, log); holdout.csv
    jobs/{job_id}/submission.csv             the best submission (finish)
    leaderboards/{slug}.json                 public leaderboard snapshot (the scheduled sync), for ranks
    leaderboards/{slug}.history.json         its summary and history (the sync)
    tracked/{slug}.json                      a competition a user asked the sync to track (the API)

Stdlib + boto3 only (Lambdas import this module).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from batch_agent.service import names
from batch_agent.solver.outputs import OutputError, read_output

log = logging.getLogger(__name__)

# Files a program writes that are not worth keeping in S3 above this size.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024


def job_key(job_id: str, *parts: str | int) -> str:
    return "/".join([f"{names.JOBS_PREFIX}{job_id}", *(str(p) for p in parts)])


def attempt_key(job_id: str, attempt: int, name: str) -> str:
    return job_key(job_id, "attempts", attempt, name)


def cache_prefix(slug: str) -> str:
    return f"{names.CACHE_PREFIX}{slug}/"


def flat_prefix(slug: str) -> str:
    """The flat tables of a competition that is not one table (solver.shapes), beside its files in the cache."""
    return f"{names.CACHE_PREFIX}{slug}@flat/"


def leaderboard_key(slug: str) -> str:
    return f"{names.LEADERBOARD_PREFIX}{slug}.json"


def put_json(s3: Any, bucket: str, key: str, data: Any) -> None:
    body = json.dumps(data, indent=1).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def get_json_or_none(s3: Any, bucket: str, key: str) -> Any:
    try:
        return get_json(s3, bucket, key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
            return False
        raise


def list_keys(s3: Any, bucket: str, prefix: str, *, limit: int | None = None) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
        if limit is not None and len(keys) >= limit:
            return keys[:limit]
    return keys


def upload_folder(s3: Any, bucket: str, prefix: str, folder: Path, *, skip: str | None = None) -> list[str]:
    """Upload every file under a folder the product wrote to prefix (keeping relative paths); returns the keys.

    ``skip`` names a top-level entry left out (a flat folder's copy of the files already in the cache).
    """
    keys = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or (skip is not None and path.relative_to(folder).parts[0] == skip):
            continue
        key = prefix + path.relative_to(folder).as_posix()
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def upload_attempt_folder(s3: Any, bucket: str, prefix: str, folder: Path) -> list[str]:
    """Upload what a program left in its folder: regular files only, never through a link, each under the cap.

    The program controls every name in the folder (``notes.txt -> /root/.aws/credentials``, FIFOs,
    huge files): nothing is followed, nothing special is opened, nothing oversize is read.
    """
    keys = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        here = Path(current)
        for name in sorted(files):
            try:
                body = read_output(here, name, max_bytes=MAX_UPLOAD_BYTES)
            except OutputError as exc:
                log.info("not uploading %s: %s", here / name, exc)
                continue
            key = prefix + (here / name).relative_to(folder).as_posix()
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            keys.append(key)
    return keys


def download_prefix(s3: Any, bucket: str, prefix: str, folder: Path) -> int:
    """Download every object under prefix into folder; returns how many."""
    count = 0
    for key in list_keys(s3, bucket, prefix):
        relative = key[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
        count += 1
    return count


def presigned_get(s3: Any, bucket: str, key: str, expiry_s: int, *, filename: str | None = None) -> str:
    params: dict[str, str] = {"Bucket": bucket, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    url: str = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expiry_s)
    return url
