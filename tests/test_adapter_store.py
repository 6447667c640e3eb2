"""Adapter store: S3 safety defaults, no `*` principal, fail-closed tenant isolation by policy EVALUATION."""

from __future__ import annotations

import json

import pytest

from components.adapter_store import AdapterStore, AdapterStoreArgs, validate_adapter_store_args
from components.errors import ArgsError
from infra.config import ConfigError
from tests.harness import inputs, of_type, one, run_component, settings_for, stack_value
from tests.iam_sim import ACCOUNT, Request, evaluate

BUCKET = "llmserving-test-adapters-123456789012-us-east-1"
TAGS = {"project": "llmserving", "stack": "test", "environment": "dev", "tier": "small"}


def _args(**over) -> AdapterStoreArgs:
    base = dict(bucket_name=BUCKET, account_id=ACCOUNT, region="us-east-1", log_bucket_name="logs-bucket",
                tenant_ids=("acme", "globex"), tags=TAGS)
    base.update(over)
    return AdapterStoreArgs(**base)


def _run(**over):
    return run_component(lambda: AdapterStore("store", _args(**over)))


@pytest.fixture(scope="module")
def run():
    return _run()


def _policies(run) -> dict[str, dict]:
    """Every policy document the store renders, by resource name."""
    out = {}
    for r in run.registrations:
        i = inputs(r)
        for key in ("policy", "assumeRolePolicy"):
            if isinstance(i.get(key), str):
                out[f"{r.name}:{key}"] = json.loads(i[key])
    return out


