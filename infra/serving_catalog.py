"""Data tables for the serving layer: images, Helm charts, and the operating
figures (probe budgets, drain time, shared memory, cache headroom) the vLLM
workloads use. Every row has its source and the date it was taken; a stack
overrides images, charts and figures under `llmserving:serving`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from infra.catalog import Assumption


class Image(BaseModel):
    model_config = ConfigDict(frozen=True)
    repository: str
    tag: str
    source: str
    as_of: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    # What the image runs as, its tools and (vLLM) flags live in one place: infra/image_catalog.py.
    # A root image needs runAsUser next to runAsNonRoot: the kubelet refuses runAsNonRoot for a
    # root image without a numeric user.
    @property
    def user(self) -> str:
        from infra.image_catalog import facts

        f = facts(self.ref)
        return f.user_text if f is not None else ""

    @property
    def user_source(self) -> str:
        from infra.image_catalog import facts

        f = facts(self.ref)
        return f.source if f is not None else ""


class Chart(BaseModel):
    model_config = ConfigDict(frozen=True)
    chart: str
    version: str
    repository: str
    namespace: str
    source: str
    as_of: str


IMAGES: dict[str, Image] = {
    # vLLM OpenAI server; FACTS.md pins v0.11.1 (flags checked against v0.11 source).
    "vllm": Image(repository="vllm/vllm-openai", tag="v0.11.1", source="Docker Hub vllm/vllm-openai, vLLM release v0.11.1", as_of="2025-11"),
    # Model-aware router of the vLLM production stack (routes by the request's `model`,
    # discovers engines and their served models, LoRA adapters included, via the Kubernetes API).
    # Tag v0.1.11 is built from git tag vllm-stack-0.1.11 (.github/workflows/router-docker-release.yml).
    "router": Image(repository="lmcache/lmstack-router", tag="v0.1.11", source="Docker Hub lmcache/lmstack-router (vllm-project/production-stack)", as_of="2025-10"),
    # Syncs tenants' LoRA adapters from S3 (read-only) with the pod's Pod Identity credentials.
    "aws-cli": Image(repository="amazon/aws-cli", tag="2.31.18", source="Docker Hub amazon/aws-cli", as_of="2025-10"),
}

CHARTS: dict[str, Chart] = {
    "kube-prometheus-stack": Chart(chart="kube-prometheus-stack", version="77.14.0",
                                   repository="https://prometheus-community.github.io/helm-charts", namespace="monitoring",
                                   source="prometheus-community/helm-charts release kube-prometheus-stack-77.14.0", as_of="2025-10"),
    "keda": Chart(chart="keda", version="2.20.2", repository="https://kedacore.github.io/charts", namespace="keda",
                  source="kedacore/charts; same tag as ../shared/crds keda.sh_scaledobjects.yaml", as_of="2025-10"),
    "lws": Chart(chart="oci://registry.k8s.io/lws/charts/lws", version="0.10.0", repository="", namespace="lws-system",
                 source="kubernetes-sigs/lws Helm chart; same tag as ../shared/crds leaderworkerset CRD", as_of="2025-10"),
}

_OPS = "project operating assumption (FACTS.md: vLLM loads take minutes; drain in-flight requests)"
SERVING_FIGURES: dict[str, Assumption] = {
    # startupProbe budget: failureThreshold x periodSeconds must cover download + load.
    "startup_probe_period_seconds": Assumption(value=10, source=_OPS, as_of="2025-10"),
    "startup_budget_seconds": Assumption(value=600, source="FACTS.md: failureThreshold 60 x periodSeconds 10", as_of="2025-10"),
    # Models at or above this size get the large budget (70B+ loads take far longer).
    "large_model_billion": Assumption(value=60, source=_OPS, as_of="2025-10"),
    "startup_budget_seconds_large": Assumption(value=1800, source=_OPS, as_of="2025-10"),
    "startup_budget_seconds_multinode": Assumption(value=3600, source=_OPS, as_of="2025-10"),
    # preStop sleep lets endpoints drop out of the router before SIGTERM; then uvicorn drains.
    "prestop_sleep_seconds": Assumption(value=20, source=_OPS, as_of="2025-10"),
    "drain_seconds": Assumption(value=120, source=_OPS + "; long generations at ~40 tok/s", as_of="2025-10"),
    # /dev/shm for NCCL: per tensor-parallel GPU.
    "shm_gib_per_gpu": Assumption(value=2, source="NCCL shared-memory transport; vLLM docs recommend several GiB", as_of="2025-10"),
    # Model cache on node-local disk: weights on disk x this headroom (tokenizer, config, partial downloads).
    "model_cache_headroom": Assumption(value=1.3, source=_OPS, as_of="2025-10"),
    "adapter_cache_gib": Assumption(value=50, source=_OPS + "; rank-64 8B adapters are ~100-300 MB", as_of="2025-10"),
    "adapter_sync_interval_seconds": Assumption(value=60, source=_OPS, as_of="2025-10"),
    # Adapters named on the command line (--lora-modules) when runtime loading is off.
    "max_static_lora_modules": Assumption(value=64, source=_OPS + "; beyond this use runtime loading behind the mapping", as_of="2025-10"),
    # KEDA: queued requests per replica before scaling out (vllm:num_requests_waiting).
    "queue_depth_per_replica": Assumption(value=5, source=_OPS, as_of="2025-10"),
    "keda_polling_seconds": Assumption(value=15, source="KEDA default pollingInterval 30 s, halved for bursty LLM load", as_of="2025-10"),
    "keda_cooldown_seconds": Assumption(value=600, source=_OPS + "; GPU replicas are slow to come back", as_of="2025-10"),
    # CPU and host memory per GPU requested by a vLLM pod (tokenization, detokenization, CPU LoRA cache).
    "cpu_per_gpu": Assumption(value=4, source=_OPS, as_of="2025-10"),
    "memory_gib_per_gpu": Assumption(value=32, source=_OPS, as_of="2025-10"),
    # Share of a node's vCPUs and memory a pod may request per GPU it takes (kubelet, daemonsets keep the rest).
    "node_allocatable_share": Assumption(value=0.75, source=_OPS, as_of="2025-10"),
    # Alerts.
    "alert_ttft_p95_seconds": Assumption(value=2, source="issue 4: TTFT p95 over 2 s", as_of="2025-10"),
    "alert_queue_depth": Assumption(value=10, source=_OPS, as_of="2025-10"),
    "alert_queue_minutes": Assumption(value=10, source=_OPS, as_of="2025-10"),
    "alert_kv_cache_usage": Assumption(value=0.9, source="issue 4: KV cache over 90%", as_of="2025-10"),
    "alert_restarts_per_hour": Assumption(value=3, source=_OPS, as_of="2025-10"),
    "vllm_port": Assumption(value=8000, source="vLLM OpenAI server default --port", as_of="2025-10"),
    "ray_port": Assumption(value=6379, source="Ray default GCS port", as_of="2025-10"),
    "router_replicas": Assumption(value=2, source=_OPS, as_of="2025-10"),
    # Router pod requests/limit (Python proxy; streams responses, holds no model).
    "router_cpu_millicores": Assumption(value=500, source=_OPS, as_of="2025-10"),
    "router_memory_mib": Assumption(value=1024, source=_OPS, as_of="2025-10"),
    "router_memory_limit_mib": Assumption(value=2048, source=_OPS, as_of="2025-10"),
    # Re-list engine pods this often: the router (production-stack v0.1.11, service_discovery.py) reads a pod's
    # /v1/models only on pod events, so adapters registered at runtime show up on the next re-list.
    "router_resync_seconds": Assumption(value=60, source="production-stack vllm-stack-0.1.11 --k8s-watcher-timeout-seconds", as_of="2025-10"),
    # Non-root identity of every serving container (vLLM, model download, adapter sync, router). None of the
    # images sets a USER (see IMAGES), so the pods name a numeric uid; fsGroup owns the emptyDir caches.
    # The images define no user (infra/serving_catalog.py IMAGES user_source); any non-zero uid runs them.
    # 10001: at or above 10000 it cannot collide with a host account (Checkov CKV_K8S_40; NSA/CISA
    # Kubernetes Hardening Guidance, non-root containers).
    "run_as_user": Assumption(value=10001, source="Kubernetes docs 'Configure a Security Context'; Checkov CKV_K8S_40 (uid >= 10000)", as_of="2026-12"),
    "fs_group": Assumption(value=10001, source="Kubernetes docs 'Configure a Security Context' (fsGroup); same id as run_as_user", as_of="2026-12"),
    # HOME, /tmp and the compile caches of a vLLM pod (torch.compile/inductor, Triton, FlashInfer JIT, Ray sessions).
    "scratch_gib": Assumption(value=10, source=_OPS + "; vLLM v0.11 caches under ~/.cache/vllm and /tmp", as_of="2025-10"),
    "sync_scratch_mib": Assumption(value=256, source=_OPS + "; aws-cli HOME and /tmp", as_of="2025-10"),
    "router_scratch_mib": Assumption(value=256, source=_OPS + "; the router writes only /tmp (vllm-stack-0.1.11)", as_of="2025-10"),
    # The adapter sync stops adding adapters above this share of the adapter cache: past the emptyDir's
    # sizeLimit the kubelet evicts the whole pod (Kubernetes docs 'Local ephemeral storage').
    "adapter_cache_fill_ratio": Assumption(value=0.9, source="Kubernetes docs 'Local ephemeral storage' (emptyDir sizeLimit eviction)", as_of="2025-10"),
    # The target's HTTP keep-alive must exceed the load balancer's idle timeout, or the target closes a connection
    # the ALB is about to reuse and clients see 502s (ELB docs, ALB 'Connection idle timeout').
    # Start-up timeline of one replica, from which the Kubernetes await timeouts are derived (with the
    # startup probe budget above: one source of truth).
    "node_ready_seconds": Assumption(value=300, source=_OPS + "; GPU node launch, boot, NVIDIA device plugin registration", as_of="2025-10"),
    "image_pull_seconds": Assumption(value=300, source=_OPS + "; vllm/vllm-openai v0.11.1 is several GB compressed", as_of="2025-10"),
    # Hub download into the node's disk; a gp3 root volume writes 125 MiB/s by default (botocore ec2 model).
    "weights_download_mb_per_second": Assumption(value=100, source="gp3 default throughput 125 MiB/s (botocore ec2 CreateVolume)", as_of="2025-10"),
    "await_margin_seconds": Assumption(value=300, source=_OPS, as_of="2025-10"),
    # Largest rollout surge as a share of maxReplicas (Kubernetes' own default maxSurge is 25%).
    "max_surge_share": Assumption(value=0.25, source="Kubernetes docs 'Deployments': default maxSurge 25%", as_of="2025-10"),
    # Without room to surge, the share of replicas replaced at once (serving capacity dips by it
    # during a rollout; Kubernetes' own default maxUnavailable is 25%).
    "max_unavailable_share": Assumption(value=0.1, source="Kubernetes docs 'Deployments': default maxUnavailable 25%; "
                                                          "10% is a project choice to keep capacity", as_of="2026-12"),
    # Pause between `ray start` attempts of a worker while the group's head is not up yet.
    "ray_join_retry_seconds": Assumption(value=5, source="vllm-project/vllm examples/online_serving/multi-node-serving.sh (v0.11.1): retries every 5 s", as_of="2025-10"),
}
