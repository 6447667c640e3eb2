"""GPU guardrails: which GPUs a stack may run, how many, and whether pods fit them.

GPU capacity is recognised in the resources a real preview shows: EKS
managed node groups, Auto Scaling groups (ECS) and their launch templates,
Karpenter NodePools (a NodePool's `spec.limits["nvidia.com/gpu"]` is its
maximum; it is GPU capacity when its requirements admit a GPU family, by
instance type, family, category or NotIn) and standalone EC2 instances.
Pools at their maximum size are what the limits judge; a pool whose size or
types are unknown in a preview is reported as not judged.
"""

from __future__ import annotations

from rules.common import (EC2_INSTANCE, GPU_POOL_TYPES, GPU_RESOURCE, INSTANCE_TABLE_SCHEMA, LWS, NODEPOOL, Res,
                          as_list, container_args, family, first_unknown, flag, fmt, gpu_pools, gpu_request, is_gpu_type,
                          nodepool_gpu_families, nodepool_instance_types, nodepool_is_gpu, num, pod_specs, pod_templates,
                          pool_unknowns, resource_policy, serving_containers, stack_policy, tolerates_gpu_taint,
                          workload_label, workload_unknown, WORKLOAD_TYPES, UNKNOWN)
from rules.ecs import ECS_TASK, ecs_containers_or_unjudged, ecs_task_label, is_ecs_server

NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
DEFAULT_FAMILIES = ["g5", "g6", "g6e", "p4d", "p4de", "p5"]


def _declared_types(r: Res) -> list[str]:
    if r.type == NODEGROUP:
        return [t for t in as_list(r.get("instanceTypes")) if isinstance(t, str)]
    if r.type in (LAUNCH_TEMPLATE, EC2_INSTANCE):
        t = r.get("instanceType")
        return [t] if isinstance(t, str) else []
    if r.type == ASG:
        return [o.get("instanceType") for o in as_list(r.get("mixedInstancesPolicy", "launchTemplate", "overrides"))
                if isinstance(o, dict) and isinstance(o.get("instanceType"), str)]
    if r.type == NODEPOOL:
        return [t for t in nodepool_instance_types(r, {}) if not t.endswith(".*")] + \
               [t[:-2] for t in nodepool_instance_types(r, {}) if t.endswith(".*")]
    return []


def _allowed_families(r: Res, cfg: dict, report) -> None:
    allowed = cfg.get("allowedFamilies", DEFAULT_FAMILIES)
    type_inputs = {NODEGROUP: "instanceTypes", LAUNCH_TEMPLATE: "instanceType", EC2_INSTANCE: "instanceType",
                   ASG: "mixedInstancesPolicy", NODEPOOL: "spec.template.spec.requirements"}[r.type]
    unknown = [x for x in pool_unknowns(r) if x.startswith(type_inputs)]
    if unknown:
        report.unjudged(f"{r.type.rsplit(':', 1)[-1]} '{r.name}'", unknown[0])
        return
    if r.type == NODEPOOL:
        fams, open_ = nodepool_gpu_families(r)
        outside = [f for f in fams if f not in allowed]
        if open_:
            report(f"NodePool '{r.name}' can launch any GPU family (its requirements restrict neither instance types "
                   f"nor families); this stack allows only: {', '.join(allowed)}")
        elif outside:
            report(f"NodePool '{r.name}' can launch GPU families {', '.join(outside)}; this stack allows only: "
                   f"{', '.join(allowed)}")
        return
    for t in _declared_types(r):
        fam = family(t)
        if (is_gpu_type(t) or is_gpu_type(fam + ".x")) and fam not in allowed:
            report(f"{r.type.rsplit(':', 1)[-1]} '{r.name}' uses GPU instance type '{t}' of family '{fam}'; "
                   f"this stack allows only: {', '.join(allowed)}")


allowed_families = resource_policy(
    "gpu-allowed-instance-families",
    # Also judges standalone EC2 instances and NodePools selected by category, family or NotIn (issue 15).
    "GPU node groups, launch templates, Auto Scaling groups and Karpenter NodePools use only the stack's allowed "
    "GPU instance families (no Checkov/Trivy equivalent).",
    _allowed_families, types=[NODEGROUP, LAUNCH_TEMPLATE, ASG, NODEPOOL, EC2_INSTANCE],
    schema={"allowedFamilies": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_FAMILIES}})