def test_bucket_has_the_safety_defaults(run):
    bucket = one(run, "aws:s3/bucket:Bucket")
    assert inputs(bucket)["bucket"] == BUCKET and bucket.protect
    assert inputs(bucket)["tags"] == TAGS
    pab = inputs(one(run, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    assert inputs(one(run, "aws:s3/bucketVersioning:BucketVersioning"))["versioningConfiguration"] == {"status": "Enabled"}
    sse = inputs(one(run, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"))
    rule = sse["rules"][0]
    assert rule["bucketKeyEnabled"] is True
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:us-east-1:")
    logging = inputs(one(run, "aws:s3/bucketLogging:BucketLogging"))
    assert logging["targetBucket"] == "logs-bucket" and logging["targetPrefix"] == f"s3/{BUCKET}/"
    rules = inputs(one(run, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"))["rules"]
    assert {"noncurrentDays": 30} in [r.get("noncurrentVersionExpiration") for r in rules]
    key = one(run, "aws:kms/key:Key")
    assert key.protect and inputs(key)["enableKeyRotation"] is True


def test_no_wildcard_principal_and_no_negated_operators(run):
    def principals(p):
        if isinstance(p, str):
            yield p
        elif isinstance(p, dict):
            for v in p.values():
                yield from ([v] if isinstance(v, str) else v)

    docs = _policies(run)
    assert {"store-policy:policy", "store-reader:assumeRolePolicy", "store-writer:assumeRolePolicy",
            "store-reader:policy", "store-writer:policy"} <= set(docs)
    for name, doc in docs.items():
        for st in doc["Statement"]:
            assert "*" not in list(principals(st.get("Principal", {}))), name
            assert not {"NotPrincipal", "NotAction", "NotResource"} & set(st), name
            for op in st.get("Condition", {}):
                assert "Not" not in op, f"{name}: negated operator {op}"


def test_resource_count_does_not_grow_with_tenants():
    few = _run(tenant_ids=("acme",))
    many = _run(tenant_ids=tuple(f"tenant-{i:04d}" for i in range(2000)))
    assert len(many.registrations) == len(few.registrations)
    assert len(of_type(many, "aws:iam/role:Role")) == 2


def _context(tag=None, tls=True, **extra):
    ctx = {"aws:SecureTransport": "true" if tls else "false", "s3:TlsVersion": "1.3"}
    if tag is not None:
        ctx["aws:PrincipalTag/tenant"] = tag
    ctx.update(extra)
    return ctx


def test_tenant_isolation_is_enforced_by_the_evaluated_policies(run):
    docs = _policies(run)
    writer, reader, bucket_policy = docs["store-writer:policy"], docs["store-reader:policy"], docs["store-policy:policy"]
    arn = f"arn:aws:s3:::{BUCKET}"
    w = f"arn:aws:sts::{ACCOUNT}:assumed-role/{BUCKET}-writer/onboarding"
    r = f"arn:aws:sts::{ACCOUNT}:assumed-role/{BUCKET}-reader/vllm"
    obj = lambda t: f"{arn}/tenants/{t}/support/adapter_model.safetensors"  # noqa: E731
    cases = [
        # (what, request, expected)
        ("A writes its own prefix", Request("s3:PutObject", obj("acme"), w, _context("acme"), [writer], bucket_policy), "Allowed"),
        ("A reads its own prefix", Request("s3:GetObject", obj("acme"), w, _context("acme"), [writer], bucket_policy), "Allowed"),
        ("A writes B's prefix", Request("s3:PutObject", obj("globex"), w, _context("acme"), [writer], bucket_policy), "ImplicitlyDenied"),
        ("A reads B's prefix", Request("s3:GetObject", obj("globex"), w, _context("acme"), [writer], bucket_policy), "ImplicitlyDenied"),
        ("A deletes B's object", Request("s3:DeleteObject", obj("globex"), w, _context("acme"), [writer], bucket_policy), "ImplicitlyDenied"),
        ("A vs a look-alike prefix", Request("s3:PutObject", obj("acme-evil"), w, _context("acme"), [writer], bucket_policy), "ImplicitlyDenied"),
        ("B writes its own prefix", Request("s3:PutObject", obj("globex"), w, _context("globex"), [writer], bucket_policy), "Allowed"),
        ("A lists its prefix", Request("s3:ListBucket", arn, w, _context("acme", **{"s3:prefix": "tenants/acme/"}), [writer], bucket_policy), "Allowed"),
        ("A lists B's prefix", Request("s3:ListBucket", arn, w, _context("acme", **{"s3:prefix": "tenants/globex/"}), [writer], bucket_policy), "ImplicitlyDenied"),
        ("A lists the whole bucket", Request("s3:ListBucket", arn, w, _context("acme"), [writer], bucket_policy), "ImplicitlyDenied"),
        ("untagged session: fail closed", Request("s3:PutObject", obj("acme"), w, _context(None), [writer], bucket_policy), "ImplicitlyDenied"),
        ("plain HTTP is refused", Request("s3:PutObject", obj("acme"), w, _context("acme", tls=False), [writer], bucket_policy), "ExplicitlyDenied"),
        ("no transport info: fail closed", Request("s3:PutObject", obj("acme"), w, {"aws:PrincipalTag/tenant": "acme"}, [writer], bucket_policy), "ExplicitlyDenied"),
        ("serving reads any tenant", Request("s3:GetObject", obj("globex"), r, _context(), [reader], bucket_policy), "Allowed"),
        ("serving cannot write", Request("s3:PutObject", obj("acme"), r, _context(), [reader], bucket_policy), "ImplicitlyDenied"),
        ("serving reads nothing outside tenants/", Request("s3:GetObject", f"{arn}/other/x", r, _context(), [reader], bucket_policy), "ImplicitlyDenied"),
    ]
    results = evaluate([c[1] for c in cases])
    assert {c[0]: got for c, got in zip(cases, results)} == {c[0]: c[2] for c in cases}


def test_roles_trust_only_tagged_sessions_and_serving_services(run):
    docs = _policies(run)
    role = f"arn:aws:iam::{ACCOUNT}:role/{BUCKET}-writer"
    onboarding = f"arn:aws:iam::{ACCOUNT}:role/onboarding"
    may_assume = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": role}]}
    trust = docs["store-writer:assumeRolePolicy"]
    reader_trust = docs["store-reader:assumeRolePolicy"]
    # The onboarding principal of tenant acme carries the principal tag tenant=acme.
    tagged = {"aws:RequestTag/tenant": "acme", "aws:TagKeys": ["tenant"], "aws:PrincipalTag/tenant": "acme"}
    cases = [
        (Request("sts:AssumeRole", role, onboarding, tagged, [may_assume], trust), "Allowed"),
        (Request("sts:AssumeRole", role, onboarding, {}, [may_assume], trust), "ImplicitlyDenied"),
        # acme's principal asks for a globex session: refused.
        (Request("sts:AssumeRole", role, onboarding, {**tagged, "aws:RequestTag/tenant": "globex"}, [may_assume], trust),
         "ImplicitlyDenied"),
        # A caller without a tenant principal tag cannot open a tenant session at all.
        (Request("sts:AssumeRole", role, onboarding, {k: v for k, v in tagged.items() if k != "aws:PrincipalTag/tenant"},
                 [may_assume], trust), "ImplicitlyDenied"),
        (Request("sts:TagSession", role, onboarding, {**tagged, "aws:TagKeys": ["tenant", "team"],
                                                      "aws:RequestTag/team": "x"}, [may_assume], trust), "ImplicitlyDenied"),
        (Request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{BUCKET}-reader", "ecs-tasks.amazonaws.com",
                 {"aws:SourceAccount": ACCOUNT}, [], reader_trust), "Allowed"),
        (Request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{BUCKET}-reader", "ecs-tasks.amazonaws.com",
                 {"aws:SourceAccount": "999999999999"}, [], reader_trust), "ImplicitlyDenied"),
        # Without a cluster to trust (ECS stacks) Pod Identity gets nothing.
        (Request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/{BUCKET}-reader", "pods.eks.amazonaws.com",
                 {"aws:SourceAccount": ACCOUNT}, [], reader_trust), "ImplicitlyDenied"),
    ]
    assert evaluate([c[0] for c in cases]) == [c[1] for c in cases]


def test_eks_reader_trusts_the_session_tags_pod_identity_sends_not_source_account():
    """Pod Identity tags its AssumeRole with eks-cluster-arn, kubernetes-namespace and
    kubernetes-service-account (EKS user guide, pod-id-role / pod-id-abac) and documents no
    aws:SourceAccount: a trust that requires it could refuse every adapter-sync pod."""
    cluster = f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/llmserving-test"
    reader_trust = _policies(_run(pod_identity=(cluster, "llmserving", "vllm-lora")))["store-reader:assumeRolePolicy"]
    role = f"arn:aws:iam::{ACCOUNT}:role/{BUCKET}-reader"
    tags = {"aws:RequestTag/eks-cluster-arn": cluster, "aws:RequestTag/kubernetes-namespace": "llmserving",
            "aws:RequestTag/kubernetes-service-account": "vllm-lora",
            "aws:TagKeys": ["eks-cluster-arn", "kubernetes-namespace", "kubernetes-service-account"]}
    cases = [
        (Request("sts:AssumeRole", role, "pods.eks.amazonaws.com", tags, [], reader_trust), "Allowed"),
        (Request("sts:AssumeRole", role, "pods.eks.amazonaws.com",
                 {**tags, "aws:RequestTag/kubernetes-service-account": "default"}, [], reader_trust), "ImplicitlyDenied"),
        (Request("sts:AssumeRole", role, "pods.eks.amazonaws.com",
                 {**tags, "aws:RequestTag/eks-cluster-arn": cluster + "-other"}, [], reader_trust), "ImplicitlyDenied"),
        (Request("sts:AssumeRole", role, "ecs-tasks.amazonaws.com", {"aws:SourceAccount": ACCOUNT}, [], reader_trust),
         "Allowed"),
    ]
    assert evaluate([c[0] for c in cases]) == [c[1] for c in cases]


def test_writer_principals_narrow_the_trust(run):
    run2 = _run(writer_principal_arns=(f"arn:aws:iam::{ACCOUNT}:role/onboarding",))
    trust = _policies(run2)["store-writer:assumeRolePolicy"]
    assert trust["Statement"][0]["Principal"] == {"AWS": [f"arn:aws:iam::{ACCOUNT}:role/onboarding"]}


@pytest.mark.parametrize("tenant", ["../globex", "Acme", "acme/support", "*", "", "a" * 64, "acme "])
def test_unsafe_tenant_id_is_rejected_before_anything_exists(tenant):
    with pytest.raises(ArgsError) as e:
        validate_adapter_store_args(_args(tenant_ids=("acme", tenant)))
    assert f"tenant_ids: got {tenant!r}; a tenant id becomes the prefix tenants/<id>/" in str(e.value)
    assert "invalid AdapterStore args" in str(e.value)


def test_unsafe_tenant_id_in_stack_config_is_a_config_error():
    lora = stack_value("prod", "llmserving:lora")
    lora["tenants"][0]["id"] = "acme/../globex"
    with pytest.raises(ConfigError) as e:
        settings_for("prod", {"llmserving:lora": lora})
    assert ("llmserving:lora.tenants[0].id: got 'acme/../globex'; must be a safe S3 prefix: lowercase letters, "
            "digits and '-', 1-63 characters") in str(e.value)


def test_bad_bucket_and_account_are_listed_together():
    with pytest.raises(ArgsError) as e:
        validate_adapter_store_args(_args(bucket_name="Bad_Bucket", account_id="12345"))
    assert e.value.problems == [
        "bucket_name: got 'Bad_Bucket'; must be 3-63 lowercase letters, digits and single '-' (an S3 bucket name without dots)",
        "account_id: got '12345'; must be a 12-digit AWS account id",
    ]
