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
* executions are always started with a name (the API names them by job id).

``serve`` adds the API (uvicorn, another process) on 127.0.0.1:8000. Nothing
here is imported by product code paths; it is the local driver and the tests'
backend.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from batch_agent.service import names
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


@dataclass
class StackOptions:
    prefix: str = "local"
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
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


class EmulatedStack:
    """moto on loopback with the service's resources and the harness that runs handlers and jobs."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.endpoint = ""
        self._server: Any = None
        self._workers: _LambdaWorkers | None = None
        self._batch: _LocalBatch | None = None
        self.resources: dict[str, str] = {}
        self._previous_moto_port: str | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> EmulatedStack:
        global _ACTIVE
        if _ACTIVE is not None:
            raise RuntimeError("an emulated stack is already running in this process")
        _check_moto_version()
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        default_user_config["stepfunctions"] = {"execute_state_machine": True}
        default_user_config["lambda"] = {"use_docker": False}
        default_user_config["batch"] = {"use_docker": False}
        _install_patches()
        # One log line per emulated AWS call drowns everything else.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self.options.host, port=self.options.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # Step Functions' service tasks call back to localhost:$MOTO_PORT.
        self._previous_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(port)
        work = self.options.work_dir
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self._workers = _LambdaWorkers(self, work / "logs", self.options.max_lambda_workers)
        self._batch = _LocalBatch(self, work / "logs", self.options.max_batch_jobs)
        _ACTIVE = self
        try:
            # moto's backends live in the process: start from nothing, not from an earlier stack's state.
            urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"))
            self._create_resources()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        global _ACTIVE
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
        _ACTIVE = None

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
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def api_environment(self, api_key: str | None = None) -> dict[str, str]:
        env = {
            **self.aws_environment(),
            names.ENV_JOBS_TABLE: self.table,
            names.ENV_ARTIFACTS_BUCKET: self.bucket,
            names.ENV_STATE_MACHINE_ARN: self.state_machine_arn,
        }
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

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

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
            **({names.ENV_LOCAL_CACHE_DIR: str(self.options.local_cache_dir)} if self.options.local_cache_dir else {}),
            **self.options.container_environment,
        }
        for queue, definition, image in (
            (names.CPU_QUEUE, names.CPU_JOB_DEFINITION, "kaggle-solver:cpu"),
            (names.GPU_QUEUE, names.GPU_JOB_DEFINITION, "kaggle-solver:gpu"),
        ):
            batch.create_job_queue(
                jobQueueName=self.name(queue),
                state="ENABLED",
                priority=1,
                computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment_arn}],
            )
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
            "--workers",
            str(workers),
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
    """The jobs table as the CDK app defines it (key and the two listing indexes)."""
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


# ---------------------------------------------------------------- the harness behind moto

_ACTIVE: EmulatedStack | None = None
_PATCHED = False


def _camel(key: str) -> str:
    return key[:1].lower() + key[1:]


def _pascal(key: str) -> str:
    return key[:1].upper() + key[1:]


# Values whose keys belong to the user (Batch job parameters, tags): never renamed.
_OPAQUE_KEYS = {"Parameters", "Tags", "parameters", "tags"}


def _rename_keys(value: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {rename(k): (v if k in _OPAQUE_KEYS else _rename_keys(v, rename)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename_keys(v, rename) for v in value]
    return value


def _install_patches() -> None:
    global _PATCHED
    if _PATCHED:
        return
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.batch.models import BatchBackend, Job
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
        StateTaskServiceBatch,
    )
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original_invoke = LambdaSimpleBackend.invoke
    original_finish = BatchSimpleBackend._mark_job_as_finished
    original_get_definition = BatchBackend.get_job_definition

    original_describe = Job.describe
    original_sync_resolver = StateTaskServiceBatch._build_sync_resolver
    original_entrypoint = ExecutionWorker._get_evaluation_entrypoint
    parsed: dict[str, Any] = {}
    parsed_lock = threading.Lock()

    def evaluation_entrypoint(self: Any) -> Any:
        # Parsing the ASL costs ~40 ms of CPU per execution under the GIL; a copy of one parse costs ~2 ms.
        definition = self._evaluation_details.state_machine_details.definition
        with parsed_lock:
            if definition not in parsed:
                parsed[definition] = original_entrypoint(self)
            return copy.deepcopy(parsed[definition])

    def sync_resolver(self: Any, *args: Any, **kwargs: Any) -> Any:
        # moto polls describe-jobs every 0.5 s per waiting task; with many jobs queued behind the
        # compute capacity that polling alone saturates the emulator. The harness knows when a job
        # stops, so each poll that finds it unfinished waits for that (at most 5 s) instead.
        env = kwargs.get("env", args[0] if args else None)
        top = env.stack[-1] if env is not None and env.stack else {}
        job_id = top.get("JobId") if isinstance(top, dict) else None
        resolve = original_sync_resolver(self, *args, **kwargs)
        if resolve is None:
            return None

        def resolve_when_stopped() -> Any:
            result = resolve()
            if result is None and job_id and _ACTIVE is not None and _ACTIVE._batch is not None:
                _ACTIVE._batch.wait_until_stopped(job_id, timeout_s=5.0)
            return result

        return resolve_when_stopped

    def describe_job(self: Any) -> dict[str, Any]:
        # Batch reports the container's exit code in describe-jobs; moto's full description drops it.
        result: dict[str, Any] = original_describe(self)
        if self.exit_code is not None and isinstance(result.get("container"), dict):
            result["container"]["exitCode"] = self.exit_code
        return result

    def get_job_definition(self: Any, identifier: str) -> Any:
        # Batch accepts a job definition ARN without its revision (the latest active one); moto does not.
        found = original_get_definition(self, identifier)
        if found is None and identifier.startswith("arn:") and "job-definition/" in identifier:
            tail = identifier.split("job-definition/", 1)[1]
            if ":" not in tail:
                found = self.get_job_definition_by_name(tail)
        return found

    def normalise_parameters(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        renamed = _rename_keys(parameters, _camel)
        parameters.clear()
        parameters.update(renamed)

    def normalise_response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(response, dict):
            renamed = _rename_keys(response, _pascal)
            response.clear()
            response.update(renamed)

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes | str | None:
        if _ACTIVE is None or _ACTIVE._workers is None:
            return original_invoke(self, function_name, qualifier, body, headers, response_headers)
        fn = self.get_function(function_name, qualifier)
        payload, errored = _ACTIVE._workers.invoke(fn, body)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["Content-Length"] = str(len(payload))
        return payload

    def mark_job(self: Any, include_start_attempt: bool, job: Any) -> None:
        if _ACTIVE is None or _ACTIVE._batch is None:
            original_finish(self, include_start_attempt, job)
            return
        _ACTIVE._batch.submit(self.backend, job)

    _share_service_clients()
    # The Batch .sync wait below paces the polls, so the loop's own pause can be short.
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
    )

    state_task_service_callback._DELAY_SECONDS_SYNC_CONDITION_CHECK = 0.1  # type: ignore[misc]
    StateTaskServiceBatch._build_sync_resolver = sync_resolver  # type: ignore[method-assign]
    ExecutionWorker._get_evaluation_entrypoint = evaluation_entrypoint  # type: ignore[method-assign]
    StateTaskServiceBatch._normalise_parameters = normalise_parameters  # type: ignore[method-assign]
    StateTaskServiceBatch._normalise_response = normalise_response  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    BatchSimpleBackend._mark_job_as_finished = mark_job  # type: ignore[method-assign]
    BatchBackend.get_job_definition = get_job_definition  # type: ignore[method-assign]
    Job.describe = describe_job  # type: ignore[method-assign]
    _PATCHED = True


def _share_service_clients() -> None:
    """Step Functions tasks build a new boto3 client per call (~20 ms of CPU each); share one per service."""
    import importlib

    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    cache: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def shared_client(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service)
        with lock:
            if key not in cache:
                cache[key] = original(region=region, service=service, state_credentials=state_credentials)
            return cache[key]

    users = [
        "state_task.lambda_eval_utils",
        "state_task.service.state_task_service_batch",
        "state_task.service.state_task_service_aws_sdk",
        "state_task.service.state_task_service_dynamodb",
        "state_task.service.state_task_service_sfn",
    ]
    for name in users:
        module = importlib.import_module(f"moto.stepfunctions.parser.asl.component.state.exec.{name}")
        module.boto_client_for = shared_client  # type: ignore[attr-defined]


class _Worker:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.used = 0


class _LambdaWorkers:
    """Warm worker processes per function configuration, like Lambda's execution environments."""

    def __init__(self, stack: EmulatedStack, log_dir: Path, max_per_function: int) -> None:
        self.stack = stack
        self.log_dir = log_dir
        self.max_per_function = max_per_function
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, ...], list[_Worker]] = {}
        self._slots: dict[tuple[str, ...], threading.BoundedSemaphore] = {}
        self._all: list[_Worker] = []

    def invoke(self, fn: Any, body: Any) -> tuple[bytes, bool]:
        env_vars = dict(fn.environment_vars or {})
        key = (fn.function_name, fn.handler, json.dumps(env_vars, sort_keys=True))
        with self._lock:
            slots = self._slots.setdefault(key, threading.BoundedSemaphore(self.max_per_function))
        event = json.loads(body) if body else {}
        with slots:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                worker = idle.pop() if idle else None
            if worker is None or worker.process.poll() is not None:
                worker = self._spawn(fn, env_vars)
            reply = self._call(worker, event, float(fn.timeout or 900))
            if worker.process.poll() is None:
                with self._lock:
                    self._idle.setdefault(key, []).append(worker)
        return json.dumps(reply["payload"]).encode(), not reply["ok"]

    def _spawn(self, fn: Any, env_vars: dict[str, str]) -> _Worker:
        env = self.stack.process_environment(
            {
                **env_vars,
                "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout or 900),
            }
        )
        log_file = open(self.log_dir / f"lambda-{fn.function_name}.log", "ab")  # noqa: SIM115 - lives with the worker
        process = subprocess.Popen(
            [sys.executable, "-m", "batch_agent.local.lambda_worker", fn.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
            cwd=REPO_ROOT,
            text=True,
        )
        log_file.close()  # the child holds its own descriptor
        worker = _Worker(process)
        with self._lock:
            self._all.append(worker)
        return worker

    @staticmethod
    def _call(worker: _Worker, event: Any, timeout_s: float) -> dict[str, Any]:
        process = worker.process
        assert process.stdin is not None and process.stdout is not None
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        try:
            process.stdin.write(json.dumps({"event": event}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        finally:
            timer.cancel()
        worker.used += 1
        if not line:
            process.kill()
            message = f"the function's process exited (code {process.wait()}) before it replied"
            if process.returncode == -signal.SIGKILL:
                message = f"Task timed out after {timeout_s:.0f} seconds"
            return {"ok": False, "payload": {"errorMessage": message, "errorType": "Runtime.ExitError"}}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], {}
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


class _LocalBatch:
    """Runs each submitted job's container command as a local process; the exit code decides its status."""

    def __init__(self, stack: EmulatedStack, log_dir: Path, capacity: int) -> None:
        self.stack = stack
        self.log_dir = log_dir
        self._capacity = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped: dict[str, threading.Event] = {}
        self._closed = False

    def running(self) -> int:
        with self._lock:
            return sum(p.poll() is None for p in self._processes.values())

    def wait_until_stopped(self, job_id: str, timeout_s: float) -> None:
        with self._lock:
            stopped = self._stopped.get(job_id)
        if stopped is not None:
            stopped.wait(timeout_s)

    def submit(self, backend: Any, job: Any) -> None:
        with self._lock:
            self._stopped[job.job_id] = threading.Event()
        backend._jobs[job.job_id] = job
        job.log_stream_name = job._stream_name
        job.status = "RUNNABLE"
        threading.Thread(target=self._run, args=(job,), name=f"batch-{job.job_id}", daemon=True).start()

    def command_of(self, job: Any) -> list[str]:
        definition = job.job_definition.container_properties or {}
        command = list(job.container_overrides.get("command") or definition.get("command") or [])
        parameters = {**job.job_definition.parameters, **job.parameters}
        resolved = []
        for part in command:
            if part.startswith("Ref::") and part[5:] in parameters:
                part = str(parameters[part[5:]])
            resolved.append(part)
        if resolved and resolved[0] in ("python", "python3"):
            resolved[0] = sys.executable  # the image's python is this interpreter here
        return resolved

    def environment_of(self, job: Any) -> dict[str, str]:
        definition = job.job_definition.container_properties or {}
        env = {e["name"]: e["value"] for e in definition.get("environment", [])}
        env.update({e["name"]: e["value"] for e in job.container_overrides.get("environment", [])})
        env["AWS_BATCH_JOB_ID"] = job.job_id
        return self.stack.process_environment(env)

    def _timeout_of(self, job: Any) -> float:
        timeout = job.timeout or job.job_definition.timeout or {}
        return float(timeout.get("attemptDurationSeconds") or 24 * 3600)

    def _run(self, job: Any) -> None:
        import datetime

        with self._capacity:
            if self._closed:
                return
            command, env = self.command_of(job), self.environment_of(job)
            log_path = self.log_dir / f"batch-{job.job_name}-{job.job_id[:8]}.log"
            job.job_started_at = datetime.datetime.now()
            job._start_attempt()
            job.status = "RUNNING"
            reason = "Essential container in task exited"
            try:
                with open(log_path, "ab") as log_file:
                    process = subprocess.Popen(
                        command,
                        env=env,
                        cwd=REPO_ROOT,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                with self._lock:
                    self._processes[job.job_id] = process
                try:
                    code = process.wait(timeout=self._timeout_of(job))
                except subprocess.TimeoutExpired:
                    _kill_group(process)
                    code = process.wait()
                    reason = "Job attempt duration exceeded timeout"
            except OSError as exc:
                code, reason = 127, f"CannotStartContainerError: {exc}"
            # Docker reports death by signal N as exit code 128+N.
            job.exit_code = 128 - code if code < 0 else code
            if code != 0:
                job.job_stopped_reason = reason
            log.info("batch job %s (%s) exited with %s", job.job_name, job.job_id, job.exit_code)
            job._mark_stopped(success=code == 0)
            with self._lock:
                self._processes.pop(job.job_id, None)
                stopped = self._stopped.pop(job.job_id, None)
            if stopped is not None:
                stopped.set()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            if process.poll() is None:
                _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------- `kaggle-solver serve`


def serve(
    *,
    api_port: int = 8000,
    moto_port: int = 5000,
    work_dir: Path = Path("/tmp/kaggle-solver-stack"),
    local_cache_dir: Path | None = None,
    api_key: str | None = None,
    api_workers: int = 1,
    batch_slots: int = 2,
    fresh: bool = False,
    ready: Callable[[EmulatedStack, str], None] | None = None,
) -> None:
    """Run the emulated stack and the API until interrupted (Ctrl-C / SIGTERM)."""
    if fresh:
        shutil.rmtree(work_dir, ignore_errors=True)
    options = StackOptions(
        port=moto_port, work_dir=work_dir, local_cache_dir=local_cache_dir, max_batch_jobs=batch_slots
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatedStack(options) as stack, stack.api_server(api_port, api_key=api_key, workers=api_workers) as base:
        if ready:
            ready(stack, base)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
