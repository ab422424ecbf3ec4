"""One way to make every Lambda of the service: same code asset, layer, runtime, logs and role shape."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from batch_agent.service import names
from infra_cdk.environments import DeploymentSettings
from infra_cdk.lambda_bundle import ARCHITECTURE, RUNTIME
from infra_cdk.storage import log_retention, removal_policy


class ServiceFunction(Construct):
    """A Lambda with its own log group (with retention) and a role that may write only to that group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploymentSettings,
        base_name: str,
        handler: str,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        environment: Mapping[str, str],
        timeout: cdk.Duration,
        memory_mib: int = 512,
        ephemeral_storage_mib: int = 512,
    ) -> None:
        super().__init__(scope, construct_id)
        function_name = names.resource_name(settings.prefix, base_name)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=log_retention(settings),
            removal_policy=removal_policy(settings),
        )
        # A role of our own instead of AWSLambdaBasicExecutionRole: log writes scoped to this group.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Lambda {function_name}",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            layers=[layer],
            environment=dict(environment),
            timeout=timeout,
            memory_size=memory_mib,
            ephemeral_storage_size=cdk.Size.mebibytes(ephemeral_storage_mib),
            role=self.role,
            log_group=self.log_group,
        )
