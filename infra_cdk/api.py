"""The REST API: API Gateway → the FastAPI Lambda, every method behind an API key and a usage plan."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from batch_agent.service import names
from infra_cdk.environments import DeploymentSettings
from infra_cdk.functions import ServiceFunction
from infra_cdk.storage import log_retention, removal_policy

STAGE_NAME = "v1"
# The FastAPI app's routes (lambdas/api/app.py), each (path, method, API key required).
# Unknown paths never reach the Lambda; tests/infra checks this list against the app.
# The dashboard's page and files carry no secret: they load without a key and send the key the
# user gives the page with each API call.
ROUTES: tuple[tuple[str, str, bool], ...] = (
    ("/", "GET", False),
    ("/static/{name}", "GET", False),
    ("/health", "GET", False),
    ("/run", "POST", True),
    ("/status/{job_id}", "GET", True),
    ("/result/{job_id}/submission.csv", "GET", True),
    ("/logs/{job_id}", "GET", True),
    ("/jobs", "GET", True),
    ("/leaderboards/{slug}", "GET", True),
    ("/leaderboards/{slug}", "POST", True),
    ("/jobs/{job_id}", "DELETE", True),
    ("/jobs/{job_id}/attempts/{number}", "GET", True),
)
API_TIMEOUT = cdk.Duration.seconds(29)  # API Gateway's own integration limit


def api_environment(
    *, bucket: s3.IBucket, table: dynamodb.ITableV2, state_machine: sfn.IStateMachine, retention_days: int
) -> dict[str, str]:
    """The variables ApiSettings reads. No KAGGLE_SOLVER_API_KEY: in AWS the usage plan checks keys.

    Job records expire (the table's TTL) when the artifacts they link to do.
    """
    return {
        names.ENV_JOBS_TABLE: table.table_name,
        names.ENV_ARTIFACTS_BUCKET: bucket.bucket_name,
        names.ENV_STATE_MACHINE_ARN: state_machine.state_machine_arn,
        names.ENV_JOB_RETENTION_DAYS: str(retention_days),
    }


def allow_api_calls(
    role: iam.IRole, *, bucket: s3.IBucket, table: dynamodb.ITableV2, state_machine: sfn.IStateMachine
) -> None:
    """Exactly what job_requests and leaderboard_requests call: no StartExecution, object writes only under tracked/.

    Reads and presigns jobs/{id}/..., deletes them on a purge; reads, records, cancels and
    deletes job items; stops an execution (reading its history for the Batch job) and
    terminates that job on a cancel. The starter, not the API, starts executions.
    """
    stack = cdk.Stack.of(role)
    jobs_objects = bucket.arn_for_objects(f"{names.JOBS_PREFIX}*")
    statements = [
        iam.PolicyStatement(actions=["s3:GetObject", "s3:DeleteObject"], resources=[jobs_objects]),
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{names.JOBS_PREFIX}*"]}},
        ),
        # GET /status and GET /leaderboards read the sync's snapshots; POST /leaderboards/{slug} marks a
        # competition as tracked (the snapshots themselves are the sync's alone).
        iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{names.LEADERBOARD_PREFIX}*")]
        ),
        iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[bucket.arn_for_objects(f"{names.TRACKED_PREFIX}*")]
        ),
        iam.PolicyStatement(
            actions=[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:Query",
            ],
            resources=[table.table_arn, f"{table.table_arn}/index/*"],
        ),
        iam.PolicyStatement(
            actions=["states:StopExecution", "states:DescribeExecution", "states:GetExecutionHistory"],
            resources=[execution_arns(state_machine)],
        ),
        iam.PolicyStatement(
            actions=["batch:TerminateJob"],
            resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
        ),
    ]
    for statement in statements:
        role.add_to_principal_policy(statement)


def execution_arns(state_machine: sfn.IStateMachine) -> str:
    """Every execution of this state machine (names are drawn per job)."""
    stack = cdk.Stack.of(state_machine)
    name = cdk.Fn.select(6, cdk.Fn.split(":", state_machine.state_machine_arn))
    return stack.format_arn(
        service="states",
        resource="execution",
        resource_name=f"{name}:*",
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )


class ServiceApi(Construct):
    """API Lambda, REST API with access logs and stage throttling, one API key in one usage plan."""

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
        prefix = settings.prefix
        self.handler = ServiceFunction(
            self,
            "Handler",
            settings=settings,
            base_name=names.API_FUNCTION,
            handler=names.API_HANDLER,
            code=code,
            layer=layer,
            environment=api_environment(bucket=bucket, table=table, state_machine=state_machine,
                                        retention_days=settings.artifact_expiry_days),
            timeout=API_TIMEOUT,
            memory_mib=settings.api_memory_mib,
        )
        allow_api_calls(self.handler.role, bucket=bucket, table=table, state_machine=state_machine)
        target: lambda_.IFunction = self.handler.function
        if settings.api_provisioned_concurrency:
            # Warm instances answer without a cold start; API Gateway calls the alias that holds them.
            target = self.handler.function.add_alias(
                "live", provisioned_concurrent_executions=settings.api_provisioned_concurrency
            )

        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(settings),
            removal_policy=removal_policy(settings),
        )
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=names.resource_name(prefix, names.API_FUNCTION),
            description="kaggle-solver: POST /run starts a job; GET /status/{job_id} follows it",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            api_key_source_type=apigateway.ApiKeySourceType.HEADER,
            # API Gateway writes any log (access or execution) only once the region's account
            # settings name a CloudWatch role. The role is kept when a stack is deleted, since
            # other APIs of the account may rely on it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigateway.LogGroupLogDestination(access_logs),
                access_log_format=apigateway.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                throttling_rate_limit=settings.api_rate_limit,
                throttling_burst_limit=settings.api_burst_limit,
                tracing_enabled=True,
            ),
            default_method_options=apigateway.MethodOptions(api_key_required=True),
        )
        # Created here so it gets a retention; API Gateway would create it without one.
        self.execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.rest_api.rest_api_id}/{STAGE_NAME}",
            retention=log_retention(settings),
            removal_policy=removal_policy(settings),
        )
        integration = apigateway.LambdaIntegration(target, proxy=True)
        methods: dict[tuple[str, str], apigateway.Method] = {}
        for path, method, key_required in ROUTES:
            methods[(path, method)] = self.rest_api.root.resource_for_path(path).add_method(
                method, integration, api_key_required=key_required
            )

        self.api_key = apigateway.ApiKey(
            self,
            "Key",
            api_key_name=names.resource_name(prefix, "key"),
            description="kaggle-solver API key (x-api-key header)",
        )
        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            name=names.resource_name(prefix, "usage"),
            throttle=apigateway.ThrottleSettings(
                rate_limit=settings.api_rate_limit, burst_limit=settings.api_burst_limit
            ),
            quota=apigateway.QuotaSettings(limit=settings.api_quota_per_day, period=apigateway.Period.DAY),
            api_stages=[
                apigateway.UsagePlanPerApiStage(
                    api=self.rest_api,
                    stage=self.rest_api.deployment_stage,
                    # Jobs cost money, polls do not: POST /run has a rate of its own.
                    throttle=[
                        apigateway.ThrottlingPerMethod(
                            method=methods[("/run", "POST")],
                            throttle=apigateway.ThrottleSettings(
                                rate_limit=settings.api_run_rate_limit, burst_limit=settings.api_run_burst_limit
                            ),
                        )
                    ],
                )
            ],
        )
        self.usage_plan.add_api_key(self.api_key)
