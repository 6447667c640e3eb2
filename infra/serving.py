"""Serving layer on EKS: vLLM workloads, the model-aware router, autoscaling,
observability, and the tenants' LoRA adapter access.

`build(settings, plan, *, k8s_provider, cluster_name, pool_scheduling,
adapter_bucket_name, adapter_reader_role_arn, tags, load_balancer_cidrs,
system_nodes, pool_node_sources)` is called by infra/stack.py with the EKS
platform's provider, pool scheduling and node sources. Everything lands in
namespace `llmserving`. It returns the traffic Service of each model
(`<model>-http`) and what a TargetGroupBinding must wait for.

Routing: one endpoint, model-aware, by a router Deployment (the vLLM
production-stack router) behind the load balancer. ALB listener rules can
match host, path, headers and query strings but never the JSON body, and an
OpenAI client names the model (or the LoRA adapter) only in the body
(`"model": ...`). The router reads that field and discovers the engines (pods
labelled `llmserving.io/serves=true`) and the models each one serves,
adapters included, from the Kubernetes API and `/v1/models`.

Tenants are data: all tenants' adapters go into ONE ConfigMap
(`tenant-adapters`, a TSV of adapter -> tenant), never one resource each.

This module only assembles (settings + plan -> typed component args); the
resources live in components: ServingFoundation (namespace, Secrets, KEDA
and LeaderWorkerSet releases, LoRA service account, tenant ConfigMap, Pod
Identity association), Observability (kube-prometheus-stack or BYO
Prometheus, dashboard, PrometheusRule, DCGM PodMonitor), VllmWorkload (one
per model) and ModelRouter.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.helm_chart import ChartRelease
from components.model_router import ModelRouter, ModelRouterArgs, RouterResources
from components.nvidia_runtime import DCGM_METRICS_PORT, DCGM_NAMESPACE, DCGM_POD_LABELS
from components.observability import AlertThresholds, DcgmScrape, Observability, ObservabilityArgs
from components.serving_foundation import ServingFoundation, ServingFoundationArgs, TenantAdapterAccess
from components.vllm_server_args import LoraSpec, VllmServerSpec
from components.vllm_workload import (ADAPTER_DIR, AdapterStore, Autoscaling, MirrorJob, NodeCache, Operations,
                                      Placement, Rollout, VllmWorkload, VllmWorkloadArgs, Weights, node_cache_dirs)
from infra import capacity
from infra import serving_catalog as sc
from infra.config import ConfigError, ModelConfig, Settings

NAMESPACE = "llmserving"
ROUTER_NAME = "llm-router"
ROUTER_LABELS = {"app.kubernetes.io/name": "llm-router", "app.kubernetes.io/part-of": "llmserving"}
ENGINE_LABEL = "llmserving.io/serves"
API_KEY_SECRET = "vllm-api-key"
HF_TOKEN_SECRET = "hf-token"
LORA_SERVICE_ACCOUNT = "vllm-lora"
TENANT_CONFIG_MAP = "tenant-adapters"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


@dataclass
class Serving:
    namespace: str
    router_service: str
    router_port: int
    workloads: dict[str, VllmWorkload]
    # model -> its traffic Service (the TargetGroupBinding target; not the model name, see
    # components/vllm_workload.py traffic_service_name).
    service_names: dict[str, str] = field(default_factory=dict)
    # What a TargetGroupBinding must wait for: the namespace and the Services it targets.
    binding_dependencies: list[pulumi.Resource] = field(default_factory=list)


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


def _transfer_seconds(settings: Settings, gib: float) -> int:
    from infra.startup import transfer_seconds

    return transfer_seconds(settings, gib)


# Service accounts of a model's weights reader and its mirror Job (components/model_mirror.py gives them roles).
def weights_service_account(model: str) -> str:
    return f"{model}-weights"


def mirror_service_account(model: str) -> str:
    return f"{model}-mirror"


def model_revision(model: ModelConfig) -> str:
    """The mirrored revision: the pin, or `main` outside prod (the mirror job resolves it when it runs)."""
    return model.revision or "main"


def runai_extra_config(settings: Settings, model: ModelConfig, memory_gib: int) -> Optional[dict]:
    """--model-loader-extra-config of the Run:ai streamer (vLLM v0.11.1 runai_streamer_loader.py reads these keys)."""
    if model.load_format != "runai_streamer":
        return None
    procs = model.tensor_parallel  # processes of one pod (one per GPU)
    extra: dict = {"concurrency": int(figure(settings, "runai_streamer_concurrency")),
                   # Each process's CPU buffer; the streamer's default (40 GB) would outgrow the pod's memory limit.
                   "memory_limit": int(memory_gib * 2 ** 30 * figure(settings, "runai_streamer_memory_share") / procs)}
    if procs > 1:
        # Split the reads between the pod's processes (each would otherwise read every file from S3).
        extra["distributed"] = True
    return extra


def adapter_bytes(settings: Settings, source: str, rank: int) -> Optional[int]:
    """Bytes of one LoRA adapter of `rank` for base model `source` (None: geometry not in the catalog).

    Per layer r x (in + out) for q, k, v, o (hidden -> hidden, hidden -> kv, hidden -> kv, hidden -> hidden)
    and gate, up, down (hidden -> intermediate twice, intermediate -> hidden); serving_catalog.ADAPTER_GEOMETRY.
    """
    geo = sc.ADAPTER_GEOMETRY.get(source)
    arch = settings.catalog.models.get(source)
    if geo is None or arch is None:
        return None
    h, i, kv = geo.hidden_size, geo.intermediate_size, arch.kv_heads * arch.head_dim
    per_rank = arch.layers * ((h + h) + 2 * (h + kv) + (h + h) + 3 * (h + i))
    return int(per_rank * rank * figure(settings, "adapter_bytes_per_parameter"))


def adapter_slots(settings: Settings) -> int:
    """Adapters a runtime-loading pod keeps on disk at most: --max-cpu-loras (or --max-loras) x slots per entry."""
    lora = settings.config.lora
    return (lora.max_cpu_loras or lora.max_loras) * int(figure(settings, "adapter_disk_slots_per_cpu_lora"))


def adapters_held(settings: Settings) -> int:
    """Adapters a LoRA pod holds: every mapped one (static loading) or at most adapter_slots() (runtime)."""
    lora = settings.config.lora
    mapped = sum(len(t.adapters) for t in lora.tenants)
    return min(mapped, adapter_slots(settings)) if lora.runtime_loading else mapped


def adapter_cache_gib(settings: Settings) -> int:
    """The adapter cache (emptyDir sizeLimit): what the held adapters need with the fill-ratio headroom, at
    most adapterCacheGib; adapterCacheGib when the base model's adapter size is not in the catalog."""
    lora = settings.config.lora
    limit = int(figure(settings, "adapter_cache_gib"))
    model = next((m for m in settings.config.models if m.name == lora.base_model), None)
    size = adapter_bytes(settings, model.source, lora.max_lora_rank) if model else None
    if size is None:
        return limit
    need = adapters_held(settings) * size / figure(settings, "adapter_cache_fill_ratio")
    return max(1, min(limit, math.ceil(need / 2 ** 30)))


