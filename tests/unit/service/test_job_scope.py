"""A training job's credentials reach its own job only: the session policy, read as IAM would match it."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import boto3
from moto import mock_aws

from batch_agent.service.job_scope import scoped_train_clients, train_session_policy

BUCKET, TABLE, JOB, OTHER = "artifacts", "jobs", "job-123", "job-456"


def _allows(policy: dict[str, Any], action: str, resource: str, *, prefix: str | None = None,
            leading_key: str | None = None) -> bool:
    """Whether an Allow statement matches (IAM wildcards: '*' spans '/'); conditions as this policy uses them."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or action not in statement["Action"]:
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement["Resource"]):
            continue
        condition = statement.get("Condition", {})
        if "StringLike" in condition and not (
            prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in condition["StringLike"]["s3:prefix"])
        ):
            continue
        keys = condition.get("ForAllValues:StringEquals", {}).get("dynamodb:LeadingKeys")
        if keys is not None and leading_key not in keys:
            continue
        return True
    return False


def test_training_job_writes_only_its_own_attempts_and_blend() -> None:
    policy = train_session_policy(bucket=BUCKET, table=TABLE, job_id=JOB)
    objects = f"arn:aws:s3:::{BUCKET}"
    assert _allows(policy, "s3:PutObject", f"{objects}/jobs/{JOB}/attempts/2/submission.csv")
    assert _allows(policy, "s3:PutObject", f"{objects}/jobs/{JOB}/blend.json")
    assert not _allows(policy, "s3:PutObject", f"{objects}/jobs/{OTHER}/attempts/2/submission.csv")
    assert not _allows(policy, "s3:PutObject", f"{objects}/jobs/{JOB}/submission.csv")
    assert not _allows(policy, "s3:PutObject", f"{objects}/cache/titanic/train.csv")
    assert not any("s3:DeleteObject" in s["Action"] for s in policy["Statement"])


def test_training_job_reads_the_cache_and_its_own_job_only() -> None:
    policy = train_session_policy(bucket=BUCKET, table=TABLE, job_id=JOB)
    objects = f"arn:aws:s3:::{BUCKET}"
    assert _allows(policy, "s3:GetObject", f"{objects}/cache/titanic/train.csv")
    assert _allows(policy, "s3:GetObject", f"{objects}/jobs/{JOB}/attempts/1/program.json")
    assert not _allows(policy, "s3:GetObject", f"{objects}/jobs/{OTHER}/profile.json")
    assert _allows(policy, "s3:ListBucket", objects, prefix=f"jobs/{JOB}/attempts/1/")
    assert not _allows(policy, "s3:ListBucket", objects, prefix=f"jobs/{OTHER}/")
    assert not _allows(policy, "s3:ListBucket", objects, prefix="")


def test_training_job_reads_and_updates_only_its_own_record() -> None:
    policy = train_session_policy(bucket=BUCKET, table=TABLE, job_id=JOB)
    table = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
    assert _allows(policy, "dynamodb:UpdateItem", table, leading_key=JOB)
    assert not _allows(policy, "dynamodb:UpdateItem", table, leading_key=OTHER)
    assert not _allows(policy, "dynamodb:PutItem", table, leading_key=JOB)
    assert not _allows(policy, "dynamodb:Query", table, leading_key=JOB)
    assert len(json.dumps(policy, separators=(",", ":"))) < 2048  # STS's limit on a session policy


def test_scoped_clients_use_the_assumed_roles_credentials(monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        iam = boto3.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        role_arn = iam.create_role(RoleName="train-access", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        clients = scoped_train_clients(role_arn, table=TABLE, bucket=BUCKET, job_id=JOB)
        key = clients.s3._request_signer._credentials.access_key
        assert key != boto3.session.Session().get_credentials().access_key
        assert clients.table == TABLE and clients.bucket == BUCKET
