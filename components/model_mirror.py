"""ModelMirror: the stack's S3 mirror of model weights and who may read or write which prefix.

Layout: `s3://<bucket>/<source>/<revision>/` holds one Hub revision of one
model (config, tokenizer, the weight files vLLM loads, and the mirror's
completion marker), written once by the model's mirror job
(components/mirror_script.py) and streamed by vLLM at start
(`--load-format runai_streamer`, components/vllm_workload.py).

Bucket safety as the adapter store (FACTS.md): SSE-KMS with a bucket key,
versioning, all four Block Public Access flags, bucket-owner-enforced
ownership, the TLS-only bucket policy of components/adapter_store.py, server
access logs into the log archive, protected. Old revisions: the mirror job
deletes revisions of a source beyond the newest few it keeps, and the
lifecycle expires noncurrent versions after `noncurrent_version_days`
(deleted or overwritten objects stay recoverable that long), removes the
expired delete markers left behind, and aborts stale multipart uploads.

IAM, per model (models are few; tenants never become resources here):
- a writer role for the model's mirror job: list, read, write and delete
  under `<source>/` only (the job prunes old revisions of its source);
- a reader role for the model's serving pods/tasks: GetObject under
  `<source>/<revision>/` and ListBucket with `s3:prefix` under it (the Run:ai
  streamer and vLLM list the prefix with ListObjectsV2 and read with
  GetObject: run-ai/runai-model-streamer py/runai_model_streamer_s3/files/files.py
  at 0.15.0), kms:Decrypt through S3. A pod of one model (or one stack) can
  read no other prefix.
- `extra_readers`: existing roles (the adapter store's reader, which the LoRA
  base model's pods and tasks already use) get the same read of their model's
  prefix as an inline policy instead of a new role.
Trust: EKS Pod Identity for one service account of one cluster
(components/iam_trust.py), or ECS tasks of this account.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.adapter_store import bucket_policy, kms_bucket
from components.errors import ArgsError, out_of_range
from components.iam_trust import pod_identity_trust

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
# The script every mirror job runs (python3 -c), read from its file so tests run the same text.
MIRROR_SCRIPT = (Path(__file__).with_name("mirror_script.py")).read_text()
# The completion marker the script writes last (components/mirror_script.py MARKER).
MIRROR_MARKER = ".llmserving-mirror"


def mirror_prefix(source: str, revision: str) -> str:
    return f"{source}/{revision}/"


def mirror_uri(bucket: str, source: str, revision: str) -> str:
    return f"s3://{bucket}/{mirror_prefix(source, revision)}"


def mirror_environment(*, source: str, revision: str, bucket: str, prefix: str, load_format: str, region: str,
                       concurrency: int, part_mib: int, keep_revisions: int) -> dict[str, str]:
    """What components/mirror_script.py reads (HF_TOKEN comes from a secret, never here)."""
    return {"MIRROR_SOURCE": source, "MIRROR_REVISION": revision, "MIRROR_BUCKET": bucket, "MIRROR_PREFIX": prefix,
            # pt checkpoints are copied for the pod-cache fallback; everything else is safetensors.
            "MIRROR_FORMAT": "pt" if load_format == "pt" else "safetensors",
            "MIRROR_CONCURRENCY": str(concurrency), "MIRROR_PART_MIB": str(part_mib),
            "MIRROR_KEEP_REVISIONS": str(keep_revisions), "AWS_REGION": region}


@dataclass(frozen=True)
class MirroredModel:
    name: str
    source: str
    revision: str
    # EKS: (namespace, reader service account, mirror service account); None on ECS.
    service_accounts: Optional[tuple[str, str, str]] = None


@dataclass(frozen=True)
class ModelMirrorArgs:
    bucket_name: str
    account_id: str
    region: str
    log_bucket_name: pulumi.Input[str]
    models: tuple[MirroredModel, ...]
    # EKS: the cluster's ARN (known before it exists) and name; None: ECS.
    cluster_arn: Optional[str] = None
    cluster_name: Optional[pulumi.Input[str]] = None
    # model name -> (role name, role id) of an existing role its workloads run as.
    extra_readers: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    noncurrent_version_days: int = 30
    abort_incomplete_upload_days: int = 7
    kms_deletion_window_days: int = 30
    protect: bool = True
    tags: dict[str, str] = field(default_factory=dict)


def validate_model_mirror_args(args: ModelMirrorArgs) -> None:
    p: list[str] = []
    if not BUCKET_NAME.match(args.bucket_name) or "--" in args.bucket_name:
        p.append(f"bucket_name: got {args.bucket_name!r}; 3-63 lowercase letters, digits and single '-'")
    if not ACCOUNT_ID.match(args.account_id):
        p.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    names = [m.name for m in args.models]
    for m in args.models:
        if not MODEL_NAME.match(m.name):
            p.append(f"models: name {m.name!r} is not a DNS label")
        if not HF_REPO.match(m.source):
            p.append(f"models[{m.name}].source: got {m.source!r}; a Hub repository id such as org/name")
        if not REVISION.match(m.revision):
            p.append(f"models[{m.name}].revision: got {m.revision!r}; a commit SHA (or a branch name outside prod)")
        if (m.service_accounts is None) != (args.cluster_arn is None):
            p.append(f"models[{m.name}].service_accounts: EKS (cluster_arn given) needs the model's service accounts; "
                     f"ECS has none")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        p.append(f"models: {', '.join(dupes)} repeat")
    for name in args.extra_readers:
        if name not in names:
            p.append(f"extra_readers: {name!r} is not a mirrored model")
    p += out_of_range("noncurrent_version_days", args.noncurrent_version_days, 1, 3650)
    p += out_of_range("kms_deletion_window_days", args.kms_deletion_window_days, 7, 30, who="KMS allows")
    if p:
        raise ArgsError("ModelMirror", p)


def _doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def reader_policy(bucket_arn: str, key_arn: str, source: str, revision: str, region: str) -> dict:
    prefix = mirror_prefix(source, revision)
    return _doc(
        {"Sid": "ReadModelRevision", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{prefix}*"},
        # A missing s3:prefix matches no pattern: a listing of the whole bucket is refused (fail closed).
        {"Sid": "ListModelRevision", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}}},
        {"Sid": "DecryptViaS3", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    )


def writer_policy(bucket_arn: str, key_arn: str, source: str, region: str) -> dict:
    root = f"{source}/"
    return _doc(
        {"Sid": "WriteModelSource", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"],
         "Resource": f"{bucket_arn}/{root}*"},
        {"Sid": "ListModelSource", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [root, f"{root}*"]}}},
        {"Sid": "EncryptViaS3", "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    )


def ecs_task_trust(account_id: str) -> dict:
    # ECS sends aws:SourceAccount for task roles (ECS developer guide, task IAM role, confused deputy).
    return _doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}})


def role_name(bucket_name: str, model: str, kind: str) -> str:
    """`<bucket>-<model>-<kind>` within IAM's 64 characters (a hash keeps long names unique)."""
    import hashlib

    full = f"{bucket_name}-{model}-{kind}"
    if len(full) <= 64:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:64 - len(kind) - 10].rstrip('-')}-{digest}-{kind}"