def adapter_cache_problems(settings: Settings) -> list[str]:
    """The adapters a LoRA pod or task holds must fit its adapter cache (on EKS an emptyDir whose sizeLimit
    evicts the pod; on ECS a task volume on the instance's root volume, which the image and other tasks share).

    Static loading preloads every mapped adapter (O(tenants); the only mode on ECS, capped at 64 named
    adapters); runtime loading fetches on first request and keeps at most adapter_slots() (O(active
    adapters), components/lora_s3_resolver.py).
    """
    lora = settings.config.lora
    if not lora.enabled:
        return []
    ecs = settings.config.orchestrator == "ecs"
    model = next((m for m in settings.config.models if m.name == lora.base_model), None)
    size = adapter_bytes(settings, model.source, lora.max_lora_rank) if model else None
    if size is None:
        return []
    held = adapters_held(settings)
    cache = figure(settings, "adapter_cache_gib") * 2 ** 30 * figure(settings, "adapter_cache_fill_ratio")
    if held * size <= cache:
        return []
    how = (f"keeps up to {held:,} adapters (--max-cpu-loras x adapterDiskSlotsPerCpuLora)" if lora.runtime_loading
           else f"preloads all {held:,} mapped adapters (static loading{', the only mode on ECS' if ecs else ''})")
    if ecs:
        fix = ("name fewer adapters, lower lora.maxLoraRank, raise serving.figures.adapterCacheGib (the task's "
               "adapter volume lives on the instance's root volume), or serve it on orchestrator 'eks' with "
               "lora.runtimeLoading: true")
    elif lora.runtime_loading:
        fix = "lower lora.maxCpuLoras or raise serving.figures.adapterCacheGib"
    else:
        fix = ("set lora.runtimeLoading: true (adapters are fetched on first request, least recently used evicted) "
               "or raise serving.figures.adapterCacheGib")
    return [f"{settings.project}:lora.tenants: model {model.name} {how} of rank {lora.max_lora_rank}, "
            f"{size / 1e6:,.0f} MB each ({model.source}, all linear layers, "
            f"{figure(settings, 'adapter_bytes_per_parameter'):g} bytes per parameter): {held * size / 1e9:,.1f} GB, "
            f"but its adapter cache holds {cache / 1e9:,.1f} GB (adapterCacheGib "
            f"{figure(settings, 'adapter_cache_gib'):g} GiB x adapterCacheFillRatio "
            f"{figure(settings, 'adapter_cache_fill_ratio'):g}); {fix}"]


