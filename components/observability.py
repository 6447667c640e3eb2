"""Observability of the serving layer: Prometheus, the Grafana dashboard, alert rules, GPU metrics.

- kube-prometheus-stack from a pinned chart, or bring-your-own Prometheus
  (`prometheus_chart=None`: the Prometheus Operator CRDs must already exist);
- the Grafana dashboard as a ConfigMap labelled for the Grafana sidecar:
  queue depth, KV-cache usage, TTFT and inter-token latency percentiles, token throughput and,
  when DCGM exporter metrics are scraped, GPU utilization and framebuffer
  memory (DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED);
- a PrometheusRule (TTFT p95, sustained queue, KV cache nearly full,
  restarting pods) and, when DCGM exporter metrics are scraped, GPU health
  rules (`gpu_health_rules`): fatal and any XID errors, double-bit ECC,
  single-bit ECC bursts, row-remap failures and pages pending retirement;
- a PodMonitor for the DCGM exporter pods (the exporter's chart runs with
  its ServiceMonitor off): it selects the exporter pods in the exporter's
  namespace (`namespaceSelector`) but lives in the serving namespace, so it
  waits only on objects this layer owns, and it is created after the
  Prometheus release, i.e. after the monitoring CRDs exist.

- alert routing (`alert_routing`): Alertmanager's default receiver publishes
  to an SNS topic this component creates, with the stack's e-mail addresses
  subscribed (each confirms once). Alertmanager signs with SigV4 using the
  credentials EKS Pod Identity hands its service account (a role allowed
  only sns:Publish on that topic); the association exists before the
  release, so the Alertmanager pod gets credentials when it starts. Chosen
  over a webhook or SMTP receiver because it needs nothing outside the
  stack on a first deploy;
- Prometheus storage (`storage_class`): a gp3, encrypted StorageClass of the
  EBS CSI driver, created before the release whose volumeClaimTemplate
  names it (infra/serving.py sizes the claim and retentionSize).

vLLM's own PodMonitors belong to each workload (components/vllm_workload.py).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ArgsError
from components.gpu_health import FATAL_XIDS
from components.helm_chart import DNS_LABEL, ChartRelease, chart_problems, helm_release

MONITORING_API = "monitoring.coreos.com/v1"
DASHBOARD_LABEL = "grafana_dashboard"
INTER_TOKEN_LATENCY = "vllm:inter_token_latency_seconds"


@dataclass(frozen=True)
class AlertThresholds:
    ttft_p95_seconds: float
    queue_depth: float
    queue_minutes: int
    kv_cache_usage: float
    restarts_per_hour: float


@dataclass(frozen=True)
class GpuHealthAlerts:
    """GPU hardware alerts on DCGM exporter metrics (need the ECC counters the stack adds to the
    exporter's list: infra/eks_catalog.py DCGM_EXTRA_COUNTERS)."""

    fatal_xids: tuple[int, ...] = FATAL_XIDS
    # Corrected single-bit ECC errors per GPU per hour that announce failing memory.
    single_bit_ecc_per_hour: float = 100.0


# DCGM exporter metric names the GPU health rules read; each must be in the exporter's counters.
GPU_HEALTH_METRICS = ("DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
                      "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DEV_RETIRED_PENDING")


@dataclass(frozen=True)
class DcgmScrape:
    """Where the DCGM exporter pods run and how to scrape them."""

    namespace: str  # the exporter's namespace
    pod_labels: dict[str, str]
    port: str = "metrics"
    interval: str = "15s"


# The Alertmanager service account kube-prometheus-stack creates (set explicitly in the values,
# so the Pod Identity association names the right one).
ALERTMANAGER_SERVICE_ACCOUNT = "kube-prometheus-stack-alertmanager"
ALERT_RECEIVER = "sns"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SNS_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class AlertRouting:
    """Alertmanager -> an SNS topic (e-mail subscribers), published with EKS Pod Identity credentials."""

    topic_name: str
    emails: tuple[str, ...]
    cluster_name: pulumi.Input[str]
    region: str
    # Alertmanager's namespace and service account (the chart's).
    namespace: str = "monitoring"
    service_account: str = ALERTMANAGER_SERVICE_ACCOUNT
    # For the role's confused-deputy condition; None: the caller's account.
    account_id: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StorageClassSpec:
    """A StorageClass this component creates for Prometheus' volume claim."""

    name: str
    provisioner: str
    parameters: dict[str, str]
    reclaim_policy: str = "Delete"


@dataclass(frozen=True)
class ObservabilityArgs:
    # Namespace of the dashboard ConfigMap and the PrometheusRule (the serving namespace).
    namespace: str
    # kube-prometheus-stack; None: bring-your-own Prometheus.
    prometheus_chart: Optional[ChartRelease] = None
    dashboard: bool = True
    alerts: Optional[AlertThresholds] = None
    dcgm: Optional[DcgmScrape] = None
    # Resources the namespaced objects wait for (the serving namespace).
    depends_on: tuple[pulumi.Resource, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    # Where Alertmanager sends alerts (needs prometheus_chart); None: no receiver.
    alert_routing: Optional[AlertRouting] = None
    # StorageClass for Prometheus' persistent volume (named by the chart values).
    storage_class: Optional[StorageClassSpec] = None
    # GPU hardware alerts, added to the alert rules when DCGM metrics are scraped (dcgm) and alerts are on.
    gpu_health: Optional[GpuHealthAlerts] = GpuHealthAlerts()


def validate_observability_args(args: ObservabilityArgs) -> None:
    """Raises ArgsError naming every problem; pure (no resources)."""
    p: list[str] = []
    if not DNS_LABEL.match(args.namespace):
        p.append(f"namespace: got {args.namespace!r}; must be a DNS label")
    if args.prometheus_chart is not None:
        p += chart_problems("prometheus_chart", args.prometheus_chart)
    a = args.alerts
    if a is not None:
        if a.ttft_p95_seconds <= 0:
            p.append(f"alerts.ttft_p95_seconds: got {a.ttft_p95_seconds:g}; must be above 0")
        if not 0 < a.kv_cache_usage <= 1:
            p.append(f"alerts.kv_cache_usage: got {a.kv_cache_usage:g}; a fraction in (0, 1]")
        if a.queue_depth < 0 or a.queue_minutes < 1:
            p.append(f"alerts.queue_depth/queue_minutes: got {a.queue_depth:g}/{a.queue_minutes}; need depth >= 0 and "
                     f"at least 1 minute")
        if a.restarts_per_hour < 0:
            p.append(f"alerts.restarts_per_hour: got {a.restarts_per_hour:g}; must be >= 0")
    d = args.dcgm
    if d is not None:
        if not DNS_LABEL.match(d.namespace):
            p.append(f"dcgm.namespace: got {d.namespace!r}; must be a DNS label")
        if not d.pod_labels:
            p.append("dcgm.pod_labels: empty; the PodMonitor would select every pod in the namespace")
        if not d.port:
            p.append("dcgm.port: empty; name the exporter's metrics port")
    r = args.alert_routing
    if r is not None:
        if args.prometheus_chart is None:
            p.append("alert_routing: given without prometheus_chart; the routing configures the chart's Alertmanager")
        if not SNS_TOPIC_NAME.match(r.topic_name):
            p.append(f"alert_routing.topic_name: got {r.topic_name!r}; 1-256 letters, digits, '-' or '_'")
        for e in r.emails:
            if not EMAIL.match(e):
                p.append(f"alert_routing.emails: got {e!r}; not an e-mail address")
        if not DNS_LABEL.match(r.namespace) or not DNS_LABEL.match(r.service_account):
            p.append(f"alert_routing: namespace {r.namespace!r} and service_account {r.service_account!r} must be DNS labels")
        if r.account_id is not None and not re.match(r"^\d{12}$", r.account_id):
            p.append(f"alert_routing.account_id: got {r.account_id!r}; a 12-digit AWS account id or None")
    sc = args.storage_class
    if sc is not None:
        if not DNS_LABEL.match(sc.name):
            p.append(f"storage_class.name: got {sc.name!r}; must be a DNS label")
        if sc.reclaim_policy not in ("Delete", "Retain"):
            p.append(f"storage_class.reclaim_policy: got {sc.reclaim_policy!r}; allowed: Delete, Retain")
        if args.prometheus_chart is not None:
            claim = (args.prometheus_chart.values.get("prometheus", {}).get("prometheusSpec", {})
                     .get("storageSpec", {}).get("volumeClaimTemplate", {}).get("spec", {}))
            if claim.get("storageClassName") != sc.name:
                p.append(f"storage_class.name: got {sc.name!r}; the chart's volumeClaimTemplate names "
                         f"{claim.get('storageClassName')!r}")
    g = args.gpu_health
    if g is not None:
        if not g.fatal_xids or any(not 1 <= x <= 1000 for x in g.fatal_xids):
            p.append(f"gpu_health.fatal_xids: got {g.fatal_xids}; NVIDIA XID codes (1-1000)")
        if g.single_bit_ecc_per_hour <= 0:
            p.append(f"gpu_health.single_bit_ecc_per_hour: got {g.single_bit_ecc_per_hour:g}; must be above 0")
    if p:
        raise ArgsError("Observability", p)


def alertmanager_config(topic_arn: str, region: str) -> dict:
    """Alertmanager values: every alert goes to the SNS receiver, except the chart's always-firing Watchdog."""
    return {
        # Helm merges maps and replaces lists: the chart's route defaults (group_by, inhibit rules) stay.
        "route": {"receiver": ALERT_RECEIVER,
                  "routes": [{"matchers": ['alertname = "Watchdog"'], "receiver": "null"},
                             {"matchers": ['alertname = "InfoInhibitor"'], "receiver": "null"}]},
        "receivers": [
            {"name": "null"},
            # Alertmanager sns_configs with sigv4: region only, credentials from the default chain,
            # which includes Pod Identity (aws-sdk-go >= v1.47.11; Alertmanager v0.28 go.mod: v1.55.6).
            {"name": ALERT_RECEIVER, "sns_configs": [{"topic_arn": topic_arn, "sigv4": {"region": region},
                                                     "send_resolved": True}]},
        ],
    }


def alert_publisher_trust(account_id: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}]}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dashboard(gpu_panels: bool) -> dict:
    """Grafana dashboard: queue depth, KV cache, TTFT and inter-token latency percentiles, token throughput, GPU use (DCGM)."""
    def panel(i: int, title: str, exprs: list[tuple[str, str]], unit: str) -> dict:
        return {"id": i, "type": "timeseries", "title": title, "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"expr": e, "legendFormat": legend, "refId": chr(65 + j)} for j, (e, legend) in enumerate(exprs)]}

    def q(metric: str, quantile: float) -> str:
        return f"histogram_quantile({quantile}, sum by (le, model_name) (rate({metric}_bucket[5m])))"

    panels = [
        panel(0, "Queue depth (waiting / running)", [
            ("sum by (model_name) (vllm:num_requests_waiting)", "{{model_name}} waiting"),
            ("sum by (model_name) (vllm:num_requests_running)", "{{model_name}} running")], "short"),
        panel(1, "KV cache usage", [("max by (model_name) (vllm:kv_cache_usage_perc)", "{{model_name}}")], "percentunit"),
        panel(2, "Time to first token", [(q("vllm:time_to_first_token_seconds", x), f"{{{{model_name}}}} p{int(x * 100)}")
                                         for x in (0.5, 0.95, 0.99)], "s"),
        # vLLM 0.11 renamed vllm:time_per_output_token_seconds (deprecated, hidden from 0.12) to
        # vllm:inter_token_latency_seconds (vllm/v1/metrics/loggers.py, v0.11.x: "Deprecated in 0.11").
        panel(3, "Inter-token latency", [(q(INTER_TOKEN_LATENCY, x), f"{{{{model_name}}}} p{int(x * 100)}")
                                         for x in (0.5, 0.95, 0.99)], "s"),
        panel(4, "Token throughput", [
            ("sum by (model_name) (rate(vllm:prompt_tokens_total[5m]))", "{{model_name}} prompt"),
            ("sum by (model_name) (rate(vllm:generation_tokens_total[5m]))", "{{model_name}} generation")], "tps"),
    ]
    if gpu_panels:
        # DCGM exporter attributes GPUs to the pods using them (pod/namespace labels, kept by honorLabels).
        panels += [
            panel(5, "GPU utilization", [
                ("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "{{Hostname}} GPU {{gpu}}")], "percent"),
            panel(6, "GPU framebuffer memory used", [
                ("sum by (Hostname, gpu) (DCGM_FI_DEV_FB_USED)", "{{Hostname}} GPU {{gpu}}")], "decmbytes"),
        ]
    return {"title": "vLLM serving", "uid": "llmserving-vllm", "schemaVersion": 39, "editable": False,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "panels": panels,
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]}}


def alert_rules(namespace: str, a: AlertThresholds, labels: dict[str, str],
                gpu_health: Optional[GpuHealthAlerts] = None) -> dict:
    rules = [
        {"alert": "VllmTimeToFirstTokenP95High",
         "expr": f"histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket[5m]))) "
                 f"> {a.ttft_p95_seconds:g}",
         "for": "10m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"TTFT p95 of {{{{ $labels.model_name }}}} is above {a.ttft_p95_seconds:g} s"}},
        {"alert": "VllmQueueBacklog",
         "expr": f"sum by (model_name) (vllm:num_requests_waiting) > {a.queue_depth:g}",
         "for": f"{a.queue_minutes}m", "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.model_name }} has a sustained request queue; check autoscaling and GPU quota"}},
        {"alert": "VllmKvCacheNearlyFull",
         "expr": f"max by (model_name) (vllm:kv_cache_usage_perc) > {a.kv_cache_usage:g}",
         "for": "5m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"KV cache of {{{{ $labels.model_name }}}} is above {a.kv_cache_usage:.0%}; "
                                    f"requests will be preempted"}},
        {"alert": "VllmPodRestarting",
         "expr": f'increase(kube_pod_container_status_restarts_total{{namespace="{namespace}"}}[1h]) > {a.restarts_per_hour:g}',
         "for": "5m", "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.pod }} restarts repeatedly"}},
    ]
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": {"name": "vllm-alerts", "namespace": namespace, "labels": dict(labels)},
            "spec": {"groups": [{"name": "vllm", "rules": rules}]
                     + ([{"name": "gpu-health", "rules": gpu_health_rules(gpu_health)}] if gpu_health else [])}}


