"""Catalog integrity: every figure has a source and a date, prices match FACTS.md, names are real AWS names."""

from __future__ import annotations

import re

import botocore.session
import pytest

from infra import capacity
from infra import catalog as cat
from tests.harness import settings_for

DATE = re.compile(r"^20\d\d-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")

# us-east-1 Linux on-demand $/hour after the June 2025 P-instance price cut (FACTS.md).
FACTS_PRICES = {
    "p4d.24xlarge": 21.96,
    "p4de.24xlarge": 27.45,
    "p5.48xlarge": 55.04,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.12xlarge": 5.672,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.805,
    "g6.48xlarge": 13.350,
    "g6e.xlarge": 1.861,
    "g6e.48xlarge": 30.131,
}
# GPU and count per instance (FACTS.md).
FACTS_GPUS = {
    "p4d.24xlarge": ("A100-40GB", 8, 40),
    "p4de.24xlarge": ("A100-80GB", 8, 80),
    "p5.48xlarge": ("H100-80GB", 8, 80),
    "g5.xlarge": ("A10G", 1, 24),
    "g5.12xlarge": ("A10G", 4, 24),
    "g5.48xlarge": ("A10G", 8, 24),
    "g6.xlarge": ("L4", 1, 24),
    "g6e.xlarge": ("L40S", 1, 48),
    "g6e.48xlarge": ("L40S", 8, 48),
}


def all_rows():
    c = cat.default_catalog()
    yield from (("gpus", k, r) for k, r in c.gpus.items())
    yield from (("instance_types", k, r) for k, r in c.instance_types.items())
    yield from (("models", k, r) for k, r in c.models.items())
    yield from (("bytes_per_parameter", k, r) for k, r in c.bytes_per_parameter.items())
    yield from (("throughput_anchors", r.model, r) for r in c.throughput_anchors)
    yield from (("assumptions", k, r) for k, r in c.assumptions.items())
    yield from (("tiers", k, r) for k, r in c.tiers.items())


@pytest.fixture(scope="module")
def ec2_instance_types() -> set[str]:
    model = botocore.session.get_session().get_service_model("ec2")
    return set(model.shape_for("InstanceType").enum)


def test_every_row_has_a_source_and_a_date():
    rows = list(all_rows())
    assert len(rows) > 40
    for table, key, row in rows:
        assert row.source.strip(), (table, key)
        assert DATE.match(row.as_of), f"{table}.{key}: as_of {row.as_of!r} is not YYYY-MM or YYYY-MM-DD"


def test_date_format_check_rejects_bad_dates():
    for bad in ("2025", "2025-13", "June 2025", "2025-06-32", "25-06"):
        assert not DATE.match(bad), bad


def test_every_instance_gpu_exists():
    for name, it in cat.INSTANCE_TYPES.items():
        assert it.gpu in cat.GPUS, f"{name}: GPU {it.gpu!r} not in GPUS"
        assert it.name == name
        assert it.family == name.split(".")[0]
        assert it.gpu_count >= 1 and it.vcpus >= 1 and it.memory_gib > 0


def test_every_anchor_gpu_exists():
    for a in cat.THROUGHPUT_ANCHORS:
        assert a.gpu in cat.GPUS, a.model
        assert a.tokens_per_second > 0 and a.gpu_count >= 1


@pytest.mark.parametrize("name,price", sorted(FACTS_PRICES.items()))
def test_prices_match_facts(name, price):
    assert cat.INSTANCE_TYPES[name].on_demand_usd_per_hour == price


@pytest.mark.parametrize("name,gpu", sorted(FACTS_GPUS.items()))
def test_gpus_match_facts(name, gpu):
    it = cat.INSTANCE_TYPES[name]
    assert (it.gpu, it.gpu_count, cat.GPUS[it.gpu].memory_gb) == gpu


def test_efa_instances():
    # Multi-node (pipeline-parallel) serving relies on EFA: p4d, p4de and p5 have it.
    for name in ("p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"):
        assert cat.INSTANCE_TYPES[name].efa and cat.INSTANCE_TYPES[name].max_efa_interfaces >= 4
    for name in ("g5.xlarge", "g6.xlarge", "g6e.xlarge"):
        assert not cat.INSTANCE_TYPES[name].efa and cat.INSTANCE_TYPES[name].max_efa_interfaces == 0
    for it in cat.INSTANCE_TYPES.values():
        assert it.efa == (it.max_efa_interfaces > 0), it.name


def test_fp8_compute_capability():
    # FP8 compute needs compute capability >= 8.9: L4, L40S and H100, not A100 or A10G (FACTS.md).
    floor = cat.ASSUMPTIONS["fp8_compute_min_capability"].value
    assert floor == 8.9
    fp8 = {g for g, row in cat.GPUS.items() if row.compute_capability >= floor}
    assert {"L4", "L40S", "H100-80GB"} <= fp8
    assert not fp8 & {"A100-40GB", "A100-80GB", "A10G"}


