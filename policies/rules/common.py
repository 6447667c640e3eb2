"""Helpers the policy modules share.

Rules see resource inputs as the engine sends them: camelCase AWS inputs and
Kubernetes objects as `apiVersion/kind/metadata/spec`. In a preview some
values are unknown; `plain()` turns the SDK's unknown-checking proxies into
plain data with `UNKNOWN` in place of each unknown value. A rule then
tells three cases apart: known-bad (a violation at the rule's level),
known-good (nothing) and unknown: when an unknown value hides a check the
rule reports `report.unjudged(subject, path)`, an advisory whose message
starts with "could not judge: " followed by the subject and the input path
(the contract with the offline preview, which lists them as
`policy.unjudged`). An unknown is never read as absent and never as a pass.

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


def dotted(path: Iterable[Any]) -> str:
    """("spec", "containers", 0, "image") -> "spec.containers[0].image"."""
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def unknown_at(props: Any, *path: Any) -> Optional[str]:
    """The dotted path of the first UNKNOWN met while walking `path` into props (None: no unknown on the way)."""
    cur = props
    for i, key in enumerate(path):
        if cur is UNKNOWN:
            return dotted(path[:i])
        if isinstance(key, int):
            if not isinstance(cur, list) or key >= len(cur):
                return None
            cur = cur[key]
        else:
            if not isinstance(cur, dict):
                return None
            cur = cur.get(key)
    return dotted(path) if cur is UNKNOWN else None


def unknown_in(obj: Any, path: tuple, prefix: str) -> Optional[str]:
    """unknown_at inside a nested object whose own path is `prefix` (e.g. a container)."""
    found = unknown_at(obj, *path)
    return f"{prefix}.{found}" if found else None


def first_unknown(value: Any, prefix: str = "") -> Optional[str]:
    """The dotted path of the first UNKNOWN anywhere inside value (depth first), or None."""
    if value is UNKNOWN:
        return prefix
    if isinstance(value, dict):
        for k, v in value.items():
            found = first_unknown(v, f"{prefix}.{k}" if prefix else str(k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = first_unknown(v, f"{prefix}[{i}]")
            if found is not None:
                return found
    return None


def unjudged_message(subject: str, path: str) -> str:
    """The advisory a rule reports when an unknown input hides its check (contract with infra/preview.py)."""
    return f"could not judge: {subject}: {path} is unknown in this preview (known only after apply)"


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

    def unknown_at(self, *path: Any) -> Optional[str]:
        return unknown_at(self.props, *path)


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
    if not isinstance(value, str):
        return False  # None, UNKNOWN, or a shape no reference takes
    names = {v for k in ("bucket", "name", "id", "arn") if isinstance(v := target.get(k), str)}
    return value in names or value == target.name


# --- reporting: violations at the rule's level, unjudged inputs as advisories -------

def _install_advisory_reports() -> bool:
    """Give the SDK's report function an `advisory` variant that reports at level advisory.

    pulumi-policy 1.21.0 (pulumi_policy/policy.py, _PolicyAnalyzerServicer._create_report_violation)
    builds one report function per policy that appends an AnalyzeDiagnostic at the policy's
    enforcement level; the SDK itself reports an unknown value it trips over at level ADVISORY
    ("can't run policy ... during preview"), but only by aborting the whole rule. Wrapping the
    factory lets a rule keep its known-bad verdicts and still say, as an advisory, what it could
    not judge. The diagnostic's message is the unjudged message itself (no description prefix),
    so it starts with "could not judge: ". Pinned by policies/requirements.txt and
    tests/test_policies_unknowns.py.
    """
    from pulumi_policy import policy as sdk

    servicer = getattr(sdk, "_PolicyAnalyzerServicer", None)
    create = getattr(servicer, "_create_report_violation", None)
    if create is None or getattr(create, "_llmserving_advisory", False):
        return create is not None

    def create_with_advisory(self, response, policy_name, description, level, severity=None):
        report = create(self, response, policy_name, description, level, severity)

        def advisory(message: str, urn: Optional[str] = None) -> None:
            before = len(response.diagnostics)
            report(message, urn)
            for d in response.diagnostics[before:]:
                d.enforcementLevel = self._map_enforcement_level(EnforcementLevel.ADVISORY)
                d.message = message

        report.advisory = advisory
        return report

    create_with_advisory._llmserving_advisory = True
    servicer._create_report_violation = create_with_advisory
    return True


ADVISORY_REPORTS = _install_advisory_reports()


class Report:
    """What a rule's validate gets as `report`: call it for a violation; `unjudged` for an unknown input."""

    def __init__(self, sdk_report: Callable[..., None]):
        self._report = sdk_report
        self._seen: set = set()

    def __call__(self, message: str, urn: Optional[str] = None) -> None:
        # The same finding once per resource (e.g. a leader and a worker template that share a container).
        if (message, urn) in self._seen:
            return
        self._seen.add((message, urn))
        self._report(message, urn)

    def unjudged(self, subject: str, path: str, urn: Optional[str] = None) -> None:
        message = unjudged_message(subject, path)
        if (message, urn) in self._seen:
            return
        self._seen.add((message, urn))
        # Without the SDK hook the rule reports at its own level: a false block, never a silent pass.
        getattr(self._report, "advisory", self._report)(message, urn)


