"""The CDK app: `cdk synth|deploy -c env=dev|prod|local` builds that environment's stack.

cdk.json runs `python -m infra_cdk.app`. The account and region come from the
environment's settings, else from the credentials the CDK CLI runs with.
"""

from __future__ import annotations

import os

import aws_cdk as cdk

from infra_cdk.environments import DeploymentSettings, settings_for
from infra_cdk.nag import apply_nag_checks
from infra_cdk.stack import KaggleSolverStack, stack_name

DEFAULT_ENV = "dev"


def build_stack(
    app: cdk.App, settings: DeploymentSettings, *, account: str | None, region: str | None
) -> KaggleSolverStack:
    """The environment's stack in `app`, with the cdk-nag AwsSolutions checks attached."""
    stack = KaggleSolverStack(
        app,
        stack_name(settings),
        settings=settings,
        env=cdk.Environment(account=settings.account or account, region=settings.region or region),
        description=f"kaggle-solver service ({settings.prefix})",
    )
    cdk.Tags.of(stack).add("app", "kaggle-solver")
    cdk.Tags.of(stack).add("environment", settings.prefix)
    apply_nag_checks(stack)
    return stack


def main() -> None:
    app = cdk.App()
    env_name = app.node.try_get_context("env") or DEFAULT_ENV
    build_stack(
        app,
        settings_for(str(env_name)),
        # Set by the CDK CLI from its credentials; unset means an environment-agnostic template.
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=os.environ.get("CDK_DEFAULT_REGION"),
    )
    app.synth()


if __name__ == "__main__":
    main()
