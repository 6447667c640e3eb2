"""Reliability guardrails: zones, probes, disruption budgets, replicas, spot fallback, node images,
ECS start-up grace, limits and logs, EKS version support, spot interruptions, protection, requests."""

from __future__ import annotations

import datetime as _dt
import re

from pulumi_policy import EnforcementLevel

from rules.common import (EC2NODECLASS, LWS, NODEPOOL, Res, UNKNOWN, WORKLOAD_TYPES, as_list, container_args,
                          container_paths, first_unknown, flag, fmt, get, gpu_pools, is_serving_workload, num, of_type,
                          pod_labels, pod_templates, pool_unknowns, resource_policy, serving_containers,
                          stack_policy, unknown_in, workload_label, workload_unknown)
from rules.ecs import ECS_SERVICE, ECS_TASK, ecs_containers_or_unjudged, ecs_task_label, is_ecs_server

PDB = "kubernetes:policy/v1:PodDisruptionBudget"
QUEUE = "aws:sqs/queue:Queue"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
STATEFUL = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:eks/cluster:Cluster", "eks:index:Cluster",
            "aws:ecs/cluster:Cluster", "aws:kms/key:Key")
SUBNET = "aws:ec2/subnet:Subnet"
NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"
ROUTE_ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HPAS = ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:autoscaling/v1:HorizontalPodAutoscaler")
APP_SCALING_TARGET = "aws:appautoscaling/target:Target"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def _is_private_subnet(s: Res) -> bool:
    """Node subnets: no public IPs on launch and not tagged for internet-facing load balancers."""
    tags = s.get("tags", default={}) or {}
    return s.get("mapPublicIpOnLaunch") is not True and not (isinstance(tags, dict) and tags.get("kubernetes.io/role/elb") == "1")


def subnet_index(resources: list[Res]) -> dict[str, Res]:
    """Subnet resources by URN and by the id values other inputs carry (route table associations and NAT
    gateways name a subnet by id and depend on it, which ties the two)."""
    out: dict[str, Res] = {}
    subnets = {s.urn: s for s in of_type(resources, SUBNET)}
    out.update(subnets)
    for r in resources:
        for key in ("subnetId",):
            sid = r.get(key)
            for urn in r.prop_deps.get(key, []):
                if urn in subnets and isinstance(sid, str):
                    out[sid] = subnets[urn]
    return out


def subnets_of(r: Res, key: str, ids: list, index: dict[str, Res]) -> tuple[list[Res], bool]:
    """(subnet resources a compute resource names in `key`, whether some could not be resolved)."""
    found = {index[u].urn: index[u] for u in r.prop_deps.get(key, []) if u in index and index[u].type == SUBNET}
    unresolved = False
    for sid in ids:
        if sid is UNKNOWN:
            unresolved = unresolved or not found
        elif isinstance(sid, str) and sid in index:
            found[index[sid].urn] = index[sid]
    return list(found.values()), unresolved


def _min_zones(resources: list[Res], cfg: dict, report) -> None:
    minimum = int(cfg.get("minZones", 2))  # policy config numbers arrive as floats
    subnets = of_type(resources, SUBNET)
    unknown = next((s for s in subnets if s.get("mapPublicIpOnLaunch") is UNKNOWN or s.get("tags") is UNKNOWN), None)
    if unknown is not None:
        report.unjudged(f"subnet '{unknown.name}'", "mapPublicIpOnLaunch" if unknown.get("mapPublicIpOnLaunch") is UNKNOWN
                        else "tags", unknown.urn)
        return
    private = [s for s in subnets if _is_private_subnet(s)]
    if subnets and not private:
        report(f"the stack has {len(subnets)} subnet(s) but none is private (mapPublicIpOnLaunch false, not tagged "
               f"kubernetes.io/role/elb); GPU nodes need private subnets in at least {fmt(minimum)} zones")
        return
    unknown = next((s for s in private if s.get("availabilityZone") is UNKNOWN), None)
    if unknown is not None:
        report.unjudged(f"subnet '{unknown.name}'", "availabilityZone", unknown.urn)
        return
    zones = sorted({z for s in private if isinstance(z := s.get("availabilityZone"), str)})
    if private and len(zones) < minimum:
        report(f"private subnets span {len(zones)} zone(s) ({', '.join(zones)}); at least {fmt(minimum)} are required")
        return
    # Each node group and Auto Scaling group must itself spread: a group whose subnets sit in one zone
    # loses all its nodes with that zone, however many zones the VPC has.
    index = subnet_index(resources)
    for r in of_type(resources, NODEGROUP, ASG):
        if _in_cluster_placement_group(resources, r):
            continue  # a cluster placement group lives in one zone (EC2 user guide, "Placement strategies"): EFA groups
        key = "subnetIds" if r.type == NODEGROUP else "vpcZoneIdentifiers"
        ids = r.get(key)
        if ids is UNKNOWN:
            report.unjudged(_group_label(r), key, r.urn)
            continue
        found, unresolved = subnets_of(r, key, as_list(ids), index)
        if unresolved:
            report.unjudged(_group_label(r), key, r.urn)
            continue
        if not found:
            continue  # subnets of another stack: not judged here
        group_zones = {s.get("availabilityZone") for s in found}
        if UNKNOWN in group_zones:
            report.unjudged(_group_label(r), f"{key} (availabilityZone of its subnets)", r.urn)
        elif len(group_zones) < minimum:
            report(f"{_group_label(r)} places its nodes in {len(group_zones)} zone(s) ({', '.join(sorted(group_zones))}); "
                   f"at least {fmt(minimum)} are required", r.urn)


