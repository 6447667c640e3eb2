"""Issue 13.1: every GPU pool scales between its plan's min and max, by whatever scales it.

Managed node groups: the Cluster Autoscaler (EKS scales nothing itself; Karpenter does not touch node
groups). It finds a group by the tags EKS puts on the group's Auto Scaling group
(`k8s.io/cluster-autoscaler/enabled`, `k8s.io/cluster-autoscaler/<cluster>`: awsdocs/amazon-eks-user-guide
latest/ug/nodes/managed-node-groups.adoc) through `--node-group-auto-discovery=asg:tag=...` (chart
cluster-autoscaler 9.51.0 templates/deployment.yaml renders it from autoDiscovery.clusterName), and moves the
desired size within the group's min and max (cloudprovider/aws/README.md at cluster-autoscaler-1.33.6).
Karpenter pools grow to their nvidia.com/gpu limit by themselves.
"""

from __future__ import annotations

import copy
import json

import pytest

from components.cluster_autoscaler import (DISCOVERY_TAGS, ClusterAutoscaler, ClusterAutoscalerArgs, chart_values,
                                           scoped_policy, validate_cluster_autoscaler_args)
from components.errors import ArgsError
from components.gpu_node_group import GpuNodeGroup, GpuNodeGroupArgs, autoscaler_template_tags
from infra import eks_catalog as ec
from infra import readiness as R
from infra import upstream
from infra.preview import resource_entry
from tests.harness import inputs, of_type, one, run_component, run_stack, shipped_preview, shipped_run, stack_value
from tests.iam_sim import ACCOUNT, Request, evaluate

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
RELEASE = "kubernetes:helm.sh/v3:Release"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
SHIPPED_EKS = ["prod", "large-use1-a"]


def _releases(resources: list[dict], chart: str) -> list[dict]:
    return [r for r in resources if r["type"] == RELEASE and R.chart_key(r) == chart]


def _pool_of(resources: list[dict], pool: str) -> dict:
    for r in resources:
        i = r["inputs"]
        if r["type"] == NODE_GROUP and (i.get("labels") or {}).get("llmserving.io/pool") == pool:
            return r
        if r["type"] == NODEPOOL and i["metadata"]["name"] == pool:
            return r
    raise AssertionError(f"no GPU capacity for pool {pool}")


def _max_gpus(r: dict, gpus_per_node: int) -> int:
    i = r["inputs"]
    if r["type"] == NODE_GROUP:
        return int(i["scalingConfig"]["maxSize"]) * gpus_per_node
    return int(i["spec"]["limits"]["nvidia.com/gpu"])


@pytest.mark.parametrize("stack", SHIPPED_EKS)
def test_every_gpu_pool_max_is_reachable_by_what_scales_it(stack):
    doc = shipped_preview(stack)
    res = doc["resources"]
    cas = _releases(res, "cluster-autoscaler")
    for pool in stack_value(stack, "llmserving:gpuPools"):
        r = _pool_of(res, pool["name"])
        if r["type"] == NODE_GROUP:
            i = r["inputs"]
            # The group's max is the plan's max, and the autoscaler may move it there: it discovers this
            # cluster's groups (EKS tags them with the cluster name) and owns the desired size.
            assert int(i["scalingConfig"]["maxSize"]) == pool["maxNodes"]
            assert int(i["scalingConfig"]["minSize"]) == pool.get("minNodes", 0)
            assert [c["inputs"]["values"]["autoDiscovery"]["clusterName"] for c in cas] == [i["clusterName"]]
            reg = next(x for x in shipped_run(stack).registrations if x.urn == r["urn"])
            assert "scalingConfig.desiredSize" in reg.ignore_changes
        else:
            # Karpenter launches until the NodePool's GPU limit: the plan's max, capped by the stack's limit.
            gpus = doc["capacity"]["pools"][pool["name"]]["gpus_per_node"]
            cap = stack_value(stack, "llmserving:gpuLimits")["maxGpusPerPool"]
            assert _max_gpus(r, gpus) == min(cap, pool["maxNodes"] * gpus)
    # KEDA's maximum never asks for more than the pool holds at its maximum.
    for so in (r for r in res if r["type"] == SCALED_OBJECT):
        name = so["inputs"]["spec"]["scaleTargetRef"]["name"]
        model = next(m for m in stack_value(stack, "llmserving:models") if name.startswith(m["name"]))
        cap = doc["capacity"]["models"][model["name"]]
        pool = _pool_of(res, cap["pool"])
        per_node = doc["capacity"]["pools"][cap["pool"]]["gpus_per_node"]
        assert so["inputs"]["spec"]["maxReplicaCount"] * cap["gpus_per_replica"] <= _max_gpus(pool, per_node)
    found = {f["check"] for f in doc["readiness"]["findings"]}
    assert not found & {"node-group-static", "autoscaler-capacity"}, doc["readiness"]["findings"]


