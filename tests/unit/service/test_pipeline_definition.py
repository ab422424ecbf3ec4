"""The pipeline's ASL: every failure path is caught, Lambda errors are retried, placeholders match."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from batch_agent.service import names
from batch_agent.service.state_machine import (
    ASL_PATH,
    FUNCTION_PLACEHOLDERS,
    PLACEHOLDERS,
    definition_substitutions,
    local_arns,
    render_definition,
)

TRANSIENT_LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    definition = json.loads(render_definition(local_arns("unit", region="us-east-1", account="123456789012")))
    result: dict[str, Any] = definition["States"]
    return result


def test_placeholders_in_the_asl_are_exactly_those_the_substitutions_fill() -> None:
    used = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))

    assert used == set(PLACEHOLDERS)
    assert set(local_arns("x", region="eu-west-1", account="1")) == set(PLACEHOLDERS)


def test_substitutions_refuse_a_missing_function_arn() -> None:
    arns = {base: f"arn:{base}" for base in FUNCTION_PLACEHOLDERS.values() if base != names.REPAIR_FUNCTION}
    with pytest.raises(ValueError, match="repair"):
        definition_substitutions(
            function_arns=arns,
            cpu_job_queue_arn="q1",
            gpu_job_queue_arn="q2",
            prepare_job_definition_arn="d0",
            cpu_job_definition_arn="d1",
            gpu_job_definition_arn="d2",
            artifacts_bucket_name="b",
        )


def test_every_task_but_the_failure_recorder_and_training_catches_everything_into_it(states: dict[str, Any]) -> None:
    for name, state in states.items():
        if state["Type"] != "Task" or name in ("RecordFailure", "TrainCpu", "TrainGpu"):
            continue
        catchers = state.get("Catch", [])
        assert any(c["ErrorEquals"] == ["States.ALL"] and c["Next"] == "RecordFailure" for c in catchers), name
        assert all(c.get("ResultPath") == "$.error" for c in catchers), name
    assert states["RecordFailure"]["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_a_failed_training_job_becomes_a_failed_attempt_that_validate_records(states: dict[str, Any]) -> None:
    for name in ("TrainCpu", "TrainGpu"):
        (catcher,) = states[name]["Catch"]
        assert catcher["ErrorEquals"] == ["States.ALL"]
        # The state itself is kept (job_id, attempt): validate reads the error beside it.
        assert (catcher["Next"], catcher["ResultPath"]) == ("Validate", "$.train_error")


def test_lambda_tasks_retry_transient_lambda_errors(states: dict[str, Any]) -> None:
    lambda_tasks = [n for n, s in states.items() if s["Type"] == "Task" and ":function:" in s["Resource"]]

    assert sorted(lambda_tasks) == sorted(["Plan", "Generate", "Validate", "Repair", "Finish", "RecordFailure"])
    for name in lambda_tasks:
        retried = {e for r in states[name]["Retry"] for e in r["ErrorEquals"]}
        assert retried >= TRANSIENT_LAMBDA_ERRORS or "States.ALL" in retried, name


def test_batch_tasks_fill_every_parameter_of_the_container_command(states: dict[str, Any]) -> None:
    needed = {part[len("Ref::") :] for part in names.BATCH_COMMAND if part.startswith("Ref::")}
    batch_tasks = {n: s for n, s in states.items() if s.get("Resource") == "arn:aws:states:::batch:submitJob.sync"}

    assert sorted(batch_tasks) == ["Prepare", "TrainCpu", "TrainGpu"]
    for name, state in batch_tasks.items():
        given = {key.removesuffix(".$") for key in state["Parameters"]["Parameters"]}
        assert needed <= given | set(names.BATCH_DEFAULT_PARAMETERS), name
    assert "gpu" in states["TrainGpu"]["Parameters"]["JobQueue"]
    assert "gpu" in states["TrainGpu"]["Parameters"]["JobDefinition"]


def test_every_transition_names_an_existing_state(states: dict[str, Any]) -> None:
    targets = []
    for state in states.values():
        targets += [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]

    assert {t for t in targets if t} <= set(states)
    reachable = {"Prepare"} | {t for t in targets if t}
    assert reachable == set(states)


def test_only_the_prepare_job_uses_the_definition_that_holds_the_kaggle_secret(states: dict[str, Any]) -> None:
    uses = {name: state["Parameters"]["JobDefinition"] for name, state in states.items()
            if state.get("Resource", "").startswith("arn:aws:states:::batch:submitJob")}
    prepare = local_arns("unit", region="us-east-1", account="123456789012")["PrepareJobDefinitionArn"]
    assert uses.pop("Prepare") == prepare
    assert uses and prepare not in uses.values()
def test_every_execution_times_out_after_the_longest_job_the_api_accepts_plus_its_grace() -> None:
    from batch_agent.service.settings import ApiSettings

    definition = json.loads(ASL_PATH.read_text())
    settings = ApiSettings(jobs_table="t", artifacts_bucket="b", state_machine_arn="arn")

    # The sweep ends each job at its own time limit + grace; this bounds the execution even without it.
    assert settings.max_time_limit + settings.deadline_grace_s <= definition["TimeoutSeconds"]
    assert definition["TimeoutSeconds"] <= settings.max_time_limit + 2 * 3600
