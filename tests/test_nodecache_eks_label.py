"""Pods that mount the node cache run only on nodes that create it (infra/eks_catalog.py NODE_CACHE_LABEL).

Upstream:
- karpenter-provider-aws v1.14.1 pkg/apis/v1/ec2nodeclass.go: userData is part of the EC2NodeClass hash, so a
  change (the node cache's boot script) only marks running nodes drifted; they run until Karpenter replaces
  them, while Pulumi rolls the Deployment at once. A pod on such a node fails the hostPath type check
  (type Directory: kubernetes pkg/volume/hostpath/host_path.go, v1.33) and never starts.
- Karpenter puts NodePool template labels on a node when it launches it; a template change drifts the node
  (NodePool.Spec.Template is hashed: kubernetes-sigs/karpenter designs/drift-hash-versioning.md), so an old node
  never gains the label.
- The deploy-readiness check matches a pod's nodeSelector against node sources' labels (infra/readiness.py
  NodeSource.fits): the shipped stacks must keep a node source for every serving pod.
"""

from __future__ import annotations

import dataclasses

import pytest

from components.gpu_node_group import NodeCacheDir, node_cache_labels
from components.karpenter_gpu_pool import KarpenterGpuPoolArgs, node_pool_spec
from infra import eks_catalog as ec
from infra import readiness as R
from tests.harness import shipped_preview, stack_value

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
KEY, VALUE = ec.NODE_CACHE_LABEL
STACKS = ("prod", "dev", "large-use1-a")


def _mounts_node_cache(t: R.PodTemplate) -> bool:
    return any((v.get("hostPath") or {}).get("path") == ec.NODE_CACHE_HOST_PATH for v in t.spec.get("volumes") or [])


def _serving_templates(resources: list[dict], stack: str) -> list[tuple[dict, R.PodTemplate]]:
    models = {m["name"] for m in stack_value(stack, "llmserving:models")}
    out = []
    for r in resources:
        if r["type"] in (DEPLOYMENT, LWS) and r["inputs"]["metadata"]["name"] in models:
            out += [(r, t) for t in R.workload_of(r).templates]
    return out


def _gpu_sources(resources: list[dict]) -> list[R.NodeSource]:
    return [s for s in R.node_sources(resources, R._default_gpus_of) if "llmserving.io/pool" in s.labels]


@pytest.mark.parametrize("stack", STACKS)
def test_serving_pods_select_the_label_and_every_gpu_node_source_that_can_run_them_carries_it(stack):
    res = shipped_preview(stack)["resources"]
    templates = _serving_templates(res, stack)
    assert templates
    sources = _gpu_sources(res)
    # Both kinds of node source get the label where the stack has them.
    assert {s.kind for s in sources} >= ({"node-pool"} if stack == "dev" else {"node-pool", "node-group"})
    for s in sources:
        assert s.labels.get(KEY) == VALUE, s.describe()
    for r, t in templates:
        assert _mounts_node_cache(t)
        assert t.spec["nodeSelector"][KEY] == VALUE, r["name"]
        # Deploy-ready: the pods still have a node source, and each one that fits carries the label.
        fits = [s for s in sources if s.fits(t)]
        assert fits, (stack, r["name"])
        assert all(s.labels.get(KEY) == VALUE for s in fits)
    assert not [f for f in R.check(res) if f.check == "no-node-source"]


def test_a_node_launched_before_the_node_cache_does_not_run_its_pods():
    """An existing Karpenter cluster updated to the node cache: the nodes already running were launched from
    the NodePool template without the label (and without the boot script). The new pods must not fit them."""
    res = shipped_preview("dev")["resources"]
    [(_, t), *_] = _serving_templates(res, "dev")
    [new] = [s for s in _gpu_sources(res) if s.fits(t)][:1]
    old = dataclasses.replace(new, labels={k: v for k, v in new.labels.items() if k != KEY})
    assert new.fits(t) and not old.fits(t)


def test_a_pool_without_the_node_cache_gets_no_label_and_no_pods_that_need_it():
    res = shipped_preview("dev")["resources"]
    [(_, t), *_] = _serving_templates(res, "dev")
    pool = t.spec["nodeSelector"]["llmserving.io/pool"]
    args = KarpenterGpuPoolArgs(pool_name=pool, cluster_name="c", node_role_name="r", instance_types=["g5.2xlarge"],
                                capacity_types=["on-demand"], gpu_limit=8, ami_alias="al2023@v20251103",
                                root_volume_gib=200, zones=["us-east-1a"])
    without = node_pool_spec(args)["template"]["metadata"]["labels"]
    assert KEY not in without
    with_cache = node_pool_spec(dataclasses.replace(args, node_cache=NodeCacheDir(
        ec.NODE_CACHE_HOST_PATH, 10001, 10001, ec.NODE_CACHE_LABEL)))["template"]["metadata"]["labels"]
    assert with_cache[KEY] == VALUE
    src = R.NodeSource({"name": pool}, "node-pool", {**without, "karpenter.sh/nodepool": pool}, {}, [], 8, 1, 8, 0)
    assert not src.fits(t)
    assert node_cache_labels(None) == {} and node_cache_labels(NodeCacheDir("/c", 1, 1)) == {}


def test_the_label_must_be_a_kubernetes_label():
    from components.gpu_node_group import node_cache_problems

    assert node_cache_problems(NodeCacheDir(ec.NODE_CACHE_HOST_PATH, 10001, 10001, ec.NODE_CACHE_LABEL)) == []
    assert node_cache_problems(NodeCacheDir(ec.NODE_CACHE_HOST_PATH, 10001, 10001, ("bad key!", "v1")))
    assert node_cache_problems(NodeCacheDir(ec.NODE_CACHE_HOST_PATH, 10001, 10001, ("a/b", "")))