def gpu_health_rules(g: GpuHealthAlerts) -> list[dict]:
    """Alert rules on GPU hardware faults, per node (Hostname, the exporter's node label at
    dcgm-exporter 4.4.1-4.6.0) and GPU. DCGM_FI_DEV_XID_ERRORS holds the last XID the GPU raised
    (etc/default-counters.csv: "Value of the last XID error encountered"); the ECC totals are
    volatile counters (since the last driver load). EKS node auto repair / Karpenter NodeRepair
    replace the node on the fatal ones; these alerts tell people it happened, and catch what
    repair does not act on."""
    by = "Hostname, gpu"
    fatal = " or ".join(f"(DCGM_FI_DEV_XID_ERRORS == {x})" for x in sorted(g.fatal_xids))
    return [
        {"alert": "GpuFatalXidError",
         "expr": f"max by ({by}) ({fatal})",
         "for": "1m", "labels": {"severity": "critical"},
         "annotations": {"summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} raised fatal XID {{ $value }}; "
                                    "node repair replaces the node, serving on it is unreliable until then"}},
        {"alert": "GpuXidError",
         "expr": f"max by ({by}) (DCGM_FI_DEV_XID_ERRORS) > 0",
         "for": "5m", "labels": {"severity": "warning"},
         "annotations": {"summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} raised XID {{ $value }}"}},
        {"alert": "GpuDoubleBitEccError",
         "expr": f"max by ({by}) (increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[10m])) > 0",
         "for": "0m", "labels": {"severity": "critical"},
         "annotations": {"summary": "uncorrectable (double-bit) ECC errors on GPU {{ $labels.gpu }} of "
                                    "{{ $labels.Hostname }}"}},
        {"alert": "GpuSingleBitEccErrorsHigh",
         "expr": f"max by ({by}) (increase(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL[1h])) > {g.single_bit_ecc_per_hour:g}",
         "for": "0m", "labels": {"severity": "warning"},
         "annotations": {"summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} corrects {{ $value }} single-bit "
                                    "ECC errors an hour; its memory is failing"}},
        {"alert": "GpuRowRemapFailure",
         "expr": f"max by ({by}) (DCGM_FI_DEV_ROW_REMAP_FAILURE) > 0",
         "for": "0m", "labels": {"severity": "critical"},
         "annotations": {"summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} failed to remap a memory row"}},
        {"alert": "GpuRetiredPagesPending",
         "expr": f"max by ({by}) (DCGM_FI_DEV_RETIRED_PENDING) > 0",
         "for": "0m", "labels": {"severity": "warning"},
         "annotations": {"summary": "GPU {{ $labels.gpu }} on {{ $labels.Hostname }} has memory pages pending "
                                    "retirement (a reset retires them)"}},
    ]


