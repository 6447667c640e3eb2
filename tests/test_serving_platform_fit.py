"""Whole-stack fit between the EKS platform and the serving layer.

Runs the real program (dev, prod and the 405B multi-node preset) and checks,
from the recorded resources only, that every vLLM pod can land on a GPU pool
the platform creates (node selector vs pool labels, tolerations vs pool
taints, GPU and EFA requests vs the pool's instance types and interfaces), that
multi-node pools get the EFA device plugin, and that every
TargetGroupBinding points at an existing Service port.
"""

from __future__ import annotations

from typing import Optional

import pytest

from infra import eks_catalog as ec
from tests import serving_presets as presets
from tests.harness import inputs, of_type, run_stack, settings_for, shipped_run

NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
RELEASE = "kubernetes:helm.sh/v3:Release"
TGB = "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding"
SERVICE = "kubernetes:core/v1:Service"
# EKS API taint effects -> Kubernetes taint effects.
MNG_EFFECT = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}

CONTROLLER_LABELS = {"leaderworkerset.sigs.k8s.io/worker-index"}
CASES = {"dev": ("dev", {}), "prod": ("prod", {}), "405b": presets.LLAMA_405B}


@pytest.fixture(scope="module")
def runs():
    out = {"dev": shipped_run("dev"), "prod": shipped_run("prod")}
    stack, changes = presets.LLAMA_405B
    out["405b"] = run_stack(stack, changes)
    return out


# --- what the platform offers, read from the recorded resources ---------------------------------

def gpu_count(settings, instance_type: str) -> int:
    """GPUs of an instance type (0 for the CPU system nodes, which the GPU catalog does not list)."""
    it = settings.catalog.instance_types.get(instance_type)
    return it.gpu_count if it is not None else 0


def pools(run, settings) -> list[dict]:
    """Every GPU node pool: labels, taints, instance types (GPUs each), EFA interfaces per node."""
    out = []
    efa_by_lt = {inputs(r)["name"]: sum(1 for n in inputs(r).get("networkInterfaces", []) if n.get("interfaceType") == "efa")
                 for r in of_type(run, LAUNCH_TEMPLATE)}
    for r in of_type(run, NODEGROUP):
        ng = inputs(r)
        taints = [{"key": t["key"], "value": t.get("value", ""), "effect": MNG_EFFECT[t["effect"]]}
                  for t in ng.get("taints", [])]
        out.append({"name": ng["nodeGroupName"], "kind": "NodeGroup", "labels": ng.get("labels", {}), "taints": taints,
                    "gpus": [gpu_count(settings, t) for t in ng["instanceTypes"]],
                    "any_type_fits": False, "efa": efa_by_lt.get(ng["nodeGroupName"], 0)})
    for r in of_type(run, NODEPOOL):
        spec = inputs(r)["spec"]["template"]
        types = next(q["values"] for q in spec["spec"]["requirements"] if q["key"] == "node.kubernetes.io/instance-type")
        out.append({"name": inputs(r)["metadata"]["name"], "kind": "NodePool", "labels": spec["metadata"]["labels"],
                    "taints": [{"value": "", **t} for t in spec["spec"].get("taints", [])],
                    # Karpenter launches only an instance type the pending pod fits.
                    "gpus": [gpu_count(settings, t) for t in types], "any_type_fits": True, "efa": 0})
    return out


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def vllm_pods(run) -> list[tuple[str, dict]]:
    """(where, pod template) of every vLLM pod: Deployment templates and LeaderWorkerSet leader/worker templates."""
    out = []
    for r in of_type(run, "kubernetes:apps/v1:Deployment"):
        t = inputs(r)["spec"]["template"]
        if t["metadata"]["labels"].get("app.kubernetes.io/name") == "vllm":
            out.append((r.name, t))
    for r in of_type(run, "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"):
        lwt = inputs(r)["spec"]["leaderWorkerTemplate"]
        out += [(f"{r.name} leader", lwt["leaderTemplate"]), (f"{r.name} worker", lwt["workerTemplate"])]
    return out


def request(pod: dict, resource: str) -> int:
    return sum(int(c["resources"]["limits"].get(resource, 0)) for c in pod["spec"]["containers"])


def fitting_pool(pod: dict, offered: list[dict]) -> tuple[Optional[dict], list[str]]:
    spec = pod["spec"]
    why = []
    for p in offered:
        missing = {k: v for k, v in spec.get("nodeSelector", {}).items() if p["labels"].get(k) != v}
        untolerated = [t for t in p["taints"] if t["effect"] in ("NoSchedule", "NoExecute")
                       and not tolerates(spec.get("tolerations", []), t)]
        gpus = request(pod, "nvidia.com/gpu")
        fits = [gpus <= g for g in p["gpus"]]
        gpu_ok = any(fits) if p["any_type_fits"] else all(fits)
        efa_ok = request(pod, "vpc.amazonaws.com/efa") <= p["efa"]
        if not missing and not untolerated and gpu_ok and efa_ok:
            return p, []
        why.append(f"{p['kind']} {p['name']}: labels missing {missing}, taints not tolerated {untolerated}, "
                   f"GPUs {gpus} vs {p['gpus']}, EFA {request(pod, 'vpc.amazonaws.com/efa')} vs {p['efa']}")
    return None, why


