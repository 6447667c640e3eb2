"""The issue-4 serving scenarios as stack-config changes (tested presets).

Each preset is `changes` for tests.harness.settings_for / run_stack on the
stack named in it; docs/serving.md shows the same settings as YAML.
"""

from __future__ import annotations

# Prod pins every model's Hub commit (infra/config.py); tests pin this stand-in.
TEST_REVISION = "5" * 40

P5_POOL = {"name": "p5-ondemand", "instanceTypes": ["p5.48xlarge"], "capacityType": "on-demand",
           "provisioner": "managed-node-group", "minNodes": 0, "maxNodes": 4, "rootVolumeGib": 1000}
P4DE_POOL = {"name": "p4de-ondemand", "instanceTypes": ["p4de.24xlarge"], "capacityType": "on-demand",
             "minNodes": 0, "maxNodes": 4, "rootVolumeGib": 1000}
LIMITS = {"maxGpusTotal": 96, "maxGpusPerPool": 64, "allowedFamilies": ["p4de", "p5", "g5", "g6e"]}

# Two 8B-class models, each its own Deployment, behind the router: the dev stack as shipped.
MULTI_MODEL_8B = ("dev", {})

# 70B FP8 on p5, TP=8 (pre-quantized FP8 checkpoint): the prod stack's first model.
LLAMA_70B_FP8 = ("prod", {})

# 70B AWQ 4-bit on 2 x A100 80 GB (p4de), TP=2.
LLAMA_70B_AWQ = ("prod", {
    "llmserving:models": [{"name": "llama-3-1-70b-awq", "source": "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
                           "precision": "awq", "pool": "p4de-ondemand", "tensorParallel": 2, "maxModelLen": 8192,
                           "minReplicas": 2, "maxReplicas": 16, "revision": TEST_REVISION}],
    "llmserving:gpuPools": [P4DE_POOL],
    "llmserving:gpuLimits": LIMITS,
    "llmserving:lora": {"enabled": False},
    "llmserving:scale": {"targetTokensPerSecond": 2000},
})

# 405B FP8, TP=8 x PP=2 across two p5 nodes with EFA (LeaderWorkerSet).
LLAMA_405B = ("prod", {
    "llmserving:models": [{"name": "llama-3-1-405b", "source": "meta-llama/Llama-3.1-405B-Instruct-FP8",
                           "precision": "fp8", "pool": "p5-ondemand", "tensorParallel": 8, "pipelineParallel": 2,
                           "maxModelLen": 16384, "kvCacheDtype": "fp8", "minReplicas": 2, "maxReplicas": 2,
                           "revision": TEST_REVISION}],
    "llmserving:gpuPools": [P5_POOL],
    "llmserving:gpuLimits": LIMITS,
    "llmserving:lora": {"enabled": False},
    "llmserving:scale": {"targetTokensPerSecond": 1000},
})

# Multi-tenant LoRA on the shared 8B base: the prod stack's second model and lora section.
LORA = ("prod", {})


def many_tenants(n: int, runtime_loading: bool = True) -> dict:
    return {"enabled": True, "baseModel": "llama-3-1-8b", "maxLoras": 8, "maxLoraRank": 64, "maxCpuLoras": 64,
            "runtimeLoading": runtime_loading,
            "tenants": [{"id": f"tenant-{i:04d}", "adapters": [f"t{i:04d}-support"]} for i in range(n)]}
