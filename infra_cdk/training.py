"""Where programs train: a VPC without NAT, AWS Batch CPU (Fargate) and GPU (EC2) capacity, queues and jobs.

The VPC has public subnets only: Batch hosts get public IPs and reach ECR, S3,
DynamoDB, Secrets Manager, Kaggle and Anthropic directly, with no inbound rule
anywhere. That avoids a NAT gateway (about $33 a month per AZ plus data);
S3 and DynamoDB traffic goes through the free gateway endpoints.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from batch_agent.service import names
from infra_cdk.environments import DeploymentSettings
from infra_cdk.lambda_bundle import REPO_ROOT
from infra_cdk.storage import log_retention, removal_policy

CPU_DOCKERFILE = "Dockerfile"
GPU_DOCKERFILE = "Dockerfile.gpu"
# Never part of a container image (the build context is the repository root).
IMAGE_EXCLUDES = [
    ".git",
    ".venv",
    "node_modules",
    "cdk.out",
    "build",
    "dist",
    "runs",
    ".kaggle-solver",
    "**/__pycache__",
    "**/*.pyc",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "*.egg-info",
]
# Memory the sandbox may give a training program: the job's memory less room for
# the container's own Python process.
SANDBOX_HEADROOM_MIB = 1536
# What a training job may write: its attempts' files and the blend (steps/train.py).
TRAIN_WRITE_KEY_PATTERNS = ("jobs/*/attempts/*", "jobs/*/blend/*", "jobs/*/blend.json")
# Batch's status reason when Fargate Spot reclaims a task's capacity.
FARGATE_SPOT_REASON = "Your Spot Task was interrupted*"
# Containers must not reach the instance metadata service (the instance role's credentials live
# there). Bridge-mode containers: dropped in DOCKER-USER, which Docker creates only when missing and
# never flushes. Host-network containers: dropped by owner in OUTPUT for every uid but root, so the
# training programs (the sandbox uid 61000) are cut off while root on the host (the ECS agent) keeps
# access. IMDSv2 with a hop limit of 1 also keeps token replies from crossing the bridge.
IMDS_BLOCK_SCRIPT = """\
iptables --new-chain DOCKER-USER 2>/dev/null || true
iptables --insert DOCKER-USER 1 --in-interface docker+ --destination 169.254.169.254/32 --jump DROP
iptables --insert OUTPUT 1 --destination 169.254.169.254/32 --match owner ! --uid-owner 0 --jump DROP
"""
# Where the official Kaggle client may write its config inside the container.
KAGGLE_CONFIG_DIR = "/tmp/kaggle"


def container_image(dockerfile: str) -> ecs.ContainerImage:
    """An image built from the repository root by `cdk deploy` (synthesis only fingerprints it)."""
    return ecs.ContainerImage.from_asset(str(REPO_ROOT), file=dockerfile, exclude=IMAGE_EXCLUDES)


def container_environment(
    *, bucket: s3.IBucket, table: dynamodb.ITableV2, memory_mib: int, usd_per_hour: float, timeout_s: int
) -> dict[str, str]:
    """The variables ContainerSettings reads, plus where the Kaggle client keeps its config."""
    return {
        names.ENV_JOBS_TABLE: table.table_name,
        names.ENV_ARTIFACTS_BUCKET: bucket.bucket_name,
        names.ENV_MEMORY_LIMIT_MB: str(memory_mib - SANDBOX_HEADROOM_MIB),
        names.ENV_USD_PER_HOUR: str(usd_per_hour),
        names.ENV_ATTEMPT_TIMEOUT_S: str(timeout_s),
        "KAGGLE_CONFIG_DIR": KAGGLE_CONFIG_DIR,
    }


def kaggle_secrets(secret: secretsmanager.ISecret) -> dict[str, batch.Secret]:
    """The official client's own variables, injected from the JSON secret {"username", "key"}."""
    return {
        "KAGGLE_USERNAME": batch.Secret.from_secrets_manager(secret, "username"),
        "KAGGLE_KEY": batch.Secret.from_secrets_manager(secret, "key"),
    }


def runnable_time_limits(settings: DeploymentSettings) -> list[batch.JobStateTimeLimitAction]:
    """A job RUNNABLE for lack of capacity is cancelled after a while, whatever the reason Batch gives."""
    return [
        batch.JobStateTimeLimitAction(
            max_time=cdk.Duration.minutes(settings.runnable_time_limit_minutes),
            reason=reason,
            action=batch.JobStateTimeLimitActionsAction.CANCEL,
            state=batch.JobStateTimeLimitActionsState.RUNNABLE,
        )
        for reason in (
            batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
            batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
            batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
        )
    ]


