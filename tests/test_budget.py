"""Stack budget: thresholds and subscribers from config, filtered to the stack's cost-allocation tag."""

from __future__ import annotations

import sys

import pytest

from components.budget import StackBudget, StackBudgetArgs, validate_stack_budget_args
from components.errors import ArgsError
from infra.config import ConfigError
from tests.aws_models import enum
from tests.harness import inputs, one, run_component, run_stack, shipped_run, settings_for, stack_value

def taggable_types() -> frozenset[str]:
    """The cost policy's list of taggable types, read from the pack (it runs as its own top-level package)."""
    from tests.policy_fixtures import PACK

    if str(PACK) not in sys.path:
        sys.path.insert(0, str(PACK))
    from rules.cost import TAGGABLE_TYPES

    return TAGGABLE_TYPES


TAGS = {"project": "llmserving", "stack": "dev", "environment": "dev", "tier": "small"}


def _args(**over):
    base = dict(budget_name="llmserving-dev", monthly_limit_usd=15000, alert_thresholds_percent=(50, 80, 100),
                notify_emails=("platform-team@example.com",), cost_filter_tag=("stack", "dev"), tags=TAGS)
    base.update(over)
    return StackBudgetArgs(**base)


def test_budget_alerts_at_each_threshold_and_on_forecast():
    run = run_component(lambda: StackBudget("budget", _args()))
    b = inputs(one(run, "aws:budgets/budget:Budget"))
    assert (b["budgetType"], b["timeUnit"], b["limitAmount"], b["limitUnit"]) == ("COST", "MONTHLY", "15000.00", "USD")
    assert b["budgetType"] in enum("budgets", "BudgetType") and b["timeUnit"] in enum("budgets", "TimeUnit")
    assert b["costFilters"] == [{"name": "TagKeyValue", "values": ["user:stack$dev"]}]
    actual = [(n["threshold"], n["subscriberEmailAddresses"]) for n in b["notifications"] if n["notificationType"] == "ACTUAL"]
    assert actual == [(50, ["platform-team@example.com"]), (80, ["platform-team@example.com"]),
                      (100, ["platform-team@example.com"])]
    assert [n["threshold"] for n in b["notifications"] if n["notificationType"] == "FORECASTED"] == [100]
    for n in b["notifications"]:
        assert n["notificationType"] in enum("budgets", "NotificationType")
        assert n["comparisonOperator"] in enum("budgets", "ComparisonOperator")
        assert n["thresholdType"] in enum("budgets", "ThresholdType")
    assert b["tags"] == TAGS


def test_stack_budget_comes_from_config():
    run = shipped_run("prod")
    b = inputs(one(run, "aws:budgets/budget:Budget"))
    assert b["name"] == "llmserving-prod" and b["limitAmount"] == "240000.00"
    assert b["notifications"][0]["subscriberEmailAddresses"] == ["platform-team@example.com", "finops@example.com"]


def test_every_taggable_resource_of_an_ecs_stack_carries_cost_tags():
    run = run_stack("prod", {"llmserving:orchestrator": "ecs", "llmserving:gpuPools": [
        {**p, "provisioner": "auto-scaling-group"} for p in stack_value("prod", "llmserving:gpuPools")]})
    checked = 0
    for r in run.registrations:
        tags = inputs(r).get("tags")
        if r.type == "aws:autoscaling/group:Group":
            tags = {t["key"]: t["value"] for t in tags}
        if r.type in taggable_types() or isinstance(tags, dict):
            assert tags and all(tags.get(k) for k in ("project", "stack", "environment", "tier")), r.name
            checked += 1
        if r.type in ("aws:ecs/service:Service", "aws:ecs/taskDefinition:TaskDefinition", "aws:lb/targetGroup:TargetGroup"):
            assert tags["model"] in ("llama-3-1-70b", "llama-3-1-8b"), r.name
    assert checked > 40


def test_too_many_notifications_and_missing_subscribers_are_rejected():
    with pytest.raises(ArgsError) as e:
        validate_stack_budget_args(_args(alert_thresholds_percent=(10, 20, 30, 40, 50), notify_emails=()))
    assert e.value.problems == [
        "alert_thresholds_percent: got 5 thresholds plus the forecast alert; AWS Budgets allows 5 notifications per budget",
        "notify_emails: got none; alerts need at least one address"]


def test_budget_without_addresses_is_a_config_error():
    budget = stack_value("dev", "llmserving:budget")
    budget["notifyEmails"] = []
    with pytest.raises(ConfigError) as e:
        settings_for("dev", {"llmserving:budget": budget})
    assert ("llmserving:budget.notifyEmails: got []; budget alerts (llmserving:budget.alertThresholdsPercent) need "
            "at least one address") in str(e.value)
