"""Deploy-readiness checks over the recorded desired state: what the real
engine, providers and controllers would do on a first `pulumi up`.

The mock engine accepts every input, never waits and never orders; these
checks read the recorded resources (inputs, dependencies, provider, parent,
custom timeouts) and report, like policy verdicts, what would fail or hang
on the real cloud:

- await (`await-timeout`, `helm-timeout`, `custom-timeout-invalid`): every
  Kubernetes object pulumi-kubernetes awaits (Deployment, StatefulSet,
  DaemonSet, Job, Service; a custom resource such as a LeaderWorkerSet only
  with `pulumi.com/waitFor`) whose pods need longer than its timeout (custom
  timeouts, else the `pulumi.com/timeoutSeconds` annotation, else the
  provider default) and is not `pulumi.com/skipAwait`; every Helm release
  whose `timeout` is shorter than its chart's first install;
- order (`ecs-listener-order`, `asg-capacity-wait`, `node-source-order`,
  `no-node-source`, `pod-identity-order`, `namespace-order`, `crd-order`, `crd-installer-unknown`): every ECS service
  waits for a listener rule (or listener default action) that attaches each
  of its target groups; every Auto Scaling group behind an ECS capacity
  provider does not wait for capacity; every object that needs a running pod
  waits for a node source its pods fit and for the EKS Pod Identity
  association of its service account; every custom resource waits for what
  installs its CRD;
- capacity (`autoscaler-capacity`, `pool-shared-capacity`,
  `rollout-headroom`, `rollout-headroom-shared`): every autoscaler's maximum
  fits its pool's maximum, every rolling update can place its surge pods;
- names (`controller-name-collision`): names controllers create (the
  LeaderWorkerSet's headless Service and StatefulSets, KEDA's HPA) are not
  taken by objects the program creates;
- images (`image-non-root`, `image-tool-missing`, `vllm-flag-unknown`,
  `vllm-env-unknown`, `vllm-metric-unknown`, `static-lora-start`,
  `keepalive-idle-timeout`; infra/image_checks.py): what each container's
  image really has and accepts (infra/image_catalog.py);
- unknowns (`unknown-input`): inputs a first deploy cannot know yet, which a
  check needed, are reported as advisory "could not judge" findings.

"Transitively waits" (pulumi 3.272, Python SDK): resource A waits for B when
B is reachable from A over these edges, each of which the SDK or engine
resolves before it registers A:

1. `dependencies`: the recorded RegisterResource dependencies. The SDK
   (sdk/python/lib/pulumi/runtime/resource.py prepare_resource) merges
   explicit `depends_on` and every property dependency, and expands a local
   ComponentResource to the custom and remote resources among its
   descendants that exist when A registers (runtime/rpc.py
   _add_dependency; children of custom resources are not included); it awaits
   each one's URN, which the engine returns only after that resource's step
   (create/update) has finished.
2. `provider`: a resource's explicit provider (e.g. the Kubernetes provider,
   which itself depends on the cluster's kubeconfig): the provider reference
   needs the provider's id.
3. `parent`: a child awaits its parent's URN before it registers
   (prepare_resource "Wait for our parent to resolve"), and a component's URN
   resolves only after the component's own dependencies have finished, so a
   child waits for whatever its parent (and its parent's parent) waits for.
   A parent does NOT make a child wait for the child's siblings.

The checks are linear in resources and edges (per check, one memoised pass
over the dependency graph with a small target set).

    python -m infra.readiness PREVIEW.json   # checks a document written by `python -m infra.preview --json`
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from infra import readiness_catalog as rc

MANDATORY, ADVISORY = "mandatory", "advisory"

SKIP_AWAIT = "pulumi.com/skipAwait"
TIMEOUT_SECONDS = "pulumi.com/timeoutSeconds"
WAIT_FOR = "pulumi.com/waitFor"
GPU = "nvidia.com/gpu"

# Built-in Kubernetes API groups (pulumi-kubernetes type tokens); anything else is a custom resource.
_BUILTIN_GROUPS = {
    "core", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io", "certificates.k8s.io", "events.k8s.io",
    "flowcontrol.apiserver.k8s.io", "resource.k8s.io", "apiregistration.k8s.io", "authentication.k8s.io",
    "authorization.k8s.io", "storagemigration.k8s.io", "internal.apiserver.k8s.io", "helm.sh", "yaml", "kustomize",
    "meta", "extensions",
}
_POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
EKS_COMPONENT = "eks:index:Cluster"
ECS_SERVICE = "aws:ecs/service:Service"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
LISTENER = "aws:lb/listener:Listener"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ASG = "aws:autoscaling/group:Group"
CAPACITY_PROVIDER = "aws:ecs/capacityProvider:CapacityProvider"
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


@dataclass(frozen=True)
class Finding:
    check: str
    level: str
    urn: Optional[str]
    message: str

    def as_dict(self) -> dict:
        return {"check": self.check, "level": self.level, "urn": self.urn, "message": self.message}


# --- small helpers ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def k8s_kind(typ: str) -> tuple[str, str, str]:
    """(group, version, kind) of a pulumi-kubernetes type token; ("", "", "") for anything else."""
    if not typ.startswith("kubernetes:"):
        return "", "", ""
    m = re.match(r"^kubernetes:(.+)/([^/:]+):(\w+)$", typ)
    return (m.group(1), m.group(2), m.group(3)) if m else ("", "", "")


def is_custom_resource(typ: str) -> bool:
    group, _, kind = k8s_kind(typ)
    return bool(kind) and group not in _BUILTIN_GROUPS


_DURATION = re.compile(r"^([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration_seconds(text: str) -> Optional[float]:
    """Seconds of a Go duration ("30m", "1h30m", "90s"); None when Go's time.ParseDuration would reject it."""
    s = str(text).strip()
    if s in ("0",):
        return 0.0
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    if not s:
        return None
    total = 0.0
    while s:
        m = _DURATION.match(s)
        if not m:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        s = s[m.end():]
    return sign * total


def fmt_duration(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s or not (h or m) else "")
    return out


_QUANTITY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9,
             "T": 1e12, "": 1}


def quantity_bytes(q: Any) -> float:
    m = re.match(r"^([0-9.]+)([KMGT]i?|k)?$", str(q).strip())
    if not m:
        return 0.0
    return float(m.group(1)) * _QUANTITY[m.group(2) or ""]


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return default


def scaled(value: Any, total: int, *, round_up: bool, default: str) -> int:
    """An int-or-percent rollout parameter resolved against `total` (Kubernetes intstr semantics)."""
    v = default if value is None else value
    if isinstance(v, str) and v.endswith("%"):
        frac = float(v[:-1]) / 100 * total
        return int(math.ceil(frac)) if round_up else int(math.floor(frac))
    return _int(v)


def _meta(r: dict) -> dict:
    return (r.get("inputs") or {}).get("metadata") or {}


def _annotations(r: dict) -> dict:
    return _meta(r).get("annotations") or {}


def _ns(r: dict) -> str:
    return _meta(r).get("namespace") or "default"


def _obj_name(r: dict) -> str:
    return _meta(r).get("name") or r["name"]


def display(r: dict) -> str:
    """`Deployment llmserving/llama-3-1-70b`, `aws:ecs/service:Service llmserving-prod-llama` ..."""
    group, _, kind = k8s_kind(r["type"])
    if kind == "Release":
        i = r.get("inputs") or {}
        return f"Helm release {i.get('namespace') or 'default'}/{i.get('name') or r['name']}"
    if kind:
        return f"{kind} {_ns(r)}/{_obj_name(r)}"
    return f"{r['type'].rsplit(':', 1)[-1]} {r['name']}"


def chart_key(release: dict) -> str:
    """The chart a release installs, by its last path segment (oci://.../karpenter -> karpenter)."""
    chart = str((release.get("inputs") or {}).get("chart") or "")
    return chart.rstrip("/").rsplit("/", 1)[-1]


# --- the wait graph --------------------------------------------------------------------------------------------

