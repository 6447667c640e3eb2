"""The vLLM argument builder: every emitted flag is a real v0.11 flag with a valid value."""

import pytest

from components.vllm_server_args import LoraSpec, VllmServerSpec, spec_problems, vllm_server_args

# Real `vllm serve` flags (vLLM v0.11: vllm/engine/arg_utils.py, vllm/entrypoints/openai/cli_args.py)
# -> validator of the value; None marks a flag that takes no value.
_int = lambda v: v.isdigit() and int(v) >= 1  # noqa: E731
ALLOWED = {
    "--served-model-name": lambda v: bool(v) and not v.startswith("-"),
    "--host": lambda v: v == "0.0.0.0",
    "--port": _int,
    "--tensor-parallel-size": _int,
    "--pipeline-parallel-size": _int,
    "--distributed-executor-backend": lambda v: v in ("ray", "mp", "uni", "external_launcher"),
    "--quantization": lambda v: v in ("fp8", "awq", "awq_marlin", "gptq", "gptq_marlin"),
    "--dtype": lambda v: v in ("auto", "half", "float16", "bfloat16", "float", "float32"),
    "--max-model-len": _int,
    "--gpu-memory-utilization": lambda v: 0 < float(v) <= 1,
    "--kv-cache-dtype": lambda v: v in ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc"),
    "--max-num-seqs": _int,
    "--max-num-batched-tokens": _int,
    "--enable-prefix-caching": None,
    "--no-enable-prefix-caching": None,
    "--enable-lora": None,
    "--max-loras": _int,
    "--max-lora-rank": lambda v: int(v) in (1, 8, 16, 32, 64, 128, 256, 320, 512),
    "--max-cpu-loras": _int,
    "--lora-modules": lambda v: v.count("=") == 1 and all(v.split("=")),
    # vllm/config/load.py load_format, model_loader/__init__.py loaders at v0.11.1.
    "--load-format": lambda v: v in ("auto", "pt", "safetensors", "runai_streamer", "runai_streamer_sharded"),
    # JSON (vllm/engine/arg_utils.py: dict-typed flags parse with json.loads); keys runai_streamer_loader.py reads.
    "--model-loader-extra-config": lambda v: set(__import__("json").loads(v)) <= {"concurrency", "memory_limit",
                                                                                  "distributed"},
}


def assert_real_flags(args: list[str]) -> None:
    """args[0] is the model; then flags; --lora-modules takes one or more values."""
    assert not args[0].startswith("-")
    i = 1
    seen = set()
    while i < len(args):
        flag = args[i]
        assert flag in ALLOWED, f"{flag} is not a vLLM v0.11 flag this project may emit"
        assert flag not in seen, f"{flag} repeats"
        seen.add(flag)
        check = ALLOWED[flag]
        i += 1
        if check is None:
            continue
        values = []
        while i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        assert values, f"{flag} needs a value"
        assert len(values) == 1 or flag == "--lora-modules", f"{flag} got {values}"
        for v in values:
            assert check(v), f"{flag} {v!r} is not a valid value"
    assert "--api-key" not in args, "the API key must come from VLLM_API_KEY, never the command line"
    assert not ({"--enable-prefix-caching", "--no-enable-prefix-caching"} <= seen)


def spec(**kw) -> VllmServerSpec:
    base = dict(served_model_name="m", model="/models/m", precision="bf16", checkpoint_precision="bf16",
                tensor_parallel=1, pipeline_parallel=1, max_model_len=8192, gpu_memory_utilization=0.9,
                gpu_compute_capability=9.0)
    base.update(kw)
    return VllmServerSpec(**base)


def flag(args, name):
    return args[args.index(name) + 1]


def test_bf16_single_gpu():
    a = vllm_server_args(spec(max_num_seqs=128, enable_prefix_caching=False))
    assert_real_flags(a)
    assert a[0] == "/models/m" and flag(a, "--dtype") == "bfloat16" and "--quantization" not in a
    assert flag(a, "--max-num-seqs") == "128" and "--no-enable-prefix-caching" in a


def test_fp8_from_16_bit_checkpoint_quantizes_dynamically_and_dtype_stays_auto():
    a = vllm_server_args(spec(precision="fp8", tensor_parallel=8, kv_cache_dtype="fp8"))
    assert_real_flags(a)
    assert flag(a, "--quantization") == "fp8" and flag(a, "--dtype") == "auto" and flag(a, "--kv-cache-dtype") == "fp8"


def test_prequantized_fp8_checkpoint_needs_no_quantization_flag():
    a = vllm_server_args(spec(precision="fp8", checkpoint_precision="fp8", tensor_parallel=8))
    assert_real_flags(a)
    assert "--quantization" not in a


@pytest.mark.parametrize("cc,method", [(8.0, "awq_marlin"), (7.5, "awq")])
def test_awq_uses_marlin_kernel_where_the_gpu_allows(cc, method):
    a = vllm_server_args(spec(precision="awq", checkpoint_precision="awq", tensor_parallel=2, gpu_compute_capability=cc))
    assert_real_flags(a)
    assert flag(a, "--quantization") == method


def test_multinode_uses_ray_executor():
    a = vllm_server_args(spec(precision="fp8", checkpoint_precision="fp8", tensor_parallel=8, pipeline_parallel=2))
    assert_real_flags(a)
    assert flag(a, "--pipeline-parallel-size") == "2" and flag(a, "--distributed-executor-backend") == "ray"


def test_lora_flags():
    a = vllm_server_args(spec(lora=LoraSpec(max_loras=8, max_lora_rank=64, max_cpu_loras=32,
                                            modules=(("acme-support", "/adapters/acme-support"), ("g", "/adapters/g")))))
    assert_real_flags(a)
    assert "--enable-lora" in a and flag(a, "--max-lora-rank") == "64" and flag(a, "--max-cpu-loras") == "32"
    i = a.index("--lora-modules")
    assert a[i + 1:i + 3] == ["acme-support=/adapters/acme-support", "g=/adapters/g"]


def test_bad_specs_are_rejected_with_every_problem():
    s = spec(precision="awq", checkpoint_precision="bf16", kv_cache_dtype="float8",
             lora=LoraSpec(max_loras=8, max_lora_rank=48, max_cpu_loras=4))
    with pytest.raises(ValueError) as e:
        vllm_server_args(s)
    msg = str(e.value)
    assert "vLLM cannot quantize to awq at load time" in msg
    assert "kv_cache_dtype: got 'float8'; allowed: auto, fp8, fp8_e4m3, fp8_e5m2" in msg
    assert "lora.max_lora_rank: got 48; vLLM allows only 1, 8, 16, 32, 64, 128, 256, 320, 512" in msg
    assert "lora.max_cpu_loras: got 4; must be >= max_loras (8)" in msg
    assert spec_problems(spec(precision="bf16", checkpoint_precision="fp8")) == [
        "precision: got 'bf16'; the checkpoint is pre-quantized fp8 and is served as such; set precision 'fp8'"]
