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
    # startupProbe period; its budget (failureThreshold x period) derives from the start-up estimate
    # (infra/startup.py: startup_probe_safety_factor x (weight read + engine start), at least
    # startup_budget_floor_seconds).
    "startup_probe_period_seconds": Assumption(value=10, source=_OPS, as_of="2025-10"),
    # Models at or above this size are "large" for the start-up goals (issue 12: 70B under 6 minutes).
    "large_model_billion": Assumption(value=60, source=_OPS, as_of="2025-10"),
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
    # HOME, /tmp, the Hugging Face and numba caches and Ray sessions of a vLLM pod; on EKS the compile caches
    # (torch.compile/inductor, Triton, FlashInfer JIT) live in the node-level cache instead (vllm_workload NodeCache).
    "scratch_gib": Assumption(value=10, source=_OPS + "; vLLM v0.11 writes HOME (~/.config/vllm) and /tmp (Ray)",
                              as_of="2026-12"),
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
    # --- Cold start (issue 12): the model mirror, streaming load and the start-up estimate (infra/startup.py) ---
    # Run:ai streamer from S3 into one node: Meta-Llama-3-8B (15 GB) in 4.88 s at concurrency 32 on a g5.12xlarge,
    # about 3.1 GB/s (run-ai/runai-model-streamer docs/src/benchmarks.md at 0.15.0, Figure 5 / Appendix C).
    # The planning figure keeps a third of margin (other tenants of the node's network, SSE-KMS, prefixes).
    "s3_stream_mb_per_second": Assumption(value=2000, source="run-ai/runai-model-streamer 0.15.0 docs/src/benchmarks.md: "
                                          "15 GB from S3 in 4.88 s (concurrency 32, g5.12xlarge), less a third", as_of="2025-11"),
    "runai_streamer_concurrency": Assumption(value=32, source="run-ai/runai-model-streamer 0.15.0 docs/src/benchmarks.md: "
                                             "best S3 result at concurrency 32 (default 8 for object storage, docs/src/env-vars.md)", as_of="2025-11"),
    # CPU buffer of the streamer per process as a share of the pod's memory limit: its default (40 GB without
    # distributed streaming, docs/src/env-vars.md RUNAI_STREAMER_MEMORY_LIMIT) exceeds a 1-GPU pod's memory.
    "runai_streamer_memory_share": Assumption(value=0.5, source="run-ai/runai-model-streamer 0.15.0 docs/src/usage.md "
                                              "'CPU memory capping'; " + _OPS, as_of="2025-11"),
    # Engine start after the weights are read: CUDA graph capture, torch.compile, KV cache profiling. Run:ai's
    # vLLM figure: 23.18 s to ready with 4.88 s of loading, ~18 s of start for 8B on one A10G (benchmarks.md
    # Appendix D); multi-GPU engines compile and capture per rank and start workers.
    "engine_start_seconds": Assumption(value=60, source="run-ai/runai-model-streamer 0.15.0 docs/src/benchmarks.md "
                                       "Appendix D (18 s for 8B on 1 A10G), x3 margin for compile caches starting cold", as_of="2025-11"),
    "engine_start_seconds_multi_gpu": Assumption(value=150, source=_OPS + "; per-rank compile and CUDA graphs, NCCL "
                                                 "init; 2.5 x the single-GPU figure", as_of="2025-11"),
    # Multi-node (PP > 1): Ray head up, workers join, placement group.
    "ray_group_seconds": Assumption(value=60, source=_OPS + "; workers retry every ray_join_retry_seconds", as_of="2025-11"),
    # Startup probe budget = this factor x (weight read + engine start): the estimate is a median, a probe
    # budget must cover a slow start (S3 throttling, a cold compile cache) without killing a loading pod.
    "startup_probe_safety_factor": Assumption(value=3, source=_OPS + "; FACTS.md: liveness must never kill a "
                                              "loading pod", as_of="2025-11"),
    # The startup probe budget never goes below this (FACTS.md: failureThreshold 60 x periodSeconds 10 for 8B).
    "startup_budget_floor_seconds": Assumption(value=300, source=_OPS, as_of="2025-11"),
    # The mirror job reads from the Hub: per-node download from the Hub's CDN. Hugging Face's hf_transfer
    # reaches >500 MB/s on 10 Gbit links (huggingface/hf_transfer README); a plain HTTP stream with 8 files in
    # parallel is planned at a fifth of that.
    "hub_download_mb_per_second": Assumption(value=100, source="huggingface/hf_transfer README (>500 MB/s with "
                                             "hf_transfer); planning value for 8 parallel plain HTTP streams", as_of="2025-11"),
    "mirror_concurrency": Assumption(value=8, source=_OPS + "; files copied in parallel by the mirror job", as_of="2025-11"),
    # S3 multipart part size of the mirror job: 10,000 parts x 64 MiB = 625 GiB per file (S3 quotas:
    # at most 10,000 parts, 5 MiB to 5 GiB each).
    "mirror_part_mib": Assumption(value=64, source="Amazon S3 user guide 'Multipart upload limits'", as_of="2025-11"),
    # Revisions of a source kept in the mirror: the current one and the previous (a rollback target).
    "mirror_keep_revisions": Assumption(value=2, source=_OPS, as_of="2025-11"),
    # Mirror job deadline = this factor x the copy at hub_download_mb_per_second, plus a fixed margin.
    "mirror_deadline_factor": Assumption(value=3, source=_OPS, as_of="2025-11"),
    "mirror_noncurrent_version_days": Assumption(value=30, source=_OPS + "; deleted revisions stay recoverable a month",
                                                 as_of="2025-11"),
    # Goals of the issue: Ready after the node is up, by model size (issue 12 item 4).
    "goal_ready_seconds_small": Assumption(value=120, source="issue 12: 8B Ready in under 2 minutes after the node is up", as_of="2025-11"),
    "goal_ready_seconds_large": Assumption(value=360, source="issue 12: 70B FP8 under 6 minutes", as_of="2025-11"),
    "goal_ready_seconds_multinode": Assumption(value=1200, source="issue 12: 405B under 20 minutes", as_of="2025-11"),
    # --- Adapters at scale (issue 12 item 5) ---
    # Bytes per LoRA parameter as stored: PEFT saves adapters in the dtype they were trained in; 16-bit is
    # the common case (fp32 adapters are twice as large: set 4).
    "adapter_bytes_per_parameter": Assumption(value=2, source="huggingface/peft save_pretrained writes the adapter "
                                              "weights' own dtype (safetensors); 16-bit training", as_of="2025-11"),
    # Adapters a pod keeps on disk at most (LRU): a multiple of --max-cpu-loras, so evicted CPU entries reload
    # from local disk instead of S3.
    "adapter_disk_slots_per_cpu_lora": Assumption(value=2, source=_OPS, as_of="2025-11"),
    # Pause between `ray start` attempts of a worker while the group's head is not up yet.
    "ray_join_retry_seconds": Assumption(value=5, source="vllm-project/vllm examples/online_serving/multi-node-serving.sh (v0.11.1): retries every 5 s", as_of="2025-10"),
}


