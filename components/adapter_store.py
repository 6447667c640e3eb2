"""Adapter store: the S3 home of customers' LoRA adapters, one prefix per tenant.

Layout: `s3://<bucket>/tenants/<tenant id>/<adapter name>/...`.

Safety defaults (FACTS.md): SSE-KMS with a bucket key, versioning, all four
Block Public Access flags, a TLS-only bucket policy, server access logs to a
separate log bucket, noncurrent versions expire, the bucket is protected.

No `*` principal anywhere. The TLS-only rule is a Deny whose principal is
this account (`arn:aws:iam::<account>:root`), which in a resource policy
matches every IAM principal of the account; no other account is granted
anything (no Allow names one), and Block Public Access (RestrictPublicBuckets)
refuses anonymous and cross-account access, so a `*` Deny would add nothing
but a wildcard. Missing transport information also denies (a `Null` check),
so the rule fails closed.

Tenants are data, not resources: 2,000 tenants must not become 2,000 roles
(each resource costs preview time and an IAM quota slot). One writer role
serves every tenant: a tenant's upload principal (an IAM role or an
IdP-federated session carrying the principal tag `tenant=<id>`) assumes it
with the session tag `tenant=<id>`; the trust policy requires the session tag
to equal the caller's own tag, so no principal can open a session for another
tenant. The role's policy allows only `tenants/${aws:PrincipalTag/tenant}/*`.
Every Allow also requires the tag to be present
(`Null: {aws:PrincipalTag/tenant: false}`), and the trust policy refuses an
AssumeRole without it, so an untagged session gets nothing (fail closed). No negated operators are used. The resource count is constant in
the number of tenants; tests show it and evaluate the policies with a real
IAM evaluator (tests/iam_sim.py).

The read-only role is for serving workloads: trusted by ECS tasks
(`ecs-tasks.amazonaws.com`, limited to this account by `aws:SourceAccount`,
which ECS sends: ECS developer guide, task IAM role, confused deputy) and, on
EKS, by Pod Identity (`pods.eks.amazonaws.com`) for one service account of one
cluster through the session tags Pod Identity sends (components/iam_trust.py
says why not `aws:SourceAccount`); it reads every tenant's prefix (a vLLM
server hosts many tenants' adapters).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError, out_of_range
from components.iam_trust import pod_identity_trust

TENANT_ROOT = "tenants/"
TENANT_TAG = "tenant"
SAFE_TENANT_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(root|role/[A-Za-z0-9+=,.@_/-]+|user/[A-Za-z0-9+=,.@_/-]+)$")


@dataclass(frozen=True)
class AdapterStoreArgs:
    bucket_name: str
    account_id: str
    region: str
    # Bucket that receives S3 server access logs (SSE-S3; see LogArchive).
    log_bucket_name: pulumi.Input[str]
    # Validated as safe prefixes; they create no resources (tenants are data).
    tenant_ids: tuple[str, ...] = ()
    # Who may assume the writer role (with a `tenant` session tag equal to
    # their own `tenant` principal tag); empty: principals of this account.
    writer_principal_arns: tuple[str, ...] = ()
    noncurrent_version_days: int = 30
    abort_incomplete_upload_days: int = 7
    kms_deletion_window_days: int = 30
    protect: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # EKS: (cluster ARN, namespace, service account) whose pods read adapters; None: ECS only.
    pod_identity: Optional[tuple[str, str, str]] = None


def tenant_prefix(tenant_id: str) -> str:
    return f"{TENANT_ROOT}{tenant_id}/"


def validate_adapter_store_args(args: AdapterStoreArgs) -> None:
    problems = []
    if not BUCKET_NAME.match(args.bucket_name) or "--" in args.bucket_name:
        problems.append(f"bucket_name: got {args.bucket_name!r}; must be 3-63 lowercase letters, digits and single '-' "
                        f"(an S3 bucket name without dots)")
    if not ACCOUNT_ID.match(args.account_id):
        problems.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    for t in args.tenant_ids:
        if not SAFE_TENANT_ID.match(t):
            problems.append(f"tenant_ids: got {t!r}; a tenant id becomes the prefix {TENANT_ROOT}<id>/ and must be "
                            f"lowercase letters, digits and '-' (1-63, no '/', '*', '..' or spaces)")
    dupes = sorted({t for t in args.tenant_ids if args.tenant_ids.count(t) > 1})
    if dupes:
        problems.append(f"tenant_ids: {', '.join(dupes)} repeat")
    for p in args.writer_principal_arns:
        if not IAM_PRINCIPAL.match(p):
            problems.append(f"writer_principal_arns: got {p!r}; must be an IAM role, user or account root ARN (no wildcards)")
    problems += out_of_range("noncurrent_version_days", args.noncurrent_version_days, 1, 3650)
    problems += out_of_range("kms_deletion_window_days", args.kms_deletion_window_days, 7, 30, who="KMS allows")
    if problems:
        raise ArgsError("AdapterStore", problems)


def _doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


HAS_TENANT_TAG = {"Null": {f"aws:PrincipalTag/{TENANT_TAG}": "false"}}


def bucket_policy(bucket_arn: str, account_id: str) -> dict:
    account = {"AWS": f"arn:aws:iam::{account_id}:root"}
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return _doc(
        {"Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": account, "Action": "s3:*", "Resource": resources,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        # Fail closed: a request without transport information is refused too.
        {"Sid": "DenyUnknownTransport", "Effect": "Deny", "Principal": account, "Action": "s3:*", "Resource": resources,
         "Condition": {"Null": {"aws:SecureTransport": "true"}}},
        {"Sid": "DenyOldTls", "Effect": "Deny", "Principal": account, "Action": "s3:*", "Resource": resources,
         "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
    )


def reader_trust_policy(account_id: str, pod_identity: Optional[tuple[str, str, str]] = None) -> dict:
    statements = [{
        "Sid": "EcsTasks", "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }]
    if pod_identity is not None:
        statements.append({**pod_identity_trust(*pod_identity)["Statement"][0], "Sid": "EksPodIdentity"})
    return _doc(*statements)


def reader_policy(bucket_arn: str, key_arn: str) -> dict:
    return _doc(
        {"Sid": "ReadAdapters", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"{bucket_arn}/{TENANT_ROOT}*"},
        {"Sid": "ListAdapters", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{TENANT_ROOT}*"]}}},
        {"Sid": "DecryptAdapters", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn},
    )


def writer_trust_policy(account_id: str, principals: tuple[str, ...]) -> dict:
    who = list(principals) or [f"arn:aws:iam::{account_id}:root"]
    return _doc({
        "Sid": "TaggedTenantSessionsOnly", "Effect": "Allow", "Principal": {"AWS": who},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        # The session's tenant must be the caller's own: a principal tagged
        # tenant=acme cannot open a writer session for globex, and an
        # untagged caller cannot open one at all (the variable does not
        # resolve, so the condition fails closed).
        "Condition": {"Null": {f"aws:RequestTag/{TENANT_TAG}": "false"},
                      "ForAllValues:StringEquals": {"aws:TagKeys": [TENANT_TAG]},
                      "StringEquals": {f"aws:RequestTag/{TENANT_TAG}": f"${{aws:PrincipalTag/{TENANT_TAG}}}"}},
    })


def writer_policy(bucket_arn: str, key_arn: str, region: str) -> dict:
    own = f"{TENANT_ROOT}${{aws:PrincipalTag/{TENANT_TAG}}}/"
    return _doc(
        {"Sid": "OwnPrefixObjects", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject",
                    "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": f"{bucket_arn}/{own}*", "Condition": HAS_TENANT_TAG},
        {"Sid": "OwnPrefixListing", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {**HAS_TENANT_TAG, "StringLike": {"s3:prefix": [own, f"{own}*"]}}},
        # With an S3 bucket key the KMS encryption context is the bucket ARN,
        # so the key grant cannot be narrowed to a prefix; S3 enforces that.
        {"Sid": "EncryptViaS3", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
         "Resource": key_arn,
         "Condition": {**HAS_TENANT_TAG, "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    )


def key_policy(account_id: str) -> dict:
    # The account administers the key and IAM policies grant its use.
    return _doc({"Sid": "AccountAdministers", "Effect": "Allow",
                 "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"})


def _json(fn, *outputs: Any) -> pulumi.Output[str]:
    return pulumi.Output.all(*outputs).apply(lambda vals: json.dumps(fn(*vals), sort_keys=True))


def kms_bucket(parent: pulumi.Resource, name: str, *, bucket_name: str, account_id: str, what: str,
               kms_deletion_window_days: int, protect: bool, tags: dict[str, str], log_bucket_name: str,
               noncurrent_rule: dict, abort_incomplete_upload_days: int):
    """A bucket with the stack's S3 safety defaults (FACTS.md): its own rotating KMS key (SSE-KMS with a
    bucket key), owner-enforced objects, all four Block Public Access flags, versioning, access logs to
    `log_bucket_name`, and a lifecycle of the caller's rule for old versions plus the abort of incomplete
    multipart uploads. Returns (key, bucket, public access block, encryption) for the caller's policy."""
    child = pulumi.ResourceOptions(parent=parent)
    keep = pulumi.ResourceOptions(parent=parent, protect=protect)
    key = aws.kms.Key(f"{name}-key", description=f"SSE-KMS for {what} in {bucket_name}",
                      enable_key_rotation=True, deletion_window_in_days=kms_deletion_window_days,
                      policy=json.dumps(key_policy(account_id), sort_keys=True), tags=tags, opts=keep)
    aws.kms.Alias(f"{name}-key", name=f"alias/{bucket_name}", target_key_id=key.key_id, opts=child)
    bucket = aws.s3.Bucket(f"{name}-bucket", bucket=bucket_name, force_destroy=False, tags=tags, opts=keep)
    aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id,
                                   rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
    pab = aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
                                         block_public_policy=True, ignore_public_acls=True,
                                         restrict_public_buckets=True, opts=child)
    aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                            versioning_configuration={"status": "Enabled"}, opts=keep)
    sse = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-sse", bucket=bucket.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key.arn},
                "bucket_key_enabled": True}], opts=child)
    aws.s3.BucketLogging(f"{name}-logging", bucket=bucket.id, target_bucket=log_bucket_name,
                         target_prefix=f"s3/{bucket_name}/", opts=child)
    aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=[
        {"status": "Enabled", "filter": {"prefix": ""}, **noncurrent_rule},
        {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {"prefix": ""},
         "abort_incomplete_multipart_upload": {"days_after_initiation": abort_incomplete_upload_days}},
    ], opts=child)
    return key, bucket, pab, sse


class AdapterStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: AdapterStoreArgs, opts: pulumi.ResourceOptions | None = None):
        validate_adapter_store_args(args)
        super().__init__("llmserving:adapter_store:AdapterStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        key, bucket, pab, _ = kms_bucket(
            self, name, bucket_name=args.bucket_name, account_id=args.account_id, what="LoRA adapters",
            kms_deletion_window_days=args.kms_deletion_window_days, protect=args.protect, tags=tags,
            log_bucket_name=args.log_bucket_name, abort_incomplete_upload_days=args.abort_incomplete_upload_days,
            noncurrent_rule={"id": "expire-noncurrent-versions",
                             "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days}})
        aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id,
                            # From the configured name (known at preview time, so the
                            # policy pack can judge it), not from bucket.arn.
                            policy=json.dumps(bucket_policy(f"arn:aws:s3:::{args.bucket_name}", args.account_id),
                                              sort_keys=True),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[pab]))

        reader = aws.iam.Role(f"{name}-reader", name=f"{args.bucket_name}-reader"[:64],
                              description="Serving workloads read LoRA adapters (Pod Identity, ECS tasks)",
                              assume_role_policy=json.dumps(reader_trust_policy(args.account_id, args.pod_identity),
                                                                sort_keys=True),
                              tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-reader", role=reader.id, policy=_json(reader_policy, bucket.arn, key.arn), opts=child)

        writer = aws.iam.Role(f"{name}-writer", name=f"{args.bucket_name}-writer"[:64],
                              description="Tenant adapter uploads; session tag `tenant` selects the only writable prefix",
                              assume_role_policy=json.dumps(
                                  writer_trust_policy(args.account_id, args.writer_principal_arns), sort_keys=True),
                              max_session_duration=3600, tags=tags, opts=child)
        aws.iam.RolePolicy(f"{name}-writer", role=writer.id,
                           policy=_json(lambda b, k: writer_policy(b, k, args.region), bucket.arn, key.arn), opts=child)

        self.bucket_name = bucket.bucket
        # Known before deployment (deterministic), for plain-text settings such as env vars.
        self.configured_bucket_name = args.bucket_name
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.reader_role_arn = reader.arn
        self.reader_role_name = reader.name
        self.writer_role_arn = writer.arn
        self.tenant_prefixes = {t: tenant_prefix(t) for t in args.tenant_ids}
        self.register_outputs({
            "bucketName": self.bucket_name, "bucketArn": self.bucket_arn, "kmsKeyArn": self.kms_key_arn,
            "readerRoleArn": self.reader_role_arn, "writerRoleArn": self.writer_role_arn,
            "tenantPrefixes": self.tenant_prefixes,
        })
