"""Names shared by the runtime code, the local emulated stack and the CDK app.

One place for the resource names and the environment variable names each
deployable reads, so the CDK app and the runtime settings cannot drift apart.
Stdlib only: Lambdas and the CDK app import it.
"""

from __future__ import annotations

# Base names of AWS resources; the CDK app prefixes them per environment
# (e.g. "dev-kaggle-solver-jobs"), the local stack uses them with the prefix "local".
APP = "kaggle-solver"
JOBS_TABLE = "jobs"
ARTIFACTS_BUCKET = "artifacts"
STATE_MACHINE = "pipeline"
CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
CPU_JOB_DEFINITION = "train-cpu"
GPU_JOB_DEFINITION = "train-gpu"
KAGGLE_SECRET = "kaggle"
ANTHROPIC_SECRET = "anthropic"


def resource_name(prefix: str, base: str) -> str:
    """The deployed name of a resource: '{prefix}-kaggle-solver-{base}'."""
    return f"{prefix}-{APP}-{base}"
