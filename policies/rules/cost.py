"""Cost guardrails: worst-case GPU spend within budget, spot in dev, budgets, tags, bounded scaling.

Prices come through the policy config (`instanceTypes`, generated from
infra/catalog.py by `python -m infra.policy_config`), not from an import of
the project: the pack runs in its own virtualenv under the CLI, and the
stack's catalog overrides and budget belong in its policy config.
"""

from __future__ import annotations

from rules.common import (GPU_POOL_TYPES, INSTANCE_TABLE_SCHEMA, NODEPOOL, Res, UNKNOWN, as_list, first_unknown, fmt,
                          gpu_pools, has_gpu_capacity, is_gpu_type, nodepool_capacity_types, nodepool_is_gpu, num, of_type,
                          pool_unknowns, resource_policy, stack_policy)

# AWS resource types this project creates that take `tags` (cost allocation), checked against what the
# shipped EKS and ECS stacks register (tests/test_policies_coverage.py).
TAGGABLE_TYPES = frozenset({
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/placementGroup:PlacementGroup",
    "aws:cloudwatch/logGroup:LogGroup", "aws:iam/role:Role", "aws:kms/key:Key",
    "aws:eks/cluster:Cluster", "aws:eks/nodeGroup:NodeGroup", "aws:eks/addon:Addon",
    "aws:ecs/cluster:Cluster", "aws:ecs/service:Service", "aws:ecs/taskDefinition:TaskDefinition",
    "aws:autoscaling/group:Group", "aws:sqs/queue:Queue", "aws:cloudwatch/eventRule:EventRule",
    "aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2", "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup", "aws:wafv2/webAcl:WebAcl", "aws:budgets/budget:Budget",
    "aws:lb/listener:Listener", "aws:lb/listenerRule:ListenerRule", "aws:eks/accessEntry:AccessEntry",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation", "aws:ecs/capacityProvider:CapacityProvider",
    "aws:iam/instanceProfile:InstanceProfile", "aws:secretsmanager/secret:Secret", "aws:appautoscaling/target:Target",
    "aws:sns/topic:Topic",  # Alertmanager's alert topic (components/observability.py)
    "aws:ec2/instance:Instance",  # a standalone (GPU) instance bills like any pool
    "eks:index:Cluster",  # the pulumi_eks component: its `tags` reach the control plane
})
DEFAULT_REQUIRED_TAGS = ["project", "stack", "environment", "tier"]
NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"
BUDGET = "aws:budgets/budget:Budget"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HPAS = ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
        "kubernetes:autoscaling/v2beta2:HorizontalPodAutoscaler")


def _tags(r: Res, cfg: dict, report) -> None:
    tags = r.get("tags", default={})
    if tags is UNKNOWN or (r.type == ASG and UNKNOWN in as_list(tags)):
        report.unjudged(f"{r.type} '{r.name}'", "tags")
        return
    if r.type == ASG:  # a list of {key, value, propagateAtLaunch}
        tags = {t.get("key"): t.get("value") for t in as_list(tags) if isinstance(t, dict) and isinstance(t.get("key"), str)}
    if not isinstance(tags, dict):
        tags = {}
    required = cfg.get("requiredTags", DEFAULT_REQUIRED_TAGS)
    # A tag whose value is unknown (from an output) is still set.
    missing = [t for t in required if tags.get(t) is not UNKNOWN and not tags.get(t)]
    if missing:
        report(f"{r.type} '{r.name}' lacks cost-allocation tags: {', '.join(missing)}")


cost_allocation_tags = resource_policy(
    "cost-allocation-tags",
    "Taggable AWS resources carry the cost-allocation tags (project, stack, environment, tier) so spend is "
    "attributable (no exact Checkov/Trivy ID).",
    _tags, types=TAGGABLE_TYPES,
    schema={"requiredTags": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_REQUIRED_TAGS}})


