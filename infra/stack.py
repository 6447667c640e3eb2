"""Stack assembly: config -> plan -> components, then the stack outputs.

Only this module knows about stacks, tiers and orchestrators; components get
plain typed args.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi.runtime import config as runtime_config

from components.network import Network, NetworkArgs
from infra import capacity
from infra import ecs_platform
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


def build(settings: Settings, plan: capacity.Plan) -> None:
    prefix = f"{settings.project}-{settings.stack}"
    tags = cost_tags(settings)
    if settings.config.orchestrator == "eks":
        from infra import eks_platform
        eks_platform.validate(settings, plan)  # before any resource exists
    zones = resolve_zones(settings)
    cluster_names = [prefix] if settings.config.orchestrator == "eks" else []

    network = Network(prefix, NetworkArgs(
        vpc_cidr=settings.config.network.vpc_cidr, zones=zones, nat_gateways=settings.config.network.nat_gateways,
        s3_gateway_endpoint=settings.config.network.s3_gateway_endpoint, region=settings.region,
        cluster_names=cluster_names, flow_log_retention_days=settings.config.observability.log_retention_days,
        tags=tags))

    if settings.config.orchestrator == "eks":
        platform = eks_platform.build(settings, plan, network, tags)
        pulumi.export("clusterName", platform.cluster_name)

    # Orchestrator platforms, edge (load balancing, adapter store, budget) and
    # the serving workloads are assembled here; see the modules named below.
    edge = edge_mod.build(settings, network, tags)
    if settings.config.orchestrator == "ecs":
        ecs_platform.build(settings, plan, network, tags, load_balancer=edge.load_balancer,
                           adapter_store=edge.adapter_store, account_id=edge.account_id)

    pulumi.export("environment", settings.config.environment)
    pulumi.export("orchestrator", settings.config.orchestrator)
    pulumi.export("zones", zones)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("publicSubnetIds", network.public_subnet_ids)
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