def _max_per_pool(resources: list[Res], cfg: dict, report) -> None:
    table = cfg.get("instanceTypes", {})
    limit = cfg.get("maxGpusPerPool", 64)
    for pool in gpu_pools(resources, table):
        unknown = pool_unknowns(pool.res)
        if unknown:
            report.unjudged(pool.label, unknown[0], pool.res.urn)
            continue
        missing = pool.missing(table)
        if missing and pool.gpu_limit is None:
            report(f"{pool.label}: instance type(s) {', '.join(missing)} not in the policy's instanceTypes table, "
                   f"so its GPUs cannot be counted; regenerate the policy config (python -m infra.policy_config)",
                   pool.res.urn)
            continue
        gpus = pool.max_gpus(table)
        if gpus is None:
            continue  # unbounded Karpenter pools: gpu-nodepool-gpu-limit reports them
        if gpus > limit:
            report(f"{pool.label} can grow to {fmt(gpus)} GPUs at max size; the limit per pool is {fmt(limit)}",
                   pool.res.urn)


max_per_pool = stack_policy(
    "gpu-max-per-pool",
    "Each GPU pool at its maximum size (node group/ASG maxSize x GPUs per node, NodePool nvidia.com/gpu limit) "
    "stays within maxGpusPerPool.",
    _max_per_pool, types=GPU_POOL_TYPES,
    schema={"maxGpusPerPool": {"type": "integer", "minimum": 1, "default": 64}, "instanceTypes": INSTANCE_TABLE_SCHEMA})


def _max_total(resources: list[Res], cfg: dict, report) -> None:
    table = cfg.get("instanceTypes", {})
    limit = cfg.get("maxGpusTotal", 128)
    pools = gpu_pools(resources, table)
    unknown = [p for p in pools if pool_unknowns(p.res)]
    counted = [(p, p.max_gpus(table)) for p in pools if p not in unknown]
    total = sum(g for _, g in counted if g is not None)
    if total > limit:  # the known pools alone exceed the limit: a verdict from the known parts
        parts = ", ".join(f"{p.label} {fmt(g)}" for p, g in counted if g is not None)
        report(f"GPU capacity at max size is {fmt(total)} GPUs ({parts}); the stack limit is {fmt(limit)}")
    else:
        for p in unknown:
            report.unjudged(f"GPU capacity of the stack ({p.label})", pool_unknowns(p.res)[0], p.res.urn)


max_total = stack_policy(
    "gpu-max-total",
    "All GPU pools together, at maximum size, stay within maxGpusTotal (stack-level total).",
    _max_total, types=GPU_POOL_TYPES,
    schema={"maxGpusTotal": {"type": "integer", "minimum": 1, "default": 128}, "instanceTypes": INSTANCE_TABLE_SCHEMA})


def _nodepool_gpu_limit(r: Res, cfg: dict, report) -> None:
    if r.unknown_at("spec", "template", "spec", "requirements"):
        report.unjudged(f"NodePool '{r.name}'", r.unknown_at("spec", "template", "spec", "requirements"))
        return
    if not nodepool_is_gpu(r):
        return
    limit = r.get("spec", "limits", GPU_RESOURCE)
    if r.unknown_at("spec", "limits", GPU_RESOURCE):
        report.unjudged(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}'",
                        r.unknown_at("spec", "limits", GPU_RESOURCE))
        return
    if num(limit) is None:
        report(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}' sets no spec.limits[\"nvidia.com/gpu\"]; "
               f"Karpenter could launch GPUs without bound")


nodepool_gpu_limit = resource_policy(
    "gpu-nodepool-gpu-limit",
    "Every Karpenter NodePool that can launch GPU instances caps nvidia.com/gpu in spec.limits.",
    _nodepool_gpu_limit, types=[NODEPOOL])


def _parallel_sizes(argv: list[str]) -> tuple[int, int] | None:
    tp, pp = flag(argv, "--tensor-parallel-size") or flag(argv, "-tp"), flag(argv, "--pipeline-parallel-size") or flag(argv, "-pp")
    try:
        return int(tp or 1), int(pp or 1)
    except ValueError:
        return None  # a shell variable: cannot judge


