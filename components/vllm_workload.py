"""VllmWorkload: one model served by vLLM on Kubernetes.

From one model spec it renders, in namespace `args.namespace`:

- a Deployment (the model fits one node: pipeline_parallel == 1) or a
  LeaderWorkerSet `leaderworkerset.x-k8s.io/v1` (pipeline_parallel > 1: one
  group = PP pods of TP GPUs each; the leader starts the Ray head and then
  `vllm serve` with the Ray executor, workers join `$(LWS_LEADER_ADDRESS)`;
  `RecreateGroupOnPodRestart` because a group that lost a pod is useless);
- a Service (leaders only for a LeaderWorkerSet), a PodDisruptionBudget, a
  NetworkPolicy (only the gateway/router pods and the Prometheus namespace
  reach port 8000; group members reach each other for Ray/NCCL), a KEDA
  ScaledObject on `vllm:num_requests_waiting{model_name=...}` that scales
  the Deployment or the LeaderWorkerSet (whole groups), and a PodMonitor.

Model cache: node-local disk with an init download step. An init container
(the vLLM image itself, which ships huggingface_hub) downloads the checkpoint
into an emptyDir on the node's disk (the GPU instances' NVMe instance store
when the node class assembles it as RAID0), then vLLM loads it from there
with HF_HUB_OFFLINE=1. Chosen over a PVC because EBS volumes are zonal and
ReadWriteOnce (they pin replicas to one zone and cannot be shared, against
the zone spread), and EFS/FSx add a shared throughput bottleneck and cost
for files that are read once per start; chosen over a streaming loader
because that needs the weights mirrored to S3 first. The download does not
count against the startupProbe, whose budget only covers loading; it runs
in the pod's own zone through the S3/NAT path. It fetches only what vLLM
loads: config and tokenizer files first, then exactly the safetensors files
that `model.safetensors.index.json` references (or the single
`model.safetensors`). Duplicate copies of the weights are never fetched:
`original/*` (Llama's native checkpoint) and `consolidated*` (Mistral's
native single-file checkpoint, shipped beside the sharded one), so the
cache holds one copy of the weights and the emptyDir's size limit (weights x
headroom) covers it. The Xet chunk cache of huggingface_hub is turned off
(it would otherwise grow up to 10 GB inside the same emptyDir).

Autoscaling: KEDA owns the replica count of the Deployment/LeaderWorkerSet it
scales, so Pulumi ignores `spec.replicas` on them after creation (otherwise
every `pulumi up` would reset the count KEDA chose).

Secrets: the Hugging Face token (init container only) and the vLLM API key
(`VLLM_API_KEY`, read by the server) come from Kubernetes Secrets by name;
neither is ever on a command line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.errors import ArgsError
from components.vllm_server_args import VllmServerSpec, spec_problems, vllm_server_args

MODEL_DIR = "/models"
ADAPTER_DIR = "/adapters"
LWS_API = "leaderworkerset.x-k8s.io/v1"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


@dataclass(frozen=True)
class Placement:
    """Where replicas run: the pool's scheduling and the node shape."""

    pool: str
    instance_type: str
    node_gpus: int
    gpu_memory_gb: float
    efa: bool
    efa_interfaces: int
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]


@dataclass(frozen=True)
class AdapterStore:
    """Tenants' LoRA adapters: the mapping ConfigMap and how pods read S3."""

    # ConfigMap with keys `bucket` (adapter store name) and `adapters.tsv`
    # (adapter<TAB>tenant per line); adapters live under s3://<bucket>/tenants/<tenant>/<adapter>/.
    mapping_config_map: str
    service_account: str
    runtime_loading: bool
    # (adapter name, tenant id) for --lora-modules when runtime loading is off.
    adapters: tuple[tuple[str, str], ...] = ()
    sync_image: str = ""
    sync_interval_seconds: int = 60
    cache_gib: int = 50


@dataclass(frozen=True)
class Autoscaling:
    prometheus_url: str
    queue_depth_per_replica: float
    polling_seconds: int
    cooldown_seconds: int


@dataclass(frozen=True)
class Operations:
    startup_budget_seconds: int
    startup_period_seconds: int
    prestop_sleep_seconds: int
    drain_seconds: int
    shm_gib: int
    cache_gib: int
    cpu: int
    memory_gib: int
    ray_port: int = 6379