def _in_cluster_placement_group(resources: list[Res], r: Res) -> bool:
    """Whether a node group's or ASG's launch template places its instances in a `cluster` placement group."""
    groups = of_type(resources, "aws:ec2/placementGroup:PlacementGroup")
    keys = ("launchTemplate", "mixedInstancesPolicy")
    for lt in of_type(resources, LAUNCH_TEMPLATE):
        if not any(lt.urn in r.prop_deps.get(k, []) for k in keys):
            continue
        name = lt.get("placement", "groupName")
        for g in groups:
            if (g.urn in lt.prop_deps.get("placement", []) or (isinstance(name, str) and name == g.get("name"))) \
                    and g.get("strategy") == "cluster":
                return True
    return False


def _group_label(r: Res) -> str:
    if r.type == NODEGROUP:
        name = r.get("nodeGroupName", default=r.name)
        return f"node group '{name if isinstance(name, str) else r.name}'"
    return f"auto scaling group '{r.name}'"


min_zones = stack_policy(
    "min-availability-zones",
    # The subnets of every node group and Auto Scaling group must span minZones too (issue 15).
    "Private (node) subnets span at least `minZones` availability zones (3 in prod).",
    _min_zones, types=[SUBNET, NODEGROUP, ASG], schema={"minZones": {"type": "integer", "minimum": 1, "default": 2}})


def _serving_workloads(resources: list[Res]) -> list[Res]:
    return [r for r in resources if r.type in WORKLOAD_TYPES and is_serving_workload(r)]


def served_model(r: Res, c: dict) -> str:
    """The model a server serves: --served-model-name, else the llmserving.io/model label, else the resource name."""
    name = flag(container_args(c), "--served-model-name")
    if name:
        return name
    labels = pod_labels(r) if r.type in WORKLOAD_TYPES else {}
    return labels.get("llmserving.io/model") or r.get("metadata", "name", default=r.name)


def _min_startup(cfg: dict, model: str) -> float:
    table = cfg.get("minStartupSeconds") or {}
    return num(table.get(model)) or num(cfg.get("defaultMinStartupSeconds", 600)) or 600


def _probe_budget(p: dict) -> float | None:
    """Seconds a startup probe lets a container start: initialDelay + failureThreshold x periodSeconds
    (Kubernetes defaults 0, 3 and 10: core/v1 Probe)."""
    if first_unknown(p) is not None:
        return None
    return (num(p.get("initialDelaySeconds")) or 0) + (num(p.get("failureThreshold")) or 3) * (num(p.get("periodSeconds")) or 10)


