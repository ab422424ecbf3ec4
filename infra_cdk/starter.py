"""The starter: the jobs table's stream starts each new job's execution; a schedule sweeps unfinished jobs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from batch_agent.service import names
from infra_cdk.api import execution_arns
from infra_cdk.environments import DeploymentSettings
from infra_cdk.functions import ServiceFunction

# How often the sweep runs: a job ends at most this long after its deadline (time limit + grace).
SWEEP_INTERVAL = cdk.Duration.minutes(5)
STARTER_TIMEOUT = cdk.Duration.minutes(5)
# Past its time limit plus this, a job still unfinished is stopped and FAILED (PipelineSettings.deadline_grace_s).
DEADLINE_GRACE_S = 900


def starter_environment(
    *, bucket: s3.IBucket, table: dynamodb.ITableV2, state_machine: sfn.IStateMachine
) -> dict[str, str]:
    """The variables StarterSettings reads."""
    return {
        names.ENV_JOBS_TABLE: table.table_name,
        names.ENV_ARTIFACTS_BUCKET: bucket.bucket_name,
        names.ENV_STATE_MACHINE_ARN: state_machine.state_machine_arn,
        names.ENV_DEADLINE_GRACE_S: str(DEADLINE_GRACE_S),
    }


class JobStarter(Construct):
    """The starter Lambda, its stream trigger (new items only) and its 5-minute sweep schedule."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploymentSettings,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        bucket: s3.IBucket,
        table: dynamodb.ITableV2,
        state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = ServiceFunction(
            self,
            "Handler",
            settings=settings,
            base_name=names.STARTER_FUNCTION,
            handler=names.STARTER_HANDLER,
            code=code,
            layer=layer,
            environment=starter_environment(bucket=bucket, table=table, state_machine=state_machine),
            timeout=STARTER_TIMEOUT,
            memory_mib=512,
        )
        role = self.handler.role
        stack = cdk.Stack.of(self)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"],
                resources=[table.table_arn, f"{table.table_arn}/index/*"],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine.state_machine_arn])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["states:StopExecution", "states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[execution_arns(state_machine)],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["batch:TerminateJob"],
                resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
            )
        )
        self.handler.function.add_event_source(
            event_sources.DynamoEventSource(
                table,  # type: ignore[arg-type]  # a TableV2 with a stream is a stream source
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=50,
                retry_attempts=10,
                report_batch_item_failures=True,
                filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.is_equal("INSERT")})],
            )
        )
        self.schedule = events.Rule(
            self,
            "Sweep",
            rule_name=names.resource_name(settings.prefix, "sweep"),
            description="Start jobs left in the outbox, fail jobs past their time limit or whose execution ended",
            schedule=events.Schedule.rate(SWEEP_INTERVAL),
            targets=[targets.LambdaFunction(self.handler.function)],
        )
