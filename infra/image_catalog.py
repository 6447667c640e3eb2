"""Facts about the container images the program runs, per pinned image, each with its source.

What the program relies on when it starts a container: the user the image runs
as (a root image needs runAsUser next to runAsNonRoot, or the kubelet refuses
it), the entrypoint and default command (what `args` alone are appended to),
the shells and tools on its PATH and the Python interpreters with the modules
each can import (what the commands the program writes call), and for vLLM the
`vllm serve` flags, the VLLM_* environment variables and the Prometheus metric
names of that version. The deploy-readiness checks (infra/readiness.py
`check_images`) judge every container the program renders against these rows;
an image without a row is reported as not judged.

Sources, read 2026-12:

- vllm/vllm-openai:v0.11.1: vLLM 0.11.1 source distribution from PyPI
  (vllm-0.11.1.tar.gz; the image is built from the same tree):
  docker/Dockerfile target `vllm-openai` (FROM nvidia/cuda:12.9.1-devel-ubuntu22.04
  via vllm-base; apt installs git curl wget sudo vim python3-pip ffmpeg and
  python3.12 as `python3` (update-alternatives; no `python`); `uv pip install
  --system` of the vLLM wheel (console script `vllm`), flashinfer, accelerate,
  hf_transfer, modelscope; no USER instruction: root, HOME=/root; WORKDIR
  /vllm-workspace; ENTRYPOINT ["vllm", "serve"]); requirements/cuda.txt
  (ray[cgraph], torch, flashinfer-python, numba), requirements/common.txt
  (transformers, which brings huggingface_hub and its `hf`/`huggingface-cli`
  scripts; prometheus_client; fastapi; uvicorn). Flags, environment variables
  and metrics were extracted from that tree with scripts/vllm_facts.py:
  vllm/engine/arg_utils.py, vllm/entrypoints/openai/cli_args.py, vllm/envs.py,
  vllm/v1/metrics/loggers.py, vllm/v1/spec_decode/metrics.py.
- lmcache/lmstack-router:v0.1.11: vllm-project/production-stack at git tag
  vllm-stack-0.1.11 (the image's tag is the tag's version,
  .github/workflows/router-docker-release.yml): docker/Dockerfile (FROM
  python:3.12-slim; apt installs git; `uv venv /opt/venv` and the router
  package with extras semantic_cache,lmcache installed there; the venv is NOT
  put on PATH, so `python3` is the image's bare /usr/local/bin/python3; no USER:
  root; ENTRYPOINT ["/opt/venv/bin/vllm-router"], CMD []), pyproject.toml
  (dependencies: fastapi, uvicorn, kubernetes, aiohttp, prometheus-client ...;
  extras: huggingface-hub, lmcache, vllm).
- amazon/aws-cli:2.31.18: aws/aws-cli docker/Dockerfile at tag 2.31.18 (FROM
  amazonlinux:2023; `dnf install less groff findutils jq`; the CLI in
  /usr/local/bin; no USER: root; WORKDIR /aws; ENTRYPOINT
  ["/usr/local/bin/aws"]). The AL2023 container base carries bash,
  coreutils-single, curl-minimal, gawk, grep and sed (Amazon Linux 2023 User
  Guide, "Minimized package dependencies"/"curl-minimal"; the AL2023 container
  package list in amazonlinux/amazon-linux-2023 issue 585).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

_AS_OF = "2026-12"

# GNU coreutils programs (coreutils manual, "Introduction": the full list), present in Debian/Ubuntu's
# `coreutils` and AL2023's `coreutils-single`.
_COREUTILS = frozenset({
    "[", "arch", "b2sum", "base32", "base64", "basename", "basenc", "cat", "chcon", "chgrp", "chmod", "chown",
    "chroot", "cksum", "comm", "cp", "csplit", "cut", "date", "dd", "df", "dir", "dircolors", "dirname", "du", "echo",
    "env", "expand", "expr", "factor", "false", "fmt", "fold", "groups", "head", "hostid", "id", "install", "join",
    "link", "ln", "logname", "ls", "md5sum", "mkdir", "mkfifo", "mknod", "mktemp", "mv", "nice", "nl", "nohup",
    "nproc", "numfmt", "od", "paste", "pathchk", "pinky", "pr", "printenv", "printf", "ptx", "pwd", "readlink",
    "realpath", "rm", "rmdir", "runcon", "seq", "sha1sum", "sha224sum", "sha256sum", "sha384sum", "sha512sum",
    "shred", "shuf", "sleep", "sort", "split", "stat", "stdbuf", "stty", "sum", "sync", "tac", "tail", "tee", "test",
    "timeout", "touch", "tr", "true", "truncate", "tsort", "tty", "uname", "unexpand", "uniq", "unlink", "users",
    "vdir", "wc", "who", "whoami", "yes",
})
# Essential packages of a Debian/Ubuntu base image besides coreutils (debootstrap minbase: grep, sed,
# findutils, tar, gzip, diffutils, mawk, debianutils, util-linux, hostname, login, bash, dash).
_DEBIAN_BASE = _COREUTILS | frozenset({
    "bash", "sh", "dash", "grep", "egrep", "fgrep", "sed", "find", "xargs", "tar", "gzip", "gunzip", "zcat", "diff",
    "cmp", "awk", "mawk", "which", "run-parts", "tempfile", "hostname", "login", "su", "mount", "umount", "kill",
    "more", "getopt", "setsid", "flock", "ionice", "renice", "logger", "mountpoint", "apt-get", "apt", "dpkg",
})
# Shell builtins and keywords: a command word the shell runs itself, needing no program in the image
# (POSIX.1-2017 XCU 2.14 "Special Built-In Utilities" and 2.9.4 reserved words; GNU Bash manual 4.1-4.2
# "Bourne Shell Builtins"/"Bash Builtin Commands").
SHELL_BUILTINS = frozenset({
    ":", ".", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift", "times",
    "trap", "unset", "cd", "pwd", "getopts", "hash", "test", "[", "umask", "alias", "unalias", "bg", "fg", "jobs",
    "kill", "wait", "read", "true", "false", "echo", "printf", "type", "command", "ulimit", "newgrp", "fc",
    "source", "declare", "typeset", "local", "let", "builtin", "caller", "compgen", "complete", "compopt", "dirs",
    "disown", "enable", "help", "history", "logout", "mapfile", "readarray", "popd", "pushd", "shopt", "suspend",
})
SHELLS = {"/bin/sh": "sh", "/bin/bash": "bash", "/usr/bin/bash": "bash", "/usr/bin/sh": "sh", "sh": "sh",
          "bash": "bash", "/bin/dash": "sh", "dash": "sh"}
BASH_ONLY = frozenset({"source", "declare", "typeset", "local", "let", "mapfile", "readarray", "shopt", "[["})


_VLLM_0_11_1_FLAGS = frozenset({
    '--additional-config', '--aggregate-engine-logging', '--all2all-backend', '--allow-credentials',
    '--allowed-headers', '--allowed-local-media-path', '--allowed-media-domains', '--allowed-methods',
    '--allowed-origins', '--api-key', '--api-server-count', '--async-scheduling', '--block-size',
    '--calculate-kv-scales', '--chat-template', '--chat-template-content-format', '--code-revision',
    '--collect-detailed-traces', '--compilation-config', '--config', '--config-format', '--convert',
    '--cpu-offload-gb', '--cudagraph-capture-sizes', '--data-parallel-address', '--data-parallel-backend',
    '--data-parallel-external-lb', '--data-parallel-hybrid-lb', '--data-parallel-rank', '--data-parallel-rpc-port',
    '--data-parallel-size', '--data-parallel-size-local', '--data-parallel-start-rank',
    '--dbo-decode-token-threshold', '--dbo-prefill-token-threshold', '--dcp-kv-cache-interleave-size',
    '--decode-context-parallel-size', '--default-mm-loras', '--disable-cascade-attn', '--disable-chunked-mm-input',
    '--disable-custom-all-reduce', '--disable-fastapi-docs', '--disable-frontend-multiprocessing',
    '--disable-hybrid-kv-cache-manager', '--disable-log-stats', '--disable-nccl-for-dp-synchronization',
    '--disable-sliding-window', '--disable-uvicorn-access-log', '--distributed-executor-backend', '--download-dir',
    '--dtype', '--ec-transfer-config', '--enable-auto-tool-choice', '--enable-chunked-prefill', '--enable-dbo',
    '--enable-eplb', '--enable-expert-parallel', '--enable-force-include-usage', '--enable-log-outputs',
    '--enable-log-requests', '--enable-lora', '--enable-mm-embeds', '--enable-prefix-caching',
    '--enable-prompt-embeds', '--enable-prompt-tokens-details', '--enable-request-id-headers',
    '--enable-server-load-tracking', '--enable-sleep-mode', '--enable-ssl-refresh',
    '--enable-tokenizer-info-endpoint', '--enforce-eager', '--eplb-config', '--exclude-tools-when-tool-choice-none',
    '--expert-placement-strategy', '--fully-sharded-loras', '--generation-config', '--gpu-memory-utilization',
    '--h11-max-header-count', '--h11-max-incomplete-event-size', '--headless', '--hf-config-path', '--hf-overrides',
    '--hf-token', '--host', '--ignore-patterns', '--interleave-mm-strings', '--io-processor-plugin',
    '--kv-cache-dtype', '--kv-cache-memory-bytes', '--kv-events-config', '--kv-offloading-backend',
    '--kv-offloading-size', '--kv-sharing-fast-prefill', '--kv-transfer-config', '--limit-mm-per-prompt',
    '--load-format', '--log-config-file', '--log-error-stack', '--logits-processor-pattern', '--logits-processors',
    '--logprobs-mode', '--long-prefill-token-threshold', '--lora-dtype', '--lora-extra-vocab-size',
    '--lora-modules', '--mamba-block-size', '--mamba-cache-dtype', '--mamba-ssm-cache-dtype', '--master-addr',
    '--master-port', '--max-cpu-loras', '--max-cudagraph-capture-size', '--max-log-len', '--max-logprobs',
    '--max-long-partial-prefills', '--max-lora-rank', '--max-loras', '--max-model-len', '--max-num-batched-tokens',
    '--max-num-partial-prefills', '--max-num-seqs', '--max-parallel-loading-workers', '--media-io-kwargs',
    '--middleware', '--mm-encoder-attn-backend', '--mm-encoder-tp-mode', '--mm-processor-cache-gb',
    '--mm-processor-cache-type', '--mm-processor-kwargs', '--mm-shm-cache-max-object-size-mb', '--model',
    '--model-impl', '--model-loader-extra-config', '--nnodes', '--no-allow-credentials', '--no-async-scheduling',
    '--no-calculate-kv-scales', '--no-data-parallel-external-lb', '--no-data-parallel-hybrid-lb',
    '--no-disable-cascade-attn', '--no-disable-chunked-mm-input', '--no-disable-custom-all-reduce',
    '--no-disable-fastapi-docs', '--no-disable-frontend-multiprocessing', '--no-disable-hybrid-kv-cache-manager',
    '--no-disable-nccl-for-dp-synchronization', '--no-disable-sliding-window', '--no-disable-uvicorn-access-log',
    '--no-enable-auto-tool-choice', '--no-enable-dbo', '--no-enable-eplb', '--no-enable-expert-parallel',
    '--no-enable-force-include-usage', '--no-enable-log-outputs', '--no-enable-log-requests', '--no-enable-lora',
    '--no-enable-mm-embeds', '--no-enable-prefix-caching', '--no-enable-prompt-embeds',
    '--no-enable-prompt-tokens-details', '--no-enable-request-id-headers', '--no-enable-server-load-tracking',
    '--no-enable-sleep-mode', '--no-enable-ssl-refresh', '--no-enable-tokenizer-info-endpoint',
    '--no-enforce-eager', '--no-exclude-tools-when-tool-choice-none', '--no-fully-sharded-loras',
    '--no-interleave-mm-strings', '--no-kv-sharing-fast-prefill', '--no-log-error-stack',
    '--no-ray-workers-use-nsight', '--no-return-tokens-as-token-ids', '--no-skip-mm-profiling',
    '--no-skip-tokenizer-init', '--no-tokens-only', '--no-trust-remote-code', '--no-trust-request-chat-template',
    '--no-use-tqdm-on-load', '--node-rank', '--num-gpu-blocks-override', '--num-lookahead-slots',
    '--otlp-traces-endpoint', '--override-attention-dtype', '--override-generation-config',
    '--pipeline-parallel-size', '--pooler-config', '--port', '--prefix-caching-hash-algo', '--pt-load-map-location',
    '--quantization', '--ray-workers-use-nsight', '--reasoning-parser', '--reasoning-parser-plugin',
    '--response-role', '--return-tokens-as-token-ids', '--revision', '--root-path', '--runner',
    '--safetensors-load-strategy', '--scheduler-cls', '--scheduling-policy', '--seed', '--served-model-name',
    '--show-hidden-metrics-for-version', '--skip-mm-profiling', '--skip-tokenizer-init', '--speculative-config',
    '--ssl-ca-certs', '--ssl-cert-reqs', '--ssl-certfile', '--ssl-keyfile', '--stream-interval',
    '--structured-outputs-config', '--swap-space', '--tensor-parallel-size', '--tokenizer', '--tokenizer-mode',
    '--tokenizer-revision', '--tokens-only', '--tool-call-parser', '--tool-parser-plugin', '--tool-server',
    '--trust-remote-code', '--trust-request-chat-template', '--uds', '--use-tqdm-on-load', '--uvicorn-log-level',
    '--video-pruning-rate', '--worker-cls', '--worker-extension-cls',
})

_VLLM_0_11_1_DEPRECATED_FLAGS = frozenset({
    '--cuda-graph-sizes', '--disable-log-requests', '--disable-mm-preprocessor-cache',
    '--enable-multimodal-encoder-data-parallel', '--eplb-log-balancedness', '--eplb-step-interval',
    '--eplb-window-size', '--no-disable-log-requests', '--no-eplb-log-balancedness', '--num-redundant-experts',
    '--override-pooler-config', '--task',
})

_VLLM_0_11_1_SHORT_FLAGS = frozenset({
    '-O', '-asc', '-dcp', '-dp', '-dpa', '-dpb', '-dpe', '-dph', '-dpl', '-dpn', '-dpp', '-dpr', '-n', '-pp', '-q',
    '-r', '-tp',
})

_VLLM_0_11_1_ENV = frozenset({
    'CMAKE_BUILD_TYPE', 'CUDA_HOME', 'CUDA_VISIBLE_DEVICES', 'K_SCALE_CONSTANT', 'LD_LIBRARY_PATH', 'LOCAL_RANK',
    'MAX_JOBS', 'NVCC_THREADS', 'Q_SCALE_CONSTANT', 'S3_ACCESS_KEY_ID', 'S3_ENDPOINT_URL', 'S3_SECRET_ACCESS_KEY',
    'VERBOSE', 'VLLM_ALL2ALL_BACKEND', 'VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE',
    'VLLM_ALLOW_INSECURE_SERIALIZATION', 'VLLM_ALLOW_LONG_MAX_MODEL_LEN', 'VLLM_ALLOW_RUNTIME_LORA_UPDATING',
    'VLLM_ALLREDUCE_USE_SYMM_MEM', 'VLLM_API_KEY', 'VLLM_ASSETS_CACHE', 'VLLM_ASSETS_CACHE_MODEL_CLEAN',
    'VLLM_ATTENTION_BACKEND', 'VLLM_AUDIO_FETCH_TIMEOUT', 'VLLM_CACHE_ROOT', 'VLLM_CI_USE_S3',
    'VLLM_COMPILE_CACHE_SAVE_FORMAT', 'VLLM_COMPUTE_NANS_IN_LOGITS', 'VLLM_CONFIGURE_LOGGING', 'VLLM_CONFIG_ROOT',
    'VLLM_CPU_KVCACHE_SPACE', 'VLLM_CPU_MOE_PREPACK', 'VLLM_CPU_NUM_OF_RESERVED_CPU', 'VLLM_CPU_OMP_THREADS_BIND',
    'VLLM_CPU_SGL_KERNEL', 'VLLM_CUDART_SO_PATH', 'VLLM_CUSTOM_SCOPES_FOR_PROFILING', 'VLLM_DBO_COMM_SMS',
    'VLLM_DEBUG_DUMP_PATH', 'VLLM_DEBUG_LOG_API_SERVER_RESPONSE', 'VLLM_DEEPEP_BUFFER_SIZE_MB',
    'VLLM_DEEPEP_HIGH_THROUGHPUT_FORCE_INTRA_NODE', 'VLLM_DEEPEP_LOW_LATENCY_USE_MNNVL', 'VLLM_DEEP_GEMM_WARMUP',
    'VLLM_DISABLED_KERNELS', 'VLLM_DISABLE_COMPILE_CACHE', 'VLLM_DISABLE_FLASHINFER_PREFILL', 'VLLM_DISABLE_PYNCCL',
    'VLLM_DISABLE_SHARED_EXPERTS_STREAM', 'VLLM_DOCKER_BUILD_CONTEXT', 'VLLM_DO_NOT_TRACK', 'VLLM_DP_MASTER_IP',
    'VLLM_DP_MASTER_PORT', 'VLLM_DP_RANK', 'VLLM_DP_RANK_LOCAL', 'VLLM_DP_SIZE', 'VLLM_ENABLE_CUDAGRAPH_GC',
    'VLLM_ENABLE_FUSED_MOE_ACTIVATION_CHUNKING', 'VLLM_ENABLE_INDUCTOR_COORDINATE_DESCENT_TUNING',
    'VLLM_ENABLE_INDUCTOR_MAX_AUTOTUNE', 'VLLM_ENABLE_RESPONSES_API_STORE', 'VLLM_ENABLE_V1_MULTIPROCESSING',
    'VLLM_ENGINE_ITERATION_TIMEOUT_S', 'VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS',
    'VLLM_FLASHINFER_ALLREDUCE_FUSION_THRESHOLDS_MB', 'VLLM_FLASHINFER_DISABLE_Q_QUANTIZATION',
    'VLLM_FLASHINFER_MOE_BACKEND', 'VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE',
    'VLLM_FLASH_ATTN_MAX_NUM_SPLITS_FOR_CUDA_GRAPH', 'VLLM_FLASH_ATTN_VERSION', 'VLLM_FLAT_LOGPROBS',
    'VLLM_FORCE_AOT_LOAD', 'VLLM_FUSED_MOE_CHUNK_SIZE', 'VLLM_GC_DEBUG', 'VLLM_GPT_OSS_HARMONY_SYSTEM_INSTRUCTIONS',
    'VLLM_GPT_OSS_SYSTEM_TOOL_MCP_LABELS', 'VLLM_HAS_FLASHINFER_CUBIN', 'VLLM_HOST_IP',
    'VLLM_HTTP_TIMEOUT_KEEP_ALIVE', 'VLLM_IMAGE_FETCH_TIMEOUT', 'VLLM_KEEP_ALIVE_ON_ENGINE_DEATH',
    'VLLM_KV_CACHE_LAYOUT', 'VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES', 'VLLM_LOGGING_CONFIG_PATH', 'VLLM_LOGGING_LEVEL',
    'VLLM_LOGGING_PREFIX', 'VLLM_LOGGING_STREAM', 'VLLM_LOG_BATCHSIZE_INTERVAL', 'VLLM_LOG_STATS_INTERVAL',
    'VLLM_LOOPBACK_IP', 'VLLM_LORA_RESOLVER_CACHE_DIR', 'VLLM_MAIN_CUDA_VERSION', 'VLLM_MARLIN_USE_ATOMIC_ADD',
    'VLLM_MAX_AUDIO_CLIP_FILESIZE_MB', 'VLLM_MAX_TOKENS_PER_EXPERT_FP4_MOE', 'VLLM_MEDIA_CONNECTOR',
    'VLLM_MEDIA_LOADING_THREAD_COUNT', 'VLLM_MEDIA_URL_ALLOW_REDIRECTS', 'VLLM_MLA_DISABLE',
    'VLLM_MM_INPUT_CACHE_GIB', 'VLLM_MODEL_REDIRECT_PATH', 'VLLM_MOE_DP_CHUNK_SIZE',
    'VLLM_MOE_ROUTING_SIMULATION_STRATEGY', 'VLLM_MOE_USE_DEEP_GEMM', 'VLLM_MQ_MAX_CHUNK_BYTES_MB',
    'VLLM_MSGPACK_ZERO_COPY_THRESHOLD', 'VLLM_MXFP4_USE_MARLIN', 'VLLM_NCCL_INCLUDE_PATH', 'VLLM_NCCL_SO_PATH',
    'VLLM_NIXL_ABORT_REQUEST_TIMEOUT', 'VLLM_NIXL_SIDE_CHANNEL_HOST', 'VLLM_NIXL_SIDE_CHANNEL_PORT',
    'VLLM_NO_USAGE_STATS', 'VLLM_NVFP4_GEMM_BACKEND', 'VLLM_NVTX_SCOPES_FOR_PROFILING',
    'VLLM_OBJECT_STORAGE_SHM_BUFFER_NAME', 'VLLM_PATTERN_MATCH_DEBUG', 'VLLM_PLUGINS', 'VLLM_PORT',
    'VLLM_PP_LAYER_PARTITION', 'VLLM_PROCESS_NAME_PREFIX', 'VLLM_RANDOMIZE_DP_DUMMY_INPUTS',
    'VLLM_RAY_BUNDLE_INDICES', 'VLLM_RAY_DP_PACK_STRATEGY', 'VLLM_RAY_PER_WORKER_GPUS',
    'VLLM_RINGBUFFER_WARNING_INTERVAL', 'VLLM_ROCM_CUSTOM_PAGED_ATTN', 'VLLM_ROCM_FP8_MFMA_PAGE_ATTN',
    'VLLM_ROCM_FP8_PADDING', 'VLLM_ROCM_MOE_PADDING', 'VLLM_ROCM_QUICK_REDUCE_CAST_BF16_TO_FP16',
    'VLLM_ROCM_QUICK_REDUCE_MAX_SIZE_BYTES_MB', 'VLLM_ROCM_QUICK_REDUCE_QUANTIZATION',
    'VLLM_ROCM_SLEEP_MEM_CHUNK_SIZE', 'VLLM_ROCM_USE_AITER', 'VLLM_ROCM_USE_AITER_FP4_ASM_GEMM',
    'VLLM_ROCM_USE_AITER_FP8BMM', 'VLLM_ROCM_USE_AITER_FUSION_SHARED_EXPERTS', 'VLLM_ROCM_USE_AITER_LINEAR',
    'VLLM_ROCM_USE_AITER_MHA', 'VLLM_ROCM_USE_AITER_MLA', 'VLLM_ROCM_USE_AITER_MOE',
    'VLLM_ROCM_USE_AITER_PAGED_ATTN', 'VLLM_ROCM_USE_AITER_RMSNORM', 'VLLM_ROCM_USE_AITER_TRITON_GEMM',
    'VLLM_ROCM_USE_AITER_TRITON_ROPE', 'VLLM_ROCM_USE_AITER_UNIFIED_ATTENTION', 'VLLM_ROCM_USE_SKINNY_GEMM',
    'VLLM_RPC_BASE_PATH', 'VLLM_RPC_TIMEOUT', 'VLLM_SERVER_DEV_MODE', 'VLLM_SHARED_EXPERTS_STREAM_TOKEN_THRESHOLD',
    'VLLM_SKIP_P2P_CHECK', 'VLLM_SLEEP_WHEN_IDLE', 'VLLM_TARGET_DEVICE', 'VLLM_TEST_FORCE_FP8_MARLIN',
    'VLLM_TEST_FORCE_LOAD_FORMAT', 'VLLM_TEST_USE_PRECOMPILED_NIGHTLY_WHEEL',
    'VLLM_TOOL_JSON_ERROR_AUTOMATIC_RETRY', 'VLLM_TOOL_PARSE_REGEX_TIMEOUT_SECONDS', 'VLLM_TORCH_CUDA_PROFILE',
    'VLLM_TORCH_PROFILER_DIR', 'VLLM_TORCH_PROFILER_RECORD_SHAPES', 'VLLM_TORCH_PROFILER_WITH_FLOPS',
    'VLLM_TORCH_PROFILER_WITH_PROFILE_MEMORY', 'VLLM_TORCH_PROFILER_WITH_STACK', 'VLLM_TPU_BUCKET_PADDING_GAP',
    'VLLM_TPU_MOST_MODEL_LEN', 'VLLM_TPU_USING_PATHWAYS', 'VLLM_TRACE_FUNCTION', 'VLLM_TUNED_CONFIG_FOLDER',
    'VLLM_USAGE_SOURCE', 'VLLM_USAGE_STATS_SERVER', 'VLLM_USE_AOT_COMPILE', 'VLLM_USE_BYTECODE_HOOK',
    'VLLM_USE_CUDNN_PREFILL', 'VLLM_USE_DEEP_GEMM', 'VLLM_USE_DEEP_GEMM_E8M0', 'VLLM_USE_FBGEMM',
    'VLLM_USE_FLASHINFER_MOE_FP16', 'VLLM_USE_FLASHINFER_MOE_FP4', 'VLLM_USE_FLASHINFER_MOE_FP8',
    'VLLM_USE_FLASHINFER_MOE_MXFP4_BF16', 'VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8',
    'VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8_CUTLASS', 'VLLM_USE_FLASHINFER_SAMPLER', 'VLLM_USE_FUSED_MOE_GROUPED_TOPK',
    'VLLM_USE_MODELSCOPE', 'VLLM_USE_NCCL_SYMM_MEM', 'VLLM_USE_NVFP4_CT_EMULATIONS', 'VLLM_USE_PRECOMPILED',
    'VLLM_USE_RAY_COMPILED_DAG_CHANNEL_TYPE', 'VLLM_USE_RAY_COMPILED_DAG_OVERLAP_COMM',
    'VLLM_USE_RAY_WRAPPED_PP_COMM', 'VLLM_USE_STANDALONE_COMPILE', 'VLLM_USE_TRITON_AWQ',
    'VLLM_USE_TRTLLM_ATTENTION', 'VLLM_USE_TRTLLM_RAGGED_DEEPSEEK_PREFILL', 'VLLM_V1_OUTPUT_PROC_CHUNK_SIZE',
    'VLLM_V1_USE_OUTLINES_CACHE', 'VLLM_V1_USE_PREFILL_DECODE_ATTENTION', 'VLLM_VIDEO_FETCH_TIMEOUT',
    'VLLM_VIDEO_LOADER_BACKEND', 'VLLM_WORKER_MULTIPROC_METHOD', 'VLLM_XGRAMMAR_CACHE_MB', 'VLLM_XLA_CACHE_PATH',
    'VLLM_XLA_CHECK_RECOMPILATION', 'VLLM_XLA_USE_SPMD', 'V_SCALE_CONSTANT',
})

# vLLM 0.11.1: see the module docstring (scripts/vllm_facts.py output).
_VLLM_0_11_1_METRICS: dict[str, tuple[str, str]] = {
    'vllm:cache_config_info': ('gauge', 'current'),
    'vllm:corrupted_requests': ('counter', 'current'),
    'vllm:e2e_request_latency_seconds': ('histogram', 'current'),
    'vllm:engine_sleep_state': ('gauge', 'current'),
    'vllm:external_prefix_cache_hits': ('counter', 'current'),
    'vllm:external_prefix_cache_queries': ('counter', 'current'),
    'vllm:generation_tokens': ('counter', 'current'),
    'vllm:gpu_cache_usage_perc': ('gauge', 'hidden'),
    'vllm:gpu_prefix_cache_hits': ('counter', 'hidden'),
    'vllm:gpu_prefix_cache_queries': ('counter', 'hidden'),
    'vllm:inter_token_latency_seconds': ('histogram', 'current'),
    'vllm:iteration_tokens_total': ('histogram', 'current'),
    'vllm:kv_cache_usage_perc': ('gauge', 'current'),
    'vllm:lora_requests_info': ('gauge', 'current'),
    'vllm:mm_cache_hits': ('counter', 'current'),
    'vllm:mm_cache_queries': ('counter', 'current'),
    'vllm:num_preemptions': ('counter', 'current'),
    'vllm:num_requests_running': ('gauge', 'current'),
    'vllm:num_requests_waiting': ('gauge', 'current'),
    'vllm:prefix_cache_hits': ('counter', 'current'),
    'vllm:prefix_cache_queries': ('counter', 'current'),
    'vllm:prompt_tokens': ('counter', 'current'),
    'vllm:request_decode_time_seconds': ('histogram', 'current'),
    'vllm:request_generation_tokens': ('histogram', 'current'),
    'vllm:request_inference_time_seconds': ('histogram', 'current'),
    'vllm:request_max_num_generation_tokens': ('histogram', 'current'),
    'vllm:request_params_max_tokens': ('histogram', 'current'),
    'vllm:request_params_n': ('histogram', 'current'),
    'vllm:request_prefill_time_seconds': ('histogram', 'current'),
    'vllm:request_prompt_tokens': ('histogram', 'current'),
    'vllm:request_queue_time_seconds': ('histogram', 'current'),
    'vllm:request_success': ('counter', 'current'),
    'vllm:request_time_per_output_token_seconds': ('histogram', 'current'),
    'vllm:spec_decode_num_accepted_tokens': ('counter', 'current'),
    'vllm:spec_decode_num_accepted_tokens_per_pos': ('counter', 'current'),
    'vllm:spec_decode_num_draft_tokens': ('counter', 'current'),
    'vllm:spec_decode_num_drafts': ('counter', 'current'),
    'vllm:time_per_output_token_seconds': ('histogram', 'deprecated'),
    'vllm:time_to_first_token_seconds': ('histogram', 'current'),
}


@dataclass(frozen=True)
class VllmFacts:
    """What one vLLM version accepts and exposes."""

    version: str
    flags: frozenset[str]
    deprecated_flags: frozenset[str]
    short_flags: frozenset[str]
    env_vars: frozenset[str]
    # metric name -> (type, status): status "current", "deprecated" (still exposed, going away) or
    # "hidden" (exposed only with --show-hidden-metrics-for-version).
    metrics: dict[str, tuple[str, str]]
    source: str
    # Seconds vLLM keeps an idle HTTP connection when VLLM_HTTP_TIMEOUT_KEEP_ALIVE is unset (vllm/envs.py).
    keep_alive_default: int = 5

    def flag_status(self, flag: str) -> Optional[str]:
        """"current", "deprecated" or None (unknown to this version). vLLM's FlexibleArgumentParser
        accepts underscores for dashes (--max_model_len) and `--flag=value`."""
        name = flag.split("=", 1)[0]
        if name.startswith("--"):
            name = "--" + name[2:].replace("_", "-")
        if name in self.flags or name in self.short_flags:
            return "current"
        if name in self.deprecated_flags:
            return "deprecated"
        return None

    def metric_status(self, series: str) -> tuple[Optional[str], str]:
        """(status, metric) of a series name as Prometheus stores it: a counter `x` is exposed as `x_total`
        (and `x_created`), a histogram as `x_bucket`, `x_sum`, `x_count` (prometheus_client exposition)."""
        if series in self.metrics:
            kind, status = self.metrics[series]
            return (status if kind != "counter" else "counter-name"), series
        for suffix, kinds in (("_total", ("counter",)), ("_created", ("counter", "histogram")),
                              ("_bucket", ("histogram",)), ("_sum", ("histogram",)), ("_count", ("histogram",))):
            base = series[: -len(suffix)] if series.endswith(suffix) else None
            if base and base in self.metrics and self.metrics[base][0] in kinds:
                return self.metrics[base][1], base
        return None, series


@dataclass(frozen=True)
class ImageFacts:
    repository: str
    tag: str
    user: str  # the Dockerfile's USER (root when none)
    uid: int
    home: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    # Programs on the image's PATH, by name, and absolute paths of programs outside the standard directories.
    tools: frozenset[str]
    paths: frozenset[str]
    # Python interpreter (as a command names it) -> third-party modules it imports (the standard library always).
    python: dict[str, frozenset[str]]
    source: str
    as_of: str = _AS_OF
    vllm: Optional[VllmFacts] = None
    notes: str = ""
    # An HTTP server image (not vLLM): its idle keep-alive when nothing sets it, and where that comes from.
    http_keep_alive_default: Optional[int] = None
    http_keep_alive_source: str = ""

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def runs_as_root(self) -> bool:
        return self.uid == 0

    @property
    def user_text(self) -> str:
        return f"{self.user} (uid {self.uid}, HOME={self.home}){'; ' + self.notes if self.notes else ''}"

    def has(self, command: str) -> bool:
        """Whether `command` (a name looked up on PATH, or an absolute path) exists in the image."""
        if "/" not in command:
            return command in self.tools
        if command in self.paths:
            return True
        directory, _, name = command.rpartition("/")
        # All three bases are merged-/usr: /bin and /sbin are /usr/bin and /usr/sbin.
        return directory in STANDARD_DIRS and name in self.tools

    def modules(self, interpreter: str) -> Optional[frozenset[str]]:
        """Third-party modules `interpreter` imports (None: no such interpreter in the image)."""
        if interpreter in self.python:
            return self.python[interpreter]
        name = interpreter.rpartition("/")[2]
        if "/" in interpreter and interpreter.rpartition("/")[0] in STANDARD_DIRS and name in self.python:
            return self.python[name]
        return None


STANDARD_DIRS = frozenset({"/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin", "/usr/local/sbin"})

_VLLM_SRC = ("vLLM 0.11.1 sdist (PyPI vllm-0.11.1.tar.gz): docker/Dockerfile target vllm-openai (installs "
             "runai-model-streamer[s3,gcs]>=0.15.0, whose s3 package requires boto3: PyPI "
             "runai_model_streamer_s3-0.15.0 METADATA Requires-Dist); requirements/*.txt")
_VLLM_PY = frozenset({
    "vllm", "ray", "huggingface_hub", "transformers", "torch", "torchvision", "torchaudio", "numba", "numpy",
    "flashinfer", "xformers", "uvicorn", "fastapi", "prometheus_client", "requests", "aiohttp", "pydantic", "yaml",
    "safetensors", "tokenizers", "accelerate", "hf_transfer", "modelscope", "bitsandbytes", "timm", "openai",
    "sentencepiece", "triton", "msgspec", "zmq", "psutil", "cloudpickle", "tqdm", "filelock", "pillow", "PIL",
    "runai_model_streamer", "boto3", "botocore",
})

VLLM_0_11_1 = VllmFacts(
    version="0.11.1", flags=_VLLM_0_11_1_FLAGS, deprecated_flags=_VLLM_0_11_1_DEPRECATED_FLAGS,
    short_flags=_VLLM_0_11_1_SHORT_FLAGS, env_vars=_VLLM_0_11_1_ENV, metrics=_VLLM_0_11_1_METRICS,
    source="vLLM 0.11.1 sdist (PyPI): vllm/engine/arg_utils.py, vllm/entrypoints/openai/cli_args.py, vllm/envs.py, "
           "vllm/v1/metrics/loggers.py (extracted with scripts/vllm_facts.py)")

_ROUTER_VENV = frozenset({
    "vllm_router", "uvicorn", "fastapi", "starlette", "kubernetes", "aiohttp", "prometheus_client", "numpy",
    "aiofiles", "uhashring", "xxhash", "psutil", "yaml", "sentry_sdk", "huggingface_hub", "opentelemetry", "httpcore",
    "h11", "multipart"})

IMAGES: dict[str, ImageFacts] = {f.ref: f for f in (
    ImageFacts(
        repository="vllm/vllm-openai", tag="v0.11.1", user="root", uid=0, home="/root",
        entrypoint=("vllm", "serve"), cmd=(),
        tools=_DEBIAN_BASE | frozenset({
            "python3", "python3.12", "pip", "pip3", "uv", "vllm", "ray", "serve", "hf", "huggingface-cli", "torchrun",
            "accelerate", "git", "curl", "wget", "sudo", "vim", "ffmpeg", "ccache", "flashinfer", "nvcc"}),
        paths=frozenset(),
        python={"python3": _VLLM_PY, "python3.12": _VLLM_PY},
        source=_VLLM_SRC, vllm=VLLM_0_11_1,
        notes="ray and huggingface_hub installed; no `python`, no jq, no aws"),
    ImageFacts(
        repository="lmcache/lmstack-router", tag="v0.1.11", user="root", uid=0, home="/root",
        entrypoint=("/opt/venv/bin/vllm-router",), cmd=(),
        tools=_DEBIAN_BASE | frozenset({"python", "python3", "python3.12", "pip", "pip3", "uv", "git"}),
        paths=frozenset({"/opt/venv/bin/vllm-router", "/opt/venv/bin/python", "/opt/venv/bin/python3",
                         "/opt/venv/bin/uvicorn", "/opt/venv/bin/fastapi", "/opt/venv/bin/pip"}),
        python={"python": frozenset(), "python3": frozenset(), "python3.12": frozenset(),
                "/opt/venv/bin/python": _ROUTER_VENV, "/opt/venv/bin/python3": _ROUTER_VENV},
        source="vllm-project/production-stack docker/Dockerfile and pyproject.toml at tag vllm-stack-0.1.11",
        # src/vllm_router/app.py main() calls uvicorn.run(app, **uvicorn_kwargs) without timeout_keep_alive, and
        # uvicorn 0.34.0 (pinned in pyproject.toml) defaults it to 5 s (uvicorn/config.py Config).
        http_keep_alive_default=5,
        http_keep_alive_source="uvicorn 0.34.0 Config(timeout_keep_alive=5); vllm_router.app main sets none",
        notes="python:3.12-slim; the router's packages live in /opt/venv, which is not on PATH; no curl, no jq"),
    ImageFacts(
        repository="amazon/aws-cli", tag="2.31.18", user="root", uid=0, home="/root",
        entrypoint=("/usr/local/bin/aws",), cmd=(),
        tools=_COREUTILS | frozenset({
            "bash", "sh", "grep", "egrep", "fgrep", "sed", "awk", "gawk", "curl", "jq", "find", "xargs", "less", "groff",
            "aws", "aws_completer", "dnf", "rpm"}),
        paths=frozenset(),
        python={},
        source="aws/aws-cli docker/Dockerfile at tag 2.31.18; Amazon Linux 2023 container base packages",
        notes="amazonlinux:2023 with bash, curl-minimal, jq, findutils; no python on the record"),
)}


def facts(image: str) -> Optional[ImageFacts]:
    """The recorded facts of an image reference (repository:tag), None when the catalog has none."""
    return IMAGES.get(image)
