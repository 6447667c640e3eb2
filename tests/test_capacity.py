"""Capacity planner: the seed's three tiers priced at current AWS prices, memory fit, limits, pricing modes."""

from __future__ import annotations

import json
import math

import pytest

from infra import capacity
from infra.capacity import PlanError
from infra.config import Settings, load_settings

# Current AWS on-demand prices, us-east-1 Linux, $/hour (FACTS.md), written out
# here so the test does not just echo the catalog back.
P5 = 55.04
P4D = 21.96
G5_XLARGE = 1.006
G5_12XLARGE = 5.672
HOURS_PER_MONTH = 730

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B_FP8 = "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
LLAMA_405B = "meta-llama/Llama-3.1-405B-Instruct"
LLAMA_405B_FP8 = "meta-llama/Llama-3.1-405B-Instruct-FP8"


def model(name: str, source: str, precision: str, pool: str, **extra) -> dict:
    return {"name": name, "source": source, "precision": precision, "pool": pool, "revision": "5" * 40, **extra}


def pool(name: str, instance_type: str, max_nodes: int = 200, capacity_type: str = "on-demand", **extra) -> dict:
    return {"name": name, "instanceTypes": [instance_type], "capacityType": capacity_type, "maxNodes": max_nodes, **extra}


def make_settings(models: list[dict], pools: list[dict], scale: dict, *, catalog: dict | None = None,
                  families: tuple[str, ...] = ("p4d", "p4de", "p5", "g5", "g6", "g6e")) -> Settings:
    """An ECS dev stack built from scratch (no shipped stack file), in engine form."""
    config = {
        "aws:region": "us-east-1",
        "llmserving:environment": "dev",
        "llmserving:orchestrator": "eks",
        "llmserving:scale": json.dumps(scale),
        "llmserving:models": json.dumps(models),
        "llmserving:gpuPools": json.dumps(pools),
        "llmserving:budget": json.dumps({"hourlyUsd": 5000, "monthlyUsd": 4_000_000,
                                          "notifyEmails": ["finops@example.com"]}),
        "llmserving:gpuLimits": json.dumps({"maxGpusTotal": 10_000, "maxGpusPerPool": 10_000,
                                            "allowedFamilies": list(families)}),
    }
    if catalog is not None:
        config["llmserving:catalog"] = json.dumps(catalog)
    return load_settings(config, stack="test")


def plan_errors(settings: Settings) -> list[str]:
    with pytest.raises(PlanError) as info:
        capacity.plan(settings)
    return info.value.problems


def ecs_like(scale: dict) -> Settings:
    """8B BF16 on g5.12xlarge (4 replicas per node) and 70B FP8 on p5 (TP 8), 40/60 traffic."""
    return make_settings(
        [model("llama-8b", LLAMA_8B, "bf16", "g5", maxReplicas=1000, trafficShare=0.4),
         model("llama-70b", LLAMA_70B_FP8, "fp8", "p5", tensorParallel=8, kvCacheDtype="fp8", maxReplicas=1000,
               trafficShare=0.6)],
        [pool("g5", "g5.12xlarge"), pool("p5", "p5.48xlarge")],
        scale)


# --- the seed's three tiers ----------------------------------------------------------

# tier, users, seed's tok/s band, expected nodes (g5.12xlarge, p5.48xlarge) under the planner's throughput model
TIERS = [
    ("small", 400, (2_000, 3_000), (1, 1)),
    ("medium", 4_000, (20_000, 30_000), (8, 2)),
    ("large", 40_000, (200_000, 300_000), (79, 16)),
]


