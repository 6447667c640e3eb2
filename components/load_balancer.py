"""Load balancer: a public ALB in front of the vLLM replicas (ECS tasks or EKS pods).

- HTTPS listener with an ACM certificate and a TLS 1.2+ policy; HTTP only
  redirects to HTTPS. A stack that must serve TLS (prod) cannot build
  without a certificate (`require_tls`).
- One IP target group per model with `/health` checks; targets are ECS tasks
  (awsvpc) or pods registered by a TargetGroupBinding (components/alb_bindings.py).
- Routing by model: a listener rule per model matches the request header
  `x-llm-model: <model>`. The OpenAI API names the model in the JSON body,
  which an ALB cannot read, and a path prefix would change the `/v1/...`
  paths clients and SDKs use; a header keeps the OpenAI paths and is easy to
  set in every SDK (`default_headers`). A LoRA adapter is served by its base
  model, so the header names the deployment (the base model) and the body's
  `"model"` picks the adapter. Unknown or missing header: 404 with a JSON
  message, never a silent default -- unless a `default_target` is given
  (EKS: the model-aware router, which reads `"model"` from the body, so plain
  OpenAI clients need no header at all; the header rules stay a fast path).
- Access logs to S3, invalid headers dropped, deletion protection (prod),
  WAF web ACL with a per-client-IP rate-based rule and AWS's known-bad-inputs
  rules (not the common rule set: its 8 KB body limit would block prompts);
  WAF logs (Security Hub WAF.11) to a CloudWatch log group `aws-waf-logs-<prefix>`
  with the `authorization` header (the API key) redacted.
- Quotas checked before anything exists: target groups and rules per ALB,
  the fixed-response body size.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError, out_of_range

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:([a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}$")
# ELB security policies that allow only TLS 1.2 and 1.3 (AWS ELB docs, 2025-10).
TLS12_PLUS_POLICIES = (
    "ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06", "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
)
ROUTING_HEADER = "x-llm-model"
# Retention values CloudWatch Logs accepts (botocore 1.44.5 logs model, PutRetentionPolicy
# retentionInDays; the stack passes infra/edge_catalog.py CLOUDWATCH_RETENTION_DAYS, same list).
CLOUDWATCH_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                             2557, 2922, 3288, 3653)
# WAF delivers logs only to destinations named with this prefix (AWS WAF API LoggingConfiguration).
WAF_LOG_PREFIX = "aws-waf-logs-"
# Request headers kept out of WAF logs: the bearer token (vLLM API key) travels in Authorization.
WAF_REDACTED_HEADERS = ("authorization",)
# vLLM's runtime adapter endpoints: an API key holder could load or unload any
# tenant's adapter through them, so they never pass the load balancer.
ADMIN_PATHS = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter")
# Rules this component puts on the serving listener besides one per model (the admin-path deny).
FIXED_RULES = 1


def aws_name(*parts: str, limit: int = 32) -> str:
    """Deterministic AWS resource name within `limit` characters (ELB names: 32)."""
    name = "-".join(parts)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class LoadBalancerArgs:
    name_prefix: str
    region: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    public_subnet_ids: Sequence[pulumi.Input[str]]
    models: tuple[str, ...]
    certificate_arn: Optional[str]
    require_tls: bool
    deletion_protection: bool
    waf_rate_limit_per_5_min: int
    tls_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    access_log_bucket: Optional[pulumi.Input[str]] = None
    access_log_prefix: str = "alb"
    allowed_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    target_port: int = 8000
    health_check_path: str = "/health"
    idle_timeout_seconds: int = 300
    deregistration_delay_seconds: int = 120
    health_check_interval_seconds: int = 15
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3
    tags: dict[str, str] = field(default_factory=dict)
    # Name of an extra target group that takes requests without a known
    # routing header (a model-aware router); None answers them with a 404.
    default_target: Optional[str] = None
    # Resources the ALB must wait for (the log bucket's policy).
    depends_on: tuple[pulumi.Resource, ...] = ()
    # Default ALB quotas (AWS ELB docs, "Quotas for your Application Load Balancers"): target
    # groups per ALB 100 (not adjustable); rules per ALB, not counting default rules, 100.
    max_target_groups: int = 100
    max_rules: int = 100
    # FixedResponseActionConfig.MessageBody: at most 1024 characters (botocore 1.44.5 elbv2 model).
    fixed_response_max_chars: int = 1024
    # WAF logs (Security Hub WAF.11): a CloudWatch log group named aws-waf-logs-*, kept this
    # many days (a CloudWatch Logs retention value; the stack passes observability.logRetentionDays);
    # None: no WAF logging.
    waf_log_retention_days: Optional[int] = 90
    # Account of the stack (the log group's resource policy names it); None: the caller's account.
    account_id: Optional[str] = None


def validate_load_balancer_args(args: LoadBalancerArgs) -> None:
    problems = []
    if not DNS_LABEL.match(args.name_prefix):
        problems.append(f"name_prefix: got {args.name_prefix!r}; must be a DNS label")
    if not args.models:
        problems.append("models: got none; the ALB routes to at least one model")
    rules = len(args.models) + FIXED_RULES
    if rules > args.max_rules:
        problems.append(f"models: got {len(args.models)}; they need {rules} listener rules (one per model and "
                        f"{FIXED_RULES} deny rule) and an ALB allows {args.max_rules} (not counting default rules)")
    groups = len(args.models) + (1 if args.default_target else 0)
    if groups > args.max_target_groups:
        problems.append(f"models: got {len(args.models)}; they need {groups} target groups"
                        f"{' (with the default target)' if args.default_target else ''} and an ALB allows "
                        f"{args.max_target_groups}")
    if args.default_target is None and args.models:
        body = len(not_found_body(args.models))
        if body > args.fixed_response_max_chars:
            problems.append(f"models: the 404 response listing {len(args.models)} model names takes {body} characters; "
                            f"an ALB fixed response allows {args.fixed_response_max_chars} (use fewer or shorter names)")
    for m in args.models:
        if not DNS_LABEL.match(m):
            problems.append(f"models: got {m!r}; model names are DNS labels (they are header values and target group names)")
    dupes = sorted({m for m in args.models if args.models.count(m) > 1})
    if dupes:
        problems.append(f"models: {', '.join(dupes)} repeat")
    if args.default_target is not None and (not DNS_LABEL.match(args.default_target) or args.default_target in args.models):
        problems.append(f"default_target: got {args.default_target!r}; must be a DNS label that is not a model name")
    if args.certificate_arn is None:
        if args.require_tls:
            problems.append("certificate_arn: got None; this load balancer must serve HTTPS (require_tls), so give "
                            "an ACM certificate ARN such as arn:aws:acm:<region>:<account>:certificate/<uuid>")
    else:
        match = ACM_ARN.match(args.certificate_arn)
        if not match:
            problems.append(f"certificate_arn: got {args.certificate_arn!r}; must be an ACM certificate ARN")
        elif match.group(1) != args.region:
            problems.append(f"certificate_arn: got {args.certificate_arn!r}; the certificate must be in {args.region}")
    if args.tls_policy not in TLS12_PLUS_POLICIES:
        problems.append(f"tls_policy: got {args.tls_policy!r}; allowed (TLS 1.2+): {', '.join(TLS12_PLUS_POLICIES)}")
    problems += out_of_range("waf_rate_limit_per_5_min", args.waf_rate_limit_per_5_min, 10, 2_000_000_000, who="AWS WAF allows")
    if len(args.public_subnet_ids) < 2:
        problems.append(f"public_subnet_ids: got {len(args.public_subnet_ids)}; an ALB needs subnets in at least 2 zones")
    problems += out_of_range("target_port", args.target_port, 1, 65535)
    if not args.health_check_path.startswith("/"):
        problems.append(f"health_check_path: got {args.health_check_path!r}; must start with '/'")
    problems += out_of_range("idle_timeout_seconds", args.idle_timeout_seconds, 1, 4000, who="ALB allows")
    problems += out_of_range("deregistration_delay_seconds", args.deregistration_delay_seconds, 0, 3600)
    if args.waf_log_retention_days is not None:
        if args.waf_log_retention_days not in CLOUDWATCH_RETENTION_DAYS:
            problems.append(f"waf_log_retention_days: got {args.waf_log_retention_days}; CloudWatch Logs allows "
                            f"{', '.join(map(str, CLOUDWATCH_RETENTION_DAYS))}")
        if args.account_id is not None and not re.match(r"^\d{12}$", args.account_id):
            problems.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id or None")
    if problems:
        raise ArgsError("ModelLoadBalancer", problems)


def waf_log_group_name(args: LoadBalancerArgs) -> str:
    return f"{WAF_LOG_PREFIX}{args.name_prefix}"


def waf_log_resource_policy(args: LoadBalancerArgs, account_id: str) -> dict:
    """Lets the log delivery service write WAF logs to this stack's group, for this account only."""
    here = f"{args.region}:{account_id}"
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "WafLogDelivery", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"arn:aws:logs:{here}:log-group:{waf_log_group_name(args)}:*",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                      "ArnLike": {"aws:SourceArn": f"arn:aws:logs:{here}:*"}}}]}


