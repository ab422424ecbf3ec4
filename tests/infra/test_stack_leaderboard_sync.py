"""The leaderboard sync in the synthesized stacks: schedule, one run at a time, narrow grants, staleness alarm."""

from __future__ import annotations

from typing import Any

import pytest

from batch_agent.service import names
from batch_agent.service.settings import LeaderboardSyncSettings
from infra_cdk.environments import ENVIRONMENTS
from tests.infra.synthesis import Synthesized
from tests.infra.test_stack import function_environment, logical_id, resources, settings_variables

ALL_ENVIRONMENTS = list(ENVIRONMENTS)


def _function_id(synth: Synthesized, base_name: str) -> str:
    name = names.resource_name(synth.stack.settings.prefix, base_name)
    return logical_id(synth, "AWS::Lambda::Function", FunctionName=name)


def _put_object_keys(synth: Synthesized, role_id: str) -> set[str]:
    """The key patterns (after the bucket ARN) a role may PutObject to."""
    keys: set[str] = set()
    for policy in resources(synth, "AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if not any(a.startswith("s3:PutObject") for a in actions):
                continue
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for target in targets:
                parts = target["Fn::Join"][1]
                keys.add(str(parts[-1]).lstrip("/"))
    return keys


def _role_of(synth: Synthesized, base_name: str) -> str:
    function = synth.json["Resources"][_function_id(synth, base_name)]
    return str(function["Properties"]["Role"]["Fn::GetAtt"][0])


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_a_schedule_invokes_the_sync_every_five_minutes_one_run_at_a_time(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth = synthesized[env]
    function_id = _function_id(synth, names.LEADERBOARD_SYNC_FUNCTION)
    function = synth.json["Resources"][function_id]["Properties"]
    assert function["Handler"] == names.LEADERBOARD_SYNC_HANDLER
    assert function["ReservedConcurrentExecutions"] == 1
    # Other schedules (the starter's sweep) target other functions.
    (rule,) = [
        r for r in resources(synth, "AWS::Events::Rule").values()
        if r["Properties"].get("ScheduleExpression")
        and {"Fn::GetAtt": [function_id, "Arn"]} in [t["Arn"] for t in r["Properties"]["Targets"]]
    ]
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    synth.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": function_id}, "MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
    )


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_only_the_sync_writes_leaderboards_and_the_steps_write_only_job_files(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth = synthesized[env]
    assert _put_object_keys(synth, _role_of(synth, names.LEADERBOARD_SYNC_FUNCTION)) == {"leaderboards/*"}
    # The API records jobs in DynamoDB (the outbox); its only object write is a tracking marker.
    assert _put_object_keys(synth, _role_of(synth, names.API_FUNCTION)) == {"tracked/*"}
    for base_name in names.STEP_HANDLERS:
        assert _put_object_keys(synth, _role_of(synth, base_name)) == {"jobs/*"}, base_name


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_sync_variables_are_the_names_its_settings_read(synthesized: dict[str, Synthesized], env: str) -> None:
    synth = synthesized[env]
    read, required = settings_variables(LeaderboardSyncSettings)
    variables = function_environment(synth, names.LEADERBOARD_SYNC_FUNCTION)
    assert required <= set(variables) <= read
    secret = logical_id(
        synth, "AWS::SecretsManager::Secret", Name=names.resource_name(synth.stack.settings.prefix, names.KAGGLE_SECRET)
    )
    assert variables[names.ENV_KAGGLE_SECRET_ARN] == {"Ref": secret}
    assert variables[names.ENV_METRICS_NAMESPACE] == names.metrics_namespace(synth.stack.settings.prefix)


def test_sync_may_put_metrics_only_in_its_namespace(synthesized: dict[str, Synthesized]) -> None:
    synth = synthesized["prod"]
    role = _role_of(synth, names.LEADERBOARD_SYNC_FUNCTION)
    statements: list[dict[str, Any]] = [
        s
        for p in resources(synth, "AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "cloudwatch:PutMetricData"
    ]
    assert statements == [
        {
            "Action": "cloudwatch:PutMetricData",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "prod-kaggle-solver"}},
            "Effect": "Allow",
            "Resource": "*",
        }
    ]


def test_a_stale_snapshot_or_a_silent_sync_raises_an_alarm_on_the_alarm_topic(
    synthesized: dict[str, Synthesized],
) -> None:
    synth = synthesized["prod"]
    (alarm,) = [
        a["Properties"] for a in resources(synth, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == names.METRIC_OLDEST_SNAPSHOT_AGE
    ]
    assert alarm["Namespace"] == "prod-kaggle-solver"
    assert alarm["Statistic"] == "Maximum"
    assert alarm["Threshold"] == 900 and alarm["Period"] == 900  # 3 intervals of 5 minutes
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "breaching"
    topic = logical_id(synth, "AWS::SNS::Topic", TopicName="prod-kaggle-solver-alarms")
    assert alarm["AlarmActions"] == [{"Ref": topic}]