def keepalive_seconds(settings: Settings) -> int:
    """HTTP keep-alive of every target behind the ALB: its idle timeout plus a margin.

    The target must keep an idle connection open longer than the load balancer does, or it
    closes one the ALB is about to reuse and the client gets a 502 (ELB docs, ALB
    "Connection idle timeout"). vLLM's default is 5 s (vllm/envs.py VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
    v0.11.1), uvicorn's (the router's server) also 5 s.
    """
    from infra import edge_catalog as _edge  # one margin for EKS and ECS

    return _edge.keep_alive_seconds(settings.config.ingress.idle_timeout_seconds)


def _nodes_for(mp: capacity.ModelPlan, replicas: int, gpus_per_node: int) -> int:
    if mp.pipeline_parallel > 1:
        return replicas * mp.pipeline_parallel
    return math.ceil(replicas / max(1, gpus_per_node // mp.tensor_parallel))


def rollout(settings: Settings, plan: capacity.Plan, model: str) -> Rollout:
    """The rolling-update step of a model, from its pool's headroom.

    A surge pod needs room: a node the pool can still add (Karpenter: up to the pool's GPU
    limit; a managed node group: nothing beyond its planned size, no autoscaler runs here).
    The headroom is what is left when every model of the pool runs at maxReplicas (KEDA may be
    there when a rollout starts), shared evenly between the pool's models. With room for at
    least one pod (a whole group for a LeaderWorkerSet): surge into it, never below the
    serving count. Without: replace one replica at a time (maxSurge 0, maxUnavailable 1), as
    maxSurge 1 / maxUnavailable 0 would leave the surge pod Pending forever.
    """
    mp = next(m for m in plan.models if m.model == model)
    pp = next(p for p in plan.pools if p.pool == mp.pool)
    pool = settings.pool(mp.pool)
    if settings.provisioner(pool) == "karpenter":
        from infra.eks_platform import gpu_limit  # the NodePool's nvidia.com/gpu limit
        ceiling = gpu_limit(settings, pool) // pp.gpus_per_node
    else:
        ceiling = pp.nodes
    on_pool = [m for m in plan.models if m.pool == mp.pool]
    peak = sum(_nodes_for(m, m.max_replicas, pp.gpus_per_node) for m in on_pool)
    spare_nodes = max(0, ceiling - peak) // len(on_pool)
    if mp.pipeline_parallel > 1:
        spare_pods = spare_nodes // mp.pipeline_parallel
    else:
        spare_pods = spare_nodes * max(1, pp.gpus_per_node // mp.tensor_parallel)
    surge = min(spare_pods, max(1, math.ceil(figure(settings, "max_surge_share") * mp.max_replicas)))
    if surge >= 1:
        return Rollout(max_surge=surge, max_unavailable=0)
    # No room: replace in place, a share of the fleet per wave. One at a time would take
    # maxReplicas waves of a full start-up each (large-use1-a's 8B: 192 waves, days).
    step = max(1, math.floor(figure(settings, "max_unavailable_share") * mp.max_replicas))
    return Rollout(max_surge=0, max_unavailable=step)


# What the kubelet keeps of a node's ephemeral storage for itself, as Karpenter models it when it
# picks an instance for pending pods (aws/karpenter-provider-aws v1.14.1 pkg/providers/instancetype/
# types.go: ephemeral storage = the root volume of the EC2NodeClass, kube-reserved 1Gi,
# evictionHard nodefs.available 10%); the EKS AL2023 AMI's nodeadm reserves the same.
EPHEMERAL_KUBE_RESERVED_GIB = 1
EPHEMERAL_EVICTION_SHARE = 0.10


def _gib(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024, "Ti": 1024.0}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[:-len(suffix)]) * factor
    return float(quantity) / 2 ** 30


def validate(settings: Settings, plan: capacity.Plan) -> None:
    """Serving checks before any resource exists: the pods the plan puts on a node fit its disk.

    The planner packs GPUs/TP pods per node, on every instance type of the pool; if their
    ephemeral-storage requests (model cache, scratch, adapter cache) exceed what the node's disk
    leaves allocatable, the scheduler places fewer, the pool needs more nodes than planned and
    its GPU limit strands replicas.
    """
    from components.vllm_workload import render
    from infra.eks_platform import has_instance_store

    c = settings.config
    problems: list[str] = []
    for model in c.models:
        mp = next(p for p in plan.models if p.model == model.name)
        i, pool = next((i, p) for i, p in enumerate(c.gpu_pools) if p.name == mp.pool)
        sched = {mp.pool: {"node_selector": {}, "tolerations": []}}
        # Storage requests do not depend on where the weights come from: any bucket name renders.
        args = workload_args(settings, plan, model, sched, hf_token_secret=None, api_key_secret=None,
                             mirror_bucket="model-mirror")
        pod = render(args)[0]["spec"]
        template = pod["template"]["spec"] if "template" in pod else pod["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
        request = sum(_gib(ctr["resources"]["requests"].get("ephemeral-storage", "0"))
                      for ctr in template["containers"])
        # Init containers run one at a time (native sidecars keep running): the pod needs the larger.
        sidecars = sum(_gib(ctr["resources"]["requests"].get("ephemeral-storage", "0"))
                       for ctr in template.get("initContainers", []) if ctr.get("restartPolicy") == "Always")
        inits = max((_gib(ctr["resources"]["requests"].get("ephemeral-storage", "0"))
                     for ctr in template.get("initContainers", []) if ctr.get("restartPolicy") != "Always"), default=0)
        per_pod = max(request + sidecars, inits + sidecars)
        raid0 = has_instance_store(settings, pool)
        for t in pool.instance_types:
            inst = settings.catalog.instance(t)
            per_node = 1 if model.pipeline_parallel > 1 else max(1, inst.gpu_count // model.tensor_parallel)
            # With the instance-store RAID0 (infra/eks_platform.py), the kubelet's ephemeral storage
            # is the NVMe array (Karpenter instanceStorePolicy RAID0; nodeadm localStorage RAID0);
            # otherwise the root volume.
            disk_gib = inst.instance_store_gb * 1e9 / 2 ** 30 if raid0 else pool.root_volume_gib
            allocatable = disk_gib * (1 - EPHEMERAL_EVICTION_SHARE) - EPHEMERAL_KUBE_RESERVED_GIB
            if per_node * per_pod <= allocatable:
                continue
            need = (per_node * per_pod + EPHEMERAL_KUBE_RESERVED_GIB) / (1 - EPHEMERAL_EVICTION_SHARE)
            where = (f"gpuPools[{i}].instanceTypes: {t} has {inst.instance_store_gb:g} GB of instance store"
                     if raid0 else f"gpuPools[{i}].rootVolumeGib: got {pool.root_volume_gib}")
            fix = (f"drop {t} from the pool" if raid0 else f"set at least {int(-(-need // 10) * 10)}")
            problems.append(
                f"{settings.project}:{where}; the plan puts {per_node} pods of models[{c.models.index(model)}] "
                f"({model.name}) on each {t}, each asking {per_pod:g} GiB of ephemeral storage (model cache, "
                f"scratch, adapters), and the kubelet leaves {allocatable:.0f} GiB of {disk_gib:.0f} GiB "
                f"allocatable: {fix}")
            break
    if problems:
        raise ConfigError(problems)


def workload_args(settings: Settings, plan: capacity.Plan, model: ModelConfig, pool_scheduling: dict, *,
                  hf_token_secret: Optional[str], api_key_secret: Optional[str], mirror_bucket: str,
                  load_balancer_cidrs: tuple[str, ...] = (), depends_on: tuple = ()) -> VllmWorkloadArgs:
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
                                cache_gib=adapter_cache_gib(settings),
                                fill_ratio=figure(settings, "adapter_cache_fill_ratio"),
                                sync_scratch_mib=int(figure(settings, "sync_scratch_mib")), region=settings.region,
                                slots=adapter_slots(settings))
    node_selector, tolerations = _scheduling(pool_scheduling, mp.pool)
    from infra import startup

    est = startup.estimate(settings, plan, model)
    cache_gib = startup.cache_gib(settings, model)
    tp = model.tensor_parallel
    share = tp / instance.gpu_count * figure(settings, "node_allocatable_share")
    memory_gib = max(1, min(int(figure(settings, "memory_gib_per_gpu") * tp), int(instance.memory_gib * share)))
    revision = model_revision(model)
    from components.model_mirror import mirror_prefix

    streams = model.load_format == "runai_streamer"
    weights = Weights(
        bucket=mirror_bucket, prefix=mirror_prefix(model.source, revision), load_format=model.load_format,
        service_account=None if is_lora_base else weights_service_account(model.name), region=settings.region,
        stream_concurrency=int(figure(settings, "runai_streamer_concurrency")),
        copy_image=image(settings, "aws-cli"),
        mirror=MirrorJob(image=image(settings, "vllm"), revision=revision,
                         service_account=mirror_service_account(model.name), hf_token_secret=hf_token_secret,
                         concurrency=int(figure(settings, "mirror_concurrency")),
                         part_mib=int(figure(settings, "mirror_part_mib")),
                         keep_revisions=int(figure(settings, "mirror_keep_revisions")),
                         deadline_seconds=est.mirror_deadline_seconds))
    # The node-level cache (compile caches, fallback weights): the directory every EKS GPU node creates at boot,
    # owned by the serving uid (infra/eks_catalog.py NODE_CACHE_HOST_PATH; components/gpu_node_group.py).
    from infra import eks_catalog as ec

    # The pods select the label of nodes that create it (a node that predates the directory never carries it).
    node_cache = NodeCache(host_path=ec.NODE_CACHE_HOST_PATH, node_label=ec.NODE_CACHE_LABEL)
    server = VllmServerSpec(
        served_model_name=model.name,
        model=weights.uri if streams else node_cache_dirs(node_cache.mount_path, model.name, weights.revision)["weights"],
        precision=model.precision,
        checkpoint_precision=ckpt, tensor_parallel=model.tensor_parallel, pipeline_parallel=model.pipeline_parallel,
        max_model_len=model.max_model_len, gpu_memory_utilization=util, gpu_compute_capability=gpu.compute_capability,
        enable_prefix_caching=model.batching.enable_prefix_caching, kv_cache_dtype=model.kv_cache_dtype,
        max_num_seqs=model.batching.max_num_seqs, max_num_batched_tokens=model.batching.max_num_batched_tokens,
        lora=lora, port=int(figure(settings, "vllm_port")), load_format=model.load_format,
        model_loader_extra_config=runai_extra_config(settings, model, memory_gib))
    ops = Operations(
        # From the start-up estimate (infra/startup.py): one source of truth for probes and awaits.
        startup_budget_seconds=est.startup_probe_budget_seconds,
        startup_period_seconds=int(figure(settings, "startup_probe_period_seconds")),
        prestop_sleep_seconds=int(figure(settings, "prestop_sleep_seconds")),
        drain_seconds=int(figure(settings, "drain_seconds")),
        shm_gib=int(figure(settings, "shm_gib_per_gpu") * tp), cache_gib=cache_gib,
        cpu=max(1, min(int(figure(settings, "cpu_per_gpu") * tp), int(instance.vcpus * share))),
        memory_gib=memory_gib,
        ray_port=int(figure(settings, "ray_port")),
        node_ready_seconds=est.node_boot_seconds, image_pull_seconds=est.image_pull_seconds,
        # Upper bounds: what the init containers may write into their volumes (size limits), the
        # same bound the deploy-readiness check (infra/readiness.py) uses.
        download_seconds=est.copy_seconds, adapter_sync_seconds=est.adapter_sync_seconds,
        await_margin_seconds=int(figure(settings, "await_margin_seconds")),
        scratch_gib=int(figure(settings, "scratch_gib")), keepalive_seconds=keepalive_seconds(settings),
        run_as_user=int(figure(settings, "run_as_user")), fs_group=int(figure(settings, "fs_group")),
        ray_join_retry_seconds=int(figure(settings, "ray_join_retry_seconds")))
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
        load_balancer_cidrs=tuple(load_balancer_cidrs), api_key_secret=api_key_secret, adapters=adapters,
        weights=weights, node_cache=node_cache,
        labels={"llmserving.io/stack": settings.stack}, rollout=rollout(settings, plan, model.name),
        depends_on=tuple(depends_on))


def tenant_mapping(settings: Settings, bucket: Any) -> dict[str, Any]:
    """ConfigMap data: the bucket, and adapter -> tenant as TSV (read by the sync step) and JSON (for the gateway)."""
    pairs = [(a, t.id) for t in settings.config.lora.tenants for a in t.adapters]
    return {"bucket": bucket, "adapters.tsv": "".join(f"{a}\t{t}\n" for a, t in pairs),
            "adapters.json": json.dumps({a: t for a, t in pairs}, sort_keys=True)}


def helm_values(settings: Settings, chart: str) -> dict:
    from infra import edge_catalog as _edge

    if chart == "kube-prometheus-stack":
        o = settings.config.observability
        volume, kept = _edge.prometheus_volume_gib(o.log_retention_days)
        storage: dict = _edge.PROMETHEUS_STORAGE_CLASS.value  # type: ignore[assignment]
        return {"prometheus": {"prometheusSpec": {
                    "podMonitorSelectorNilUsesHelmValues": False,
                    "serviceMonitorSelectorNilUsesHelmValues": False,
                    "ruleSelectorNilUsesHelmValues": False,
                    "retention": f"{o.log_retention_days}d",
                    # Prometheus' --storage.tsdb.retention.size (units base 2: GB = 2^30 bytes).
                    "retentionSize": f"{kept}GB",
                    # A persistent volume instead of the chart's emptyDir: metrics survive pod moves,
                    # and 90 days do not fill the 50 GiB root disk of a system node.
                    "storageSpec": {"volumeClaimTemplate": {"spec": {
                        "storageClassName": storage["name"], "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": f"{volume}Gi"}}}}}}},
                "grafana": {"enabled": o.grafana,
                            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                                       "searchNamespace": "ALL"}}},
                "alertmanager": {"enabled": o.alerts}}
    return {}


