"""ECS GPU cluster: Container Insights, and one capacity provider per GPU pool.

Each pool is an Auto Scaling group of GPU instances launched from the ECS GPU
AMI (Amazon Linux 2023, read from the public SSM parameter at deploy time),
with IMDSv2 required (hop limit 1: containers cannot reach the instance's
credentials; awsvpc tasks get their own through the ECS agent and
ECS_AWSVPC_BLOCK_IMDS), an encrypted gp3 root volume, and a capacity provider
with managed scaling (ECS grows the group when GPU tasks cannot be placed)
and managed termination protection (no instance with a running task is
scaled in).

Capacity types map to the ASG's mixed-instances policy:
- on-demand: 100% on-demand;
- spot: 100% spot, capacity rebalancing on;
- spot-with-on-demand-fallback: an on-demand base (`on_demand_base_capacity`
  instances that stay when spot is reclaimed), spot above it. An ASG does not
  switch a failed spot request to on-demand; the base is the floor, and many
  instance types per pool keep spot obtainable.

Changing a pool's instance types or AMI rolls a new launch template version;
instances are replaced by ECS draining, not in place.

Capacity and health (docs/capacity.md):
- capacity reservations: the group's own `CapacityReservationSpecification`
  with `capacity-reservations-first` and the reservation ids (botocore
  autoscaling CreateAutoScalingGroup), so the group fills its ODCRs first and
  launches on-demand beyond them;
- instance-store NVMe: the user data assembles the instance-store disks into
  one RAID0 array (mdadm; the ECS AMI is built from AL2023 minimal, which does
  not carry it: aws/amazon-ecs-ami release-al2023.auto.pkrvars.hcl
  source_ami_al2023) mounted at the same path as on EKS nodes, holding the
  node-level model cache, and tags the container instance with the
  `llmserving.io/local-nvme` attribute. User data runs on the first boot only:
  a systemd oneshot (NODE_CACHE_UNIT, before docker and ecs) re-does the mount
  check, the cache directory and the attributes at every boot (the array is
  in /etc/fstab by UUID; a stop/start wipes the instance store and the unit
  builds it again), and every instance carries the node-cache attribute the
  tasks that bind-mount the cache are constrained to, so instances launched
  from an older template never receive them. Docker's data root stays on the root
  volume: moving it means restarting Docker under the GPU AMI's NVIDIA runtime
  configuration at boot, before the agent starts; the cache is what must be
  fast, and the image is pulled once per instance;
- GPU health: the ECS agent reports only its own and the container runtime's
  health, and the group's default EC2 health check sees a failed GPU as a
  healthy instance. A systemd timer on each instance checks that nvidia-smi
  sees every GPU and that the kernel log shows no fatal NVIDIA XID, and
  otherwise marks the instance Unhealthy (autoscaling:SetInstanceHealth,
  allowed on this cluster's groups only); the group replaces it regardless of
  scale-in protection (EC2 Auto Scaling User Guide, "Use instance scale-in
  protection"), and managed draining moves its tasks first.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError, out_of_range
from components.gpu_node_group import gp3_root_volume
from components.gpu_health import FATAL_XIDS

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
CAPACITY_TYPES = ("on-demand", "spot", "spot-with-on-demand-fallback")
SPOT_STRATEGIES = ("price-capacity-optimized", "capacity-optimized", "capacity-optimized-prioritized", "lowest-price")
INSIGHTS = ("enabled", "enhanced")
ROOT_DEVICE = "/dev/xvda"  # root device of the Amazon Linux 2023 ECS AMIs
# The container instance attribute every instance with the boot unit carries, and what the tasks that bind-mount the
# node cache are constrained to (components/vllm_ecs_service.py node_cache_constraint). A dotted name, as the built-in
# attributes (ecs.instance-type) the cluster query language documents (ECS developer guide, "Create expressions to
# define container instances"); attribute names allow letters, digits, - _ / \ . up to 128 characters (botocore ecs
# model, Attribute.name). Bump the value when the boot layout changes, so tasks land only on instances that have it.
NODE_CACHE_ATTRIBUTE = ("llmserving.node-cache", "v1")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_./\\-]{1,128}$")


@dataclass(frozen=True)
class EcsCapacityPool:
    name: str
    instance_types: tuple[str, ...]
    # GPUs of the smallest instance type in the pool (what a task can count on).
    gpus_per_instance: int
    capacity_type: Literal["on-demand", "spot", "spot-with-on-demand-fallback"]
    min_size: int
    max_size: int
    desired_size: int
    root_volume_gib: int = 500
    on_demand_base_capacity: int = 1
    spot_allocation_strategy: str = "price-capacity-optimized"
    # gp3 root volume performance (None: the gp3 defaults, 125 MiB/s and 3,000 IOPS).
    root_volume_throughput_mibs: int | None = None
    root_volume_iops: int | None = None
    # On-Demand Capacity Reservations the group fills first (cr-...).
    capacity_reservation_ids: tuple[str, ...] = ()
    # Assemble the instance-store NVMe into RAID0 for the node-level cache.
    local_nvme_raid0: bool = False
    # Extra tags on the group and its instances (e.g. the no-reservation acknowledgement).
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuHealthCheck:
    """The per-instance GPU check that marks a failed instance Unhealthy in its group."""

    # NVIDIA XID codes that take the instance out of service (kernel log `NVRM: Xid (...): <code>,`).
    fatal_xids: tuple[int, ...]
    interval_seconds: int = 120
    # The first check runs this long after boot (drivers load, the agent registers).
    boot_delay_seconds: int = 600


@dataclass(frozen=True)
class EcsGpuClusterArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    pools: tuple[EcsCapacityPool, ...]
    ami_parameter: str = "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    container_insights: str = "enhanced"
    target_capacity_percent: int = 100
    instance_warmup_seconds: int = 300
    stop_timeout_seconds: int = 120
    protect: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # What spot groups wait for: the spot.amazonaws.com service-linked role on an account that
    # never launched Spot (else AuthFailure.ServiceLinkedRoleCreationNotPermitted).
    spot_prerequisites: tuple[pulumi.Resource, ...] = ()
    # Where the instance-store array is mounted and the node-level cache inside it (same paths as EKS).
    local_storage_mount: str = "/mnt/k8s-disks/0"
    cache_path: str = "/mnt/k8s-disks/0/llmserving-cache"
    cache_owner_uid: int = 0
    nvme_attribute: str = "llmserving.io/local-nvme"
    # (name, value) of the attribute every instance with the node cache carries (tasks are constrained to it).
    node_cache_attribute: tuple[str, str] = NODE_CACHE_ATTRIBUTE
    # None: no GPU health check (instances stay in service until EC2 status checks fail).
    gpu_health: GpuHealthCheck | None = field(default_factory=lambda: GpuHealthCheck(fatal_xids=FATAL_XIDS))


def validate_ecs_gpu_cluster_args(args: EcsGpuClusterArgs) -> None:
    problems = []
    if not DNS_LABEL.match(args.cluster_name):
        problems.append(f"cluster_name: got {args.cluster_name!r}; must be a DNS label")
    if not args.pools:
        problems.append("pools: got none; a GPU cluster needs at least one pool")
    names = [p.name for p in args.pools]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"pools: pool name {n!r} repeats")
    for p in args.pools:
        where = f"pools[{p.name}]"
        if not DNS_LABEL.match(p.name):
            problems.append(f"{where}.name: got {p.name!r}; must be a DNS label")
        if not p.instance_types:
            problems.append(f"{where}.instance_types: got none; list at least one GPU instance type")
        for t in p.instance_types:
            if not INSTANCE_TYPE.match(t):
                problems.append(f"{where}.instance_types: got {t!r}; not an EC2 instance type name such as g5.12xlarge")
        if p.gpus_per_instance < 1:
            problems.append(f"{where}.gpus_per_instance: got {p.gpus_per_instance}; GPU pools have at least 1 GPU")
        if p.capacity_type not in CAPACITY_TYPES:
            problems.append(f"{where}.capacity_type: got {p.capacity_type!r}; allowed: {', '.join(CAPACITY_TYPES)}")
        if not 0 <= p.min_size <= p.desired_size <= p.max_size:
            problems.append(f"{where}: sizes min {p.min_size} <= desired {p.desired_size} <= max {p.max_size} do not hold")
        if p.max_size < 1:
            problems.append(f"{where}.max_size: got {p.max_size}; must be at least 1")
        if p.on_demand_base_capacity < 0 or p.on_demand_base_capacity > p.max_size:
            problems.append(f"{where}.on_demand_base_capacity: got {p.on_demand_base_capacity}; allowed 0-{p.max_size}")
        if p.spot_allocation_strategy not in SPOT_STRATEGIES:
            problems.append(f"{where}.spot_allocation_strategy: got {p.spot_allocation_strategy!r}; "
                            f"allowed: {', '.join(SPOT_STRATEGIES)}")
        if not 30 <= p.root_volume_gib <= 16384:
            problems.append(f"{where}.root_volume_gib: got {p.root_volume_gib}; allowed 30-16384")
        if p.root_volume_throughput_mibs is not None and not 125 <= p.root_volume_throughput_mibs <= 2000:
            problems.append(f"{where}.root_volume_throughput_mibs: got {p.root_volume_throughput_mibs}; gp3 allows 125-2000")
        if p.root_volume_iops is not None and not 3000 <= p.root_volume_iops <= 80000:
            problems.append(f"{where}.root_volume_iops: got {p.root_volume_iops}; gp3 allows 3000-80000")
        for r in p.capacity_reservation_ids:
            if not re.match(r"^cr-[0-9a-z]+$", r):
                problems.append(f"{where}.capacity_reservation_ids: got {r!r}; a reservation id such as cr-0123456789abcdef0")
        if p.capacity_reservation_ids and p.capacity_type != "on-demand":
            problems.append(f"{where}.capacity_type: got {p.capacity_type!r}; reservations are on-demand capacity")
    if not args.ami_parameter.startswith("/aws/service/ecs/optimized-ami/") or "/gpu/" not in args.ami_parameter:
        problems.append(f"ami_parameter: got {args.ami_parameter!r}; must be an ECS-optimized GPU AMI parameter")
    if args.container_insights not in INSIGHTS:
        problems.append(f"container_insights: got {args.container_insights!r}; allowed: {', '.join(INSIGHTS)}")
    problems += out_of_range("target_capacity_percent", args.target_capacity_percent, 1, 100)
    if len(args.subnet_ids) < 1:
        problems.append("subnet_ids: got none")
    for key in ("local_storage_mount", "cache_path"):
        if not re.match(r"^/[A-Za-z0-9._/-]+$", getattr(args, key)):
            problems.append(f"{key}: got {getattr(args, key)!r}; an absolute path of letters, digits and . _ - /")
    if not args.cache_path.startswith(args.local_storage_mount + "/"):
        problems.append(f"cache_path: got {args.cache_path!r}; must lie inside local_storage_mount {args.local_storage_mount!r}")
    for key in ("nvme_attribute", "node_cache_attribute"):
        name = getattr(args, key) if key == "nvme_attribute" else args.node_cache_attribute[0]
        if not ATTRIBUTE_NAME.match(name):
            problems.append(f"{key}: got {name!r}; ECS attribute names are 1-128 letters, digits and - _ . / \\")
    if not re.match(r"^[A-Za-z0-9_.-]{1,128}$", args.node_cache_attribute[1]):
        problems.append(f"node_cache_attribute: value {args.node_cache_attribute[1]!r}; letters, digits and - _ .")
    if args.gpu_health is not None:
        if not args.gpu_health.fatal_xids:
            problems.append("gpu_health.fatal_xids: got none; name the XID codes that take an instance out of service")
        problems += out_of_range("gpu_health.interval_seconds", args.gpu_health.interval_seconds, 30, 3600)
    if problems:
        raise ArgsError("EcsGpuCluster", problems)


def instances_distribution(pool: EcsCapacityPool) -> dict:
    if pool.capacity_type == "on-demand":
        base, above = 0, 100
    elif pool.capacity_type == "spot":
        base, above = 0, 0
    else:
        base, above = pool.on_demand_base_capacity, 0
    return {"on_demand_base_capacity": base, "on_demand_percentage_above_base_capacity": above,
            "spot_allocation_strategy": pool.spot_allocation_strategy}


HEALTH_SCRIPT = "/usr/local/bin/llmserving-gpu-health"
HEALTH_UNIT = "llmserving-gpu-health"


NODE_CACHE_UNIT = "llmserving-node-cache.service"
NODE_CACHE_SCRIPT = "/usr/local/bin/llmserving-node-cache"


def mount_unit_name(path: str) -> str:
    """systemd's unit name of the mount at `path` (systemd-escape --path --suffix=mount)."""
    parts = [x for x in path.split("/") if x]
    out = []
    for part in parts:
        esc = "".join(c if (c.isascii() and (c.isalnum() or c in ":_.")) else "".join(f"\\x{b:02x}" for b in c.encode())
                      for c in part)
        out.append("\\x2e" + esc[1:] if esc.startswith(".") else esc)
    return ("-".join(out) or "-") + ".mount"