def _parallelism(r: Res, cfg: dict, report) -> None:
    if r.type == ECS_TASK:
        for i, c in enumerate(ecs_containers_or_unjudged(r, report)):
            if not is_ecs_server(c):
                continue
            for key in ("command", "entryPoint", "resourceRequirements"):
                if c.get(key) is UNKNOWN or UNKNOWN in as_list(c.get(key)):
                    report.unjudged(f"{ecs_task_label(r)} container '{c.get('name')}'", f"containerDefinitions[{i}].{key}")
                    break
            else:
                sizes = _parallel_sizes(container_args(c))
                gpus = next((num(x.get("value")) for x in as_list(c.get("resourceRequirements"))
                             if isinstance(x, dict) and x.get("type") == "GPU"), None)
                if sizes and (gpus or 0) != sizes[0] * sizes[1]:
                    report(f"ECS task '{r.name}' container '{c.get('name')}': tensor-parallel-size {sizes[0]} x "
                           f"pipeline-parallel-size {sizes[1]} needs {sizes[0] * sizes[1]} GPUs, but it reserves {fmt(gpus or 0)}")
        return
    where = workload_unknown(r) or (r.unknown_at("spec", "leaderWorkerTemplate", "size") if r.type == LWS else None)
    if where:
        report.unjudged(workload_label(r), where)
        return
    pods = num(r.get("spec", "leaderWorkerTemplate", "size")) or 1 if r.type == LWS else 1
    specs = pod_specs(r)
    for role, spec, c, path in serving_containers(r):
        unknown = next((f"{path}.{k}" for k in ("command", "args") if c.get(k) is UNKNOWN or UNKNOWN in as_list(c.get(k))), None) \
            or next((first_unknown(x.get("resources"), f"{path}.resources") for _, sp in specs for x in as_list(sp.get("containers"))
                     if isinstance(x, dict) and first_unknown(x.get("resources"))), None)
        if unknown:
            report.unjudged(workload_label(r), unknown)
            return
        argv = container_args(c)
        if not any(f in " ".join(argv) for f in ("--tensor-parallel-size", "--pipeline-parallel-size", "vllm serve", "-tp")):
            continue
        sizes = _parallel_sizes(argv)
        if sizes is None:
            continue
        tp, pp = sizes
        if (tp * pp) % pods:
            report(f"{workload_label(r)} container '{c.get('name')}': tensor-parallel-size {tp} x pipeline-parallel-size "
                   f"{pp} does not divide over {fmt(pods)} pods")
            continue
        per_pod = tp * pp / pods
        # Every pod of the replica must bring its share: the server's own pod and, in a LeaderWorkerSet, the workers.
        for other_role, other_spec in specs:
            got = sum(gpu_request(x) or 0 for x in as_list(other_spec.get("containers")) if isinstance(x, dict))
            if got != per_pod:
                who = "pod" if other_role == "pod" else f"{other_role} pod"
                report(f"{workload_label(r)}: tensor-parallel-size {tp} x pipeline-parallel-size {pp} over {fmt(pods)} "
                       f"pod(s) needs {fmt(per_pod)} GPUs per pod, but the {who} requests {fmt(got)} nvidia.com/gpu")
        return


parallelism = resource_policy(
    "gpu-parallelism-matches-request",
    "A vLLM server's tensor-parallel-size x (pipeline-parallel-size per pod) equals the nvidia.com/gpu its pod "
    "requests (Deployments, LeaderWorkerSets, ECS task definitions).",
    _parallelism, types=[*WORKLOAD_TYPES, ECS_TASK])


def _selected_types(spec: dict, resources: list[Res], table: dict) -> tuple[str, list[str]] | None:
    sel = spec.get("nodeSelector") or {}
    if not isinstance(sel, dict):
        return None
    if isinstance(sel.get("node.kubernetes.io/instance-type"), str):
        t = sel["node.kubernetes.io/instance-type"]
        return f"instance type {t}", [t]
    for r in resources:
        if r.type == NODEPOOL:
            labels = r.get("spec", "template", "metadata", "labels", default={}) or {}
            name = r.get("metadata", "name")
        elif r.type == NODEGROUP:
            labels = r.get("labels", default={}) or {}
            name = r.get("nodeGroupName", default=r.name)
        else:
            continue
        if not isinstance(labels, dict):
            continue
        matches = sel and all(labels.get(k) == v for k, v in sel.items())
        if r.type == NODEPOOL and sel.get("karpenter.sh/nodepool") == name:
            matches = True
        if r.type == NODEGROUP and sel.get("eks.amazonaws.com/nodegroup") == name:
            matches = True
        if matches:
            types = nodepool_instance_types(r, table) if r.type == NODEPOOL else _declared_types(r)
            return f"pool '{name}'", types
    return None


def _fits_node(resources: list[Res], cfg: dict, report) -> None:
    table = cfg.get("instanceTypes", {})
    for r in resources:
        where = workload_unknown(r)
        if where:
            report.unjudged(workload_label(r), where, r.urn)
            continue
        for role, spec in pod_specs(r):
            need = sum(gpu_request(c) or 0 for c in as_list(spec.get("containers")) if isinstance(c, dict))
            if not need:
                continue
            if spec.get("nodeSelector") is UNKNOWN or first_unknown(spec.get("nodeSelector")):
                report.unjudged(workload_label(r), "nodeSelector of the pod template", r.urn)
                continue
            found = _selected_types(spec, resources, table)
            if not found:
                continue
            where, types = found
            for t in types:
                if t in table and table[t]["gpus"] < need:
                    report(f"{workload_label(r)}: a {'pod' if role == 'pod' else role + ' pod'} requests {fmt(need)} "
                           f"nvidia.com/gpu but {where} may place it on {t} with {fmt(table[t]['gpus'])} GPUs", r.urn)


