"""Serving components: conventions, the router's ingress, KEDA-owned replicas, the
model download, DCGM scraping and GPU panels, bad args rejected before anything exists."""

from __future__ import annotations

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
from components.vllm_workload import VllmWorkload, download_script, render
from components.network import subnet_cidrs
from infra import capacity, serving
from tests import serving_presets as presets
from tests.harness import inputs, of_type, one, run_component, settings_for, shipped_run
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
    args = serving.workload_args(s, capacity.plan(s), s.config.models[0], _scheduling(s), hf_token_secret=None,
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


def fake_hub(files: dict[str, float], index: dict | None, downloaded: dict[str, float]):
    """A stand-in for huggingface_hub.snapshot_download, filtering like its fnmatch-based allow/ignore patterns."""
    def snapshot_download(repo_id, local_dir, allow_patterns=None, ignore_patterns=None):
        import os
        for path, size in files.items():
            if allow_patterns is not None and not any(fnmatch.fnmatch(path, p) for p in allow_patterns):
                continue
            if ignore_patterns and any(fnmatch.fnmatch(path, p) for p in ignore_patterns):
                continue
            target = os.path.join(local_dir, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(json.dumps(index) if path == "model.safetensors.index.json" and index else "x")
            downloaded[path] = size
    module = types.ModuleType("huggingface_hub")
    module.snapshot_download = snapshot_download
    return module


def _mistral_workload():
    s = settings_for("dev")
    m = next(x for x in s.config.models if x.source == "mistralai/Mistral-7B-Instruct-v0.3")
    args = serving.workload_args(s, capacity.plan(s), m, _scheduling(s), hf_token_secret="hf-token",
                                 api_key_secret=None, load_balancer_cidrs=LB_CIDRS)
    return args, {o["kind"]: o for o in render(args)}


def test_download_fetches_only_the_sharded_weights_and_the_cache_holds_them(tmp_path, monkeypatch):
    args, objs = _mistral_workload()
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["command"] == ["python3", "-c", download_script(args.source, f"/models/{args.server.served_model_name}")]
    assert {"name": "HF_XET_CHUNK_CACHE_SIZE_BYTES", "value": "0"} in init["env"]  # no 10 GB chunk cache in the emptyDir

    downloaded: dict[str, float] = {}
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub(MISTRAL_FILES, MISTRAL_INDEX, downloaded))
    exec(compile(download_script(args.source, str(tmp_path / "m")), "download", "exec"), {"__name__": "__main__"})
    assert sorted(downloaded) == ["config.json", "generation_config.json", "model-00001-of-00003.safetensors",
                                  "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
                                  "model.safetensors.index.json", "params.json", "special_tokens_map.json",
                                  "tokenizer.json", "tokenizer.model", "tokenizer_config.json"]
    limit_gib = int(next(v for v in pod["volumes"] if v["name"] == "model-cache")["emptyDir"]["sizeLimit"][:-2])
    assert sum(downloaded.values()) <= limit_gib * 2 ** 30
    # The request covers every emptyDir on the node's disk (model cache and scratch).
    disk = sum(int(v["emptyDir"]["sizeLimit"][:-2]) for v in pod["volumes"]
               if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")
    assert int(pod["containers"][0]["resources"]["requests"]["ephemeral-storage"][:-2]) == disk >= limit_gib
    # What the old patterns (skip only original/* and *.pth) fetched: both copies, more than the cache holds.
    old = sum(size for path, size in MISTRAL_FILES.items() if not fnmatch.fnmatch(path, "original/*")
              and not fnmatch.fnmatch(path, "*.pth"))
    assert old > limit_gib * 2 ** 30


def test_download_of_a_single_file_checkpoint_and_a_missing_one(tmp_path, monkeypatch):
    downloaded: dict[str, float] = {}
    files = {"model.safetensors": 2 * GB, "config.json": 1, "tokenizer.json": 1, "original/consolidated.00.pth": 2 * GB}
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub(files, None, downloaded))
    exec(compile(download_script("org/small", str(tmp_path / "a")), "download", "exec"), {"__name__": "__main__"})
    assert sorted(downloaded) == ["config.json", "model.safetensors", "tokenizer.json"]
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub({"config.json": 1, "consolidated.safetensors": 1},
                                                                   None, {}))
    with pytest.raises(SystemExit) as e:
        exec(compile(download_script("org/native", str(tmp_path / "b")), "download", "exec"), {"__name__": "__main__"})
    assert "org/native: safetensors weights ['model.safetensors'] not found" in str(e.value)


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
