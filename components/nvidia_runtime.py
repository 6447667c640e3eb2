"""NVIDIA runtime on the GPU nodes: the device plugin, as switches DCGM exporter and the EFA device plugin.

Without the device plugin a GPU node never advertises `nvidia.com/gpu` and
no GPU pod schedules. Both DaemonSets tolerate the GPU taint and run only on
nodes labelled `nvidia.com/gpu.present=true` (the node groups and Karpenter
pools set that label). Charts are plain `helm.v3.Release` resources with
pinned versions.

EFA: a pod of a model split across nodes requests `vpc.amazonaws.com/efa`,
which only the AWS EFA device plugin advertises; without it such pods never
schedule. When any pool needs EFA, the plugin (eks-charts
`aws-efa-k8s-device-plugin`) runs on exactly those pools' nodes: it
tolerates the GPU taint, requires `nvidia.com/gpu.present=true` and selects
the EFA pools by their pool label (the chart's `supportedInstanceLabels`
node-affinity term, here keyed on the pool label instead of instance types).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s

from components.errors import ArgsError, out_of_range

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
GPU_NODE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}}}


@dataclass(frozen=True)
class HelmChart:
    chart: str
    version: str
    repository: str = ""
    # Seconds Helm waits for the release's objects to be ready (provider default: 300).
    timeout_seconds: int = 300


DCGM_NAMESPACE = "gpu-monitoring"
# Pod labels of the DCGM exporter chart (selectorLabels: chart name and release name).
DCGM_POD_LABELS = {"app.kubernetes.io/name": "dcgm-exporter", "app.kubernetes.io/instance": "dcgm-exporter"}
DCGM_METRICS_PORT = "metrics"
POOL_LABEL = "llmserving.io/pool"


@dataclass(frozen=True)
class NvidiaRuntimeArgs:
    device_plugin: HelmChart
    dcgm_exporter: Optional[HelmChart] = None
    namespace: str = "kube-system"
    monitoring_namespace: str = DCGM_NAMESPACE
    extra_tolerations: list[dict] = field(default_factory=list)
    # AWS EFA device plugin and the pools (values of `pool_label`) whose nodes have EFA interfaces.
    efa_device_plugin: Optional[HelmChart] = None
    efa_pools: tuple[str, ...] = ()
    pool_label: str = POOL_LABEL
    # The DCGM exporter's counters CSV (chart value customMetrics, which replaces the chart's default
    # list); None: the chart's default list.
    dcgm_counters: Optional[str] = None
    # What must exist before these releases install (the system node group).
    node_ready: tuple[pulumi.Resource, ...] = ()


def _pinned(what: str, chart: HelmChart, p: list[str]) -> None:
    v = chart.version
    if not v or v.lower() in ("latest", "*") or any(c in v for c in "^~><*x"):
        p.append(f"{what}.version: got {v!r}; pin an exact chart version")
    if not chart.chart:
        p.append(f"{what}.chart: got {chart.chart!r}; name the chart")
    p += out_of_range(f"{what}.timeout_seconds", chart.timeout_seconds, 60, 3600)


def validate_nvidia_runtime_args(args: NvidiaRuntimeArgs) -> None:
    p: list[str] = []
    _pinned("device_plugin", args.device_plugin, p)
    if args.dcgm_exporter is not None:
        _pinned("dcgm_exporter", args.dcgm_exporter, p)
    if args.efa_device_plugin is not None:
        _pinned("efa_device_plugin", args.efa_device_plugin, p)
        if not args.efa_pools:
            p.append("efa_pools: got (); name the pools whose nodes have EFA interfaces (the plugin runs only there)")
    elif args.efa_pools:
        p.append(f"efa_device_plugin: got None but efa_pools is {list(args.efa_pools)}; pods on those pools request "
                 f"vpc.amazonaws.com/efa, which only the EFA device plugin advertises")
    for t in args.extra_tolerations:
        if "key" not in t or "effect" not in t:
            p.append(f"extra_tolerations: got {t}; each toleration needs key and effect")
    if p:
        raise ArgsError("NvidiaRuntime", p)


def _release(name: str, chart: HelmChart, namespace: str, values: dict, opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        name, name=name, chart=chart.chart, version=chart.version, namespace=namespace,
        repository_opts={"repo": chart.repository} if chart.repository else None,
        values=values, atomic=True, cleanup_on_fail=True, max_history=5, timeout=chart.timeout_seconds, opts=opts)


class NvidiaRuntime(pulumi.ComponentResource):
    def __init__(self, name: str, args: NvidiaRuntimeArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_nvidia_runtime_args(args)
        super().__init__("llmserving:eks:NvidiaRuntime", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Helm waits for ready pods: install only once the cluster has nodes.
        after_nodes = pulumi.ResourceOptions(parent=self, depends_on=list(args.node_ready))
        tolerations = [GPU_TOLERATION, *args.extra_tolerations]

        device_plugin = _release(
            "nvidia-device-plugin", args.device_plugin, args.namespace,
            {"tolerations": tolerations, "affinity": GPU_NODE_AFFINITY, "priorityClassName": "system-node-critical",
             "gfd": {"enabled": False}},
            after_nodes)
        outputs = {"devicePluginRelease": device_plugin.name}

        if args.dcgm_exporter is not None:
            ns = k8s.core.v1.Namespace(f"{name}-monitoring", metadata={
                "name": args.monitoring_namespace, "labels": {"app.kubernetes.io/part-of": "llmserving",
                                                              "pod-security.kubernetes.io/enforce": "privileged"}},
                opts=child)
            dcgm = _release(
                "dcgm-exporter", args.dcgm_exporter, args.monitoring_namespace,
                {"tolerations": tolerations, "affinity": GPU_NODE_AFFINITY,
                 "serviceMonitor": {"enabled": False},
                 **({"customMetrics": args.dcgm_counters} if args.dcgm_counters else {})},
                pulumi.ResourceOptions(parent=self, depends_on=[ns, *args.node_ready]))
            outputs["dcgmExporterRelease"] = dcgm.name
        if args.efa_device_plugin is not None:
            efa_nodes = {"keys": [args.pool_label], "values": sorted(args.efa_pools)}
            efa = _release(
                "aws-efa-k8s-device-plugin", args.efa_device_plugin, args.namespace,
                {"tolerations": tolerations, "nodeSelector": {"nvidia.com/gpu.present": "true"},
                 "supportedInstanceLabels": efa_nodes},
                after_nodes)
            outputs["efaDevicePluginRelease"] = efa.name
        self.register_outputs(outputs)
