"""Serving layer on EKS: vLLM workloads, the model-aware router, autoscaling,
observability, and the tenants' LoRA adapter access.

`build(settings, plan, *, k8s_provider, cluster_name, pool_scheduling,
adapter_bucket_name, adapter_bucket_arn, tags)` is called by infra/stack.py
with the EKS platform's provider and pool scheduling. Everything lands in
namespace `llmserving`.

Routing: one endpoint, model-aware, by a router Deployment (the vLLM
production-stack router) behind the load balancer. ALB listener rules can
match host, path, headers and query strings but never the JSON body, and an
OpenAI client names the model (or the LoRA adapter) only in the body
(`"model": ...`). The router reads that field and discovers the engines (pods
labelled `llmserving.io/serves=true`) and the models each one serves,
adapters included, from the Kubernetes API and `/v1/models`.

Tenants are data: all tenants' adapters go into ONE ConfigMap
(`tenant-adapters`, a TSV of adapter -> tenant), never one resource each.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.vllm_server_args import LoraSpec, VllmServerSpec
from components.vllm_workload import (ADAPTER_DIR, AdapterStore, Autoscaling, Operations, Placement, VllmWorkload,
                                      VllmWorkloadArgs, create_object)
from infra import capacity
from infra import serving_catalog as sc
from infra.config import ModelConfig, Settings

NAMESPACE = "llmserving"
ROUTER_LABELS = {"app.kubernetes.io/name": "llm-router", "app.kubernetes.io/part-of": "llmserving"}
LORA_SERVICE_ACCOUNT = "vllm-lora"
TENANT_CONFIG_MAP = "tenant-adapters"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


@dataclass
class Serving:
    namespace: str
    router_service: str
    router_port: int
    workloads: dict[str, VllmWorkload]


def figure(settings: Settings, key: str) -> float:
    camel = "".join(w.capitalize() if i else w for i, w in enumerate(key.split("_")))
    overrides = settings.config.serving.figures
    return float(overrides.get(camel, sc.SERVING_FIGURES[key].value))


def image(settings: Settings, key: str) -> str:
    img = sc.IMAGES[key]
    if key == "vllm" and settings.config.serving.vllm_image_tag:
        return f"{img.repository}:{settings.config.serving.vllm_image_tag}"
    return img.ref


def prometheus_url(settings: Settings) -> str:
    if settings.config.serving.prometheus_url:
        return settings.config.serving.prometheus_url
    return f"http://prometheus-operated.{settings.config.serving.prometheus_namespace}.svc:9090"


def _scheduling(pool_scheduling: dict, pool: str) -> tuple[dict, list]:
    sched = pool_scheduling[pool]
    get = (lambda k: sched[k]) if isinstance(sched, dict) else (lambda k: getattr(sched, k))
    return dict(get("node_selector")), list(get("tolerations"))


def workload_args(settings: Settings, plan: capacity.Plan, model: ModelConfig, pool_scheduling: dict, *,
                  hf_token_secret: Optional[str], api_key_secret: Optional[str],
                  load_balancer_cidrs: tuple[str, ...] = ()) -> VllmWorkloadArgs:
    """The component args of one model: plan + catalog + config, no resources."""
    c = settings.catalog
    mp = next(p for p in plan.models if p.model == model.name)
    instance = c.instance(mp.instance_type)
    gpu = c.gpu_of(instance)
    arch = c.models.get(model.source)
    ckpt = arch.checkpoint_precision if arch is not None else "bf16"
    params = model.parameters_billion or (arch.parameters_billion if arch else 0)
    util = model.gpu_memory_utilization or c.assumption("default_gpu_memory_utilization")
    lora_cfg = settings.config.lora
    is_lora_base = lora_cfg.enabled and lora_cfg.base_model == model.name
    lora = adapters = None
    if is_lora_base:
        pairs = tuple((a, t.id) for t in lora_cfg.tenants for a in t.adapters)
        modules = () if lora_cfg.runtime_loading else tuple((a, f"{ADAPTER_DIR}/{a}") for a, _ in pairs)
        lora = LoraSpec(max_loras=lora_cfg.max_loras, max_lora_rank=lora_cfg.max_lora_rank,
                        max_cpu_loras=lora_cfg.max_cpu_loras, modules=modules)
        adapters = AdapterStore(mapping_config_map=TENANT_CONFIG_MAP, service_account=LORA_SERVICE_ACCOUNT,
                                runtime_loading=lora_cfg.runtime_loading, adapters=pairs,
                                sync_image=image(settings, "aws-cli"),
                                sync_interval_seconds=int(figure(settings, "adapter_sync_interval_seconds")),
                                cache_gib=int(figure(settings, "adapter_cache_gib")))
    server = VllmServerSpec(
        served_model_name=model.name, model=f"/models/{model.name}", precision=model.precision,
        checkpoint_precision=ckpt, tensor_parallel=model.tensor_parallel, pipeline_parallel=model.pipeline_parallel,
        max_model_len=model.max_model_len, gpu_memory_utilization=util, gpu_compute_capability=gpu.compute_capability,
        enable_prefix_caching=model.batching.enable_prefix_caching, kv_cache_dtype=model.kv_cache_dtype,
        max_num_seqs=model.batching.max_num_seqs, max_num_batched_tokens=model.batching.max_num_batched_tokens,
        lora=lora, port=int(figure(settings, "vllm_port")))
    node_selector, tolerations = _scheduling(pool_scheduling, mp.pool)
    if model.pipeline_parallel > 1:
        budget = figure(settings, "startup_budget_seconds_multinode")
    elif params >= figure(settings, "large_model_billion"):
        budget = figure(settings, "startup_budget_seconds_large")
    else:
        budget = figure(settings, "startup_budget_seconds")
    disk_gb = params * c.bytes_per_parameter[ckpt].value * figure(settings, "model_cache_headroom")
    tp = model.tensor_parallel
    share = tp / instance.gpu_count * figure(settings, "node_allocatable_share")
    ops = Operations(
        startup_budget_seconds=int(budget), startup_period_seconds=int(figure(settings, "startup_probe_period_seconds")),
        prestop_sleep_seconds=int(figure(settings, "prestop_sleep_seconds")),
        drain_seconds=int(figure(settings, "drain_seconds")),
        shm_gib=int(figure(settings, "shm_gib_per_gpu") * tp), cache_gib=max(1, math.ceil(disk_gb / 1.073741824)),
        cpu=max(1, min(int(figure(settings, "cpu_per_gpu") * tp), int(instance.vcpus * share))),
        memory_gib=max(1, min(int(figure(settings, "memory_gib_per_gpu") * tp), int(instance.memory_gib * share))),
        ray_port=int(figure(settings, "ray_port")))
    return VllmWorkloadArgs(
        namespace=NAMESPACE, source=model.source, server=server, image=image(settings, "vllm"), gpus_per_pod=tp,
        placement=Placement(pool=mp.pool, instance_type=instance.name, node_gpus=instance.gpu_count,
                            gpu_memory_gb=gpu.memory_gb, efa=instance.efa, efa_interfaces=instance.max_efa_interfaces,
                            node_selector=node_selector, tolerations=tolerations),
        replicas=mp.replicas, min_replicas=model.min_replicas, max_replicas=model.max_replicas,
        weights_gb=mp.weights_gb, kv_cache_gb=mp.kv_cache_gb_required, ops=ops,
        autoscaling=Autoscaling(prometheus_url=prometheus_url(settings),
                                queue_depth_per_replica=figure(settings, "queue_depth_per_replica"),
                                polling_seconds=int(figure(settings, "keda_polling_seconds")),
                                cooldown_seconds=int(figure(settings, "keda_cooldown_seconds"))),
        gateway_pod_labels=dict(ROUTER_LABELS), prometheus_namespace=settings.config.serving.prometheus_namespace,
        load_balancer_cidrs=tuple(load_balancer_cidrs), hf_token_secret=hf_token_secret, api_key_secret=api_key_secret, adapters=adapters,
        labels={"llmserving.io/stack": settings.stack})


def tenant_mapping(settings: Settings, bucket: Any) -> dict[str, Any]:
    """ConfigMap data: the bucket, and adapter -> tenant as TSV (read by the sync step) and JSON (for the gateway)."""
    pairs = [(a, t.id) for t in settings.config.lora.tenants for a in t.adapters]
    return {"bucket": bucket, "adapters.tsv": "".join(f"{a}\t{t}\n" for a, t in pairs),
            "adapters.json": json.dumps({a: t for a, t in pairs}, sort_keys=True)}


def router_objects(settings: Settings, vpc_cidr: str) -> list[dict]:
    port = int(figure(settings, "vllm_port"))
    meta = lambda n: {"name": n, "namespace": NAMESPACE, "labels": dict(ROUTER_LABELS)}  # noqa: E731
    args = ["--host", "0.0.0.0", "--port", str(port), "--service-discovery", "k8s", "--k8s-namespace", NAMESPACE,
            "--k8s-label-selector", "llmserving.io/serves=true", "--k8s-port", str(port),
            "--routing-logic", "roundrobin"]
    env: list[dict] = []
    if "vllmApiKey" in settings.secrets_set:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "api-key"}}})
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("llm-router"), "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("llm-router"),
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("llm-router"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "llm-router"},
         "subjects": [{"kind": "ServiceAccount", "name": "llm-router", "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("llm-router"),
         "spec": {"replicas": int(figure(settings, "router_replicas")),
                  "selector": {"matchLabels": dict(ROUTER_LABELS)},
                  "template": {"metadata": {"labels": dict(ROUTER_LABELS)}, "spec": {
                      "serviceAccountName": "llm-router",
                      "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                     "whenUnsatisfiable": "ScheduleAnyway",
                                                     "labelSelector": {"matchLabels": dict(ROUTER_LABELS)}}],
                      "containers": [{"name": "router", "image": image(settings, "router"), "args": args, "env": env,
                                      "ports": [{"name": "http", "containerPort": port}],
                                      "readinessProbe": {**probe, "periodSeconds": 5},
                                      "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
                                      "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                    "limits": {"memory": "2Gi"}},
                                      "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                                          "capabilities": {"drop": ["ALL"]}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta("llm-router"),
         "spec": {"type": "ClusterIP", "selector": dict(ROUTER_LABELS),
                  "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta("llm-router"),
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(ROUTER_LABELS)}}},
        # Only the load balancer (IP targets in the VPC) and Prometheus reach the router.
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("llm-router"),
         "spec": {"podSelector": {"matchLabels": dict(ROUTER_LABELS)}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"ipBlock": {"cidr": vpc_cidr}},
                                        {"namespaceSelector": {"matchLabels": {
                                            "kubernetes.io/metadata.name": settings.config.serving.prometheus_namespace}}}],
                               "ports": [{"protocol": "TCP", "port": port}]}]}},
    ]


def dashboard() -> dict:
    """Grafana dashboard: queue depth, KV cache, TTFT/TPOT percentiles, token throughput."""
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
        panel(3, "Time per output token", [(q("vllm:time_per_output_token_seconds", x), f"{{{{model_name}}}} p{int(x * 100)}")
                                           for x in (0.5, 0.95, 0.99)], "s"),
        panel(4, "Token throughput", [
            ("sum by (model_name) (rate(vllm:prompt_tokens_total[5m]))", "{{model_name}} prompt"),
            ("sum by (model_name) (rate(vllm:generation_tokens_total[5m]))", "{{model_name}} generation")], "tps"),
    ]
    return {"title": "vLLM serving", "uid": "llmserving-vllm", "schemaVersion": 39, "editable": False,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "panels": panels,
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]}}


def alert_rules(settings: Settings) -> dict:
    f = lambda k: figure(settings, k)  # noqa: E731
    ttft = f("alert_ttft_p95_seconds")
    rules = [
        {"alert": "VllmTimeToFirstTokenP95High",
         "expr": f"histogram_quantile(0.95, sum by (le, model_name) (rate(vllm:time_to_first_token_seconds_bucket[5m]))) > {ttft:g}",
         "for": "10m", "labels": {"severity": "warning"},
         "annotations": {"summary": f"TTFT p95 of {{{{ $labels.model_name }}}} is above {ttft:g} s"}},
        {"alert": "VllmQueueBacklog",
         "expr": f"sum by (model_name) (vllm:num_requests_waiting) > {f('alert_queue_depth'):g}",
         "for": f"{int(f('alert_queue_minutes'))}m", "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.model_name }} has a sustained request queue; check autoscaling and GPU quota"}},
        {"alert": "VllmKvCacheNearlyFull",
         "expr": f"max by (model_name) (vllm:kv_cache_usage_perc) > {f('alert_kv_cache_usage'):g}",
         "for": "5m", "labels": {"severity": "warning"},
         "annotations": {"summary": "KV cache of {{ $labels.model_name }} is above 90%; requests will be preempted"}},
        {"alert": "VllmPodRestarting",
         "expr": f'increase(kube_pod_container_status_restarts_total{{namespace="{NAMESPACE}"}}[1h]) > {f("alert_restarts_per_hour"):g}',
         "for": "5m", "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.pod }} restarts repeatedly"}},
    ]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "vllm-alerts", "namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "llmserving"}},
            "spec": {"groups": [{"name": "vllm", "rules": rules}]}}


def helm_values(settings: Settings, chart: str) -> dict:
    if chart == "kube-prometheus-stack":
        return {"prometheus": {"prometheusSpec": {"podMonitorSelectorNilUsesHelmValues": False,
                                                  "serviceMonitorSelectorNilUsesHelmValues": False,
                                                  "ruleSelectorNilUsesHelmValues": False,
                                                  "retention": f"{settings.config.observability.log_retention_days}d"}},
                "grafana": {"enabled": settings.config.observability.grafana,
                            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                                       "searchNamespace": "ALL"}}},
                "alertmanager": {"enabled": settings.config.observability.alerts}}
    return {}


def charts_needed(settings: Settings) -> list[str]:
    out = ["keda"]
    if any(m.pipeline_parallel > 1 for m in settings.config.models):
        out.append("lws")
    if settings.config.observability.prometheus:
        out.append("kube-prometheus-stack")
    return out


def build(settings: Settings, plan: capacity.Plan, *, k8s_provider: k8s.Provider, cluster_name: Any,
          pool_scheduling: dict, adapter_bucket_name: Any, adapter_reader_role_arn: Any, tags: dict[str, str],
          vpc_cidr: Optional[str] = None, load_balancer_cidrs: tuple[str, ...] = ()) -> Serving:
    prov = pulumi.ResourceOptions(provider=k8s_provider)
    prefix = f"{settings.project}-{settings.stack}"
    ns = k8s.core.v1.Namespace("llmserving", metadata={"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "llmserving"}},
                               opts=prov)
    in_ns = pulumi.ResourceOptions(provider=k8s_provider, depends_on=[ns])

    releases = []
    for key in charts_needed(settings):
        ch = sc.CHARTS[key]
        releases.append(k8s.helm.v3.Release(
            key, name=key, chart=ch.chart, version=ch.version, namespace=ch.namespace, create_namespace=True,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=ch.repository) if ch.repository else None,
            values=helm_values(settings, key), atomic=True, timeout=900, opts=prov))

    cfg = pulumi.Config(settings.project)
    api_key_secret = hf_secret = None
    if "vllmApiKey" in settings.secrets_set:
        k8s.core.v1.Secret("vllm-api-key", metadata={"name": "vllm-api-key", "namespace": NAMESPACE},
                           string_data={"api-key": cfg.require_secret("vllmApiKey")}, type="Opaque", opts=in_ns)
        api_key_secret = "vllm-api-key"
    if "hfToken" in settings.secrets_set:
        k8s.core.v1.Secret("hf-token", metadata={"name": "hf-token", "namespace": NAMESPACE},
                           string_data={"token": cfg.require_secret("hfToken")}, type="Opaque", opts=in_ns)
        hf_secret = "hf-token"

    lora = settings.config.lora
    deps: list[pulumi.Resource] = [ns, *releases]
    if lora.enabled:
        sa = k8s.core.v1.ServiceAccount("vllm-lora", metadata={"name": LORA_SERVICE_ACCOUNT, "namespace": NAMESPACE},
                                        automount_service_account_token=False, opts=in_ns)
        cm = k8s.core.v1.ConfigMap("tenant-adapters", metadata={"name": TENANT_CONFIG_MAP, "namespace": NAMESPACE},
                                   data=tenant_mapping(settings, adapter_bucket_name), opts=in_ns)
        # The adapter store's read-only role (tenants/ prefix, its KMS key only),
        # bound to the serving service account through Pod Identity.
        aws.eks.PodIdentityAssociation(f"{prefix}-adapter-reader", cluster_name=cluster_name, namespace=NAMESPACE,
                                       service_account=LORA_SERVICE_ACCOUNT, role_arn=adapter_reader_role_arn, tags=tags)
        deps += [sa, cm]

    workloads: dict[str, VllmWorkload] = {}
    for m in settings.config.models:
        args = workload_args(settings, plan, m, pool_scheduling, hf_token_secret=hf_secret, api_key_secret=api_key_secret,
                             load_balancer_cidrs=load_balancer_cidrs)
        workloads[m.name] = VllmWorkload(m.name, args, opts=pulumi.ResourceOptions(
            providers={"kubernetes": k8s_provider}, depends_on=deps))

    for obj in router_objects(settings, vpc_cidr or settings.config.network.vpc_cidr):
        create_object(f"llm-router-{obj['kind'].lower()}", obj, in_ns)
    if settings.config.observability.grafana:
        k8s.core.v1.ConfigMap("vllm-dashboard", metadata={
            "name": "vllm-dashboard", "namespace": NAMESPACE, "labels": {"grafana_dashboard": "1"}},
            data={"vllm.json": json.dumps(dashboard(), sort_keys=True)}, opts=in_ns)
    if settings.config.observability.alerts:
        create_object("vllm-alerts", alert_rules(settings), pulumi.ResourceOptions(provider=k8s_provider,
                                                                                   depends_on=deps))
    return Serving(namespace=NAMESPACE, router_service="llm-router", router_port=int(figure(settings, "vllm_port")),
                   workloads=workloads)