def test_instance_names_are_real_ec2_instance_types(ec2_instance_types):
    assert "p5.48xlarge" in ec2_instance_types and "p5.49xlarge" not in ec2_instance_types
    unknown = sorted(set(cat.INSTANCE_TYPES) - ec2_instance_types)
    assert unknown == [], f"not EC2 instance types in botocore's service model: {unknown}"


def test_spot_discounts_are_fractions():
    for it in cat.INSTANCE_TYPES.values():
        assert 0 <= it.spot_discount < 1, it.name
    with pytest.raises(ValueError):
        cat.InstanceType.model_validate({**cat.INSTANCE_TYPES["g5.xlarge"].model_dump(), "spot_discount": 1.0})


def test_bytes_per_parameter():
    b = {k: v.value for k, v in cat.BYTES_PER_PARAMETER.items()}
    assert b == {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "awq": 0.5, "gptq": 0.5}
    assert set(b) == set(cat.PRECISIONS)


def test_model_rows():
    m = cat.MODELS
    assert m["meta-llama/Llama-3.1-405B-Instruct"].parameters_billion == pytest.approx(405.9)
    # 405B in BF16 is about 810 GB and 70B BF16 about 140 GB (FACTS.md).
    assert 800 < m["meta-llama/Llama-3.1-405B-Instruct"].parameters_billion * 2 < 820
    assert 135 < m["meta-llama/Llama-3.1-70B-Instruct"].parameters_billion * 2 < 145
    assert m["RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8"].checkpoint_precision == "fp8"
    assert m["hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"].checkpoint_precision == "awq"
    # Llama 3.1 8B: 32 layers x 8 KV heads x 128 dims x K,V x 2 bytes = 128 KiB per token.
    assert m["meta-llama/Llama-3.1-8B-Instruct"].kv_bytes_per_token(2) == 131072


def test_anchors_are_the_facts_figures():
    figures = {(a.model, a.gpu, a.tokens_per_second) for a in cat.THROUGHPUT_ANCHORS}
    assert figures == {("Llama 3.1 8B", "A100-40GB", 793), ("Llama 3.1 70B", "MI300X", 1131),
                       ("Qwen 2.5 3B", "A5000", 2715)}


def test_tiers_are_the_seed_tiers():
    assert {k: v.value for k, v in cat.TIERS.items()} == {"small": 400, "medium": 4000, "large": 40000}
    assert cat.ASSUMPTIONS["active_request_share"].value == 0.15


def test_default_catalog_is_a_copy():
    c = cat.default_catalog()
    c.instance_types["x"] = cat.INSTANCE_TYPES["g5.xlarge"]
    assert "x" not in cat.default_catalog().instance_types


# --- overrides through stack config ------------------------------------------------------------

def test_price_override_changes_the_plan():
    base = capacity.plan(settings_for("dev"))
    [pool] = base.pools
    assert pool.instance_type == "g5.2xlarge"
    cheaper = capacity.plan(settings_for(
        "dev", {"llmserving:catalog": {"instanceTypes": {"g5.2xlarge": {"onDemandUsdPerHour": 0.606}}}}))
    assert cheaper.pools[0].nodes == pool.nodes
    assert cheaper.hourly_usd == pytest.approx(base.hourly_usd / 2)
    # The worst case prices the pool's dearest type (g6e.2xlarge), which the override leaves alone.
    assert cheaper.max_hourly_usd == pytest.approx(base.max_hourly_usd) == pytest.approx(16 * 2.242)
    assert "0.606" in cheaper.pools[0].price_basis


def test_spot_discount_override_changes_the_plan():
    p = capacity.plan(settings_for(
        "dev", {"llmserving:catalog": {"instanceTypes": {"g5.2xlarge": {"spotDiscount": 0.0}}}}))
    assert p.pools[0].usd_per_node_hour == pytest.approx(1.212)


def test_assumption_override_changes_the_demand():
    p = capacity.plan(settings_for(
        "dev", {"llmserving:catalog": {"assumptions": {"active_request_share": {"value": 0.30, "asOf": "2025-11"}}}}))
    assert p.required_tokens_per_second == pytest.approx(400 * 0.30 * 40)


def test_throughput_anchor_override_is_used():
    anchor = {"model": "Llama 3.1 8B on A10G (ours)", "parametersBillion": 8.03, "precision": "bf16", "gpu": "A10G",
              "gpuCount": 1, "tokensPerSecond": 1200, "source": "our load test", "asOf": "2025-11-02"}
    p = capacity.plan(settings_for("dev", {"llmserving:catalog": {"throughputAnchors": [anchor]}}))
    m = p.models[0]
    assert m.throughput_basis.startswith("scaled from Llama 3.1 8B on A10G (ours) bf16 on 1 x A10G = 1200 tok/s")
    assert m.tokens_per_second_per_replica == pytest.approx(1200)
