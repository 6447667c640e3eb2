"""Helpers the policy modules share.

Rules see resource inputs as the engine sends them: camelCase AWS inputs and
Kubernetes objects as `apiVersion/kind/metadata/spec`. In a preview some
values are unknown; `plain()` turns the SDK's unknown-checking proxies into
plain data with `UNKNOWN` in place of each unknown value, so one unknown
field makes a rule skip that field instead of aborting the whole rule.

A rule about a kind of resource that the stack does not have reports
nothing: absence is "not applicable", never a violation (existence checks
such as "a budget exists" say explicitly when they apply).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Iterator, Optional

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ReportViolation, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy)


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        return False


UNKNOWN = _Unknown()
_UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7", "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9", "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
    "030794c1-ac77-496b-92df-f27374a8bd58", "e48ece36-62e2-4504-bad9-02848725956a",
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
})


def plain(value: Any) -> Any:
    """Plain dicts/lists from the SDK's proxies; unknown values become UNKNOWN."""
    if isinstance(value, Mapping):
        try:
            value = value["__target"]
        except (KeyError, TypeError):
            pass
        return {k: plain(v) for k, v in dict(value).items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        try:
            value = value["__target"]  # type: ignore[index]
        except (KeyError, TypeError, IndexError):
            pass
        return [plain(v) for v in list(value)]
    if isinstance(value, str) and value in _UNKNOWN_SENTINELS:
        return UNKNOWN
    return value


def unknown(value: Any) -> bool:
    return value is UNKNOWN


def get(props: Any, *path: Any, default: Any = None) -> Any:
    """props["a"]["b"][0]... of plain data; `default` when absent, UNKNOWN when unknown."""
    cur = props
    for key in path:
        if cur is UNKNOWN:
            return UNKNOWN
        if isinstance(key, int):
            if not isinstance(cur, list) or key >= len(cur):
                return default
            cur = cur[key]
        else:
            if not isinstance(cur, dict):
                return default
            cur = cur.get(key)
        if cur is None:
            return default
    return cur


def as_list(value: Any) -> list:
    if value is None or value is UNKNOWN:
        return []
    return value if isinstance(value, list) else [value]


def num(value: Any) -> Optional[float]:
    """Numbers arrive as floats (4 -> 4.0) or, in some inputs, as text."""
    if value is None or value is UNKNOWN or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(n: float) -> str:
    return f"{n:g}" if float(n).is_integer() else f"{n:,.2f}"


def truthy(value: Any) -> bool:
    """Booleans; some AWS inputs (launch template EBS) are strings "true"/"false"."""
    if isinstance(value, str):
        return value.lower() == "true"
    return value is True


# --- resources as the rules see them -----------------------------------------------

class Res:
    """One resource: type, name, urn, plain inputs, options and property dependencies (URNs)."""

    def __init__(self, type_: str, name: str, urn: str, props: dict, protect: bool = False,
                 prop_deps: Optional[dict[str, list[str]]] = None):
        self.type, self.name, self.urn, self.props = type_, name, urn, props
        self.protect = protect
        self.prop_deps = prop_deps or {}

    def get(self, *path: Any, default: Any = None) -> Any:
        return get(self.props, *path, default=default)


def res_of(args: ResourceValidationArgs) -> Res:
    return Res(args.resource_type, args.name, args.urn, plain(args.props), bool(getattr(args.opts, "protect", False)))


def stack_resources(args: StackValidationArgs) -> list[Res]:
    out = []
    for r in args.resources:
        deps = {k: [d.urn for d in v] for k, v in (r.property_dependencies or {}).items()}
        out.append(Res(r.resource_type, r.name, r.urn, plain(r.props), bool(getattr(r.opts, "protect", False)), deps))
    return out


def of_type(resources: Iterable[Res], *types: str) -> list[Res]:
    return [r for r in resources if r.type in types]


def config_of(args: Any) -> dict:
    return plain(args.get_config() or {})


def config_value(args: Any, key: str, default: Any = None) -> Any:
    return config_of(args).get(key, default)


def refers_to(res: Res, key: str, target: Res) -> bool:
    """res.<key> points at target: by property dependency, or by the target's name/id/arn value."""
    if target.urn in res.prop_deps.get(key, []):
        return True
    value = res.get(key)
    if value in (None, UNKNOWN):
        return False
    names = {target.get(k) for k in ("bucket", "name", "id", "arn")} - {None, UNKNOWN}
    return value in names or value == target.name


# --- policy constructors: one line per rule in the area modules --------------------

def resource_policy(name: str, description: str, validate: Callable[[Res, dict, ReportViolation], None], *,
                    level: EnforcementLevel = EnforcementLevel.MANDATORY,
                    schema: Optional[dict] = None, types: Optional[Iterable[str]] = None) -> ResourceValidationPolicy:
    wanted = frozenset(types) if types else None

    def run(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if wanted is not None and args.resource_type not in wanted:
            return
        validate(res_of(args), config_of(args), report)

    policy = ResourceValidationPolicy(name=name, description=description, enforcement_level=level, validate=run,
                                      config_schema=PolicyConfigSchema(properties=schema) if schema else None)
    policy.scope_types = wanted  # the resource types the rule judges (None: every type)
    return policy


def stack_policy(name: str, description: str, validate: Callable[[list[Res], dict, ReportViolation], None], *,
                 level: EnforcementLevel = EnforcementLevel.MANDATORY,
                 schema: Optional[dict] = None, types: Iterable[str] = ()) -> StackValidationPolicy:
    """`types`: the resource types the rule judges (documentation and the coverage test; the rule sees all)."""
    def run(args: StackValidationArgs, report: ReportViolation) -> None:
        validate(stack_resources(args), config_of(args), report)

    policy = StackValidationPolicy(name=name, description=description, enforcement_level=level, validate=run,
                                   config_schema=PolicyConfigSchema(properties=schema) if schema else None)
    policy.scope_types = frozenset(types)
    return policy


# --- instance types -------------------------------------------------------------

# Families that carry NVIDIA GPUs (P and G). A type of another family (a
# system node group's m6i, say) is not GPU capacity.
GPU_FAMILY = re.compile(r"^(p\d+[a-z]*|g\d+[a-z]*)$")


def family(instance_type: str) -> str:
    return instance_type.split(".")[0]


def is_gpu_type(instance_type: Any) -> bool:
    return isinstance(instance_type, str) and bool(GPU_FAMILY.match(family(instance_type)))


INSTANCE_TABLE_SCHEMA = {
    "type": "object",
    "description": "GPU instance types: gpus per node, GPU memory, on-demand $/hour and spot discount "
                   "(generated from infra/catalog.py by `python -m infra.policy_config`).",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "gpus": {"type": "integer", "minimum": 0},
            "gpuMemoryGb": {"type": "number", "minimum": 0},
            "onDemandUsdPerHour": {"type": "number", "minimum": 0},
            "spotDiscount": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["gpus", "gpuMemoryGb", "onDemandUsdPerHour", "spotDiscount"],
    },
    "default": {},
}


# --- Kubernetes objects ------------------------------------------------------------

WORKLOAD_TYPES = frozenset({
    "kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job", "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "kubernetes:core/v1:Pod",
})
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
EC2NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
GPU_RESOURCE = "nvidia.com/gpu"
# Where GPU capacity is declared: EKS managed node groups, Auto Scaling groups (ECS) with their launch
# templates, Karpenter NodePools.
GPU_POOL_TYPES = ("aws:eks/nodeGroup:NodeGroup", "aws:autoscaling/group:Group", "aws:ec2/launchTemplate:LaunchTemplate",
                  NODEPOOL)


def pod_specs(res: Res) -> list[tuple[str, dict]]:
    """(role, pod spec) of a workload: Deployment/StatefulSet/...: ("pod", ...);
    LeaderWorkerSet: ("leader", ...) and ("worker", ...)."""
    if res.type == "kubernetes:core/v1:Pod":
        spec = res.get("spec")
        return [("pod", spec)] if isinstance(spec, dict) else []
    if res.type == LWS:
        tmpl = res.get("spec", "leaderWorkerTemplate", default={})
        out = []
        for role, key in (("leader", "leaderTemplate"), ("worker", "workerTemplate")):
            spec = get(tmpl, key, "spec")
            if isinstance(spec, dict):
                out.append((role, spec))
        return out
    if res.type in WORKLOAD_TYPES:
        spec = res.get("spec", "template", "spec")
        return [("pod", spec)] if isinstance(spec, dict) else []
    return []


def pod_labels(res: Res) -> dict:
    if res.type == LWS:
        return res.get("spec", "leaderWorkerTemplate", "workerTemplate", "metadata", "labels", default={}) or {}
    return res.get("spec", "template", "metadata", "labels", default={}) or {}


def containers(spec: dict, *, init: bool = True) -> list[dict]:
    out = [c for c in as_list(spec.get("containers")) if isinstance(c, dict)]
    if init:
        out += [c for c in as_list(spec.get("initContainers")) if isinstance(c, dict)]
    return out


def all_containers(res: Res, *, init: bool = True) -> Iterator[tuple[str, dict, dict]]:
    """(role, pod spec, container) for every container of a workload."""
    for role, spec in pod_specs(res):
        for c in containers(spec, init=init):
            yield role, spec, c


def workload_label(res: Res) -> str:
    ns = res.get("metadata", "namespace", default="default")
    name = res.get("metadata", "name", default=res.name)
    kind = res.get("kind", default=res.type.rsplit(":", 1)[-1])
    return f"{kind} {ns}/{name}" if isinstance(name, str) else f"{kind} '{res.name}'"


def container_args(c: dict) -> list[str]:
    """The command line: Kubernetes command + args; ECS entryPoint + command."""
    words = as_list(c.get("entryPoint")) + as_list(c.get("command")) + as_list(c.get("args"))
    return [str(a) for a in words if isinstance(a, (str, int, float))]


def is_vllm(c: dict) -> bool:
    """A vLLM server: the vllm-openai image, or a command line that runs `vllm serve` / the OpenAI server."""
    image = c.get("image")
    if isinstance(image, str) and "vllm" in image.split("/")[-1].split(":")[0]:
        return True
    words = " ".join(container_args(c))
    return "vllm serve" in words or "vllm.entrypoints.openai.api_server" in words


def flag(argv: list[str], name: str) -> Optional[str]:
    """Value of `--name V` or `--name=V` in an argv (shell strings are split on spaces)."""
    words: list[str] = []
    for a in argv:
        words += a.split()
    for i, w in enumerate(words):
        if w == name and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(name + "="):
            return w.split("=", 1)[1]
    return None


def has_flag(argv: list[str], name: str) -> bool:
    return any(w == name or w.startswith(name + "=") for a in argv for w in a.split())


def env_names(c: dict) -> dict[str, dict]:
    return {e.get("name"): e for e in as_list(c.get("env")) if isinstance(e, dict)}


def gpu_request(c: dict) -> Optional[float]:
    """nvidia.com/gpu a container asks for (limits; requests must equal them for extended resources)."""
    res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
    for part in ("limits", "requests"):
        v = num(get(res, part, GPU_RESOURCE))
        if v is not None:
            return v
    return None


def tolerates_gpu_taint(spec: dict) -> bool:
    for t in as_list(spec.get("tolerations")):
        if not isinstance(t, dict):
            continue
        effect_ok = t.get("effect") in (None, "", "NoSchedule")
        if t.get("operator") == "Exists" and t.get("key") in (None, "", GPU_RESOURCE) and effect_ok:
            return True
        if t.get("key") == GPU_RESOURCE and effect_ok and t.get("operator", "Equal") in ("Equal", "Exists"):
            return True
    return False


def nodepool_requirements(res: Res) -> dict[str, dict]:
    reqs = res.get("spec", "template", "spec", "requirements", default=[])
    return {r.get("key"): r for r in as_list(reqs) if isinstance(r, dict)}


def nodepool_instance_types(res: Res, table: dict) -> list[str]:
    """Instance types a NodePool may launch: explicit types, or catalog types of the allowed families."""
    reqs = nodepool_requirements(res)
    t = reqs.get("node.kubernetes.io/instance-type")
    if t and t.get("operator") == "In":
        return [v for v in as_list(t.get("values")) if isinstance(v, str)]
    f = reqs.get("karpenter.k8s.aws/instance-family")
    if f and f.get("operator") == "In":
        fams = {v for v in as_list(f.get("values")) if isinstance(v, str)}
        return sorted(name for name in table if family(name) in fams) or [f"{x}.*" for x in sorted(fams)]
    return []


def nodepool_is_gpu(res: Res) -> bool:
    if any(is_gpu_type(t) or (t.endswith(".*") and GPU_FAMILY.match(t[:-2]))
           for t in nodepool_instance_types(res, {})):
        return True
    reqs = nodepool_requirements(res)
    if any(k in reqs for k in ("karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-name",
                               "karpenter.k8s.aws/instance-gpu-manufacturer")):
        return True
    taints = res.get("spec", "template", "spec", "taints", default=[])
    return any(isinstance(t, dict) and t.get("key") == GPU_RESOURCE for t in as_list(taints))


def nodepool_capacity_types(res: Res) -> list[str]:
    r = nodepool_requirements(res).get("karpenter.sh/capacity-type")
    if r and r.get("operator") == "In":
        return [v for v in as_list(r.get("values")) if isinstance(v, str)]
    return ["on-demand"]  # Karpenter's default when no capacity-type requirement is set


# --- GPU capacity: pools at their maximum size -----------------------------------

class Pool:
    """One source of GPU capacity (node group, auto scaling group, Karpenter NodePool) at its max size."""

    def __init__(self, res: Res, label: str, instance_types: list[str], capacity: str,
                 max_nodes: Optional[float] = None, gpu_limit: Optional[float] = None):
        self.res, self.label, self.instance_types, self.capacity = res, label, instance_types, capacity
        self.max_nodes, self.gpu_limit = max_nodes, gpu_limit

    def missing(self, table: dict) -> list[str]:
        return [t for t in self.instance_types if t not in table]

    def max_gpus(self, table: dict) -> Optional[float]:
        """GPUs with the pool at max size (None: unbounded or not priced)."""
        if self.gpu_limit is not None:
            return self.gpu_limit
        if self.max_nodes is None or self.missing(table) or not self.instance_types:
            return None
        return self.max_nodes * max(table[t]["gpus"] for t in self.instance_types)

    def max_hourly(self, table: dict) -> Optional[float]:
        """Worst-case $/hour: the dearest allowed type, on-demand unless the pool is spot-only."""
        if self.missing(table) or not self.instance_types:
            return None

        def price(t: str) -> float:
            row = table[t]
            p = row["onDemandUsdPerHour"]
            return p * (1 - row["spotDiscount"]) if self.capacity == "spot" else p

        if self.gpu_limit is not None:
            import math
            return max(math.ceil(self.gpu_limit / max(table[t]["gpus"], 1)) * price(t) for t in self.instance_types)
        if self.max_nodes is None:
            return None
        return self.max_nodes * max(price(t) for t in self.instance_types)


def _launch_template_types(res: Res, resources: list[Res], key: str, lt_id: Any) -> list[str]:
    for lt in of_type(resources, "aws:ec2/launchTemplate:LaunchTemplate"):
        if lt.urn in res.prop_deps.get(key, []) or (lt_id not in (None, UNKNOWN) and lt_id in (lt.get("id"), lt.get("name"))):
            t = lt.get("instanceType")
            return [t] if isinstance(t, str) else []
    return []


def gpu_pools(resources: list[Res], table: dict) -> list[Pool]:
    pools: list[Pool] = []
    for r in resources:
        if r.type == "aws:eks/nodeGroup:NodeGroup":
            types = [t for t in as_list(r.get("instanceTypes")) if isinstance(t, str)]
            if not types:
                types = _launch_template_types(r, resources, "launchTemplate", r.get("launchTemplate", "id"))
            if any(is_gpu_type(t) for t in types):
                cap = "spot" if r.get("capacityType") == "SPOT" else "on-demand"
                name = r.get("nodeGroupName", default=r.name)
                pools.append(Pool(r, f"node group '{name if isinstance(name, str) else r.name}'", types, cap,
                                  max_nodes=num(r.get("scalingConfig", "maxSize"))))
        elif r.type == "aws:autoscaling/group:Group":
            mip = r.get("mixedInstancesPolicy", default={})
            types = [o.get("instanceType") for o in as_list(get(mip, "launchTemplate", "overrides"))
                     if isinstance(o, dict) and isinstance(o.get("instanceType"), str)]
            if not types:
                types = (_launch_template_types(r, resources, "launchTemplate", r.get("launchTemplate", "id"))
                         or _launch_template_types(r, resources, "mixedInstancesPolicy",
                                                   get(mip, "launchTemplate", "launchTemplateSpecification", "launchTemplateId")))
            if any(is_gpu_type(t) for t in types):
                dist = get(mip, "instancesDistribution", default={})
                spot = (mip and num(get(dist, "onDemandPercentageAboveBaseCapacity")) == 0
                        and not num(get(dist, "onDemandBaseCapacity")))
                pools.append(Pool(r, f"auto scaling group '{r.name}'", types, "spot" if spot else "on-demand",
                                  max_nodes=num(r.get("maxSize"))))
        elif r.type == NODEPOOL and nodepool_is_gpu(r):
            types = nodepool_instance_types(r, table)
            caps = nodepool_capacity_types(r)
            name = r.get("metadata", "name", default=r.name)
            pools.append(Pool(r, f"Karpenter NodePool '{name if isinstance(name, str) else r.name}'", types,
                              "spot" if caps == ["spot"] else "on-demand",
                              gpu_limit=num(r.get("spec", "limits", GPU_RESOURCE))))
    return pools


def has_gpu_capacity(resources: list[Res]) -> bool:
    return bool(gpu_pools(resources, {}))
