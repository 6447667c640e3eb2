"""Log archive: the S3 bucket that receives ALB access logs and S3 server access logs.

Both log services write only to buckets encrypted with SSE-S3 (not SSE-KMS),
so this bucket is separate from the adapter store. Writers are granted by
name: the S3 logging service (for this account's buckets) and the Elastic
Load Balancing log writer of the region (an AWS account in Regions opened
before August 2022, the log-delivery service principal elsewhere). No `*`
principal; plain HTTP from this account is denied, and a request without
transport information is denied too (fail closed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError, out_of_range

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ALB_PREFIX = "alb"
S3_PREFIX = "s3"


@dataclass(frozen=True)
class LogArchiveArgs:
    bucket_name: str
    account_id: str
    region: str
    # ELB log-writer account of the region; None: the log-delivery service principal.
    elb_log_account_id: Optional[str]
    retention_days: int = 90
    protect: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def validate_log_archive_args(args: LogArchiveArgs) -> None:
    problems = []
    if not BUCKET_NAME.match(args.bucket_name) or "--" in args.bucket_name:
        problems.append(f"bucket_name: got {args.bucket_name!r}; must be 3-63 lowercase letters, digits and single '-'")
    if not re.match(r"^\d{12}$", args.account_id):
        problems.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    if args.elb_log_account_id is not None and not re.match(r"^\d{12}$", args.elb_log_account_id):
        problems.append(f"elb_log_account_id: got {args.elb_log_account_id!r}; must be a 12-digit AWS account id or None")
    problems += out_of_range("retention_days", args.retention_days, 1, 3653)
    if problems:
        raise ArgsError("LogArchive", problems)


def log_bucket_policy(bucket_arn: str, account_id: str, region: str, elb_log_account_id: Optional[str]) -> dict:
    account = {"AWS": f"arn:aws:iam::{account_id}:root"}
    elb = ({"AWS": f"arn:aws:iam::{elb_log_account_id}:root"} if elb_log_account_id
           else {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"})
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "S3ServerAccessLogs", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"{bucket_arn}/{S3_PREFIX}/*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        {"Sid": "AlbAccessLogs", "Effect": "Allow", "Principal": elb, "Action": "s3:PutObject",
         "Resource": f"{bucket_arn}/{ALB_PREFIX}/AWSLogs/{account_id}/*"},
        {"Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": account, "Action": "s3:*", "Resource": resources,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyUnknownTransport", "Effect": "Deny", "Principal": account, "Action": "s3:*", "Resource": resources,
         "Condition": {"Null": {"aws:SecureTransport": "true"}}},
    ]}


class LogArchive(pulumi.ComponentResource):
    def __init__(self, name: str, args: LogArchiveArgs, opts: pulumi.ResourceOptions | None = None):
        validate_log_archive_args(args)
        super().__init__("llmserving:log_archive:LogArchive", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket=args.bucket_name, force_destroy=False, tags=dict(args.tags),
                               opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        pab = aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
                                             block_public_policy=True, ignore_public_acls=True,
                                             restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-sse", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=child)
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=[
            {"id": "expire-logs", "status": "Enabled", "filter": {"prefix": ""},
             "expiration": {"days": args.retention_days},
             "noncurrent_version_expiration": {"noncurrent_days": 1}},
        ], opts=child)
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=bucket.id,
            # Built from the configured name, not bucket.arn: the policy is then
            # known at preview time and the policy pack can judge it.
            policy=json.dumps(log_bucket_policy(f"arn:aws:s3:::{args.bucket_name}", args.account_id, args.region,
                                                args.elb_log_account_id), sort_keys=True),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pab]))
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.alb_prefix = ALB_PREFIX
        self.s3_prefix = S3_PREFIX
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn})
