"""Stack config validation: good configs load; every bad one names the key, the bad value and what is allowed."""

from __future__ import annotations

import pytest

from infra.config import ConfigError, load_settings
from tests.harness import settings_for, stack_config, stack_value

NS = "llmserving"


def problems_of(stack: str = "dev", changes: dict | None = None, remove: tuple[str, ...] = (),
                secret_keys: set[str] | None = None) -> list[str]:
    """The ConfigError problems for a shipped stack with `changes`; fails if the config loads."""
    config, secrets = stack_config(stack, changes, remove)
    with pytest.raises(ConfigError) as info:
        load_settings(config, stack=stack, secret_keys=set(secrets) if secret_keys is None else secret_keys)
    assert info.value.problems, "ConfigError without problems"
    # The exception text lists every problem (that is what the preview prints).
    for p in info.value.problems:
        assert p in str(info.value)
    return info.value.problems


def only_problem(stack: str = "dev", changes: dict | None = None, **kw) -> str:
    found = problems_of(stack, changes, **kw)
    assert len(found) == 1, found
    return found[0]


def models_with(stack: str, index: int, **fields) -> list[dict]:
    models = stack_value(stack, f"{NS}:models")
    models[index].update(fields)
    return models


# --- good configs ----------------------------------------------------------------

def test_dev_stack_loads():
    s = settings_for("dev")
    assert (s.project, s.stack, s.region) == ("llmserving", "dev", "us-east-1")
    assert s.config.environment == "dev" and s.config.orchestrator == "eks"
    assert [m.name for m in s.config.models] == ["llama-3-1-8b", "mistral-7b"]
    assert s.config.models[0].batching.max_num_seqs == 128
    assert s.config.gpu_pools[0].capacity_type == "spot-with-on-demand-fallback"
    assert s.config.network.zone_count == 2
    assert s.secrets_set == {"vllmApiKey", "hfToken"}


def test_prod_stack_loads():
    s = settings_for("prod")
    assert s.config.environment == "prod"
    assert s.config.network.zone_count == 3 and s.config.network.nat_gateways == "per-zone"
    assert s.config.models[0].tensor_parallel == 8 and s.config.models[0].precision == "fp8"
    assert s.config.lora.enabled and s.config.lora.base_model == "llama-3-1-8b"
    assert [t.id for t in s.config.lora.tenants] == ["acme", "globex"]
    assert s.config.lora.max_lora_rank == 64
    assert s.config.tags == {"cost-center": "ml-platform"}


def test_scalars_arrive_as_engine_text():
    # The CLI hands every config value to the program as text.
    s = settings_for("dev", {f"{NS}:kubernetesVersion": "1.32"})
    assert s.config.kubernetes_version == "1.32"


# --- unknown keys -------------------------------------------------------------------

def test_misspelled_top_level_key_is_unknown_with_suggestion():
    p = only_problem("dev", {f"{NS}:modles": [{"name": "x"}]})
    assert p.startswith("llmserving:modles: unknown key 'modles'")
    assert "did you mean 'models'?" in p
    assert "allowed keys:" in p and "gpuPools" in p and "models" in p


def test_misspelled_nested_key_names_full_path():
    p = only_problem("dev", {f"{NS}:models": models_with("dev", 0, tensorParalel=2)})
    assert p.startswith("llmserving:models[0].tensorParalel: unknown key 'tensorParalel'")
    assert "did you mean 'tensorParallel'?" in p
    assert "pipelineParallel" in p  # lists the allowed keys of a model


def test_misspelled_key_inside_nested_section():
    p = only_problem("dev", {f"{NS}:network": {"vpcCidr": "10.40.0.0/16", "zoneCount": 2, "natGateway": "single"}})
    assert p.startswith("llmserving:network.natGateway: unknown key 'natGateway'")
    assert "did you mean 'natGateways'?" in p


# --- out-of-range values and enums --------------------------------------------------

@pytest.mark.parametrize("section,field,value,allowed", [
    ("network", "zoneCount", 9, "less than or equal to 6"),
    ("network", "zoneCount", 1, "greater than or equal to 2"),
])
def test_zone_count_out_of_range(section, field, value, allowed):
    net = stack_value("dev", f"{NS}:network")
    net[field] = value
    p = only_problem("dev", {f"{NS}:{section}": net})
    assert p.startswith(f"llmserving:network.zoneCount: got {value};")
    assert allowed in p


