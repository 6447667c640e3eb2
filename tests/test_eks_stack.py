"""Whole-stack tests of the EKS platform (dev: small tier, prod: medium tier).

Each stack runs once per module (the runs are the slow part); the tests
assert on the recorded resources.
"""

from __future__ import annotations

import json

import botocore.session
import pytest

from infra import capacity
from infra import eks_catalog as ec
from tests.harness import inputs, of_type, one, shipped_run, settings_for
from tests.k8s_validation import validate_object

NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODEGROUP = "aws:eks/nodeGroup:NodeGroup"


@pytest.fixture(scope="module")
def dev():
    return shipped_run("dev")


@pytest.fixture(scope="module")
def prod():
    return shipped_run("prod")


@pytest.fixture(scope="module")
def botocore_enums():
    s = botocore.session.get_session()
    ec2, eks = s.get_service_model("ec2"), s.get_service_model("eks")
    return {"instance": set(ec2.shape_for("InstanceType").enum), "ami": set(eks.shape_for("AMITypes").enum),
            "capacity": set(eks.shape_for("CapacityTypes").enum)}


def _gpu_node_groups(run):
    return [inputs(r) for r in of_type(run, NODEGROUP) if inputs(r).get("taints")]


# --- dev (small) ----------------------------------------------------------------

def test_dev_is_karpenter_spot_first_with_gpu_limit(dev):
    assert not _gpu_node_groups(dev)  # small tier: all GPU capacity through Karpenter
    pool = inputs(one(dev, NODEPOOL))["spec"]
    assert pool["limits"] == {"nvidia.com/gpu": 16}
    reqs = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ["spot", "on-demand"]
    assert reqs["node.kubernetes.io/instance-type"] == ["g5.2xlarge", "g5.4xlarge", "g6e.xlarge", "g6e.2xlarge"]
    assert reqs["topology.kubernetes.io/zone"] == ["us-east-1a", "us-east-1b"]


def test_dev_cluster_public_endpoint_is_cidr_restricted(dev):
    c = inputs(one(dev, "eks:index:Cluster"))
    assert c["name"] == "llmserving-dev"
    assert c["endpointPublicAccess"] is True and c["publicAccessCidrs"] == ["198.51.100.0/24"]
    assert one(dev, "eks:index:Cluster").protect
    assert dev.outputs["clusterName"] == "llmserving-dev"


def test_dev_dcgm_exporter_is_off(dev):
    names = sorted(inputs(r)["name"] for r in of_type(dev, "kubernetes:helm.sh/v3:Release"))
    assert "dcgm-exporter" not in names and {"karpenter", "nvidia-device-plugin"} <= set(names)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_interruption_wiring(stack, dev, prod):
    run = {"dev": dev, "prod": prod}[stack]
    queue = inputs(one(run, "aws:sqs/queue:Queue"))
    assert queue["name"] == f"llmserving-{stack}-karpenter"
    assert queue["sqsManagedSseEnabled"] is True and queue["messageRetentionSeconds"] == 300
    rules = of_type(run, "aws:cloudwatch/eventRule:EventRule")
    assert len(rules) == 5
    assert sorted(json.loads(inputs(r)["eventPattern"])["detail-type"][0] for r in rules) == sorted([
        "AWS Health Event", "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification", "EC2 Capacity Reservation Instance Interruption Warning"])
    targets = of_type(run, "aws:cloudwatch/eventTarget:EventTarget")
    assert {inputs(t)["arn"] for t in targets} == {f"arn:aws:sqs:us-east-1:123456789012:{queue['name']}"}
    release = next(inputs(r) for r in of_type(run, "kubernetes:helm.sh/v3:Release") if inputs(r)["name"] == "karpenter")
    assert release["values"]["settings"]["interruptionQueue"] == queue["name"]
    assert release["values"]["settings"]["clusterName"] == f"llmserving-{stack}"
    assert release["version"] == ec.HELM_CHARTS["karpenter"].version


# --- prod (medium) ------------------------------------------------------------------

