"""Reliability guardrails: zones, probes, disruption budgets, spot interruptions, protection, requests."""

from __future__ import annotations


from pulumi_policy import EnforcementLevel

from rules.common import (LWS, NODEPOOL, Res, UNKNOWN, WORKLOAD_TYPES, all_containers, as_list, container_args, flag,
                          fmt, get, gpu_pools, is_vllm, num, of_type, pod_labels, pod_specs, resource_policy, stack_policy,
                          workload_label)
from rules.ecs import ECS_TASK, ecs_containers

PDB = "kubernetes:policy/v1:PodDisruptionBudget"
QUEUE = "aws:sqs/queue:Queue"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
STATEFUL = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:eks/cluster:Cluster", "eks:index:Cluster",
            "aws:ecs/cluster:Cluster", "aws:kms/key:Key")
ECS_SERVICE = "aws:ecs/service:Service"


def _is_private_subnet(s: Res) -> bool:
    """Node subnets: no public IPs on launch and not tagged for internet-facing load balancers."""
    tags = s.get("tags", default={}) or {}
    return s.get("mapPublicIpOnLaunch") is not True and not (isinstance(tags, dict) and tags.get("kubernetes.io/role/elb") == "1")


def _min_zones(resources: list[Res], cfg: dict, report) -> None:
    minimum = int(cfg.get("minZones", 2))  # policy config numbers arrive as floats
    subnets = of_type(resources, "aws:ec2/subnet:Subnet")
    if any(s.get("mapPublicIpOnLaunch") is UNKNOWN or s.get("tags") is UNKNOWN for s in subnets):
        return
    private = [s for s in subnets if _is_private_subnet(s)]
    if subnets and not private:
        report(f"the stack has {len(subnets)} subnet(s) but none is private (mapPublicIpOnLaunch false, not tagged "
               f"kubernetes.io/role/elb); GPU nodes need private subnets in at least {fmt(minimum)} zones")
        return
    if any(s.get("availabilityZone") is UNKNOWN for s in private):
        return
    zones = sorted({z for s in private if isinstance(z := s.get("availabilityZone"), str)})
    if private and len(zones) < minimum:
        report(f"private subnets span {len(zones)} zone(s) ({', '.join(zones)}); at least {fmt(minimum)} are required")


min_zones = stack_policy(
    "min-availability-zones",
    "Private (node) subnets span at least `minZones` availability zones (3 in prod).",
    _min_zones, types=["aws:ec2/subnet:Subnet"], schema={"minZones": {"type": "integer", "minimum": 1, "default": 2}})


def _serving_workloads(resources: list[Res]) -> list[Res]:
    return [r for r in resources if r.type in WORKLOAD_TYPES and any(is_vllm(c) for _, _, c in all_containers(r, init=False))]


def _probes(r: Res, cfg: dict, report) -> None:
    if r.type == ECS_TASK:
        for c in ecs_containers(r):
            if is_vllm(c) and not c.get("healthCheck"):
                report(f"ECS task '{r.name}' serving container '{c.get('name')}' has no healthCheck")
        return
    for role, _, c in all_containers(r, init=False):
        if not is_vllm(c) or role == "worker":
            continue  # Ray workers of a LeaderWorkerSet serve no HTTP
        missing = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if not c.get(p)]
        if missing:
            report(f"{workload_label(r)} serving container '{c.get('name')}' lacks {', '.join(missing)} (CKV_K8S_8, CKV_K8S_9)")


serving_probes = resource_policy(
    "serving-probes",
    "Every vLLM serving container has startup (long budget for model loading), readiness and liveness probes; ECS "
    "serving containers have a healthCheck (Checkov CKV_K8S_8, CKV_K8S_9).",
    _probes, types=[*WORKLOAD_TYPES, ECS_TASK])