@pytest.mark.parametrize("stack", SHIPPED_EKS)
def test_without_the_cluster_autoscaler_the_p5_group_is_static_again(stack):
    # What node-group-static (infra/readiness.py) reports when nothing scales a node group: take the
    # autoscaler's release out of the recording and the 70B scaler's extra replicas have nowhere to go.
    res = copy.deepcopy(shipped_preview(stack)["resources"])
    assert not [f for f in R.check(res) if f.check == "node-group-static"]
    res = [r for r in res if not (r["type"] == RELEASE and R.chart_key(r) == "cluster-autoscaler")]
    static = [f for f in R.check(res) if f.check == "node-group-static"]
    assert [f.message.split(" scales ")[0] for f in static] == ["ScaledObject llmserving/llama-3-1-70b"]


def test_an_autoscaler_max_beyond_the_pool_fails_the_preview():
    # prod's 70B takes a whole p5 per replica; KEDA's max of 5 outgrows the group's max of 4.
    models = stack_value("prod", "llmserving:models")
    models[0]["maxReplicas"] = 5
    run = run_stack("prod", {"llmserving:models": models})
    res = [resource_entry(r) for r in run.registrations]
    found = [f for f in R.check(res) if f.check == "autoscaler-capacity"]
    assert [(f.level, f.message.split(" scales ")[0]) for f in found] == [
        ("mandatory", "ScaledObject llmserving/llama-3-1-70b")]
    assert "holds 4 such replicas at its maximum" in found[0].message


# --- the Cluster Autoscaler component -------------------------------------------------------------

def ca_args(**kw) -> ClusterAutoscalerArgs:
    chart = ec.CLUSTER_AUTOSCALER_CHART
    base = dict(cluster_name="llmserving-test", kubernetes_version="1.33", region="us-east-1", account_id=ACCOUNT,
                chart=chart.chart, chart_version=chart.version, repository=chart.repository,
                image_tag=ec.CLUSTER_AUTOSCALER_IMAGE["1.33"].value, policy=upstream.cluster_autoscaler_policy(),
                extra_args={"skip-nodes-with-local-storage": "false"}, node_selector={"llmserving.io/role": "system"})
    base.update(kw)
    return ClusterAutoscalerArgs(**base)


def test_autoscaler_minor_version_follows_the_cluster():
    with pytest.raises(ArgsError) as e:
        validate_cluster_autoscaler_args(ca_args(image_tag="v1.32.1"))
    assert "must match the cluster's Kubernetes version 1.33" in str(e.value)
    assert ec.CLUSTER_AUTOSCALER_IMAGE.keys() <= ec.ADDON_VERSIONS.keys()


