"""Deploy-readiness on real recordings: the shipped stacks (and an ECS variant, and the 405B preset)
run through the mock engine, then each fix is put into or stripped from the recording (custom
timeouts, a dependency edge, waitForCapacityTimeout, a Service name) and the exact finding is
asserted; the preview document carries the readiness section and exits 1 on a mandatory finding.
"""

from __future__ import annotations

import copy
import functools
import json

import pytest

from infra import preview as P
from infra import readiness as R
from infra.preview import resource_entry
from tests.harness import run_stack, shipped_preview
from tests.serving_presets import LLAMA_405B
from tests.test_ecs_stacks import TIERS

ECS_VARIANT = "medium-p5"


@functools.lru_cache(maxsize=None)
def _recorded(what: str) -> str:
    if what == "ecs":
        run = run_stack(*TIERS[ECS_VARIANT])
    elif what == "405b":
        run = run_stack(*LLAMA_405B)
    else:
        return json.dumps(shipped_preview(what)["resources"])
    return json.dumps([resource_entry(r) for r in sorted(run.registrations, key=lambda r: r.urn)])


def recorded(what: str) -> list[dict]:
    """Preview-document resources of a shipped stack, the ECS variant or the 405B preset (a fresh copy)."""
    return json.loads(_recorded(what))


def find(resources: list[dict], typ: str, name: str) -> dict:
    [r] = [r for r in resources if r["type"] == typ and r["name"] == name]
    return r


def of_type(resources: list[dict], typ: str) -> list[dict]:
    return [r for r in resources if r["type"] == typ]


def for_urn(resources: list[dict], urn: str, check: str) -> list[R.Finding]:
    return [f for f in R.check(resources) if f.urn == urn and f.check == check]


def strip_edges(resources: list[dict], frm: dict, targets: set[str]) -> None:
    """Removes `targets` from what `frm` and its ancestors wait for (the fix, taken out of the recording)."""
    by_urn = {r["urn"]: r for r in resources}
    node = frm
    while node is not None:
        node["dependencies"] = [u for u in node.get("dependencies") or [] if u not in targets]
        node = by_urn.get(node.get("parent"))


def mirror_jobs(resources: list[dict]) -> set[str]:
    """What a workload waits for besides its node source and association, and which waits for them in
    turn: its mirror Job and its service accounts (components/vllm_workload.py)."""
    return {r["urn"] for r in resources if r["type"] == "kubernetes:batch/v1:Job"
            or (r["type"] == "kubernetes:core/v1:ServiceAccount" and r["name"].startswith("llama-3-1-"))}


def unfix_await(r: dict) -> None:
    r.pop("customTimeouts", None)
    ann = (r["inputs"].get("metadata") or {}).get("annotations") or {}
    for key in (R.SKIP_AWAIT, R.TIMEOUT_SECONDS):
        ann.pop(key, None)


# --- the shipped stacks ----------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod", "large-use1-a", "ecs"])
def test_shipped_stacks_are_deploy_ready(stack):
    mandatory = [f"{f.check}: {f.message}" for f in R.check(recorded(stack)) if f.level == "mandatory"]
    assert mandatory == []


