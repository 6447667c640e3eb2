"""The vLLM OpenAI server's argument list, from one typed model spec.

`vllm_server_args(spec)` is the only place that writes vLLM flags; the
workload component and the tests call it. The flags and their allowed values
are those of vLLM v0.11 (vllm/engine/arg_utils.py, vllm/config/*.py,
vllm/entrypoints/openai/cli_args.py; checked 2025-10):

- `--dtype` takes only auto, half, float16, bfloat16, float, float32 (there
  is no float8: FP8 is `--quantization fp8`).
- Boolean engine flags are argparse BooleanOptionalAction pairs, so prefix
  caching is `--enable-prefix-caching` / `--no-enable-prefix-caching`.
- `--max-lora-rank` takes 1, 8, 16, 32, 64, 128, 256, 320 or 512;
  `--max-cpu-loras` must be >= `--max-loras`.
- The API key is NOT a flag here: the server reads `VLLM_API_KEY` from its
  environment (a Kubernetes Secret), so it never shows on a command line,
  in `ps`, or in the rendered Deployment.

Quantization: a checkpoint that is already quantized (FP8, AWQ, GPTQ, INT8;
`ModelArchitecture.checkpoint_precision`) is detected by vLLM from its
config.json, and the flag is only added where it picks a faster kernel
(AWQ/GPTQ -> Marlin on compute capability >= 8.0, see QUANTIZATION_KERNELS).
A 16-bit checkpoint served at precision fp8 gets `--quantization fp8`
(dynamic FP8: weights load in 16 bits, then are quantized).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

# Checked against the vLLM 0.11.1 sdist (PyPI): vllm/config/lora.py MaxLoRARanks, vllm/config/model.py
# ModelDType, vllm/config/cache.py CacheDType. Every flag name this module writes is checked against the
# pinned image's flag list by the deploy-readiness check `vllm-flag-unknown` (infra/image_catalog.py).
# vLLM's allowed --max-lora-rank values (vllm/config/lora.py MaxLoRARanks, v0.11).
LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# --dtype choices (vllm/config/model.py ModelDType, v0.11).
DTYPES: tuple[str, ...] = ("auto", "half", "float16", "bfloat16", "float", "float32")
# --kv-cache-dtype choices this project allows (a subset of vllm/config/cache.py CacheDType, v0.11).
KV_CACHE_DTYPES: tuple[str, ...] = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
# Precision of the weights as served -> --dtype for an unquantized checkpoint.
DTYPE_FOR_PRECISION: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16"}
PRECISIONS: tuple[str, ...] = ("fp16", "bf16", "fp8", "awq", "gptq", "int8")
# --load-format values this project emits (a subset of vllm/model_executor/model_loader/__init__.py
# _LOAD_FORMAT_TO_MODEL_LOADER at v0.11.1): the Run:ai streamer (safetensors only, local or s3://;
# model_loader/runai_streamer_loader.py) and the default loaders of a local copy.
LOAD_FORMATS: tuple[str, ...] = ("runai_streamer", "safetensors", "pt")
# Object-store schemes vLLM v0.11.1 hands to the Run:ai streamer (vllm/transformers_utils/runai_utils.py
# SUPPORTED_SCHEMES); with such a model path any other --load-format is refused (vllm/config/vllm.py).
OBJECT_STORE_SCHEMES: tuple[str, ...] = ("s3://", "gs://")
# Keys RunaiModelStreamerLoader reads from --model-loader-extra-config at v0.11.1 (concurrency and
# memory_limit become RUNAI_STREAMER_CONCURRENCY / RUNAI_STREAMER_MEMORY_LIMIT; distributed splits the
# reads between the TP/PP processes of a node instead of each one reading every file).
RUNAI_EXTRA_KEYS: dict[str, type] = {"concurrency": int, "memory_limit": int, "distributed": bool}


@dataclass(frozen=True)
class QuantizationKernel:
    method: str
    min_compute_capability: float
    source: str
    as_of: str


_QSRC = "vLLM quantization docs / awq_marlin.py, gptq_marlin.py: Marlin kernels need compute capability >= 8.0"
# --quantization value for a pre-quantized 4-bit checkpoint, best kernel first.
QUANTIZATION_KERNELS: dict[str, tuple[QuantizationKernel, ...]] = {
    "awq": (QuantizationKernel("awq_marlin", 8.0, _QSRC, "2025-10"), QuantizationKernel("awq", 7.5, _QSRC, "2025-10")),
    "gptq": (QuantizationKernel("gptq_marlin", 8.0, _QSRC, "2025-10"), QuantizationKernel("gptq", 6.0, _QSRC, "2025-10")),
}


@dataclass(frozen=True)
class LoraSpec:
    max_loras: int
    max_lora_rank: int
    max_cpu_loras: Optional[int] = None
    # Adapters loaded at start: (served name, local path).
    modules: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VllmServerSpec:
    served_model_name: str
    # What `vllm serve` loads: a local directory (the model cache) or a HF repo id.
    model: str
    precision: str
    checkpoint_precision: str
    tensor_parallel: int
    pipeline_parallel: int
    max_model_len: int
    gpu_memory_utilization: float
    gpu_compute_capability: float
    enable_prefix_caching: bool = True
    kv_cache_dtype: str = "auto"
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    lora: Optional[LoraSpec] = None
    port: int = 8000
    # None: vLLM's default ("auto") on a local directory.
    load_format: Optional[str] = None
    model_loader_extra_config: Optional[dict] = None


def spec_problems(spec: VllmServerSpec) -> list[str]:
    """Every reason vLLM would refuse this spec (empty when it is servable)."""
    p: list[str] = []
    if spec.precision not in PRECISIONS:
        p.append(f"precision: got {spec.precision!r}; allowed: {', '.join(PRECISIONS)}")
    if spec.checkpoint_precision not in PRECISIONS:
        p.append(f"checkpoint_precision: got {spec.checkpoint_precision!r}; allowed: {', '.join(PRECISIONS)}")
    ckpt_quantized = spec.checkpoint_precision in ("fp8", "awq", "gptq", "int8")
    if spec.precision in ("awq", "gptq", "int8") and spec.checkpoint_precision != spec.precision:
        p.append(f"precision: got {spec.precision!r}; vLLM cannot quantize to {spec.precision} at load time, so the "
                 f"checkpoint must already be {spec.precision} (this one is {spec.checkpoint_precision})")
    if ckpt_quantized and spec.precision != spec.checkpoint_precision:
        p.append(f"precision: got {spec.precision!r}; the checkpoint is pre-quantized {spec.checkpoint_precision} and "
                 f"is served as such; set precision {spec.checkpoint_precision!r}")
    if spec.precision in QUANTIZATION_KERNELS and not _kernel(spec):
        need = min(k.min_compute_capability for k in QUANTIZATION_KERNELS[spec.precision])
        p.append(f"precision: got {spec.precision!r}; needs GPU compute capability >= {need}, "
                 f"got {spec.gpu_compute_capability}")
    if spec.tensor_parallel < 1:
        p.append(f"tensor_parallel: got {spec.tensor_parallel}; must be >= 1")
    if spec.pipeline_parallel < 1:
        p.append(f"pipeline_parallel: got {spec.pipeline_parallel}; must be >= 1")
    if not 0 < spec.gpu_memory_utilization <= 1:
        p.append(f"gpu_memory_utilization: got {spec.gpu_memory_utilization}; must be in (0, 1]")
    if spec.kv_cache_dtype not in KV_CACHE_DTYPES:
        p.append(f"kv_cache_dtype: got {spec.kv_cache_dtype!r}; allowed: {', '.join(KV_CACHE_DTYPES)}")
    if spec.max_model_len < 1:
        p.append(f"max_model_len: got {spec.max_model_len}; must be >= 1")
    if spec.max_num_batched_tokens is not None and spec.max_num_batched_tokens < 1:
        p.append(f"max_num_batched_tokens: got {spec.max_num_batched_tokens}; must be >= 1")
    if spec.max_num_seqs is not None and spec.max_num_seqs < 1:
        p.append(f"max_num_seqs: got {spec.max_num_seqs}; must be >= 1")
    remote = spec.model.startswith(OBJECT_STORE_SCHEMES)
    if spec.load_format is not None and spec.load_format not in LOAD_FORMATS:
        p.append(f"load_format: got {spec.load_format!r}; allowed: {', '.join(LOAD_FORMATS)}")
    if remote and spec.load_format != "runai_streamer":
        p.append(f"load_format: got {spec.load_format!r}; vLLM loads {spec.model} only with runai_streamer")
    if remote and not spec.model.endswith("/"):
        p.append(f"model: got {spec.model!r}; an object-store prefix ends with '/'")
    extra = spec.model_loader_extra_config
    if extra is not None:
        if spec.load_format != "runai_streamer":
            p.append(f"model_loader_extra_config: given for load format {spec.load_format!r}; only runai_streamer "
                     f"keys are emitted")
        for k, v in extra.items():
            want = RUNAI_EXTRA_KEYS.get(k)
            if want is None or type(v) is not want or (want is int and v < 1):
                p.append(f"model_loader_extra_config.{k}: got {v!r}; allowed: concurrency and memory_limit "
                         f"(positive integers), distributed (true/false)")
    if spec.lora is not None:
        lo = spec.lora
        if lo.max_lora_rank not in LORA_RANKS:
            p.append(f"lora.max_lora_rank: got {lo.max_lora_rank}; vLLM allows only {', '.join(map(str, LORA_RANKS))}")
        if lo.max_loras < 1:
            p.append(f"lora.max_loras: got {lo.max_loras}; must be >= 1")
        if lo.max_cpu_loras is not None and lo.max_cpu_loras < lo.max_loras:
            p.append(f"lora.max_cpu_loras: got {lo.max_cpu_loras}; must be >= max_loras ({lo.max_loras})")
        for name, path in lo.modules:
            if not name or "=" in name or "," in name or not path or "=" in path or "," in path:
                p.append(f"lora.modules: got {name}={path}; name and path must be non-empty and contain no '=' or ','")
    return p


def _kernel(spec: VllmServerSpec) -> Optional[str]:
    for k in QUANTIZATION_KERNELS.get(spec.precision, ()):
        if spec.gpu_compute_capability >= k.min_compute_capability:
            return k.method
    return None


def vllm_server_args(spec: VllmServerSpec) -> list[str]:
    """`vllm serve` arguments (the model first, then flags), deterministic order.

    Raises ValueError listing every problem when vLLM would refuse the spec.
    """
    problems = spec_problems(spec)
    if problems:
        raise ValueError("invalid vLLM server spec:\n" + "\n".join(f"  - {x}" for x in problems))
    a: list[str] = [spec.model, "--served-model-name", spec.served_model_name,
                    "--host", "0.0.0.0", "--port", str(spec.port),
                    "--tensor-parallel-size", str(spec.tensor_parallel),
                    "--pipeline-parallel-size", str(spec.pipeline_parallel)]
    if spec.pipeline_parallel > 1:
        a += ["--distributed-executor-backend", "ray"]
    quantization = None
    if spec.precision == "fp8" and spec.checkpoint_precision != "fp8":
        quantization = "fp8"
    elif spec.precision in QUANTIZATION_KERNELS:
        quantization = _kernel(spec)
    if quantization:
        a += ["--quantization", quantization]
    a += ["--dtype", DTYPE_FOR_PRECISION.get(spec.precision, "auto")]
    a += ["--max-model-len", str(spec.max_model_len),
          "--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}",
          "--kv-cache-dtype", spec.kv_cache_dtype]
    if spec.max_num_seqs is not None:
        a += ["--max-num-seqs", str(spec.max_num_seqs)]
    if spec.max_num_batched_tokens is not None:
        a += ["--max-num-batched-tokens", str(spec.max_num_batched_tokens)]
    a.append("--enable-prefix-caching" if spec.enable_prefix_caching else "--no-enable-prefix-caching")
    if spec.load_format is not None:
        a += ["--load-format", spec.load_format]
    if spec.model_loader_extra_config:
        # JSON: vllm/engine/arg_utils.py parses dict-typed flags with json.loads (v0.11.1).
        a += ["--model-loader-extra-config", json.dumps(spec.model_loader_extra_config, sort_keys=True,
                                                        separators=(",", ":"))]
    if spec.lora is not None:
        lo = spec.lora
        a += ["--enable-lora", "--max-loras", str(lo.max_loras), "--max-lora-rank", str(lo.max_lora_rank)]
        if lo.max_cpu_loras is not None:
            a += ["--max-cpu-loras", str(lo.max_cpu_loras)]
        if lo.modules:
            a += ["--lora-modules", *[f"{n}={p}" for n, p in lo.modules]]
    return a
