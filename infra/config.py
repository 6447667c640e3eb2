"""Typed stack configuration.

Stack config lives under the `llmserving:` namespace of Pulumi.<stack>.yaml,
written in camelCase. `load_settings` validates the whole of it before any
resource exists; every problem becomes one line of a `ConfigError` that names
the key (as the user wrote it), the bad value and what is allowed. Unknown
keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra import catalog as cat
from infra import edge_catalog as _edge

PROJECT = "llmserving"
# Config keys that must be set with `pulumi config set --secret`.
SECRET_KEYS: dict[str, str] = {
    "hfToken": "Hugging Face access token for gated model weights",
    "vllmApiKey": "bearer token vLLM requires on every request (--api-key)",
}

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
TENANT_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# vLLM's allowed --max-lora-rank values (vllm/config/lora.py).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
TENSOR_PARALLEL_SIZES = (1, 2, 4, 8)
K8S_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")


class ConfigError(Exception):
    """Invalid stack configuration; `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


# The offline preview replaces each `secure:` value with this prefix + its key
# (infra/preview.py); the real CLI hands the program the decrypted text.
SECRET_PLACEHOLDER = "offline-placeholder-for-"
_NO_VALUE = object()


class KeyedProblems(ValueError):
    """Problems a validator pins to exact keys at or below the value it checks.

    Items are (key relative to that value, e.g. "minReplicas" or "[3].id"; the
    bad value, or _NO_VALUE; what is wrong). "{here}" in a message becomes
    the full key of the checked value, so a cross-field rule names the other
    key in full (e.g. "{here}.maxReplicas").
    """

    def __init__(self, items: list[tuple[str, Any, str]]):
        self.items = list(items)
        super().__init__("; ".join(f"{k}: {m}" for k, _, m in self.items))


def _cidr_problem(value: str, *, ipv4: bool = False) -> Optional[str]:
    """Why `value` is not a network CIDR (host bits set: name the network address), or None."""
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return "is not a CIDR such as 10.0.0.0/16" if ipv4 else "is not a CIDR such as 203.0.113.0/24"
        return f"has host bits set; the network address is {net}"
    if ipv4 and net.version != 4:
        return "must be an IPv4 CIDR such as 10.0.0.0/16"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


class NetworkConfig(_Strict):
    vpc_cidr: str = "10.0.0.0/16"
    zone_count: int = Field(default=2, ge=2, le=6)
    # Explicit zone names; when absent the program takes the first
    # zone_count zones the region offers.
    zones: Optional[list[str]] = None
    nat_gateways: Literal["single", "per-zone"] = "single"
    s3_gateway_endpoint: bool = True
    # CIDRs allowed to reach a public Kubernetes API endpoint; empty = private only.
    api_public_cidrs: list[str] = []

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        problem = _cidr_problem(v, ipv4=True)
        if problem:
            raise ValueError(problem)
        if not 16 <= ipaddress.ip_network(v).prefixlen <= 20:
            raise ValueError("must be an IPv4 CIDR with a prefix between /16 and /20")
        return v

    @field_validator("api_public_cidrs")
    @classmethod
    def _public_cidrs(cls, v: list[str]) -> list[str]:
        items = []
        for i, c in enumerate(v):
            problem = _cidr_problem(c)
            if problem is None and ipaddress.ip_network(c).prefixlen == 0:
                problem = "opens the API to the internet; list your office or VPN CIDRs"
            if problem:
                items.append((f"[{i}]", c, problem))
        if items:
            raise KeyedProblems(items)
        return v

    @model_validator(mode="after")
    def _zones(self):
        if self.zones is not None:
            items = []
            if len(self.zones) != self.zone_count:
                items.append(("zones", self.zones, f"lists {len(self.zones)} zones but {{here}}.zoneCount is "
                                                   f"{self.zone_count}"))
            for i, z in enumerate(self.zones):
                if z in self.zones[:i]:
                    items.append((f"zones[{i}]", z, f"repeats {{here}}.zones[{self.zones.index(z)}]; "
                                                    f"each subnet pair needs its own zone"))
            if items:
                raise KeyedProblems(items)
        return self


class ScaleConfig(_Strict):
    tier: Optional[Literal["small", "medium", "large"]] = None
    users: Optional[int] = Field(default=None, ge=1, le=10_000_000)
    active_request_share: Optional[float] = Field(default=None, gt=0, le=1)
    tokens_per_request_per_second: Optional[float] = Field(default=None, gt=0, le=10_000)
    # An explicit throughput target replaces the users-based estimate.
    target_tokens_per_second: Optional[float] = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_target(self):
        if self.tier is None and self.users is None and self.target_tokens_per_second is None:
            raise KeyedProblems([("tier", _NO_VALUE, "required key is missing; set {here}.tier (small, medium or "
                                                     "large), {here}.users or {here}.targetTokensPerSecond")])
        return self


class Architecture(_Strict):
    layers: int = Field(ge=1, le=1000)
    kv_heads: int = Field(ge=1, le=1024)
    head_dim: int = Field(ge=1, le=1024)
    # max_position_embeddings of the model's config.json; maxModelLen may not exceed it.
    context_length: Optional[int] = Field(default=None, ge=256, le=10_000_000)


class Batching(_Strict):
    max_num_seqs: Optional[int] = Field(default=None, ge=1, le=4096)
    max_num_batched_tokens: Optional[int] = Field(default=None, ge=256, le=1_048_576)
    enable_prefix_caching: bool = True


class ModelConfig(_Strict):
    name: str
    source: str
    precision: cat.Precision
    pool: str
    parameters_billion: Optional[float] = Field(default=None, gt=0, le=5000)
    architecture: Optional[Architecture] = None
    tensor_parallel: int = 1
    pipeline_parallel: int = Field(default=1, ge=1, le=8)
    max_model_len: int = Field(default=8192, ge=256, le=1_048_576)
    gpu_memory_utilization: Optional[float] = Field(default=None, ge=0.5, le=0.98)
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    min_replicas: int = Field(default=1, ge=0, le=1000)
    max_replicas: int = Field(default=4, ge=1, le=1000)
    traffic_share: Optional[float] = Field(default=None, gt=0, le=1)
    batching: Batching = Batching()
    tokens_per_second_per_replica: Optional[float] = Field(default=None, gt=0)
    # Hub commit the model mirror copies (a 40-hex commit SHA; required in prod). Without it (dev) the
    # mirror follows `main` at the time the mirror job runs (components/mirror_script.py).
    revision: Optional[str] = None
    # How vLLM reads the mirrored weights: streamed from S3 (runai_streamer, safetensors only), or copied
    # into the pod's cache first and loaded as safetensors or pt (the fallback; never from the Hub).
    load_format: Literal["runai_streamer", "safetensors", "pt"] = "runai_streamer"

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not COMMIT_SHA.match(v):
            raise ValueError("must be a 40-character commit SHA of the Hub repository (lowercase hex, e.g. "
                             "0e9e39f249a16976918f6564b8830bc894c89659); a branch or tag can move")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError("must be a DNS label: lowercase letters, digits and '-', at most 40 characters")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not HF_REPO.match(v):
            raise ValueError("must be a Hugging Face repository id such as meta-llama/Llama-3.1-8B-Instruct")
        return v

    @field_validator("tensor_parallel")
    @classmethod
    def _tp(cls, v: int) -> int:
        if v not in TENSOR_PARALLEL_SIZES:
            raise ValueError(f"must be one of {', '.join(map(str, TENSOR_PARALLEL_SIZES))} (GPUs of one node)")
        return v

    @model_validator(mode="after")
    def _replicas(self):
        if self.min_replicas > self.max_replicas:
            raise KeyedProblems([("minReplicas", self.min_replicas,
                                  f"must be at most {{here}}.maxReplicas ({self.max_replicas})")])
        return self


CAPACITY_RESERVATION_ID = re.compile(r"^cr-[0-9a-z]+$")
# What EC2, EKS and Kubernetes accept in a tag value / annotation alike (the acknowledgement travels as both).
ACK_TEXT = re.compile(r"^[A-Za-z0-9 +\-=._:/@]{10,256}$")


class CapacityReservation(_Strict):
    """An EC2 On-Demand Capacity Reservation or a Capacity Block for ML the pool launches into.

    Selected by `id`, or (Karpenter pools only) by `tags`. A reservation is paid for whether
    instances run in it or not: the planner prices `instanceCount` x the reservation's rate
    (an ODCR bills the instance type's on-demand rate; a Capacity Block its purchase price,
    `usdPerInstanceHour`).
    """

    id: Optional[str] = None
    tags: dict[str, str] = {}
    type: Literal["odcr", "capacity-block"] = "odcr"
    instance_type: str
    instance_count: int = Field(ge=1, le=10_000)
    # The reservation's zone: node groups and Auto Scaling groups launch into it only there.
    availability_zone: Optional[str] = None
    # Capacity Block: the effective hourly price per instance EC2 quoted at purchase (upfront fee / hours).
    usd_per_instance_hour: Optional[float] = Field(default=None, gt=0, le=100_000)

    @field_validator("id")
    @classmethod
    def _id(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not CAPACITY_RESERVATION_ID.match(v):
            raise ValueError("must be a capacity reservation id such as cr-0123456789abcdef0")
        return v

    @model_validator(mode="after")
    def _selector(self):
        items = []
        if (self.id is None) == (not self.tags):
            items.append(("id", self.id if self.id is not None else _NO_VALUE,
                          "set exactly one of {here}.id and {here}.tags (tags select reservations with Karpenter only)"))
        if self.type == "capacity-block" and self.usd_per_instance_hour is None:
            items.append(("usdPerInstanceHour", _NO_VALUE, "required key is missing; a Capacity Block is paid upfront: "
                          "give its effective hourly price per instance (upfront fee / hours) so the plan prices it"))
        if items:
            raise KeyedProblems(items)
        return self


class GpuPoolConfig(_Strict):
    name: str
    instance_types: list[str] = Field(min_length=1)
    capacity_type: Literal["spot", "on-demand", "spot-with-on-demand-fallback"] = "on-demand"
    min_nodes: int = Field(default=0, ge=0, le=1000)
    max_nodes: int = Field(ge=1, le=1000)
    # How nodes are provisioned; by default Karpenter on EKS and an Auto
    # Scaling group on ECS.
    provisioner: Optional[Literal["karpenter", "managed-node-group", "auto-scaling-group"]] = None
    root_volume_gib: int = Field(default=500, ge=100, le=16384)
    # Reservations the pool launches into first (docs/capacity.md).
    capacity_reservations: list[CapacityReservation] = []
    # Why an on-demand pool of scarce GPUs (p5, p4de) runs without a reservation: the prod policy
    # `gpu-capacity-reservation` accepts such a pool only with this written acknowledgement.
    acknowledge_no_reservation: Optional[str] = None

    @field_validator("acknowledge_no_reservation")
    @classmethod
    def _ack(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not ACK_TEXT.match(v):
            raise ValueError("must be a reason of 10-256 characters: letters, digits, spaces and + - = . _ : / @ "
                             "(it becomes a tag value and an annotation)")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.match(v):
            raise ValueError("must be a DNS label: lowercase letters, digits and '-', at most 40 characters")
        return v

    @model_validator(mode="after")
    def _sizes(self):
        if self.min_nodes > self.max_nodes:
            raise KeyedProblems([("minNodes", self.min_nodes, f"must be at most {{here}}.maxNodes ({self.max_nodes})")])
        return self


class Tenant(_Strict):
    id: str
    adapters: list[str] = []

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not TENANT_ID.match(v):
            raise ValueError("must be a safe S3 prefix: lowercase letters, digits and '-', 1-63 characters")
        return v

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, v: list[str]) -> list[str]:
        items = []
        for i, a in enumerate(v):
            if not DNS_LABEL.match(a):
                items.append((f"[{i}]", a, "must be a DNS label of at most 40 characters (it is the OpenAI `model` "
                                           "a client sends)"))
            elif a in v[:i]:
                items.append((f"[{i}]", a, f"repeats {{here}}[{v.index(a)}]"))
        if items:
            raise KeyedProblems(items)
        return v


class LoraConfig(_Strict):
    enabled: bool = False
    base_model: Optional[str] = None
    max_loras: int = Field(default=4, ge=1, le=256)
    max_lora_rank: int = 16
    max_cpu_loras: Optional[int] = Field(default=None, ge=1, le=100_000)
    # Runtime adapter loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING); off by
    # default because vLLM calls it risky in production.
    runtime_loading: bool = False
    tenants: list[Tenant] = []

    @field_validator("max_lora_rank")
    @classmethod
    def _rank(cls, v: int) -> int:
        if v not in LORA_RANKS:
            raise ValueError(f"must be one of {', '.join(map(str, LORA_RANKS))} (vLLM --max-lora-rank)")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        items = []
        if self.enabled and not self.base_model:
            items.append(("baseModel", _NO_VALUE, "required key is missing; with {here}.enabled true, name the model "
                                                  "that serves the adapters"))
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            items.append(("maxCpuLoras", self.max_cpu_loras, f"must be at least {{here}}.maxLoras ({self.max_loras})"))
        first_id: dict[str, int] = {}
        first_adapter: dict[str, str] = {}
        for i, t in enumerate(self.tenants):
            if t.id in first_id:
                items.append((f"tenants[{i}].id", t.id, f"repeats {{here}}.tenants[{first_id[t.id]}].id; "
                                                        f"tenant ids must be unique"))
            first_id.setdefault(t.id, i)
            for j, a in enumerate(t.adapters):
                where = f"tenants[{i}].adapters[{j}]"
                if a in first_adapter and not first_adapter[a].startswith(f"tenants[{i}]."):
                    items.append((where, a, f"also in {{here}}.{first_adapter[a]}; adapter names are the served "
                                            f"model names and must be unique across tenants"))
                first_adapter.setdefault(a, where)
        if items:
            raise KeyedProblems(items)
        return self


class BudgetConfig(_Strict):
    hourly_usd: float = Field(gt=0)
    monthly_usd: float = Field(gt=0)
    alert_thresholds_percent: list[int] = [50, 80, 100]
    notify_emails: list[str] = []

    @field_validator("alert_thresholds_percent")
    @classmethod
    def _thresholds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("must list percentages between 1 and 500")
        items = [(f"[{i}]", t, "must be a percentage between 1 and 500") for i, t in enumerate(v) if not 1 <= t <= 500]
        # components/budget.py: AWS Budgets allows 5 notifications per budget, and the
        # stack budget adds a forecast alert to the thresholds.
        from components.budget import MAX_NOTIFICATIONS
        if len(set(v)) > MAX_NOTIFICATIONS - 1:
            items.append(("", v, f"{len(set(v))} thresholds plus the forecast alert the stack budget adds; AWS Budgets "
                                 f"allows {MAX_NOTIFICATIONS} notifications per budget, so list at most "
                                 f"{MAX_NOTIFICATIONS - 1}"))
        if items:
            raise KeyedProblems(items)
        return sorted(set(v))

    @field_validator("notify_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        items = [(f"[{i}]", e, "is not an email address") for i, e in enumerate(v)
                 if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", e)]
        # components/budget.py: AWS Budgets allows 10 e-mail subscribers per notification.
        from components.budget import MAX_EMAILS
        if len(v) > MAX_EMAILS:
            items.append(("", v, f"{len(v)} addresses; AWS Budgets allows {MAX_EMAILS} e-mail subscribers per "
                                 f"notification (use a mailing list)"))
        if items:
            raise KeyedProblems(items)
        return v


class GpuLimitsConfig(_Strict):
    max_gpus_total: int = Field(ge=1, le=100_000)
    max_gpus_per_pool: int = Field(ge=1, le=100_000)
    allowed_families: list[str] = Field(min_length=1)


def _check_cloudwatch_retention(v: int) -> int:
    allowed = _edge.CLOUDWATCH_RETENTION_DAYS.value
    if v not in allowed:  # type: ignore[operator]
        raise ValueError(f"CloudWatch Logs keeps log groups for one of {', '.join(map(str, allowed))} days"  # type: ignore[call-overload]
                         f" ({_edge.CLOUDWATCH_RETENTION_DAYS.source})")
    return v


class ObservabilityConfig(_Strict):
    prometheus: bool = True
    grafana: bool = True
    dcgm_exporter: bool = True
    alerts: bool = True
    log_retention_days: int = 30

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, v: int) -> int:
        # Feeds CloudWatch log groups (ECS tasks, VPC flow logs, WAF logs): only these values exist.
        return _check_cloudwatch_retention(v)


class ServingConfig(_Strict):
    """vLLM workloads on Kubernetes (see docs/serving.md)."""

    # Overrides the vLLM image tag of infra/serving_catalog.py IMAGES (never "latest").
    vllm_image_tag: Optional[str] = None
    # Bring-your-own Prometheus: set this and observability.prometheus false.
    prometheus_url: Optional[str] = None
    prometheus_namespace: str = "monitoring"
    # Overrides of infra/serving_catalog.py SERVING_FIGURES (e.g. queueDepthPerReplica).
    figures: dict[str, float] = {}

    @field_validator("vllm_image_tag")
    @classmethod
    def _tag(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (v == "latest" or not re.match(r"^v?\d+\.\d+\.\d+", v)):
            raise ValueError("must be a pinned vLLM release tag such as v0.11.1 (never latest)")
        return v

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL such as http://prometheus.monitoring.svc:9090")
        return v

    @field_validator("prometheus_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        # NetworkPolicies admit the scraper by this namespace's name (components/model_router.py).
        if not K8S_NAMESPACE.match(v):
            raise ValueError("must be a Kubernetes namespace name: lowercase letters, digits and '-', at most 63")
        return v

    @field_validator("figures")
    @classmethod
    def _figures(cls, v: dict[str, float]) -> dict[str, float]:
        from infra.config_limits import figure_problems
        items = figure_problems(v)
        if items:
            raise KeyedProblems(items)
        return v


class EksConfig(_Strict):
    # IAM roles granted cluster-admin through EKS access entries.
    admin_role_arns: list[str] = []

    @field_validator("admin_role_arns")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        for arn in v:
            if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$", arn):
                raise ValueError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
        return v

    # Who runs `pulumi up` against the cluster API (Helm releases and Kubernetes
    # objects go through it). The endpoint is private: these sources get HTTPS
    # (443) on the cluster security group: a runner in the VPC, a peered
    # network or a VPN (CIDRs), or instances in a security group of the VPC.
    deployer_cidrs: list[str] = []
    deployer_security_group_ids: list[str] = []
    # Bootstrap of a new account, before any runner exists in the VPC: opens a
    # PUBLIC API endpoint restricted to these CIDRs (your egress IPs), in prod
    # too. Remove the key once a deployer inside the VPC works; the next `up`
    # closes the public endpoint (README, "Deploying for real").
    bootstrap_public_cidrs: list[str] = []

    @field_validator("deployer_cidrs")
    @classmethod
    def _deployer_cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                net = ipaddress.ip_network(c)
            except ValueError:
                raise ValueError(f"{c!r} is not a CIDR; list the networks your deployer connects from, "
                                 f"e.g. 10.60.0.0/16 (a peered VPC or VPN)")
            if net.prefixlen == 0:
                raise ValueError(f"{c!r} admits every address to the cluster API; list the deployer's networks")
        return v

    @field_validator("deployer_security_group_ids")
    @classmethod
    def _deployer_groups(cls, v: list[str]) -> list[str]:
        for g in v:
            if not re.match(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$", g):
                raise ValueError(f"{g!r} is not a security group id (sg- and 8 or 17 hex digits)")
        return v

    @field_validator("bootstrap_public_cidrs")
    @classmethod
    def _bootstrap(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                net = ipaddress.ip_network(c)
            except ValueError:
                raise ValueError(f"{c!r} is not a CIDR; list your deployer's public egress IPs, e.g. 192.0.2.10/32")
            if net.version != 4:
                raise ValueError(f"{c!r} is IPv6; EKS public access CIDRs are IPv4")
            if net.prefixlen == 0:
                raise ValueError(f"{c!r} opens the cluster API to the internet; list only the deployer's public "
                                 f"egress IPs (prefix /16 to /32) and remove the key after the bootstrap")
            if net.prefixlen < 16:
                raise ValueError(f"{c!r} is wider than /16; list only the deployer's public egress IPs "
                                 f"(prefix /16 to /32)")
        return v


class IngressConfig(_Strict):
    """Public entry: ALB with TLS, WAF, access logs (see components/load_balancer.py)."""

    # ACM certificate for the HTTPS listener (same region as the stack); required in prod.
    certificate_arn: Optional[str] = None
    domain_name: Optional[str] = None
    # Who may reach the ALB; a private API would list office/VPN CIDRs.
    allowed_cidrs: list[str] = ["0.0.0.0/0"]
    waf_rate_limit_per_5_min: int = Field(default=int(_edge.ALB_DEFAULTS["waf_rate_limit_per_5_min"].value),
                                          ge=10, le=2_000_000_000)
    access_logs: bool = True
    access_log_retention_days: int = Field(default=90, ge=1, le=3653)
    # Default: on in prod, off elsewhere.
    deletion_protection: Optional[bool] = None
    idle_timeout_seconds: int = Field(default=int(_edge.ALB_DEFAULTS["idle_timeout_seconds"].value), ge=1, le=4000)

    @field_validator("certificate_arn")
    @classmethod
    def _cert(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not ACM_ARN.match(v):
            raise ValueError("must be an ACM certificate ARN such as "
                             "arn:aws:acm:us-east-1:123456789012:certificate/<uuid>")
        return v

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one CIDR (0.0.0.0/0 for a public API)")
        items = [(f"[{i}]", c, problem) for i, c in enumerate(v) if (problem := _cidr_problem(c))]
        if items:
            raise KeyedProblems(items)
        return v


class EcsConfig(_Strict):
    """ECS GPU path settings (orchestrator: ecs); defaults in infra/edge_catalog.py."""

    vllm_image: str = str(_edge.VLLM_IMAGE.value)
    # On-demand instances kept under spot in pools with capacityType spot-with-on-demand-fallback.
    on_demand_base_capacity: int = Field(default=1, ge=0, le=1000)
    spot_allocation_strategy: Literal["price-capacity-optimized", "capacity-optimized",
                                      "capacity-optimized-prioritized", "lowest-price"] = "price-capacity-optimized"
    container_insights: Literal["enabled", "enhanced"] = "enhanced"
    requests_per_target_per_minute: int = Field(
        default=int(_edge.ECS_DEFAULTS["requests_per_target_per_minute"].value), ge=1, le=100_000)
    # None: derived per model from the start-up estimate (infra/startup.py ecs_grace_seconds).
    load_grace_period_seconds: Optional[int] = Field(default=None, ge=60, le=7200)

    @field_validator("vllm_image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9./_-]+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", v) or v.endswith(":latest"):
            raise ValueError("must be an image pinned to a tag or digest (never :latest), e.g. vllm/vllm-openai:v0.11.1")
        return v

    @field_validator("load_grace_period_seconds")
    @classmethod
    def _grace(cls, v: Optional[int]) -> Optional[int]:
        # components/vllm_ecs_service.py: the grace period must cover the container
        # health check's start period (infra/edge_catalog.py ECS_DEFAULTS).
        start = int(_edge.ECS_DEFAULTS["health_check_start_period_seconds"].value)
        if v is not None and v < start:
            raise ValueError(f"must be at least {start}, the container health check's start period; the load "
                             f"balancer would count a loading model as unhealthy")
        return v


class AdapterStoreConfig(_Strict):
    """S3 store for tenants' LoRA adapters (components/adapter_store.py)."""

    # Principals allowed to assume the tenant writer role (the onboarding
    # pipeline); they must tag the session with `tenant`. Empty: this account.
    writer_principal_arns: list[str] = []
    noncurrent_version_days: int = Field(
        default=int(_edge.ADAPTER_STORE_DEFAULTS["noncurrent_version_days"].value), ge=1, le=3650)

    @field_validator("writer_principal_arns")
    @classmethod
    def _principals(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", a):
                raise ValueError(f"{a!r} is not an IAM role or user ARN (no wildcards)")
        return v


class StackConfig(_Strict):
    environment: Literal["dev", "staging", "prod"]
    orchestrator: Literal["eks", "ecs"]
    kubernetes_version: str = "1.33"
    network: NetworkConfig = NetworkConfig()
    scale: ScaleConfig
    models: list[ModelConfig] = Field(min_length=1)
    gpu_pools: list[GpuPoolConfig] = Field(min_length=1)
    lora: LoraConfig = LoraConfig()
    budget: BudgetConfig
    gpu_limits: GpuLimitsConfig
    observability: ObservabilityConfig = ObservabilityConfig()
    serving: ServingConfig = ServingConfig()
    eks: EksConfig = EksConfig()
    ingress: IngressConfig = IngressConfig()
    ecs: EcsConfig = EcsConfig()
    adapter_store: AdapterStoreConfig = AdapterStoreConfig()
    catalog: cat.CatalogOverrides = cat.CatalogOverrides()
    tags: dict[str, str] = {}
    # The account's EC2 Spot service-linked role, needed before the first Spot
    # launch: `create` it in this stack (when a pool uses spot), or `existing`:
    # the account has it already (EC2, by hand, or another stack created it).
    spot_service_linked_role: Literal["create", "existing"] = "create"
    ingress: IngressConfig = IngressConfig()
    ecs: EcsConfig = EcsConfig()
    adapter_store: AdapterStoreConfig = AdapterStoreConfig()

    @field_validator("models")
    @classmethod
    def _alb_quotas(cls, v: list) -> list:
        # One ALB serves every model: one target group and one listener rule each, plus the router
        # target group (EKS) and the admin-path deny rule (components/load_balancer.py).
        q = _edge.ALB_QUOTAS
        rules, groups = int(q["rules_per_load_balancer"].value), int(q["target_groups_per_load_balancer"].value)  # type: ignore[call-overload]
        most = min(rules, groups) - 1
        if len(v) > most:
            raise ValueError(f"{len(v)} models; one load balancer serves at most {most} (each model takes a listener "
                             f"rule and a target group, plus the deny rule and the router target group; an ALB allows "
                             f"{rules} rules and {groups} target groups: {q['rules_per_load_balancer'].source})")
        return v

    @field_validator("kubernetes_version")
    @classmethod
    def _k8s(cls, v: str) -> str:
        if not re.match(r"^1\.(2[89]|3[0-9])$", v):
            if v == "1.3":
                # The CLI reads an unquoted 1.30 as the number 1.3 and hands the program "1.3".
                raise ValueError(f"must be an EKS Kubernetes version from 1.28 to 1.39; YAML reads an unquoted "
                                 f"{v}0 as the number {v}, so quote it: kubernetesVersion: \"{v}0\"")
            raise ValueError("must be an EKS Kubernetes version from 1.28 to 1.39, e.g. '1.33'")
        return v


@dataclass(frozen=True)
class Settings:
    """A validated stack: its config, region and the catalog it plans with."""

    project: str
    stack: str
    region: str
    config: StackConfig
    catalog: cat.Catalog
    secrets_set: frozenset[str] = field(default_factory=frozenset)

    def pool(self, name: str) -> GpuPoolConfig:
        return next(p for p in self.config.gpu_pools if p.name == name)

    def provisioner(self, pool: GpuPoolConfig) -> str:
        if pool.provisioner:
            return pool.provisioner
        return "karpenter" if self.config.orchestrator == "eks" else "auto-scaling-group"


AWS_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def _display_loc(prefix: str, loc: tuple) -> str:
    """`llmserving:models[0].tensorParallel` from ("models", 0, "tensorParallel")."""
    out = prefix
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += (":" if i == 0 and ":" not in prefix else ".") + str(part)
    return out


def _join(base: str, rel: str) -> str:
    """The full key of `rel` ("minReplicas", "[3].id", "") below the key `base`."""
    if not rel or rel.startswith("["):
        return base + rel
    return base + ("." if ":" in base else ":") + rel


def _model_at(model: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """The pydantic model class that holds the field at `loc` (for listing allowed keys)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        match = next((f for n, f in current.model_fields.items() if part in (n, f.alias)), None)
        if match is None:
            return None
        ann = match.annotation
        for _ in range(3):  # unwrap Optional[...] and list[...]
            args = [a for a in getattr(ann, "__args__", ()) if a is not type(None)]
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                break
            ann = args[0] if args else ann
        current = ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _keys_of(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or n for n, f in model.model_fields.items())


def _short(value: Any) -> str:
    """The value as the message shows it: scalars in full, sections summarised (never a JSON dump)."""
    if value is None:
        return "no value"
    if isinstance(value, dict):
        keys = list(value)
        return ("a mapping with keys " + ", ".join(map(str, keys[:6])) + (", ..." if len(keys) > 6 else "")
                if keys else "an empty mapping")
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            text = json.dumps(value, default=str)
            if len(text) <= 80:
                return text
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, str) and value.startswith(SECRET_PLACEHOLDER):
        return "a secret"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Top-level keys people put under the project that belong to the AWS provider.
_AWS_KEYS_HINT = {"region": "aws:region", "profile": "aws:profile", "defaultTags": "aws:defaultTags"}
# Plain-language replacements for pydantic's type messages (which name Python classes).
_TYPE_MESSAGES = {
    "int_parsing": "must be a whole number", "int_type": "must be a whole number",
    "int_from_float": "must be a whole number", "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false", "bool_type": "must be true or false",
    "string_type": "must be text", "list_type": "must be a list", "dict_type": "must be a mapping of names to values",
}


def _problems(error: ValidationError, root: type[BaseModel], prefix: str) -> list[str]:
    problems = []
    for e in error.errors():
        loc = tuple(e["loc"])
        where = _display_loc(prefix, loc)
        value = e.get("input")
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedProblems):
            for rel, bad, msg in cause.items:
                msg = msg.replace("{here}", where)
                problems.append(f"{_join(where, rel)}: {msg}" if bad is _NO_VALUE
                                else f"{_join(where, rel)}: got {_short(bad)}; {msg}")
            continue
        if e["type"] == "extra_forbidden":
            holder = _model_at(root, loc)
            allowed = _keys_of(holder) if holder else []
            if holder is StackConfig:
                allowed = sorted(allowed + list(SECRET_KEYS))
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            aws = _AWS_KEYS_HINT.get(str(loc[-1])) if len(loc) == 1 and holder is root else None
            problems.append(
                f"{where}: unknown key {loc[-1]!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + (f"; it is the AWS provider's setting: set {aws} (not under {prefix}:)" if aws else "")
                + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
            )
        elif e["type"] == "missing":
            problems.append(f"{where}: required key is missing")
        elif isinstance(value, str) and value.startswith(SECRET_PLACEHOLDER):
            problems.append(f"{where}: is a secret (secure:), which the offline preview cannot decrypt, and no stand-in "
                            f"that passes this key's check is known (infra/config.py SECRET_STAND_INS); keep this key "
                            f"in plain text or add a stand-in")
        elif e["type"] in ("model_type", "model_attributes_type"):
            section = _model_at(root, loc + ("_",))
            keys = f" with keys such as {', '.join(_keys_of(section))}" if section else ""
            if value in ("", None):
                holder = _model_at(root, loc)
                field = next((f for n, f in holder.model_fields.items() if loc[-1] in (n, f.alias)), None) if holder else None
                optional = field is not None and not field.is_required()
                problems.append(f"{where}: has no value (an empty entry); it must be a mapping{keys}"
                                + (", or leave the key out for the defaults" if optional else ""))
            else:
                problems.append(f"{where}: got {_short(value)}; must be a mapping{keys}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] in _TYPE_MESSAGES:
                msg = _TYPE_MESSAGES[e["type"]]
                if e["type"] == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    msg += f" (YAML read it as a number; quote it, e.g. \"{value}\")"
            if value in ("", None) and e["type"] not in ("list_type", "dict_type"):
                problems.append(f"{where}: has no value (an empty entry); {msg}")
            else:
                problems.append(f"{where}: got {_short(value)}; {msg}")
    return problems


def _parse_value(raw: Any) -> Any:
    # The CLI hands structured config to the program as JSON text.
    if isinstance(raw, str):
        stripped = raw.strip()
        # Scalars stay text ("1.33" is a version, not a number); pydantic
        # coerces "3" and "true" where a field wants a number or a bool.
        if stripped[:1] in "[{":
            try:
                return json.loads(stripped)
            except json.JSONDecodeError:
                return raw
    return raw


# Namespaces whose keys this program does not read itself but which are valid:
# the providers it creates (their own config keys) and the engine's.
OTHER_NAMESPACES = ("aws", "kubernetes", "eks", "pulumi")


def _aws_provider_keys() -> frozenset[str]:
    """Config keys of the pinned pulumi-aws provider (from its generated config module)."""
    from infra.config_limits import aws_provider_keys
    return aws_provider_keys()


def _namespace_problems(raw_config: dict[str, Any], project: str) -> list[str]:
    problems = []
    known = {f.alias or n for n, f in StackConfig.model_fields.items()} | set(SECRET_KEYS)
    for key in sorted(raw_config):
        ns, _, name = key.partition(":")
        if not name or ns == project or (ns in OTHER_NAMESPACES and ns != "aws"):
            continue
        if ns == "aws":
            allowed = _aws_provider_keys()
            if allowed and name not in allowed:
                hint = difflib.get_close_matches(name, sorted(allowed), n=1)
                problems.append(f"{key}: unknown key {name!r} of the AWS provider"
                                + (f" (did you mean 'aws:{hint[0]}'?)" if hint else "")
                                + (f"; this project's settings live under {project}:{name}" if name in known else ""))
            continue
        hint = f"; did you mean '{project}:{name}'?" if name in known else ""
        problems.append(f"{key}: namespace {ns!r} is not read by this program (project {project!r}: its settings "
                        f"live under {project}:, providers' under {', '.join(n + ':' for n in OTHER_NAMESPACES)})"
                        + hint)
    return problems


# Stand-ins for secrets at nested paths in the offline preview: each passes
# the key's own check, so a valid stack is not rejected because the preview
# cannot decrypt. Keys are alias paths with [] for list items.
SECRET_STAND_INS: dict[str, Any] = {
    "budget.notifyEmails[]": "secret-address@example.com",
    "eks.adminRoleArns[]": "arn:aws:iam::123456789012:role/offline-secret-stand-in",
    "adapterStore.writerPrincipalArns[]": "arn:aws:iam::123456789012:role/offline-secret-stand-in",
    "ingress.certificateArn": lambda region: (f"arn:aws:acm:{region}:123456789012:certificate/"
                                              f"00000000-0000-4000-8000-000000000000"),
    "ingress.domainName": "secret.example.com",
    "ingress.allowedCidrs[]": "192.0.2.0/24",
    "network.apiPublicCidrs[]": "192.0.2.0/24",
    "serving.prometheusUrl": "http://offline-secret-stand-in.invalid:9090",
    "tags.*": "offline-secret-stand-in",
}


def _stand_in_secrets(value: Any, path: str, region: str) -> Any:
    """`value` with each offline secret placeholder replaced by the stand-in for its key, where one is known."""
    if isinstance(value, dict):
        return {k: _stand_in_secrets(v, f"{path}.{k}" if path else k, region) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in_secrets(v, f"{path}[]", region) for v in value]
    if isinstance(value, str) and value.startswith(SECRET_PLACEHOLDER):
        stand_in = SECRET_STAND_INS.get(path, SECRET_STAND_INS.get(path.rsplit(".", 1)[0] + ".*"))
        if stand_in is not None:
            return stand_in(region) if callable(stand_in) else stand_in
    return value


def load_settings(raw_config: dict[str, Any], *, stack: str, secret_keys: set[str] | frozenset[str] = frozenset(),
                  project: str = PROJECT) -> Settings:
    """Validates the whole Pulumi config bag (namespaced keys) of one stack.

    Raises ConfigError listing every problem; nothing has been created yet.
    """
    problems: list[str] = []
    ns = f"{project}:"
    region = raw_config.get("aws:region")
    if not region:
        problems.append("aws:region: required key is missing; set it with `pulumi config set aws:region us-east-1`")
    elif not AWS_REGION.match(str(region)):
        problems.append(f"aws:region: got {_short(region)}; must be an AWS region such as us-east-1")
    problems += _namespace_problems(raw_config, project)

    body: dict[str, Any] = {}
    secrets_set: set[str] = set()
    for key, value in raw_config.items():
        if not key.startswith(ns):
            continue
        name = key[len(ns):]
        if name in SECRET_KEYS:
            if key not in secret_keys:
                problems.append(f"{key}: must be a secret; set it with `pulumi config set --secret {name} <value>` ({SECRET_KEYS[name]})")
            secrets_set.add(name)
            continue
        body[name] = _parse_value(value)
        if key in secret_keys:
            body[name] = _stand_in_secrets(body[name], name, str(region or "us-east-1"))

    try:
        config = StackConfig.model_validate(body)
    except ValidationError as e:
        raise ConfigError(problems + _problems(e, StackConfig, project))
    if problems:
        raise ConfigError(problems)

    try:
        catalog = cat.apply_overrides(cat.default_catalog(), config.catalog)
    except cat.CatalogOverrideError as e:
        raise ConfigError([p for where, row_type, err in e.failures
                           for p in _problems(err, row_type, f"{project}:catalog.{where}")])

    from infra.config_limits import limit_problems, stack_name_problems
    problems += stack_name_problems(project, stack, str(region), config)
    problems += _cross_check(config, catalog, str(region), secrets_set, project)
    problems += limit_problems(config, catalog, project)
    if problems:
        raise ConfigError(problems)
    return Settings(project=project, stack=stack, region=str(region), config=config,
                    catalog=catalog, secrets_set=frozenset(secrets_set))


def _cross_check(c: StackConfig, catalog: cat.Catalog, region: str, secrets_set: set[str], project: str) -> list[str]:
    p: list[str] = []
    k = lambda path: f"{project}:{path}"  # noqa: E731

    if c.environment == "prod" and c.network.zone_count < 3:
        p.append(f"{k('network.zoneCount')}: got {c.network.zone_count}; prod needs at least 3 zones")
    if c.network.zones:
        for i, z in enumerate(c.network.zones):
            if not (z.startswith(region) and len(z) == len(region) + 1):
                p.append(f"{k(f'network.zones[{i}]')}: got {z!r}; must be a zone of {region}, e.g. {region}a")
    if c.environment == "prod" and "vllmApiKey" not in secrets_set:
        p.append(f"{k('vllmApiKey')}: required key is missing; prod serving must require an API key "
                 f"(`pulumi config set --secret vllmApiKey <value>`)")

    pool_names = [pool.name for pool in c.gpu_pools]
    for i, name in enumerate(pool_names):
        if name in pool_names[:i]:
            p.append(f"{k(f'gpuPools[{i}].name')}: got {name!r}; repeats {k(f'gpuPools[{pool_names.index(name)}].name')}; "
                     f"pool names must be unique")
    model_names = [m.name for m in c.models]
    for i, name in enumerate(model_names):
        if name in model_names[:i]:
            p.append(f"{k(f'models[{i}].name')}: got {name!r}; repeats {k(f'models[{model_names.index(name)}].name')}; "
                     f"model names must be unique")

    allowed_types = sorted(catalog.instance_types)
    for i, pool in enumerate(c.gpu_pools):
        for j, it in enumerate(pool.instance_types):
            key = k(f"gpuPools[{i}].instanceTypes[{j}]")
            if it not in catalog.instance_types:
                hint = difflib.get_close_matches(it, allowed_types, n=1)
                p.append(f"{key}: got {it!r}; unknown GPU instance type"
                         + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f"; allowed: {', '.join(allowed_types)} (or add a row under {k('catalog.instanceTypes')})")
            elif catalog.instance_types[it].family not in c.gpu_limits.allowed_families:
                p.append(f"{key}: got {it!r}; family {catalog.instance_types[it].family!r} is not in "
                         f"gpuLimits.allowedFamilies ({', '.join(c.gpu_limits.allowed_families)})")
        prov = pool.provisioner
        if c.orchestrator == "ecs" and prov in ("karpenter", "managed-node-group"):
            p.append(f"{k(f'gpuPools[{i}].provisioner')}: got {prov!r}; ECS pools use 'auto-scaling-group'")
        if c.orchestrator == "eks" and prov == "auto-scaling-group":
            p.append(f"{k(f'gpuPools[{i}].provisioner')}: got {prov!r}; EKS pools use 'karpenter' or 'managed-node-group'")

    shares = [m.traffic_share for m in c.models]
    if any(s is not None for s in shares):
        if any(s is None for s in shares):
            unset = [k(f"models[{i}].trafficShare") for i, s in enumerate(shares) if s is None]
            p.append(f"{unset[0]}: required key is missing; set trafficShare on every model or on none (none splits "
                     f"traffic evenly)" + (f"; also missing: {', '.join(unset[1:])}" if unset[1:] else ""))
        elif not math.isclose(sum(shares), 1.0, abs_tol=1e-6):
            terms = " + ".join(f"{k(f'models[{i}].trafficShare')} {s:g}" for i, s in enumerate(shares))
            p.append(f"{k('models[*].trafficShare')}: add up to {sum(shares):g} ({terms}); they must add up to 1")

    for i, m in enumerate(c.models):
        if m.pool not in pool_names:
            p.append(f"{k(f'models[{i}].pool')}: got {m.pool!r}; must name a pool in gpuPools ({', '.join(pool_names)})")
        if c.environment == "prod" and m.revision is None:
            p.append(f"{k(f'models[{i}].revision')}: required key is missing; prod pins the Hub commit its model mirror "
                     f"copies (40 hex characters, e.g. `curl -s https://huggingface.co/api/models/{m.source}/revision/main "
                     f"| jq -r .sha`), so every replica serves the weights that were evaluated")
        if m.source not in catalog.models and (m.parameters_billion is None or m.architecture is None):
            p.append(f"{k(f'models[{i}].source')}: got {m.source!r}; not in the model catalog, so set "
                     f"parametersBillion and architecture (layers, kvHeads, headDim) or add it under {k('catalog.models')}; "
                     f"known: {', '.join(sorted(catalog.models))}")

    for name, row in sorted(catalog.instance_types.items()):
        if row.gpu not in catalog.gpus:
            p.append(f"{k(f'catalog.instanceTypes[{name!r}].gpu')}: got {row.gpu!r}; must name a GPU of the catalog "
                     f"({', '.join(sorted(catalog.gpus))}) or a row under {k('catalog.gpus')}")
    added = len(c.catalog.throughput_anchors)  # the stack's anchors come after the defaults
    for i, anchor in enumerate(catalog.throughput_anchors[len(catalog.throughput_anchors) - added:]):
        if anchor.gpu not in catalog.gpus:
            p.append(f"{k(f'catalog.throughputAnchors[{i}].gpu')}: got {anchor.gpu!r}; must name a GPU of the catalog "
                     f"({', '.join(sorted(catalog.gpus))}) or a row under {k('catalog.gpus')}")

    if c.lora.enabled and c.lora.base_model and c.lora.base_model not in model_names:
        p.append(f"{k('lora.baseModel')}: got {c.lora.base_model!r}; must name a model in models ({', '.join(model_names)})")
    if c.lora.tenants and not c.lora.enabled:
        p.append(f"{k('lora.enabled')}: got false; {k('lora.tenants')} lists {len(c.lora.tenants)} tenant(s), whose "
                 f"adapters would not be served; set it to true or remove the tenants")
    if not c.observability.prometheus and not c.serving.prometheus_url:
        p.append(f"{k('serving.prometheusUrl')}: required key is missing; with observability.prometheus false, "
                 f"autoscaling needs your own Prometheus URL (e.g. http://prometheus.monitoring.svc:9090)")
    from infra.serving_catalog import SERVING_FIGURES
    for key in c.serving.figures:
        snake = re.sub(r"([A-Z])", lambda mt: "_" + mt.group(1).lower(), key)
        if snake not in SERVING_FIGURES:
            allowed = sorted(re.sub(r"_([a-z])", lambda mt: mt.group(1).upper(), f) for f in SERVING_FIGURES)
            p.append(f"{k(f'serving.figures.{key}')}: unknown figure; allowed: {', '.join(allowed)}")
    p += _edge_checks(c, region, k)
    p += _reservation_checks(c, region, k)
    return p


