"""The gaps moto 5.2.5 leaves, closed by patches installed once per process (see stack.py).

The patched Lambda invoke and Batch job completion hand work to the harness attached with
attach: warm Lambda workers and the local Batch runner.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batch_agent.local.batch_runner import lower_thread_priority

if TYPE_CHECKING:
    from batch_agent.local.batch_runner import LocalBatch
    from batch_agent.local.lambda_workers import LambdaWorkers

import copy
import functools
import json
import os
import threading
from collections.abc import Callable
from typing import Any

_HARNESS: Harness | None = None
_PATCHED = False


@dataclass
class Harness:
    """What the patched moto hands its work to: warm Lambda workers and the local Batch runner."""

    workers: LambdaWorkers
    batch: LocalBatch


def attach(harness: Harness) -> None:
    global _HARNESS
    if _HARNESS is not None:
        raise RuntimeError("an emulated stack is already running in this process")
    _HARNESS = harness


def detach() -> None:
    global _HARNESS
    _HARNESS = None


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


def install_patches() -> None:
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
    original_terminate = BatchBackend.terminate_job
    original_cancel = BatchBackend.cancel_job

    original_describe = Job.describe
    original_sync_resolver = StateTaskServiceBatch._build_sync_resolver
    original_entrypoint = ExecutionWorker._get_evaluation_entrypoint
    original_execution_logic = ExecutionWorker._execution_logic
    parsed: dict[str, Any] = {}
    parsed_lock = threading.Lock()

    def evaluation_entrypoint(self: Any) -> Any:
        # Parsing the ASL costs ~40 ms of CPU per execution under the GIL; a copy of one parse costs ~2 ms.
        definition = self._evaluation_details.state_machine_details.definition
        with parsed_lock:
            if definition not in parsed:
                parsed[definition] = original_entrypoint(self)
            return copy.deepcopy(parsed[definition])

    def execution_logic(self: Any) -> Any:
        # Each execution runs in a thread of its own: below the threads that answer requests, so a
        # burst of new executions does not slow the emulated calls the API makes (Linux: per thread).
        lower_thread_priority()
        return original_execution_logic(self)

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
            if result is None and job_id and _HARNESS is not None:
                _HARNESS.batch.wait_until_stopped(job_id, timeout_s=5.0)
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
        if _HARNESS is None:
            return original_invoke(self, function_name, qualifier, body, headers, response_headers)
        fn = self.get_function(function_name, qualifier)
        payload, errored = _HARNESS.workers.invoke(fn, body)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        response_headers["Content-Length"] = str(len(payload))
        return payload

    def mark_job(self: Any, include_start_attempt: bool, job: Any) -> None:
        if _HARNESS is None:
            original_finish(self, include_start_attempt, job)
            return
        _HARNESS.batch.submit(self.backend, job)

    def terminate_job(self: Any, job_id: str, reason: str) -> None:
        # moto only flags the job; the harness's process must die (or never start) as a container would.
        original_terminate(self, job_id, reason)
        if _HARNESS is not None:
            _HARNESS.batch.terminate(job_id, reason)

    def cancel_job(self: Any, job_id: str, reason: str) -> None:
        original_cancel(self, job_id, reason)
        if _HARNESS is not None:
            _HARNESS.batch.terminate(job_id, reason)

    _share_service_clients()
    cache_action_lookup()
    # The Batch .sync wait below paces the polls, so the loop's own pause can be short.
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
    )

    state_task_service_callback._DELAY_SECONDS_SYNC_CONDITION_CHECK = 0.1  # type: ignore[misc]
    StateTaskServiceBatch._build_sync_resolver = sync_resolver  # type: ignore[method-assign]
    ExecutionWorker._get_evaluation_entrypoint = evaluation_entrypoint  # type: ignore[method-assign]
    ExecutionWorker._execution_logic = execution_logic  # type: ignore[method-assign]
    StateTaskServiceBatch._normalise_parameters = normalise_parameters  # type: ignore[method-assign]
    StateTaskServiceBatch._normalise_response = normalise_response  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    BatchSimpleBackend._mark_job_as_finished = mark_job  # type: ignore[method-assign]
    BatchBackend.get_job_definition = get_job_definition  # type: ignore[method-assign]
    BatchBackend.terminate_job = terminate_job  # type: ignore[method-assign]
    BatchBackend.cancel_job = cancel_job  # type: ignore[method-assign]
    Job.describe = describe_job  # type: ignore[method-assign]
    _PATCHED = True


def _share_service_clients() -> None:
    """Step Functions tasks build a new boto3 client per call (~20 ms of CPU each); share one per service."""
    import importlib

    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    cache: dict[tuple[str, str, str], Any] = {}
    lock = threading.Lock()

    def shared_client(region: str, service: str, state_credentials: Any = None) -> Any:
        # The clients call back to localhost:$MOTO_PORT: a later stack in this process has another port.
        key = (region, service, os.environ.get("MOTO_PORT", ""))
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



# ------------------------------------------------------------------ the data process (DynamoDB, S3)

_DATA_SERVICES = frozenset({"dynamodb", "dynamodbstreams"})
_SCALAR_TYPES: dict[str, type] = {"S": str, "N": str, "BOOL": bool, "NULL": bool}
_DATA_PATCHED = False


def is_wire_attribute_value(value: Any) -> bool:
    """True when ``value`` is an AttributeValue already as DynamoDB sends it, with no binary in it.

    moto keeps items in that form: S and N strings, BOOL and NULL booleans, SS and NS lists
    of strings, M and L of such values. Anything else (binary, moto's own objects) is not.
    """
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in _SCALAR_TYPES:
        return type(inner) is _SCALAR_TYPES[kind]
    if kind in ("SS", "NS"):
        return isinstance(inner, list) and all(type(v) is str for v in inner)
    if kind == "M":
        return isinstance(inner, dict) and all(
            type(k) is str and is_wire_attribute_value(v) for k, v in inner.items()
        )
    if kind == "L":
        return isinstance(inner, list) and all(is_wire_attribute_value(v) for v in inner)
    return False


def install_data_patches() -> None:
    """Patches of the data process: DynamoDB's responses serialized without walking every attribute.

    moto's JSON serializer visits each of an AttributeValue's ten members through its
    attribute picker: for a job's item (~30 attributes) that was ~40% of a GetItem's CPU.
    An AttributeValue moto already holds in wire form serializes to itself, so it is
    copied as it is; anything else (binary, moto's objects) takes moto's own path.
    """
    global _DATA_PATCHED
    if _DATA_PATCHED:
        return
    from moto.core.serialize import BaseJSONSerializer

    BaseJSONSerializer._serialize_type_structure = attribute_values_as_held(  # type: ignore[method-assign]
        BaseJSONSerializer._serialize_type_structure
    )
    cache_action_lookup()
    size_items_once()
    cache_condition_parses()
    serialize_dynamodb_requests()
    _DATA_PATCHED = True


def serialize_dynamodb_requests() -> None:
    """One DynamoDB request at a time, as DynamoDB makes each read and write of an item atomic.

    moto's server answers each request on a thread of its own and applies an update to the stored item in
    place, one attribute after another, after checking its condition. A read between two of those steps
    saw half an update: a job FAILED with the message it had before failing. A condition checked before
    another write lands could pass on a state that no longer holds.
    """
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "serialized", False):
        return
    original = DynamoHandler.call_action
    lock = threading.Lock()

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    call_action.serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def cache_action_lookup() -> None:
    """moto finds a request's handler method by listing its response class's methods (inspect.getmembers)
    on every request; a class's methods do not change, so the list is made once per class."""
    from moto.core import responses

    lookup = responses.method_names_from_class
    if getattr(lookup, "cache_info", None) is None:
        responses.method_names_from_class = functools.cache(lookup)  # type: ignore[assignment]


def size_items_once() -> None:
    """moto checks an item's 400 KB limit as it builds the item, summing every attribute already set before each
    new one: quadratic in the attributes (a job's ~30: ~10% of a PutItem's CPU). An item's size only grows as
    attributes are added, so one check of the whole item refuses exactly the items moto refuses."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    if getattr(Item.__init__, "sized_once", False):
        return

    def build(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        if item_size(values) > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict(values)  # its __init__ takes the values without checking each

    build.sized_once = True  # type: ignore[attr-defined]
    Item.__init__ = build  # type: ignore[method-assign]


# moto's own limit (dynamo_type.LimitedSizeDict): between DynamoDB's measured 409 and 410 KB.
ITEM_SIZE_LIMIT = 405_000


def item_size(values: dict[str, Any]) -> int:
    """An item's size as moto's LimitedSizeDict counts it: each name's bytes plus each value's size."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize

    return sum(
        bytesize(key) + (value.size() if type(value) is DynamoType else bytesize(str(value)))
        for key, value in values.items()
    )


def cache_condition_parses() -> None:
    """A condition expression is parsed once per (expression, names, values), not on every write.

    moto parses a write's condition twice (to validate the request, then to evaluate it) on
    every call, and the jobs table's writes repeat a handful of conditions
    (``attribute_not_exists(job_id)`` on every POST /run): ~7% of a PutItem's CPU. The
    parsed tree is only read when a condition is evaluated, so requests can share it. A
    condition that does not parse is not kept: it fails where moto's own parser fails.
    """
    from moto.dynamodb import comparisons, responses
    from moto.dynamodb import models as dynamodb_models

    original = comparisons.create_condition_expression_parser
    if getattr(original, "cache_info", None) is not None:
        return

    @functools.lru_cache(maxsize=512)
    def parsed(expr: str | None, names: str, values: str) -> ParsedCondition:
        parser = original(expr, json.loads(names), json.loads(values))
        return ParsedCondition(parser, parser.parse())

    def create_condition_expression_parser(expr: str | None, names: Any, values: Any) -> Any:
        try:
            return parsed(expr, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True))
        except Exception:  # not JSON, or not a valid condition: moto's parser raises it at .parse()
            return original(expr, names, values)

    create_condition_expression_parser.cache_info = parsed.cache_info  # type: ignore[attr-defined]
    for module in (comparisons, dynamodb_models, responses):
        module.create_condition_expression_parser = create_condition_expression_parser  # type: ignore[attr-defined]


class ParsedCondition:
    """A condition moto's parser has parsed: ``parse()`` hands back the tree, the rest is the parser's."""

    def __init__(self, parser: Any, tree: Any) -> None:
        self._parser = parser
        self._tree = tree

    def parse(self) -> Any:
        return self._tree

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


def attribute_values_as_held(original: Callable[..., None]) -> Callable[..., None]:
    """moto's structure serializer, except that a DynamoDB AttributeValue in wire form is copied as it is."""

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            key
            and shape.name == "AttributeValue"
            and self.operation_model.service_model.service_name in _DATA_SERVICES
            and is_wire_attribute_value(value)
        ):
            self._default_serialize(serialized, value, shape, key)
            return
        original(self, serialized, value, shape, key)

    return serialize_structure