@dataclass(frozen=True)
class VllmWorkloadArgs:
    namespace: str
    source: str  # Hugging Face repo id the init step downloads
    server: VllmServerSpec
    image: str
    gpus_per_pod: int
    placement: Placement
    replicas: int
    min_replicas: int
    max_replicas: int
    weights_gb: float
    kv_cache_gb: float
    ops: Operations
    autoscaling: Optional[Autoscaling]
    gateway_pod_labels: dict[str, str]
    prometheus_namespace: Optional[str]
    # Subnets of a load balancer that targets the pods directly (ALB IP
    # targets through a TargetGroupBinding); empty: only the gateway pods.
    load_balancer_cidrs: tuple[str, ...] = ()
    hf_token_secret: Optional[str] = None
    api_key_secret: Optional[str] = None
    adapters: Optional[AdapterStore] = None
    pod_monitor: bool = True
    labels: dict[str, str] = field(default_factory=dict)


def validate_vllm_workload_args(args: VllmWorkloadArgs) -> None:
    """Raises ArgsError naming every problem; pure (no resources)."""
    p: list[str] = []
    s, pl = args.server, args.placement
    p += [f"server.{x}" for x in spec_problems(s)]
    if not args.image or ":" not in args.image.rsplit("/", 1)[-1] or args.image.endswith(":latest"):
        p.append(f"image: got {args.image!r}; pin a tag such as vllm/vllm-openai:v0.11.1 (never :latest)")
    if s.tensor_parallel != args.gpus_per_pod:
        p.append(f"server.tensor_parallel: got {s.tensor_parallel}; a pod has {args.gpus_per_pod} GPUs and tensor "
                 f"parallelism must use exactly the pod's GPUs")
    if s.tensor_parallel > pl.node_gpus:
        p.append(f"server.tensor_parallel: got {s.tensor_parallel}; {pl.instance_type} has {pl.node_gpus} GPUs per node")
    if s.pipeline_parallel > 1 and not pl.efa:
        p.append(f"server.pipeline_parallel: got {s.pipeline_parallel}; pool {pl.pool!r} ({pl.instance_type}) has no EFA, "
                 f"and a model split across nodes needs it")
    if s.pipeline_parallel > 1 and s.tensor_parallel != pl.node_gpus:
        p.append(f"server.tensor_parallel: got {s.tensor_parallel}; a multi-node replica uses every GPU of each node "
                 f"({pl.node_gpus} on {pl.instance_type})")
    usable = pl.gpu_memory_gb * s.tensor_parallel * s.pipeline_parallel * s.gpu_memory_utilization
    if args.weights_gb + args.kv_cache_gb > usable:
        p.append(f"weights_gb: model {s.served_model_name!r} needs {args.weights_gb + args.kv_cache_gb:,.0f} GB (weights "
                 f"{args.weights_gb:,.0f} + KV cache {args.kv_cache_gb:,.0f}) but TP {s.tensor_parallel} x PP "
                 f"{s.pipeline_parallel} x {pl.gpu_memory_gb:g} GB x {s.gpu_memory_utilization:g} gives {usable:,.0f} GB")
    if s.lora is not None and args.adapters is None:
        p.append("adapters: LoRA is enabled on the server but no adapter store is given")
    if not 0 <= args.min_replicas <= args.max_replicas:
        p.append(f"min_replicas: got {args.min_replicas}; must be between 0 and max_replicas ({args.max_replicas})")
    if not args.min_replicas <= args.replicas <= args.max_replicas:
        p.append(f"replicas: got {args.replicas}; must be between min_replicas {args.min_replicas} and max_replicas "
                 f"{args.max_replicas}")
    if args.ops.startup_budget_seconds < args.ops.startup_period_seconds:
        p.append(f"ops.startup_budget_seconds: got {args.ops.startup_budget_seconds}; must cover at least one probe period")
    if not args.gateway_pod_labels:
        p.append("gateway_pod_labels: empty; the NetworkPolicy needs the gateway's pod labels (an empty selector would "
                 "admit every pod)")
    if p:
        raise ArgsError("VllmWorkload", p)


# What the download step fetches before the weights: model config, generation
# config, tokenizer (HF fast tokenizer JSON, sentencepiece model, tiktoken or
# BPE files) and the safetensors index. Never the duplicate native checkpoints.
DOWNLOAD_METADATA = ("*.json", "tokenizer.model", "*.tiktoken", "merges.txt", "vocab.txt")
DOWNLOAD_SKIP = ("original/*", "consolidated*", "*.pth", "*.pt", "*.bin", "*.gguf", "*.onnx")
SAFETENSORS_INDEX = "model.safetensors.index.json"
SINGLE_SAFETENSORS = "model.safetensors"