def node_cache_boot_script(cache: str, owner_uid: int, *, nvme: tuple[str, str] | None = None,
                           cache_attribute: tuple[str, str] = NODE_CACHE_ATTRIBUTE) -> str:
    """The script the boot unit (node_cache_unit) runs at EVERY boot, before Docker and the ECS agent.

    `nvme` = (mount point, attribute name): the instance-store disks (by-id names `*NVMe_Instance_Storage_*`, as
    EC2 exposes them) as one RAID0 array (mdadm; the ECS AMI is built from AL2023 minimal, which lacks it), xfs,
    mounted at the mount point and persisted in /etc/fstab by filesystem UUID with `nofail` (mdadm writes a
    superblock and udev re-assembles the array after a reboot, possibly as /dev/md127: only the UUID is stable;
    awslabs/amazon-eks-ami v20251103 templates/shared/runtime/bin/setup-local-disks mounts by UUID too). After a
    reboot the fstab mount is already there; after a stop/start the instance store is new and blank, the UUID
    mount is skipped (nofail) and the array is built again. The cache directory comes after the mount (created in
    the array, never hidden under it), owned by the uid the tasks run as: Docker would create a missing bind-mount
    source as root 0755 (ECS developer guide, "Use bind mounts"). Last, ONE ECS_INSTANCE_ATTRIBUTES line from what
    is mounted now: ecs-init reads /etc/ecs/ecs.config line by line into a map, the last assignment of a key wins
    (aws/amazon-ecs-agent ecs-init/docker/docker.go loadEnvVariables), so two lines would drop one attribute."""
    lines = [
        "#!/bin/bash",
        "# llmserving: node-level cache, at every boot before Docker and the ECS agent (" + NODE_CACHE_UNIT + ").",
        "set -u",
        "attrs='" + json.dumps({cache_attribute[0]: cache_attribute[1]}, sort_keys=True) + "'",
    ]
    if nvme is not None:
        mount, attribute = nvme
        lines += [
            "setup_local_nvme() {",
            "  mapfile -t disks < <(find -L /dev/disk/by-id/ -xtype l -name '*NVMe_Instance_Storage_*' "
            "-exec readlink -f {} \\; | sort -u)",
            '  [ "${#disks[@]}" -gt 0 ] || return 1',
            '  if [ "${#disks[@]}" -gt 1 ]; then',
            "    command -v mdadm >/dev/null || dnf install -y mdadm || return 1",
            '    mdadm --create /dev/md/llmserving --run --force --level=0 --raid-devices="${#disks[@]}" "${disks[@]}" '
            "|| return 1",
            "    dev=/dev/md/llmserving",
            "  else",
            '    dev="${disks[0]}"',
            "  fi",
            f'  mkfs.xfs -f "$dev" && mkdir -p {mount} && mount -o defaults,noatime "$dev" {mount} || return 1',
            "  # Persist by filesystem UUID (the md device name changes across boots); nofail: a blank instance store",
            "  # after a stop/start does not hold the boot, this script builds it again.",
            '  uuid=$(blkid -s UUID -o value "$dev")',
            '  [ -n "$uuid" ] || return 0',
            f"  sed -i '\\# {mount} #d' /etc/fstab",
            f'  echo "UUID=$uuid {mount} xfs defaults,noatime,nofail 0 0" >> /etc/fstab',
            "  systemctl daemon-reload",
            "}",
            f"if mountpoint -q {mount} || mount {mount} 2>/dev/null || setup_local_nvme; then",
            "  attrs='" + json.dumps({attribute: "raid0", cache_attribute[0]: cache_attribute[1]}, sort_keys=True) + "'",
            "fi",
        ]
    lines += [
        f"install -d -m 0755 -o {owner_uid} -g {owner_uid} {cache}",
        "sed -i '/^ECS_INSTANCE_ATTRIBUTES=/d' /etc/ecs/ecs.config",
        'echo "ECS_INSTANCE_ATTRIBUTES=$attrs" >> /etc/ecs/ecs.config',
        "",
    ]
    return "\n".join(lines)