def _probes(r: Res, cfg: dict, report) -> None:
    if r.type == ECS_TASK:
        for i, c in enumerate(ecs_containers_or_unjudged(r, report)):
            if not is_ecs_server(c):
                continue
            if c.get("healthCheck") is UNKNOWN:
                report.unjudged(f"ECS task '{r.name}' serving container '{c.get('name')}'", f"containerDefinitions[{i}].healthCheck")
            elif not c.get("healthCheck"):
                report(f"ECS task '{r.name}' serving container '{c.get('name')}' has no healthCheck")
        return
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    for role, _, c, path in serving_containers(r):
        if role == "worker":
            continue  # Ray workers of a LeaderWorkerSet serve no HTTP
        label = f"{workload_label(r)} serving container '{c.get('name')}'"
        unknown = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if c.get(p) is UNKNOWN]
        missing = [p for p in ("startupProbe", "readinessProbe", "livenessProbe") if not c.get(p) and p not in unknown]
        if missing:
            report(f"{label} lacks {', '.join(missing)} (CKV_K8S_8, CKV_K8S_9)")
        elif unknown:
            report.unjudged(label, f"{path}.{unknown[0]}")
        # The startup probe must outlast the model's load (policy config minStartupSeconds per model, from the
        # serving catalog), or the kubelet kills a pod that is still loading weights.
        probe = c.get("startupProbe")
        if isinstance(probe, dict):
            budget = _probe_budget(probe)
            model = served_model(r, c)
            need = _min_startup(cfg, model)
            if budget is None:
                report.unjudged(label, first_unknown(probe, f"{path}.startupProbe"))
            elif budget < need:
                report(f"{label} gives model '{model}' {fmt(budget)} s to start (startupProbe failureThreshold x "
                       f"periodSeconds); loading it takes up to {fmt(need)} s, so the kubelet would kill it while loading")


serving_probes = resource_policy(
    "serving-probes",
    # The startup budget is judged against the model's load time (minStartupSeconds, issue 15).
    "Every vLLM serving container has startup (long budget for model loading), readiness and liveness probes; ECS "
    "serving containers have a healthCheck (Checkov CKV_K8S_8, CKV_K8S_9).",
    _probes, types=[*WORKLOAD_TYPES, ECS_TASK],
    schema={"minStartupSeconds": {"type": "object", "additionalProperties": {"type": "number"}, "default": {}},
            "defaultMinStartupSeconds": {"type": "number", "minimum": 0, "default": 600}})


def _disruption_allows_all(spec: dict) -> str | None:
    """Why a PDB spec protects nothing: maxUnavailable 100% (or unset minAvailable 0 / 0%)."""
    mu, ma = spec.get("maxUnavailable"), spec.get("minAvailable")
    if isinstance(mu, str) and mu.endswith("%") and (num(mu[:-1]) or 0) >= 100:
        return f"maxUnavailable {mu}"
    if ma is not None and (ma in (0, 0.0, "0", "0%")):
        return f"minAvailable {fmt(ma) if isinstance(ma, (int, float)) else ma}"
    return None


def _pdb(resources: list[Res], cfg: dict, report) -> None:
    pdbs = of_type(resources, PDB)
    for w in _serving_workloads(resources):
        ns = w.get("metadata", "namespace", default="default")
        labels = pod_labels(w)
        covered, useless, unsure = False, [], None
        for p in pdbs:
            sel = p.get("spec", "selector", "matchLabels", default={}) or {}
            if first_unknown(sel) is not None or p.get("metadata", "namespace") is UNKNOWN:
                unsure = p
                continue
            if p.get("metadata", "namespace", default="default") == ns and sel and isinstance(sel, dict) \
                    and all(labels.get(k) == v for k, v in sel.items()):
                spec = p.get("spec", default={})
                why = _disruption_allows_all(spec) if isinstance(spec, dict) else None
                if first_unknown({k: spec.get(k) for k in ("maxUnavailable", "minAvailable")}) is not None:
                    unsure = p
                elif why:
                    useless.append((p, why))
                else:
                    covered = True
        if covered:
            continue
        if useless:
            p, why = useless[0]
            report(f"{workload_label(w)}: PodDisruptionBudget '{p.get('metadata', 'name', default=p.name)}' allows {why}, "
                   f"so a node drain may evict every replica at once", w.urn)
        elif unsure is not None:
            report.unjudged(workload_label(w), f"spec of PodDisruptionBudget '{unsure.name}'", w.urn)
        else:
            report(f"{workload_label(w)} has no PodDisruptionBudget selecting its pods", w.urn)


