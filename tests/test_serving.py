"""vLLM workloads on Kubernetes: the issue-4 scenarios, rendered, validated and asserted."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pulumi_kubernetes as k8s
import pytest

from components.errors import ArgsError
from components.vllm_workload import VllmWorkload, render
from infra import capacity, serving
from infra.config import ConfigError
from tests import serving_presets as presets
from infra.mockcloud import run_callable
from tests.harness import inputs, of_type, one, run_component, run_stack, settings_for, stack_config
from tests.k8s_validation import validate_object
from tests.test_vllm_server_args import assert_real_flags

TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]


def scheduling(settings):
    return {p.name: {"node_selector": {"llmserving.io/pool": p.name}, "tolerations": TOLERATIONS, "efa": True}
            for p in settings.config.gpu_pools}


def rendered(preset, model=None):
    stack, changes = preset
    s = settings_for(stack, changes)
    plan = capacity.plan(s)
    m = next(x for x in s.config.models if model in (None, x.name))
    args = serving.workload_args(s, plan, m, scheduling(s), mirror_bucket=MIRROR_BUCKET, hf_token_secret="hf-token", api_key_secret="vllm-api-key")
    objs = render(args)
    for o in objs:
        validate_object(o)
    return args, {o["kind"]: o for o in objs}


READER_ROLE = "arn:aws:iam::123456789012:role/llmserving-test-adapters-reader"
MIRROR_BUCKET = "llmserving-test-models-123456789012-us-east-1"


def test_mirror(s):
    """The stack's model mirror as infra/stack.py builds it (a log bucket stands in for the log archive)."""
    from types import SimpleNamespace

    from infra import edge

    lora = s.config.lora
    return edge.build_model_mirror(s, {"project": "llmserving"}, log_archive=SimpleNamespace(bucket_name="logs"),
                                   account="123456789012", cluster_name="llmserving-test",
                                   extra_readers={lora.base_model: "llmserving-test-adapters-reader"}
                                   if lora.enabled and lora.base_model else {})


test_mirror.__test__ = False  # a helper, not a test
LB_CIDRS = ("10.40.224.0/20", "10.40.240.0/20")


def build_stack(preset):
    stack, changes = preset
    s = settings_for(stack, changes)
    plan = capacity.plan(s)

    def program():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        serving.build(s, plan, k8s_provider=provider, cluster_name="llmserving-test",
                      pool_scheduling=scheduling(s), adapter_bucket_name="llmserving-test-adapters",
                      adapter_reader_role_arn=READER_ROLE, load_balancer_cidrs=LB_CIDRS, mirror=test_mirror(s),
                      tags={"project": "llmserving", "stack": stack, "environment": "test", "tier": "custom"})
    config, secrets = stack_config(stack, changes)
    return run_callable(program, stack=stack, config=config, secret_keys=secrets)


def container(pod_template, name="vllm"):
    return next(c for c in pod_template["spec"]["containers"] if c["name"] == name)


def flag(args, name):
    return args[args.index(name) + 1]


def k8s_object(reg):
    """The Kubernetes object a recorded resource sends to the API server."""
    body = inputs(reg)
    if reg.type.startswith("kubernetes:") and "apiVersion" not in body:
        group_version, kind = reg.type.split(":")[1], reg.type.split(":")[2]
        group, version = group_version.split("/")
        body = {"apiVersion": version if group == "core" else f"{group}/{version}", "kind": kind, **body}
    if body.get("stringData") == "[secret]":  # masked secret values: validate the shape only
        body["stringData"] = {"masked": "masked"}
    return body


# --- scenario: multi-model 8B behind one endpoint ---------------------------------------------

