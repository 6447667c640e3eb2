"""IAM of the model mirror, evaluated by a real IAM policy simulator (tests/iam_sim.py).

The streaming read (vLLM's Run:ai loader: ListObjectsV2 with the model's prefix, GetObject of each file:
run-ai/runai-model-streamer py/runai_model_streamer_s3/files/files.py at 0.15.0) is allowed for the
model's own revision prefix and nothing else: not another model's prefix, not another revision, not
another stack's mirror; the mirror job writes only its own source's prefix. The policies are the ones the
component registers (under mocks), not copies.
"""

from __future__ import annotations

import json

import pytest

from components.model_mirror import MirroredModel, ModelMirror, ModelMirrorArgs
from tests.harness import inputs, of_type, run_component
from tests.iam_sim import ACCOUNT, Request, evaluate

REV_70B, REV_8B = "7" * 40, "8" * 40
CLUSTER = f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/llmserving-prod"


def _mirror(stack: str) -> dict:
    bucket = f"llmserving-{stack}-models-{ACCOUNT}-us-east-1"
    models = (MirroredModel("llama-3-1-70b", "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8", REV_70B,
                            ("llmserving", "llama-3-1-70b-weights", "llama-3-1-70b-mirror")),
              MirroredModel("llama-3-1-8b", "meta-llama/Llama-3.1-8B-Instruct", REV_8B,
                            ("llmserving", "llama-3-1-8b-weights", "llama-3-1-8b-mirror")))
    run = run_component(lambda: ModelMirror(f"{stack}-models", ModelMirrorArgs(
        bucket_name=bucket, account_id=ACCOUNT, region="us-east-1", log_bucket_name="logs", models=models,
        cluster_arn=CLUSTER.replace("prod", stack), cluster_name=f"llmserving-{stack}",
        extra_readers={"llama-3-1-8b": "adapters-reader"})))
    docs = {r.name: json.loads(inputs(r)["policy"]) for r in of_type(run, "aws:iam/rolePolicy:RolePolicy")}
    trusts = {r.name: json.loads(inputs(r)["assumeRolePolicy"]) for r in of_type(run, "aws:iam/role:Role")}
    (bucket_policy,) = [json.loads(inputs(r)["policy"]) for r in of_type(run, "aws:s3/bucketPolicy:BucketPolicy")]
    return {"bucket": bucket, "docs": docs, "trusts": trusts, "bucket_policy": bucket_policy}


@pytest.fixture(scope="module")
def prod():
    return _mirror("prod")


@pytest.fixture(scope="module")
def other():
    return _mirror("large-use1-a")


CTX = {"aws:SecureTransport": "true", "s3:TlsVersion": "1.3"}


