"""A Karpenter GPU pool: one `karpenter.sh/v1` NodePool and its `karpenter.k8s.aws/v1` EC2NodeClass.

Every GPU pool caps `nvidia.com/gpu` in `spec.limits` (a pool without a GPU
limit is rejected: Karpenter would scale it without bound). Spot first with
on-demand fallback is one capacity-type requirement listing both values;
Karpenter prefers spot when both are allowed. Many instance types per pool
avoid InsufficientInstanceCapacity. Disruption only removes empty nodes,
after a long wait, within a budget, so warm inference replicas are not
consolidated away; nodes expire (`spec.template.spec.expireAfter`) so AMIs
roll forward. Limits are eventually consistent and can overrun briefly
during a fast scale-out.

Capacity reservations (Karpenter v1.14.1 docs tasks/odcrs.md): the
EC2NodeClass selects ODCRs and Capacity Blocks by id or tags
(`capacityReservationSelectorTerms`) and the NodePool allows the `reserved`
capacity type, which Karpenter launches first and falls back from to the
pool's other types (feature gate ReservedCapacity, on by default at v1.14.1).
Instance-store NVMe: `instanceStorePolicy: RAID0` makes Karpenter's AL2023
NodeConfig assemble the disks into one array at /mnt/k8s-disks/0 holding
kubelet and containerd, and sets the node's ephemeral storage to its size
(concepts/nodeclasses.md, spec.instanceStorePolicy).
Node cache: `spec.userData` carries a MIME archive with one shell part that
installs the unit creating the node-level cache directory for the serving
uid after the array is mounted and before kubelet starts
(components/gpu_node_group.py node_cache_boot_script). On an AL2023 alias
Karpenter keeps the user's MIME parts and appends its own NodeConfig (the one
that asks for RAID0): aws/karpenter-provider-aws v1.14.1
pkg/providers/amifamily/bootstrap/nodeadm.go Script/parseUserData.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.errors import ArgsError
from components.gpu_node_group import (SHELL_PART, NodeCacheDir, mime_archive, node_cache_boot_script,
                                       node_cache_labels, node_cache_problems)

CAPACITY_TYPES = ("reserved", "spot", "on-demand")
CONSOLIDATION_POLICIES = ("WhenEmpty", "WhenEmptyOrUnderutilized")
DURATION = re.compile(r"^([0-9]+(s|m|h))+$")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
POOL_LABEL = "llmserving.io/pool"


@dataclass(frozen=True)
class KarpenterGpuPoolArgs:
    pool_name: str
    cluster_name: str
    node_role_name: pulumi.Input[str]
    instance_types: list[str]
    capacity_types: list[str]
    # Cap on nvidia.com/gpu for the pool; required (None is an error).
    gpu_limit: Optional[int]
    ami_alias: str
    root_volume_gib: int
    zones: list[str] = field(default_factory=list)
    consolidation_policy: str = "WhenEmpty"
    consolidate_after: str = "1h"
    expire_after: str = "720h"
    budget_nodes: str = "10%"
    # 1: pods must not reach IMDS (node credentials); Pod Identity serves them.
    imds_hop_limit: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    # What must exist before Karpenter may launch for this pool (e.g. the Spot
    # service-linked role on an account that never used Spot).
    prerequisites: tuple[pulumi.Resource, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    # EC2NodeClass capacityReservationSelectorTerms ({"id": ...} or {"tags": {...}}); needs "reserved"
    # among capacity_types.
    capacity_reservation_terms: list[dict] = field(default_factory=list)
    # Assemble the instance store into RAID0 for kubelet, containerd and the caches.
    instance_store_raid0: bool = False
    # gp3 root volume performance (None: the gp3 defaults).
    root_volume_throughput_mibs: Optional[int] = None
    root_volume_iops: Optional[int] = None
    # NodePool annotations (e.g. the acknowledgement of running without a capacity reservation).
    annotations: dict[str, str] = field(default_factory=dict)
    # The node-level cache directory the serving pods mount (created at boot, owned by the serving uid).
    node_cache: Optional[NodeCacheDir] = None


def validate_karpenter_gpu_pool_args(args: KarpenterGpuPoolArgs) -> None:
    p: list[str] = []
    if args.gpu_limit is None:
        p.append(f"gpu_limit: got None; GPU pool {args.pool_name!r} must cap nvidia.com/gpu in spec.limits")
    elif args.gpu_limit < 1:
        p.append(f"gpu_limit: got {args.gpu_limit}; must be at least 1")
    if not args.instance_types:
        p.append("instance_types: got []; list the GPU instance types the pool may launch")
    bad = [c for c in args.capacity_types if c not in CAPACITY_TYPES]
    if bad or not args.capacity_types:
        p.append(f"capacity_types: got {args.capacity_types}; allowed: {', '.join(CAPACITY_TYPES)} (one or both)")
    if args.consolidation_policy not in CONSOLIDATION_POLICIES:
        p.append(f"consolidation_policy: got {args.consolidation_policy!r}; allowed: {', '.join(CONSOLIDATION_POLICIES)}")
    for key in ("consolidate_after", "expire_after"):
        v = getattr(args, key)
        if v != "Never" and not DURATION.match(v):
            p.append(f"{key}: got {v!r}; a duration such as 1h or 720h, or Never")
    if not re.match(r"^(100|[0-9]{1,2})%$|^[0-9]+$", args.budget_nodes):
        p.append(f"budget_nodes: got {args.budget_nodes!r}; a node count or percentage such as 10%")
    if not re.match(r"^al2023@(latest|v[0-9]{8})$", args.ami_alias):
        p.append(f"ami_alias: got {args.ami_alias!r}; an AL2023 alias such as al2023@v20251103")
    if args.root_volume_gib < 100:
        p.append(f"root_volume_gib: got {args.root_volume_gib}; GPU nodes need at least 100 GiB")
    if POOL_LABEL in args.labels and args.labels[POOL_LABEL] != args.pool_name:
        p.append(f"labels: {POOL_LABEL} is {args.labels[POOL_LABEL]!r} but pool_name is {args.pool_name!r}")
    has_terms, reserved = bool(args.capacity_reservation_terms), "reserved" in args.capacity_types
    if has_terms != reserved:
        p.append(f"capacity_types: got {args.capacity_types} with {len(args.capacity_reservation_terms)} capacity "
                 f"reservation term(s); 'reserved' goes with capacityReservationSelectorTerms (Karpenter launches "
                 f"reserved capacity only from the reservations its EC2NodeClass selects)")
    for i, t in enumerate(args.capacity_reservation_terms):
        # EC2NodeClass CRD (v1.14.1): a term has an id, or tags (optionally ownerID); id excludes the rest.
        if set(t) - {"id", "tags", "ownerID", "instanceMatchCriteria"} or ("id" in t) == ("tags" in t):
            p.append(f"capacity_reservation_terms[{i}]: got {t}; one of id (cr-...) or tags")
        elif "id" in t and not re.match(r"^cr-[0-9a-z]+$", str(t["id"])):
            p.append(f"capacity_reservation_terms[{i}].id: got {t['id']!r}; a reservation id such as cr-0123456789abcdef0")
    if args.root_volume_throughput_mibs is not None and not 125 <= args.root_volume_throughput_mibs <= 2000:
        p.append(f"root_volume_throughput_mibs: got {args.root_volume_throughput_mibs}; gp3 allows 125-2000")
    if args.root_volume_iops is not None and not 3000 <= args.root_volume_iops <= 80000:
        p.append(f"root_volume_iops: got {args.root_volume_iops}; gp3 allows 3000-80000")
    if args.node_cache is not None:
        p += node_cache_problems(args.node_cache)
    if p:
        raise ArgsError("KarpenterGpuPool", p)


def node_class_spec(args: KarpenterGpuPoolArgs, role: str) -> dict:
    discovery = [{"tags": {"karpenter.sh/discovery": args.cluster_name}}]
    ebs: dict = {"volumeSize": f"{args.root_volume_gib}Gi", "volumeType": "gp3", "encrypted": True,
                 "deleteOnTermination": True}
    if args.root_volume_throughput_mibs is not None:
        ebs["throughput"] = args.root_volume_throughput_mibs
    if args.root_volume_iops is not None:
        ebs["iops"] = args.root_volume_iops
    spec = {
        "role": role,
        "amiSelectorTerms": [{"alias": args.ami_alias}],
        "subnetSelectorTerms": discovery,
        "securityGroupSelectorTerms": discovery,
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": ebs}],
        "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                            "httpPutResponseHopLimit": args.imds_hop_limit, "httpTokens": "required"},
        "tags": {**args.tags, "llmserving.io/pool": args.pool_name},
    }
    if args.capacity_reservation_terms:
        spec["capacityReservationSelectorTerms"] = [dict(t) for t in args.capacity_reservation_terms]
    if args.instance_store_raid0:
        spec["instanceStorePolicy"] = "RAID0"
    if args.node_cache is not None:
        # Plain text (not base64): Karpenter parses it as a MIME archive when it starts with MIME-Version.
        spec["userData"] = mime_archive([(SHELL_PART, node_cache_boot_script(args.node_cache))])
    return spec


def node_pool_spec(args: KarpenterGpuPoolArgs) -> dict:
    requirements = [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": list(args.instance_types)},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(args.capacity_types)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    if args.zones:
        requirements.append({"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(args.zones)})
    return {
        "template": {
            # The node cache's label too: Karpenter sets template labels on a node at launch and never adds them
            # to a running one (a template change drifts the node instead), so only nodes launched with the
            # boot script that creates the directory carry it.
            "metadata": {"labels": {**args.labels, **node_cache_labels(args.node_cache), POOL_LABEL: args.pool_name,
                                    "nvidia.com/gpu.present": "true"}},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": args.pool_name},
                "requirements": requirements,
                "taints": [GPU_TAINT],
                "expireAfter": args.expire_after,
            },
        },
        "limits": {"nvidia.com/gpu": args.gpu_limit},
        "disruption": {
            "consolidationPolicy": args.consolidation_policy,
            "consolidateAfter": args.consolidate_after,
            "budgets": [{"nodes": args.budget_nodes}],
        },
    }


class KarpenterGpuPool(pulumi.ComponentResource):
    def __init__(self, name: str, args: KarpenterGpuPoolArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_karpenter_gpu_pool_args(args)
        super().__init__("llmserving:eks:KarpenterGpuPool", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        node_class = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass", api_version="karpenter.k8s.aws/v1", kind="EC2NodeClass",
            metadata={"name": args.pool_name, "labels": {POOL_LABEL: args.pool_name}},
            spec=pulumi.Output.from_input(args.node_role_name).apply(lambda role: node_class_spec(args, role)),
            opts=child)
        node_pool = k8s.apiextensions.CustomResource(
            f"{name}-nodepool", api_version="karpenter.sh/v1", kind="NodePool",
            metadata={"name": args.pool_name, "labels": {POOL_LABEL: args.pool_name},
                      **({"annotations": dict(args.annotations)} if args.annotations else {})},
            spec=node_pool_spec(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[node_class, *args.prerequisites]))
        self.register_outputs({"nodePool": node_pool.metadata["name"], "nodeClass": node_class.metadata["name"]})
