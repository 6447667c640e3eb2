"""The seed's three tiers on ECS, run as whole stacks under mocks and priced by the capacity planner.

Prices: FACTS.md (us-east-1 on-demand after the June 2025 cut): p4d.24xlarge
21.96, g5.12xlarge 5.672, p5.48xlarge 55.04 $/h. Per-replica throughput is the
planner's scaling of its anchors (infra/capacity.py):
- 8B BF16, TP 2 on A100-40GB: 793 x 2 x 0.93 = 1,475 tok/s;
- 8B BF16, TP 1 on A10G: 793 x 600 / 1555 = 306 tok/s;
- 70B FP8 (pre-quantized), TP 8 on H100 (FP8 compute): 1,131 x (8 x 3350 x 0.93^3 / 5300) x 2 = 9,200 tok/s.
"""

from __future__ import annotations

import json

import pytest

from infra import capacity
from tests.aws_models import instance_types
from tests.harness import inputs, of_type, one, run_stack, settings_for

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B_FP8 = "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8"


def _ecs(tier: str, model: dict, pool: dict, *, zones: int, max_gpus: int, families: list[str]) -> dict:
    return {
        "llmserving:orchestrator": "ecs",
        "llmserving:scale": {"tier": tier},
        "llmserving:models": [model],
        "llmserving:gpuPools": [{**pool, "provisioner": "auto-scaling-group"}],
        "llmserving:lora": {"enabled": False},
        "llmserving:gpuLimits": {"maxGpusTotal": max_gpus, "maxGpusPerPool": max_gpus, "allowedFamilies": families},
        "llmserving:network": {"vpcCidr": "10.60.0.0/16", "zoneCount": zones,
                               "natGateways": "per-zone" if zones > 2 else "single"},
    }


TIERS = {
    # small: 400 users -> 2,400 tok/s; 4 tasks x 2 GPUs on one p4d (minReplicas 4 fills it).
    "small-p4d": ("dev", _ecs("small", {"name": "llama-3-1-8b", "source": LLAMA_8B, "precision": "bf16", "pool": "p4d",
                                        "tensorParallel": 2, "minReplicas": 4, "maxReplicas": 8},
                              {"name": "p4d", "instanceTypes": ["p4d.24xlarge"], "capacityType": "on-demand",
                               "minNodes": 1, "maxNodes": 2}, zones=2, max_gpus=16, families=["p4d"])),
    # small: 8 tasks x 1 GPU on two g5.12xlarge.
    "small-g5": ("dev", _ecs("small", {"name": "llama-3-1-8b", "source": LLAMA_8B, "precision": "bf16", "pool": "g5",
                                       "tensorParallel": 1, "minReplicas": 2, "maxReplicas": 12},
                             {"name": "g5", "instanceTypes": ["g5.12xlarge"], "capacityType": "on-demand",
                              "minNodes": 1, "maxNodes": 4}, zones=2, max_gpus=16, families=["g5"])),
    # medium: 4,000 users -> 24,000 tok/s; 8-GPU tasks of 70B FP8 on p5.
    "medium-p5": ("prod", _ecs("medium", {"name": "llama-3-1-70b", "source": LLAMA_70B_FP8, "precision": "fp8",
                                          "pool": "p5", "tensorParallel": 8, "kvCacheDtype": "fp8",
                                          "minReplicas": 2, "maxReplicas": 6},
                               {"name": "p5", "instanceTypes": ["p5.48xlarge"], "capacityType": "on-demand",
                                "minNodes": 2, "maxNodes": 6}, zones=3, max_gpus=48, families=["p5"])),
    # large: 40,000 users -> 240,000 tok/s across three zones behind the ALB.
    "large-p5": ("prod", _ecs("large", {"name": "llama-3-1-70b", "source": LLAMA_70B_FP8, "precision": "fp8",
                                        "pool": "p5", "tensorParallel": 8, "kvCacheDtype": "fp8",
                                        "minReplicas": 3, "maxReplicas": 40},
                              {"name": "p5", "instanceTypes": ["p5.48xlarge"], "capacityType": "on-demand",
                               "minNodes": 3, "maxNodes": 40}, zones=3, max_gpus=320, families=["p5"])),
}

