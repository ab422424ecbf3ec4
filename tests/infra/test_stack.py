"""What the synthesized stacks must hold, for every environment in infra_cdk.environments."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match
from pydantic_settings import BaseSettings

from batch_agent.service import names
from batch_agent.service.settings import ApiSettings, ContainerSettings, StepSettings
from batch_agent.service.state_machine import ASL_PATH, PLACEHOLDERS
from infra_cdk.environments import ENVIRONMENTS, DeploymentSettings, settings_for
from infra_cdk.nag import AWS_REQUIRED_STAR_ACTIONS
from infra_cdk.pipeline import LLM_STEPS
from infra_cdk.training import KAGGLE_CONFIG_DIR
from tests.infra.synthesis import Synthesized, synthesize

REPO_ROOT = Path(__file__).resolve().parents[2]
GPU_ENVIRONMENTS = [env for env, settings in ENVIRONMENTS.items() if settings.gpu_enabled]
ALL_ENVIRONMENTS = list(ENVIRONMENTS)


def resources(synth: Synthesized, resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in synth.json["Resources"].items() if v["Type"] == resource_type}


def logical_id(synth: Synthesized, resource_type: str, **properties: Any) -> str:
    found = [
        key
        for key, value in resources(synth, resource_type).items()
        if all(value.get("Properties", {}).get(k) == v for k, v in properties.items())
    ]
    assert len(found) == 1, f"{resource_type} {properties}: {found}"
    return found[0]


def settings_variables(model: type[BaseSettings]) -> tuple[set[str], set[str]]:
    """(every variable the settings model reads, the ones it requires)."""
    prefix = model.model_config.get("env_prefix", "")
    read = {f"{prefix}{name}".upper() for name in model.model_fields}
    required = {f"{prefix}{name}".upper() for name, field in model.model_fields.items() if field.is_required()}
    return read, required


def function_environment(synth: Synthesized, base_name: str) -> dict[str, Any]:
    name = names.resource_name(synth.stack.settings.prefix, base_name)
    function_id = logical_id(synth, "AWS::Lambda::Function", FunctionName=name)
    return synth.json["Resources"][function_id]["Properties"]["Environment"]["Variables"]  # type: ignore[no-any-return]


def job_definition(synth: Synthesized, base_name: str) -> dict[str, Any]:
    name = names.resource_name(synth.stack.settings.prefix, base_name)
    definition_id = logical_id(synth, "AWS::Batch::JobDefinition", JobDefinitionName=name)
    return synth.json["Resources"][definition_id]["Properties"]  # type: ignore[no-any-return]


# --- cdk-nag ---


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_environment_synthesizes_with_no_unacknowledged_awssolutions_finding(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    report = synthesized[env].validation_report()
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    acknowledged = nag["suppressedViolations"]
    assert acknowledged, "the checks ran and found the accepted findings"
    for finding in acknowledged:
        assert len(finding["reason"]) > 30, finding["acknowledgedId"]


def test_an_unacknowledged_finding_fails_synthesis(tmp_path: Path) -> None:
    def add_plain_bucket(stack: Any) -> None:
        s3.Bucket(stack, "PlainBucket")

    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synthesize("local", tmp_path, change=add_plain_bucket)
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-S10" in report and "PlainBucket" in report


def test_star_resources_only_for_actions_aws_allows_no_other_resource(synthesized: dict[str, Synthesized]) -> None:
    for synth in synthesized.values():
        for policy in resources(synth, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Resource"] == "*" or "*" in statement["Resource"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    assert set(actions) <= AWS_REQUIRED_STAR_ACTIONS, actions


# --- Batch ---


@pytest.mark.parametrize("env", GPU_ENVIRONMENTS)
def test_gpu_compute_environment_launches_gpu_instances_with_the_ecs_gpu_ami(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    synth.template.has_resource_properties(
        "AWS::Batch::ComputeEnvironment",
        {
            "ComputeEnvironmentName": names.resource_name(settings.prefix, names.GPU_QUEUE),
            "Type": "managed",
            "ComputeResources": Match.object_like(
                {
                    "Type": "SPOT" if settings.gpu_spot else "EC2",
                    "InstanceTypes": list(settings.gpu_instance_types),
                    "MinvCpus": 0,
                    "MaxvCpus": settings.gpu_max_vcpus,
                    "Ec2Configuration": [{"ImageType": "ECS_AL2023_NVIDIA"}],
                }
            ),
        },
    )
    assert all(t.split(".")[0] in ("g5", "g6", "g6e") for t in settings.gpu_instance_types)


@pytest.mark.parametrize("env", GPU_ENVIRONMENTS)
def test_gpu_job_definition_asks_for_one_gpu_with_the_environment_timeout(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    definition = job_definition(synth, names.GPU_JOB_DEFINITION)
    requirements = {r["Type"]: r["Value"] for r in definition["ContainerProperties"]["ResourceRequirements"]}
    assert requirements == {
        "GPU": "1",
        "VCPU": str(settings.gpu_job_vcpus),
        "MEMORY": str(settings.gpu_job_memory_mib),
    }
    assert definition["Timeout"] == {"AttemptDurationSeconds": settings.job_timeout_minutes * 60}
    assert definition["PlatformCapabilities"] == ["EC2"]
    assert definition["ContainerProperties"]["Command"] == names.BATCH_COMMAND


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_cpu_job_definition_runs_the_batch_command_on_fargate(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    definition = job_definition(synth, names.CPU_JOB_DEFINITION)
    assert definition["PlatformCapabilities"] == ["FARGATE"]
    assert definition["ContainerProperties"]["Command"] == names.BATCH_COMMAND
    assert definition["Parameters"] == names.BATCH_DEFAULT_PARAMETERS
    assert definition["Timeout"] == {"AttemptDurationSeconds": settings.job_timeout_minutes * 60}
    # No NAT gateway: the task needs a public IP to pull its image.
    assert definition["ContainerProperties"]["NetworkConfiguration"] == {"AssignPublicIp": "ENABLED"}


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_each_compute_kind_has_its_queue(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    queues = {q["Properties"]["JobQueueName"] for q in resources(synth, "AWS::Batch::JobQueue").values()}
    expected = {names.resource_name(settings.prefix, names.CPU_QUEUE)}
    if settings.gpu_enabled:
        expected.add(names.resource_name(settings.prefix, names.GPU_QUEUE))
    assert queues == expected


def test_container_images_are_built_from_the_two_dockerfiles(synthesized: dict[str, Synthesized]) -> None:
    images = synthesized["dev"].assets_manifest()["dockerImages"].values()
    dockerfiles = sorted(image["source"].get("dockerFile", "Dockerfile") for image in images)
    assert dockerfiles == ["Dockerfile", "Dockerfile.gpu"]
    for image in images:
        assert (REPO_ROOT / image["source"].get("dockerFile", "Dockerfile")).is_file()


def test_vpc_has_no_nat_gateway_and_free_gateway_endpoints(synthesized: dict[str, Synthesized]) -> None:
    for synth in synthesized.values():
        synth.template.resource_count_is("AWS::EC2::NatGateway", 0)
        endpoints = resources(synth, "AWS::EC2::VPCEndpoint").values()
        assert {e["Properties"]["VpcEndpointType"] for e in endpoints} == {"Gateway"}
        assert len(endpoints) == 2
        groups = resources(synth, "AWS::EC2::SecurityGroup").values()
        assert all(not g["Properties"].get("SecurityGroupIngress") for g in groups)


# --- Step Functions ---


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_every_state_machine_placeholder_has_a_value(synthesized: dict[str, Synthesized], env: str) -> None:
    synth = synthesized[env]
    (machine,) = resources(synth, "AWS::StepFunctions::StateMachine").values()
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    in_file = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))
    assert in_file == set(PLACEHOLDERS)
    assert set(substitutions) == in_file
    assert all(value not in ("", None) for value in substitutions.values())
    assert "DefinitionS3Location" in machine["Properties"]


def test_without_gpu_the_gpu_placeholders_point_at_the_cpu_queue(synthesized: dict[str, Synthesized]) -> None:
    (machine,) = resources(synthesized["local"], "AWS::StepFunctions::StateMachine").values()
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    assert substitutions["GpuJobQueueArn"] == substitutions["CpuJobQueueArn"]
    assert substitutions["GpuJobDefinitionArn"] == substitutions["CpuJobDefinitionArn"]
    (dev_machine,) = resources(synthesized["dev"], "AWS::StepFunctions::StateMachine").values()
    dev_substitutions = dev_machine["Properties"]["DefinitionSubstitutions"]
    assert dev_substitutions["GpuJobQueueArn"] != dev_substitutions["CpuJobQueueArn"]


def test_failed_executions_raise_an_alarm(synthesized: dict[str, Synthesized]) -> None:
    synth = synthesized["prod"]
    (alarm,) = [
        a for a in resources(synth, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("Metrics")
    ]
    metric_names = {
        m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Properties"]["Metrics"] if "MetricStat" in m
    }
    assert metric_names == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert alarm["Properties"]["Threshold"] == 1
    assert alarm["Properties"]["AlarmActions"]


# --- API ---


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_api_key_is_required_on_run(synthesized: dict[str, Synthesized], env: str) -> None:
    synth = synthesized[env]
    run_resource = logical_id(synth, "AWS::ApiGateway::Resource", PathPart="run")
    synth.template.has_resource_properties(
        "AWS::ApiGateway::Method",
        {"HttpMethod": "POST", "ResourceId": {"Ref": run_resource}, "ApiKeyRequired": True},
    )


def test_api_gateway_routes_are_the_fastapi_routes(synthesized: dict[str, Synthesized]) -> None:
    from fastapi.routing import APIRoute

    from batch_agent.service.job_requests import ApiClients
    from lambdas.api.app import create_app

    settings = ApiSettings(jobs_table="t", artifacts_bucket="b", state_machine_arn="arn:aws:states:::x")
    app = create_app(settings, ApiClients(dynamodb=None, s3=None, stepfunctions=None, batch=None))
    documented = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    fastapi_routes = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path not in documented
        for method in route.methods or ()
    }

    synth = synthesized["dev"]
    paths: dict[str, str] = {}
    api_resources = resources(synth, "AWS::ApiGateway::Resource")

    def path_of(resource_id: str) -> str:
        if resource_id not in paths:
            props = api_resources[resource_id]["Properties"]
            parent = props["ParentId"]
            prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
            paths[resource_id] = f"{prefix}/{props['PathPart']}"
        return paths[resource_id]

    gateway_routes = set()
    keyless = set()
    for method in resources(synth, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        path = path_of(props["ResourceId"]["Ref"]) if "Ref" in props["ResourceId"] else "/"
        gateway_routes.add((path, props["HttpMethod"]))
        if not props.get("ApiKeyRequired"):
            keyless.add(path)
    assert gateway_routes == fastapi_routes
    assert keyless == {"/health", "/", "/static/{name}"}


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_usage_plan_throttles_and_limits_the_key(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    synth.template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": settings.api_rate_limit, "BurstLimit": settings.api_burst_limit},
            "Quota": {"Limit": settings.api_quota_per_day, "Period": "DAY"},
        },
    )
    synth.template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    synth.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "MethodSettings": Match.array_with([Match.object_like({"LoggingLevel": "ERROR"})]),
        },
    )
    # API Gateway logs nothing until the account settings name a CloudWatch role.
    synth.template.resource_count_is("AWS::ApiGateway::Account", 1)


# --- storage ---


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_artifacts_bucket_is_private_encrypted_ssl_only_and_expires_job_files(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    for bucket in resources(synth, "AWS::S3::Bucket").values():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert "BucketEncryption" in bucket["Properties"]
    for policy in resources(synth, "AWS::S3::BucketPolicy").values():
        deny_insecure = [
            s
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert deny_insecure
    (artifacts,) = [
        b for b in resources(synth, "AWS::S3::Bucket").values() if "LoggingConfiguration" in b["Properties"]
    ]
    rules = artifacts["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"Prefix": names.JOBS_PREFIX, "ExpirationInDays": settings.artifact_expiry_days} in [
        {k: r[k] for k in ("Prefix", "ExpirationInDays") if k in r} for r in rules
    ]


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_jobs_table_is_on_demand_with_pitr_ttl_and_listing_indexes(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    (table,) = resources(synth, "AWS::DynamoDB::GlobalTable").values()
    props = table["Properties"]
    assert props["TableName"] == names.resource_name(settings.prefix, names.JOBS_TABLE)
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": names.JOBS_TABLE_KEY, "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"]["Enabled"] is True
    replica = props["Replicas"][0]
    assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    indexes = {
        index["IndexName"]: [key["AttributeName"] for key in index["KeySchema"]]
        for index in props["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        names.JOBS_BY_STATUS_INDEX: ["status", names.JOBS_SORT_ATTRIBUTE],
        names.JOBS_BY_CREATED_INDEX: ["listing", names.JOBS_SORT_ATTRIBUTE],
    }


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_every_log_group_keeps_logs_as_long_as_the_environment_says(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    groups = resources(synth, "AWS::Logs::LogGroup").values()
    assert len(groups) >= 10  # 7 Lambdas, state machine, API access, Batch jobs, VPC flow logs
    assert {g["Properties"]["RetentionInDays"] for g in groups} == {settings.log_retention_days}


# --- Lambda environment and secrets ---


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_lambda_variables_are_the_names_their_settings_read(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    api_read, api_required = settings_variables(ApiSettings)
    api_environment = function_environment(synth, names.API_FUNCTION)
    assert api_required <= set(api_environment) <= api_read
    # Job records expire with the artifacts they link to.
    assert api_environment[names.ENV_JOB_RETENTION_DAYS] == str(settings.artifact_expiry_days)

    step_read, step_required = settings_variables(StepSettings)
    for base_name in names.STEP_HANDLERS:
        variables = set(function_environment(synth, base_name))
        assert step_required <= variables <= step_read, base_name
        wants_claude = base_name in LLM_STEPS and settings.claude_enabled
        assert (names.ENV_ANTHROPIC_SECRET_ARN in variables) == wants_claude, base_name


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_batch_container_variables_are_the_names_its_settings_and_the_kaggle_client_read(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    read, required = settings_variables(ContainerSettings)
    prices = {names.PREPARE_JOB_DEFINITION: settings.cpu_job_usd_per_hour,
              names.CPU_JOB_DEFINITION: settings.cpu_job_usd_per_hour}
    if settings.gpu_enabled:
        prices[names.GPU_JOB_DEFINITION] = settings.gpu_job_usd_per_hour
    for base_name, price in prices.items():
        container = job_definition(synth, base_name)["ContainerProperties"]
        variables = {v["Name"]: v["Value"] for v in container["Environment"]}
        assert required <= set(variables) <= read | {"KAGGLE_CONFIG_DIR"}
        # Each run's reported cost prices its Batch time at its queue's rate.
        assert float(variables[names.ENV_USD_PER_HOUR]) == price
        assert variables["KAGGLE_CONFIG_DIR"] == KAGGLE_CONFIG_DIR


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_only_the_prepare_job_carries_the_kaggle_secret(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    prepare = job_definition(synth, names.PREPARE_JOB_DEFINITION)["ContainerProperties"]
    assert {s["Name"] for s in prepare["Secrets"]} == {"KAGGLE_USERNAME", "KAGGLE_KEY"}
    trains = [names.CPU_JOB_DEFINITION] + ([names.GPU_JOB_DEFINITION] if settings.gpu_enabled else [])
    for base_name in trains:
        container = job_definition(synth, base_name)["ContainerProperties"]
        assert "Secrets" not in container, f"{base_name} carries secrets"
        assert not any("KAGGLE_KEY" in json.dumps(v) for v in container.get("Environment", []))


def _role_statements(synth: Synthesized, role: Any) -> list[dict[str, Any]]:
    stack = synth.stack
    role_ref = str(stack.resolve(stack.get_logical_id(role.node.default_child)))
    return [statement
            for policy in resources(synth, "AWS::IAM::Policy").values()
            if {"Ref": role_ref} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


@pytest.mark.parametrize("env", ["prod"])
def test_training_jobs_assume_a_role_that_writes_only_attempt_and_blend_files(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    synth = synthesized[env]
    training = synth.stack.training
    for definition in (training.cpu_job_definition, training.gpu_job_definition):
        if definition is not None:
            assert definition.container.job_role is training.train_role
    # The job's own role may only assume the access role (which the job narrows to itself per session).
    own = _role_statements(synth, training.train_role)
    assert [a for st in own for a in _actions(st)] == ["sts:AssumeRole"]
    access_id = synth.stack.get_logical_id(training.train_access_role.node.default_child)
    assert json.dumps(synth.stack.resolve(own[0]["Resource"])).count(access_id) == 1
    for base_name in [names.CPU_JOB_DEFINITION] + ([names.GPU_JOB_DEFINITION] if training.gpu_job_definition else []):
        container = job_definition(synth, base_name)["ContainerProperties"]
        variables = {v["Name"]: v["Value"] for v in container["Environment"]}
        assert access_id in json.dumps(variables[names.ENV_TRAIN_ACCESS_ROLE_ARN])
    statements = _role_statements(synth, training.train_access_role)
    assert statements
    bucket_id = synth.stack.get_logical_id(synth.stack.storage.bucket.node.default_child)
    for statement in statements:
        actions = _actions(statement)
        writes = [a for a in actions if a.startswith("s3:") and not a.startswith(("s3:Get", "s3:List"))]
        if writes:
            resource = json.dumps(synth.stack.resolve(statement["Resource"]))
            assert bucket_id in resource
            allowed = [f"/{pattern}" for pattern in ("jobs/*/attempts/*", "jobs/*/blend/*", "jobs/*/blend.json")]
            assert any(suffix in resource for suffix in allowed), resource
            assert not any(a.startswith("s3:Delete") for a in actions)
        table_actions = [a for a in actions if a.startswith("dynamodb:")]
        assert set(table_actions) <= {"dynamodb:GetItem", "dynamodb:UpdateItem"}
        assert "secretsmanager:GetSecretValue" not in actions


def _roles_reading(synth: Synthesized, secret_id: str) -> set[str]:
    roles: set[str] = set()
    for policy in resources(synth, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager:GetSecretValue" in statement["Action"] and statement["Resource"] == {"Ref": secret_id}:
                roles.update(role["Ref"] for role in policy["Properties"]["Roles"])
    return roles


@pytest.mark.parametrize("env", ALL_ENVIRONMENTS)
def test_secrets_are_readable_only_by_what_uses_them(synthesized: dict[str, Synthesized], env: str) -> None:
    synth, settings = synthesized[env], ENVIRONMENTS[env]
    stack = synth.stack

    def role_id(role: Any) -> str:
        return str(stack.resolve(stack.get_logical_id(role.node.default_child)))

    kaggle = role_id(stack.kaggle_secret)
    # Only the prepare job's container gets the Kaggle secret (training jobs run untrusted programs);
    # the leaderboard sync reads it itself.
    assert stack.training.prepare_job_definition.container.execution_role is not None
    prepare_role = role_id(stack.training.prepare_job_definition.container.execution_role)
    sync_role = role_id(stack.leaderboard_sync.sync.role)
    assert _roles_reading(synth, kaggle) == {prepare_role, sync_role}

    anthropic = role_id(stack.anthropic_secret)
    llm_roles = {role_id(stack.pipeline.steps[b].role) for b in LLM_STEPS} if settings.claude_enabled else set()
    assert _roles_reading(synth, anthropic) == llm_roles


# --- code assets ---


def test_lambda_code_asset_holds_only_the_two_packages(synthesized: dict[str, Synthesized]) -> None:
    synth = synthesized["dev"]
    (function,) = [
        f
        for f in resources(synth, "AWS::Lambda::Function").values()
        if f["Properties"].get("FunctionName") == names.resource_name("dev", names.API_FUNCTION)
    ]
    asset = synth.outdir / function["Metadata"]["aws:asset:path"]
    assert sorted(p.name for p in asset.iterdir()) == ["batch_agent", "lambdas"]
    assert (asset / "lambdas" / "api" / "handler.py").is_file()
    assert not list(asset.rglob("__pycache__"))
    handlers = {
        f["Properties"]["Handler"]
        for f in resources(synth, "AWS::Lambda::Function").values()
        if "Handler" in f["Properties"] and f["Properties"].get("FunctionName")
    }
    assert handlers == {names.API_HANDLER, names.LEADERBOARD_SYNC_HANDLER, names.STARTER_HANDLER,
                        *names.STEP_HANDLERS.values()}
    for handler in handlers:
        module = handler.rsplit(".", 1)[0]
        assert (asset / (module.replace(".", "/") + ".py")).is_file(), handler


def test_runtime_code_never_imports_the_cdk() -> None:
    for package in ("batch_agent", "lambdas"):
        for source in (REPO_ROOT / package).rglob("*.py"):
            assert not re.search(r"^\s*(import|from)\s+aws_cdk", source.read_text(), re.MULTILINE), source


# --- names and environments ---


def test_local_environment_uses_the_emulated_stack_names(synthesized: dict[str, Synthesized]) -> None:
    from batch_agent.local.stack import StackOptions

    prefix = StackOptions().prefix
    synth = synthesized["local"]
    assert synth.stack.settings.prefix == prefix
    synth.template.has_resource_properties(
        "AWS::S3::Bucket", {"BucketName": names.resource_name(prefix, names.ARTIFACTS_BUCKET)}
    )
    synth.template.has_resource_properties(
        "AWS::StepFunctions::StateMachine", {"StateMachineName": names.resource_name(prefix, names.STATE_MACHINE)}
    )
    synth.template.has_resource_properties(
        "AWS::Batch::JobDefinition", {"JobDefinitionName": names.resource_name(prefix, names.CPU_JOB_DEFINITION)}
    )
    function_names = {
        f["Properties"]["FunctionName"]
        for f in resources(synth, "AWS::Lambda::Function").values()
        if "FunctionName" in f["Properties"]
    }
    bases = [names.API_FUNCTION, names.LEADERBOARD_SYNC_FUNCTION, names.STARTER_FUNCTION, *names.STEP_HANDLERS]
    assert function_names == {names.resource_name(prefix, base) for base in bases}


def test_deployed_bucket_names_carry_the_account_id(synthesized: dict[str, Synthesized]) -> None:
    bucket = synthesized["prod"].stack.storage.bucket
    name = synthesized["prod"].stack.resolve(bucket.bucket_name)
    template_name = synthesized["prod"].json["Resources"][name["Ref"]]["Properties"]["BucketName"]
    assert template_name == {"Fn::Join": ["", ["prod-kaggle-solver-artifacts-", {"Ref": "AWS::AccountId"}]]}


def test_unknown_environment_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="dev"):
        settings_for("staging")


def test_gpu_instance_types_outside_the_g5_g6_families_are_refused() -> None:
    fields = ENVIRONMENTS["dev"].model_dump()
    with pytest.raises(ValueError, match=r"p4d\.24xlarge"):
        DeploymentSettings(**{**fields, "gpu_instance_types": ("p4d.24xlarge",)})
    with pytest.raises(ValueError, match="retention"):
        DeploymentSettings(**{**fields, "log_retention_days": 10})


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_images_run_the_job_as_root_and_create_the_sandbox_uid(dockerfile: str) -> None:
    from batch_agent.solver.isolation import DEFAULT_SANDBOX_UID, SANDBOX_USER

    text = (REPO_ROOT / dockerfile).read_text()
    # The job process must stay root to drop each program to the sandbox uid (a USER line would make
    # programs share the uid of the process holding the job's credentials).
    assert not re.search(r"^USER\s", text, re.MULTILINE)
    assert re.search(rf"useradd[^\n]*(\\\n[^\n]*)*--uid {DEFAULT_SANDBOX_UID}\b[^\n]*(\\\n[^\n]*)*{SANDBOX_USER}", text)
    assert "bwrap_path()" in text and "setpriv" in text