def dcgm_pod_monitor(namespace: str, d: DcgmScrape, labels: dict[str, str]) -> dict:
    return {"apiVersion": MONITORING_API, "kind": "PodMonitor",
            "metadata": {"name": "dcgm-exporter", "namespace": namespace, "labels": dict(labels)},
            "spec": {"selector": {"matchLabels": dict(d.pod_labels)},
                     "namespaceSelector": {"matchNames": [d.namespace]},
                     # honorLabels keeps the exporter's pod/namespace labels (the GPU's workload pod).
                     "podMetricsEndpoints": [{"port": d.port, "path": "/metrics", "interval": d.interval,
                                              "honorLabels": True}]}}


def render(args: ObservabilityArgs) -> list[dict]:
    """The namespaced Kubernetes objects as plain dicts (pure; validated by tests)."""
    validate_observability_args(args)
    labels = {**args.labels, "app.kubernetes.io/part-of": "llmserving"}
    objs: list[dict] = []
    if args.dashboard:
        objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "vllm-dashboard", "namespace": args.namespace,
                                  "labels": {**labels, DASHBOARD_LABEL: "1"}},
                     "data": {"vllm.json": json.dumps(dashboard(args.dcgm is not None), sort_keys=True)}})
    if args.alerts is not None:
        objs.append(alert_rules(args.namespace, args.alerts, labels,
                                args.gpu_health if args.dcgm is not None else None))
    if args.dcgm is not None:
        objs.append(dcgm_pod_monitor(args.namespace, args.dcgm, labels))
    return objs