@pytest.mark.parametrize("tier,users,band,nodes", TIERS, ids=[t[0] for t in TIERS])
def test_seed_tier_demand_and_price(tier, users, band, nodes):
    p = capacity.plan(ecs_like({"tier": tier}))
    assert p.users == users
    assert p.active_requests == pytest.approx(users * 0.15)
    assert band[0] <= p.required_tokens_per_second <= band[1]
    assert p.demand_basis == f"{users:,} users x 15% active x 40 tok/s per request (tier {tier})"

    small, big = p.models
    # Replicas cover the demand of each model's traffic share, no more than one replica of slack.
    for m, share in ((small, 0.4), (big, 0.6)):
        assert m.demand_tokens_per_second == pytest.approx(p.required_tokens_per_second * share)
        assert m.replicas == max(1, math.ceil(m.demand_tokens_per_second / m.tokens_per_second_per_replica))
        assert m.capacity_tokens_per_second >= m.demand_tokens_per_second
    # 8B at TP 1 packs 4 replicas on a 4-GPU g5.12xlarge; 70B at TP 8 takes a whole p5.
    assert small.nodes == math.ceil(small.replicas / 4) and small.gpus == small.replicas
    assert big.nodes == big.replicas and big.gpus == 8 * big.replicas
    assert (small.nodes, big.nodes) == nodes

    expected_hourly = nodes[0] * G5_12XLARGE + nodes[1] * P5
    assert p.hourly_usd == pytest.approx(expected_hourly)
    assert p.monthly_usd == pytest.approx(expected_hourly * HOURS_PER_MONTH)
    by_pool = p.cost_dict()["by_pool"]
    assert by_pool["g5"]["usd_per_node_hour"] == G5_12XLARGE and by_pool["p5"]["usd_per_node_hour"] == P5
    assert p.gpus_total == nodes[0] * 4 + nodes[1] * 8


def test_seed_small_tier_total_is_stated_in_dollars():
    # 1 x g5.12xlarge + 1 x p5.48xlarge on demand.
    p = capacity.plan(ecs_like({"tier": "small"}))
    assert round(p.hourly_usd, 3) == 60.712
    assert p.cost_dict()["hourly_usd"] == 60.71
    assert p.cost_dict()["monthly_usd"] == round(60.712 * 730, 2)


def test_users_override_tier_share_and_rate():
    p = capacity.plan(ecs_like({"users": 1000, "activeRequestShare": 0.2, "tokensPerRequestPerSecond": 25}))
    assert p.required_tokens_per_second == pytest.approx(1000 * 0.2 * 25)
    assert p.demand_basis == "1,000 users x 20% active x 25 tok/s per request"


def test_explicit_target_tokens_per_second():
    p = capacity.plan(ecs_like({"tier": "large", "targetTokensPerSecond": 5000}))
    assert p.required_tokens_per_second == 5000
    assert p.users is None and p.active_requests is None
    assert p.demand_basis == "scale.targetTokensPerSecond"
    assert p.models[0].demand_tokens_per_second == pytest.approx(2000)


def test_explicit_tokens_per_second_per_replica():
    s = make_settings([model("llama-8b", LLAMA_8B, "bf16", "g5", tokensPerSecondPerReplica=500, maxReplicas=100)],
                      [pool("g5", "g5.12xlarge")], {"targetTokensPerSecond": 4_600})
    m = capacity.plan(s).models[0]
    assert m.tokens_per_second_per_replica == 500
    assert m.throughput_basis == "stack config (tokensPerSecondPerReplica)"
    assert m.replicas == 10 and m.nodes == 3  # ceil(4600 / 500); 4 per node


def test_throughput_basis_names_the_anchor():
    p = capacity.plan(ecs_like({"tier": "small"}))
    small, big = p.models
    assert small.throughput_basis.startswith(
        "scaled from Llama 3.1 8B bf16 on 1 x A100-40GB = 793 tok/s (Red Hat vLLM benchmark")
    assert "2025-08" in small.throughput_basis
    assert big.throughput_basis.startswith("scaled from Llama 3.1 70B bf16 on 1 x MI300X = 1131 tok/s")
    # 8B BF16 on one A10G: 793 x A10G/A100 bandwidth (600/1555), same weight bytes.
    assert small.tokens_per_second_per_replica == pytest.approx(793 * 600 / 1555)


def test_fp8_only_speeds_up_where_the_gpu_computes_fp8():
    def tps(precision: str, instance: str) -> tuple[float, bool]:
        s = make_settings([model("m", LLAMA_8B, precision, "p")], [pool("p", instance)], {"targetTokensPerSecond": 10})
        m = capacity.plan(s).models[0]
        return m.tokens_per_second_per_replica, m.fp8_compute

    # A10G (8.6): FP8 is weight-only, planned at 16-bit speed.
    assert tps("fp8", "g5.xlarge") == (pytest.approx(tps("bf16", "g5.xlarge")[0]), False)
    # L40S (8.9): FP8 compute, half the weight bytes per token.
    assert tps("fp8", "g6e.xlarge") == (pytest.approx(2 * tps("bf16", "g6e.xlarge")[0]), True)


# --- memory fit -------------------------------------------------------------------------

