"""Stack assembly: config -> plan -> components, then the stack outputs.

Only this module knows about stacks, tiers and orchestrators; components get
plain typed args.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from components.network import Network, NetworkArgs, subnet_cidrs
from infra import capacity, ecs_platform, serving
from infra import edge as edge_mod
from infra.config import ConfigError, Settings, load_settings


def read_config_bag() -> tuple[dict[str, str], set[str]]:
    """All config the engine handed the program (any namespace), and which keys are secret.

    The whole bag is needed so that unknown `llmserving:` keys can be rejected.
    """
    bag = dict(runtime_config.get_config_env())
    bag.update(runtime_config.CONFIG.get())
    secret = {k for k in bag if runtime_config.is_config_secret(k)} | set(runtime_config.get_config_secret_keys_env())
    return bag, secret


def cost_tags(settings: Settings) -> dict[str, str]:
    c = settings.config
    tier = c.scale.tier or "custom"
    return {**c.tags, "project": settings.project, "stack": settings.stack, "environment": c.environment, "tier": tier}


def resolve_zones(settings: Settings) -> list[str]:
    net = settings.config.network
    if net.zones:
        return list(net.zones)
    available = aws.get_availability_zones(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}])
    names = sorted(available.names)
    if len(names) < net.zone_count:
        raise ConfigError([f"{settings.project}:network.zoneCount: got {net.zone_count}; region {settings.region} "
                           f"offers {len(names)} zones ({', '.join(names)})"])
    return names[: net.zone_count]


def _lora_reader(settings: Settings, store) -> dict:
    """The LoRA base model's pods and tasks run as the adapter store's reader: it also reads that model's weights."""
    lora = settings.config.lora
    return {lora.base_model: store.reader_role_name} if lora.enabled and lora.base_model else {}


def build(settings: Settings, plan: capacity.Plan) -> None:
    prefix = f"{settings.project}-{settings.stack}"
    tags = cost_tags(settings)
    if settings.config.orchestrator == "eks":
        from infra import eks_platform
        eks_platform.validate(settings, plan)  # before any resource exists
        serving.validate(settings, plan)
    # The adapters a LoRA pod holds fit its adapter cache (sizes by rank and base model from the catalog).
    problems = serving.adapter_cache_problems(settings)
    if problems:
        raise capacity.PlanError(problems)
    for m in settings.config.models:
        if m.revision == "0" * 40:
            pulumi.log.warn(f"{settings.project}: model {m.name} pins revision {m.revision}, a placeholder: its "
                            f"mirror job fails (the Hub has no such commit) until you pin the commit you evaluated")
    zones = resolve_zones(settings)
    cluster_names = [prefix] if settings.config.orchestrator == "eks" else []

    network = Network(prefix, NetworkArgs(
        vpc_cidr=settings.config.network.vpc_cidr, zones=zones, nat_gateways=settings.config.network.nat_gateways,
        s3_gateway_endpoint=settings.config.network.s3_gateway_endpoint, region=settings.region,
        cluster_names=cluster_names, flow_log_retention_days=settings.config.observability.log_retention_days,
        tags=tags))

    # Edge for both orchestrators: log archive, adapter store, ALB + WAF, budget.
    edge = edge_mod.build(settings, network, tags)
    if settings.config.orchestrator == "eks":
        platform = eks_platform.build(settings, plan, network, tags,
                                      spot_service_linked_role=edge.spot_service_linked_role)
        store = edge.adapter_store
        mirror = edge_mod.build_model_mirror(settings, tags, log_archive=edge.log_archive, account=edge.account_id,
                                             cluster_name=platform.cluster_name,
                                             extra_readers=_lora_reader(settings, store))
        workloads = serving.build(
            settings, plan, k8s_provider=platform.k8s_provider, cluster_name=platform.cluster_name,
            pool_scheduling=platform.pool_scheduling, adapter_bucket_name=store.configured_bucket_name,
            adapter_reader_role_arn=store.reader_role_arn, tags=tags, mirror=mirror,
            load_balancer_cidrs=tuple(subnet_cidrs(network.vpc_cidr, len(zones))[1]),
            system_nodes=platform.system_nodes, pool_node_sources=platform.pool_node_sources)
        # The controller's pods need a node; a TargetGroupBinding needs its namespace and Service.
        edge_mod.build_eks_bindings(
            settings, edge, k8s_provider=platform.k8s_provider, cluster_name=platform.cluster_name,
            vpc_id=network.vpc_id, namespace=workloads.namespace, service_names=workloads.service_names,
            router=(workloads.router_service, workloads.router_port), tags=tags,
            node_ready=platform.system_nodes, depends_on=workloads.binding_dependencies)
        pulumi.export("clusterName", platform.cluster_name)
    else:
        mirror = edge_mod.build_model_mirror(settings, tags, log_archive=edge.log_archive, account=edge.account_id,
                                             extra_readers=_lora_reader(settings, edge.adapter_store))
        ecs_platform.build(settings, plan, network, tags, load_balancer=edge.load_balancer,
                           adapter_store=edge.adapter_store, account_id=edge.account_id,
                           spot_service_linked_role=edge.spot_service_linked_role, mirror=mirror)

    pulumi.export("environment", settings.config.environment)
    pulumi.export("orchestrator", settings.config.orchestrator)
    pulumi.export("zones", zones)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("publicSubnetIds", network.public_subnet_ids)
    pulumi.export("modelMirror", {"bucket": mirror.configured_bucket_name,
                                  "prefixes": {m: f"s3://{mirror.configured_bucket_name}/{p}"
                                               for m, p in mirror.prefixes.items()}})
    # Per model: node launch -> Ready, its basis, and the budgets derived from it (infra/startup.py).
    from infra import startup
    pulumi.export("startup", startup.section(settings, plan))
    pulumi.export("capacity", plan.capacity_dict())
    pulumi.export("cost", plan.cost_dict())


def main() -> None:
    bag, secret_keys = read_config_bag()
    try:
        settings = load_settings(bag, stack=pulumi.get_stack(), secret_keys=secret_keys, project=pulumi.get_project())
        plan = capacity.plan(settings)
        build(settings, plan)
    except (ConfigError, capacity.PlanError) as e:
        # RunError: the CLI shows the message without a Python traceback.
        raise pulumi.RunError(str(e)) from None
