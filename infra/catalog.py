"""Data tables the capacity planner, the program and the policy pack read.

Every figure carries its source and the date it was taken. A stack overrides
any figure through the `llmserving:catalog` config key (see `apply_overrides`);
logic elsewhere never hard-codes a price, a memory size or a throughput.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

Precision = Literal["fp16", "bf16", "fp8", "awq", "gptq", "int8"]
PRECISIONS: tuple[str, ...] = ("fp16", "bf16", "fp8", "awq", "gptq", "int8")


class _Row(BaseModel):
    # Rows are written in snake_case here and camelCase in stack config.
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, validate_by_name=True)


class Gpu(_Row):
    name: str
    memory_gb: float = Field(gt=0, le=10_000)
    memory_bandwidth_gbs: float = Field(gt=0, le=1_000_000)
    compute_capability: float = Field(ge=0, le=100)
    source: str
    as_of: str


class InstanceType(_Row):
    name: str
    family: str
    gpu: str
    gpu_count: int = Field(ge=1, le=64)
    vcpus: int = Field(ge=1, le=10_000)
    memory_gib: float = Field(gt=0, le=1_000_000)
    efa: bool
    max_efa_interfaces: int = Field(default=0, ge=0, le=64)
    on_demand_usd_per_hour: float = Field(gt=0, le=100_000)
    spot_discount: float = Field(ge=0, lt=1)
    # Local NVMe instance store in GB (0: none). GPU nodes assemble it into a RAID0 array for
    # kubelet/containerd and the model caches (components/gpu_node_group.py, karpenter_gpu_pool.py).
    instance_store_gb: float = Field(default=0, ge=0, le=1_000_000)
    source: str
    as_of: str


class ModelArchitecture(_Row):
    parameters_billion: float = Field(gt=0, le=5000)
    layers: int = Field(ge=1, le=1000)
    kv_heads: int = Field(ge=1, le=1024)
    head_dim: int = Field(ge=1, le=1024)
    # Precision the checkpoint ships in; a pre-quantized checkpoint needs no
    # runtime quantization flag.
    checkpoint_precision: Precision = "bf16"
    # Context window in tokens: max_position_embeddings of the model's
    # config.json, which vLLM will not exceed with --max-model-len
    # (vllm/config/model.py _get_and_verify_max_len). None: not known.
    context_length: int | None = Field(default=None, ge=256, le=10_000_000)
    source: str
    as_of: str

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        # K and V, per layer, per KV head, per head dimension.
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_dtype_bytes


class ThroughputAnchor(_Row):
    """A measured serving figure the planner scales from (see capacity.py)."""

    model: str
    parameters_billion: float = Field(gt=0, le=5000)
    precision: Precision
    gpu: str
    gpu_count: int = Field(ge=1, le=64)
    tokens_per_second: float = Field(gt=0)
    source: str
    as_of: str


class Assumption(_Row):
    value: float
    source: str
    as_of: str


_NVIDIA = "NVIDIA datasheets (A100, H100 SXM, A10G via AWS G5 page, L4, L40S, RTX A5000)"
_AMD = "AMD Instinct MI300X datasheet"

GPUS: dict[str, Gpu] = {
    g.name: g
    for g in [
        Gpu(name="A100-40GB", memory_gb=40, memory_bandwidth_gbs=1555, compute_capability=8.0, source=_NVIDIA, as_of="2025-06"),
        Gpu(name="A100-80GB", memory_gb=80, memory_bandwidth_gbs=2039, compute_capability=8.0, source=_NVIDIA, as_of="2025-06"),
        Gpu(name="H100-80GB", memory_gb=80, memory_bandwidth_gbs=3350, compute_capability=9.0, source=_NVIDIA, as_of="2025-06"),
        Gpu(name="A10G", memory_gb=24, memory_bandwidth_gbs=600, compute_capability=8.6, source=_NVIDIA, as_of="2025-06"),
        Gpu(name="L4", memory_gb=24, memory_bandwidth_gbs=300, compute_capability=8.9, source=_NVIDIA, as_of="2025-06"),
        Gpu(name="L40S", memory_gb=48, memory_bandwidth_gbs=864, compute_capability=8.9, source=_NVIDIA, as_of="2025-06"),
        # Only used to carry the 70B anchor figure below; no AWS instance here.
        Gpu(name="MI300X", memory_gb=192, memory_bandwidth_gbs=5300, compute_capability=0.0, source=_AMD, as_of="2025-06"),
        Gpu(name="A5000", memory_gb=24, memory_bandwidth_gbs=768, compute_capability=8.6, source=_NVIDIA, as_of="2025-06"),
    ]
}

_PRICE_SRC = "AWS EC2 on-demand pricing, us-east-1 Linux, after the June 2025 P-instance price cut (FACTS.md)"
_PRICE_DATE = "2025-06"
_SPEC_SRC = "AWS EC2 accelerated-computing instance specifications"
# Spot discounts vary by hour and zone; these are planning assumptions from
# the AWS Spot Instance Advisor's typical savings band for each family.
_SPOT_SRC = "planning assumption from AWS Spot Instance Advisor savings bands"
_SPOT_DATE = "2025-10"


# Instance store: the `karpenter.k8s.aws/instance-local-nvme` figure (GB) of each type in the
# instance-type reference of the pinned Karpenter (aws/karpenter-provider-aws v1.14.1,
# website/content/en/docs/reference/instance-types.md), generated from EC2 DescribeInstanceTypes.
_NVME_SRC = "Karpenter v1.14.1 docs reference/instance-types.md (karpenter.k8s.aws/instance-local-nvme, GB)"


def _it(name, gpu, count, vcpus, mem, price, spot, efa=False, efa_if=0, nvme=0):
    return InstanceType(
        name=name, family=name.split(".")[0], gpu=gpu, gpu_count=count, vcpus=vcpus,
        memory_gib=mem, efa=efa, max_efa_interfaces=efa_if, on_demand_usd_per_hour=price,
        spot_discount=spot, instance_store_gb=nvme,
        source=f"{_PRICE_SRC}; specs: {_SPEC_SRC}; spot: {_SPOT_SRC}; instance store: {_NVME_SRC}",
        as_of=_PRICE_DATE,
    )


INSTANCE_TYPES: dict[str, InstanceType] = {
    i.name: i
    for i in [
        _it("p4d.24xlarge", "A100-40GB", 8, 96, 1152, 21.96, 0.60, efa=True, efa_if=4, nvme=8000),
        _it("p4de.24xlarge", "A100-80GB", 8, 96, 1152, 27.45, 0.60, efa=True, efa_if=4, nvme=8000),
        _it("p5.48xlarge", "H100-80GB", 8, 192, 2048, 55.04, 0.50, efa=True, efa_if=32, nvme=30400),
        _it("g5.xlarge", "A10G", 1, 4, 16, 1.006, 0.65, nvme=250),
        _it("g5.2xlarge", "A10G", 1, 8, 32, 1.212, 0.65, nvme=450),
        _it("g5.4xlarge", "A10G", 1, 16, 64, 1.624, 0.65, nvme=600),
        _it("g5.8xlarge", "A10G", 1, 32, 128, 2.448, 0.65, efa=True, efa_if=1, nvme=900),
        _it("g5.12xlarge", "A10G", 4, 48, 192, 5.672, 0.65, efa=True, efa_if=1, nvme=3800),
        _it("g5.24xlarge", "A10G", 4, 96, 384, 8.144, 0.65, efa=True, efa_if=1, nvme=3800),
        _it("g5.48xlarge", "A10G", 8, 192, 768, 16.288, 0.65, efa=True, efa_if=1, nvme=7600),
        _it("g6.xlarge", "L4", 1, 4, 16, 0.805, 0.60, nvme=250),
        _it("g6.2xlarge", "L4", 1, 8, 32, 0.978, 0.60, nvme=450),
        _it("g6.12xlarge", "L4", 4, 48, 192, 4.602, 0.60, efa=True, efa_if=1, nvme=3760),
        _it("g6.48xlarge", "L4", 8, 192, 768, 13.350, 0.60, efa=True, efa_if=1, nvme=7520),
        _it("g6e.xlarge", "L40S", 1, 4, 32, 1.861, 0.60, nvme=250),
        _it("g6e.2xlarge", "L40S", 1, 8, 64, 2.242, 0.60, nvme=450),
        _it("g6e.12xlarge", "L40S", 4, 48, 384, 10.493, 0.60, efa=True, efa_if=1, nvme=3800),
        _it("g6e.48xlarge", "L40S", 8, 192, 1536, 30.131, 0.60, efa=True, efa_if=4, nvme=7600),
    ]
}

_HF = "Hugging Face model card and config.json"
# context_length: config.json max_position_embeddings (Llama 3.1: 131072; Mistral 7B v0.3 and the
# Qwen2.5 Instruct models: 32768, their 128K needs YaRN rope scaling added to config.json).
_CTX_LLAMA31, _CTX_32K = 131072, 32768
MODELS: dict[str, ModelArchitecture] = {
    "meta-llama/Llama-3.1-8B-Instruct": ModelArchitecture(parameters_billion=8.03, layers=32, kv_heads=8, head_dim=128, context_length=_CTX_LLAMA31, source=_HF, as_of="2024-07"),
    "meta-llama/Llama-3.1-70B-Instruct": ModelArchitecture(parameters_billion=70.6, layers=80, kv_heads=8, head_dim=128, context_length=_CTX_LLAMA31, source=_HF, as_of="2024-07"),
    "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8": ModelArchitecture(parameters_billion=70.6, layers=80, kv_heads=8, head_dim=128, checkpoint_precision="fp8", context_length=_CTX_LLAMA31, source=_HF, as_of="2024-08"),
    "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4": ModelArchitecture(parameters_billion=70.6, layers=80, kv_heads=8, head_dim=128, checkpoint_precision="awq", context_length=_CTX_LLAMA31, source=_HF, as_of="2024-08"),
    "meta-llama/Llama-3.1-405B-Instruct": ModelArchitecture(parameters_billion=405.9, layers=126, kv_heads=8, head_dim=128, context_length=_CTX_LLAMA31, source=_HF, as_of="2024-07"),
    "meta-llama/Llama-3.1-405B-Instruct-FP8": ModelArchitecture(parameters_billion=405.9, layers=126, kv_heads=8, head_dim=128, checkpoint_precision="fp8", context_length=_CTX_LLAMA31, source=_HF, as_of="2024-07"),
    "mistralai/Mistral-7B-Instruct-v0.3": ModelArchitecture(parameters_billion=7.25, layers=32, kv_heads=8, head_dim=128, context_length=_CTX_32K, source=_HF, as_of="2024-05"),
    "Qwen/Qwen2.5-7B-Instruct": ModelArchitecture(parameters_billion=7.62, layers=28, kv_heads=4, head_dim=128, context_length=_CTX_32K, source=_HF, as_of="2024-09"),
    "Qwen/Qwen2.5-3B-Instruct": ModelArchitecture(parameters_billion=3.09, layers=36, kv_heads=2, head_dim=128, context_length=_CTX_32K, source=_HF, as_of="2024-09"),
}

# Bytes each weight takes in GPU memory. AWQ/GPTQ are 4-bit; group scales add
# a few percent, which the KV headroom absorbs.
_BYTES_SRC = "vLLM quantization docs and checkpoint sizes on Hugging Face"
BYTES_PER_PARAMETER: dict[str, Assumption] = {
    "fp16": Assumption(value=2.0, source=_BYTES_SRC, as_of="2025-10"),
    "bf16": Assumption(value=2.0, source=_BYTES_SRC, as_of="2025-10"),
    "fp8": Assumption(value=1.0, source=_BYTES_SRC, as_of="2025-10"),
    "int8": Assumption(value=1.0, source=_BYTES_SRC, as_of="2025-10"),
    "awq": Assumption(value=0.5, source=_BYTES_SRC, as_of="2025-10"),
    "gptq": Assumption(value=0.5, source=_BYTES_SRC, as_of="2025-10"),
}

# Measured figures the planner scales from. They are low-concurrency figures:
# plans built on them are conservative, and a stack can override per model.
THROUGHPUT_ANCHORS: list[ThroughputAnchor] = [
    ThroughputAnchor(model="Llama 3.1 8B", parameters_billion=8.03, precision="bf16", gpu="A100-40GB", gpu_count=1,
                     tokens_per_second=793, source="Red Hat vLLM benchmark (peak, 1 x A100 40 GB)", as_of="2025-08"),
    ThroughputAnchor(model="Llama 3.1 70B", parameters_billion=70.6, precision="bf16", gpu="MI300X", gpu_count=1,
                     tokens_per_second=1131, source="public vLLM benchmark on 1 x MI300X (FACTS.md)", as_of="2025-08"),
    ThroughputAnchor(model="Qwen 2.5 3B", parameters_billion=3.09, precision="bf16", gpu="A5000", gpu_count=1,
                     tokens_per_second=2715, source="public vLLM benchmark on 1 x RTX A5000 (FACTS.md)", as_of="2025-08"),
]

_PLAN_SRC = "project planning assumption; override in llmserving:catalog.assumptions"
ASSUMPTIONS: dict[str, Assumption] = {
    # Fraction of concurrent users with a request in flight at peak (the seed's 15%).
    "active_request_share": Assumption(value=0.15, source="seed sizing guide", as_of="2025-10"),
    # Output tokens per second a user expects while streaming one response.
    "tokens_per_request_per_second": Assumption(value=40.0, source="seed sizing guide (2,000-3,000 tok/s for 400 users)", as_of="2025-10"),
    # Scaling efficiency of tensor and pipeline parallelism vs. ideal.
    "tensor_parallel_efficiency_per_doubling": Assumption(value=0.93, source=_PLAN_SRC, as_of="2025-10"),
    "pipeline_parallel_efficiency_per_stage": Assumption(value=0.90, source=_PLAN_SRC, as_of="2025-10"),
    # Sequences of max_model_len the KV cache must hold beside the weights.
    "kv_cache_min_sequences": Assumption(value=4, source=_PLAN_SRC, as_of="2025-10"),
    # vLLM needs compute capability 8.9 for FP8 compute; below it FP8 is weight-only.
    "fp8_compute_min_capability": Assumption(value=8.9, source="vLLM docs, FP8 W8A8 hardware support", as_of="2025-10"),
    "hours_per_month": Assumption(value=730, source="AWS pricing calculator convention", as_of="2025-10"),
    "default_gpu_memory_utilization": Assumption(value=0.90, source="vLLM EngineArgs default", as_of="2025-10"),
}

# Seed sizing guide tiers: concurrent users.
TIERS: dict[str, Assumption] = {
    "small": Assumption(value=400, source="seed sizing guide: 400 users, 2,000-3,000 tok/s", as_of="2025-10"),
    "medium": Assumption(value=4000, source="seed sizing guide: 4,000 users, 20,000-30,000 tok/s", as_of="2025-10"),
    "large": Assumption(value=40000, source="seed sizing guide: 40,000 users, 200,000-300,000 tok/s", as_of="2025-10"),
}


class Catalog(BaseModel):
    """The tables one stack plans with: the defaults above plus its overrides."""

    model_config = ConfigDict(frozen=True)

    gpus: dict[str, Gpu]
    instance_types: dict[str, InstanceType]
    models: dict[str, ModelArchitecture]
    bytes_per_parameter: dict[str, Assumption]
    throughput_anchors: list[ThroughputAnchor]
    assumptions: dict[str, Assumption]
    tiers: dict[str, Assumption]

    def assumption(self, key: str) -> float:
        return self.assumptions[key].value

    def instance(self, name: str) -> InstanceType:
        return self.instance_types[name]

    def gpu_of(self, instance: InstanceType) -> Gpu:
        return self.gpus[instance.gpu]


def default_catalog() -> Catalog:
    return Catalog(
        gpus=dict(GPUS), instance_types=dict(INSTANCE_TYPES), models=dict(MODELS),
        bytes_per_parameter=dict(BYTES_PER_PARAMETER), throughput_anchors=list(THROUGHPUT_ANCHORS),
        assumptions=dict(ASSUMPTIONS), tiers=dict(TIERS),
    )


class CatalogOverrideError(ValueError):
    """Override rows that do not validate: (where, row type, pydantic error) per row."""

    def __init__(self, failures: list[tuple[str, type, ValidationError]]):
        self.failures = failures
        super().__init__("; ".join(f"{where}: {err}" for where, _, err in failures))


def _merge_table(table: dict, overrides: dict, row_type: type[_Row], key_field: str | None, where: str,
                 failures: list) -> dict:
    merged = dict(table)
    for key, fields in overrides.items():
        base = merged.get(key)
        # Validated by alias (camelCase), so errors name the keys as the stack writes them.
        data = base.model_dump(by_alias=True) if base is not None else {}
        if key_field:
            data[key_field] = key
        data.update({_field_alias(row_type, k): v for k, v in fields.items()})
        data.setdefault("source", f"stack override ({where}.{key})")
        if base is not None and "source" not in fields:
            data["source"] = f"stack override ({where}.{key}) of: {base.source}"
        try:
            merged[key] = row_type.model_validate(data)
        except ValidationError as e:
            failures.append((f"{where}[{key!r}]", row_type, e))
    return merged


def _field_alias(row_type: type[_Row], key: str) -> str:
    for name, field in row_type.model_fields.items():
        if key in (name, field.alias):
            return field.alias or name
    return key  # unknown: the row's extra="forbid" rejects it with its name


def apply_overrides(catalog: Catalog, overrides: "CatalogOverrides | None") -> Catalog:
    """Returns the catalog with a stack's overrides merged row by row.

    A row named in the overrides may set some fields (on a known row) or all
    fields (on a new row); pydantic validates the merged row.
    """
    if overrides is None:
        return catalog
    failures: list = []
    anchors = list(catalog.throughput_anchors)
    for i, a in enumerate(overrides.throughput_anchors):
        try:
            anchors.append(ThroughputAnchor.model_validate(a))
        except ValidationError as e:
            failures.append((f"throughputAnchors[{i}]", ThroughputAnchor, e))
    merged = Catalog(
        gpus=_merge_table(catalog.gpus, overrides.gpus, Gpu, "name", "gpus", failures),
        instance_types=_merge_table(catalog.instance_types, overrides.instance_types, InstanceType, "name",
                                    "instanceTypes", failures),
        models=_merge_table(catalog.models, overrides.models, ModelArchitecture, None, "models", failures),
        bytes_per_parameter=_merge_table(catalog.bytes_per_parameter, overrides.bytes_per_parameter, Assumption, None,
                                         "bytesPerParameter", failures),
        throughput_anchors=anchors,
        assumptions=_merge_table(catalog.assumptions, overrides.assumptions, Assumption, None, "assumptions", failures),
        tiers=_merge_table(catalog.tiers, overrides.tiers, Assumption, None, "tiers", failures),
    )
    if failures:
        raise CatalogOverrideError(failures)
    return merged


class CatalogOverrides(BaseModel):
    """Raw override tables; validated row by row when merged."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel)

    gpus: dict[str, dict] = {}
    instance_types: dict[str, dict] = {}
    models: dict[str, dict] = {}
    bytes_per_parameter: dict[str, dict] = {}
    throughput_anchors: list[dict] = []
    assumptions: dict[str, dict] = {}
    tiers: dict[str, dict] = {}