def test_405b_bf16_on_two_p4d_does_not_fit():
    s = make_settings([model("llama-405b", LLAMA_405B, "bf16", "p4d", tensorParallel=8, pipelineParallel=2)],
                      [pool("p4d", "p4d.24xlarge")], {"tier": "small"})
    [problem] = plan_errors(s)
    assert problem.startswith("llmserving:models[0]: model 'llama-405b' does not fit p4d.24xlarge "
                              "(llmserving:gpuPools[0].instanceTypes[0]): it needs ")
    # 405.9 B x 2 bytes = 812 GB of weights; 16 x 40 GB x 0.9 = 576 GB usable.
    assert "weights 812 GB in bf16" in problem
    assert "TP 8 x PP 2 on p4d.24xlarge has 576 GB (16 x 40 GB A100-40GB x 0.9 gpu memory utilization)" in problem
    needed = int(problem.split("needs ")[1].split(" GB")[0].replace(",", ""))
    assert needed > 812


def test_405b_fp8_on_two_p5_fits():
    s = make_settings([model("llama-405b", LLAMA_405B_FP8, "fp8", "p5", tensorParallel=8, pipelineParallel=2,
                             maxReplicas=10)],
                      [pool("p5", "p5.48xlarge")], {"tier": "small"})
    m = capacity.plan(s).models[0]
    assert m.gpus_per_replica == 16
    assert m.weights_gb == pytest.approx(405.9)
    assert m.usable_gpu_memory_gb == pytest.approx(16 * 80 * 0.9)
    assert m.weights_gb + m.kv_cache_gb_required < m.usable_gpu_memory_gb
    assert m.nodes == 2 * m.replicas  # a pipeline-parallel replica takes PP whole nodes


def test_70b_bf16_on_one_a10g_does_not_fit():
    s = make_settings([model("llama-70b", LLAMA_70B, "bf16", "g5")], [pool("g5", "g5.xlarge")], {"tier": "small"})
    [problem] = plan_errors(s)
    assert problem.startswith("llmserving:models[0]: model 'llama-70b' does not fit g5.xlarge "
                              "(llmserving:gpuPools[0].instanceTypes[0]): it needs ")
    assert "weights 141 GB in bf16" in problem
    assert "has 22 GB (1 x 24 GB A10G x 0.9 gpu memory utilization)" in problem


def test_gpu_memory_utilization_is_used_for_the_fit():
    # 8B BF16 (16 GB + 4 x 8,192 tokens of KV = ~4.3 GB) fits one A10G at 0.9 but not at 0.5.
    ok = make_settings([model("m", LLAMA_8B, "bf16", "g5")], [pool("g5", "g5.xlarge")], {"targetTokensPerSecond": 100})
    assert capacity.plan(ok).models[0].usable_gpu_memory_gb == pytest.approx(24 * 0.9)
    tight = make_settings([model("m", LLAMA_8B, "bf16", "g5", gpuMemoryUtilization=0.5)], [pool("g5", "g5.xlarge")],
                          {"tier": "small"})
    [problem] = plan_errors(tight)
    assert "has 12 GB (1 x 24 GB A10G x 0.5 gpu memory utilization)" in problem


def test_every_failing_model_is_reported():
    s = make_settings([model("a", LLAMA_70B, "bf16", "g5", trafficShare=0.5),
                       model("b", LLAMA_405B, "bf16", "g5", trafficShare=0.5)],
                      [pool("g5", "g5.xlarge")], {"tier": "small"})
    problems = plan_errors(s)
    assert [p.split(" does not fit")[0] for p in problems] == ["llmserving:models[0]: model 'a'",
                                                                "llmserving:models[1]: model 'b'"]


# --- limits ----------------------------------------------------------------------------------

def test_max_replicas_too_low_names_the_key():
    s = make_settings([model("llama-8b", LLAMA_8B, "bf16", "g5", maxReplicas=3)], [pool("g5", "g5.xlarge")],
                      {"tier": "small"})
    [problem] = plan_errors(s)
    # 2,400 tok/s at 306 tok/s per replica = 8 replicas.
    assert problem.startswith("llmserving:models[0].maxReplicas: got 3; model 'llama-8b' needs 8 replicas for 2,400 tok/s")
    assert "raise maxReplicas or lower the scale" in problem


def test_pool_max_nodes_too_low_names_the_key():
    s = make_settings([model("llama-8b", LLAMA_8B, "bf16", "g5", maxReplicas=20)], [pool("g5", "g5.xlarge", max_nodes=5)],
                      {"tier": "small"})
    [problem] = plan_errors(s)
    assert problem == ("llmserving:gpuPools[0].maxNodes: got 5; pool 'g5' needs 8 x g5.xlarge for its models; "
                       "raise maxNodes or lower the scale")


