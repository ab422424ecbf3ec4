"""The CDK CLI is pinned to a release that reads what aws-cdk-lib 2.27x writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PINNED_CLI = "2.1148.1"


def test_package_json_and_lock_pin_the_cli_exactly() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    assert package["devDependencies"]["aws-cdk"] == PINNED_CLI
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == PINNED_CLI


def test_cdk_json_runs_the_app_module() -> None:
    config = json.loads((REPO_ROOT / "cdk.json").read_text())
    assert config["app"].endswith("-m infra_cdk.app")
    assert config["context"]["env"] == "dev"


@pytest.mark.slow
def test_pinned_cli_synthesizes_the_local_environment(tmp_path: Path) -> None:
    cli = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cli.exists():
        pytest.skip("the pinned CLI is not installed: run `make synth` (npm ci) once")
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True, env=env)
    assert version.stdout.startswith(PINNED_CLI)
    # Bundles the Lambda dependency layer with pip: needs the package index the first time.
    subprocess.run(
        [str(cli), "synth", "-c", "env=local", "--no-notices", "--quiet", "-o", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    template = json.loads((tmp_path / "local-kaggle-solver.template.json").read_text())
    assert any(r["Type"] == "AWS::StepFunctions::StateMachine" for r in template["Resources"].values())
