"""GPU managed node group: an EKS managed node group on the NVIDIA AL2023 AMI.

Visible as `aws:eks/nodeGroup:NodeGroup` with its launch template (IMDSv2
required with hop limit 1 so pods never reach the node role, encrypted gp3 root sized for model weights),
the GPU taint and the labels workloads select on. For a model split across
nodes the group gets EFA interfaces and a cluster placement group; a cluster
placement group lives in one zone, so such a group takes exactly one subnet.

Changing instance types, capacity type, AMI type or disk size replaces the
group: roll GPU capacity blue/green with a new group name.

Capacity and health (docs/capacity.md):
- the group's size between min and max belongs to the Cluster Autoscaler
  (components/cluster_autoscaler.py) when `autoscaled`: `desiredSize` is set at
  creation and ignored afterwards, and the group's Auto Scaling group carries
  the autoscaler's node-template tags (labels, taint, GPUs), so it can scale
  up from zero nodes (kubernetes/autoscaler cluster-autoscaler-1.33.6,
  cloudprovider/aws/README.md "Auto-Discovery Setup");
- EKS node auto repair (`node_repair_config`, EKS API NodeRepairConfig)
  replaces or reboots a node whose GPU the node monitoring agent reports
  unhealthy (awsdocs/amazon-eks-user-guide latest/ug/nodes/node-repair.adoc);
- a capacity reservation is targeted from the launch template
  (`capacity_reservation_specification`; a Capacity Block also sets the
  `capacity-block` market type, the instance type in the template and the
  group's capacity type CAPACITY_BLOCK: latest/ug/nodes/capacity-blocks-mng.adoc);
- instance-store NVMe: AL2023 user data (MIME multi-part, merged by EKS with
  its own, latest/ug/nodes/launch-templates.adoc) carries a nodeadm NodeConfig
  with `spec.instance.localStorage.strategy: RAID0`, so nodeadm assembles the
  disks into one array at /mnt/k8s-disks/0 and puts kubelet and containerd on
  it (awslabs/amazon-eks-ami v20251103 nodeadm/api/v1alpha1/nodeconfig_types.go,
  templates/shared/runtime/bin/setup-local-disks);
- the gp3 root volume gets explicit throughput and IOPS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError, out_of_range
from components.iam_trust import ec2_trust

NVIDIA_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
CAPACITY_TYPES = ("ON_DEMAND", "SPOT", "CAPACITY_BLOCK")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
POOL_LABEL = "llmserving.io/pool"
ROOT_DEVICE = "/dev/xvda"


@dataclass(frozen=True)
class NodeCacheDir:
    """The node-level cache directory every GPU node creates at boot for the serving pods (hostPath type
    Directory, components/vllm_workload.py NodeCache)."""

    path: str
    uid: int
    gid: int
    # A node label (key, value) the node carries from its first start, so pods that mount the directory select
    # only nodes that create it (components/vllm_workload.py NodeCache.node_label; infra/eks_catalog.py).
    node_label: Optional[tuple[str, str]] = None


def node_cache_labels(c: Optional[NodeCacheDir]) -> dict[str, str]:
    """The node labels a node source sets because its nodes create the node cache."""
    return dict([c.node_label]) if c is not None and c.node_label is not None else {}


@dataclass(frozen=True)
class GpuNodeGroupArgs:
    cluster_name: pulumi.Input[str]
    pool_name: str
    instance_types: list[str]
    subnet_ids: list
    ami_type: str
    capacity_type: str
    min_size: int
    desired_size: int
    max_size: int
    root_volume_gib: int
    node_policy_arns: list[str]
    # 1: pods must not reach IMDS (node credentials); Pod Identity serves them.
    imds_hop_limit: int = 1
    # EFA: interfaces per node (0 = no EFA) and the security groups they join.
    efa_interfaces: int = 0
    security_group_ids: list = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # What must exist before nodes launch: the node-level add-ons (CNI, Pod
    # Identity agent) and, for SPOT, the Spot service-linked role.
    prerequisites: tuple[pulumi.Resource, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # gp3 root volume performance (None: the gp3 defaults, 125 MiB/s and 3,000 IOPS).
    root_volume_throughput_mibs: Optional[int] = None
    root_volume_iops: Optional[int] = None
    # The Cluster Autoscaler owns the size between min and max (desired size ignored after creation).
    autoscaled: bool = False
    # Node-template tags for the autoscaler's scale-from-zero: extended resources per node.
    template_resources: dict[str, str] = field(default_factory=dict)
    # EKS node auto repair; GPU groups keep it on.
    node_repair: bool = True
    node_repair_max_parallel: int = 1
    # A capacity reservation the launch template targets (cr-...); capacity_type CAPACITY_BLOCK
    # makes it a Capacity Block.
    capacity_reservation_id: Optional[str] = None
    # AL2023: assemble the instance store into RAID0 (kubelet, containerd and the caches on NVMe).
    local_storage_raid0: bool = False
    # The node-level cache directory the serving pods mount (created at boot, owned by the serving uid).
    node_cache: Optional[NodeCacheDir] = None


def validate_gpu_node_group_args(args: GpuNodeGroupArgs) -> None:
    p: list[str] = []
    if not args.instance_types:
        p.append("instance_types: got []; list at least one GPU instance type")
    if args.ami_type not in NVIDIA_AMI_TYPES:
        p.append(f"ami_type: got {args.ami_type!r}; GPU nodes need an NVIDIA AMI type: {', '.join(NVIDIA_AMI_TYPES)}")
    if args.capacity_type not in CAPACITY_TYPES:
        p.append(f"capacity_type: got {args.capacity_type!r}; allowed: {', '.join(CAPACITY_TYPES)}")
    if not 0 <= args.min_size <= args.desired_size <= args.max_size or args.max_size < 1:
        p.append(f"min_size/desired_size/max_size: got {args.min_size}/{args.desired_size}/{args.max_size}; "
                 f"need 0 <= min <= desired <= max and max >= 1")
    if args.root_volume_gib < 100:
        p.append(f"root_volume_gib: got {args.root_volume_gib}; GPU nodes need at least 100 GiB for images and weights")
    p += out_of_range("imds_hop_limit", args.imds_hop_limit, 1, 64)
    if not args.subnet_ids:
        p.append("subnet_ids: got []; list the private subnets for the nodes")
    if args.efa_interfaces:
        if len(args.subnet_ids) != 1:
            p.append(f"subnet_ids: got {len(args.subnet_ids)} subnets; an EFA group with a cluster placement group "
                     f"must use exactly one subnet (one zone)")
        if not args.security_group_ids:
            p.append("security_group_ids: got []; EFA interfaces must name the cluster security group")
        if args.capacity_type == "SPOT":
            p.append("capacity_type: got 'SPOT'; a model split across EFA nodes loses the whole replica on one "
                     "interruption, use ON_DEMAND")
    if POOL_LABEL in args.labels and args.labels[POOL_LABEL] != args.pool_name:
        p.append(f"labels: {POOL_LABEL} is {args.labels[POOL_LABEL]!r} but pool_name is {args.pool_name!r}")
    if args.root_volume_throughput_mibs is not None:
        # botocore ec2 LaunchTemplateEbsBlockDeviceRequest: gp3 throughput 125-2000 MiB/s, IOPS 3000-80000,
        # and EBS provisions at most 0.25 MiB/s per IOPS.
        p += out_of_range("root_volume_throughput_mibs", args.root_volume_throughput_mibs, 125, 2000)
    if args.root_volume_iops is not None:
        p += out_of_range("root_volume_iops", args.root_volume_iops, 3000, 80000)
    if (args.root_volume_throughput_mibs or 125) > (args.root_volume_iops or 3000) / 4:
        p.append(f"root_volume_throughput_mibs: got {args.root_volume_throughput_mibs}; gp3 allows at most 0.25 MiB/s "
                 f"per IOPS ({args.root_volume_iops or 3000} IOPS)")
    if not args.node_repair:
        p.append("node_repair: got False; a GPU node group keeps EKS node auto repair on (a failed GPU stays in "
                 "service otherwise)")
    p += out_of_range("node_repair_max_parallel", args.node_repair_max_parallel, 1, 100)
    if args.capacity_type == "CAPACITY_BLOCK":
        if not args.capacity_reservation_id:
            p.append("capacity_reservation_id: got None; a CAPACITY_BLOCK group targets its Capacity Block (cr-...)")
        if len(args.instance_types) != 1:
            p.append(f"instance_types: got {args.instance_types}; a Capacity Block group launches its block's one "
                     f"instance type, named in the launch template")
    if args.capacity_reservation_id is not None:
        if not args.capacity_reservation_id.startswith("cr-"):
            p.append(f"capacity_reservation_id: got {args.capacity_reservation_id!r}; a reservation id cr-...")
        if args.capacity_type == "SPOT":
            p.append("capacity_type: got 'SPOT'; reservations are on-demand capacity (ON_DEMAND or CAPACITY_BLOCK)")
    if args.local_storage_raid0 and args.ami_type != "AL2023_x86_64_NVIDIA":
        p.append(f"local_storage_raid0: set with ami_type {args.ami_type!r}; the nodeadm NodeConfig is AL2023's")
    if args.node_cache is not None:
        p += node_cache_problems(args.node_cache)
        if args.ami_type != "AL2023_x86_64_NVIDIA":
            p.append(f"node_cache: set with ami_type {args.ami_type!r}; its boot script is an AL2023 (cloud-init) "
                     f"shell part")
    if p:
        raise ArgsError("GpuNodeGroup", p)


# nodeadm NodeConfig API (awslabs/amazon-eks-ami v20251103, nodeadm/api/v1alpha1/nodeconfig_types.go):
# InstanceOptions.LocalStorage.Strategy, one of RAID0 | RAID10 | Mount.
NODECONFIG_API = "node.eks.aws/v1alpha1"
MIME_BOUNDARY = "==LLMSERVING=="


SHELL_PART = 'text/x-shellscript; charset="us-ascii"'
NODE_CACHE_UNIT = "llmserving-node-cache.service"


def node_cache_problems(c: NodeCacheDir) -> list[str]:
    p = []
    if not c.path.startswith("/") or c.path.rstrip("/") in ("", "/") or not all(
            ch.isalnum() or ch in "._/-" for ch in c.path) or "/../" in c.path + "/":
        p.append(f"node_cache.path: got {c.path!r}; an absolute path of letters, digits and . _ - / (not /)")
    if c.uid < 1 or c.gid < 1:
        p.append(f"node_cache.uid/gid: got {c.uid}/{c.gid}; the serving pods' non-root ids (>= 1)")
    # Kubernetes label syntax (apimachinery validation IsQualifiedName / IsValidLabelValue).
    if c.node_label is not None and (
            len(c.node_label) != 2
            or not re.match(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
                            c.node_label[0])
            or not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$", c.node_label[1])):
        p.append(f"node_cache.node_label: got {c.node_label!r}; a (key, value) Kubernetes label")
    return p


def node_cache_boot_script(c: NodeCacheDir) -> str:
    """A shell script (a `text/x-shellscript` user-data part, run by cloud-init's final stage) that installs a
    systemd oneshot creating the cache directory owned by the serving uid:gid, mode 2775 (setgid: what any
    container of that gid creates stays in the group, so an EFA engine, uid 0 with the serving gid and every
    capability dropped, can write too).

    Ordering on the AL2023 EKS AMI (awslabs/amazon-eks-ami v20251103): nodeadm-config runs before cloud-init,
    nodeadm-run after cloud-final (templates/al2023/runtime/rootfs/etc/systemd/system/nodeadm-run.service:
    After=nodeadm-config.service cloud-final.service), and nodeadm-run first sets up the local disks
    (run aspect `local-disk` calls setup-local-disks, which mounts the RAID0 array at /mnt/k8s-disks/0) and only
    then starts kubelet through systemd (nodeadm/cmd/nodeadm/init/init.go: run phase NewLocalDiskAspect, then
    runDaemons -> kubelet EnsureRunning -> StartUnit kubelet.service; kubelet.service is not enabled in the AMI,
    templates/al2023/provisioners/install-nodeadm.sh enables only the nodeadm units). So this script, running in
    cloud-final, would create the directory BEFORE the array exists (and the mount would hide it); instead it
    only enables a unit that kubelet wants and precedes (WantedBy/Before=kubelet.service): systemd runs it when
    nodeadm-run starts kubelet, after the array is mounted. Never `--now` here: an already-active oneshot
    (RemainAfterExit) would not run again at kubelet's start. RequiresMountsFor also orders it after the
    array's mount unit (setup-local-disks writes mnt-k8s\\x2ddisks-0.mount) on reboots. A node without instance
    store gets the directory on the root volume (same path). After=nodeadm-run would deadlock: nodeadm-run waits
    for kubelet to be active (nodeadm/internal/daemon/systemd.go StartDaemon -> waitForStatus)."""
    unit = "\n".join([
        "[Unit]",
        "Description=llmserving node-level model/compile cache (owned by the serving uid)",
        "Before=kubelet.service",
        f"RequiresMountsFor={c.path}",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        f"ExecStart=/usr/bin/mkdir -p {c.path}",
        f"ExecStart=/usr/bin/chown {c.uid}:{c.gid} {c.path}",
        f"ExecStart=/usr/bin/chmod 2775 {c.path}",
        "[Install]",
        "WantedBy=kubelet.service",
    ])
    return "\n".join([
        "#!/bin/bash",
        "set -euo pipefail",
        f"cat > /etc/systemd/system/{NODE_CACHE_UNIT} <<'EOF'",
        unit,
        "EOF",
        "systemctl daemon-reload",
        f"systemctl enable {NODE_CACHE_UNIT}",
        "",
    ])


def gp3_root_volume(size_gib: int, throughput_mibs: Optional[int], iops: Optional[int]) -> dict:
    """A launch template's encrypted gp3 root volume (pulumi-aws LaunchTemplate block_device_mappings[].ebs);
    throughput and IOPS only when given (gp3 defaults: 125 MiB/s, 3,000 IOPS)."""
    ebs = {"volume_size": size_gib, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}
    if throughput_mibs is not None:
        ebs["throughput"] = throughput_mibs
    if iops is not None:
        ebs["iops"] = iops
    return ebs


def mime_archive(parts: list[tuple[str, str]]) -> str:
    """A MIME multi-part archive of (content type, body) parts, as AL2023 user data."""
    lines = ["MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{MIME_BOUNDARY}"', ""]
    for content_type, body in parts:
        lines += [f"--{MIME_BOUNDARY}", f"Content-Type: {content_type}", "", body.rstrip("\n"), ""]
    lines += [f"--{MIME_BOUNDARY}--", ""]
    return "\n".join(lines)


def nodeadm_user_data(node_config_spec: Optional[dict], node_cache: Optional[NodeCacheDir] = None) -> str:
    """AL2023 user data for a managed node group launch template (base64): a MIME multi-part archive whose
    `application/node.eks.aws` part is a NodeConfig; EKS merges it with the NodeConfig it generates
    (cluster endpoint, CA, labels), so it names no cluster details (launch-templates.adoc). The node cache's
    boot script rides along as a shell part: nodeadm reads only the NodeConfig parts of the archive
    (amazon-eks-ami v20251103 nodeadm/internal/configprovider/mime.go ParseMultipart) and cloud-init runs the
    shell part (node_cache_boot_script)."""
    parts = []
    if node_config_spec is not None:
        doc = {"apiVersion": NODECONFIG_API, "kind": "NodeConfig", "spec": node_config_spec}
        parts.append(("application/node.eks.aws", "---\n" + json.dumps(doc, sort_keys=True)))  # JSON is YAML
    if node_cache is not None:
        parts.append((SHELL_PART, node_cache_boot_script(node_cache)))
    return base64.b64encode(mime_archive(parts).encode()).decode()


def autoscaler_template_tags(labels: dict[str, str], taints: list[dict], resources: dict[str, str]) -> dict[str, str]:
    """The Cluster Autoscaler's node-template tags for an Auto Scaling group (cloudprovider/aws/README.md
    at cluster-autoscaler-1.33.6): what a node of the group would carry, so the autoscaler can tell, with
    no node running, whether a pending pod fits it. The GPU count comes from the instance type
    (aws_manager.go buildNodeFromTemplate); extended resources such as EFA need a tag."""
    effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
    out = {f"k8s.io/cluster-autoscaler/node-template/label/{k}": v for k, v in labels.items()}
    out.update({f"k8s.io/cluster-autoscaler/node-template/taint/{t['key']}": f"{t['value']}:{effect[t['effect']]}"
                for t in taints})
    out.update({f"k8s.io/cluster-autoscaler/node-template/resources/{k}": v for k, v in resources.items()})
    return dict(sorted(out.items()))


class GpuNodeGroup(pulumi.ComponentResource):
    node_group_name: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: GpuNodeGroupArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_gpu_node_group_args(args)
        super().__init__("llmserving:eks:GpuNodeGroup", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(f"{name}-node", name=f"{name}-node"[:64], assume_role_policy=json.dumps(ec2_trust()),
                            tags=args.tags, opts=child)
        attachments = [aws.iam.RolePolicyAttachment(f"{name}-node-{arn.rsplit('/', 1)[-1]}", role=role.name,
                                                    policy_arn=arn, opts=child)
                       for arn in args.node_policy_arns]

        placement = None
        network_interfaces = None
        if args.efa_interfaces:
            pg = aws.ec2.PlacementGroup(f"{name}-efa", name=f"{name}-efa", strategy="cluster", tags=args.tags, opts=child)
            placement = {"group_name": pg.name}
            # The first interface carries IP traffic; the others are EFA
            # devices on their own network cards.
            network_interfaces = [
                {"device_index": 0 if i == 0 else 1, "network_card_index": i, "interface_type": "efa",
                 "security_groups": args.security_group_ids, "delete_on_termination": "true"}
                for i in range(args.efa_interfaces)
            ]

        # The node cache's label: EKS puts the group's labels on its nodes (UpdateNodegroupConfig applies a change
        # to the running ones too; the user data that creates the directory rolls them with the launch template).
        labels = {**args.labels, **node_cache_labels(args.node_cache), POOL_LABEL: args.pool_name,
                  "nvidia.com/gpu.present": "true"}
        ebs = gp3_root_volume(args.root_volume_gib, args.root_volume_throughput_mibs, args.root_volume_iops)
        block = args.capacity_type == "CAPACITY_BLOCK"
        reservation = None
        if args.capacity_reservation_id is not None:
            # A targeted reservation: EC2 launches only into it (and fails when it is full).
            reservation = {"capacity_reservation_target": {"capacity_reservation_id": args.capacity_reservation_id}}
        lt = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            name=f"{name}-gpu",
            update_default_version=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": args.imds_hop_limit, "instance_metadata_tags": "disabled"},
            block_device_mappings=[{"device_name": ROOT_DEVICE, "ebs": ebs}],
            network_interfaces=network_interfaces,
            placement=placement,
            capacity_reservation_specification=reservation,
            # capacity-blocks-mng.adoc: the template of a Capacity Block group names the market type and the type.
            instance_market_options={"market_type": "capacity-block"} if block else None,
            instance_type=args.instance_types[0] if block else None,
            user_data=(nodeadm_user_data({"instance": {"localStorage": {"strategy": "RAID0"}}}
                                         if args.local_storage_raid0 else None, args.node_cache)
                       if args.local_storage_raid0 or args.node_cache is not None else None),
            tag_specifications=[{"resource_type": t, "tags": {**args.tags, "Name": f"{name}-gpu"}}
                                for t in ("instance", "volume", "network-interface")],
            tags=args.tags,
            opts=child,
        )
        ng = aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=args.cluster_name,
            node_group_name=f"{name}-gpu",
            node_role_arn=role.arn,
            subnet_ids=args.subnet_ids,
            # EKS rejects instance types on the group when the launch template names one.
            instance_types=None if block else list(args.instance_types),
            ami_type=args.ami_type,
            capacity_type=args.capacity_type,
            scaling_config={"min_size": args.min_size, "desired_size": args.desired_size, "max_size": args.max_size},
            update_config={"max_unavailable": 1},
            node_repair_config={"enabled": True, "max_parallel_nodes_repaired_count": args.node_repair_max_parallel},
            launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
            labels=labels,
            taints=[GPU_TAINT],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*attachments, *args.prerequisites],
                                        # The Cluster Autoscaler moves the desired size; `up` must not reset it.
                                        ignore_changes=["scalingConfig.desiredSize"] if args.autoscaled else None),
        )
        if args.autoscaled:
            # Node-template tags on the group's Auto Scaling group (the node group's own tags do not
            # propagate to it), one aws.autoscaling.Tag each.
            asg_name = ng.resources.apply(lambda rs: rs[0].autoscaling_groups[0].name)
            template = autoscaler_template_tags(labels, [GPU_TAINT], args.template_resources)
            for key, value in template.items():
                # Named by the tag key's digest: adding a label does not rename the others.
                aws.autoscaling.Tag(f"{name}-ca-{hashlib.sha256(key.encode()).hexdigest()[:10]}",
                                    autoscaling_group_name=asg_name,
                                    tag={"key": key, "value": value, "propagate_at_launch": False}, opts=child)
        self.node_group_name = ng.node_group_name
        self.node_role_arn = role.arn
        self.register_outputs({"nodeGroupName": self.node_group_name, "nodeRoleArn": self.node_role_arn})