def _reservation_checks(c: StackConfig, region: str, k) -> list[str]:
    """Capacity reservations against the pool and what launches into them (docs/capacity.md).

    A managed node group's launch template targets ONE reservation and cannot fall back: EC2 fails a
    launch whose targeted reservation is full (EC2 API CapacityReservationTarget), so the group may not
    grow beyond it. An ECS Auto Scaling group takes several ids with `capacity-reservations-first`
    (botocore autoscaling CapacityReservationSpecification) and falls back to on-demand. Karpenter
    selects by id or tags and falls back from `reserved` to the pool's other capacity types.
    """
    p: list[str] = []
    for i, pool in enumerate(c.gpu_pools):
        key = f"gpuPools[{i}]"
        prov = pool.provisioner or ("karpenter" if c.orchestrator == "eks" else "auto-scaling-group")
        rs = pool.capacity_reservations
        if rs and pool.acknowledge_no_reservation:
            p.append(f"{k(f'{key}.acknowledgeNoReservation')}: got {pool.acknowledge_no_reservation!r}; the pool lists "
                     f"{k(f'{key}.capacityReservations')}: acknowledge running without a reservation only when there is none")
        for j, r in enumerate(rs):
            rk = f"{key}.capacityReservations[{j}]"
            if r.instance_type not in pool.instance_types:
                p.append(f"{k(f'{rk}.instanceType')}: got {r.instance_type!r}; must be one of the pool's instance types "
                         f"({', '.join(pool.instance_types)})")
            if r.availability_zone is not None:
                z = r.availability_zone
                if not (z.startswith(region) and len(z) == len(region) + 1):
                    p.append(f"{k(f'{rk}.availabilityZone')}: got {z!r}; must be a zone of {region}, e.g. {region}a")
                elif c.network.zones and z not in c.network.zones:
                    p.append(f"{k(f'{rk}.availabilityZone')}: got {z!r}; the stack's subnets are in "
                             f"{', '.join(c.network.zones)} (network.zones)")
            if prov == "karpenter":
                continue
            if r.tags:
                p.append(f"{k(f'{rk}.tags')}: got {r.tags}; a {prov} pool's launch template targets reservations by "
                         f"id (tags select reservations with Karpenter only); set {k(f'{rk}.id')}")
            if pool.capacity_type != "on-demand":
                p.append(f"{k(f'{key}.capacityType')}: got {pool.capacity_type!r}; a {prov} pool with capacity "
                         f"reservations runs on-demand capacity (reservations are on-demand capacity)")
        if prov == "managed-node-group" and rs:
            if len(rs) > 1:
                p.append(f"{k(f'{key}.capacityReservations')}: got {len(rs)} reservations; a managed node group's launch "
                         f"template targets one (use provisioner 'karpenter' to draw on several)")
            r = rs[0]
            if r.availability_zone is None:
                p.append(f"{k(f'{key}.capacityReservations[0].availabilityZone')}: required key is missing; a node group "
                         f"that targets a reservation must launch only in the reservation's zone")
            if pool.max_nodes > r.instance_count:
                p.append(f"{k(f'{key}.maxNodes')}: got {pool.max_nodes}; the node group's launch template targets "
                         f"{k(f'{key}.capacityReservations[0]')} ({r.instance_count} x {r.instance_type}) and EC2 "
                         f"fails launches beyond it: at most {r.instance_count}, or use provisioner 'karpenter', which "
                         f"falls back to on-demand")
            if r.type == "capacity-block" and pool.instance_types != [r.instance_type]:
                p.append(f"{k(f'{key}.instanceTypes')}: got {pool.instance_types}; a Capacity Block node group launches "
                         f"exactly its block's type ({r.instance_type}), named in the launch template")
        if prov == "auto-scaling-group":
            for j, r in enumerate(rs):
                if r.type == "capacity-block":
                    p.append(f"{k(f'{key}.capacityReservations[{j}].type')}: got 'capacity-block'; not supported for ECS pools "
                             f"here (a Capacity Block needs a launch template of its one instance type with market type "
                             f"capacity-block, in its zone; ECS pools launch through a mixed-instances group of several "
                             f"types): use an ODCR, or the EKS orchestrator")
    return p