def node_cache_unit(mount: str | None) -> str:
    """The oneshot that runs node_cache_boot_script at every boot. User data runs on the first boot only, and an
    instance-store mount made from it alone is gone after a reboot (the directory it leaves on the root volume is
    empty); so the unit is enabled (multi-user.target) and ordered before docker.service and ecs.service (the ECS
    AMI's units: aws/amazon-ecs-ami scripts/enable-services.sh enables `ecs`; aws/amazon-ecs-agent
    packaging/amazon-linux-ami-integrated/ecs.service After=docker.service cloud-final.service). It is ordered
    after the array's mount unit with Wants=, not RequiresMountsFor=: after a stop/start that `nofail` mount fails
    (blank disks) and a Requires= would skip this unit, which is exactly when it must rebuild the array."""
    after = ["local-fs.target"]
    wants = []
    if mount is not None:
        after.append(mount_unit_name(mount))
        wants.append(mount_unit_name(mount))
    return "\n".join([
        "[Unit]",
        "Description=llmserving node-level cache (instance-store array, cache directory, ECS attributes)",
        *([f"Wants={' '.join(wants)}"] if wants else []),
        f"After={' '.join(after)}",
        "Before=docker.service ecs.service",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        # mdadm, mkfs.xfs (discards the disks first) and, on the first boot, dnf may outlast the 90 s default.
        "TimeoutStartSec=infinity",
        f"ExecStart={NODE_CACHE_SCRIPT}",
        "[Install]",
        "WantedBy=multi-user.target",
    ])