def _max_hourly(resources: list[Res], cfg: dict, report) -> None:
    table = cfg.get("instanceTypes", {})
    budget = cfg.get("maxHourlyUsd")
    if budget is None:
        return
    pools = gpu_pools(resources, table)
    unknown = [p for p in pools if pool_unknowns(p.res)]
    priced = [(p, p.max_hourly(table)) for p in pools if p not in unknown]
    unpriced = [p.label for p, h in priced if h is None]
    if unpriced:
        report(f"cannot price GPU capacity at max size for {', '.join(unpriced)} (unbounded or instance type not in the "
               f"policy's instanceTypes table)")
    total = sum(h for _, h in priced if h is not None)
    if total > budget:  # the known pools alone exceed the budget
        parts = ", ".join(f"{p.label} ${h:,.2f}" for p, h in priced if h is not None)
        report(f"GPU capacity at max size costs up to ${total:,.2f}/hour ({parts}); the stack budget is ${fmt(budget)}/hour")
    else:
        for p in unknown:
            report.unjudged(f"GPU cost of the stack ({p.label})", pool_unknowns(p.res)[0], p.res.urn)


max_hourly = stack_policy(
    "cost-max-hourly-within-budget",
    "The worst-case hourly cost of all GPU capacity (every pool at max size, dearest allowed instance type, "
    "on-demand unless spot-only), priced from the catalog, stays within maxHourlyUsd.",
    _max_hourly, types=GPU_POOL_TYPES,
    schema={"maxHourlyUsd": {"type": "number", "exclusiveMinimum": 0}, "instanceTypes": INSTANCE_TABLE_SCHEMA})


def _asg_types(r: Res) -> list[str]:
    overrides = r.get("mixedInstancesPolicy", "launchTemplate", "overrides", default=[])
    return [o.get("instanceType") for o in as_list(overrides) if isinstance(o, dict) and isinstance(o.get("instanceType"), str)]


def _spot(r: Res, cfg: dict, report) -> None:
    if not cfg.get("requireSpot", False):
        return
    unknown = [x for x in pool_unknowns(r) if r.type != NODEPOOL or "requirements" in x]
    if unknown and r.type != NODEGROUP:
        report.unjudged(f"GPU pool '{r.name}'", unknown[0])
        return
    if r.type == NODEGROUP:
        types = [t for t in as_list(r.get("instanceTypes")) if isinstance(t, str)]
        cap = r.get("capacityType")
        if r.get("instanceTypes") is UNKNOWN or (any(is_gpu_type(t) for t in types) and cap is UNKNOWN):
            report.unjudged(f"GPU node group '{r.name}'", "instanceTypes" if r.get("instanceTypes") is UNKNOWN else "capacityType")
        elif any(is_gpu_type(t) for t in types) and cap != "SPOT":
            report(f"GPU node group '{r.name}' uses capacityType {cap or 'ON_DEMAND'}; this stack requires SPOT for GPU pools")
    elif r.type == NODEPOOL:
        if nodepool_is_gpu(r) and "spot" not in nodepool_capacity_types(r):
            report(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}' cannot launch spot capacity "
                   f"(karpenter.sh/capacity-type: {', '.join(nodepool_capacity_types(r))}); this stack requires spot for GPU pools")
    elif r.type == ASG:
        # The project's ECS GPU pools declare their instance types as mixedInstancesPolicy overrides; such a group
        # launches spot only when onDemandPercentageAboveBaseCapacity is below 100 (AWS's default when unset)
        # and its onDemandBaseCapacity leaves room below maxSize.
        if not any(is_gpu_type(t) for t in _asg_types(r)):
            return
        pct = r.get("mixedInstancesPolicy", "instancesDistribution", "onDemandPercentageAboveBaseCapacity")
        pct = num(pct) if num(pct) is not None else 100.0
        base_raw = r.get("mixedInstancesPolicy", "instancesDistribution", "onDemandBaseCapacity")
        max_size = r.get("maxSize")
        base, top = num(base_raw) or 0.0, num(max_size)
        if pct < 100 and top is not None and base >= top:
            report(f"GPU auto scaling group '{r.name}' launches only on-demand capacity (mixedInstancesPolicy "
                   f"onDemandBaseCapacity {fmt(base)} covers maxSize {fmt(top)}); this stack requires spot for GPU pools")
        elif pct >= 100:
            report(f"GPU auto scaling group '{r.name}' launches only on-demand capacity (mixedInstancesPolicy "
                   f"onDemandPercentageAboveBaseCapacity {fmt(pct)}); this stack requires spot for GPU pools")
    elif r.type == "aws:ec2/instance:Instance":
        if is_gpu_type(r.get("instanceType")):
            market = r.get("instanceMarketOptions", "marketType")
            if market is UNKNOWN:
                report.unjudged(f"GPU EC2 instance '{r.name}'", "instanceMarketOptions.marketType")
            elif market != "spot":
                report(f"GPU EC2 instance '{r.name}' runs on-demand; this stack requires spot for GPU pools")