# --- every vLLM pod lands on a pool that can run it ------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_every_vllm_pod_fits_a_gpu_pool_of_the_platform(case, runs):
    stack, changes = CASES[case]
    run, settings = runs[case], settings_for(stack, changes)
    offered = pools(run, settings)
    pods = vllm_pods(run)
    assert offered and len(pods) >= len(settings.config.models)
    for where, pod in pods:
        pool, why = fitting_pool(pod, offered)
        assert pool is not None, f"{case}: {where} fits no GPU pool:\n" + "\n".join(why)
        # and the pool is the one the capacity plan put the model on
        assert pool["labels"]["llmserving.io/pool"] == pod["metadata"]["labels"]["llmserving.io/pool"]


def test_a_pod_selecting_a_missing_pool_is_caught(runs):
    """The check above can fail: a pod whose selector names no pool, or lacks the GPU toleration, fits nowhere."""
    run = runs["dev"]
    offered = pools(run, settings_for("dev"))
    _, pod = vllm_pods(run)[0]
    wrong_pool = {**pod, "spec": {**pod["spec"], "nodeSelector": {"llmserving.io/pool": "p5-ondemand"}}}
    assert fitting_pool(wrong_pool, offered)[0] is None
    no_toleration = {**pod, "spec": {**pod["spec"], "tolerations": []}}
    assert fitting_pool(no_toleration, offered)[0] is None


def test_405b_pods_request_efa_on_an_efa_node_group(runs):
    run = runs["405b"]
    pods = vllm_pods(run)
    assert len(pods) == 2  # leader and worker templates
    offered = pools(run, settings_for(*presets.LLAMA_405B))
    for where, pod in pods:
        assert request(pod, "vpc.amazonaws.com/efa") == 32, where
        pool, _ = fitting_pool(pod, offered)
        assert pool["kind"] == "NodeGroup" and pool["efa"] == 32


# --- EFA device plugin ----------------------------------------------------------------------------------

def test_405b_stack_installs_the_efa_device_plugin_on_efa_gpu_nodes_only(runs):
    releases = {inputs(r)["name"]: inputs(r) for r in of_type(runs["405b"], RELEASE)}
    efa = releases["aws-efa-k8s-device-plugin"]
    pin = ec.HELM_CHARTS["aws-efa-k8s-device-plugin"]
    assert (efa["chart"], efa["version"]) == ("aws-efa-k8s-device-plugin", pin.version)
    assert efa["repositoryOpts"]["repo"] == "https://aws.github.io/eks-charts"
    assert efa["namespace"] == "kube-system"
    values = efa["values"]
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in values["tolerations"]
    assert values["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # The chart's node-affinity term, keyed on the pool label: only the EFA pool's nodes.
    assert values["supportedInstanceLabels"] == {"keys": ["llmserving.io/pool"], "values": ["p5-ondemand"]}


@pytest.mark.parametrize("case", ["dev", "prod"])
def test_stacks_without_multi_node_models_have_no_efa_device_plugin(case, runs):
    assert "aws-efa-k8s-device-plugin" not in {inputs(r)["name"] for r in of_type(runs[case], RELEASE)}


# --- the load balancer's bindings point at real Service ports ---------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_every_target_group_binding_names_an_existing_service_port(case, runs):
    run = runs[case]
    services = {(inputs(r)["metadata"]["namespace"], inputs(r)["metadata"]["name"]): inputs(r)["spec"]
                for r in of_type(run, SERVICE)}
    pod_labels = [t["metadata"]["labels"] for _, t in vllm_pods(run)]
    pod_labels += [inputs(r)["spec"]["template"]["metadata"]["labels"]
                   for r in of_type(run, "kubernetes:apps/v1:Deployment")]
    bindings = of_type(run, TGB)
    assert bindings
    for r in bindings:
        tgb = inputs(r)
        ref, ns = tgb["spec"]["serviceRef"], tgb["metadata"]["namespace"]
        svc = services.get((ns, ref["name"]))
        assert svc is not None, f"{r.name}: no Service {ns}/{ref['name']} (have {sorted(services)})"
        assert any(p["port"] == ref["port"] or p.get("name") == ref["port"] for p in svc["ports"]), (r.name, svc["ports"])
        # and the Service selects pods that exist (labels the LeaderWorkerSet controller adds are not in templates)
        selector = {k: v for k, v in svc["selector"].items() if k not in CONTROLLER_LABELS}
        assert any(set(selector.items()) <= set(labels.items()) for labels in pod_labels), (r.name, svc["selector"])
