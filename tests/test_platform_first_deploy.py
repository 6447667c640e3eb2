"""What a first real `pulumi up` of the EKS platform needs (issue 10: items 1, 5, 7, 14, 16).

Whole-stack checks run the real program under mocks (the shipped dev and prod
stacks, or a variant of their config) and judge what AWS, EKS, Helm and the
controllers would do with the recorded inputs.
"""

from __future__ import annotations

import json

import pytest

from tests.harness import shipped_preview
from tests.iam_sim import ACCOUNT, Request, evaluate

EKS_STACKS = ["dev", "prod"]


def _res(doc: dict, typ: str) -> list[dict]:
    return [r for r in doc["resources"] if r["type"] == typ]


def _release(doc: dict, release_name: str) -> dict:
    found = [r for r in _res(doc, "kubernetes:helm.sh/v3:Release") if r["inputs"].get("name") == release_name]
    assert len(found) == 1, [r["inputs"].get("name") for r in _res(doc, "kubernetes:helm.sh/v3:Release")]
    return found[0]


# --- item 14: IMDS hop limit 1 on every node path; controllers get region without IMDS -------------

@pytest.mark.parametrize("stack", EKS_STACKS)
def test_every_node_path_keeps_imds_one_hop_away(stack):
    """A pod is one network hop beyond its node: with hop limit 1 IMDSv2 answers never reach it,
    so no pod can take the node role's credentials (EKS best practices; CKV_AWS_341)."""
    doc = shipped_preview(stack)
    lts = _res(doc, "aws:ec2/launchTemplate:LaunchTemplate")
    classes = _res(doc, "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")
    assert lts and classes
    hops = {r["name"]: r["inputs"]["metadataOptions"]["httpPutResponseHopLimit"] for r in lts}
    hops.update({r["name"]: r["inputs"]["spec"]["metadataOptions"]["httpPutResponseHopLimit"] for r in classes})
    assert hops and set(hops.values()) == {1}, hops
    assert all(r["inputs"]["metadataOptions"]["httpTokens"] == "required" for r in lts)


@pytest.mark.parametrize("stack", EKS_STACKS)
def test_controllers_get_their_region_without_imds(stack):
    doc = shipped_preview(stack)
    region = "us-east-1"
    lbc = _release(doc, "aws-load-balancer-controller")["inputs"]["values"]
    vpc = _res(doc, "aws:ec2/vpc:Vpc")[0]
    assert lbc["region"] == region and lbc["vpcId"].startswith("vpc-")
    assert vpc["inputs"]["cidrBlock"]  # the stack's one VPC
    karpenter = _release(doc, "karpenter")["inputs"]["values"]
    assert {"name": "AWS_REGION", "value": region} in karpenter["controller"]["env"]


# --- item 16: default security group without rules; confused-deputy conditions the services send -------

@pytest.mark.parametrize("stack", EKS_STACKS)
def test_default_security_group_is_managed_without_rules(stack):
    doc = shipped_preview(stack)
    vpcs = _res(doc, "aws:ec2/vpc:Vpc")
    sgs = _res(doc, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert len(sgs) == len(vpcs) == 1
    sg = sgs[0]["inputs"]
    assert sg["vpcId"].startswith("vpc-")
    # Terraform's aws_default_security_group revokes every rule not declared (CIS AWS 5.4).
    assert sg.get("ingress") == [] and sg.get("egress") == []


def _role(doc: dict, name_suffix: str) -> tuple[str, dict]:
    found = [r for r in _res(doc, "aws:iam/role:Role") if r["inputs"]["name"].endswith(name_suffix)]
    assert len(found) == 1, [r["inputs"]["name"] for r in _res(doc, "aws:iam/role:Role")]
    name = found[0]["inputs"]["name"]
    return f"arn:aws:iam::{ACCOUNT}:role/{name}", json.loads(found[0]["inputs"]["assumeRolePolicy"])


def _pod_identity(cluster: str, namespace: str, service_account: str) -> dict:
    """The request tags EKS Pod Identity sends when it assumes a role for a pod
    (awsdocs/amazon-eks-user-guide pod-id-role.adoc, "Setting Conditions")."""
    tags = {"eks-cluster-arn": f"arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{cluster}", "eks-cluster-name": cluster,
            "kubernetes-namespace": namespace, "kubernetes-service-account": service_account,
            "kubernetes-pod-name": f"{service_account}-abc", "kubernetes-pod-uid": "0000"}
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)}


@pytest.mark.parametrize("stack", ["dev"])
def test_pod_identity_roles_trust_only_their_service_account_of_this_cluster(stack):
    doc = shipped_preview(stack)
    cluster = f"llmserving-{stack}"
    roles = {"karpenter": ("-karpenter-controller", "kube-system", "karpenter"),
             "ebs-csi": ("-ebs-csi", "kube-system", "ebs-csi-controller-sa"),
             "lb-controller": ("-alb-bindings-controller", "kube-system", "aws-load-balancer-controller")}
    cases = []
    for what, (suffix, ns, sa) in roles.items():
        arn, trust = _role(doc, suffix)
        for action in ("sts:AssumeRole", "sts:TagSession"):
            cases += [
                ((what, action, "own service account"), Request(action, arn, "pods.eks.amazonaws.com",
                                                                 _pod_identity(cluster, ns, sa), [], trust), "Allowed"),
                ((what, action, "another service account"), Request(
                    action, arn, "pods.eks.amazonaws.com", _pod_identity(cluster, "llmserving", "default"), [], trust),
                 "ImplicitlyDenied"),
                ((what, action, "another cluster"), Request(
                    action, arn, "pods.eks.amazonaws.com", _pod_identity("other-cluster", ns, sa), [], trust),
                 "ImplicitlyDenied"),
            ]
    got = evaluate([c[1] for c in cases])
    assert {c[0]: g for c, g in zip(cases, got)} == {c[0]: c[2] for c in cases}


@pytest.mark.parametrize("stack", ["dev"])
def test_flow_log_role_and_interruption_queue_admit_only_this_accounts_sources(stack):
    doc = shipped_preview(stack)
    arn, trust = _role(doc, "-flow-logs")
    flow_log = f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc-flow-log/fl-0123456789abcdef0"
    other = "999999999999"
    queue_policy = json.loads(next(r for r in _res(doc, "aws:sqs/queuePolicy:QueuePolicy"))["inputs"]["policy"])
    queue = next(s["Resource"] for s in queue_policy["Statement"])
    rule = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/llmserving-{stack}-karpenter-spot-interruption"
    cases = [
        (Request("sts:AssumeRole", arn, "vpc-flow-logs.amazonaws.com",
                 {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": flow_log}, [], trust), "Allowed"),
        (Request("sts:AssumeRole", arn, "vpc-flow-logs.amazonaws.com",
                 {"aws:SourceAccount": other, "aws:SourceArn": flow_log.replace(ACCOUNT, other)}, [], trust),
         "ImplicitlyDenied"),
        (Request("sqs:SendMessage", queue, "events.amazonaws.com", {"aws:SourceArn": rule, "aws:SecureTransport": "true"},
                 [], queue_policy), "Allowed"),
        (Request("sqs:SendMessage", queue, "events.amazonaws.com",
                 {"aws:SourceArn": f"arn:aws:events:us-east-1:{other}:rule/anything", "aws:SecureTransport": "true"},
                 [], queue_policy), "ImplicitlyDenied"),
    ]
    assert evaluate([c[0] for c in cases]) == [c[1] for c in cases]
