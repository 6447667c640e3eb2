"""Whole-stack runs of the shipped stacks under mocks."""

import pytest

from tests.harness import of_type, shipped_run


def test_dev_stack_builds_network_and_exports_plan():
    run = shipped_run("dev")
    assert len(of_type(run, "aws:ec2/vpc:Vpc")) == 1
    assert run.outputs["capacity"]["required_tokens_per_second"] == 2400
    assert run.outputs["cost"]["hourly_usd"] > 0


def test_prod_stack_spans_three_zones_with_nat_per_zone():
    run = shipped_run("prod")
    assert len(of_type(run, "aws:ec2/natGateway:NatGateway")) == 3
    assert len(run.outputs["zones"]) == 3


def test_large_tier_cluster_stack_takes_a_third_of_the_users():
    """The large tier is one stack per cluster; three of these serve the seed's 40,000 users."""
    from infra import capacity
    from tests.harness import settings_for

    s = settings_for("large-use1-a")
    assert 3 * s.config.scale.users >= s.catalog.tiers["large"].value == 40_000
    plan = capacity.plan(s)
    assert 3 * plan.required_tokens_per_second == pytest.approx(240_000, rel=0.001)
    assert {p.pool: p.nodes for p in plan.pools} == {"p5-ondemand": 5, "g5-lora": 33}
    assert plan.max_hourly_usd <= s.config.budget.hourly_usd
    run = shipped_run("large-use1-a")
    assert len(run.outputs["zones"]) == 3
    groups = [r for r in of_type(run, "aws:eks/nodeGroup:NodeGroup") if "p5" in r.name]
    assert len(groups) == 1