def charts_needed(settings: Settings) -> list[str]:
    out = ["keda"]
    if any(m.pipeline_parallel > 1 for m in settings.config.models):
        out.append("lws")
    if settings.config.observability.prometheus:
        out.append("kube-prometheus-stack")
    return out


def chart_release(settings: Settings, key: str) -> ChartRelease:
    ch = sc.CHARTS[key]
    return ChartRelease(name=key, chart=ch.chart, version=ch.version, namespace=ch.namespace,
                        repository=ch.repository, values=helm_values(settings, key))


def foundation_args(settings: Settings, *, cluster_name: Any, adapter_bucket_name: Any, adapter_reader_role_arn: Any,
                    tags: dict[str, str], node_ready: tuple = ()) -> ServingFoundationArgs:
    cfg = pulumi.Config(settings.project)
    secrets: dict[str, dict[str, Any]] = {}
    if "vllmApiKey" in settings.secrets_set:
        secrets[API_KEY_SECRET] = {"api-key": cfg.require_secret("vllmApiKey")}
    if "hfToken" in settings.secrets_set:
        secrets[HF_TOKEN_SECRET] = {"token": cfg.require_secret("hfToken")}
    tenants = None
    if settings.config.lora.enabled:
        tenants = TenantAdapterAccess(service_account=LORA_SERVICE_ACCOUNT, config_map=TENANT_CONFIG_MAP,
                                      mapping=tenant_mapping(settings, adapter_bucket_name), cluster_name=cluster_name,
                                      reader_role_arn=adapter_reader_role_arn)
    return ServingFoundationArgs(
        namespace=NAMESPACE,
        charts=tuple(chart_release(settings, k) for k in charts_needed(settings) if k != "kube-prometheus-stack"),
        secrets=secrets, tenant_adapters=tenants, tags=dict(tags), node_ready=tuple(node_ready))