def test_multi_model_8b_two_deployments_behind_one_router():
    run = build_stack(presets.MULTI_MODEL_8B)
    deployments = {r.name: inputs(r) for r in of_type(run, "kubernetes:apps/v1:Deployment")}
    assert set(deployments) == {"llama-3-1-8b-deployment", "mistral-7b-deployment", "llm-router-deployment"}
    for name in ("llama-3-1-8b", "mistral-7b"):
        pod = deployments[f"{name}-deployment"]["spec"]["template"]
        c = container(pod)
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert flag(c["args"], "--served-model-name") == name
        assert pod["metadata"]["labels"]["llmserving.io/serves"] == "true"
        # The pool, and nodes that create the node cache (tests/test_nodecache_eks_label.py).
        assert pod["spec"]["nodeSelector"] == {"llmserving.io/pool": "g5-spot", "llmserving.io/node-cache": "v1"}
        assert pod["spec"]["tolerations"] == TOLERATIONS
    router = container(deployments["llm-router-deployment"]["spec"]["template"], "router")
    assert router["image"] == "lmcache/lmstack-router:v0.1.11"
    assert flag(router["args"], "--k8s-label-selector") == "llmserving.io/serves=true"
    # dev has no LoRA, no multi-node: no adapter role, no LeaderWorkerSet controller; each model's weights
    # reader and mirror job get their own Pod Identity association (Alertmanager's, in the monitoring
    # namespace, is tested in test_alert_routing_and_storage.py)
    assert sorted(inputs(r)["serviceAccount"] for r in of_type(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
                  if inputs(r)["namespace"] == "llmserving") == ["llama-3-1-8b-mirror", "llama-3-1-8b-weights",
                                                                   "mistral-7b-mirror", "mistral-7b-weights"]
    assert {inputs(r)["chart"] for r in of_type(run, "kubernetes:helm.sh/v3:Release")} == {"keda", "kube-prometheus-stack"}
    for r in run.registrations:
        if r.type.startswith("kubernetes:") and r.type not in ("kubernetes:helm.sh/v3:Release", "pulumi:providers:kubernetes"):
            validate_object(k8s_object(r))


def test_8b_deployment_probes_volumes_drain_and_spread():
    args, objs = rendered(presets.MULTI_MODEL_8B, "llama-3-1-8b")
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = container(dep["spec"]["template"])
    # Behind the node cache's launcher (tests/test_nodecache_eks_launcher.py).
    assert c["command"][:2] == ["python3", "-c"] and c["command"][3:] == ["vllm", "serve"]
    assert_real_flags(c["args"])
    assert flag(c["args"], "--max-num-seqs") == "128" and flag(c["args"], "--dtype") == "bfloat16"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    # From the start-up estimate (infra/startup.py): 3 x (16 GB at 2,000 MB/s + 60 s start) is under the
    # 300 s floor.
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 300
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "20"]
    assert pod["terminationGracePeriodSeconds"] == 140
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    # Streamed from the mirror: no model cache, no download step, no Hub token in the pod.
    assert "model-cache" not in vols and pod["initContainers"] == []
    assert c["args"][0] == f"s3://{MIRROR_BUCKET}/meta-llama/Llama-3.1-8B-Instruct/main/"
    assert not any(e["name"] == "HF_TOKEN" for e in c["env"])
    job = objs["Job"]["spec"]["template"]["spec"]["initContainers"][0]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in job["env"]
    assert {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "api-key"}}} in c["env"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert objs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    so = objs["ScaledObject"]["spec"]
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama-3-1-8b"}
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (1, 8)
    trig = so["triggers"][0]
    assert trig["type"] == "prometheus"
    assert trig["metadata"]["query"] == 'sum(vllm:num_requests_waiting{model_name="llama-3-1-8b"})'
    assert trig["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    np = objs["NetworkPolicy"]["spec"]
    assert np["ingress"] == [{"from": [{"podSelector": {"matchLabels": serving.ROUTER_LABELS}},
                                       {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                              "ports": [{"protocol": "TCP", "port": 8000}]}]


# --- scenario: 70B ---------------------------------------------------------------------------

def test_70b_fp8_on_p5_tp8():
    args, objs = rendered(presets.LLAMA_70B_FP8, "llama-3-1-70b")
    dep = objs["Deployment"]
    c = container(dep["spec"]["template"])
    assert_real_flags(c["args"])
    assert dep["spec"]["replicas"] == 2
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert flag(c["args"], "--tensor-parallel-size") == "8" and flag(c["args"], "--kv-cache-dtype") == "fp8"
    assert "--quantization" not in c["args"]  # pre-quantized FP8 checkpoint
    # 3 x (71 GB at 2,000 MB/s + 150 s multi-GPU start) = 557 s, rounded up to the 10 s period.
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 560
    assert json.loads(flag(c["args"], "--model-loader-extra-config"))["distributed"] is True
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["dshm"]["emptyDir"]["sizeLimit"] == "16Gi"


def test_70b_fp8_from_bf16_checkpoint_quantizes_at_load():
    stack, _ = presets.LLAMA_70B_FP8
    models = json.loads(json.dumps(settings_for(stack).config.model_dump(by_alias=True)["models"]))
    models[0]["source"] = "meta-llama/Llama-3.1-70B-Instruct"
    _, objs = rendered(("prod", {"llmserving:models": models}), "llama-3-1-70b")
    c = container(objs["Deployment"]["spec"]["template"])
    assert flag(c["args"], "--quantization") == "fp8" and flag(c["args"], "--dtype") == "auto"


def test_70b_awq_alternative_on_p4de_tp2():
    _, objs = rendered(presets.LLAMA_70B_AWQ)
    c = container(objs["Deployment"]["spec"]["template"])
    assert_real_flags(c["args"])
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert flag(c["args"], "--quantization") == "awq_marlin" and flag(c["args"], "--tensor-parallel-size") == "2"
    assert objs["Deployment"]["spec"]["template"]["spec"]["nodeSelector"] == {"llmserving.io/pool": "p4de-ondemand",
                                                                              "llmserving.io/node-cache": "v1"}


# --- scenario: 405B across two p5 nodes ------------------------------------------------------

def test_405b_leaderworkerset_tp8_pp2_with_efa():
    _, objs = rendered(presets.LLAMA_405B)
    assert "Deployment" not in objs
    lws = objs["LeaderWorkerSet"]["spec"]
    t = lws["leaderWorkerTemplate"]
    # Two groups: a prod model keeps a second replica (policy serving-min-replicas).
    assert lws["replicas"] == 2 and t["size"] == 2 and t["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader, worker = t["leaderTemplate"], t["workerTemplate"]
    lc, wc = container(leader), container(worker, "ray-worker")
    script = lc["args"][0]
    assert script.startswith("ray start --head --port=6379 && ")
    vllm_part = script.split("exec vllm serve ", 1)[1]
    args = shlex.split(vllm_part)
    assert_real_flags(args)
    assert flag(args, "--tensor-parallel-size") == "8" and flag(args, "--pipeline-parallel-size") == "2"
    assert flag(args, "--distributed-executor-backend") == "ray"
    assert "LWS_GROUP_SIZE" in script
    assert 'ray start --address="$LWS_LEADER_ADDRESS:6379" --block' in wc["args"][0]  # retried: test_serving_deploy
    for c in (lc, wc):
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert c["resources"]["limits"]["vpc.amazonaws.com/efa"] == "32"
        assert {"name": "FI_PROVIDER", "value": "efa"} in c["env"]
        assert {"name": "FI_EFA_USE_DEVICE_RDMA", "value": "1"} in c["env"]
        assert c["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    # 3 x (406 GB at 2,000 MB/s per node + 150 s start + 60 s Ray group) = 1,239 s -> 1,240 (10 s period).
    assert lc["startupProbe"]["failureThreshold"] * lc["startupProbe"]["periodSeconds"] == 1240
    assert leader["metadata"]["labels"]["llmserving.io/serves"] == "true"
    assert "llmserving.io/serves" not in worker["metadata"]["labels"]
    assert objs["Service"]["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert objs["ScaledObject"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "llama-3-1-405b"}
    # group members reach each other on any port (Ray, NCCL)
    assert objs["NetworkPolicy"]["spec"]["ingress"][1] == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm",
                                                  "app.kubernetes.io/instance": "llama-3-1-405b"}}}]}


def test_405b_stack_installs_leaderworkerset_controller():
    run = build_stack(presets.LLAMA_405B)
    charts = {inputs(r)["name"]: inputs(r) for r in of_type(run, "kubernetes:helm.sh/v3:Release")}
    assert charts["lws"]["chart"] == "oci://registry.k8s.io/lws/charts/lws" and charts["lws"]["version"] == "0.10.0"
    assert charts["keda"]["version"] == "2.20.2" and charts["kube-prometheus-stack"]["version"] == "77.14.0"
    validate_object(k8s_object(one(run, "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet")))


# --- scenario: multi-tenant LoRA -------------------------------------------------------------

def test_lora_base_preloads_mapped_adapters_from_s3_via_pod_identity():
    run = build_stack(presets.LORA)
    dep = inputs(one(run, "kubernetes:apps/v1:Deployment", "llama-3-1-8b-deployment"))
    pod = dep["spec"]["template"]["spec"]
    c = container(dep["spec"]["template"])
    assert_real_flags(c["args"])
    # Started through the launcher that drops adapters not (yet) in the bucket: test_serving_deploy.
    # (after the node cache's launcher: tests/test_nodecache_eks_launcher.py).
    assert c["command"][-5:-3] == ["python3", "-c"] and c["command"][-2:] == ["vllm", "serve"]
    assert flag(c["args"], "--max-loras") == "8" and flag(c["args"], "--max-lora-rank") == "64"
    assert flag(c["args"], "--max-cpu-loras") == "32"
    i = c["args"].index("--lora-modules")
    assert c["args"][i + 1:i + 4] == ["acme-support=/adapters/acme-support", "globex-legal=/adapters/globex-legal",
                                      "globex-sql=/adapters/globex-sql"]
    assert pod["serviceAccountName"] == "vllm-lora"
    sync = next(x for x in pod["initContainers"] if x["name"] == "adapter-sync")
    assert "aws s3 cp --recursive" in sync["command"][2] and "s3://$bucket/tenants/$id/" in sync["command"][2]
    assert "restartPolicy" not in sync  # one pass before start when runtime loading is off
    assert {"name": "adapters", "mountPath": "/adapters", "readOnly": True} in c["volumeMounts"]
    cm = inputs(one(run, "kubernetes:core/v1:ConfigMap", "tenant-adapters"))
    assert cm["data"]["adapters.tsv"] == "acme-support\tacme\nglobex-legal\tglobex\nglobex-sql\tglobex\n"
    assert cm["data"]["bucket"] == "llmserving-test-adapters"
    (pia,) = [inputs(r) for r in of_type(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
              if inputs(r)["serviceAccount"] == "vllm-lora"]
    assert (pia["namespace"], pia["serviceAccount"], pia["clusterName"]) == ("llmserving", "vllm-lora", "llmserving-test")
    # The adapter store's read-only role (its access is evaluated in test_adapter_store.py).
    assert pia["roleArn"] == READER_ROLE and pia["tags"]["project"] == "llmserving"
    # Roles: Alertmanager's SNS publisher (test_alert_routing_and_storage.py), the 70B's weights reader and each
    # model's mirror writer; the LoRA base model reads its weights with the adapter reader (an inline policy).
    assert sorted(inputs(r)["name"].rsplit("-", 1)[-1] for r in of_type(run, "aws:iam/role:Role")) == [
        "mirror", "mirror", "publisher", "weights"]
    (extra,) = [inputs(r) for r in of_type(run, "aws:iam/rolePolicy:RolePolicy")
                if inputs(r)["role"] == "llmserving-test-adapters-reader"]
    assert "meta-llama/Llama-3.1-8B-Instruct/0e9e39f249a16976918f6564b8830bc894c89659/*" in extra["policy"]


def test_two_thousand_tenants_are_data_not_resources():
    stack, _ = presets.LORA
    small = build_stack((stack, {"llmserving:lora": presets.many_tenants(2)}))
    big = build_stack((stack, {"llmserving:lora": presets.many_tenants(2000)}))
    assert len(big.registrations) == len(small.registrations)
    cm = inputs(one(big, "kubernetes:core/v1:ConfigMap", "tenant-adapters"))
    assert cm["data"]["adapters.tsv"].count("\n") == 2000
    dep = inputs(one(big, "kubernetes:apps/v1:Deployment", "llama-3-1-8b-deployment"))
    c = container(dep["spec"]["template"])
    assert "--lora-modules" not in c["args"]  # runtime loading: fetched on first request by the resolver plugin
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    # Only the project's resolver: vLLM's filesystem resolver accepts only adapters whose
    # base_model_name_or_path is the served model's path.
    assert env["VLLM_PLUGINS"] == "llmserving_lora_resolver" and "VLLM_LORA_RESOLVER_CACHE_DIR" not in env
    # Pod storage is O(active adapters): the cache holds --max-cpu-loras x 2 adapters, not 2,000.
    assert env["LLMSERVING_ADAPTER_SLOTS"] == "128"
    adapters = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "adapters")
    # 128 rank-64 adapters of 8B (336 MB each, infra/serving.py adapter_bytes) / fill ratio 0.9 = 45 GiB.
    assert adapters["emptyDir"]["sizeLimit"] == "45Gi"
    sync = next(x for x in dep["spec"]["template"]["spec"]["initContainers"] if x["name"] == "adapter-sync")
    assert sync["restartPolicy"] == "Always"


def test_pod_storage_is_bounded_by_active_adapters_not_tenants():
    """Runtime loading: the adapter cache (and the pod's ephemeral-storage request) stops growing with the
    number of tenants once their adapters outnumber the LRU slots; static loading would hold them all."""
    def pod(n, runtime=True):
        s = settings_for("prod", {"llmserving:lora": presets.many_tenants(n, runtime_loading=runtime)})
        m = next(x for x in s.config.models if x.name == "llama-3-1-8b")
        args = serving.workload_args(s, capacity.plan(s), m, scheduling(s), mirror_bucket=MIRROR_BUCKET,
                                     hf_token_secret=None, api_key_secret=None)
        spec = {o["kind"]: o for o in render(args)}["Deployment"]["spec"]["template"]["spec"]
        return spec["containers"][0]["resources"]["requests"]["ephemeral-storage"]
    assert pod(500) == pod(1000) == pod(2000)
    assert pod(2) != pod(500)  # below the slots, the cache is what the mapped adapters need
    assert pod(20, runtime=False) != pod(40, runtime=False)  # static loading holds every mapped adapter


def test_adapter_cache_check_fails_naming_the_model_and_the_sizes():
    s = settings_for("prod", {"llmserving:lora": presets.many_tenants(2000, runtime_loading=False)})
    (problem,) = serving.adapter_cache_problems(s)
    assert problem.startswith("llmserving:lora.tenants: model llama-3-1-8b preloads all 2,000 mapped adapters "
                              "(static loading) of rank 64, 336 MB each (meta-llama/Llama-3.1-8B-Instruct")
    assert "671.1 GB, but its adapter cache holds 48.3 GB" in problem and "runtimeLoading: true" in problem
    # The program refuses it before any resource exists (exit 2 in the preview, a RunError under the CLI).
    with pytest.raises(Exception) as e:
        run_stack("prod", {"llmserving:lora": presets.many_tenants(2000, runtime_loading=False)})
    assert "671.1 GB" in str(e.value)
    # Runtime loading holds 64 (maxCpuLoras 32 x 2) of the same adapters: 21.5 GB fits.
    assert serving.adapter_cache_problems(settings_for("prod", {"llmserving:lora": {
        **presets.many_tenants(2000), "maxCpuLoras": 32}})) == []
    # A rank the cache cannot hold even at the LRU bound is refused too, naming the same sizes.
    (big,) = serving.adapter_cache_problems(settings_for("prod", {"llmserving:lora": {
        **presets.many_tenants(2000), "maxLoraRank": 256, "maxCpuLoras": 64}}))
    assert "keeps up to 128 adapters" in big and "1,342 MB each" in big


# --- observability -----------------------------------------------------------------------------

def test_dashboard_and_alert_rules():
    run = build_stack(presets.LORA)
    dash = json.loads(inputs(one(run, "kubernetes:core/v1:ConfigMap", "vllm-dashboard"))["data"]["vllm.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
                   "vllm:inter_token_latency_seconds_bucket", "vllm:generation_tokens_total"):
        assert metric in exprs
    assert "gpu_cache_usage_perc" not in exprs  # deprecated
    # Deprecated in vLLM 0.11, hidden from 0.12 (vllm/v1/metrics/loggers.py, v0.11.x).
    assert "time_per_output_token_seconds" not in exprs
    rule = k8s_object(one(run, "kubernetes:monitoring.coreos.com/v1:PrometheusRule"))
    validate_object(rule)
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert alerts["VllmTimeToFirstTokenP95High"]["expr"].endswith("> 2")
    assert alerts["VllmKvCacheNearlyFull"]["expr"] == "max by (model_name) (vllm:kv_cache_usage_perc) > 0.9"
    assert set(alerts) == {"VllmTimeToFirstTokenP95High", "VllmQueueBacklog", "VllmKvCacheNearlyFull", "VllmPodRestarting"}
    for pm in of_type(run, "kubernetes:monitoring.coreos.com/v1:PodMonitor"):
        validate_object(k8s_object(pm))


def test_bring_your_own_prometheus_skips_the_chart():
    url = "http://prometheus.observability.svc:9090"
    changes = {"llmserving:observability": {"prometheus": False, "grafana": False},
               "llmserving:serving": {"prometheusUrl": url}}
    run = build_stack(("dev", changes))
    assert {inputs(r)["name"] for r in of_type(run, "kubernetes:helm.sh/v3:Release")} == {"keda"}
    so = inputs(of_type(run, "kubernetes:keda.sh/v1alpha1:ScaledObject")[0])
    assert so["spec"]["triggers"][0]["metadata"]["serverAddress"] == url


# --- bad input, rejected before anything exists -------------------------------------------------

def _args(preset=presets.MULTI_MODEL_8B, model=None):
    return rendered(preset, model)[0]


def test_tp_not_matching_pod_gpus_is_rejected():
    args = dataclasses.replace(_args(), gpus_per_pod=2)
    with pytest.raises(ArgsError) as e:
        render(args)
    assert "server.tensor_parallel: got 1; a pod has 2 GPUs and tensor parallelism must use exactly the pod's GPUs" in str(e.value)


def test_tp_above_node_gpus_is_rejected():
    a = _args()
    args = dataclasses.replace(a, gpus_per_pod=8, server=dataclasses.replace(a.server, tensor_parallel=8))
    with pytest.raises(ArgsError) as e:
        render(args)
    assert "server.tensor_parallel: got 8; g5.2xlarge has 1 GPUs per node" in str(e.value)


def test_pp_on_nodes_without_efa_is_rejected():
    a = _args(presets.LLAMA_405B)
    args = dataclasses.replace(a, placement=dataclasses.replace(a.placement, efa=False, instance_type="g6e.48xlarge"))
    with pytest.raises(ArgsError) as e:
        render(args)
    assert "server.pipeline_parallel: got 2; pool 'p5-ondemand' (g6e.48xlarge) has no EFA" in str(e.value)


def test_model_that_does_not_fit_is_rejected():
    a = _args()
    with pytest.raises(ArgsError) as e:
        render(dataclasses.replace(a, weights_gb=400.0))
    assert "weights_gb: model 'llama-3-1-8b' needs" in str(e.value)


def test_bad_lora_rank_is_rejected_by_component_and_config():
    a = _args(presets.LORA, "llama-3-1-8b")
    bad = dataclasses.replace(a, server=dataclasses.replace(a.server, lora=dataclasses.replace(a.server.lora, max_lora_rank=48)))
    with pytest.raises(ArgsError) as e:
        render(bad)
    assert "server.lora.max_lora_rank: got 48; vLLM allows only 1, 8, 16, 32, 64, 128, 256, 320, 512" in str(e.value)
    lora = presets.many_tenants(1)
    lora["maxLoraRank"] = 48
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:lora": lora})
    assert "llmserving:lora.maxLoraRank: got 48; must be one of 1, 8, 16, 32, 64, 128, 256, 320, 512" in str(e.value)


def test_unpinned_image_is_rejected_and_nothing_is_created():
    args = dataclasses.replace(_args(), image="vllm/vllm-openai:latest")
    created = []

    def program():
        try:
            VllmWorkload("x", args)
        except ArgsError as e:
            created.append(str(e))
    run = run_component(program)
    assert run.registrations == []
    assert "image: got 'vllm/vllm-openai:latest'; pin a tag" in created[0]


def test_plan_rejects_pp_without_efa_and_oversized_models():
    changes = dict(presets.LLAMA_405B[1])
    changes["llmserving:gpuPools"] = [{**presets.P5_POOL, "instanceTypes": ["g6e.2xlarge"]}]
    changes["llmserving:models"] = [{"name": "small", "source": "meta-llama/Llama-3.1-8B-Instruct", "precision": "bf16",
                                     "pool": "p5-ondemand", "pipelineParallel": 2, "revision": presets.TEST_REVISION}]
    with pytest.raises(capacity.PlanError) as e:
        capacity.plan(settings_for("prod", changes))
    assert "llmserving:models[0].pipelineParallel: got 2; g6e.2xlarge has no EFA" in str(e.value)
    changes["llmserving:gpuPools"] = [presets.P5_POOL]
    changes["llmserving:models"] = [{**presets.LLAMA_405B[1]["llmserving:models"][0], "precision": "bf16",
                                     "source": "meta-llama/Llama-3.1-405B-Instruct", "pipelineParallel": 1}]
    with pytest.raises(capacity.PlanError) as e:
        capacity.plan(settings_for("prod", changes))
    assert "model 'llama-3-1-405b' does not fit" in str(e.value)


def test_serving_config_errors_name_the_key():
    with pytest.raises(ConfigError) as e:
        settings_for("dev", {"llmserving:observability": {"prometheus": False},
                             "llmserving:serving": {"vllmImageTag": "latest", "figures": {"drainSecond": 10}}})
    msg = str(e.value)
    assert "llmserving:serving.vllmImageTag: got 'latest'; must be a pinned vLLM release tag" in msg
    with pytest.raises(ConfigError) as e:
        settings_for("dev", {"llmserving:observability": {"prometheus": False},
                             "llmserving:serving": {"figures": {"drainSecond": 10}}})
    msg = str(e.value)
    assert "llmserving:serving.prometheusUrl: required key is missing" in msg
    assert "llmserving:serving.figures.drainSecond: unknown figure; allowed:" in msg and "drainSeconds" in msg