def _pdb(resources: list[Res], cfg: dict, report) -> None:
    pdbs = of_type(resources, PDB)
    for w in _serving_workloads(resources):
        ns = w.get("metadata", "namespace", default="default")
        labels = pod_labels(w)
        covered = False
        for p in pdbs:
            sel = p.get("spec", "selector", "matchLabels", default={}) or {}
            if p.get("metadata", "namespace", default="default") == ns and sel and isinstance(sel, dict) \
                    and all(labels.get(k) == v for k, v in sel.items()):
                covered = True
        if not covered:
            report(f"{workload_label(w)} has no PodDisruptionBudget selecting its pods", w.urn)


serving_pdb = stack_policy(
    "serving-pdb",
    "Every serving workload has a PodDisruptionBudget whose selector matches its pods.",
    _pdb, types=WORKLOAD_TYPES)

INTERRUPTION_EVENT = "EC2 Spot Instance Interruption Warning"


def _interruption_queue(resources: list[Res], cfg: dict, report) -> None:
    spot_pools = [p for p in gpu_pools(resources, {}) if p.res.type == NODEPOOL and "spot" in
                  [v for r in as_list(p.res.get("spec", "template", "spec", "requirements"))
                   if isinstance(r, dict) and r.get("key") == "karpenter.sh/capacity-type" for v in as_list(r.get("values"))]]
    if not spot_pools:
        return
    queues = of_type(resources, QUEUE)
    rules = [e for e in of_type(resources, EVENT_RULE)
             if isinstance(e.get("eventPattern"), str) and INTERRUPTION_EVENT in e.get("eventPattern")]
    if not queues or not rules:
        what = "SQS interruption queue" if not queues else f"EventBridge rule for '{INTERRUPTION_EVENT}'"
        report(f"{', '.join(p.label for p in spot_pools)} can launch spot GPUs but the stack has no {what} for Karpenter")


interruption_queue = stack_policy(
    "spot-interruption-queue",
    "Karpenter pools that can launch spot capacity come with the interruption SQS queue and the EventBridge rule "
    "for spot interruption warnings.",
    _interruption_queue, types=[NODEPOOL])


def _protected(r: Res, cfg: dict, report) -> None:
    if not r.protect:
        report(f"stateful resource {r.type} '{r.name}' is not protected (pulumi protect option)")


stateful_protected = resource_policy(
    "stateful-protected",
    "Stateful resources (adapter buckets, EKS and ECS clusters, KMS keys) carry the Pulumi `protect` option.",
    _protected, types=STATEFUL)


def _requests(r: Res, cfg: dict, report) -> None:
    for _, _, c in all_containers(r):
        req = get(c, "resources", "requests", default={})
        if req is UNKNOWN:
            continue
        missing = [k for k in ("cpu", "memory") if not (isinstance(req, dict) and req.get(k))]
        if missing:
            report(f"{workload_label(r)} container '{c.get('name')}' sets no {' or '.join(missing)} request "
                   f"(CKV_K8S_10, CKV_K8S_12)")


resource_requests = resource_policy(
    "resource-requests",
    "Every container requests cpu and memory (Checkov CKV_K8S_10, CKV_K8S_12; Trivy AVD-KSV-0015, AVD-KSV-0016).",
    _requests, types=WORKLOAD_TYPES)


def _tp_pp(argv: list[str]) -> int | None:
    try:
        return int(flag(argv, "--tensor-parallel-size") or 1) * int(flag(argv, "--pipeline-parallel-size") or 1)
    except ValueError:
        return None  # a shell variable: cannot judge


def _shm(r: Res, cfg: dict, report) -> None:
    if r.type == ECS_TASK:
        # ECS: Docker's 64 MB /dev/shm unless linuxParameters.sharedMemorySize (MiB) raises it.
        for c in ecs_containers(r):
            if not is_vllm(c) or (_tp_pp(container_args(c)) or 1) <= 1:
                continue
            size = get(c, "linuxParameters", "sharedMemorySize")
            if size is not UNKNOWN and not num(size):
                report(f"ECS task '{r.name}' container '{c.get('name')}' runs tensor/pipeline parallel without "
                       f"linuxParameters.sharedMemorySize (Docker's 64 MB /dev/shm); NCCL fails")
        return
    for role, spec in pod_specs(r):
        for c in spec.get("containers", []) or []:
            if not (isinstance(c, dict) and is_vllm(c)):
                continue
            if (_tp_pp(container_args(c)) or 1) <= 1:
                continue
            mem_vols = {v.get("name") for v in as_list(spec.get("volumes"))
                        if isinstance(v, dict) and get(v, "emptyDir", "medium") == "Memory"}
            ok = any(isinstance(m, dict) and m.get("mountPath") == "/dev/shm" and m.get("name") in mem_vols
                     for m in as_list(c.get("volumeMounts")))
            if not ok:
                report(f"{workload_label(r)} container '{c.get('name')}' runs tensor/pipeline parallel without a "
                       f"memory-backed /dev/shm (emptyDir medium: Memory); NCCL fails")


