"""GPU capacity guardrails: scarce on-demand GPUs come from a reservation, failed GPUs get replaced.

- `gpu-capacity-reservation` (prod: `required`): an on-demand pool of a scarce family (p5, p4de by
  default) launches into a capacity reservation or is acknowledged to run without one: the pool is
  listed in the policy config's `acknowledgedPools` (generated from gpuPools[].acknowledgeNoReservation,
  so lifting the rule for a pool is a reviewed policy-config change), or the resource carries the
  written acknowledgement `llmserving.io/no-reservation-ack` (a tag of the node group / Auto Scaling
  group, an annotation of the NodePool). A pool is known by the project's pool label
  `llmserving.io/pool` (node group labels, NodePool name/template labels) or its `pool` tag (ECS
  groups). Large GPU types are often unobtainable on demand; what targets a reservation:
  - EKS managed node group: capacityType CAPACITY_BLOCK, or its launch template's
    capacityReservationSpecification.capacityReservationTarget (EC2 API LaunchTemplate);
  - Karpenter NodePool: allows capacity type `reserved` and its EC2NodeClass selects reservations
    (capacityReservationSelectorTerms; Karpenter v1.14.1 docs tasks/odcrs.md);
  - Auto Scaling group: its capacityReservationSpecification names reservations (botocore autoscaling
    CapacityReservationTarget), or its launch template targets one.
- `gpu-node-repair`: every GPU pool is repaired when its GPUs fail:
  - EKS managed node group: nodeRepairConfig.enabled (EKS API NodeRepairConfig);
  - Karpenter NodePool: the Karpenter release enables the NodeRepair feature gate
    (chart values settings.featureGates.nodeRepair, off by default at v1.14.1);
  - both need the EKS node monitoring agent add-on, which sets the node conditions repair acts on
    (awsdocs/amazon-eks-user-guide latest/ug/nodes/node-repair.adoc);
  - Auto Scaling group (ECS): its launch template's user data marks a failed instance Unhealthy
    (`autoscaling set-instance-health`), as components/ecs_gpu_cluster.py installs it.
"""

from __future__ import annotations

import base64
import binascii

from rules.common import (EC2NODECLASS, NODEPOOL, UNKNOWN, Res, as_list, family, get, gpu_pools, is_gpu_type,
                          nodepool_capacity_types, nodepool_instance_types, of_type, stack_policy)

NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ADDON = "aws:eks/addon:Addon"
RELEASE = "kubernetes:helm.sh/v3:Release"
ACK = "llmserving.io/no-reservation-ack"
MONITORING_AGENT = "eks-node-monitoring-agent"
SCARCE_FAMILIES = ["p5", "p4de"]


def _launch_template(res: Res, resources: list[Res], key: str, lt_id) -> Res | None:
    for lt in of_type(resources, LAUNCH_TEMPLATE):
        if lt.urn in res.prop_deps.get(key, []) or (lt_id not in (None, UNKNOWN) and lt_id in (lt.get("id"), lt.get("name"))):
            return lt
    return None


def _lt_targets_reservation(lt: Res | None) -> bool:
    target = lt.get("capacityReservationSpecification", "capacityReservationTarget", default={}) if lt else {}
    return isinstance(target, dict) and bool(target.get("capacityReservationId") or
                                             target.get("capacityReservationResourceGroupArn"))


def _tags(r: Res) -> dict:
    tags = r.get("tags", default={})
    if isinstance(tags, list):  # Auto Scaling group tags: [{key, value, propagateAtLaunch}]
        return {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)}
    return tags if isinstance(tags, dict) else {}


POOL_LABEL = "llmserving.io/pool"


def pool_name(r: Res) -> str | None:
    """The project pool a GPU capacity resource belongs to."""
    if r.type == NODEGROUP:
        name = r.get("labels", POOL_LABEL)
    elif r.type == NODEPOOL:
        name = r.get("spec", "template", "metadata", "labels", POOL_LABEL) or r.get("metadata", "name")
    else:
        name = _tags(r).get("pool")
    return name if isinstance(name, str) else None


