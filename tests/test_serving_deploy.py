"""What a real `pulumi up` of the serving layer does (issue 10, EKS serving items).

Each test models the upstream behaviour it relies on, cited next to it, and checks the
rendered or recorded objects against that model:

- item 2: pulumi-kubernetes awaits (which kinds, how long) vs a replica's start-up;
- item 5: releases and workloads wait for a node source, Pod Identity before pods;
- item 8: LeaderWorkerSet's own headless Service, Ray workers that retry;
- items 9, 15: what the kubelet accepts for runAsNonRoot, writable HOME and caches;
- items 10, 11: the static LoRA launcher and the adapter sync, executed in a sandbox;
- item 12: keep-alive of every target above the ALB idle timeout;
- item 13: a rollout that can finish on the pool's real headroom.
"""

from __future__ import annotations

from tests.test_serving import MIRROR_BUCKET, test_mirror  # noqa: F401

import json
import math
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.model_router import ROUTER_PYTHON, router_launcher
from components.vllm_workload import (ADAPTER_WEIGHTS, STATIC_LORA_LAUNCHER, adapter_sync_script, ray_worker_script,
                                      render, traffic_service_name)
from infra import capacity, mockcloud, serving
from infra import serving_catalog as sc
from tests import serving_presets as presets
from tests.harness import inputs, of_type, one, run_stack, settings_for, shipped_run, stack_config
from tests.k8s_validation import validate_object
from tests.test_serving import LB_CIDRS, READER_ROLE, container, k8s_object, rendered, scheduling

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
SERVICE = "kubernetes:core/v1:Service"
RELEASE = "kubernetes:helm.sh/v3:Release"
WORKLOAD = "llmserving:vllm_workload:VllmWorkload"


def fig(settings, key: str) -> float:
    return serving.figure(settings, key)


# --- the mock engine, recording custom timeouts ---------------------------------------------------------

@pytest.fixture
def timeouts(monkeypatch):
    """(type, name) -> (create, update) custom timeouts as the engine receives them."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    register = mockcloud.RecordingMonitor.RegisterResource

    def recording(self, request):
        seen[(request.type, request.name)] = (request.customTimeouts.create, request.customTimeouts.update)
        return register(self, request)
    monkeypatch.setattr(mockcloud.RecordingMonitor, "RegisterResource", recording)
    return seen


def build_with_nodes(preset, changes: Optional[dict] = None):
    """serving.build with stand-ins for the platform's node sources (system nodes, one per GPU pool)."""
    stack, base = preset
    all_changes = {**base, **(changes or {})}
    s = settings_for(stack, all_changes)
    plan = capacity.plan(s)

    def program():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        system = pulumi.CustomResource("test:index:NodeSource", "system-nodes", {})
        pools = {p.name: [pulumi.CustomResource("test:index:NodeSource", f"{p.name}-nodes", {})]
                 for p in s.config.gpu_pools}
        out = serving.build(s, plan, k8s_provider=provider, cluster_name="llmserving-test",
                            pool_scheduling=scheduling(s), adapter_bucket_name="llmserving-test-adapters",
                            adapter_reader_role_arn=READER_ROLE, load_balancer_cidrs=LB_CIDRS, mirror=test_mirror(s),
                            tags={"project": "llmserving", "stack": stack, "environment": "test", "tier": "custom"},
                            system_nodes=[system], pool_node_sources=pools)
        pulumi.export("bindingDependencies", [r.urn for r in out.binding_dependencies])
        pulumi.export("serviceNames", out.service_names)
    config, secrets = stack_config(stack, all_changes)
    return s, plan, mockcloud.run_callable(program, stack=stack, config=config, secret_keys=secrets)


