"""VllmWorkload: one model served by vLLM on Kubernetes.

From one model spec it renders, in namespace `args.namespace`:

- a Deployment (the model fits one node: pipeline_parallel == 1) or a
  LeaderWorkerSet `leaderworkerset.x-k8s.io/v1` (pipeline_parallel > 1: one
  group = PP pods of TP GPUs each; the leader starts the Ray head and then
  `vllm serve` with the Ray executor, workers join `$LWS_LEADER_ADDRESS`,
  retrying while the head is not up; `RecreateGroupOnPodRestart` because a
  group that lost a pod is useless);
- a traffic Service `<model>-http` (leaders only for a LeaderWorkerSet; never
  named like the LeaderWorkerSet, whose controller creates its own headless
  Service under that name), a PodDisruptionBudget, a NetworkPolicy (only the
  gateway/router pods, the load balancer's subnets and the Prometheus
  namespace reach port 8000; group members reach each other for Ray/NCCL), a
  KEDA ScaledObject on `vllm:num_requests_waiting{model_name=...}` that scales
  the Deployment or the LeaderWorkerSet (whole groups), and a PodMonitor.

Weights: streamed from the stack's model mirror, never from the Hub. A
mirror Job (`<model>-mirror-<revision>`, components/mirror_script.py) copies
the pinned Hub revision once into `s3://<mirror>/<source>/<revision>/` with
the Hugging Face token; the Deployment/LeaderWorkerSet waits for it
(pulumi-kubernetes awaits a Job's Complete condition). vLLM then reads the
weights straight from S3 into GPU memory with `--load-format runai_streamer`
(vllm v0.11.1 vllm/model_executor/model_loader/runai_streamer_loader.py; the
vllm/vllm-openai image installs runai-model-streamer[s3,gcs],
docker/Dockerfile at v0.11.1): config and tokenizer go to VLLM_ASSETS_CACHE on
the scratch volume, the weights never touch the node's disk, so the pod
requests no model-sized ephemeral storage. Credentials: the weights service
account's Pod Identity role (read-only, that model's prefix only); region:
AWS_REGION (Pod Identity gives no region, IMDS is out of reach at hop limit
1). HF_HUB_OFFLINE=1 keeps vLLM off the Hub. Where streaming does not apply
(`load_format` safetensors or pt, e.g. a checkpoint the Run:ai loader cannot
read: it reads safetensors only), an init container copies the prefix from
the mirror (aws-cli, same role) into the node-level cache (NodeCache:
`<model>/weights/<revision>/`, skipped when a complete copy is there) and vLLM
loads from there: still never the Hub.

Node-level cache (NodeCache): a hostPath (type Directory) the node creates at
boot for the serving uid; each model's compile caches (vLLM, Triton,
TorchInductor, FlashInfer JIT) and fallback weights live in its own
subdirectory, so a restart on the same node skips the compile and the copy.
The engine starts behind NODE_CACHE_LAUNCHER (drops compile caches a killed
replica left unparseable, umask 002), and the pods select the node label of
nodes that create the directory (NodeCache.node_label).

Start-up timeline and awaits: node launch + image pull + what the init
containers write (fallback copy, static adapters) + the startup probe budget
(all from infra/startup.py) is one replica's start-up (`pod_ready_seconds`); the
Deployment/LeaderWorkerSet await timeouts, the Deployment's progress deadline
and the Ray join window derive from it. Rollouts step by the pool's headroom
(`Rollout`, chosen by infra/serving.py).

Identity: every container runs as a non-root uid with RuntimeDefault seccomp,
HOME and pod-scoped caches on emptyDirs (compile caches in the node cache),
except the engines of an EFA group (uid 0 with only IPC_LOCK: Kubernetes
grants added capabilities to root only; the serving gid, which the node
cache's setgid 2775 root lets write).

LoRA: static adapters start through STATIC_LORA_LAUNCHER (only adapters that
can load); runtime adapters are fetched on their first request by the
resolver plugin (components/lora_s3_resolver.py, a ConfigMap on PYTHONPATH)
and the sync sidecar (`adapter_sync_script`) keeps the cache at its slots,
least recently active adapters evicted.

Autoscaling: KEDA owns the replica count of the Deployment/LeaderWorkerSet it
scales, so Pulumi ignores `spec.replicas` on them after creation (otherwise
every `pulumi up` would reset the count KEDA chose).

Secrets: the Hugging Face token (mirror Job only) and the vLLM API key
(`VLLM_API_KEY`, read by the server and the adapter sync) come from
Kubernetes Secrets by name; neither is ever on a command line.
"""

from __future__ import annotations

import hashlib
import json
import math
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
    # Share of the cache the sync fills before it skips further adapters (the emptyDir's
    # sizeLimit would otherwise evict the whole pod).
    fill_ratio: float = 0.9
    sync_scratch_mib: int = 256
    # Runtime loading: adapters a pod keeps on disk at most (infra/serving.py adapter_slots).
    slots: int = 64
    # Pod Identity injects credentials, not a region, and IMDS is one hop away from the node
    # only (hop limit 1): the aws CLI needs the region from the environment
    # (EKS user guide pod-id-how-it-works; aws-cli configuration precedence).
    region: str = ""


@dataclass(frozen=True)
class Autoscaling:
    prometheus_url: str
    queue_depth_per_replica: float
    polling_seconds: int
    cooldown_seconds: int


@dataclass(frozen=True)
class Operations:
    # Startup probe budget (model load). With the timeline figures below it also sizes the
    # Kubernetes await timeouts and the Ray join window: one source of truth.
    startup_budget_seconds: int
    startup_period_seconds: int
    prestop_sleep_seconds: int
    drain_seconds: int
    shm_gib: int
    cache_gib: int
    cpu: int
    memory_gib: int
    ray_port: int = 6379
    # Start-up timeline of one replica before its load starts.
    node_ready_seconds: int = 0
    image_pull_seconds: int = 0
    download_seconds: int = 0
    # Static LoRA: the init container fetches every mapped adapter before vLLM starts.
    adapter_sync_seconds: int = 0
    await_margin_seconds: int = 0
    # HOME, /tmp and compile caches.
    scratch_gib: int = 10
    # vLLM's HTTP keep-alive (VLLM_HTTP_TIMEOUT_KEEP_ALIVE); 0 keeps vLLM's default (5 s).
    keepalive_seconds: int = 0
    run_as_user: int = 1000
    fs_group: int = 1000
    ray_join_retry_seconds: int = 5


@dataclass(frozen=True)
class MirrorJob:
    """The one-time copy of the pinned Hub revision into the mirror (components/mirror_script.py)."""

    image: str
    revision: str
    service_account: str
    hf_token_secret: Optional[str] = None
    concurrency: int = 8
    part_mib: int = 64
    keep_revisions: int = 2
    # activeDeadlineSeconds of the Job and its await timeout (the copy at the Hub's bandwidth, with margin).
    deadline_seconds: int = 3600
    backoff_limit: int = 3
    cpu: str = "2"
    memory_gib: int = 4


@dataclass(frozen=True)
class Weights:
    """Where vLLM reads the weights: the model's prefix of the stack's mirror bucket."""

    bucket: str
    prefix: str  # <source>/<revision>/
    # runai_streamer: stream from S3; safetensors / pt: copy the prefix into the pod's model-cache first.
    load_format: str
    # Pod Identity service account with read-only access to the prefix (None: the adapter service account).
    service_account: Optional[str]
    region: str
    # Run:ai streamer: S3 client threads, and the CPU buffer per process (bytes).
    stream_concurrency: int = 32
    stream_memory_limit_bytes: int = 0
    # The fallback copy (aws-cli image).
    copy_image: str = ""
    mirror: Optional[MirrorJob] = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def streams(self) -> bool:
        return self.load_format == "runai_streamer"

    @property
    def revision(self) -> str:
        """The revision segment of `<source>/<revision>/`."""
        return self.prefix.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Rollout:
    """Rolling update step, chosen from the pool's headroom (infra/serving.py rollout())."""

    max_surge: int = 0
    max_unavailable: int = 1


