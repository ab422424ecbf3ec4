"""The whole service in one stack per environment."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from batch_agent.service import names
from infra_cdk.api import ServiceApi
from infra_cdk.environments import DeploymentSettings
from infra_cdk.lambda_bundle import ARCHITECTURE, RUNTIME, dependencies_layer_code, function_code
from infra_cdk.leaderboard_sync import LeaderboardSync
from infra_cdk.pipeline import Pipeline
from infra_cdk.starter import JobStarter
from infra_cdk.storage import JobStorage, removal_policy
from infra_cdk.training import TrainingCompute


def stack_name(settings: DeploymentSettings) -> str:
    return f"{settings.prefix}-{names.APP}"


class KaggleSolverStack(cdk.Stack):
    """API → Step Functions → Lambda steps + Batch training, with storage, secrets and alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploymentSettings, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        prefix = settings.prefix
        self.settings = settings
        policy = removal_policy(settings)

        self.storage = JobStorage(self, "Storage", settings=settings)

        # Created with placeholders; the README says how to fill them. Third-party API tokens:
        # nothing in AWS can rotate them.
        self.kaggle_secret = secretsmanager.Secret(
            self,
            "KaggleSecret",
            secret_name=names.resource_name(prefix, names.KAGGLE_SECRET),
            description='Kaggle API credentials as JSON: {"username": "...", "key": "..."}',
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"username": "REPLACE_ME"}),
                generate_string_key="key",
                exclude_punctuation=True,
            ),
            removal_policy=policy,
        )
        self.anthropic_secret = secretsmanager.Secret(
            self,
            "AnthropicSecret",
            secret_name=names.resource_name(prefix, names.ANTHROPIC_SECRET),
            description="Anthropic API key (the plain key string); the steps use templates while it is unusable",
            removal_policy=policy,
        )

        self.training = TrainingCompute(
            self,
            "Training",
            settings=settings,
            bucket=self.storage.bucket,
            table=self.storage.table,
            kaggle_secret=self.kaggle_secret,
        )

        code = function_code()
        self.dependency_layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            layer_version_name=names.resource_name(prefix, "dependencies"),
            code=dependencies_layer_code(),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Runtime dependencies of the kaggle-solver Lambdas",
            removal_policy=policy,
        )
        self.pipeline = Pipeline(
            self,
            "Pipeline",
            settings=settings,
            code=code,
            layer=self.dependency_layer,
            bucket=self.storage.bucket,
            table=self.storage.table,
            anthropic_secret=self.anthropic_secret,
            cpu_queue=self.training.cpu_queue,
            prepare_job_definition=self.training.prepare_job_definition,
            cpu_job_definition=self.training.cpu_job_definition,
            gpu_queue=self.training.gpu_queue,
            gpu_job_definition=self.training.gpu_job_definition,
        )
        self.api = ServiceApi(
            self,
            "Api",
            settings=settings,
            code=code,
            layer=self.dependency_layer,
            bucket=self.storage.bucket,
            table=self.storage.table,
            state_machine=self.pipeline.state_machine,
        )
        self.leaderboard_sync = LeaderboardSync(
            self,
            "LeaderboardSync",
            settings=settings,
            code=code,
            layer=self.dependency_layer,
            bucket=self.storage.bucket,
            table=self.storage.table,
            kaggle_secret=self.kaggle_secret,
            alarm_topic=self.pipeline.alarm_topic,
        )

        self.starter = JobStarter(
            self,
            "Starter",
            settings=settings,
            code=code,
            layer=self.dependency_layer,
            bucket=self.storage.bucket,
            table=self.storage.table,
            state_machine=self.pipeline.state_machine,
        )
        cdk.CfnOutput(self, "ApiUrl", value=self.api.rest_api.url)
        cdk.CfnOutput(
            self,
            "ApiKeyId",
            value=self.api.api_key.key_id,
            description="aws apigateway get-api-key --include-value --api-key <id>",
        )
        cdk.CfnOutput(self, "ArtifactsBucket", value=self.storage.bucket.bucket_name)
        cdk.CfnOutput(self, "JobsTable", value=self.storage.table.table_name)
        cdk.CfnOutput(self, "StateMachineArn", value=self.pipeline.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "KaggleSecretName", value=self.kaggle_secret.secret_name)
        cdk.CfnOutput(self, "AnthropicSecretName", value=self.anthropic_secret.secret_name)
