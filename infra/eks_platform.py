"""EKS GPU platform: cluster, GPU node groups, NVIDIA runtime, Karpenter pools.

`build(settings, plan, network, tags)` assembles, for one stack:

- `EksCluster`: private API endpoint reached by the deployer through
  `eks.deployerCidrs` / `eks.deployerSecurityGroupIds` (HTTPS on the cluster
  security group); in non-prod stacks also a public endpoint restricted to
  `network.apiPublicCidrs` (prod rejects them); while a new account is
  bootstrapped, a public endpoint restricted to `eks.bootstrapPublicCidrs`
  (any stack; removed afterwards, README "Deploying for real");
- per GPU pool, by provisioner: `GpuNodeGroup` (EKS managed node group, e.g.
  the prod p5 pool for 70B FP8) or `KarpenterGpuPool` (spot first with
  on-demand fallback, e.g. the dev g5/g6e pool and the prod g5 LoRA pool);
- `NvidiaRuntime` (device plugin; DCGM exporter when
  `observability.dcgmExporter`; the AWS EFA device plugin on the EFA pools
  when any pool needs EFA), `Karpenter` (when any pool uses it).

What scales each GPU pool (docs/capacity.md has the decision and its sources):
a Karpenter pool grows to its `nvidia.com/gpu` limit by itself; a managed node
group is scaled by the Cluster Autoscaler (`ClusterAutoscaler`, installed when
any pool is a managed node group) between its min and max. Every GPU pool
has node repair on (EKS node auto repair for node groups, Karpenter's
NodeRepair gate) fed by the EKS node monitoring agent add-on, and puts its
instance-store NVMe to use as a RAID0 array.

Tier presets are the shipped stacks: small = Pulumi.dev.yaml (g5/g6e
spot-first through Karpenter), medium = Pulumi.prod.yaml (p5 managed node
groups for 70B FP8 plus a g5 Karpenter pool for 8B + LoRA). Node counts come
from the capacity plan: a managed group's desired size is the plan's nodes
for that pool; a Karpenter pool's GPU limit is the smallest of
`gpuLimits.maxGpusPerPool` and the pool's maxNodes x GPUs per node.

Large tier (several clusters across zones): ONE STACK PER CLUSTER, e.g.
`prod-use1-a`, `prod-use1-b`, `prod-usw2-a`, each a copy of the medium
preset with its own zones/region and a share of the users, fronted by a
global routing layer (Route 53 latency/weighted records or Global
Accelerator) that lives in its own small stack. Reasons:

1. Blast radius: a cluster is the failure and upgrade unit. One stack per
   cluster lets a Kubernetes or add-on upgrade, a node-group replacement or
   a bad policy change roll one cluster at a time (canary first), and a
   failed `pulumi up` never leaves several clusters half-updated.
2. State and preview size: the mock engine costs ~5 ms per resource (see
   FACTS.md); one stack with N clusters makes every preview and every
   state lock N times larger, and serialises all teams on one lock.
3. Quotas and regions: GPU quotas are per region and family; clusters in
   different regions need different providers and often different instance
   mixes. Per-cluster stacks carry their own region and pools without
   provider plumbing inside one program.
4. The program stays simple: the planner already sizes one cluster from
   `scale.users`; a large deployment sets each stack's users to its share.
   Nothing here needs to loop over clusters, and the code path for large is
   the one that small and medium already test.

The cost is config duplication across stacks, which stack config files (or
Pulumi ESC environments) handle, and a cross-cluster budget, which belongs
to the routing/budget stack. (One stack with several clusters would only pay
off when clusters must share resources created in the same program.)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.eks_cluster import ADDONS_BEFORE_NODES, NODE_MONITORING_AGENT, EksCluster, EksClusterArgs
from components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs, NodeCacheDir
from components.karpenter import Karpenter, KarpenterArgs
from components.karpenter_gpu_pool import KarpenterGpuPool, KarpenterGpuPoolArgs
from components.network import Network
from components.nvidia_runtime import HelmChart, NvidiaRuntime, NvidiaRuntimeArgs
from infra import capacity, upstream
from infra import eks_catalog as ec
from infra.config import ConfigError, GpuPoolConfig, Settings

POOL_LABEL = "llmserving.io/pool"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
MNG_CAPACITY = {"on-demand": "ON_DEMAND", "spot": "SPOT"}
# Where a pool's acknowledgement of running scarce on-demand GPUs without a reservation travels: a tag on
# the node group / Auto Scaling group, an annotation on the NodePool (policies/rules/capacity.py reads it).
NO_RESERVATION_ACK = "llmserving.io/no-reservation-ack"
SYSTEM_NODE_SELECTOR = {"llmserving.io/role": "system"}
KARPENTER_CAPACITY = {"on-demand": ["on-demand"], "spot": ["spot"],
                      "spot-with-on-demand-fallback": ["spot", "on-demand"]}


@dataclass(frozen=True)
class PoolScheduling:
    node_selector: dict
    tolerations: list[dict]
    efa: bool


@dataclass
class EksPlatform:
    cluster_name: pulumi.Output[str]
    k8s_provider: k8s.Provider
    node_role_arn: pulumi.Output[str]
    pool_scheduling: dict[str, PoolScheduling]
    # What must exist before any pod can run on the CPU (system) nodes: the
    # system node group and the add-ons that need it (CoreDNS). Helm releases
    # and workloads that schedule pods depend on these.
    system_nodes: list[pulumi.Resource] = field(default_factory=list)
    # Per GPU pool name: what provides its nodes (the GpuNodeGroup, or the
    # KarpenterGpuPool and the Karpenter release that acts on it).
    pool_node_sources: dict[str, list[pulumi.Resource]] = field(default_factory=dict)


def _policy_arns() -> list[str]:
    return [f"arn:aws:iam::aws:policy/{p}" for p in ec.NODE_MANAGED_POLICIES.value.split(",")]


# RFC 5737 documentation ranges (TEST-NET-1/2/3): placeholders, never a real client.
DOCUMENTATION_RANGES = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))


def api_public_cidrs(settings: Settings) -> list[str]:
    """Who may reach a PUBLIC API endpoint (none = private only): `network.apiPublicCidrs`
    outside prod, plus `eks.bootstrapPublicCidrs` while a new account is bootstrapped."""
    c = settings.config
    standing = list(c.network.api_public_cidrs) if c.environment != "prod" else []
    return list(dict.fromkeys([*standing, *c.eks.bootstrap_public_cidrs]))


def pool_needs_efa(settings: Settings, pool: GpuPoolConfig) -> bool:
    """EFA when a model on the pool spans nodes and the instance family has EFA."""
    spans = any(m.pool == pool.name and m.pipeline_parallel > 1 for m in settings.config.models)
    return spans and all(settings.catalog.instance(t).efa for t in pool.instance_types)


def gpu_limit(settings: Settings, pool: GpuPoolConfig) -> int:
    per_node = max(settings.catalog.instance(t).gpu_count for t in pool.instance_types)
    return min(settings.config.gpu_limits.max_gpus_per_pool, pool.max_nodes * per_node)


def has_instance_store(settings: Settings, pool: GpuPoolConfig) -> bool:
    """Every instance type of the pool has local NVMe (the RAID0 array then always exists)."""
    return all(settings.catalog.instance(t).instance_store_gb > 0 for t in pool.instance_types)


def accelerator_label(settings: Settings, pool: GpuPoolConfig) -> str:
    """The value of the Cluster Autoscaler's GPU label for the pool's GPU, e.g. nvidia-h100-80gb."""
    gpu = settings.catalog.instance(pool.instance_types[0]).gpu
    return "nvidia-" + "".join(ch if ch.isalnum() else "-" for ch in gpu.lower())


def node_labels(settings: Settings, pool: GpuPoolConfig, provisioner: str) -> dict[str, str]:
    labels = {"llmserving.io/provisioner": provisioner}
    if has_instance_store(settings, pool):
        labels[ec.LOCAL_NVME_LABEL] = "raid0"
    if provisioner == "managed-node-group":
        labels[ec.CA_GPU_LABEL] = accelerator_label(settings, pool)
    return labels


def root_volume_performance() -> tuple[int, int]:
    v = ec.GPU_ROOT_VOLUME
    return int(v["throughput_mibs"].value), int(v["iops"].value)


def node_cache_dir(settings: Settings) -> NodeCacheDir:
    """The node-level cache every GPU node creates at boot, owned by the uid/gid the serving pods run as
    (infra/serving.py workload_args mounts it as hostPath type Directory)."""
    from infra.serving import figure

    return NodeCacheDir(path=ec.NODE_CACHE_HOST_PATH, uid=int(figure(settings, "run_as_user")),
                        gid=int(figure(settings, "fs_group")), node_label=ec.NODE_CACHE_LABEL)


def validate(settings: Settings, plan: capacity.Plan) -> None:
    """Platform-level checks; raises ConfigError before any resource exists."""
    c = settings.config
    k = lambda path: f"{settings.project}:{path}"  # noqa: E731
    p: list[str] = []
    if c.kubernetes_version not in ec.ADDON_VERSIONS:
        p.append(f"{k('kubernetesVersion')}: got {c.kubernetes_version!r}; no pinned EKS add-on versions for it "
                 f"(pinned: {', '.join(sorted(ec.ADDON_VERSIONS))}); add them to infra/eks_catalog.py first")
    if c.kubernetes_version not in ec.NODE_MONITORING_AGENT_VERSIONS:
        p.append(f"{k('kubernetesVersion')}: got {c.kubernetes_version!r}; no pinned {ec.NODE_MONITORING_AGENT} "
                 f"add-on for it (GPU node repair needs it); add it to infra/eks_catalog.py first")
    if (any(settings.provisioner(pool) == "managed-node-group" for pool in c.gpu_pools)
            and c.kubernetes_version not in ec.CLUSTER_AUTOSCALER_IMAGE):
        p.append(f"{k('kubernetesVersion')}: got {c.kubernetes_version!r}; no pinned Cluster Autoscaler image for it "
                 f"(managed node groups need one; its minor must match the cluster's); add it to "
                 f"infra/eks_catalog.py CLUSTER_AUTOSCALER_IMAGE first")
    if c.environment == "prod" and c.network.api_public_cidrs:
        p.append(f"{k('network.apiPublicCidrs')}: got {c.network.api_public_cidrs}; prod clusters use a private "
                 f"API endpoint: reach it from the VPC (eks.deployerCidrs / eks.deployerSecurityGroupIds for a "
                 f"runner, peering or VPN); for the first deploy of a new account use eks.bootstrapPublicCidrs "
                 f"and remove it afterwards (README, Deploying for real)")
    plans = {pp.pool: pp for pp in plan.pools}
    # Totals at max size are the policy pack's to judge (gpu-max-total,
    # gpu-max-per-pool): limits live in one place and show up in previews.
    for i, pool in enumerate(c.gpu_pools):
        prov = settings.provisioner(pool)
        pp = plans.get(pool.name)
        if pp and pp.gpus > c.gpu_limits.max_gpus_per_pool:
            p.append(f"{k('gpuLimits.maxGpusPerPool')}: got {c.gpu_limits.max_gpus_per_pool}; pool {pool.name!r} "
                     f"is planned at {pp.gpus} GPUs ({pp.nodes} x {pp.instance_type})")
        if pool_needs_efa(settings, pool) and prov == "karpenter":
            p.append(f"{k(f'gpuPools[{i}].provisioner')}: got 'karpenter'; pool {pool.name!r} serves a model split "
                     f"across nodes and needs EFA interfaces and a cluster placement group; use 'managed-node-group'")
        if prov == "managed-node-group" and pool.capacity_type == "spot-with-on-demand-fallback":
            p.append(f"{k(f'gpuPools[{i}].capacityType')}: got 'spot-with-on-demand-fallback'; a managed node group "
                     f"has one capacity type (spot or on-demand); use provisioner 'karpenter' for fallback")
    if p:
        raise ConfigError(p)


def creator_admin_entry_warnings(settings: Settings, caller_arn: str) -> list[str]:
    """EKS gives the identity that creates a cluster admin access already (pulumi-eks leaves the
    access config's bootstrapClusterCreatorAdminPermissions at its default, true: EKS API
    CreateCluster accessConfig). An access entry the program declares for that same role then
    fails with ResourceInUseException (409) on the first `up` and every retry."""
    m = re.match(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/([^/]+)/", caller_arn or "")
    if not m:
        return []
    return [f"{settings.project}:eks.adminRoleArns lists {arn}, the role running this deploy: if this `up` creates "
            f"the cluster, EKS already makes that role an admin and the access entry fails with "
            f"ResourceInUseException; list it only when another identity created the cluster"
            for arn in settings.config.eks.admin_role_arns if arn.rsplit("/", 1)[-1] == m.group(1)]


def build(settings: Settings, plan: capacity.Plan, network: Network, tags: dict[str, str], *,
          spot_service_linked_role: Optional[pulumi.Resource] = None) -> EksPlatform:
    """`spot_service_linked_role`: Edge.spot_service_linked_role; spot capacity waits for it."""
    validate(settings, plan)

    def _spot_prerequisites(pool: GpuPoolConfig) -> tuple[pulumi.Resource, ...]:
        spot = pool.capacity_type in ("spot", "spot-with-on-demand-fallback")
        return (spot_service_linked_role,) if spot and spot_service_linked_role is not None else ()

    c = settings.config
    name = f"{settings.project}-{settings.stack}"  # also the Karpenter/ELB discovery tag value
    hop_limit = int(ec.IMDS_HOP_LIMIT.value)
    node_policies = _policy_arns()
    identity = aws.get_caller_identity()
    for message in creator_admin_entry_warnings(settings, identity.arn):
        pulumi.log.warn(message)
    public_cidrs = api_public_cidrs(settings)
    if c.eks.bootstrap_public_cidrs:
        pulumi.log.warn(f"{settings.project}:eks.bootstrapPublicCidrs opens a public cluster API endpoint to "
                        f"{', '.join(c.eks.bootstrap_public_cidrs)}; remove it once a deployer in the VPC works "
                        f"(the next `up` closes it)")
    for cidr in c.network.api_public_cidrs:
        if any(ipaddress.ip_network(cidr).subnet_of(doc) for doc in DOCUMENTATION_RANGES):
            pulumi.log.warn(f"{settings.project}:network.apiPublicCidrs lists {cidr}, a documentation range "
                            f"(RFC 5737) nobody connects from: replace it with your office or VPN egress CIDR")

    cluster = EksCluster(name, EksClusterArgs(
        cluster_name=name, kubernetes_version=c.kubernetes_version, vpc_id=network.vpc_id,
        region=settings.region, account_id=identity.account_id,
        private_subnet_ids=network.private_subnet_ids,
        addon_versions={a: pin.value for a, pin in ec.ADDON_VERSIONS[c.kubernetes_version].items()},
        endpoint_public_access=bool(public_cidrs), public_access_cidrs=public_cidrs,
        deployer_cidrs=list(c.eks.deployer_cidrs), deployer_security_group_ids=list(c.eks.deployer_security_group_ids),
        log_types=tuple(ec.EKS_LOG_TYPES.value.split(",")), admin_role_arns=list(c.eks.admin_role_arns),
        system_instance_types=ec.SYSTEM_NODES["instance_types"].value.split(","),
        system_nodes=int(ec.SYSTEM_NODES["count"].value),
        system_root_volume_gib=int(ec.SYSTEM_NODES["root_volume_gib"].value), node_policy_arns=node_policies,
        imds_hop_limit=hop_limit, protect=True, tags=tags,
        node_monitoring_agent_version=ec.NODE_MONITORING_AGENT_VERSIONS[c.kubernetes_version].value,
        gpu_tolerations=[dict(GPU_TOLERATION)]))
    k8s_opts = pulumi.ResourceOptions(providers=[cluster.provider])
    system_nodes: list[pulumi.Resource] = [cluster.system_node_group, cluster.addons["coredns"]]
    # GPU nodes wait for the node add-ons and the node monitoring agent (repair from their first boot).
    node_addons = tuple(cluster.addons[a] for a in (*ADDONS_BEFORE_NODES, NODE_MONITORING_AGENT))
    throughput, iops = root_volume_performance()
    node_sources: dict[str, list[pulumi.Resource]] = {}

    plans = {pp.pool: pp for pp in plan.pools}
    scheduling: dict[str, PoolScheduling] = {}
    karpenter_pools = [p for p in c.gpu_pools if settings.provisioner(p) == "karpenter"]
    node_role_arn = None

    managed_pools = [p for p in c.gpu_pools if settings.provisioner(p) == "managed-node-group"]
    autoscaler: Optional[ClusterAutoscaler] = None
    if managed_pools:
        # EKS does not scale managed node groups and Karpenter does not touch them (docs/capacity.md).
        chart = ec.CLUSTER_AUTOSCALER_CHART
        autoscaler = ClusterAutoscaler(f"{name}-cluster-autoscaler", ClusterAutoscalerArgs(
            cluster_name=name, kubernetes_version=c.kubernetes_version, region=settings.region,
            account_id=identity.account_id, chart=chart.chart, chart_version=chart.version,
            repository=chart.repository, image_tag=ec.CLUSTER_AUTOSCALER_IMAGE[c.kubernetes_version].value,
            policy=upstream.cluster_autoscaler_policy(),
            extra_args={key.replace("_", "-"): pin.value for key, pin in ec.CLUSTER_AUTOSCALER_SETTINGS.items()},
            node_selector=dict(SYSTEM_NODE_SELECTOR),
            helm_timeout_seconds=int(ec.HELM_TIMEOUTS["cluster-autoscaler"].value),
            node_ready=(cluster.system_node_group,), tags=tags),
            opts=pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[cluster]))

    for pool in managed_pools:
        efa = pool_needs_efa(settings, pool)
        desired = plans[pool.name].nodes if pool.name in plans else pool.min_nodes
        efa_ifs = min(settings.catalog.instance(t).max_efa_interfaces for t in pool.instance_types) if efa else 0
        reservation = pool.capacity_reservations[0] if pool.capacity_reservations else None
        subnets = network.private_subnet_ids
        if reservation is not None:
            # A targeted reservation lives in one zone: launch only there.
            zone = str(reservation.availability_zone)
            if zone not in network.zones:
                raise ConfigError([f"{settings.project}:gpuPools[{c.gpu_pools.index(pool)}].capacityReservations[0]"
                                   f".availabilityZone: got {zone!r}; the stack's private subnets are in "
                                   f"{', '.join(network.zones)}"])
            subnets = [network.private_subnet_ids[network.zones.index(zone)]]
        elif efa:
            # A cluster placement group is one zone: EFA groups take the first private subnet.
            subnets = network.private_subnet_ids[:1]
        capacity_type = MNG_CAPACITY[pool.capacity_type]
        if reservation is not None and reservation.type == "capacity-block":
            capacity_type = "CAPACITY_BLOCK"
        pool_tags = dict(tags)
        if pool.acknowledge_no_reservation:
            pool_tags[NO_RESERVATION_ACK] = pool.acknowledge_no_reservation
        group = GpuNodeGroup(f"{name}-{pool.name}", GpuNodeGroupArgs(
            cluster_name=cluster.cluster_name, pool_name=pool.name, instance_types=list(pool.instance_types),
            subnet_ids=subnets,
            ami_type=ec.MANAGED_NODE_GROUP_AMI_TYPE.value, capacity_type=capacity_type,
            min_size=pool.min_nodes, desired_size=max(pool.min_nodes, desired), max_size=pool.max_nodes,
            root_volume_gib=pool.root_volume_gib, node_policy_arns=node_policies, imds_hop_limit=hop_limit,
            efa_interfaces=efa_ifs, security_group_ids=[cluster.cluster_security_group_id] if efa else [],
            labels=node_labels(settings, pool, "managed-node-group"),
            prerequisites=(*node_addons, *_spot_prerequisites(pool)), tags=pool_tags,
            root_volume_throughput_mibs=throughput, root_volume_iops=iops,
            autoscaled=True, template_resources={"vpc.amazonaws.com/efa": str(efa_ifs)} if efa else {},
            node_repair_max_parallel=int(ec.NODE_REPAIR["max_parallel_nodes_repaired_count"].value),
            capacity_reservation_id=reservation.id if reservation is not None else None,
            local_storage_raid0=has_instance_store(settings, pool), node_cache=node_cache_dir(settings)))
        node_role_arn = node_role_arn or group.node_role_arn
        node_sources[pool.name] = [group, *([autoscaler.release] if autoscaler is not None else [])]
        scheduling[pool.name] = PoolScheduling({POOL_LABEL: pool.name}, [dict(GPU_TOLERATION)], efa)

    efa_pools = tuple(p.name for p in c.gpu_pools if pool_needs_efa(settings, p))
    NvidiaRuntime(f"{name}-nvidia", NvidiaRuntimeArgs(
        device_plugin=_chart("nvidia-device-plugin"),
        dcgm_exporter=_chart("dcgm-exporter") if c.observability.dcgm_exporter else None,
        dcgm_counters=dcgm_counters() if c.observability.dcgm_exporter else None,
        efa_device_plugin=_chart("aws-efa-k8s-device-plugin") if efa_pools else None, efa_pools=efa_pools,
        node_ready=(cluster.system_node_group,)),
        opts=k8s_opts)

    if karpenter_pools:
        chart = ec.HELM_CHARTS["karpenter"]
        karpenter = Karpenter(f"{name}-karpenter", KarpenterArgs(
            cluster_name=name, chart=chart.chart, chart_version=chart.version, node_policy_arns=node_policies,
            region=settings.region, account_id=identity.account_id,
            controller_policy_templates=upstream.karpenter_controller_policy_templates(),
            helm_timeout_seconds=int(ec.HELM_TIMEOUTS["karpenter"].value), node_ready=(cluster.system_node_group,),
            tags=tags, node_repair=True, reserved_capacity=True),
            opts=pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[cluster]))
        node_role_arn = karpenter.node_role_arn
        d = ec.KARPENTER_DISRUPTION
        for pool in karpenter_pools:
            terms = [{"id": r.id} if r.id else {"tags": dict(r.tags)} for r in pool.capacity_reservations]
            # Reserved first: Karpenter launches into the selected reservations, then falls back.
            capacity_types = (["reserved"] if terms else []) + KARPENTER_CAPACITY[pool.capacity_type]
            gpu_pool = KarpenterGpuPool(f"{name}-{pool.name}", KarpenterGpuPoolArgs(
                pool_name=pool.name, cluster_name=name, node_role_name=karpenter.node_role_name,
                instance_types=list(pool.instance_types), capacity_types=capacity_types,
                gpu_limit=gpu_limit(settings, pool), ami_alias=ec.KARPENTER_AMI_ALIAS.value,
                root_volume_gib=pool.root_volume_gib, zones=list(network.zones),
                consolidation_policy=d["consolidation_policy"].value, consolidate_after=d["consolidate_after"].value,
                expire_after=d["expire_after"].value, budget_nodes=d["budget_nodes"].value, imds_hop_limit=hop_limit,
                labels=node_labels(settings, pool, "karpenter"), prerequisites=_spot_prerequisites(pool), tags=tags,
                capacity_reservation_terms=terms, instance_store_raid0=has_instance_store(settings, pool),
                root_volume_throughput_mibs=throughput, root_volume_iops=iops,
                annotations=({NO_RESERVATION_ACK: pool.acknowledge_no_reservation}
                             if pool.acknowledge_no_reservation else {}),
                node_cache=node_cache_dir(settings)),
                opts=pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[karpenter.release]))
            node_sources[pool.name] = [gpu_pool, karpenter.release]
            scheduling[pool.name] = PoolScheduling({POOL_LABEL: pool.name}, [dict(GPU_TOLERATION)], False)

    return EksPlatform(cluster_name=cluster.cluster_name, k8s_provider=cluster.provider,
                       node_role_arn=node_role_arn, pool_scheduling=scheduling, system_nodes=system_nodes,
                       pool_node_sources=node_sources)


def dcgm_counters() -> str:
    """The pinned exporter's default counters plus the ECC and retired-page counters the GPU health
    alerts read (components/observability.py gpu_health_rules)."""
    return upstream.dcgm_default_counters().rstrip("\n") + "\n\n# ECC and retired pages (llmserving GPU health " \
        "alerts)\n" + ec.DCGM_EXTRA_COUNTERS.value + "\n"


def _chart(key: str) -> HelmChart:
    pin = ec.HELM_CHARTS[key]
    return HelmChart(chart=pin.chart, version=pin.version, repository=pin.repository,
                     timeout_seconds=int(ec.HELM_TIMEOUTS[key].value))
