"""GPU managed node group: an EKS managed node group on the NVIDIA AL2023 AMI.

Visible as `aws:eks/nodeGroup:NodeGroup` with its launch template (IMDSv2
required with hop limit 1 so pods never reach the node role, encrypted gp3 root sized for model weights),
the GPU taint and the labels workloads select on. For a model split across
nodes the group gets EFA interfaces and a cluster placement group; a cluster
placement group lives in one zone, so such a group takes exactly one subnet.

Changing instance types, capacity type, AMI type or disk size replaces the
group: roll GPU capacity blue/green with a new group name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError, out_of_range
from components.iam_trust import ec2_trust

NVIDIA_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
POOL_LABEL = "llmserving.io/pool"
ROOT_DEVICE = "/dev/xvda"


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
    if p:
        raise ArgsError("GpuNodeGroup", p)


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

        labels = {**args.labels, POOL_LABEL: args.pool_name, "nvidia.com/gpu.present": "true"}
        lt = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            name=f"{name}-gpu",
            update_default_version=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": args.imds_hop_limit, "instance_metadata_tags": "disabled"},
            block_device_mappings=[{"device_name": ROOT_DEVICE, "ebs": {
                "volume_size": args.root_volume_gib, "volume_type": "gp3", "encrypted": "true",
                "delete_on_termination": "true"}}],
            network_interfaces=network_interfaces,
            placement=placement,
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
            instance_types=list(args.instance_types),
            ami_type=args.ami_type,
            capacity_type=args.capacity_type,
            scaling_config={"min_size": args.min_size, "desired_size": args.desired_size, "max_size": args.max_size},
            update_config={"max_unavailable": 1},
            launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
            labels=labels,
            taints=[GPU_TAINT],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*attachments, *args.prerequisites]),
        )
        self.node_group_name = ng.node_group_name
        self.node_role_arn = role.arn
        self.register_outputs({"nodeGroupName": self.node_group_name, "nodeRoleArn": self.node_role_arn})