class Observability(pulumi.ComponentResource):
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: ObservabilityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        objs = render(args)  # validates before anything exists
        super().__init__("llmserving:observability:Observability", name, {}, opts)
        ready: list[pulumi.Resource] = []
        before_release: list[pulumi.Resource] = []
        chart = args.prometheus_chart
        self.alert_topic_arn: Optional[pulumi.Output[str]] = None
        if chart is not None and args.storage_class is not None:
            sc = args.storage_class
            before_release.append(k8s.storage.v1.StorageClass(
                sc.name, metadata={"name": sc.name, "labels": {**args.labels, "app.kubernetes.io/part-of": "llmserving"}},
                provisioner=sc.provisioner, parameters=dict(sc.parameters), reclaim_policy=sc.reclaim_policy,
                # The volume is created in the zone the scheduler picks for Prometheus.
                volume_binding_mode="WaitForFirstConsumer", allow_volume_expansion=True,
                opts=pulumi.ResourceOptions(parent=self)))
        r = args.alert_routing
        if chart is not None and r is not None:
            aws_opts = pulumi.ResourceOptions(parent=self)
            topic = aws.sns.Topic(f"{name}-alerts", name=r.topic_name, kms_master_key_id="alias/aws/sns",
                                  tags=dict(r.tags), opts=aws_opts)
            for i, email in enumerate(r.emails):
                # Pending until the recipient confirms (SNS sends the confirmation mail).
                aws.sns.TopicSubscription(f"{name}-alerts-{i}", topic=topic.arn, protocol="email", endpoint=email,
                                          opts=aws_opts)
            account = (pulumi.Output.from_input(r.account_id) if r.account_id is not None
                       else aws.get_caller_identity_output().account_id)
            role = aws.iam.Role(
                f"{name}-alert-publisher", name=f"{r.topic_name}-publisher"[:64],
                assume_role_policy=account.apply(lambda a: json.dumps(alert_publisher_trust(a), sort_keys=True)),
                description="Alertmanager (EKS Pod Identity): publish alerts to the stack's SNS topic",
                tags=dict(r.tags), opts=aws_opts)
            aws.iam.RolePolicy(f"{name}-alert-publisher", role=role.id, policy=topic.arn.apply(lambda arn: json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": arn}]},
                sort_keys=True)), opts=aws_opts)
            # The cluster must exist (the namespace dependency orders this after it); the pod must
            # start after the association, or it runs without credentials until restarted.
            before_release.append(aws.eks.PodIdentityAssociation(
                f"{name}-alertmanager", cluster_name=r.cluster_name, namespace=r.namespace,
                service_account=r.service_account, role_arn=role.arn, tags=dict(r.tags),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))))
            values = _merge(chart.values, {"alertmanager": {
                "enabled": True, "serviceAccount": {"create": True, "name": r.service_account},
                "config": topic.arn.apply(lambda arn: alertmanager_config(arn, r.region))}})
            chart = replace(chart, values=values)
            self.alert_topic_arn = topic.arn
        if chart is not None:
            # The release schedules pods: it waits for what the caller lists (nodes, namespace).
            ready.append(helm_release(chart.name, chart, pulumi.ResourceOptions(
                parent=self, depends_on=[*args.depends_on, *before_release])))
        # Custom resources need the operator's CRDs (the release); namespaced ones the namespace.
        after = pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *ready])
        created = {}
        for o in objs:
            key = o["metadata"]["name"]
            if o["kind"] == "ConfigMap":
                created[key] = k8s.core.v1.ConfigMap(key, metadata=o["metadata"], data=o["data"], opts=after)
            else:
                created[key] = k8s.apiextensions.CustomResource(
                    key, api_version=o["apiVersion"], kind=o["kind"], metadata=o["metadata"], spec=o["spec"], opts=after)
        self.ready = ready
        self.register_outputs({"prometheusRelease": args.prometheus_chart.name if args.prometheus_chart else None,
                               "objects": sorted(created)})