serving_pdb = stack_policy(
    "serving-pdb",
    # A PDB allowing maxUnavailable 100% or minAvailable 0 protects nothing and does not count (issue 15).
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
    patterns = [e for e in of_type(resources, EVENT_RULE)]
    rules = [e for e in patterns if isinstance(e.get("eventPattern"), str) and INTERRUPTION_EVENT in e.get("eventPattern")]
    if not queues or not rules:
        unknown = next((e for e in patterns if e.get("eventPattern") is UNKNOWN), None)
        if queues and unknown is not None:
            report.unjudged(", ".join(p.label for p in spot_pools), f"eventPattern of EventBridge rule '{unknown.name}'")
            return
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
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    for _, _, c, path in container_paths(r):
        req = get(c, "resources", "requests", default={})
        if req is UNKNOWN or c.get("resources") is UNKNOWN:
            report.unjudged(f"{workload_label(r)} container '{c.get('name')}'", f"{path}.resources")
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
        for i, c in enumerate(ecs_containers_or_unjudged(r, report)):
            if not is_ecs_server(c) or (_tp_pp(container_args(c)) or 1) <= 1:
                continue
            size = get(c, "linuxParameters", "sharedMemorySize")
            where = unknown_in(c, ("linuxParameters", "sharedMemorySize"), f"containerDefinitions[{i}]")
            if where:
                report.unjudged(f"{ecs_task_label(r)} container '{c.get('name')}'", where)
            elif not num(size):
                report(f"ECS task '{r.name}' container '{c.get('name')}' runs tensor/pipeline parallel without "
                       f"linuxParameters.sharedMemorySize (Docker's 64 MB /dev/shm); NCCL fails")
        return
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    for role, spec, c, path in serving_containers(r):
        if any(c.get(k) is UNKNOWN for k in ("command", "args")):
            report.unjudged(workload_label(r), f"{path}.args")
            continue
        if (_tp_pp(container_args(c)) or 1) <= 1:
            continue
        if spec.get("volumes") is UNKNOWN or c.get("volumeMounts") is UNKNOWN:
            report.unjudged(workload_label(r), f"{path}.volumeMounts" if c.get("volumeMounts") is UNKNOWN else "volumes")
            continue
        mem_vols = {v.get("name") for v in as_list(spec.get("volumes"))
                    if isinstance(v, dict) and isinstance(v.get("name"), str) and get(v, "emptyDir", "medium") == "Memory"}
        ok = any(isinstance(m, dict) and m.get("mountPath") == "/dev/shm" and isinstance(m.get("name"), str)
                 and m.get("name") in mem_vols for m in as_list(c.get("volumeMounts")))
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
    if r.unknown_at("spec", "leaderWorkerTemplate", "restartPolicy"):
        report.unjudged(workload_label(r), r.unknown_at("spec", "leaderWorkerTemplate", "restartPolicy"))
    elif policy != "RecreateGroupOnPodRestart":
        report(f"{workload_label(r)} has restartPolicy {policy or '(default None)'}; a multi-node vLLM group must use "
               f"RecreateGroupOnPodRestart")


lws_restart = resource_policy(
    "lws-recreate-group-on-restart",
    "LeaderWorkerSets recreate the whole group when a pod restarts (a Ray/NCCL group cannot heal one member).",
    _lws_restart, types=[LWS])


def _grace(r: Res, cfg: dict, report) -> None:
    minimum = cfg.get("minSeconds", 60)
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    serving_roles = {role for role, _, _, _ in serving_containers(r)}
    for role, spec, _, path in pod_templates(r):
        if role not in serving_roles:
            continue
        if spec.get("terminationGracePeriodSeconds") is UNKNOWN:
            report.unjudged(workload_label(r), ".".join(path) + ".terminationGracePeriodSeconds")
            continue
        grace = num(spec.get("terminationGracePeriodSeconds"))
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
    if cb is UNKNOWN or (isinstance(cb, dict) and first_unknown(cb) is not None):
        report.unjudged(f"ECS service '{r.name}'", first_unknown(cb, "deploymentCircuitBreaker"))
        return
    if not (isinstance(cb, dict) and cb.get("enable") is True and cb.get("rollback") is True):
        report(f"ECS service '{r.name}' has no deployment circuit breaker with rollback")


ecs_circuit_breaker = resource_policy(
    "ecs-deployment-circuit-breaker",
    "ECS services roll back failed deployments (deploymentCircuitBreaker enable + rollback).",
    _circuit_breaker, types=[ECS_SERVICE])


def _consolidation_policy(r: Res, cfg: dict, report) -> None:
    if r.unknown_at("spec", "template", "spec", "requirements"):
        report.unjudged(f"NodePool '{r.name}'", r.unknown_at("spec", "template", "spec", "requirements"))
        return
    if not any(p.res is r for p in gpu_pools([r], {})):
        return
    policy = r.get("spec", "disruption", "consolidationPolicy")
    if r.unknown_at("spec", "disruption", "consolidationPolicy"):
        report.unjudged(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}'",
                        r.unknown_at("spec", "disruption", "consolidationPolicy"))
    elif policy != "WhenEmpty":
        report(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}' consolidates {policy or 'WhenEmptyOrUnderutilized (default)'}; "
               f"use WhenEmpty so warm model replicas are not evicted")


