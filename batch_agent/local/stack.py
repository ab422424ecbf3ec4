"""The whole service on one machine: moto 5.2.5 on loopback, the CDK app's resources, real handlers.

``EmulatedStack`` starts moto's server in this process with state-machine
execution on, creates the resources the CDK app defines (names from
``batch_agent.service.names``, the same ASL), and closes the gaps moto leaves
(DESIGN.md §4):

* Step Functions' Batch integration passes ``JobName``-style parameters to boto3
  unchanged: they are normalised to the API's camelCase (and the response back
  to PascalCase, as Step Functions returns it);
* a Lambda invoke without Docker does not run the function: here it runs the
  function's real handler in a warm worker process (``batch_agent.local.lambda_worker``)
  with the function's environment and ``AWS_ENDPOINT_URL`` pointing at the emulator;
* a Batch job without Docker is marked SUCCEEDED at once: here the job
  definition's command (with its ``Ref::`` parameters filled) runs as a local
  process, at most ``max_batch_jobs`` at a time, the job is RUNNING meanwhile and
  SUCCEEDED or FAILED by its exit code (a signal gives 128+N, as Docker reports);
* describe-jobs leaves out the container's exit code: it is put back;
* a job definition ARN without a revision (the latest one, as Batch accepts it)
  is resolved;
* for speed under load, Step Functions tasks share one boto3 client per service
  instead of building one per call, an ASL definition is parsed once (each execution gets a
  copy) and a Batch ``.sync`` task waits for the harness to report its job stopped (re-checking
  every 5 s) instead of polling every 0.5 s;
* executions are always started with a name (the job's, drawn when it was recorded);
* TerminateJob / CancelJob kill the job's local process (or keep a waiting one from starting);
* the EventBridge schedule of the leaderboard sync is a timer thread
  (``leaderboard_sync_interval_s``) running the same ``run_sync`` in this process.

The starter (``job_stream.LocalStarter``) reads the jobs table's stream and sweeps
unfinished jobs on a timer, as the starter Lambda does in AWS. Batch jobs and Lambda
workers run at a lower CPU priority than the API and the emulator.

``serve`` adds the API (uvicorn, another process) on 127.0.0.1:8000. Nothing
here is imported by product code paths; it is the local driver and the tests'
backend.
"""


from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from batch_agent.local import moto_patches
from batch_agent.local.batch_runner import LocalBatch
from batch_agent.local.job_stream import LocalStarter
from batch_agent.local.lambda_workers import LambdaWorkers
from batch_agent.local.leaderboard_timer import SyncTimer
from batch_agent.service import names
from batch_agent.service.job_starter import PipelineClients
from batch_agent.service.leaderboard_sync import SyncClients, SyncReport, run_sync
from batch_agent.service.settings import LeaderboardSyncSettings, StarterSettings
from batch_agent.service.state_machine import local_arns, render_definition

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account: Lambda roles must live in it
REPO_ROOT = Path(__file__).resolve().parents[2]
MOTO_VERSION = "5.2.5"

# Variables a local Batch job or Lambda worker inherits from this process (never secrets of other services).
_PASSED_THROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "KAGGLE_CONFIG_DIR",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_API_TOKEN",
    "KAGGLE_API_ENVIRONMENT",
)


# Served by the data process (data_server), and the variables that point boto3 there.
DATA_SERVICES = frozenset({"dynamodb", "dynamodbstreams", "s3"})
_DATA_SERVICE_VARIABLES = ("DYNAMODB", "DYNAMODB_STREAMS", "S3")


@dataclass
class StackOptions:
    prefix: str = "local"
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    # DynamoDB and S3 in a process of their own (data_server), on this port (0: any free one).
    data_port: int = 0
    work_dir: Path = field(default_factory=lambda: Path("/tmp/kaggle-solver-stack"))
    # Competition folders by slug ({dir}/{slug}/train.csv ...), used before S3 and Kaggle.
    local_cache_dir: Path | None = None
    max_batch_jobs: int = 2  # the compute environment's capacity: further jobs wait RUNNABLE
    max_lambda_workers: int = 8  # warm workers per function (its reserved concurrency)
    memory_limit_mb: int = 4096
    step_environment: dict[str, str] = field(default_factory=dict)
    container_environment: dict[str, str] = field(default_factory=dict)
    lambda_timeout_s: int = 900
    batch_timeout_s: int = 24 * 3600
    # The leaderboard sync's period (AWS: 300 s); None: no sync timer.
    leaderboard_sync_interval_s: float | None = None
    # Least time between two Kaggle requests of the sync.
    kaggle_min_interval_s: float = 1.0
    # The starter's sweep (AWS: an EventBridge schedule) and the limits it enforces (PipelineSettings).
    sweep_interval_s: float = 30.0
    # False: nothing starts recorded jobs (tests drive batch_agent.service.job_starter themselves).
    run_starter: bool = True
    start_after_s: int = 30
    reconcile_after_s: int = 120
    deadline_grace_s: int = 900


