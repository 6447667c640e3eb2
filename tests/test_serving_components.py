"""Serving components: conventions, the router's ingress, KEDA-owned replicas, the
model download, DCGM scraping and GPU panels, bad args rejected before anything exists."""

from __future__ import annotations

from tests.test_serving import MIRROR_BUCKET, test_mirror  # noqa: F401

import dataclasses
import fnmatch
import json
import sys
import types

import pytest

from components.errors import ArgsError
from components.model_router import ModelRouter, ModelRouterArgs
from components.nvidia_runtime import DCGM_POD_LABELS, HelmChart, NvidiaRuntime, NvidiaRuntimeArgs
from components.observability import DcgmScrape, Observability, ObservabilityArgs
from components.serving_foundation import ServingFoundation, ServingFoundationArgs
from components.vllm_workload import VllmWorkload, render
from components.network import subnet_cidrs
from infra import capacity, serving
from tests import serving_presets as presets
from tests.harness import inputs, of_type, one, run_component, settings_for, shipped_run, stack_value
from tests.k8s_validation import validate_object

SERVING_COMPONENTS = {
    "llmserving:serving_foundation:ServingFoundation", "llmserving:observability:Observability",
    "llmserving:model_router:ModelRouter", "llmserving:vllm_workload:VllmWorkload",
}
LB_CIDRS = ("10.40.224.0/20", "10.40.240.0/20")


@pytest.fixture(scope="module")
def dev():
    return shipped_run("dev")


@pytest.fixture(scope="module")
def prod():
    return shipped_run("prod")


def k8s_body(reg) -> dict:
    body = inputs(reg)
    group_version, kind = reg.type.split(":")[1], reg.type.split(":")[2]
    if "apiVersion" not in body:
        group, version = group_version.split("/")
        body = {"apiVersion": version if group == "core" else f"{group}/{version}", "kind": kind, **body}
    return body


# --- conventions: no raw serving resources at stack level --------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_resource_is_a_child_of_a_component(stack, dev, prod):
    run = {"dev": dev, "prod": prod}[stack]
    components = {r.urn: r.type for r in run.registrations if not r.custom}
    stray = [(r.type, r.name) for r in run.registrations
             if r.custom and not r.type.startswith("pulumi:providers:") and r.parent not in components]
    assert stray == []
    serving_children = {r.name for r in run.registrations if components.get(r.parent) in SERVING_COMPONENTS}
    assert {"llmserving", "keda", "kube-prometheus-stack", "vllm-dashboard", "vllm-alerts", "llm-router-deployment",
            "llm-router-networkpolicy"} <= serving_children


def test_prod_foundation_holds_secrets_lora_access_and_controllers(prod):
    (foundation,) = [r for r in prod.registrations if r.type == "llmserving:serving_foundation:ServingFoundation"]
    children = {(r.type, r.name) for r in prod.registrations if r.parent == foundation.urn}
    assert children == {
        ("kubernetes:core/v1:Namespace", "llmserving"), ("kubernetes:helm.sh/v3:Release", "keda"),
        ("kubernetes:core/v1:Secret", "vllm-api-key"), ("kubernetes:core/v1:Secret", "hf-token"),
        ("kubernetes:core/v1:ServiceAccount", "vllm-lora"), ("kubernetes:core/v1:ConfigMap", "tenant-adapters"),
        ("aws:eks/podIdentityAssociation:PodIdentityAssociation", "llmserving-prod-adapter-reader")}
    ns = one(prod, "kubernetes:core/v1:Namespace", "llmserving").urn
    for name in ("vllm-api-key", "hf-token"):
        secret = one(prod, "kubernetes:core/v1:Secret", name)
        assert ns in secret.dependencies and inputs(secret)["stringData"] == "[secret]"


# --- router: only the load balancer's subnets and Prometheus -----------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_router_admits_only_load_balancer_subnets_and_prometheus(stack, dev, prod):
    run = {"dev": dev, "prod": prod}[stack]
    s = settings_for(stack)
    public = subnet_cidrs(s.config.network.vpc_cidr, len(run.outputs["zones"]))[1]
    np = inputs(one(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "llm-router-networkpolicy"))["spec"]
    peers = np["ingress"][0]["from"]
    assert [p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p] == public
    assert s.config.network.vpc_cidr not in json.dumps(np)
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in peers
    assert len(peers) == len(public) + 1
    assert np["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def _router_args(**kw) -> ModelRouterArgs:
    base = serving.router_args(settings_for("dev"), LB_CIDRS)
    return dataclasses.replace(base, **kw)


def test_router_objects_validate():
    from components.model_router import render as render_router
    objs = render_router("llm-router", _router_args())
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                                         "PodDisruptionBudget", "NetworkPolicy"]
    for o in objs:
        validate_object(o)