# tier -> (replicas, GPUs per task, nodes, $/hour)
EXPECTED = {
    "small-p4d": (4, 2, 1, 21.96),
    "small-g5": (8, 1, 2, 11.34),
    "medium-p5": (3, 8, 3, 165.12),
    "large-p5": (27, 8, 27, 1486.08),
}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_planner_prices_each_tier(tier):
    base, changes = TIERS[tier]
    plan = capacity.plan(settings_for(base, changes))
    replicas, gpus, nodes, hourly = EXPECTED[tier]
    (m,) = plan.models
    assert (m.replicas, m.gpus_per_replica, m.nodes) == (replicas, gpus, nodes)
    assert round(plan.hourly_usd, 2) == hourly
    assert plan.monthly_usd == pytest.approx(plan.hourly_usd * 730)


_RUNS: dict = {}


def _run(tier: str):
    if tier not in _RUNS:
        _RUNS[tier] = run_stack(*TIERS[tier])
    return _RUNS[tier]


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_ecs_stack_matches_the_plan(tier):
    run = _run(tier)
    replicas, gpus, nodes, hourly = EXPECTED[tier]
    assert run.outputs["orchestrator"] == "ecs"
    assert run.outputs["cost"]["hourly_usd"] == hourly
    asg = inputs(one(run, "aws:autoscaling/group:Group"))
    assert asg["desiredCapacity"] == nodes
    for o in asg["mixedInstancesPolicy"]["launchTemplate"]["overrides"]:
        assert o["instanceType"] in instance_types()
    service = inputs(one(run, "aws:ecs/service:Service"))
    assert service["desiredCount"] == replicas
    (container,) = json.loads(inputs(one(run, "aws:ecs/taskDefinition:TaskDefinition"))["containerDefinitions"])
    assert container["resourceRequirements"] == [{"type": "GPU", "value": str(gpus)}]
    assert container["command"][container["command"].index("--tensor-parallel-size") + 1] == str(gpus)
    # Tasks and instances span the stack's zones; the ALB fronts them from the public subnets.
    zones = len(run.outputs["zones"])
    assert len(service["networkConfiguration"]["subnets"]) == zones == len(asg["vpcZoneIdentifiers"])
    assert len(inputs(one(run, "aws:lb/loadBalancer:LoadBalancer"))["subnets"]) == zones
    assert of_type(run, "aws:eks/cluster:Cluster") == []


def test_large_tier_is_multi_zone_behind_the_alb():
    run = _run("large-p5")
    assert len(run.outputs["zones"]) == 3
    service = inputs(one(run, "aws:ecs/service:Service"))
    assert service["orderedPlacementStrategies"][0]["field"] == "attribute:ecs.availability-zone"
    assert one(run, "aws:lb/listenerRule:ListenerRule")


def test_fp8_checkpoint_is_not_quantized_again_and_70b_uses_fp8_kv_cache():
    run = _run("medium-p5")
    (container,) = json.loads(inputs(one(run, "aws:ecs/taskDefinition:TaskDefinition"))["containerDefinitions"])
    args = container["command"]
    assert args[0] == LLAMA_70B_FP8 and "--quantization" not in args and "--dtype" not in args
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert container["linuxParameters"]["sharedMemorySize"] == 8 * 4096


def test_pipeline_parallel_on_ecs_is_a_config_error():
    from infra.config import ConfigError

    base, changes = TIERS["large-p5"]
    model = dict(changes["llmserving:models"][0], pipelineParallel=2)
    with pytest.raises(ConfigError) as e:
        settings_for(base, {**changes, "llmserving:models": [model]})
    assert ("llmserving:models[0].pipelineParallel: got 2; a model split across nodes needs LeaderWorkerSet on EKS; "
            "on ECS a task runs on one instance (use 1)") in str(e.value)
