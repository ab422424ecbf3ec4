"""The pipeline's state machine definition and the values of its ${Placeholders}.

``statemachine/pipeline.asl.json`` is the single definition: the CDK app passes
``definition_substitutions(...)`` built from its constructs' ARNs to
``DefinitionBody.from_file``, and the local emulated stack and the tests pass the
same function the ARNs of the emulated resources (``local_arns``). Stdlib only.
"""

from __future__ import annotations

import re
from pathlib import Path

from batch_agent.service import names

ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "pipeline.asl.json"

PLACEHOLDERS: tuple[str, ...] = (
    "PlanFunctionArn",
    "GenerateFunctionArn",
    "ValidateFunctionArn",
    "RepairFunctionArn",
    "FinishFunctionArn",
    "FailFunctionArn",
    "CpuJobQueueArn",
    "GpuJobQueueArn",
    "PrepareJobDefinitionArn",
    "CpuJobDefinitionArn",
    "GpuJobDefinitionArn",
    "ArtifactsBucketName",
)

# Which Lambda (names.*_FUNCTION) each function placeholder stands for.
FUNCTION_PLACEHOLDERS: dict[str, str] = {
    "PlanFunctionArn": names.PLAN_FUNCTION,
    "GenerateFunctionArn": names.GENERATE_FUNCTION,
    "ValidateFunctionArn": names.VALIDATE_FUNCTION,
    "RepairFunctionArn": names.REPAIR_FUNCTION,
    "FinishFunctionArn": names.FINISH_FUNCTION,
    "FailFunctionArn": names.FAIL_FUNCTION,
}


def definition_substitutions(
    *,
    function_arns: dict[str, str],
    cpu_job_queue_arn: str,
    gpu_job_queue_arn: str,
    prepare_job_definition_arn: str,
    cpu_job_definition_arn: str,
    gpu_job_definition_arn: str,
    artifacts_bucket_name: str,
) -> dict[str, str]:
    """The value of every placeholder; ``function_arns`` maps names.*_FUNCTION base names to ARNs."""
    missing = sorted(set(FUNCTION_PLACEHOLDERS.values()) - set(function_arns))
    if missing:
        raise ValueError(f"no ARN given for the step functions {missing}")
    values = {placeholder: function_arns[base] for placeholder, base in FUNCTION_PLACEHOLDERS.items()}
    values.update(
        CpuJobQueueArn=cpu_job_queue_arn,
        GpuJobQueueArn=gpu_job_queue_arn,
        PrepareJobDefinitionArn=prepare_job_definition_arn,
        CpuJobDefinitionArn=cpu_job_definition_arn,
        GpuJobDefinitionArn=gpu_job_definition_arn,
        ArtifactsBucketName=artifacts_bucket_name,
    )
    return values


def local_arns(prefix: str, *, region: str, account: str) -> dict[str, str]:
    """Placeholder values for resources named by ``names.resource_name(prefix, ...)`` in one account."""
    function_arns = {
        base: f"arn:aws:lambda:{region}:{account}:function:{names.resource_name(prefix, base)}"
        for base in FUNCTION_PLACEHOLDERS.values()
    }
    batch = f"arn:aws:batch:{region}:{account}"
    prepare_definition = names.resource_name(prefix, names.PREPARE_JOB_DEFINITION)
    cpu_definition = names.resource_name(prefix, names.CPU_JOB_DEFINITION)
    gpu_definition = names.resource_name(prefix, names.GPU_JOB_DEFINITION)
    return definition_substitutions(
        function_arns=function_arns,
        cpu_job_queue_arn=f"{batch}:job-queue/{names.resource_name(prefix, names.CPU_QUEUE)}",
        gpu_job_queue_arn=f"{batch}:job-queue/{names.resource_name(prefix, names.GPU_QUEUE)}",
        prepare_job_definition_arn=f"{batch}:job-definition/{prepare_definition}",
        cpu_job_definition_arn=f"{batch}:job-definition/{cpu_definition}",
        gpu_job_definition_arn=f"{batch}:job-definition/{gpu_definition}",
        artifacts_bucket_name=names.resource_name(prefix, names.ARTIFACTS_BUCKET),
    )


def render_definition(substitutions: dict[str, str], template: str | None = None) -> str:
    """The ASL with every ${Placeholder} replaced; raises when one is left without a value."""
    text = ASL_PATH.read_text() if template is None else template
    used = set(re.findall(r"\$\{(\w+)\}", text))
    unknown = sorted(used - set(substitutions))
    if unknown:
        raise ValueError(f"no value for the placeholders {unknown}")
    return re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)