consolidation_policy = resource_policy(
    "gpu-nodepool-when-empty",
    "GPU NodePools consolidate only empty nodes (WhenEmpty), so loaded replicas are not evicted to repack.",
    _consolidation_policy, types=[NODEPOOL], level=EnforcementLevel.ADVISORY)


# --- replicas, spot fallback, disruption, node images (issue 15) ------------------------

def _scalers_for(resources: list[Res], w: Res) -> list[Res]:
    name = w.get("metadata", "name")
    ns = w.get("metadata", "namespace", default="default")
    kind = w.get("kind")
    out = []
    for s in of_type(resources, SCALED_OBJECT, *HPAS):
        ref = s.get("spec", "scaleTargetRef", default={})
        if isinstance(ref, dict) and ref.get("name") == name and s.get("metadata", "namespace", default="default") == ns \
                and ref.get("kind", "Deployment") == kind:
            out.append(s)
    return out


def _min_replicas(resources: list[Res], cfg: dict, report) -> None:
    minimum = num(cfg.get("minReplicas", 1)) or 1
    if minimum <= 1:
        return
    for w in _serving_workloads(resources):
        label = workload_label(w)
        scalers = _scalers_for(resources, w)
        if scalers:
            # The autoscaler owns the count: its floor is the floor (KEDA minReplicaCount defaults to 0,
            # an HPA's minReplicas to 1).
            for s in scalers:
                key = "minReplicas" if s.type in HPAS else "minReplicaCount"
                floor = s.get("spec", key)
                if floor is UNKNOWN:
                    report.unjudged(label, f"spec.{key} of '{s.name}'", w.urn)
                elif (num(floor) if num(floor) is not None else (1 if s.type in HPAS else 0)) < minimum:
                    report(f"{label} can scale down to {fmt(num(floor) or (1 if s.type in HPAS else 0))} replica(s) "
                           f"({s.type.rsplit(':', 1)[-1]} '{s.get('metadata', 'name', default=s.name)}' {key}); this stack "
                           f"serves every model from at least {fmt(minimum)}", w.urn)
            continue
        replicas = w.get("spec", "replicas")
        if replicas is UNKNOWN:
            report.unjudged(label, "spec.replicas", w.urn)
        elif (num(replicas) if num(replicas) is not None else 1) < minimum:
            report(f"{label} runs {fmt(num(replicas) if num(replicas) is not None else 1)} replica(s); this stack serves "
                   f"every model from at least {fmt(minimum)} (one node drain or crash takes the model offline)", w.urn)
    targets = of_type(resources, APP_SCALING_TARGET)
    for svc in of_type(resources, ECS_SERVICE):
        name = svc.get("name")
        target = next((t for t in targets if isinstance(t.get("resourceId"), str) and isinstance(name, str)
                       and t.get("resourceId").endswith(f"/{name}")), None)
        floor = target.get("minCapacity") if target is not None else svc.get("desiredCount")
        key = "minCapacity of the scaling target" if target is not None else "desiredCount"
        if floor is UNKNOWN:
            report.unjudged(f"ECS service '{svc.name}'", key, svc.urn)
        elif (num(floor) or 0) < minimum:
            report(f"ECS service '{svc.name}' can run {fmt(num(floor) or 0)} task(s) ({key}); this stack serves every "
                   f"model from at least {fmt(minimum)}", svc.urn)


min_replicas = stack_policy(
    "serving-min-replicas",
    "Where required (prod), every model is served by at least minReplicas replicas: the Deployment/LeaderWorkerSet "
    "count, or the floor of the KEDA ScaledObject / HPA that owns it, or the ECS service's scaling minimum.",
    _min_replicas, types=[*WORKLOAD_TYPES, ECS_SERVICE],
    schema={"minReplicas": {"type": "integer", "minimum": 1, "default": 1}})