def test_router_without_load_balancer_subnets_or_with_wide_cidrs_is_rejected_before_anything_exists():
    errors = []

    def program():
        for bad in ((), ("0.0.0.0/0",), ("10.40.0.1/20",)):
            try:
                ModelRouter("llm-router", _router_args(load_balancer_cidrs=bad))
            except ArgsError as e:
                errors.append(str(e))
    run = run_component(program)
    assert run.registrations == []
    assert "load_balancer_cidrs: got (); list the load balancer's subnet CIDRs" in errors[0]
    assert "load_balancer_cidrs: got '0.0.0.0/0'; wider than /16 admits far more" in errors[1]
    assert "load_balancer_cidrs: got '10.40.0.1/20'; must be a network CIDR" in errors[2]


def test_router_bad_image_and_empty_labels_are_listed_together():
    with pytest.raises(ArgsError) as e:
        ModelRouter("x", _router_args(image="lmcache/lmstack-router:latest", labels={}, replicas=0))
    msg = str(e.value)
    assert "image: got 'lmcache/lmstack-router:latest'; pin a tag" in msg
    assert "labels: empty;" in msg and "replicas: got 0;" in msg


# --- KEDA owns replicas -------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_keda_scaled_deployments_ignore_replica_changes(stack, dev, prod):
    run = {"dev": dev, "prod": prod}[stack]
    scaled = {inputs(r)["spec"]["scaleTargetRef"]["name"] for r in of_type(run, "kubernetes:keda.sh/v1alpha1:ScaledObject")}
    deployments = {inputs(r)["metadata"]["name"]: r for r in of_type(run, "kubernetes:apps/v1:Deployment")}
    assert scaled and scaled <= set(deployments)
    for name, r in deployments.items():
        assert r.ignore_changes == (["spec.replicas"] if name in scaled else []), name
    assert deployments["llm-router"].ignore_changes == []  # not autoscaled: Pulumi keeps owning it


def test_keda_scaled_leaderworkerset_ignores_replica_changes():
    s = settings_for(*presets.LLAMA_405B)
    args = serving.workload_args(s, capacity.plan(s), s.config.models[0], _scheduling(s), mirror_bucket=MIRROR_BUCKET, hf_token_secret=None,
                                 api_key_secret=None, load_balancer_cidrs=LB_CIDRS)
    run = run_component(lambda: VllmWorkload("llama-3-1-405b", args))
    lws = one(run, "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")
    assert lws.ignore_changes == ["spec.replicas"]
    fixed = run_component(lambda: VllmWorkload("llama-3-1-405b", dataclasses.replace(args, autoscaling=None)))
    assert one(fixed, "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet").ignore_changes == []


def _scheduling(settings):
    tol = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    return {p.name: {"node_selector": {"llmserving.io/pool": p.name}, "tolerations": tol, "efa": True}
            for p in settings.config.gpu_pools}


# --- model download: one copy of the weights -------------------------------------------------------------

GB = 10 ** 9
# mistralai/Mistral-7B-Instruct-v0.3 file list (sizes rounded): the native consolidated checkpoint AND HF shards.
MISTRAL_FILES = {
    "consolidated.safetensors": 14.50 * GB, "model-00001-of-00003.safetensors": 4.95 * GB,
    "model-00002-of-00003.safetensors": 5.00 * GB, "model-00003-of-00003.safetensors": 4.55 * GB,
    "model.safetensors.index.json": 24_000, "config.json": 600, "generation_config.json": 120, "params.json": 200,
    "special_tokens_map.json": 400, "tokenizer.json": 3_600_000, "tokenizer_config.json": 140_000,
    "tokenizer.model": 587_000, "tokenizer.model.v3": 587_000, "README.md": 7_000,
}
MISTRAL_INDEX = {"metadata": {"total_size": 14_496_047_104},
                 "weight_map": {"lm_head.weight": "model-00003-of-00003.safetensors",
                                "model.embed_tokens.weight": "model-00001-of-00003.safetensors",
                                "model.layers.10.mlp.up_proj.weight": "model-00002-of-00003.safetensors",
                                "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00003.safetensors"}}


def _mistral_workload(**model_changes):
    changes = {}
    if model_changes:
        models = [dict(m, **model_changes) if m["source"] == "mistralai/Mistral-7B-Instruct-v0.3" else m
                  for m in stack_value("dev", "llmserving:models")]
        changes = {"llmserving:models": models}
    s = settings_for("dev", changes)
    m = next(x for x in s.config.models if x.source == "mistralai/Mistral-7B-Instruct-v0.3")
    args = serving.workload_args(s, capacity.plan(s), m, _scheduling(s), mirror_bucket=MIRROR_BUCKET, hf_token_secret="hf-token",
                                 api_key_secret=None, load_balancer_cidrs=LB_CIDRS)
    return args, {o["kind"]: o for o in render(args)}


