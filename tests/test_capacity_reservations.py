"""Issue 13.2: gpuPools[].capacityReservations (ODCRs and Capacity Blocks) on every provisioner, priced
as reserved, and the prod policy gpu-capacity-reservation, judged through the pack's Analyzer server.

Upstream behaviour these tests encode:
- Karpenter v1.14.1 (docs tasks/odcrs.md; CRDs in ../shared/crds): the EC2NodeClass selects reservations
  with capacityReservationSelectorTerms (id, or tags), the NodePool must allow capacity type `reserved`,
  Karpenter launches reserved first and falls back to the pool's other types;
- EKS managed node groups (latest/ug/nodes/capacity-blocks-mng.adoc): a Capacity Block group's launch
  template sets InstanceMarketOptions.MarketType capacity-block, the target reservation and the
  instance type, and the group's capacity type is CAPACITY_BLOCK;
- Auto Scaling groups (botocore autoscaling CapacityReservationSpecification): several ids,
  `capacity-reservations-first` falls back to on-demand;
- EC2 bills an ODCR at the on-demand rate whether instances run in it or not.
"""

from __future__ import annotations

import copy

import pytest

from components.ecs_gpu_cluster import EcsCapacityPool, EcsGpuCluster, EcsGpuClusterArgs
from infra import capacity, policy_config
from infra.analyzer import run_policy_pack
from infra.config import ConfigError
from tests.aws_models import enum, launch_template_data, shape_problems
from tests.harness import ROOT, inputs, of_type, one, only_policy, run_component, run_stack, settings_for, stack_value
from tests.k8s_validation import validate_object

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
ODCR = "cr-0a1b2c3d4e5f60718"
BLOCK = "cr-0f9e8d7c6b5a40312"


def _p5(**changes) -> list[dict]:
    pools = stack_value("prod", "llmserving:gpuPools")
    pools[0].pop("acknowledgeNoReservation")
    pools[0].update(changes)
    return pools


VARIANTS = {
    # the p5 pool under Karpenter: an ODCR by id and a Capacity Block by tags
    "karpenter": _p5(provisioner="karpenter", capacityReservations=[
        {"id": ODCR, "instanceType": "p5.48xlarge", "instanceCount": 2},
        {"tags": {"purpose": "llm-70b"}, "type": "capacity-block", "instanceType": "p5.48xlarge",
         "instanceCount": 2, "usdPerInstanceHour": 31.464}]),
    # the shipped managed node group targeting one ODCR in its zone
    "mng-odcr": _p5(capacityReservations=[
        {"id": ODCR, "instanceType": "p5.48xlarge", "instanceCount": 4, "availabilityZone": "us-east-1b"}]),
    # the managed node group as a Capacity Block group
    "mng-block": _p5(capacityReservations=[
        {"id": BLOCK, "type": "capacity-block", "instanceType": "p5.48xlarge", "instanceCount": 4,
         "availabilityZone": "us-east-1a", "usdPerInstanceHour": 31.464}]),
}
_RUNS: dict = {}


def _run(variant: str):
    if variant not in _RUNS:
        _RUNS[variant] = run_stack("prod", {"llmserving:gpuPools": VARIANTS[variant]})
    return _RUNS[variant]


def _lt_of(run, ng) -> dict:
    [lt] = [r for r in of_type(run, LT) if r.urn in ng.all_dependencies]
    return inputs(lt)


def test_karpenter_variant_renders_valid_reserved_nodepool_and_nodeclass():
    run = _run("karpenter")
    pool = next(inputs(r) for r in of_type(run, NODEPOOL) if inputs(r)["metadata"]["name"] == "p5-ondemand")
    nc = next(inputs(r) for r in of_type(run, NODECLASS) if inputs(r)["metadata"]["name"] == "p5-ondemand")
    validate_object(pool)
    validate_object(nc)
    caps = next(q for q in pool["spec"]["template"]["spec"]["requirements"] if q["key"] == "karpenter.sh/capacity-type")
    assert caps["values"] == ["reserved", "on-demand"]
    assert nc["spec"]["capacityReservationSelectorTerms"] == [{"id": ODCR}, {"tags": {"purpose": "llm-70b"}}]
    assert of_type(run, NODE_GROUP) == [r for r in of_type(run, NODE_GROUP) if inputs(r)["nodeGroupName"] == "system"]


def test_nodeclass_schema_rejects_an_id_term_with_tags():
    # The CRD's CEL rule (id excludes other fields) is not JSON Schema; the component refuses it itself.
    from components.errors import ArgsError
    from components.karpenter_gpu_pool import validate_karpenter_gpu_pool_args
    from tests.test_eks_components import pool_args

    with pytest.raises(ArgsError, match=r"capacity_reservation_terms\[0\]"):
        validate_karpenter_gpu_pool_args(pool_args(capacity_types=["reserved", "on-demand"],
                                                   capacity_reservation_terms=[{"id": ODCR, "tags": {"a": "b"}}]))
    with pytest.raises(ArgsError, match="'reserved' goes with capacityReservationSelectorTerms"):
        validate_karpenter_gpu_pool_args(pool_args(capacity_types=["reserved", "on-demand"]))


