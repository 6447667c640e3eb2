"""Default security group and WAF logging (issue 10 item 16) as deploy-readiness checks on the recordings:
each fix taken out of the recorded prod stack makes the named check fail with the exact finding."""

from __future__ import annotations

from infra import readiness as R
from tests.test_readiness_stacks import recorded

DSG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
WAF_LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"


def posture(res: list[dict]) -> list[R.Finding]:
    return [f for f in R.check(res) if f.check in ("default-sg-open", "waf-logging")]


def test_shipped_stacks_manage_the_default_group_and_log_waf():
    for what in ("dev", "prod", "large-use1-a", "ecs"):
        assert posture(recorded(what)) == [], what


def test_unmanaged_default_security_group_fails():
    res = recorded("prod")
    [vpc] = [r for r in res if r["type"] == "aws:ec2/vpc:Vpc"]
    res = [r for r in res if r["type"] != DSG]
    [f] = posture(res)
    assert (f.check, f.level, f.urn) == ("default-sg-open", "mandatory", vpc["urn"])
    assert f.message.startswith(f"VPC {vpc['name']}: its default security group is not managed")


def test_default_security_group_with_rules_fails():
    res = recorded("prod")
    [dsg] = [r for r in res if r["type"] == DSG]
    dsg["inputs"]["ingress"] = [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]
    [f] = posture(res)
    assert f.urn == dsg["urn"] and "keeps ingress 1 rule(s)" in f.message


def test_web_acl_without_logging_fails():
    res = recorded("prod")
    [acl] = [r for r in res if r["type"] == "aws:wafv2/webAcl:WebAcl"]
    res = [r for r in res if r["type"] != WAF_LOGGING]
    [f] = posture(res)
    assert (f.check, f.level, f.urn) == ("waf-logging", "mandatory", acl["urn"])
    assert f.message.startswith(f"web ACL {acl['name']} has no logging configuration")


def test_waf_log_group_without_the_required_prefix_fails_and_unredacted_key_is_flagged():
    res = recorded("prod")
    [cfg] = [r for r in res if r["type"] == WAF_LOGGING]
    [group] = [r for r in res if r["urn"] in cfg["dependencies"] and r["type"] == "aws:cloudwatch/logGroup:LogGroup"]
    group["inputs"]["name"] = "llmserving-prod-waf"
    cfg["inputs"]["logDestinationConfigs"] = ["arn:aws:logs:us-east-1:123456789012:log-group:llmserving-prod-waf"]
    cfg["inputs"]["redactedFields"] = []
    mandatory, advisory = sorted(posture(res), key=lambda f: f.level != "mandatory")
    assert mandatory.level == "mandatory" and "logs to log group llmserving-prod-waf: AWS WAF accepts only log " \
        "groups named aws-waf-logs-*" in mandatory.message
    assert advisory.level == "advisory" and "without redacting `authorization`" in advisory.message