def duration_seconds(go: str) -> int:
    """A Go duration as the engine parses custom timeouts ("95m", "1h2m3s")."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", go)
    assert parts and "".join(a + b for a, b in parts) == go, go
    return sum(int(n) * units[u] for n, u in parts)


# --- item 2: Kubernetes awaits ------------------------------------------------------------------------------

# pulumi-kubernetes 4.x (provider/pkg/await/awaiters.go): built-in await logic for these kinds; any other
# kind (custom resources such as LeaderWorkerSet) is ready on creation unless `pulumi.com/waitFor` names a
# condition (provider/pkg/metadata/overrides.go ReadyCondition). `pulumi.com/skipAwait: "true"` skips all.
# The timeout is the resource's custom timeout, else `pulumi.com/timeoutSeconds`, else 10 minutes
# (await.go Creation, overrides.go TimeoutDuration). A Service waits only when it has a selector and is
# neither headless nor ExternalName (await/service.go shouldWaitForPods), for its endpoints to be ready.
AWAITED_KINDS = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"), ("batch/v1", "Job"),
                 ("v1", "Pod"), ("v1", "Service"), ("networking.k8s.io/v1", "Ingress")}


def provider_wait(obj: dict, custom_timeout: str) -> Optional[int]:
    """Seconds pulumi-kubernetes waits for `obj` to be ready on create/update, None when it does not wait."""
    ann = obj["metadata"].get("annotations", {})
    if ann.get("pulumi.com/skipAwait") == "true":
        return None
    key = (obj["apiVersion"], obj["kind"])
    if key not in AWAITED_KINDS and "pulumi.com/waitFor" not in ann:
        return None
    if key == ("v1", "Service"):
        spec = obj["spec"]
        if not spec.get("selector") or spec.get("clusterIP") == "None" or spec.get("type") == "ExternalName":
            return None
    if custom_timeout:
        return duration_seconds(custom_timeout)
    return int(ann.get("pulumi.com/timeoutSeconds", 600))


def replica_start_seconds(settings, plan, model: str) -> int:
    """Node launch + image pull + weight read from the S3 mirror + engine start (+ Ray group), from the
    catalog figures directly (not infra/startup.py, not the component)."""
    cfg = next(m for m in settings.config.models if m.name == model)
    arch = settings.catalog.models.get(cfg.source)
    ckpt = arch.checkpoint_precision if arch else "bf16"
    params = cfg.parameters_billion or arch.parameters_billion
    read = params * settings.catalog.bytes_per_parameter[ckpt].value * 1000 / fig(settings, "s3_stream_mb_per_second")
    gpus = cfg.tensor_parallel * cfg.pipeline_parallel
    start = fig(settings, "engine_start_seconds" if gpus == 1 else "engine_start_seconds_multi_gpu")
    ray = fig(settings, "ray_group_seconds") if cfg.pipeline_parallel > 1 else 0
    return int(fig(settings, "node_ready_seconds") + fig(settings, "image_pull_seconds") + read + start + ray)


CASES = {"dev": ("dev", {}), "prod": ("prod", {}), "405b": presets.LLAMA_405B}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_model_is_awaited_long_enough_and_nothing_else_waits_on_loading_pods(case, timeouts):
    """A 70B/405B replica (download + load) or prod's 32 x 8B on fresh Karpenter nodes outlast the
    provider's 10-minute default: the workload's await covers one replica's start-up on create and
    every rollout wave on update; its Service does not wait at all (no value, and it would race)."""
    settings, plan, run = build_with_nodes(CASES[case])
    workloads = {r.name: r for r in run.registrations if r.type == WORKLOAD}
    assert set(workloads) == {m.name for m in settings.config.models}
    for model, comp in workloads.items():
        children = [r for r in run.registrations if r.parent == comp.urn]
        start = replica_start_seconds(settings, plan, model)
        assert start > 600, model  # beyond the provider default for every shipped model
        engine = next(r for r in children if r.type in (DEPLOYMENT, LWS))
        obj = k8s_object(engine)
        validate_object(obj)
        create, update = timeouts[(engine.type, engine.name)]
        waited = provider_wait(obj, create)
        assert waited is not None, f"{model}: nothing awaits the model becoming ready"
        assert waited >= start, f"{model}: create waits {waited} s, a replica needs {start} s"
        strategy = (obj["spec"]["strategy"]["rollingUpdate"] if obj["kind"] == "Deployment"
                    else obj["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"])
        waves = math.ceil(next(m.max_replicas for m in plan.models if m.model == model)
                          / (strategy["maxSurge"] + strategy["maxUnavailable"]))
        assert provider_wait(obj, update) >= waves * start, f"{model}: update waits too little for {waves} waves"
        if obj["kind"] == "Deployment":
            # The controller's own stall signal allows one wave too.
            assert obj["spec"]["progressDeadlineSeconds"] >= start
        svc = next(r for r in children if r.type == SERVICE)
        assert provider_wait(k8s_object(svc), timeouts[(svc.type, svc.name)][0]) is None, model


def test_one_source_of_truth_the_startup_estimate_moves_probe_and_await(timeouts):
    """infra/startup.py drives the startup probe and the workload's await: a
    slower S3 stream (a figure override) lengthens all of them, by the estimate's own arithmetic."""
    from infra import startup

    def observed(changes):
        settings, plan, run = build_with_nodes(presets.LLAMA_70B_FP8, changes)
        dep = one(run, DEPLOYMENT, "llama-3-1-70b-deployment")
        probe = container(inputs(dep)["spec"]["template"])["startupProbe"]
        model = next(m for m in settings.config.models if m.name == "llama-3-1-70b")
        return (startup.estimate(settings, plan, model), probe["failureThreshold"] * probe["periodSeconds"],
                duration_seconds(timeouts[(dep.type, dep.name)][0]))
    e0, p0, a0 = observed(None)
    e1, p1, a1 = observed({"llmserving:serving": {"figures": {"s3StreamMbPerSecond": 200}}})
    assert (p0, p1) == (e0.startup_probe_budget_seconds, e1.startup_probe_budget_seconds)
    # 71 GB at 200 instead of 2,000 MB/s: 318 s more to read, x3 safety.
    assert e1.weight_read_seconds - e0.weight_read_seconds == 353 - 36 and p1 - p0 >= 3 * 317 - 10  # rounded to the probe period
    assert p1 - p0 - 60 <= a1 - a0 <= p1 - p0 + 60  # the await moves with the probe (minutes, rounded up)


def test_the_await_model_catches_the_provider_default():
    """The check above can fail: a Deployment without a custom timeout waits 600 s, a selector Service
    waits for its endpoints, a LeaderWorkerSet without waitFor is never awaited."""
    _, objs = rendered(presets.LLAMA_405B)
    lws = json.loads(json.dumps(objs["LeaderWorkerSet"]))
    assert provider_wait(lws, "") is not None
    del lws["metadata"]["annotations"]
    assert provider_wait(lws, "100m") is None
    svc = json.loads(json.dumps(objs["Service"]))
    del svc["metadata"]["annotations"]
    assert provider_wait(svc, "") == 600
    _, objs = rendered(presets.MULTI_MODEL_8B, "llama-3-1-8b")
    assert provider_wait(objs["Deployment"], "") == 600


# --- item 5: ordering ---------------------------------------------------------------------------------------

