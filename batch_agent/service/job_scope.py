"""Credentials a training job holds: scoped to its own job, so a compromised job can touch no other.

The training job's role may do one thing: assume the train-access role. Before it reads anything,
the job assumes that role with a session policy naming its job id; the effective permissions are
the intersection of the two, so the job can read the competition cache and its own job's files,
write only its own attempts' and blend files, and update only its own record in the jobs table.
Stdlib + boto3 only.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from batch_agent.service import names
from batch_agent.service.steps.context import ServiceClients

# STS accepts session policies up to 2,048 characters (packed); this one stays far below.
SESSION_SECONDS = 12 * 3600


def train_session_policy(*, bucket: str, table: str, job_id: str) -> dict[str, Any]:
    """The session policy for one training job: its job's prefix and record, the shared competition cache."""
    objects = f"arn:aws:s3:::{bucket}"
    job_prefix = f"{names.JOBS_PREFIX}{job_id}/"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadCacheAndOwnJob",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"{objects}/cache/*", f"{objects}/{job_prefix}*"],
            },
            {
                "Sid": "ListCacheAndOwnJob",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [objects],
                "Condition": {"StringLike": {"s3:prefix": ["cache/*", f"{job_prefix}*"]}},
            },
            {
                "Sid": "WriteOwnAttemptsAndBlend",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [
                    f"{objects}/{job_prefix}attempts/*",
                    f"{objects}/{job_prefix}blend/*",
                    f"{objects}/{job_prefix}blend.json",
                ],
            },
            {
                "Sid": "OwnJobRecord",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                "Resource": [f"arn:aws:dynamodb:*:*:table/{table}"],
                "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [job_id]}},
            },
        ],
    }


def scoped_train_clients(role_arn: str, *, table: str, bucket: str, job_id: str) -> ServiceClients:
    """Clients with credentials of ``role_arn`` narrowed by ``train_session_policy`` to one job."""
    policy = train_session_policy(bucket=bucket, table=table, job_id=job_id)
    credentials = boto3.client("sts").assume_role(
        RoleArn=role_arn,
        RoleSessionName=f"train-{job_id}"[:64],
        Policy=json.dumps(policy, separators=(",", ":")),
        DurationSeconds=SESSION_SECONDS,
    )["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    return ServiceClients(dynamodb=session.client("dynamodb"), s3=session.client("s3"), table=table, bucket=bucket)