def _json(fn, *outputs) -> pulumi.Output[str]:
    return pulumi.Output.all(*outputs).apply(lambda vals: json.dumps(fn(*vals), sort_keys=True))


class ModelMirror(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    reader_role_arns: dict[str, pulumi.Output[str]]
    writer_role_arns: dict[str, pulumi.Output[str]]
    # What a model's workloads and mirror job must wait for (roles, policies, Pod Identity associations).
    ready: dict[str, list[pulumi.Resource]]

    def __init__(self, name: str, args: ModelMirrorArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_model_mirror_args(args)
        super().__init__("llmserving:model_mirror:ModelMirror", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        key, bucket, pab, sse = kms_bucket(
            self, name, bucket_name=args.bucket_name, account_id=args.account_id, what="model weights",
            kms_deletion_window_days=args.kms_deletion_window_days, protect=args.protect, tags=tags,
            log_bucket_name=args.log_bucket_name, abort_incomplete_upload_days=args.abort_incomplete_upload_days,
            noncurrent_rule={"id": "expire-old-revision-versions",
                             "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days},
                             "expiration": {"expired_object_delete_marker": True}})
        policy = aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id,
                                     policy=json.dumps(bucket_policy(f"arn:aws:s3:::{args.bucket_name}", args.account_id),
                                                       sort_keys=True),
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=[pab]))

        self.reader_role_arns, self.writer_role_arns, self.ready = {}, {}, {}
        for m in args.models:
            deps: list[pulumi.Resource] = [policy, sse]
            for kind in ("weights", "mirror"):
                if args.cluster_arn is not None and m.service_accounts is not None:
                    ns, reader_sa, mirror_sa = m.service_accounts
                    trust = pod_identity_trust(args.cluster_arn, ns, reader_sa if kind == "weights" else mirror_sa)
                else:
                    trust = ecs_task_trust(args.account_id)
                if kind == "weights" and m.name in args.extra_readers:
                    extra = aws.iam.RolePolicy(
                        f"{name}-{m.name}-weights", role=args.extra_readers[m.name],
                        policy=_json(lambda b, k, mm=m: reader_policy(b, k, mm.source, mm.revision, args.region),
                                     bucket.arn, key.arn), opts=child)
                    deps.append(extra)
                    continue
                role = aws.iam.Role(
                    f"{name}-{m.name}-{kind}", name=role_name(args.bucket_name, m.name, kind),
                    description=(f"vLLM {m.name} streams {m.source}@{m.revision[:12]} from the mirror (read-only)"
                                 if kind == "weights" else f"Mirror job of {m.name}: writes {m.source}/ in the mirror"),
                    assume_role_policy=json.dumps(trust, sort_keys=True), max_session_duration=3600 * 12,
                    tags=tags, opts=child)
                fn = ((lambda b, k, mm=m: reader_policy(b, k, mm.source, mm.revision, args.region)) if kind == "weights"
                      else (lambda b, k, mm=m: writer_policy(b, k, mm.source, args.region)))
                deps.append(aws.iam.RolePolicy(f"{name}-{m.name}-{kind}", role=role.id, policy=_json(fn, bucket.arn, key.arn),
                                               opts=child))
                (self.reader_role_arns if kind == "weights" else self.writer_role_arns)[m.name] = role.arn
                if args.cluster_arn is not None and m.service_accounts is not None:
                    ns, reader_sa, mirror_sa = m.service_accounts
                    deps.append(aws.eks.PodIdentityAssociation(
                        f"{name}-{m.name}-{kind}", cluster_name=args.cluster_name, namespace=ns,
                        service_account=reader_sa if kind == "weights" else mirror_sa, role_arn=role.arn, tags=tags,
                        opts=child))
            self.ready[m.name] = deps

        self.bucket_name = bucket.bucket
        self.configured_bucket_name = args.bucket_name
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.prefixes = {m.name: mirror_prefix(m.source, m.revision) for m in args.models}
        self.register_outputs({"bucketName": self.bucket_name, "prefixes": self.prefixes,
                               "readerRoleArns": self.reader_role_arns, "writerRoleArns": self.writer_role_arns})
