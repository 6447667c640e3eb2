"""Whole-stack runs of the shipped stacks under mocks."""

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