def gpu_health_script(expected_gpus: int, fatal_xids: tuple[int, ...]) -> str:
    """The check the timer runs: every GPU visible to nvidia-smi, no fatal XID in the kernel log since the
    last run; otherwise the instance marks itself Unhealthy in its Auto Scaling group (IMDSv2 from the
    host: the hop limit only keeps containers out)."""
    xids = "|".join(str(x) for x in sorted(fatal_xids))
    return "\n".join([
        "#!/bin/bash",
        "# llmserving: take this instance out of its Auto Scaling group when a GPU fails.",
        f"expected={expected_gpus}",
        "seen=$(timeout 60 nvidia-smi -L 2>/dev/null | grep -c '^GPU ')",
        'reason=""',
        '[ "$seen" -ge "$expected" ] || reason="nvidia-smi sees $seen of $expected GPUs"',
        f"if [ -z \"$reason\" ] && journalctl -k --since -5min --no-pager | grep -Eq 'NVRM: Xid \\([^)]*\\): ({xids}),'; then",
        '  reason="fatal NVIDIA XID in the kernel log"',
        "fi",
        '[ -z "$reason" ] && exit 0',
        'logger -t llmserving-gpu-health "$reason: marking this instance Unhealthy"',
        "token=$(curl -sf -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')",
        'md() { curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"; }',
        'aws autoscaling set-instance-health --region "$(md placement/region)" --instance-id "$(md instance-id)" '
        "--health-status Unhealthy --no-should-respect-grace-period",
        "",
    ])


