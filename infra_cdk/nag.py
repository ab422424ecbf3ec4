"""cdk-nag AwsSolutions checks on the stack, and the findings accepted on purpose, each with its reason.

cdk-nag 3 runs as a CDK policy-validation plugin: an unacknowledged error fails
`cdk synth` (and `Template.from_stack`). Acknowledgments name one finding each
(`AwsSolutions-IAM5[Resource::...]`); the wildcard ones below are exactly the
scoped wildcards that the L2 `grant_*` methods write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra_cdk.training import TRAIN_WRITE_KEY_PATTERNS

if TYPE_CHECKING:
    from infra_cdk.stack import KaggleSolverStack

PACK = "AwsSolutions"
# Action groups of s3 grant_read / grant_put / grant_read_write.
S3_READ_ACTIONS = ("s3:GetObject*", "s3:GetBucket*", "s3:List*")
S3_WRITE_ACTIONS = ("s3:Abort*", "s3:DeleteObject*")

# The only actions granted on Resource "*": none of them supports resource-level permissions.
AWS_REQUIRED_STAR_ACTIONS = frozenset(
    {
        # Batch job definitions: the execution role logs in to ECR to pull the image.
        "ecr:GetAuthorizationToken",
        # State machine: following submitJob.sync jobs.
        "batch:DescribeJobs",
        # State machine: X-Ray tracing (tracing_enabled).
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        # State machine: execution logs delivered to CloudWatch Logs (vended log delivery).
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        # Leaderboard sync: its staleness metric (scoped by a cloudwatch:namespace condition).
        "cloudwatch:PutMetricData",
    }
)

GRANT_REASON = (
    "Wildcards written by the L2 grant_* methods and scoped to one resource of this stack: "
    "object keys under the artifacts bucket, the jobs table's indexes, or a grant's action group."
)


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Accept one AwsSolutions finding (e.g. 'IAM5[Resource::*]') on `scope` and everything below it."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}::{PACK}-{finding}", reason=reason))


def _logical_id(element: IConstruct) -> str:
    stack = cdk.Stack.of(element)
    cfn = element.node.default_child if element.node.default_child is not None else element
    return str(stack.resolve(stack.get_logical_id(cfn)))  # type: ignore[arg-type]


def _arn_finding(stack: cdk.Stack, service: str, resource: str) -> str:
    """An ARN as cdk-nag prints it: unresolved region/account as <AWS::Region>/<AWS::AccountId>."""
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    return f"arn:<AWS::Partition>:{service}:{region}:{account}:{resource}"


def bucket_findings(bucket: s3.IBucket, *, write: bool, key_patterns: Iterable[str]) -> list[str]:
    """The IAM5 findings of grant_read (+ grant_put/grant_read_write) on `bucket`."""
    actions = S3_READ_ACTIONS + (S3_WRITE_ACTIONS if write else ())
    arn = f"<{_logical_id(bucket)}.Arn>"
    return [f"IAM5[Action::{action}]" for action in actions] + [
        f"IAM5[Resource::{arn}/{pattern}]" for pattern in key_patterns
    ]


def table_findings(table: dynamodb.ITableV2) -> list[str]:
    """The IAM5 finding of grant_read_write_data on `table` (its indexes)."""
    return [f"IAM5[Resource::<{_logical_id(table)}.Arn>/index/*]"]


def invoke_findings(functions: Iterable[lambda_.IFunction]) -> list[str]:
    """The IAM5 findings of grant_invoke (every version of each function)."""
    return [f"IAM5[Resource::<{_logical_id(function)}.Arn>:*]" for function in functions]


def acknowledge_stack_findings(stack: KaggleSolverStack) -> None:
    """Every finding this design accepts, with why."""
    bucket = stack.storage.bucket
    table = stack.storage.table

    for secret in (stack.kaggle_secret, stack.anthropic_secret):
        acknowledge(
            secret,
            "SMG4",
            "Third-party API credentials (Kaggle, Anthropic): AWS cannot rotate them; "
            "the owner replaces the value in the console or with put-secret-value.",
        )

    # Step Lambdas: read the whole bucket (competition cache + job artifacts), write under jobs/.
    for role in [step.role for step in stack.pipeline.steps.values()]:
        for finding in bucket_findings(bucket, write=True, key_patterns=("*", "jobs/*")) + table_findings(table):
            acknowledge(role, finding, GRANT_REASON)
    # The API reads and purges objects under jobs/ only, reads leaderboards/ and marks tracked/; the API and the
    # starter query the table's indexes.
    acknowledge(
        stack.api.handler.role,
        f"IAM5[Resource::<{_logical_id(bucket)}.Arn>/jobs/*]",
        "GetObject (results, presigned downloads) and DeleteObject (purge) on job artifacts only; "
        "job ids are unknown in advance.",
    )
    acknowledge(
        stack.api.handler.role,
        f"IAM5[Resource::<{_logical_id(bucket)}.Arn>/leaderboards/*]",
        "GetObject of the leaderboard snapshots the status and leaderboard routes show; slugs are unknown in advance.",
    )
    acknowledge(
        stack.api.handler.role,
        f"IAM5[Resource::<{_logical_id(bucket)}.Arn>/tracked/*]",
        "Get/PutObject of the marker a user sets to track a competition; slugs are unknown in advance.",
    )
    batch_jobs = f"IAM5[Resource::{_arn_finding(stack, 'batch', 'job/*')}]"
    for role in (stack.api.handler.role, stack.starter.handler.role):
        for finding in table_findings(table):
            acknowledge(role, finding, GRANT_REASON)
        acknowledge(
            role,
            batch_jobs,
            "batch:TerminateJob of a cancelled or overdue job's Batch job; Batch job ids are unknown in advance.",
        )
    # The leaderboard sync: reads the bucket and the jobs table's listing index, writes under leaderboards/.
    sync_role = stack.leaderboard_sync.sync.role
    for finding in bucket_findings(bucket, write=True, key_patterns=("*", "leaderboards/*")) + table_findings(table):
        acknowledge(sync_role, finding, GRANT_REASON)
    acknowledge(
        sync_role,
        "IAM5[Resource::*]",
        "cloudwatch:PutMetricData supports no resource-level permissions; a cloudwatch:namespace "
        "condition limits it to this deployment's namespace.",
    )
    # prepare: reads and writes the whole bucket (it fills the competition cache).
    for finding in bucket_findings(bucket, write=True, key_patterns=("*",)) + table_findings(table):
        acknowledge(stack.training.prepare_role, finding, GRANT_REASON)
    # training jobs: read the bucket, write attempt and blend files only.
    train_patterns = ("*", *TRAIN_WRITE_KEY_PATTERNS)
    for finding in bucket_findings(bucket, write=True, key_patterns=train_patterns) + table_findings(table):
        acknowledge(stack.training.train_access_role, finding, GRANT_REASON)
    machine_name = '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"' + _logical_id(stack.pipeline.state_machine) + '"}]}]}'
    for role in (stack.api.handler.role, stack.starter.handler.role):
        acknowledge(
            role,
            f"IAM5[Resource::{_arn_finding(stack, 'states', f'execution:{machine_name}:*')}]",
            "Stop, describe and read the history of the executions of this stack's state machine only; "
            "execution names are drawn per job, unknown in advance.",
        )

    machine = stack.pipeline.state_machine
    for finding in invoke_findings(step.function for step in stack.pipeline.steps.values()):
        acknowledge(machine, finding, "grant_invoke: the step Lambdas of this stack, any version.")
    acknowledge(
        machine,
        "IAM5[Resource::*]",
        "Actions without resource-level permissions: batch:DescribeJobs "
        "(following submitJob.sync jobs), X-Ray tracing and CloudWatch Logs delivery of execution logs; "
        "tests/infra checks that no other action gets Resource '*'.",
    )
    acknowledge(
        machine,
        f"IAM5[Resource::{_arn_finding(stack, 'batch', 'job/*')}]",
        "batch:TerminateJob on jobs this machine submits; Batch job ids are unknown in advance.",
    )

    training = stack.training
    for definition in (training.prepare_job_definition, training.cpu_job_definition, training.gpu_job_definition):
        if definition is not None and definition.container.execution_role is not None:
            acknowledge(
                definition.container.execution_role,
                "IAM5[Resource::*]",
                "ecr:GetAuthorizationToken supports no resource-level permissions; the image pull needs it.",
            )

    gpu_environment = stack.training.gpu_environment
    if gpu_environment is not None:
        acknowledge(
            gpu_environment,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]",
            "The ECS container-instance role AWS Batch documents for EC2 compute environments.",
        )

    api = stack.api.rest_api
    acknowledge(api, "APIG2", "The FastAPI app validates every request body with pydantic and answers 422.")
    acknowledge(
        api,
        "APIG3",
        "No WAF: one API key behind a throttled usage plan with a daily quota; a web ACL "
        "costs at least $5 a month plus per-request charges.",
    )
    acknowledge(
        api,
        "APIG4",
        "Callers authenticate with the usage plan's API key (x-api-key header), "
        "required on every method but GET /health.",
    )
    acknowledge(api, "COG4", "No user pool: a single-tenant service whose callers hold the API key.")
    acknowledge(
        api,
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
        "The account-level role API Gateway needs to write access and execution logs, with the managed "
        "policy AWS documents for it.",
    )


def apply_nag_checks(stack: KaggleSolverStack) -> None:
    """Run AwsSolutionsChecks when `stack` is synthesized: an unacknowledged error fails synthesis."""
    acknowledge_stack_findings(stack)
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks(stack, verbose=True))