def test_a_pod_reads_its_own_model_revision_and_nothing_else(prod, other):
    arn = f"arn:aws:s3:::{prod['bucket']}"
    w70 = prod["docs"]["prod-models-llama-3-1-70b-weights"]
    w8 = prod["docs"]["prod-models-llama-3-1-8b-weights"]  # the inline policy on the adapter reader
    p70 = f"RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8/{REV_70B}/"
    p8 = f"meta-llama/Llama-3.1-8B-Instruct/{REV_8B}/"
    who = f"arn:aws:sts::{ACCOUNT}:assumed-role/weights/eks-pod"
    bp = prod["bucket_policy"]

    def get(policy, key, bucket=arn, resource_policy=bp):
        return Request("s3:GetObject", f"{bucket}/{key}", who, CTX, [policy], resource_policy)

    def lst(policy, prefix, bucket=arn):
        ctx = dict(CTX, **({"s3:prefix": prefix} if prefix is not None else {}))
        return Request("s3:ListBucket", bucket, who, ctx, [policy], bp)

    other_arn = f"arn:aws:s3:::{other['bucket']}"
    cases = [
        ("70B reads its weights", get(w70, p70 + "model-00001-of-00015.safetensors"), "Allowed"),
        ("70B reads its config", get(w70, p70 + "config.json"), "Allowed"),
        ("70B lists its revision (what the streamer sends)", lst(w70, p70), "Allowed"),
        ("70B reads the 8B's weights", get(w70, p8 + "model-00001-of-00004.safetensors"), "ImplicitlyDenied"),
        ("70B lists the 8B's prefix", lst(w70, p8), "ImplicitlyDenied"),
        ("70B reads another revision of its model", get(w70, f"RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8/{'0' * 40}/x"),
         "ImplicitlyDenied"),
        ("70B lists the whole bucket", lst(w70, None), "ImplicitlyDenied"),
        ("70B lists a look-alike prefix", lst(w70, p70[:-1] + "0/"), "ImplicitlyDenied"),
        ("70B writes its prefix", Request("s3:PutObject", f"{arn}/{p70}x", who, CTX, [w70], bp), "ImplicitlyDenied"),
        ("8B (adapter reader) reads its weights", get(w8, p8 + "config.json"), "Allowed"),
        ("8B reads the 70B's weights", get(w8, p70 + "config.json"), "ImplicitlyDenied"),
        ("prod's 70B reads the other stack's mirror", get(w70, p70 + "config.json", other_arn, other["bucket_policy"]),
         "ImplicitlyDenied"),
        ("the other stack's 70B reads prod's mirror",
         get(other["docs"]["large-use1-a-models-llama-3-1-70b-weights"], p70 + "config.json"), "ImplicitlyDenied"),
        ("plain HTTP is refused", Request("s3:GetObject", f"{arn}/{p70}config.json", who,
                                          {"aws:SecureTransport": "false"}, [w70], bp), "ExplicitlyDenied"),
    ]
    results = evaluate([c[1] for c in cases])
    assert {c[0]: got for c, got in zip(cases, results)} == {c[0]: c[2] for c in cases}


def test_the_mirror_job_writes_only_its_own_source(prod):
    arn = f"arn:aws:s3:::{prod['bucket']}"
    m70 = prod["docs"]["prod-models-llama-3-1-70b-mirror"]
    who = f"arn:aws:sts::{ACCOUNT}:assumed-role/mirror/eks-pod"
    own = f"RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8/{REV_70B}/model-00001-of-00015.safetensors"
    cases = [
        ("writes its revision", Request("s3:PutObject", f"{arn}/{own}", who, CTX, [m70], prod["bucket_policy"]), "Allowed"),
        ("prunes an old revision of its source",
         Request("s3:DeleteObject", f"{arn}/RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8/{'0' * 40}/x", who, CTX, [m70],
                 prod["bucket_policy"]), "Allowed"),
        ("lists its source's revisions", Request("s3:ListBucket", arn, who,
                                                 dict(CTX, **{"s3:prefix": "RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8/"}),
                                                 [m70], prod["bucket_policy"]), "Allowed"),
        ("writes the 8B's prefix", Request("s3:PutObject", f"{arn}/meta-llama/Llama-3.1-8B-Instruct/{REV_8B}/x", who,
                                           CTX, [m70], prod["bucket_policy"]), "ImplicitlyDenied"),
        ("deletes the 8B's prefix", Request("s3:DeleteObject", f"{arn}/meta-llama/Llama-3.1-8B-Instruct/{REV_8B}/x",
                                            who, CTX, [m70], prod["bucket_policy"]), "ImplicitlyDenied"),
    ]
    results = evaluate([c[1] for c in cases])
    assert {c[0]: got for c, got in zip(cases, results)} == {c[0]: c[2] for c in cases}


def test_each_role_is_assumed_only_by_its_service_account_on_its_cluster(prod):
    trust = prod["trusts"]["prod-models-llama-3-1-70b-weights"]

    def assume(sa, cluster=CLUSTER):
        return Request("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/weights", "pods.eks.amazonaws.com",
                       {"aws:RequestTag/eks-cluster-arn": cluster, "aws:RequestTag/kubernetes-namespace": "llmserving",
                        "aws:RequestTag/kubernetes-service-account": sa}, [], trust)
    got = evaluate([assume("llama-3-1-70b-weights"), assume("llama-3-1-8b-weights"), assume("llama-3-1-70b-mirror"),
                    assume("llama-3-1-70b-weights", CLUSTER.replace("prod", "dev"))])
    assert got == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied", "ImplicitlyDenied"]
