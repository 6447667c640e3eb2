"""Data tables for the ECS path and the edge (ALB, WAF, adapter store, budgets).

Every figure carries its source and the date it was taken, like
infra/catalog.py. Stack config overrides the ones that make sense per stack
(`llmserving:ecs`, `llmserving:ingress`, `llmserving:adapterStore`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    value: object
    source: str
    as_of: str


# --- images and charts ------------------------------------------------------
VLLM_IMAGE = Figure("vllm/vllm-openai:v0.11.1", "FACTS.md (pin image tags; vLLM v0.11 flags)", "2025-10")
# The AWS Load Balancer Controller chart and app share one version since v3.
ALB_CONTROLLER_CHART = Figure(
    {"chart": "aws-load-balancer-controller", "version": "3.5.0", "repo": "https://aws.github.io/eks-charts"},
    "kubernetes-sigs/aws-load-balancer-controller helm/aws-load-balancer-controller/Chart.yaml (v3.5.0); "
    "matches ../shared/crds TargetGroupBinding v3.5.0", "2026-08")

# --- ECS --------------------------------------------------------------------
ECS_GPU_AMI_PARAMETER = Figure(
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
    "FACTS.md (ECS GPU AMI; AL2 ECS AMIs reach end of life 2026-06-30)", "2025-10")
ECS_DEFAULTS: dict[str, Figure] = {
    # ECS caps a container health check startPeriod at 300 s; the service's
    # ALB grace period covers longer model loads.
    "health_check_start_period_seconds": Figure(300, "ECS API HealthCheck.startPeriod (0-300 s)", "2025-10"),
    "health_check_interval_seconds": Figure(30, "ECS API HealthCheck.interval default", "2025-10"),
    "health_check_retries": Figure(3, "ECS API HealthCheck.retries default", "2025-10"),
    # Seconds the ALB ignores failing health checks after a task starts:
    # weights download + load of a 70B model takes minutes.
    "load_grace_period_seconds": Figure(1200, "FACTS.md (model loading takes minutes; longer for 70B+)", "2025-10"),
    # ECS gives a container at most 120 s between SIGTERM and SIGKILL.
    "stop_timeout_seconds": Figure(120, "ECS API ContainerDefinition.stopTimeout (max 120 s on EC2)", "2025-10"),
    # /dev/shm for NCCL with tensor parallelism.
    "shared_memory_mib_per_gpu": Figure(4096, "FACTS.md (TP needs a memory-backed /dev/shm of several GiB)", "2025-10"),
    # Share of the instance's memory and vCPUs the tasks may reserve; the rest
    # is left to the ECS agent, Docker and the OS.
    "instance_resource_share": Figure(0.85, "project planning assumption (ECS agent + OS headroom)", "2025-10"),
    # ALB requests per target per minute before Application Auto Scaling adds
    # a task; LLM requests stream for seconds, so this stays low.
    "requests_per_target_per_minute": Figure(120, "project planning assumption (40 tok/s streams, ~30 s responses, 64 concurrent)", "2025-10"),
    "scale_in_cooldown_seconds": Figure(900, "project planning assumption (warm replicas are expensive to rebuild)", "2025-10"),
    "scale_out_cooldown_seconds": Figure(120, "project planning assumption", "2025-10"),
    # Managed scaling keeps the ASG this full (100 = no idle GPU instances).
    "target_capacity_percent": Figure(100, "ECS capacity provider managed scaling", "2025-10"),
    "vllm_port": Figure(8000, "vLLM OpenAI server default --port", "2025-10"),
    # adapter-sync container (aws-cli copying LoRA adapters before vLLM starts).
    "adapter_sync_cpu_units": Figure(128, "project assumption (aws s3 sync is I/O bound)", "2025-10"),
    "adapter_sync_memory_reservation_mib": Figure(256, "project assumption (aws-cli s3 sync working set)", "2025-10"),
    "adapter_sync_memory_mib": Figure(512, "project assumption (hard limit, 2x the reservation)", "2025-10"),
    # ECS rejects a task definition above 64 KiB; --lora-modules grows it per adapter.
    "task_definition_max_bytes": Figure(65536, "Amazon ECS service quotas: task definition size 64 KiB", "2025-10"),
}

# --- ALB / WAF ----------------------------------------------------------------
TLS_POLICY = Figure("ELBSecurityPolicy-TLS13-1-2-2021-06", "AWS ELB docs: security policies (TLS 1.3 + 1.2)", "2025-10")
ALB_DEFAULTS: dict[str, Figure] = {
    # Streaming completions hold a connection for minutes.
    "idle_timeout_seconds": Figure(300, "project planning assumption (long streaming responses)", "2025-10"),
    "deregistration_delay_seconds": Figure(120, "matches ECS stopTimeout so in-flight streams drain", "2025-10"),
    "health_check_interval_seconds": Figure(15, "ELB API HealthCheckIntervalSeconds (5-300)", "2025-10"),
    "healthy_threshold": Figure(2, "ELB API HealthyThresholdCount (2-10)", "2025-10"),
    "unhealthy_threshold": Figure(3, "ELB API UnhealthyThresholdCount (2-10)", "2025-10"),
    "waf_rate_limit_per_5_min": Figure(2000, "AWS WAF rate-based rule (evaluation window 300 s, minimum limit 10)", "2025-10"),
}
# Accounts that write ALB access logs in Regions opened before August 2022;
# newer Regions use the logdelivery.elasticloadbalancing.amazonaws.com principal.
ELB_LOG_ACCOUNTS = Figure({
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "ca-central-1": "985666609251", "eu-west-1": "156460612806",
    "eu-west-2": "652711504416", "eu-west-3": "009996457667", "eu-central-1": "054676820928",
    "eu-north-1": "897822967062", "ap-northeast-1": "582318560864", "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266", "ap-south-1": "718504428378",
    "sa-east-1": "507241528517",
}, "AWS ELB docs: Enable access logs for your Application Load Balancer (bucket permissions)", "2025-10")

# --- adapter store ----------------------------------------------------------
ADAPTER_STORE_DEFAULTS: dict[str, Figure] = {
    "noncurrent_version_days": Figure(30, "project retention assumption (roll back a bad adapter upload)", "2025-10"),
    "abort_incomplete_upload_days": Figure(7, "S3 lifecycle best practice", "2025-10"),
    "access_log_days": Figure(365, "project retention assumption (audit trail of adapter reads and writes)", "2025-10"),
    "kms_deletion_window_days": Figure(30, "KMS ScheduleKeyDeletion maximum window", "2025-10"),
}

# --- CloudWatch Logs, ALB quotas, keep-alive (issue 10) --------------------------------------
# The only retention values CloudWatch Logs accepts. botocore's `logs` model documents them in
# PutRetentionPolicy.retentionInDays (no enum: the shape is a plain integer), and botocore is not a
# runtime dependency of the program, so the list lives here; tests/test_retention_and_alb_quotas.py checks it
# against botocore 1.44.5's model text.
CLOUDWATCH_RETENTION_DAYS = Figure(
    (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653),
    "botocore 1.44.5 data/logs/2014-03-28/service-2.json, PutRetentionPolicy retentionInDays", "2026-08")
# Default quotas of one Application Load Balancer (AWS ELB docs, "Quotas for your Application
# Load Balancers": target groups per ALB 100, rules per ALB (not counting default rules) 100).
ALB_QUOTAS: dict[str, Figure] = {
    "target_groups_per_load_balancer": Figure(100, "AWS ELB docs: Quotas for your Application Load Balancers (default)", "2026-08"),
    "rules_per_load_balancer": Figure(100, "AWS ELB docs: Quotas for your Application Load Balancers (default; "
                                           "default rules not counted)", "2026-08"),
    # FixedResponseActionConfig.MessageBody max 1024 characters.
    "fixed_response_body_max_chars": Figure(1024, "botocore 1.44.5 elbv2 model FixedResponseActionMessage (max 1024)", "2026-08"),
}
# The target (vLLM, the router) must keep idle connections open longer than the ALB does, or the
# ALB may reuse a connection the target just closed and answer 502 (AWS ELB docs, Application
# Load Balancer attributes, "Connection idle timeout": configure the application's idle timeout
# larger than the load balancer's). The margin covers clock skew between the two timers.
KEEP_ALIVE_MARGIN_SECONDS = Figure(
    15, "AWS ELB docs: Edit attributes for your Application Load Balancer, Connection idle timeout; "
        "margin is a project assumption", "2026-08")


def keep_alive_seconds(idle_timeout_seconds: int) -> int:
    """HTTP keep-alive for a target behind an ALB with this idle timeout (e.g. VLLM_HTTP_TIMEOUT_KEEP_ALIVE)."""
    return int(idle_timeout_seconds) + int(KEEP_ALIVE_MARGIN_SECONDS.value)  # type: ignore[call-overload]

# --- Prometheus storage and alert routing (EKS observability, issue 10 item 17 e/f) -----------
# Disk Prometheus needs: retention_seconds x ingested samples/s x bytes per sample (Prometheus docs,
# "Storage", Operational aspects: "needed_disk_space = retention_time_seconds *
# ingested_samples_per_second * bytes_per_sample", 1-2 bytes per sample).
PROMETHEUS_STORAGE: dict[str, Figure] = {
    "bytes_per_sample": Figure(2, "Prometheus docs, Storage: operational aspects (1-2 bytes per sample; upper end)", "2026-08"),
    # kube-prometheus-stack's targets (kubelet/cAdvisor, node-exporter, kube-state-metrics) plus
    # vLLM, DCGM and KEDA for a cluster of tens of nodes and a few hundred pods.
    "active_series": Figure(250_000, "project planning assumption (kube-prometheus-stack + vLLM/DCGM exporters, "
                                     "tens of nodes)", "2026-08"),
    # Prometheus Operator default scrape interval (kube-prometheus-stack prometheusSpec.scrapeInterval "").
    "scrape_interval_seconds": Figure(30, "Prometheus Operator default scrapeInterval 30s", "2026-08"),
    # WAL, head chunks and compaction need room beyond the retained blocks.
    "volume_headroom": Figure(1.25, "project assumption (WAL and compaction space; Prometheus docs, Storage)", "2026-08"),
    # retentionSize = this share of the volume, so size-based retention deletes old blocks before the
    # volume fills (WAL and m-mapped chunks count toward the size: Prometheus docs, Storage).
    "retention_size_share": Figure(0.8, "project assumption; Prometheus docs, Storage (--storage.tsdb.retention.size)", "2026-08"),
    "minimum_volume_gib": Figure(20, "project assumption", "2026-08"),
}
# gp3, encrypted, provisioned by the EBS CSI driver the cluster installs as a managed add-on. From
# Kubernetes 1.30 EKS no longer marks its gp2 StorageClass as the default (EKS user guide, release
# notes for 1.30), and that class is the in-tree, unencrypted gp2 provisioner: a claim without a
# class stays Pending, so Prometheus names this class.
PROMETHEUS_STORAGE_CLASS = Figure(
    {"name": "gp3-encrypted", "provisioner": "ebs.csi.aws.com",
     "parameters": {"type": "gp3", "encrypted": "true"}},
    "kubernetes-sigs/aws-ebs-csi-driver docs/parameters.md (type, encrypted); EKS user guide, Kubernetes 1.30 notes",
    "2026-08")


def prometheus_volume_gib(retention_days: int) -> tuple[int, int]:
    """(volume GiB, retentionSize GiB) for Prometheus keeping `retention_days` days.

    Prometheus docs (Storage, operational aspects): needed disk = retention seconds x ingested
    samples/s x bytes per sample (PROMETHEUS_STORAGE above). The size
    limit sits below the volume so old blocks go before the disk fills, whichever comes first.
    """
    f = {k: float(v.value) for k, v in PROMETHEUS_STORAGE.items()}  # type: ignore[arg-type]
    need = retention_days * 86_400 * f["active_series"] / f["scrape_interval_seconds"] * f["bytes_per_sample"]
    volume = max(int(f["minimum_volume_gib"]), math.ceil(need * f["volume_headroom"] / 2**30 / 10) * 10)
    return volume, int(volume * f["retention_size_share"])
