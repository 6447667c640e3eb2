"""Security guardrails: network, S3 adapter store, EKS control plane, nodes, ALB/WAF, containers.

Checkov / Trivy (AVD) IDs are named in each description where one exists.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from rules.common import (EC2_INSTANCE, EC2NODECLASS, Res, UNKNOWN, WORKLOAD_TYPES, as_list, container_args, container_paths,
                          env_names, first_unknown, fmt, unknown_in, get, has_flag, flag, num, of_type, refers_to,
                          resource_policy, serving_containers, stack_policy, truthy, workload_label, workload_unknown)
from rules.ecs import ECS_TASK, ecs_containers_or_unjudged, ecs_task_label, is_ecs_server

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
    if r.get("mapPublicIpOnLaunch") is UNKNOWN:
        report.unjudged(f"subnet '{r.name}'", "mapPublicIpOnLaunch")
    elif r.get("mapPublicIpOnLaunch") is True:
        report(f"subnet '{r.name}' assigns public IPs on launch; GPU nodes must stay private (CKV_AWS_130)")


no_public_ip_on_launch = resource_policy(
    "subnet-no-public-ip-on-launch", "Subnets do not assign public IPs on launch (Checkov CKV_AWS_130).",
    _no_public_ip, types=["aws:ec2/subnet:Subnet"])


def _vpc_flow_logs(resources: list[Res], cfg: dict, report) -> None:
    logs = of_type(resources, "aws:ec2/flowLog:FlowLog")
    for vpc in of_type(resources, "aws:ec2/vpc:Vpc"):
        if any(refers_to(f, "vpcId", vpc) for f in logs):
            continue
        unsure = [f for f in logs if f.get("vpcId") is UNKNOWN and not f.prop_deps.get("vpcId")]
        if unsure:
            report.unjudged(f"VPC '{vpc.name}'", f"vpcId of flow log '{unsure[0].name}'", vpc.urn)
        else:
            report(f"VPC '{vpc.name}' has no flow log (CKV2_AWS_11)", vpc.urn)


vpc_flow_logs = stack_policy("vpc-flow-logs", "Every VPC has a flow log (Checkov CKV2_AWS_11).", _vpc_flow_logs,
                             types=["aws:ec2/vpc:Vpc"])


def _log_retention(r: Res, cfg: dict, report) -> None:
    if r.get("retentionInDays") is UNKNOWN:
        report.unjudged(f"log group '{r.name}'", "retentionInDays")
    elif not r.get("retentionInDays"):
        report(f"log group '{r.name}' keeps logs forever; set retentionInDays")


log_retention = resource_policy(
    "log-group-retention",
    "CloudWatch log groups set a retention period, so logs neither vanish nor bill forever (Checkov CKV_AWS_66).",
    _log_retention, types=["aws:cloudwatch/logGroup:LogGroup"])


# --- S3 adapter store ------------------------------------------------------------

def _companions(resources: list[Res], types: tuple, bucket: Res) -> list[Res]:
    return [c for c in of_type(resources, *types) if refers_to(c, "bucket", bucket)]


def _unsure_companion(resources: list[Res], types: tuple) -> Res | None:
    """A companion (SSE, versioning, policy...) whose `bucket` is unknown and names no dependency:
    it may belong to any bucket, so "this bucket has none" cannot be judged."""
    return next((c for c in of_type(resources, *types) if c.get("bucket") is UNKNOWN and not c.prop_deps.get("bucket")),
                None)


def _missing_or_unjudged(resources: list[Res], types: tuple, b: Res, report) -> bool:
    """True when the bucket's missing companion can be reported; reports unjudged otherwise."""
    unsure = _unsure_companion(resources, types)
    if unsure is not None:
        report.unjudged(_bucket_label(b), f"bucket of {unsure.type.rsplit(':', 1)[-1]} '{unsure.name}'", b.urn)
        return False
    return True


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
        companions = _companions(resources, SSE, b)
        for c in companions:
            if c.get("rules") is UNKNOWN:
                algos.append(UNKNOWN)
            for rule in as_list(c.get("rules")):
                algos.append(get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm"))
                key_on.append(get(rule, "bucketKeyEnabled"))
        if UNKNOWN in algos:
            c = next(c for c in companions if first_unknown(c.get("rules"), "rules"))
            report.unjudged(_bucket_label(b), f"{first_unknown(c.get('rules'), 'rules')} of '{c.name}'", b.urn)
            continue
        if not companions and not _missing_or_unjudged(resources, SSE, b, report):
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
            if UNKNOWN in key_on:
                report.unjudged(_bucket_label(b), "rules[].bucketKeyEnabled", b.urn)
                continue
            report(f"{_bucket_label(b)} uses SSE-KMS without an S3 Bucket Key (bucketKeyEnabled), paying a KMS call per object",
                   b.urn)


s3_sse_kms = stack_policy(
    "s3-sse-kms",
    "Buckets use SSE-KMS with a bucket key by default (Checkov CKV_AWS_145, Trivy AVD-AWS-0132); buckets that "
    "receive access logs need default encryption (ALB logs require SSE-S3).",
    _sse_kms, types=BUCKETS)


def _versioning(resources: list[Res], cfg: dict, report) -> None:
    for b in of_type(resources, *BUCKETS):
        companions = _companions(resources, VERSIONING, b)
        states = [c.get("versioningConfiguration", "status") for c in companions]
        if "Enabled" in states:
            continue
        if UNKNOWN in states:
            report.unjudged(_bucket_label(b), "versioningConfiguration.status", b.urn)
            continue
        if not companions and not _missing_or_unjudged(resources, VERSIONING, b, report):
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
            if _missing_or_unjudged(resources, PAB, b, report):
                report(f"{_bucket_label(b)} has no public access block (CKV2_AWS_6)", b.urn)
            continue
        off = [f for f in PAB_FLAGS if all(blk.get(f) is not True and blk.get(f) is not UNKNOWN for blk in blocks)]
        if off:
            report(f"{_bucket_label(b)} public access block leaves off: {', '.join(off)} (CKV2_AWS_6)", b.urn)
            continue
        unknown = [f for f in PAB_FLAGS if not any(blk.get(f) is True for blk in blocks)]
        if unknown:
            report.unjudged(_bucket_label(b), ", ".join(unknown), b.urn)


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


ACCOUNT_ROOT = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:root$")


def _principal_gap(principal: Any) -> str | None:
    """A deny must apply to everyone: "*", {"AWS": "*"}, or an account root (which in a resource policy
    stands for every IAM principal of that account: IAM User Guide, "AWS account principals").
    A deny naming one role or user leaves every other caller free to use plain HTTP."""
    if principal == "*" or principal is UNKNOWN:
        return None
    if isinstance(principal, dict):
        aws_ = principal.get("AWS")
        values = [v for v in as_list(aws_) if isinstance(v, str)]
        if values and all(v == "*" or ACCOUNT_ROOT.match(v) for v in values) and set(principal) == {"AWS"}:
            return None
        named = ", ".join(values) or ", ".join(f"{k}: {v}" for k, v in principal.items())
        return f"principal narrowed to {named}"
    return f"principal {principal}"


def _tls_deny_gaps(st: dict, bucket_name: Any) -> list[str]:
    """What a TLS deny statement leaves uncovered: it must deny s3:* (or *) on the bucket and its objects,
    for every principal."""
    gaps = []
    if "NotPrincipal" not in st:
        narrowed = _principal_gap(st.get("Principal"))
        if narrowed:
            gaps.append(narrowed)
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
        denies = [st for sts in statements for st in sts or [] if _denies_insecure(st)]
        unknown_policy = next((p for p in policies if p.get("policy") is UNKNOWN), None)
        if unknown_policy is not None and not any(not _tls_deny_gaps(st, b.get("bucket")) for st in denies):
            report.unjudged(_bucket_label(b), f"policy of bucket policy '{unknown_policy.name}'", b.urn)
            continue
        if not policies and not _missing_or_unjudged(resources, (BUCKET_POLICY,), b, report):
            continue
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
    if r.get("policy") is UNKNOWN:
        report.unjudged(f"bucket policy '{r.name}'", "policy")
        return
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
            if _missing_or_unjudged(resources, LOGGING, b, report):
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
    if public is False:
        return
    if public is UNKNOWN or cidrs is UNKNOWN or (isinstance(cidrs, list) and UNKNOWN in cidrs):
        where = "vpcConfig." if r.type == EKS_CLUSTER else ""
        report.unjudged(_cluster_label(r), where + ("endpointPublicAccess" if public is UNKNOWN else "publicAccessCidrs"))
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
        report.unjudged(_cluster_label(r), "enabledClusterLogTypes")
        return
    missing = [t for t in EKS_LOG_TYPES if t not in as_list(types)]
    if missing and UNKNOWN in as_list(types):
        report.unjudged(_cluster_label(r), "enabledClusterLogTypes[]")
    elif missing:
        report(f"{_cluster_label(r)} does not log control-plane types: {', '.join(missing)} (CKV_AWS_37)")


eks_logs = resource_policy(
    "eks-control-plane-logging",
    "EKS clusters enable all control-plane log types: api, audit, authenticator, controllerManager, scheduler "
    "(Checkov CKV_AWS_37, Trivy AVD-AWS-0038).",
    _control_plane_logs, types=[EKS_CLUSTER, EKS_COMPONENT])


def _secrets_encryption(r: Res, cfg: dict, report) -> None:
    # A key ARN that is unknown (a KMS key created in the same stack) is still a key: it counts as set.
    if r.type == EKS_CLUSTER:
        enc = r.get("encryptionConfig")
        if enc is UNKNOWN or (isinstance(enc, dict) and enc.get("resources") is UNKNOWN):
            report.unjudged(_cluster_label(r), "encryptionConfig" + ("" if enc is UNKNOWN else ".resources"))
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


# --- nodes: launch templates, EC2 instances, Karpenter EC2NodeClasses ------------------

NODE_TYPES = (LAUNCH_TEMPLATE, EC2_INSTANCE, EC2NODECLASS)


def _node_label(r: Res) -> str:
    return {LAUNCH_TEMPLATE: "launch template", EC2_INSTANCE: "EC2 instance", EC2NODECLASS: "EC2NodeClass"}[r.type] \
        + f" '{r.name}'"


def _metadata_path(r: Res) -> tuple:
    return ("spec", "metadataOptions") if r.type == EC2NODECLASS else ("metadataOptions",)


def _imdsv2(r: Res, cfg: dict, report) -> None:
    base = _metadata_path(r)
    where = r.unknown_at(*base, "httpTokens") or r.unknown_at(*base, "httpEndpoint")
    if where:
        report.unjudged(_node_label(r), where)
        return
    tokens = r.get(*base, "httpTokens")
    if r.get(*base, "httpEndpoint") == "disabled":
        return
    # EC2NodeClass: Karpenter defaults httpTokens to required (karpenter.k8s.aws_ec2nodeclasses.yaml in
    # ../shared/crds, metadataOptions default); EC2 defaults a launch template or instance to optional.
    if r.type == EC2NODECLASS and tokens is None:
        return
    if tokens != "required":
        report(f"{_node_label(r)} does not require IMDSv2 ({'spec.' if r.type == EC2NODECLASS else ''}metadataOptions."
               f"httpTokens: {tokens or 'optional'}) (CKV_AWS_79)")


lt_imdsv2 = resource_policy(
    "launch-template-imdsv2",
    # EC2 instances and Karpenter EC2NodeClasses are judged too (issue 15).
    "Launch templates require IMDSv2 (metadataOptions.httpTokens = required; Checkov CKV_AWS_79, Trivy AVD-AWS-0130).",
    _imdsv2, types=NODE_TYPES)


def _hop_limit(r: Res, cfg: dict, report) -> None:
    # EC2NodeClass: spec.metadataOptions (Karpenter's default is 1 when absent).
    path = _metadata_path(r) + ("httpPutResponseHopLimit",)
    where = r.unknown_at(*path)
    if where:
        report.unjudged(_node_label(r), where)
        return
    hops = num(r.get(*path))
    limit = cfg.get("maxHopLimit", 1)
    if hops is not None and hops > limit:
        what = {LAUNCH_TEMPLATE: "launch template", EC2_INSTANCE: "EC2 instance", EC2NODECLASS: "EC2NodeClass"}[r.type]
        report(f"{what} '{r.name}' lets IMDS responses travel {fmt(hops)} hops; at most {fmt(limit)} "
               f"(a pod one hop beyond the node would reach the node role's credentials) (CKV_AWS_341)")


lt_hop_limit = resource_policy(
    "launch-template-imds-hop-limit",
    # EC2 instances are judged too (issue 15).
    "Launch templates and EC2NodeClasses keep the IMDS hop limit at most maxHopLimit (default 1: pods get credentials "
    "from Pod Identity, never the node role's from IMDS; EKS best practices, Checkov CKV_AWS_341).",
    _hop_limit, types=NODE_TYPES,
    schema={"maxHopLimit": {"type": "integer", "minimum": 1, "default": 1}})


def _ebs_encrypted(r: Res, cfg: dict, report) -> None:
    if r.type == EC2_INSTANCE:
        mappings = [("rootBlockDevice", r.get("rootBlockDevice"), "/dev/root")] + [
            (f"ebsBlockDevices[{i}]", m, m.get("deviceName") if isinstance(m, dict) else None)
            for i, m in enumerate(as_list(r.get("ebsBlockDevices")))]
        for where, m, device in mappings:
            if m is UNKNOWN:
                report.unjudged(_node_label(r), where)
            elif where == "rootBlockDevice" and m is None:
                report(f"EC2 instance '{r.name}' root volume is not encrypted (no rootBlockDevice.encrypted) (CKV_AWS_8)")
            elif isinstance(m, dict):
                enc = m.get("encrypted")
                if enc is UNKNOWN:
                    report.unjudged(_node_label(r), f"{where}.encrypted")
                elif not truthy(enc):
                    report(f"EC2 instance '{r.name}' volume {device} is not encrypted (CKV_AWS_8)")
        return
    base = ("spec", "blockDeviceMappings") if r.type == EC2NODECLASS else ("blockDeviceMappings",)
    mappings = r.get(*base)
    if mappings is UNKNOWN:
        report.unjudged(_node_label(r), ".".join(base))
        return
    # EC2NodeClass without blockDeviceMappings: Karpenter's AMI-family default root volume is encrypted
    # (aws/karpenter-provider-aws v1.14.1 pkg/providers/amifamily/resolver.go DefaultEBS: Encrypted true).
    for i, m in enumerate(as_list(mappings)):
        if m is UNKNOWN or (isinstance(m, dict) and m.get("ebs") is UNKNOWN):
            report.unjudged(_node_label(r), f"{'.'.join(base)}[{i}]")
            continue
        if not isinstance(m, dict) or not isinstance(m.get("ebs"), dict):
            continue
        enc = m["ebs"].get("encrypted")
        if enc is UNKNOWN:
            report.unjudged(_node_label(r), f"{'.'.join(base)}[{i}].ebs.encrypted")
        elif not truthy(enc):
            what = "EC2NodeClass" if r.type == EC2NODECLASS else "launch template"
            root = " (the root volume)" if m.get("rootVolume") is True else ""
            report(f"{what} '{r.name}' volume {m.get('deviceName')}{root} is not encrypted (CKV_AWS_8)")


lt_ebs_encrypted = resource_policy(
    "launch-template-ebs-encrypted",
    # EC2 instances and EC2NodeClasses (the GPU nodes' root volumes) are judged too (issue 15).
    "Launch template EBS volumes are encrypted (Checkov CKV_AWS_8, Trivy AVD-AWS-0131).",
    _ebs_encrypted, types=NODE_TYPES)


# --- ALB and WAF ----------------------------------------------------------------------

LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"


def _is_alb(r: Res) -> bool:
    return r.get("loadBalancerType", default="application") == "application"


def _redirects_to_https(a: Any) -> bool:
    return isinstance(a, dict) and a.get("type") == "redirect" and get(a, "redirect", "protocol") == "HTTPS"


def _rules_of(resources: list[Res], listener: Res) -> list[Res]:
    return [x for x in of_type(resources, LISTENER_RULE) if refers_to(x, "listenerArn", listener)]


def _https_only(r: Res, cfg: dict, report) -> None:
    protocol = r.get("protocol")
    if protocol is UNKNOWN:
        report.unjudged(f"listener '{r.name}'", "protocol")
        return
    if protocol != "HTTP":
        return
    actions = r.get("defaultActions")
    if actions is UNKNOWN or UNKNOWN in as_list(actions):
        report.unjudged(f"listener '{r.name}'", "defaultActions")
        return
    actions = as_list(actions)
    redirects = [a for a in actions if _redirects_to_https(a)]
    if not actions or len(redirects) != len(actions):
        report(f"listener '{r.name}' serves plain HTTP; an HTTP listener may only redirect to HTTPS (CKV_AWS_2, CKV2_AWS_20)")


alb_https_only = resource_policy(
    "alb-https-only",
    "ALB listeners use HTTPS; HTTP listeners only redirect to HTTPS (Checkov CKV_AWS_2, CKV2_AWS_20; Trivy AVD-AWS-0054).",
    _https_only, types=[LISTENER])


def _http_rules(resources: list[Res], cfg: dict, report) -> None:
    for r in of_type(resources, LISTENER):
        if r.get("protocol") is UNKNOWN:
            if _rules_of(resources, r):
                report.unjudged(f"listener '{r.name}'", "protocol", r.urn)
            continue
        if r.get("protocol") != "HTTP":
            continue
        # A forward in a rule of the HTTP listener serves plain HTTP as much as a forwarding default action.
        for rule in _rules_of(resources, r):
            acts = rule.get("actions")
            if acts is UNKNOWN or UNKNOWN in as_list(acts):
                report.unjudged(f"listener rule '{rule.name}'", "actions", rule.urn)
                continue
            plain_ = [a.get("type") for a in as_list(acts) if isinstance(a, dict)
                      and a.get("type") in ("forward", "authenticate-oidc", "authenticate-cognito")]
            if plain_:
                report(f"listener rule '{rule.name}' on HTTP listener '{r.name}' forwards plain HTTP ({', '.join(plain_)}); "
                       f"rules of an HTTP listener may only redirect to HTTPS or answer fixed responses (CKV2_AWS_20)",
                       rule.urn)
    for rule in of_type(resources, LISTENER_RULE):
        if rule.get("listenerArn") is UNKNOWN and not rule.prop_deps.get("listenerArn"):
            report.unjudged(f"listener rule '{rule.name}'", "listenerArn", rule.urn)


alb_http_rules = stack_policy(
    "alb-http-listener-rules",
    "Listener rules on an HTTP listener only redirect to HTTPS or answer fixed responses, never forward (Checkov "
    "CKV2_AWS_20).",
    _http_rules, types=[LISTENER, LISTENER_RULE])


def _tls_policy(r: Res, cfg: dict, report) -> None:
    if r.get("protocol") is UNKNOWN:
        report.unjudged(f"listener '{r.name}'", "protocol")
        return
    if r.get("protocol") not in ("HTTPS", "TLS"):
        return
    policy = r.get("sslPolicy")
    if policy is UNKNOWN:
        report.unjudged(f"listener '{r.name}'", "sslPolicy")
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


def _lb_type_unknown(r: Res, report) -> bool:
    if r.get("loadBalancerType") is UNKNOWN:
        report.unjudged(f"load balancer '{r.name}'", "loadBalancerType")
        return True
    return False


def _access_logs(r: Res, cfg: dict, report) -> None:
    if _lb_type_unknown(r, report) or not _is_alb(r):
        return
    logs = r.get("accessLogs")
    if logs is UNKNOWN or (isinstance(logs, dict) and logs.get("enabled") is UNKNOWN):
        report.unjudged(f"load balancer '{r.name}'", "accessLogs" + ("" if logs is UNKNOWN else ".enabled"))
        return
    # A bucket name that is unknown (a bucket created in the same stack) is still a bucket.
    if not (isinstance(logs, dict) and logs.get("enabled") is True and logs.get("bucket") is not None
            and logs.get("bucket") != ""):
        report(f"load balancer '{r.name}' has no access logs (CKV_AWS_91)")


alb_access_logs = resource_policy(
    "alb-access-logs", "Application load balancers write access logs to S3 (Checkov CKV_AWS_91).",
    _access_logs, types=[LB])


def _drop_headers(r: Res, cfg: dict, report) -> None:
    if _lb_type_unknown(r, report) or not _is_alb(r):
        return
    if r.get("dropInvalidHeaderFields") is UNKNOWN:
        report.unjudged(f"load balancer '{r.name}'", "dropInvalidHeaderFields")
    elif r.get("dropInvalidHeaderFields") is not True:
        report(f"load balancer '{r.name}' forwards invalid HTTP headers; set dropInvalidHeaderFields (CKV_AWS_131)")


alb_drop_invalid_headers = resource_policy(
    "alb-drop-invalid-headers",
    "Application load balancers drop invalid header fields (Checkov CKV_AWS_131, Trivy AVD-AWS-0052).",
    _drop_headers, types=[LB])


def _deletion_protection(r: Res, cfg: dict, report) -> None:
    if not cfg.get("required", False):
        return
    if r.get("enableDeletionProtection") is UNKNOWN:
        report.unjudged(f"load balancer '{r.name}'", "enableDeletionProtection")
    elif r.get("enableDeletionProtection") is not True:
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
        if lb.get("internal") is UNKNOWN or lb.get("loadBalancerType") is UNKNOWN:
            report.unjudged(f"load balancer '{lb.name}'", "internal" if lb.get("internal") is UNKNOWN else "loadBalancerType",
                            lb.urn)
            continue
        if not _is_alb(lb) or lb.get("internal") is True:
            continue
        if any(refers_to(a, "resourceArn", lb) for a in assocs):
            continue
        unsure = next((a for a in assocs if a.get("resourceArn") is UNKNOWN and not a.prop_deps.get("resourceArn")), None)
        if unsure is not None:
            report.unjudged(f"internet-facing load balancer '{lb.name}'", f"resourceArn of web ACL association '{unsure.name}'",
                            lb.urn)
        else:
            report(f"internet-facing load balancer '{lb.name}' has no WAF web ACL attached (CKV2_AWS_28)", lb.urn)


waf_attached = stack_policy(
    "waf-attached",
    "Where required (prod), every internet-facing ALB has a WAFv2 web ACL association (Checkov CKV2_AWS_28).",
    _waf_attached, types=[LB], schema={"required": {"type": "boolean", "default": False}})


def _rate_rules(r: Res) -> list[tuple[str, Any, Any, Any, Any]] | None:
    """(rule name, action, limit, evaluation window seconds, scope-down statement) of each rate-based rule,
    from `rules` or `ruleJson`."""
    out = []
    for x in as_list(r.get("rules", default=[])):
        if x is UNKNOWN:
            out.append((None, UNKNOWN, UNKNOWN, UNKNOWN, None))
            continue
        rb = get(x, "statement", "rateBasedStatement") if isinstance(x, dict) else None
        if rb is UNKNOWN or get(x, "statement") is UNKNOWN:
            out.append((x.get("name"), UNKNOWN, UNKNOWN, UNKNOWN, None))
        elif rb:
            out.append((x.get("name"), x.get("action"), get(rb, "limit"), get(rb, "evaluationWindowSec"),
                        get(rb, "scopeDownStatement")))
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
                out.append((x.get("Name"), action, get(rb, "Limit"), get(rb, "EvaluationWindowSec"),
                            get(rb, "ScopeDownStatement")))
    return out


def _scope(statement: Any) -> str:
    """A short description of a scope-down statement (what part of the traffic the rate limit still sees)."""
    if not isinstance(statement, dict) or not statement:
        return "a scope-down statement"
    kind = next(iter(statement))
    inner = statement[kind]
    search = inner.get("searchString") if isinstance(inner, dict) else None
    return f"{kind}" + (f" '{search}'" if isinstance(search, str) else "")


def _waf_rate(r: Res, cfg: dict, report) -> None:
    for key in ("rules", "ruleJson"):
        if r.get(key) is UNKNOWN:
            report.unjudged(f"web ACL '{r.name}'", key)
            return
    maximum = num(cfg.get("maxRequestsPer5Min", 10000))
    rules = _rate_rules(r)
    if rules is None:
        return
    unknown_rules = [i for i, x in enumerate(rules) if UNKNOWN in x[1:4]]
    if not rules:
        report(f"web ACL '{r.name}' has no rate-based rule; one client can flood the GPUs")
        return
    problems = []
    for name, action, limit, window, scope_down in rules:
        if UNKNOWN in (action, limit, window):
            continue
        issues = []
        if not (isinstance(action, dict) and "block" in action):
            issues.append(f"action {', '.join(action) if isinstance(action, dict) and action else '(none)'} instead of block")
        per5 = None if num(limit) is None else num(limit) * 300 / (num(window) or 300)
        if per5 is None or per5 > maximum:
            issues.append(f"limit {fmt(per5) if per5 is not None else '(none)'} requests per 5 minutes above {fmt(maximum)}")
        if scope_down is UNKNOWN:
            issues.append("scope-down statement unknown")
        elif scope_down:
            # A scoped-down rate rule counts only the matching requests (AWS WAF developer guide,
            # "Rate-based rule statement": ScopeDownStatement), e.g. one path: the rest is unlimited.
            issues.append(f"scoped down to {_scope(scope_down)}, so other requests are not counted")
        if not issues:
            return  # one blocking rule within the limit, over all requests, is enough
        problems.append(f"'{name}': {', '.join(issues)}")
    if unknown_rules or any("scope-down statement unknown" in p for p in problems):
        report.unjudged(f"web ACL '{r.name}'", f"rules[{unknown_rules[0]}]" if unknown_rules
                        else "rules[].statement.rateBasedStatement.scopeDownStatement")
        return
    report(f"web ACL '{r.name}' has no blocking rate-based rule within {fmt(maximum)} requests per client per 5 minutes "
           f"({'; '.join(problems)}); one client can flood the GPUs")


waf_rate_limit = resource_policy(
    "waf-rate-limit",
    "Web ACLs include a rate-based rule that blocks a client above `maxRequestsPer5Min` requests per 5 minutes, so one "
    "client cannot exhaust GPU capacity (no Checkov ID; AWS WAF guidance).",
    _waf_rate, types=[WEB_ACL],
    schema={"maxRequestsPer5Min": {"type": "integer", "minimum": 10, "default": 10000}})


# --- containers ------------------------------------------------------------------------

def containers_to_judge(r: Res, report, *, servers_only: bool = False) -> list[tuple[str, dict, bool, str]]:
    """(label, container, is_ecs, path) of a workload or task; reports unjudged when the containers are unknown.
    servers_only: the vLLM server containers only (by image, command line or serving label; never LeaderWorkerSet
    workers, which are Ray members with no HTTP, nor init containers that run to completion)."""
    if r.type == ECS_TASK:
        defs = ecs_containers_or_unjudged(r, report)
        return [(ecs_task_label(r), c, True, f"containerDefinitions[{i}]") for i, c in enumerate(defs)
                if not servers_only or is_ecs_server(c)]
    where = workload_unknown(r)
    if where:
        report.unjudged(workload_label(r), where)
        return []
    if servers_only:
        return [(workload_label(r), c, False, path) for role, _, c, path in serving_containers(r) if role != "worker"]
    return [(workload_label(r), c, False, path) for _, _, c, path in container_paths(r)]


def _api_key(r: Res, cfg: dict, report) -> None:
    for label, c, ecs, path in containers_to_judge(r, report, servers_only=True):
        name = c.get("name")
        argv = container_args(c)
        if ecs:
            if c.get("secrets") is UNKNOWN or c.get("environment") is UNKNOWN:
                report.unjudged(f"{label} container '{name}'", f"{path}.{'secrets' if c.get('secrets') is UNKNOWN else 'environment'}")
                continue
            secret = any(isinstance(s, dict) and s.get("name") == "VLLM_API_KEY" for s in as_list(c.get("secrets")))
            plain_env = any(isinstance(e, dict) and e.get("name") == "VLLM_API_KEY" for e in as_list(c.get("environment")))
        else:
            if c.get("env") is UNKNOWN or UNKNOWN in as_list(c.get("env")):
                report.unjudged(f"{label} container '{name}'", f"{path}.env")
                continue
            env = env_names(c).get("VLLM_API_KEY")
            secret = bool(env and get(env, "valueFrom", "secretKeyRef"))
            plain_env = bool(env and "value" in env)
        literal_flag = has_flag(argv, "--api-key") and not str(flag(argv, "--api-key") or "").startswith("$")
        if plain_env or literal_flag:
            report(f"{label} container '{name}' puts the vLLM API key in plain text; take VLLM_API_KEY from a secret")
        elif not secret and not has_flag(argv, "--api-key"):
            for key in ("command", "args", "entryPoint"):
                if c.get(key) is UNKNOWN:
                    report.unjudged(f"{label} container '{name}'", f"{path}.{key}")
                    break
            else:
                report(f"{label} container '{name}' runs vLLM without an API key; set VLLM_API_KEY from a secret")


vllm_api_key = resource_policy(
    "vllm-api-key-required",
    "vLLM servers require an API key (VLLM_API_KEY from a Kubernetes Secret or ECS secret; no Checkov ID).",
    _api_key, types=[*WORKLOAD_TYPES, ECS_TASK])


# Tags that move: a redeploy or a node replacement may pull a different image (FACTS.md: pin image
# tags; never :latest). Channel names used by vLLM and common registries for rolling builds.
FLOATING_TAGS = ("latest", "nightly", "main", "master", "dev", "develop", "edge", "head", "stable", "rolling",
                 "canary", "unstable", "snapshot")


def _unpinned(image: Any) -> str | None:
    if not isinstance(image, str):
        return None
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest":
        return "uses the latest tag"
    if tag.lower() in FLOATING_TAGS:
        return f"uses the floating tag {tag}"
    return None


def _images_pinned(r: Res, cfg: dict, report) -> None:
    for label, c, _, path in containers_to_judge(r, report):
        if c.get("image") is UNKNOWN:
            report.unjudged(f"{label} container '{c.get('name')}'", f"{path}.image")
            continue
        why = _unpinned(c.get("image"))
        if why:
            report(f"{label} container '{c.get('name')}' image {c.get('image')} {why}; pin a version tag or digest (CKV_K8S_14)")


images_pinned = resource_policy(
    "images-pinned",
    "Container images carry a fixed tag or digest, never latest or none (Checkov CKV_K8S_14, Trivy AVD-KSV-0013).",
    _images_pinned, types=[*WORKLOAD_TYPES, ECS_TASK])


def _privileged(r: Res, cfg: dict, report) -> None:
    for label, c, ecs, path in containers_to_judge(r, report):
        where = unknown_in(c, ("privileged",) if ecs else ("securityContext", "privileged"), path)
        if where:
            report.unjudged(f"{label} container '{c.get('name')}'", where)
            continue
        priv = c.get("privileged") if ecs else get(c, "securityContext", "privileged")
        if priv is True:
            report(f"{label} container '{c.get('name')}' runs privileged (CKV_K8S_16)")


no_privileged = resource_policy(
    "no-privileged-containers",
    "No container runs privileged (Checkov CKV_K8S_16, Trivy AVD-KSV-0017; ECS: AWS Config ECS_CONTAINERS_NONPRIVILEGED).",
    _privileged, types=[*WORKLOAD_TYPES, ECS_TASK])


def _sqs_encrypted(r: Res, cfg: dict, report) -> None:
    sse, key = r.get("sqsManagedSseEnabled"), r.get("kmsMasterKeyId")
    # A key id that is unknown (a KMS key created in the same stack) is still a key: encrypted.
    if sse is True or key is UNKNOWN or key:
        return
    if sse is UNKNOWN:
        report.unjudged(f"SQS queue '{r.name}'", "sqsManagedSseEnabled")
        return
    report(f"SQS queue '{r.name}' is not encrypted at rest; set sqsManagedSseEnabled or kmsMasterKeyId (CKV_AWS_27)")


sqs_encrypted = resource_policy(
    "sqs-encrypted", "SQS queues are encrypted at rest (Checkov CKV_AWS_27, Trivy AVD-AWS-0096).",
    _sqs_encrypted, types=["aws:sqs/queue:Queue"])


def _kms_rotation(r: Res, cfg: dict, report) -> None:
    spec = r.get("customerMasterKeySpec", default="SYMMETRIC_DEFAULT")
    if spec is UNKNOWN:
        report.unjudged(f"KMS key '{r.name}'", "customerMasterKeySpec")
        return
    if spec != "SYMMETRIC_DEFAULT":
        return
    if r.get("enableKeyRotation") is UNKNOWN:
        report.unjudged(f"KMS key '{r.name}'", "enableKeyRotation")
    elif r.get("enableKeyRotation") is not True:
        report(f"KMS key '{r.name}' does not rotate; set enableKeyRotation (CKV_AWS_7)")


kms_rotation = resource_policy(
    "kms-key-rotation", "Symmetric KMS keys rotate yearly (Checkov CKV_AWS_7, Trivy AVD-AWS-0065).",
    _kms_rotation, types=["aws:kms/key:Key"])

POLICIES = [no_public_ip_on_launch, vpc_flow_logs, log_retention, s3_sse_kms, s3_versioning, s3_bpa, s3_tls_only,
            s3_no_wildcard_principal, s3_access_logging, eks_endpoint, eks_logs, eks_secrets, lt_imdsv2, lt_hop_limit,
            lt_ebs_encrypted, alb_https_only, alb_http_rules, alb_tls_policy, alb_access_logs, alb_drop_invalid_headers,
            alb_deletion_protection, waf_attached, waf_rate_limit, vllm_api_key, images_pinned, no_privileged,
            sqs_encrypted, kms_rotation]