def test_autoscaler_release_values_discover_this_clusters_groups():
    run = run_component(lambda: ClusterAutoscaler("ca", ca_args()))
    rel = inputs(one(run, RELEASE))
    assert rel["chart"] == "cluster-autoscaler" and rel["version"] == "9.51.0"
    assert rel["repositoryOpts"] == {"repo": "https://kubernetes.github.io/autoscaler"}
    v = rel["values"]
    # Chart 9.51.0 renders --node-group-auto-discovery=asg:tag=<autoDiscovery.tags> (default: the two
    # tags below, the second templated with the cluster name) and AWS_REGION from awsRegion (IMDS is
    # out of reach with hop limit 1).
    assert v["autoDiscovery"] == {"clusterName": "llmserving-test"} and v["awsRegion"] == "us-east-1"
    assert v["cloudProvider"] == "aws" and v["image"] == {"tag": "v1.33.6"}
    assert v["rbac"]["serviceAccount"]["name"] == "cluster-autoscaler"
    assert v["nodeSelector"] == {"llmserving.io/role": "system"}
    # The pod starts after its Pod Identity association (else no credentials until restarted).
    assoc = one(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert assoc.urn in one(run, RELEASE).all_dependencies
    assert inputs(assoc)["serviceAccount"] == "cluster-autoscaler" and inputs(assoc)["namespace"] == "kube-system"


def _asg_arn(name: str) -> str:
    return f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:0a1b2c3d-0000-4000-8000-000000000000:autoScalingGroupName/{name}"


def test_autoscaler_may_resize_only_groups_tagged_for_its_cluster():
    policy = scoped_policy(upstream.cluster_autoscaler_policy(), "llmserving-test")
    principal = f"arn:aws:sts::{ACCOUNT}:assumed-role/llmserving-test-cluster-autoscaler/eks-pod"
    ours = {f"aws:ResourceTag/{DISCOVERY_TAGS[1].format(cluster='llmserving-test')}": "owned",
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true"}
    theirs = {"aws:ResourceTag/k8s.io/cluster-autoscaler/other-cluster": "owned",
              "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true"}
    reqs = [Request(a, _asg_arn(n), principal, ctx, [policy])
            for a in ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")
            for n, ctx in (("eks-ours", ours), ("eks-theirs", theirs))]
    reqs.append(Request("autoscaling:DescribeAutoScalingGroups", "*", principal, {}, [policy]))
    assert evaluate(reqs) == ["Allowed", "ImplicitlyDenied", "Allowed", "ImplicitlyDenied", "Allowed"]
    # Upstream's document as published grants the write actions on every group of the account.
    raw = upstream.cluster_autoscaler_policy()
    assert evaluate([Request("autoscaling:SetDesiredCapacity", _asg_arn("eks-theirs"), principal, theirs, [raw])]) == [
        "Allowed"]


# --- managed node groups under the autoscaler ------------------------------------------------------

def ng_args(**kw) -> GpuNodeGroupArgs:
    base = dict(cluster_name="llmserving-test", pool_name="p5", instance_types=["p5.48xlarge"],
                subnet_ids=["subnet-a"], ami_type="AL2023_x86_64_NVIDIA", capacity_type="ON_DEMAND", min_size=0,
                desired_size=0, max_size=4, root_volume_gib=500,
                node_policy_arns=["arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"],
                labels={"llmserving.io/provisioner": "managed-node-group"}, autoscaled=True)
    base.update(kw)
    return GpuNodeGroupArgs(**base)


def test_autoscaled_group_keeps_its_desired_size_out_of_updates_and_tags_its_node_template():
    run = run_component(lambda: GpuNodeGroup("ng", ng_args(efa_interfaces=32, security_group_ids=["sg-1"],
                                                           template_resources={"vpc.amazonaws.com/efa": "32"})))
    ng = one(run, NODE_GROUP)
    assert ng.ignore_changes == ["scalingConfig.desiredSize"]
    tags = {inputs(t)["tag"]["key"]: inputs(t)["tag"]["value"] for t in of_type(run, "aws:autoscaling/tag:Tag")}
    prefix = "k8s.io/cluster-autoscaler/node-template/"
    # What a pending GPU pod needs the (empty) group to promise: its pool label, the taint it tolerates
    # and the EFA devices it requests. The GPU count comes from the instance type (aws_manager.go).
    assert tags[prefix + "label/llmserving.io/pool"] == "p5"
    assert tags[prefix + "taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert tags[prefix + "resources/vpc.amazonaws.com/efa"] == "32"
    assert all(not inputs(t)["tag"]["propagateAtLaunch"] for t in of_type(run, "aws:autoscaling/tag:Tag"))


def test_template_taint_value_is_what_the_autoscaler_parses():
    # aws_manager.go extractTaintsFromAsg splits the value "<value>:<effect>" and the key after the prefix.
    tags = autoscaler_template_tags({}, [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}], {})
    [(key, value)] = tags.items()
    name = key.split("k8s.io/cluster-autoscaler/node-template/taint/")[1]
    value_part, effect = value.split(":", 1)
    assert (name, value_part, effect) == ("nvidia.com/gpu", "true", "NoSchedule")


def test_static_group_is_not_autoscaled():
    run = run_component(lambda: GpuNodeGroup("ng", ng_args(autoscaled=False, min_size=2, desired_size=2)))
    assert one(run, NODE_GROUP).ignore_changes == [] and of_type(run, "aws:autoscaling/tag:Tag") == []


def test_stack_without_managed_groups_runs_no_cluster_autoscaler():
    assert _releases(shipped_preview("dev")["resources"], "cluster-autoscaler") == []


def test_managed_group_labels_carry_the_autoscaler_gpu_label():
    res = shipped_preview("prod")["resources"]
    ng = _pool_of(res, "p5-ondemand")["inputs"]
    # cloudprovider/aws/aws_cloud_provider.go GPULabel (1.33.6): nodes with it whose GPUs are not yet
    # allocatable count as unready, so the autoscaler does not scale twice for one pending pod.
    assert ng["labels"][ec.CA_GPU_LABEL] == "nvidia-h100-80gb"
    assert json.dumps(ng).count("nodeRepairConfig") == 1