def test_prod_p5_pool_is_a_managed_node_group_sized_by_the_plan(prod):
    (ng,) = _gpu_node_groups(prod)
    assert ng["nodeGroupName"] == "llmserving-prod-p5-ondemand-gpu"
    assert ng["instanceTypes"] == ["p5.48xlarge"] and ng["amiType"] == "AL2023_x86_64_NVIDIA"
    assert ng["capacityType"] == "ON_DEMAND"
    plan = capacity.plan(settings_for("prod"))
    p5 = next(p for p in plan.pools if p.pool == "p5-ondemand")
    assert ng["scalingConfig"] == {"minSize": 2, "desiredSize": p5.nodes, "maxSize": 4}
    assert ng["labels"]["llmserving.io/pool"] == "p5-ondemand"
    assert len(ng["subnetIds"]) == 3  # TP 8 on one node: no EFA, spread across zones


def test_prod_cluster_is_private_and_g5_pool_is_karpenter_with_limit(prod):
    c = inputs(one(prod, "eks:index:Cluster"))
    assert c["endpointPublicAccess"] is False and "publicAccessCidrs" not in c
    pool = inputs(one(prod, NODEPOOL))
    assert pool["metadata"]["name"] == "g5-lora"
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": 48}  # min(maxGpusPerPool 64, 12 nodes x 4 GPUs)
    names = sorted(inputs(r)["name"] for r in of_type(prod, "kubernetes:helm.sh/v3:Release"))
    assert names == ["aws-load-balancer-controller", "cluster-autoscaler", "dcgm-exporter", "karpenter", "keda",
                     "kube-prometheus-stack", "nvidia-device-plugin"]


# --- every rendered object and every AWS name -----------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_kubernetes_object_validates(stack, dev, prod):
    run = {"dev": dev, "prod": prod}[stack]
    objects = [inputs(r, reveal_secrets=True) for r in run.registrations
               if r.type.startswith("kubernetes:") and r.type != "kubernetes:helm.sh/v3:Release"]
    # The platform's and the serving layer's kinds, all in one stack.
    assert {o["kind"] for o in objects} >= {"NodePool", "EC2NodeClass", "Deployment", "Service", "ScaledObject",
                                            "PodMonitor", "NetworkPolicy", "PodDisruptionBudget", "TargetGroupBinding"}
    for obj in objects:
        validate_object(obj)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_instance_ami_and_capacity_type_is_known_to_botocore(stack, dev, prod, botocore_enums):
    run = {"dev": dev, "prod": prod}[stack]
    seen_instances = set()
    for r in of_type(run, NODEGROUP):
        ng = inputs(r)
        seen_instances |= set(ng["instanceTypes"])
        assert ng["amiType"] in botocore_enums["ami"]
        assert ng["capacityType"] in botocore_enums["capacity"]
    for r in of_type(run, NODEPOOL):
        reqs = {q["key"]: q["values"] for q in inputs(r)["spec"]["template"]["spec"]["requirements"]}
        seen_instances |= set(reqs["node.kubernetes.io/instance-type"])
    assert seen_instances and seen_instances <= botocore_enums["instance"], seen_instances - botocore_enums["instance"]


def test_catalog_instance_types_and_ami_pin_are_known_to_botocore(botocore_enums):
    from infra.catalog import INSTANCE_TYPES
    assert set(INSTANCE_TYPES) <= botocore_enums["instance"]
    assert ec.MANAGED_NODE_GROUP_AMI_TYPE.value in botocore_enums["ami"]
    assert set(ec.SYSTEM_NODES["instance_types"].value.split(",")) <= botocore_enums["instance"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_taggable_platform_resources_carry_cost_tags(stack, dev, prod):
    run = {"dev": dev, "prod": prod}[stack]
    for typ in (NODEGROUP, "aws:eks/addon:Addon", "aws:sqs/queue:Queue", "aws:cloudwatch/eventRule:EventRule",
                "aws:kms/key:Key", "aws:ec2/launchTemplate:LaunchTemplate", "aws:iam/role:Role"):
        for r in of_type(run, typ):
            assert {"project", "stack", "environment", "tier"} <= set(inputs(r).get("tags", {})), (typ, r.name)