@dataclass(frozen=True)
class NodeCache:
    """The node-level cache: a hostPath directory on the node (infra/eks_catalog.py NODE_CACHE_HOST_PATH, on
    the NVMe array where the node has one) that outlives pods, so a replica restarted on the same node finds
    its compile caches and (fallback) weights.

    The node creates `host_path` at boot owned by the serving uid/gid, after the array is mounted and before
    kubelet starts (components/gpu_node_group.py node_cache_boot_script). kubelet would otherwise create a
    DirectoryOrCreate hostPath as root 0755 (kubernetes pkg/volume/hostpath/host_path.go makeDir, v1.33) and
    fsGroup never applies to a hostPath (its volume attributes say Managed: false, same file), so the pod
    mounts it with type Directory: a node without it fails the mount visibly instead of writing as root.
    vLLM creates the per-model subdirectories itself (os.makedirs, as the serving uid)."""

    host_path: str
    mount_path: str = "/var/cache/llmserving"
    # The node label (key, value) every node that creates `host_path` carries (infra/eks_catalog.py
    # NODE_CACHE_LABEL): the pods select it, so they never land on a node that predates the directory (a
    # Karpenter node drifting after a userData change keeps running until replaced). None: no selector.
    node_label: Optional[tuple[str, str]] = None


@dataclass(frozen=True)
class VllmWorkloadArgs:
    namespace: str
    source: str  # Hugging Face repo id (mirrored, never read by serving pods)
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
    api_key_secret: Optional[str] = None
    adapters: Optional[AdapterStore] = None
    weights: Optional[Weights] = None
    pod_monitor: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    rollout: Rollout = field(default_factory=Rollout)
    # The node-level cache for compile caches and fallback weights (None: both on pod-scoped emptyDirs).
    node_cache: Optional[NodeCache] = None
    # What every object waits for: the namespace, Secrets, CRDs, the Pod Identity
    # association, and a node source for the pods (system nodes, the GPU pool).
    depends_on: tuple[pulumi.Resource, ...] = ()


# Suffix of the traffic Service. Not the model name: that is the LeaderWorkerSet's name, and
# the LWS controller creates its headless Service under it (the pods resolve LWS_LEADER_ADDRESS
# through it) and skips creating it when a Service of that name already exists
# (kubernetes-sigs/lws v0.10.0 pkg/controllers/leaderworkerset_controller.go reconcileHeadlessServices,
# pkg/utils/controller/controller_utils.go CreateHeadlessServiceIfNotExists).
TRAFFIC_SERVICE_SUFFIX = "-http"


def traffic_service_name(model: str) -> str:
    return f"{model}{TRAFFIC_SERVICE_SUFFIX}"


# What may appear in a node cache path segment (a model name is a DNS label; a revision a SHA or a branch).
_PATH_SEGMENT = re.compile(r"[^A-Za-z0-9._-]")


def node_cache_dirs(mount_path: str, model: str, revision: str) -> dict[str, str]:
    """The model's directories inside the node cache (as the container sees it): one subdirectory per model,
    the same on every pod of that model on that node (so a restart or a second pod reuses it) and never
    shared between models. Compile caches: vLLM's VLLM_CACHE_ROOT (torch.compile artefacts under
    torch_compile_cache/<hash>/, where vLLM also points Inductor and Triton while it compiles:
    vllm/compilation/compiler_interface.py InductorAdaptor.initialize_cache at v0.11.1), Triton and
    TorchInductor for kernels built outside torch.compile, FlashInfer's JIT (FLASHINFER_WORKSPACE_BASE,
    flashinfer-python 0.5.2 flashinfer/jit/env.py, the version vLLM v0.11.1 requirements/cuda.txt pins).
    Weights (fallback only) under weights/<revision>/."""
    base = f"{mount_path.rstrip('/')}/{_PATH_SEGMENT.sub('_', model)}"
    return {"model": base, "weights": f"{base}/weights/{_PATH_SEGMENT.sub('_', revision) or 'rev'}",
            "vllm": f"{base}/vllm", "triton": f"{base}/triton", "torchinductor": f"{base}/torchinductor",
            "flashinfer": f"{base}/flashinfer"}


def fallback_model_path(args: VllmWorkloadArgs) -> str:
    """Where vLLM loads a copied (not streamed) checkpoint: the node cache's weights/<revision>, else the pod's
    model-cache emptyDir."""
    w = args.weights
    assert w is not None
    if args.node_cache is not None:
        return node_cache_dirs(args.node_cache.mount_path, args.server.served_model_name, w.revision)["weights"]
    return f"{MODEL_DIR}/{args.server.served_model_name}"


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
    w = args.weights
    if w is None:
        p.append("weights: none; serving pods read their weights from the stack's model mirror, never the Hub")
    else:
        if w.streams != s.model.startswith("s3://"):
            p.append(f"server.model: got {s.model!r} with load format {w.load_format!r}; runai_streamer streams "
                     f"{w.uri}, other formats load a local copy of it")
        if w.streams and s.model != w.uri:
            p.append(f"server.model: got {s.model!r}; the weights are at {w.uri}")
        if s.load_format != w.load_format:
            p.append(f"server.load_format: got {s.load_format!r}; the weights say {w.load_format!r}")
        if not w.region:
            p.append("weights.region: got ''; S3 clients in the pod have no IMDS to ask for the region")
        if not w.streams and not w.copy_image:
            p.append("weights.copy_image: got ''; the fallback copies the mirror into the pod's cache with it")
        if w.service_account is None and (s.lora is None or args.adapters is None):
            p.append("weights.service_account: none; the pods need a Pod Identity role to read the mirror")
        if not w.streams and s.model != fallback_model_path(args):
            p.append(f"server.model: got {s.model!r}; load format {w.load_format!r} loads the copy at "
                     f"{fallback_model_path(args)}")
        if w.mirror is not None and w.mirror.deadline_seconds < 60:
            p.append(f"weights.mirror.deadline_seconds: got {w.mirror.deadline_seconds}; too short for any copy")
    if args.adapters is not None and not args.adapters.region:
        p.append("adapters.region: got ''; the adapter sync calls S3 and has no IMDS to ask for the region")
    if not 0 <= args.min_replicas <= args.max_replicas:
        p.append(f"min_replicas: got {args.min_replicas}; must be between 0 and max_replicas ({args.max_replicas})")
    if not args.min_replicas <= args.replicas <= args.max_replicas:
        p.append(f"replicas: got {args.replicas}; must be between min_replicas {args.min_replicas} and max_replicas "
                 f"{args.max_replicas}")
    if args.ops.startup_budget_seconds < args.ops.startup_period_seconds:
        p.append(f"ops.startup_budget_seconds: got {args.ops.startup_budget_seconds}; must cover at least one probe period")
    if args.ops.run_as_user < 1 or args.ops.fs_group < 1:
        p.append(f"ops.run_as_user/fs_group: got {args.ops.run_as_user}/{args.ops.fs_group}; non-root ids are >= 1")
    r = args.rollout
    if r.max_surge < 0 or r.max_unavailable < 0 or r.max_surge + r.max_unavailable < 1:
        p.append(f"rollout: got maxSurge {r.max_surge}, maxUnavailable {r.max_unavailable}; both >= 0 and at least "
                 f"one >= 1, or a rollout never moves")
    if len(traffic_service_name(s.served_model_name)) > 63:
        p.append(f"server.served_model_name: got {s.served_model_name!r}; its Service "
                 f"{traffic_service_name(s.served_model_name)!r} exceeds the 63 characters of a DNS label")
    nc = args.node_cache
    if nc is not None:
        for key in ("host_path", "mount_path"):
            v = getattr(nc, key)
            if not re.match(r"^/[A-Za-z0-9._/-]+$", v) or "/../" in v + "/" or v.rstrip("/") in ("", "/"):
                p.append(f"node_cache.{key}: got {v!r}; an absolute path of letters, digits and . _ - / (not /)")
        if nc.mount_path.rstrip("/") in (SCRATCH_DIR, "/dev/shm", ADAPTER_DIR, PLUGIN_DIR):
            p.append(f"node_cache.mount_path: got {nc.mount_path!r}; it would hide another volume of the pod")
        if nc.node_label is not None and (len(nc.node_label) != 2 or not all(nc.node_label)
                                          or nc.node_label[0] in pl.node_selector):
            p.append(f"node_cache.node_label: got {nc.node_label!r}; a (key, value) pair the placement's "
                     f"nodeSelector does not already set")
    if not args.gateway_pod_labels:
        p.append("gateway_pod_labels: empty; the NetworkPolicy needs the gateway's pod labels (an empty selector would "
                 "admit every pod)")
    if p:
        raise ArgsError("VllmWorkload", p)