def not_found_body(models: Sequence[str]) -> str:
    return json.dumps({"error": {"message": f"set the {ROUTING_HEADER} header to one of: {', '.join(models)}",
                                 "type": "invalid_request_error", "code": "model_not_found"}}, sort_keys=True)


class ModelLoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        validate_load_balancer_args(args)
        super().__init__("llmserving:load_balancer:ModelLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        sg = aws.ec2.SecurityGroup(
            f"{name}-alb", name=aws_name(args.name_prefix, "alb", limit=255), vpc_id=args.vpc_id,
            description="ALB: HTTPS (and HTTP redirect) in, model servers out",
            ingress=[{"protocol": "tcp", "from_port": port, "to_port": port, "cidr_blocks": list(args.allowed_cidrs),
                      "description": desc} for port, desc in ((443, "HTTPS"), (80, "HTTP, redirected to HTTPS"))],
            egress=[{"protocol": "tcp", "from_port": args.target_port, "to_port": args.target_port,
                     "cidr_blocks": [args.vpc_cidr], "description": "vLLM servers"}],
            tags={**tags, "Name": f"{args.name_prefix}-alb"}, opts=child)

        access_logs = ({"bucket": args.access_log_bucket, "prefix": args.access_log_prefix, "enabled": True}
                       if args.access_log_bucket is not None else None)
        lb = aws.lb.LoadBalancer(
            f"{name}-alb", name=aws_name(args.name_prefix), load_balancer_type="application", internal=False,
            subnets=list(args.public_subnet_ids), security_groups=[sg.id], drop_invalid_header_fields=True,
            enable_deletion_protection=args.deletion_protection, idle_timeout=args.idle_timeout_seconds,
            desync_mitigation_mode="defensive", access_logs=access_logs, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))

        target_groups: dict[str, aws.lb.TargetGroup] = {}
        for model in args.models + ((args.default_target,) if args.default_target else ()):
            target_groups[model] = aws.lb.TargetGroup(
                f"{name}-{model}", name=aws_name(args.name_prefix, model), vpc_id=args.vpc_id, target_type="ip",
                protocol="HTTP", port=args.target_port, deregistration_delay=args.deregistration_delay_seconds,
                load_balancing_algorithm_type="least_outstanding_requests",
                health_check={"enabled": True, "path": args.health_check_path, "protocol": "HTTP",
                              "port": "traffic-port", "matcher": "200",
                              "interval": args.health_check_interval_seconds, "timeout": 5,
                              "healthy_threshold": args.healthy_threshold,
                              "unhealthy_threshold": args.unhealthy_threshold},
                tags={**tags, "model": model}, opts=child)

        not_found = {"type": "fixed-response", "fixed_response": {
            "content_type": "application/json", "status_code": "404", "message_body": not_found_body(args.models)}}
        if args.default_target:
            not_found = {"type": "forward", "target_group_arn": target_groups[args.default_target].arn}
        listeners: dict[str, aws.lb.Listener] = {}
        if args.certificate_arn is not None:
            serving = aws.lb.Listener(f"{name}-https", load_balancer_arn=lb.arn, port=443, protocol="HTTPS",
                                      ssl_policy=args.tls_policy, certificate_arn=args.certificate_arn,
                                      default_actions=[not_found], tags=tags, opts=child)
            listeners["http"] = aws.lb.Listener(f"{name}-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                                                default_actions=[{"type": "redirect", "redirect": {
                                                    "port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}],
                                                tags=tags, opts=child)
            listeners["https"] = serving
        else:
            # Only where require_tls is false (a dev stack without a domain).
            pulumi.log.warn(f"{name}: no certificate; the ALB serves plain HTTP (never allowed where TLS is required)",
                            resource=self)
            serving = aws.lb.Listener(f"{name}-http", load_balancer_arn=lb.arn, port=80, protocol="HTTP",
                                      default_actions=[not_found], tags=tags, opts=child)
            listeners["http"] = serving

        aws.lb.ListenerRule(
            f"{name}-deny-admin", listener_arn=serving.arn, priority=1,
            conditions=[{"path_pattern": {"values": list(ADMIN_PATHS)}}],
            actions=[{"type": "fixed-response", "fixed_response": {
                "content_type": "application/json", "status_code": "403",
                "message_body": json.dumps({"error": {"message": "adapter management is not exposed", "code": 403}})}}],
            tags=tags, opts=child)
        # A target group is "associated with a load balancer" only once a listener or rule
        # forwards to it; an ECS service that registers targets before that fails
        # (ECS CreateService: InvalidParameterException "The target group ... does not have an
        # associated load balancer"), so services depend on these (infra/ecs_platform.py).
        rules: dict[str, aws.lb.ListenerRule] = {}
        for priority, model in enumerate(args.models, start=2):
            rules[model] = aws.lb.ListenerRule(
                f"{name}-{model}", listener_arn=serving.arn, priority=priority,
                conditions=[{"http_header": {"http_header_name": ROUTING_HEADER, "values": [model]}}],
                actions=[{"type": "forward", "target_group_arn": target_groups[model].arn}],
                tags={**tags, "model": model}, opts=child)

        acl_name = aws_name(args.name_prefix, "alb", limit=128)
        acl = aws.wafv2.WebAcl(
            f"{name}-waf", name=acl_name, scope="REGIONAL", default_action={"allow": {}},
            description="Per-client rate limit and known bad inputs for the LLM API",
            rules=[
                {"name": "per-client-rate-limit", "priority": 0, "action": {"block": {}},
                 "statement": {"rate_based_statement": {"limit": args.waf_rate_limit_per_5_min,
                                                        "aggregate_key_type": "IP", "evaluation_window_sec": 300}},
                 "visibility_config": {"cloudwatch_metrics_enabled": True, "sampled_requests_enabled": True,
                                       "metric_name": f"{acl_name}-rate"}},
                {"name": "aws-known-bad-inputs", "priority": 1, "override_action": {"none": {}},
                 "statement": {"managed_rule_group_statement": {"name": "AWSManagedRulesKnownBadInputsRuleSet",
                                                                "vendor_name": "AWS"}},
                 "visibility_config": {"cloudwatch_metrics_enabled": True, "sampled_requests_enabled": True,
                                       "metric_name": f"{acl_name}-bad-inputs"}},
            ],
            visibility_config={"cloudwatch_metrics_enabled": True, "sampled_requests_enabled": True,
                               "metric_name": acl_name},
            tags=tags, opts=child)
        aws.wafv2.WebAclAssociation(f"{name}-waf", resource_arn=lb.arn, web_acl_arn=acl.arn, opts=child)
        self.waf_log_group_name: Optional[str] = None
        if args.waf_log_retention_days is not None:
            self.waf_log_group_name = waf_log_group_name(args)
            waf_logs = aws.cloudwatch.LogGroup(
                f"{name}-waf-logs", name=self.waf_log_group_name, retention_in_days=args.waf_log_retention_days,
                tags=tags, opts=child)
            # WAF would otherwise create or grow one account-wide resource policy (AWSWAF-LOGS) on
            # first use, which fails once it exceeds the policy size (pulumi-aws 7.51.1
            # wafv2.WebAclLoggingConfiguration warning; Terraform aws_wafv2_web_acl_logging_configuration
            # docs, "With CloudWatch Log Group and managed CloudWatch Log Resource Policy"). Built from
            # the configured name so the policy is known at preview.
            account = (pulumi.Output.from_input(args.account_id) if args.account_id is not None
                       else aws.get_caller_identity_output().account_id)
            policy = aws.cloudwatch.LogResourcePolicy(
                f"{name}-waf-logs", policy_name=self.waf_log_group_name,
                policy_document=account.apply(lambda acct: json.dumps(waf_log_resource_policy(args, acct),
                                                                      sort_keys=True)),
                opts=child)
            aws.wafv2.WebAclLoggingConfiguration(
                f"{name}-waf-logs", resource_arn=acl.arn, log_destination_configs=[waf_logs.arn],
                redacted_fields=[{"single_header": {"name": h}} for h in WAF_REDACTED_HEADERS],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))

        self.arn = lb.arn
        self.arn_suffix = lb.arn_suffix
        self.dns_name = lb.dns_name
        self.security_group_id = sg.id
        self.listener_arn = serving.arn
        # What attaches each target group to the ALB: a model's header rule; the default target's
        # forward is the serving listener's default action.
        self.listeners = listeners
        self.serving_listener = serving
        self.listener_rules = rules
        self.web_acl_arn = acl.arn
        self.target_group_arns = {m: tg.arn for m, tg in target_groups.items() if m in args.models}
        self.target_group_arn_suffixes = {m: tg.arn_suffix for m, tg in target_groups.items() if m in args.models}
        self.default_target_group_arn = target_groups[args.default_target].arn if args.default_target else None
        self.register_outputs({
            "arn": self.arn, "dnsName": self.dns_name, "securityGroupId": self.security_group_id,
            "targetGroupArns": self.target_group_arns, "webAclArn": self.web_acl_arn,
            "wafLogGroupName": self.waf_log_group_name,
        })
