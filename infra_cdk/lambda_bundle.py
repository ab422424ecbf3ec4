"""The Lambda code: the repository's packages as one asset, their dependencies as a layer.

The function asset is the `batch_agent` and `lambdas` source folders (handlers
are dotted paths such as `lambdas.api.handler.handler`), so editing a handler
never re-installs dependencies. The layer holds the runtime dependencies,
pip-installed for the Lambda platform during `cdk synth`/`cdk deploy`: on this
machine with pip (no Docker needed), or in the SAM build image when local pip
is not usable. Synthesis that skips bundling (the tests, `cdk ls`) never
installs anything.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYER_SOURCE = Path(__file__).resolve().parent / "lambda_layer"
REQUIREMENTS_FILE = LAYER_SOURCE / "requirements.txt"

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64
# pip's view of RUNTIME + ARCHITECTURE: binary wheels built for the Lambda image.
PIP_PLATFORM = "manylinux2014_x86_64"
PIP_PYTHON_VERSION = "3.14"

# Everything in the repository except the two packages the Lambdas import.
SOURCE_EXCLUDES = [
    "*",
    ".*",
    "!batch_agent",
    "!batch_agent/**",
    "!lambdas",
    "!lambdas/**",
    "**/__pycache__",
    "**/*.pyc",
]

logger = logging.getLogger(__name__)


def pip_install_command(requirements: str, target: str) -> list[str]:
    """The pip arguments that install `requirements` into `target` for the Lambda runtime."""
    return [
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--requirement",
        requirements,
        "--target",
        target,
        "--platform",
        PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PIP_PYTHON_VERSION,
        "--only-binary=:all:",
    ]


@jsii.implements(cdk.ILocalBundling)
class PipInstallLocally:
    """Builds the layer with this machine's pip; returning False hands over to the Docker image."""

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        target = Path(output_dir) / "python"
        # pip_install_command starts with "pip": run it as a module of this interpreter.
        command = [sys.executable, "-m", *pip_install_command(str(REQUIREMENTS_FILE), str(target))]
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            logger.warning("local pip install of the Lambda layer failed (%s); trying Docker", error)
            shutil.rmtree(target, ignore_errors=True)
            return False
        return True


def function_code() -> lambda_.Code:
    """The handlers and the light agent modules, straight from the working tree."""
    return lambda_.Code.from_asset(str(REPO_ROOT), exclude=SOURCE_EXCLUDES, ignore_mode=cdk.IgnoreMode.GLOB)


def dependencies_layer_code() -> lambda_.Code:
    """The runtime dependencies of the Lambdas, installed into `python/` at bundling time."""
    image = cdk.DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PIP_PYTHON_VERSION}")
    return lambda_.Code.from_asset(
        str(LAYER_SOURCE),
        bundling=cdk.BundlingOptions(
            image=image,
            command=pip_install_command("requirements.txt", "/asset-output/python"),
            # jsii calls try_bundle(output_dir, options) positionally, unlike the typed stub's keywords.
            local=PipInstallLocally(),  # type: ignore[arg-type]
        ),
    )
