"""Every deployment environment's settings, in one place.

`cdk deploy -c env=dev` picks one of ENVIRONMENTS; nothing else in the CDK app
hard-codes a size, a limit or a retention. Stdlib + pydantic only, so tests and
the README can read the same values the stacks use.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Single-GPU NVIDIA instances the GPU compute environment may launch: one job asks for one GPU.
GPU_INSTANCE_FAMILIES = ("g5", "g6", "g6e")


class DeploymentSettings(BaseModel):
    """What differs between environments: names, account, capacity, limits, retention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Resource names are "{prefix}-kaggle-solver-{base}" (batch_agent.service.names.resource_name).
    prefix: str = Field(pattern=r"^[a-z][a-z0-9]{1,11}$")
    # None: the account and region of the credentials the CDK CLI runs with.
    account: str | None = Field(default=None, pattern=r"^\d{12}$")
    region: str | None = None
    # S3 bucket names are global: suffix the artifacts bucket with the account id.
    # Off only for LocalStack, whose names must equal the local emulated stack's.
    account_suffixed_bucket: bool = True

    # AWS Batch capacity. max_vcpus bounds what the queues can spend at once.
    cpu_max_vcpus: int = Field(ge=1, le=4096)
    cpu_spot: bool
    cpu_job_vcpus: float = Field(default=4, gt=0, le=16)
    cpu_job_memory_mib: int = Field(default=16384, ge=512, le=122880)
    gpu_enabled: bool
    gpu_max_vcpus: int = Field(ge=0, le=4096)
    gpu_spot: bool
    gpu_instance_types: tuple[str, ...]
    gpu_job_vcpus: int = Field(default=4, ge=1)
    # A g5.xlarge/g6.xlarge has 16 GiB; the ECS agent and OS keep about 1 GiB of it.
    gpu_job_memory_mib: int = Field(default=14336, ge=512)
    # Wall-clock limit of one training attempt; Batch kills the job after it.
    job_timeout_minutes: int = Field(ge=5, le=24 * 60)
    # Price of one job-hour, for the cost each run reports (us-east-1 list prices, November 2026):
    # Fargate 4 vCPU + 16 GiB ≈ $0.23 on demand, ≈ $0.07 on spot; g5.xlarge ≈ $1.01 on demand, ≈ $0.40 spot.
    cpu_job_usd_per_hour: float = Field(default=0.23, ge=0)
    gpu_job_usd_per_hour: float = Field(default=1.01, ge=0)

    # API Gateway usage plan for the one API key. Rate and burst hold 50 clients polling at once
    # (each polling about once a second); POST /run has its own, lower rate, so the
    # number of jobs is what the key is limited on, not the polls.
    api_rate_limit: float = Field(gt=0)
    api_burst_limit: int = Field(ge=1)
    api_quota_per_day: int = Field(ge=1)
    api_run_rate_limit: float = Field(default=2, gt=0)
    api_run_burst_limit: int = Field(default=50, ge=1)
    # The API Lambda: memory sets its CPU share (cold start and request time); warm instances kept ready.
    api_memory_mib: int = Field(default=1024, ge=128, le=10240)
    api_provisioned_concurrency: int = Field(default=0, ge=0)
    # GPU hosts: root volume for the image (~15 GiB), the competition's files and the programs' outputs.
    gpu_root_volume_gib: int = Field(default=200, ge=30, le=16384)
    # A job RUNNABLE this long (no capacity) is cancelled by its queue; the sweep then fails the job.
    runnable_time_limit_minutes: int = Field(default=60, ge=10, le=24 * 60)

    log_retention_days: int
    # Job artifacts (data, programs, logs, submissions) expire after this many days.
    artifact_expiry_days: int = Field(ge=1)
    removal_policy: Literal["destroy", "retain"]
    # Give the plan/generate/repair steps the Anthropic secret (Claude writes the
    # programs once the secret holds a key; templates otherwise).
    claude_enabled: bool = True
    # Where the failed-executions alarm sends mail; None: the SNS topic has no subscriber.
    alarm_email: str | None = None

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs has no {value}-day retention; choose one of {LOG_RETENTION_DAYS}")
        return value

    @field_validator("gpu_instance_types")
    @classmethod
    def _gpu_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for instance_type in value:
            family = instance_type.split(".", 1)[0]
            if family not in GPU_INSTANCE_FAMILIES:
                raise ValueError(f"{instance_type} is not in the GPU families {GPU_INSTANCE_FAMILIES}")
        return value

    @model_validator(mode="after")
    def _gpu_capacity(self) -> DeploymentSettings:
        if self.gpu_enabled and (not self.gpu_instance_types or self.gpu_max_vcpus < self.gpu_job_vcpus):
            raise ValueError("gpu_enabled needs gpu_instance_types and gpu_max_vcpus >= gpu_job_vcpus")
        return self


ENVIRONMENTS: dict[str, DeploymentSettings] = {
    # Small and disposable: spot everywhere, data gone with the stack.
    "dev": DeploymentSettings(
        prefix="dev",
        cpu_max_vcpus=16,
        cpu_spot=True,
        gpu_enabled=True,
        gpu_max_vcpus=8,
        gpu_spot=True,
        gpu_instance_types=("g5.xlarge", "g6.xlarge"),
        job_timeout_minutes=60,
        cpu_job_usd_per_hour=0.07,
        gpu_job_usd_per_hour=0.40,
        api_rate_limit=100,
        api_burst_limit=200,
        api_quota_per_day=200_000,
        log_retention_days=14,
        artifact_expiry_days=14,
        removal_policy="destroy",
    ),
    # Room for a few runs at once; on-demand GPUs so a long training is not reclaimed.
    "prod": DeploymentSettings(
        prefix="prod",
        cpu_max_vcpus=64,
        cpu_spot=True,
        gpu_enabled=True,
        gpu_max_vcpus=32,
        gpu_spot=False,
        gpu_instance_types=("g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge"),
        job_timeout_minutes=180,
        api_rate_limit=200,
        api_burst_limit=400,
        api_quota_per_day=500_000,
        api_run_rate_limit=5,
        api_run_burst_limit=100,
        api_provisioned_concurrency=2,
        log_retention_days=90,
        artifact_expiry_days=90,
        removal_policy="retain",
    ),
    # `cdklocal deploy -c env=local` against LocalStack: the names the local emulated
    # stack uses (prefix "local"), no GPU, nothing kept.
    "local": DeploymentSettings(
        prefix="local",
        account_suffixed_bucket=False,
        cpu_max_vcpus=4,
        cpu_spot=False,
        gpu_enabled=False,
        gpu_max_vcpus=0,
        gpu_spot=False,
        gpu_instance_types=(),
        job_timeout_minutes=30,
        api_rate_limit=100,
        api_burst_limit=200,
        api_quota_per_day=200_000,
        log_retention_days=1,
        artifact_expiry_days=1,
        removal_policy="destroy",
        claude_enabled=False,
    ),
}


def settings_for(env: str) -> DeploymentSettings:
    """The settings of environment `env`; ValueError naming the known ones otherwise."""
    try:
        return ENVIRONMENTS[env]
    except KeyError:
        raise ValueError(f"unknown environment {env!r}; choose one of {sorted(ENVIRONMENTS)}") from None
