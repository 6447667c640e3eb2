"""ALB: TLS, redirect, per-model target groups and header routing, logs, WAF; EKS TargetGroupBindings."""

from __future__ import annotations

import json

import pulumi_kubernetes as k8s
import pytest

from components.alb_bindings import AlbBindings, AlbBindingsArgs, ServiceTarget, target_group_binding
from components.errors import ArgsError
from components.load_balancer import (LoadBalancerArgs, ModelLoadBalancer, ROUTING_HEADER, aws_name,
                                      validate_load_balancer_args)
from infra.config import ConfigError
from infra import upstream
from tests.aws_models import enum
from tests.harness import inputs, of_type, one, run_component, shipped_run, settings_for
from tests.k8s_validation import validate_object

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/8f2c6e1a-4b7d-4e0f-9a3c-5d1e7b9f2a64"
TAGS = {"project": "llmserving", "stack": "test", "environment": "prod", "tier": "medium"}


def _args(**over) -> LoadBalancerArgs:
    base = dict(name_prefix="llmserving-test", region="us-east-1", vpc_id="vpc-1", vpc_cidr="10.0.0.0/16",
                public_subnet_ids=["subnet-a", "subnet-b", "subnet-c"], models=("llama-3-1-70b", "llama-3-1-8b"),
                certificate_arn=CERT, require_tls=True, deletion_protection=True, waf_rate_limit_per_5_min=2000,
                access_log_bucket="logs-bucket", tags=TAGS)
    base.update(over)
    return LoadBalancerArgs(**base)


@pytest.fixture(scope="module")
def run():
    return run_component(lambda: ModelLoadBalancer("edge", _args()))


def test_alb_is_public_hardened_and_logged(run):
    lb = inputs(one(run, "aws:lb/loadBalancer:LoadBalancer"))
    assert lb["loadBalancerType"] == "application" and lb["internal"] is False
    assert lb["subnets"] == ["subnet-a", "subnet-b", "subnet-c"]
    assert lb["dropInvalidHeaderFields"] is True
    assert lb["enableDeletionProtection"] is True
    assert lb["accessLogs"] == {"bucket": "logs-bucket", "prefix": "alb", "enabled": True}
    assert lb["name"] == "llmserving-test" and lb["tags"] == TAGS
    assert lb["loadBalancerType"] in enum("elbv2", "LoadBalancerTypeEnum")


def test_https_listener_with_tls12_policy_and_http_redirect(run):
    listeners = {inputs(r)["port"]: inputs(r) for r in of_type(run, "aws:lb/listener:Listener")}
    https, http = listeners[443], listeners[80]
    assert https["protocol"] == "HTTPS" and https["certificateArn"] == CERT
    assert https["sslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["defaultActions"][0]["type"] == "fixed-response"
    assert https["defaultActions"][0]["fixedResponse"]["statusCode"] == "404"
    assert http["protocol"] == "HTTP"
    assert http["defaultActions"] == [{"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS",
                                                                         "statusCode": "HTTP_301"}}]
    for listener in (https, http):
        assert listener["protocol"] in enum("elbv2", "ProtocolEnum")
        assert {a["type"] for a in listener["defaultActions"]} <= enum("elbv2", "ActionTypeEnum")
    assert http["defaultActions"][0]["redirect"]["statusCode"] in enum("elbv2", "RedirectActionStatusCodeEnum")


def test_one_target_group_per_model_with_health_checks(run):
    tgs = {inputs(r)["tags"]["model"]: inputs(r) for r in of_type(run, "aws:lb/targetGroup:TargetGroup")}
    assert set(tgs) == {"llama-3-1-70b", "llama-3-1-8b"}
    for model, tg in tgs.items():
        assert tg["targetType"] == "ip" and tg["targetType"] in enum("elbv2", "TargetTypeEnum")
        assert tg["protocol"] == "HTTP" and tg["port"] == 8000
        assert tg["healthCheck"]["path"] == "/health" and tg["healthCheck"]["matcher"] == "200"
        assert tg["name"] == f"llmserving-test-{model}" and len(tg["name"]) <= 32
        assert tg["loadBalancingAlgorithmType"] == "least_outstanding_requests"


def test_rules_route_by_model_header(run):
    tg_by_model = {inputs(r)["tags"]["model"]: r for r in of_type(run, "aws:lb/targetGroup:TargetGroup")}
    rules = sorted((inputs(r) for r in of_type(run, "aws:lb/listenerRule:ListenerRule")), key=lambda r: r["priority"])
    assert [r["priority"] for r in rules] == [1, 2, 3]
    for rule, model in zip(rules[1:], ("llama-3-1-70b", "llama-3-1-8b")):
        assert rule["conditions"] == [{"httpHeader": {"httpHeaderName": ROUTING_HEADER, "values": [model]}}]
        assert rule["actions"][0]["type"] == "forward"
        assert f":targetgroup/{inputs(tg_by_model[model])['name']}/" in rule["actions"][0]["targetGroupArn"]