def mirror_container(*, image: str, source: str, revision: str, bucket: str, prefix: str, load_format: str,
                     region: str, hf_token_secret: Optional[str], concurrency: int, part_mib: int, keep_revisions: int,
                     run_as_user: int, cpu: str = "2", memory_gib: int = 4) -> dict:
    """The mirror Job's container: components/mirror_script.py in the pinned vLLM image (python3, boto3).

    It streams from the Hub to S3 (no disk beyond /tmp); the token comes from the Secret by name.
    """
    from components.model_mirror import MIRROR_SCRIPT, mirror_environment

    env = [{"name": k, "value": v} for k, v in mirror_environment(
        source=source, revision=revision, bucket=bucket, prefix=prefix, load_format=load_format, region=region,
        concurrency=concurrency, part_mib=part_mib, keep_revisions=keep_revisions).items()]
    env.append({"name": "HOME", "value": SCRATCH_DIR})
    if hf_token_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": hf_token_secret, "key": "token"}}})
    return {"name": "mirror", "image": image, "command": ["python3", "-c", MIRROR_SCRIPT], "env": env,
            "resources": {"requests": {"cpu": cpu, "memory": f"{memory_gib}Gi"},
                          "limits": {"memory": f"{memory_gib * 2}Gi"}},
            "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": run_as_user}}