vllm_shm = resource_policy(
    "vllm-shared-memory",
    "vLLM servers with tensor or pipeline parallelism mount a memory-backed /dev/shm (ECS: linuxParameters."
    "sharedMemorySize).",
    _shm, types=[*WORKLOAD_TYPES, ECS_TASK])


def _lws_restart(r: Res, cfg: dict, report) -> None:
    policy = r.get("spec", "leaderWorkerTemplate", "restartPolicy")
    if policy not in ("RecreateGroupOnPodRestart", UNKNOWN):
        report(f"{workload_label(r)} has restartPolicy {policy or '(default None)'}; a multi-node vLLM group must use "
               f"RecreateGroupOnPodRestart")


lws_restart = resource_policy(
    "lws-recreate-group-on-restart",
    "LeaderWorkerSets recreate the whole group when a pod restarts (a Ray/NCCL group cannot heal one member).",
    _lws_restart, types=[LWS])


def _grace(r: Res, cfg: dict, report) -> None:
    minimum = cfg.get("minSeconds", 60)
    for _, spec in pod_specs(r):
        if not any(isinstance(c, dict) and is_vllm(c) for c in spec.get("containers", []) or []):
            continue
        grace = num(spec.get("terminationGracePeriodSeconds"))
        if spec.get("terminationGracePeriodSeconds") is UNKNOWN:
            continue
        if (grace if grace is not None else 30) < minimum:
            report(f"{workload_label(r)} gives serving pods {fmt(grace if grace is not None else 30)} s to drain; "
                   f"at least {fmt(minimum)} s")
            return


graceful_shutdown = resource_policy(
    "serving-graceful-shutdown",
    "Serving pods get terminationGracePeriodSeconds of at least minSeconds to drain in-flight requests.",
    _grace, types=WORKLOAD_TYPES, schema={"minSeconds": {"type": "integer", "minimum": 0, "default": 60}})


def _circuit_breaker(r: Res, cfg: dict, report) -> None:
    cb = r.get("deploymentCircuitBreaker")
    if cb is UNKNOWN:
        return
    if not (isinstance(cb, dict) and cb.get("enable") is True and cb.get("rollback") is True):
        report(f"ECS service '{r.name}' has no deployment circuit breaker with rollback")


ecs_circuit_breaker = resource_policy(
    "ecs-deployment-circuit-breaker",
    "ECS services roll back failed deployments (deploymentCircuitBreaker enable + rollback).",
    _circuit_breaker, types=[ECS_SERVICE])


def _consolidation_policy(r: Res, cfg: dict, report) -> None:
    if not any(p.res is r for p in gpu_pools([r], {})):
        return
    policy = r.get("spec", "disruption", "consolidationPolicy")
    if policy not in ("WhenEmpty", UNKNOWN):
        report(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}' consolidates {policy or 'WhenEmptyOrUnderutilized (default)'}; "
               f"use WhenEmpty so warm model replicas are not evicted")


consolidation_policy = resource_policy(
    "gpu-nodepool-when-empty",
    "GPU NodePools consolidate only empty nodes (WhenEmpty), so loaded replicas are not evicted to repack.",
    _consolidation_policy, types=[NODEPOOL], level=EnforcementLevel.ADVISORY)

POLICIES = [min_zones, serving_probes, serving_pdb, interruption_queue, stateful_protected, resource_requests, vllm_shm,
            lws_restart, graceful_shutdown, ecs_circuit_breaker, consolidation_policy]
