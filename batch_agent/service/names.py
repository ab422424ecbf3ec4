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
# Only the prepare job holds the Kaggle credentials; training jobs read the competition from the S3 cache.
PREPARE_JOB_DEFINITION = "prepare"
CPU_JOB_DEFINITION = "train-cpu"
GPU_JOB_DEFINITION = "train-gpu"
KAGGLE_SECRET = "kaggle"
ANTHROPIC_SECRET = "anthropic"


def resource_name(prefix: str, base: str) -> str:
    """The deployed name of a resource: '{prefix}-kaggle-solver-{base}'."""
    return f"{prefix}-{APP}-{base}"

# --- The service: Lambda functions, their handlers, the Batch container, job records ---

# Base names of the Lambda functions (deployed as resource_name(prefix, base)) and
# the handler each one runs. The Lambda bundle is the repository's `batch_agent`
# and `lambdas` packages, so handlers are dotted module paths.
API_FUNCTION = "api"
PLAN_FUNCTION = "plan"
GENERATE_FUNCTION = "generate"
VALIDATE_FUNCTION = "validate"
REPAIR_FUNCTION = "repair"
FINISH_FUNCTION = "finish"
FAIL_FUNCTION = "fail"
LEADERBOARD_SYNC_FUNCTION = "leaderboard-sync"
API_HANDLER = "lambdas.api.handler.handler"
LEADERBOARD_SYNC_HANDLER = "lambdas.leaderboard_sync.handler.handler"
# Starts each new job's execution (the jobs table's stream) and sweeps unfinished jobs (a schedule).
STARTER_FUNCTION = "starter"
STARTER_HANDLER = "lambdas.starter.handler.handler"
STEP_HANDLERS: dict[str, str] = {
    PLAN_FUNCTION: "lambdas.steps.plan.handler",
    GENERATE_FUNCTION: "lambdas.steps.generate.handler",
    VALIDATE_FUNCTION: "lambdas.steps.validate.handler",
    REPAIR_FUNCTION: "lambdas.steps.repair.handler",
    FINISH_FUNCTION: "lambdas.steps.finish.handler",
    FAIL_FUNCTION: "lambdas.steps.fail.handler",
}

# The Batch container (Dockerfile / Dockerfile.gpu) runs this command; the state
# machine fills the Ref:: parameters per job (all values are strings).
BATCH_COMMAND: list[str] = [
    "python", "-m", "batch_agent", "Ref::step",
    "--job-id", "Ref::job_id", "--bucket", "Ref::bucket", "--attempt", "Ref::attempt",
]
BATCH_DEFAULT_PARAMETERS: dict[str, str] = {"attempt": "0"}

# DynamoDB jobs table: partition key job_id (S), no sort key, and two global
# secondary indexes for listing newest first: by status, and over all jobs
# (every job item carries listing="job" so the second index is a single partition).
JOBS_TABLE_KEY = "job_id"
JOBS_SORT_ATTRIBUTE = "created_at"
JOBS_BY_STATUS_INDEX = "by-status"       # partition key "status" (S), sort key "created_at" (S)
JOBS_BY_CREATED_INDEX = "by-created"     # partition key "listing" (S), sort key "created_at" (S)
JOBS_LISTING_VALUE = "job"
JOBS_TTL_ATTRIBUTE = "expires_at"  # epoch seconds, set when the API has a retention

# S3 layout in the artifacts bucket.
CACHE_PREFIX = "cache/"                  # cache/{slug}/... : competition files, downloaded once per slug
JOBS_PREFIX = "jobs/"                    # jobs/{job_id}/... : profile, plan, attempts, logs, submission.csv

# leaderboards/{slug}.json (LeaderboardSnapshot) and leaderboards/{slug}.history.json: written by the sync only.
LEADERBOARD_PREFIX = "leaderboards/"
TRACKED_PREFIX = "tracked/"  # tracked/{slug}.json : a user asked the sync to keep this leaderboard (the API)