def observability_args(settings: Settings, depends_on: tuple = (), cluster_name: Any = None) -> ObservabilityArgs:
    from components.observability import AlertRouting, StorageClassSpec
    from infra import edge_catalog as _edge

    o = settings.config.observability
    f = lambda k: figure(settings, k)  # noqa: E731
    alerts = AlertThresholds(ttft_p95_seconds=f("alert_ttft_p95_seconds"), queue_depth=f("alert_queue_depth"),
                             queue_minutes=int(f("alert_queue_minutes")), kv_cache_usage=f("alert_kv_cache_usage"),
                             restarts_per_hour=f("alert_restarts_per_hour")) if o.alerts else None
    # GPU metrics need the exporter (EKS platform) and a Prometheus with the operator CRDs (this layer).
    dcgm = DcgmScrape(namespace=DCGM_NAMESPACE, pod_labels=dict(DCGM_POD_LABELS),
                      port=DCGM_METRICS_PORT) if o.dcgm_exporter and o.prometheus else None
    # Alerts go to an SNS topic the stack creates, mailed to the budget's addresses (components/observability.py
    # says why SNS). The EKS cluster is named after the stack (infra/eks_platform.py) unless given.
    prefix = f"{settings.project}-{settings.stack}"
    routing = None
    if o.alerts and o.prometheus:
        from infra.stack import cost_tags  # at call time: infra.stack imports this module

        routing = AlertRouting(topic_name=f"{prefix}-alerts", emails=tuple(settings.config.budget.notify_emails),
                               cluster_name=cluster_name if cluster_name is not None else prefix, region=settings.region,
                               namespace=sc.CHARTS["kube-prometheus-stack"].namespace, tags=cost_tags(settings))
    storage: dict = _edge.PROMETHEUS_STORAGE_CLASS.value  # type: ignore[assignment]
    return ObservabilityArgs(
        namespace=NAMESPACE,
        prometheus_chart=chart_release(settings, "kube-prometheus-stack") if o.prometheus else None,
        dashboard=o.grafana, alerts=alerts, dcgm=dcgm, depends_on=tuple(depends_on), alert_routing=routing,
        storage_class=StorageClassSpec(name=storage["name"], provisioner=storage["provisioner"],
                                       parameters=dict(storage["parameters"])) if o.prometheus else None)