def test_max_lora_rank_not_a_vllm_rank():
    lora = stack_value("prod", f"{NS}:lora")
    lora["maxLoraRank"] = 12
    p = only_problem("prod", {f"{NS}:lora": lora})
    assert p.startswith("llmserving:lora.maxLoraRank: got 12;")
    assert "1, 8, 16, 32, 64, 128, 256, 320, 512" in p


def test_tensor_parallel_not_a_power_of_two():
    p = only_problem("dev", {f"{NS}:models": models_with("dev", 0, tensorParallel=3)})
    assert p.startswith("llmserving:models[0].tensorParallel: got 3;")
    assert "must be one of 1, 2, 4, 8" in p


def test_gpu_memory_utilization_above_one():
    p = only_problem("dev", {f"{NS}:models": models_with("dev", 1, gpuMemoryUtilization=1.5)})
    assert p.startswith("llmserving:models[1].gpuMemoryUtilization: got 1.5;")
    assert "less than or equal to 0.98" in p


def test_wrong_orchestrator():
    p = only_problem("dev", {f"{NS}:orchestrator": "k8s"})
    assert p.startswith("llmserving:orchestrator: got 'k8s';")
    assert "'eks' or 'ecs'" in p


def test_wrong_precision_lists_allowed():
    p = only_problem("dev", {f"{NS}:models": models_with("dev", 0, precision="float8")})
    assert p.startswith("llmserving:models[0].precision: got 'float8';")
    for allowed in ("'fp16'", "'bf16'", "'fp8'", "'awq'", "'gptq'", "'int8'"):
        assert allowed in p


def test_min_replicas_above_max_replicas():
    p = only_problem("dev", {f"{NS}:models": models_with("dev", 0, minReplicas=9, maxReplicas=3)})
    # Both keys named in full, the value shown, never the model's whole section.
    assert p == "llmserving:models[0].minReplicas: got 9; must be at most llmserving:models[0].maxReplicas (3)"


def test_traffic_shares_must_add_up_to_one():
    models = stack_value("dev", f"{NS}:models")
    models[0]["trafficShare"] = 0.5
    models[1]["trafficShare"] = 0.3
    p = only_problem("dev", {f"{NS}:models": models})
    assert p == ("llmserving:models[*].trafficShare: add up to 0.8 (llmserving:models[0].trafficShare 0.5 + "
                 "llmserving:models[1].trafficShare 0.3); they must add up to 1")


def test_traffic_share_on_some_models_only():
    models = stack_value("dev", f"{NS}:models")
    del models[1]["trafficShare"]
    p = only_problem("dev", {f"{NS}:models": models})
    assert p.startswith("llmserving:models[1].trafficShare: required key is missing; set trafficShare on every "
                        "model or on none")


# --- cross-field checks ---------------------------------------------------------------

def test_model_pool_unknown():
    p = only_problem("dev", {f"{NS}:models": models_with("dev", 1, pool="g5-spt")})
    assert p == "llmserving:models[1].pool: got 'g5-spt'; must name a pool in gpuPools (g5-spot)"


def test_unknown_instance_type_suggests_nearest():
    pools = stack_value("dev", f"{NS}:gpuPools")
    pools[0]["instanceTypes"] = ["g5.2xlarge", "g5.2xlarg"]
    p = only_problem("dev", {f"{NS}:gpuPools": pools})
    assert p.startswith("llmserving:gpuPools[0].instanceTypes[1]: got 'g5.2xlarg'; unknown GPU instance type")
    assert "did you mean 'g5.2xlarge'?" in p
    assert "allowed: " in p and "p5.48xlarge" in p
    assert "llmserving:catalog.instanceTypes" in p


def test_instance_family_not_allowed():
    pools = stack_value("dev", f"{NS}:gpuPools")
    pools[0]["instanceTypes"] = ["g5.2xlarge", "p5.48xlarge"]
    p = only_problem("dev", {f"{NS}:gpuPools": pools})
    assert p == ("llmserving:gpuPools[0].instanceTypes[1]: got 'p5.48xlarge'; family 'p5' is not in "
                 "gpuLimits.allowedFamilies (g5, g6, g6e)")