def test_mng_odcr_launch_template_targets_the_reservation_in_its_zone():
    run = _run("mng-odcr")
    ng = next(r for r in of_type(run, NODE_GROUP) if inputs(r)["nodeGroupName"] != "system")
    data = launch_template_data(_lt_of(run, ng))
    assert shape_problems("ec2", "RequestLaunchTemplateData", data) == []
    assert data["CapacityReservationSpecification"] == {"CapacityReservationTarget": {"CapacityReservationId": ODCR}}
    i = inputs(ng)
    assert i["capacityType"] == "ON_DEMAND" and i["instanceTypes"] == ["p5.48xlarge"]
    # One subnet, in the reservation's zone: a targeted launch elsewhere fails.
    [subnet_urn] = ng.property_dependencies["subnetIds"]
    subnet = next(inputs(r) for r in run.registrations if r.urn == subnet_urn)
    assert len(i["subnetIds"]) == 1 and subnet["availabilityZone"] == "us-east-1b"


def test_mng_capacity_block_group_is_what_eks_requires():
    run = _run("mng-block")
    ng = next(r for r in of_type(run, NODE_GROUP) if inputs(r)["nodeGroupName"] != "system")
    i = inputs(ng)
    assert i["capacityType"] == "CAPACITY_BLOCK" and i["capacityType"] in enum("eks", "CapacityTypes")
    assert "instanceTypes" not in i  # the template names the type; EKS rejects both
    data = launch_template_data(_lt_of(run, ng))
    assert shape_problems("ec2", "RequestLaunchTemplateData", data) == []
    assert data["InstanceMarketOptions"] == {"MarketType": "capacity-block"}
    assert data["InstanceType"] == "p5.48xlarge"
    assert data["CapacityReservationSpecification"]["CapacityReservationTarget"]["CapacityReservationId"] == BLOCK


def test_ecs_group_fills_its_reservations_first():
    pool = EcsCapacityPool(name="p5", instance_types=("p5.48xlarge",), gpus_per_instance=8, capacity_type="on-demand",
                           min_size=0, max_size=6, desired_size=2, capacity_reservation_ids=(ODCR, BLOCK))
    run = run_component(lambda: EcsGpuCluster("ecs", EcsGpuClusterArgs(
        cluster_name="llmserving-test", vpc_id="vpc-1", subnet_ids=["subnet-a", "subnet-b"], pools=(pool,),
        protect=False)))
    spec = inputs(one(run, "aws:autoscaling/group:Group"))["capacityReservationSpecification"]
    api = {"CapacityReservationPreference": spec["capacityReservationPreference"],
           "CapacityReservationTarget": {"CapacityReservationIds": spec["capacityReservationTarget"]["capacityReservationIds"]}}
    assert shape_problems("autoscaling", "CapacityReservationSpecification", api) == []
    assert api["CapacityReservationPreference"] == "capacity-reservations-first"
    assert api["CapacityReservationTarget"]["CapacityReservationIds"] == [ODCR, BLOCK]


# --- the plan prices reservations apart ------------------------------------------------------------------

def test_reserved_nodes_are_paid_whether_used_or_not():
    plan = capacity.plan(settings_for("prod", {"llmserving:gpuPools": VARIANTS["mng-odcr"]}))
    p5 = next(p for p in plan.pools if p.pool == "p5-ondemand")
    assert p5.nodes == 2 and p5.reserved_nodes == 4  # the plan needs 2; the ODCR holds (and bills) 4
    assert p5.hourly_usd == pytest.approx(4 * 55.04) and p5.max_hourly_usd == pytest.approx(4 * 55.04)
    rows = plan.cost_dict()["by_pool"]
    assert rows["p5-ondemand/reserved"] == {
        "instance_type": "p5.48xlarge", "capacity_type": "reserved", "nodes": 4, "usd_per_node_hour": 55.04,
        "hourly_usd": 220.16, "max_hourly_usd": 220.16, "price_basis": rows["p5-ondemand/reserved"]["price_basis"]}
    assert "paid whether used or not" in rows["p5-ondemand/reserved"]["price_basis"]
    assert rows["p5-ondemand"]["nodes"] == 0 and rows["p5-ondemand"]["hourly_usd"] == 0
    assert plan.hourly_usd == pytest.approx(sum(r["hourly_usd"] for r in rows.values()), abs=0.01)


def test_capacity_block_at_its_quoted_price_and_on_demand_beyond_it():
    plan = capacity.plan(settings_for("prod", {"llmserving:gpuPools": VARIANTS["karpenter"]}))
    p5 = next(p for p in plan.pools if p.pool == "p5-ondemand")
    reserved = 2 * 55.04 + 2 * 31.464  # ODCR at on-demand, the block at its price
    assert p5.reserved_nodes == 4 and p5.reserved_hourly_usd == pytest.approx(reserved)
    # Karpenter may go on-demand beyond the reservations, up to maxNodes 4: nothing more here.
    assert p5.max_hourly_usd == pytest.approx(reserved)


