"""In-process moto (no network) with the API's resources: the jobs table, the bucket, the state machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto import mock_aws

from batch_agent.local.stack import ACCOUNT, REGION, jobs_table_definition
from batch_agent.service.settings import ApiSettings
from batch_agent.service.state_machine import local_arns, render_definition

TABLE = "unit-kaggle-solver-jobs"
BUCKET = "unit-kaggle-solver-artifacts"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:unit-kaggle-solver-pipeline"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@contextmanager
def api_backend() -> Iterator[ApiSettings]:
    """Resources as the CDK app defines them; executions are recorded, not run."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}}):
        boto3.client("dynamodb").create_table(**jobs_table_definition(TABLE))
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        role = boto3.client("iam").create_role(
            RoleName="unit-sfn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        boto3.client("stepfunctions").create_state_machine(
            name="unit-kaggle-solver-pipeline",
            definition=render_definition(local_arns("unit", region=REGION, account=ACCOUNT)),
            roleArn=role,
        )
        yield ApiSettings(jobs_table=TABLE, artifacts_bucket=BUCKET, state_machine_arn=STATE_MACHINE_ARN)


@contextmanager
def offline_api_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiSettings]:
    """``api_backend`` with test credentials in the environment and no endpoint pointing boto3 elsewhere."""
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with api_backend() as api_settings:
        yield api_settings