spot_required = resource_policy(
    "cost-spot-required",
    "Where the stack sets requireSpot (dev), every GPU pool can run on spot capacity.",
    _spot, types=[NODEGROUP, NODEPOOL, ASG, "aws:ec2/instance:Instance"],
    schema={"requireSpot": {"type": "boolean", "default": False}})


def _tag_filters(b: Res) -> list[str] | None:
    """The budget's TagKeyValue filter values ("user:<key>$<value>"); None when unknown."""
    filters = b.get("costFilters", default=[])
    if filters is UNKNOWN or first_unknown(filters) is not None:
        return None
    return [str(v) for f in as_list(filters) if isinstance(f, dict) and f.get("name") == "TagKeyValue"
            for v in as_list(f.get("values"))]


def _budget_exists(resources: list[Res], cfg: dict, report) -> None:
    if not has_gpu_capacity(resources):
        return  # applies once the stack has GPU capacity
    budgets = of_type(resources, BUDGET)
    key, value = cfg.get("stackTagKey"), cfg.get("stackTagValue")
    watching, elsewhere, unsure = [], [], []
    for b in budgets:
        kind = b.get("budgetType")
        filters = _tag_filters(b)
        if kind is UNKNOWN or filters is None:
            unsure.append((b, "budgetType" if kind is UNKNOWN else "costFilters"))
            continue
        if kind != "COST":
            continue
        # A filter on the stack tag must name this stack: user:stack$dev in prod's budget watches dev's spend
        # (AWS Budgets CostFilters TagKeyValue "user:<key>$<value>").
        stack_filters = [f for f in filters if key and value and f.startswith(f"user:{key}$")]
        if stack_filters and f"user:{key}${value}" not in stack_filters:
            elsewhere.append((b, stack_filters))
        else:
            watching.append(b)
    if watching:
        return
    if unsure:
        b, path = unsure[0]
        report.unjudged(f"cost budget of the stack (budget '{b.name}')", path, b.urn)
    elif elsewhere:
        b, filters = elsewhere[0]
        report(f"budget '{b.name}' filters on {', '.join(f.split('$', 1)[1] for f in filters)!s} "
               f"({', '.join(filters)}), not this stack's {key}={value}; no cost budget watches this stack", b.urn)
    else:
        report("the stack runs GPU capacity but has no AWS Budgets cost budget (aws:budgets/budget:Budget, budgetType COST)")


budget_exists = stack_policy(
    "cost-budget-exists",
    # A budget whose stack-tag filter names another stack does not count (issue 15).
    "A stack with GPU capacity has an AWS Budgets cost budget.",
    _budget_exists, types=GPU_POOL_TYPES,
    schema={"stackTagKey": {"type": "string", "default": "stack"}, "stackTagValue": {"type": "string", "default": ""}})


def _budget_alerts(r: Res, cfg: dict, report) -> None:
    notes = r.get("notifications", default=[])
    if notes is UNKNOWN:
        report.unjudged(f"budget '{r.name}'", "notifications")
        return
    # An unknown subscriber (an SNS topic created in the same stack) is still a subscriber.
    ok = any(isinstance(n, dict) and (as_list(n.get("subscriberEmailAddresses")) or as_list(n.get("subscriberSnsTopicArns"))
                                      or UNKNOWN in (n.get("subscriberEmailAddresses"), n.get("subscriberSnsTopicArns")))
             for n in as_list(notes))
    if not ok and UNKNOWN in as_list(notes):
        report.unjudged(f"budget '{r.name}'", "notifications[]")
    elif not ok:
        report(f"budget '{r.name}' notifies nobody; add notifications with subscriber emails or SNS topics")