def _acknowledged(r: Res, cfg: dict) -> bool | None:
    """True/False, or None when the pool's name (its label) is unknown and no tag acknowledges it."""
    if pool_name(r) in set(cfg.get("acknowledgedPools") or []):
        return True
    ann = r.get("metadata", "annotations", default={}) if r.type == NODEPOOL else _tags(r)
    if isinstance(ann, dict) and isinstance(ann.get(ACK), str) and bool(ann.get(ACK).strip()):
        return True
    label = (r.get("labels") if r.type == NODEGROUP
             else r.get("spec", "template", "metadata", "labels") if r.type == NODEPOOL else None)
    return None if label is UNKNOWN or (isinstance(label, dict) and label.get(POOL_LABEL) is UNKNOWN) else False


def _nodeclass(pool: Res, resources: list[Res]) -> Res | None:
    name = pool.get("spec", "template", "spec", "nodeClassRef", "name")
    return next((c for c in of_type(resources, EC2NODECLASS) if c.get("metadata", "name") == name), None)


def _reserved(r: Res, resources: list[Res]) -> bool | None:
    """Whether the pool launches into a capacity reservation (None: cannot tell, an input is unknown)."""
    if r.type == NODEGROUP:
        cap = r.get("capacityType")
        if cap is UNKNOWN:
            return None
        if cap == "CAPACITY_BLOCK":
            return True
        return _lt_targets_reservation(_launch_template(r, resources, "launchTemplate", r.get("launchTemplate", "id")))
    if r.type == NODEPOOL:
        nc = _nodeclass(r, resources)
        terms = nc.get("spec", "capacityReservationSelectorTerms", default=[]) if nc else []
        return "reserved" in nodepool_capacity_types(r) and bool(as_list(terms))
    if r.type == ASG:
        target = r.get("capacityReservationSpecification", "capacityReservationTarget", default={})
        if target is UNKNOWN:
            return None
        if isinstance(target, dict) and (as_list(target.get("capacityReservationIds"))
                                         or as_list(target.get("capacityReservationResourceGroupArns"))):
            return True
        mip = r.get("mixedInstancesPolicy", default={})
        lt = (_launch_template(r, resources, "launchTemplate", r.get("launchTemplate", "id"))
              or _launch_template(r, resources, "mixedInstancesPolicy",
                                  get(mip, "launchTemplate", "launchTemplateSpecification", "launchTemplateId")))
        return _lt_targets_reservation(lt)
    return False


def _capacity_reservation(resources: list[Res], cfg: dict, report) -> None:
    if not cfg.get("required", False):
        return
    families = set(cfg.get("families") or SCARCE_FAMILIES)
    for p in gpu_pools(resources, {}):
        r = p.res
        if r.type == NODEPOOL:
            on_demand = "on-demand" in nodepool_capacity_types(r)
            types = nodepool_instance_types(r, {})
        else:
            on_demand = p.capacity == "on-demand"
            types = p.instance_types
        scarce = sorted({t for t in types if is_gpu_type(t) and family(t) in families})
        if not on_demand or not scarce:
            continue
        acknowledged = _acknowledged(r, cfg)
        if acknowledged:
            continue
        reserved = _reserved(r, resources)
        if reserved:
            continue
        if reserved is None or acknowledged is None:
            report.unjudged(f"{p.label} (on-demand {', '.join(scarce)})",
                            "its pool label" if acknowledged is None else
                            "its capacity type or capacity reservation target", r.urn)
            continue
        where = "an annotation" if r.type == NODEPOOL else "a tag"
        report(f"{p.label} launches on-demand {', '.join(scarce)} without a capacity reservation; on-demand capacity "
               f"of these types is often unobtainable: target an ODCR or Capacity Block (gpuPools[].capacityReservations) "
               f"or acknowledge running without one (gpuPools[].acknowledgeNoReservation, which lists the pool in "
               f"this policy's acknowledgedPools and puts {where} {ACK} on it)",
               r.urn)


