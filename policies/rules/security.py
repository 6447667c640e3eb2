"""Security guardrails: network, S3 adapter store, EKS control plane, nodes, ALB/WAF, containers.

Checkov / Trivy (AVD) IDs are named in each description where one exists.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from rules.common import (EC2NODECLASS, Res, UNKNOWN, WORKLOAD_TYPES, all_containers, as_list, container_args, env_names, fmt, get,
                          has_flag, flag, is_vllm, num, of_type, refers_to, resource_policy, stack_policy, truthy,
                          workload_label)
from rules.ecs import ECS_TASK, ecs_containers

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
       "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
PAB = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_COMPONENT = "eks:index:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WEB_ACL_ASSOC = "aws:wafv2/webAclAssociation:WebAclAssociation"
EKS_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
# ELB security policies that allow only TLS 1.2 and 1.3 (AWS ELB docs, "Security policies for your ALB", 2025-10).
TLS12_POLICIES = [
    "ELBSecurityPolicy-TLS13-1-2-2021-06", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06", "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04", "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06", "ELBSecurityPolicy-FS-1-2-2019-08", "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09",
]


# --- network -------------------------------------------------------------------

def _no_public_ip(r: Res, cfg: dict, report) -> None:
    if r.get("mapPublicIpOnLaunch") is True:
        report(f"subnet '{r.name}' assigns public IPs on launch; GPU nodes must stay private (CKV_AWS_130)")


no_public_ip_on_launch = resource_policy(
    "subnet-no-public-ip-on-launch", "Subnets do not assign public IPs on launch (Checkov CKV_AWS_130).",
    _no_public_ip, types=["aws:ec2/subnet:Subnet"])


def _vpc_flow_logs(resources: list[Res], cfg: dict, report) -> None:
    logs = of_type(resources, "aws:ec2/flowLog:FlowLog")
    for vpc in of_type(resources, "aws:ec2/vpc:Vpc"):
        if not any(refers_to(f, "vpcId", vpc) for f in logs):
            report(f"VPC '{vpc.name}' has no flow log (CKV2_AWS_11)", vpc.urn)


vpc_flow_logs = stack_policy("vpc-flow-logs", "Every VPC has a flow log (Checkov CKV2_AWS_11).", _vpc_flow_logs,
                             types=["aws:ec2/vpc:Vpc"])


def _log_retention(r: Res, cfg: dict, report) -> None:
    if not r.get("retentionInDays"):
        report(f"log group '{r.name}' keeps logs forever; set retentionInDays")


log_retention = resource_policy(
    "log-group-retention",
    "CloudWatch log groups set a retention period, so logs neither vanish nor bill forever (Checkov CKV_AWS_66).",
    _log_retention, types=["aws:cloudwatch/logGroup:LogGroup"])


# --- S3 adapter store ------------------------------------------------------------

def _companions(resources: list[Res], types: tuple, bucket: Res) -> list[Res]:
    return [c for c in of_type(resources, *types) if refers_to(c, "bucket", bucket)]


def _log_buckets(resources: list[Res]) -> set[str]:
    """URNs of buckets that receive access logs: S3 server access logs of a different bucket, or ALB access logs."""
    out = set()
    for b in of_type(resources, *BUCKETS):
        for lg in of_type(resources, *LOGGING):
            if refers_to(lg, "targetBucket", b) and not refers_to(lg, "bucket", b):
                out.add(b.urn)  # a bucket logging to itself does not make it a log bucket
        for lb in of_type(resources, LB):
            if b.urn in lb.prop_deps.get("accessLogs", []) or lb.get("accessLogs", "bucket") in (b.get("bucket"), b.name):
                out.add(b.urn)
    return out


def _bucket_label(b: Res) -> str:
    name = b.get("bucket")
    return f"bucket '{name if isinstance(name, str) else b.name}'"


def _sse_kms(resources: list[Res], cfg: dict, report) -> None:
    logs = _log_buckets(resources)
    for b in of_type(resources, *BUCKETS):
        algos, key_on = [], []
        for c in _companions(resources, SSE, b):
            for rule in as_list(c.get("rules")):
                algos.append(get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm"))
                key_on.append(get(rule, "bucketKeyEnabled"))
        if UNKNOWN in algos:
            continue
        if b.urn in logs:
            # ALB access logs can only be delivered to SSE-S3 buckets; any default encryption is required.
            if not algos:
                report(f"log {_bucket_label(b)} has no default encryption (CKV_AWS_145)", b.urn)
            continue
        if not any(a in ("aws:kms", "aws:kms:dsse") for a in algos):
            got = ", ".join(str(a) for a in algos) or "none"
            report(f"{_bucket_label(b)} is not encrypted with SSE-KMS (default encryption: {got}) (CKV_AWS_145)", b.urn)
        elif not any(k is True for k in key_on):
            report(f"{_bucket_label(b)} uses SSE-KMS without an S3 Bucket Key (bucketKeyEnabled), paying a KMS call per object",
                   b.urn)


s3_sse_kms = stack_policy(
    "s3-sse-kms",
    "Buckets use SSE-KMS with a bucket key by default (Checkov CKV_AWS_145, Trivy AVD-AWS-0132); buckets that "
    "receive access logs need default encryption (ALB logs require SSE-S3).",
    _sse_kms, types=BUCKETS)


def _versioning(resources: list[Res], cfg: dict, report) -> None:
    for b in of_type(resources, *BUCKETS):
        states = [c.get("versioningConfiguration", "status") for c in _companions(resources, VERSIONING, b)]
        if UNKNOWN in states:
            continue
        if "Enabled" not in states:
            report(f"{_bucket_label(b)} does not have versioning enabled (CKV_AWS_21)", b.urn)


s3_versioning = stack_policy(
    "s3-versioning", "Buckets have versioning enabled (Checkov CKV_AWS_21, Trivy AVD-AWS-0090).", _versioning,
    types=BUCKETS)

PAB_FLAGS = ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]


def _bpa(resources: list[Res], cfg: dict, report) -> None:
    for b in of_type(resources, *BUCKETS):
        blocks = _companions(resources, PAB, b)
        if not blocks:
            report(f"{_bucket_label(b)} has no public access block (CKV2_AWS_6)", b.urn)
            continue
        off = [f for f in PAB_FLAGS if all(blk.get(f) is not True and blk.get(f) is not UNKNOWN for blk in blocks)]
        if off:
            report(f"{_bucket_label(b)} public access block leaves off: {', '.join(off)} (CKV2_AWS_6)", b.urn)


s3_bpa = stack_policy(
    "s3-block-public-access",
    "Buckets have a public access block with all four flags on (Checkov CKV2_AWS_6, CKV_AWS_53-56; Trivy "
    "AVD-AWS-0086/0087/0091/0093).",
    _bpa, types=BUCKETS)


def _statements(policy: Any) -> list[dict] | None:
    if policy is UNKNOWN or policy is None:
        return None
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except json.JSONDecodeError:
            return None
    if not isinstance(policy, dict):
        return None
    return [s for s in as_list(policy.get("Statement")) if isinstance(s, dict)]


def _wildcard(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any(v == "*" or (isinstance(v, list) and "*" in v) for v in principal.values())
    return False


def _denies_insecure(st: dict) -> bool:
    if st.get("Effect") != "Deny":
        return False
    cond = st.get("Condition") or {}
    secure = get(cond, "Bool", "aws:SecureTransport")
    return str(secure).lower() == "false"


def _tls_deny_gaps(st: dict, bucket_name: Any) -> list[str]:
    """What a TLS deny statement leaves uncovered: it must deny s3:* (or *) on the bucket and its objects."""
    gaps = []
    actions = [a for a in as_list(st.get("Action")) if isinstance(a, str)]
    if "NotAction" in st or not any(a in ("s3:*", "*") for a in actions):
        gaps.append(f"actions {', '.join(actions) or '(NotAction)'} instead of s3:*")
    resources = [x for x in as_list(st.get("Resource")) if isinstance(x, str)]
    if "*" not in resources and "NotResource" not in st:
        if isinstance(bucket_name, str):
            arn = f"arn:aws:s3:::{bucket_name}"
            missing = [x for x in (arn, f"{arn}/*") if x not in resources]
        else:  # name unknown in preview: need one bucket ARN and one object pattern
            missing = [what for what, ok in (("the bucket ARN", any("/" not in x for x in resources)),
                                             ("bucket/*", any(x.endswith("/*") for x in resources))) if not ok]
        if missing:
            gaps.append(f"not {' and '.join(missing)}")
    elif "NotResource" in st:
        gaps.append("NotResource instead of the bucket and bucket/*")
    return gaps


def _tls_only(resources: list[Res], cfg: dict, report) -> None:
    for b in of_type(resources, *BUCKETS):
        policies = _companions(resources, (BUCKET_POLICY,), b)
        statements = [_statements(p.get("policy")) for p in policies]
        if any(s is None for s in statements) and policies:
            continue  # policy text unknown in preview
        denies = [st for sts in statements for st in sts or [] if _denies_insecure(st)]
        if not denies:
            report(f"{_bucket_label(b)} has no bucket policy statement denying requests without TLS "
                   f"(aws:SecureTransport false) (Security Hub S3.5)", b.urn)
            continue
        gaps = [_tls_deny_gaps(st, b.get("bucket")) for st in denies]
        if all(gaps):
            report(f"{_bucket_label(b)} denies requests without TLS only partly ({'; '.join(g for gs in gaps for g in gs)}); "
                   f"deny s3:* on the bucket ARN and bucket/* (Security Hub S3.5)", b.urn)


s3_tls_only = stack_policy(
    "s3-tls-only",
    "Bucket policies deny s3:* on the bucket and bucket/* for requests made without TLS (aws:SecureTransport = "
    "false; AWS Security Hub S3.5, no Checkov ID).",
    _tls_only, types=BUCKETS)


def _no_wildcard_principal(r: Res, cfg: dict, report) -> None:
    sts = _statements(r.get("policy"))
    for st in sts or []:
        if "NotPrincipal" in st:
            report(f"bucket policy '{r.name}' has a {st.get('Effect')} statement with NotPrincipal, which applies to "
                   f"every principal not listed (CKV_AWS_70)")
        elif st.get("Effect") != "Deny" and _wildcard(st.get("Principal")):
            # Only Deny narrows access, so a `*` principal is harmless there (e.g. deny without TLS).
            report(f"bucket policy '{r.name}' allows {st.get('Action')} to any principal (\"*\") (CKV_AWS_70)")


s3_no_wildcard_principal = resource_policy(
    "s3-no-wildcard-principal",
    "Bucket policies never Allow a `*` principal and use no NotPrincipal (Checkov CKV_AWS_70).",
    _no_wildcard_principal, types=[BUCKET_POLICY])


def _access_logging(resources: list[Res], cfg: dict, report) -> None:
    logs = _log_buckets(resources)
    for b in of_type(resources, *BUCKETS):
        if b.urn in logs:
            continue  # a log bucket does not log to itself
        logging = _companions(resources, LOGGING, b)
        if not logging:
            report(f"{_bucket_label(b)} has no server access logging (CKV_AWS_18)", b.urn)
        elif all(refers_to(lg, "targetBucket", b) for lg in logging):
            report(f"{_bucket_label(b)} writes its server access logs into itself; log to a separate log bucket "
                   f"(CKV_AWS_18)", b.urn)


s3_access_logging = stack_policy(
    "s3-access-logging",
    "Buckets other than log buckets (targets of another bucket's or an ALB's access logs) have server access logging "
    "into a separate bucket (Checkov CKV_AWS_18, Trivy AVD-AWS-0089).",
    _access_logging, types=BUCKETS)


# --- EKS control plane ---------------------------------------------------------------

def _cluster_label(r: Res) -> str:
    return f"EKS cluster '{r.name}'"


def _endpoint(r: Res, cfg: dict, report) -> None:
    if r.type == EKS_CLUSTER:
        public, cidrs = r.get("vpcConfig", "endpointPublicAccess"), r.get("vpcConfig", "publicAccessCidrs")
    else:
        public, cidrs = r.get("endpointPublicAccess"), r.get("publicAccessCidrs")
    if public is UNKNOWN or cidrs is UNKNOWN or public is False:
        return
    cidrs = [c for c in as_list(cidrs) if isinstance(c, str)]
    if not cidrs:
        report(f"{_cluster_label(r)} has a public API endpoint open to 0.0.0.0/0; make it private or list publicAccessCidrs (CKV_AWS_39)")
        return
    open_ = [c for c in cidrs if _is_any(c)]
    if open_:
        report(f"{_cluster_label(r)} public API endpoint allows {', '.join(open_)}; restrict publicAccessCidrs (CKV_AWS_38)")


def _is_any(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


eks_endpoint = resource_policy(
    "eks-endpoint-restricted",
    "The EKS API endpoint is private, or public only to listed CIDRs (Checkov CKV_AWS_39, CKV_AWS_38; Trivy "
    "AVD-AWS-0040, AVD-AWS-0041).",
    _endpoint, types=[EKS_CLUSTER, EKS_COMPONENT])


def _control_plane_logs(r: Res, cfg: dict, report) -> None:
    types = r.get("enabledClusterLogTypes", default=[])
    if types is UNKNOWN:
        return
    missing = [t for t in EKS_LOG_TYPES if t not in as_list(types)]
    if missing:
        report(f"{_cluster_label(r)} does not log control-plane types: {', '.join(missing)} (CKV_AWS_37)")


eks_logs = resource_policy(
    "eks-control-plane-logging",
    "EKS clusters enable all control-plane log types: api, audit, authenticator, controllerManager, scheduler "
    "(Checkov CKV_AWS_37, Trivy AVD-AWS-0038).",
    _control_plane_logs, types=[EKS_CLUSTER, EKS_COMPONENT])


def _secrets_encryption(r: Res, cfg: dict, report) -> None:
    if r.type == EKS_CLUSTER:
        enc = r.get("encryptionConfig")
        if enc is UNKNOWN:
            return
        ok = isinstance(enc, dict) and "secrets" in as_list(enc.get("resources")) and get(enc, "provider", "keyArn") is not None
    else:
        ok = r.get("encryptionConfigKeyArn") is not None
    if not ok:
        report(f"{_cluster_label(r)} does not encrypt Kubernetes secrets with a KMS key (CKV_AWS_58)")


eks_secrets = resource_policy(
    "eks-secrets-encryption",
    "EKS clusters envelope-encrypt Kubernetes secrets with KMS (Checkov CKV_AWS_58, Trivy AVD-AWS-0039).",
    _secrets_encryption, types=[EKS_CLUSTER, EKS_COMPONENT])


# --- nodes ---------------------------------------------------------------------------

def _imdsv2(r: Res, cfg: dict, report) -> None:
    tokens = r.get("metadataOptions", "httpTokens")
    if tokens is UNKNOWN or r.get("metadataOptions", "httpEndpoint") == "disabled":
        return
    if tokens != "required":
        report(f"launch template '{r.name}' does not require IMDSv2 (metadataOptions.httpTokens: {tokens or 'optional'}) (CKV_AWS_79)")


lt_imdsv2 = resource_policy(
    "launch-template-imdsv2",
    "Launch templates require IMDSv2 (metadataOptions.httpTokens = required; Checkov CKV_AWS_79, Trivy AVD-AWS-0130).",
    _imdsv2, types=[LAUNCH_TEMPLATE])


def _hop_limit(r: Res, cfg: dict, report) -> None:
    # EC2NodeClass: spec.metadataOptions (Karpenter's default is 1 when absent).
    node_class = r.type == EC2NODECLASS
    hops = num(r.get("spec", "metadataOptions", "httpPutResponseHopLimit") if node_class
               else r.get("metadataOptions", "httpPutResponseHopLimit"))
    limit = cfg.get("maxHopLimit", 1)
    if hops is not None and hops > limit:
        what = "EC2NodeClass" if node_class else "launch template"
        report(f"{what} '{r.name}' lets IMDS responses travel {fmt(hops)} hops; at most {fmt(limit)} "
               f"(a pod one hop beyond the node would reach the node role's credentials) (CKV_AWS_341)")


lt_hop_limit = resource_policy(
    "launch-template-imds-hop-limit",
    "Launch templates and EC2NodeClasses keep the IMDS hop limit at most maxHopLimit (default 1: pods get credentials "
    "from Pod Identity, never the node role's from IMDS; EKS best practices, Checkov CKV_AWS_341).",
    _hop_limit, types=[LAUNCH_TEMPLATE, EC2NODECLASS],
    schema={"maxHopLimit": {"type": "integer", "minimum": 1, "default": 1}})


def _ebs_encrypted(r: Res, cfg: dict, report) -> None:
    for m in as_list(r.get("blockDeviceMappings")):
        if not isinstance(m, dict) or not isinstance(m.get("ebs"), dict):
            continue
        enc = m["ebs"].get("encrypted")
        if enc is not UNKNOWN and not truthy(enc):
            report(f"launch template '{r.name}' volume {m.get('deviceName')} is not encrypted (CKV_AWS_8)")


lt_ebs_encrypted = resource_policy(
    "launch-template-ebs-encrypted",
    "Launch template EBS volumes are encrypted (Checkov CKV_AWS_8, Trivy AVD-AWS-0131).",
    _ebs_encrypted, types=[LAUNCH_TEMPLATE])


# --- ALB and WAF ----------------------------------------------------------------------

def _is_alb(r: Res) -> bool:
    return r.get("loadBalancerType", default="application") == "application"


def _https_only(r: Res, cfg: dict, report) -> None:
    if r.get("protocol") != "HTTP":
        return
    actions = as_list(r.get("defaultActions"))
    redirects = [a for a in actions if isinstance(a, dict) and a.get("type") == "redirect"
                 and get(a, "redirect", "protocol") == "HTTPS"]
    if not actions or len(redirects) != len(actions):
        report(f"listener '{r.name}' serves plain HTTP; an HTTP listener may only redirect to HTTPS (CKV_AWS_2, CKV2_AWS_20)")


alb_https_only = resource_policy(
    "alb-https-only",
    "ALB listeners use HTTPS; HTTP listeners only redirect to HTTPS (Checkov CKV_AWS_2, CKV2_AWS_20; Trivy AVD-AWS-0054).",
    _https_only, types=[LISTENER])


def _tls_policy(r: Res, cfg: dict, report) -> None:
    if r.get("protocol") not in ("HTTPS", "TLS"):
        return
    policy = r.get("sslPolicy")
    if policy is UNKNOWN:
        return
    allowed = cfg.get("allowedSslPolicies", TLS12_POLICIES)
    if policy not in allowed:
        report(f"listener '{r.name}' uses TLS policy {policy or '(default ELBSecurityPolicy-2016-08)'}, which allows TLS "
               f"below 1.2; use e.g. ELBSecurityPolicy-TLS13-1-2-2021-06 (CKV_AWS_103)")


alb_tls_policy = resource_policy(
    "alb-tls-policy",
    "HTTPS listeners use a TLS 1.2+ security policy (Checkov CKV_AWS_103, Trivy AVD-AWS-0047).",
    _tls_policy, types=[LISTENER],
    schema={"allowedSslPolicies": {"type": "array", "items": {"type": "string"}, "default": TLS12_POLICIES}})


def _access_logs(r: Res, cfg: dict, report) -> None:
    if not _is_alb(r):
        return
    logs = r.get("accessLogs")
    if logs is UNKNOWN:
        return
    if not (isinstance(logs, dict) and logs.get("enabled") is True and logs.get("bucket")):
        report(f"load balancer '{r.name}' has no access logs (CKV_AWS_91)")


alb_access_logs = resource_policy(
    "alb-access-logs", "Application load balancers write access logs to S3 (Checkov CKV_AWS_91).",
    _access_logs, types=[LB])


def _drop_headers(r: Res, cfg: dict, report) -> None:
    if _is_alb(r) and r.get("dropInvalidHeaderFields") is not True:
        report(f"load balancer '{r.name}' forwards invalid HTTP headers; set dropInvalidHeaderFields (CKV_AWS_131)")


alb_drop_invalid_headers = resource_policy(
    "alb-drop-invalid-headers",
    "Application load balancers drop invalid header fields (Checkov CKV_AWS_131, Trivy AVD-AWS-0052).",
    _drop_headers, types=[LB])


def _deletion_protection(r: Res, cfg: dict, report) -> None:
    if cfg.get("required", False) and r.get("enableDeletionProtection") is not True:
        report(f"load balancer '{r.name}' has no deletion protection (CKV_AWS_150)")


alb_deletion_protection = resource_policy(
    "alb-deletion-protection",
    "Where required (prod), load balancers have deletion protection (Checkov CKV_AWS_150).",
    _deletion_protection, types=[LB], schema={"required": {"type": "boolean", "default": False}})


def _waf_attached(resources: list[Res], cfg: dict, report) -> None:
    if not cfg.get("required", False):
        return
    assocs = of_type(resources, WEB_ACL_ASSOC)
    for lb in of_type(resources, LB):
        if not _is_alb(lb) or lb.get("internal") is True:
            continue
        if not any(refers_to(a, "resourceArn", lb) for a in assocs):
            report(f"internet-facing load balancer '{lb.name}' has no WAF web ACL attached (CKV2_AWS_28)", lb.urn)


waf_attached = stack_policy(
    "waf-attached",
    "Where required (prod), every internet-facing ALB has a WAFv2 web ACL association (Checkov CKV2_AWS_28).",
    _waf_attached, types=[LB], schema={"required": {"type": "boolean", "default": False}})


def _rate_rules(r: Res) -> list[tuple[str, Any, Any, Any]] | None:
    """(rule name, action, limit, evaluation window seconds) of each rate-based rule, from `rules` or `ruleJson`."""
    out = []
    for x in as_list(r.get("rules", default=[])):
        rb = get(x, "statement", "rateBasedStatement") if isinstance(x, dict) else None
        if rb:
            out.append((x.get("name"), x.get("action"), get(rb, "limit"), get(rb, "evaluationWindowSec")))
    text = r.get("ruleJson")
    if isinstance(text, str):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return None
        for x in as_list(parsed):
            rb = get(x, "Statement", "RateBasedStatement") if isinstance(x, dict) else None
            if rb:
                action = {k.lower(): v for k, v in x["Action"].items()} if isinstance(x.get("Action"), dict) else None
                out.append((x.get("Name"), action, get(rb, "Limit"), get(rb, "EvaluationWindowSec")))
    return out


def _waf_rate(r: Res, cfg: dict, report) -> None:
    if r.get("rules") is UNKNOWN or r.get("ruleJson") is UNKNOWN:
        return
    maximum = num(cfg.get("maxRequestsPer5Min", 10000))
    rules = _rate_rules(r)
    if rules is None:
        return
    if not rules:
        report(f"web ACL '{r.name}' has no rate-based rule; one client can flood the GPUs")
        return
    problems = []
    for name, action, limit, window in rules:
        if UNKNOWN in (action, limit, window):
            return
        issues = []
        if not (isinstance(action, dict) and "block" in action):
            issues.append(f"action {', '.join(action) if isinstance(action, dict) and action else '(none)'} instead of block")
        per5 = None if num(limit) is None else num(limit) * 300 / (num(window) or 300)
        if per5 is None or per5 > maximum:
            issues.append(f"limit {fmt(per5) if per5 is not None else '(none)'} requests per 5 minutes above {fmt(maximum)}")
        if not issues:
            return  # one blocking rule within the limit is enough
        problems.append(f"'{name}': {', '.join(issues)}")
    report(f"web ACL '{r.name}' has no blocking rate-based rule within {fmt(maximum)} requests per client per 5 minutes "
           f"({'; '.join(problems)}); one client can flood the GPUs")


waf_rate_limit = resource_policy(
    "waf-rate-limit",
    "Web ACLs include a rate-based rule that blocks a client above `maxRequestsPer5Min` requests per 5 minutes, so one "
    "client cannot exhaust GPU capacity (no Checkov ID; AWS WAF guidance).",
    _waf_rate, types=[WEB_ACL],
    schema={"maxRequestsPer5Min": {"type": "integer", "minimum": 10, "default": 10000}})


# --- containers ------------------------------------------------------------------------

def _k8s_and_ecs_containers(r: Res, *, servers_only: bool = False) -> list[tuple[str, dict, bool]]:
    """(label, container, is_ecs); servers_only leaves out LeaderWorkerSet workers (Ray members, no HTTP)
    and init containers that run to completion (a weights download in the vLLM image serves nothing)."""
    if r.type == ECS_TASK:
        return [(f"ECS task '{r.name}'", c, True) for c in ecs_containers(r)]
    out = []
    for role, spec, c in all_containers(r):
        one_shot_init = any(c is i for i in as_list(spec.get("initContainers"))) and c.get("restartPolicy") != "Always"
        if servers_only and (role == "worker" or one_shot_init):
            continue
        out.append((workload_label(r), c, False))
    return out


def _api_key(r: Res, cfg: dict, report) -> None:
    for label, c, ecs in _k8s_and_ecs_containers(r, servers_only=True):
        if not is_vllm(c):
            continue
        name = c.get("name")
        argv = container_args(c)
        if ecs:
            secret = any(isinstance(s, dict) and s.get("name") == "VLLM_API_KEY" for s in as_list(c.get("secrets")))
            plain_env = any(isinstance(e, dict) and e.get("name") == "VLLM_API_KEY" for e in as_list(c.get("environment")))
        else:
            env = env_names(c).get("VLLM_API_KEY")
            secret = bool(env and get(env, "valueFrom", "secretKeyRef"))
            plain_env = bool(env and "value" in env)
        literal_flag = has_flag(argv, "--api-key") and not str(flag(argv, "--api-key") or "").startswith("$")
        if plain_env or literal_flag:
            report(f"{label} container '{name}' puts the vLLM API key in plain text; take VLLM_API_KEY from a secret")
        elif not secret and not has_flag(argv, "--api-key"):
            report(f"{label} container '{name}' runs vLLM without an API key; set VLLM_API_KEY from a secret")


vllm_api_key = resource_policy(
    "vllm-api-key-required",
    "vLLM servers require an API key (VLLM_API_KEY from a Kubernetes Secret or ECS secret; no Checkov ID).",
    _api_key, types=[*WORKLOAD_TYPES, ECS_TASK])


def _unpinned(image: Any) -> str | None:
    if not isinstance(image, str):
        return None
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the latest tag"
    return None


def _images_pinned(r: Res, cfg: dict, report) -> None:
    for label, c, _ in _k8s_and_ecs_containers(r):
        why = _unpinned(c.get("image"))
        if why:
            report(f"{label} container '{c.get('name')}' image {c.get('image')} {why}; pin a version tag or digest (CKV_K8S_14)")


images_pinned = resource_policy(
    "images-pinned",
    "Container images carry a fixed tag or digest, never latest or none (Checkov CKV_K8S_14, Trivy AVD-KSV-0013).",
    _images_pinned, types=[*WORKLOAD_TYPES, ECS_TASK])


def _privileged(r: Res, cfg: dict, report) -> None:
    for label, c, ecs in _k8s_and_ecs_containers(r):
        priv = c.get("privileged") if ecs else get(c, "securityContext", "privileged")
        if priv is True:
            report(f"{label} container '{c.get('name')}' runs privileged (CKV_K8S_16)")


no_privileged = resource_policy(
    "no-privileged-containers",
    "No container runs privileged (Checkov CKV_K8S_16, Trivy AVD-KSV-0017; ECS: AWS Config ECS_CONTAINERS_NONPRIVILEGED).",
    _privileged, types=[*WORKLOAD_TYPES, ECS_TASK])


def _sqs_encrypted(r: Res, cfg: dict, report) -> None:
    if r.get("sqsManagedSseEnabled") is not True and not r.get("kmsMasterKeyId"):
        report(f"SQS queue '{r.name}' is not encrypted at rest; set sqsManagedSseEnabled or kmsMasterKeyId (CKV_AWS_27)")


sqs_encrypted = resource_policy(
    "sqs-encrypted", "SQS queues are encrypted at rest (Checkov CKV_AWS_27, Trivy AVD-AWS-0096).",
    _sqs_encrypted, types=["aws:sqs/queue:Queue"])


def _kms_rotation(r: Res, cfg: dict, report) -> None:
    if r.get("customerMasterKeySpec", default="SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT" and r.get("enableKeyRotation") is not True:
        report(f"KMS key '{r.name}' does not rotate; set enableKeyRotation (CKV_AWS_7)")


kms_rotation = resource_policy(
    "kms-key-rotation", "Symmetric KMS keys rotate yearly (Checkov CKV_AWS_7, Trivy AVD-AWS-0065).",
    _kms_rotation, types=["aws:kms/key:Key"])

POLICIES = [no_public_ip_on_launch, vpc_flow_logs, log_retention, s3_sse_kms, s3_versioning, s3_bpa, s3_tls_only,
            s3_no_wildcard_principal, s3_access_logging, eks_endpoint, eks_logs, eks_secrets, lt_imdsv2, lt_hop_limit,
            lt_ebs_encrypted, alb_https_only, alb_tls_policy, alb_access_logs, alb_drop_invalid_headers,
            alb_deletion_protection, waf_attached, waf_rate_limit, vllm_api_key, images_pinned, no_privileged,
            sqs_encrypted, kms_rotation]