def test_releases_workloads_and_router_wait_for_a_node_source_and_pods_for_pod_identity():
    settings, _, run = build_with_nodes(presets.LORA)
    urn = {r.name: r.urn for r in run.registrations}
    system = urn["system-nodes"]
    releases = {inputs(r)["name"]: r for r in of_type(run, RELEASE)}
    assert {"keda", "kube-prometheus-stack"} <= set(releases)
    for name, r in releases.items():
        assert system in r.dependencies, f"release {name} installs before any node can run its pods"
    for comp in (r for r in run.registrations if r.type == WORKLOAD):
        pool = next(m.pool for m in settings.config.models if m.name == comp.name)
        for child in (r for r in run.registrations if r.parent == comp.urn):
            assert urn[f"{pool}-nodes"] in child.dependencies, (comp.name, child.name)
            assert urn["llmserving"] in child.dependencies, (comp.name, child.name)  # the namespace
    pia = one(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation", "llmserving-prod-adapter-reader")
    lora = one(run, DEPLOYMENT, "llama-3-1-8b-deployment")
    assert inputs(lora)["spec"]["template"]["spec"]["serviceAccountName"] == inputs(pia)["serviceAccount"]
    assert pia.urn in lora.dependencies  # EKS injects Pod Identity credentials when it admits the pod
    router = one(run, DEPLOYMENT, "llm-router-deployment")
    assert system in router.dependencies
    # What TargetGroupBindings must wait for: the namespace and every Service they target.
    services = {r.urn for r in of_type(run, SERVICE)}
    deps = set(run.outputs["bindingDependencies"])
    assert urn["llmserving"] in deps and len(deps & services) == len(settings.config.models) + 1


def test_405b_stack_lws_release_waits_for_system_nodes():
    _, _, run = build_with_nodes(presets.LLAMA_405B)
    lws = next(r for r in of_type(run, RELEASE) if inputs(r)["name"] == "lws")
    assert one(run, "test:index:NodeSource", "system-nodes").urn in lws.dependencies


# --- item 8: the LeaderWorkerSet's headless Service and the Ray group ---------------------------------------

def lws_headless_service(lws: dict, services: dict[str, dict]) -> Optional[dict]:
    """What LWS v0.10.0 does: create a headless Service named after the LWS unless a Service of that name
    exists (pkg/controllers/leaderworkerset_controller.go reconcileHeadlessServices ->
    pkg/utils/controller/controller_utils.go CreateHeadlessServiceIfNotExists). Returns the Service the
    pods' LWS_LEADER_ADDRESS (<lws>-<group>.<lws>.<ns>, pkg/utils/pod/pod_utils.go) resolves through."""
    name = lws["metadata"]["name"]
    if name in services:
        return services[name]
    return {"spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"leaderworkerset.sigs.k8s.io/name": name}}}


def test_405b_leader_address_resolves_through_the_lws_headless_service():
    run = run_stack(*presets.LLAMA_405B)
    lws = k8s_object(one(run, LWS))
    services = {inputs(r)["metadata"]["name"]: inputs(r) for r in of_type(run, SERVICE)}
    headless = lws_headless_service(lws, services)
    # A ClusterIP Service publishes only ready leader pods: workers would never find a loading head.
    assert headless["spec"].get("clusterIP") == "None" and headless["spec"].get("publishNotReadyAddresses")
    traffic = traffic_service_name("llama-3-1-405b")
    assert traffic in services and traffic != lws["metadata"]["name"]
    # The load balancer and the router reach the leaders through the traffic Service.
    tgb = next(inputs(r) for r in of_type(run, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
               if inputs(r)["metadata"]["name"].startswith("llama-3-1-405b"))
    assert tgb["spec"]["serviceRef"]["name"] == traffic
    assert services[traffic]["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_model_binding_targets_its_traffic_service(stack):
    run = shipped_run(stack)
    refs = {inputs(r)["spec"]["serviceRef"]["name"]
            for r in of_type(run, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")}
    models = {m.name for m in settings_for(stack).config.models}
    assert {traffic_service_name(m) for m in models} <= refs
    assert not models & {inputs(r)["metadata"]["name"] for r in of_type(run, SERVICE)}


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_ray_worker_retries_until_the_head_is_up(tmp_path):
    """Upstream's multi-node-serving.sh (vllm-project/vllm examples/online_serving, v0.11.1) retries
    `ray start` every 5 s until the head answers; one failure must not restart the worker (with
    RecreateGroupOnPodRestart that recreates the group and restarts both downloads)."""
    _, objs = rendered(presets.LLAMA_405B)
    worker = container(objs["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]["workerTemplate"], "ray-worker")
    script = worker["args"][0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "ray", """
        import os, sys
        log = os.environ["RAY_LOG"]
        with open(log, "a") as f:
            f.write(" ".join(sys.argv[1:]) + "\\n")
        calls = sum(1 for _ in open(log))
        sys.exit(0 if calls > int(os.environ["HEAD_UP_AFTER"]) else 1)
    """)
    stub(bin_dir, "sleep", "")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LWS_LEADER_ADDRESS": "llama-3-1-405b-0.llama-3-1-405b.llmserving",
           "RAY_LOG": str(tmp_path / "ray.log"), "HEAD_UP_AFTER": "3"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    calls = (tmp_path / "ray.log").read_text().splitlines()
    assert done.returncode == 0 and len(calls) == 4
    assert calls[0] == "start --address=llama-3-1-405b-0.llama-3-1-405b.llmserving:6379 --block"
    # Past its window (here 0 s) a worker gives up with a message instead of spinning forever.
    (tmp_path / "ray.log").unlink()
    quick = ray_worker_script(ray_port=6379, join_seconds=0, retry_seconds=5)
    done = subprocess.run(["bash", "-c", quick], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "not reachable" in done.stderr


# --- items 9, 15: non-root pods the kubelet starts ------------------------------------------------------------

IMAGE_USERS = {img.ref.rsplit(":", 1)[0]: img.user for img in sc.IMAGES.values()}


def effective(pod_spec: dict, c: dict, key: str):
    return c.get("securityContext", {}).get(key, pod_spec.get("securityContext", {}).get(key))


def kubelet_refuses(pod_spec: dict, c: dict) -> Optional[str]:
    """kubelet verifyRunAsNonRoot (pkg/kubelet/kuberuntime/security_context_others.go): with runAsNonRoot
    true, a runAsUser of 0 is refused, and without runAsUser so is an image whose user is root."""
    if not effective(pod_spec, c, "runAsNonRoot"):
        return None
    uid = effective(pod_spec, c, "runAsUser")
    if uid is not None:
        return "runAsUser 0 with runAsNonRoot" if uid == 0 else None
    user = IMAGE_USERS[c["image"].rsplit(":", 1)[0]]
    assert user, f"catalog records no user for {c['image']}"
    return "image will run as root" if user.startswith("root") else None


def pod_templates(run) -> list[tuple[str, dict]]:
    out = []
    for r in of_type(run, DEPLOYMENT):
        out.append((r.name, inputs(r)["spec"]["template"]))
    for r in of_type(run, LWS):
        lwt = inputs(r)["spec"]["leaderWorkerTemplate"]
        out += [(f"{r.name} leader", lwt["leaderTemplate"]), (f"{r.name} worker", lwt["workerTemplate"])]
    return [(n, t) for n, t in out if t["metadata"]["labels"].get("app.kubernetes.io/part-of") == "llmserving"
            or t["metadata"]["labels"].get("app.kubernetes.io/name") in ("vllm", "llm-router")]


def writable_paths(pod_spec: dict, c: dict) -> list[str]:
    """emptyDirs, and the node-level cache: a hostPath of type Directory that the node creates for the serving
    uid/gid at boot (issue 12.3; components/gpu_node_group.py node_cache_boot_script)."""
    from infra.eks_catalog import NODE_CACHE_HOST_PATH

    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    return [m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")
            and ("emptyDir" in vols.get(m["name"], {})
                 or vols.get(m["name"], {}).get("hostPath") == {"path": NODE_CACHE_HOST_PATH, "type": "Directory"})]


@pytest.mark.parametrize("case", sorted(CASES))
def test_serving_pods_run_as_non_root_with_seccomp_and_writable_home(case):
    run = shipped_run(case) if case in ("dev", "prod") else run_stack(*CASES[case])
    templates = pod_templates(run)
    assert any("router" in n for n, _ in templates) and len(templates) > 1
    for where, t in templates:
        spec = t["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["securityContext"].get("fsGroup", 0) > 0, where
        for c in spec.get("initContainers", []) + spec["containers"]:
            refusal = kubelet_refuses(spec, c)
            assert refusal is None, f"{where}/{c['name']}: kubelet refuses: {refusal}"
            sc_ = c["securityContext"]
            assert sc_["allowPrivilegeEscalation"] is False and "ALL" in sc_["capabilities"]["drop"], (where, c["name"])
            uid = effective(spec, c, "runAsUser")
            if uid == 0:
                # Only the engines of an EFA group: IPC_LOCK does not reach a non-root process.
                assert sc_["capabilities"].get("add") == ["IPC_LOCK"] and "vpc.amazonaws.com/efa" in \
                    c["resources"]["limits"], (where, c["name"])
            else:
                assert uid and effective(spec, c, "runAsNonRoot") is True, (where, c["name"])
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            writable = writable_paths(spec, c)
            # The images set HOME=/root (root's): every non-root container points HOME at its own volume.
            if uid != 0:
                assert any(env.get("HOME", "").startswith(p) for p in writable), (where, c["name"], env.get("HOME"))
            if c["name"] == "vllm" or c["name"] == "ray-worker":
                for var in ("XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR",
                            "NUMBA_CACHE_DIR", "HF_HOME"):
                    assert any(env[var].startswith(p) for p in writable), (where, var)
                assert "/tmp" in writable  # Ray's /tmp/ray, Python tempfiles
            if sc_.get("readOnlyRootFilesystem"):
                assert "/tmp" in writable, (where, c["name"])


def test_the_kubelet_model_refuses_the_old_router():
    """The check above can fail: runAsNonRoot with no runAsUser on the root router image."""
    spec = {"securityContext": {}}
    c = {"image": sc.IMAGES["router"].ref, "securityContext": {"runAsNonRoot": True}}
    assert kubelet_refuses(spec, c) == "image will run as root"


def test_router_starts_with_a_keep_alive_above_the_alb_idle_timeout(tmp_path):
    """vllm_router.app.main (production-stack vllm-stack-0.1.11) calls uvicorn.run(app, **kwargs) without
    a keep-alive; the launcher binds timeout_keep_alive first. Run against stand-ins of both modules."""
    run = shipped_run("prod")
    router = container(inputs(one(run, DEPLOYMENT, "llm-router-deployment"))["spec"]["template"], "router")
    assert router["command"][0] == ROUTER_PYTHON and router["command"][1] == "-c"
    launcher = router["command"][2]
    pkg = tmp_path / "site"
    (pkg / "vllm_router").mkdir(parents=True)
    (pkg / "uvicorn.py").write_text("import json, os\n"
                                    "def run(app, **kw):\n"
                                    "    json.dump(kw, open(os.environ['OUT'], 'w'))\n")
    (pkg / "vllm_router" / "__init__.py").write_text("")
    # Shape of vllm_router/app.py main(): parse args, then uvicorn.run(app, **uvicorn_kwargs).
    (pkg / "vllm_router" / "app.py").write_text(
        "import argparse, uvicorn\n"
        "def main():\n"
        "    p = argparse.ArgumentParser(); p.add_argument('--host'); p.add_argument('--port', type=int)\n"
        "    a, _ = p.parse_known_args()\n"
        "    uvicorn.run('app', host=a.host, port=a.port, log_level='info', root_path='')\n")
    out = tmp_path / "kwargs.json"
    done = subprocess.run([sys.executable, "-c", launcher, *router["args"]], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(pkg), "OUT": str(out)}, timeout=30)
    assert done.returncode == 0, done.stderr
    kwargs = json.loads(out.read_text())
    idle = settings_for("prod").config.ingress.idle_timeout_seconds
    assert kwargs["timeout_keep_alive"] > idle and kwargs["port"] == 8000


# --- item 12: keep-alive ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("idle", [None, 900])
def test_vllm_keeps_connections_longer_than_the_alb(idle):
    """ALB docs (connection idle timeout): the target's keep-alive must exceed the load balancer's idle
    timeout. vLLM reads VLLM_HTTP_TIMEOUT_KEEP_ALIVE (vllm/envs.py, default 5 s, v0.11.1)."""
    changes = {}
    if idle:
        ingress = json.loads(stack_config("prod")[0]["llmserving:ingress"])
        changes["llmserving:ingress"] = {**ingress, "idleTimeoutSeconds": idle}
    s = settings_for("prod", changes)
    alb_idle = s.config.ingress.idle_timeout_seconds
    for m in s.config.models:
        args = serving.workload_args(s, capacity.plan(s), m, scheduling(s), mirror_bucket=MIRROR_BUCKET, hf_token_secret=None, api_key_secret=None)
        objs = {o["kind"]: o for o in render(args)}
        env = {e["name"]: e.get("value") for e in container(objs["Deployment"]["spec"]["template"])["env"]}
        assert int(env.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", 5)) > alb_idle, m.name
    assert serving.router_args(s, LB_CIDRS).keepalive_seconds > alb_idle
    assert f"timeout_keep_alive={serving.keepalive_seconds(s)}" in router_launcher(serving.keepalive_seconds(s))


# --- items 10, 11: LoRA adapters, executed in a sandbox ------------------------------------------------------

def write_adapter(root: Path, name: str, *, rank: int = 16, config: bool = True, weights: bool = True,
                  base: str = "meta-llama/Llama-3.1-8B-Instruct") -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    if config:
        (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": 16,
                                                          "base_model_name_or_path": base}))
    if weights:
        (d / ADAPTER_WEIGHTS[0]).write_bytes(b"\0" * 2048)
    return d


def test_static_lora_launcher_serves_only_adapters_that_can_load(tmp_path):
    """vLLM v0.11.1 init_static_loras raises when any --lora-modules entry fails to load: the launcher
    passes only complete adapters within --max-lora-rank, and no --lora-modules when none is there."""
    run = shipped_run("prod")
    dep = inputs(one(run, DEPLOYMENT, "llama-3-1-8b-deployment"))
    c = container(dep["spec"]["template"])
    # After the node cache's launcher (tests/test_nodecache_eks_launcher.py), which execs python3 from PATH.
    assert c["command"][-5:-3] == ["python3", "-c"] and c["command"][-3] == STATIC_LORA_LAUNCHER
    adapters = tmp_path / "adapters"
    write_adapter(adapters, "acme-support")
    write_adapter(adapters, "globex-legal", weights=False)   # upload in progress
    write_adapter(adapters, "globex-sql", rank=128)         # above --max-lora-rank 64
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "vllm", """
        import json, os, sys
        json.dump(sys.argv[1:], open(os.environ["OUT"], "w"))
    """)
    args = [a.replace("/adapters/", f"{adapters}/") for a in c["args"]]
    out = tmp_path / "argv.json"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out)}
    done = subprocess.run([sys.executable, *c["command"][1:], *args], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    argv = json.loads(out.read_text())
    assert argv[0] == "serve" and argv[1:] == [a for a in args if "globex" not in a]
    assert argv[argv.index("--lora-modules") + 1] == f"acme-support={adapters}/acme-support"
    assert "not serving LoRA adapter globex-legal" in done.stderr and "rank 128" in done.stderr
    # A first deploy: the bucket is empty, nothing synced. The base model still starts.
    empty = [a.replace("/adapters/", f"{tmp_path}/none/") for a in c["args"]]
    done = subprocess.run([sys.executable, *c["command"][1:], *empty], env=env, capture_output=True, text=True, timeout=30)
    argv = json.loads(out.read_text())
    assert done.returncode == 0 and "--lora-modules" not in argv and "--enable-lora" in argv


FAKE_AWS = """
    import os, shutil, sys
    root = os.environ["FAKE_S3"]
    a = sys.argv[1:]
    open(os.environ["AWS_LOG"], "a").write(" ".join(a) + "\\n")
    if a[:2] == ["s3api", "list-objects-v2"]:
        bucket, prefix = a[a.index("--bucket") + 1], a[a.index("--prefix") + 1]
        base = os.path.join(root, bucket)
        rows = []
        for d, _, files in os.walk(os.path.join(base, prefix)):
            for f in files:
                p = os.path.join(d, f)
                rows.append(os.path.relpath(p, base) + "\\t" + str(os.path.getsize(p)))
        print("\\n".join(sorted(rows)) if rows else "None")
    elif a[:3] == ["s3", "cp", "--recursive"]:
        src, dst = [x for x in a[3:] if not x.startswith("--")]
        shutil.copytree(os.path.join(root, src[len("s3://"):]), dst, dirs_exist_ok=True)
    else:
        sys.exit("unexpected aws call: %s" % a)
"""

# A vLLM API server as the sync sees it (v0.11.1 serving_models.py: /v1/models lists adapters with
# `parent`; /v1/load_lora_adapter and /v1/unload_lora_adapter take lora_name/lora_path; both need the
# bearer key when VLLM_API_KEY is set).
FAKE_CURL = """
    import json, os, sys
    state_path = os.environ["VLLM_STATE"]
    state = json.load(open(state_path))
    a = sys.argv[1:]
    headers = [a[i + 1] for i, x in enumerate(a) if x == "-H"]
    url = a[-1]
    body = json.loads(a[a.index("-d") + 1]) if "-d" in a else None
    state["calls"].append({"url": url, "headers": headers, "body": body})
    def done(code=0):
        json.dump(state, open(state_path, "w"))
        sys.exit(code)
    if not state["up"] or "Authorization: Bearer sk-test" not in headers:
        done(22)
    if url.endswith("/metrics"):
        # vllm/v1/metrics/loggers.py (v0.11.1): one series per label set, valued at the time it was last set.
        for running, waiting, ts in state.get("lora_info", []):
            print('vllm:lora_requests_info{max_lora="8",waiting_lora_adapters="%s",running_lora_adapters="%s"} %s'
                  % (waiting, running, repr(float(ts))))
        done()
    if url.endswith("/v1/models"):
        data = [{"id": "llama-3-1-8b", "parent": None}] + [{"id": n, "parent": "llama-3-1-8b"} for n in state["loaded"]]
        print(json.dumps({"object": "list", "data": data}))
        done()
    if url.endswith("/v1/load_lora_adapter"):
        if body["lora_name"] in state["refuse"] or body["lora_name"] in state["loaded"]:
            done(22)
        cfg = json.load(open(os.path.join(body["lora_path"], "adapter_config.json")))
        state["loaded"][body["lora_name"]] = cfg["base_model_name_or_path"]
        done()
    if url.endswith("/v1/unload_lora_adapter"):
        state["loaded"].pop(body["lora_name"], None)
        done()
    done(22)
"""

# sleep: between passes, play the next scripted event; after the last, stop the sync loop.
FAKE_SLEEP = """
    import json, os, shutil, signal, sys
    events = json.load(open(os.environ["EVENTS"]))
    if not events:
        os.kill(os.getppid(), signal.SIGTERM)
        sys.exit(0)
    event = events.pop(0)
    json.dump(events, open(os.environ["EVENTS"], "w"))
    state = json.load(open(os.environ["VLLM_STATE"]))
    if event.get("vllm_up"):
        state["up"] = True
    json.dump(state, open(os.environ["VLLM_STATE"], "w"))
    for src, dst in event.get("upload", []):
        shutil.copytree(src, dst, dirs_exist_ok=True)
    if "mapping" in event:
        open(os.environ["MAPPING"], "w").write(event["mapping"])
"""


def sandbox(tmp_path: Path, mapping: str, loaded: dict, events: list) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "aws", FAKE_AWS)
    stub(bin_dir, "curl", FAKE_CURL)
    stub(bin_dir, "sleep", FAKE_SLEEP)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "bucket").write_text("llmserving-prod-adapters")
    (tmp_path / "etc" / "adapters.tsv").write_text(mapping)
    (tmp_path / "adapters").mkdir()
    (tmp_path / "s3" / "llmserving-prod-adapters" / "tenants").mkdir(parents=True)
    (tmp_path / "vllm.json").write_text(json.dumps({"up": False, "loaded": loaded, "refuse": ["bad-rank"], "calls": []}))
    (tmp_path / "events.json").write_text(json.dumps(events))
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3"), "AWS_LOG": str(tmp_path / "aws.log"),
            "VLLM_STATE": str(tmp_path / "vllm.json"), "EVENTS": str(tmp_path / "events.json"),
            "MAPPING": str(tmp_path / "etc" / "adapters.tsv"), "VLLM_API_KEY": "sk-test"}


def sync_script(tmp_path: Path, *, runtime: bool, budget_kib: int = 1 << 20, slots: int = 64) -> str:
    return adapter_sync_script(adapter_dir=str(tmp_path / "adapters"), mapping_dir=str(tmp_path / "etc"),
                               runtime=runtime, interval_seconds=60, budget_kib=budget_kib, port=8000, slots=slots)


def test_rendered_sync_scripts_are_the_generator_with_the_pods_paths():
    for runtime in (False, True):
        lora = presets.many_tenants(3, runtime_loading=runtime)
        s = settings_for("prod", {"llmserving:lora": lora})
        m = next(x for x in s.config.models if x.name == "llama-3-1-8b")
        args = serving.workload_args(s, capacity.plan(s), m, scheduling(s), mirror_bucket=MIRROR_BUCKET, hf_token_secret=None, api_key_secret="k")
        objs = {o["kind"]: o for o in render(args)}
        for o in objs.values():
            validate_object(o)
        pod = objs["Deployment"]["spec"]["template"]["spec"]
        sync = next(c for c in pod["initContainers"] if c["name"] == "adapter-sync")
        ad = args.adapters
        assert sync["command"] == ["/bin/bash", "-c", adapter_sync_script(
            adapter_dir="/adapters", mapping_dir="/etc/llmserving", runtime=runtime,
            interval_seconds=ad.sync_interval_seconds, budget_kib=int(ad.cache_gib * ad.fill_ratio * 1024 * 1024),
            port=8000, slots=ad.slots)]
        assert ("restartPolicy" in sync) == runtime
        assert {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "api-key"}}} in sync["env"]


def test_static_sync_on_a_first_deploy_fetches_nothing_and_succeeds(tmp_path):
    env = sandbox(tmp_path, "acme-support\tacme\nglobex-legal\tglobex\n", {}, [])
    done = subprocess.run(["bash", "-c", sync_script(tmp_path, runtime=False)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "adapters").iterdir() if not p.name.startswith(".")] == []
    # One listing of tenants/, not one LIST per adapter.
    assert (tmp_path / "aws.log").read_text().count("list-objects-v2") == 1


def test_static_sync_fetches_complete_uploads_only(tmp_path):
    env = sandbox(tmp_path, "acme-support\tacme\nglobex-legal\tglobex\n", {}, [])
    bucket = tmp_path / "s3" / "llmserving-prod-adapters" / "tenants"
    write_adapter(bucket / "acme", "acme-support")
    write_adapter(bucket / "globex", "globex-legal", weights=False)
    write_adapter(bucket / "initech", "not-mapped")
    done = subprocess.run(["bash", "-c", sync_script(tmp_path, runtime=False)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    present = sorted(p.name for p in (tmp_path / "adapters").iterdir() if not p.name.startswith("."))
    assert present == ["acme-support"]
    assert (tmp_path / "adapters" / "acme-support" / ADAPTER_WEIGHTS[0]).exists()


def test_sync_stops_at_the_cache_budget_instead_of_getting_the_pod_evicted(tmp_path):
    env = sandbox(tmp_path, "a1\tt\na2\tt\n", {}, [])
    bucket = tmp_path / "s3" / "llmserving-prod-adapters" / "tenants"
    for name in ("a1", "a2"):
        d = write_adapter(bucket / "t", name)
        (d / ADAPTER_WEIGHTS[0]).write_bytes(b"\1" * 600 * 1024)
    done = subprocess.run(["bash", "-c", sync_script(tmp_path, runtime=False, budget_kib=1000)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    present = [p.name for p in (tmp_path / "adapters").iterdir() if not p.name.startswith(".")]
    assert len(present) == 1 and "adapter cache full" in done.stderr


def test_runtime_sync_keeps_the_cache_at_its_slots_evicting_least_recently_active_adapters(tmp_path):
    """Runtime loading: the resolver fetches on first request; the sidecar keeps the cache bounded. With
    10 slots (9 kept, a tenth free for the resolver) and 12 adapters on disk, it unloads through the API
    and deletes the least recently active ones, never one vLLM reports running or waiting, and drops
    adapters the mapping no longer lists. Every call carries the API key."""
    import time

    mapping = "".join(f"a{i:02d}\tt\n" for i in range(12))
    env = sandbox(tmp_path, mapping, {f"a{i:02d}": "x" for i in range(12)}, [{"mapping": mapping.replace("a11\tt\n", "")}])
    now = time.time()
    for i in range(12):
        d = write_adapter(tmp_path / "adapters", f"a{i:02d}")
        (d / ".complete").touch()
        os.utime(d / ".complete", (now - 1000 + i, now - 1000 + i))  # a00 is the oldest
    state = json.loads((tmp_path / "vllm.json").read_text())
    # a00 and a01 are busy right now (a recent series); a02 was busy long ago (an old series).
    state.update(up=True, lora_info=[["a00", "a01", now + 5], ["a02", "", 1.0]])
    (tmp_path / "vllm.json").write_text(json.dumps(state))
    done = subprocess.run(["bash", "-c", sync_script(tmp_path, runtime=True, slots=10)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode in (-15, 143), done.stderr
    present = sorted(p.name for p in (tmp_path / "adapters").iterdir() if not p.name.startswith("."))
    # Pass 1: 12 on disk, keep 9: evict the 3 oldest that are not active (a02, a03, a04). Pass 2: a11 unmapped.
    assert present == ["a00", "a01", "a05", "a06", "a07", "a08", "a09", "a10"]
    state = json.loads((tmp_path / "vllm.json").read_text())
    unloads = [c["body"]["lora_name"] for c in state["calls"] if c["url"].endswith("/unload_lora_adapter")]
    assert unloads == ["a02", "a03", "a04", "a11"]
    assert all("Authorization: Bearer sk-test" in c["headers"] for c in state["calls"])
    assert "evicted a02 (least recently used; cache keeps 9)" in done.stderr
    assert "evicted a11 (no longer mapped)" in done.stderr
    # Nothing is prefetched: the resolver plugin fetches on first request (tests/test_coldstart_adapters.py).
    assert not (tmp_path / "aws.log").exists()


def test_runtime_loading_pods_have_no_filesystem_resolver_and_the_router_relists():
    """vLLM v0.11.1's filesystem resolver (vllm/plugins/lora_resolvers/filesystem_resolver.py) accepts an
    adapter only when its base_model_name_or_path equals the served model (/models/<name>); the router
    (production-stack vllm-stack-0.1.11 service_discovery.py) reads a pod's /v1/models only on pod
    events, so it re-lists pods to see adapters registered later."""
    run = run_stack("prod", {"llmserving:lora": presets.many_tenants(3, runtime_loading=True)})
    dep = inputs(one(run, DEPLOYMENT, "llama-3-1-8b-deployment"))
    env = {e["name"]: e.get("value") for e in container(dep["spec"]["template"])["env"]}
    # Only the project's S3 resolver plugin is loaded, not vLLM's filesystem resolver.
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_PLUGINS"] == "llmserving_lora_resolver"
    router = container(inputs(one(run, DEPLOYMENT, "llm-router-deployment"))["spec"]["template"], "router")
    i = router["args"].index("--k8s-watcher-timeout-seconds")
    assert 0 < int(router["args"][i + 1]) <= fig(settings_for("prod"), "adapter_sync_interval_seconds")


def test_pod_ephemeral_storage_request_counts_the_adapter_cache():
    s = settings_for("prod")
    m = next(x for x in s.config.models if x.name == "llama-3-1-8b")
    args = serving.workload_args(s, capacity.plan(s), m, scheduling(s), mirror_bucket=MIRROR_BUCKET, hf_token_secret=None, api_key_secret=None)
    pod = {o["kind"]: o for o in render(args)}["Deployment"]["spec"]["template"]["spec"]
    disk = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"]
            if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"}
    gib = sum(int(v[:-2]) if v.endswith("Gi") else math.ceil(int(v[:-2]) / 1024) for v in disk.values())
    assert "adapters" in disk
    assert int(container({"spec": pod})["resources"]["requests"]["ephemeral-storage"][:-2]) >= gib


# --- item 13: rollouts that finish ----------------------------------------------------------------------------

def rollout_finishes(replicas: int, max_surge: int, max_unavailable: int, free: int) -> bool:
    """Deployment controller (and LWS rolling update, per group) against a pool with `free` pod slots:
    new pods up to replicas + maxSurge, old ones removed while replicas - maxUnavailable stay available;
    a new pod without a free slot stays Pending (kube-scheduler), a removed old pod frees its slot."""
    old, new_ready, pending = replicas, 0, 0
    for _ in range(10 * replicas + 10):
        if old == 0 and new_ready == replicas:
            return True
        create = min(replicas - new_ready - pending, replicas + max_surge - old - new_ready - pending)
        pending += max(0, create)
        placed = min(pending, free)
        free, pending, new_ready = free - placed, pending - placed, new_ready + placed
        removable = min(old, old + new_ready - (replicas - max_unavailable))
        if removable > 0:
            old, free = old - removable, free + removable
        elif placed == 0 and create <= 0:
            return False
    return False


def pool_headroom(run, settings) -> dict[str, int]:
    """Spare nodes per pool as the platform configures it: Karpenter's nvidia.com/gpu limit or the managed
    node group's desired size, minus what the pool's models take at their KEDA maxReplicaCount."""
    ceiling = {}
    for r in of_type(run, "kubernetes:karpenter.sh/v1:NodePool"):
        spec = inputs(r)["spec"]
        pool = spec["template"]["metadata"]["labels"]["llmserving.io/pool"]
        per_node = settings.catalog.instance(settings.pool(pool).instance_types[0]).gpu_count
        ceiling[pool] = int(spec["limits"]["nvidia.com/gpu"]) // per_node
    for r in of_type(run, "aws:eks/nodeGroup:NodeGroup"):
        ng = inputs(r)
        pool = ng.get("labels", {}).get("llmserving.io/pool")
        if pool:
            ceiling[pool] = int(ng["scalingConfig"]["desiredSize"])
    peak: dict[str, int] = {}
    for so in of_type(run, "kubernetes:keda.sh/v1alpha1:ScaledObject"):
        model = inputs(so)["spec"]["scaleTargetRef"]["name"]
        m = next(x for x in settings.config.models if x.name == model)
        per_node = settings.catalog.instance(settings.pool(m.pool).instance_types[0]).gpu_count
        top = inputs(so)["spec"]["maxReplicaCount"]
        nodes = top * m.pipeline_parallel if m.pipeline_parallel > 1 else math.ceil(top / (per_node // m.tensor_parallel))
        peak[m.pool] = peak.get(m.pool, 0) + nodes
    return {p: ceiling[p] - peak.get(p, 0) for p in ceiling}


@pytest.mark.parametrize("case", ["dev", "prod", "405b", "70b-awq"])
def test_every_rollout_can_finish_on_the_pools_headroom(case):
    stack, changes = {**CASES, "70b-awq": presets.LLAMA_70B_AWQ}[case]
    run = shipped_run(case) if case in ("dev", "prod") else run_stack(stack, changes)
    settings = settings_for(stack, changes)
    spare = pool_headroom(run, settings)
    strategies = []
    for m in settings.config.models:
        per_node = settings.catalog.instance(settings.pool(m.pool).instance_types[0]).gpu_count
        sharing = sum(1 for x in settings.config.models if x.pool == m.pool)
        spare_nodes = max(0, spare[m.pool]) // sharing
        free = spare_nodes // m.pipeline_parallel if m.pipeline_parallel > 1 else spare_nodes * (per_node // m.tensor_parallel)
        if m.pipeline_parallel > 1:
            obj = inputs(one(run, LWS))
            step = obj["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]
        else:
            obj = inputs(one(run, DEPLOYMENT, f"{m.name}-deployment"))
            step = obj["spec"]["strategy"]["rollingUpdate"]
        pdb = next(inputs(r)["spec"] for r in of_type(run, "kubernetes:policy/v1:PodDisruptionBudget")
                   if inputs(r)["metadata"]["name"] == m.name)
        # Drains never take more than a rollout step does, and are never blocked outright.
        assert pdb["maxUnavailable"] == max(1, step["maxUnavailable"])
        replicas = m.max_replicas  # where KEDA may stand when the rollout starts
        assert rollout_finishes(replicas, step["maxSurge"], step["maxUnavailable"], free), \
            f"{case}/{m.name}: maxSurge {step['maxSurge']} maxUnavailable {step['maxUnavailable']} with {free} free"
        strategies.append((m.name, step["maxSurge"], step["maxUnavailable"]))
    if case == "prod":
        # The 8B's Karpenter pool has room to surge (no capacity lost); the 70B's node group has none.
        assert dict((n, (s, u)) for n, s, u in strategies) == {"llama-3-1-70b": (0, 1), "llama-3-1-8b": (8, 0)}


def test_the_rollout_model_catches_a_surge_without_room():
    assert not rollout_finishes(4, 1, 0, free=0)
    assert rollout_finishes(4, 0, 1, free=0) and rollout_finishes(4, 1, 0, free=1)


# --- the scripts reach the shell as written -------------------------------------------------------------------

def kubernetes_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of command/args (third_party/forked/golang/expansion): $(VAR) of a defined
    container variable is replaced, undefined references stay as written, and $$ becomes $."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_shell_and_python_in_pod_specs_survive_kubernetes_variable_expansion(case):
    run = shipped_run(case) if case in ("dev", "prod") else run_stack(*CASES[case])
    checked = 0
    for where, t in pod_templates(run):
        for c in t["spec"].get("initContainers", []) + t["spec"]["containers"]:
            env = {e["name"]: "X" for e in c.get("env", [])}
            for text in c.get("command", []) + c.get("args", []):
                assert kubernetes_expand(text, env) == text, (where, c["name"])
                checked += 1
    assert checked > 10
    assert kubernetes_expand("a $$(HOME) $(HOME) $(date +%s)", {"HOME": "/tmp"}) == "a $(HOME) /tmp $(date +%s)"


def test_pods_the_plan_packs_on_a_node_must_fit_its_ephemeral_storage():
    """Karpenter sizes a node's ephemeral storage from the instance-store RAID0 array
    (instanceStorePolicy RAID0) or else the EC2NodeClass root volume, less 1Gi kube-reserved and
    the 10% nodefs eviction threshold (aws/karpenter-provider-aws v1.14.1
    pkg/providers/instancetype/types.go): when 4 LoRA pods do not fit, only some schedule per
    g5.12xlarge and the NodePool's GPU limit strands replicas."""
    from infra import capacity, serving
    from infra.config import ConfigError
    from tests.harness import settings_for, stack_value

    def problems(changes: dict) -> str:
        settings = settings_for("prod", changes)
        with pytest.raises(ConfigError) as e:
            serving.validate(settings, capacity.plan(settings))
        return str(e.value)

    small_nvme = {"llmserving:catalog": {"instanceTypes": {"g5.12xlarge": {"instanceStoreGb": 50}}}}
    assert problems(small_nvme).endswith(
        "llmserving:gpuPools[1].instanceTypes: g5.12xlarge has 50 GB of instance store; the plan puts 4 pods of "
        "models[1] (llama-3-1-8b) on each g5.12xlarge, each asking 13 GiB of ephemeral storage (model cache, scratch, "
        "adapters), and the kubelet leaves 41 GiB of 47 GiB allocatable: drop g5.12xlarge from the pool")
    # No instance store: the root volume carries the pods' scratch.
    pools = stack_value("prod", "llmserving:gpuPools")
    pools[1]["rootVolumeGib"] = 100
    assert problems({"llmserving:catalog": {"instanceTypes": {"g5.12xlarge": {"instanceStoreGb": 0}}},
                     "llmserving:gpuPools": pools, "llmserving:serving": {"figures": {"scratchGib": 40}}}).endswith(
        "llmserving:gpuPools[1].rootVolumeGib: got 100; the plan puts 4 pods of models[1] (llama-3-1-8b) on each "
        "g5.12xlarge, each asking 43 GiB of ephemeral storage (model cache, scratch, adapters), and the kubelet "
        "leaves 89 GiB of 100 GiB allocatable: set at least 200")
    shipped = settings_for("prod")
    serving.validate(shipped, capacity.plan(shipped))  # 3,800 GB of NVMe per g5.12xlarge