capacity_reservation = stack_policy(
    "gpu-capacity-reservation",
    "Where the stack sets `required` (prod), on-demand GPU pools of scarce families (`families`, default p5 and p4de) "
    "launch into a capacity reservation (ODCR or Capacity Block) or carry the acknowledgement "
    "llmserving.io/no-reservation-ack.",
    _capacity_reservation, types=[NODEGROUP, NODEPOOL, ASG, LAUNCH_TEMPLATE, EC2NODECLASS],
    schema={"required": {"type": "boolean", "default": False},
            "families": {"type": "array", "items": {"type": "string"}, "default": SCARCE_FAMILIES},
            "acknowledgedPools": {"type": "array", "items": {"type": "string"}, "default": []}})


def _user_data(lt: Res | None) -> str:
    raw = lt.get("userData") if lt else None
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return raw


def _karpenter_node_repair(resources: list[Res]) -> bool | None:
    for rel in of_type(resources, RELEASE):
        chart = rel.get("chart")
        if not isinstance(chart, str) or chart.rstrip("/").rsplit("/", 1)[-1] != "karpenter":
            continue
        gate = rel.get("values", "settings", "featureGates", "nodeRepair")
        if gate is UNKNOWN:
            return None
        return gate is True or (isinstance(gate, str) and gate.lower() == "true")
    return False


def _node_repair(resources: list[Res], cfg: dict, report) -> None:
    pools = gpu_pools(resources, {})
    eks_pools = [p for p in pools if p.res.type in (NODEGROUP, NODEPOOL)]
    agent = any(a.get("addonName") == MONITORING_AGENT for a in of_type(resources, ADDON))
    if eks_pools and not agent:
        report(f"{', '.join(p.label for p in eks_pools)}: no {MONITORING_AGENT} add-on; EKS node auto repair and "
               f"Karpenter's NodeRepair act on the node conditions it sets (a failed GPU is never detected without it)")
    karpenter_repair = _karpenter_node_repair(resources)
    for p in pools:
        r = p.res
        if r.type == NODEGROUP:
            enabled = r.get("nodeRepairConfig", "enabled")
            if enabled is UNKNOWN:
                report.unjudged(f"GPU {p.label}", "nodeRepairConfig.enabled", r.urn)
            elif enabled is not True:
                report(f"GPU {p.label} has no node auto repair (nodeRepairConfig.enabled is {enabled}); a failed GPU "
                       f"node stays in service", r.urn)
        elif r.type == NODEPOOL:
            if karpenter_repair is None:
                report.unjudged(f"GPU {p.label}", "the Karpenter release's settings.featureGates.nodeRepair", r.urn)
            elif karpenter_repair is False:
                report(f"GPU {p.label}: the Karpenter release does not enable the NodeRepair feature gate "
                       f"(values settings.featureGates.nodeRepair; off by default), so Karpenter never replaces an "
                       f"unhealthy node", r.urn)
        elif r.type == ASG:
            mip = r.get("mixedInstancesPolicy", default={})
            lt = (_launch_template(r, resources, "launchTemplate", r.get("launchTemplate", "id"))
                  or _launch_template(r, resources, "mixedInstancesPolicy",
                                      get(mip, "launchTemplate", "launchTemplateSpecification", "launchTemplateId")))
            if lt is None or lt.get("userData") is UNKNOWN:
                report.unjudged(f"GPU {p.label}", "its launch template's userData (the GPU health check)", r.urn)
                continue
            if "set-instance-health" not in _user_data(lt):
                report(f"GPU {p.label}: its instances run no GPU health check that marks a failed instance Unhealthy "
                       f"(autoscaling set-instance-health); the group's EC2 status check passes a node whose GPU has "
                       f"failed", r.urn)


node_repair = stack_policy(
    "gpu-node-repair",
    "Every GPU pool replaces nodes whose GPUs fail: node groups with node auto repair, NodePools under a Karpenter with "
    "the NodeRepair gate, both with the EKS node monitoring agent; ECS GPU groups with the instance GPU health check.",
    _node_repair, types=[NODEGROUP, NODEPOOL, ASG, ADDON, RELEASE])


POLICIES = [capacity_reservation, node_repair]