def test_mirror_copies_one_copy_of_the_weights_which_the_streamer_reads_whole():
    # vLLM v0.11.1's Run:ai loader streams EVERY *.safetensors under the prefix (runai_utils.list_safetensors):
    # the mirror must hold the sharded checkpoint only, never Mistral's consolidated duplicate beside it.
    from components.mirror_script import select_files

    picked = select_files({p: {} for p in MISTRAL_FILES}, MISTRAL_INDEX, "safetensors")
    assert [p for p in picked if p.endswith(".safetensors")] == [
        "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]
    assert "consolidated.safetensors" not in picked and "tokenizer.model" in picked and "README.md" not in picked


def test_streaming_pod_reads_the_mirror_and_holds_no_model_on_disk():
    args, objs = _mistral_workload()
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    vllm = pod["containers"][0]
    uri = f"s3://{MIRROR_BUCKET}/mistralai/Mistral-7B-Instruct-v0.3/main/"
    assert vllm["args"][0] == uri and vllm["args"][vllm["args"].index("--load-format") + 1] == "runai_streamer"
    env = {e["name"]: e.get("value") for e in vllm["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["AWS_REGION"] == "us-east-1" and "HF_TOKEN" not in env
    assert pod["initContainers"] == [] and pod["serviceAccountName"] == "mistral-7b-weights"
    # No model-sized volume: the request is the scratch volume alone (the node cache is a hostPath, issue 12.3).
    assert [v["name"] for v in pod["volumes"] if "emptyDir" in v] == ["dshm", "scratch"]
    scratch = next(v for v in pod["volumes"] if v["name"] == "scratch")
    assert vllm["resources"]["requests"]["ephemeral-storage"] == scratch["emptyDir"]["sizeLimit"]
    # The mirror Job holds the Hub token; its copy runs to completion as the init container.
    job = objs["Job"]["spec"]["template"]["spec"]
    assert job["serviceAccountName"] == "mistral-7b-mirror" and job["restartPolicy"] == "Never"
    mirror_env = {e["name"]: e for e in job["initContainers"][0]["env"]}
    assert mirror_env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert mirror_env["MIRROR_PREFIX"]["value"] == "mistralai/Mistral-7B-Instruct-v0.3/main/"


def test_fallback_copies_the_mirror_into_the_pod_cache_never_the_hub():
    args, objs = _mistral_workload(loadFormat="safetensors")
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "model-copy" and init["image"].startswith("amazon/aws-cli:")
    assert f"s3://{MIRROR_BUCKET}/mistralai/Mistral-7B-Instruct-v0.3/main/" in init["args"][0]
    # Issue 12.2/12.3: the copy goes to the node cache (hostPath), kept across restarts on the node.
    weights = "/var/cache/llmserving/mistral-7b/weights/main"
    assert f"{weights}/" in init["args"][0]
    vllm = pod["containers"][0]
    assert vllm["args"][0] == weights
    assert vllm["args"][vllm["args"].index("--load-format") + 1] == "safetensors"
    assert "model-cache" not in [v["name"] for v in pod["volumes"]]
    disk = sum(int(v["emptyDir"]["sizeLimit"][:-2]) for v in pod["volumes"]
               if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")
    assert int(vllm["resources"]["requests"]["ephemeral-storage"][:-2]) == disk


# --- observability: DCGM scraped, GPU panels -------------------------------------------------------------

def test_prod_scrapes_dcgm_exporter_after_prometheus_crds_exist(prod):
    pm = one(prod, "kubernetes:monitoring.coreos.com/v1:PodMonitor", "dcgm-exporter")
    body = k8s_body(pm)
    validate_object(body)
    assert body["metadata"]["namespace"] == "llmserving"
    assert body["spec"]["namespaceSelector"] == {"matchNames": ["gpu-monitoring"]}
    assert body["spec"]["selector"] == {"matchLabels": DCGM_POD_LABELS}
    assert body["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # The exporter the platform installs: same namespace and release name the selector expects.
    dcgm = next(inputs(r) for r in of_type(prod, "kubernetes:helm.sh/v3:Release") if inputs(r)["name"] == "dcgm-exporter")
    assert dcgm["namespace"] == "gpu-monitoring"
    assert DCGM_POD_LABELS["app.kubernetes.io/instance"] == dcgm["name"]
    assert one(prod, "kubernetes:helm.sh/v3:Release", "kube-prometheus-stack").urn in pm.dependencies
    dash = json.loads(inputs(one(prod, "kubernetes:core/v1:ConfigMap", "vllm-dashboard"))["data"]["vllm.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    assert "DCGM_FI_DEV_GPU_UTIL" in exprs and "DCGM_FI_DEV_FB_USED" in exprs


def test_dev_without_dcgm_exporter_has_no_gpu_scrape_or_panels(dev):
    assert "dcgm-exporter" not in {r.name for r in of_type(dev, "kubernetes:monitoring.coreos.com/v1:PodMonitor")}
    dash = json.loads(inputs(one(dev, "kubernetes:core/v1:ConfigMap", "vllm-dashboard"))["data"]["vllm.json"])
    assert "DCGM_" not in json.dumps(dash)


def test_dcgm_without_prometheus_is_not_scraped():
    changes = {"llmserving:observability": {"prometheus": False, "grafana": False, "dcgmExporter": True},
               "llmserving:serving": {"prometheusUrl": "http://prometheus.observability.svc:9090"}}
    args = serving.observability_args(settings_for("dev", changes))
    assert args.dcgm is None and args.prometheus_chart is None


def test_observability_bad_args_listed_before_anything_exists():
    errors = []

    def program():
        try:
            Observability("o", ObservabilityArgs(namespace="LLM", dcgm=DcgmScrape(namespace="gpu-monitoring",
                                                                                  pod_labels={}, port="")))
        except ArgsError as e:
            errors.append(str(e))
    assert run_component(program).registrations == []
    assert "namespace: got 'LLM'; must be a DNS label" in errors[0]
    assert "dcgm.pod_labels: empty; the PodMonitor would select every pod in the namespace" in errors[0]
    assert "dcgm.port: empty" in errors[0]


# --- foundation and EFA runtime: bad args -------------------------------------------------------------------

def test_foundation_rejects_unpinned_chart_and_bad_secret_names():
    base = ServingFoundationArgs(namespace="llmserving", charts=(serving.chart_release(settings_for("dev"), "keda"),))
    bad_chart = dataclasses.replace(base.charts[0], version="latest")
    with pytest.raises(ArgsError) as e:
        ServingFoundation("f", dataclasses.replace(base, charts=(bad_chart,), secrets={"Bad_Name": {"k": "v"}}))
    msg = str(e.value)
    assert "charts[0].version: got 'latest'; pin an exact chart version" in msg
    assert "secrets: got secret name 'Bad_Name'; must be a DNS label" in msg


def test_efa_pools_without_the_device_plugin_are_rejected():
    chart = HelmChart(chart="nvidia-device-plugin", version="0.18.0", repository="https://nvidia.github.io/k8s-device-plugin")
    with pytest.raises(ArgsError) as e:
        NvidiaRuntime("n", NvidiaRuntimeArgs(device_plugin=chart, efa_pools=("p5-ondemand",)))
    assert ("efa_device_plugin: got None but efa_pools is ['p5-ondemand']; pods on those pools request "
            "vpc.amazonaws.com/efa") in str(e.value)
    with pytest.raises(ArgsError) as e:
        NvidiaRuntime("n", NvidiaRuntimeArgs(device_plugin=chart, efa_device_plugin=dataclasses.replace(chart, version="^0.5")))
    assert "efa_device_plugin.version: got '^0.5'; pin an exact chart version" in str(e.value)
    assert "efa_pools: got (); name the pools whose nodes have EFA interfaces" in str(e.value)


def test_a_changed_mirror_job_is_a_new_job_not_a_patch_of_an_immutable_template():
    """batch/v1 Job templates are immutable: the Job's name carries its revision and a digest of its spec, so
    a new pin or new settings replace it (pulumi-kubernetes replaces on a metadata.name change)."""
    _, objs = _mistral_workload()
    name = objs["Job"]["metadata"]["name"]
    assert name.startswith("mistral-7b-mirror-main-") and len(name) <= 63
    _, same = _mistral_workload()
    assert same["Job"]["metadata"]["name"] == name  # deterministic
    _, pinned = _mistral_workload(revision="a" * 40)
    assert pinned["Job"]["metadata"]["name"].startswith("mistral-7b-mirror-aaaaaaaaaaaa-")
    s = settings_for("dev", {"llmserving:serving": {"figures": {"mirrorConcurrency": 4}}})
    m = next(x for x in s.config.models if x.name == "mistral-7b")
    args = serving.workload_args(s, capacity.plan(s), m, _scheduling(s), mirror_bucket=MIRROR_BUCKET,
                                 hf_token_secret="hf-token", api_key_secret=None)
    other = next(o for o in render(args) if o["kind"] == "Job")["metadata"]["name"]
    assert other != name and other.startswith("mistral-7b-mirror-main-")
