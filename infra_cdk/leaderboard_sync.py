"""The leaderboard sync: an EventBridge schedule → one Lambda at a time, and the staleness alarm."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from batch_agent.service import names
from infra_cdk.environments import DeploymentSettings
from infra_cdk.functions import ServiceFunction

SYNC_INTERVAL = cdk.Duration.minutes(5)
# A run stops starting competitions after BUDGET; the timeout leaves room for the one in flight.
SYNC_BUDGET = cdk.Duration.minutes(4)
SYNC_TIMEOUT = cdk.Duration.minutes(10)
# The alarm fires when the stalest snapshot is older than this many intervals, or no run reports.
STALE_AFTER_INTERVALS = 3


def sync_environment(
    *, bucket: s3.IBucket, table: dynamodb.ITableV2, kaggle_secret: secretsmanager.ISecret, prefix: str
) -> dict[str, str]:
    """The variables LeaderboardSyncSettings reads."""
    return {
        names.ENV_JOBS_TABLE: table.table_name,
        names.ENV_ARTIFACTS_BUCKET: bucket.bucket_name,
        names.ENV_KAGGLE_SECRET_ARN: kaggle_secret.secret_arn,
        names.ENV_METRICS_NAMESPACE: names.metrics_namespace(prefix),
        names.ENV_SYNC_BUDGET_S: str(SYNC_BUDGET.to_seconds()),
    }


class LeaderboardSync(Construct):
    """Every 5 minutes the sync Lambda (reserved concurrency 1) refreshes the tracked leaderboards.

    It reads the Kaggle secret and the jobs table, reads the bucket and writes only
    under leaderboards/. Its staleness metric feeds an alarm on the existing topic.
    """

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
        kaggle_secret: secretsmanager.ISecret,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = settings.prefix
        namespace = names.metrics_namespace(prefix)
        self.sync = ServiceFunction(
            self,
            "Function",
            settings=settings,
            base_name=names.LEADERBOARD_SYNC_FUNCTION,
            handler=names.LEADERBOARD_SYNC_HANDLER,
            code=code,
            layer=layer,
            environment=sync_environment(bucket=bucket, table=table, kaggle_secret=kaggle_secret, prefix=prefix),
            timeout=SYNC_TIMEOUT,
            memory_mib=1024,
        )
        function = self.sync.function
        # One run at a time: a tick that finds a run still going is throttled, then dropped
        # (no retries, a minute of event age at most) instead of queueing up behind it.
        cfn_function = function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.reserved_concurrent_executions = 1
        function.configure_async_invoke(retry_attempts=0, max_event_age=cdk.Duration.minutes(1))

        bucket.grant_read(self.sync.role)
        bucket.grant_put(self.sync.role, f"{names.LEADERBOARD_PREFIX}*")
        table.grant_read_data(self.sync.role)
        kaggle_secret.grant_read(self.sync.role)
        # PutMetricData has no resource-level permission: the namespace condition scopes it.
        self.sync.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
            )
        )

        self.rule = events.Rule(
            self,
            "Schedule",
            rule_name=names.resource_name(prefix, names.LEADERBOARD_SYNC_FUNCTION),
            description="Refresh the tracked Kaggle leaderboards",
            schedule=events.Schedule.rate(SYNC_INTERVAL),
            targets=[targets.LambdaFunction(function, retry_attempts=0, max_event_age=cdk.Duration.minutes(1))],
        )

        stale_after = SYNC_INTERVAL.to_seconds() * STALE_AFTER_INTERVALS
        self.stale_alarm = cloudwatch.Alarm(
            self,
            "StaleLeaderboards",
            alarm_name=names.resource_name(prefix, "stale-leaderboards"),
            alarm_description=(
                f"A tracked leaderboard snapshot is older than {STALE_AFTER_INTERVALS} sync intervals, "
                "or the sync reported nothing for that long"
            ),
            metric=cloudwatch.Metric(
                namespace=namespace,
                metric_name=names.METRIC_OLDEST_SNAPSHOT_AGE,
                statistic="Maximum",
                period=cdk.Duration.seconds(stale_after),
            ),
            threshold=stale_after,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            # No data point for 3 intervals means the sync is not running: that is stale too.
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        self.stale_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
