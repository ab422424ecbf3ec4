"""Settings of each service deployable, read once from the environment and validated at start.

One pydantic model per deployable: the API Lambda, the step Lambdas, the Batch
container. Variable names are ``KAGGLE_SOLVER_<FIELD>`` (see ``names.ENV_*``);
logic receives these objects and never reads ``os.environ`` itself. Stdlib +
pydantic only: Lambdas import this module.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from batch_agent.service.names import ENV_PREFIX


class _ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    jobs_table: str = Field(min_length=1)
    artifacts_bucket: str = Field(min_length=1)


class PipelineSettings(_ServiceSettings):
    """What starts and watches executions: the API and the starter."""

    state_machine_arn: str = Field(min_length=1)
    # A job not updated for this long is checked against its execution: one that ended without
    # recording a result (timed out, aborted) is marked FAILED, so no job stays RUNNING.
    reconcile_after_s: int = Field(default=120, ge=0)
    # A job still waiting in the outbox this long after it was recorded is started by the sweep.
    start_after_s: int = Field(default=30, ge=0)
    # A job still QUEUED or RUNNING this long past its time limit is stopped and marked FAILED.
    deadline_grace_s: int = Field(default=900, ge=0)


class StarterSettings(PipelineSettings):
    """The starter: the jobs table's stream starts executions; a schedule sweeps unfinished jobs."""


class ApiSettings(PipelineSettings):
    """The API Lambda (and the same app served by uvicorn locally)."""

    # Checked by the app only when set; in AWS the API Gateway usage plan holds the keys.
    api_key: str | None = None
    presign_expiry_s: int = Field(default=300, ge=10, le=3600)
    default_time_limit: int = Field(default=3600, ge=10)
    max_time_limit: int = Field(default=24 * 3600, ge=10)
    default_max_attempts: int = Field(default=4, ge=1)
    max_attempts_limit: int = Field(default=20, ge=1)
    # Job records carry expires_at (epoch seconds, the table's TTL attribute) this many days out; None: kept.
    job_retention_days: int | None = Field(default=None, ge=1)
    # A leaderboard snapshot read for GET /status is reused this long (the sync refreshes every 5 minutes).
    leaderboard_cache_s: float = Field(default=30.0, ge=0)
    # An ended job's record read for GET /status is reused this long by the instance that read it
    # (0: every poll reads). Bounds how late another instance's purge or late accounting shows.
    finished_job_cache_s: float = Field(default=10.0, ge=0)
    # Warm the DynamoDB client with one read when the app builds its clients (Lambda's init phase).
    warm_clients: bool = True


class StepSettings(_ServiceSettings):
    """The state machine's Lambda steps: plan, generate, validate, repair, finish, fail."""

    # Secrets Manager ARN of the Anthropic key; Claude writes the programs when set.
    anthropic_secret_arn: str | None = None
    # auto (Claude when a key is configured, templates otherwise) | template | claude
    # | "package.module:attr" naming a ProgramAuthor factory.
    author: str = "auto"


class ContainerSettings(_ServiceSettings):
    """The Batch container: `python -m batch_agent prepare|train`."""

    memory_limit_mb: int = Field(default=12_000, ge=256)
    work_dir: str = "/tmp/kaggle-solver"
    # A folder holding competitions by slug ({dir}/{slug}/train.csv ...), checked
    # before the S3 cache; lets a machine run offline with files filled by hand.
    local_cache_dir: str | None = None
    # What one job of this definition costs per hour (instance or Fargate price); None: not priced.
    usd_per_hour: float | None = Field(default=None, ge=0)
    # The job definition's attempt timeout (Batch kills the job after it); a training
    # budget ends well before it, so the attempt's result is stored. None: no cap.
    attempt_timeout_s: int | None = Field(default=None, ge=60)
    # Set by AWS Batch in every container: recorded on the job so a cancel can terminate it.
    batch_job_id: str | None = Field(default=None, validation_alias="AWS_BATCH_JOB_ID")
    # Run model-written programs even where the container cannot give them their own uid (accepts the risk).
    allow_unisolated: bool = False
    # Training jobs: assume this role with a session policy scoped to the job before touching anything.
    train_access_role_arn: str | None = None


class LeaderboardSyncSettings(_ServiceSettings):
    """The scheduled leaderboard sync (a Lambda in AWS, a timer thread on the local stack)."""

    # Secrets Manager ARN of the Kaggle credentials; None: the official client's own lookup.
    kaggle_secret_arn: str | None = None
    # Where the secret is written as kaggle.json for the official client (Lambda: only /tmp is writable).
    kaggle_config_dir: str = "/tmp/kaggle-solver-kaggle"
    # The period of the schedule; a snapshot older than 3 of these raises the staleness alarm.
    sync_interval_s: float = Field(default=300.0, gt=0)
    # Competitions of jobs created this many days back are tracked.
    job_days: int = Field(default=7, ge=1)
    # History points kept per competition (2016 = one week at 5 minutes).
    history_points: int = Field(default=2016, ge=1)
    # No competition is started after this many seconds of a run (the Lambda's timeout is longer).
    budget_s: float = Field(default=240.0, gt=0)
    kaggle_min_interval_s: float = Field(default=1.0, ge=0)
    kaggle_max_attempts: int = Field(default=3, ge=1)
    kaggle_max_retry_after_s: float = Field(default=60.0, ge=0)
    # CloudWatch namespace of the staleness metric; None: no metrics.
    metrics_namespace: str | None = None
