"""ECS path (orchestrator: ecs): GPU cluster, one capacity provider per pool, one vLLM service per model.

Sizes come from the capacity plan: a pool's Auto Scaling group starts at the
planned node count (ECS managed scaling takes over), a model's service at
its planned replicas, each task holding tensorParallel GPUs, so e.g. a
p4d.24xlarge (8 GPUs) runs 4 tasks of TP 2, a g5.12xlarge (4 GPUs) 4 tasks
of TP 1, a p5.48xlarge one 8-GPU task of a 70B FP8 model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.adapter_store import AdapterStore
from components.ecs_gpu_cluster import EcsCapacityPool, EcsGpuCluster, EcsGpuClusterArgs
from components.load_balancer import ModelLoadBalancer
from components.serving_secrets import ServingSecrets, ServingSecretsArgs
from components.vllm_ecs_service import VllmEcsService, VllmEcsServiceArgs
from infra import capacity
from infra import edge_catalog as ec
from infra.config import ModelConfig, Settings

# Stack secret config key -> environment variable the vLLM container reads.
SECRET_ENV = {"hfToken": "HF_TOKEN", "vllmApiKey": "VLLM_API_KEY"}


@dataclass
class EcsPlatform:
    cluster: EcsGpuCluster
    services: dict[str, VllmEcsService]


def vllm_args(settings: Settings, model: ModelConfig) -> tuple[str, ...]:
    """Arguments after `vllm serve` for one model (vLLM v0.11 flags, FACTS.md).

    Kept minimal; the EKS path's canonical builder (components/vllm_server_args.py,
    branch serving) should replace this when merged.
    """
    port = int(ec.ECS_DEFAULTS["vllm_port"].value)  # type: ignore[arg-type]
    args = [model.source, "--served-model-name", model.name, "--host", "0.0.0.0", "--port", str(port),
            "--tensor-parallel-size", str(model.tensor_parallel), "--max-model-len", str(model.max_model_len)]
    arch = settings.catalog.models.get(model.source)
    checkpoint = arch.checkpoint_precision if arch else None
    if model.precision == "fp8" and checkpoint != "fp8":
        args += ["--quantization", "fp8"]  # dynamic FP8 of a 16-bit checkpoint
    elif model.precision in ("fp16", "bf16"):
        args += ["--dtype", "float16" if model.precision == "fp16" else "bfloat16"]
    if model.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", model.kv_cache_dtype]
    if model.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", f"{model.gpu_memory_utilization:g}"]
    b = model.batching
    if b.max_num_seqs is not None:
        args += ["--max-num-seqs", str(b.max_num_seqs)]
    if b.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(b.max_num_batched_tokens)]
    args.append("--enable-prefix-caching" if b.enable_prefix_caching else "--no-enable-prefix-caching")
    lora = settings.config.lora
    if lora.enabled and lora.base_model == model.name:
        args += ["--enable-lora", "--max-loras", str(lora.max_loras), "--max-lora-rank", str(lora.max_lora_rank)]
        if lora.max_cpu_loras is not None:
            args += ["--max-cpu-loras", str(lora.max_cpu_loras)]
    return tuple(args)


def _pool(settings: Settings, plan: capacity.Plan, name: str) -> EcsCapacityPool:
    cfg = settings.pool(name)
    pool_plan = next(p for p in plan.pools if p.pool == name)
    instances = [settings.catalog.instance(t) for t in cfg.instance_types]
    return EcsCapacityPool(
        name=name, instance_types=tuple(cfg.instance_types),
        gpus_per_instance=min(i.gpu_count for i in instances), capacity_type=cfg.capacity_type,
        min_size=cfg.min_nodes, max_size=cfg.max_nodes, desired_size=pool_plan.nodes,
        root_volume_gib=cfg.root_volume_gib,
        on_demand_base_capacity=min(settings.config.ecs.on_demand_base_capacity, cfg.max_nodes),
        spot_allocation_strategy=settings.config.ecs.spot_allocation_strategy)


def build(settings: Settings, plan: capacity.Plan, network, tags: dict[str, str], *,
          load_balancer: ModelLoadBalancer, adapter_store: Optional[AdapterStore], account_id: str) -> EcsPlatform:
    c = settings.config
    d = ec.ECS_DEFAULTS
    prefix = f"{settings.project}-{settings.stack}"
    cluster = EcsGpuCluster(prefix, EcsGpuClusterArgs(
        cluster_name=prefix, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
        pools=tuple(_pool(settings, plan, p.name) for p in c.gpu_pools),
        ami_parameter=str(ec.ECS_GPU_AMI_PARAMETER.value), container_insights=c.ecs.container_insights,
        target_capacity_percent=int(d["target_capacity_percent"].value),  # type: ignore[arg-type]
        stop_timeout_seconds=int(d["stop_timeout_seconds"].value),  # type: ignore[arg-type]
        protect=True, tags=tags))

    config = pulumi.Config(settings.project)
    values = {env: config.require_secret(key) for key, env in SECRET_ENV.items() if key in settings.secrets_set}
    secret_arns = {}
    if values:
        secrets = ServingSecrets(f"{prefix}-secrets", ServingSecretsArgs(
            path=f"{settings.project}/{settings.stack}", values=values, tags=tags))
        secret_arns = secrets.arns

    services: dict[str, VllmEcsService] = {}
    for mp in plan.models:
        model = next(m for m in c.models if m.name == mp.model)
        pool_cfg = settings.pool(model.pool)
        smallest = min((settings.catalog.instance(t) for t in pool_cfg.instance_types),
                       key=lambda i: (i.gpu_count, i.memory_gib, i.vcpus))
        env = {"VLLM_NO_USAGE_STATS": "1"}
        if adapter_store is not None and c.lora.enabled and c.lora.base_model == model.name:
            env["LORA_ADAPTER_BUCKET"] = adapter_store.configured_bucket_name
        services[model.name] = VllmEcsService(f"{prefix}-{model.name}", VllmEcsServiceArgs(
            service_name=model.name, name_prefix=prefix, cluster_name=cluster.cluster_name, cluster_arn=cluster.cluster_arn,
            capacity_provider=cluster.capacity_providers[model.pool], account_id=account_id, region=settings.region,
            image=c.ecs.vllm_image, command=vllm_args(settings, model), gpus_per_task=mp.gpus_per_replica,
            instance_gpus=smallest.gpu_count, instance_memory_mib=int(smallest.memory_gib * 1024),
            instance_vcpus=smallest.vcpus, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            alb_security_group_id=load_balancer.security_group_id,
            target_group_arn=load_balancer.target_group_arns[model.name],
            alb_arn_suffix=load_balancer.arn_suffix,
            target_group_arn_suffix=load_balancer.target_group_arn_suffixes[model.name],
            desired_count=mp.replicas, min_count=min(model.min_replicas, mp.replicas), max_count=model.max_replicas,
            requests_per_target_per_minute=c.ecs.requests_per_target_per_minute,
            secrets=secret_arns, environment=env,
            task_role_arn=adapter_store.reader_role_arn if adapter_store is not None else None,
            port=int(d["vllm_port"].value),  # type: ignore[arg-type]
            resource_share=float(d["instance_resource_share"].value),  # type: ignore[arg-type]
            shared_memory_mib_per_gpu=int(d["shared_memory_mib_per_gpu"].value),  # type: ignore[arg-type]
            health_check_start_period_seconds=int(d["health_check_start_period_seconds"].value),  # type: ignore[arg-type]
            health_check_interval_seconds=int(d["health_check_interval_seconds"].value),  # type: ignore[arg-type]
            health_check_retries=int(d["health_check_retries"].value),  # type: ignore[arg-type]
            load_grace_period_seconds=c.ecs.load_grace_period_seconds,
            stop_timeout_seconds=int(d["stop_timeout_seconds"].value),  # type: ignore[arg-type]
            scale_in_cooldown_seconds=int(d["scale_in_cooldown_seconds"].value),  # type: ignore[arg-type]
            scale_out_cooldown_seconds=int(d["scale_out_cooldown_seconds"].value),  # type: ignore[arg-type]
            log_retention_days=c.observability.log_retention_days,
            tags={**tags, "model": model.name}, depends_on=(cluster.providers_attached,)))
    pulumi.export("ecsCluster", cluster.cluster_name)
    return EcsPlatform(cluster=cluster, services=services)
