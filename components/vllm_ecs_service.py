"""vLLM on ECS: one service per model, its GPU task definition and its autoscaling.

The task runs `vllm serve` (pinned image) with:
- GPU `resourceRequirements` (tensor-parallel size); validated against the
  GPUs of the pool's smallest instance so a task that could never be placed
  is refused before anything exists;
- a memory-backed /dev/shm (`linuxParameters.sharedMemorySize`) for NCCL,
  memlock/nofile ulimits;
- a container health check on /health whose startPeriod (ECS maximum 300 s)
  covers the start, while the service's `healthCheckGracePeriodSeconds` keeps
  the ALB from killing a task that is still loading weights;
- logs to CloudWatch (awslogs), secrets (HF token, vLLM API key) injected by
  ECS from Secrets Manager or SSM Parameter Store, never in the task definition;
- stopTimeout and the target group's deregistration delay to drain streams.

The `vllm serve` arguments come from the typed `VllmServerSpec` through the
canonical builder (components/vllm_server_args.py), the same one the EKS
workloads use: same flags, same validation, no API key on the command line.

LoRA (`adapter_sync`): a non-essential `adapter-sync` container (pinned
aws-cli image, the task role = the adapter store's reader role) reads ONE
manifest object (adapter<TAB>tenant per line; tenants are data, so 2,000
tenants are one object, not 2,000 containers) and copies exactly the mapped
`tenants/<tenant>/<adapter>/` prefixes into a task volume; the vLLM container
mounts that volume read-only at the adapter directory and starts only after
the copy exits 0 (`dependsOn` SUCCESS).

The service spreads tasks across zones (then binpacks), uses the pool's
capacity provider, rolls back a failed deployment (circuit breaker), and
Application Auto Scaling tracks ALB requests per target.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.ecs_gpu_cluster import ATTRIBUTE_NAME, NODE_CACHE_ATTRIBUTE
from components.errors import ArgsError, out_of_range
from components.vllm_server_args import VllmServerSpec, spec_problems, vllm_server_args
from components.vllm_workload import STATIC_LORA_LAUNCHER, node_cache_launch

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
PINNED_IMAGE = re.compile(r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
CONTAINER = "vllm"
SYNC_CONTAINER = "adapter-sync"
ADAPTER_VOLUME = "adapters"
KEEP_ALIVE_ENV = "VLLM_HTTP_TIMEOUT_KEEP_ALIVE"
USER = re.compile(r"^([1-9][0-9]{0,9}):([0-9]{1,10})$")
# Non-root containers: the vLLM image (vllm/vllm-openai v0.11.1, docker/Dockerfile: no USER, files
# under /root and /vllm-workspace) and amazon/aws-cli run as root unless the task names a user.
# A uid without an /etc/passwd entry gets HOME=/ from Docker, which it cannot write: HOME points
# into /tmp (mode 1777 in both images), where the Hugging Face cache (~/.cache/huggingface), vLLM's
# cache and config (~/.cache/vllm, ~/.config/vllm, vllm/envs.py) and Triton/FlashInfer caches land,
# in the container's writable layer on the instance root volume as they did under /root.
# USER/LOGNAME: getpass.getuser() (torch inductor's cache dir) raises for a uid without a
# passwd entry unless one of them is set.
VLLM_HOME = "/tmp/vllm"
SYNC_HOME = "/tmp"
# Where adapter-sync mounts the (empty, task-scoped) adapter volume. ECS creates it as a Docker
# local volume (amazon-ecs-agent task.go initializeDockerLocalVolumes), root-owned 0755 unless the
# image has the mount path, whose ownership and mode Docker copies into the empty volume (ECS
# developer guide, "Use bind mounts": 0755/root by default, permissions come from the image path).
# /var/tmp is 1777 in amazon/aws-cli (Amazon Linux 2), so the non-root sync can write there;
# vLLM mounts the same volume read-only at AdapterSync.mount_path.
SYNC_STAGING = "/var/tmp"
# The node cache inside the vLLM container and the variables that point the compile caches into the model's
# directory there (the same layout as on EKS: components/vllm_workload.py node_cache_dirs).
NODE_CACHE_VOLUME = "node-cache"
NODE_CACHE_MOUNT = "/var/cache/llmserving"
CACHE_ENV = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE")
# No seccomp setting exists on ECS for the EC2 launch type: ContainerDefinition has no seccomp field
# and dockerSecurityOptions accepts only no-new-privileges, apparmor:, label: and credentialspec:
# (botocore 1.44.5 ecs model). Docker applies its default seccomp profile to every container it
# starts without `seccomp=unconfined` (Docker docs, "Seccomp security profiles"), which is the
# RuntimeDefault the EKS pods ask for.
# Flags that carry secrets must come from `secrets`, never from the command line.
SECRET_FLAGS = ("--api-key", "--hf-token")


@dataclass(frozen=True)
class AdapterSync:
    """Copies the mapped tenants' adapters from S3 into the task before vLLM starts."""

    image: str
    bucket: str
    # Object with one `adapter<TAB>tenant` line per mapped adapter; adapters live
    # under s3://<bucket>/tenants/<tenant>/<adapter>/.
    manifest_key: str
    # Where the task volume is mounted (vLLM read-only); --lora-modules paths point below it.
    mount_path: str = "/adapters"
    # Not supported on ECS (refused): vLLM's filesystem resolver only accepts adapters that name the
    # served base model path, and nothing here registers adapters through the load API.
    runtime_loading: bool = False
    cpu: int = 128
    memory_reservation_mib: int = 256
    memory_mib: int = 512