def download_script(source: str, dest: str) -> str:
    """Python run by the init container: metadata first, then only the safetensors the index references."""
    return "\n".join([
        "import json, os, sys",
        "from huggingface_hub import snapshot_download",
        f"repo, dest = {source!r}, {dest!r}",
        f"snapshot_download(repo_id=repo, local_dir=dest, allow_patterns={list(DOWNLOAD_METADATA)!r}, "
        f"ignore_patterns={list(DOWNLOAD_SKIP)!r})",
        f"index = os.path.join(dest, {SAFETENSORS_INDEX!r})",
        "if os.path.exists(index):",
        "    with open(index) as f:",
        "        weights = sorted(set(json.load(f)['weight_map'].values()))",
        "else:",
        f"    weights = [{SINGLE_SAFETENSORS!r}]",
        "snapshot_download(repo_id=repo, local_dir=dest, allow_patterns=weights)",
        "missing = [w for w in weights if not os.path.isfile(os.path.join(dest, w))]",
        "if missing:",
        "    sys.exit(f'{repo}: safetensors weights {missing} not found; vLLM loads sharded or single safetensors')",
    ])


def _selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}


def _meta(name: str, namespace: str, labels: dict[str, str]) -> dict:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def render(args: VllmWorkloadArgs) -> list[dict]:
    """Every Kubernetes object of the workload as plain dicts (pure; validated by tests)."""
    validate_vllm_workload_args(args)
    s, ops, pl = args.server, args.ops, args.placement
    name = s.served_model_name
    multinode = s.pipeline_parallel > 1
    sel = _selector_labels(name)
    labels = {**args.labels, **sel, "app.kubernetes.io/component": "engine", "app.kubernetes.io/part-of": "llmserving",
              "llmserving.io/model": name, "llmserving.io/pool": pl.pool}
    serving_labels = {**labels, "llmserving.io/serves": "true"}
    port = s.port

    gpu_res = {"nvidia.com/gpu": str(args.gpus_per_pod)}
    if multinode:
        gpu_res["vpc.amazonaws.com/efa"] = str(pl.efa_interfaces)
    resources = {
        "requests": {"cpu": str(ops.cpu), "memory": f"{ops.memory_gib}Gi",
                     "ephemeral-storage": f"{ops.cache_gib}Gi", **gpu_res},
        "limits": {"memory": f"{ops.memory_gib}Gi", **gpu_res},
    }
    env: list[dict] = [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HF_HOME", "value": f"{MODEL_DIR}/.hf"}]
    if args.api_key_secret:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": args.api_key_secret, "key": "api-key"}}})
    capabilities: dict[str, list[str]] = {"drop": ["ALL"]}
    if multinode:
        env += [{"name": "FI_PROVIDER", "value": "efa"}, {"name": "FI_EFA_USE_DEVICE_RDMA", "value": "1"}]
        capabilities["add"] = ["IPC_LOCK"]
    ad = args.adapters
    if s.lora is not None and ad is not None and ad.runtime_loading:
        # Runtime loading only of adapters on local disk, i.e. those the tenant
        # mapping lists (the sync step pulls nothing else).
        env += [{"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"},
                {"name": "VLLM_PLUGINS", "value": "lora_filesystem_resolver"},
                {"name": "VLLM_LORA_RESOLVER_CACHE_DIR", "value": ADAPTER_DIR}]

    model_path = f"{MODEL_DIR}/{name}"
    vllm_args = vllm_server_args(s)
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "model-cache", "mountPath": MODEL_DIR}]
    volumes: list[dict] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{ops.shm_gib}Gi"}},
        {"name": "model-cache", "emptyDir": {"sizeLimit": f"{ops.cache_gib}Gi"}},
    ]
    download_env: list[dict] = [{"name": "HF_HOME", "value": f"{MODEL_DIR}/.hf"},
                                {"name": "HF_XET_CHUNK_CACHE_SIZE_BYTES", "value": "0"}]
    if args.hf_token_secret:
        download_env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": args.hf_token_secret, "key": "token"}}})
    init_containers: list[dict] = [{
        "name": "model-download", "image": args.image,
        "command": ["python3", "-c", download_script(args.source, model_path)],
        "env": download_env, "volumeMounts": [{"name": "model-cache", "mountPath": MODEL_DIR}],
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }]
    if s.lora is not None and ad is not None:
        volumes += [{"name": "adapters", "emptyDir": {"sizeLimit": f"{ad.cache_gib}Gi"}},
                    {"name": "tenant-adapters", "configMap": {"name": ad.mapping_config_map}}]
        mounts.append({"name": "adapters", "mountPath": ADAPTER_DIR, "readOnly": True})
        sync_once = (f"while IFS=$'\\t' read -r adapter tenant; do [ -n \"$adapter\" ] || continue; "
                     f"aws s3 sync --only-show-errors \"s3://$(cat /etc/llmserving/bucket)/tenants/$tenant/$adapter/\" "
                     f"\"{ADAPTER_DIR}/$adapter/\"; done < /etc/llmserving/adapters.tsv")
        sync_mounts = [{"name": "adapters", "mountPath": ADAPTER_DIR},
                       {"name": "tenant-adapters", "mountPath": "/etc/llmserving", "readOnly": True}]
        sync = {"image": ad.sync_image, "volumeMounts": sync_mounts,
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
        if ad.runtime_loading:
            # Native sidecar: keeps pulling newly mapped adapters without a restart.
            init_containers.append({**sync, "name": "adapter-sync", "restartPolicy": "Always",
                                    "command": ["/bin/bash", "-c",
                                                f"while true; do {sync_once}; sleep {ad.sync_interval_seconds}; done"]})
        else:
            init_containers.append({**sync, "name": "adapter-sync", "command": ["/bin/bash", "-c", sync_once]})

    probe = {"httpGet": {"path": "/health", "port": "http"}}
    failure_threshold = -(-ops.startup_budget_seconds // ops.startup_period_seconds)
    server = {
        "name": "vllm", "image": args.image, "env": env, "resources": resources, "volumeMounts": mounts,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "startupProbe": {**probe, "periodSeconds": ops.startup_period_seconds, "failureThreshold": failure_threshold,
                         "timeoutSeconds": 5},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4, "timeoutSeconds": 10},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(ops.prestop_sleep_seconds)]}}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": capabilities},
    }
    if multinode:
        wait_py = ("import os, ray; ray.init(address='auto', logging_level='ERROR'); "
                   "raise SystemExit(0 if sum(n['Alive'] for n in ray.nodes()) >= int(os.environ['LWS_GROUP_SIZE']) else 1)")
        server["command"] = ["/bin/bash", "-c"]
        server["args"] = [f"ray start --head --port={ops.ray_port} && "
                          f"until python3 -c {shlex.quote(wait_py)}; do sleep 5; done && "
                          f"exec vllm serve {shlex.join(vllm_args)}"]
    else:
        server["command"] = ["vllm", "serve"]
        server["args"] = vllm_args

    grace = ops.prestop_sleep_seconds + ops.drain_seconds
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": dict(sel)}}]

    def pod_spec(containers: list[dict], inits: list[dict]) -> dict:
        spec = {"containers": containers, "initContainers": inits, "volumes": volumes,
                "nodeSelector": dict(pl.node_selector), "tolerations": list(pl.tolerations),
                "topologySpreadConstraints": spread, "terminationGracePeriodSeconds": grace,
                "automountServiceAccountToken": False, "enableServiceLinks": False}
        if ad is not None and s.lora is not None:
            spec["serviceAccountName"] = ad.service_account
        return spec

    objs: list[dict] = []
    if not multinode:
        objs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, args.namespace, labels),
                     "spec": {"replicas": args.replicas, "selector": {"matchLabels": dict(sel)},
                              "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                              "template": {"metadata": {"labels": serving_labels},
                                           "spec": pod_spec([server], init_containers)}}})
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        svc_selector = dict(sel)
    else:
        worker_cmd = f"ray start --address=$(LWS_LEADER_ADDRESS):{ops.ray_port} --block"
        worker = {"name": "ray-worker", "image": args.image, "command": ["/bin/bash", "-c"], "args": [worker_cmd],
                  "env": env, "resources": resources, "volumeMounts": mounts,
                  "securityContext": {"allowPrivilegeEscalation": False, "capabilities": capabilities}}
        objs.append({"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "metadata": _meta(name, args.namespace, labels),
                     "spec": {"replicas": args.replicas, "startupPolicy": "LeaderCreated",
                              "rolloutStrategy": {"type": "RollingUpdate",
                                                  "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}},
                              "leaderWorkerTemplate": {
                                  "size": s.pipeline_parallel, "restartPolicy": "RecreateGroupOnPodRestart",
                                  "leaderTemplate": {"metadata": {"labels": serving_labels},
                                                     "spec": pod_spec([server], init_containers)},
                                  "workerTemplate": {"metadata": {"labels": labels},
                                                     "spec": pod_spec([worker], init_containers[:1])}}}})
        target = {"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": name}
        svc_selector = {**sel, WORKER_INDEX_LABEL: "0"}

    objs.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, args.namespace, labels),
                 "spec": {"type": "ClusterIP", "selector": svc_selector,
                          "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}})
    objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, args.namespace, labels),
                 "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(sel)}}})
    peers: list[dict] = [{"podSelector": {"matchLabels": dict(args.gateway_pod_labels)}}]
    if args.prometheus_namespace:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": args.prometheus_namespace}}})
    peers += [{"ipBlock": {"cidr": cidr}} for cidr in args.load_balancer_cidrs]
    ingress = [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}]
    if multinode:
        # Ray and NCCL between the pods of one group (any port).
        ingress.append({"from": [{"podSelector": {"matchLabels": dict(sel)}}]})
    objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": _meta(name, args.namespace, labels),
                 "spec": {"podSelector": {"matchLabels": dict(sel)}, "policyTypes": ["Ingress"], "ingress": ingress}})
    if args.autoscaling is not None:
        a = args.autoscaling
        query = f'sum(vllm:num_requests_waiting{{model_name="{name}"}})'
        objs.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                     "metadata": _meta(name, args.namespace, labels),
                     "spec": {"scaleTargetRef": target, "minReplicaCount": args.min_replicas,
                              "maxReplicaCount": args.max_replicas, "pollingInterval": a.polling_seconds,
                              "cooldownPeriod": a.cooldown_seconds,
                              "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                                  "scaleDown": {"stabilizationWindowSeconds": a.cooldown_seconds,
                                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}}}},
                              "triggers": [{"type": "prometheus", "name": "queue-depth", "metadata": {
                                  "serverAddress": a.prometheus_url, "query": query,
                                  "threshold": f"{a.queue_depth_per_replica:g}", "ignoreNullValues": "true"}}]}})
    if args.pod_monitor:
        objs.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                     "metadata": _meta(name, args.namespace, labels),
                     "spec": {"selector": {"matchLabels": {**sel, "llmserving.io/serves": "true"}},
                              "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}})
    return objs


def create_object(name: str, obj: dict, opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """A Pulumi resource for one rendered object (typed for core kinds, CustomResource otherwise)."""
    typed = {
        ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
        ("v1", "Service"): k8s.core.v1.Service,
        ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
        ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
        ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
        ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
        ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
        ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    }
    key = (obj["apiVersion"], obj["kind"])
    # Top-level fields become keyword args (snake_case); nested dicts keep their camelCase keys.
    body = {re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), k): v
            for k, v in obj.items() if k not in ("apiVersion", "kind")}
    if key in typed:
        return typed[key](name, opts=opts, **body)
    return k8s.apiextensions.CustomResource(name, api_version=obj["apiVersion"], kind=obj["kind"], opts=opts,
                                            metadata=obj["metadata"], spec=obj["spec"])


class VllmWorkload(pulumi.ComponentResource):
    service_name: str
    kind: str

    def __init__(self, name: str, args: VllmWorkloadArgs, opts: Optional[pulumi.ResourceOptions] = None):
        objs = render(args)  # validates before anything exists
        super().__init__("llmserving:vllm_workload:VllmWorkload", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.kind = objs[0]["kind"]
        self.service_name = args.server.served_model_name
        scaled = {"Deployment", "LeaderWorkerSet"} if args.autoscaling is not None else set()
        # KEDA owns the replica count of what it scales; Pulumi sets it only at creation.
        keda_owned = pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"])
        self.resources = {o["kind"]: create_object(f"{name}-{o['kind'].lower()}", o,
                                                   keda_owned if o["kind"] in scaled else child)
                          for o in objs}
        self.register_outputs({"kind": self.kind, "service": self.service_name, "namespace": args.namespace})
