"""Deploy-readiness checks (infra/readiness.py) on synthetic recordings: one passing and one failing
fixture per check, asserting the exact finding; the wait-graph semantics against the real SDK
(pulumi 3.272) under the mock engine; the recording of custom timeouts.

Upstream behaviour each check encodes is cited in infra/readiness_catalog.py (pulumi-kubernetes
await/*.go and helm_release.go, LWS v0.10.0 controller_utils.go, KEDA hpa.go, Terraform
aws_autoscaling_group, Amazon ECS CreateService).
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import pulumi
import pytest

from infra import readiness as R
from infra.mockcloud import run_callable
from infra.preview import resource_entry

NS = "llmserving"


@pytest.fixture(autouse=True)
def fixed_figures(monkeypatch):
    """The expected messages below are worked out with these start-up figures, not the catalog's
    current ones (infra/serving_catalog.py; a stack may override them)."""
    from infra import readiness_catalog as rc
    from infra.catalog import Assumption

    monkeypatch.setitem(rc.FIGURES, "download_mib_per_second", Assumption(value=100, source="test", as_of="test"))
    monkeypatch.setitem(rc.FIGURES, "node_launch_seconds", Assumption(value=420, source="test", as_of="test"))
    monkeypatch.setitem(rc.FIGURES, "image_pull_seconds", Assumption(value=240, source="test", as_of="test"))


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:prod::llmserving::{typ}::{name}"


def res(typ: str, name: str, inputs: dict, *, deps: tuple = (), parent: Optional[str] = None,
        provider: Optional[str] = None, custom: bool = True, timeouts: Optional[dict] = None) -> dict:
    r: dict[str, Any] = {"urn": urn(typ, name), "type": typ, "name": name, "parent": parent, "custom": custom,
                         "protect": False, "inputs": inputs, "dependencies": sorted(deps)}
    if provider:
        r["provider"] = provider
    if timeouts:
        r["customTimeouts"] = timeouts
    return r


def k8s(typ: str, name: str, spec: dict, *, annotations: Optional[dict] = None, ns: str = NS, **kw) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return res(typ, f"{name}-{typ.rsplit(':', 1)[-1].lower()}", {"metadata": meta, "spec": spec}, **kw)


GPU_TOL = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]


def pod_spec(*, gpus: int = 8, pool: str = "p5", probe_failures: int = 180, cache: str = "86Gi") -> dict:
    return {
        "nodeSelector": {"llmserving.io/pool": pool}, "tolerations": GPU_TOL,
        "initContainers": [{"name": "model-download", "volumeMounts": [{"name": "model-cache", "mountPath": "/models"}]}],
        "containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        "startupProbe": {"periodSeconds": 10, "failureThreshold": probe_failures}}],
        "volumes": [{"name": "model-cache", "emptyDir": {"sizeLimit": cache}},
                    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
    }


def deployment(name: str = "llama-70b", *, replicas: int = 2, surge: Any = 0, unavailable: Any = 1, **kw) -> dict:
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": kw.pop("pod", None) or pod_spec()}}
    return k8s("kubernetes:apps/v1:Deployment", name, spec, **kw)


def node_group(name: str = "p5", *, desired: int = 2, max_size: int = 4, types: tuple = ("p5.48xlarge",),
               gpu: bool = True, **kw) -> dict:
    inputs = {"nodeGroupName": name, "instanceTypes": list(types),
              "scalingConfig": {"minSize": 0, "desiredSize": desired, "maxSize": max_size},
              "labels": {"llmserving.io/pool": name} if gpu else {"llmserving.io/role": "system"}}
    if gpu:
        inputs["taints"] = [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    return res("aws:eks/nodeGroup:NodeGroup", f"{name}-ng", inputs, **kw)


def node_pool(name: str = "g5", *, limit: int = 16, types: tuple = ("g5.2xlarge",), **kw) -> dict:
    spec = {"limits": {"nvidia.com/gpu": limit},
            "template": {"metadata": {"labels": {"llmserving.io/pool": name}},
                         "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                                  "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                                    "values": list(types)}]}}}
    return res("kubernetes:karpenter.sh/v1:NodePool", f"{name}-nodepool", {"metadata": {"name": name}, "spec": spec},
               **kw)


def release(name: str, chart: Optional[str] = None, *, timeout: Optional[int] = None, **kw) -> dict:
    inputs: dict[str, Any] = {"name": name, "chart": chart or name, "namespace": name, "atomic": True}
    if timeout is not None:
        inputs["timeout"] = timeout
    return res("kubernetes:helm.sh/v3:Release", name, inputs, **kw)


def scaled_object(target: str, max_replicas: int, kind: str = "Deployment", **kw) -> dict:
    return k8s("kubernetes:keda.sh/v1alpha1:ScaledObject", target,
               {"scaleTargetRef": {"kind": kind, "name": target}, "maxReplicaCount": max_replicas}, **kw)


def findings(resources: list[dict], check: Optional[str] = None) -> list[R.Finding]:
    return [f for f in R.check(resources) if check is None or f.check == check]


# --- await -----------------------------------------------------------------------------------------------

def test_awaited_deployment_without_timeouts_fails_with_the_budget_it_needs():
    ng = node_group()
    dep = deployment(deps=(ng["urn"],))
    [create, update] = findings([ng, dep], "await-timeout")
    assert create.level == "mandatory" and create.urn == dep["urn"]
    # create: image pull 240 s + 86 GiB at 100 MiB/s (880.64 s) + startupProbe 180 x 10 s; the node group's two
    # nodes hold both replicas, so no new node.
    assert create.message.startswith(
        "pulumi-kubernetes waits 10m for Deployment llmserving/llama-70b to become ready on create")
    assert ("its pods may need 48m41s (image pull 4m + init model-download (<= 86 GiB) 14m41s + startupProbe 30m): "
            "the create fails with a timeout. Set custom_timeouts create>=48m41s") in create.message
    # update: maxSurge 0 / maxUnavailable 1 -> two steps of one pod on the freed node (no pull, no new node).
    assert "its pods may need 1h29m22s" in update.message and "on update" in update.message


def test_matching_custom_timeouts_pass_and_short_ones_fail():
    ng = node_group()
    ok = deployment(deps=(ng["urn"],), timeouts={"create": "50m", "update": "1h30m"})
    assert findings([ng, ok], "await-timeout") == []
    short = deployment(deps=(ng["urn"],), timeouts={"create": "45m", "update": "1h30m"})
    [f] = findings([ng, short], "await-timeout")
    assert "waits 45m for Deployment llmserving/llama-70b to become ready on create" in f.message


def test_skip_await_and_timeout_annotation_are_honoured():
    ng = node_group()
    skipped = deployment(deps=(ng["urn"],), annotations={"pulumi.com/skipAwait": "true"})
    assert findings([ng, skipped], "await-timeout") == []
    annotated = deployment(deps=(ng["urn"],), annotations={"pulumi.com/timeoutSeconds": "6000"})
    assert findings([ng, annotated], "await-timeout") == []


def test_an_unparsable_custom_timeout_is_reported():
    ng = node_group()
    dep = deployment(deps=(ng["urn"],), timeouts={"create": "1d", "update": "2h"})
    [bad] = findings([ng, dep], "custom-timeout-invalid")
    assert "custom timeout create='1d' is not a Go duration" in bad.message


def test_service_in_front_of_slow_pods_needs_timeouts_headless_does_not():
    ng = node_group()
    dep = deployment(deps=(ng["urn"],), timeouts={"create": "50m", "update": "1h30m"})
    svc = k8s("kubernetes:core/v1:Service", "llama-70b", {"selector": {"app": "llama-70b"}, "ports": [{"port": 8000}]})
    [c, u] = findings([ng, dep, svc], "await-timeout")
    assert c.urn == svc["urn"] and "Service llmserving/llama-70b" in c.message
    assert "(waits for the ready endpoints of Deployment llmserving/llama-70b)" in c.message
    headless = copy.deepcopy(svc)
    headless["inputs"]["spec"]["clusterIP"] = "None"
    assert findings([ng, dep, headless], "await-timeout") == []


def test_lws_is_awaited_only_with_wait_for():
    """pulumi-kubernetes awaits custom resources only with pulumi.com/waitFor (metadata/overrides.go)."""
    ng = node_group()
    lws_spec = {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": pod_spec()}}}
    plain = k8s("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "llama-405b", lws_spec, deps=(ng["urn"],))
    assert findings([ng, plain], "await-timeout") == []
    waited = k8s("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "llama-405b", lws_spec, deps=(ng["urn"],),
                 annotations={"pulumi.com/waitFor": "condition=Available"})
    assert [f.urn for f in findings([ng, waited], "await-timeout")] == [waited["urn"]] * 2


def test_helm_release_timeout_against_the_chart():
    sys_ng = node_group("system", gpu=False, types=("m6i.large",))
    ok = release("kube-prometheus-stack", timeout=900, deps=(sys_ng["urn"],))
    assert findings([sys_ng, ok], "helm-timeout") == []
    default = release("kube-prometheus-stack", deps=(sys_ng["urn"],))
    [f] = findings([sys_ng, default], "helm-timeout")
    assert f.level == "mandatory"
    assert f.message.startswith("Helm release kube-prometheus-stack/kube-prometheus-stack waits for its resources with "
                                "timeout 5m")
    assert "a first install of chart kube-prometheus-stack needs 10m" in f.message
    assert "the install fails; atomic: Helm uninstalls it again" in f.message


# --- order ------------------------------------------------------------------------------------------------

TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/llama/0123456789abcdef"


def ecs_world(*, service_waits_for_rule: bool, wait_for_capacity: Optional[str]) -> list[dict]:
    rule = res("aws:lb/listenerRule:ListenerRule", "edge-llama",
               {"actions": [{"type": "forward", "targetGroupArn": TG_ARN}], "priority": 2})
    asg_inputs: dict[str, Any] = {"name": "prod-p5", "maxSize": 4, "desiredCapacity": 2,
                                  "mixedInstancesPolicy": {"launchTemplate": {"overrides": [{"instanceType": "p5.48xlarge"}]}}}
    if wait_for_capacity is not None:
        asg_inputs["waitForCapacityTimeout"] = wait_for_capacity
    asg = res("aws:autoscaling/group:Group", "prod-p5", asg_inputs)
    cp = res("aws:ecs/capacityProvider:CapacityProvider", "prod-p5", {"name": "prod-p5"}, deps=(asg["urn"],))
    svc = res("aws:ecs/service:Service", "llama-service",
              {"name": "llama", "loadBalancers": [{"targetGroupArn": TG_ARN, "containerPort": 8000}],
               "capacityProviderStrategies": [{"capacityProvider": "prod-p5", "weight": 1}]},
              deps=(rule["urn"],) if service_waits_for_rule else ())
    return [rule, asg, cp, svc]


def test_ecs_service_must_wait_for_the_listener_rule():
    assert findings(ecs_world(service_waits_for_rule=True, wait_for_capacity="0"), "ecs-listener-order") == []
    [f] = findings(ecs_world(service_waits_for_rule=False, wait_for_capacity="0"), "ecs-listener-order")
    assert f.level == "mandatory" and f.urn == urn("aws:ecs/service:Service", "llama-service")
    assert ("ECS service llama-service registers tasks in targetgroup/llama/0123456789abcdef but does not wait for "
            "edge-llama, which attaches it to the load balancer") in f.message
    assert "does not have an associated load balancer" in f.message


def test_ecs_service_waiting_through_a_component_parent_counts():
    """A parent component's dependencies delay its children (the child awaits the parent's URN)."""
    world = ecs_world(service_waits_for_rule=False, wait_for_capacity="0")
    comp = res("llmserving:vllm_ecs_service:VllmEcsService", "llama", {}, custom=False, deps=(world[0]["urn"],))
    world[-1]["parent"] = comp["urn"]
    assert findings([*world, comp], "ecs-listener-order") == []


def test_auto_scaling_group_behind_a_capacity_provider_must_not_wait_for_capacity():
    assert findings(ecs_world(service_waits_for_rule=True, wait_for_capacity="0"), "asg-capacity-wait") == []
    for value, shown in ((None, "unset (default 10m)"), ("10m", "'10m'")):
        [f] = findings(ecs_world(service_waits_for_rule=True, wait_for_capacity=value), "asg-capacity-wait")
        assert f.urn == urn("aws:autoscaling/group:Group", "prod-p5")
        assert (f"Auto Scaling group prod-p5 backs ECS capacity provider prod-p5 but waitForCapacityTimeout is {shown}: "
                f"`pulumi up` blocks until 2 GPU instances are InService") in f.message


def test_gpu_deployment_must_wait_for_its_node_group():
    ng = node_group()
    waits = deployment(deps=(ng["urn"],), annotations={"pulumi.com/skipAwait": "true"})
    assert findings([ng, waits], "node-source-order") == []
    blind = deployment(timeouts={"create": "2h", "update": "3h"})
    [f] = findings([ng, blind], "node-source-order")
    assert f.level == "mandatory"
    assert f.message.startswith("Deployment llmserving/llama-70b does not wait for a node source its pods fit "
                                "(node group p5 (maxSize 4 x p5.48xlarge, 8 GPUs each))")
    # Not awaited: the pods just wait for the node; advisory.
    [a] = findings([ng, deployment(annotations={"pulumi.com/skipAwait": "true"})], "node-source-order")
    assert a.level == "advisory"


def test_waiting_through_the_provider_and_a_karpenter_pool_counts():
    cluster = res("eks:index:Cluster", "cluster", {"skipDefaultNodeGroup": True}, custom=False)
    ng = node_group("system", gpu=False, types=("m6i.large",), deps=(cluster["urn"],))
    provider = res("pulumi:providers:kubernetes", "k8s", {}, deps=(ng["urn"],))
    pool = node_pool("g5", provider=provider["urn"])
    dep = deployment("llama-8b", replicas=1, pod=pod_spec(gpus=1, pool="g5", probe_failures=30, cache="1Gi"),
                     provider=provider["urn"])
    [f] = findings([cluster, ng, provider, pool, dep], "node-source-order")
    assert "Karpenter NodePool g5 (limit 16 GPUs)" in f.message
    dep["dependencies"] = [pool["urn"]]
    assert findings([cluster, ng, provider, pool, dep], "node-source-order") == []


def test_no_matching_node_source_is_reported():
    ng = node_group("p5")
    dep = deployment(pod=pod_spec(pool="p4d"), deps=(ng["urn"],))
    [f] = findings([ng, dep], "no-node-source")
    assert 'nodeSelector {"llmserving.io/pool": "p4d"}' in f.message


def test_helm_release_with_deployments_must_wait_for_an_untainted_node_source():
    sys_ng = node_group("system", gpu=False, types=("m6i.large",))
    gpu_ng = node_group("p5")
    keda_ok = release("keda", timeout=900, deps=(sys_ng["urn"],))
    assert findings([sys_ng, gpu_ng, keda_ok], "node-source-order") == []
    keda_gpu_only = release("keda", timeout=900, deps=(gpu_ng["urn"],))
    [f] = findings([sys_ng, gpu_ng, keda_gpu_only], "node-source-order")
    assert ("Helm release keda/keda installs chart keda, whose Deployments helm waits for, but it does not wait for a "
            "node group or NodePool without taints (node sources it waits for: node group p5") in f.message
    # DaemonSet-only charts are ready with no node (helm ready.go); Karpenter needs a managed node group.
    assert findings([sys_ng, release("nvidia-device-plugin")], "node-source-order") == []
    pool = node_pool("cpu", limit=0)
    pool["inputs"]["spec"]["template"]["spec"]["taints"] = []
    karpenter = release("karpenter", "oci://public.ecr.aws/karpenter/karpenter", deps=(pool["urn"],))
    [k] = findings([pool, karpenter], "node-source-order")
    assert "a managed node group (its controller cannot run on nodes it launches)" in k.message


def test_custom_resource_must_wait_for_the_release_installing_its_crd():
    keda = release("keda", timeout=900)
    so_ok = scaled_object("llama-70b", 4, deps=(keda["urn"],))
    assert findings([keda, so_ok], "crd-order") == []
    so = scaled_object("llama-70b", 4)
    [f] = findings([keda, so], "crd-order")
    assert f.message == ("ScaledObject llmserving/llama-70b does not wait for Helm release keda/keda, which installs "
                         "the CRD of keda.sh: on a first deploy the create can run first and fails with \"no matches "
                         "for kind ScaledObject in version keda.sh/v1alpha1\"")
    [u] = findings([so], "crd-installer-unknown")
    assert u.level == "advisory" and "(chart keda)" in u.message


def test_a_crd_resource_also_installs_its_group():
    crd = res("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition", "widgets",
              {"spec": {"group": "example.com"}})
    cr = res("kubernetes:example.com/v1:Widget", "w", {"metadata": {"name": "w"}}, deps=(crd["urn"],))
    assert [f for f in findings([crd, cr]) if f.check.startswith("crd")] == []


# --- capacity ------------------------------------------------------------------------------------------------

def test_autoscaler_maximum_must_fit_the_pool():
    ng = node_group(desired=4, max_size=4)
    dep = deployment(deps=(ng["urn"],), replicas=4)
    assert findings([ng, dep, scaled_object("llama-70b", 4)], "autoscaler-capacity") == []
    so = scaled_object("llama-70b", 6)
    [f] = findings([ng, dep, so], "autoscaler-capacity")
    assert f.urn == so["urn"] and f.level == "mandatory"
    assert f.message == ("ScaledObject llmserving/llama-70b scales Deployment llmserving/llama-70b to 6 replicas "
                         "(8 GPUs each, 48 GPUs); its pool node group p5 (maxSize 4 x p5.48xlarge, 8 GPUs each) "
                         "holds 4 such replicas at its maximum: replicas beyond 4 stay Pending (FailedScheduling) "
                         "under load")


def test_karpenter_limit_and_lws_groups():
    pool = node_pool("p5", limit=32, types=("p5.48xlarge",))
    lws_spec = {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": pod_spec()}}}
    lws = k8s("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "llama-405b", lws_spec, deps=(pool["urn"],))
    assert findings([pool, lws, scaled_object("llama-405b", 2, "LeaderWorkerSet")], "autoscaler-capacity") == []
    [f] = findings([pool, lws, scaled_object("llama-405b", 3, "LeaderWorkerSet")], "autoscaler-capacity")
    assert "to 3 replicas (2 pods x 8 GPUs each, 48 GPUs)" in f.message and "holds 2 such replicas" in f.message


def test_ecs_autoscaling_maximum_must_fit_the_group():
    world = ecs_world(service_waits_for_rule=True, wait_for_capacity="0")
    td = res("aws:ecs/taskDefinition:TaskDefinition", "llama-td",
             {"containerDefinitions": '[{"name": "vllm", "resourceRequirements": [{"type": "GPU", "value": "8"}]}]'})
    svc = world[-1]
    svc["dependencies"] = sorted([*svc["dependencies"], td["urn"]])
    svc["inputs"]["cluster"] = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
    target = res("aws:appautoscaling/target:Target", "llama-target",
                 {"resourceId": "service/prod/llama", "scalableDimension": "ecs:service:DesiredCount", "maxCapacity": 4})
    assert findings([*world, td, target], "autoscaler-capacity") == []
    target["inputs"]["maxCapacity"] = 5
    [f] = findings([*world, td, target], "autoscaler-capacity")
    assert "scales up to 5 tasks of 8 GPUs" in f.message and "place 4 such tasks at most" in f.message


def test_rollout_surge_needs_headroom():
    ng = node_group(desired=2, max_size=4)
    safe = deployment(deps=(ng["urn"],), surge=0, unavailable=1)
    assert findings([ng, safe, scaled_object("llama-70b", 4)], "rollout-headroom") == []
    # maxSurge 1 / maxUnavailable 0 with two replicas on a static two-node group: stuck at the current size.
    surge = deployment(deps=(ng["urn"],), surge=1, unavailable=0)
    [f] = findings([ng, surge, scaled_object("llama-70b", 2)], "rollout-headroom")
    assert f.message.startswith("a rolling update of Deployment llmserving/llama-70b at its current size (2 replicas, "
                                "8 GPUs each) adds 1 surge replica(s)")
    # With a node autoscaler the group can grow to 4: room at 2 replicas, none at the autoscaler maximum of 4.
    ca = release("cluster-autoscaler")
    assert findings([ng, ca, surge, scaled_object("llama-70b", 3)], "rollout-headroom") == []
    [g] = findings([ng, ca, surge, scaled_object("llama-70b", 4)], "rollout-headroom")
    assert "at its autoscaler maximum (4 replicas" in g.message and "holds 4 there" in g.message


def test_pool_shared_by_two_models_is_advisory():
    pool = node_pool("g5", limit=16)
    a = deployment("a", replicas=1, surge=1, unavailable=0, pod=pod_spec(gpus=1, pool="g5"), deps=(pool["urn"],))
    b = deployment("b", replicas=1, surge=1, unavailable=0, pod=pod_spec(gpus=1, pool="g5"), deps=(pool["urn"],))
    fs = findings([pool, a, b, scaled_object("a", 8), scaled_object("b", 8)])
    assert {(f.check, f.level) for f in fs if f.check.startswith(("rollout", "pool", "autoscaler"))} == {
        ("rollout-headroom-shared", "advisory")}
    fs = findings([pool, a, b, scaled_object("a", 10), scaled_object("b", 8)], "pool-shared-capacity")
    assert fs[0].level == "advisory" and "need 18 GPUs" in fs[0].message


# --- names -----------------------------------------------------------------------------------------------

def test_lws_headless_service_name_collision():
    lws_spec = {"replicas": 2, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": pod_spec()}}}
    lws = k8s("kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet", "llama-405b", lws_spec)
    other = k8s("kubernetes:core/v1:Service", "llama-405b-api", {"selector": {"app": "x"}})
    assert findings([lws, other], "controller-name-collision") == []
    taken = k8s("kubernetes:core/v1:Service", "llama-405b", {"selector": {"app": "x"}})
    [f] = findings([lws, taken], "controller-name-collision")
    assert f.urn == taken["urn"] and f.level == "mandatory"
    assert ("LeaderWorkerSet llmserving/llama-405b makes the LWS controller create the headless Service (pods find the "
            "leader through it: LWS_LEADER_ADDRESS) llmserving/llama-405b, and the program creates Service "
            "llmserving/llama-405b with that name") in f.message
    # Another namespace is no collision; UniquePerReplica makes one Service per leader pod.
    assert findings([lws, k8s("kubernetes:core/v1:Service", "llama-405b", {}, ns="other")],
                    "controller-name-collision") == []
    unique = copy.deepcopy(lws)
    unique["inputs"]["spec"]["networkConfig"] = {"subdomainPolicy": "UniquePerReplica"}
    assert findings([unique, taken], "controller-name-collision") == []
    [g] = findings([unique, k8s("kubernetes:core/v1:Service", "llama-405b-1", {})], "controller-name-collision")
    assert "headless Service (pods find the leader through it: LWS_LEADER_ADDRESS) llmserving/llama-405b-1" in g.message


def test_keda_hpa_name_collision():
    so = scaled_object("llama-70b", 4)
    hpa = k8s("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "keda-hpa-llama-70b", {})
    [f] = findings([so, hpa], "controller-name-collision")
    assert "makes KEDA create HorizontalPodAutoscaler llmserving/keda-hpa-llama-70b" in f.message
    so["inputs"]["spec"]["advanced"] = {"horizontalPodAutoscalerConfig": {"name": "llama-hpa"}}
    assert findings([so, hpa], "controller-name-collision") == []


# --- the engine's semantics, the recording, the helpers --------------------------------------------------

def test_sdk_expands_a_component_dependency_to_its_children_and_children_wait_for_their_parent():
    """pulumi 3.272 (runtime/rpc.py _add_dependency): depends_on a local component records its custom
    descendants; a child of a component with depends_on waits through the parent chain (WaitGraph)."""

    class Comp(pulumi.ComponentResource):
        def __init__(self, name, opts=None):
            super().__init__("test:index:Comp", name, {}, opts)
            self.child = pulumi.CustomResource("test:index:Thing", f"{name}-child", {}, pulumi.ResourceOptions(parent=self))
            self.register_outputs({})

    def program():
        nodes = Comp("nodes")
        late = Comp("late", pulumi.ResourceOptions(depends_on=[nodes]))
        pulumi.CustomResource("test:index:Thing", "direct", {}, pulumi.ResourceOptions(depends_on=[nodes]))
        pulumi.CustomResource("test:index:Thing", "sibling", {}, pulumi.ResourceOptions(parent=late))

    run = run_callable(program)
    entries = {r.name: resource_entry(r) for r in run.registrations}
    child = entries["nodes-child"]["urn"]
    assert entries["direct"]["dependencies"] == [child]
    assert entries["late"]["dependencies"] == [child]
    assert entries["late-child"]["dependencies"] == []  # the SDK records nothing on the child itself...
    graph = R.WaitGraph(list(entries.values()))
    target = frozenset({child})
    assert graph.reached(entries["late-child"]["urn"], target) == target  # ...it waits through its parent
    assert graph.reached(entries["sibling"]["urn"], frozenset({entries["late-child"]["urn"]})) == frozenset()


def test_custom_timeouts_are_recorded_and_reach_the_document():
    def program():
        pulumi.CustomResource("test:index:Thing", "slow", {},
                              pulumi.ResourceOptions(custom_timeouts=pulumi.CustomTimeouts(create="45m", update="2h")))
        pulumi.CustomResource("test:index:Thing", "plain", {})

    run = run_callable(program)
    slow, plain = sorted(run.registrations, key=lambda r: r.name, reverse=True)
    assert slow.custom_timeouts == {"create": "45m", "update": "2h"} and plain.custom_timeouts == {}
    assert resource_entry(slow)["customTimeouts"] == {"create": "45m", "update": "2h"}
    assert "customTimeouts" not in resource_entry(plain)


@pytest.mark.parametrize("text,seconds", [("45m", 2700), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("0", 0),
                                          ("1d", None), ("10", None), ("", None)])
def test_go_durations(text, seconds):
    assert R.go_duration_seconds(text) == seconds


def test_checks_are_linear_in_resources():
    """One memoised pass per target set: 4x the resources cost about 4x the work, not 16x. Work is counted,
    not timed (every Python and builtin call the checks make, through sys.setprofile), so the ratio is the
    same on a loaded machine; absolute times are in `make bench`."""
    import sys

    def stack(n: int) -> list[dict]:
        ng = node_group()
        many = [ng]
        for i in range(n):
            many.append(deployment(f"m{i}", replicas=1, deps=(ng["urn"],), timeouts={"create": "2h", "update": "4h"}))
            many.append(k8s("kubernetes:core/v1:ConfigMap", f"c{i}", {}, deps=(many[-1]["urn"],)))
        return many

    def calls(resources: list[dict]) -> int:
        count = 0

        def profile(frame, event, arg):
            nonlocal count
            count += 1
        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            findings = R.check(resources)
        finally:
            sys.setprofile(previous)
        assert not [f for f in findings if f.level == "mandatory"]
        return count

    small, large = calls(stack(100)), calls(stack(400))
    assert large / small < 6, (small, large)  # linear: about 3.6; one pairwise loop over resources: about 8


def test_pods_of_a_service_account_wait_for_its_pod_identity_association():
    ng = node_group()
    assoc = res("aws:eks/podIdentityAssociation:PodIdentityAssociation", "adapter-reader",
                {"namespace": NS, "serviceAccount": "vllm-lora", "clusterName": "prod"})
    pod = pod_spec()
    pod["serviceAccountName"] = "vllm-lora"
    ok = deployment(pod=copy.deepcopy(pod), deps=(ng["urn"], assoc["urn"]), timeouts={"create": "2h", "update": "4h"})
    assert findings([ng, assoc, ok], "pod-identity-order") == []
    early = deployment(pod=copy.deepcopy(pod), deps=(ng["urn"],), timeouts={"create": "2h", "update": "4h"})
    [f] = findings([ng, assoc, early], "pod-identity-order")
    assert f.level == "mandatory" and f.message.startswith(
        "Deployment llmserving/llama-70b runs pods as service account llmserving/vllm-lora but does not wait for its "
        "EKS Pod Identity association (adapter-reader): pods admitted before it exists get no AWS credentials")
    # A chart's controller service account counts too (values.serviceAccount.name in the release's namespace).
    sys_ng = node_group("system", gpu=False, types=("m6i.large",))
    ctl = res("aws:eks/podIdentityAssociation:PodIdentityAssociation", "karpenter",
              {"namespace": "kube-system", "serviceAccount": "karpenter"})
    rel = release("karpenter", "oci://public.ecr.aws/karpenter/karpenter", deps=(sys_ng["urn"],))
    rel["inputs"].update(namespace="kube-system", values={"serviceAccount": {"name": "karpenter"}})
    assert [f.urn for f in findings([sys_ng, ctl, rel], "pod-identity-order")] == [rel["urn"]]
    rel["dependencies"].append(ctl["urn"])
    assert findings([sys_ng, ctl, rel], "pod-identity-order") == []


def test_namespaced_objects_wait_for_the_namespace_the_stack_creates():
    ns = res("kubernetes:core/v1:Namespace", NS, {"metadata": {"name": NS}})
    tgb = k8s("kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding", "llama", {}, deps=(ns["urn"],))
    assert findings([ns, tgb], "namespace-order") == []
    early = k8s("kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding", "llama", {})
    [f] = findings([ns, early], "namespace-order")
    assert f.message == ("TargetGroupBinding llmserving/llama goes into namespace llmserving, which this stack creates "
                         "(llmserving), but does not wait for it: on a first deploy the create can run first and fails "
                         "with 'namespaces \"llmserving\" not found'")
    # A release that creates its own namespace, or an object in a namespace the stack does not create, is fine.
    rel = release("keda", timeout=900)
    rel["inputs"].update(namespace=NS, createNamespace=True)
    other = k8s("kubernetes:core/v1:ConfigMap", "x", {}, ns="kube-system")
    assert findings([ns, rel, other], "namespace-order") == []
