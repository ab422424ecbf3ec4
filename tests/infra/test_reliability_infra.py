"""What the deployed service needs so every job ends and the API holds its load: timeouts, the starter,
the launch template, the API's narrowed role, throttling for 50 pollers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from batch_agent.service import names
from batch_agent.service.settings import StarterSettings
from infra_cdk.environments import ENVIRONMENTS
from infra_cdk.pipeline import VALIDATE_EPHEMERAL_MIB
from infra_cdk.training import FARGATE_SPOT_REASON
from tests.infra.synthesis import Synthesized
from tests.infra.test_stack import (
    ALL_ENVIRONMENTS,
    GPU_ENVIRONMENTS,
    function_environment,
    job_definition,
    logical_id,
    resources,
    settings_variables,
)


def _statements_of(synth: Synthesized, role: Any) -> list[dict[str, Any]]:
    stack = synth.stack
    role_id = str(stack.resolve(stack.get_logical_id(role.node.default_child)))
    found = []
    for policy in resources(synth, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    actions: set[str] = set()
    for statement in statements:
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


@pytest.mark.parametrize("env", GPU_ENVIRONMENTS)
def test_gpu_hosts_have_a_sized_root_volume_and_containers_cannot_reach_instance_metadata(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    (template_id,) = resources(synth, "AWS::EC2::LaunchTemplate")
    data = synth.json["Resources"][template_id]["Properties"]["LaunchTemplateData"]

    (volume,) = data["BlockDeviceMappings"]
    assert volume["DeviceName"] == "/dev/xvda"
    assert volume["Ebs"]["VolumeSize"] == settings.gpu_root_volume_gib >= 100
    assert volume["Ebs"]["Encrypted"] is True
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    user_data = json.dumps(data["UserData"])
    assert "Content-Type: multipart/mixed" in user_data  # Batch takes only MIME multi-part user data
    assert "--in-interface docker+ --destination 169.254.169.254/32 --jump DROP" in user_data
    assert "--destination 169.254.169.254/32 --match owner ! --uid-owner 0 --jump DROP" in user_data
    synth.template.has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {
            "ComputeEnvironmentName": names.resource_name(settings.prefix, names.GPU_QUEUE),
            "ComputeResources": Match.object_like(
                {"LaunchTemplate": Match.object_like({"LaunchTemplateId": {"Ref": template_id}})}
            ),
        },
    )


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_queues_cancel_jobs_left_runnable_for_lack_of_capacity(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    for queue in resources(synth, "AWS::Batch::JobQueue").values():
        actions = queue["Properties"]["JobStateTimeLimitActions"]
        assert {a["Reason"] for a in actions} == {
            "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
            "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE",
            "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
        }
        for action in actions:
            assert (action["State"], action["Action"]) == ("RUNNABLE", "CANCEL")
            assert action["MaxTimeSeconds"] == settings.runnable_time_limit_minutes * 60


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_job_definitions_retry_spot_reclaims_on_ec2_and_fargate_and_tell_the_container_its_timeout(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    bases = [names.CPU_JOB_DEFINITION] + ([names.GPU_JOB_DEFINITION] if settings.gpu_enabled else [])
    for base in bases:
        definition = job_definition(synth, base)
        retried = {
            e.get("OnStatusReason") for e in definition["RetryStrategy"]["EvaluateOnExit"] if e["Action"] == "RETRY"
        }
        assert retried == {"Host EC2*", FARGATE_SPOT_REASON}
        variables = {v["Name"]: v["Value"] for v in definition["ContainerProperties"]["Environment"]}
        assert variables[names.ENV_ATTEMPT_TIMEOUT_S] == str(settings.job_timeout_minutes * 60)


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_api_role_reads_and_purges_job_files_only_and_starts_no_execution(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth = synthesized[env]
    statements = _statements_of(synth, synth.stack.api.handler.role)
    actions = _actions(statements)

    assert "states:StartExecution" not in actions
    assert {"states:StopExecution", "batch:TerminateJob", "dynamodb:DeleteItem", "s3:DeleteObject"} <= actions
    for statement in statements:
        s3_actions = {a for a in _actions([statement]) if str(a).startswith("s3:")}
        if not s3_actions:
            continue
        text = json.dumps(statement["Resource"])
        if statement["Action"] == "s3:ListBucket":
            assert statement["Condition"] == {"StringLike": {"s3:prefix": ["jobs/*"]}}
        elif text.endswith('"/tracked/*"]]}'):
            # POST /leaderboards/{slug}: the API's only object write is the marker that asks the sync to track.
            assert s3_actions == {"s3:GetObject", "s3:PutObject"}, s3_actions
        elif text.endswith('"/leaderboards/*"]]}'):
            assert s3_actions == {"s3:GetObject"}, s3_actions  # the sync's snapshots, read-only
        else:
            # Objects under jobs/ only, never cache/ or the whole bucket, and never written.
            assert text.endswith('"/jobs/*"]]}'), text
            assert not {a for a in s3_actions if a.startswith("s3:Put") or a.startswith("s3:Abort")}


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_the_starter_runs_on_new_jobs_and_every_five_minutes(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    starter = names.resource_name(settings.prefix, names.STARTER_FUNCTION)
    function_id = logical_id(synth, "AWS::Lambda::Function", FunctionName=starter)
    synth.template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable", {"StreamSpecification": {"StreamViewType": "NEW_IMAGE"}}
    )
    synth.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "FunctionName": {"Ref": function_id},
            "FilterCriteria": {"Filters": [{"Pattern": json.dumps({"eventName": ["INSERT"]}, separators=(",", ":"))}]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "rate(5 minutes)",
            "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [function_id, "Arn"]}})],
        },
    )
    read, required = settings_variables(StarterSettings)
    assert required <= set(function_environment(synth, names.STARTER_FUNCTION)) <= read
    actions = _actions(_statements_of(synth, synth.stack.starter.handler.role))
    assert "states:StartExecution" in actions and not {a for a in actions if a.startswith("s3:")}


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_throttling_holds_fifty_pollers_and_limits_new_jobs_separately(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    (plan,) = resources(synth, "AWS::ApiGateway::UsagePlan").values()
    throttle = plan["Properties"]["Throttle"]
    # 50 clients each polling once a second, all arriving at once.
    assert throttle["RateLimit"] >= 50 and throttle["BurstLimit"] >= 50
    assert plan["Properties"]["Quota"]["Limit"] >= 50 * 3600  # an hour of 50 pollers
    (stage,) = plan["Properties"]["ApiStages"]
    (run_throttle,) = stage["Throttle"].values()
    assert run_throttle == {"RateLimit": settings.api_run_rate_limit, "BurstLimit": settings.api_run_burst_limit}
    assert next(iter(stage["Throttle"])).endswith("/run/POST")


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_api_lambda_memory_and_prod_warm_instances(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    synth.template.has_resource_properties(
        "AWS::Lambda::Function",
        {"FunctionName": names.resource_name(settings.prefix, names.API_FUNCTION), "MemorySize": 1024},
    )
    aliases = resources(synth, "AWS::Lambda::Alias")
    if settings.api_provisioned_concurrency:
        (alias,) = aliases.values()
        assert alias["Properties"]["ProvisionedConcurrencyConfig"] == {
            "ProvisionedConcurrentExecutions": settings.api_provisioned_concurrency
        }
    else:
        assert aliases == {}
    assert ENVIRONMENTS["prod"].api_provisioned_concurrency >= 1


def test_validate_lambda_has_room_in_tmp_for_the_test_file(synthesized: dict[str, Synthesized]) -> None:
    synth = synthesized["dev"]
    synth.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": names.resource_name("dev", names.VALIDATE_FUNCTION),
            "EphemeralStorage": {"Size": VALIDATE_EPHEMERAL_MIB},
        },
    )