def test_min_replicas_and_min_nodes_are_floors():
    s = make_settings([model("llama-8b", LLAMA_8B, "bf16", "g5", minReplicas=6, maxReplicas=10)],
                      [pool("g5", "g5.xlarge", minNodes=9, max_nodes=12)], {"targetTokensPerSecond": 100})
    p = capacity.plan(s)
    assert p.models[0].replicas == 6
    assert p.pools[0].nodes == 9
    assert p.hourly_usd == pytest.approx(9 * G5_XLARGE)


def test_tensor_parallel_larger_than_the_node():
    s = make_settings([model("m", LLAMA_70B_FP8, "fp8", "g5", tensorParallel=8)], [pool("g5", "g5.12xlarge")],
                      {"tier": "small"})
    [problem] = plan_errors(s)
    assert problem == ("llmserving:models[0].tensorParallel: got 8; g5.12xlarge has 4 GPUs per node, "
                       "so tensorParallel must be at most 4 (llmserving:gpuPools[0].instanceTypes[0])")


def test_pipeline_parallel_needs_efa():
    s = make_settings([model("m", LLAMA_8B, "bf16", "g6", pipelineParallel=2)], [pool("g6", "g6.xlarge")],
                      {"tier": "small"})
    [problem] = plan_errors(s)
    assert problem.startswith("llmserving:models[0].pipelineParallel: got 2; g6.xlarge has no EFA")
    assert problem.endswith("(llmserving:gpuPools[0].instanceTypes[0])")
    assert "use p4d, p4de or p5" in problem


def test_pipeline_parallel_needs_whole_nodes():
    s = make_settings([model("m", LLAMA_405B_FP8, "fp8", "p5", tensorParallel=4, pipelineParallel=2)],
                      [pool("p5", "p5.48xlarge")], {"tier": "small"})
    [problem] = plan_errors(s)
    assert problem.startswith("llmserving:models[0].tensorParallel: got 4; a model split across nodes")
    assert "must equal 8 on p5.48xlarge" in problem


# --- pricing modes ----------------------------------------------------------------------------

@pytest.mark.parametrize("capacity_type,discount_applies,worst_is_on_demand", [
    ("on-demand", False, True),
    ("spot", True, False),
    ("spot-with-on-demand-fallback", True, True),
])
def test_spot_on_demand_and_fallback_pricing(capacity_type, discount_applies, worst_is_on_demand):
    s = make_settings([model("llama-70b", LLAMA_70B_FP8, "fp8", "p4d", tensorParallel=8, minReplicas=2)],
                      [pool("p4d", "p4d.24xlarge", max_nodes=5, capacity_type=capacity_type)],
                      {"targetTokensPerSecond": 100})
    p = capacity.plan(s)
    discount = s.catalog.instance_types["p4d.24xlarge"].spot_discount
    assert 0 < discount < 1
    price = P4D * (1 - discount) if discount_applies else P4D
    worst = P4D if worst_is_on_demand else P4D * (1 - discount)
    [pp] = p.pools
    assert pp.capacity_type == capacity_type
    assert pp.nodes == 2
    assert pp.usd_per_node_hour == pytest.approx(price)
    assert p.hourly_usd == pytest.approx(2 * price)
    assert p.max_hourly_usd == pytest.approx(5 * worst)
    assert p.max_monthly_usd == pytest.approx(5 * worst * HOURS_PER_MONTH)
    assert p.max_gpus_total == 40 and p.gpus_total == 16


def test_plan_is_priced_from_the_first_instance_type():
    s = make_settings([model("m", LLAMA_8B, "bf16", "g5")],
                      [{"name": "g5", "instanceTypes": ["g5.12xlarge", "g5.xlarge"], "maxNodes": 4}],
                      {"targetTokensPerSecond": 100})
    assert capacity.plan(s).pools[0].instance_type == "g5.12xlarge"


def test_shipped_stacks_plan_within_their_budgets():
    from tests.harness import settings_for

    for stack in ("dev", "prod"):
        s = settings_for(stack)
        p = capacity.plan(s)
        assert p.hourly_usd <= s.config.budget.hourly_usd, stack
        assert p.gpus_total <= s.config.gpu_limits.max_gpus_total, stack