def test_adapter_management_endpoints_are_refused_before_any_model_rule(run):
    rule = min((inputs(r) for r in of_type(run, "aws:lb/listenerRule:ListenerRule")), key=lambda r: r["priority"])
    assert rule["priority"] == 1
    assert rule["conditions"] == [{"pathPattern": {"values": ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]}}]
    action = rule["actions"][0]
    assert action["type"] == "fixed-response" and action["fixedResponse"]["statusCode"] == "403"


def test_waf_rate_limits_each_client_and_is_attached(run):
    acl = inputs(one(run, "aws:wafv2/webAcl:WebAcl"))
    assert acl["scope"] == "REGIONAL" and acl["scope"] in enum("wafv2", "Scope")
    rate = next(r for r in acl["rules"] if "rateBasedStatement" in r["statement"])
    assert rate["statement"]["rateBasedStatement"]["limit"] == 2000
    assert rate["statement"]["rateBasedStatement"]["aggregateKeyType"] == "IP"
    assert rate["statement"]["rateBasedStatement"]["aggregateKeyType"] in enum("wafv2", "RateBasedStatementAggregateKeyType")
    assert rate["action"] == {"block": {}}
    assoc = inputs(one(run, "aws:wafv2/webAclAssociation:WebAclAssociation"))
    assert assoc["resourceArn"].startswith("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/") and assoc["webAclArn"].startswith("arn:aws:wafv2:")


def test_security_group_opens_only_web_ports(run):
    sg = inputs(one(run, "aws:ec2/securityGroup:SecurityGroup"))
    assert sorted(r["fromPort"] for r in sg["ingress"]) == [80, 443]
    assert sg["egress"] == [{"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "cidrBlocks": ["10.0.0.0/16"],
                             "description": "vLLM servers"}]


def test_without_tls_requirement_a_dev_alb_may_serve_http_only():
    run = run_component(lambda: ModelLoadBalancer("edge", _args(certificate_arn=None, require_tls=False,
                                                                deletion_protection=False)))
    listener = inputs(one(run, "aws:lb/listener:Listener"))
    assert listener["port"] == 80 and listener["defaultActions"][0]["type"] == "fixed-response"
    assert inputs(one(run, "aws:lb/loadBalancer:LoadBalancer"))["enableDeletionProtection"] is False


def test_alb_without_certificate_where_tls_is_required_is_rejected():
    with pytest.raises(ArgsError) as e:
        validate_load_balancer_args(_args(certificate_arn=None))
    assert e.value.problems == [
        "certificate_arn: got None; this load balancer must serve HTTPS (require_tls), so give an ACM certificate "
        "ARN such as arn:aws:acm:<region>:<account>:certificate/<uuid>"]


def test_prod_stack_without_certificate_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        settings_for("prod", remove=("llmserving:ingress",))
    assert ("llmserving:ingress.certificateArn: required key is missing; prod serves HTTPS only "
            "(an ACM certificate ARN in us-east-1)") in str(e.value)


def test_certificate_from_another_region_and_weak_tls_policy_are_rejected():
    other = CERT.replace("us-east-1", "eu-west-1")
    with pytest.raises(ArgsError) as e:
        validate_load_balancer_args(_args(certificate_arn=other, tls_policy="ELBSecurityPolicy-2016-08",
                                          waf_rate_limit_per_5_min=5))
    assert e.value.problems[0] == f"certificate_arn: got {other!r}; the certificate must be in us-east-1"
    assert e.value.problems[1].startswith("tls_policy: got 'ELBSecurityPolicy-2016-08'; allowed (TLS 1.2+): ")
    assert e.value.problems[2] == "waf_rate_limit_per_5_min: got 5; AWS WAF allows 10-2000000000"
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:ingress": {"certificateArn": other}})
    assert f"llmserving:ingress.certificateArn: got {other!r}; an ALB needs a certificate from its own region us-east-1" in str(e.value)


def test_long_names_are_shortened_deterministically():
    name = aws_name("llmserving-production-eu", "meta-llama-3-1-405b-instruct-fp8")
    assert len(name) <= 32 and name == aws_name("llmserving-production-eu", "meta-llama-3-1-405b-instruct-fp8")
    assert name != aws_name("llmserving-production-eu", "meta-llama-3-1-405b-instruct-bf16")
    assert aws_name("short", "name") == "short-name"


