"""ECS path (orchestrator: ecs): GPU cluster, one capacity provider per pool, one vLLM service per model.

Sizes come from the capacity plan: a pool's Auto Scaling group starts at the
planned node count (ECS managed scaling takes over), a model's service at
its planned replicas, each task holding tensorParallel GPUs, so e.g. a
p4d.24xlarge (8 GPUs) runs 4 tasks of TP 2, a g5.12xlarge (4 GPUs) 4 tasks
of TP 1, a p5.48xlarge one 8-GPU task of a 70B FP8 model.

vLLM's arguments come from the canonical builder
(components/vllm_server_args.py) through a typed `VllmServerSpec`, as on EKS.
The LoRA base model's task copies its tenants' adapters from the adapter
store before vLLM starts: the mapping (adapter -> tenant) is ONE S3 manifest
object per model, so the resource count does not grow with tenants, and the
task definition stays far below ECS's 64 KiB limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.adapter_manifest import AdapterManifest, AdapterManifestArgs
from components.adapter_store import AdapterStore
from components.ecs_gpu_cluster import EcsCapacityPool, EcsGpuCluster, EcsGpuClusterArgs
from components.load_balancer import ModelLoadBalancer
from components.serving_secrets import ServingSecrets, ServingSecretsArgs
from components.vllm_ecs_service import AdapterSync, VllmEcsService, VllmEcsServiceArgs
from components.vllm_server_args import LoraSpec, VllmServerSpec
from infra import capacity, ecs_capacity, eks_catalog
from infra import edge_catalog as ec
from infra import serving_catalog as sc
from infra.config import ModelConfig, Settings

# Stack secret config key -> environment variable the vLLM container reads.
SECRET_ENV = {"hfToken": "HF_TOKEN", "vllmApiKey": "VLLM_API_KEY"}
# Where the adapter-sync container copies adapters; vLLM mounts it read-only.
ADAPTER_DIR = "/adapters"
# Adapter-store prefix of the ECS adapter manifests (outside tenants/, which tenants write).
MANIFEST_ROOT = "manifests/ecs/"


@dataclass
class EcsPlatform:
    cluster: EcsGpuCluster
    services: dict[str, VllmEcsService]


def _figure(key: str) -> int:
    return int(ec.ECS_DEFAULTS[key].value)  # type: ignore[arg-type]


def adapter_pairs(settings: Settings) -> list[tuple[str, str]]:
    """(adapter, tenant) of every mapped adapter, in config order."""
    return [(a, t.id) for t in settings.config.lora.tenants for a in t.adapters]


def manifest_body(settings: Settings) -> str:
    return "".join(f"{a}\t{t}\n" for a, t in adapter_pairs(settings))


def manifest_key(settings: Settings, model: ModelConfig) -> str:
    """Content-addressed, so a new mapping is a new task definition revision (a rollout) and a
    rollback still finds the manifest its revision names (old objects are retained)."""
    digest = hashlib.sha256(manifest_body(settings).encode()).hexdigest()[:16]
    return f"{MANIFEST_ROOT}{settings.stack}/{model.name}/adapters-{digest}.tsv"


def is_lora_base(settings: Settings, model: ModelConfig) -> bool:
    lora = settings.config.lora
    return lora.enabled and lora.base_model == model.name


def server_spec(settings: Settings, plan: capacity.Plan, model: ModelConfig, mirror_bucket: str) -> VllmServerSpec:
    """The typed vLLM spec of one model on ECS (same semantics as infra/serving.py on EKS)."""
    c = settings.catalog
    mp = next(p for p in plan.models if p.model == model.name)
    gpu = c.gpu_of(c.instance(mp.instance_type))
    arch = c.models.get(model.source)
    lora_cfg = settings.config.lora
    lora = None
    if is_lora_base(settings, model):
        # Runtime loading resolves adapters by name from the adapter directory; otherwise each is named at start.
        modules = () if lora_cfg.runtime_loading else tuple(
            (a, f"{ADAPTER_DIR}/{a}") for a, _ in adapter_pairs(settings))
        lora = LoraSpec(max_loras=lora_cfg.max_loras, max_lora_rank=lora_cfg.max_lora_rank,
                        max_cpu_loras=lora_cfg.max_cpu_loras, modules=modules)
    from components.model_mirror import mirror_uri
    from infra.serving import model_revision, runai_extra_config

    smallest = min((c.instance(t) for t in settings.pool(model.pool).instance_types),
                   key=lambda i: (i.gpu_count, i.memory_gib, i.vcpus))
    share = float(ec.ECS_DEFAULTS["instance_resource_share"].value)  # type: ignore[arg-type]
    task_memory_gib = int(smallest.memory_gib * share / max(smallest.gpu_count // model.tensor_parallel, 1))
    return VllmServerSpec(
        # ECS tasks stream the weights from the stack's mirror (the run-once mirror task copied them).
        served_model_name=model.name, model=mirror_uri(mirror_bucket, model.source, model_revision(model)),
        load_format=model.load_format,
        model_loader_extra_config=runai_extra_config(settings, model, task_memory_gib),
        precision=model.precision,
        checkpoint_precision=arch.checkpoint_precision if arch is not None else "bf16",
        tensor_parallel=model.tensor_parallel, pipeline_parallel=model.pipeline_parallel,
        max_model_len=model.max_model_len,
        gpu_memory_utilization=model.gpu_memory_utilization or c.assumption("default_gpu_memory_utilization"),
        gpu_compute_capability=gpu.compute_capability, enable_prefix_caching=model.batching.enable_prefix_caching,
        kv_cache_dtype=model.kv_cache_dtype, max_num_seqs=model.batching.max_num_seqs,
        max_num_batched_tokens=model.batching.max_num_batched_tokens, lora=lora, port=_figure("vllm_port"))


def _adapter_sync(settings: Settings, model: ModelConfig, store: AdapterStore) -> AdapterSync:
    key = manifest_key(settings, model)
    return AdapterSync(image=sc.IMAGES["aws-cli"].ref, bucket=store.configured_bucket_name, manifest_key=key,
                       mount_path=ADAPTER_DIR, runtime_loading=settings.config.lora.runtime_loading,
                       cpu=_figure("adapter_sync_cpu_units"),
                       memory_reservation_mib=_figure("adapter_sync_memory_reservation_mib"),
                       memory_mib=_figure("adapter_sync_memory_mib"))


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
        spot_allocation_strategy=settings.config.ecs.spot_allocation_strategy,
        # Instance store RAID0, gp3 performance, reservations, acknowledgement tag (issue 12.3; infra/ecs_capacity.py).
        **ecs_capacity.pool_args(settings, name))


def task_uid() -> int:
    """The uid every container of a serving task runs as (components/vllm_ecs_service.py VllmEcsServiceArgs.user)."""
    default = VllmEcsServiceArgs.__dataclass_fields__["user"].default
    return int(str(default).split(":", 1)[0])


def build(settings: Settings, plan: capacity.Plan, network, tags: dict[str, str], *,
          load_balancer: ModelLoadBalancer, adapter_store: Optional[AdapterStore], account_id: str,
          spot_service_linked_role: Optional[pulumi.Resource] = None, mirror: Any = None) -> EcsPlatform:
    c = settings.config
    d = ec.ECS_DEFAULTS
    prefix = f"{settings.project}-{settings.stack}"
    cluster = EcsGpuCluster(prefix, EcsGpuClusterArgs(
        cluster_name=prefix, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
        pools=tuple(_pool(settings, plan, p.name) for p in c.gpu_pools),
        ami_parameter=str(ec.ECS_GPU_AMI_PARAMETER.value), container_insights=c.ecs.container_insights,
        target_capacity_percent=int(d["target_capacity_percent"].value),  # type: ignore[arg-type]
        stop_timeout_seconds=int(d["stop_timeout_seconds"].value),  # type: ignore[arg-type]
        protect=True, tags=tags,
        spot_prerequisites=(spot_service_linked_role,) if spot_service_linked_role is not None else (),
        # The node-level cache, created at boot for the uid the tasks run as (VllmEcsServiceArgs.user).
        **ecs_capacity.cluster_args(settings, cache_owner_uid=task_uid())))

    config = pulumi.Config(settings.project)
    values = {env: config.require_secret(key) for key, env in SECRET_ENV.items() if key in settings.secrets_set}
    secret_arns = {}
    if values:
        secrets = ServingSecrets(f"{prefix}-secrets", ServingSecretsArgs(
            path=f"{settings.project}/{settings.stack}", values=values, tags=tags))
        secret_arns = secrets.arns
    # The Hugging Face token goes to the mirror task only: serving tasks never reach the Hub.
    serving_secrets = {k: v for k, v in secret_arns.items() if k != "HF_TOKEN"}
    mirror_secrets = {k: v for k, v in secret_arns.items() if k == "HF_TOKEN"}
    from components.model_mirror import mirror_environment, mirror_prefix
    from components.vllm_ecs_service import MirrorTask
    from infra import startup
    from infra.serving import figure, model_revision

    services: dict[str, VllmEcsService] = {}
    lora_models = [m for m in c.models if is_lora_base(settings, m)]
    if lora_models:
        if adapter_store is None:
            raise ValueError(f"model {lora_models[0].name} serves LoRA adapters but the stack has no adapter store")
        AdapterManifest(f"{prefix}-adapter-manifest", AdapterManifestArgs(
            bucket_name=adapter_store.bucket_name, bucket_arn=adapter_store.bucket_arn,
            kms_key_arn=adapter_store.kms_key_arn, reader_role_name=adapter_store.reader_role_name,
            manifest_prefix=f"{MANIFEST_ROOT}{settings.stack}/",
            manifests={m.name: (manifest_key(settings, m), manifest_body(settings)) for m in lora_models}, tags=tags))
    for mp in plan.models:
        model = next(m for m in c.models if m.name == mp.model)
        pool_cfg = settings.pool(model.pool)
        smallest = min((settings.catalog.instance(t) for t in pool_cfg.instance_types),
                       key=lambda i: (i.gpu_count, i.memory_gib, i.vcpus))
        # Offline from the Hub; the region for the streamer's boto3 session (the task role gives credentials).
        env = {"VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1", "AWS_REGION": settings.region}
        sync = None
        # The model's read-only role on its mirror prefix (components/model_mirror.py).
        task_role: Any = mirror.reader_role_arns.get(model.name)
        if is_lora_base(settings, model):
            sync = _adapter_sync(settings, model, adapter_store)
            task_role = adapter_store.reader_role_arn  # also reads this model's prefix (extra_readers)
        est = startup.estimate(settings, plan, model)
        revision = model_revision(model)
        mirror_task = MirrorTask(
            image=c.ecs.vllm_image, task_role_arn=mirror.writer_role_arns[model.name], secrets=mirror_secrets,
            environment=mirror_environment(
                source=model.source, revision=revision, bucket=mirror.configured_bucket_name,
                prefix=mirror_prefix(model.source, revision), load_format=model.load_format, region=settings.region,
                concurrency=int(figure(settings, "mirror_concurrency")), part_mib=int(figure(settings, "mirror_part_mib")),
                keep_revisions=int(figure(settings, "mirror_keep_revisions"))))
        services[model.name] = VllmEcsService(f"{prefix}-{model.name}", VllmEcsServiceArgs(
            service_name=model.name, name_prefix=prefix, cluster_name=cluster.cluster_name, cluster_arn=cluster.cluster_arn,
            capacity_provider=cluster.capacity_providers[model.pool], account_id=account_id, region=settings.region,
            image=c.ecs.vllm_image, server=server_spec(settings, plan, model, mirror.configured_bucket_name),
            gpus_per_task=mp.gpus_per_replica,
            instance_gpus=smallest.gpu_count, instance_memory_mib=int(smallest.memory_gib * 1024),
            instance_vcpus=smallest.vcpus, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            alb_security_group_id=load_balancer.security_group_id,
            target_group_arn=load_balancer.target_group_arns[model.name],
            alb_arn_suffix=load_balancer.arn_suffix,
            target_group_arn_suffix=load_balancer.target_group_arn_suffixes[model.name],
            desired_count=mp.replicas, min_count=min(model.min_replicas, mp.replicas), max_count=model.max_replicas,
            requests_per_target_per_minute=c.ecs.requests_per_target_per_minute,
            secrets=serving_secrets, environment=env,
            task_role_arn=task_role, adapter_sync=sync, mirror=mirror_task,
            port=int(d["vllm_port"].value),  # type: ignore[arg-type]
            resource_share=float(d["instance_resource_share"].value),  # type: ignore[arg-type]
            shared_memory_mib_per_gpu=int(d["shared_memory_mib_per_gpu"].value),  # type: ignore[arg-type]
            health_check_start_period_seconds=int(d["health_check_start_period_seconds"].value),  # type: ignore[arg-type]
            health_check_interval_seconds=int(d["health_check_interval_seconds"].value),  # type: ignore[arg-type]
            health_check_retries=int(d["health_check_retries"].value),  # type: ignore[arg-type]
            # From the start-up estimate unless the stack sets it (infra/startup.py ecs_grace_seconds).
            load_grace_period_seconds=c.ecs.load_grace_period_seconds or max(
                est.ecs_grace_seconds, int(d["health_check_start_period_seconds"].value)),  # type: ignore[arg-type]
            stop_timeout_seconds=int(d["stop_timeout_seconds"].value),  # type: ignore[arg-type]
            task_definition_max_bytes=_figure("task_definition_max_bytes"),
            scale_in_cooldown_seconds=int(d["scale_in_cooldown_seconds"].value),  # type: ignore[arg-type]
            scale_out_cooldown_seconds=int(d["scale_out_cooldown_seconds"].value),  # type: ignore[arg-type]
            http_keep_alive_seconds=ec.keep_alive_seconds(c.ingress.idle_timeout_seconds),
            load_balancer_idle_timeout_seconds=c.ingress.idle_timeout_seconds,
            log_retention_days=c.observability.log_retention_days, node_cache_path=eks_catalog.NODE_CACHE_HOST_PATH,
            # Only instances whose user data sets up the cache (older ones are not replaced by a template update).
            node_cache_attribute=ecs_capacity.NODE_CACHE_ATTRIBUTE,
            tags={**tags, "model": model.name},
            # The capacity provider must be on the cluster, and the model's target group attached to
            # the ALB by its listener rule, before the service is created (components/load_balancer.py).
            depends_on=(cluster.providers_attached, load_balancer.listener_rules[model.name],
                        *mirror.ready[model.name])))
    pulumi.export("ecsCluster", cluster.cluster_name)
    # Run once per model revision after `pulumi up` (docs/serving.md "Cold start"): ECS has no run-once resource.
    pulumi.export("mirrorRunTask", {name: svc.mirror_run_task for name, svc in services.items()})
    return EcsPlatform(cluster=cluster, services=services)