def mirror_job_name(model: str, revision: str, spec: Optional[dict] = None) -> str:
    """One Job per model revision and Job spec: a Job's pod template is immutable (Kubernetes API,
    batch/v1 JobSpec.template), and pulumi-kubernetes replaces an object whose metadata.name changes
    (provider/pkg/provider/diff.go metadataForceNewProperties), so any change is a new Job, not a failed patch."""
    rev = re.sub(r"[^a-z0-9]", "", revision.lower())[:12] or "rev"
    digest = ("-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:6]) if spec else ""
    return f"{model[:63 - len(rev) - len(digest) - 8]}-mirror-{rev}{digest}"


# The copy's completion record in the destination: the mirror's own marker (components/mirror_script.py MARKER,
# written last there too), copied only after every other file arrived.
COPY_MARKER = ".llmserving-mirror"


def copy_script(uri: str, dest: str) -> str:
    """Fallback (no streaming): copy the model's mirror prefix into `dest`, from S3 only (never the Hub).

    Idempotent: a destination that holds the mirror's marker is a complete copy of that revision (a pinned
    revision never changes) and the container exits without a request, so a pod restarted on the same node,
    or a second pod of the model there, copies nothing. An interrupted copy resumes: `aws s3 sync` skips the
    files already there with the same size and time (aws/aws-cli 2.31.18 awscli/customizations/s3/syncstrategy/
    base.py SizeAndLastModifiedSync; a download gets the object's LastModified as its mtime, subscribers.py),
    and the marker comes last.
    umask 0002: the node cache root is group-writable (setgid, the serving gid), so what this uid creates stays
    writable for the model's other containers of the same gid (an EFA engine runs as uid 0 with that gid)."""
    d, marker = shlex.quote(dest), shlex.quote(f"{dest}/{COPY_MARKER}")
    return "\n".join([
        "set -eu",
        "umask 0002",
        f"if [ -f {marker} ]; then echo \"weights already complete in {dest}; nothing to copy\"; exit 0; fi",
        f"mkdir -p {d}",
        f"aws s3 sync --only-show-errors --exclude {shlex.quote(COPY_MARKER)} {shlex.quote(uri)} {shlex.quote(dest + '/')}",
        f"aws s3 cp --only-show-errors {shlex.quote(uri + COPY_MARKER)} {marker}",
    ]) + "\n"


# Files vLLM v0.11.1 loads a LoRA adapter from (vllm/lora/models.py from_local_checkpoint:
# adapter_config.json plus adapter_model.safetensors, .bin or .pt).
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt")

# Runs `vllm serve` with only the --lora-modules entries that can load. vLLM v0.11.1 raises at
# start-up (init_static_loras) when any entry fails to load, e.g. a tenant's adapter not uploaded
# yet (a first deploy has an empty bucket) or one above --max-lora-rank ("LoRA rank N is greater
# than max_lora_rank"): one missing upload would crash-loop every pod of the base model.
STATIC_LORA_LAUNCHER = f"""\
import json, os, sys
WEIGHTS = {ADAPTER_WEIGHTS!r}
def problem(path, max_rank):
    config = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(config):
        return "no adapter_config.json"
    if not any(os.path.isfile(os.path.join(path, w)) for w in WEIGHTS):
        return "no adapter weights (" + ", ".join(WEIGHTS) + ")"
    try:
        with open(config) as f:
            c = json.load(f)
    except (OSError, ValueError) as e:
        return "unreadable adapter_config.json (%s)" % e
    if c.get("peft_type", "LORA") != "LORA":
        return "peft_type %r is not LORA" % c.get("peft_type")
    rank = c.get("r")
    if not isinstance(rank, int) or not 0 < rank <= max_rank:
        return "rank %r is not within --max-lora-rank %d" % (rank, max_rank)
    return None
argv = sys.argv[1:]
max_rank = int(argv[argv.index("--max-lora-rank") + 1]) if "--max-lora-rank" in argv else 16
if "--lora-modules" in argv:
    i = argv.index("--lora-modules")
    j = i + 1
    while j < len(argv) and not argv[j].startswith("--"):
        j += 1
    keep = []
    for module in argv[i + 1:j]:
        name, _, path = module.partition("=")
        why = problem(path, max_rank)
        if why:
            print("llmserving: not serving LoRA adapter %s from %s: %s" % (name, path, why), file=sys.stderr)
        else:
            keep.append(module)
    argv = argv[:i] + (["--lora-modules"] + keep if keep else []) + argv[j:]
sys.stdout.flush()
os.execvp(argv[0], argv)
"""


# Runs before every engine process of a pod that keeps its compile caches in the node cache (NodeCache), then
# execs its arguments. vLLM v0.11.1 writes <VLLM_CACHE_ROOT>/torch_compile_cache/<hash>/rank_<i>_<j>/<prefix>/
# vllm_compile_cache.py in place (open "w" + write, no temp file and rename) and reads it back at start with
# `ast.literal_eval(f.read())` and no error handling (vllm/compilation/backends.py CompilerManager.save_to_file,
# initialize_cache); vllm-project/vllm#24601, the atomic write (#35174) came after 0.11.1. A replica killed
# mid-write leaves a file every later start of that model on that node fails to parse (crash loop), where a pod's
# emptyDir used to clear it. So: read each such file as vLLM does and remove the directory of any that does not
# parse (vLLM compiles into it again). A directory removed while another replica on the node writes it costs that
# replica only its cache file (its graphs are in memory); a removal that fails is left to the next start.
# umask 002: vLLM creates the cache subdirectories with the process umask (os.makedirs); under the default 022
# a model's pods that switch between uid 0 (EFA engine) and the serving uid, same gid, could not write each
# other's directories. The root is setgid 2775 (components/gpu_node_group.py node_cache_boot_script), so the gid
# is inherited and group write keeps them shared. Inherited by everything the exec'd program starts (Ray's raylet
# and its workers).
NODE_CACHE_LAUNCHER = """\
import ast, os, shutil, sys
os.umask(0o002)
root = os.path.join(os.environ.get("VLLM_CACHE_ROOT") or "/nonexistent", "torch_compile_cache")
bad = []
for d, _, files in os.walk(root):
    if "vllm_compile_cache.py" in files:
        path = os.path.join(d, "vllm_compile_cache.py")
        try:
            with open(path) as f:
                ast.literal_eval(f.read())
        except Exception as e:
            bad.append((d, path, "%s: %s" % (type(e).__name__, e)))
for d, path, why in bad:
    print("llmserving: removing compile cache %s: %s does not parse (%s)" % (d, path, why), file=sys.stderr)
    shutil.rmtree(d, ignore_errors=True)
sys.stderr.flush()
os.execvp(sys.argv[1], sys.argv[1:])
"""


def node_cache_launch(argv: list[str]) -> list[str]:
    """`argv` started through NODE_CACHE_LAUNCHER (python3: in the vLLM image, infra/image_catalog.py)."""
    return ["python3", "-c", NODE_CACHE_LAUNCHER, *argv]


def adapter_sync_script(*, adapter_dir: str, mapping_dir: str, runtime: bool, interval_seconds: int,
                        budget_kib: int, port: int, slots: int = 64) -> str:
    """Bash run by the adapter sync container (amazon/aws-cli image: bash, aws, curl, jq, coreutils).

    Each pass lists `tenants/` once (paginated, not one LIST per adapter) and downloads only
    complete uploads (adapter_config.json and weights) of mapped adapters, into a staging
    directory moved into place when whole, so vLLM never sees half an adapter. It stops adding
    adapters once the cache budget is used (the emptyDir's sizeLimit would evict the pod).
    An empty bucket is not an error: the base model serves without adapters.

    With `runtime`, it runs forever and registers each present adapter with vLLM through
    POST /v1/load_lora_adapter (so /v1/models lists it and the router can route to it; vLLM
    v0.11.1's filesystem resolver would only accept adapters whose base_model_name_or_path is
    the served model's path, /models/<name>, which customers' adapters never carry), and
    unloads and deletes adapters no longer mapped.
    """
    weights = "|".join(ADAPTER_WEIGHTS)
    lines = [
        "set -u",
        f"dir={shlex.quote(adapter_dir)}",
        f"mapping={shlex.quote(mapping_dir)}/adapters.tsv",
        f"bucket=\"$(cat {shlex.quote(mapping_dir)}/bucket)\"",
        f"budget_kib={int(budget_kib)}",
        f"api=http://127.0.0.1:{int(port)}",
        "stage=\"$dir/.staging\"",
        "auth=()",
        "if [ -n \"${VLLM_API_KEY:-}\" ]; then auth=(-H \"Authorization: Bearer $VLLM_API_KEY\"); fi",
        "log() { echo \"adapter-sync: $*\" >&2; }",
        "declare -A mapped=()",
        "read_mapping() {",
        "  mapped=()",
        "  while IFS=$'\\t' read -r adapter tenant; do",
        "    [ -n \"$adapter\" ] && [ -n \"$tenant\" ] && mapped[$adapter]=$tenant",
        "  done < \"$mapping\"",
        "}",
        "sync_pass() {",
        "  local listing key bytes rest tenant adapter file id used_kib size_kib",
        "  declare -A config=() weights=() size=()",
        "  if ! listing=\"$(aws s3api list-objects-v2 --bucket \"$bucket\" --prefix tenants/ "
        "--query 'Contents[].[Key,Size]' --output text)\"; then",
        "    log \"cannot list s3://$bucket/tenants/; serving what is already here\"",
        "    return 0",
        "  fi",
        "  while IFS=$'\\t' read -r key bytes; do",
        "    case \"$key\" in tenants/*/*/*) ;; *) continue ;; esac",
        "    rest=\"${key#tenants/}\"; tenant=\"${rest%%/*}\"; rest=\"${rest#*/}\"",
        "    adapter=\"${rest%%/*}\"; file=\"${rest#*/}\"; id=\"$tenant/$adapter\"",
        "    size[$id]=$(( ${size[$id]:-0} + ${bytes:-0} ))",
        "    case \"$file\" in",
        "      adapter_config.json) config[$id]=1 ;;",
        f"      {weights}) weights[$id]=1 ;;",
        "    esac",
        "  done <<< \"$listing\"",
        "  mkdir -p \"$stage\"",
        "  for adapter in \"${!mapped[@]}\"; do",
        "    id=\"${mapped[$adapter]}/$adapter\"",
        "    [ -e \"$dir/$adapter/.complete\" ] && continue",
        "    # Not uploaded (completely) yet: try again next pass.",
        "    [ -n \"${config[$id]:-}\" ] && [ -n \"${weights[$id]:-}\" ] || continue",
        "    used_kib=$(du -sk \"$dir\" | cut -f1)",
        "    size_kib=$(( (${size[$id]} + 1023) / 1024 ))",
        "    if [ $(( used_kib + size_kib )) -gt \"$budget_kib\" ]; then",
        "      log \"adapter cache full ($used_kib KiB used, budget $budget_kib KiB): not fetching $adapter ($size_kib KiB)\"",
        "      continue",
        "    fi",
        "    rm -rf \"$stage/$adapter\"",
        "    if aws s3 cp --recursive --only-show-errors \"s3://$bucket/tenants/$id/\" \"$stage/$adapter/\"; then",
        "      touch \"$stage/$adapter/.complete\"",
        "      rm -rf \"$dir/$adapter\" && mv \"$stage/$adapter\" \"$dir/$adapter\"",
        "      log \"fetched $adapter\"",
        "    else",
        "      rm -rf \"$stage/$adapter\"",
        "      log \"download of $adapter failed; retrying next pass\"",
        "    fi",
        "  done",
        "}",
    ]
    if not runtime:
        lines += ["read_mapping", "sync_pass", "exit 0"]
        return "\n".join(lines) + "\n"
    # Runtime loading: adapters are fetched on their first request by the resolver plugin inside vLLM
    # (components/lora_s3_resolver.py), not prefetched. This loop keeps the cache bounded (O(active
    # adapters)): it marks the adapters vLLM reports running or waiting (vllm:lora_requests_info, whose
    # series carry the time they were last set: vllm/v1/metrics/loggers.py at v0.11.1), and unloads through
    # the API, then deletes, what the mapping dropped and the least recently active adapters beyond the
    # slots (keeping a tenth free so the resolver can fetch). An adapter vLLM still has registered must stay
    # on disk (it reloads evicted CPU entries from lora_path), hence unload before delete.
    keep = max(1, int(slots) - max(1, int(slots) // 10))
    lines += [
        f"keep={keep}",
        # Activity counts from one interval before the first pass (series older than that are stale).
        f"since=$(( $(date +%s) - {int(interval_seconds)} ))",
        "mark_active() {",
        "  local metrics line labels value a",
        "  declare -gA active=()",
        "  metrics=\"$(curl -sf \"${auth[@]}\" \"$api/metrics\")\" || return 0",
        "  while IFS= read -r line; do",
        "    [[ $line =~ ^vllm:lora_requests_info\\{(.*)\\}\\ ([^ ]+)$ ]] || continue",
        "    labels=\"${BASH_REMATCH[1]}\"; value=\"${BASH_REMATCH[2]}\"",
        "    jq -en --argjson v \"$value\" --argjson s \"$since\" '$v >= $s' > /dev/null || continue",
        "    for key in running_lora_adapters waiting_lora_adapters; do",
        "      [[ $labels =~ $key=\\\"([^\\\"]*)\\\" ]] || continue",
        "      IFS=, read -ra names <<< \"${BASH_REMATCH[1]}\"",
        "      for a in \"${names[@]}\"; do",
        "        [ -n \"$a\" ] || continue",
        "        active[$a]=1",
        "        [ -d \"$dir/$a\" ] && touch \"$dir/$a/.last_active\"",
        "      done",
        "    done",
        "  done <<< \"$metrics\"",
        "}",
        "evict() {",
        "  local adapter=$1 why=$2 body",
        "  body=\"$(jq -nc --arg n \"$adapter\" '{lora_name: $n}')\"",
        "  curl -sf \"${auth[@]}\" -H 'Content-Type: application/json' -X POST -d \"$body\" "
        "\"$api/v1/unload_lora_adapter\" > /dev/null",
        "  rm -rf \"$dir/$adapter\"",
        "  log \"evicted $adapter ($why)\"",
        "}",
        "evict_pass() {",
        "  local path adapter n",
        "  local -a lru=()",
        "  for path in \"$dir\"/*/; do",
        "    [ -d \"$path\" ] || continue",
        "    adapter=\"$(basename \"$path\")\"",
        "    if [ -z \"${mapped[$adapter]:-}\" ]; then evict \"$adapter\" \"no longer mapped\"; continue; fi",
        "    [ -e \"$path/.complete\" ] || continue",
        "    lru+=(\"$(stat -c %Y \"$path/.last_active\" 2>/dev/null || stat -c %Y \"$path/.complete\") $adapter\")",
        "  done",
        "  n=${#lru[@]}",
        "  [ \"$n\" -gt \"$keep\" ] || return 0",
        "  while read -r _ adapter; do",
        "    [ \"$n\" -gt \"$keep\" ] || break",
        "    [ -n \"${active[$adapter]:-}\" ] && continue",
        "    evict \"$adapter\" \"least recently used; cache keeps $keep\"",
        "    n=$((n - 1))",
        "  done < <(printf '%s\\n' \"${lru[@]}\" | sort -n)",
        "}",
        "while true; do",
        "  read_mapping",
        "  now=$(date +%s)",
        "  mark_active",
        "  since=$now",
        "  evict_pass",
        f"  sleep {int(interval_seconds)}",
        "done",
    ]
    return "\n".join(lines) + "\n"


# The resolver plugin as a package on PYTHONPATH: vLLM finds general plugins through entry points
# (importlib.metadata scans sys.path for *.dist-info), vllm/plugins/__init__.py at v0.11.1.
PLUGIN_DIR = "/opt/llmserving/plugins"
RESOLVER_PLUGIN = "llmserving_lora_resolver"
RESOLVER_FILES = {"module": f"{RESOLVER_PLUGIN}.py", "metadata": f"{RESOLVER_PLUGIN}-1.0.dist-info/METADATA",
                  "entry-points": f"{RESOLVER_PLUGIN}-1.0.dist-info/entry_points.txt"}


def resolver_config_map(model: str) -> str:
    return f"{model}-lora-resolver"


def resolver_plugin_files() -> dict[str, str]:
    from pathlib import Path

    return {"module": Path(__file__).with_name("lora_s3_resolver.py").read_text(),
            "metadata": f"Metadata-Version: 2.1\nName: {RESOLVER_PLUGIN}\nVersion: 1.0\n",
            "entry-points": f"[vllm.general_plugins]\n{RESOLVER_PLUGIN} = {RESOLVER_PLUGIN}:register\n"}


def ray_worker_script(*, ray_port: int, join_seconds: int, retry_seconds: int) -> str:
    """A worker joins its group's Ray head, retrying while the head is not up yet.

    The leader downloads the weights before it starts the head; a worker that gave up after
    one failed `ray start` would restart, and RecreateGroupOnPodRestart would then recreate
    the whole group and restart both downloads (vllm-project/vllm
    examples/online_serving/multi-node-serving.sh retries the same way).
    """
    return "\n".join([
        f"deadline=$(( $(date +%s) + {int(join_seconds)} ))",
        "while true; do",
        f"  ray start --address=\"$LWS_LEADER_ADDRESS:{int(ray_port)}\" --block && exit 0",
        "  if [ \"$(date +%s)\" -ge \"$deadline\" ]; then",
        f"    echo \"ray worker: head $LWS_LEADER_ADDRESS:{int(ray_port)} not reachable in {int(join_seconds)} s\" >&2",
        "    exit 1",
        "  fi",
        f"  sleep {int(retry_seconds)}",
        "done",
    ]) + "\n"


def pod_ready_seconds(ops: Operations) -> int:
    """Node launch + image pull + weight download + adapter sync + load (the startup probe budget)."""
    return (ops.node_ready_seconds + ops.image_pull_seconds + ops.download_seconds + ops.adapter_sync_seconds
            + ops.startup_budget_seconds)


def await_seconds(args: VllmWorkloadArgs) -> tuple[int, int]:
    """(create, update) await timeouts of the Deployment/LeaderWorkerSet, in seconds.

    Creation starts every replica at once (nodes launch in parallel): one replica's start-up.
    A rollout replaces maxSurge + maxUnavailable replicas per wave, and KEDA may hold any count
    up to maxReplicas when it starts: ceil(maxReplicas / step) waves.
    """
    per_pod = pod_ready_seconds(args.ops)
    step = args.rollout.max_surge + args.rollout.max_unavailable
    waves = max(1, math.ceil(args.max_replicas / step))
    return per_pod + args.ops.await_margin_seconds, waves * per_pod + args.ops.await_margin_seconds


def _selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}


def _meta(name: str, namespace: str, labels: dict[str, str], annotations: Optional[dict[str, str]] = None) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


SCRATCH_DIR = "/tmp"
# pulumi-kubernetes (provider/pkg/metadata/overrides.go ReadyCondition): skipAwait makes any kind
# ready on creation; waitFor gives a custom resource, which is otherwise never awaited, a condition.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
# LeaderWorkerSet v0.10.0 sets Available (reason AllGroupsReady) with observedGeneration when every
# group is ready and updated (leaderworkerset_controller.go updateConditions); pulumi-kubernetes
# checks observedGeneration (await/condition/kubectl.go), so an update waits for the new spec.
LWS_WAIT_FOR = {"pulumi.com/waitFor": "condition=Available"}


def mirror_job(args: VllmWorkloadArgs, labels: dict[str, str]) -> dict:
    """The model's one-time mirror Job (batch/v1), on the model's own pool: the node that pulls the
    vLLM image for it is the one the first replica then starts on.

    The copy runs to completion as the init container (vLLM image: python3 and boto3); the Job's
    container then reads the completion marker back from S3 with the same role (aws-cli), so the Job
    completes only when the mirror is readable where the pods will read it.
    """
    w = args.weights
    assert w is not None and w.mirror is not None
    m, ops, pl = w.mirror, args.ops, args.placement
    job_labels = {**labels, "app.kubernetes.io/component": "model-mirror"}
    container = mirror_container(image=m.image, source=args.source, revision=m.revision, bucket=w.bucket,
                                 prefix=w.prefix, load_format=w.load_format, region=w.region,
                                 hf_token_secret=m.hf_token_secret, concurrency=m.concurrency, part_mib=m.part_mib,
                                 keep_revisions=m.keep_revisions, run_as_user=ops.run_as_user, cpu=m.cpu,
                                 memory_gib=m.memory_gib)
    from components.model_mirror import MIRROR_MARKER

    verify = {"name": "verify", "image": w.copy_image, "command": ["/bin/bash", "-c"],
              "args": [f"aws s3api head-object --bucket {shlex.quote(w.bucket)} "
                       f"--key {shlex.quote(w.prefix + MIRROR_MARKER)} --query ContentLength --output text"],
              "env": [{"name": "HOME", "value": SCRATCH_DIR}, {"name": "AWS_REGION", "value": w.region}],
              "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
              "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
              "securityContext": dict(container["securityContext"])}
    spec = {"backoffLimit": m.backoff_limit, "activeDeadlineSeconds": m.deadline_seconds,
            "template": {"metadata": {"labels": job_labels}, "spec": {
                "restartPolicy": "Never", "serviceAccountName": m.service_account,
                "automountServiceAccountToken": False, "enableServiceLinks": False,
                "initContainers": [container], "containers": [verify],
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                "nodeSelector": dict(pl.node_selector), "tolerations": list(pl.tolerations),
                "securityContext": {"runAsNonRoot": True, "runAsUser": ops.run_as_user, "runAsGroup": ops.fs_group,
                                    "fsGroup": ops.fs_group, "seccompProfile": {"type": "RuntimeDefault"}}}}}
    name = mirror_job_name(args.server.served_model_name, m.revision, spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(name, args.namespace, job_labels), "spec": spec}


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
    ad = args.adapters if s.lora is not None else None

    gpu_res = {"nvidia.com/gpu": str(args.gpus_per_pod)}
    if multinode:
        gpu_res["vpc.amazonaws.com/efa"] = str(pl.efa_interfaces)
    nc = args.node_cache
    w = args.weights
    assert w is not None  # validated
    # Every emptyDir the pod writes lives on the node's disk: the request covers them all, so the
    # scheduler never places a pod whose caches the node cannot hold. The node cache (hostPath) is not
    # ephemeral storage: the fallback weights there are counted only when they go to the pod's model-cache.
    pod_weights_gib = 0 if w.streams or nc is not None else ops.cache_gib
    ephemeral_gib = pod_weights_gib + ops.scratch_gib + (ad.cache_gib + math.ceil(ad.sync_scratch_mib / 1024) if ad else 0)
    resources = {
        "requests": {"cpu": str(ops.cpu), "memory": f"{ops.memory_gib}Gi",
                     "ephemeral-storage": f"{ephemeral_gib}Gi", **gpu_res},
        "limits": {"memory": f"{ops.memory_gib}Gi", **gpu_res},
    }
    # The vLLM image has no USER (runs as root, HOME=/root; vllm-project/vllm docker/Dockerfile at
    # v0.11.1). As any other uid, HOME and every cache must point at writable volumes: vLLM's
    # ~/.cache/vllm (torch.compile cache), Triton's ~/.triton, TorchInductor's /tmp/torchinductor_<user>
    # (getpass.getuser() needs USER when the uid has no passwd entry), FlashInfer's JIT cache, numba's
    # cache, Ray's /tmp/ray. HF_HOME is the model cache.
    # The compile caches (vLLM's torch.compile artefacts, Triton, TorchInductor, FlashInfer's JIT) go to the
    # model's directory of the node cache when there is one, so a restart on the same node skips the compile
    # (node_cache_dirs); HOME, XDG caches, numba, HF_HOME and Ray's /tmp stay pod-scoped on scratch.
    compile_dirs = (node_cache_dirs(nc.mount_path, name, w.revision) if nc is not None else
                    {"vllm": f"{SCRATCH_DIR}/.cache/vllm", "triton": f"{SCRATCH_DIR}/.cache/triton",
                     "torchinductor": f"{SCRATCH_DIR}/.cache/torchinductor",
                     "flashinfer": SCRATCH_DIR})  # FlashInfer's default base is HOME (= scratch)
    runtime_env: list[dict] = [
        {"name": "HOME", "value": SCRATCH_DIR}, {"name": "USER", "value": "vllm"},
        {"name": "XDG_CACHE_HOME", "value": f"{SCRATCH_DIR}/.cache"},
        {"name": "VLLM_CACHE_ROOT", "value": compile_dirs["vllm"]},
        {"name": "TRITON_CACHE_DIR", "value": compile_dirs["triton"]},
        {"name": "TORCHINDUCTOR_CACHE_DIR", "value": compile_dirs["torchinductor"]},
        # flashinfer-python 0.5.2 flashinfer/jit/env.py: JIT cache at $FLASHINFER_WORKSPACE_BASE/.cache/flashinfer.
        {"name": "FLASHINFER_WORKSPACE_BASE", "value": compile_dirs["flashinfer"]},
        # numba caches next to its sources (site-packages, root's) unless told otherwise.
        {"name": "NUMBA_CACHE_DIR", "value": f"{SCRATCH_DIR}/.cache/numba"},
    ]
    # Serving pods never reach the Hub: everything vLLM reads comes from the mirror.
    env: list[dict] = [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HF_HOME", "value": f"{SCRATCH_DIR}/.cache/hf"},
                       *runtime_env]
    if ops.keepalive_seconds:
        # Longer than the load balancer's idle timeout (vllm/envs.py VLLM_HTTP_TIMEOUT_KEEP_ALIVE, default 5 s).
        env.append({"name": "VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "value": str(ops.keepalive_seconds)})
    api_key_env = ([{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": args.api_key_secret, "key": "api-key"}}}]
                   if args.api_key_secret else [])
    env += api_key_env
    non_root = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    engine_security: dict[str, Any] = dict(non_root)
    if multinode:
        env += [{"name": "FI_PROVIDER", "value": "efa"}, {"name": "FI_EFA_USE_DEVICE_RDMA", "value": "1"}]
        # EFA registers (pins) memory: IPC_LOCK. Kubernetes does not grant added capabilities to a
        # non-root process (no ambient capabilities: kubernetes/kubernetes#56374, containerd#5668
        # closed unmerged), so the engine of an EFA group stays uid 0 with only IPC_LOCK.
        engine_security = {"allowPrivilegeEscalation": False, "runAsNonRoot": False, "runAsUser": 0,
                           "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]}}
    if ad is not None and ad.runtime_loading:
        # Adapters are fetched on their first request by the resolver plugin (components/lora_s3_resolver.py),
        # loaded as the only general plugin (VLLM_PLUGINS: not vLLM's filesystem resolver), and evicted by
        # the sync sidecar (adapter_sync_script).
        env += [{"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"},
                {"name": "VLLM_PLUGINS", "value": RESOLVER_PLUGIN},
                {"name": "PYTHONPATH", "value": PLUGIN_DIR},
                {"name": "LLMSERVING_ADAPTER_DIR", "value": ADAPTER_DIR},
                {"name": "LLMSERVING_ADAPTER_MAPPING", "value": "/etc/llmserving/adapters.tsv"},
                {"name": "LLMSERVING_ADAPTER_BUCKET_FILE", "value": "/etc/llmserving/bucket"},
                {"name": "LLMSERVING_ADAPTER_SLOTS", "value": str(ad.slots)}]

    # Pod Identity gives credentials but no region (boto3 in the Run:ai streamer reads AWS_REGION).
    env.append({"name": "AWS_REGION", "value": w.region})
    vllm_args = vllm_server_args(s)
    scratch_mount = {"name": "scratch", "mountPath": SCRATCH_DIR}
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, scratch_mount]
    volumes: list[dict] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{ops.shm_gib}Gi"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": f"{ops.scratch_gib}Gi"}},
    ]
    init_containers: list[dict] = []
    if nc is not None:
        # The node cache: the directory the node created for the serving uid (NodeCache); type Directory, never
        # DirectoryOrCreate (kubelet would create it as root 0755, unwritable for the serving uid).
        node_mount = {"name": "node-cache", "mountPath": nc.mount_path}
        mounts.insert(1, node_mount)
        volumes.insert(1, {"name": "node-cache", "hostPath": {"path": nc.host_path, "type": "Directory"}})
    if not w.streams:
        # Fallback: the weights copied from the mirror (never the Hub) before vLLM starts, into the node cache's
        # weights/<revision>/ (kept across restarts on the node; copy_script skips a complete copy), else into
        # the pod's model-cache.
        if nc is not None:
            copy_mount = node_mount
        else:
            copy_mount = {"name": "model-cache", "mountPath": MODEL_DIR}
            mounts.insert(1, copy_mount)
            volumes.insert(1, {"name": "model-cache", "emptyDir": {"sizeLimit": f"{ops.cache_gib}Gi"}})
        init_containers.append({
            "name": "model-copy", "image": w.copy_image, "command": ["/bin/bash", "-c"],
            "args": [copy_script(w.uri, s.model)],
            "env": [{"name": "HOME", "value": SCRATCH_DIR}, {"name": "AWS_REGION", "value": w.region}],
            "volumeMounts": [dict(copy_mount), scratch_mount],
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
            "securityContext": {**non_root, "readOnlyRootFilesystem": True}})
    if ad is not None:
        volumes += [{"name": "adapters", "emptyDir": {"sizeLimit": f"{ad.cache_gib}Gi"}},
                    {"name": "tenant-adapters", "configMap": {"name": ad.mapping_config_map}},
                    {"name": "sync-scratch", "emptyDir": {"sizeLimit": f"{ad.sync_scratch_mib}Mi"}}]
        # Runtime loading: vLLM's resolver writes fetched adapters into the cache itself.
        mounts.append({"name": "adapters", "mountPath": ADAPTER_DIR, "readOnly": not ad.runtime_loading})
        if ad.runtime_loading:
            mounts += [{"name": "tenant-adapters", "mountPath": "/etc/llmserving", "readOnly": True},
                       {"name": "lora-resolver", "mountPath": PLUGIN_DIR, "readOnly": True}]
            volumes.append({"name": "lora-resolver", "configMap": {"name": resolver_config_map(name), "items": [
                {"key": k, "path": path} for k, path in RESOLVER_FILES.items()]}})
        budget_kib = int(ad.cache_gib * ad.fill_ratio * 1024 * 1024)
        script = adapter_sync_script(adapter_dir=ADAPTER_DIR, mapping_dir="/etc/llmserving", runtime=ad.runtime_loading,
                                     interval_seconds=ad.sync_interval_seconds, budget_kib=budget_kib, port=port,
                                     slots=ad.slots)
        # The aws-cli image runs as root with HOME=/root (aws/aws-cli docker/Dockerfile at 2.31.18):
        # here a non-root uid on a read-only root filesystem, HOME on its own small emptyDir.
        sync = {"name": "adapter-sync", "image": ad.sync_image, "command": ["/bin/bash", "-c", script],
                "env": [{"name": "HOME", "value": SCRATCH_DIR}, {"name": "AWS_REGION", "value": ad.region},
                        *api_key_env],
                "volumeMounts": [{"name": "adapters", "mountPath": ADAPTER_DIR},
                                 {"name": "tenant-adapters", "mountPath": "/etc/llmserving", "readOnly": True},
                                 {"name": "sync-scratch", "mountPath": SCRATCH_DIR}],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": {**non_root, "readOnlyRootFilesystem": True}}
        if ad.runtime_loading:
            # Native sidecar: keeps fetching newly mapped adapters and registering them without a restart.
            sync["restartPolicy"] = "Always"
        init_containers.append(sync)

    # Static LoRA: serve only the --lora-modules entries that can load (STATIC_LORA_LAUNCHER).
    static_lora = s.lora is not None and bool(s.lora.modules)
    serve = (["python3", "-c", STATIC_LORA_LAUNCHER, "vllm", "serve"] if static_lora else ["vllm", "serve"])
    # With the node cache, every engine process starts behind NODE_CACHE_LAUNCHER (first: the image checks follow
    # a launcher chain to `vllm serve`). Multi-node: the whole shell line, so Ray's processes, which run the
    # engine's workers and write the compile cache, inherit its umask.
    launch = node_cache_launch if nc is not None else (lambda argv: argv)

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
        "securityContext": engine_security,
    }
    if multinode:
        wait_py = ("import os, ray; ray.init(address='auto', logging_level='ERROR'); "
                   "raise SystemExit(0 if sum(n['Alive'] for n in ray.nodes()) >= int(os.environ['LWS_GROUP_SIZE']) else 1)")
        server["command"] = launch(["/bin/bash", "-c"])
        server["args"] = [f"ray start --head --port={ops.ray_port} && "
                          f"until python3 -c {shlex.quote(wait_py)}; do sleep {ops.ray_join_retry_seconds}; done && "
                          f"exec {shlex.join(serve)} {shlex.join(vllm_args)}"]
    else:
        server["command"] = launch(serve)
        server["args"] = vllm_args

    grace = ops.prestop_sleep_seconds + ops.drain_seconds
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": dict(sel)}}]
    # Non-root by default (the EFA engine container overrides it, see above); fsGroup owns the
    # emptyDir caches; RuntimeDefault seccomp (Checkov CKV_K8S_23, CKV_K8S_31).
    pod_security = {"runAsNonRoot": True, "runAsUser": ops.run_as_user, "runAsGroup": ops.fs_group,
                    "fsGroup": ops.fs_group, "seccompProfile": {"type": "RuntimeDefault"}}

    # Pods that mount the node cache run only on nodes that create it (NodeCache.node_label).
    node_cache_selector = dict([nc.node_label]) if nc is not None and nc.node_label is not None else {}

    def pod_spec(containers: list[dict], inits: list[dict]) -> dict:
        spec = {"containers": containers, "initContainers": inits, "volumes": volumes,
                "nodeSelector": {**pl.node_selector, **node_cache_selector}, "tolerations": list(pl.tolerations),
                "topologySpreadConstraints": spread, "terminationGracePeriodSeconds": grace,
                "automountServiceAccountToken": False, "enableServiceLinks": False,
                "securityContext": dict(pod_security)}
        # The adapter reader's role also reads this model's mirror prefix (components/model_mirror.py extra_readers).
        account = ad.service_account if ad is not None else args.weights.service_account if args.weights else None
        if account:
            spec["serviceAccountName"] = account
        return spec

    rollout = args.rollout
    per_pod = pod_ready_seconds(ops)
    objs: list[dict] = []
    if not multinode:
        objs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, args.namespace, labels),
                     "spec": {"replicas": args.replicas, "selector": {"matchLabels": dict(sel)},
                              # From the pool's headroom: a surge pod on a pool with no spare node stays Pending.
                              "strategy": {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxSurge": rollout.max_surge,
                                                             "maxUnavailable": rollout.max_unavailable}},
                              # One wave of the rollout may take a replica's whole start-up.
                              "progressDeadlineSeconds": per_pod + ops.await_margin_seconds,
                              "template": {"metadata": {"labels": serving_labels},
                                           "spec": pod_spec([server], init_containers)}}})
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        svc_selector = dict(sel)
    else:
        worker_cmd = ray_worker_script(ray_port=ops.ray_port, join_seconds=per_pod,
                                       retry_seconds=ops.ray_join_retry_seconds)
        worker = {"name": "ray-worker", "image": args.image, "command": launch(["/bin/bash", "-c"]), "args": [worker_cmd],
                  "env": env, "resources": resources, "volumeMounts": mounts, "securityContext": engine_security}
        objs.append({"apiVersion": LWS_API, "kind": "LeaderWorkerSet",
                     "metadata": _meta(name, args.namespace, labels, LWS_WAIT_FOR),
                     "spec": {"replicas": args.replicas, "startupPolicy": "LeaderCreated",
                              "rolloutStrategy": {"type": "RollingUpdate",
                                                  "rollingUpdateConfiguration": {
                                                      "maxUnavailable": rollout.max_unavailable,
                                                      "maxSurge": rollout.max_surge}},
                              "leaderWorkerTemplate": {
                                  "size": s.pipeline_parallel, "restartPolicy": "RecreateGroupOnPodRestart",
                                  "leaderTemplate": {"metadata": {"labels": serving_labels},
                                                     "spec": pod_spec([server], init_containers)},
                                  "workerTemplate": {"metadata": {"labels": labels},
                                                     "spec": pod_spec([worker], [c for c in init_containers
                                                                                 if c["name"] == "model-copy"])}}}})
        target = {"apiVersion": LWS_API, "kind": "LeaderWorkerSet", "name": name}
        svc_selector = {**sel, WORKER_INDEX_LABEL: "0"}

    # Service accounts of the weights reader (Pod Identity: read-only, this model's mirror prefix) and of
    # the mirror Job (writes this model's source prefix); the associations live in components/model_mirror.py.
    w_sa = [w.service_account] if w.service_account and ad is None else []
    if w.mirror is not None:
        w_sa.append(w.mirror.service_account)
    for account in w_sa:
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(account, args.namespace, labels),
                     "automountServiceAccountToken": False})
    if w.mirror is not None:
        objs.append(mirror_job(args, labels))
    if ad is not None and ad.runtime_loading:
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(resolver_config_map(name), args.namespace,
                                                                              labels),
                     "data": resolver_plugin_files()})

    # The Service waits for nothing: readiness is awaited on the Deployment (or the LWS's
    # Available condition), and a Service await would race the pods (pulumi-kubernetes
    # await/service.go succeeds while no pod has an address, then fails after 10 minutes of
    # not-ready endpoints while a model loads). The TargetGroupBinding controller registers
    # targets as they turn ready.
    objs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": _meta(traffic_service_name(name), args.namespace, labels, SKIP_AWAIT),
                 "spec": {"type": "ClusterIP", "selector": svc_selector,
                          "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}})
    # Voluntary disruptions (node drains) take at most what a rollout step takes, and never less than one.
    objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, args.namespace, labels),
                 "spec": {"maxUnavailable": max(1, rollout.max_unavailable), "selector": {"matchLabels": dict(sel)}}})
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
        ("batch/v1", "Job"): k8s.batch.v1.Job,
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
    service: pulumi.Resource

    def __init__(self, name: str, args: VllmWorkloadArgs, opts: Optional[pulumi.ResourceOptions] = None):
        objs = render(args)  # validates before anything exists
        super().__init__("llmserving:vllm_workload:VllmWorkload", name, {}, opts)
        deps = list(args.depends_on)
        self.kind = objs[0]["kind"]
        self.service_name = traffic_service_name(args.server.served_model_name)
        scaled = {"Deployment", "LeaderWorkerSet"} if args.autoscaling is not None else set()
        # pulumi-kubernetes waits 10 minutes for a Deployment by default (await/deployment.go), far
        # less than a replica's start-up; the LeaderWorkerSet waits for its Available condition
        # (LWS_WAIT_FOR). Both get the budget of await_seconds(); a custom timeout takes precedence
        # over a pulumi.com/timeoutSeconds annotation (metadata/overrides.go TimeoutDuration).
        create_s, update_s = await_seconds(args)
        timeouts = pulumi.CustomTimeouts(create=f"{math.ceil(create_s / 60)}m", update=f"{math.ceil(update_s / 60)}m")
        self.await_seconds = (create_s, update_s)
        self.resources = {}
        # The mirror Job first: the workload starts only once the weights are in the mirror.
        # pulumi-kubernetes awaits a Job until its Complete condition (pulumi docs, pulumi_kubernetes
        # batch/v1 Job: "waits until ... .status.conditions has a status of type 'Complete'"), and fails it
        # on the Failed condition; its timeout is the copy's deadline.
        job = next((o for o in objs if o["kind"] == "Job"), None)
        accounts = [o for o in objs if o["kind"] == "ServiceAccount"]
        for o in accounts:
            self.resources[f"ServiceAccount/{o['metadata']['name']}"] = create_object(
                f"{name}-sa-{o['metadata']['name']}", o, pulumi.ResourceOptions(parent=self, depends_on=deps))
        ready = [*deps, *(r for k, r in self.resources.items() if k.startswith("ServiceAccount/"))]
        if job is not None:
            deadline = job["spec"]["activeDeadlineSeconds"]
            jt = pulumi.CustomTimeouts(create=f"{math.ceil(deadline / 60) + 5}m",
                                       update=f"{math.ceil(deadline / 60) + 5}m")
            self.mirror_job = create_object(f"{name}-mirror-job", job,
                                            pulumi.ResourceOptions(parent=self, depends_on=ready, custom_timeouts=jt))
            self.resources["Job"] = self.mirror_job
            ready = [*ready, self.mirror_job]
        for o in objs:
            if o["kind"] in ("Job", "ServiceAccount"):
                continue
            workload = o["kind"] in ("Deployment", "LeaderWorkerSet")
            opts_o = pulumi.ResourceOptions(
                parent=self, depends_on=ready if workload else deps,
                # KEDA owns the replica count of what it scales; Pulumi sets it only at creation.
                ignore_changes=["spec.replicas"] if o["kind"] in scaled else None,
                custom_timeouts=timeouts if workload else None)
            self.resources[o["kind"]] = create_object(f"{name}-{o['kind'].lower()}", o, opts_o)
        self.service = self.resources["Service"]
        self.register_outputs({"kind": self.kind, "service": self.service_name, "namespace": args.namespace})