class WaitGraph:
    """Who waits for whom (see the module docstring for the three kinds of edges)."""

    def __init__(self, resources: list[dict]):
        self.by_urn = {r["urn"]: r for r in resources}
        self.edges: dict[str, list[str]] = {}
        for r in resources:
            out = set(r.get("dependencies") or [])
            if r.get("provider"):
                out.add(r["provider"])
            if r.get("parent"):
                out.add(r["parent"])
            self.edges[r["urn"]] = sorted(u for u in out if u != r["urn"])
        self._memo: dict[frozenset, dict[str, frozenset]] = {}

    def reached(self, urn: str, targets: frozenset) -> frozenset:
        """The members of `targets` that `urn` transitively waits for (memoised per target set)."""
        memo = self._memo.setdefault(targets, {})
        if urn in memo:
            return memo[urn]
        # Iterative post-order DFS (deep component trees must not hit the recursion limit).
        stack: list[tuple[str, bool]] = [(urn, False)]
        on_path: set[str] = set()
        while stack:
            node, expanded = stack.pop()
            if node in memo:
                continue
            if expanded:
                on_path.discard(node)
                acc: set[str] = set()
                for d in self.edges.get(node, ()):
                    if d in targets:
                        acc.add(d)
                    acc |= memo.get(d, frozenset())
                memo[node] = frozenset(acc)
                continue
            on_path.add(node)
            stack.append((node, True))
            for d in self.edges.get(node, ()):
                if d not in memo and d not in on_path:
                    stack.append((d, False))
        return memo[urn]


# --- pods and nodes -----------------------------------------------------------------------------------------------

@dataclass
class PodTemplate:
    role: str  # "pod", "leader", "worker"
    labels: dict
    spec: dict

    @property
    def gpus(self) -> int:
        total = 0
        for c in self.spec.get("containers") or []:
            res = c.get("resources") or {}
            total += _int((res.get("limits") or {}).get(GPU, (res.get("requests") or {}).get(GPU, 0)))
        return total


@dataclass
class Workload:
    """A Kubernetes object that runs pods: its templates, replicas and the pods of one replica."""

    r: dict
    kind: str
    templates: list[PodTemplate]
    replicas: int
    pods_per_replica: int  # LeaderWorkerSet: group size

    @property
    def lead(self) -> PodTemplate:
        return self.templates[0]

    @property
    def gpus_per_replica(self) -> int:
        if self.kind == "LeaderWorkerSet" and len(self.templates) == 2:
            return self.templates[0].gpus + (self.pods_per_replica - 1) * self.templates[1].gpus
        return self.lead.gpus * self.pods_per_replica


def workload_of(r: dict) -> Optional[Workload]:
    _, _, kind = k8s_kind(r["type"])
    spec = (r.get("inputs") or {}).get("spec") or {}
    if kind in _POD_KINDS:
        t = spec.get("template") or {}
        tmpl = PodTemplate("pod", (t.get("metadata") or {}).get("labels") or {}, t.get("spec") or {})
        replicas = 1 if kind in ("DaemonSet", "Job") else _int(spec.get("replicas"), 1)
        return Workload(r, kind, [tmpl], replicas, 1)
    if kind == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate") or {}
        worker = lwt.get("workerTemplate") or {}
        leader = lwt.get("leaderTemplate") or worker
        # Labels the LWS controller adds to its pods (LWS v0.10.0 api/leaderworkerset/v1: SetNameLabelKey,
        # WorkerIndexLabelKey; the leader is worker 0), so Services selecting leaders match.
        name = _obj_name(r)
        own = {"leaderworkerset.sigs.k8s.io/name": name}
        templates = [PodTemplate("leader", {**((leader.get("metadata") or {}).get("labels") or {}), **own,
                                            "leaderworkerset.sigs.k8s.io/worker-index": "0"}, leader.get("spec") or {}),
                     PodTemplate("worker", {**((worker.get("metadata") or {}).get("labels") or {}), **own},
                                 worker.get("spec") or {})]
        return Workload(r, kind, templates, _int(spec.get("replicas"), 1), max(1, _int(lwt.get("size"), 1)))
    return None


_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
# Labels every node carries whose value the recording cannot know: a selector on them is not judged.
_UNJUDGED_KEYS = ("kubernetes.io/arch", "kubernetes.io/os", "topology.kubernetes.io/zone",
                  "topology.kubernetes.io/region", "kubernetes.io/hostname")