def test_prod_needs_three_zones():
    net = stack_value("prod", f"{NS}:network")
    net["zoneCount"] = 2
    p = only_problem("prod", {f"{NS}:network": net})
    assert p == "llmserving:network.zoneCount: got 2; prod needs at least 3 zones"


def test_prod_needs_vllm_api_key():
    p = only_problem("prod", remove=(f"{NS}:vllmApiKey",))
    assert p.startswith("llmserving:vllmApiKey: required key is missing; prod serving must require an API key")
    assert "pulumi config set --secret vllmApiKey" in p


def test_dev_without_api_key_is_allowed():
    s = settings_for("dev", remove=(f"{NS}:vllmApiKey",))
    assert "vllmApiKey" not in s.secrets_set


def test_secret_in_plain_text_is_rejected():
    _, secrets = stack_config("dev")
    # hfToken set in plain text: not among the secret keys
    p = only_problem("dev", {f"{NS}:hfToken": "hf_plaintext"},
                     secret_keys={k for k in secrets if k != f"{NS}:hfToken"})
    assert p.startswith("llmserving:hfToken: must be a secret;")
    assert "pulumi config set --secret hfToken <value>" in p
    # the plain-text value itself is never echoed back
    assert "hf_plaintext" not in p


def test_missing_region():
    p = only_problem("dev", remove=("aws:region",))
    assert p.startswith("aws:region: required key is missing")
    assert "pulumi config set aws:region us-east-1" in p


def test_bad_region():
    p = only_problem("dev", {"aws:region": "us-east"})
    assert p == "aws:region: got 'us-east'; must be an AWS region such as us-east-1"


def test_unsafe_tenant_id():
    lora = stack_value("prod", f"{NS}:lora")
    lora["tenants"][0]["id"] = "../acme"
    p = only_problem("prod", {f"{NS}:lora": lora})
    assert p.startswith("llmserving:lora.tenants[0].id: got '../acme';")
    assert "must be a safe S3 prefix" in p


def test_duplicated_tenant_ids():
    lora = stack_value("prod", f"{NS}:lora")
    lora["tenants"][1]["id"] = "acme"
    p = only_problem("prod", {f"{NS}:lora": lora})
    assert p == ("llmserving:lora.tenants[1].id: got 'acme'; repeats llmserving:lora.tenants[0].id; "
                 "tenant ids must be unique")


def test_lora_base_model_unknown():
    lora = stack_value("prod", f"{NS}:lora")
    lora["baseModel"] = "llama-3-1-8"
    p = only_problem("prod", {f"{NS}:lora": lora})
    assert p == "llmserving:lora.baseModel: got 'llama-3-1-8'; must name a model in models (llama-3-1-70b, llama-3-1-8b)"


# --- catalog overrides ----------------------------------------------------------------------

def test_catalog_price_override_applies():
    s = settings_for("dev", {f"{NS}:catalog": {"instanceTypes": {"g5.2xlarge": {"onDemandUsdPerHour": 1.5}}}})
    row = s.catalog.instance_types["g5.2xlarge"]
    assert row.on_demand_usd_per_hour == 1.5
    assert row.gpu == "A10G" and row.gpu_count == 1  # the rest of the row is kept
    assert row.source.startswith("stack override (instanceTypes.g5.2xlarge) of: AWS EC2 on-demand pricing")
    # other rows untouched
    assert s.catalog.instance_types["g5.4xlarge"].on_demand_usd_per_hour == 1.624


def test_catalog_override_unknown_field_is_named():
    p = only_problem("dev", {f"{NS}:catalog": {"instanceTypes": {"g5.2xlarge": {"onDemandPrice": 1.5}}}})
    assert p.startswith("llmserving:catalog.instanceTypes['g5.2xlarge'].onDemandPrice: unknown key 'onDemandPrice'")
    assert "did you mean 'onDemandUsdPerHour'?" in p
    assert "allowed keys: asOf, efa, family, gpu, gpuCount" in p  # the fields of an instance-type row


def test_catalog_override_bad_value_is_named():
    p = only_problem("dev", {f"{NS}:catalog": {"instanceTypes": {"g5.2xlarge": {"spotDiscount": 1.2}}}})
    assert p == "llmserving:catalog.instanceTypes['g5.2xlarge'].spotDiscount: got 1.2; Input should be less than 1"


