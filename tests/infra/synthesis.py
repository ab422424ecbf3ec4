"""Synthesizing the CDK app in tests: no bundling (no pip, no Docker), cdk-nag checks on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsii prints a banner about Node 20 on every start; the versions are pinned on purpose.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk
from aws_cdk.assertions import Template

from infra_cdk.app import build_stack
from infra_cdk.environments import settings_for
from infra_cdk.stack import KaggleSolverStack

# Contexts every test app gets: skip asset bundling (the dependency layer's pip
# install), keep asset paths in the template so tests can open the staged assets.
TEST_CONTEXT: dict[str, Any] = {"aws:cdk:bundling-stacks": [], "aws:cdk:enable-asset-metadata": True}


@dataclass(frozen=True)
class Synthesized:
    stack: KaggleSolverStack
    template: Template
    outdir: Path

    @property
    def json(self) -> dict[str, Any]:
        return dict(self.template.to_json())

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())  # type: ignore[no-any-return]

    def assets_manifest(self) -> dict[str, Any]:
        return json.loads((self.outdir / f"{self.stack.stack_name}.assets.json").read_text())  # type: ignore[no-any-return]


def synthesize(env: str, outdir: Path, *, change: Callable[[KaggleSolverStack], None] | None = None) -> Synthesized:
    """The environment's stack synthesized into `outdir` (cdk-nag checks included)."""
    app = cdk.App(outdir=str(outdir), context=TEST_CONTEXT)
    stack = build_stack(app, settings_for(env), account=None, region=None)
    if change is not None:
        change(stack)
    app.synth()
    return Synthesized(stack=stack, template=Template.from_stack(stack), outdir=outdir)
