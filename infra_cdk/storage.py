"""Where jobs live: the artifacts bucket (data, programs, logs, submissions) and the jobs table."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from batch_agent.service import names
from infra_cdk.environments import LOG_RETENTION_DAYS, DeploymentSettings

# Epoch seconds after which DynamoDB deletes a job record; the runtime writes it
# when it creates a job (left unset, a record is kept).
JOBS_TTL_ATTRIBUTE = "expires_at"
JOBS_STATUS_ATTRIBUTE = "status"
JOBS_LISTING_ATTRIBUTE = "listing"


# logs.RetentionDays members in the order of LOG_RETENTION_DAYS.
_RETENTION_NAMES = (
    "ONE_DAY",
    "THREE_DAYS",
    "FIVE_DAYS",
    "ONE_WEEK",
    "TWO_WEEKS",
    "ONE_MONTH",
    "TWO_MONTHS",
    "THREE_MONTHS",
    "FOUR_MONTHS",
    "FIVE_MONTHS",
    "SIX_MONTHS",
    "ONE_YEAR",
    "THIRTEEN_MONTHS",
    "EIGHTEEN_MONTHS",
    "TWO_YEARS",
    "THREE_YEARS",
    "FIVE_YEARS",
    "SIX_YEARS",
    "SEVEN_YEARS",
    "EIGHT_YEARS",
    "NINE_YEARS",
    "TEN_YEARS",
)


def log_retention(settings: DeploymentSettings) -> logs.RetentionDays:
    """The environment's log retention as the CDK enum."""
    by_days = dict(zip(LOG_RETENTION_DAYS, _RETENTION_NAMES, strict=True))
    return logs.RetentionDays[by_days[settings.log_retention_days]]


def removal_policy(settings: DeploymentSettings) -> cdk.RemovalPolicy:
    return cdk.RemovalPolicy.DESTROY if settings.removal_policy == "destroy" else cdk.RemovalPolicy.RETAIN


class JobStorage(Construct):
    """The artifacts bucket with its access-log bucket, and the jobs table with its listing indexes."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploymentSettings) -> None:
        super().__init__(scope, construct_id)
        policy = removal_policy(settings)
        destroy = policy == cdk.RemovalPolicy.DESTROY
        bucket_name = names.resource_name(settings.prefix, names.ARTIFACTS_BUCKET)
        if settings.account_suffixed_bucket:
            # Bucket names are global across all AWS accounts.
            bucket_name = f"{bucket_name}-{cdk.Aws.ACCOUNT_ID}"

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(settings.log_retention_days))],
            removal_policy=policy,
            auto_delete_objects=destroy,
        )
        self.bucket = s3.Bucket(
            self,
            "Artifacts",
            bucket_name=bucket_name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-job-artifacts",
                    prefix=names.JOBS_PREFIX,
                    expiration=cdk.Duration.days(settings.artifact_expiry_days),
                ),
                # Competition files can be downloaded again; keep the cache as long as job artifacts.
                s3.LifecycleRule(
                    id="expire-competition-cache",
                    prefix=names.CACHE_PREFIX,
                    expiration=cdk.Duration.days(settings.artifact_expiry_days),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(1)
                ),
            ],
            removal_policy=policy,
            auto_delete_objects=destroy,
        )

        sort_key = dynamodb.Attribute(name=names.JOBS_SORT_ATTRIBUTE, type=dynamodb.AttributeType.STRING)
        self.table = dynamodb.TableV2(
            self,
            "Jobs",
            table_name=names.resource_name(settings.prefix, names.JOBS_TABLE),
            partition_key=dynamodb.Attribute(name=names.JOBS_TABLE_KEY, type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=JOBS_TTL_ATTRIBUTE,
            # New jobs reach the starter through the stream (the outbox; batch_agent.service.job_starter).
            dynamo_stream=dynamodb.StreamViewType.NEW_IMAGE,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=names.JOBS_BY_STATUS_INDEX,
                    partition_key=dynamodb.Attribute(name=JOBS_STATUS_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
                    sort_key=sort_key,
                ),
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=names.JOBS_BY_CREATED_INDEX,
                    partition_key=dynamodb.Attribute(name=JOBS_LISTING_ATTRIBUTE, type=dynamodb.AttributeType.STRING),
                    sort_key=sort_key,
                ),
            ],
            removal_policy=policy,
            deletion_protection=not destroy,
        )
