"""Data tables for the deploy-readiness checks (infra/readiness.py): what the
engine, the providers and the controllers do at the pinned versions, and the
operating figures a startup estimate uses. Every row has its source and the
date it was taken.

Upstream behaviour (pinned versions, read 2026-12):

- pulumi-kubernetes (requirements.txt pins 4.34.2; the newest stored source
  read is pulumi/pulumi-kubernetes@94977969, after 4.32.0, whose await code
  is unchanged since 4.x): `provider/pkg/await/awaiters.go` awaits
  apps/v1 Deployment, StatefulSet, DaemonSet, batch/v1 Job, v1 Service, Pod,
  PVC/PV, Ingress; deployment.go, statefulset.go, service.go, job.go, pod.go
  and ingress.go default to 10 minutes, daemonset.go `_defaultDaemonSetTimeout`
  10 minutes; `provider/pkg/await/await.go` takes the timeout from the
  engine's custom timeouts, else the `pulumi.com/timeoutSeconds` annotation
  (`provider/pkg/metadata/overrides.go` TimeoutDuration), and
  `pulumi.com/skipAwait: "true"` skips the wait (SkipAwaitLogic). Any other
  kind, custom resources such as a LeaderWorkerSet included, is NOT awaited
  unless it carries `pulumi.com/waitFor` (or PULUMI_K8S_AWAIT_ALL=true is set
  for the provider): metadata/overrides.go ReadyCondition returns an
  immediate condition otherwise.
- helm.v3.Release (`provider/pkg/provider/helm_release.go`): waits for the
  chart's resources (`client.Wait = !skipAwait`) up to its own `timeout`
  input, `defaultTimeoutSeconds = 300` when unset; custom timeouts do not
  apply to it; `atomic` rolls the release back when the wait fails.
- Helm's readiness (helm/helm pkg/kube/ready.go ReadyChecker): a Deployment
  is ready when its ReplicaSet has `replicas - maxUnavailable` ready pods, a
  DaemonSet when its updated pods are scheduled and available; a DaemonSet
  with no matching node is ready. So a chart whose only workloads are
  DaemonSets (the NVIDIA device plugin with gfd off, DCGM exporter, EFA
  device plugin) installs without any node; a chart with a Deployment waits
  for a node its pods fit.
- Pulumi engine: custom timeouts are Go durations
  (pulumi/pulumi pkg/resource/deploy/source_eval.go generateTimeoutInSeconds,
  `time.ParseDuration`; anything else fails the registration).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.catalog import Assumption

_AS_OF = "2026-12"
_K8S_AWAIT = "pulumi/pulumi-kubernetes provider/pkg/await/{f} (4.x; 4.34.2 pinned)"
_OPS = "project operating assumption (readiness estimate; raise it if your network is slower)"

# Seconds pulumi-kubernetes waits for a kind when no timeout is given.
AWAIT_DEFAULT_SECONDS: dict[str, Assumption] = {
    "Deployment": Assumption(value=600, source=_K8S_AWAIT.format(f="deployment.go DefaultDeploymentTimeoutMins"), as_of=_AS_OF),
    "StatefulSet": Assumption(value=600, source=_K8S_AWAIT.format(f="statefulset.go DefaultStatefulSetTimeoutMins"), as_of=_AS_OF),
    "DaemonSet": Assumption(value=600, source=_K8S_AWAIT.format(f="daemonset.go _defaultDaemonSetTimeout"), as_of=_AS_OF),
    "Service": Assumption(value=600, source=_K8S_AWAIT.format(f="service.go DefaultServiceTimeoutMins"), as_of=_AS_OF),
    "Job": Assumption(value=600, source=_K8S_AWAIT.format(f="job.go DefaultJobTimeoutMins"), as_of=_AS_OF),
    "Pod": Assumption(value=600, source=_K8S_AWAIT.format(f="pod.go DefaultPodTimeoutMins"), as_of=_AS_OF),
    # Custom resources with a pulumi.com/waitFor annotation (await.go: 10 minutes).
    "CustomResource": Assumption(value=600, source=_K8S_AWAIT.format(f="await.go (timeout := 10 * time.Minute)"), as_of=_AS_OF),
}

HELM_RELEASE_DEFAULT_TIMEOUT = Assumption(
    value=300, source="pulumi/pulumi-kubernetes provider/pkg/provider/helm_release.go defaultTimeoutSeconds",
    as_of=_AS_OF)

# Operating figures of the startup estimate of a pod (seconds or MiB/s): the serving layer's own
# start-up timeline (infra/serving_catalog.py), so that the timeouts it sets and this check's
# estimate come from one table.
def _from_serving(key: str, *, scale: float = 1.0, note: str = "") -> Assumption:
    from infra.serving_catalog import SERVING_FIGURES

    row = SERVING_FIGURES[key]
    return Assumption(value=row.value * scale, source=f"infra/serving_catalog.py {key} ({row.source}){note}",
                      as_of=row.as_of)


FIGURES: dict[str, Assumption] = {
    # Weights and adapters are written to the pod's volumes at this rate.
    "download_mib_per_second": _from_serving("weights_download_mb_per_second", scale=1e6 / 2 ** 20,
                                             note="; MB/s converted to MiB/s"),
    # A new GPU node: EC2 launch, bootstrap, join, NVIDIA device plugin ready.
    "node_launch_seconds": _from_serving("node_ready_seconds"),
    # Pulling a serving image (vllm/vllm-openai is ~10 GB) on a node that has never run it.
    "image_pull_seconds": _from_serving("image_pull_seconds"),
}


@dataclass(frozen=True)
class ChartNeeds:
    """What a chart's install waits for (helm --wait) and how long a first install takes."""

    # "deployment": the chart has Deployments/StatefulSets helm waits for, which
    # need a node their pods fit; "daemonset": only DaemonSets (ready with no node).
    workloads: str
    first_install_seconds: int
    source: str
    as_of: str = _AS_OF
    # Its pods must not run on nodes it provisions (Karpenter's controller).
    needs_managed_nodes: bool = False