budget_alerts = resource_policy(
    "cost-budget-alerts",
    "Every budget notifies someone (email or SNS) when a threshold is crossed.",
    _budget_alerts, types=[BUDGET])


def _budget_limit(r: Res, cfg: dict, report) -> None:
    for key in ("budgetType", "timeUnit", "limitAmount"):
        if r.get(key) is UNKNOWN:
            report.unjudged(f"budget '{r.name}'", key)
            return
    if r.get("budgetType") != "COST":
        return
    unit, amount = r.get("timeUnit"), num(r.get("limitAmount"))
    maximum = cfg.get("maxMonthlyUsd")
    if unit != "MONTHLY":
        report(f"budget '{r.name}' has timeUnit {unit}; cost budgets here are MONTHLY")
    elif maximum is not None and amount is not None and amount > maximum:
        report(f"budget '{r.name}' allows ${fmt(amount)}/month; the stack's monthly budget is ${fmt(maximum)}")


budget_limit = resource_policy(
    "cost-budget-monthly-limit",
    "Cost budgets are monthly and their limit does not exceed the stack's monthly budget.",
    _budget_limit, types=[BUDGET],
    schema={"maxMonthlyUsd": {"type": "number", "exclusiveMinimum": 0}})


def _consolidation(r: Res, cfg: dict, report) -> None:
    if r.unknown_at("spec", "template", "spec", "requirements"):
        report.unjudged(f"NodePool '{r.name}'", r.unknown_at("spec", "template", "spec", "requirements"))
        return
    if not nodepool_is_gpu(r):
        return
    after = r.get("spec", "disruption", "consolidateAfter")
    if r.unknown_at("spec", "disruption", "consolidateAfter"):
        report.unjudged(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}'",
                        r.unknown_at("spec", "disruption", "consolidateAfter"))
    elif after == "Never":
        report(f"GPU NodePool '{r.get('metadata', 'name', default=r.name)}' never consolidates (consolidateAfter: Never); "
               f"idle GPU nodes would bill forever")


consolidation = resource_policy(
    "cost-nodepool-consolidation",
    "GPU NodePools reclaim empty nodes (spec.disruption.consolidateAfter is not Never).",
    _consolidation, types=[NODEPOOL])


def _scaler_bounded(r: Res, cfg: dict, report) -> None:
    hpa = r.type in HPAS
    key = "maxReplicas" if hpa else "maxReplicaCount"
    kind = "HorizontalPodAutoscaler" if hpa else "ScaledObject"
    m = r.get("spec", key)
    name = r.get("metadata", "name", default=r.name)
    if r.unknown_at("spec", key):
        report.unjudged(f"{kind} '{name}'", r.unknown_at("spec", key))
        return
    limit = cfg.get("maxReplicas", 64)
    if num(m) is None:
        # KEDA defaults maxReplicaCount to 100; an HPA must set maxReplicas (the API requires it).
        report(f"{kind} '{name}' sets no {key}" + (" (KEDA's default is 100 replicas)" if not hpa else ""))
    elif num(m) > limit:
        report(f"{kind} '{name}' may scale to {fmt(num(m))} replicas; the stack allows at most {fmt(limit)}")


scaler_bounded = resource_policy(
    "cost-autoscaler-bounded",
    # Plain HorizontalPodAutoscalers (maxReplicas) are judged too (issue 15).
    "KEDA ScaledObjects set maxReplicaCount within the stack's maximum replicas per model.",
    _scaler_bounded, types=[SCALED_OBJECT, *HPAS],
    schema={"maxReplicas": {"type": "integer", "minimum": 1, "default": 64}})

POLICIES = [cost_allocation_tags, max_hourly, spot_required, budget_exists, budget_alerts, budget_limit, consolidation,
            scaler_bounded]