def test_preview_document_carries_dependencies_provider_and_readiness():
    doc = shipped_preview("prod")
    res = doc["resources"]
    pool = find(res, "kubernetes:karpenter.sh/v1:NodePool", "llmserving-prod-g5-lora-nodepool")
    node_class = find(res, "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "llmserving-prod-g5-lora-nodeclass")
    assert node_class["urn"] in pool["dependencies"]
    [provider] = of_type(res, "pulumi:providers:kubernetes")
    assert pool["provider"] == provider["urn"]
    # Property dependencies are merged in: the provider's kubeconfig comes from the cluster.
    [cluster] = of_type(res, "eks:index:Cluster")
    assert cluster["urn"] in provider["dependencies"]
    assert doc["readiness"] == R.section(R.check(res))


# --- await: custom timeouts in and out of the recording -------------------------------------------------

def test_prod_70b_without_its_timeouts_fails_the_await():
    res = recorded("prod")
    dep = find(res, "kubernetes:apps/v1:Deployment", "llama-3-1-70b-deployment")
    dep["customTimeouts"] = {"create": "3h", "update": "6h"}
    assert for_urn(res, dep["urn"], "await-timeout") == []
    unfix_await(dep)
    create, update = for_urn(res, dep["urn"], "await-timeout")
    assert create.level == update.level == "mandatory"
    assert create.message.startswith(
        "pulumi-kubernetes waits 10m for Deployment llmserving/llama-3-1-70b to become ready on create")
    # Weights stream from the mirror: no download init container, the startupProbe budget covers the load.
    assert "startupProbe " in create.message and "the create fails with a timeout" in create.message
    assert update.message.startswith(
        "pulumi-kubernetes waits 10m for Deployment llmserving/llama-3-1-70b to become ready on update")


def test_prod_70b_service_without_timeouts_fails_the_await():
    res = recorded("prod")
    [svc] = [r for r in of_type(res, "kubernetes:core/v1:Service")
             if r["parent"] and r["parent"].endswith("VllmWorkload::llama-3-1-70b")]
    svc["customTimeouts"] = {"create": "3h", "update": "3h"}
    assert for_urn(res, svc["urn"], "await-timeout") == []
    unfix_await(svc)
    [create, _] = for_urn(res, svc["urn"], "await-timeout")
    assert "waits for the ready endpoints of Deployment llmserving/llama-3-1-70b" in create.message


# --- order: dependency edges in and out of the recording ------------------------------------------------

def test_ecs_service_without_its_listener_rule_edge_fails():
    res = recorded("ecs")
    [svc] = of_type(res, R.ECS_SERVICE)
    rule = find(res, R.LISTENER_RULE, "llmserving-prod-edge-llama-3-1-70b")
    svc["dependencies"] = sorted({*svc["dependencies"], rule["urn"]})
    assert for_urn(res, svc["urn"], "ecs-listener-order") == []
    strip_edges(res, svc, {rule["urn"]})
    [f] = for_urn(res, svc["urn"], "ecs-listener-order")
    assert f.level == "mandatory"
    assert f.message.startswith(f"ECS service {svc['name']} registers tasks in targetgroup/llmserving-prod-llama-3-1-70b/")
    assert "does not wait for llmserving-prod-edge-llama-3-1-70b, which attaches it to the load balancer" in f.message


def test_ecs_group_waiting_for_capacity_fails():
    res = recorded("ecs")
    [asg] = of_type(res, R.ASG)
    asg["inputs"]["waitForCapacityTimeout"] = "0"
    assert for_urn(res, asg["urn"], "asg-capacity-wait") == []
    asg["inputs"]["waitForCapacityTimeout"] = "10m"
    [f] = for_urn(res, asg["urn"], "asg-capacity-wait")
    assert f.message.startswith("Auto Scaling group llmserving-prod-p5 backs ECS capacity provider llmserving-prod-p5 "
                                "but waitForCapacityTimeout is '10m': `pulumi up` blocks until")


def test_keda_release_without_a_node_group_edge_fails():
    res = recorded("prod")
    keda = find(res, R.RELEASE, "keda")
    [system] = [g for g in of_type(res, R.NODE_GROUP) if not g["inputs"].get("taints")]
    keda["dependencies"] = sorted({*keda["dependencies"], system["urn"]})
    assert for_urn(res, keda["urn"], "node-source-order") == []
    # The fix is the edge to the platform's system_nodes: the node group and the add-ons created after it.
    strip_edges(res, keda, {r["urn"] for r in [*of_type(res, R.NODE_GROUP), *of_type(res, "aws:eks/addon:Addon")]})
    [f] = for_urn(res, keda["urn"], "node-source-order")
    assert f.message.startswith("Helm release keda/keda installs chart keda, whose Deployments helm waits for, but it "
                                "does not wait for a node group or NodePool without taints")


def test_gpu_deployment_without_its_pool_edge_fails():
    res = recorded("prod")
    dep = find(res, "kubernetes:apps/v1:Deployment", "llama-3-1-8b-deployment")
    pool = find(res, R.NODE_POOL, "llmserving-prod-g5-lora-nodepool")
    dep["dependencies"] = sorted({*dep["dependencies"], pool["urn"]})
    assert for_urn(res, dep["urn"], "node-source-order") == []
    # The Deployment also waits for its mirror Job (which waits for the pool): take that path out too.
    strip_edges(res, dep, {pool["urn"], *mirror_jobs(res)})
    [f] = for_urn(res, dep["urn"], "node-source-order")
    assert "(Karpenter NodePool g5-lora (limit 48 GPUs))" in f.message


def test_scaled_object_without_the_keda_edge_fails():
    res = recorded("prod")
    so = find(res, "kubernetes:keda.sh/v1alpha1:ScaledObject", "llama-3-1-70b-scaledobject")
    keda = find(res, R.RELEASE, "keda")
    assert for_urn(res, so["urn"], "crd-order") == []  # today: through its VllmWorkload parent's dependencies
    strip_edges(res, so, {keda["urn"]})
    [f] = for_urn(res, so["urn"], "crd-order")
    assert f.message == ("ScaledObject llmserving/llama-3-1-70b does not wait for Helm release keda/keda, which "
                         "installs the CRD of keda.sh: on a first deploy the create can run first and fails with "
                         "\"no matches for kind ScaledObject in version keda.sh/v1alpha1\"")


# --- capacity -------------------------------------------------------------------------------------------

def test_prod_70b_autoscaler_beyond_the_p5_group_fails():
    res = recorded("prod")
    so = find(res, "kubernetes:keda.sh/v1alpha1:ScaledObject", "llama-3-1-70b-scaledobject")
    group = find(res, R.NODE_GROUP, "llmserving-prod-p5-ondemand-ng")
    max_nodes = group["inputs"]["scalingConfig"]["maxSize"]
    so["inputs"]["spec"]["maxReplicaCount"] = max_nodes
    assert for_urn(res, so["urn"], "autoscaler-capacity") == []
    so["inputs"]["spec"]["maxReplicaCount"] = max_nodes + 1
    [f] = for_urn(res, so["urn"], "autoscaler-capacity")
    assert f.message.startswith(f"ScaledObject llmserving/llama-3-1-70b scales Deployment llmserving/llama-3-1-70b to "
                                f"{max_nodes + 1} replicas (8 GPUs each")
    assert f"holds {max_nodes} such replicas at its maximum" in f.message


def test_prod_70b_surge_rollout_on_a_full_pool_fails():
    res = recorded("prod")
    dep = find(res, "kubernetes:apps/v1:Deployment", "llama-3-1-70b-deployment")
    dep["inputs"]["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert for_urn(res, dep["urn"], "rollout-headroom") == []
    dep["inputs"]["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    [f] = for_urn(res, dep["urn"], "rollout-headroom")
    assert f.message.startswith("a rolling update of Deployment llmserving/llama-3-1-70b at ")
    assert "the surge pod stays Pending and the rollout never progresses" in f.message


# --- names ----------------------------------------------------------------------------------------------

def test_405b_service_named_like_its_leaderworkerset_collides():
    res = recorded("405b")
    [lws] = of_type(res, "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")
    [svc] = [r for r in of_type(res, "kubernetes:core/v1:Service") if r["parent"] == lws["parent"]]
    svc["inputs"]["metadata"]["name"] = "llama-3-1-405b-api"
    assert for_urn(res, svc["urn"], "controller-name-collision") == []
    svc["inputs"]["metadata"]["name"] = lws["inputs"]["metadata"]["name"]
    [f] = for_urn(res, svc["urn"], "controller-name-collision")
    assert f.message.startswith("LeaderWorkerSet llmserving/llama-3-1-405b makes the LWS controller create the headless "
                                "Service (pods find the leader through it: LWS_LEADER_ADDRESS) llmserving/llama-3-1-405b, "
                                "and the program creates Service llmserving/llama-3-1-405b with that name")


# --- the preview's exit status ---------------------------------------------------------------------------

def _doc_with(findings: list[dict]) -> dict:
    doc = copy.deepcopy(shipped_preview("dev"))
    doc["readiness"] = {"findings": findings}
    return doc


@pytest.mark.parametrize("level,code", [("mandatory", 1), ("advisory", 0)])
def test_a_mandatory_readiness_finding_fails_the_preview(monkeypatch, capsys, level, code):
    finding = {"check": "await-timeout", "level": level, "urn": None, "message": "would time out"}
    doc = _doc_with([finding])  # before the stub: the shipped preview runs the real one
    monkeypatch.setattr(P, "preview", lambda stack, stack_file=None: doc)
    assert P.main(["--stack", "dev"]) == code
    out = capsys.readouterr().out
    assert "Deploy readiness" in out and "would time out" in out
    m = 1 if level == "mandatory" else 0
    assert f"{m} mandatory and {1 - m} advisory readiness findings" in out


def test_prod_lora_pods_without_the_pod_identity_edge_fail():
    res = recorded("prod")
    dep = find(res, "kubernetes:apps/v1:Deployment", "llama-3-1-8b-deployment")
    [assoc] = [r for r in of_type(res, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
               if r["inputs"].get("serviceAccount") == "vllm-lora"]
    dep["dependencies"] = sorted({*dep["dependencies"], assoc["urn"]})
    assert for_urn(res, dep["urn"], "pod-identity-order") == []
    strip_edges(res, dep, {assoc["urn"], *mirror_jobs(res)})
    [f] = for_urn(res, dep["urn"], "pod-identity-order")
    assert f.message.startswith("Deployment llmserving/llama-3-1-8b runs pods as service account llmserving/vllm-lora "
                                f"but does not wait for its EKS Pod Identity association ({assoc['name']})")


def test_target_group_binding_without_the_namespace_edge_fails():
    res = recorded("prod")
    [tgb] = [r for r in of_type(res, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
             if r["inputs"]["metadata"]["name"] == "router"]
    ns = find(res, "kubernetes:core/v1:Namespace", "llmserving")
    tgb["dependencies"] = sorted({*tgb["dependencies"], ns["urn"]})
    assert for_urn(res, tgb["urn"], "namespace-order") == []
    # The fix: the binding waits for the namespace and for the Services (which wait for the namespace).
    strip_edges(res, tgb, {ns["urn"]} | {r["urn"] for r in of_type(res, "kubernetes:core/v1:Service")})
    [f] = for_urn(res, tgb["urn"], "namespace-order")
    assert f.message.startswith("TargetGroupBinding llmserving/router goes into namespace llmserving, which this stack "
                                "creates (llmserving), but does not wait for it")


def test_pr_diff_names_a_dropped_edge_and_the_new_finding():
    from infra import diff as D

    base = copy.deepcopy(shipped_preview("prod"))
    head = copy.deepcopy(base)
    res = head["resources"]
    so = find(res, "kubernetes:keda.sh/v1alpha1:ScaledObject", "llama-3-1-70b-scaledobject")
    keda = find(res, R.RELEASE, "keda")
    strip_edges(res, so, {keda["urn"]})
    head["readiness"] = R.section(R.check(res))
    d = D.diff_documents(base, head)
    assert d.resources == []  # Pulumi shows no update for a dependency edge...
    [change] = d.dependencies  # ...the report does
    assert change.urn == so["urn"] and change.removed == [keda["urn"]] and change.added == []
    [new] = d.readiness["new"]
    assert new["check"] == "crd-order" and new["urn"] == so["urn"]
    md = D.render_markdown(head, d)
    assert "#### Ordering changes (what each resource waits for)" in md
    assert "**Deploy readiness:** ❌" in md and "| crd-order |" in md and "| new |" in md


def test_a_copy_into_the_node_cache_is_named_as_not_bounded_by_the_pod_spec():
    """The fallback copy (load format safetensors) writes into the node-level cache, a hostPath: the pod spec
    bounds nothing there (an emptyDir's sizeLimit did), so the estimate cannot include the copy and says so
    instead of judging the await as if the copy took no time."""
    from tests.harness import stack_value

    models = [dict(m, loadFormat="safetensors") if m["name"] == "llama-3-1-8b" else m
              for m in stack_value("prod", "llmserving:models")]
    run = run_stack("prod", {"llmserving:models": models})
    res = [resource_entry(r) for r in sorted(run.registrations, key=lambda r: r.urn)]
    deploy = find(res, "kubernetes:apps/v1:Deployment", "llama-3-1-8b-deployment")
    [finding] = [f for f in R.check(res) if f.check == "download-unbounded"]
    assert (finding.level, finding.urn) == ("advisory", deploy["urn"])
    assert finding.message.startswith(
        "Deployment llmserving/llama-3-1-8b: init model-copy -> hostPath volume 'node-cache' writes into a directory "
        "on the node whose size the pod spec does not bound (no emptyDir sizeLimit)")
    # Streaming models write nothing there before they start: no such finding on the shipped stack.
    assert [f for f in R.check(recorded("prod")) if f.check == "download-unbounded"] == []