# The leaderboard sync's CloudWatch metrics (namespace "{prefix}-kaggle-solver", no dimensions).
METRIC_OLDEST_SNAPSHOT_AGE = "OldestLeaderboardSnapshotAgeSeconds"
METRIC_SYNC_FAILURES = "LeaderboardSyncFailures"
METRIC_SYNC_UPDATED = "LeaderboardSyncUpdated"


def metrics_namespace(prefix: str) -> str:
    return f"{prefix}-{APP}"

# Environment variables each deployable reads (pydantic-settings, prefix KAGGLE_SOLVER_).
ENV_PREFIX = "KAGGLE_SOLVER_"
ENV_JOBS_TABLE = "KAGGLE_SOLVER_JOBS_TABLE"  # api, steps, container
ENV_ARTIFACTS_BUCKET = "KAGGLE_SOLVER_ARTIFACTS_BUCKET"  # api, steps, container
ENV_STATE_MACHINE_ARN = "KAGGLE_SOLVER_STATE_MACHINE_ARN"  # api
ENV_API_KEY = "KAGGLE_SOLVER_API_KEY"  # api, local serving only (AWS: API Gateway keys)
ENV_PRESIGN_EXPIRY_S = "KAGGLE_SOLVER_PRESIGN_EXPIRY_S"  # api
ENV_FINISHED_JOB_CACHE_S = "KAGGLE_SOLVER_FINISHED_JOB_CACHE_S"  # api
ENV_WARM_CLIENTS = "KAGGLE_SOLVER_WARM_CLIENTS"  # api: one DynamoDB read at start (false: none)
ENV_JOB_RETENTION_DAYS = "KAGGLE_SOLVER_JOB_RETENTION_DAYS"  # api: TTL of job records (expires_at)
ENV_RECONCILE_AFTER_S = "KAGGLE_SOLVER_RECONCILE_AFTER_S"  # api, starter: check stale jobs' executions
ENV_START_AFTER_S = "KAGGLE_SOLVER_START_AFTER_S"  # api, starter: the sweep starts jobs left this long
ENV_DEADLINE_GRACE_S = "KAGGLE_SOLVER_DEADLINE_GRACE_S"  # api, starter: past time limit + this: FAILED
ENV_ANTHROPIC_SECRET_ARN = "KAGGLE_SOLVER_ANTHROPIC_SECRET_ARN"  # steps: Claude when set
ENV_AUTHOR = "KAGGLE_SOLVER_AUTHOR"  # steps: auto | template | claude | module:attr
ENV_MEMORY_LIMIT_MB = "KAGGLE_SOLVER_MEMORY_LIMIT_MB"  # container: sandbox memory limit
ENV_WORK_DIR = "KAGGLE_SOLVER_WORK_DIR"  # container: scratch folder
ENV_LOCAL_CACHE_DIR = "KAGGLE_SOLVER_LOCAL_CACHE_DIR"  # container: local cache by slug
ENV_USD_PER_HOUR = "KAGGLE_SOLVER_USD_PER_HOUR"  # container: price of one job-hour, for the run's cost
ENV_KAGGLE_SECRET_ARN = "KAGGLE_SOLVER_KAGGLE_SECRET_ARN"  # leaderboard sync: Kaggle credentials
ENV_METRICS_NAMESPACE = "KAGGLE_SOLVER_METRICS_NAMESPACE"  # leaderboard sync: where the staleness metric goes
ENV_SYNC_BUDGET_S = "KAGGLE_SOLVER_BUDGET_S"  # leaderboard sync: stop starting competitions after this
# container (training jobs): the role assumed with a per-job session policy (service/job_scope.py)
ENV_TRAIN_ACCESS_ROLE_ARN = "KAGGLE_SOLVER_TRAIN_ACCESS_ROLE_ARN"
ENV_ATTEMPT_TIMEOUT_S = "KAGGLE_SOLVER_ATTEMPT_TIMEOUT_S"  # container: the job definition's attempt timeout
# The container also reads the official Kaggle client's own variables
# (KAGGLE_USERNAME / KAGGLE_KEY or KAGGLE_API_TOKEN, KAGGLE_CONFIG_DIR), which the
# job definition injects from the Kaggle secret.