def router_args(settings: Settings, load_balancer_cidrs: tuple[str, ...], depends_on: tuple = ()) -> ModelRouterArgs:
    f = lambda k: figure(settings, k)  # noqa: E731
    return ModelRouterArgs(
        namespace=NAMESPACE, image=image(settings, "router"), port=int(f("vllm_port")), replicas=int(f("router_replicas")),
        labels=dict(ROUTER_LABELS), engine_selector=f"{ENGINE_LABEL}=true",
        load_balancer_cidrs=tuple(load_balancer_cidrs), prometheus_namespace=settings.config.serving.prometheus_namespace,
        api_key_secret=API_KEY_SECRET if "vllmApiKey" in settings.secrets_set else None,
        resources=RouterResources(cpu=f"{int(f('router_cpu_millicores'))}m", memory=f"{int(f('router_memory_mib'))}Mi",
                                  memory_limit=f"{int(f('router_memory_limit_mib'))}Mi"),
        depends_on=tuple(depends_on), run_as_user=int(f("run_as_user")), fs_group=int(f("fs_group")),
        scratch_mib=int(f("router_scratch_mib")), keepalive_seconds=keepalive_seconds(settings),
        resync_seconds=int(f("router_resync_seconds")))



def build(settings: Settings, plan: capacity.Plan, *, k8s_provider: k8s.Provider, cluster_name: Any,
          pool_scheduling: dict, adapter_bucket_name: Any, adapter_reader_role_arn: Any, tags: dict[str, str],
          load_balancer_cidrs: tuple[str, ...] = (), system_nodes: Sequence[pulumi.Resource] = (),
          pool_node_sources: Mapping[str, Sequence[pulumi.Resource]] = {},  # noqa: B006 (read only)
          mirror: Any = None) -> Serving:
    """Assembly only: settings and plan -> component args.

    `load_balancer_cidrs` (the load balancer's subnets) are the only addresses
    outside the cluster that the router and engines admit (not the whole VPC:
    any pod or instance in it could then bypass the load balancer).

    Ordering (a release or workload created before any node can run its pods fails or
    hangs): the controllers' releases (KEDA, LeaderWorkerSet, kube-prometheus-stack) and the
    router wait for `system_nodes`; each model's objects wait for its pool's
    `pool_node_sources[pool]` (node group or Karpenter NodePool, device plugin), the
    foundation (namespace, Secrets, CRDs, Pod Identity association) and observability (CRDs).
    A component's depends_on does not reach its children, so every component takes them in
    its args.
    """
    prefix = f"{settings.project}-{settings.stack}"
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": k8s_provider})
    system = tuple(system_nodes)
    foundation = ServingFoundation(prefix, foundation_args(
        settings, cluster_name=cluster_name, adapter_bucket_name=adapter_bucket_name,
        adapter_reader_role_arn=adapter_reader_role_arn, tags=tags, node_ready=system), opts=k8s_opts)
    observability = Observability(
        f"{prefix}-observability",
        observability_args(settings, (foundation.namespace_resource, *system), cluster_name=cluster_name),
        opts=k8s_opts)
    deps = (*foundation.ready, *observability.ready, *system)

    api_key_secret = API_KEY_SECRET if "vllmApiKey" in settings.secrets_set else None
    hf_secret = HF_TOKEN_SECRET if "hfToken" in settings.secrets_set else None
    workloads: dict[str, VllmWorkload] = {}
    for m in settings.config.models:
        # The mirror's bucket, roles and Pod Identity associations exist before the mirror Job and the pods.
        args = workload_args(settings, plan, m, pool_scheduling, hf_token_secret=hf_secret, api_key_secret=api_key_secret,
                             mirror_bucket=mirror.configured_bucket_name, load_balancer_cidrs=load_balancer_cidrs,
                             depends_on=(*deps, *pool_node_sources.get(m.pool, ()), *mirror.ready[m.name]))
        workloads[m.name] = VllmWorkload(m.name, args, opts=k8s_opts)

    router = ModelRouter(ROUTER_NAME, router_args(settings, load_balancer_cidrs, (*foundation.ready, *system)),
                         opts=k8s_opts)
    return Serving(namespace=NAMESPACE, router_service=router.service_name, router_port=router.port,
                   workloads=workloads, service_names={m: w.service_name for m, w in workloads.items()},
                   binding_dependencies=[foundation.namespace_resource, *(w.service for w in workloads.values()),
                                         router.service])