class AdapterGeometry(BaseModel):
    """What a LoRA adapter's size depends on besides its rank: the base model's linear layer widths."""

    model_config = ConfigDict(frozen=True)
    hidden_size: int
    intermediate_size: int
    source: str
    as_of: str


_CFG = "the model's config.json on the Hub (hidden_size, intermediate_size)"
# Layers, KV heads and head size come from infra/catalog.py MODELS. A LoRA adapter of rank r adds, per
# adapted linear layer of in x out, an A (r x in) and a B (out x r) matrix: r x (in + out) parameters
# (huggingface/peft src/peft/tuners/lora/layer.py, lora_A / lora_B). Sized for every linear layer of a
# Llama-style block (q, k, v, o, gate, up, down: PEFT target_modules="all-linear"), the largest usual choice.
ADAPTER_GEOMETRY: dict[str, AdapterGeometry] = {
    "meta-llama/Llama-3.1-8B-Instruct": AdapterGeometry(hidden_size=4096, intermediate_size=14336, source=_CFG, as_of="2024-07"),
    "mistralai/Mistral-7B-Instruct-v0.3": AdapterGeometry(hidden_size=4096, intermediate_size=14336, source=_CFG, as_of="2024-05"),
    "Qwen/Qwen2.5-7B-Instruct": AdapterGeometry(hidden_size=3584, intermediate_size=18944, source=_CFG, as_of="2024-09"),
    "Qwen/Qwen2.5-3B-Instruct": AdapterGeometry(hidden_size=2048, intermediate_size=11008, source=_CFG, as_of="2024-09"),
    "meta-llama/Llama-3.1-70B-Instruct": AdapterGeometry(hidden_size=8192, intermediate_size=28672, source=_CFG, as_of="2024-07"),
    "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8": AdapterGeometry(hidden_size=8192, intermediate_size=28672, source=_CFG, as_of="2024-08"),
    "meta-llama/Llama-3.1-405B-Instruct": AdapterGeometry(hidden_size=16384, intermediate_size=53248, source=_CFG, as_of="2024-07"),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": AdapterGeometry(hidden_size=16384, intermediate_size=53248, source=_CFG, as_of="2024-07"),
}