def _pool_key(r: Res) -> str | None:
    """The llmserving.io/pool label a NodePool's nodes carry (two NodePools with one label are one pool)."""
    return r.get("spec", "template", "metadata", "labels", "llmserving.io/pool")


def _on_demand_fallback(resources: list[Res], cfg: dict, report) -> None:
    if not cfg.get("required", False):
        return
    pools = gpu_pools(resources, {})
    for p in pools:
        unknown = pool_unknowns(p.res)
        if p.res.type == NODEGROUP and p.res.get("capacityType") is UNKNOWN:
            unknown.append("capacityType")
        if unknown:
            report.unjudged(p.label, unknown[0], p.res.urn)
            continue
        if p.capacity != "spot":
            continue
        if p.res.type == NODEPOOL:
            # Karpenter falls back through weighted NodePools: another NodePool for the same pool label that
            # can launch on-demand is the fallback (FACTS.md: two NodePools with weight).
            key = _pool_key(p.res)
            if key and any(q.res is not p.res and q.res.type == NODEPOOL and _pool_key(q.res) == key and q.capacity != "spot"
                           for q in pools):
                continue
        report(f"{p.label} runs only on spot capacity; a prod pool needs an on-demand fallback (capacity type "
               f"spot and on-demand, or an on-demand NodePool/base capacity beside it) so a spot drought cannot take "
               f"every replica away", p.res.urn)


on_demand_fallback = stack_policy(
    "gpu-pool-on-demand-fallback",
    "Where required (prod), no GPU pool is spot-only: it can also launch on-demand capacity, or an on-demand pool "
    "for the same nodes stands beside it.",
    _on_demand_fallback, types=[NODEGROUP, ASG, NODEPOOL, "aws:ec2/instance:Instance"],
    schema={"required": {"type": "boolean", "default": False}})


def _disruption_budget(r: Res, cfg: dict, report) -> None:
    maximum = num(cfg.get("maxPercent", 20)) or 20
    budgets = r.get("spec", "disruption", "budgets")
    name = r.get("metadata", "name", default=r.name)
    if budgets is UNKNOWN or first_unknown(budgets) is not None:
        report.unjudged(f"NodePool '{name}'", first_unknown(budgets, "spec.disruption.budgets"))
        return
    # No budgets: Karpenter's default is nodes 10% (FACTS.md; karpenter.sh_nodepools.yaml default).
    for i, b in enumerate(as_list(budgets)):
        if not isinstance(b, dict) or b.get("schedule"):
            continue  # a scheduled window (e.g. a maintenance hour) is a deliberate choice
        nodes = str(b.get("nodes", "10%"))
        if nodes.endswith("%") and (num(nodes[:-1]) or 0) > maximum:
            reasons = f" for {', '.join(b['reasons'])}" if b.get("reasons") else ""
            report(f"NodePool '{name}' lets Karpenter disrupt {nodes} of its nodes at once{reasons} "
                   f"(spec.disruption.budgets[{i}]); at most {fmt(maximum)}%, or every replica on it can go together")


disruption_budget = resource_policy(
    "nodepool-disruption-budget",
    "Karpenter NodePools disrupt at most maxPercent of their nodes at once (spec.disruption.budgets, outside "
    "scheduled windows), never 100%.",
    _disruption_budget, types=[NODEPOOL], schema={"maxPercent": {"type": "number", "minimum": 0, "maximum": 100,
                                                                 "default": 20}})


def _ami_pinned(r: Res, cfg: dict, report) -> None:
    if r.type == EC2NODECLASS:
        terms = r.get("spec", "amiSelectorTerms")
        if terms is UNKNOWN or first_unknown(terms) is not None:
            report.unjudged(f"EC2NodeClass '{r.name}'", first_unknown(terms, "spec.amiSelectorTerms"))
            return
        for i, t in enumerate(as_list(terms)):
            alias = t.get("alias") if isinstance(t, dict) else None
            # alias <family>@latest follows every new AMI release: nodes drift to an untested image
            # (Karpenter docs, EC2NodeClass amiSelectorTerms alias: pin a version in production).
            if isinstance(alias, str) and alias.endswith("@latest"):
                report(f"EC2NodeClass '{r.name}' selects AMI alias {alias} (spec.amiSelectorTerms[{i}]); pin a "
                       f"release such as {alias.split('@')[0]}@v20251103 so nodes do not drift to untested images")
        return
    image = r.get("imageId")
    if image is UNKNOWN:
        return  # an image id from an output (an SSM lookup at preview) is a resolved id: pinned
    if isinstance(image, str) and image.startswith("resolve:ssm:") and "/recommended" in image:
        report(f"launch template '{r.name}' resolves its AMI at launch from {image}; every instance may boot a "
               f"different image: resolve the parameter once (at deploy) or pin the AMI id")