# --- policy constructors: one line per rule in the area modules --------------------

def resource_policy(name: str, description: str, validate: Callable[[Res, dict, ReportViolation], None], *,
                    level: EnforcementLevel = EnforcementLevel.MANDATORY,
                    schema: Optional[dict] = None, types: Optional[Iterable[str]] = None) -> ResourceValidationPolicy:
    wanted = frozenset(types) if types else None

    def run(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if wanted is not None and args.resource_type not in wanted:
            return
        validate(res_of(args), config_of(args), Report(report))

    policy = ResourceValidationPolicy(name=name, description=description, enforcement_level=level, validate=run,
                                      config_schema=PolicyConfigSchema(properties=schema) if schema else None)
    policy.scope_types = wanted  # the resource types the rule judges (None: every type)
    return policy


def stack_policy(name: str, description: str, validate: Callable[[list[Res], dict, ReportViolation], None], *,
                 level: EnforcementLevel = EnforcementLevel.MANDATORY,
                 schema: Optional[dict] = None, types: Iterable[str] = ()) -> StackValidationPolicy:
    """`types`: the resource types the rule judges (documentation and the coverage test; the rule sees all)."""
    def run(args: StackValidationArgs, report: ReportViolation) -> None:
        validate(stack_resources(args), config_of(args), Report(report))

    policy = StackValidationPolicy(name=name, description=description, enforcement_level=level, validate=run,
                                   config_schema=PolicyConfigSchema(properties=schema) if schema else None)
    policy.scope_types = frozenset(types)
    return policy


# --- instance types -------------------------------------------------------------

# Families that carry GPUs (P and G, including dashed families such as p6-b200). A type of
# another family (a system node group's m6i, say) is not GPU capacity.
GPU_FAMILY = re.compile(r"^(p\d+[a-z]*|g\d+[a-z]*|gr\d+[a-z]*)(-[a-z0-9]+)?$")
# Every GPU family EC2 lists (botocore 1.44.5 data/ec2/2016-11-15/service-2.json, InstanceType
# enum; tests/test_policies_unknowns.py checks the list against the installed model). A NodePool
# that selects by category, by family or with NotIn is judged against these.
KNOWN_GPU_FAMILIES = ("g2", "g3", "g3s", "g4ad", "g4dn", "g5", "g5g", "g6", "g6e", "g6f", "g7", "g7e", "gr6", "gr6f",
                      "p2", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300", "p6e-gb200")
ANY_GPU_FAMILY = "(any GPU family)"


def family(instance_type: str) -> str:
    return instance_type.split(".")[0]


def category(fam: str) -> str:
    """Karpenter's karpenter.k8s.aws/instance-category: the letters before the generation (p5 -> p)."""
    m = re.match(r"^([a-z]+)", fam)
    return m.group(1) if m else fam


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
EC2_INSTANCE = "aws:ec2/instance:Instance"
GPU_RESOURCE = "nvidia.com/gpu"
EFA_RESOURCE = "vpc.amazonaws.com/efa"
# Pod label the serving components put on pods that answer inference requests
# (components/vllm_workload.py serving_labels).
SERVES_LABEL = "llmserving.io/serves"
# Where GPU capacity is declared: EKS managed node groups, Auto Scaling groups (ECS) with their launch
# templates, Karpenter NodePools, and standalone EC2 instances.
GPU_POOL_TYPES = ("aws:eks/nodeGroup:NodeGroup", "aws:autoscaling/group:Group", "aws:ec2/launchTemplate:LaunchTemplate",
                  NODEPOOL, EC2_INSTANCE)


def pod_templates(res: Res) -> list[tuple[str, Any, dict, tuple]]:
    """(role, pod spec, pod labels, path of the spec) of a workload; the spec is a dict or UNKNOWN.
    Deployment/StatefulSet/...: ("pod", ...); LeaderWorkerSet: ("leader", ...) and ("worker", ...)."""
    return [t for t in _pod_templates(res) if isinstance(t[1], dict) or t[1] is UNKNOWN]


def _pod_templates(res: Res) -> list[tuple[str, Any, dict, tuple]]:
    if res.type == "kubernetes:core/v1:Pod":
        labels = res.get("metadata", "labels", default={})
        return [("pod", res.get("spec"), labels if isinstance(labels, dict) else {}, ("spec",))]
    if res.type == LWS:
        out = []
        for role, key in (("leader", "leaderTemplate"), ("worker", "workerTemplate")):
            base = ("spec", "leaderWorkerTemplate", key)
            spec = res.get(*base, "spec")
            if spec is None and role == "leader":
                # No leaderTemplate: the leader uses the worker template (LeaderWorkerSet API).
                base = ("spec", "leaderWorkerTemplate", "workerTemplate")
                spec = res.get(*base, "spec")
            labels = res.get(*base, "metadata", "labels", default={})
            if spec is not None:
                out.append((role, spec, labels if isinstance(labels, dict) else {}, base + ("spec",)))
        return out
    if res.type in WORKLOAD_TYPES:
        labels = res.get("spec", "template", "metadata", "labels", default={})
        spec = res.get("spec", "template", "spec")
        return [("pod", spec, labels if isinstance(labels, dict) else {}, ("spec", "template", "spec"))] \
            if spec is not None else []
    return []


def pod_specs(res: Res) -> list[tuple[str, dict]]:
    """(role, pod spec) of a workload whose spec is known (see pod_templates)."""
    return [(role, spec) for role, spec, _, _ in pod_templates(res) if isinstance(spec, dict)]


def workload_unknown(res: Res) -> Optional[str]:
    """Path of an unknown pod template part that hides every container of a workload (None: all known)."""
    if res.type in WORKLOAD_TYPES:
        for path in (("spec",), ("spec", "template"), ("spec", "leaderWorkerTemplate")):
            found = res.unknown_at(*path)
            if found:
                return found
    for _, spec, _, path in pod_templates(res):
        if spec is UNKNOWN:
            return dotted(path)
        for key in ("containers", "initContainers"):
            if isinstance(spec, dict) and spec.get(key) is UNKNOWN:
                return dotted(path + (key,))
    return None


def pod_labels(res: Res) -> dict:
    if res.type == LWS:
        labels = res.get("spec", "leaderWorkerTemplate", "workerTemplate", "metadata", "labels", default={})
    else:
        labels = res.get("spec", "template", "metadata", "labels", default={})
    return labels if isinstance(labels, dict) else {}


def containers(spec: dict, *, init: bool = True) -> list[dict]:
    out = [c for c in as_list(spec.get("containers")) if isinstance(c, dict)]
    if init:
        out += [c for c in as_list(spec.get("initContainers")) if isinstance(c, dict)]
    return out


def all_containers(res: Res, *, init: bool = True) -> Iterator[tuple[str, dict, dict]]:
    """(role, pod spec, container) for every container of a workload."""
    for role, spec, c, _ in container_paths(res, init=init):
        yield role, spec, c


def container_paths(res: Res, *, init: bool = True) -> Iterator[tuple[str, dict, dict, str]]:
    """(role, pod spec, container, dotted path of the container) for every container of a workload."""
    for role, spec, _, path in pod_templates(res):
        if not isinstance(spec, dict):
            continue
        for key in ("containers", "initContainers") if init else ("containers",):
            for i, c in enumerate(as_list(spec.get(key))):
                if isinstance(c, dict):
                    yield role, spec, c, dotted(path + (key, i))


def is_one_shot_init(spec: dict, c: dict) -> bool:
    """An init container that runs to completion (not a native sidecar with restartPolicy Always)."""
    return any(c is i for i in as_list(spec.get("initContainers"))) and c.get("restartPolicy") != "Always"


def workload_label(res: Res) -> str:
    ns = res.get("metadata", "namespace", default="default")
    name = res.get("metadata", "name", default=res.name)
    kind = res.get("kind", default=res.type.rsplit(":", 1)[-1])
    return f"{kind} {ns}/{name}" if isinstance(name, str) and isinstance(ns, str) else f"{kind} '{res.name}'"


def container_args(c: dict) -> list[str]:
    """The command line: Kubernetes command + args; ECS entryPoint + command."""
    words = as_list(c.get("entryPoint")) + as_list(c.get("command")) + as_list(c.get("args"))
    return [str(a) for a in words if isinstance(a, (str, int, float))]


def runs_vllm_server(c: dict) -> bool:
    """The command line starts vLLM's OpenAI server (`vllm serve`, the api_server module), whatever the image."""
    words = [w for a in container_args(c) for w in a.split()]
    for i, w in enumerate(words[:-1]):
        if (w == "vllm" or w.endswith("/vllm")) and words[i + 1] == "serve":
            return True
    joined = " ".join(words)
    return "vllm.entrypoints.openai.api_server" in joined or "vllm.entrypoints.api_server" in joined


def is_vllm(c: dict) -> bool:
    """A vLLM server: a command line that runs `vllm serve` / the OpenAI server, or the vllm-openai image
    left to its own entrypoint (`vllm serve` at v0.11.1, docker/Dockerfile). The same image running
    another program (a one-time model mirror copy with `python3 -c ...`) is not a server."""
    if runs_vllm_server(c):
        return True
    image = c.get("image")
    if not (isinstance(image, str) and "vllm" in image.split("/")[-1].split(":")[0]):
        return False
    own_program = c.get("command") if "command" in c else c.get("entryPoint")
    return own_program is None or own_program is UNKNOWN or own_program == []


def serving_pod(labels: dict) -> bool:
    return isinstance(labels, dict) and labels.get(SERVES_LABEL) == "true"


def is_serving_container(c: dict, spec: dict, labels: dict) -> bool:
    """A vLLM server container of a pod: by image or command line, or, in a pod the components label
    as serving (llmserving.io/serves: "true"), the container named vllm or the pod's only container
    (a custom image that starts the server from its own entrypoint)."""
    if is_one_shot_init(spec, c) or any(c is i for i in as_list(spec.get("initContainers"))):
        return False
    if is_vllm(c):
        return True
    if serving_pod(labels):
        regular = [x for x in as_list(spec.get("containers")) if isinstance(x, dict)]
        return c.get("name") == "vllm" or len(regular) == 1
    return False


def serving_containers(res: Res) -> Iterator[tuple[str, dict, dict, str]]:
    """(role, pod spec, container, path) of every vLLM server container of a Kubernetes workload."""
    labels_of = {role: labels for role, _, labels, _ in pod_templates(res)}
    for role, spec, c, path in container_paths(res, init=False):
        if is_serving_container(c, spec, labels_of.get(role, {})):
            yield role, spec, c, path


def is_serving_workload(res: Res) -> bool:
    return any(True for _ in serving_containers(res))


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
    return {e.get("name"): e for e in as_list(c.get("env")) if isinstance(e, dict) and isinstance(e.get("name"), str)}


def gpu_request(c: dict) -> Optional[float]:
    """nvidia.com/gpu a container asks for (limits; requests must equal them for extended resources)."""
    res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
    for part in ("limits", "requests"):
        v = num(get(res, part, GPU_RESOURCE))
        if v is not None:
            return v
    return None


def requests_efa(c: dict) -> bool:
    res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
    return any((num(get(res, part, EFA_RESOURCE)) or 0) > 0 for part in ("limits", "requests"))


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


# --- Karpenter NodePools: which GPU instances can they launch? --------------------

INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
FAMILY_KEY = "karpenter.k8s.aws/instance-family"
CATEGORY_KEY = "karpenter.k8s.aws/instance-category"
GPU_COUNT_KEY = "karpenter.k8s.aws/instance-gpu-count"
GPU_KEYS = (GPU_COUNT_KEY, "karpenter.k8s.aws/instance-gpu-name", "karpenter.k8s.aws/instance-gpu-manufacturer",
            "karpenter.k8s.aws/instance-gpu-memory")


def nodepool_requirements(res: Res) -> dict[str, dict]:
    reqs = res.get("spec", "template", "spec", "requirements", default=[])
    return {r.get("key"): r for r in as_list(reqs) if isinstance(r, dict) and isinstance(r.get("key"), str)}


def _allows(req: Optional[dict], value: str) -> bool:
    """Whether a NodeSelectorRequirement admits a label value (Karpenter v1 operators)."""
    if not req:
        return True
    op, values = req.get("operator"), [str(v) for v in as_list(req.get("values"))]
    if op == "In":
        return value in values
    if op == "NotIn":
        return value not in values
    if op == "DoesNotExist":
        return False
    if op in ("Gt", "Lt", "Gte", "Lte"):
        try:
            v, bound = float(value), float(values[0])
        except (ValueError, IndexError):
            return True
        return {"Gt": v > bound, "Lt": v < bound, "Gte": v >= bound, "Lte": v <= bound}[op]
    return True  # Exists, or an operator this pack does not model: no restriction


def _gpu_count_allows_gpus(reqs: dict[str, dict]) -> bool:
    """False when the instance-gpu-count requirement rules GPUs out (In [0], Lt 1, DoesNotExist)."""
    r = reqs.get(GPU_COUNT_KEY)
    return not r or any(_allows(r, str(n)) for n in (1, 2, 4, 8, 16))


def _values(req: Optional[dict]) -> list[str]:
    return [str(v) for v in as_list((req or {}).get("values"))]


GPU_CATEGORIES = ("g", "gr", "p")


def nodepool_gpu_families(res: Res, table: Optional[dict] = None) -> tuple[list[str], bool]:
    """(known GPU families the NodePool can launch, open). `open`: GPU families beyond the known list
    stay possible (no In on instance-type or family, and the categories admit g or p), so a
    NodePool selected by category or NotIn can launch GPUs nobody priced."""
    reqs = nodepool_requirements(res)
    if not _gpu_count_allows_gpus(reqs):
        return [], False
    t_req, fam_req, cat_req = reqs.get(INSTANCE_TYPE_KEY), reqs.get(FAMILY_KEY), reqs.get(CATEGORY_KEY)
    if t_req and t_req.get("operator") == "In":
        candidates, open_ = {family(v) for v in _values(t_req) if is_gpu_type(v)}, False
    elif fam_req and fam_req.get("operator") == "In":
        candidates, open_ = {v for v in _values(fam_req) if GPU_FAMILY.match(v)}, False
    else:
        candidates = set(KNOWN_GPU_FAMILIES) | {family(t) for t in (table or {}) if is_gpu_type(t)}
        open_ = any(_allows(cat_req, c) for c in GPU_CATEGORIES)
    fams = sorted(f for f in candidates if _allows(fam_req, f) and _allows(cat_req, category(f)))
    return fams, open_

def nodepool_instance_types(res: Res, table: dict) -> list[str]:
    """GPU instance types a NodePool may launch: explicit types, catalog types of the families it admits,
    `<family>.*` for an admitted family the table does not price, ANY_GPU_FAMILY when it leaves any
    GPU family possible."""
    reqs = nodepool_requirements(res)
    t = reqs.get(INSTANCE_TYPE_KEY)
    fams, open_ = nodepool_gpu_families(res, table)
    if t and t.get("operator") == "In":
        return [v for v in as_list(t.get("values")) if isinstance(v, str) and family(v) in fams]
    out = sorted(name for name in table if family(name) in fams and _allows(t, name))
    if open_:
        return out + [ANY_GPU_FAMILY]
    priced = {family(name) for name in table}
    return out + [f"{f}.*" for f in fams if f not in priced]


def nodepool_is_gpu(res: Res) -> bool:
    """A NodePool that can launch GPU instances: its requirements admit a GPU family (by type, family,
    category or NotIn), ask for GPUs, or its nodes carry the GPU taint."""
    fams, open_ = nodepool_gpu_families(res)
    if fams or open_:
        return True
    reqs = nodepool_requirements(res)
    if any(k in reqs and reqs[k].get("operator") in ("In", "Exists", "Gt") for k in GPU_KEYS) \
            and _gpu_count_allows_gpus(reqs):
        return True
    taints = res.get("spec", "template", "spec", "taints", default=[])
    return any(isinstance(t, dict) and t.get("key") == GPU_RESOURCE for t in as_list(taints))


def nodepool_capacity_types(res: Res) -> list[str]:
    r = nodepool_requirements(res).get("karpenter.sh/capacity-type")
    if r and r.get("operator") == "In":
        return [v for v in as_list(r.get("values")) if isinstance(v, str)]
    if r and r.get("operator") == "NotIn":
        return [v for v in ("spot", "on-demand", "reserved") if v not in as_list(r.get("values"))]
    return ["on-demand"]  # Karpenter's default when no capacity-type requirement is set


# --- GPU capacity: pools at their maximum size -----------------------------------

class Pool:
    """One source of GPU capacity (node group, auto scaling group, Karpenter NodePool, EC2 instance) at its max size."""

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
        elif r.type == EC2_INSTANCE:
            t = r.get("instanceType")
            types = [t] if isinstance(t, str) else _launch_template_types(r, resources, "launchTemplate",
                                                                          r.get("launchTemplate", "id"))
            if any(is_gpu_type(x) for x in types):
                spot = r.get("instanceMarketOptions", "marketType") == "spot"
                pools.append(Pool(r, f"EC2 instance '{r.name}'", types, "spot" if spot else "on-demand", max_nodes=1))
    return pools


def has_gpu_capacity(resources: list[Res]) -> bool:
    return bool(gpu_pools(resources, {}))


def pool_unknowns(r: Res) -> list[str]:
    """Inputs that decide a GPU pool's size, types or capacity and are unknown (dotted paths)."""
    paths = {
        "aws:eks/nodeGroup:NodeGroup": [("instanceTypes",), ("scalingConfig", "maxSize"), ("capacityType",)],
        "aws:autoscaling/group:Group": [("maxSize",), ("mixedInstancesPolicy",)],
        NODEPOOL: [("spec", "template", "spec", "requirements"), ("spec", "limits", GPU_RESOURCE)],
        EC2_INSTANCE: [("instanceType",)],
        "aws:ec2/launchTemplate:LaunchTemplate": [("instanceType",)],
    }.get(r.type, [])
    found = [r.unknown_at(*p) for p in paths]
    if r.type == "aws:autoscaling/group:Group" and not found[1]:
        found.append(first_unknown(r.get("mixedInstancesPolicy"), "mixedInstancesPolicy"))
    if r.type == NODEPOOL and not found[0]:
        found.append(first_unknown(r.get("spec", "template", "spec", "requirements"), "spec.template.spec.requirements"))
    return [f for f in found if f]