@dataclass(frozen=True)
class MirrorTask:
    """The model's run-once mirror task (components/mirror_script.py): a task definition that an operator
    (or CI) runs with `aws ecs run-task`, see VllmEcsService.mirror_run_task.

    ECS has no run-to-completion resource a Pulumi program can wait on: a service keeps its desired
    count running and restarts a task that exits (ECS developer guide, "Amazon ECS services"), so a
    service of one copy task would copy again forever; RunTask is an API call, not a resource
    (botocore ecs service-2.json: RunTask has no Create/Delete counterpart). The task definition
    is the resource; running it is the documented step, exported as a stack output.
    """

    image: str
    environment: Mapping[str, str]
    task_role_arn: pulumi.Input[str]
    # Secret env name -> ARN (the Hugging Face token); only this task gets it, never the serving task.
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    cpu: int = 2048
    memory_mib: int = 4096


@dataclass(frozen=True)
class VllmEcsServiceArgs:
    service_name: str
    # Account-unique prefix for the task family, roles, security group and log group (e.g. the cluster name).
    name_prefix: str
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    capacity_provider: pulumi.Input[str]
    account_id: str
    region: str
    image: str
    # What `vllm serve` runs; its arguments come from the canonical builder.
    server: VllmServerSpec
    gpus_per_task: int
    instance_gpus: int
    instance_memory_mib: int
    instance_vcpus: int
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    alb_security_group_id: pulumi.Input[str]
    target_group_arn: pulumi.Input[str]
    # "app/<lb>/<id>/targetgroup/<tg>/<id>" pieces for ALBRequestCountPerTarget.
    alb_arn_suffix: pulumi.Input[str]
    target_group_arn_suffix: pulumi.Input[str]
    desired_count: int
    min_count: int
    max_count: int
    requests_per_target_per_minute: int
    # Env var name -> ARN of a Secrets Manager secret or SSM parameter.
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    task_role_arn: Optional[pulumi.Input[str]] = None
    adapter_sync: Optional[AdapterSync] = None
    mirror: Optional[MirrorTask] = None
    # uid:gid every container of the task runs as (never root; see USER above).
    user: str = "10001:10001"
    # The instance's node-level cache directory (components/ecs_gpu_cluster.py NODE_CACHE_UNIT creates it at
    # every boot, owned by `user`): bind-mounted so the compile caches survive a task restart on the same instance.
    node_cache_path: Optional[str] = None
    # (name, value) of the container instance attribute of instances whose boot unit creates node_cache_path
    # (components/ecs_gpu_cluster.py NODE_CACHE_ATTRIBUTE): the task is constrained to them (node_cache_constraint).
    node_cache_attribute: tuple[str, str] = NODE_CACHE_ATTRIBUTE
    port: int = 8000
    resource_share: float = 0.85
    shared_memory_mib_per_gpu: int = 4096
    health_check_start_period_seconds: int = 300
    health_check_interval_seconds: int = 30
    health_check_retries: int = 3
    load_grace_period_seconds: int = 1200
    stop_timeout_seconds: int = 120
    scale_in_cooldown_seconds: int = 900
    scale_out_cooldown_seconds: int = 120
    log_retention_days: int = 30
    # ECS refuses larger task definitions (service quota).
    task_definition_max_bytes: int = 65536
    # vLLM keeps idle HTTP connections VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds (vllm/envs.py, default 5).
    # Behind an ALB it must outlast the ALB's idle timeout, or the ALB reuses a connection vLLM
    # just closed and answers 502 (AWS ELB docs, ALB attributes, "Connection idle timeout").
    http_keep_alive_seconds: Optional[int] = None
    # Idle timeout of the ALB in front; when given, http_keep_alive_seconds must exceed it.
    load_balancer_idle_timeout_seconds: Optional[int] = None
    tags: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[pulumi.Resource, ...] = ()