def user_data(cluster_name: str, stop_timeout_seconds: int, *, nvme: tuple[str, str, int, str] | None = None,
              health: GpuHealthCheck | None = None, expected_gpus: int = 1,
              cache: tuple[str, int] | None = None,
              cache_attribute: tuple[str, str] = NODE_CACHE_ATTRIBUTE) -> str:
    """`nvme`: (mount, cache path, cache owner uid, attribute name) to assemble the instance store; `cache`:
    (path, owner uid) of the node-level cache directory (created after the array, at every boot, by
    NODE_CACHE_UNIT); `cache_attribute`: (name, value) of the container instance attribute that says it exists."""
    lines = [
        "#!/bin/bash",
        "cat >> /etc/ecs/ecs.config <<'EOF'",
        f"ECS_CLUSTER={cluster_name}",
        "ECS_ENABLE_GPU_SUPPORT=true",
        "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
        "ECS_AWSVPC_BLOCK_IMDS=true",
        f"ECS_CONTAINER_STOP_TIMEOUT={stop_timeout_seconds}s",
        "EOF",
    ]
    if cache is None and nvme is not None:
        cache = (nvme[1], nvme[2])
    if cache is not None:
        script = node_cache_boot_script(*cache, nvme=(nvme[0], nvme[3]) if nvme is not None else None,
                                        cache_attribute=cache_attribute)
        lines += [
            f"cat > {NODE_CACHE_SCRIPT} <<'EOF'", script.rstrip("\n"), "EOF",
            f"chmod 0755 {NODE_CACHE_SCRIPT}",
            f"cat > /etc/systemd/system/{NODE_CACHE_UNIT} <<'EOF'", node_cache_unit(nvme[0] if nvme else None), "EOF",
            "systemctl daemon-reload",
            # Enabled for every later boot, and started now: this boot's multi-user.target transaction is already
            # running, and the user data runs in cloud-final, before ecs.service starts (ecs.service
            # After=cloud-final.service), so the cache and the attributes exist before the agent registers.
            f"systemctl enable {NODE_CACHE_UNIT}",
            f"systemctl start {NODE_CACHE_UNIT}",
        ]
    if health is not None:
        # AL2023 minimal (the ECS AMI's base) has no AWS CLI.
        lines += [
            "command -v aws >/dev/null || dnf install -y awscli-2",
            f"cat > {HEALTH_SCRIPT} <<'EOF'",
            gpu_health_script(expected_gpus, health.fatal_xids).rstrip("\n"),
            "EOF",
            f"chmod 0755 {HEALTH_SCRIPT}",
            f"cat > /etc/systemd/system/{HEALTH_UNIT}.service <<'EOF'",
            "[Unit]", "Description=llmserving GPU health check", "[Service]", "Type=oneshot",
            f"ExecStart={HEALTH_SCRIPT}",
            "EOF",
            f"cat > /etc/systemd/system/{HEALTH_UNIT}.timer <<'EOF'",
            "[Unit]", "Description=llmserving GPU health check", "[Timer]",
            f"OnBootSec={health.boot_delay_seconds}s", f"OnUnitActiveSec={health.interval_seconds}s",
            "[Install]", "WantedBy=timers.target",
            "EOF",
            "systemctl daemon-reload",
            f"systemctl enable --now {HEALTH_UNIT}.timer",
        ]
    return base64.b64encode(("\n".join(lines) + "\n").encode()).decode()


class EcsGpuCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: EcsGpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        validate_ecs_gpu_cluster_args(args)
        super().__init__("llmserving:ecs_gpu_cluster:EcsGpuCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        cluster = aws.ecs.Cluster(f"{name}-cluster", name=args.cluster_name,
                                  settings=[{"name": "containerInsights", "value": args.container_insights}],
                                  tags=tags, opts=pulumi.ResourceOptions(parent=self, protect=args.protect))

        role = aws.iam.Role(f"{name}-instance", name=f"{args.cluster_name}-gpu-instance"[:64],
                            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                                "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                "Action": "sts:AssumeRole"}]}, sort_keys=True),
                            tags=tags, opts=child)
        for short, arn in (("ecs", "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"),
                           ("ssm", "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")):
            aws.iam.RolePolicyAttachment(f"{name}-instance-{short}", role=role.name, policy_arn=arn, opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-instance", name=f"{args.cluster_name}-gpu-instance"[:128],
                                          role=role.name, tags=tags, opts=child)
        sg = aws.ec2.SecurityGroup(
            f"{name}-instances", name=f"{args.cluster_name}-gpu-instances", vpc_id=args.vpc_id,
            description="ECS GPU container instances: no inbound; tasks use their own ENIs",
            egress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"],
                     "description": "ECS, ECR, SSM, S3 and model hub endpoints"}],
            tags={**tags, "Name": f"{args.cluster_name}-gpu-instances"}, opts=child)

        # pulumi-aws 7.51.1 GetParameterResult: `value` is always marked secret, which would make the
        # AMI id (and every launch template diff) a secret; `insecure_value` is the same public id.
        ami_id = aws.ssm.get_parameter_output(name=args.ami_parameter).insecure_value
        providers: dict[str, aws.ecs.CapacityProvider] = {}
        self.auto_scaling_groups: dict[str, aws.autoscaling.Group] = {}
        for pool in args.pools:
            pool_tags = {**tags, **pool.tags, "pool": pool.name}
            ebs = gp3_root_volume(pool.root_volume_gib, pool.root_volume_throughput_mibs, pool.root_volume_iops)
            nvme = ((args.local_storage_mount, args.cache_path, args.cache_owner_uid, args.nvme_attribute)
                    if pool.local_nvme_raid0 else None)
            lt = aws.ec2.LaunchTemplate(
                f"{name}-{pool.name}", name=f"{args.cluster_name}-{pool.name}", image_id=ami_id,
                iam_instance_profile={"arn": profile.arn}, vpc_security_group_ids=[sg.id],
                metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                                  "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled"},
                block_device_mappings=[{"device_name": ROOT_DEVICE, "ebs": ebs}],
                monitoring={"enabled": True},
                user_data=user_data(args.cluster_name, args.stop_timeout_seconds, nvme=nvme, health=args.gpu_health,
                                    expected_gpus=pool.gpus_per_instance,
                                    cache=(args.cache_path, args.cache_owner_uid),
                                    cache_attribute=args.node_cache_attribute),
                update_default_version=True,
                tag_specifications=[{"resource_type": kind, "tags": {**pool_tags, "Name": f"{args.cluster_name}-{pool.name}"}}
                                    for kind in ("instance", "volume")],
                tags=pool_tags, opts=child)
            asg_tags = [{"key": k, "value": v, "propagate_at_launch": True} for k, v in sorted(pool_tags.items())]
            # ECS requires this tag on groups it scales.
            asg_tags.append({"key": "AmazonECSManaged", "value": "true", "propagate_at_launch": True})
            asg = aws.autoscaling.Group(
                f"{name}-{pool.name}", name=f"{args.cluster_name}-{pool.name}",
                vpc_zone_identifiers=list(args.subnet_ids), min_size=pool.min_size, max_size=pool.max_size,
                desired_capacity=pool.desired_size,
                # Managed termination protection (below) requires instance scale-in protection on
                # the group (ECS API CreateCapacityProvider, managedTerminationProtection).
                protect_from_scale_in=True,
                # The provider (Terraform aws_autoscaling_group, "Waiting for Capacity") otherwise
                # blocks create/update until desired_capacity instances are InService, default
                # "10m": GPU instances may take longer or stay unavailable (quota, spot), and ECS
                # managed scaling owns capacity. "0" skips the wait (pulumi-aws 7.51.1
                # autoscaling.Group wait_for_capacity_timeout).
                wait_for_capacity_timeout="0",
                capacity_rebalance=pool.capacity_type != "on-demand",
                default_instance_warmup=args.instance_warmup_seconds,
                mixed_instances_policy={
                    "instances_distribution": instances_distribution(pool),
                    "launch_template": {
                        "launch_template_specification": {"launch_template_id": lt.id, "version": "$Latest"},
                        "overrides": [{"instance_type": t} for t in pool.instance_types],
                    },
                },
                tags=asg_tags,
                # Reservations first, on-demand beyond them (the group's own spec, not the template's,
                # so it can name several and fall back).
                capacity_reservation_specification=({
                    "capacity_reservation_preference": "capacity-reservations-first",
                    "capacity_reservation_target": {"capacity_reservation_ids": list(pool.capacity_reservation_ids)}}
                    if pool.capacity_reservation_ids else None),
                # ECS managed scaling owns the desired capacity after creation.
                opts=pulumi.ResourceOptions(
                    parent=self, ignore_changes=["desiredCapacity"],
                    depends_on=list(args.spot_prerequisites) if pool.capacity_type != "on-demand" else None))
            self.auto_scaling_groups[pool.name] = asg
            providers[pool.name] = aws.ecs.CapacityProvider(
                f"{name}-{pool.name}", name=f"{args.cluster_name}-{pool.name}",
                auto_scaling_group_provider={
                    "auto_scaling_group_arn": asg.arn,
                    "managed_termination_protection": "ENABLED",
                    "managed_draining": "ENABLED",
                    "managed_scaling": {"status": "ENABLED", "target_capacity": args.target_capacity_percent,
                                        "minimum_scaling_step_size": 1, "maximum_scaling_step_size": 10,
                                        "instance_warmup_period": args.instance_warmup_seconds},
                },
                tags=pool_tags, opts=child)

        if args.gpu_health is not None:
            # The health check may mark only this cluster's instances (its groups, by ARN).
            arns = pulumi.Output.all(*[g.arn for g in self.auto_scaling_groups.values()])
            aws.iam.RolePolicy(f"{name}-instance-health", role=role.id, policy=arns.apply(lambda a: json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": "autoscaling:SetInstanceHealth", "Resource": sorted(a)}]},
                sort_keys=True)), opts=child)

        # Services that name a capacity provider must wait for this association.
        self.providers_attached = aws.ecs.ClusterCapacityProviders(
            f"{name}-providers", cluster_name=cluster.name,
            capacity_providers=[p.name for p in providers.values()],
            default_capacity_provider_strategies=[{"capacity_provider": providers[args.pools[0].name].name,
                                                   "weight": 1, "base": 0}],
            opts=child)

        self.cluster_arn = cluster.arn
        self.cluster_name = cluster.name
        self.instance_role_arn = role.arn
        self.capacity_providers = {n: p.name for n, p in providers.items()}
        self.register_outputs({"clusterArn": self.cluster_arn, "clusterName": self.cluster_name,
                               "capacityProviders": self.capacity_providers})