def test_prod_stack_builds_the_edge_with_deletion_protection():
    run = shipped_run("prod")
    lb = inputs(one(run, "aws:lb/loadBalancer:LoadBalancer"))
    assert lb["enableDeletionProtection"] is True
    assert lb["accessLogs"]["bucket"] == "llmserving-prod-logs-123456789012-us-east-1"
    # One target group per model, plus the model-aware router's (EKS: requests without the header).
    names = sorted(inputs(r)["name"] for r in of_type(run, "aws:lb/targetGroup:TargetGroup"))
    assert names == ["llmserving-prod-llama-3-1-70b", "llmserving-prod-llama-3-1-8b", "llmserving-prod-router"]
    https = next(inputs(r) for r in of_type(run, "aws:lb/listener:Listener") if inputs(r)["port"] == 443)
    assert https["defaultActions"][0]["type"] == "forward"
    bindings = {inputs(r)["spec"]["serviceRef"]["name"]: inputs(r)["spec"]
                for r in of_type(run, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")}
    # Traffic Services are <model>-http (not the model name: see components/vllm_workload.py).
    assert sorted(bindings) == ["llama-3-1-70b-http", "llama-3-1-8b-http", "llm-router"]
    assert run.outputs["endpoint"].endswith(".us-east-1.elb.amazonaws.com")


def test_without_a_default_target_unknown_models_get_a_json_404():
    run = run_component(lambda: ModelLoadBalancer("lb", _args()))
    listener = next(inputs(r) for r in of_type(run, "aws:lb/listener:Listener") if inputs(r)["port"] == 443)
    action = listener["defaultActions"][0]
    assert action["type"] == "fixed-response" and action["fixedResponse"]["statusCode"] == "404"


def test_default_target_must_not_shadow_a_model():
    with pytest.raises(ArgsError) as e:
        validate_load_balancer_args(_args(default_target="llama-3-1-8b"))
    assert "default_target: got 'llama-3-1-8b'; must be a DNS label that is not a model name" in str(e.value)


# --- EKS: AWS Load Balancer Controller + TargetGroupBinding ---------------------------------------

def _bindings():
    provider = k8s.Provider("test-cluster", kubeconfig="{}")
    return AlbBindings("alb", AlbBindingsArgs(
        cluster_name="llmserving-test", vpc_id="vpc-1", region="us-east-1", account_id="123456789012",
        k8s_provider=provider, namespace="llmserving",
        targets={"llama-3-1-8b": ServiceTarget(target_group_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                                                                 "targetgroup/llmserving-test-llama-3-1-8b/0123456789abcdef",
                                               service_name="llama-3-1-8b")},
        alb_security_group_id="sg-0123456789abcdef0", controller_policy=upstream.alb_controller_policy(), tags=TAGS))


def test_target_group_binding_is_valid_against_the_upstream_crd():
    run = run_component(_bindings)
    tgb = one(run, "kubernetes:elbv2.k8s.aws/v1beta1:TargetGroupBinding")
    obj = inputs(tgb)
    validate_object(obj)
    assert obj["spec"]["targetType"] == "ip" and obj["spec"]["serviceRef"] == {"name": "llama-3-1-8b", "port": 8000}
    assert obj["metadata"]["namespace"] == "llmserving"
    assert "pulumi:providers:kubernetes::test-cluster::" in tgb.provider
    release = inputs(one(run, "kubernetes:helm.sh/v3:Release"))
    assert release["chart"] == "aws-load-balancer-controller" and release["version"] == "3.5.0"
    assert release["repositoryOpts"] == {"repo": "https://aws.github.io/eks-charts"}
    identity = inputs(one(run, "aws:eks/podIdentityAssociation:PodIdentityAssociation"))
    assert identity["serviceAccount"] == "aws-load-balancer-controller" and identity["namespace"] == "kube-system"
    policy = json.loads(inputs(one(run, "aws:iam/rolePolicy:RolePolicy"))["policy"])
    assert policy == upstream.alb_controller_policy()  # v3.5.0's iam_policy.json, unchanged


def test_invalid_target_group_binding_fails_the_schema():
    bad = target_group_binding("m", "llmserving", ServiceTarget("arn", "svc"), "arn", "sg-1")
    bad["spec"]["targetType"] = "pod"
    with pytest.raises(Exception) as e:
        validate_object(bad)
    assert "'pod' is not one of ['instance', 'ip']" in str(e.value)


def test_bindings_need_a_kubernetes_provider():
    with pytest.raises(ArgsError) as e:
        AlbBindings("alb", AlbBindingsArgs(
            cluster_name="c", vpc_id="vpc-1", region="us-east-1", account_id="123456789012", k8s_provider=None,
            namespace="llmserving", targets={"m": ServiceTarget("arn", "svc")}, alb_security_group_id="sg-1",
            chart_version="latest"))
    assert e.value.problems == [
        "k8s_provider: got NoneType; pass the EKS cluster's kubernetes.Provider",
        "chart_version: got 'latest'; pin an exact chart version such as 3.5.0",
        "controller_policy: got none; pass upstream's iam_policy.json of the chart's release (infra/upstream)"]