def tasks_per_instance(args: VllmEcsServiceArgs) -> int:
    return max(args.instance_gpus // max(args.gpus_per_task, 1), 1)


def task_resources(args: VllmEcsServiceArgs) -> tuple[int, int, int]:
    """(cpu units, memory reservation MiB, shared memory MiB) for one task."""
    per = tasks_per_instance(args)
    cpu = int(args.instance_vcpus * 1024 * args.resource_share // per)
    memory = int(args.instance_memory_mib * args.resource_share // per)
    shm = args.shared_memory_mib_per_gpu * args.gpus_per_task
    return cpu, memory, shm


def node_cache_constraint(attribute: tuple[str, str]) -> dict:
    """The task's placement constraint: only instances whose boot unit creates the node cache for the task uid.
    A new launch template does not replace running instances (the group has no instance refresh, and ECS
    managed termination protection keeps instances with tasks), and on an older instance Docker would create
    the bind-mount source as root 0755 (ECS developer guide, "Use bind mounts") and vLLM, uid 10001, could not
    write it. memberOf with a cluster query language expression `attribute:<name> == <value>` (botocore ecs
    model TaskDefinitionPlacementConstraint: type memberOf, expression; ECS developer guide, "Create
    expressions to define container instances"). Tasks that fit no instance stay PROVISIONING, and managed
    scaling launches instances from the current template."""
    return {"type": "memberOf", "expression": f"attribute:{attribute[0]} == {attribute[1]}"}


def validate_vllm_ecs_service_args(args: VllmEcsServiceArgs) -> None:
    problems = []
    if args.node_cache_path is not None and (not ATTRIBUTE_NAME.match(args.node_cache_attribute[0]) or not re.match(
            r"^[A-Za-z0-9_.-]{1,128}$", args.node_cache_attribute[1])):
        problems.append(f"node_cache_attribute: got {args.node_cache_attribute!r}; an ECS attribute name (letters, "
                        f"digits, - _ . / \\, at most 128) and a value of letters, digits, - _ .")
    if not DNS_LABEL.match(args.service_name):
        problems.append(f"service_name: got {args.service_name!r}; must be a DNS label")
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,38}$", args.name_prefix):
        problems.append(f"name_prefix: got {args.name_prefix!r}; lowercase letters, digits and '-', at most 39 characters")
    if not PINNED_IMAGE.match(args.image) or args.image.endswith(":latest"):
        problems.append(f"image: got {args.image!r}; pin a tag or digest (never :latest)")
    server_problems = spec_problems(args.server)
    problems += [f"server.{x}" for x in server_problems]
    if args.server.port != args.port:
        problems.append(f"server.port: got {args.server.port}; must equal the container port {args.port}")
    if args.server.pipeline_parallel != 1:
        problems.append(f"server.pipeline_parallel: got {args.server.pipeline_parallel}; an ECS task runs on one "
                        f"instance (use 1)")
    if args.server.tensor_parallel != args.gpus_per_task:
        problems.append(f"server.tensor_parallel: got {args.server.tensor_parallel}; must equal gpus_per_task "
                        f"{args.gpus_per_task}")
    lora = args.server.lora
    sync = args.adapter_sync
    if lora is not None and lora.modules and sync is None:
        problems.append("adapter_sync: got none; --lora-modules names local paths but nothing copies adapters "
                        "into the task")
    if sync is not None:
        if lora is None:
            problems.append("adapter_sync: given, but the server has no LoRA settings (server.lora)")
        if sync.runtime_loading:
            problems.append("adapter_sync.runtime_loading: got True; on ECS adapters are named at start "
                            "(--lora-modules); runtime loading is built for EKS")
        if not PINNED_IMAGE.match(sync.image) or sync.image.endswith(":latest"):
            problems.append(f"adapter_sync.image: got {sync.image!r}; pin a tag or digest (never :latest)")
        if not re.match(r"^/[a-z0-9/_-]+$", sync.mount_path) or sync.mount_path.rstrip("/") in ("", "/tmp"):
            problems.append(f"adapter_sync.mount_path: got {sync.mount_path!r}; an absolute path such as /adapters")
        if not sync.manifest_key or sync.manifest_key.startswith("/"):
            problems.append(f"adapter_sync.manifest_key: got {sync.manifest_key!r}; an S3 key without a leading '/'")
        if not 0 < sync.memory_reservation_mib <= sync.memory_mib:
            problems.append(f"adapter_sync: memory reservation {sync.memory_reservation_mib} MiB must be in "
                            f"(0, memory {sync.memory_mib} MiB]")
        if lora is not None:
            root = sync.mount_path.rstrip("/") + "/"
            for name, path in lora.modules:
                if not path.startswith(root):
                    problems.append(f"server.lora.modules: got {name}={path}; adapters are copied to {root}, "
                                    f"so the path must be under it")
    if not server_problems:
        command = vllm_server_args(args.server)
        for flag in SECRET_FLAGS:
            if any(a == flag or a.startswith(f"{flag}=") for a in command):
                problems.append(f"server: renders {flag}; pass it through secrets (e.g. VLLM_API_KEY), "
                                f"not the command line")
    if "HF_TOKEN" in args.secrets or "HF_TOKEN" in args.environment:
        problems.append("secrets: HF_TOKEN given to the serving task; only the mirror task reads the Hub")
    if args.mirror is not None and not args.server.model.startswith("s3://"):
        problems.append(f"server.model: got {args.server.model!r}; with a mirror the task streams the mirrored "
                        f"weights (s3://...)")
    if args.gpus_per_task < 1:
        problems.append(f"gpus_per_task: got {args.gpus_per_task}; a vLLM task needs at least 1 GPU")
    elif args.gpus_per_task > args.instance_gpus:
        problems.append(f"gpus_per_task: got {args.gpus_per_task}; the pool's instances have {args.instance_gpus} "
                        f"GPUs, so the task could never be placed (at most {args.instance_gpus})")
    if not 0 <= args.min_count <= args.desired_count <= args.max_count:
        problems.append(f"counts: min {args.min_count} <= desired {args.desired_count} <= max {args.max_count} do not hold")
    if not 0 <= args.health_check_start_period_seconds <= 300:
        problems.append(f"health_check_start_period_seconds: got {args.health_check_start_period_seconds}; ECS allows "
                        f"0-300 (use load_grace_period_seconds for longer model loads)")
    problems += out_of_range("health_check_interval_seconds", args.health_check_interval_seconds, 5, 300, who="ECS allows")
    problems += out_of_range("health_check_retries", args.health_check_retries, 1, 10, who="ECS allows")
    if not 2 <= args.stop_timeout_seconds <= 120:
        problems.append(f"stop_timeout_seconds: got {args.stop_timeout_seconds}; ECS allows up to 120")
    if args.load_grace_period_seconds < args.health_check_start_period_seconds:
        problems.append(f"load_grace_period_seconds: got {args.load_grace_period_seconds}; must cover the health "
                        f"check start period {args.health_check_start_period_seconds}")
    if not 0 < args.resource_share <= 1:
        problems.append(f"resource_share: got {args.resource_share}; must be in (0, 1]")
    for name in list(args.secrets) + list(args.environment):
        if not ENV_NAME.match(name):
            problems.append(f"secrets/environment: got {name!r}; environment names are UPPER_SNAKE_CASE")
    if set(args.secrets) & set(args.environment):
        problems.append(f"environment: {', '.join(sorted(set(args.secrets) & set(args.environment)))} also in secrets")
    if args.load_balancer_idle_timeout_seconds is not None and not (
            args.http_keep_alive_seconds is not None
            and args.http_keep_alive_seconds > args.load_balancer_idle_timeout_seconds):
        problems.append(f"http_keep_alive_seconds: got {args.http_keep_alive_seconds} (vLLM default 5); must exceed "
                        f"the load balancer idle timeout {args.load_balancer_idle_timeout_seconds} s or clients see 502s")
    if args.http_keep_alive_seconds is not None and KEEP_ALIVE_ENV in args.environment:
        problems.append(f"environment: {KEEP_ALIVE_ENV} is set by http_keep_alive_seconds")
    if not USER.match(args.user):
        problems.append(f"user: got {args.user!r}; a non-root uid:gid such as 10001:10001 (uid 0 is root)")
    if args.node_cache_path is not None and (not re.match(r"^/[A-Za-z0-9._/-]+$", args.node_cache_path)
                                             or args.node_cache_path.rstrip("/") in ("", "/")):
        problems.append(f"node_cache_path: got {args.node_cache_path!r}; an absolute path of letters, digits and "
                        f". _ - / (not /)")
    for name in ("HOME", "USER", "LOGNAME", *(CACHE_ENV if args.node_cache_path else ())):
        if name in args.environment:
            problems.append(f"environment: {name} is set by the component (non-root user with a writable home)")
    if args.requests_per_target_per_minute < 1:
        problems.append(f"requests_per_target_per_minute: got {args.requests_per_target_per_minute}; must be >= 1")
    if not problems:
        cpu, memory, shm = task_resources(args)
        if shm >= memory:
            problems.append(f"shared_memory_mib_per_gpu: {shm} MiB of /dev/shm does not fit the task's {memory} MiB")
        # Secret ARNs are not known yet: count a generous 200 characters each.
        size = len(json.dumps(container_definitions(args, log_group_name(args), {k: "a" * 200 for k in args.secrets}),
                              sort_keys=True).encode())
        if size > args.task_definition_max_bytes:
            problems.append(f"server: the container definitions take {size} bytes; ECS allows at most "
                            f"{args.task_definition_max_bytes} (name fewer --lora-modules or use runtime loading)")
    if problems:
        raise ArgsError("VllmEcsService", problems)


def log_group_name(args: VllmEcsServiceArgs) -> str:
    return f"/llmserving/ecs/{args.name_prefix}/{args.service_name}"


def _logs(args: VllmEcsServiceArgs, log_group: str) -> dict:
    return {"logDriver": "awslogs", "options": {
        "awslogs-group": log_group, "awslogs-region": args.region, "awslogs-stream-prefix": args.service_name,
        "mode": "non-blocking", "max-buffer-size": "25m"}}


def sync_script(sync: AdapterSync) -> str:
    """Shell run by the adapter-sync container: fetch the manifest, copy exactly its adapters, fail on any error."""
    root = SYNC_STAGING
    return ("set -euo pipefail; "
            "aws s3 cp --only-show-errors \"s3://${LORA_ADAPTER_BUCKET}/${LORA_ADAPTER_MANIFEST}\" /tmp/adapters.tsv; "
            "while IFS=$'\\t' read -r adapter tenant; do [ -n \"$adapter\" ] || continue; "
            # Names come from validated config; refuse anything that could leave the tenant's prefix.
            "case \"$adapter/$tenant\" in *[!a-z0-9/-]*|*/*/*|/*|*/) echo \"bad manifest line: $adapter\" >&2; exit 1;; esac; "
            "aws s3 sync --only-show-errors --no-progress "
            f"\"s3://${{LORA_ADAPTER_BUCKET}}/tenants/$tenant/$adapter/\" \"{root}/$adapter/\"; "
            "done < /tmp/adapters.tsv")


def sync_container_definition(args: VllmEcsServiceArgs, log_group: str) -> dict:
    sync = args.adapter_sync
    assert sync is not None
    return {
        "name": SYNC_CONTAINER,
        "image": sync.image,
        # It exits when the copy is done; the task keeps running (vLLM waits for SUCCESS).
        "essential": False,
        "entryPoint": ["/bin/bash", "-c"],
        "command": [sync_script(sync)],
        "cpu": sync.cpu,
        "memoryReservation": sync.memory_reservation_mib,
        "memory": sync.memory_mib,
        "user": args.user,
        "environment": [{"name": "HOME", "value": SYNC_HOME}, {"name": "LORA_ADAPTER_BUCKET", "value": sync.bucket},
                        {"name": "LORA_ADAPTER_MANIFEST", "value": sync.manifest_key}],
        "mountPoints": [{"sourceVolume": ADAPTER_VOLUME, "containerPath": SYNC_STAGING, "readOnly": False}],
        "logConfiguration": _logs(args, log_group),
    }


def container_definitions(args: VllmEcsServiceArgs, log_group: str, secrets: Mapping[str, str]) -> list[dict]:
    """The task's containers: adapter-sync first (when LoRA adapters are copied), then vLLM."""
    out = []
    if args.adapter_sync is not None:
        out.append(sync_container_definition(args, log_group))
    out.append(container_definition(args, log_group, secrets))
    return out


def container_definition(args: VllmEcsServiceArgs, log_group: str, secrets: Mapping[str, str]) -> dict:
    cpu, memory, shm = task_resources(args)
    probe = (f"python3 -c \"import urllib.request; "
             f"urllib.request.urlopen('http://localhost:{args.port}/health', timeout=4)\" || exit 1")
    environment = {**args.environment, "HOME": VLLM_HOME, "USER": "vllm", "LOGNAME": "vllm"}
    if args.http_keep_alive_seconds is not None:
        environment[KEEP_ALIVE_ENV] = str(args.http_keep_alive_seconds)
    sync = args.adapter_sync
    extra: dict = {}
    mounts = []
    if sync is not None:
        extra = {"dependsOn": [{"containerName": SYNC_CONTAINER, "condition": "SUCCESS"}]}
        mounts.append({"sourceVolume": ADAPTER_VOLUME, "containerPath": sync.mount_path, "readOnly": True})
    if args.node_cache_path is not None:
        from components.vllm_workload import node_cache_dirs

        # Streaming only on ECS (weights never on disk): the model's compile caches, per model, on the instance.
        dirs = node_cache_dirs(NODE_CACHE_MOUNT, args.service_name, "")
        environment.update(zip(CACHE_ENV, (dirs["vllm"], dirs["triton"], dirs["torchinductor"], dirs["flashinfer"])))
        mounts.append({"sourceVolume": NODE_CACHE_VOLUME, "containerPath": NODE_CACHE_MOUNT, "readOnly": False})
    if mounts:
        extra["mountPoints"] = mounts
    # Static LoRA: vLLM v0.11.1 refuses to start when any --lora-modules entry cannot load (an
    # adapter not uploaded yet: a first deploy has an empty bucket); the launcher drops those
    # (components/vllm_workload.py STATIC_LORA_LAUNCHER, shared with EKS).
    static_lora = args.server.lora is not None and bool(args.server.lora.modules)
    serve = ["python3", "-c", STATIC_LORA_LAUNCHER, "vllm", "serve"] if static_lora else ["vllm", "serve"]
    if args.node_cache_path is not None:
        # The instance's compile cache outlives tasks: drop what a killed task left half-written (vLLM v0.11.1
        # writes vllm_compile_cache.py in place) and keep new directories group-writable, as on EKS
        # (components/vllm_workload.py NODE_CACHE_LAUNCHER).
        serve = node_cache_launch(serve)
    return {
        "name": CONTAINER,
        "image": args.image,
        "essential": True,
        "entryPoint": serve,
        # Non-root. GPUs stay usable: the NVIDIA runtime exposes only the task's devices, as
        # world-accessible device nodes; /dev/shm (sharedMemorySize) is a 1777 tmpfs.
        "user": args.user,
        "command": vllm_server_args(args.server),
        **extra,
        "portMappings": [{"name": "http", "containerPort": args.port, "hostPort": args.port, "protocol": "tcp"}],
        "resourceRequirements": [{"type": "GPU", "value": str(args.gpus_per_task)}],
        "cpu": cpu,
        "memoryReservation": memory,
        "linuxParameters": {"sharedMemorySize": shm, "initProcessEnabled": True},
        "ulimits": [{"name": "memlock", "softLimit": -1, "hardLimit": -1},
                    {"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        "healthCheck": {"command": ["CMD-SHELL", probe], "interval": args.health_check_interval_seconds,
                        "timeout": 5, "retries": args.health_check_retries,
                        "startPeriod": args.health_check_start_period_seconds},
        "stopTimeout": args.stop_timeout_seconds,
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
        "logConfiguration": _logs(args, log_group),
    }


MIRROR_CONTAINER = "mirror"


def mirror_container_definition(args: VllmEcsServiceArgs, log_group: str, secrets: Mapping[str, str]) -> dict:
    """The mirror task's one container: components/mirror_script.py in the pinned vLLM image."""
    from components.model_mirror import MIRROR_SCRIPT

    m = args.mirror
    assert m is not None
    environment = {**m.environment, "HOME": SYNC_HOME}
    return {
        "name": MIRROR_CONTAINER, "image": m.image, "essential": True,
        "entryPoint": ["python3", "-c"], "command": [MIRROR_SCRIPT],
        "user": args.user, "cpu": m.cpu, "memory": m.memory_mib,
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secrets.items())],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": args.region, "awslogs-stream-prefix": "mirror"}},
    }


def mirror_run_task_command(*, cluster: str, family: str, capacity_provider: str, security_group: str,
                            subnets: list[str], region: str) -> str:
    """Runs the mirror task once and fails unless it exits 0 (aws ecs run-task / describe-tasks, AWS CLI
    v2 reference). Idempotent: a complete copy is verified and skipped."""
    net = (f"awsvpcConfiguration={{subnets=[{','.join(subnets)}],securityGroups=[{security_group}],"
           f"assignPublicIp=DISABLED}}")
    return (f"task=$(aws ecs run-task --region {region} --cluster {cluster} --task-definition {family} "
            f"--capacity-provider-strategy capacityProvider={capacity_provider},weight=1 "
            f"--network-configuration '{net}' --query 'tasks[0].taskArn' --output text) && "
            # Not `aws ecs wait tasks-stopped`: it gives up after 100 polls of 6 s (AWS CLI v2 reference),
            # shorter than a large copy.
            f"until [ \"$(aws ecs describe-tasks --region {region} --cluster {cluster} --tasks \"$task\" "
            f"--query 'tasks[0].lastStatus' --output text)\" = STOPPED ]; do sleep 30; done && "
            f"test \"$(aws ecs describe-tasks --region {region} --cluster {cluster} --tasks \"$task\" "
            f"--query 'tasks[0].containers[0].exitCode' --output text)\" = 0")


class VllmEcsService(pulumi.ComponentResource):
    def __init__(self, name: str, args: VllmEcsServiceArgs, opts: pulumi.ResourceOptions | None = None):
        validate_vllm_ecs_service_args(args)
        super().__init__("llmserving:vllm_ecs_service:VllmEcsService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        full = f"{args.name_prefix}-{args.service_name}"
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=log_group_name(args),
            retention_in_days=args.log_retention_days, tags=tags, opts=child)

        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": args.account_id}}}]}, sort_keys=True)
        execution = aws.iam.Role(f"{name}-execution", name=f"{full}-exec"[:64], assume_role_policy=trust, tags=tags,
                                 description=f"ECS agent for {args.service_name}: pull image, write logs, read its secrets",
                                 opts=child)
        aws.iam.RolePolicyAttachment(
            f"{name}-execution", role=execution.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy", opts=child)
        if args.secrets:
            arns = list(args.secrets.values())
            aws.iam.RolePolicy(f"{name}-execution-secrets", role=execution.id, policy=pulumi.Output.all(*arns).apply(
                lambda resolved: json.dumps({"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "ssm:GetParameters"],
                     "Resource": sorted(resolved)}]}, sort_keys=True)), opts=child)
        task_role_arn = args.task_role_arn
        if task_role_arn is None:
            task_role_arn = aws.iam.Role(f"{name}-task", name=f"{full}-task"[:64], assume_role_policy=trust, tags=tags,
                                         description=f"vLLM task {args.service_name} (no AWS permissions)",
                                         opts=child).arn

        task_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks", name=f"{full}-tasks", vpc_id=args.vpc_id, description=f"vLLM tasks of {args.service_name}: ALB in, HTTPS out",
            ingress=[{"protocol": "tcp", "from_port": args.port, "to_port": args.port,
                      "security_groups": [args.alb_security_group_id], "description": "ALB"}],
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"],
                     "description": "model hub, S3, ECR, Secrets Manager"}],
            tags=tags, opts=child)

        secret_names = sorted(args.secrets)
        definitions = pulumi.Output.all(log_group.name, *[args.secrets[k] for k in secret_names]).apply(
            lambda vals: json.dumps(container_definitions(args, vals[0], dict(zip(secret_names, vals[1:]))),
                                    sort_keys=True))
        # Task-scoped scratch volume (Docker picks the host path; gone with the task).
        volumes = [{"name": ADAPTER_VOLUME}] if args.adapter_sync is not None else []
        if args.node_cache_path is not None:
            # A host bind mount: the instance's directory, kept across tasks (pulumi-aws TaskDefinition volume
            # host_path; ECS developer guide, "Use bind mounts").
            volumes.append({"name": NODE_CACHE_VOLUME, "host_path": args.node_cache_path})
        task = aws.ecs.TaskDefinition(
            f"{name}-task", family=full, network_mode="awsvpc", requires_compatibilities=["EC2"],
            execution_role_arn=execution.arn, task_role_arn=task_role_arn, container_definitions=definitions,
            volumes=volumes or None,
            placement_constraints=([node_cache_constraint(args.node_cache_attribute)]
                                   if args.node_cache_path is not None else None),
            tags=tags, opts=child)

        service = aws.ecs.Service(
            f"{name}-service", name=args.service_name, cluster=args.cluster_arn, task_definition=task.arn,
            desired_count=args.desired_count,
            capacity_provider_strategies=[{"capacity_provider": args.capacity_provider, "weight": 1, "base": 0}],
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            health_check_grace_period_seconds=args.load_grace_period_seconds,
            load_balancers=[{"target_group_arn": args.target_group_arn, "container_name": CONTAINER,
                             "container_port": args.port}],
            network_configuration={"subnets": list(args.subnet_ids), "security_groups": [task_sg.id],
                                   "assign_public_ip": False},
            ordered_placement_strategies=[{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                          {"type": "binpack", "field": "memory"}],
            availability_zone_rebalancing="ENABLED", propagate_tags="SERVICE", enable_ecs_managed_tags=True,
            tags=tags,
            # Application Auto Scaling owns the task count after creation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on),
                                        ignore_changes=["desiredCount"]))

        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", service.name),
            min_capacity=args.min_count, max_capacity=args.max_count, tags=tags, opts=child)
        aws.appautoscaling.Policy(
            f"{name}-requests-per-target", policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace, scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {
                    "predefined_metric_type": "ALBRequestCountPerTarget",
                    "resource_label": pulumi.Output.concat(args.alb_arn_suffix, "/", args.target_group_arn_suffix)},
                "target_value": float(args.requests_per_target_per_minute),
                "scale_in_cooldown": args.scale_in_cooldown_seconds,
                "scale_out_cooldown": args.scale_out_cooldown_seconds,
            }, opts=child)

        self.mirror_task_definition = None
        self.mirror_run_task = None
        if args.mirror is not None:
            m = args.mirror
            mirror_secrets = sorted(m.secrets)
            mirror_defs = pulumi.Output.all(log_group.name, *[m.secrets[k] for k in mirror_secrets]).apply(
                lambda vals: json.dumps([mirror_container_definition(args, vals[0], dict(zip(mirror_secrets, vals[1:])))],
                                        sort_keys=True))
            if m.secrets:
                aws.iam.RolePolicy(f"{name}-execution-mirror-secrets", role=execution.id,
                                   policy=pulumi.Output.all(*m.secrets.values()).apply(
                                       lambda resolved: json.dumps({"Version": "2012-10-17", "Statement": [
                                           {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue",
                                                                           "ssm:GetParameters"],
                                            "Resource": sorted(resolved)}]}, sort_keys=True)), opts=child)
            self.mirror_task_definition = aws.ecs.TaskDefinition(
                f"{name}-mirror-task", family=f"{full}-mirror", network_mode="awsvpc", requires_compatibilities=["EC2"],
                execution_role_arn=execution.arn, task_role_arn=m.task_role_arn, container_definitions=mirror_defs,
                tags=tags, opts=child)
            # The run-once step (stack output): run the task on the model's capacity, wait, check its exit code.
            self.mirror_run_task = pulumi.Output.all(
                args.cluster_name, self.mirror_task_definition.family, args.capacity_provider, task_sg.id,
                *args.subnet_ids).apply(lambda v: mirror_run_task_command(
                    cluster=v[0], family=v[1], capacity_provider=v[2], security_group=v[3], subnets=list(v[4:]),
                    region=args.region))

        self.service_name = service.name
        self.task_definition_arn = task.arn
        self.log_group_name = log_group.name
        self.register_outputs({"serviceName": self.service_name, "taskDefinitionArn": self.task_definition_arn,
                               "logGroupName": self.log_group_name, "mirrorRunTask": self.mirror_run_task})
