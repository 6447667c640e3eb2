"""The shipped policy configs: generated from the stack files and infra/catalog.py, valid for the pack's
schema, mandatory for GPU/cost/security in prod; unknown values and absent resource kinds never block."""

from __future__ import annotations


import pytest

from infra import policy_config
from infra.analyzer import PolicyConfigError
from infra.catalog import INSTANCE_TYPES
from infra.mockcloud import UNKNOWN
from tests.policy_fixtures import PACK, PackClient, good_world, mutate, shipped_config


@pytest.fixture(scope="module")
def pack():
    client = PackClient()
    yield client
    client.close()


@pytest.mark.parametrize("stack", policy_config.shipped_stacks())
def test_shipped_config_is_what_the_generator_writes(stack):
    assert (PACK / "config" / f"{stack}.json").read_text() == policy_config.render(stack)
    assert policy_config.main(["--check"]) == 0


def test_prices_come_from_the_catalog():
    table = shipped_config("prod")["cost-max-hourly-within-budget"]["instanceTypes"]
    assert table["p5.48xlarge"] == {"gpus": 8, "gpuMemoryGb": 80.0, "onDemandUsdPerHour": INSTANCE_TYPES["p5.48xlarge"].on_demand_usd_per_hour,
                                    "spotDiscount": 0.5}
    assert shipped_config("prod")["cost-max-hourly-within-budget"]["maxHourlyUsd"] == 320


def test_stack_limits_flow_into_the_policy_config():
    dev, prod = shipped_config("dev"), shipped_config("prod")
    assert dev["gpu-max-total"]["maxGpusTotal"] == 16 and prod["gpu-max-total"]["maxGpusTotal"] == 96
    assert dev["cost-spot-required"] == {"requireSpot": True} and prod["cost-spot-required"] == {"requireSpot": False}
    assert prod["all"] == "mandatory" and prod["waf-attached"] == {"required": True}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_shipped_config_matches_the_pack_schema(pack, stack):
    effective = pack.proc.configure(pack.info, shipped_config(stack))
    pack._configured = None
    assert effective["gpu-max-per-pool"]["maxGpusPerPool"] == (16 if stack == "dev" else 64)


def test_a_bad_config_value_is_rejected_like_the_cli_does(pack):
    bad = shipped_config("prod")
    bad["gpu-max-total"]["maxGpusTotal"] = "lots"
    with pytest.raises(PolicyConfigError, match=r"gpu-max-total.maxGpusTotal: 'lots' is not of type 'integer'"):
        pack.proc.configure(pack.info, bad)
    pack._configured = None


def test_absent_resource_kinds_are_not_applicable(pack):
    network_only = [r for r in good_world() if r.type.split(":")[1] in (
        "ec2/vpc", "ec2/subnet", "ec2/flowLog", "ec2/routeTable", "ec2/routeTableAssociation", "ec2/internetGateway")]
    assert pack.judge(network_only, shipped_config("prod")) == []


def test_budget_existence_applies_only_with_gpu_capacity(pack):
    no_gpu = [r for r in good_world() if r.type != "aws:budgets/budget:Budget" and r.name not in
              ("p5-ondemand", "g5-lora", "ecs-gpu")]
    assert [v.policy for v in pack.judge(no_gpu, shipped_config("prod")) if v.policy == "cost-budget-exists"] == []


def test_unknown_values_in_preview_do_not_block_but_are_reported(pack):
    # Unknown in a preview: never a mandatory violation, never a silent pass (tests/test_policies_unknowns.py
    # covers every rule).
    regs = mutate(good_world(), "p5-lt", ("metadataOptions", "httpTokens"), UNKNOWN)
    regs = mutate(regs, "adapters-policy", ("policy",), UNKNOWN)
    regs = mutate(regs, "alb", ("accessLogs",), UNKNOWN)
    got = sorted((v.level, v.policy, v.message) for v in pack.judge(regs, shipped_config("prod")))
    assert got == sorted([
        ("advisory", "launch-template-imdsv2", "could not judge: launch template 'p5-lt': metadataOptions.httpTokens is "
         "unknown in this preview (known only after apply)"),
        ("advisory", "s3-no-wildcard-principal", "could not judge: bucket policy 'adapters-policy': policy is unknown in "
         "this preview (known only after apply)"),
        ("advisory", "s3-tls-only", "could not judge: bucket 'llmserving-prod-adapters': policy of bucket policy "
         "'adapters-policy' is unknown in this preview (known only after apply)"),
        ("advisory", "adapter-store-readers", "could not judge: readers of adapter bucket 'llmserving-prod-adapters' "
         "(bucket policy 'adapters-policy'): policy is unknown in this preview (known only after apply)"),
        ("advisory", "adapter-store-tenant-isolation", "could not judge: tenant isolation of the adapter store (bucket "
         "policy 'adapters-policy'): policy is unknown in this preview (known only after apply)"),
        ("advisory", "alb-access-logs", "could not judge: load balancer 'alb': accessLogs is unknown in this preview "
         "(known only after apply)"),
    ])


def test_unbounded_nodepool_cannot_be_priced(pack):
    regs = mutate(good_world(), "g5-lora", ("spec", "limits"), {"cpu": "1000"})
    got = sorted((v.policy, v.message.split("\n", 1)[1]) for v in pack.judge(regs, shipped_config("prod"))
                 if v.policy.startswith("cost-max"))
    assert got == [("cost-max-hourly-within-budget", "cannot price GPU capacity at max size for Karpenter NodePool 'g5-lora' "
                    "(unbounded or instance type not in the policy's instanceTypes table)")]


def test_secret_inputs_are_read_through(pack):
    # Secrets arrive wrapped; the pack unwraps them before rules look (a secret env value is still plain text).
    from infra.mockcloud import SECRET_SIG, SIG_KEY
    regs = mutate(good_world(), "llama-3-1-8b", ("spec", "template", "spec", "containers", 0, "env"),
                  [{"name": "VLLM_API_KEY", "value": {SIG_KEY: SECRET_SIG, "value": "hunter2"}}])
    got = [v.message.split("\n", 1)[1] for v in pack.judge(regs, shipped_config("prod"), only={"llama-3-1-8b"},
                                                           stack_policies=False) if v.policy == "vllm-api-key-required"]
    assert got == ["Deployment llmserving/llama-3-1-8b container 'vllm' puts the vLLM API key in plain text; "
                   "take VLLM_API_KEY from a secret"]
