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
}