def test_unreserved_prod_costs_what_it_did():
    plan = capacity.plan(settings_for("prod"))
    assert "p5-ondemand/reserved" not in plan.cost_dict()["by_pool"]
    assert round(plan.hourly_usd, 2) == 125.96


# --- config mistakes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    (dict(capacityReservations=[{"id": ODCR, "instanceType": "p5.48xlarge", "instanceCount": 2,
                                 "availabilityZone": "us-east-1a"}]),
     "llmserving:gpuPools[0].maxNodes: got 4; the node group's launch template targets "
     "llmserving:gpuPools[0].capacityReservations[0] (2 x p5.48xlarge) and EC2 fails launches beyond it"),
    (dict(capacityReservations=[{"tags": {"a": "b"}, "instanceType": "p5.48xlarge", "instanceCount": 4,
                                 "availabilityZone": "us-east-1a"}]),
     "llmserving:gpuPools[0].capacityReservations[0].tags: got {'a': 'b'}; a managed-node-group pool's launch "
     "template targets reservations by id"),
    (dict(capacityReservations=[{"id": ODCR, "instanceType": "p5.48xlarge", "instanceCount": 4}]),
     "llmserving:gpuPools[0].capacityReservations[0].availabilityZone: required key is missing"),
    (dict(capacityReservations=[{"id": BLOCK, "type": "capacity-block", "instanceType": "p5.48xlarge",
                                 "instanceCount": 4}]),
     "llmserving:gpuPools[0].capacityReservations[0].usdPerInstanceHour: required key is missing"),
    (dict(capacityReservations=[{"id": ODCR, "instanceType": "g5.12xlarge", "instanceCount": 4,
                                 "availabilityZone": "us-east-1a"}]),
     "llmserving:gpuPools[0].capacityReservations[0].instanceType: got 'g5.12xlarge'; must be one of the pool's "
     "instance types (p5.48xlarge)"),
    (dict(acknowledgeNoReservation="ok"),
     "llmserving:gpuPools[0].acknowledgeNoReservation: got 'ok'; must be a reason of 10-256 characters"),
])
def test_reservation_mistakes_name_the_key(changes, expected):
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:gpuPools": _p5(**changes)})
    assert any(p.startswith(expected) for p in e.value.problems), e.value.problems


# --- the prod policy, through the Analyzer ----------------------------------------------------------------

def _judge(pools: list[dict]) -> list[str]:
    run = run_stack("prod", {"llmserving:gpuPools": pools})
    cfg = policy_config.policy_config(settings_for("prod", {"llmserving:gpuPools": pools}))
    # Only the rule read below runs (as prod configures it); the pack's other rules are disabled.
    violations, _ = run_policy_pack(ROOT / "policies", run.registrations,
                                    policy_config=only_policy(cfg, "gpu-capacity-reservation") or cfg,
                                    project="llmserving", stack="prod", stack_config={}, stack_tags={})
    return sorted(f"{v.level}: {v.message.split(chr(10), 1)[1]}" for v in violations
                  if v.policy == "gpu-capacity-reservation")


WITHOUT = ("launches on-demand p5.48xlarge without a capacity reservation; on-demand capacity of these types is often "
           "unobtainable: target an ODCR or Capacity Block (gpuPools[].capacityReservations) or acknowledge running "
           "without one (gpuPools[].acknowledgeNoReservation, which lists the pool in this policy's acknowledgedPools "
           "and puts {where} llmserving.io/no-reservation-ack on it)")


@pytest.mark.parametrize("variant", ["mng-odcr", "mng-block", "karpenter"])
def test_prod_policy_passes_reserved_pools(variant):
    assert _judge(VARIANTS[variant]) == []


def test_prod_policy_fails_the_same_node_group_without_a_reservation():
    assert _judge(_p5()) == [
        "mandatory: node group 'llmserving-prod-p5-ondemand-gpu' " + WITHOUT.format(where="a tag")]


def test_prod_policy_fails_the_same_karpenter_pool_without_a_reservation():
    pools = copy.deepcopy(VARIANTS["karpenter"])
    pools[0].pop("capacityReservations")
    assert _judge(pools) == ["mandatory: Karpenter NodePool 'p5-ondemand' " + WITHOUT.format(where="an annotation")]


def test_prod_policy_accepts_the_written_acknowledgement():
    assert _judge(_p5(acknowledgeNoReservation="capacity risk accepted until the block starts")) == []
    cfg = policy_config.policy_config(settings_for("prod"))
    assert cfg["gpu-capacity-reservation"] == {"required": True, "acknowledgedPools": ["p5-ondemand"]}


def test_dev_does_not_require_reservations():
    assert policy_config.policy_config(settings_for("dev"))["gpu-capacity-reservation"]["required"] is False