def _edge_checks(c: StackConfig, region: str, k) -> list[str]:
    """Cross-field checks of ingress, ECS and budget settings."""
    p: list[str] = []
    ing = c.ingress
    if c.environment == "prod" and not ing.certificate_arn:
        p.append(f"{k('ingress.certificateArn')}: required key is missing; prod serves HTTPS only "
                 f"(an ACM certificate ARN in {region})")
    if ing.certificate_arn and ing.certificate_arn.split(":")[3] != region:
        p.append(f"{k('ingress.certificateArn')}: got {ing.certificate_arn!r}; an ALB needs a certificate "
                 f"from its own region {region}")
    if c.environment == "prod" and ing.deletion_protection is False:
        p.append(f"{k('ingress.deletionProtection')}: got false; prod load balancers keep deletion protection")
    if c.environment == "prod" and not ing.access_logs:
        p.append(f"{k('ingress.accessLogs')}: got false; prod load balancers keep access logs")
    if c.budget.alert_thresholds_percent and not c.budget.notify_emails:
        p.append(f"{k('budget.notifyEmails')}: got []; budget alerts ({k('budget.alertThresholdsPercent')}) need at "
                 f"least one address")
    if c.orchestrator == "ecs":
        for i, m in enumerate(c.models):
            if m.load_format != "runai_streamer":
                p.append(f"{k(f'models[{i}].loadFormat')}: got {m.load_format!r}; ECS tasks stream the mirrored "
                         f"weights (runai_streamer); the pod-cache fallback exists on EKS only")
            if m.pipeline_parallel > 1:
                p.append(f"{k(f'models[{i}].pipelineParallel')}: got {m.pipeline_parallel}; a model split across "
                         f"nodes needs LeaderWorkerSet on EKS; on ECS a task runs on one instance (use 1)")
        from infra.serving_catalog import SERVING_FIGURES
        cap = int(c.serving.figures.get("maxStaticLoraModules", SERVING_FIGURES["max_static_lora_modules"].value))
        named = sum(len(t.adapters) for t in c.lora.tenants)
        if c.lora.enabled and c.lora.runtime_loading:
            # vLLM's filesystem resolver only accepts adapters whose adapter_config.json names the
            # served base model path (vllm/plugins/lora_resolvers/filesystem_resolver.py, v0.11.1),
            # which customers' adapters never do; EKS registers them through /v1/load_lora_adapter.
            p.append(f"{k('lora.runtimeLoading')}: got true; runtime adapter loading is built for EKS (a sync "
                     f"sidecar registers each adapter through vLLM's load API); on ECS adapters are named at start: "
                     f"set it to false, or use orchestrator 'eks'")
        elif c.lora.enabled and named > cap:
            p.append(f"{k('lora.tenants')}: got {named} adapters; on ECS at most {cap} are named at start "
                     f"(--lora-modules; an ECS task definition is at most 64 KiB); serve this many adapters on "
                     f"orchestrator 'eks' with {k('lora.runtimeLoading')}: true")
    return p
