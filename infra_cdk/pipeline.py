"""The state machine from statemachine/pipeline.asl.json, its step Lambdas, and the failed-executions alarm."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from batch_agent.service import names
from batch_agent.service.state_machine import ASL_PATH, definition_substitutions
from infra_cdk.environments import DeploymentSettings
from infra_cdk.functions import ServiceFunction
from infra_cdk.storage import log_retention, removal_policy

# Steps that may call Claude (and so read the Anthropic secret); each call may take minutes.
LLM_STEPS = frozenset({names.PLAN_FUNCTION, names.GENERATE_FUNCTION, names.REPAIR_FUNCTION})
LLM_STEP_TIMEOUT = cdk.Duration.minutes(15)
STEP_TIMEOUT = cdk.Duration.minutes(2)
# Lambda's largest /tmp: test files of tabular competitions reach a few GiB.
VALIDATE_EPHEMERAL_MIB = 10240
# The rule Step Functions creates to follow Batch jobs for `submitJob.sync`.
BATCH_SYNC_RULE = "StepFunctionsGetEventsForBatchJobsRule"


def step_environment(
    *, bucket: s3.IBucket, table: dynamodb.ITableV2, anthropic_secret: secretsmanager.ISecret | None
) -> dict[str, str]:
    """The variables StepSettings reads."""
    environment = {names.ENV_JOBS_TABLE: table.table_name, names.ENV_ARTIFACTS_BUCKET: bucket.bucket_name}
    if anthropic_secret is not None:
        environment[names.ENV_ANTHROPIC_SECRET_ARN] = anthropic_secret.secret_arn
    return environment


class Pipeline(Construct):
    """Step Lambdas + the state machine that drives prepare → plan → generate → train → validate → ... ."""

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
        anthropic_secret: secretsmanager.ISecret,
        cpu_queue: batch.IJobQueue,
        prepare_job_definition: batch.IJobDefinition,
        cpu_job_definition: batch.IJobDefinition,
        gpu_queue: batch.IJobQueue | None,
        gpu_job_definition: batch.IJobDefinition | None,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = settings.prefix

        self.steps: dict[str, ServiceFunction] = {}
        for base_name, handler in names.STEP_HANDLERS.items():
            uses_llm = base_name in LLM_STEPS
            secret = anthropic_secret if uses_llm and settings.claude_enabled else None
            step = ServiceFunction(
                self,
                f"{base_name.capitalize()}Step",
                settings=settings,
                base_name=base_name,
                handler=handler,
                code=code,
                layer=layer,
                environment=step_environment(bucket=bucket, table=table, anthropic_secret=secret),
                timeout=LLM_STEP_TIMEOUT if uses_llm else STEP_TIMEOUT,
                memory_mib=1024 if base_name == names.VALIDATE_FUNCTION else 512,
                # Validate downloads the competition's test file and sample submission into /tmp.
                ephemeral_storage_mib=VALIDATE_EPHEMERAL_MIB if base_name == names.VALIDATE_FUNCTION else 512,
            )
            bucket.grant_read(step.role)
            bucket.grant_put(step.role, f"{names.JOBS_PREFIX}*")
            table.grant_read_write_data(step.role)
            if secret is not None:
                secret.grant_read(step.role)
            self.steps[base_name] = step

        # Without GPU capacity the plan's "gpu" choice trains on the CPU queue.
        substitutions = definition_substitutions(
            function_arns={base_name: step.function.function_arn for base_name, step in self.steps.items()},
            cpu_job_queue_arn=cpu_queue.job_queue_arn,
            gpu_job_queue_arn=(gpu_queue or cpu_queue).job_queue_arn,
            prepare_job_definition_arn=prepare_job_definition.job_definition_arn,
            cpu_job_definition_arn=cpu_job_definition.job_definition_arn,
            gpu_job_definition_arn=(gpu_job_definition or cpu_job_definition).job_definition_arn,
            artifacts_bucket_name=bucket.bucket_name,
        )

        log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"/aws/vendedlogs/states/{names.resource_name(prefix, names.STATE_MACHINE)}",
            retention=log_retention(settings),
            removal_policy=removal_policy(settings),
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=names.resource_name(prefix, names.STATE_MACHINE),
            definition_body=sfn.DefinitionBody.from_file(str(ASL_PATH)),
            definition_substitutions=substitutions,
            # No `timeout`: with a definition file CDK does not apply it; the ASL's own TimeoutSeconds
            # bounds every execution, and the starter's sweep ends each job at its time limit plus a grace.
            # X-Ray and log delivery take Resource "*" (AWS offers no narrower scope); see nag.py.
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self.substitutions = substitutions
        for step in self.steps.values():
            step.function.grant_invoke(self.state_machine)
        self._allow_batch_jobs(
            queues=[q for q in (cpu_queue, gpu_queue) if q is not None],
            job_definitions=[
                d for d in (prepare_job_definition, cpu_job_definition, gpu_job_definition) if d is not None
            ],
        )

        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=names.resource_name(prefix, "alarms"),
            enforce_ssl=True,
            master_key=kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
        )
        if settings.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        self.failed_alarm = cloudwatch.Alarm(
            self,
            "FailedExecutions",
            alarm_name=names.resource_name(prefix, "failed-executions"),
            alarm_description="A kaggle-solver job failed, timed out or was aborted",
            metric=cloudwatch.MathExpression(
                expression="failed + timedout + aborted",
                using_metrics={
                    "failed": self.state_machine.metric_failed(period=cdk.Duration.minutes(5)),
                    "timedout": self.state_machine.metric_timed_out(period=cdk.Duration.minutes(5)),
                    "aborted": self.state_machine.metric_aborted(period=cdk.Duration.minutes(5)),
                },
                period=cdk.Duration.minutes(5),
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.failed_alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))

    def _allow_batch_jobs(self, *, queues: list[batch.IJobQueue], job_definitions: list[batch.IJobDefinition]) -> None:
        """What `batch:submitJob.sync` needs: submit to our queues, follow and stop the jobs."""
        stack = cdk.Stack.of(self)
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["batch:SubmitJob"],
                # The exact revisions the definition substitutions name.
                resources=[q.job_queue_arn for q in queues] + [d.job_definition_arn for d in job_definitions],
            )
        )
        # batch:DescribeJobs supports no resource-level permissions: AWS requires "*".
        self.state_machine.add_to_role_policy(iam.PolicyStatement(actions=["batch:DescribeJobs"], resources=["*"]))
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["batch:TerminateJob"],
                resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
            )
        )
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule", resource_name=BATCH_SYNC_RULE)],
            )
        )
