"""Synthesize each environment's stack once per test session."""

from __future__ import annotations

import pytest

from infra_cdk.environments import ENVIRONMENTS
from tests.infra.synthesis import Synthesized, synthesize


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    return {env: synthesize(env, tmp_path_factory.mktemp(f"cdk-{env}")) for env in ENVIRONMENTS}