_CHART_SRC = "chart templates at the pinned version ({v}); first-install time: " + _OPS
CHART_NEEDS: dict[str, ChartNeeds] = {
    "karpenter": ChartNeeds("deployment", 300, _CHART_SRC.format(v="aws/karpenter-provider-aws v1.14.1 charts/karpenter"),
                            # Karpenter docs: run the controller on a node group or Fargate, never on nodes it launches.
                            needs_managed_nodes=True),
    "keda": ChartNeeds("deployment", 300, _CHART_SRC.format(v="kedacore/charts keda 2.20.2: operator, metrics API server, webhooks")),
    "lws": ChartNeeds("deployment", 300, _CHART_SRC.format(v="kubernetes-sigs/lws 0.10.0 charts/lws: controller-manager")),
    "kube-prometheus-stack": ChartNeeds(
        "deployment", 600, _CHART_SRC.format(v="prometheus-community kube-prometheus-stack 77.14.0: operator, "
                                             "kube-state-metrics, grafana; admission webhook patch jobs")),
    "aws-load-balancer-controller": ChartNeeds(
        "deployment", 300, _CHART_SRC.format(v="aws/eks-charts aws-load-balancer-controller 3.5.0")),
    "nvidia-device-plugin": ChartNeeds(
        "daemonset", 300, _CHART_SRC.format(v="NVIDIA/k8s-device-plugin v0.18.0 deployments/helm/nvidia-device-plugin: "
                                            "DaemonSets only; the nfd subchart needs nfd.enabled or gfd.enabled")),
    "dcgm-exporter": ChartNeeds("daemonset", 300, _CHART_SRC.format(v="NVIDIA dcgm-exporter 4.6.0: DaemonSet + Service")),
    "aws-efa-k8s-device-plugin": ChartNeeds("daemonset", 300, _CHART_SRC.format(v="aws/eks-charts aws-efa-k8s-device-plugin v0.5.20")),
}
# A chart this table does not know: assume it runs Deployments (the conservative reading).
UNKNOWN_CHART = ChartNeeds("deployment", 300, "unknown chart: assumed to run Deployments (" + _OPS + ")")

# An EKS managed node group keeps its desiredSize unless something scales it: the Kubernetes
# Cluster Autoscaler (Karpenter never scales managed node groups). Amazon EKS User Guide,
# "Managed node groups" / "Scale cluster compute with Karpenter and Cluster Autoscaler".
NODE_AUTOSCALER_CHARTS: tuple[str, ...] = ("cluster-autoscaler",)
NODE_AUTOSCALER_SOURCE = "Amazon EKS User Guide: managed node groups are scaled by the Cluster Autoscaler, not by EKS"

# API group of a custom resource -> the chart (release `chart`, last path segment) that installs its CRD.
CRD_CHARTS: dict[str, str] = {
    "karpenter.sh": "karpenter",
    "karpenter.k8s.aws": "karpenter",
    "keda.sh": "keda",
    "leaderworkerset.x-k8s.io": "lws",
    "monitoring.coreos.com": "kube-prometheus-stack",
    "elbv2.k8s.aws": "aws-load-balancer-controller",
}

# Names controllers create from the objects the program declares.
# LWS v0.10.0 pkg/controllers/leaderworkerset_controller.go reconcileHeadlessServices ->
# pkg/utils/controller/controller_utils.go CreateHeadlessServiceIfNotExists: a headless Service named
# after the LWS (subdomainPolicy Shared, the default), or one per leader pod `<lws>-<group>`
# (UniquePerReplica, pod_controller.go); it does nothing when a Service of that name exists.
LWS_SOURCE = "kubernetes-sigs/lws v0.10.0 pkg/utils/controller/controller_utils.go CreateHeadlessServiceIfNotExists"
# KEDA controllers/keda/hpa.go getHPAName: `keda-hpa-<scaledobject>` unless
# spec.advanced.horizontalPodAutoscalerConfig.name is set.
KEDA_HPA_SOURCE = "kedacore/keda controllers/keda/hpa.go getHPAName"

# Terraform aws_autoscaling_group (bridged by pulumi-aws 7.51.1): without wait_for_capacity_timeout
# the provider waits up to 10m for desired_capacity healthy instances, "0" skips the wait.
ASG_CAPACITY_SOURCE = ("hashicorp/terraform-provider-aws internal/service/autoscaling/group.go "
                       "(wait_for_capacity_timeout default \"10m\"; \"0\" skips Waiting for Capacity)")
ECS_LISTENER_SOURCE = ("Amazon ECS CreateService: a target group must be associated with a load balancer "
                       "(InvalidParameterException \"The target group ... does not have an associated load balancer\")")

# EKS Pod Identity: the EKS Pod Identity webhook adds the credential env vars and token volume to a pod
# when it is admitted, if its service account has an association then; a pod admitted earlier keeps
# running without credentials until it is recreated (Amazon EKS User Guide "Understand how EKS Pod
# Identity works"; aws/amazon-eks-pod-identity-webhook README: new pods using the service account are mutated).
POD_IDENTITY_SOURCE = ("Amazon EKS User Guide, EKS Pod Identity: credentials are injected when a pod is "
                       "admitted; pods created before the association get none until recreated")