def test_catalog_override_of_model_row_lists_model_fields():
    p = only_problem("dev", {f"{NS}:catalog": {"models": {"meta-llama/Llama-3.1-8B-Instruct": {"layer": 30}}}})
    assert p.startswith("llmserving:catalog.models['meta-llama/Llama-3.1-8B-Instruct'].layer: unknown key 'layer'")
    assert "did you mean 'layers'?" in p and "kvHeads" in p and "gpuCount" not in p


def test_catalog_new_row_missing_fields_are_each_named():
    found = problems_of("dev", {f"{NS}:catalog": {"instanceTypes": {"g7.xlarge": {"gpu": "A10G", "gpuCount": 1}}}})
    missing = sorted(p.split(": ")[0].rsplit(".", 1)[1] for p in found)
    assert missing == ["asOf", "efa", "family", "memoryGib", "onDemandUsdPerHour", "spotDiscount", "vcpus"], found
    assert all(p.endswith("required key is missing") for p in found)


def test_catalog_instance_row_with_unknown_gpu():
    row = {"family": "p6", "gpu": "B200", "gpuCount": 8, "vcpus": 192, "memoryGib": 2048, "efa": True,
           "onDemandUsdPerHour": 100.0, "spotDiscount": 0.5, "source": "test", "asOf": "2025-10"}
    p = only_problem("dev", {f"{NS}:catalog": {"instanceTypes": {"p6-b200.48xlarge": row}}})
    assert p.startswith("llmserving:catalog.instanceTypes['p6-b200.48xlarge'].gpu: got 'B200'; must name a GPU")
    assert "A100-40GB" in p and "llmserving:catalog.gpus" in p


def test_catalog_new_instance_row_with_its_gpu_loads():
    row = {"family": "p6", "gpu": "B200", "gpuCount": 8, "vcpus": 192, "memoryGib": 2048, "efa": True,
           "onDemandUsdPerHour": 100.0, "spotDiscount": 0.5, "source": "test", "asOf": "2025-10"}
    gpu = {"memoryGb": 180, "memoryBandwidthGbs": 8000, "computeCapability": 10.0, "source": "test", "asOf": "2025-10"}
    s = settings_for("dev", {f"{NS}:catalog": {"instanceTypes": {"p6-b200.48xlarge": row}, "gpus": {"B200": gpu}}})
    assert s.catalog.instance_types["p6-b200.48xlarge"].name == "p6-b200.48xlarge"
    assert s.catalog.gpus["B200"].memory_gb == 180


def test_catalog_unknown_table_is_named():
    p = only_problem("dev", {f"{NS}:catalog": {"instanceTipes": {}}})
    assert p.startswith("llmserving:catalog.instanceTipes: unknown key 'instanceTipes'")
    assert "did you mean 'instanceTypes'?" in p


# --- many problems at once ------------------------------------------------------------------

def test_every_problem_is_reported_at_once():
    net = stack_value("dev", f"{NS}:network")
    net["zoneCount"] = 9
    models = models_with("dev", 0, tensorParallel=3, precision="float8")
    found = problems_of("dev", {f"{NS}:network": net, f"{NS}:models": models, f"{NS}:orchestrator": "k8s",
                                f"{NS}:modles": []})
    keys = sorted(p.split(": ", 1)[0] for p in found)
    assert keys == sorted([
        "llmserving:network.zoneCount", "llmserving:models[0].tensorParallel", "llmserving:models[0].precision",
        "llmserving:orchestrator", "llmserving:modles"]), found


def test_cross_checks_are_reported_together():
    models = models_with("dev", 1, pool="nope")
    models[0]["trafficShare"] = 0.2
    pools = stack_value("dev", f"{NS}:gpuPools")
    pools[0]["instanceTypes"] = ["g5.2xlarge", "p4d.24xlarge"]
    found = problems_of("dev", {f"{NS}:models": models, f"{NS}:gpuPools": pools})
    assert len(found) == 3, found
    assert any(p.startswith("llmserving:models[1].pool: got 'nope'") for p in found)
    assert any(p.startswith("llmserving:models[*].trafficShare: add up to 0.7") for p in found)
    assert any(p.startswith("llmserving:gpuPools[0].instanceTypes[1]: got 'p4d.24xlarge'; family 'p4d'") for p in found)
