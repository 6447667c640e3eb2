"""Adapter manifest: the tenant -> adapter mapping an ECS task syncs from S3.

One object per model in the adapter store (outside `tenants/`, so no tenant
writer can change it) plus the one grant that lets the serving reader role
read this stack's manifests. The key is content-addressed by the caller, so
a new mapping is a new object and old ones are retained for rollbacks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError

KEY = re.compile(r"^[A-Za-z0-9!_.*'()/-]{1,1024}$")


@dataclass(frozen=True)
class AdapterManifestArgs:
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    reader_role_name: pulumi.Input[str]
    # Prefix the reader role may read (e.g. manifests/ecs/<stack>/).
    manifest_prefix: str
    # model name -> (object key, TSV body "adapter<TAB>tenant" per line)
    manifests: Mapping[str, tuple[str, str]]
    tags: dict[str, str] = field(default_factory=dict)


def validate_adapter_manifest_args(args: AdapterManifestArgs) -> None:
    problems = []
    if not args.manifest_prefix.endswith("/") or args.manifest_prefix.startswith(("/", "tenants/")):
        problems.append(f"manifest_prefix: got {args.manifest_prefix!r}; a folder (ending in '/') outside tenants/")
    if not args.manifests:
        problems.append("manifests: got none; give at least one model's manifest")
    for model, (key, _) in args.manifests.items():
        if not key.startswith(args.manifest_prefix) or not KEY.match(key):
            problems.append(f"manifests[{model!r}]: got key {key!r}; must be a safe S3 key under {args.manifest_prefix}")
    if problems:
        raise ArgsError("AdapterManifest", problems)


class AdapterManifest(pulumi.ComponentResource):
    def __init__(self, name: str, args: AdapterManifestArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_adapter_manifest_args(args)
        super().__init__("llmserving:adapter_manifest:AdapterManifest", name, {}, opts)
        aws.iam.RolePolicy(
            f"{name}-read", name="ecs-adapter-manifests", role=args.reader_role_name,
            policy=pulumi.Output.from_input(args.bucket_arn).apply(lambda arn: json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Sid": "ReadEcsAdapterManifests", "Effect": "Allow", "Action": "s3:GetObject",
                    "Resource": f"{arn}/{args.manifest_prefix}*"}]}, sort_keys=True)),
            opts=pulumi.ResourceOptions(parent=self))
        for model, (key, body) in sorted(args.manifests.items()):
            aws.s3.BucketObjectv2(
                f"{name}-{model}", bucket=args.bucket_name, key=key, content=body,
                content_type="text/tab-separated-values", server_side_encryption="aws:kms",
                kms_key_id=args.kms_key_arn, bucket_key_enabled=True, tags={**args.tags, "model": model},
                # A rollback's task definition still names the old manifest.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        self.keys = {m: k for m, (k, _) in args.manifests.items()}
        self.register_outputs({"keys": self.keys})