fits_node = stack_policy(
    "gpu-pod-fits-node-type",
    "A GPU pod's nvidia.com/gpu request fits every instance type its node selector can place it on.",
    _fits_node, types=WORKLOAD_TYPES, schema={"instanceTypes": INSTANCE_TABLE_SCHEMA})


def _tolerates(r: Res, cfg: dict, report) -> None:
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return
    for role, spec, _, path in pod_templates(r):
        need = sum(gpu_request(c) or 0 for c in as_list(spec.get("containers")) if isinstance(c, dict))
        if need and (spec.get("tolerations") is UNKNOWN or UNKNOWN in as_list(spec.get("tolerations"))):
            report.unjudged(workload_label(r), ".".join(path) + ".tolerations")
        elif need and not tolerates_gpu_taint(spec):
            who = "pod" if role == "pod" else f"{role} pod"
            report(f"{workload_label(r)}: the {who} requests nvidia.com/gpu but does not tolerate the GPU taint "
                   f"nvidia.com/gpu=true:NoSchedule")


tolerates_taint = resource_policy(
    "gpu-pods-tolerate-taint",
    "Pods that request nvidia.com/gpu tolerate the nvidia.com/gpu NoSchedule taint the GPU nodes carry.",
    _tolerates, types=WORKLOAD_TYPES)


def _nodes_tainted(r: Res, cfg: dict, report) -> None:
    if r.type == NODEGROUP:
        if not any(is_gpu_type(t) for t in _declared_types(r)):
            return
        taints = r.get("taints", default=[])
        if taints is UNKNOWN or UNKNOWN in as_list(taints):
            report.unjudged(f"GPU node group '{r.get('nodeGroupName', default=r.name)}'", "taints")
            return
        ok = any(isinstance(t, dict) and t.get("key") == GPU_RESOURCE and t.get("effect") == "NO_SCHEDULE" for t in as_list(taints))
        what = f"GPU node group '{r.get('nodeGroupName', default=r.name)}'"
    else:
        if not nodepool_is_gpu(r):
            return
        taints = r.get("spec", "template", "spec", "taints", default=[])
        if taints is UNKNOWN or UNKNOWN in as_list(taints):
            report.unjudged(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}'", "spec.template.spec.taints")
            return
        ok = any(isinstance(t, dict) and t.get("key") == GPU_RESOURCE and t.get("effect") == "NoSchedule" for t in as_list(taints))
        what = f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}'"
    if not ok:
        report(f"{what} lacks the taint nvidia.com/gpu=true:NoSchedule, so non-GPU pods can take GPU nodes")


nodes_tainted = resource_policy(
    "gpu-nodes-tainted",
    "GPU node groups and NodePools carry the nvidia.com/gpu NoSchedule taint, keeping other pods off GPU nodes.",
    _nodes_tainted, types=[NODEGROUP, NODEPOOL])

NVIDIA_AMI_TYPES = ["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA", "AL2_x86_64_GPU"]


def _nvidia_ami(r: Res, cfg: dict, report) -> None:
    if not any(is_gpu_type(t) for t in _declared_types(r)):
        return
    ami = r.get("amiType")
    if ami is UNKNOWN:
        report.unjudged(f"GPU node group '{r.get('nodeGroupName', default=r.name)}'", "amiType")
        return
    if ami in (None, "CUSTOM") and r.get("launchTemplate") is not None:
        return  # the launch template brings the AMI
    allowed = cfg.get("amiTypes", NVIDIA_AMI_TYPES[:2])
    if ami not in allowed:
        report(f"GPU node group '{r.get('nodeGroupName', default=r.name)}' uses amiType {ami or '(default AL2023_x86_64_STANDARD)'}; "
               f"GPU nodes need one of: {', '.join(allowed)}")


nvidia_ami = resource_policy(
    "gpu-nodegroup-nvidia-ami",
    "GPU managed node groups use an NVIDIA AMI type (AL2023_x86_64_NVIDIA or Bottlerocket NVIDIA), or their nodes "
    "never expose GPUs.",
    _nvidia_ami, types=[NODEGROUP],
    schema={"amiTypes": {"type": "array", "items": {"type": "string"}, "default": NVIDIA_AMI_TYPES[:2]}})

POLICIES = [allowed_families, max_per_pool, max_total, nodepool_gpu_limit, parallelism, fits_node, tolerates_taint,
            nodes_tainted, nvidia_ami]