class EmulatedStack:
    """moto on loopback with the service's resources and the harness that runs handlers and jobs."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.endpoint = ""
        # DynamoDB, its streams and S3 are served here (a separate process); the rest at endpoint.
        self.data_endpoint = ""
        self._data_server: subprocess.Popen[bytes] | None = None
        self._server: Any = None
        self._workers: LambdaWorkers | None = None
        self._batch: LocalBatch | None = None
        self.sync_timer: SyncTimer | None = None
        self._starter: LocalStarter | None = None
        self.resources: dict[str, str] = {}
        self._previous_moto_port: str | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> EmulatedStack:
        _check_moto_version()
        from moto.core.config import default_user_config

        from batch_agent.local.moto_server import KeepAliveMotoServer

        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        default_user_config["lambda"] = {"use_docker": False}
        default_user_config["batch"] = {"use_docker": False}
        moto_patches.install_patches()
        # One log line per emulated AWS call drowns everything else.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._start_data_server()
        # Step Functions, Lambda and Batch serve only the pipeline (the API's reads and writes go to
        # the data process): their threads run below the API's, as the executions' threads do.
        self._server = KeepAliveMotoServer(self.options.host, self.options.port, background=True)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # Step Functions' service tasks call back to localhost:$MOTO_PORT.
        self._previous_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(port)
        work = self.options.work_dir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self._workers = LambdaWorkers(self.process_environment, work / "logs", self.options.max_lambda_workers,
                                      cwd=REPO_ROOT)
        self._batch = LocalBatch(self.process_environment, work / "logs", self.options.max_batch_jobs, cwd=REPO_ROOT)
        moto_patches.attach(moto_patches.Harness(self._workers, self._batch))
        try:
            # moto's backends live in the process: start from nothing, not from an earlier stack's state.
            urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"))
            self._create_resources()
            if self.options.leaderboard_sync_interval_s is not None:
                self.sync_timer = SyncTimer(self.run_leaderboard_sync, self.options.leaderboard_sync_interval_s)
                self.sync_timer.start()
            if self.options.run_starter:
                self._start_starter()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_data_server(self) -> None:
        port = self.options.data_port or _free_port(self.options.host)
        self.options.work_dir.mkdir(parents=True, exist_ok=True)
        (self.options.work_dir / "logs").mkdir(exist_ok=True)
        with open(self.options.work_dir / "logs" / "moto-data.log", "ab") as log_file:
            self._data_server = subprocess.Popen(
                [sys.executable, "-m", "batch_agent.local.data_server", self.options.host, str(port)],
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                                os.environ.get("PYTHONPATH")]))},
                stdout=log_file,
                stderr=log_file,
            )
        self.data_endpoint = f"http://{self.options.host}:{port}"
        _wait_for_http(self.data_endpoint + "/moto-api/data.json", self._data_server, timeout_s=60)

    def stop(self) -> None:
        if self.sync_timer:
            self.sync_timer.stop()
            self.sync_timer = None
        if self._starter:
            self._starter.stop()
            self._starter = None
        if self._workers:
            self._workers.close()
        if self._batch:
            self._batch.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
            if self._previous_moto_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = self._previous_moto_port
        if self._data_server is not None:
            self._data_server.terminate()
            try:
                self._data_server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._data_server.kill()
            self._data_server = None
        moto_patches.detach()

    def __enter__(self) -> EmulatedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ names and environments

    def name(self, base: str) -> str:
        return names.resource_name(self.options.prefix, base)

    @property
    def table(self) -> str:
        return self.name(names.JOBS_TABLE)

    @property
    def bucket(self) -> str:
        return self.name(names.ARTIFACTS_BUCKET)

    @property
    def state_machine_arn(self) -> str:
        return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.name(names.STATE_MACHINE)}"

    def aws_environment(self) -> dict[str, str]:
        """What any process needs to talk to this emulator with boto3."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            # boto3 reads per-service endpoints (botocore's AWS_ENDPOINT_URL_<SERVICE_ID>).
            **{f"AWS_ENDPOINT_URL_{variable}": self.data_endpoint for variable in _DATA_SERVICE_VARIABLES},
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def pipeline_environment(self) -> dict[str, str]:
        """The PipelineSettings variables the API and the starter share."""
        return {
            names.ENV_JOBS_TABLE: self.table,
            names.ENV_ARTIFACTS_BUCKET: self.bucket,
            names.ENV_STATE_MACHINE_ARN: self.state_machine_arn,
            names.ENV_START_AFTER_S: str(self.options.start_after_s),
            names.ENV_RECONCILE_AFTER_S: str(self.options.reconcile_after_s),
            names.ENV_DEADLINE_GRACE_S: str(self.options.deadline_grace_s),
        }

    def api_environment(self, api_key: str | None = None) -> dict[str, str]:
        env = {**self.aws_environment(), **self.pipeline_environment()}
        if api_key:
            env[names.ENV_API_KEY] = api_key
        return env

    def process_environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        # The repository root first: handlers and test-only authors import from it.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.aws_environment())
        env.update(extra)
        return env

    def endpoint_for(self, service: str) -> str:
        return self.data_endpoint if service in DATA_SERVICES else self.endpoint

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_for(service),
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def starter_settings(self) -> StarterSettings:
        return StarterSettings.model_validate(
            {k.removeprefix(names.ENV_PREFIX).lower(): v for k, v in self.pipeline_environment().items()}
        )

    def pipeline_clients(self) -> PipelineClients:
        return PipelineClients(
            dynamodb=self.client("dynamodb"),
            s3=self.client("s3"),
            stepfunctions=self.client("stepfunctions"),
            batch=self.client("batch"),
        )

    def _start_starter(self) -> None:
        settings, clients = self.starter_settings(), self.pipeline_clients()
        stream_arn = self.client("dynamodb").describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        self._starter = LocalStarter(
            clients,
            self.client("dynamodbstreams"),
            stream_arn,
            settings,
            sweep_interval_s=self.options.sweep_interval_s,
        )
        self._starter.start()

    # ------------------------------------------------------------ resources (mirrors infra_cdk)

    def _create_resources(self) -> None:
        iam, s3, ddb = self.client("iam"), self.client("s3"), self.client("dynamodb")
        role_arn = iam.create_role(
            RoleName=self.name("role"),
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        s3.create_bucket(Bucket=self.bucket)
        ddb.create_table(**jobs_table_definition(self.table))
        self._create_functions(role_arn)
        self._create_batch(role_arn)
        substitutions = local_arns(self.options.prefix, region=REGION, account=ACCOUNT)
        sfn = self.client("stepfunctions")
        sfn.create_state_machine(
            name=self.name(names.STATE_MACHINE), definition=render_definition(substitutions), roleArn=role_arn
        )
        self.resources = {"role": role_arn, **substitutions, "StateMachineArn": self.state_machine_arn}

    def _create_functions(self, role_arn: str) -> None:
        lam = self.client("lambda")
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as zf:
            # The emulator runs the repository's handlers; the zip only satisfies the API.
            zf.writestr("README", "code runs from the repository checkout")
        step_env = {
            names.ENV_JOBS_TABLE: self.table,
            names.ENV_ARTIFACTS_BUCKET: self.bucket,
            **self.options.step_environment,
        }
        for base, handler in names.STEP_HANDLERS.items():
            lam.create_function(
                FunctionName=self.name(base),
                Runtime="python3.12",
                Role=role_arn,
                Handler=handler,
                Code={"ZipFile": code.getvalue()},
                Timeout=self.options.lambda_timeout_s,
                MemorySize=1024,
                Environment={"Variables": step_env},
            )

    def _create_batch(self, role_arn: str) -> None:
        batch = self.client("batch")
        environment_arn = batch.create_compute_environment(
            computeEnvironmentName=self.name("local"), type="UNMANAGED", state="ENABLED", serviceRole=role_arn
        )["computeEnvironmentArn"]
        container_env = {
            names.ENV_JOBS_TABLE: self.table,
            names.ENV_ARTIFACTS_BUCKET: self.bucket,
            names.ENV_WORK_DIR: str(self.options.work_dir / "batch"),
            names.ENV_MEMORY_LIMIT_MB: str(self.options.memory_limit_mb),
            # Training jobs assume it with their per-job session policy, as in AWS (moto does not enforce it).
            names.ENV_TRAIN_ACCESS_ROLE_ARN: role_arn,
            names.ENV_ATTEMPT_TIMEOUT_S: str(self.options.batch_timeout_s),
            **({names.ENV_LOCAL_CACHE_DIR: str(self.options.local_cache_dir)} if self.options.local_cache_dir else {}),
            **self.options.container_environment,
        }
        for queue in (names.CPU_QUEUE, names.GPU_QUEUE):
            batch.create_job_queue(
                jobQueueName=self.name(queue),
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment_arn}],
            )
        for definition, image in (
            (names.PREPARE_JOB_DEFINITION, "kaggle-solver:cpu"),
            (names.CPU_JOB_DEFINITION, "kaggle-solver:cpu"),
            (names.GPU_JOB_DEFINITION, "kaggle-solver:gpu"),
        ):
            batch.register_job_definition(
                jobDefinitionName=self.name(definition),
                type="container",
                parameters=names.BATCH_DEFAULT_PARAMETERS,
                timeout={"attemptDurationSeconds": self.options.batch_timeout_s},
                containerProperties={
                    "image": image,
                    "command": names.BATCH_COMMAND,
                    "resourceRequirements": [
                        {"type": "VCPU", "value": "2"},
                        {"type": "MEMORY", "value": str(self.options.memory_limit_mb)},
                    ],
                    "environment": [{"name": k, "value": v} for k, v in container_env.items()],
                },
            )

    # ------------------------------------------------------------ the leaderboard sync (EventBridge + Lambda in AWS)

    def leaderboard_sync_settings(self) -> LeaderboardSyncSettings:
        return LeaderboardSyncSettings(
            jobs_table=self.table,
            artifacts_bucket=self.bucket,
            sync_interval_s=self.options.leaderboard_sync_interval_s or 300.0,
            kaggle_min_interval_s=self.options.kaggle_min_interval_s,
            metrics_namespace=names.metrics_namespace(self.options.prefix),
        )

    def run_leaderboard_sync(self) -> SyncReport:
        """One sync run, as the scheduled Lambda does it (metrics go to the emulated CloudWatch)."""
        clients = SyncClients(
            s3=self.client("s3"), dynamodb=self.client("dynamodb"), cloudwatch=self.client("cloudwatch")
        )
        return run_sync(clients, self.leaderboard_sync_settings())

    # ------------------------------------------------------------ conveniences for drivers and tests

    def seed_competition(self, slug: str, folder: Path) -> int:
        """Fill the S3 cache for a slug from a local folder, as a user would for offline use."""
        from batch_agent.service.artifacts import cache_prefix, upload_folder

        return len(upload_folder(self.client("s3"), self.bucket, cache_prefix(slug), folder))

    def set_step_environment(self, base: str, variables: dict[str, str]) -> None:
        """Change one step function's environment through the Lambda API (new invocations see it)."""
        lam = self.client("lambda")
        current = lam.get_function_configuration(FunctionName=self.name(base))["Environment"]["Variables"]
        lam.update_function_configuration(
            FunctionName=self.name(base), Environment={"Variables": {**current, **variables}}
        )

    def running_batch_processes(self) -> int:
        return self._batch.running() if self._batch else 0

    @contextmanager
    def api_server(self, port: int = 8000, *, api_key: str | None = None, workers: int = 1) -> Iterator[str]:
        """The API under uvicorn on 127.0.0.1:port in a child process; yields its base URL."""
        env = self.process_environment(self.api_environment(api_key))
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "lambdas.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            # Longer than a loaded machine's slowest answer: a client reusing a connection the
            # server just closed as idle gets a dropped request (uvicorn's default is 5 s).
            "--timeout-keep-alive",
            "60",
            "--workers",
            str(workers),
            # C parser and libuv loop (the service extra installs them): about a millisecond less
            # CPU per request than h11 on asyncio's own loop.
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ]
        with open(self.options.work_dir / "logs" / "api.log", "ab") as log_file:
            process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log_file, stderr=log_file)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for_http(base + "/health", process, timeout_s=30)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def jobs_table_definition(table: str) -> dict[str, Any]:
    """The jobs table as the CDK app defines it (key, the two listing indexes, the stream)."""
    index_projection = {"ProjectionType": "ALL"}
    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": names.JOBS_TABLE_KEY, "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
            {"AttributeName": "listing", "AttributeType": "S"},
            {"AttributeName": names.JOBS_SORT_ATTRIBUTE, "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": names.JOBS_TABLE_KEY, "KeyType": "HASH"}],
        # The starter reads new jobs from the stream (the outbox).
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        "GlobalSecondaryIndexes": [
            {
                "IndexName": names.JOBS_BY_STATUS_INDEX,
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": names.JOBS_SORT_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": index_projection,
            },
            {
                "IndexName": names.JOBS_BY_CREATED_INDEX,
                "KeySchema": [
                    {"AttributeName": "listing", "KeyType": "HASH"},
                    {"AttributeName": names.JOBS_SORT_ATTRIBUTE, "KeyType": "RANGE"},
                ],
                "Projection": index_projection,
            },
        ],
    }


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_http(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API process exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"the API did not answer {url} within {timeout_s} s")


def _check_moto_version() -> None:
    from importlib.metadata import version

    found = version("moto")
    if found != MOTO_VERSION:
        # The patches below reach into moto internals of exactly this version.
        raise RuntimeError(f"the emulated stack needs moto=={MOTO_VERSION}, found {found}")