@dataclass
class NodeSource:
    r: dict
    kind: str  # node-group | node-pool | eks-default
    labels: dict
    requirements: dict  # label key -> allowed values (Karpenter requirements, node group instance types)
    taints: list  # (key, value, effect)
    max_gpus: float  # math.inf when unbounded
    gpus_per_node: int  # 0: unknown (Karpenter picks among types)
    max_nodes: float
    guaranteed_nodes: int  # nodes that exist without any launch (node group desired size)
    # Nodes the source can reach today: a node group without a node autoscaler stays at its desired size.
    reachable_nodes: float = math.inf

    def slots(self, pod_gpus: int, nodes: float) -> float:
        if pod_gpus <= 0:
            return math.inf
        if self.gpus_per_node and self.kind != "node-pool":
            return nodes * (self.gpus_per_node // pod_gpus)
        return math.floor(self.max_gpus / pod_gpus) if self.max_gpus != math.inf else math.inf

    def current_slots(self, pod_gpus: int) -> float:
        """Pods the source holds at the size it can reach without anyone raising it."""
        return self.slots(pod_gpus, min(self.reachable_nodes, self.max_nodes))

    def fits(self, t: PodTemplate) -> bool:
        for key, value in (t.spec.get("nodeSelector") or {}).items():
            if self.labels.get(key) == value:
                continue
            if key in self.requirements and str(value) in self.requirements[key]:
                continue
            if key in _UNJUDGED_KEYS and key not in self.labels:
                continue
            return False
        tolerations = t.spec.get("tolerations") or []
        return all(_tolerated(taint, tolerations) for taint in self.taints if taint[2] in ("NoSchedule", "NoExecute"))

    @property
    def untainted(self) -> bool:
        return not any(t[2] in ("NoSchedule", "NoExecute") for t in self.taints)

    def pod_slots(self, pod_gpus: int) -> float:
        """How many pods of `pod_gpus` GPUs the source holds at its maximum size."""
        return self.slots(pod_gpus, self.max_nodes)

    def guaranteed_slots(self, pod_gpus: int) -> float:
        if pod_gpus <= 0 or not self.gpus_per_node or self.kind == "node-pool":
            return 0
        return self.guaranteed_nodes * (self.gpus_per_node // pod_gpus)

    def describe(self) -> str:
        if self.kind == "node-pool":
            limit = "no GPU limit" if self.max_gpus == math.inf else f"limit {int(self.max_gpus)} GPUs"
            return f"Karpenter NodePool {_obj_name(self.r)} ({limit})"
        if self.kind == "node-group":
            i = self.r.get("inputs") or {}
            return (f"node group {i.get('nodeGroupName') or self.r['name']} (maxSize {int(self.max_nodes)} x "
                    f"{'/'.join(i.get('instanceTypes') or [])}, {self.gpus_per_node} GPUs each)")
        return f"pulumi-eks default node group of {self.r['name']}"


def _tolerated(taint: tuple, tolerations: list) -> bool:
    key, value, effect = taint
    for t in tolerations:
        if t.get("effect") and t.get("effect") != effect:
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" and (not t.get("key") or t.get("key") == key):
            return True
        if op == "Equal" and t.get("key") == key and str(t.get("value") or "") == str(value or ""):
            return True
    return False


def node_sources(resources: list[dict], gpus_of: Callable[[str], int]) -> list[NodeSource]:
    out: list[NodeSource] = []
    autoscaled = any(r["type"] == RELEASE and chart_key(r) in rc.NODE_AUTOSCALER_CHARTS for r in resources)
    for r in resources:
        i = r.get("inputs") or {}
        if r["type"] == NODE_GROUP:
            types = [str(t) for t in i.get("instanceTypes") or []]
            per_node = max((gpus_of(t) for t in types), default=0)
            sc = i.get("scalingConfig") or {}
            labels = {**(i.get("labels") or {}), "eks.amazonaws.com/nodegroup": str(i.get("nodeGroupName") or r["name"])}
            taints = [(t.get("key"), t.get("value"), _EFFECTS.get(str(t.get("effect")), str(t.get("effect"))))
                      for t in i.get("taints") or []]
            max_nodes = _int(sc.get("maxSize"), 0)
            desired = _int(sc.get("desiredSize"), 0)
            out.append(NodeSource(r, "node-group", labels, {"node.kubernetes.io/instance-type": set(types)}, taints,
                                  max_nodes * per_node, per_node, max_nodes, desired,
                                  reachable_nodes=max_nodes if autoscaled else desired))
        elif r["type"] == NODE_POOL:
            tmpl = (i.get("spec") or {}).get("template") or {}
            labels = {**((tmpl.get("metadata") or {}).get("labels") or {}), "karpenter.sh/nodepool": _obj_name(r)}
            reqs = {q.get("key"): {str(v) for v in q.get("values") or []}
                    for q in (tmpl.get("spec") or {}).get("requirements") or [] if q.get("operator") == "In"}
            taints = [(t.get("key"), t.get("value"), t.get("effect")) for t in (tmpl.get("spec") or {}).get("taints") or []]
            limit = ((i.get("spec") or {}).get("limits") or {}).get(GPU)
            max_gpus = math.inf if limit is None else float(_int(limit))
            # Smallest GPU count among the allowed instance types (0: Karpenter may pick any).
            per_node = min((gpus_of(t) for t in reqs.get("node.kubernetes.io/instance-type", ())), default=0)
            out.append(NodeSource(r, "node-pool", labels, reqs, taints, max_gpus, per_node, math.inf, 0))
        elif r["type"] == EKS_COMPONENT and not i.get("skipDefaultNodeGroup"):
            # pulumi-eks creates a default (untainted, CPU) node group unless told not to.
            out.append(NodeSource(r, "eks-default", {}, {}, [], 0, 0, math.inf, 1))
    return out


# --- startup estimates -------------------------------------------------------------------------------------------

@dataclass
class Estimate:
    seconds: float
    parts: list[tuple[str, float]]
    # Init containers that write into a hostPath (e.g. the node-level cache): the pod spec does not bound
    # what they fetch, so their time is not in `seconds` ("init name -> volume").
    unbounded: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return " + ".join(f"{what} {fmt_duration(s)}" for what, s in self.parts if s > 0) or "0s"


def _probe_budget(probe: dict) -> float:
    return (_int(probe.get("initialDelaySeconds"), 0)
            + _int(probe.get("failureThreshold"), 3) * _int(probe.get("periodSeconds"), 10))


def pod_startup(t: PodTemplate, *, fresh_node: bool, image_pull: bool = False) -> Estimate:
    """How long one pod may take from scheduling to Ready.

    Init containers run one after another; a download step is estimated from
    the emptyDir volumes it writes (their sizeLimit bounds what it may fetch)
    at `download_mib_per_second`. Then the slowest container's startupProbe
    budget (initialDelaySeconds + failureThreshold x periodSeconds), or its
    readinessProbe's first success when it has no startupProbe.
    """
    f = rc.FIGURES
    parts: list[tuple[str, float]] = []
    if fresh_node:
        parts.append(("new node", f["node_launch_seconds"].value))
    if fresh_node or image_pull:
        parts.append(("image pull", f["image_pull_seconds"].value))
    sizes = {v.get("name"): quantity_bytes((v.get("emptyDir") or {}).get("sizeLimit", 0))
             for v in t.spec.get("volumes") or [] if "emptyDir" in v and (v.get("emptyDir") or {}).get("medium") != "Memory"}
    host_paths = {v.get("name") for v in t.spec.get("volumes") or [] if "hostPath" in v}
    rate = f["download_mib_per_second"].value * 2 ** 20
    unbounded: list[str] = []
    for c in t.spec.get("initContainers") or []:
        if c.get("restartPolicy") == "Always":  # native sidecar: runs alongside, does not delay start
            continue
        writes = [m.get("name") for m in c.get("volumeMounts") or [] if not m.get("readOnly")]
        written = sum(sizes.get(n, 0) for n in writes)
        if written:
            parts.append((f"init {c.get('name')} (<= {written / 2 ** 30:,.0f} GiB)", written / rate))
        unbounded += [f"init {c.get('name')} -> hostPath volume '{n}'" for n in writes if n in host_paths]
    probe = 0.0
    for c in t.spec.get("containers") or []:
        if c.get("startupProbe"):
            probe = max(probe, _probe_budget(c["startupProbe"]))
        elif c.get("readinessProbe"):
            rp = c["readinessProbe"]
            probe = max(probe, _int(rp.get("initialDelaySeconds"), 0) + _int(rp.get("periodSeconds"), 10))
    parts.append(("startupProbe", probe))
    return Estimate(sum(s for _, s in parts), parts, unbounded)


# --- the checks ----------------------------------------------------------------------------------------------------

class Context:
    def __init__(self, resources: list[dict], gpus_of: Callable[[str], int],
                 unknown: Optional[dict[str, list[str]]] = None):
        self.resources = resources
        # Input paths whose value is unknown (first deploy), per URN; the resources carry them stripped.
        self.unknown: dict[str, list[str]] = unknown or {}
        # (urn, path) of unknown inputs a check judged anyway (through dependencies).
        self.judged: set[tuple[str, str]] = set()
        self.graph = WaitGraph(resources)
        self.sources = node_sources(resources, gpus_of)
        self.gpus_of = gpus_of
        self.workloads = [w for w in (workload_of(r) for r in resources) if w is not None]
        self._by_obj = {(k8s_kind(w.r["type"])[2], _ns(w.r), _obj_name(w.r)): w for w in self.workloads}
        self.autoscalers = list(self._autoscalers())

    def workload(self, kind: str, namespace: str, name: str) -> Optional[Workload]:
        return self._by_obj.get((kind, namespace, name))

    def sources_for(self, t: PodTemplate) -> list[NodeSource]:
        return [s for s in self.sources if s.fits(t)]

    def _autoscalers(self) -> Iterable[tuple[dict, Workload, int]]:
        for r in self.resources:
            group, _, kind = k8s_kind(r["type"])
            spec = (r.get("inputs") or {}).get("spec") or {}
            if group == "keda.sh" and kind == "ScaledObject":
                ref = spec.get("scaleTargetRef") or {}
                max_r = _int(spec.get("maxReplicaCount"), 100)  # KEDA default maxReplicaCount
            elif group == "autoscaling" and kind == "HorizontalPodAutoscaler":
                ref = spec.get("scaleTargetRef") or {}
                max_r = _int(spec.get("maxReplicas"), 1)
            else:
                continue
            w = self.workload(ref.get("kind") or "Deployment", _ns(r), str(ref.get("name") or ""))
            if w is not None:
                yield r, w, max_r

    def max_replicas(self, w: Workload) -> tuple[int, Optional[dict]]:
        best = (w.replicas, None)
        for r, target, m in self.autoscalers:
            if target is w and m > best[0]:
                best = (m, r)
        return best


def _needs_fresh_node(ctx: Context, w: Workload, pods: int) -> bool:
    """Whether some of `pods` pods of `w` can only start on a node launched for them."""
    if w.lead.gpus <= 0:
        return False
    sources = ctx.sources_for(w.lead)
    return sum(s.guaranteed_slots(w.lead.gpus) for s in sources) < pods


def _group_startup(w: Workload, *, fresh: bool, image_pull: bool = False) -> Estimate:
    """The slowest pod of one replica (a LeaderWorkerSet group starts its pods together)."""
    ests = [pod_startup(t, fresh_node=fresh, image_pull=image_pull) for t in w.templates]
    return max(ests, key=lambda e: e.seconds)


def _timeouts(r: dict, default: float) -> tuple[dict[str, float], list[Finding]]:
    """Effective create/update timeouts of a Kubernetes object, and findings for unparsable ones."""
    findings: list[Finding] = []
    ct = r.get("customTimeouts") or {}
    out: dict[str, float] = {}
    ann = _annotations(r).get(TIMEOUT_SECONDS)
    for op in ("create", "update"):
        text = ct.get(op)
        if text:
            secs = go_duration_seconds(text)
            if secs is None:
                findings.append(Finding("custom-timeout-invalid", MANDATORY, r["urn"],
                                        f"{display(r)}: custom timeout {op}={text!r} is not a Go duration (e.g. 45m, "
                                        f"1h30m); the engine rejects the registration (pulumi/pulumi "
                                        f"pkg/resource/deploy/source_eval.go: unable to parse customTimeout Value)"))
                secs = default
            out[op] = secs
        elif ann is not None and _int(ann, -1) >= 0:
            out[op] = float(_int(ann))
        else:
            out[op] = default
    return out, findings


def _rollout(w: Workload, replicas: int) -> tuple[int, int, int]:
    """(steps, surge, unavailable) of a rolling update of `replicas` replicas, in replica units."""
    spec = (w.r.get("inputs") or {}).get("spec") or {}
    if w.kind == "Deployment":
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 1, 0, replicas
        ru = strategy.get("rollingUpdate") or {}
        surge = scaled(ru.get("maxSurge"), replicas, round_up=True, default="25%")
        unav = scaled(ru.get("maxUnavailable"), replicas, round_up=False, default="25%")
    elif w.kind == "LeaderWorkerSet":
        ru = ((spec.get("rolloutStrategy") or {}).get("rollingUpdateConfiguration") or {})
        surge = scaled(ru.get("maxSurge"), replicas, round_up=True, default="0")
        unav = scaled(ru.get("maxUnavailable"), replicas, round_up=False, default="1")
    elif w.kind == "StatefulSet":
        if (spec.get("podManagementPolicy") or "OrderedReady") == "Parallel":
            return 1, 0, replicas
        return replicas, 0, 1
    else:
        return 1, 0, replicas
    step = max(1, surge + unav)
    return int(math.ceil(replicas / step)), surge, unav


def is_awaited(r: dict) -> bool:
    """Whether pulumi-kubernetes waits for the object to become ready (see readiness_catalog)."""
    group, _, kind = k8s_kind(r["type"])
    if kind == "Release":
        return (r.get("inputs") or {}).get("skipAwait") is not True
    if str(_annotations(r).get(SKIP_AWAIT, "")).lower() == "true":
        return False
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod") and group in ("apps", "batch", "core"):
        return True
    if kind == "Service" and group == "core":
        return True
    return is_custom_resource(r["type"]) and bool(_annotations(r).get(WAIT_FOR))


def check_await(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    budgets: dict[str, tuple[Estimate, Estimate]] = {}  # workload urn -> (create, update) pod-side estimates
    for w in ctx.workloads:
        # Create: all replicas start together, on nodes launched for them unless the pool's
        # guaranteed nodes hold them; GPU nodes of a new stack have never pulled the (large) image.
        fresh = _needs_fresh_node(ctx, w, w.replicas * w.pods_per_replica)
        create = _group_startup(w, fresh=fresh, image_pull=w.lead.gpus > 0)
        # Update: one rollout step after the other; a surge pod beyond the guaranteed nodes needs a new node.
        # Later steps reuse the node the replaced pods freed (Karpenter keeps an empty node for consolidateAfter).
        steps, surge, _ = _rollout(w, w.replicas)
        surge_fresh = _needs_fresh_node(ctx, w, (w.replicas + surge) * w.pods_per_replica)
        first = _group_startup(w, fresh=surge_fresh)
        rest = _group_startup(w, fresh=False)
        parts = [(f"first rollout step ({first.explain()})", first.seconds)]
        if steps > 1:
            parts.append((f"{steps - 1} more step(s) x ({rest.explain()})", (steps - 1) * rest.seconds))
        update = Estimate(sum(p for _, p in parts), parts)
        budgets[w.r["urn"]] = (create, update)
        for what in sorted(set(create.unbounded)):
            findings.append(Finding(
                "download-unbounded", ADVISORY, w.r["urn"],
                f"{display(w.r)}: {what} writes into a directory on the node whose size the pod spec does not bound "
                f"(no emptyDir sizeLimit): its first start on a node may take longer than the estimate "
                f"({create.explain()}), which leaves that copy out"))

    for r in ctx.resources:
        group, _, kind = k8s_kind(r["type"])
        if not kind or kind == "Release":
            continue
        if str(_annotations(r).get(SKIP_AWAIT, "")).lower() == "true":
            continue
        w = ctx.workload(kind, _ns(r), _obj_name(r))
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job") and w is not None:
            default = rc.AWAIT_DEFAULT_SECONDS[kind].value
            create, update = budgets[r["urn"]]
            if kind == "Job":
                deadline = _int(((r.get("inputs") or {}).get("spec") or {}).get("activeDeadlineSeconds"), 0)
                if deadline:
                    create = update = Estimate(deadline, [("activeDeadlineSeconds", deadline)])
            source = rc.AWAIT_DEFAULT_SECONDS[kind].source
        elif kind == "LeaderWorkerSet" and w is not None and _annotations(r).get(WAIT_FOR):
            default = rc.AWAIT_DEFAULT_SECONDS["CustomResource"].value
            create, update = budgets[r["urn"]]
            source = rc.AWAIT_DEFAULT_SECONDS["CustomResource"].source + " with pulumi.com/waitFor"
        elif kind == "Service" and group == "core":
            spec = (r.get("inputs") or {}).get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector or spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
                continue  # service.go shouldWaitForPods: no wait for pods
            selected = [x for x in ctx.workloads if _ns(x.r) == _ns(r)
                        and any(selector.items() <= t.labels.items() for t in x.templates)]
            if not selected:
                continue
            slowest = max(selected, key=lambda x: budgets[x.r["urn"]][0].seconds)
            create = update = budgets[slowest.r["urn"]][0]
            default = rc.AWAIT_DEFAULT_SECONDS["Service"].value
            source = rc.AWAIT_DEFAULT_SECONDS["Service"].source + f" (waits for the ready endpoints of {display(slowest.r)})"
        else:
            continue
        timeouts, bad = _timeouts(r, default)
        findings += bad
        for op, need in (("create", create), ("update", update)):
            have = timeouts[op]
            if need.seconds > have:
                findings.append(Finding(
                    "await-timeout", MANDATORY, r["urn"],
                    f"pulumi-kubernetes waits {fmt_duration(have)} for {display(r)} to become ready on {op} "
                    f"({source}); its pods may need {fmt_duration(need.seconds)} ({need.explain()}): the {op} fails "
                    f"with a timeout. Set custom_timeouts {op}>={fmt_duration(need.seconds)} or annotate "
                    f"{SKIP_AWAIT}: \"true\""))

    for r in ctx.resources:
        if r["type"] != RELEASE:
            continue
        i = r.get("inputs") or {}
        if i.get("skipAwait") is True:
            continue
        needs = rc.CHART_NEEDS.get(chart_key(r), rc.UNKNOWN_CHART)
        timeout = _int(i.get("timeout"), 0) or rc.HELM_RELEASE_DEFAULT_TIMEOUT.value
        if timeout < needs.first_install_seconds:
            rollback = "; atomic: Helm uninstalls it again" if i.get("atomic") else ""
            findings.append(Finding(
                "helm-timeout", MANDATORY, r["urn"],
                f"{display(r)} waits for its resources with timeout {fmt_duration(timeout)} "
                f"({rc.HELM_RELEASE_DEFAULT_TIMEOUT.source} when unset); a first install of chart {chart_key(r)} "
                f"needs {fmt_duration(needs.first_install_seconds)} ({needs.source}): the install fails{rollback}. "
                f"Set the release's timeout (custom timeouts do not apply to helm.v3.Release)"))
        ct = r.get("customTimeouts") or {}
        ct_create = go_duration_seconds(ct["create"]) if ct.get("create") else None
        if ct_create and ct_create > timeout:
            findings.append(Finding(
                "helm-timeout", ADVISORY, r["urn"],
                f"{display(r)} has custom timeouts (create {ct['create']}) but helm.v3.Release ignores them and "
                f"waits {fmt_duration(timeout)} (its `timeout` input): set `timeout` instead"))
    return findings


def check_order(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    g = ctx.graph
    res = ctx.resources

    # ECS services and the listener rules that attach their target groups.
    attachers: dict[str, list[str]] = {}
    for r in res:
        i = r.get("inputs") or {}
        actions = i.get("actions") if r["type"] == LISTENER_RULE else i.get("defaultActions") if r["type"] == LISTENER else None
        for a in actions or []:
            arns = [a.get("targetGroupArn")] + [t.get("arn") for t in ((a.get("forward") or {}).get("targetGroups") or [])]
            for arn in arns:
                if arn:
                    attachers.setdefault(str(arn), []).append(r["urn"])
    all_attachers = frozenset(u for us in attachers.values() for u in us)
    target_groups = {r["urn"]: r for r in res if r["type"] == TARGET_GROUP}
    attached_by_dep: dict[str, list[str]] = {}
    for r in res:
        if r["type"] in (LISTENER_RULE, LISTENER):
            for d in r.get("dependencies") or []:
                if d in target_groups:
                    attached_by_dep.setdefault(d, []).append(r["urn"])
    all_attachers |= frozenset(u for us in attached_by_dep.values() for u in us)
    for r in res:
        if r["type"] != ECS_SERVICE:
            continue
        waited = g.reached(r["urn"], all_attachers)
        unknown = set(ctx.unknown.get(r["urn"], ()))
        for n, lb in enumerate((r.get("inputs") or {}).get("loadBalancers") or []):
            arn = str(lb.get("targetGroupArn") or "")
            path = f"loadBalancers[{n}].targetGroupArn"
            if not arn and path in unknown:
                # Unknown until the target group exists (first deploy): the service's dependencies name it,
                # and the rules that forward to it depend on it the same way.
                tgs = [d for d in r.get("dependencies") or [] if d in target_groups]
                if len(tgs) != 1:
                    continue  # reported as could-not-judge
                ctx.judged.add((r["urn"], path))
                arn = f"target group {target_groups[tgs[0]]['name']}"
                options, tg = attached_by_dep.get(tgs[0], []), f"targetgroup/{target_groups[tgs[0]]['name']}"
            elif not arn:
                continue
            else:
                options = attachers.get(arn, [])
                tg = arn.rsplit(":", 1)[-1]
            if not options:
                findings.append(Finding(
                    "ecs-listener-order", MANDATORY, r["urn"],
                    f"ECS service {r['name']} registers tasks in {tg}, which no listener or listener rule of this "
                    f"stack forwards to: CreateService fails ({rc.ECS_LISTENER_SOURCE})"))
            elif not waited & set(options):
                names = ", ".join(sorted(g.by_urn[u]["name"] for u in options))
                findings.append(Finding(
                    "ecs-listener-order", MANDATORY, r["urn"],
                    f"ECS service {r['name']} registers tasks in {tg} but does not wait for {names}, which attaches "
                    f"it to the load balancer: on a first deploy CreateService can run first and fails "
                    f"({rc.ECS_LISTENER_SOURCE}). Make the service depend on the listener rule"))

    # Auto Scaling groups behind ECS capacity providers.
    asgs = {r["urn"]: r for r in res if r["type"] == ASG}
    for cp in res:
        if cp["type"] != CAPACITY_PROVIDER:
            continue
        backing = [asgs[u] for u in cp.get("dependencies") or [] if u in asgs]
        if not backing:
            arn = str((((cp.get("inputs") or {}).get("autoScalingGroupProvider") or {}).get("autoScalingGroupArn")) or "")
            backing = [a for a in asgs.values() if (a.get("inputs") or {}).get("name")
                       and arn.endswith("/" + str(a["inputs"]["name"]))]
        for a in backing:
            wait = (a.get("inputs") or {}).get("waitForCapacityTimeout")
            if str(wait) != "0" and go_duration_seconds(str(wait)) != 0:
                shown = "unset (default 10m)" if wait is None else repr(wait)
                desired = (a.get("inputs") or {}).get("desiredCapacity")
                findings.append(Finding(
                    "asg-capacity-wait", MANDATORY, a["urn"],
                    f"Auto Scaling group {a['name']} backs ECS capacity provider {cp['name']} but waitForCapacityTimeout "
                    f"is {shown}: `pulumi up` blocks until {desired} GPU instances are InService and fails after the "
                    f"timeout when capacity is short ({rc.ASG_CAPACITY_SOURCE}); ECS managed scaling owns capacity: "
                    f"set waitForCapacityTimeout \"0\""))

    # Pods need a node source; releases whose charts run Deployments too.
    source_urns = frozenset(s.r["urn"] for s in ctx.sources)
    by_urn = {s.r["urn"]: s for s in ctx.sources}
    for w in ctx.workloads:
        if w.kind == "DaemonSet":
            continue  # a DaemonSet with no matching node is ready (pulumi-kubernetes daemonset.go, helm ready.go)
        awaited = is_awaited(w.r)
        level = MANDATORY if awaited else ADVISORY
        consequence = ("stay Pending while pulumi-kubernetes waits for them" if awaited else
                       "stay Pending until such a node joins (the object is not awaited, so `pulumi up` itself "
                       "does not fail)")
        fitting = ctx.sources_for(w.lead)
        if not fitting:
            sel = w.lead.spec.get("nodeSelector") or {}
            findings.append(Finding(
                "no-node-source", MANDATORY, w.r["urn"],
                f"no node group or Karpenter NodePool of this stack fits the pods of {display(w.r)} (nodeSelector "
                f"{json.dumps(sel, sort_keys=True)}, tolerations {len(w.lead.spec.get('tolerations') or [])}): they "
                f"stay Pending for good"))
            continue
        waited = g.reached(w.r["urn"], source_urns)
        if not waited & {s.r["urn"] for s in fitting}:
            findings.append(Finding(
                "node-source-order", level, w.r["urn"],
                f"{display(w.r)} does not wait for a node source its pods fit ({', '.join(s.describe() for s in fitting)}): "
                f"on a first deploy its pods are created before any such node can exist and {consequence}"))
    for r in res:
        if r["type"] != RELEASE:
            continue
        needs = rc.CHART_NEEDS.get(chart_key(r), rc.UNKNOWN_CHART)
        if needs.workloads != "deployment" or (r.get("inputs") or {}).get("skipAwait") is True:
            continue
        fitting = [s for s in ctx.sources if s.untainted and (s.kind != "node-pool" or not needs.needs_managed_nodes)]
        waited = g.reached(r["urn"], source_urns)
        if not waited & {s.r["urn"] for s in fitting}:
            kinds = "a managed node group (its controller cannot run on nodes it launches)" if needs.needs_managed_nodes \
                else "a node group or NodePool without taints"
            have = ", ".join(by_urn[u].describe() for u in sorted(waited)) or "none"
            findings.append(Finding(
                "node-source-order", MANDATORY, r["urn"],
                f"{display(r)} installs chart {chart_key(r)}, whose Deployments helm waits for, but it does not wait "
                f"for {kinds} (node sources it waits for: {have}): on a first deploy its pods stay Pending and the "
                f"install times out after {fmt_duration(_int((r.get('inputs') or {}).get('timeout'), 0) or rc.HELM_RELEASE_DEFAULT_TIMEOUT.value)}"))

    # Pods (and chart controllers) that use a service account with an EKS Pod Identity association wait for it.
    associations: dict[tuple[str, str], list[str]] = {}
    for r in res:
        if r["type"] == "aws:eks/podIdentityAssociation:PodIdentityAssociation":
            i = r.get("inputs") or {}
            associations.setdefault((str(i.get("namespace")), str(i.get("serviceAccount"))), []).append(r["urn"])
    association_urns = frozenset(u for us in associations.values() for u in us)
    users: list[tuple[dict, str, str]] = []
    for w in ctx.workloads:
        for sa in {t.spec.get("serviceAccountName") for t in w.templates} - {None}:
            users.append((w.r, _ns(w.r), str(sa)))
    for r in res:
        if r["type"] == RELEASE:
            i = r.get("inputs") or {}
            sa = ((i.get("values") or {}).get("serviceAccount") or {}).get("name")
            if sa:
                users.append((r, str(i.get("namespace") or "default"), str(sa)))
    for r, ns, sa in users:
        options = associations.get((ns, sa))
        if options and not g.reached(r["urn"], association_urns) & set(options):
            awaited = is_awaited(r)
            findings.append(Finding(
                "pod-identity-order", MANDATORY if awaited else ADVISORY, r["urn"],
                f"{display(r)} runs pods as service account {ns}/{sa} but does not wait for its EKS Pod Identity "
                f"association ({', '.join(g.by_urn[u]['name'] for u in options)}): pods admitted before it exists get "
                f"no AWS credentials and keep failing until recreated ({rc.POD_IDENTITY_SOURCE})"
                + (": the await times out" if awaited else "")))

    # Namespaced objects wait for the Namespace the program creates for them.
    namespaces = {str(_meta(r).get("name")): r["urn"] for r in res
                  if r["type"] == "kubernetes:core/v1:Namespace" and _meta(r).get("name")}
    ns_urns = frozenset(namespaces.values())
    for r in res:
        group, _, kind = k8s_kind(r["type"])
        if not kind or kind == "Namespace":
            continue
        if kind == "Release":
            i = r.get("inputs") or {}
            ns = str(i.get("namespace") or "default")
            if i.get("createNamespace"):
                continue
        else:
            ns = _meta(r).get("namespace")
        target = namespaces.get(str(ns)) if ns else None
        if target and target not in g.reached(r["urn"], ns_urns):
            findings.append(Finding(
                "namespace-order", MANDATORY, r["urn"],
                f"{display(r)} goes into namespace {ns}, which this stack creates ({g.by_urn[target]['name']}), but "
                f"does not wait for it: on a first deploy the create can run first and fails with "
                f"'namespaces \"{ns}\" not found'"))

    # Custom resources wait for what installs their CRD.
    installers: dict[str, list[str]] = {}
    for r in res:
        if r["type"] == RELEASE:
            for group, chart in rc.CRD_CHARTS.items():
                if chart_key(r) == chart:
                    installers.setdefault(group, []).append(r["urn"])
        elif r["type"] == CRD:
            group = ((r.get("inputs") or {}).get("spec") or {}).get("group")
            if group:
                installers.setdefault(str(group), []).append(r["urn"])
    installer_urns = frozenset(u for us in installers.values() for u in us)
    for r in res:
        if not is_custom_resource(r["type"]):
            continue
        group, version, kind = k8s_kind(r["type"])
        options = installers.get(group, [])
        if not options:
            known = f" (chart {rc.CRD_CHARTS[group]})" if group in rc.CRD_CHARTS else ""
            findings.append(Finding(
                "crd-installer-unknown", ADVISORY, r["urn"],
                f"{display(r)}: nothing in this stack installs the CRD of {group}{known}; the create fails with "
                f"\"no matches for kind {kind} in version {group}/{version}\" unless the cluster already has it"))
            continue
        if not g.reached(r["urn"], installer_urns) & set(options):
            names = ", ".join(display(g.by_urn[u]) for u in options)
            findings.append(Finding(
                "crd-order", MANDATORY, r["urn"],
                f"{display(r)} does not wait for {names}, which installs the CRD of {group}: on a first deploy the "
                f"create can run first and fails with \"no matches for kind {kind} in version {group}/{version}\""))
    return findings


def check_capacity(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    pools: dict[tuple, list[tuple[Workload, int]]] = {}
    for w in ctx.workloads:
        if w.lead.gpus <= 0 or w.kind in ("DaemonSet", "Job"):
            continue
        sources = ctx.sources_for(w.lead)
        if not sources:
            continue  # reported by no-node-source
        pod_gpus = max(t.gpus for t in w.templates)
        at_max = sum(s.pod_slots(pod_gpus) for s in sources)
        if at_max == math.inf:
            continue
        now = sum(s.current_slots(pod_gpus) for s in sources)
        max_slots = math.floor(at_max / w.pods_per_replica)
        now_slots = math.floor(now / w.pods_per_replica)
        pool = " + ".join(s.describe() for s in sources)
        key = tuple(sorted(s.r["urn"] for s in sources))
        max_r, scaler = ctx.max_replicas(w)
        pools.setdefault(key, []).append((w, max_r))
        unit = f"{w.pods_per_replica} pods x {pod_gpus} GPUs" if w.pods_per_replica > 1 else f"{pod_gpus} GPUs"
        if scaler is not None and max_r > max_slots:
            findings.append(Finding(
                "autoscaler-capacity", MANDATORY, scaler["urn"],
                f"{display(scaler)} scales {display(w.r)} to {max_r} replicas ({unit} each, "
                f"{max_r * w.gpus_per_replica} GPUs); its pool {pool} holds {max_slots} such replicas at its "
                f"maximum: replicas beyond {max_slots} stay Pending (FailedScheduling) under load"))
        elif scaler is None and w.replicas > max_slots:
            findings.append(Finding(
                "autoscaler-capacity", MANDATORY, w.r["urn"],
                f"{display(w.r)} runs {w.replicas} replicas ({unit} each) but its pool {pool} holds {max_slots} "
                f"at its maximum: the rest stay Pending"))
        if scaler is not None and now_slots < min(max_r, max_slots):
            findings.append(Finding(
                "node-group-static", ADVISORY, scaler["urn"],
                f"{display(scaler)} scales {display(w.r)} up to {max_r} replicas, but {pool} holds {now_slots} at its "
                f"desired size and nothing in this stack scales a managed node group ({rc.NODE_AUTOSCALER_SOURCE}; "
                f"no {'/'.join(rc.NODE_AUTOSCALER_CHARTS)} release): replicas beyond {now_slots} stay Pending"))

        # Rollout headroom: a surge needs room beyond the replicas, at the pool's current size and at its maximum.
        for replicas, room, where in ((w.replicas, now_slots, "at its current size"),
                                      (max_r, max_slots, "at its autoscaler maximum" if scaler is not None
                                       else "at the pool's maximum")):
            _, surge, unav = _rollout(w, replicas)
            if surge > 0 and unav == 0 and replicas + surge > room:
                findings.append(Finding(
                    "rollout-headroom", MANDATORY, w.r["urn"],
                    f"a rolling update of {display(w.r)} {where} ({replicas} replicas, {unit} each) adds {surge} surge "
                    f"replica(s) (maxSurge {surge}, maxUnavailable 0) but its pool {pool} holds {room} there: the "
                    f"surge pod stays Pending and the rollout never progresses (no old pod goes while maxUnavailable "
                    f"is 0); use maxSurge 0 with maxUnavailable 1, or leave a spare node"))
                break

    for key, members in pools.items():
        sources = [next(s for s in ctx.sources if s.r["urn"] == u) for u in key]
        total_slots_gpus = sum(s.max_gpus for s in sources)
        need = sum(m * w.gpus_per_replica for w, m in members)
        if len(members) > 1 and need > total_slots_gpus:
            names = ", ".join(f"{display(w.r)} x{m}" for w, m in members)
            findings.append(Finding(
                "pool-shared-capacity", ADVISORY, sources[0].r["urn"],
                f"at their maxima the workloads on {' + '.join(s.describe() for s in sources)} need {need} GPUs "
                f"({names}); the pool holds {int(total_slots_gpus)}: whichever scales last stays Pending"))
        for w, m in members:
            steps, surge, unav = _rollout(w, m)
            if not (surge > 0 and unav == 0) or len(members) < 2:
                continue
            others = sum(om * ow.gpus_per_replica for ow, om in members if ow is not w)
            pod_gpus = max(t.gpus for t in w.templates)
            mine = (m + surge) * w.gpus_per_replica
            fits_alone = (m + surge) * w.pods_per_replica <= sum(s.pod_slots(pod_gpus) for s in sources)
            if fits_alone and mine + others > total_slots_gpus:
                findings.append(Finding(
                    "rollout-headroom-shared", ADVISORY, w.r["urn"],
                    f"a rolling update of {display(w.r)} at {m} replicas needs {surge} surge replica(s); with the other "
                    f"workloads on its pool at their maxima ({others} GPUs) the pool's {int(total_slots_gpus)} GPUs "
                    f"leave no room: the rollout stalls until load drops"))
    return findings


def _task_gpus(td: dict) -> int:
    try:
        containers = json.loads((td.get("inputs") or {}).get("containerDefinitions") or "[]")
    except (TypeError, json.JSONDecodeError):
        return 0
    return sum(_int(q.get("value")) for c in containers for q in c.get("resourceRequirements") or []
               if q.get("type") == "GPU")


def check_ecs_capacity(ctx: Context) -> list[Finding]:
    """ECS: Application Auto Scaling's maximum task count x GPUs per task vs the capacity provider's group."""
    findings: list[Finding] = []
    by_type: dict[str, list[dict]] = {}
    for r in ctx.resources:
        by_type.setdefault(r["type"], []).append(r)
    urns = ctx.graph.by_urn
    providers = {str((cp.get("inputs") or {}).get("name")): cp for cp in by_type.get(CAPACITY_PROVIDER, [])}
    targets = {str((t.get("inputs") or {}).get("resourceId")): t for t in by_type.get("aws:appautoscaling/target:Target", [])
               if (t.get("inputs") or {}).get("scalableDimension") == "ecs:service:DesiredCount"}
    for svc in by_type.get(ECS_SERVICE, []):
        i = svc.get("inputs") or {}
        tds = [urns[u] for u in svc.get("dependencies") or [] if urns.get(u, {}).get("type") == "aws:ecs/taskDefinition:TaskDefinition"]
        gpus = max((_task_gpus(td) for td in tds), default=0)
        if gpus <= 0:
            continue
        cluster = str(i.get("cluster") or "").rsplit("/", 1)[-1]
        target = targets.get(f"service/{cluster}/{i.get('name')}")
        if target is None and "cluster" in ctx.unknown.get(svc["urn"], ()):
            # The cluster ARN (and the target's resourceId) is unknown until the cluster exists: the
            # target's resourceId is built from the service, so it depends on it.
            dependents = [t for t in by_type.get("aws:appautoscaling/target:Target", [])
                          if svc["urn"] in (t.get("dependencies") or [])
                          and (t.get("inputs") or {}).get("scalableDimension") == "ecs:service:DesiredCount"]
            if len(dependents) == 1:
                target = dependents[0]
                ctx.judged.add((svc["urn"], "cluster"))
        max_tasks = _int((target.get("inputs") or {}).get("maxCapacity")) if target else _int(i.get("desiredCount"), 1)
        slots, pools = 0.0, []
        for strategy in i.get("capacityProviderStrategies") or []:
            cp = providers.get(str(strategy.get("capacityProvider")))
            if cp is None:
                continue
            for a in (urns[u] for u in cp.get("dependencies") or [] if urns.get(u, {}).get("type") == ASG):
                ai = a.get("inputs") or {}
                lt = ((ai.get("mixedInstancesPolicy") or {}).get("launchTemplate") or {})
                types = [str(o.get("instanceType")) for o in lt.get("overrides") or [] if o.get("instanceType")]
                per = min((ctx.gpus_of(t) for t in types), default=0)
                slots += _int(ai.get("maxSize")) * (per // gpus)
                pools.append(f"Auto Scaling group {a['name']} (maxSize {_int(ai.get('maxSize'))} x "
                             f"{'/'.join(types) or '?'}, {per} GPUs each)")
        if pools and max_tasks > slots:
            what = f"Application Auto Scaling target {target['name']} scales" if target else "it runs"
            findings.append(Finding(
                "autoscaler-capacity", MANDATORY, (target or svc)["urn"],
                f"ECS service {i.get('name')}: {what} up to {max_tasks} tasks of {gpus} GPUs; "
                f"{' + '.join(pools)} place {int(slots)} such tasks at most: the rest stay PROVISIONING/pending "
                f"under load"))
    return findings


def check_names(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    created: dict[tuple[str, str, str], dict] = {}
    for r in ctx.resources:
        group, _, kind = k8s_kind(r["type"])
        if kind and _meta(r).get("name"):
            created[(kind, _ns(r), _meta(r)["name"])] = r
    for r in ctx.resources:
        group, _, kind = k8s_kind(r["type"])
        spec = (r.get("inputs") or {}).get("spec") or {}
        ns, name = _ns(r), _obj_name(r)
        if kind == "LeaderWorkerSet":
            replicas = _int(spec.get("replicas"), 1)
            policy = (spec.get("networkConfig") or {}).get("subdomainPolicy") or "Shared"
            services = [name] if policy == "Shared" else [f"{name}-{i}" for i in range(replicas)]
            wanted = [("Service", s, "headless Service (pods find the leader through it: LWS_LEADER_ADDRESS)")
                      for s in services]
            wanted += [("StatefulSet", n, "StatefulSet") for n in [name] + [f"{name}-{i}" for i in range(replicas)]]
            for kind2, n, what in wanted:
                other = created.get((kind2, ns, n))
                if other is not None:
                    findings.append(Finding(
                        "controller-name-collision", MANDATORY, other["urn"],
                        f"{display(r)} makes the LWS controller create the {what} {ns}/{n}, and the program creates "
                        f"{display(other)} with that name: the controller skips its own ({rc.LWS_SOURCE}), so the "
                        f"group is resolved through a Service that is not headless and does not publish not-ready "
                        f"pods; the Ray group never forms. Name the program's object differently"))
        elif group == "keda.sh" and kind == "ScaledObject":
            hpa = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("name") or f"keda-hpa-{name}"
            other = created.get(("HorizontalPodAutoscaler", ns, hpa))
            if other is not None:
                findings.append(Finding(
                    "controller-name-collision", MANDATORY, other["urn"],
                    f"{display(r)} makes KEDA create HorizontalPodAutoscaler {ns}/{hpa} ({rc.KEDA_HPA_SOURCE}), and the "
                    f"program creates {display(other)} with that name: KEDA and Pulumi overwrite each other's HPA"))
    return findings


WAF_LOG_PREFIX = "aws-waf-logs-"


def check_posture(ctx: Context) -> list[Finding]:
    """What the first `up` leaves open or refuses, outside the workloads:

    - `default-sg-open`: every VPC's default security group is managed with no rules. AWS creates it
      admitting all traffic from its members and all egress (Amazon VPC User Guide, "Default security
      groups for your VPCs"); Terraform's aws_default_security_group (bridged by pulumi-aws 7.51.1)
      revokes every rule it is not given. CIS AWS Foundations 5.4, Security Hub EC2.2, Checkov CKV2_AWS_12.
    - `waf-logging`: every web ACL logs, to a CloudWatch log group whose name starts with
      `aws-waf-logs-` (AWS WAF Developer Guide, "CloudWatch Logs": WAF refuses any other name, so
      PutLoggingConfiguration fails the `up`), with the `authorization` header redacted (advisory: the API
      key would be logged). Security Hub WAF.11, Checkov CKV2_AWS_31.
    """
    findings: list[Finding] = []
    by_type: dict[str, list[dict]] = {}
    for r in ctx.resources:
        by_type.setdefault(r["type"], []).append(r)
    g = ctx.graph
    dsgs = by_type.get("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", [])
    for vpc in by_type.get("aws:ec2/vpc:Vpc", []):
        mine = [d for d in dsgs if vpc["urn"] in (d.get("dependencies") or [])]
        if not mine:
            findings.append(Finding(
                "default-sg-open", MANDATORY, vpc["urn"],
                f"VPC {vpc['name']}: its default security group is not managed (no aws.ec2.DefaultSecurityGroup), so it "
                f"keeps AWS's rules: all traffic between its members and all egress; anything launched without a "
                f"security group lands in it (CIS AWS 5.4). Manage it with no ingress and no egress"))
            continue
        for d in mine:
            i = d.get("inputs") or {}
            rules = [f"{k} {len(i.get(k) or [])} rule(s)" for k in ("ingress", "egress") if i.get(k)]
            if rules:
                findings.append(Finding(
                    "default-sg-open", MANDATORY, d["urn"],
                    f"the default security group of VPC {vpc['name']} keeps {', '.join(rules)}: manage it with none "
                    f"(CIS AWS 5.4); give workloads their own groups"))
    log_groups = {r["urn"]: r for r in by_type.get("aws:cloudwatch/logGroup:LogGroup", [])}
    configs = by_type.get("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration", [])
    for acl in by_type.get("aws:wafv2/webAcl:WebAcl", []):
        mine = [c for c in configs if acl["urn"] in (c.get("dependencies") or [])
                or (c.get("inputs") or {}).get("resourceArn") == (acl.get("inputs") or {}).get("arn")]
        if not mine:
            findings.append(Finding(
                "waf-logging", MANDATORY, acl["urn"],
                f"web ACL {acl['name']} has no logging configuration: blocked and rate-limited requests leave no "
                f"record (Security Hub WAF.11). Log to a CloudWatch log group named {WAF_LOG_PREFIX}*"))
            continue
        for c in mine:
            i = c.get("inputs") or {}
            groups = [log_groups[u] for u in c.get("dependencies") or [] if u in log_groups]
            names = [str((lg.get("inputs") or {}).get("name") or "") for lg in groups]
            names += [str(d).rsplit(":log-group:", 1)[1].split(":", 1)[0] for d in i.get("logDestinationConfigs") or []
                      if ":log-group:" in str(d)]
            bad = sorted({n for n in names if n and not n.startswith(WAF_LOG_PREFIX)})
            if bad:
                findings.append(Finding(
                    "waf-logging", MANDATORY, c["urn"],
                    f"web ACL {acl['name']} logs to log group {', '.join(bad)}: AWS WAF accepts only log groups named "
                    f"{WAF_LOG_PREFIX}* and PutLoggingConfiguration fails the deploy (WAFInvalidParameterException)"))
            redacted = {str(((f or {}).get("singleHeader") or {}).get("name", "")).lower()
                        for f in i.get("redactedFields") or []}
            if "authorization" not in redacted:
                findings.append(Finding(
                    "waf-logging", ADVISORY, c["urn"],
                    f"web ACL {acl['name']} logs request headers without redacting `authorization`: every client's API "
                    f"key lands in the log group"))
    return findings


def check_images(ctx: Context) -> list[Finding]:
    """Image facts (infra/image_checks.py): non-root users, tools, vLLM flags/env/metrics, static LoRA, keep-alive."""
    from infra import image_checks

    return image_checks.check_images(ctx)


CHECKS: tuple[Callable[[Context], list[Finding]], ...] = (check_await, check_order, check_capacity, check_ecs_capacity,
                                                          check_names, check_images, check_posture)


def _default_gpus_of(instance_type: str) -> int:
    from infra.catalog import INSTANCE_TYPES

    it = INSTANCE_TYPES.get(instance_type)
    return it.gpu_count if it is not None else 0


def check(resources: list[dict], *, gpus_of: Optional[Callable[[str], int]] = None) -> list[Finding]:
    """Every readiness finding for `resources` (preview-document resources: urn, type, name, parent, custom,
    inputs, dependencies, provider, customTimeouts), sorted mandatory first."""
    stripped, unknown = strip_unknowns(resources)
    ctx = Context(stripped, gpus_of or _default_gpus_of, unknown)
    findings: list[Finding] = []
    for c in CHECKS:
        findings += c(ctx)
    findings += unjudged(ctx)
    seen: set[tuple] = set()
    unique = []
    for f in findings:
        key = (f.check, f.level, f.urn, f.message)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return sorted(unique, key=lambda f: (f.level != MANDATORY, f.check, f.urn or "", f.message))


# --- unknown inputs (a first deploy) --------------------------------------------------------------------------

UNKNOWN_VALUES = frozenset({"[unknown]", "04da6b54-80e4-46f7-96ec-b56ff0331ba9"})  # plain() text, engine sentinel


def strip_unknowns(resources: list[dict]) -> tuple[list[dict], dict[str, list[str]]]:
    """Copies of `resources` without their unknown input values, and the unknown paths per URN.

    A first `pulumi preview` leaves every input built from a computed output unknown
    (infra/mockcloud.py first-deploy mode); the checks read what is known and the
    caller reports what they could not judge (`unjudged`), instead of mistaking the
    placeholder text for a value.
    """
    unknown: dict[str, list[str]] = {}

    def strip(v: Any, path: str, acc: list[str]) -> Any:
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                at = f"{path}.{k}" if path else str(k)
                if isinstance(x, str) and x in UNKNOWN_VALUES:
                    acc.append(at)
                else:
                    out[k] = strip(x, at, acc)
            return out
        if isinstance(v, list):
            out_list = []
            for n, x in enumerate(v):
                if isinstance(x, str) and x in UNKNOWN_VALUES:
                    acc.append(f"{path}[{n}]")
                else:
                    out_list.append(strip(x, f"{path}[{n}]", acc))
            return out_list
        return v

    out = []
    for r in resources:
        text = json.dumps(r.get("inputs") or {})
        if not any(u in text for u in UNKNOWN_VALUES):  # the common case, at C speed
            out.append(r)
            continue
        acc: list[str] = []
        inputs = strip(r.get("inputs") or {}, "", acc)
        if acc:
            unknown[r["urn"]] = acc
            r = {**r, "inputs": inputs}
        out.append(r)
    return out, unknown


def _reads(r: dict) -> tuple[tuple[str, ...], str]:
    """(input path prefixes the checks read, which checks) for a resource; () when none."""
    t = r["type"]
    group, _, kind = k8s_kind(t)
    if kind in _POD_KINDS or kind == "LeaderWorkerSet":
        return ("spec", "metadata"), "await, node-source, capacity, image"
    if kind == "Service":
        return ("spec.selector", "spec.type", "spec.clusterIP", "metadata"), "await, names"
    if kind == "Release":
        return (("chart", "timeout", "skipAwait", "namespace", "name", "createNamespace", "values.serviceAccount"),
                "helm await, order")
    if kind in ("ScaledObject", "HorizontalPodAutoscaler", "NodePool"):
        return ("spec", "metadata"), "capacity"
    if kind == "CustomResourceDefinition":
        return ("spec.group",), "crd order"
    if kind in ("PrometheusRule", "ConfigMap"):
        return ("spec", "data"), "image (metric names)"
    return {
        NODE_GROUP: (("instanceTypes", "scalingConfig", "labels", "taints", "nodeGroupName"), "node sources"),
        ECS_SERVICE: (("loadBalancers", "cluster", "name", "desiredCount", "capacityProviderStrategies"),
                      "ECS order, capacity"),
        ASG: (("waitForCapacityTimeout", "maxSize", "mixedInstancesPolicy.launchTemplate.overrides", "name"),
              "capacity wait, ECS capacity"),
        CAPACITY_PROVIDER: (("name",), "ECS capacity"),
        "aws:appautoscaling/target:Target": (("resourceId", "scalableDimension", "maxCapacity"), "ECS capacity"),
        "aws:eks/podIdentityAssociation:PodIdentityAssociation": (("namespace", "serviceAccount"), "pod identity order"),
        "aws:ecs/taskDefinition:TaskDefinition": (("containerDefinitions",), "ECS capacity, image"),
    }.get(t, ((), ""))


def unjudged(ctx: Context) -> list[Finding]:
    """Advisory "could not judge" findings for unknown inputs that the checks read and did not resolve."""
    out: list[Finding] = []
    for r in ctx.resources:
        paths = ctx.unknown.get(r["urn"])
        if not paths:
            continue
        prefixes, checks = _reads(r)
        hit = [p for p in paths if (r["urn"], p) not in ctx.judged
               and any(p == x or p.startswith(x + ".") or p.startswith(x + "[") for x in prefixes)]
        if hit:
            out.append(Finding(
                "unknown-input", ADVISORY, r["urn"],
                f"could not judge: {display(r)}: {', '.join(hit)} unknown until the first deploy creates what it comes "
                f"from; the {checks} checks did not see it"))
    return out


def section(findings: list[Finding]) -> dict:
    return {"findings": [f.as_dict() for f in findings]}


def main(argv: Optional[list[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m infra.readiness PREVIEW.json", file=sys.stderr)
        return 2
    doc = json.loads(Path(args[0]).read_text())
    findings = check(doc.get("resources") or [])
    for f in findings:
        print(f"{f.level:9} {f.check:26} {(f.urn or '(stack)').split('::')[-1]}: {f.message}")
    return 1 if any(f.level == MANDATORY for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