ami_pinned = resource_policy(
    "node-ami-pinned",
    "Node images are pinned: EC2NodeClasses never select an AMI alias @latest, launch templates never resolve "
    "a 'recommended' SSM parameter at launch.",
    _ami_pinned, types=[EC2NODECLASS, LAUNCH_TEMPLATE])


def _task_of(resources: list[Res], svc: Res) -> Res | None:
    for t in of_type(resources, ECS_TASK):
        if t.urn in svc.prop_deps.get("taskDefinition", []):
            return t
    return None


def _ecs_grace(resources: list[Res], cfg: dict, report) -> None:
    for svc in of_type(resources, ECS_SERVICE):
        task = _task_of(resources, svc)
        if task is None:
            continue
        label = f"ECS service '{svc.name}'"
        defs = ecs_containers_or_unjudged(task, report)
        servers = [c for c in defs if is_ecs_server(c)]
        if not servers:
            continue
        if svc.get("loadBalancers") is UNKNOWN:
            report.unjudged(label, "loadBalancers", svc.urn)
            continue
        grace = svc.get("healthCheckGracePeriodSeconds")
        if grace is UNKNOWN:
            report.unjudged(label, "healthCheckGracePeriodSeconds", svc.urn)
            continue
        model = flag(container_args(servers[0]), "--served-model-name") or svc.get("name") or svc.name
        need = _min_startup(cfg, model)
        # ECS ignores unhealthy ELB and container health checks for this long after a task starts
        # (ECS API CreateService healthCheckGracePeriodSeconds); default 0.
        if (num(grace) or 0) < need:
            report(f"{label} ignores failed health checks for {fmt(num(grace) or 0)} s after a task starts "
                   f"(healthCheckGracePeriodSeconds); model '{model}' takes up to {fmt(need)} s to load, so ECS would "
                   f"replace tasks that are still loading", svc.urn)


ecs_grace = stack_policy(
    "ecs-health-check-grace",
    "ECS services running vLLM ignore failed health checks for at least the model's start-up budget "
    "(healthCheckGracePeriodSeconds >= minStartupSeconds of the model).",
    _ecs_grace, types=[ECS_SERVICE],
    schema={"minStartupSeconds": {"type": "object", "additionalProperties": {"type": "number"}, "default": {}},
            "defaultMinStartupSeconds": {"type": "number", "minimum": 0, "default": 600}})


def _memory_limits(r: Res, cfg: dict, report) -> None:
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    for _, _, c, path in container_paths(r):
        found = unknown_in(c, ("resources", "limits", "memory"), path)
        if found:
            report.unjudged(f"{workload_label(r)} container '{c.get('name')}'", found)
        elif not get(c, "resources", "limits", "memory"):
            report(f"{workload_label(r)} container '{c.get('name')}' sets no memory limit; a leak or a large batch "
                   f"can take the node's memory from its neighbours (CKV_K8S_13)")


memory_limits = resource_policy(
    "container-memory-limits",
    "Every Kubernetes container has a memory limit (resources.limits.memory) (Checkov CKV_K8S_13; Trivy AVD-KSV-0018).",
    _memory_limits, types=WORKLOAD_TYPES)


def _ecs_memory(r: Res, cfg: dict, report) -> None:
    task_memory = r.get("memory")
    for c in ecs_containers_or_unjudged(r, report):
        if num(c.get("memory")):
            continue
        if task_memory is UNKNOWN:
            report.unjudged(f"{ecs_task_label(r)} container '{c.get('name')}'", "memory (of the task)")
        elif not num(task_memory):
            # memoryReservation is a soft limit: without `memory` (or a task-level memory) the container may take
            # all of the instance's memory (ECS API ContainerDefinition memory / memoryReservation).
            report(f"{ecs_task_label(r)} container '{c.get('name')}' has no hard memory limit (memory, or the task's "
                   f"memory); memoryReservation alone lets it take the whole instance")


