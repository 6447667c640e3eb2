"""Issue 10 item 17 (a, b): config accepts only what CloudWatch Logs and one ALB can take."""

from __future__ import annotations

import re

import botocore.session
import pytest

from components.errors import ArgsError
from components.load_balancer import validate_load_balancer_args
from infra import edge_catalog as ec
from tests.harness import stack_value
from tests.test_config import NS, only_problem
from tests.test_load_balancer import _args as lb_args


def _botocore_retention_days() -> tuple[int, ...]:
    # botocore's logs model has no enum for retentionInDays (a plain integer); the accepted values
    # are the ones its documentation lists ("Possible values are: 1, 3, ...").
    model = botocore.session.get_session().get_service_model("logs")
    doc = model.operation_model("PutRetentionPolicy").input_shape.members["retentionInDays"].documentation
    listed = re.search(r"Possible values are: ([0-9, and]+)\.", doc)
    assert listed, doc
    return tuple(int(x) for x in re.findall(r"\d+", listed.group(1)))


def test_retention_catalog_matches_the_botocore_logs_model():
    assert ec.CLOUDWATCH_RETENTION_DAYS.value == _botocore_retention_days()


def test_components_use_the_same_retention_values():
    from components.load_balancer import CLOUDWATCH_RETENTION_DAYS

    assert CLOUDWATCH_RETENTION_DAYS == _botocore_retention_days()


@pytest.mark.parametrize("days", [45, 10, 0, 4000])
def test_log_retention_outside_cloudwatch_values_is_a_config_error(days):
    obs = {**stack_value("dev", f"{NS}:observability"), "logRetentionDays": days}
    problem = only_problem("dev", {f"{NS}:observability": obs})
    assert problem.startswith(f"{NS}:observability.logRetentionDays: got {days}; ")
    assert "1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653" \
        in problem


@pytest.mark.parametrize("days", _botocore_retention_days())
def test_every_cloudwatch_retention_value_loads(days):
    from tests.harness import settings_for

    obs = {**stack_value("dev", f"{NS}:observability"), "logRetentionDays": days}
    assert settings_for("dev", {f"{NS}:observability": obs}).config.observability.log_retention_days == days


def _models(n: int) -> list[dict]:
    base = stack_value("dev", f"{NS}:models")[0]
    base.pop("trafficShare", None)
    return [{**base, "name": f"m{i}"} for i in range(n)]


def test_more_models_than_one_alb_can_route_is_a_config_error():
    # AWS ELB docs, "Quotas for your Application Load Balancers": 100 target groups per ALB (not
    # adjustable) and 100 rules per ALB not counting default rules. 100 models need 101 rules
    # (with the adapter-API deny rule) and, on EKS, 101 target groups (with the router).
    problem = only_problem("dev", {f"{NS}:models": _models(100)})
    assert problem.startswith(f"{NS}:models: got ")
    assert "100 models; one load balancer serves at most 99" in problem


def test_load_balancer_refuses_more_rules_or_target_groups_than_an_alb_has():
    models = tuple(f"m{i}" for i in range(100))
    with pytest.raises(ArgsError) as e:
        validate_load_balancer_args(lb_args(models=models, default_target="router"))
    assert "models: got 100; they need 101 listener rules (one per model and 1 deny rule) and an ALB allows 100 " \
           "(not counting default rules)" in e.value.problems
    assert "models: got 100; they need 101 target groups (with the default target) and an ALB allows 100" \
        in e.value.problems
    validate_load_balancer_args(lb_args(models=models[:99], default_target="router"))  # 100 rules, 100 groups


def test_fixed_response_body_over_1024_characters_is_refused():
    # botocore elbv2 model: FixedResponseActionConfig.MessageBody (FixedResponseActionMessage) max 1024.
    limit = botocore.session.get_session().get_service_model("elbv2").shape_for("FixedResponseActionMessage")
    assert limit.metadata["max"] == 1024
    models = tuple(f"model-with-a-rather-long-name-{i:03d}" for i in range(40))
    with pytest.raises(ArgsError) as e:
        validate_load_balancer_args(lb_args(models=models))
    assert any("the 404 response listing 40 model names takes" in p and "allows 1024" in p for p in e.value.problems)
    # With a default target (the EKS router) there is no fixed response to size.
    validate_load_balancer_args(lb_args(models=models, default_target="router"))