def gpu_launch_template(scope: Construct, settings: DeploymentSettings) -> ec2.LaunchTemplate:
    """GPU hosts: a root volume sized for the image plus data, IMDSv2 only, containers cut off from IMDS."""
    user_data = ec2.MultipartUserData()  # Batch requires MIME multi-part user data in launch templates
    commands = ec2.UserData.for_linux()
    commands.add_commands(*IMDS_BLOCK_SCRIPT.strip().splitlines())
    user_data.add_user_data_part(commands, ec2.MultipartBody.SHELL_SCRIPT, True)
    return ec2.LaunchTemplate(
        scope,
        "GpuLaunchTemplate",
        launch_template_name=names.resource_name(settings.prefix, "gpu"),
        block_devices=[
            ec2.BlockDevice(
                device_name="/dev/xvda",
                volume=ec2.BlockDeviceVolume.ebs(
                    settings.gpu_root_volume_gib,
                    volume_type=ec2.EbsDeviceVolumeType.GP3,
                    encrypted=True,
                    delete_on_termination=True,
                ),
            )
        ],
        require_imdsv2=True,
        http_put_response_hop_limit=1,
        user_data=user_data,
    )


class TrainingCompute(Construct):
    """VPC, compute environments, one queue per compute kind, and the two job definitions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploymentSettings,
        bucket: s3.IBucket,
        table: dynamodb.ITableV2,
        kaggle_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = settings.prefix
        policy = removal_policy(settings)

        flow_logs = logs.LogGroup(self, "FlowLogs", retention=log_retention(settings), removal_policy=policy)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB),
            },
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
            restrict_default_security_group=False,
        )
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
        # Outbound only: nothing ever connects to a training host.
        self.security_group = ec2.SecurityGroup(
            self,
            "JobSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=True,
            description="kaggle-solver Batch jobs: outbound only",
        )

        self.log_group = logs.LogGroup(
            self,
            "JobLogs",
            log_group_name=f"/aws/batch/{names.resource_name(prefix, 'jobs')}",
            retention=log_retention(settings),
            removal_policy=policy,
        )
        # prepare holds the Kaggle secret and fills the competition cache; training jobs run untrusted
        # programs, so they get no secret and write only attempt and blend files under jobs/.
        self.prepare_role = iam.Role(
            self,
            "PrepareRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="kaggle-solver prepare jobs: the artifacts bucket (competition cache) and the jobs table",
        )
        bucket.grant_read_write(self.prepare_role)
        table.grant_read_write_data(self.prepare_role)
        # The training job's own role can only assume the access role, and does so with a session policy
        # naming its job (service/job_scope.py): the job then reaches its own files and record only.
        self.train_role = iam.Role(
            self,
            "TrainRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="kaggle-solver training jobs: assume the train-access role scoped to the job",
        )
        self.train_access_role = iam.Role(
            self,
            "TrainAccessRole",
            assumed_by=iam.ArnPrincipal(self.train_role.role_arn),
            max_session_duration=cdk.Duration.hours(12),
            description="kaggle-solver training jobs, narrowed per job by a session policy",
        )
        self.train_access_role.grant_assume_role(self.train_role)
        bucket.grant_read(self.train_access_role)
        for pattern in TRAIN_WRITE_KEY_PATTERNS:
            bucket.grant_put(self.train_access_role, pattern)
        table.grant(self.train_access_role, "dynamodb:GetItem", "dynamodb:UpdateItem")

        timeout = cdk.Duration.minutes(settings.job_timeout_minutes)
        # Spot reclaims are worth retrying; a program's own failure is not (the pipeline repairs it).
        # EC2 Spot reports "Host EC2 (instance i-...) terminated."; Fargate Spot "Your Spot Task was interrupted.".
        retry_strategies = [
            batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
            batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason=FARGATE_SPOT_REASON)),
            batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.NON_ZERO_EXIT_CODE),
        ]

        # --- CPU: Fargate (spot when the environment says so) ---
        self.cpu_environment = batch.FargateComputeEnvironment(
            self,
            "CpuEnvironment",
            compute_environment_name=names.resource_name(prefix, names.CPU_QUEUE),
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            spot=settings.cpu_spot,
            maxv_cpus=settings.cpu_max_vcpus,
        )
        self.cpu_queue = batch.JobQueue(
            self,
            "CpuQueue",
            job_queue_name=names.resource_name(prefix, names.CPU_QUEUE),
            compute_environments=[batch.OrderedComputeEnvironment(compute_environment=self.cpu_environment, order=1)],
            job_state_time_limit_actions=runnable_time_limits(settings),
        )
        def fargate_job_definition(
            construct_id: str, base_name: str, *, role: iam.IRole, environment: dict[str, str],
            secrets: dict[str, batch.Secret] | None, stream_prefix: str,
        ) -> batch.EcsJobDefinition:
            """A CPU job on Fargate: the prepare job and the training jobs differ in role, variables and secrets."""
            return batch.EcsJobDefinition(
                self,
                f"{construct_id}JobDefinition",
                job_definition_name=names.resource_name(prefix, base_name),
                container=batch.EcsFargateContainerDefinition(
                    self,
                    f"{construct_id}Container",
                    image=container_image(CPU_DOCKERFILE),
                    cpu=settings.cpu_job_vcpus,
                    memory=cdk.Size.mebibytes(settings.cpu_job_memory_mib),
                    command=names.BATCH_COMMAND,
                    environment=environment,
                    secrets=secrets,
                    job_role=role,
                    # No NAT: a Fargate task pulls its image through its public IP.
                    assign_public_ip=True,
                    ephemeral_storage_size=cdk.Size.gibibytes(50),
                    logging=ecs.LogDriver.aws_logs(stream_prefix=stream_prefix, log_group=self.log_group),
                ),
                parameters=dict(names.BATCH_DEFAULT_PARAMETERS),
                timeout=timeout,
                retry_attempts=3,
                retry_strategies=retry_strategies,
            )

        cpu_environment = container_environment(bucket=bucket, table=table, memory_mib=settings.cpu_job_memory_mib,
                                                usd_per_hour=settings.cpu_job_usd_per_hour,
                                                timeout_s=int(timeout.to_seconds()))
        # Only the prepare job downloads from Kaggle, so only it gets the secret.
        self.prepare_job_definition = fargate_job_definition(
            "Prepare", names.PREPARE_JOB_DEFINITION, role=self.prepare_role, environment=cpu_environment,
            secrets=kaggle_secrets(kaggle_secret), stream_prefix="prepare",
        )
        self.cpu_job_definition = fargate_job_definition(
            "Cpu", names.CPU_JOB_DEFINITION, role=self.train_role,
            environment={**cpu_environment, names.ENV_TRAIN_ACCESS_ROLE_ARN: self.train_access_role.role_arn},
            secrets=None, stream_prefix="cpu",
        )

        # --- GPU: EC2 with the ECS GPU AMI, g5/g6 instances ---
        self.gpu_launch_template: ec2.LaunchTemplate | None = None
        self.gpu_environment: batch.ManagedEc2EcsComputeEnvironment | None = None
        self.gpu_queue: batch.JobQueue | None = None
        self.gpu_job_definition: batch.EcsJobDefinition | None = None
        if not settings.gpu_enabled:
            return
        self.gpu_launch_template = gpu_launch_template(self, settings)
        self.gpu_environment = batch.ManagedEc2EcsComputeEnvironment(
            self,
            "GpuEnvironment",
            compute_environment_name=names.resource_name(prefix, names.GPU_QUEUE),
            vpc=self.vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            instance_types=[ec2.InstanceType(name) for name in settings.gpu_instance_types],
            use_optimal_instance_classes=False,
            # Amazon Linux 2 support ended on 2026-06-30: the ECS GPU AMI on Amazon Linux 2023.
            images=[batch.EcsMachineImage(image_type=batch.EcsMachineImageType.ECS_AL2023_NVIDIA)],
            spot=settings.gpu_spot,
            allocation_strategy=(
                batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
                if settings.gpu_spot
                else batch.AllocationStrategy.BEST_FIT_PROGRESSIVE
            ),
            minv_cpus=0,
            maxv_cpus=settings.gpu_max_vcpus,
            launch_template=self.gpu_launch_template,
        )
        self.gpu_queue = batch.JobQueue(
            self,
            "GpuQueue",
            job_queue_name=names.resource_name(prefix, names.GPU_QUEUE),
            compute_environments=[batch.OrderedComputeEnvironment(compute_environment=self.gpu_environment, order=1)],
            job_state_time_limit_actions=runnable_time_limits(settings),
        )
        self.gpu_job_definition = batch.EcsJobDefinition(
            self,
            "GpuJobDefinition",
            job_definition_name=names.resource_name(prefix, names.GPU_JOB_DEFINITION),
            container=batch.EcsEc2ContainerDefinition(
                self,
                "GpuContainer",
                image=container_image(GPU_DOCKERFILE),
                cpu=settings.gpu_job_vcpus,
                memory=cdk.Size.mebibytes(settings.gpu_job_memory_mib),
                gpu=1,
                command=names.BATCH_COMMAND,
                environment={**container_environment(bucket=bucket, table=table,
                                                     memory_mib=settings.gpu_job_memory_mib,
                                                     usd_per_hour=settings.gpu_job_usd_per_hour,
                                                     timeout_s=int(timeout.to_seconds())),
                             names.ENV_TRAIN_ACCESS_ROLE_ARN: self.train_access_role.role_arn},
                job_role=self.train_role,
                logging=ecs.LogDriver.aws_logs(stream_prefix="gpu", log_group=self.log_group),
            ),
            parameters=dict(names.BATCH_DEFAULT_PARAMETERS),
            timeout=timeout,
            retry_attempts=3,
            retry_strategies=retry_strategies,
        )