ecs_memory_limits = resource_policy(
    "ecs-container-memory-limits",
    "Every ECS container has a hard memory limit (`memory` on the container or the task; memoryReservation is only "
    "a soft limit).",
    _ecs_memory, types=[ECS_TASK])


def _log_config(r: Res, cfg: dict, report) -> None:
    for i, c in enumerate(ecs_containers_or_unjudged(r, report)):
        lc = c.get("logConfiguration")
        if lc is UNKNOWN or (isinstance(lc, dict) and lc.get("logDriver") is UNKNOWN):
            report.unjudged(f"{ecs_task_label(r)} container '{c.get('name')}'", f"containerDefinitions[{i}].logConfiguration")
        elif not (isinstance(lc, dict) and lc.get("logDriver")):
            report(f"{ecs_task_label(r)} container '{c.get('name')}' has no logConfiguration; its output is lost when "
                   f"the task stops (use the awslogs driver)")


ecs_log_config = resource_policy(
    "ecs-log-configuration",
    "Every ECS container sends its logs somewhere (logConfiguration with a log driver, e.g. awslogs).",
    _log_config, types=[ECS_TASK])


# Amazon EKS Kubernetes release calendar: (EKS release, end of standard support, end of extended support).
# Source: awsdocs/amazon-eks-user-guide latest/ug/versioning/kubernetes-versions.adoc (commit 01385604,
# "Amazon EKS Kubernetes release calendar", read 2026-12) for 1.29-1.34; 1.35 from endoflife.date/amazon-eks
# (read 2026-12; EKS release 2026-01-27/28, standard support 14 months). Dates are UTC.
EKS_VERSIONS = {
    "1.29": ("2024-01-23", "2025-03-23", "2026-03-23"),
    "1.30": ("2024-05-23", "2025-07-23", "2026-07-23"),
    "1.31": ("2024-09-26", "2025-11-26", "2026-11-26"),
    "1.32": ("2025-01-23", "2026-03-23", "2027-03-23"),
    "1.33": ("2025-05-29", "2026-07-29", "2027-07-29"),
    "1.34": ("2025-10-02", "2026-12-02", "2027-12-02"),
    "1.35": ("2026-01-27", "2027-03-27", "2028-03-27"),
}
EKS_TABLE_AS_OF = "2026-12-01"


def _minor(v: str) -> tuple[int, int] | None:
    m = re.match(r"^(\d+)\.(\d+)", v)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _eks_version(r: Res, cfg: dict, report) -> None:
    version = r.get("version")
    label = f"EKS cluster '{r.name}'"
    if version is UNKNOWN:
        report.unjudged(label, "version")
        return
    if not isinstance(version, str):
        return  # unset: EKS creates the cluster at its current default version
    today = cfg.get("asOf") or _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    row = EKS_VERSIONS.get(".".join(map(str, _minor(version) or ())))
    if row is None:
        known = sorted(EKS_VERSIONS, key=lambda v: _minor(v) or (0, 0))
        if (_minor(version) or (0, 0)) > (_minor(known[-1]) or (0, 0)):
            return  # newer than the table: within standard support
        report(f"{label} runs Kubernetes {version}, older than every version in EKS's release calendar "
               f"({known[0]}-{known[-1]}): past the end of extended support")
        return
    _, standard_end, extended_end = row
    if today >= extended_end:
        report(f"{label} runs Kubernetes {version}, past the end of EKS extended support on {extended_end}: EKS "
               f"upgrades the control plane on its own schedule")
    elif today >= standard_end:
        report(f"{label} runs Kubernetes {version}, past the end of EKS standard support on {standard_end} "
               f"(extended support until {extended_end} bills extra per cluster-hour); upgrade to a version in "
               f"standard support")


eks_version = resource_policy(
    "eks-version-supported",
    "EKS clusters run a Kubernetes version within EKS standard support (release calendar in the rule; `asOf` "
    "overrides today's date).",
    _eks_version, types=["aws:eks/cluster:Cluster", "eks:index:Cluster"],
    schema={"asOf": {"type": "string", "default": ""}})

POLICIES = [min_zones, serving_probes, serving_pdb, interruption_queue, stateful_protected, resource_requests, vllm_shm,
            lws_restart, graceful_shutdown, ecs_circuit_breaker, consolidation_policy, min_replicas, on_demand_fallback,
            disruption_budget, ami_pinned, ecs_grace, memory_limits, ecs_memory_limits, ecs_log_config,
            eks_version]
